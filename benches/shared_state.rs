//! Shared state across processes: semaphore and event wake-up round trips, Manager RPC
//! round trip beside a raw Unix-socket round trip (the Manager ratio's denominator,
//! measured in the same run), Manager increments/s with 1, 2 and 4 clients, and file-store
//! read-modify-write per lock flavor.

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use ipcbench::ipc::filestore::StoreLockKind;
use ipcbench::measure::calibration;
use ipcbench::measure::workloads::{filestore, manager, sync};
use ipcbench::report::model::Placement;
use std::time::Duration;

const PLACEMENTS: [Placement; 2] = [Placement::SameCpu, Placement::CrossCpu];

fn wake(c: &mut Criterion) {
    let mut group = c.benchmark_group("wake");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3));
    for primitive in sync::Primitive::ALL {
        for placement in PLACEMENTS {
            group.bench_function(format!("{}/{}", primitive.name(), placement.label()), |b| {
                b.iter_custom(|iters| {
                    sync::wake_round_trips(primitive, placement, iters as usize).total()
                })
            });
        }
    }
    group.finish();
}

fn manager_rpc(c: &mut Criterion) {
    let mut group = c.benchmark_group("manager");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3));
    for placement in PLACEMENTS {
        group.bench_function(format!("raw-unix-socket/{}", placement.label()), |b| {
            b.iter_custom(|iters| {
                calibration::unix_socket_roundtrip(placement, iters as usize).total()
            })
        });
        group.bench_function(format!("rpc-increment/{}", placement.label()), |b| {
            b.iter_custom(|iters| manager::rpc_round_trips(placement, iters as usize).total())
        });
    }
    for clients in [1, 2, 4] {
        group.bench_function(format!("increments/{clients}-clients"), |b| {
            b.iter_custom(|iters| manager::increments(clients, iters as usize))
        });
    }
    group.finish();
}

fn file_store(c: &mut Criterion) {
    let mut group = c.benchmark_group("filestore");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    for kind in StoreLockKind::ALL {
        for processes in [1, 2] {
            group.bench_function(format!("{}/{processes}-proc", kind.name()), |b| {
                b.iter_custom(|iters| filestore::read_modify_write(kind, processes, iters as usize))
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion_config();
    targets = wake, manager_rpc, file_store
}
criterion_main!(benches);
