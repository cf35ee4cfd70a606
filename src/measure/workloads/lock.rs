//! Lock acquire+release, uncontended and contended by several processes, per flavor; and
//! the timed "crowd" that the contended workloads of this family share.

use crate::ipc::lock::{LockAddress, LockFlavor};
use crate::ipc::sync::Barrier;
use crate::process::{self as proc, Options, StartMethod};
use crate::register_entry;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Bound on any wait in a workload: generous, so only a real hang trips it.
pub(crate) const BOUND: Duration = Duration::from_secs(120);

/// One untimed warm-up `round` (the peer is known to be running after it), then `iters`
/// rounds timed one by one: the timed part of this family's latency workloads.
pub fn time_rounds(iters: usize, mut round: impl FnMut()) -> super::RoundTrips {
    round();
    let samples_ns = (0..iters)
        .map(|_| {
            let started = Instant::now();
            round();
            started.elapsed().as_nanos() as u64
        })
        .collect();
    super::RoundTrips { samples_ns }
}

/// Arguments every crowd member gets: its own share of the work and the start/finish
/// barrier, beside the workload's own arguments.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CrowdArgs<A> {
    pub barrier: String,
    pub ops: usize,
    pub work: A,
}

/// Runs `members` forked processes of `entry`, sharing `total_ops` between them, and
/// times from the moment all are ready to the moment all are done (process start-up is
/// outside the timed part). The entry calls [`crowd_member`].
pub fn timed_crowd<A: Serialize + Clone>(
    entry: &str,
    work: &A,
    members: usize,
    total_ops: usize,
) -> Duration {
    let barrier = Barrier::create(members as u32 + 1).expect("crowd barrier");
    let mut children: Vec<_> = (0..members)
        .map(|i| {
            let ops = total_ops / members + usize::from(i < total_ops % members);
            proc::start(
                entry,
                &CrowdArgs {
                    barrier: barrier.name().to_string(),
                    ops,
                    work: work.clone(),
                },
                Options::new(format!("{entry}-{i}")).method(StartMethod::Fork),
            )
            .expect("start crowd member")
        })
        .collect();
    let timed = barrier.wait(BOUND).and_then(|_| {
        let started = Instant::now();
        barrier.wait(BOUND).map(|_| started.elapsed())
    });
    let failures: Vec<String> = children
        .iter_mut()
        .filter_map(|child| child.result::<()>(Some(BOUND)).err())
        .map(|e| e.to_string())
        .collect();
    match timed {
        Ok(elapsed) if failures.is_empty() => elapsed,
        // A member's own error says more than the barrier's "party died".
        outcome => panic!("crowd of {entry}: {outcome:?}; members: {failures:?}"),
    }
}

/// The member side of [`timed_crowd`]: opens with `setup`, waits for the others, runs
/// `op` `ops` times, reports done.
pub fn crowd_member<A, S>(
    args: CrowdArgs<A>,
    setup: impl FnOnce(&A) -> Result<S, String>,
    mut op: impl FnMut(&S) -> Result<(), String>,
) -> Result<(), String>
where
    A: DeserializeOwned,
{
    let barrier = Barrier::open(&args.barrier).map_err(|e| e.to_string())?;
    let state = setup(&args.work)?;
    barrier.wait(BOUND).map_err(|e| e.to_string())?;
    for _ in 0..args.ops {
        op(&state)?;
    }
    barrier.wait(BOUND).map_err(|e| e.to_string())?;
    Ok(())
}

fn contender(args: CrowdArgs<LockAddress>) -> Result<(), String> {
    crowd_member(
        args,
        |address| address.open().map_err(|e| e.to_string()),
        |lock| {
            lock.acquire(BOUND).map_err(|e| e.to_string())?;
            lock.release().map_err(|e| e.to_string())
        },
    )
}
register_entry!("measure-lock-contender", contender);

/// Time for `iters` acquire+release pairs of a fresh `flavor` lock: done by this process
/// alone when `processes` is 1, else shared among `processes` child processes contending
/// for it (unpinned: on 2 cores, 4 contenders must share them).
pub fn acquire_release(flavor: LockFlavor, processes: usize, iters: usize) -> Duration {
    let lock = flavor.create().expect("create lock");
    if processes <= 1 {
        let started = Instant::now();
        for _ in 0..iters {
            lock.acquire(BOUND).expect("acquire");
            lock.release().expect("release");
        }
        return started.elapsed();
    }
    timed_crowd("measure-lock-contender", &lock.address(), processes, iters)
}

/// A registry entry for an "operations by N processes" workload of this family: named
/// `family/flavor/what/N-proc`, reported as operations per second.
pub(crate) fn ops_workload(
    family: &'static str,
    flavor: &'static str,
    what: &str,
    processes: u32,
    ops: (usize, usize),
    run: impl Fn(usize) -> Duration + Send + Sync + 'static,
) -> crate::measure::registry::Workload {
    use crate::measure::registry::{Kind, Sample, Workload};
    Workload {
        name: format!("{family}/{flavor}/{what}/{processes}-proc"),
        family,
        flavor,
        kind: Kind::Throughput,
        placement: crate::report::model::Placement::Unpinned,
        message_bytes: 0,
        producers: processes,
        consumers: 0,
        calibration: None,
        ops,
        run: std::sync::Arc::new(move |n| Sample::Moved {
            messages: n as u64,
            bytes: 0,
            elapsed: run(n),
        }),
    }
}

/// This family's entries in `measure::registry`.
pub fn catalogue() -> Vec<crate::measure::registry::Workload> {
    let mut all = Vec::new();
    for flavor in LockFlavor::SAFE {
        for processes in [1u32, 2, 4] {
            all.push(ops_workload(
                "lock",
                flavor.name(),
                "acquire-release",
                processes,
                (5_000, 50_000),
                move |n| acquire_release(flavor, processes as usize, n),
            ));
        }
    }
    all
}
