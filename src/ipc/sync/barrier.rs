//! Barrier (Python's `multiprocessing.Barrier`): `parties` processes wait until all have
//! arrived, then pass together. It breaks — for every waiter at once, and for good — when
//! a party aborts, when a waiter's timeout passes, or when a party *dies*: waiters check,
//! every [`LIVENESS_CHECK`], that every registered party is still alive, which Python's
//! Barrier does not (its waiters sit until their own timeouts).
//!
//! A process becomes a registered party when it opens the barrier by name or first waits
//! on it; the creator is not one unless it waits. At most [`MAX_PARTIES`] parties.
//!
//! Arrivals, the generation and the broken state share one word (the futex word), changed
//! only by compare-and-swap. So a generation has one outcome for all its parties: either
//! the last arrival completes it before anyone breaks it (then everyone passes, including
//! a waiter whose deadline had just passed — it is told it passed), or the barrier breaks
//! first (then the last arrival is refused too, and nobody passes).

use super::{create_state, open_state, SyncError, Tagged};
use crate::process::hygiene;
use crate::sys::futex;
use crate::sys::shm::{Shared, ShmSafe};
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::time::{Duration, Instant};

pub(crate) const MAX_PARTIES: usize = 64;
/// How often a waiter checks that every registered party is alive.
pub(crate) const LIVENESS_CHECK: Duration = Duration::from_millis(20);

const BROKEN_ABORTED: u32 = 1;
const BROKEN_PARTY_DIED: u32 = 2;
const BROKEN_TIMED_OUT: u32 = 3;

#[repr(C)]
pub(crate) struct BarrierState {
    ready: AtomicU32,
    parties: AtomicU32,
    /// The futex word, a [`Phase`]: arrivals in the current generation, why it broke,
    /// and the generation (bumped when all parties have arrived).
    phase: AtomicU32,
    /// The pid that broke it (the dead party, the aborter, the one that timed out),
    /// written just after the break.
    broken_by: AtomicU32,
    /// Registered parties' pids (0: free slot).
    party_pids: [AtomicU32; MAX_PARTIES],
}

/// The barrier's state word: bits 0..7 the arrivals of this generation (at most
/// [`MAX_PARTIES`]), bits 7..9 why it broke (0: not broken), bits 9.. the generation,
/// wrapping (only compared for equality by a waiter of that generation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Phase(u32);

impl Phase {
    const ARRIVED: u32 = 0x7f;
    const BROKEN_SHIFT: u32 = 7;
    const GENERATION_SHIFT: u32 = 9;

    fn arrived(self) -> u32 {
        self.0 & Self::ARRIVED
    }
    fn broken(self) -> u32 {
        (self.0 >> Self::BROKEN_SHIFT) & 3
    }
    fn generation(self) -> u32 {
        self.0 >> Self::GENERATION_SHIFT
    }
    fn with_arrived(self, arrived: u32) -> Phase {
        Phase((self.0 & !Self::ARRIVED) | arrived)
    }
    fn broken_with(self, why: u32) -> Phase {
        Phase(self.0 | (why << Self::BROKEN_SHIFT))
    }
    /// The next generation: nobody arrived, not broken.
    fn next_generation(self) -> Phase {
        Phase(self.generation().wrapping_add(1) << Self::GENERATION_SHIFT)
    }
}

/// What an attempt to break the barrier found.
#[derive(Debug, PartialEq, Eq)]
enum Break {
    /// This call broke it.
    Broke,
    /// Someone had broken it already.
    AlreadyBroken,
    /// The waiter's generation had completed first: it passed.
    Passed,
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

/// Python's `multiprocessing.Barrier` in shared memory (see the module docs for when it
/// breaks).
pub struct Barrier {
    state: Shared<BarrierState>,
}

fn my_pid() -> u32 {
    std::process::id()
}

// Test hook: runs on a waiter's thread when its deadline has passed, before it acts on
// the timeout, so a test can force an arrival into exactly that moment.
#[cfg(test)]
thread_local! {
    static AT_TIMEOUT: std::cell::RefCell<Option<Box<dyn FnOnce()>>> =
        const { std::cell::RefCell::new(None) };
}

#[cfg(test)]
fn at_timeout() {
    if let Some(hook) = AT_TIMEOUT.with(|h| h.borrow_mut().take()) {
        hook();
    }
}

#[cfg(not(test))]
fn at_timeout() {}

/// Whether a party's process is still there. Only a definite answer counts as a death:
/// the kernel saying the pid does not exist (ESRCH), or /proc showing a zombie. Failing
/// to look (EMFILE when this process is out of fds, ENOMEM, a /proc not mounted) says
/// nothing about the party, and a barrier broken on it would fail every live party.
fn is_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return true; // not a pid this barrier could have registered; leave it be
    };
    let probe = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None);
    // Read /proc only for a pid that exists: a zombie still answers kill(pid, 0).
    let state = match probe {
        Ok(()) | Err(nix::errno::Errno::EPERM) => hygiene::proc_info(pid).map(|p| p.state),
        Err(_) => None,
    };
    !party_is_gone(probe, state)
}

/// The decision behind [`is_alive`]: `probe` is kill(pid, 0), `state` the state letter
/// read from /proc/PID/stat (None: not read).
fn party_is_gone(probe: nix::Result<()>, state: Option<char>) -> bool {
    match probe {
        Err(nix::errno::Errno::ESRCH) => true,
        // EPERM: it exists, owned by someone else.
        Ok(()) | Err(nix::errno::Errno::EPERM) => matches!(state, Some('Z' | 'X')),
        // Any other failure of the probe is not an answer.
        Err(_) => false,
    }
}

impl Barrier {
    /// A barrier for `parties` processes (1 to 64).
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

    /// The shared-memory name other parties pass to [`Barrier::open`].
    pub fn name(&self) -> &str {
        self.state.name()
    }

    pub(crate) fn parties(&self) -> u32 {
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
        self.phase().arrived()
    }

    fn phase(&self) -> Phase {
        Phase(self.state.phase.load(SeqCst))
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

    /// Whether the barrier broke (an abort, a timeout, a dead party): every wait fails.
    pub fn is_broken(&self) -> bool {
        self.phase().broken() != 0
    }

    /// Breaks the barrier for every waiter, now and later.
    pub fn abort(&self) {
        self.try_break(None, BROKEN_ABORTED, my_pid());
    }

    /// Breaks the barrier unless it is broken already or — given the generation a waiter
    /// arrived in — that generation has completed: one compare-and-swap on the phase word
    /// decides against a concurrent last arrival.
    fn try_break(&self, generation: Option<u32>, why: u32, by: u32) -> Break {
        let phase = &self.state.phase;
        let mut seen = self.phase();
        loop {
            if generation.is_some_and(|g| g != seen.generation()) {
                return Break::Passed;
            }
            if seen.broken() != 0 {
                return Break::AlreadyBroken;
            }
            match phase.compare_exchange(seen.0, seen.broken_with(why).0, SeqCst, SeqCst) {
                Ok(_) => break,
                Err(now) => seen = Phase(now),
            }
        }
        self.state.broken_by.store(by, SeqCst);
        futex::wake_all(phase);
        Break::Broke
    }

    fn broken_error(&self) -> SyncError {
        // The breaker writes its pid just after the break: give it a moment.
        let mut by = self.state.broken_by.load(SeqCst);
        for _ in 0..1000 {
            if by != 0 {
                break;
            }
            std::thread::yield_now();
            by = self.state.broken_by.load(SeqCst);
        }
        let by = if by == 0 {
            "an unknown process".to_string()
        } else {
            format!("process {by}")
        };
        let reason = match self.phase().broken() {
            BROKEN_ABORTED => format!("aborted by {by}"),
            BROKEN_PARTY_DIED => format!("party {by} died"),
            BROKEN_TIMED_OUT => format!("{by} timed out waiting"),
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
    /// breaks it for everyone, as in Python) — unless the generation completed first, in
    /// which case the waiter passes like everyone else.
    pub fn wait(&self, timeout: Duration) -> Result<u32, SyncError> {
        self.register()?;
        let phase = &self.state.phase;
        let parties = self.parties();
        let deadline = Instant::now() + timeout;
        let mut seen = self.phase();
        let (generation, index) = loop {
            if seen.broken() != 0 {
                return Err(self.broken_error());
            }
            let index = seen.arrived();
            let last = index + 1 >= parties;
            let next = if last {
                seen.next_generation()
            } else {
                seen.with_arrived(index + 1)
            };
            match phase.compare_exchange(seen.0, next.0, SeqCst, SeqCst) {
                Ok(_) if last => {
                    futex::wake_all(phase);
                    return Ok(index);
                }
                Ok(_) => break (seen.generation(), index),
                Err(now) => seen = Phase(now),
            }
        };
        loop {
            let seen = self.phase();
            if seen.generation() != generation {
                return Ok(index);
            }
            if seen.broken() != 0 {
                return Err(self.broken_error());
            }
            let now = Instant::now();
            if now >= deadline {
                at_timeout();
                return match self.try_break(Some(generation), BROKEN_TIMED_OUT, my_pid()) {
                    Break::Passed => Ok(index),
                    Break::Broke => Err(SyncError::Timeout {
                        what: "barrier wait",
                        name: self.name().to_string(),
                        timeout,
                    }),
                    Break::AlreadyBroken => Err(self.broken_error()),
                };
            }
            if let Some(dead) = self.dead_party() {
                // The party may have passed and exited normally: only a death with the
                // generation unchanged means it can never arrive, and try_break checks
                // that in the same step as it breaks.
                return match self.try_break(Some(generation), BROKEN_PARTY_DIED, dead) {
                    Break::Passed => Ok(index),
                    Break::Broke | Break::AlreadyBroken => Err(self.broken_error()),
                };
            }
            futex::wait(phase, seen.0, Some(deadline.min(now + LIVENESS_CHECK)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    const LONG: Duration = Duration::from_secs(30);

    /// Item 10a: the last party arrives exactly when a waiter's deadline has passed (the
    /// hook puts the arrival there). Whatever wins, the generation must have one outcome:
    /// both pass, or neither does.
    #[test]
    fn a_timeout_racing_the_last_arrival_never_splits_the_generation() {
        let barrier = Barrier::create(2).unwrap();
        let last = Barrier::open(barrier.name()).unwrap();
        let arrival: Rc<RefCell<Option<Result<u32, String>>>> = Rc::default();
        let seen = Rc::clone(&arrival);
        AT_TIMEOUT.with(|h| {
            *h.borrow_mut() = Some(Box::new(move || {
                *seen.borrow_mut() = Some(last.wait(LONG).map_err(|e| e.to_string()));
            }))
        });
        let waiter = barrier
            .wait(Duration::from_millis(1))
            .map_err(|e| e.to_string());
        let arrival = arrival.borrow_mut().take().expect("the hook ran");
        assert_eq!(
            waiter.is_ok(),
            arrival.is_ok(),
            "one generation, two outcomes: the waiter got {waiter:?}, the last arrival {arrival:?}"
        );
    }

    #[test]
    fn only_a_definite_answer_counts_as_a_party_death() {
        use nix::errno::Errno;
        // Gone: no such pid, or a zombie (dead, not yet reaped) or dead ('X').
        assert!(party_is_gone(Err(Errno::ESRCH), None));
        assert!(party_is_gone(Ok(()), Some('Z')));
        assert!(party_is_gone(Ok(()), Some('X')));
        assert!(party_is_gone(Err(Errno::EPERM), Some('Z')));
        // Alive: running, sleeping, stopped, or another user's process.
        for state in ['R', 'S', 'D', 'T', 't'] {
            assert!(!party_is_gone(Ok(()), Some(state)), "{state}");
        }
        assert!(!party_is_gone(Err(Errno::EPERM), Some('S')));
        // Not known: it exists but /proc could not be read (EMFILE...), or the probe
        // itself failed — neither is a death.
        assert!(!party_is_gone(Ok(()), None));
        assert!(!party_is_gone(Err(Errno::EPERM), None));
        assert!(!party_is_gone(Err(Errno::EINVAL), None));
    }

    fn judge_parent_with_no_fd_left(_: ()) -> Result<(bool, String), String> {
        let parent = nix::unistd::getppid().as_raw() as u32;
        let limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: libc::RLIM_INFINITY,
        };
        let mut hard = limit;
        // SAFETY: getrlimit/setrlimit write or read one rlimit struct of this process.
        unsafe {
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut hard);
            libc::setrlimit(
                libc::RLIMIT_NOFILE,
                &libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: hard.rlim_max,
                },
            );
        }
        let probe = match std::fs::read_to_string("/proc/self/stat") {
            Ok(_) => "read /proc".to_string(),
            Err(e) => e.to_string(),
        };
        Ok((is_alive(parent), probe))
    }
    crate::register_entry!("barrier-unit-judge-parent", judge_parent_with_no_fd_left);

    /// Item 10b: a process that cannot open /proc (EMFILE) must not take a live party —
    /// its own parent, the test process — for dead.
    #[test]
    fn a_failed_proc_read_is_not_a_death() {
        use crate::process::{self, Options, StartMethod};
        let _serial = crate::process::tests_serial();
        let (alive, probe): (bool, String) = process::run(
            "barrier-unit-judge-parent",
            &(),
            Options::new("judge").method(StartMethod::Fork),
            LONG,
        )
        .unwrap();
        assert!(
            probe.contains("Too many open files"),
            "the probe read: {probe}"
        );
        assert!(
            alive,
            "a live party was judged dead because /proc could not be read ({probe})"
        );
    }
}
