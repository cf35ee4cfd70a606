//! Bounded semaphore (Python's `BoundedSemaphore`): acquire waits for a permit with a
//! timeout; a release that would raise the value past its bound is an error, since it
//! means some process released a permit it never took.
//!
//! The miscounted kind is a **test subject**, not for use: its release adds two permits
//! and skips the bound check — the counting bug the `semaphore-capacity/miscounted`
//! scenario must catch (more than N processes inside at once).

use super::{create_state, open_state, SyncError, Tagged};
use crate::schedule::{point, wait_point};
use crate::sys::futex::{self, Wake};
use crate::sys::shm::{Shared, ShmSafe};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum SemaphoreKind {
    Bounded,
    /// Test subject: release over-counts (see the module docs).
    Miscounted,
}

#[repr(C)]
pub(crate) struct SemaphoreState {
    ready: AtomicU32,
    /// 0 bounded, 1 miscounted.
    kind: AtomicU32,
    /// Permits available now: the futex word.
    value: AtomicU32,
    bound: AtomicU32,
    /// Processes sleeping in acquire; release skips the wake syscall when none. A waiter
    /// killed while asleep leaves its count here: that only costs a wake call.
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

/// Python's `multiprocessing.(Bounded)Semaphore` in shared memory: a count of permits,
/// futex waits, and a bounded kind that refuses a release past its initial value.
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

    /// Opens a semaphore created elsewhere, by its name.
    pub fn open(name: &str) -> Result<Semaphore, SyncError> {
        Ok(Semaphore {
            state: open_state(name)?,
        })
    }

    /// The shared-memory name other processes pass to [`Semaphore::open`].
    pub fn name(&self) -> &str {
        self.state.name()
    }

    pub(crate) fn kind(&self) -> SemaphoreKind {
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

    /// Takes a permit if one is free now, without waiting.
    pub fn try_acquire(&self) -> bool {
        let value = &self.state.value;
        let mut seen = value.load(SeqCst);
        while seen > 0 {
            // Count checked, permit not taken: another acquirer may take it first. (A
            // strong CAS: a spurious failure would pass the point once more, and a forced
            // schedule must count the same steps every time.)
            point("semaphore/acquire:count-seen");
            match value.compare_exchange(seen, seen - 1, SeqCst, SeqCst) {
                Ok(_) => return true,
                Err(now) => seen = now,
            }
        }
        false
    }

    /// Takes a permit, waiting at most `timeout`.
    pub fn acquire(&self, timeout: Duration) -> Result<(), SyncError> {
        let deadline = Instant::now() + timeout;
        let timed_out = || SyncError::Timeout {
            what: "semaphore acquire",
            name: self.name().to_string(),
            timeout,
        };
        loop {
            if self.try_acquire() {
                return Ok(());
            }
            // In a forced schedule the releaser needs the turn: pass it, then re-check.
            if wait_point("semaphore/acquire:wait") {
                if Instant::now() < deadline {
                    continue;
                }
                return Err(timed_out());
            }
            self.state.waiters.fetch_add(1, SeqCst);
            let woke = futex::wait(&self.state.value, 0, Some(deadline));
            self.state.waiters.fetch_sub(1, SeqCst);
            if woke == Wake::TimedOut && !self.try_acquire() {
                return Err(timed_out());
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
                // Bound checked, permit not returned: another release may fill it first.
                point("semaphore/release:count-seen");
                match state.value.compare_exchange(seen, seen + 1, SeqCst, SeqCst) {
                    Ok(_) => break,
                    Err(now) => seen = now,
                }
            }
        }
        // Every sleeper, not one: a single wake is absorbed by a waiter that dies (or is
        // stopped for good) between its wake-up and its `try_acquire`, and the others would
        // sleep to their deadlines with the permit free. Woken together, the live ones race
        // for the permit with `try_acquire`; the losers go back to sleep. The cost is a
        // herd of wake-ups per release when many wait; correctness against a dead peer is
        // worth it (a dying process cannot pass a wake on, so "wake one and forward" would
        // not be enough).
        if state.waiters.load(SeqCst) > 0 {
            futex::wake_all(&state.value);
        }
        Ok(())
    }
}

/// Cross-process checks of the wake protocol (in the library's test binary: they need
/// the private state to play a waiter that is woken and then dies).
#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::{self, Child, Options, StartMethod};

    /// A waiter that is woken and then dies before it takes the permit: it sleeps on the
    /// value word exactly as `acquire` does (announced in `waiters`), and leaves as soon as
    /// it is woken — what a waiter SIGKILLed (or stopped for good) between its wake-up and
    /// its `try_acquire` amounts to.
    fn absorb_one_wake(name: String) -> Result<(), String> {
        let semaphore = Semaphore::open(&name).map_err(|e| e.to_string())?;
        let state = &*semaphore.state;
        state.waiters.fetch_add(1, SeqCst);
        let deadline = Instant::now() + Duration::from_secs(3600);
        while futex::wait(&state.value, 0, Some(deadline)) == Wake::Changed {}
        Ok(())
    }
    crate::register_entry!("semaphore-unit-absorb-one-wake", absorb_one_wake);

    fn acquire_within_an_hour(name: String) -> Result<u32, String> {
        let semaphore = Semaphore::open(&name).map_err(|e| e.to_string())?;
        semaphore
            .acquire(Duration::from_secs(3600))
            .map_err(|e| e.to_string())?;
        Ok(semaphore.value())
    }
    crate::register_entry!(
        "semaphore-unit-acquire-within-an-hour",
        acquire_within_an_hour
    );

    /// Waits until `child` sleeps in the kernel's futex wait (wchan is only reported for
    /// a task that is off the CPU), i.e. it is queued on the futex.
    fn asleep_in_futex(child: &Child) {
        let by = Instant::now() + Duration::from_secs(20);
        crate::process::watchdog::await_wchan(child.pid().as_raw(), "futex", by).unwrap();
    }

    fn start(entry: &str, name: &str) -> Child {
        process::start(
            entry,
            &name.to_string(),
            Options::new(entry).method(StartMethod::Fork),
        )
        .unwrap()
    }

    /// Item 7: one release, two sleepers, the first of which (futex wakes are FIFO for
    /// ordinary tasks) takes the wake and dies without the permit. The live sleeper must
    /// still get the permit: its own bound is an hour, so only a wake lets it out within
    /// the 20-s join bound.
    #[test]
    fn a_wake_absorbed_by_a_dying_waiter_still_lets_a_live_waiter_take_the_permit() {
        let _serial = crate::process::tests_serial();
        let semaphore = Semaphore::with_bound(0, 1).unwrap();
        let mut absorber = start("semaphore-unit-absorb-one-wake", semaphore.name());
        asleep_in_futex(&absorber);
        let mut live = start("semaphore-unit-acquire-within-an-hour", semaphore.name());
        asleep_in_futex(&live);
        assert_eq!(semaphore.state.waiters.load(SeqCst), 2);
        semaphore.release().unwrap();
        absorber
            .result::<()>(Some(Duration::from_secs(20)))
            .unwrap();
        let left: u32 = live
            .result(Some(Duration::from_secs(20)))
            .expect("the live waiter never got the permit released while it slept");
        assert_eq!(left, 0, "the live waiter took the one permit");
    }
}
