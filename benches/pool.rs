//! The seed's pool claims made measurable. 100 short tasks through `Pool(2).map` (workers
//! already running) vs one process per task (fork and spawn) vs in-process; the per-task
//! cost of `apply_async`; echo round trips with 1, 4 and 16 clients against a server with
//! one process per connection and one with a pool of 4. Target: the pool beats a process
//! per task by at least 10x on short tasks.

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use ipcbench::ipc::pool::{Pool, PoolOptions};
use ipcbench::measure::workloads::pool as workload;
use ipcbench::process::StartMethod;
use ipcbench::programs::pool_echo::ServerKind;
use std::time::Duration;

const TASKS: usize = 100;

fn repeat(iters: u64, mut once: impl FnMut() -> Duration) -> Duration {
    (0..iters).map(|_| once()).sum()
}

fn short_tasks(c: &mut Criterion) {
    let pool = Pool::new(PoolOptions::new().size(2).method(StartMethod::Fork)).expect("pool");
    let auto = pool.default_chunksize(TASKS);
    let mut group = c.benchmark_group("pool-100-short-tasks");
    group.sample_size(10);
    group.bench_function("sequential", |b| {
        b.iter_custom(|iters| repeat(iters, || workload::short_tasks_sequential(TASKS)))
    });
    group.bench_function("pool-2-map-chunksize-1", |b| {
        b.iter_custom(|iters| repeat(iters, || workload::short_tasks_pool_map(&pool, TASKS, 1)))
    });
    group.bench_function(format!("pool-2-map-chunksize-{auto}"), |b| {
        b.iter_custom(|iters| repeat(iters, || workload::short_tasks_pool_map(&pool, TASKS, auto)))
    });
    for method in StartMethod::ALL {
        group.bench_function(format!("process-per-task-{}", method.name()), |b| {
            b.iter_custom(|iters| {
                repeat(iters, || {
                    workload::short_tasks_process_per_task(method, TASKS)
                })
            })
        });
    }
    group.finish();
}

fn apply_async(c: &mut Criterion) {
    let pool = Pool::new(PoolOptions::new().size(2).method(StartMethod::Fork)).expect("pool");
    let mut group = c.benchmark_group("pool-apply-async");
    group.bench_function("round-trip", |b| {
        b.iter_custom(|iters| workload::apply_async_round_trips(&pool, iters as usize))
    });
    group.bench_function("pipelined", |b| {
        b.iter_custom(|iters| workload::apply_async_pipelined(&pool, iters as usize))
    });
    group.finish();
}

fn echo(c: &mut Criterion) {
    let mut group = c.benchmark_group("pool-echo-round-trip");
    group.sample_size(10);
    for kind in [
        ServerKind::ProcessPerConnection,
        ServerKind::Pool { workers: 4 },
    ] {
        for clients in [1usize, 4, 16] {
            group.bench_function(format!("{}/{clients}-clients", kind.name()), |b| {
                b.iter_custom(|iters| {
                    workload::echo_round_trips(kind, clients, iters as usize, StartMethod::Fork)
                })
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion_config();
    targets = short_tasks, apply_async, echo
}
criterion_main!(benches);
