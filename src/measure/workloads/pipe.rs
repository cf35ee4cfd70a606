//! Pipe workloads: framed `Connection` round trips and streams for each `PipeKind`, and
//! the raw baselines they are compared with in the same run — a bare pipe(2) 1-byte
//! round trip, a shared-memory cache-line ping-pong, and memcpy bandwidth. The raw ones
//! are small public functions so that calibration code can call them rather than copy
//! them.

use super::{cpus_for, pin, RoundTrips};
use crate::ipc::pipe::{pipe, Connection, ConnectionHandle, PipeKind};
use crate::ipc::shm::Shared;
use crate::process::{self as proc, Child, Options};
use crate::register_entry;
use crate::report::model::Placement;
use serde::Serialize;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Bound on any one workload's child; a workload that takes longer is broken, not slow.
const CHILD_LIMIT: Duration = Duration::from_secs(120);

fn start(entry: &str, args: &impl Serialize, fds: &[RawFd], cpu: Option<usize>) -> Child {
    let options = fds
        .iter()
        .fold(Options::new(entry).cpu(cpu), |o, &fd| o.inherit_fd(fd));
    proc::start(entry, args, options).unwrap_or_else(|e| panic!("workload child {entry}: {e}"))
}

fn finish(mut child: Child) {
    if let Err(e) = child.result::<()>(Some(CHILD_LIMIT)) {
        panic!("workload child failed: {e}");
    }
}

// ---- framed Connection ----

fn echo(handle: ConnectionHandle) -> Result<(), String> {
    let conn = Connection::adopt(handle).map_err(|e| e.to_string())?;
    loop {
        match conn.recv_bytes() {
            Ok(message) => conn.send_bytes(&message).map_err(|e| e.to_string())?,
            Err(e) if e.is_eof() => return Ok(()),
            Err(e) => return Err(e.to_string()),
        }
    }
}
register_entry!("workload-pipe-echo", echo);

/// Round trips of a `payload`-byte message through a child that echoes it back. Simplex
/// uses two pipes (one each way), as Python's `Pipe(duplex=False)` users do.
pub fn round_trip(
    kind: PipeKind,
    payload: usize,
    placement: Placement,
    iters: usize,
) -> RoundTrips {
    let (mine, cpu) = cpus_for(placement);
    let _pin = pin(mine);
    let message = vec![0x5au8; payload];
    let mut samples_ns = Vec::with_capacity(iters);
    let mut time = |send: &Connection, recv: &Connection| {
        for _ in 0..iters {
            let t = Instant::now();
            send.send_bytes(&message).expect("send");
            let back = recv.recv_bytes().expect("recv");
            samples_ns.push(t.elapsed().as_nanos() as u64);
            debug_assert_eq!(back.len(), payload);
        }
    };
    match kind {
        PipeKind::Duplex => {
            let (parent, child_end) = pipe(kind).expect("socketpair");
            let handle = child_end.handle().expect("handle");
            let child = start("workload-pipe-echo", &handle, &[handle.fd], cpu);
            drop(child_end);
            time(&parent, &parent);
            drop(parent);
            finish(child);
        }
        PipeKind::Simplex => {
            // One pipe each way; the child echoes from the first to the second.
            let (to_child_r, to_child_w) = pipe(kind).expect("pipe");
            let (from_child_r, from_child_w) = pipe(kind).expect("pipe");
            let args = (
                to_child_r.handle().expect("h"),
                from_child_w.handle().expect("h"),
            );
            let child = start(
                "workload-pipe-echo-simplex",
                &args,
                &[args.0.fd, args.1.fd],
                cpu,
            );
            drop((to_child_r, from_child_w));
            time(&to_child_w, &from_child_r);
            drop(to_child_w);
            finish(child);
        }
    }
    RoundTrips { samples_ns }
}

fn echo_simplex(handles: (ConnectionHandle, ConnectionHandle)) -> Result<(), String> {
    let input = Connection::adopt(handles.0).map_err(|e| e.to_string())?;
    let output = Connection::adopt(handles.1).map_err(|e| e.to_string())?;
    loop {
        match input.recv_bytes() {
            Ok(message) => output.send_bytes(&message).map_err(|e| e.to_string())?,
            Err(e) if e.is_eof() => return Ok(()),
            Err(e) => return Err(e.to_string()),
        }
    }
}
register_entry!("workload-pipe-echo-simplex", echo_simplex);

fn drain(handle: ConnectionHandle) -> Result<(), String> {
    let conn = Connection::adopt(handle).map_err(|e| e.to_string())?;
    let mut count = 0u64;
    loop {
        match conn.recv_bytes() {
            Ok(message) if message.is_empty() => break,
            Ok(_) => count += 1,
            Err(e) => return Err(e.to_string()),
        }
    }
    conn.send(&count).map_err(|e| e.to_string())
}
register_entry!("workload-pipe-drain", drain);

/// Time to stream `messages` messages of `size` bytes (size >= 1) to a child, until it
/// acknowledges the last one. Over a duplex pipe (the ack needs the way back).
pub fn throughput(size: usize, messages: usize, placement: Placement) -> Duration {
    let (mine, cpu) = cpus_for(placement);
    let _pin = pin(mine);
    let (parent, child_end) = pipe(PipeKind::Duplex).expect("socketpair");
    let handle = child_end.handle().expect("handle");
    let child = start("workload-pipe-drain", &handle, &[handle.fd], cpu);
    drop(child_end);
    let message = vec![0xa5u8; size.max(1)];
    let t = Instant::now();
    for _ in 0..messages {
        parent.send_bytes(&message).expect("send");
    }
    parent.send_bytes(&[]).expect("end marker");
    let count: u64 = parent.recv().expect("ack");
    let elapsed = t.elapsed();
    assert_eq!(count as usize, messages, "messages lost in the stream");
    drop(parent);
    finish(child);
    elapsed
}

// ---- raw baselines ----

fn raw_pipe_pair() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe2")
}

fn raw_echo(fds: (RawFd, RawFd)) -> Result<(), String> {
    let mut byte = [0u8; 1];
    loop {
        // SAFETY: fds inherited from the parent for this child's use; one-byte buffer.
        let n = unsafe { libc::read(fds.0, byte.as_mut_ptr().cast(), 1) };
        if n <= 0 {
            return Ok(()); // EOF: the parent is done
        }
        // SAFETY: as above.
        if unsafe { libc::write(fds.1, byte.as_ptr().cast(), 1) } != 1 {
            return Err("raw echo write failed".into());
        }
    }
}
register_entry!("workload-raw-pipe-echo", raw_echo);

/// Calibration: 1-byte round trip over two bare blocking pipe(2)s (as lmbench lat_pipe):
/// no framing, no poll, no checksum.
pub fn raw_pipe_round_trip(placement: Placement, iters: usize) -> RoundTrips {
    let (mine, cpu) = cpus_for(placement);
    let _pin = pin(mine);
    let (to_child_r, to_child_w) = raw_pipe_pair();
    let (from_child_r, from_child_w) = raw_pipe_pair();
    let fds = (to_child_r.as_raw_fd(), from_child_w.as_raw_fd());
    let child = start("workload-raw-pipe-echo", &fds, &[fds.0, fds.1], cpu);
    drop((to_child_r, from_child_w));
    let mut samples_ns = Vec::with_capacity(iters);
    let mut byte = [7u8; 1];
    for _ in 0..iters {
        let t = Instant::now();
        // SAFETY: writes/reads one byte through fds we own.
        unsafe {
            assert_eq!(
                libc::write(to_child_w.as_raw_fd(), byte.as_ptr().cast(), 1),
                1
            );
            assert_eq!(
                libc::read(from_child_r.as_raw_fd(), byte.as_mut_ptr().cast(), 1),
                1
            );
        }
        samples_ns.push(t.elapsed().as_nanos() as u64);
    }
    drop(to_child_w);
    finish(child);
    RoundTrips { samples_ns }
}

/// The ping-pong line: the parent writes odd values, the child answers with the next
/// even one; `STOP` ends the child.
#[repr(C, align(64))]
#[derive(Default)]
pub struct PingPongLine(AtomicU64);
// SAFETY: one atomic; zero is valid.
unsafe impl crate::ipc::shm::ShmSafe for PingPongLine {}

const STOP: u64 = u64::MAX;

/// Spins until `line` satisfies `ready`, yielding the CPU now and then so that two
/// spinners pinned to one CPU still make progress; gives up after `limit`.
fn spin_until(line: &AtomicU64, limit: Instant, ready: impl Fn(u64) -> bool) -> Option<u64> {
    let mut spins = 0u32;
    loop {
        let v = line.load(Ordering::Acquire);
        if ready(v) {
            return Some(v);
        }
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(256) {
            std::thread::yield_now();
            if Instant::now() > limit {
                return None;
            }
        } else {
            std::hint::spin_loop();
        }
    }
}

fn pong(name: String) -> Result<(), String> {
    let line: Shared<PingPongLine> = Shared::open(&name).map_err(|e| e.to_string())?;
    let limit = Instant::now() + CHILD_LIMIT;
    loop {
        let v = spin_until(&line.0, limit, |v| v % 2 == 1).ok_or("ping-pong parent gone")?;
        if v == STOP {
            return Ok(());
        }
        line.0.store(v + 1, Ordering::Release);
    }
}
register_entry!("workload-raw-shm-pong", pong);

/// Calibration: round trip of one cache line between two processes that both spin on
/// it — the floor under any shared-memory mechanism.
pub fn raw_shm_ping_pong(placement: Placement, iters: usize) -> RoundTrips {
    let (mine, cpu) = cpus_for(placement);
    let _pin = pin(mine);
    let line: Shared<PingPongLine> = Shared::create("pingpong", 0).expect("shm");
    let child = start("workload-raw-shm-pong", &line.name().to_string(), &[], cpu);
    let limit = Instant::now() + CHILD_LIMIT;
    let mut samples_ns = Vec::with_capacity(iters);
    let mut v = 1u64;
    for _ in 0..iters {
        let t = Instant::now();
        line.0.store(v, Ordering::Release);
        spin_until(&line.0, limit, |seen| seen == v + 1).expect("ping-pong child gone");
        samples_ns.push(t.elapsed().as_nanos() as u64);
        v += 2;
    }
    line.0.store(STOP, Ordering::Release);
    finish(child);
    RoundTrips { samples_ns }
}

/// Calibration: time to copy `bytes` bytes `iters` times between two buffers in this
/// process (memcpy bandwidth = bytes * iters / time).
pub fn memcpy(bytes: usize, iters: usize) -> Duration {
    let source = vec![0x3cu8; bytes];
    let mut target = vec![0u8; bytes];
    let t = Instant::now();
    for _ in 0..iters {
        target.copy_from_slice(std::hint::black_box(&source));
        std::hint::black_box(&mut target);
    }
    t.elapsed()
}
