//! Lock acquire+release per flavor: uncontended (one process) and contended by 2 and 4
//! processes (unpinned; the machine may have fewer cores than contenders). The plain
//! mutex is the non-robust test subject, measured beside the robust one to show what
//! robustness costs.

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use ipcbench::ipc::lock::LockFlavor;
use ipcbench::measure::workloads::lock as workload;
use std::time::Duration;

fn lock(c: &mut Criterion) {
    let mut group = c.benchmark_group("lock");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(4));
    for flavor in [
        LockFlavor::Flock,
        LockFlavor::Fcntl,
        LockFlavor::Robust,
        LockFlavor::Plain,
    ] {
        for processes in [1, 2, 4] {
            group.bench_function(format!("{}/{processes}-proc", flavor.name()), |b| {
                b.iter_custom(|iters| workload::acquire_release(flavor, processes, iters as usize))
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion_config();
    targets = lock
}
criterion_main!(benches);
