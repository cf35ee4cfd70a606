//! The raw baselines under criterion, in both placements where they apply: cache-line
//! ping-pong over shared memory, 1-byte pipe and Unix-socket round trips, memcpy
//! bandwidth, fork+_exit+waitpid. `cargo bench -- calibration` runs them alone.

mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ipcbench::measure::calibration as cal;
use ipcbench::measure::registry::PLACEMENTS;
use ipcbench::report::model::Placement;
use std::time::Duration;

fn calibration(c: &mut Criterion) {
    let mut group = c.benchmark_group("calibration");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3));
    group.bench_function(format!("{}/cross-cpu", cal::SHM_PINGPONG), |b| {
        b.iter_custom(|iters| cal::shm_pingpong(Placement::CrossCpu, iters as usize).total())
    });
    for placement in PLACEMENTS {
        group.bench_function(
            format!("{}/{}", cal::PIPE_ROUNDTRIP, placement.label()),
            |b| b.iter_custom(|iters| cal::pipe_roundtrip(placement, iters as usize).total()),
        );
        group.bench_function(
            format!("{}/{}", cal::UNIX_SOCKET_ROUNDTRIP, placement.label()),
            |b| {
                b.iter_custom(|iters| cal::unix_socket_roundtrip(placement, iters as usize).total())
            },
        );
    }
    group.bench_function(cal::FORK_EXIT, |b| {
        b.iter_custom(|iters| cal::fork_exit(iters as usize).total())
    });
    group.finish();

    let mut memcpy = c.benchmark_group("calibration-memcpy");
    memcpy
        .sample_size(10)
        .throughput(Throughput::Bytes(32 << 20));
    memcpy.bench_function(cal::MEMCPY, |b| {
        b.iter_custom(|iters| {
            let rate = cal::memcpy_bandwidth(iters as usize);
            Duration::from_secs_f64((32u64 << 20) as f64 * iters as f64 / rate)
        })
    });
    memcpy.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion_config();
    targets = calibration
}
criterion_main!(benches);
