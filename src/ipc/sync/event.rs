//! Event (Python's `multiprocessing.Event`): a flag in shared memory; `set` wakes every
//! waiter in every process, `wait` returns false when the timeout passes first.

use super::{create_state, open_state, SyncError, Tagged};
use crate::process::affinity;
use crate::sys::futex::{self, Wake};
use crate::sys::shm::{Shared, ShmSafe};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::time::{Duration, Instant};

/// Spins before sleeping, when a setter can run on another CPU meanwhile: the waiter then
/// sees the flag in well under a microsecond instead of paying a futex wake-up. When
/// every setter can run only on the waiter's CPU it sleeps at once: a spin there only
/// delays the setter.
const SPINS: u32 = 200;

#[repr(C)]
pub(crate) struct EventState {
    ready: AtomicU32,
    /// 1 set, 0 clear: the futex word.
    flag: AtomicU32,
    waiters: AtomicU32,
    /// The CPUs setters may run on (the union of their affinity masks, 0 until the first
    /// set): what a waiter asks before spinning.
    setter_cpus: AtomicU64,
}

// SAFETY: atomics only; all-zero is "not ready", refused by open.
unsafe impl ShmSafe for EventState {}

impl Tagged for EventState {
    const WHAT: &'static str = "event";
    const TAG: u32 = 0x4556_4e54; // "EVNT"
    fn ready(&self) -> &AtomicU32 {
        &self.ready
    }
}

/// Python's `multiprocessing.Event` in shared memory: a flag processes set, clear and
/// wait on (futex, no polling).
pub struct Event {
    state: Shared<EventState>,
}

impl Event {
    /// A new, clear event.
    pub fn create() -> Result<Event, SyncError> {
        Ok(Event {
            state: create_state(|_: &EventState| {})?,
        })
    }

    /// Opens an event created elsewhere, by its name.
    pub fn open(name: &str) -> Result<Event, SyncError> {
        Ok(Event {
            state: open_state(name)?,
        })
    }

    /// The shared-memory name other processes pass to [`Event::open`].
    pub fn name(&self) -> &str {
        self.state.name()
    }

    /// Whether the flag is set now.
    pub fn is_set(&self) -> bool {
        self.state.flag.load(SeqCst) == 1
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        let mine = affinity::allowed_mask();
        if self.state.setter_cpus.load(Relaxed) & mine != mine {
            self.state.setter_cpus.fetch_or(mine, Relaxed);
        }
        self.state.flag.store(1, SeqCst);
        if self.state.waiters.load(SeqCst) > 0 {
            futex::wake_all(&self.state.flag);
        }
    }

    /// Clears the flag; later waits block until the next `set`.
    pub fn clear(&self) {
        self.state.flag.store(0, SeqCst);
    }

    /// True once the event is set; false if `timeout` passes first.
    pub fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let spins = if affinity::spinning_can_pay(self.state.setter_cpus.load(Relaxed)) {
            SPINS
        } else {
            0
        };
        for _ in 0..spins {
            if self.is_set() {
                return true;
            }
            std::hint::spin_loop();
        }
        loop {
            if self.is_set() {
                return true;
            }
            self.state.waiters.fetch_add(1, SeqCst);
            let woke = futex::wait(&self.state.flag, 0, Some(deadline));
            self.state.waiters.fetch_sub(1, SeqCst);
            if woke == Wake::TimedOut {
                return self.is_set();
            }
        }
    }
}

/// Fail-fast checks in the library's own test binary, which runs first: a broken wake
/// fails here in seconds, where the integration suites would crawl (their waits end at
/// their timeouts, which also return true).
#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::{self, Options, StartMethod};

    fn wait_an_hour(name: String) -> Result<bool, String> {
        let event = Event::open(&name).map_err(|e| e.to_string())?;
        Ok(event.wait(Duration::from_secs(3600)))
    }
    crate::register_entry!("event-unit-wait-an-hour", wait_an_hour);

    #[test]
    fn set_wakes_a_waiter_asleep_in_another_process() {
        let _serial = crate::process::tests_serial();
        let event = Event::create().unwrap();
        let mut child = process::start(
            "event-unit-wait-an-hour",
            &event.name().to_string(),
            Options::new("event-waiter").method(StartMethod::Fork),
        )
        .unwrap();
        // Set only once the waiter sleeps, so the wake (not the spin) is what lets it out.
        let asleep_by = Instant::now() + Duration::from_secs(20);
        while event.state.waiters.load(SeqCst) == 0 {
            assert!(Instant::now() < asleep_by, "the waiter never went to sleep");
            std::thread::sleep(Duration::from_millis(1));
        }
        event.set();
        // Bounded far below the waiter's hour: only the wake can end it in time.
        let woken: bool = child.result(Some(Duration::from_secs(20))).unwrap();
        assert!(woken);
    }
}
