//! The turnstile bridge: Python workers take their forced steps through a socket each.
//!
//! A Python process cannot take part in the shared-memory turnstile itself (its state is
//! one atomic word changed by compare-and-swap and waited on with futex, neither of which
//! the standard library offers). So each Python worker gets one end of a socket pair, and
//! a thread of the case leader holds the other end and joins the turnstile *as that
//! worker*: it asks for the worker's turn, tells the worker "go", and ends the step with
//! the value and progress the worker reports. The schedule, the history, the pacing of
//! blocked steps and the bounds are the turnstile's own, exactly as for a Rust worker, so
//! a Python race is forced, recorded and shrunk the same way.
//!
//! The protocol (PROTOCOL.md, "scenarios"): the worker writes `step LABEL`, reads `go`,
//! does its operation, writes `done VALUE PROGRESSED`; `record LABEL VALUE` logs an event
//! outside the schedule; `finish` after its last step. End of file before `finish` (the
//! worker died) abandons its place, so the others are not left waiting for its turn.

use crate::schedule::{Turnstile, TurnstileHandle};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The bridge of one case: the Python ends of the sockets, until they are handed over,
/// and one serving thread per worker.
pub(crate) struct Bridge {
    python_ends: Vec<OwnedFd>,
    threads: Vec<JoinHandle<Result<(), String>>>,
}

impl Bridge {
    /// A socket pair and a serving thread for each of `workers` workers of `turnstile`.
    /// Each read and each wait for a turn is bounded by `bound`.
    pub(crate) fn start(
        turnstile: &Turnstile,
        workers: usize,
        bound: Duration,
    ) -> std::io::Result<Bridge> {
        let mut bridge = Bridge {
            python_ends: Vec::with_capacity(workers),
            threads: Vec::with_capacity(workers),
        };
        for worker in 0..workers {
            let (ours, theirs) = UnixStream::pair()?;
            // The Python end must survive the exec of python3 (and its workers' forks).
            let theirs = OwnedFd::from(theirs);
            // SAFETY: fcntl on an fd this function owns; clearing FD_CLOEXEC changes
            // only whether it is inherited across exec.
            if unsafe { libc::fcntl(theirs.as_raw_fd(), libc::F_SETFD, 0) } < 0 {
                return Err(std::io::Error::last_os_error());
            }
            bridge.python_ends.push(theirs);
            let segment = dup_cloexec(turnstile.handle().fd)?;
            let thread = std::thread::Builder::new()
                .name(format!("bridge {worker}"))
                .spawn(move || serve(ours, segment, worker, bound))?;
            bridge.threads.push(thread);
        }
        Ok(bridge)
    }

    /// The fds the Python program finds its workers' sockets on, in worker order.
    pub(crate) fn python_fds(&self) -> Vec<RawFd> {
        self.python_ends.iter().map(AsRawFd::as_raw_fd).collect()
    }

    /// Closes this process's copies of the Python ends (once python3 has them): a
    /// worker's end of file is then seen when that worker ends.
    pub(crate) fn hand_over(&mut self) {
        self.python_ends.clear();
    }

    /// Waits, at most `bound`, for every serving thread to end, and returns the first
    /// error one of them met (a turnstile that timed out, a worker that broke the
    /// protocol). A thread still running at the bound is an error too.
    pub(crate) fn finish(mut self, bound: Duration) -> Result<(), String> {
        self.hand_over();
        let until = Instant::now() + bound;
        let mut first_error = None;
        for thread in self.threads {
            while !thread.is_finished() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(2));
            }
            if !thread.is_finished() {
                first_error.get_or_insert_with(|| {
                    format!(
                        "the turnstile bridge for a Python worker was still waiting after {:?}",
                        bound
                    )
                });
                continue;
            }
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(_) => {
                    first_error.get_or_insert_with(|| "a turnstile bridge panicked".into());
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

fn dup_cloexec(fd: RawFd) -> std::io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC makes a new fd; on success this function owns it.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if new < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `new` is a fresh fd nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Serves worker `worker` until its socket ends.
fn serve(
    stream: UnixStream,
    segment: OwnedFd,
    worker: usize,
    bound: Duration,
) -> Result<(), String> {
    let fd = segment.as_raw_fd();
    std::mem::forget(segment); // `adopt` owns it from here
    let mut turnstile = Turnstile::adopt(TurnstileHandle { fd }, worker)
        .map_err(|e| format!("bridge {worker}: {e}"))?;
    turnstile.set_turn_timeout(bound);
    let result = serve_lines(&turnstile, stream, worker, bound);
    if result.is_err() {
        turnstile.abandon(worker);
    }
    result
}

fn serve_lines(
    turnstile: &Turnstile,
    stream: UnixStream,
    worker: usize,
    bound: Duration,
) -> Result<(), String> {
    let io = |e: std::io::Error| format!("python worker {worker}'s turnstile socket: {e}");
    stream.set_read_timeout(Some(bound)).map_err(io)?;
    let mut writer = stream.try_clone().map_err(io)?;
    let mut reader = BufReader::new(stream);
    let mut finished = false;
    loop {
        let Some(line) = read_line(&mut reader).map_err(io)? else {
            if !finished {
                turnstile.abandon(worker);
            }
            return Ok(());
        };
        let (verb, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        match verb {
            "step" => {
                let mut failure = None;
                turnstile
                    .step_reported(worker, rest, || match grant(&mut writer, &mut reader) {
                        Ok(done) => done,
                        Err(e) => {
                            failure = Some(e);
                            (true, 0)
                        }
                    })
                    .map_err(|e| format!("python worker {worker}, step {rest:?}: {e}"))?;
                if let Some(e) = failure {
                    return Err(format!("python worker {worker}, step {rest:?}: {e}"));
                }
            }
            "record" => {
                let (label, value) = rest
                    .rsplit_once(' ')
                    .and_then(|(l, v)| Some((l, v.parse::<i64>().ok()?)))
                    .ok_or_else(|| format!("python worker {worker}: bad record {line:?}"))?;
                turnstile.record(worker, label, value);
            }
            "finish" => {
                turnstile
                    .finish(worker)
                    .map_err(|e| format!("python worker {worker}, finish: {e}"))?;
                finished = true;
            }
            _ => {
                return Err(format!(
                    "python worker {worker} sent {line:?}, not a turnstile request"
                ))
            }
        }
    }
}

/// Tells the worker "go" and reads what its step did: (progressed, value).
fn grant(
    writer: &mut UnixStream,
    reader: &mut BufReader<UnixStream>,
) -> Result<(bool, i64), String> {
    writer.write_all(b"go\n").map_err(|e| e.to_string())?;
    let line = read_line(reader)
        .map_err(|e| e.to_string())?
        .ok_or("the worker ended inside its step")?;
    parse_done(&line)
}

/// `done VALUE PROGRESSED` → (progressed, value).
fn parse_done(line: &str) -> Result<(bool, i64), String> {
    let mut words = line.split(' ');
    match (words.next(), words.next(), words.next(), words.next()) {
        (Some("done"), Some(value), Some(progressed), None) => {
            let value = value
                .parse::<i64>()
                .map_err(|_| format!("bad value in {line:?}"))?;
            match progressed {
                "1" => Ok((true, value)),
                "0" => Ok((false, value)),
                _ => Err(format!("bad progress flag in {line:?}")),
            }
        }
        _ => Err(format!("expected \"done VALUE PROGRESSED\", got {line:?}")),
    }
}

/// One line without its newline; None at end of file.
fn read_line(reader: &mut BufReader<UnixStream>) -> std::io::Result<Option<String>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    Ok(Some(line.trim_end_matches('\n').to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_done_line_gives_progress_and_value() {
        assert_eq!(parse_done("done 3 1"), Ok((true, 3)));
        assert_eq!(parse_done("done -1 0"), Ok((false, -1)));
        assert!(parse_done("done 3").is_err());
        assert!(parse_done("done x 1").is_err());
        assert!(parse_done("done 3 2").is_err());
        assert!(parse_done("go").is_err());
    }
}
