//! Barrier (Python's `multiprocessing.Barrier`): `parties` processes wait until all have
//! arrived, then pass together. It breaks — for every waiter at once, and for good — when
//! a party aborts, when a waiter's timeout passes, or when a party *dies*: waiters check,
//! every [`LIVENESS_CHECK`], that every registered party is still alive, which Python's
//! Barrier does not (its waiters sit until their own timeouts).
//!
//! A process becomes a registered party when it opens the barrier by name or first waits
//! on it; the creator is not one unless it waits. At most [`MAX_PARTIES`] parties.

use super::{create_state, open_state, SyncError, Tagged};
use crate::ipc::futex;
use crate::ipc::shm::{Shared, ShmSafe};
use crate::process::hygiene;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::time::{Duration, Instant};

pub const MAX_PARTIES: usize = 64;
/// How often a waiter checks that every registered party is alive.
pub const LIVENESS_CHECK: Duration = Duration::from_millis(20);

const BROKEN_ABORTED: u32 = 1;
const BROKEN_PARTY_DIED: u32 = 2;
const BROKEN_TIMED_OUT: u32 = 3;

#[repr(C)]
pub struct BarrierState {
    ready: AtomicU32,
    parties: AtomicU32,
    /// Arrivals in the current generation.
    arrived: AtomicU32,
    /// Bumped when all parties have arrived.
    generation: AtomicU32,
    /// 0, or why it broke (BROKEN_*).
    broken: AtomicU32,
    /// The pid that broke it (the dead party, the aborter, the one that timed out).
    broken_by: AtomicU32,
    /// The futex word: bumped on every pass and on breaking.
    seq: AtomicU32,
    /// Registered parties' pids (0: free slot).
    party_pids: [AtomicU32; MAX_PARTIES],
}

// SAFETY: atomics only; all-zero is "not ready", refused by open.
unsafe impl ShmSafe for BarrierState {}

impl Tagged for BarrierState {
    const WHAT: &'static str = "barrier";
    const TAG: u32 = 0x4241_5252; // "BARR"
    fn ready(&self) -> &AtomicU32 {
        &self.ready
    }
}

pub struct Barrier {
    state: Shared<BarrierState>,
}

fn my_pid() -> u32 {
    std::process::id()
}

fn is_alive(pid: u32) -> bool {
    hygiene::proc_info(pid as i32).is_some_and(|p| p.state != 'Z' && p.state != 'X')
}

impl Barrier {
    pub fn create(parties: u32) -> Result<Barrier, SyncError> {
        if parties == 0 || parties as usize > MAX_PARTIES {
            return Err(SyncError::Invalid(format!(
                "barrier for {parties} parties: must be 1 to {MAX_PARTIES}"
            )));
        }
        Ok(Barrier {
            state: create_state(|s: &BarrierState| s.parties.store(parties, SeqCst))?,
        })
    }

    /// Opens a barrier created elsewhere and registers this process as a party.
    pub fn open(name: &str) -> Result<Barrier, SyncError> {
        let barrier = Barrier {
            state: open_state(name)?,
        };
        barrier.register()?;
        Ok(barrier)
    }

    pub fn name(&self) -> &str {
        self.state.name()
    }

    pub fn parties(&self) -> u32 {
        self.state.parties.load(SeqCst)
    }

    /// Pids of the processes registered as parties (whose death breaks the barrier).
    pub fn registered_parties(&self) -> Vec<u32> {
        self.state
            .party_pids
            .iter()
            .map(|p| p.load(SeqCst))
            .filter(|&p| p != 0)
            .collect()
    }

    /// Processes waiting now.
    pub fn n_waiting(&self) -> u32 {
        self.state.arrived.load(SeqCst)
    }

    fn register(&self) -> Result<(), SyncError> {
        let me = my_pid();
        let slots = &self.state.party_pids;
        if slots.iter().any(|s| s.load(SeqCst) == me) {
            return Ok(());
        }
        for slot in slots.iter().take(self.parties() as usize) {
            if slot.compare_exchange(0, me, SeqCst, SeqCst).is_ok() {
                return Ok(());
            }
        }
        Err(SyncError::Invalid(format!(
            "barrier {}: more processes than its {} parties",
            self.name(),
            self.parties()
        )))
    }

    pub fn is_broken(&self) -> bool {
        self.state.broken.load(SeqCst) != 0
    }

    /// Breaks the barrier for every waiter, now and later.
    pub fn abort(&self) {
        self.break_with(BROKEN_ABORTED, my_pid());
    }

    fn break_with(&self, why: u32, by: u32) {
        if self
            .state
            .broken
            .compare_exchange(0, why, SeqCst, SeqCst)
            .is_ok()
        {
            self.state.broken_by.store(by, SeqCst);
        }
        self.state.seq.fetch_add(1, SeqCst);
        futex::wake_all(&self.state.seq);
    }

    fn broken_error(&self) -> SyncError {
        let by = self.state.broken_by.load(SeqCst);
        let reason = match self.state.broken.load(SeqCst) {
            BROKEN_ABORTED => format!("aborted by process {by}"),
            BROKEN_PARTY_DIED => format!("party process {by} died"),
            BROKEN_TIMED_OUT => format!("process {by} timed out waiting"),
            other => format!("unknown reason {other}"),
        };
        SyncError::Broken {
            name: self.name().to_string(),
            reason,
        }
    }

    fn dead_party(&self) -> Option<u32> {
        let me = my_pid();
        self.state
            .party_pids
            .iter()
            .map(|s| s.load(SeqCst))
            .find(|&pid| pid != 0 && pid != me && !is_alive(pid))
    }

    /// Waits until all parties have arrived; returns this process's arrival index (0 for
    /// the first). Errors when the barrier is or becomes broken, or `timeout` passes (which
    /// breaks it for everyone, as in Python).
    pub fn wait(&self, timeout: Duration) -> Result<u32, SyncError> {
        self.register()?;
        let state = &*self.state;
        if self.is_broken() {
            return Err(self.broken_error());
        }
        let deadline = Instant::now() + timeout;
        let generation = state.generation.load(SeqCst);
        let index = state.arrived.fetch_add(1, SeqCst);
        if index + 1 == self.parties() {
            state.arrived.store(0, SeqCst);
            state.generation.fetch_add(1, SeqCst);
            state.seq.fetch_add(1, SeqCst);
            futex::wake_all(&state.seq);
            return Ok(index);
        }
        loop {
            let seq = state.seq.load(SeqCst);
            if state.generation.load(SeqCst) != generation {
                return Ok(index);
            }
            if self.is_broken() {
                return Err(self.broken_error());
            }
            let now = Instant::now();
            if now >= deadline {
                self.break_with(BROKEN_TIMED_OUT, my_pid());
                return Err(SyncError::Timeout {
                    what: "barrier wait",
                    name: self.name().to_string(),
                    timeout,
                });
            }
            if let Some(dead) = self.dead_party() {
                // The party may have passed (the generation moved on since the check
                // above) and exited normally: only a death with the generation unchanged
                // means it can never arrive.
                if state.generation.load(SeqCst) != generation {
                    return Ok(index);
                }
                self.break_with(BROKEN_PARTY_DIED, dead);
                return Err(self.broken_error());
            }
            futex::wait(&state.seq, seq, Some(deadline.min(now + LIVENESS_CHECK)));
        }
    }
}
