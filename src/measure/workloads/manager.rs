//! Manager RPC: round-trip latency, ops/s with several client processes, and in the same
//! place the raw Unix-socket round trip it is compared with.

use super::lock::{crowd_member, timed_crowd, CrowdArgs, BOUND};
use super::{cpus_for, pin, RoundTrips};
use crate::ipc::manager::{Manager, ManagerAddress, ManagerClient};
use crate::process::{self as proc, Options, StartMethod};
use crate::register_entry;
use crate::report::model::Placement;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// Size of the raw socket message: about a Manager increment request's size.
pub const RAW_MESSAGE: usize = 64;

/// `iters` server-side increments from this process, each timed.
pub fn rpc_round_trips(placement: Placement, iters: usize) -> RoundTrips {
    let (mine, theirs) = cpus_for(placement);
    let _pin = pin(mine);
    let manager = Manager::start_on(StartMethod::Fork, theirs).expect("start manager");
    let client = manager.client().expect("connect").with_timeout(BOUND);
    let counter = client.counter("n");
    counter.increment(1).expect("warm-up");
    let mut samples_ns = Vec::with_capacity(iters);
    for _ in 0..iters {
        let started = Instant::now();
        counter.increment(1).expect("increment");
        samples_ns.push(started.elapsed().as_nanos() as u64);
    }
    drop(client);
    manager.shutdown(Duration::from_secs(10)).expect("shutdown");
    RoundTrips { samples_ns }
}

fn client(args: CrowdArgs<ManagerAddress>) -> Result<(), String> {
    crowd_member(
        args,
        |address| ManagerClient::connect(address).map_err(|e| e.to_string()),
        |client| {
            client
                .counter("n")
                .increment(1)
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
    )
}
register_entry!("measure-manager-client", client);

/// Time for `iters` server-side increments shared among `clients` client processes.
pub fn increments(clients: usize, iters: usize) -> Duration {
    let manager = Manager::start(StartMethod::Fork).expect("start manager");
    let elapsed = timed_crowd(
        "measure-manager-client",
        manager.address(),
        clients.max(1),
        iters,
    );
    manager.shutdown(Duration::from_secs(10)).expect("shutdown");
    elapsed
}

fn echo(args: (RawFd, usize)) -> Result<(), String> {
    // SAFETY: the parent handed this fd to this process (inherit_fd) for it to own.
    let mut stream = UnixStream::from(unsafe { OwnedFd::from_raw_fd(args.0) });
    let mut buf = [0u8; RAW_MESSAGE];
    for _ in 0..args.1 {
        stream.read_exact(&mut buf).map_err(|e| e.to_string())?;
        stream.write_all(&buf).map_err(|e| e.to_string())?;
    }
    Ok(())
}
register_entry!("measure-unix-echo", echo);

/// Calibration for the Manager: `iters` round trips of a [`RAW_MESSAGE`]-byte message over
/// a blocking Unix stream socket to an echo process, no framing, no JSON.
pub fn raw_socket_round_trips(placement: Placement, iters: usize) -> RoundTrips {
    let (mine, theirs) = cpus_for(placement);
    let _pin = pin(mine);
    let (mut near, far) = UnixStream::pair().expect("socketpair");
    let far_fd = OwnedFd::from(far);
    let mut child = proc::start(
        "measure-unix-echo",
        &(far_fd.as_raw_fd(), iters + 1),
        Options::new("echo")
            .method(StartMethod::Fork)
            .cpu(theirs)
            .inherit_fd(far_fd.as_raw_fd()),
    )
    .expect("start echo");
    drop(far_fd);
    let message = [7u8; RAW_MESSAGE];
    let mut reply = [0u8; RAW_MESSAGE];
    let mut round = || {
        near.write_all(&message).expect("write");
        near.read_exact(&mut reply).expect("read");
    };
    round();
    let mut samples_ns = Vec::with_capacity(iters);
    for _ in 0..iters {
        let started = Instant::now();
        round();
        samples_ns.push(started.elapsed().as_nanos() as u64);
    }
    child.result::<()>(Some(BOUND)).expect("echo");
    RoundTrips { samples_ns }
}
