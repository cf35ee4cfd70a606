//! The seed's claim about pools made measurable: short tasks through a pool vs one
//! process per task vs in-process; the per-task cost of `apply_async`; the echo servers
//! (one process per connection vs a pool of 4) under 1..N concurrent clients.

use super::RoundTrips;
use crate::ipc::pool::{Pool, PoolOptions};
use crate::measure::MeasureError;
use crate::process::{self as proc, Options, StartMethod};
use crate::programs::pool_echo::{self as echo, ServerKind};
use crate::register_entry;
use std::time::{Duration, Instant};

/// The short task: a few microseconds of arithmetic, so what is measured is the cost of
/// getting work to another process and the result back.
pub const SHORT_TASK: &str = "measure-pool-short-task";

/// Bytes per echo round trip.
pub const ECHO_MESSAGE: usize = 64;

pub(crate) fn short_task(seed: u64) -> Result<u64, MeasureError> {
    let mut x = seed;
    for i in 0..1000u64 {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i);
    }
    Ok(x)
}
register_entry!("measure-pool-short-task", short_task);

/// `tasks` short tasks run one after another in this process.
pub fn short_tasks_sequential(tasks: usize) -> Duration {
    let started = Instant::now();
    for seed in 0..tasks as u64 {
        std::hint::black_box(short_task(std::hint::black_box(seed)).expect("short task"));
    }
    started.elapsed()
}

/// `tasks` short tasks through `pool.map` (the pool is started beforehand: reusing its
/// workers is the point of a pool).
pub fn short_tasks_pool_map(pool: &Pool, tasks: usize, chunksize: usize) -> Duration {
    let started = Instant::now();
    let results: Vec<u64> = pool
        .map(SHORT_TASK, 0..tasks as u64, chunksize)
        .expect("pool map");
    assert_eq!(results.len(), tasks);
    started.elapsed()
}

/// `tasks` short tasks, one new process each: all started, then all joined (the usual
/// `Process` pattern).
pub fn short_tasks_process_per_task(method: StartMethod, tasks: usize) -> Duration {
    let started = Instant::now();
    let mut children: Vec<_> = (0..tasks as u64)
        .map(|seed| {
            proc::start(
                SHORT_TASK,
                &seed,
                Options::new(format!("task-{seed}")).method(method),
            )
            .expect("start task process")
        })
        .collect();
    for child in &mut children {
        child
            .result::<u64>(Some(Duration::from_secs(60)))
            .expect("task process");
    }
    started.elapsed()
}

/// `iters` short tasks, each `apply_async` then `get` before the next: the full per-task
/// round trip through the pool.
pub fn apply_async_round_trips(pool: &Pool, iters: usize) -> Duration {
    let started = Instant::now();
    for seed in 0..iters as u64 {
        pool.apply_async::<_, u64>(SHORT_TASK, &seed)
            .expect("apply_async")
            .get(pool.timeout())
            .expect("get");
    }
    started.elapsed()
}

/// Each of `iters` `apply_async`+`get` round trips timed on its own (for `ipcbench bench`),
/// through a fork-started pool of 2 set up beforehand.
pub fn apply_async_samples(iters: usize) -> RoundTrips {
    let pool = Pool::new(PoolOptions::new().size(2).method(StartMethod::Fork)).expect("pool");
    let samples_ns = (0..iters as u64)
        .map(|seed| {
            let started = Instant::now();
            pool.apply_async::<_, u64>(SHORT_TASK, &seed)
                .expect("apply_async")
                .get(pool.timeout())
                .expect("get");
            started.elapsed().as_nanos() as u64
        })
        .collect();
    RoundTrips { samples_ns }
}

/// `iters` short tasks submitted at once with `apply_async`, then every result fetched:
/// the per-task cost when the pool's workers are kept busy.
pub fn apply_async_pipelined(pool: &Pool, iters: usize) -> Duration {
    let started = Instant::now();
    let handles: Vec<_> = (0..iters as u64)
        .map(|seed| {
            pool.apply_async::<_, u64>(SHORT_TASK, &seed)
                .expect("apply_async")
        })
        .collect();
    for handle in handles {
        handle.get(pool.timeout()).expect("get");
    }
    started.elapsed()
}

/// `clients` concurrent clients each doing `rounds` echo round trips of
/// [`ECHO_MESSAGE`] bytes against a server of `kind`; the time from the start signal to
/// the last client done (processes are started beforehand).
pub fn echo_round_trips(
    kind: ServerKind,
    clients: usize,
    rounds: usize,
    method: StartMethod,
) -> Duration {
    echo::round_trips(kind, clients, rounds, ECHO_MESSAGE, method).expect("echo round trips")
}

crate::register_workloads!("pool", catalogue, rank = 40);

/// This family's entries in `measure::registry`: short tasks through a pool of 2 (started
/// outside the timed part) vs one process per task vs in-process; apply_async; the echo
/// servers. A task through the pool is divided by the raw hand-off of the same task to a
/// worker process (one at a time: the raw round trip; map and pipelined apply_async: the
/// raw stream to 2 workers); a process per task, and the in-process run beside it, by
/// the raw fork+_exit+waitpid.
pub fn catalogue() -> Vec<crate::measure::registry::Workload> {
    use crate::measure::calibration::{self as cal, handoff};
    use crate::measure::registry::{size_label, Workload};
    fn with_pool<T>(run: impl FnOnce(&Pool) -> T) -> T {
        let pool =
            Pool::new(PoolOptions::new().size(2).method(StartMethod::Fork)).expect("start pool");
        run(&pool)
    }
    let mut all = vec![
        // One task through a running pool, timed per task for a distribution.
        Workload::latency("pool", "fork", "apply-async")
            .divided_by(handoff::TASK_HANDOFF)
            .ops(300, 3_000)
            .run(|_, n| apply_async_samples(n)),
        Workload::operations("pool", "sequential", "short-tasks")
            .processes(1)
            .divided_by(cal::FORK_EXIT)
            .ops(2_000, 20_000)
            .run(short_tasks_sequential),
        Workload::operations("pool", "pool-2-map", "short-tasks/chunksize-1")
            .processes(2)
            .divided_by(handoff::TASK_HANDOFF_2_WORKERS)
            .ops(1_000, 10_000)
            .run(|n| with_pool(|p| short_tasks_pool_map(p, n, 1))),
        Workload::operations("pool", "pool-2-map", "short-tasks/chunksize-auto")
            .processes(2)
            .divided_by(handoff::TASK_HANDOFF_2_WORKERS)
            .ops(1_000, 10_000)
            .run(|n| with_pool(|p| short_tasks_pool_map(p, n, p.default_chunksize(n)))),
        Workload::operations("pool", "pool-2-apply-async", "round-trip")
            .processes(2)
            .divided_by(handoff::TASK_HANDOFF)
            .ops(1_000, 10_000)
            .run(|n| with_pool(|p| apply_async_round_trips(p, n))),
        Workload::operations("pool", "pool-2-apply-async", "pipelined")
            .processes(2)
            .divided_by(handoff::TASK_HANDOFF_2_WORKERS)
            .ops(1_000, 10_000)
            .run(|n| with_pool(|p| apply_async_pipelined(p, n))),
    ];
    for (method, flavor, (quick, full)) in [
        (StartMethod::Fork, "process-per-task-fork", (100, 1_000)),
        (StartMethod::Spawn, "process-per-task-spawn", (30, 300)),
    ] {
        all.push(
            Workload::operations("pool", flavor, "short-tasks")
                .processes(1)
                .divided_by(cal::FORK_EXIT)
                .ops(quick, full)
                .run(move |n| short_tasks_process_per_task(method, n)),
        );
    }
    for (kind, flavor) in [
        (
            ServerKind::ProcessPerConnection,
            "echo-process-per-connection",
        ),
        (ServerKind::Pool { workers: 4 }, "echo-pool-4"),
    ] {
        for clients in [1usize, 4, 16] {
            let what = format!(
                "roundtrip/{}/{clients}-clients",
                size_label(ECHO_MESSAGE as u64)
            );
            all.push(
                Workload::operations("pool", flavor, &what)
                    .processes(clients as u32)
                    .divided_by(cal::UNIX_SOCKET_REQUEST_REPLY)
                    // Multiples of 16, so every client does the same number of rounds.
                    .ops(256, 2_048)
                    .run(move |rounds| {
                        echo_round_trips(kind, clients, rounds.div_ceil(clients), StartMethod::Fork)
                    }),
            );
        }
    }
    all
}
