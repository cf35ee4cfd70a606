//! The raw baselines as registry workloads (`calibration/NAME/PLACEMENT`), first in the
//! catalogue: each in the placements of the workloads it divides, since a ratio is only
//! computed against the same baseline in the same placement.

use super::{self as cal, handoff, messaging};
use crate::measure::registry::{Sample, Workload, PLACEMENTS};
use crate::results::Placement;

crate::register_workloads!("calibration", catalogue, rank = 0);

/// hackbench's loops per run of the messaging calibrations: (quick, full); the full
/// figure is what scripts/fidelity.sh compares with `perf bench sched messaging -g 1 -l
/// 1000` (the longer run leaves less to the start and exit of its 40 processes).
pub const MESSAGING_LOOPS: (usize, usize) = (100, 1_000);

/// Messages per raw stream repeat: (quick, full); 32 MiB in the quick profile (30,000
/// messages at 64 B), ten times as many in the full one; under 0.1 s a repeat at
/// 64 KiB on an idle machine.
fn raw_stream_messages(size: u64) -> (usize, usize) {
    let quick = ((32u64 << 20) / size).clamp(32, 30_000) as usize;
    (quick, quick * 10)
}

/// Every raw baseline, in the catalogue's order.
pub fn catalogue() -> Vec<Workload> {
    let mut all = Vec::new();
    // Two spinners on one CPU would measure the scheduler, not the cache line.
    all.push(
        Workload::calibration(cal::SHM_PINGPONG)
            .placement(Placement::CrossCpu)
            .ops(20_000, 200_000)
            .run(|placement, n| Sample::Times(cal::shm_pingpong(placement, n))),
    );
    for placement in PLACEMENTS {
        all.push(
            Workload::calibration(cal::FUTEX_ROUNDTRIP)
                .placement(placement)
                .ops(3_000, 30_000)
                .run(|placement, n| Sample::Times(cal::futex_roundtrip(placement, n))),
        );
        all.push(
            Workload::calibration(cal::PIPE_ROUNDTRIP)
                .placement(placement)
                .ops(3_000, 30_000)
                .run(|placement, n| Sample::Times(cal::pipe_roundtrip(placement, n))),
        );
        all.push(
            Workload::calibration(cal::UNIX_SOCKET_ROUNDTRIP)
                .placement(placement)
                .ops(3_000, 30_000)
                .run(|placement, n| Sample::Times(cal::unix_socket_roundtrip(placement, n))),
        );
    }
    // Unpinned too: the multi-client Manager and pool echo workloads are.
    for placement in [Placement::SameCpu, Placement::CrossCpu, Placement::Unpinned] {
        all.push(
            Workload::calibration(cal::UNIX_SOCKET_REQUEST_REPLY)
                .placement(placement)
                .ops(3_000, 30_000)
                .run(|placement, n| Sample::Times(cal::unix_socket_request_reply(placement, n))),
        );
    }
    // Unpinned, as the stream workloads run (a ratio needs the same placement).
    for size in cal::STREAM_SIZES {
        let (quick, full) = raw_stream_messages(size);
        all.push(
            Workload::calibration(cal::pipe_stream_name(size))
                .ops(quick, full)
                .run(move |placement, n| cal::pipe_stream(size as usize, placement, n)),
        );
        all.push(
            Workload::calibration(cal::unix_stream_name(size))
                .ops(quick, full)
                .run(move |placement, n| cal::unix_stream(size as usize, placement, n)),
        );
    }
    for (name, lock) in [
        (cal::FLOCK_ACQUIRE_RELEASE, cal::FileLock::Flock),
        (cal::FCNTL_ACQUIRE_RELEASE, cal::FileLock::Fcntl),
    ] {
        all.push(
            Workload::calibration(name)
                .ops(20_000, 200_000)
                .run(move |_, n| Sample::Times(cal::file_lock_acquire_release(lock, n))),
        );
    }
    // Unpinned, one process, as the file store's workloads run.
    all.push(
        Workload::calibration(cal::FILE_READ_MODIFY_WRITE)
            .ops(500, 5_000)
            .run(|_, n| {
                let content = crate::measure::workloads::filestore::initial_bytes();
                Sample::Times(cal::file_read_modify_write(&content, n))
            }),
    );
    for (processes, (quick, full)) in [
        (1u32, (10_000_000, 100_000_000)),
        (2, (4_000_000, 40_000_000)),
        (4, (4_000_000, 40_000_000)),
    ] {
        all.push(
            Workload::calibration(cal::atomic_increment_name(processes))
                .ops(quick, full)
                .run(move |_, n| {
                    Sample::Times(cal::per_op(
                        cal::atomic_increments(processes as usize, n),
                        n,
                    ))
                }),
        );
    }
    all.push(Workload::calibration(cal::MEMCPY).ops(4, 32).run(|_, n| {
        let started = std::time::Instant::now();
        let rate = cal::memcpy_bandwidth(n);
        let elapsed = started.elapsed();
        Sample::Moved {
            messages: n as u64,
            bytes: (rate * elapsed.as_secs_f64()) as u64,
            elapsed,
        }
    }));
    all.push(
        Workload::calibration(cal::FORK_EXIT)
            .ops(100, 1_000)
            .run(|_, n| Sample::Times(cal::fork_exit(n))),
    );
    all.push(
        Workload::calibration(cal::FORK_EXEC)
            .ops(30, 300)
            .run(|_, n| Sample::Times(cal::fork_exec(n))),
    );
    // Unpinned, as the pool workloads run.
    all.push(
        Workload::calibration(handoff::TASK_HANDOFF)
            .ops(3_000, 30_000)
            .run(|_, n| Sample::Times(handoff::task_handoff(n))),
    );
    all.push(
        Workload::calibration(handoff::TASK_HANDOFF_2_WORKERS)
            .ops(3_000, 30_000)
            .run(|_, n| {
                let workers = handoff::STREAM_WORKERS;
                Sample::Times(cal::per_op(handoff::task_stream(workers, n), n))
            }),
    );
    // Operations are hackbench's loops; scripts/fidelity.sh passes perf the same.
    let (quick, full) = MESSAGING_LOOPS;
    for transport in [messaging::Transport::Pipe, messaging::Transport::UnixSocket] {
        all.push(
            Workload::calibration(transport.calibration_name())
                .ops(quick, full)
                .run(move |_, loops| {
                    Sample::Times(messaging::messaging(transport, messaging::GROUPS, loops))
                }),
        );
    }
    all
}
