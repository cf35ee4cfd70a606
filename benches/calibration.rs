//! The raw baselines under criterion, in the placements `ipcbench bench` measures them
//! in: cache-line ping-pong over shared memory; 1-byte pipe and Unix-socket round trips;
//! the futex wake round trip; the 64-byte Unix request-reply; pipe and Unix-socket streams
//! of 64 B to 1 MiB messages; flock and fcntl lock+unlock; atomic increments by 1, 2 and
//! 4 processes; memcpy bandwidth; fork+_exit+waitpid. `cargo bench -- calibration` runs
//! them alone.

mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ipcbench::measure::calibration as cal;
use ipcbench::measure::registry::{size_label, PLACEMENTS};
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
        group.bench_function(
            format!("{}/{}", cal::FUTEX_ROUNDTRIP, placement.label()),
            |b| b.iter_custom(|iters| cal::futex_roundtrip(placement, iters as usize).total()),
        );
    }
    for placement in [Placement::SameCpu, Placement::CrossCpu, Placement::Unpinned] {
        group.bench_function(
            format!("{}/{}", cal::UNIX_SOCKET_REQUEST_REPLY, placement.label()),
            |b| {
                b.iter_custom(|iters| {
                    cal::unix_socket_request_reply(placement, iters as usize).total()
                })
            },
        );
    }
    for (name, lock) in [
        (cal::FLOCK_ACQUIRE_RELEASE, cal::FileLock::Flock),
        (cal::FCNTL_ACQUIRE_RELEASE, cal::FileLock::Fcntl),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| cal::file_lock_acquire_release(lock, iters as usize).total())
        });
    }
    group.bench_function(cal::FILE_READ_MODIFY_WRITE, |b| {
        let content = ipcbench::measure::workloads::filestore::initial_bytes();
        b.iter_custom(|iters| cal::file_read_modify_write(&content, iters as usize).total())
    });
    for processes in [1u32, 2, 4] {
        group.bench_function(cal::atomic_increment_name(processes), |b| {
            b.iter_custom(|iters| cal::atomic_increments(processes as usize, iters as usize))
        });
    }
    group.bench_function(cal::FORK_EXIT, |b| {
        b.iter_custom(|iters| cal::fork_exit(iters as usize).total())
    });
    group.finish();

    // Streams: one iteration is one message, so criterion reports bytes/s.
    let mut streams = c.benchmark_group("calibration-stream");
    streams
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    for size in cal::STREAM_SIZES {
        streams.throughput(Throughput::Bytes(size));
        streams.bench_function(format!("pipe/{}/unpinned", size_label(size)), |b| {
            b.iter_custom(|iters| {
                cal::pipe_stream(size as usize, Placement::Unpinned, iters as usize).total()
            })
        });
        streams.bench_function(format!("unix/{}/unpinned", size_label(size)), |b| {
            b.iter_custom(|iters| {
                cal::unix_stream(size as usize, Placement::Unpinned, iters as usize).total()
            })
        });
    }
    streams.finish();

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
