//! Raw baselines, measured in the same run as everything else: what the machine can do
//! with no library in the way. Every other figure is also given as a ratio to one of
//! these (same name and same placement), which is what makes runs comparable across
//! machines (and what `compare` gates).
//!
//! * `shm-pingpong`: two processes spinning on one cache line in shared memory; the floor
//!   for any hand-off (cross-CPU only: two spinners on one CPU measure the scheduler).
//! * `pipe-roundtrip`: 1 byte there and back over two pipes, plain blocking read/write,
//!   as `perf bench sched pipe` and lmbench's lat_pipe do (scripts/fidelity.sh compares).
//! * `unix-socket-roundtrip`: the same over a socketpair.
//! * `unix-socket-request-reply`: a 64-byte request and a 64-byte reply over a
//!   socketpair (what a Manager's RPC, a duplex `Connection` and a pool echo ride on);
//!   same-CPU, cross-CPU and unpinned (for the unpinned multi-client workloads).
//! * `futex-roundtrip`: each of two processes sleeps in FUTEX_WAIT on its own word in
//!   shared memory and is woken by the other's store + FUTEX_WAKE; no spinning. The
//!   floor of any blocking wake-up (semaphore, event, a sleeping shm queue).
//! * `pipe-stream-SIZE`, `unix-stream-SIZE` (64B, 4KiB, 64KiB, 1MiB): a writer process
//!   writes messages of SIZE bytes, the reader reads them with reads of SIZE bytes, as
//!   lmbench's bw_pipe / bw_unix; a volume moved (messages/s and bytes/s). Unpinned,
//!   as the stream workloads run.
//! * `flock-acquire-release`, `fcntl-acquire-release`: uncontended flock(LOCK_EX/UN) and
//!   fcntl(F_SETLKW F_WRLCK / F_SETLK F_UNLCK) of a whole unnamed temp file by one
//!   process, time per pair (ns, each pair timed, clock read included).
//! * `file-read-modify-write`: what a file-store update does to its file, minus its lock
//!   and its JSON: read the whole file (`std::fs::read`: open, statx, read, read, close),
//!   change a byte, write it to a temp file beside it (`std::fs::write`: open, write,
//!   close) and rename that over it, in a temp directory of the same file system as the
//!   store's, with as many bytes as the store's workloads hold; one process, time per
//!   update. The file store's figures are divided by it, not by a lock: file I/O and
//!   locks move apart from one machine (or day) to another.
//! * `atomic-increment-uncontended`, `atomic-increment-contended-2`, `-4`: fetch_add on
//!   one AtomicU64 in shared memory by 1 (this process), 2 or 4 forked processes
//!   (unpinned, timed first start to last end as the lock crowds are); time per
//!   increment of the whole crowd (ns), so lock ops/s divided by it is "lock operations
//!   per raw increment".
//! * `memcpy`: single-thread copy bandwidth of a buffer larger than the caches.
//! * `fork-exit`: fork, `_exit(0)` in the child, waitpid; `fork-exec`: fork, exec of this
//!   binary (which exits before main), waitpid. The floors for the two start methods.
//! * `unix-socket-task-handoff`, `unix-socket-task-handoff-2-workers`: a short task handed
//!   to worker processes started beforehand and its result back, one at a time and as a
//!   stream to 2 workers; the Pool's floor ([`handoff`]).
//! * `pipe-messaging`, `unix-socket-messaging`: what `perf bench sched messaging`
//!   (hackbench) does, with its parameters, for scripts/fidelity.sh ([`messaging`]).
//!
//! Latency baselines follow the workload convention (`fn(placement, iters) ->
//! RoundTrips`), so criterion (benches/calibration.rs) and `ipcbench bench` share them.
//! The timed loops use plain blocking system calls — a poll per read would add a system
//! call to the very figure being calibrated — and are bounded instead by a [`Deadman`]
//! that kills the peer if a run outlives its limit (the read then sees end of file).

use super::registry::Sample;
use super::workloads::crowd::{crowd_member, timed_crowd, CrowdArgs};
use super::workloads::process::{start_join_samples, StartKind};
use super::workloads::{cpus_for, pin, RoundTrips};
use crate::measure::MeasureError;
use crate::process::{self as proc, Child, Options, Pid, StartMethod};
use crate::register_entry;
use crate::results::Placement;
use crate::sys::futex;
use crate::sys::shm::{Shared, ShmSafe};
use serde::{Deserialize, Serialize};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub mod catalogue;
pub mod handoff;
pub mod messaging;

/// Name of the cache-line ping-pong between two processes: the floor of any shared-memory handoff.
pub const SHM_PINGPONG: &str = "shm-pingpong";
/// Name of the 1-byte pipe round trip: what the pipe and queue latencies are divided by.
pub const PIPE_ROUNDTRIP: &str = "pipe-roundtrip";
/// Name of the 1-byte Unix-socket round trip: the floor of a socket-based mechanism.
pub const UNIX_SOCKET_ROUNDTRIP: &str = "unix-socket-roundtrip";
/// Name of the memcpy bandwidth: the floor of moving a payload at all.
pub const MEMCPY: &str = "memcpy";
/// Name of fork + exit + wait: what starting a forked Process is divided by.
pub const FORK_EXIT: &str = "fork-exit";
/// Name of fork + exec + wait: what a spawned Process is divided by.
pub const FORK_EXEC: &str = "fork-exec";
/// Name of the Unix-socket request and reply: what a Manager call is divided by.
pub const UNIX_SOCKET_REQUEST_REPLY: &str = "unix-socket-request-reply";
/// Name of the futex wake round trip: the floor of a blocking lock or semaphore handoff.
pub const FUTEX_ROUNDTRIP: &str = "futex-roundtrip";
/// Name of the uncontended flock acquire and release: the floor of a flock lock.
pub const FLOCK_ACQUIRE_RELEASE: &str = "flock-acquire-release";
/// Name of the uncontended fcntl acquire and release: the floor of an fcntl lock.
pub const FCNTL_ACQUIRE_RELEASE: &str = "fcntl-acquire-release";
/// Name of the raw file read + temp-file write + rename: the floor of a file-store update.
pub const FILE_READ_MODIFY_WRITE: &str = "file-read-modify-write";
/// Name of the uncontended atomic increment: the floor of a shared counter.
pub const ATOMIC_INCREMENT_UNCONTENDED: &str = "atomic-increment-uncontended";

/// How long one calibration run may take before its peer is killed.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// Kills `pid` unless dropped within `limit`: the bound on a timed loop of plain blocking
/// system calls (the peer's death closes its ends, so the blocked read returns).
pub struct Deadman {
    disarm: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Deadman {
    /// The caller must keep `pid` unreaped (hold its `Child`) while the guard lives, so
    /// the pid cannot be reused by another process.
    pub fn arm(pid: Pid, limit: Duration) -> Deadman {
        let (disarm, disarmed) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("ipcbench-deadman".into())
            .spawn(move || {
                if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    disarmed.recv_timeout(limit)
                {
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                }
            })
            .ok();
        Deadman {
            disarm: Some(disarm),
            thread,
        }
    }
}

impl Drop for Deadman {
    fn drop(&mut self) {
        drop(self.disarm.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[derive(Serialize, Deserialize)]
struct EchoArgs {
    read_fd: RawFd,
    write_fd: RawFd,
    /// Bytes per message (1 for the byte round trips).
    size: usize,
}

/// Child side of the round trips: echo each `size`-byte message until end of file.
/// Returns how many messages it echoed.
fn echo_messages(args: EchoArgs) -> Result<u64, MeasureError> {
    let (read_fd, write_fd) = (args.read_fd, args.write_fd);
    serve(read_fd, write_fd, args.size.max(1), "echo", |_| Ok(()))
}

/// Reads `size`-byte messages until end of file, turns each into its reply in place with
/// `answer` and writes it back; returns how many it answered. `who` names the errors.
fn serve(
    read_fd: RawFd,
    write_fd: RawFd,
    size: usize,
    who: &str,
    mut answer: impl FnMut(&mut [u8]) -> Result<(), MeasureError>,
) -> Result<u64, MeasureError> {
    let mut message = vec![0u8; size];
    let mut answered = 0u64;
    loop {
        match read_full(read_fd, &mut message) {
            Ok(true) => {}
            Ok(false) => return Ok(answered),
            Err(e) => return Err(MeasureError::at(format!("{who} read"), e)),
        }
        answer(&mut message)?;
        write_full(write_fd, &message).map_err(|e| MeasureError::at(format!("{who} write"), e))?;
        answered += 1;
    }
}
register_entry!("calibration-echo", echo_messages);

/// Blocking read of exactly `buf.len()` bytes (one read(2) when they are all there);
/// false at end of file before the first byte, an error at end of file within.
fn read_full(fd: RawFd, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: reads at most `rest.len()` bytes into the live buffer `rest`.
        let n = unsafe { libc::read(fd, rest.as_mut_ptr().cast(), rest.len()) };
        match n {
            0 if filled == 0 => return Ok(false),
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n if n > 0 => filled += n as usize,
            _ => {
                let error = std::io::Error::last_os_error();
                if error.kind() != std::io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
        }
    }
    Ok(true)
}

/// Blocking write of all of `buf` (one write(2) unless it is cut short).
fn write_full(fd: RawFd, buf: &[u8]) -> std::io::Result<()> {
    let mut written = 0;
    while written < buf.len() {
        let rest = &buf[written..];
        // SAFETY: writes at most `rest.len()` bytes from the live buffer `rest`.
        let n = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
        if n > 0 {
            written += n as usize;
            continue;
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
    Ok(())
}

/// The two channels of a round trip or stream: (parent reads, parent writes, child
/// reads, child writes). For a socketpair the read and write fd of a side are the same.
struct ByteChannels {
    parent: (OwnedFd, Option<OwnedFd>),
    child: (OwnedFd, Option<OwnedFd>),
}

impl ByteChannels {
    /// The child's (read, write) fds.
    fn child_fds(&self) -> (RawFd, RawFd) {
        let read_fd = self.child.0.as_raw_fd();
        (
            read_fd,
            self.child.1.as_ref().map_or(read_fd, |fd| fd.as_raw_fd()),
        )
    }
}

fn pipe_channels() -> nix::Result<ByteChannels> {
    use nix::fcntl::OFlag;
    let (to_child_read, to_child_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let (to_parent_read, to_parent_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    Ok(ByteChannels {
        parent: (to_parent_read, Some(to_child_write)),
        child: (to_child_read, Some(to_parent_write)),
    })
}

fn socket_channels() -> nix::Result<ByteChannels> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    let (parent, child) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    Ok(ByteChannels {
        parent: (parent, None),
        child: (child, None),
    })
}

/// Starts `entry` on `cpu`, inheriting the child ends of `channels`.
fn start_peer(
    entry: &str,
    args: &impl Serialize,
    channels: &ByteChannels,
    cpu: Option<usize>,
) -> Result<Child, proc::ProcessError> {
    let (read_fd, write_fd) = channels.child_fds();
    let mut options = Options::new(entry)
        .method(StartMethod::Spawn)
        .daemon(true)
        .cpu(cpu)
        .inherit_fd(read_fd);
    if write_fd != read_fd {
        options = options.inherit_fd(write_fd);
    }
    proc::start(entry, args, options)
}

/// The parent's (read, write) fds of `parent`.
fn parent_fds(parent: &(OwnedFd, Option<OwnedFd>)) -> (RawFd, RawFd) {
    let read_fd = parent.0.as_raw_fd();
    (
        read_fd,
        parent.1.as_ref().map_or(read_fd, |fd| fd.as_raw_fd()),
    )
}

/// Starts `entry` on `cpu` with the child ends of `channels`, closes this process's
/// copies of them (they would hide the child's death) and arms a [`Deadman`] on the
/// child: the child, this process's ends and the guard.
fn start_armed(
    entry: &str,
    args: &impl Serialize,
    channels: ByteChannels,
    cpu: Option<usize>,
) -> (Child, (OwnedFd, Option<OwnedFd>), Deadman) {
    let child =
        start_peer(entry, args, &channels, cpu).unwrap_or_else(|e| panic!("start {entry}: {e}"));
    let ByteChannels { parent, .. } = channels;
    let deadman = Deadman::arm(child.pid(), RUN_LIMIT);
    (child, parent, deadman)
}

/// How many round trips one run times: `iters`, and for the core-to-core matrix also a
/// time bound (each of its many pairs gets a short slot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rounds {
    /// Round trips to time (at most, when there is a budget).
    pub iters: usize,
    /// Stop timing once this much time has passed (after at least one timed round); the
    /// warm-up gets a fifth of it.
    pub budget: Option<Duration>,
}

impl Rounds {
    /// Exactly `iters` round trips, with no time bound (every baseline but the matrix).
    pub fn count(iters: usize) -> Rounds {
        Rounds {
            iters,
            budget: None,
        }
    }
}

/// Runs a warm-up of a tenth of `rounds.iters` (at least 10), then times up to
/// `rounds.iters` rounds one by one. Returns the samples (ns) and how many rounds ran in
/// all, warm-up included, for the peer's count to be checked against.
fn timed_rounds(rounds: Rounds, mut round: impl FnMut()) -> (Vec<u64>, u64) {
    // The warm-up may take a fifth of the budget, the timed rounds the rest.
    let warm_budget = rounds.budget.map(|b| b / 5);
    let timed_budget = rounds.budget.map(|b| b - b / 5);
    let mut ran = 0u64;
    let warming = Instant::now();
    for _ in 0..(rounds.iters / 10).max(10) {
        round();
        ran += 1;
        if warm_budget.is_some_and(|b| warming.elapsed() >= b) {
            break;
        }
    }
    let timing = Instant::now();
    let mut samples_ns = Vec::with_capacity(rounds.iters);
    for _ in 0..rounds.iters {
        let started = Instant::now();
        round();
        samples_ns.push(started.elapsed().as_nanos() as u64);
        ran += 1;
        if timed_budget.is_some_and(|b| timing.elapsed() >= b) {
            break;
        }
    }
    (samples_ns, ran)
}

/// Times round trips of a `size`-byte message through an echo child over `channels`,
/// this process on `cpus.0` and the child on `cpus.1` (None: unpinned).
fn message_round_trips(
    channels: ByteChannels,
    size: usize,
    (parent_cpu, child_cpu): (Option<usize>, Option<usize>),
    rounds: Rounds,
) -> RoundTrips {
    let (read_fd, write_fd) = channels.child_fds();
    let args = EchoArgs {
        read_fd,
        write_fd,
        size,
    };
    let (mut child, parent, deadman) = start_armed("calibration-echo", &args, channels, child_cpu);
    let (read_fd, write_fd) = parent_fds(&parent);
    let _pinned = pin(parent_cpu);
    let mut message = vec![7u8; size.max(1)];
    let (samples_ns, ran) = timed_rounds(rounds, || {
        write_full(write_fd, &message).expect("write to echo child");
        assert!(
            read_full(read_fd, &mut message).expect("read from echo child"),
            "echo child ended early (killed after {RUN_LIMIT:?}, or crashed)"
        );
    });
    drop(parent); // end of file for the child: it returns how many messages it echoed
    let echoed: u64 = child
        .result(Some(Duration::from_secs(30)))
        .expect("echo child result");
    drop(deadman);
    assert_eq!(echoed, ran, "echo child saw a different number of messages");
    RoundTrips { samples_ns }
}

/// Raw 1-byte pipe round trip (two pipes, blocking read/write).
pub fn pipe_roundtrip(placement: Placement, iters: usize) -> RoundTrips {
    pipe_roundtrip_on(cpus_for(placement), Rounds::count(iters))
}

/// Raw 1-byte pipe round trip, this process on `cpus.0`, the echo child on `cpus.1`.
pub fn pipe_roundtrip_on(cpus: (Option<usize>, Option<usize>), rounds: Rounds) -> RoundTrips {
    message_round_trips(pipe_channels().expect("pipe2"), 1, cpus, rounds)
}

/// Raw 1-byte Unix stream socketpair round trip.
pub fn unix_socket_roundtrip(placement: Placement, iters: usize) -> RoundTrips {
    message_round_trips(
        socket_channels().expect("socketpair"),
        1,
        cpus_for(placement),
        Rounds::count(iters),
    )
}

/// Bytes each way of [`unix_socket_request_reply`].
pub const REQUEST_REPLY_BYTES: usize = 64;

/// Raw 64-byte request and 64-byte reply over a Unix stream socketpair (a Manager's
/// transport, a duplex `Connection`'s and a pool echo server's).
pub fn unix_socket_request_reply(placement: Placement, iters: usize) -> RoundTrips {
    message_round_trips(
        socket_channels().expect("socketpair"),
        REQUEST_REPLY_BYTES,
        cpus_for(placement),
        Rounds::count(iters),
    )
}

// ---- streams (lmbench bw_pipe / bw_unix) ----

/// Message sizes of the raw streams: those of the stream workloads.
pub const STREAM_SIZES: [u64; 4] = [64, 4 << 10, 64 << 10, 1 << 20];

/// The calibration name of the raw pipe stream of `size`-byte messages.
pub fn pipe_stream_name(size: u64) -> &'static str {
    match size {
        64 => "pipe-stream-64B",
        4096 => "pipe-stream-4KiB",
        65_536 => "pipe-stream-64KiB",
        1_048_576 => "pipe-stream-1MiB",
        _ => panic!("no raw pipe stream of {size}-byte messages"),
    }
}

/// The calibration name of the raw Unix-socket stream of `size`-byte messages.
pub fn unix_stream_name(size: u64) -> &'static str {
    match size {
        64 => "unix-stream-64B",
        4096 => "unix-stream-4KiB",
        65_536 => "unix-stream-64KiB",
        1_048_576 => "unix-stream-1MiB",
        _ => panic!("no raw Unix-socket stream of {size}-byte messages"),
    }
}

#[derive(Serialize, Deserialize)]
struct StreamArgs {
    read_fd: RawFd,
    write_fd: RawFd,
    size: usize,
    messages: u64,
}

/// Writer side of a raw stream: one "ready" byte, wait for the reader's "go" byte, then
/// `messages` writes of `size` bytes. Returns how many messages it wrote.
fn stream_writer(args: StreamArgs) -> Result<u64, MeasureError> {
    write_full(args.write_fd, &[1]).map_err(|e| MeasureError::at("stream ready", e))?;
    let mut go = [0u8; 1];
    if !read_full(args.read_fd, &mut go).map_err(|e| MeasureError::at("stream go", e))? {
        return Err(MeasureError::Failed("stream reader gone before go".into()));
    }
    let message = vec![0xa5u8; args.size.max(1)];
    for _ in 0..args.messages {
        write_full(args.write_fd, &message).map_err(|e| MeasureError::at("stream write", e))?;
    }
    Ok(args.messages)
}
register_entry!("calibration-stream-writer", stream_writer);

/// A writer child writes `messages` messages of `size` bytes, this process reads them
/// with reads of `size` bytes, as lmbench's bw_pipe/bw_unix. Timed from the "go" byte to
/// the last byte read (the writer's start-up is outside).
fn raw_stream(
    channels: ByteChannels,
    size: usize,
    placement: Placement,
    messages: usize,
) -> Sample {
    let (parent_cpu, child_cpu) = cpus_for(placement);
    let (read_fd, write_fd) = channels.child_fds();
    let args = StreamArgs {
        read_fd,
        write_fd,
        size,
        messages: messages as u64,
    };
    let (mut child, parent, deadman) =
        start_armed("calibration-stream-writer", &args, channels, child_cpu);
    let (read_fd, write_fd) = parent_fds(&parent);
    let _pinned = pin(parent_cpu);
    let mut buffer = vec![0u8; size.max(1)];
    let ended = "stream writer ended early (killed after the run limit, or crashed)";
    assert!(
        read_full(read_fd, &mut buffer[..1]).expect("stream ready"),
        "{ended}"
    );
    let started = Instant::now();
    write_full(write_fd, &[1]).expect("stream go");
    for _ in 0..messages {
        assert!(
            read_full(read_fd, &mut buffer).expect("stream read"),
            "{ended}"
        );
    }
    let elapsed = started.elapsed();
    drop(parent);
    let written: u64 = child
        .result(Some(Duration::from_secs(30)))
        .expect("stream writer result");
    drop(deadman);
    assert_eq!(
        written, messages as u64,
        "stream writer wrote a different count"
    );
    Sample::Moved {
        messages: messages as u64,
        bytes: (messages * size) as u64,
        elapsed,
    }
}

/// Raw pipe stream of `messages` messages of `size` bytes (one pipe each way: data, and
/// the go byte). The data pipe has the pipe Queue's capacity (1 MiB where the kernel
/// allows it): a default 64 KiB pipe is another kind, which the Queue outran at 64 KiB
/// and 1 MiB messages (1.5× and 1.8× "the raw pipe").
pub fn pipe_stream(size: usize, placement: Placement, messages: usize) -> Sample {
    raw_stream(queue_sized_pipe_channels(), size, placement, messages)
}

/// Pipe channels whose data pipe (child to parent) has the pipe Queue's capacity.
fn queue_sized_pipe_channels() -> ByteChannels {
    let channels = pipe_channels().expect("pipe2");
    crate::ipc::queue::pipe::widen_pipe(channels.parent.0.as_raw_fd());
    channels
}

/// Raw Unix stream socketpair stream of `messages` messages of `size` bytes.
pub fn unix_stream(size: usize, placement: Placement, messages: usize) -> Sample {
    raw_stream(
        socket_channels().expect("socketpair"),
        size,
        placement,
        messages,
    )
}

// ---- futex wake round trip ----

/// The ping word is at index 0, the pong word a cache line away.
type FutexWords = [AtomicU32; 32];
const PONG: usize = 16;
const FUTEX_STOP: u32 = u32::MAX;

/// Sleeps on `word` (no spinning) until `until` accepts its value; None at the deadline.
fn futex_until(word: &AtomicU32, deadline: Instant, until: impl Fn(u32) -> bool) -> Option<u32> {
    loop {
        let value = word.load(Ordering::Acquire);
        if until(value) {
            return Some(value);
        }
        if futex::wait(word, value, Some(deadline)) == futex::Wake::TimedOut {
            let value = word.load(Ordering::Acquire);
            return until(value).then_some(value);
        }
    }
}

/// Responder of the futex round trip: sleeps until ping changes, copies it to pong and
/// wakes the initiator.
fn futex_responder(args: PingPongArgs) -> Result<u64, MeasureError> {
    let words = Shared::<FutexWords>::open(&args.segment)?;
    let deadline = Instant::now() + Duration::from_millis(args.limit_ms);
    let (ping, pong) = (&words[0], &words[PONG]);
    let mut last = 0u32;
    let mut answered = 0u64;
    loop {
        let value = futex_until(ping, deadline, |v| v != last).ok_or_else(|| {
            MeasureError::Failed("futex responder: no ping before its deadline".into())
        })?;
        if value == FUTEX_STOP {
            return Ok(answered);
        }
        pong.store(value, Ordering::Release);
        futex::wake(pong, 1);
        last = value;
        answered += 1;
    }
}
register_entry!("calibration-futex", futex_responder);

/// Raw futex wake round trip: each process sleeps in FUTEX_WAIT on its word in shared
/// memory and is woken by the other's store + FUTEX_WAKE. No spinning.
pub fn futex_roundtrip(placement: Placement, iters: usize) -> RoundTrips {
    let mut next = 1u32;
    shm_round_trips::<FutexWords>(
        "calibration-futex",
        "futex-rt",
        cpus_for(placement),
        Rounds::count(iters),
        |words, deadline| {
            let (ping, pong) = (&words[0], &words[PONG]);
            ping.store(next, Ordering::Release);
            futex::wake(ping, 1);
            futex_until(pong, deadline, |v| v == next)
                .expect("futex responder did not answer before the deadline");
            next += 1;
        },
        |words| {
            words[0].store(FUTEX_STOP, Ordering::Release);
            futex::wake(&words[0], 1);
        },
    )
}

/// What the shared-memory round trips share: start `entry` as the responder on `cpus.1`
/// over a fresh segment of `T`, pin this thread to `cpus.0`, run the [`timed_rounds`],
/// stop the responder and check that it answered every round.
fn shm_round_trips<T: ShmSafe>(
    entry: &str,
    tag: &str,
    (parent_cpu, child_cpu): (Option<usize>, Option<usize>),
    rounds: Rounds,
    mut round: impl FnMut(&T, Instant),
    stop: impl FnOnce(&T),
) -> RoundTrips {
    let segment = Shared::<T>::create(tag, 0).expect("create the round trip's segment");
    let mut child = proc::start(
        entry,
        &PingPongArgs {
            segment: segment.name().to_string(),
            limit_ms: RUN_LIMIT.as_millis() as u64,
        },
        Options::new(entry)
            .method(StartMethod::Spawn)
            .daemon(true)
            .cpu(child_cpu),
    )
    .unwrap_or_else(|e| panic!("start {entry}: {e}"));
    let _pinned = pin(parent_cpu);
    let deadline = Instant::now() + RUN_LIMIT;
    let (samples_ns, ran) = timed_rounds(rounds, || round(&segment, deadline));
    stop(&segment);
    let answered: u64 = child
        .result(Some(Duration::from_secs(30)))
        .unwrap_or_else(|e| panic!("{entry} result: {e}"));
    assert_eq!(answered, ran, "{entry} answers");
    RoundTrips { samples_ns }
}

// ---- file locks ----

/// Which raw file lock [`file_lock_acquire_release`] takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileLock {
    /// flock(LOCK_EX) / flock(LOCK_UN).
    Flock,
    /// fcntl(F_SETLKW, F_WRLCK) / fcntl(F_SETLK, F_UNLCK) over the whole file.
    Fcntl,
}

fn whole_file(kind: libc::c_short) -> libc::flock {
    // SAFETY: flock is plain data; all zeroes is a valid value (whence SEEK_SET = 0).
    let mut spec: libc::flock = unsafe { std::mem::zeroed() };
    spec.l_type = kind;
    spec.l_whence = libc::SEEK_SET as libc::c_short;
    spec
}

fn lock_op(fd: RawFd, lock: FileLock, acquire: bool) -> std::io::Result<()> {
    loop {
        let r = match (lock, acquire) {
            // SAFETY: flock on an fd this process owns; no memory is passed.
            (FileLock::Flock, true) => unsafe { libc::flock(fd, libc::LOCK_EX) },
            // SAFETY: as above.
            (FileLock::Flock, false) => unsafe { libc::flock(fd, libc::LOCK_UN) },
            (FileLock::Fcntl, true) => {
                let spec = whole_file(libc::F_WRLCK as libc::c_short);
                // SAFETY: F_SETLKW reads one valid flock struct; the fd is ours.
                unsafe { libc::fcntl(fd, libc::F_SETLKW, &spec) }
            }
            (FileLock::Fcntl, false) => {
                let spec = whole_file(libc::F_UNLCK as libc::c_short);
                // SAFETY: F_SETLK reads one valid flock struct; the fd is ours.
                unsafe { libc::fcntl(fd, libc::F_SETLK, &spec) }
            }
        };
        if r == 0 {
            return Ok(());
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// Raw uncontended lock + unlock of an unnamed temp file by this process alone, each
/// pair timed (the clock read, some tens of ns, is inside the figure), after a warm-up
/// of a tenth as many (at least 10).
pub fn file_lock_acquire_release(lock: FileLock, iters: usize) -> RoundTrips {
    use std::os::fd::AsRawFd as _;
    let file = tempfile::tempfile().expect("temp file"); // unnamed: nothing to clean up
    let fd = file.as_raw_fd();
    let pair = || {
        lock_op(fd, lock, true).expect("lock");
        lock_op(fd, lock, false).expect("unlock");
    };
    for _ in 0..(iters / 10).max(10) {
        pair();
    }
    let samples_ns = (0..iters)
        .map(|_| {
            let started = Instant::now();
            pair();
            started.elapsed().as_nanos() as u64
        })
        .collect();
    RoundTrips { samples_ns }
}

// ---- file read-modify-write ----

/// Raw read-modify-write of a small file by this process alone, as the file store does
/// it minus its lock and its encoding: `std::fs::read` of the whole file, one byte
/// changed, `std::fs::write` of a temp file beside it, `rename(2)` of that over the file
/// (the same system calls, in the same order, on the same file system: a tracked temp
/// directory, removed at the end). The file holds `content` (the store's bytes). Each
/// update timed, after a warm-up of a tenth as many (at least 10).
pub fn file_read_modify_write(content: &[u8], iters: usize) -> RoundTrips {
    let dir = crate::process::hygiene::temp_dir().expect("temp directory");
    let path = dir.join("store.json");
    let temp = dir.join(format!("store.json.tmp-{}", std::process::id()));
    let run = || -> std::io::Result<Vec<u64>> {
        std::fs::write(&path, content)?;
        let update = || -> std::io::Result<()> {
            let mut bytes = std::fs::read(&path)?;
            // The change: the last digit counts on, so the file keeps the store's length.
            if let Some(digit) = bytes.iter_mut().rev().find(|b| b.is_ascii_digit()) {
                *digit = b'0' + (*digit - b'0' + 1) % 10;
            }
            std::fs::write(&temp, &bytes)?;
            std::fs::rename(&temp, &path)
        };
        for _ in 0..(iters / 10).max(10) {
            update()?;
        }
        (0..iters)
            .map(|_| {
                let started = Instant::now();
                update()?;
                Ok(started.elapsed().as_nanos() as u64)
            })
            .collect()
    };
    let samples = run();
    crate::process::hygiene::remove_temp(&dir);
    RoundTrips {
        samples_ns: samples.expect("raw file read-modify-write"),
    }
}

// ---- contended atomic increment ----

fn increment_member(args: CrowdArgs<String>) -> Result<(), MeasureError> {
    crowd_member(
        args,
        |segment| Shared::<AtomicU64>::open(segment).map_err(MeasureError::from),
        |cell| {
            cell.fetch_add(1, Ordering::AcqRel);
            Ok(())
        },
    )
}
register_entry!("calibration-increment", increment_member);

/// Time for `ops` fetch_adds on one AtomicU64 in shared memory, shared among `processes`
/// forked processes (unpinned), timed first start to last end as the lock crowds are;
/// 1 process: this one alone.
pub fn atomic_increments(processes: usize, ops: usize) -> Duration {
    let cell = Shared::<AtomicU64>::create("increment", 0).expect("create shm cell");
    let elapsed = if processes <= 1 {
        let started = Instant::now();
        for _ in 0..ops {
            std::hint::black_box(&*cell).fetch_add(1, Ordering::AcqRel);
        }
        started.elapsed()
    } else {
        timed_crowd(
            "calibration-increment",
            &cell.name().to_string(),
            processes,
            ops,
        )
    };
    assert_eq!(cell.load(Ordering::SeqCst), ops as u64, "increments lost");
    elapsed
}

/// The calibration name of `processes` processes incrementing one atomic.
pub fn atomic_increment_name(processes: u32) -> &'static str {
    match processes {
        1 => ATOMIC_INCREMENT_UNCONTENDED,
        2 => "atomic-increment-contended-2",
        4 => "atomic-increment-contended-4",
        _ => panic!("no atomic-increment calibration for {processes} processes"),
    }
}

/// One figure, time per operation, from a run of `ops` operations that took `elapsed`.
pub fn per_op(elapsed: Duration, ops: usize) -> RoundTrips {
    RoundTrips {
        samples_ns: vec![(elapsed.as_nanos() as f64 / ops.max(1) as f64).round() as u64],
    }
}

/// Value the initiator writes to tell the responder to stop.
const STOP: u64 = u64::MAX;

#[derive(Serialize, Deserialize)]
struct PingPongArgs {
    segment: String,
    limit_ms: u64,
}

/// Spins until `check` accepts the value in `cell`, yielding the CPU after a while so a
/// peer on the same CPU (or an overloaded machine) still gets to run. None on deadline.
fn spin_until(cell: &AtomicU64, deadline: Instant, check: impl Fn(u64) -> bool) -> Option<u64> {
    let mut spins = 0u64;
    loop {
        let value = cell.load(Ordering::Acquire);
        if check(value) {
            return Some(value);
        }
        spins += 1;
        if spins.is_multiple_of(4096) {
            if Instant::now() >= deadline {
                return None;
            }
            if spins >= 65_536 {
                // SAFETY: sched_yield has no arguments and no memory effects.
                unsafe { libc::sched_yield() };
            }
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Responder of the cache-line ping-pong: answers each odd value with the next even one.
fn pingpong_responder(args: PingPongArgs) -> Result<u64, MeasureError> {
    let cell = Shared::<AtomicU64>::open(&args.segment)?;
    let deadline = Instant::now() + Duration::from_millis(args.limit_ms);
    let mut answered = 0u64;
    loop {
        let value = spin_until(&cell, deadline, |v| v % 2 == 1).ok_or_else(|| {
            MeasureError::Failed("ping-pong responder: no ping before its deadline".into())
        })?;
        if value == STOP {
            return Ok(answered);
        }
        cell.store(value + 1, Ordering::Release);
        answered += 1;
    }
}
register_entry!("calibration-pingpong", pingpong_responder);

/// Raw cross-process cache-line ping-pong round trip over shared memory, both sides
/// spinning.
pub fn shm_pingpong(placement: Placement, iters: usize) -> RoundTrips {
    shm_pingpong_on(cpus_for(placement), Rounds::count(iters))
}

/// The cache-line ping-pong with this process on `cpus.0` and the responder on `cpus.1`
/// (the core-to-core matrix's cells).
pub fn shm_pingpong_on(cpus: (Option<usize>, Option<usize>), rounds: Rounds) -> RoundTrips {
    let mut next = 1u64;
    shm_round_trips::<AtomicU64>(
        "calibration-pingpong",
        "pingpong",
        cpus,
        rounds,
        |cell, deadline| {
            cell.store(next, Ordering::Release);
            let answer = next + 1;
            spin_until(cell, deadline, |v| v == answer)
                .expect("ping-pong responder did not answer before the deadline");
            next += 2;
        },
        |cell| cell.store(STOP, Ordering::Release),
    )
}

/// Copies a 32 MiB buffer (larger than the caches) `copies` times; returns bytes/s.
pub fn memcpy_bandwidth(copies: usize) -> f64 {
    const BYTES: usize = 32 << 20;
    let source = vec![0x5au8; BYTES];
    let mut target = vec![0u8; BYTES];
    target.copy_from_slice(&source); // fault the pages in before timing
    let started = Instant::now();
    for _ in 0..copies {
        target.copy_from_slice(std::hint::black_box(&source));
        std::hint::black_box(&mut target);
    }
    (BYTES * copies) as f64 / started.elapsed().as_secs_f64()
}

/// Raw fork + `_exit(0)` + waitpid, one sample per child.
pub fn fork_exit(iters: usize) -> RoundTrips {
    start_join_samples(StartKind::RawForkExit, iters)
}

/// Raw fork + exec of this binary (exiting before main) + waitpid, one sample per child.
pub fn fork_exec(iters: usize) -> RoundTrips {
    start_join_samples(StartKind::RawForkExec, iters)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The raw pipe stream's data pipe is as large as the pipe Queue's (where the kernel
    /// allows it): a default 64 KiB pipe made the Queue look faster than "the raw pipe".
    #[test]
    fn the_raw_pipe_stream_has_the_queues_pipe_size() {
        let max: usize = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        let want = crate::ipc::queue::pipe::PIPE_CAPACITY;
        let channels = queue_sized_pipe_channels();
        // SAFETY: F_GETPIPE_SZ only reads the size of a pipe this test owns.
        let size = unsafe { libc::fcntl(channels.parent.0.as_raw_fd(), libc::F_GETPIPE_SZ) };
        if max >= want {
            assert_eq!(size as usize, want);
        } else {
            assert!(size > 0, "F_GETPIPE_SZ failed");
        }
    }
    use crate::process::hygiene::Snapshot;

    /// Every helper moves exactly what it says and leaves nothing behind (fds, shared
    /// memory, temp files, processes); no timing is asserted.
    #[test]
    fn round_trips_count_and_leave_nothing() {
        let _serial = crate::process::tests_serial();
        let before = Snapshot::take();
        for placement in [Placement::SameCpu, Placement::CrossCpu] {
            assert_eq!(pipe_roundtrip(placement, 50).samples_ns.len(), 50);
            assert_eq!(unix_socket_roundtrip(placement, 50).samples_ns.len(), 50);
        }
        assert_eq!(shm_pingpong(Placement::CrossCpu, 50).samples_ns.len(), 50);
        for placement in [Placement::SameCpu, Placement::CrossCpu] {
            assert_eq!(futex_roundtrip(placement, 50).samples_ns.len(), 50);
            assert_eq!(
                unix_socket_request_reply(placement, 50).samples_ns.len(),
                50
            );
        }
        for size in STREAM_SIZES {
            let messages = 8;
            for sample in [
                pipe_stream(size as usize, Placement::Unpinned, messages),
                unix_stream(size as usize, Placement::Unpinned, messages),
            ] {
                let Sample::Moved {
                    messages: moved,
                    bytes,
                    ..
                } = sample
                else {
                    panic!("a stream gives a volume");
                };
                assert_eq!((moved, bytes), (8, 8 * size));
            }
        }
        for lock in [FileLock::Flock, FileLock::Fcntl] {
            assert_eq!(file_lock_acquire_release(lock, 50).samples_ns.len(), 50);
        }
        assert_eq!(
            file_read_modify_write(b"{\n  \"sold\": 0\n}", 20)
                .samples_ns
                .len(),
            20
        );
        for processes in [1, 2, 4] {
            // atomic_increments asserts that no increment was lost.
            let elapsed = atomic_increments(processes, 10_000);
            assert_eq!(per_op(elapsed, 10_000).samples_ns.len(), 1);
        }
        assert_eq!(fork_exit(3).samples_ns.len(), 3);
        // Each checks every task's result and every worker's count itself.
        assert_eq!(handoff::task_handoff(50).samples_ns.len(), 50);
        for workers in [1, 2, 3] {
            let _ = handoff::task_stream(workers, 7);
        }
        for transport in [messaging::Transport::Pipe, messaging::Transport::UnixSocket] {
            // messaging asserts that every message sent was received.
            let run = messaging::messaging(transport, 1, 2);
            assert_eq!(run.samples_ns.len(), 1);
            assert!(run.samples_ns[0] > 0);
        }
        assert!(memcpy_bandwidth(1) > 0.0);
        // A time bound stops the run long before its count: 50 million pipe round trips
        // cannot fit in 20 ms (0.4 ns each); the echo child still answered each round.
        let bounded = Rounds {
            iters: 50_000_000,
            budget: Some(Duration::from_millis(20)),
        };
        let trips = pipe_roundtrip_on(cpus_for(Placement::SameCpu), bounded);
        assert!((1..50_000_000).contains(&trips.samples_ns.len()));
        let leaks = before.leaks_since();
        assert!(leaks.is_empty(), "{leaks:?}");
    }
}
