//! File-store read-modify-write (lock, read JSON, change, write temp + rename, unlock)
//! per lock flavor, by one process or several.

use super::crowd::{crowd_member, timed_crowd, CrowdArgs, BOUND};
use crate::ipc::filestore::{Counts, FileStore, StoreAddress, StoreLockKind};
use crate::measure::MeasureError;
use crate::register_entry;
use std::time::{Duration, Instant};

/// What every store of these workloads starts with: stock enough for any run.
pub fn initial_counts() -> Counts {
    Counts::from([("stock".into(), i64::MAX / 2), ("sold".into(), 0)])
}

/// The bytes of a store holding [`initial_counts`], as the store writes them: what the
/// raw file read-modify-write it is divided by moves.
pub fn initial_bytes() -> Vec<u8> {
    serde_json::to_vec_pretty(&initial_counts()).expect("counts encode")
}

fn buy(counts: &mut Counts) {
    *counts.entry("stock".into()).or_default() -= 1;
    *counts.entry("sold".into()).or_default() += 1;
}

fn buyer(args: CrowdArgs<StoreAddress>) -> Result<(), MeasureError> {
    crowd_member(
        args,
        |address| FileStore::open(address).map_err(MeasureError::from),
        |store| {
            store
                .update(BOUND, buy)
                .map(|_| ())
                .map_err(MeasureError::from)
        },
    )
}
register_entry!("measure-filestore-buyer", buyer);

/// Time for `iters` ticket purchases on a fresh store guarded by `kind`: by this process
/// alone when `processes` is 1, else shared among that many child processes. (The
/// unlocked kind loses updates when contended; its time is still the cost of the I/O.)
pub fn read_modify_write(kind: StoreLockKind, processes: usize, iters: usize) -> Duration {
    let store = FileStore::create(kind, &initial_counts()).expect("create store");
    if processes <= 1 {
        let started = Instant::now();
        for _ in 0..iters {
            store.update(BOUND, buy).expect("update");
        }
        return started.elapsed();
    }
    timed_crowd(
        "measure-filestore-buyer",
        &store.address(),
        processes,
        iters,
    )
}

crate::register_workloads!("filestore", catalogue, rank = 80);

/// This family's entries in `measure::registry`, every one divided by the raw file
/// read-modify-write (updates per raw update): a figure of the same kind, file I/O. A lock
/// calibration was used before; on a machine where file I/O got slower while locks got
/// faster, the ratios moved 2.8× with no change in the code.
pub fn catalogue() -> Vec<crate::measure::registry::Workload> {
    use crate::measure::calibration as cal;
    use crate::measure::registry::Workload;
    let mut all = Vec::new();
    for kind in StoreLockKind::ALL {
        for processes in [1u32, 2] {
            all.push(
                Workload::operations("filestore", kind.name(), "read-modify-write")
                    .contenders(processes)
                    .divided_by(cal::FILE_READ_MODIFY_WRITE)
                    .ops(200, 2_000)
                    .run(move |n| read_modify_write(kind, processes as usize, n)),
            );
        }
    }
    all
}
