//! Lock acquire+release, uncontended and contended by several processes, per flavor (the
//! contended ones run as a [`super::crowd`]).

use super::crowd::{crowd_member, timed_crowd, CrowdArgs, BOUND};
use crate::ipc::lock::{LockAddress, LockFlavor};
use crate::measure::MeasureError;
use crate::register_entry;
use std::time::{Duration, Instant};

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

fn contender(args: CrowdArgs<LockAddress>) -> Result<(), MeasureError> {
    crowd_member(
        args,
        |address| address.open().map_err(MeasureError::from),
        |lock| {
            lock.acquire(BOUND)?;
            lock.release().map_err(MeasureError::from)
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

crate::register_workloads!("lock", catalogue, rank = 50);

/// This family's entries in `measure::registry`, each divided by a raw figure of its
/// kind: flock and fcntl by the raw uncontended flock / fcntl lock+unlock (operations
/// per raw pair), the robust mutex by the atomic increment of as many processes on one
/// shared word (operations per raw increment).
pub fn catalogue() -> Vec<crate::measure::registry::Workload> {
    use crate::measure::calibration as cal;
    use crate::measure::registry::Workload;
    let mut all = Vec::new();
    for flavor in LockFlavor::SAFE {
        for processes in [1u32, 2, 4] {
            all.push(
                Workload::operations("lock", flavor.name(), "acquire-release")
                    .contenders(processes)
                    .divided_by(match flavor {
                        LockFlavor::Flock => cal::FLOCK_ACQUIRE_RELEASE,
                        LockFlavor::Fcntl => cal::FCNTL_ACQUIRE_RELEASE,
                        LockFlavor::Robust | LockFlavor::Plain => {
                            cal::atomic_increment_name(processes)
                        }
                    })
                    .ops(5_000, 50_000)
                    .run(move |n| acquire_release(flavor, processes as usize, n)),
            );
        }
    }
    all
}
