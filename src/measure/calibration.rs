//! Raw baselines, measured in the same run as everything else: what the machine can do
//! with no library in the way. Every other figure is also given as a ratio to one of
//! these, which is what makes runs comparable across machines (and what `compare` gates).
//!
//! * `shm-pingpong`: two processes spinning on one cache line in shared memory; the floor
//!   for any hand-off (cross-CPU only: two spinners on one CPU measure the scheduler).
//! * `pipe-roundtrip`: 1 byte there and back over two pipes, plain blocking read/write,
//!   as `perf bench sched pipe` and lmbench's lat_pipe do (scripts/fidelity.sh compares).
//! * `unix-socket-roundtrip`: the same over a socketpair (what a Manager's RPC rides on).
//! * `memcpy`: single-thread copy bandwidth of a buffer larger than the caches.
//! * `fork-exit`: fork, `_exit(0)` in the child, waitpid; `fork-exec`: fork, exec of this
//!   binary (which exits before main), waitpid. The floors for the two start methods.
//!
//! Latency baselines follow the workload convention (`fn(placement, iters) ->
//! RoundTrips`), so criterion (benches/calibration.rs) and `ipcbench bench` share them.
//! The timed loops use plain blocking system calls — a poll per read would add a system
//! call to the very figure being calibrated — and are bounded instead by a [`Deadman`]
//! that kills the peer if a run outlives its limit (the read then sees end of file).

use super::workloads::process::{start_join_samples, StartKind};
use super::workloads::{cpus_for, pin, RoundTrips};
use crate::ipc::shm::Shared;
use crate::process::{self as proc, Child, Options, Pid, StartMethod};
use crate::register_entry;
use crate::report::model::Placement;
use serde::{Deserialize, Serialize};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub const SHM_PINGPONG: &str = "shm-pingpong";
pub const PIPE_ROUNDTRIP: &str = "pipe-roundtrip";
pub const UNIX_SOCKET_ROUNDTRIP: &str = "unix-socket-roundtrip";
pub const MEMCPY: &str = "memcpy";
pub const FORK_EXIT: &str = "fork-exit";
pub const FORK_EXEC: &str = "fork-exec";

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
}

/// Child side of the byte round trips: echo each byte until end of file. Returns how many
/// bytes it echoed.
fn echo_bytes(args: EchoArgs) -> Result<u64, String> {
    let mut byte = [0u8; 1];
    let mut echoed = 0u64;
    loop {
        match read_byte(args.read_fd, &mut byte) {
            Ok(true) => {}
            Ok(false) => return Ok(echoed),
            Err(e) => return Err(format!("echo read: {e}")),
        }
        write_byte(args.write_fd, &byte).map_err(|e| format!("echo write: {e}"))?;
        echoed += 1;
    }
}
register_entry!("calibration-echo", echo_bytes);

/// Blocking 1-byte read; false at end of file.
fn read_byte(fd: RawFd, byte: &mut [u8; 1]) -> std::io::Result<bool> {
    loop {
        // SAFETY: reads at most 1 byte into a live 1-byte buffer.
        let n = unsafe { libc::read(fd, byte.as_mut_ptr().cast(), 1) };
        match n {
            1 => return Ok(true),
            0 => return Ok(false),
            _ => {
                let error = std::io::Error::last_os_error();
                if error.kind() != std::io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
        }
    }
}

fn write_byte(fd: RawFd, byte: &[u8; 1]) -> std::io::Result<()> {
    loop {
        // SAFETY: writes 1 byte from a live 1-byte buffer.
        let n = unsafe { libc::write(fd, byte.as_ptr().cast(), 1) };
        if n == 1 {
            return Ok(());
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// The two channels of a byte round trip: (parent reads, parent writes, child reads,
/// child writes). For a socketpair the read and write fd of a side are the same.
struct ByteChannels {
    parent: (OwnedFd, Option<OwnedFd>),
    child: (OwnedFd, Option<OwnedFd>),
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

fn start_echo(channels: &ByteChannels, cpu: Option<usize>) -> Result<Child, proc::ProcessError> {
    let read_fd = channels.child.0.as_raw_fd();
    let write_fd = channels
        .child
        .1
        .as_ref()
        .map_or(read_fd, |fd| fd.as_raw_fd());
    let mut options = Options::new("calibration-echo")
        .method(StartMethod::Spawn)
        .daemon(true)
        .cpu(cpu)
        .inherit_fd(read_fd);
    if write_fd != read_fd {
        options = options.inherit_fd(write_fd);
    }
    proc::start("calibration-echo", &EchoArgs { read_fd, write_fd }, options)
}

/// Times `iters` 1-byte round trips through an echo child over `channels`, after a
/// warm-up of a tenth as many (at least 10).
fn byte_round_trips(channels: ByteChannels, placement: Placement, iters: usize) -> RoundTrips {
    let (parent_cpu, child_cpu) = cpus_for(placement);
    let mut child = start_echo(&channels, child_cpu).expect("start echo child");
    let ByteChannels {
        parent,
        child: child_ends,
    } = channels;
    drop(child_ends); // the child holds its own copies; ours would hide its death
    let read_fd = parent.0.as_raw_fd();
    let write_fd = parent.1.as_ref().map_or(read_fd, |fd| fd.as_raw_fd());
    let deadman = Deadman::arm(child.pid(), RUN_LIMIT);
    let _pinned = pin(parent_cpu);
    let mut byte = [7u8; 1];
    let round_trip = |byte: &mut [u8; 1]| {
        write_byte(write_fd, byte).expect("write to echo child");
        assert!(
            read_byte(read_fd, byte).expect("read from echo child"),
            "echo child ended early (killed after {RUN_LIMIT:?}, or crashed)"
        );
    };
    for _ in 0..(iters / 10).max(10) {
        round_trip(&mut byte);
    }
    let mut samples_ns = Vec::with_capacity(iters);
    for _ in 0..iters {
        let started = Instant::now();
        round_trip(&mut byte);
        samples_ns.push(started.elapsed().as_nanos() as u64);
    }
    drop(parent); // end of file for the child: it returns how many bytes it echoed
    let echoed: u64 = child
        .result(Some(Duration::from_secs(30)))
        .expect("echo child result");
    drop(deadman);
    let expected = (iters + (iters / 10).max(10)) as u64;
    assert_eq!(
        echoed, expected,
        "echo child saw a different number of bytes"
    );
    RoundTrips { samples_ns }
}

/// Raw 1-byte pipe round trip (two pipes, blocking read/write).
pub fn pipe_roundtrip(placement: Placement, iters: usize) -> RoundTrips {
    byte_round_trips(pipe_channels().expect("pipe2"), placement, iters)
}

/// Raw 1-byte Unix stream socketpair round trip.
pub fn unix_socket_roundtrip(placement: Placement, iters: usize) -> RoundTrips {
    byte_round_trips(socket_channels().expect("socketpair"), placement, iters)
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
fn pingpong_responder(args: PingPongArgs) -> Result<u64, String> {
    let cell = Shared::<AtomicU64>::open(&args.segment).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_millis(args.limit_ms);
    let mut answered = 0u64;
    loop {
        let value = spin_until(&cell, deadline, |v| v % 2 == 1)
            .ok_or("ping-pong responder: no ping before its deadline")?;
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
    let (parent_cpu, child_cpu) = cpus_for(placement);
    let cell = Shared::<AtomicU64>::create("pingpong", 0).expect("create shm cell");
    let mut child = proc::start(
        "calibration-pingpong",
        &PingPongArgs {
            segment: cell.name().to_string(),
            limit_ms: RUN_LIMIT.as_millis() as u64,
        },
        Options::new("calibration-pingpong")
            .method(StartMethod::Spawn)
            .daemon(true)
            .cpu(child_cpu),
    )
    .expect("start ping-pong responder");
    let _pinned = pin(parent_cpu);
    let deadline = Instant::now() + RUN_LIMIT;
    let mut next = 1u64;
    let mut round_trip = || {
        cell.store(next, Ordering::Release);
        let answer = next + 1;
        spin_until(&cell, deadline, |v| v == answer)
            .expect("ping-pong responder did not answer before the deadline");
        next += 2;
    };
    for _ in 0..(iters / 10).max(10) {
        round_trip();
    }
    let mut samples_ns = Vec::with_capacity(iters);
    for _ in 0..iters {
        let started = Instant::now();
        round_trip();
        samples_ns.push(started.elapsed().as_nanos() as u64);
    }
    cell.store(STOP, Ordering::Release);
    let answered: u64 = child
        .result(Some(Duration::from_secs(30)))
        .expect("ping-pong responder result");
    assert_eq!(answered, (iters + (iters / 10).max(10)) as u64);
    RoundTrips { samples_ns }
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
    use crate::process::hygiene::Snapshot;

    /// Both latency helpers move exactly the bytes they say and leave nothing behind;
    /// no timing is asserted.
    #[test]
    fn round_trips_count_and_leave_nothing() {
        let _serial = crate::process::tests_serial();
        let before = Snapshot::take();
        for placement in [Placement::SameCpu, Placement::CrossCpu] {
            assert_eq!(pipe_roundtrip(placement, 50).samples_ns.len(), 50);
            assert_eq!(unix_socket_roundtrip(placement, 50).samples_ns.len(), 50);
        }
        assert_eq!(shm_pingpong(Placement::CrossCpu, 50).samples_ns.len(), 50);
        assert_eq!(fork_exit(3).samples_ns.len(), 3);
        assert!(memcpy_bandwidth(1) > 0.0);
        let leaks = before.leaks_since();
        assert!(leaks.is_empty(), "{leaks:?}");
    }
}
