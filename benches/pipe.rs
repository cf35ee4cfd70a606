//! Pipe: 64 B round trips for each kind and 64 B – 1 MiB streams, beside the raw
//! baselines measured in the same run — a bare pipe(2) 1-byte round trip, a shared-memory
//! cache-line ping-pong, and memcpy bandwidth. Both placements (same CPU, two CPUs).

mod common;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use ipcbench::ipc::pipe::PipeKind;
use ipcbench::measure::workloads::pipe as workload;
use ipcbench::report::model::Placement;
use std::time::Duration;

fn round_trips(c: &mut Criterion) {
    common::round_trip_groups(
        c,
        "pipe",
        &PipeKind::ALL.map(|k| (k.name(), k)),
        |kind, placement, iters| workload::round_trip(kind, 64, placement, iters),
    );
}

fn streams(c: &mut Criterion) {
    let mut group = c.benchmark_group("pipe/throughput");
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    for size in common::STREAM_SIZES {
        let messages = common::messages_for(size);
        group.throughput(Throughput::Bytes((size * messages) as u64));
        group.bench_function(format!("duplex/{size}"), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| workload::throughput(size, messages, Placement::Unpinned))
                    .sum::<Duration>()
            })
        });
        group.bench_function(format!("memcpy/{size}"), |b| {
            b.iter_custom(|iters| workload::memcpy(size, messages * iters as usize))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion_config();
    targets = round_trips, streams
}
criterion_main!(benches);
