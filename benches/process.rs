//! Start+join of an empty child by each start method, beside raw fork+_exit+waitpid and
//! raw fork+exec of the same binary, in the same bench. Targets: Fork within 1.5x of raw
//! fork+waitpid; Spawn within 1.5x of raw fork+exec.

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use ipcbench::measure::workloads::process as workload;
use std::time::Duration;

fn process(c: &mut Criterion) {
    let mut group = c.benchmark_group("process");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(4));
    for start in workload::StartKind::ALL {
        group.bench_function(start.name(), |b| {
            b.iter_custom(|iters| workload::start_join(start, iters as usize))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion_config();
    targets = process
}
criterion_main!(benches);
