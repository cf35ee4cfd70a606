//! Queue, every flavor: 64 B round trips beside the raw pipe round trip and the raw
//! shared-memory ping-pong (same run), and throughput at 64 B – 1 MiB, 1→1 and 4→4
//! (4→1 for the single-consumer channel flavor), beside memcpy bandwidth.
//! Targets: pipe-flavor round trip ≤ 1.3× raw pipe; shm-flavor round trip ≤ 3× raw shm
//! ping-pong; shm-flavor 1 MiB throughput ≥ 50% of memcpy bandwidth.

mod common;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use ipcbench::ipc::queue::Flavor;
use ipcbench::measure::workloads::{pipe as raw, queue as workload};
use std::time::Duration;

fn round_trips(c: &mut Criterion) {
    common::round_trip_groups(
        c,
        "queue",
        &Flavor::all()
            .into_iter()
            .map(|f| (f.name(), f))
            .collect::<Vec<_>>(),
        |flavor, placement, iters| workload::round_trip(flavor, 64, placement, iters),
    );
}

fn streams(c: &mut Criterion) {
    for (producers, consumers) in [(1, 1), (4, 4)] {
        let mut group = c.benchmark_group(format!("queue/throughput-{producers}to{consumers}"));
        group.sample_size(10).sampling_mode(SamplingMode::Flat);
        for size in common::STREAM_SIZES {
            let messages = common::messages_for(size);
            group.throughput(Throughput::Bytes((size * messages) as u64));
            for flavor in Flavor::all() {
                group.bench_function(format!("{}/{size}", flavor.name()), |b| {
                    b.iter_custom(|iters| {
                        (0..iters)
                            .map(|_| {
                                workload::throughput(flavor, size, producers, consumers, messages)
                            })
                            .sum::<Duration>()
                    })
                });
            }
            if producers == 1 {
                group.bench_function(format!("memcpy/{size}"), |b| {
                    b.iter_custom(|iters| raw::memcpy(size, messages * iters as usize))
                });
            }
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = common::criterion_config();
    targets = round_trips, streams
}
criterion_main!(benches);
