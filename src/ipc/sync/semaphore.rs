//! Bounded semaphore (Python's `BoundedSemaphore`): acquire waits for a permit with a
//! timeout; a release that would raise the value past its bound is an error, since it
//! means some process released a permit it never took.
//!
//! The miscounted kind is a **test subject**, not for use: its release adds two permits
//! and skips the bound check — the counting bug the `semaphore-capacity/miscounted`
//! scenario must catch (more than N processes inside at once).

use super::{create_state, open_state, SyncError, Tagged};
use crate::ipc::futex::{self, Wake};
use crate::ipc::shm::{Shared, ShmSafe};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SemaphoreKind {
    Bounded,
    /// Test subject: release over-counts (see the module docs).
    Miscounted,
}

#[repr(C)]
pub struct SemaphoreState {
    ready: AtomicU32,
    /// 0 bounded, 1 miscounted.
    kind: AtomicU32,
    /// Permits available now: the futex word.
    value: AtomicU32,
    bound: AtomicU32,
    /// Processes sleeping in acquire; release skips the wake syscall when none.
    waiters: AtomicU32,
}

// SAFETY: atomics only; all-zero is "not ready", refused by open.
unsafe impl ShmSafe for SemaphoreState {}

impl Tagged for SemaphoreState {
    const WHAT: &'static str = "semaphore";
    const TAG: u32 = 0x5345_4d41; // "SEMA"
    fn ready(&self) -> &AtomicU32 {
        &self.ready
    }
}

pub struct Semaphore {
    state: Shared<SemaphoreState>,
}

impl Semaphore {
    /// A bounded semaphore holding `value` permits, which is also its bound.
    pub fn create(value: u32) -> Result<Semaphore, SyncError> {
        Self::with_bound(value, value)
    }

    /// `initial` permits now, never more than `bound` (a hand-off semaphore: 0 of 1).
    pub fn with_bound(initial: u32, bound: u32) -> Result<Semaphore, SyncError> {
        Self::create_kind(initial, bound, SemaphoreKind::Bounded)
    }

    /// The test subject with a counting bug; see the module docs.
    pub fn miscounted(value: u32) -> Result<Semaphore, SyncError> {
        Self::create_kind(value, value, SemaphoreKind::Miscounted)
    }

    fn create_kind(initial: u32, bound: u32, kind: SemaphoreKind) -> Result<Semaphore, SyncError> {
        if initial > bound || bound > i32::MAX as u32 {
            return Err(SyncError::Invalid(format!(
                "semaphore with {initial} initial permits and bound {bound}: the initial value must be at most the bound, and the bound at most {}",
                i32::MAX
            )));
        }
        let state = create_state(|s: &SemaphoreState| {
            s.kind.store(kind as u32, SeqCst);
            s.value.store(initial, SeqCst);
            s.bound.store(bound, SeqCst);
        })?;
        Ok(Semaphore { state })
    }

    pub fn open(name: &str) -> Result<Semaphore, SyncError> {
        Ok(Semaphore {
            state: open_state(name)?,
        })
    }

    pub fn name(&self) -> &str {
        self.state.name()
    }

    pub fn kind(&self) -> SemaphoreKind {
        if self.state.kind.load(SeqCst) == 1 {
            SemaphoreKind::Miscounted
        } else {
            SemaphoreKind::Bounded
        }
    }

    /// Permits available now.
    pub fn value(&self) -> u32 {
        self.state.value.load(SeqCst)
    }

    pub fn try_acquire(&self) -> bool {
        let value = &self.state.value;
        let mut seen = value.load(SeqCst);
        while seen > 0 {
            match value.compare_exchange_weak(seen, seen - 1, SeqCst, SeqCst) {
                Ok(_) => return true,
                Err(now) => seen = now,
            }
        }
        false
    }

    /// Takes a permit, waiting at most `timeout`.
    pub fn acquire(&self, timeout: Duration) -> Result<(), SyncError> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.try_acquire() {
                return Ok(());
            }
            self.state.waiters.fetch_add(1, SeqCst);
            let woke = futex::wait(&self.state.value, 0, Some(deadline));
            self.state.waiters.fetch_sub(1, SeqCst);
            if woke == Wake::TimedOut && !self.try_acquire() {
                return Err(SyncError::Timeout {
                    what: "semaphore acquire",
                    name: self.name().to_string(),
                    timeout,
                });
            } else if woke == Wake::TimedOut {
                return Ok(());
            }
        }
    }

    /// Returns a permit. Bounded: an error if that would exceed the bound.
    pub fn release(&self) -> Result<(), SyncError> {
        let state = &*self.state;
        if self.kind() == SemaphoreKind::Miscounted {
            // The injected bug: two permits back for one taken, no bound check.
            state.value.fetch_add(2, SeqCst);
        } else {
            let bound = state.bound.load(SeqCst);
            let mut seen = state.value.load(SeqCst);
            loop {
                if seen >= bound {
                    return Err(SyncError::ReleasedTooMany {
                        name: self.name().to_string(),
                        bound,
                    });
                }
                match state
                    .value
                    .compare_exchange_weak(seen, seen + 1, SeqCst, SeqCst)
                {
                    Ok(_) => break,
                    Err(now) => seen = now,
                }
            }
        }
        if state.waiters.load(SeqCst) > 0 {
            futex::wake(&state.value, 1);
        }
        Ok(())
    }
}
