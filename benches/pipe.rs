//! Pipe: 64 B round trips for each kind and 64 B – 1 MiB streams, beside the raw
//! baselines measured in the same run — a bare pipe(2) 1-byte round trip, a shared-memory
//! cache-line ping-pong, and memcpy bandwidth. Both placements (same CPU, two CPUs).

mod common;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use ipcbench::ipc::pipe::PipeKind;
use ipcbench::measure::workloads::pipe as workload;
use ipcbench::report::model::Placement;
use std::time::Duration;

const SIZES: [usize; 4] = [64, 4 << 10, 64 << 10, 1 << 20];

/// Messages per timed stream: enough bytes that process start-up stays out of the noise.
fn messages_for(size: usize) -> usize {
    ((64 << 20) / size).clamp(32, 20_000)
}

fn round_trips(c: &mut Criterion) {
    for placement in [Placement::CrossCpu, Placement::SameCpu] {
        let mut group = c.benchmark_group(format!("pipe/round-trip-64B/{}", placement.label()));
        group.sample_size(20);
        group.bench_function("raw-pipe-1B", |b| {
            b.iter_custom(|iters| {
                ipcbench::measure::calibration::pipe_roundtrip(placement, iters as usize).total()
            })
        });
        group.bench_function("raw-shm-pingpong", |b| {
            b.iter_custom(|iters| {
                ipcbench::measure::calibration::shm_pingpong(placement, iters as usize).total()
            })
        });
        for kind in PipeKind::ALL {
            group.bench_function(kind.name(), |b| {
                b.iter_custom(|iters| {
                    workload::round_trip(kind, 64, placement, iters as usize).total()
                })
            });
        }
        group.finish();
    }
}

fn streams(c: &mut Criterion) {
    let mut group = c.benchmark_group("pipe/throughput");
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    for size in SIZES {
        let messages = messages_for(size);
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
