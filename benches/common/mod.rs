//! Shared by every bench: the criterion configuration.

/// Registers the embedded font first, so criterion's own charts render on a machine
/// without system fonts (../shared/DEPENDENCIES.md, plotters).
pub fn criterion_config() -> criterion::Criterion {
    ipcbench::report::fonts::register();
    criterion::Criterion::default()
}

use criterion::Criterion;
use ipcbench::measure::workloads::RoundTrips;
use ipcbench::report::model::Placement;

/// Message sizes of the throughput benches: 64 B to 1 MiB.
#[allow(dead_code)] // shared by the benches that stream; not every bench does
pub const STREAM_SIZES: [usize; 4] = [64, 4 << 10, 64 << 10, 1 << 20];

/// Messages per timed stream: enough bytes that process start-up stays out of the noise.
#[allow(dead_code)]
pub fn messages_for(size: usize) -> usize {
    ((64 << 20) / size).clamp(32, 20_000)
}

/// One criterion group per placement, `<family>/round-trip-64B/<placement>`: the raw pipe
/// round trip and the raw shared-memory ping-pong, measured in the same run, beside each
/// flavor's 64 B round trip — so every flavor's ratio to its calibration can be read off
/// one group.
#[allow(dead_code)]
pub fn round_trip_groups<F: Copy>(
    c: &mut Criterion,
    family: &str,
    flavors: &[(&str, F)],
    round_trip: impl Fn(F, Placement, usize) -> RoundTrips,
) {
    use ipcbench::measure::calibration;
    for placement in [Placement::CrossCpu, Placement::SameCpu] {
        let mut group = c.benchmark_group(format!("{family}/round-trip-64B/{}", placement.label()));
        group.sample_size(20);
        group.bench_function("raw-pipe-1B", |b| {
            b.iter_custom(|iters| calibration::pipe_roundtrip(placement, iters as usize).total())
        });
        group.bench_function("raw-shm-pingpong", |b| {
            b.iter_custom(|iters| calibration::shm_pingpong(placement, iters as usize).total())
        });
        for &(name, flavor) in flavors {
            group.bench_function(name, |b| {
                b.iter_custom(|iters| round_trip(flavor, placement, iters as usize).total())
            });
        }
        group.finish();
    }
}
