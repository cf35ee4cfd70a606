//! The progress board: one cell block per worker slot in shared memory, written by the
//! worker and read by the parent. It lives outside the worker, so what a SIGKILLed worker
//! had attempted and committed is still there after it died — the basis of the
//! exactly-once books (`super::ledger`). A `stop` word asks every worker to finish.

use crate::sys::shm::{Shared, ShmSafe};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Most worker slots a run can have.
pub(crate) const MAX_SLOTS: usize = 256;

/// One worker's counters.
#[repr(C)]
#[derive(Debug, Default)]
pub struct Cell {
    /// Operations started (bumped before the operation).
    pub attempted: AtomicU64,
    /// Operations completed (bumped after the operation returned).
    pub committed: AtomicU64,
    /// Target-specific: e.g. a lock target's count of owner deaths it recovered.
    pub(crate) extra: AtomicU64,
}

#[repr(C)]
#[derive(Debug)]
pub(crate) struct Cells {
    pub(crate) stop: AtomicU32,
    /// Set once every producer has ended after the stop request: consumers drain the
    /// mechanism until it is empty, then return.
    pub(crate) producers_done: AtomicU32,
    pub(crate) slots: [Cell; MAX_SLOTS],
}

// SAFETY: only atomics, valid when zeroed, no pointers; Sync.
unsafe impl ShmSafe for Cells {}

/// The board, created by the parent and opened by name in each worker.
pub struct Board {
    shared: Shared<Cells>,
}

impl Board {
    pub(crate) fn create() -> std::io::Result<Board> {
        Ok(Board {
            shared: Shared::create("stress-board", 0)?,
        })
    }

    /// Opens the run's board by the name in [`WorkerSpec::board`](crate::stress::WorkerSpec::board) (in a worker).
    pub fn open(name: &str) -> std::io::Result<Board> {
        Ok(Board {
            shared: Shared::open(name)?,
        })
    }

    pub(crate) fn name(&self) -> &str {
        self.shared.name()
    }

    /// The counters of the worker in `slot`, which it bumps around every operation.
    pub fn cell(&self, slot: usize) -> &Cell {
        &self.shared.slots[slot]
    }

    /// Zeroes a slot for the worker about to start in it.
    pub(crate) fn reset(&self, slot: usize) {
        let cell = self.cell(slot);
        cell.attempted.store(0, Ordering::SeqCst);
        cell.committed.store(0, Ordering::SeqCst);
        cell.extra.store(0, Ordering::SeqCst);
    }

    /// (attempted, committed, extra) of a slot.
    pub(crate) fn read(&self, slot: usize) -> (u64, u64, u64) {
        let cell = self.cell(slot);
        (
            cell.attempted.load(Ordering::SeqCst),
            cell.committed.load(Ordering::SeqCst),
            cell.extra.load(Ordering::SeqCst),
        )
    }

    pub(crate) fn request_stop(&self) {
        self.shared.stop.store(1, Ordering::SeqCst);
    }

    pub(crate) fn stop_requested(&self) -> bool {
        self.shared.stop.load(Ordering::Relaxed) != 0
    }

    pub(crate) fn signal_producers_done(&self) {
        self.shared.producers_done.store(1, Ordering::SeqCst);
    }

    /// Every producer has ended (only ever set after the stop request).
    pub(crate) fn producers_done(&self) -> bool {
        self.shared.producers_done.load(Ordering::SeqCst) != 0
    }
}
