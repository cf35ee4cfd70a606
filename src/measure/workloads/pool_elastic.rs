//! The elastic pool measured (issue 19, item 6): how fast it grows under a burst of tasks,
//! how promptly it shrinks once idle, and what a short task costs while it grows.
//!
//! The pool keeps [`MIN`] forked worker and may grow to [`MAX`]. Growth is measured with
//! tasks that hold their worker ([`HOLD`]), so that the pool must start a worker for each
//! one rather than let the first worker finish them all; the figure is the time from the
//! burst's submission until `MAX` workers run, divided by the run's raw fork+exit+waitpid
//! (growing by `MAX - MIN` workers costs at least that many forks). Shrinking is measured
//! past the idle timeout, which is the pool's setting, not its cost: the figure is how long
//! after an idle worker's timeout the pool is back at `MIN`, divided by fork+exit+waitpid
//! too (retiring a worker is its exit and a wait).

use super::pool::SHORT_TASK;
use super::RoundTrips;
use crate::ipc::pool::{Pool, PoolOptions};
use crate::measure::calibration::{self as cal, handoff};
use crate::measure::registry::Workload;
use crate::measure::MeasureError;
use crate::process::StartMethod;
use crate::register_entry;
use std::time::{Duration, Instant};

/// Workers the pool keeps.
pub const MIN: usize = 1;
/// Workers it may grow to.
pub const MAX: usize = 4;
/// How long an extra worker may sit idle before the pool retires it: short, so that a
/// sample does not wait long, and far above the supervisor's own reaction time.
const IDLE_TIMEOUT: Duration = Duration::from_millis(20);
/// How long a growth task holds its worker: far above a fork, so each task of the burst
/// needs a worker of its own while the pool grows.
const HOLD: Duration = Duration::from_millis(40);
/// The bound on waiting for the pool to reach a size.
const SIZE_BOUND: Duration = Duration::from_secs(20);

const HOLD_TASK: &str = "measure-pool-hold-task";

/// Holds its worker for `ms` milliseconds.
fn hold_task(ms: u64) -> Result<u64, MeasureError> {
    std::thread::sleep(Duration::from_millis(ms));
    Ok(ms)
}
register_entry!("measure-pool-hold-task", hold_task);

fn elastic_pool() -> Pool {
    Pool::new(
        PoolOptions::new()
            .elastic(MIN, MAX)
            .idle_timeout(IDLE_TIMEOUT)
            .method(StartMethod::Fork),
    )
    .expect("start an elastic pool")
}

/// Waits until the pool has `workers` workers; the time it took, or a panic naming the
/// size it stayed at (the runner reports a workload's panic as its failure).
fn until_size(pool: &Pool, workers: usize) -> Duration {
    let started = Instant::now();
    loop {
        let now = pool.stats().workers;
        if now == workers {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < SIZE_BOUND,
            "the elastic pool stayed at {now} workers, not {workers}, for {SIZE_BOUND:?}"
        );
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// A burst from `MIN` workers: `MAX` holding tasks submitted at once. Returns how long the
/// pool took to run `MAX` workers, once every task has returned.
fn burst(pool: &Pool) -> Duration {
    until_size(pool, MIN);
    let handles: Vec<_> = (0..MAX)
        .map(|_| {
            pool.apply_async::<_, u64>(HOLD_TASK, &(HOLD.as_millis() as u64))
                .expect("submit a holding task")
        })
        .collect();
    let grew = until_size(pool, MAX);
    for handle in handles {
        handle.get(pool.timeout()).expect("a holding task's result");
    }
    grew
}

/// One sample per burst: the time until `MAX` workers run.
pub fn grow_samples(bursts: usize) -> RoundTrips {
    let pool = elastic_pool();
    let samples_ns = (0..bursts)
        .map(|_| burst(&pool).as_nanos() as u64)
        .collect();
    RoundTrips { samples_ns }
}

/// One sample per burst: once its tasks have all returned, how long past the idle
/// timeout the pool takes to be back at `MIN`.
pub fn shrink_samples(bursts: usize) -> RoundTrips {
    let pool = elastic_pool();
    let samples_ns = (0..bursts)
        .map(|_| {
            burst(&pool);
            let shrank = until_size(&pool, MIN);
            shrank.saturating_sub(IDLE_TIMEOUT).as_nanos() as u64
        })
        .collect();
    RoundTrips { samples_ns }
}

/// `tasks` short tasks through `map` (chunksize 1) on a pool that starts at `MIN` workers
/// and grows while they wait: the per-task cost while growing.
pub fn short_tasks_while_growing(tasks: usize) -> Duration {
    let pool = elastic_pool();
    until_size(&pool, MIN);
    let started = Instant::now();
    let results: Vec<u64> = pool.map(SHORT_TASK, 0..tasks as u64, 1).expect("pool map");
    let elapsed = started.elapsed();
    assert_eq!(results.len(), tasks, "every task's result");
    elapsed
}

fn catalogue() -> Vec<Workload> {
    let flavor = "elastic-1-4";
    vec![
        Workload::latency("pool", flavor, "grow-on-burst")
            .divided_by(cal::FORK_EXIT)
            .ops(10, 100)
            .run(|_, n| grow_samples(n)),
        // Retiring a worker is a message, its exit and a wait: of the kind of the raw
        // fork+exit+waitpid, the nearest raw figure the run measures.
        Workload::latency("pool", flavor, "shrink-past-idle-timeout")
            .divided_by(cal::FORK_EXIT)
            .ops(10, 100)
            .run(|_, n| shrink_samples(n)),
        Workload::operations("pool", flavor, "short-tasks-while-growing")
            .processes(MAX as u32)
            .divided_by(handoff::TASK_HANDOFF_2_WORKERS)
            .ops(1_000, 10_000)
            .run(short_tasks_while_growing),
    ]
}
crate::register_workloads!("pool-elastic", catalogue, rank = 41);
