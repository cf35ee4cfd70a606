//! Pipe workloads: framed `Connection` round trips and streams for each `PipeKind`, and
//! memcpy at a given message size. The raw baselines they are compared with (bare pipe(2)
//! round trip, shared-memory ping-pong) are `crate::measure::calibration`'s.

use super::{cpus_for, pin, RoundTrips};
use crate::ipc::pipe::{pipe, Connection, ConnectionHandle, PipeKind};
use crate::measure::MeasureError;
use crate::process::{self as proc, Child, Options};
use crate::register_entry;
use crate::results::Placement;
use serde::Serialize;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// Bound on any one workload's child; a workload that takes longer is broken, not slow.
pub(super) const CHILD_LIMIT: Duration = Duration::from_secs(120);

fn start(entry: &str, args: &impl Serialize, fds: &[RawFd], cpu: Option<usize>) -> Child {
    let options = fds
        .iter()
        .fold(Options::new(entry).cpu(cpu), |o, &fd| o.inherit_fd(fd));
    proc::start(entry, args, options).unwrap_or_else(|e| panic!("workload child {entry}: {e}"))
}

/// Joins a workload child, which must have succeeded.
pub(super) fn finish(mut child: Child) {
    if let Err(e) = child.result::<()>(Some(CHILD_LIMIT)) {
        panic!("workload child failed: {e}");
    }
}

// ---- framed Connection ----

fn echo(handle: ConnectionHandle) -> Result<(), MeasureError> {
    let conn = Connection::adopt(handle)?;
    loop {
        match conn.recv_bytes() {
            Ok(message) => conn.send_bytes(&message)?,
            Err(e) if e.is_eof() => return Ok(()),
            Err(e) => return Err(e.into()),
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

fn echo_simplex(handles: (ConnectionHandle, ConnectionHandle)) -> Result<(), MeasureError> {
    let input = Connection::adopt(handles.0)?;
    let output = Connection::adopt(handles.1)?;
    loop {
        match input.recv_bytes() {
            Ok(message) => output.send_bytes(&message)?,
            Err(e) if e.is_eof() => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}
register_entry!("workload-pipe-echo-simplex", echo_simplex);

fn drain(handle: ConnectionHandle) -> Result<(), MeasureError> {
    let conn = Connection::adopt(handle)?;
    let mut count = 0u64;
    loop {
        match conn.recv_bytes() {
            Ok(message) if message.is_empty() => break,
            Ok(_) => count += 1,
            Err(e) => return Err(e.into()),
        }
    }
    conn.send(&count).map_err(MeasureError::from)
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

// ---- baselines ----
// The raw pipe round trip and the shared-memory ping-pong live in
// `crate::measure::calibration` (`pipe_roundtrip`, `shm_pingpong`); the benches measure
// them beside these workloads.

/// Baseline for a stream of `bytes`-byte messages: time to copy `bytes` bytes `iters`
/// times between two buffers in this process (memcpy bandwidth at that size =
/// bytes * iters / time). `calibration::memcpy_bandwidth` gives the one large-buffer
/// figure; this one is per message size, as the throughput benches compare.
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

crate::register_workloads!("pipe", catalogue, rank = 20);

/// This family's entries in `measure::registry`: round trips of 64 B and streams from
/// 64 B to 1 MiB, each divided by the raw figure of its own transport: a duplex
/// `Connection` is a socketpair (raw 64-byte Unix request-reply, raw Unix stream of the
/// same size), a simplex one two pipes (raw pipe round trip).
pub fn catalogue() -> Vec<crate::measure::registry::Workload> {
    use crate::measure::calibration as cal;
    use crate::measure::registry::{Workload, PLACEMENTS};
    let mut all = Vec::new();
    for (kind, flavor) in [(PipeKind::Duplex, "duplex"), (PipeKind::Simplex, "simplex")] {
        for placement in PLACEMENTS {
            all.push(
                Workload::latency("pipe", flavor, "roundtrip")
                    .size(64)
                    .placement(placement)
                    .divided_by(match kind {
                        PipeKind::Duplex => cal::UNIX_SOCKET_REQUEST_REPLY,
                        PipeKind::Simplex => cal::PIPE_ROUNDTRIP,
                    })
                    .ops(2_000, 20_000)
                    .run(move |placement, n| round_trip(kind, 64, placement, n)),
            );
        }
    }
    for size in super::SIZES {
        let (quick, full) = super::stream_messages(size);
        all.push(
            Workload::stream("pipe", "duplex")
                .size(size)
                .divided_by(cal::unix_stream_name(size))
                .ops(quick, full)
                .run(move |n| throughput(size as usize, n, Placement::Unpinned)),
        );
    }
    all
}
