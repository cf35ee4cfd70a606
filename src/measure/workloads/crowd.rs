//! The timed "crowd" the contended workloads share (locks, Manager increments, the file
//! store): several forked members split a number of operations and the run is timed from
//! the first member's start to the last member's end.
//!
//! The members stamp the clock themselves, into shared memory: CLOCK_MONOTONIC is one
//! clock for every process of the machine. Timing from the parent's side of a barrier
//! measured the parent's wake-ups instead: on 2 cores with 2 busy members the parent gets
//! no CPU until they are done, so its window could miss the work (a contended lock
//! reported 1.48 G acquire+release/s across processes, 0.7 ns each, where one cache-line
//! hand-off costs ~120 ns).

use crate::ipc::sync::Barrier;
use crate::measure::MeasureError;
use crate::process::{self as proc, Options, StartMethod};
use crate::sys::shm::{Shared, ShmSafe};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bound on any wait in a workload: generous, so only a real hang trips it.
pub(crate) const BOUND: Duration = Duration::from_secs(120);

/// Arguments every crowd member gets: its own share of the work, the start/finish
/// barrier and the shared clock stamps, beside the workload's own arguments.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CrowdArgs<A> {
    /// The barrier every member waits at before and after timing.
    pub barrier: String,
    /// The segment holding the first start and last end stamp.
    pub clock: String,
    /// Operations each member runs.
    pub ops: usize,
    /// The workload's own arguments (the mechanism's address).
    pub work: A,
}

/// The members' stamps, in CLOCK_MONOTONIC nanoseconds.
#[repr(C)]
struct CrowdClock {
    /// The earliest start of any member (starts at u64::MAX).
    first_start: AtomicU64,
    /// The latest end of any member.
    last_end: AtomicU64,
}

// SAFETY: atomics only, valid at any bit pattern (zero included).
unsafe impl ShmSafe for CrowdClock {}

/// CLOCK_MONOTONIC now, in nanoseconds: the same clock in every process.
fn monotonic_ns() -> u64 {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always readable");
    now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64
}

/// Runs `members` forked processes of `entry`, sharing `total_ops` between them, and
/// returns the time from the first member's start of work to the last member's end
/// (process start-up and the barriers are outside it). The entry calls [`crowd_member`].
pub fn timed_crowd<A: Serialize + Clone>(
    entry: &str,
    work: &A,
    members: usize,
    total_ops: usize,
) -> Duration {
    let barrier = Barrier::create(members as u32 + 1).expect("crowd barrier");
    let clock: Shared<CrowdClock> = Shared::create("crowd-clock", 0).expect("crowd clock");
    clock.first_start.store(u64::MAX, Ordering::SeqCst);
    let mut children: Vec<_> = (0..members)
        .map(|i| {
            let ops = total_ops / members + usize::from(i < total_ops % members);
            proc::start(
                entry,
                &CrowdArgs {
                    barrier: barrier.name().to_string(),
                    clock: clock.name().to_string(),
                    ops,
                    work: work.clone(),
                },
                Options::new(format!("{entry}-{i}")).method(StartMethod::Fork),
            )
            .expect("start crowd member")
        })
        .collect();
    let passed = barrier.wait(BOUND).and_then(|_| barrier.wait(BOUND));
    let failures: Vec<String> = children
        .iter_mut()
        .filter_map(|child| child.result::<()>(Some(BOUND)).err())
        .map(|e| e.to_string())
        .collect();
    match passed {
        Ok(_) if failures.is_empty() => elapsed(&clock),
        // A member's own error says more than the barrier's "party died".
        outcome => panic!("crowd of {entry}: {outcome:?}; members: {failures:?}"),
    }
}

fn elapsed(clock: &CrowdClock) -> Duration {
    let (start, end) = (
        clock.first_start.load(Ordering::SeqCst),
        clock.last_end.load(Ordering::SeqCst),
    );
    assert!(
        start != u64::MAX && end >= start,
        "crowd clock not stamped by every member: start {start}, end {end}"
    );
    Duration::from_nanos(end - start)
}

/// The member side of [`timed_crowd`]: opens with `setup`, waits for the others, stamps
/// its start, runs `op` `ops` times, stamps its end, reports done.
pub fn crowd_member<A, S>(
    args: CrowdArgs<A>,
    setup: impl FnOnce(&A) -> Result<S, MeasureError>,
    mut op: impl FnMut(&S) -> Result<(), MeasureError>,
) -> Result<(), MeasureError>
where
    A: DeserializeOwned,
{
    let barrier = Barrier::open(&args.barrier)?;
    let clock: Shared<CrowdClock> = Shared::open(&args.clock)?;
    let state = setup(&args.work)?;
    barrier.wait(BOUND)?;
    clock
        .first_start
        .fetch_min(monotonic_ns(), Ordering::SeqCst);
    for _ in 0..args.ops {
        op(&state)?;
    }
    clock.last_end.fetch_max(monotonic_ns(), Ordering::SeqCst);
    barrier.wait(BOUND)?;
    Ok(())
}
