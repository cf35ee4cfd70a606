//! `pipe-same-end`: several writers share one write end of a pipe. A write(2) of at most
//! PIPE_BUF bytes is atomic; a larger frame may go out in pieces, and another writer's
//! bytes can land between them: the reader sees a torn frame (the frame codec's magic and
//! CRC catch it).
//!
//! To force the tear, the pipe's capacity is set to one page (F_SETPIPE_SZ) and each
//! write(2) call is a step: writer 0 writes what fits of a PIPE_BUF+1 frame, the reader
//! drains the pipe, writer 1 writes its frame's first page into the gap. Writers use the
//! same one-frame-per-write(2), write-the-rest-on-EAGAIN loop as `ipc::pipe`, with a yield
//! point between write calls (the library's loop has none to hook).

use super::ScenarioError;
use super::{
    join_workers, results, start_worker, Case, CaseContext, CaseOutcome, Joined, Scenario, Variant,
    Verdict,
};
use crate::ipc::frame::{self, HEADER_LEN};
use crate::ipc::lock::{LockAddress, LockFlavor};
use crate::ipc::pipe::PIPE_BUF;
use crate::schedule::{Mode, Schedule, Turnstile, TurnstileHandle};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

pub(crate) struct PipeSameEnd;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Params {
    pub(crate) writers: usize,
    pub(crate) frames_each: u32,
    /// Bytes per frame on the wire (header included).
    pub(crate) frame_bytes: usize,
}

const VARIANTS: &[Variant] = &[
    Variant::caught_violated(
        "large-frames",
        "two or more writers on one end, frames > PIPE_BUF: torn frames",
    ),
    Variant::holds(
        "small-frames",
        "frames <= PIPE_BUF: each write(2) is atomic",
    ),
    Variant::holds("writer-lock", "large frames, writers serialised by a lock"),
    Variant::holds("pipe-per-writer", "large frames, one pipe per writer"),
];

impl Scenario for PipeSameEnd {
    fn name(&self) -> &'static str {
        "pipe-same-end"
    }
    fn about(&self) -> &'static str {
        "several writers send framed messages to one reader"
    }
    fn variants(&self) -> &'static [Variant] {
        VARIANTS
    }

    fn cases(&self, variant: &str) -> BoxedStrategy<Case> {
        let frame_bytes = if variant == "small-frames" {
            (HEADER_LEN + 1)..=PIPE_BUF
        } else {
            (PIPE_BUF + 1)..=(3 * PIPE_BUF)
        };
        (2usize..=3, 1u32..=2, frame_bytes, Schedule::strategy(12, 4))
            .prop_map(|(writers, frames_each, frame_bytes, schedule)| {
                Case::new(
                    &Params {
                        writers,
                        frames_each,
                        frame_bytes,
                    },
                    schedule,
                )
            })
            .boxed()
    }

    fn run(
        &self,
        variant: &str,
        case: &Case,
        context: &CaseContext,
    ) -> Result<CaseOutcome, ScenarioError> {
        let params: Params = case.params()?;
        if params.writers == 0 || params.frame_bytes <= HEADER_LEN {
            return Err(format!("pipe-same-end: bad parameters {params:?}").into());
        }
        let per_writer = variant == "pipe-per-writer";
        let lock = if variant == "writer-lock" {
            Some(LockFlavor::Flock.create()?)
        } else {
            None
        };
        let pipes: Vec<(OwnedFd, OwnedFd)> = (0..if per_writer { params.writers } else { 1 })
            .map(|_| one_page_pipe())
            .collect::<Result<_, _>>()?;
        let workers = params.writers + 1;
        let turnstile = Turnstile::create(workers, &case.schedule, Mode::Forced)?;
        // The reader is worker 0, writers 1..: shrinking the writer count away keeps
        // every remaining worker's number (and so what the schedule's choices name).
        let reader_index = 0;
        let read_fds: Vec<RawFd> = pipes.iter().map(|(r, _)| r.as_raw_fd()).collect();
        let args = ReaderArgs {
            index: reader_index,
            fds: read_fds.clone(),
            expected_bytes: params.writers * params.frames_each as usize * params.frame_bytes,
            turnstile: turnstile.handle(),
        };
        let mut fds = read_fds;
        fds.push(turnstile.handle().fd);
        let mut children = Vec::with_capacity(workers);
        children.push(start_worker(
            "ipcbench-scenario-pipe-reader",
            "reader",
            &args,
            &fds,
        )?);
        for writer in 0..params.writers {
            let index = writer + 1;
            let (_, write_end) = &pipes[if per_writer { writer } else { 0 }];
            let fd = write_end.as_raw_fd();
            let args = WriterArgs {
                index,
                fd,
                frames: params.frames_each,
                frame_bytes: params.frame_bytes,
                lock: lock.as_ref().map(|l| l.address()),
                turnstile: turnstile.handle(),
            };
            children.push(start_worker(
                "ipcbench-scenario-pipe-writer",
                format!("writer {index}"),
                &args,
                &[fd, turnstile.handle().fd],
            )?);
        }
        drop(pipes);
        let joined = join_workers(&mut children, context.deadline, Some(&turnstile));
        let history = turnstile.history();
        let results: Vec<serde_json::Value> = match joined {
            Joined::Verdict(v) => return Ok(CaseOutcome::new(v, history)),
            Joined::Finished(r) => results(r)?,
        };
        let report: ReaderReport = serde_json::from_value(results[reader_index].clone())
            .map_err(|e| format!("reader result: {e}"))?;
        let expected = params.writers * params.frames_each as usize;
        let verdict = match report.corrupt {
            Some(what) => Verdict::violated(
                "every frame arrives whole",
                format!(
                    "{what} after {} whole frames; {} writers, frames of {} bytes (PIPE_BUF {PIPE_BUF})",
                    report.frames, params.writers, params.frame_bytes
                ),
            ),
            None if report.frames != expected => Verdict::violated(
                "every frame arrives whole",
                format!("{} frames arrived of {expected}", report.frames),
            ),
            None => Verdict::Holds,
        };
        Ok(CaseOutcome::new(verdict, history))
    }
}

/// A non-blocking simplex pipe holding one page at most, so a frame larger than PIPE_BUF
/// must go out in more than one write(2).
fn one_page_pipe() -> Result<(OwnedFd, OwnedFd), ScenarioError> {
    use nix::fcntl::OFlag;
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
        .map_err(|e| format!("pipe2: {e}"))?;
    // SAFETY: fcntl on a pipe fd we own.
    if unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_BUF as libc::c_int) } < 0 {
        return Err(format!("F_SETPIPE_SZ: {}", std::io::Error::last_os_error()).into());
    }
    Ok((r, w))
}

#[derive(Serialize, Deserialize)]
struct WriterArgs {
    index: usize,
    fd: RawFd,
    frames: u32,
    frame_bytes: usize,
    lock: Option<LockAddress>,
    turnstile: TurnstileHandle,
}

/// The payload of frame `seq` of writer `index`: recognisable bytes.
fn payload(index: usize, seq: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (index as u8).wrapping_mul(61) ^ (seq as u8).wrapping_mul(17) ^ i as u8)
        .collect()
}

fn writer(args: WriterArgs) -> Result<(), ScenarioError> {
    let me = args.index;
    let ts = Turnstile::adopt(args.turnstile, me)?;
    let lock = args.lock.as_ref().map(LockAddress::open).transpose()?;
    let sched = |e: crate::schedule::ScheduleError| e.to_string();
    for seq in 0..args.frames {
        let bytes = frame::encode(&payload(me, seq, args.frame_bytes - HEADER_LEN));
        if let Some(lock) = &lock {
            while !ts
                .try_step(me, "lock", || {
                    lock.try_acquire().map(|a| a.is_some()).unwrap_or(false)
                })
                .map_err(sched)?
            {}
        }
        let mut sent = 0;
        let mut error = None;
        while sent < bytes.len() {
            ts.try_step(me, "write", || {
                // SAFETY: writes from a live slice to the inherited pipe fd.
                let n = unsafe {
                    libc::write(args.fd, bytes[sent..].as_ptr().cast(), bytes.len() - sent)
                };
                if n >= 0 {
                    sent += n as usize;
                    return true;
                }
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EAGAIN) {
                    error = Some(e.to_string());
                    sent = bytes.len();
                }
                false
            })
            .map_err(sched)?;
        }
        if let Some(e) = error {
            return Err(format!("writer {me}: write: {e}").into());
        }
        if let Some(lock) = &lock {
            ts.step(me, "unlock", || lock.release()).map_err(sched)??;
        }
    }
    ts.finish(me)?;
    Ok(())
}
crate::register_entry!("ipcbench-scenario-pipe-writer", writer);

#[derive(Serialize, Deserialize)]
struct ReaderArgs {
    index: usize,
    fds: Vec<RawFd>,
    expected_bytes: usize,
    turnstile: TurnstileHandle,
}

#[derive(Serialize, Deserialize)]
struct ReaderReport {
    frames: usize,
    corrupt: Option<String>,
}

/// Reads whatever is there, one read(2) per step, until every byte sent has arrived (or
/// every writer is gone), then checks the frames of each pipe.
fn reader(args: ReaderArgs) -> Result<ReaderReport, ScenarioError> {
    let me = args.index;
    let ts = Turnstile::adopt(args.turnstile, me)?;
    let mut streams: Vec<Vec<u8>> = vec![Vec::new(); args.fds.len()];
    let mut open = vec![true; args.fds.len()];
    let mut chunk = vec![0u8; 65536];
    let mut next = 0;
    let total = |s: &Vec<Vec<u8>>| s.iter().map(Vec::len).sum::<usize>();
    while total(&streams) < args.expected_bytes && open.iter().any(|&o| o) {
        let i = next % args.fds.len();
        next += 1;
        if !open[i] {
            continue;
        }
        let fd = args.fds[i];
        ts.try_step(me, "read", || {
            // SAFETY: reads into a live buffer from the inherited pipe fd.
            let n = unsafe { libc::read(fd, chunk.as_mut_ptr().cast(), chunk.len()) };
            match n {
                0 => {
                    open[i] = false;
                    true
                }
                n if n > 0 => {
                    streams[i].extend_from_slice(&chunk[..n as usize]);
                    true
                }
                _ => false,
            }
        })?;
    }
    ts.finish(me)?;
    let mut frames = 0;
    for (i, stream) in streams.iter().enumerate() {
        if let Err(what) = check_frames(stream, &mut frames) {
            return Ok(ReaderReport {
                frames,
                corrupt: Some(format!("pipe {i}: {what}")),
            });
        }
    }
    Ok(ReaderReport {
        frames,
        corrupt: None,
    })
}
crate::register_entry!("ipcbench-scenario-pipe-reader", reader);

/// Walks a byte stream frame by frame; the first torn frame is an error saying where.
fn check_frames(stream: &[u8], frames: &mut usize) -> Result<(), ScenarioError> {
    let mut at = 0;
    while at < stream.len() {
        let Some(header) = stream.get(at..at + HEADER_LEN) else {
            return Err(format!("stream ends inside a header at byte {at}").into());
        };
        let header = frame::decode_header(header.try_into().expect("header length"), 1 << 20)
            .map_err(|e| format!("byte {at}: {e}"))?;
        let body = stream
            .get(at + HEADER_LEN..at + HEADER_LEN + header.len)
            .ok_or_else(|| format!("byte {at}: stream ends inside a {}-byte frame", header.len))?;
        frame::check_payload(header, body).map_err(|e| format!("byte {at}: {e}"))?;
        *frames += 1;
        at += HEADER_LEN + header.len;
    }
    Ok(())
}
