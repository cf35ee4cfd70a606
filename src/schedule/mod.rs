//! Controlled interleavings across processes: yield points and a turnstile in shared
//! memory.
//!
//! Worker code wraps each racy operation in a *step* ([`Turnstile::step`]). In
//! [`Mode::Forced`] a step runs only when the schedule gives the turn to its worker, and
//! the next step (of any worker) waits until it is over: the order of steps across
//! processes is exactly what the schedule says, so a race found once is found every time,
//! and proptest can shrink the schedule. In [`Mode::Free`] steps run as the OS schedules
//! them, optionally after a random pause (jitter), to show that races also happen without
//! forcing.
//!
//! # Schedules
//!
//! A [`Schedule`] is a list of choices. At step `i`, choice `c` gives the turn to worker
//! `c mod workers`, or if that one has finished to the next worker still running, so
//! *every* list of numbers is a valid schedule and shrinking toward zeros and shorter lists stays valid. Past the end
//! of the list the last worker keeps the turn (cooperative, no preemption) until it
//! finishes or reports that it is *blocked* (a try-lock that failed, a read with no data:
//! [`Turnstile::try_step`] returning false); then the turn moves on to the next live
//! worker. So the empty schedule runs the workers one after another, and a failing
//! schedule shrinks to the few switches that cause the failure.
//!
//! A blocking call inside a forced step would hold the turn forever, so forced workers use
//! the try- form of their operations (flock with LOCK_NB, F_SETLK, trylock, a read of what
//! is there) and report "blocked" when it fails. A worker that really blocks (the bug a
//! scenario looks for) stops the schedule; the watchdog then reports every worker and
//! what it waits on.
//!
//! # History
//!
//! The same segment holds an event log: each step (and each `Turnstile::record`) appends
//! (worker, operation, value, CLOCK_MONOTONIC time), which the scenario's oracle reads.
//!
//! # Points inside a step
//!
//! With the `schedule-points` feature, the mechanisms mark their critical windows with
//! [`point`] ("queue-pipe/get:after-header"): a step's action is then cut at each point
//! into several steps, so a schedule can hand the turn to another process *inside* one
//! `put`, `get` or `acquire`. See `points` for the rules; a worker opts in with
//! [`install`].

#![warn(missing_docs)]

mod points;
pub use points::{install, point, wait_point, ENABLED as POINTS_ENABLED};

use crate::sys::futex;
use crate::sys::shm::{Shared, ShmSafe};
use serde::{Deserialize, Serialize};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Most workers one turnstile serves (the live set is a 32-bit mask).
pub(crate) const MAX_WORKERS: usize = 32;
/// Longest schedule (choices past it are ignored).
pub(crate) const MAX_CHOICES: usize = 256;
/// Most events the log keeps (later ones are counted, not stored).
pub(crate) const MAX_EVENTS: usize = 512;
/// Bytes of an operation label kept in the log.
pub(crate) const LABEL_BYTES: usize = 48;
/// Steps after which a forced run is declared a livelock.
pub(crate) const MAX_STEPS: u32 = 100_000;
/// Blocked steps in a row after which a worker pauses [`BLOCKED_PAUSE`] before each
/// further one. Workers that all wait on each other (consumers each holding half of a
/// split frame) hand the turn round as fast as the futex allows, some 100 000 steps a
/// second: without the pause the step budget ran out (a livelock error) or the scenario's
/// phase watchdog fired first (a hang, the verdict the case should get), depending on
/// the machine's speed that moment. Paced, a stuck round lasts for minutes of steps, and
/// the watchdog names the wait. The order of the steps is unchanged.
const BLOCKED_RUN_BEFORE_PAUSE: u32 = 64;
/// See [`BLOCKED_RUN_BEFORE_PAUSE`].
const BLOCKED_PAUSE: Duration = Duration::from_millis(1);

/// A forced interleaving: see the module docs for how choices are read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Schedule {
    /// At step `i`, `choices[i] mod workers` names the worker that gets the turn; past
    /// the end, the worker holding the turn keeps it until it blocks or finishes.
    pub choices: Vec<u8>,
}

impl Schedule {
    /// A schedule of these choices (any list is valid; see the module docs).
    pub fn new(choices: Vec<u8>) -> Schedule {
        Schedule { choices }
    }

    /// Generates schedules of up to `max_len` choices below `max_choice` (shrinks toward
    /// shorter lists and lower choices). A `max_choice` of the scenario's worker count
    /// keeps the printed schedules readable.
    pub fn strategy(max_len: usize, max_choice: u8) -> proptest::strategy::BoxedStrategy<Schedule> {
        use proptest::prelude::*;
        proptest::collection::vec(0u8..max_choice.max(1), 0..=max_len.min(MAX_CHOICES))
            .prop_map(Schedule::new)
            .boxed()
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.choices.is_empty() {
            return write!(f, "[] (each worker runs until it finishes or blocks)");
        }
        let text: Vec<String> = self.choices.iter().map(u8::to_string).collect();
        write!(f, "[{}]", text.join(","))
    }
}

/// How steps are ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// In the order the schedule gives.
    Forced,
    /// As the OS schedules them; each step first pauses a random 0..=`jitter_us`
    /// microseconds (0: no pause), from a generator seeded with `seed` and the worker.
    Free {
        /// Longest pause before each step, in microseconds (0: none).
        jitter_us: u32,
        /// Seeds the pauses (mixed with the worker's index), so a free run can be rerun.
        seed: u64,
    },
}

/// Why a turnstile could not be made or a step could not be taken. Each one ends the
/// worker's forced run: the scenario reports it rather than guessing an order.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// A worker index outside the turnstile, or a worker count outside 1..=32 at create.
    #[error("worker {worker} is out of range (the turnstile has {workers} workers)")]
    BadWorker {
        /// The index (or, at create, the count) asked for.
        worker: usize,
        /// How many workers the turnstile has (at create: the most it can have).
        workers: usize,
    },
    /// The turn did not come within the bound: the worker holding it is blocked outside
    /// its steps, or dead.
    #[error(
        "worker {worker} waited {waited:?} for its turn at step {step} (turn is worker {holder}'s)"
    )]
    Timeout {
        /// The worker that waited.
        worker: usize,
        /// The step it was waiting to take.
        step: u32,
        /// The worker that held the turn meanwhile.
        holder: usize,
        /// How long it waited.
        waited: Duration,
    },
    /// More than 100 000 steps without every worker finishing: the workers keep blocking
    /// and handing the turn round.
    #[error("livelock: more than {MAX_STEPS} steps without every worker finishing")]
    Livelock,
    /// A step was taken inside another step's action, which would wait for a turn its
    /// own worker holds.
    #[error("step {label:?} taken inside another step's action (an action yields at a schedule point, not a step)")]
    Nested {
        /// The inner step's label.
        label: String,
    },
    /// The turnstile's shared memory could not be created, opened or mapped.
    #[error("turnstile shared memory: {0}")]
    Shm(#[from] std::io::Error),
}

#[repr(C)]
struct EventSlot {
    worker: AtomicU32,
    /// 1 when the slot is fully written.
    ready: AtomicU32,
    at_ns: AtomicU64,
    value: AtomicI64,
    label: [AtomicU64; LABEL_BYTES / 8],
}

/// The turnstile's shared state. `state` packs everything that decides whose turn it is
/// into one word so that it changes atomically: step number (bits 0..20), last holder
/// (bits 20..25), last step blocked (bit 25), and the finished-worker mask (bits 32..64).
#[repr(C)]
struct State {
    /// Futex word: bumped after every change of `state`.
    generation: AtomicU32,
    workers: AtomicU32,
    forced: AtomicU32,
    choices_len: AtomicU32,
    state: AtomicU64,
    jitter_us: AtomicU64,
    seed: AtomicU64,
    events_next: AtomicU32,
    _pad: AtomicU32,
    choices: [AtomicU32; MAX_CHOICES],
    events: [EventSlot; MAX_EVENTS],
}

// SAFETY: only atomics, no pointers; all zeros is a valid (empty) state.
unsafe impl ShmSafe for State {}

const STEP_BITS: u64 = 20;
const STEP_MASK: u64 = (1 << STEP_BITS) - 1;
const HOLDER_SHIFT: u64 = 20;
const HOLDER_MASK: u64 = 0x1f;
const BLOCKED_BIT: u64 = 1 << 25;
const FINISHED_SHIFT: u64 = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Unpacked {
    step: u32,
    holder: usize,
    blocked: bool,
    finished: u32,
}

fn unpack(word: u64) -> Unpacked {
    Unpacked {
        step: (word & STEP_MASK) as u32,
        holder: ((word >> HOLDER_SHIFT) & HOLDER_MASK) as usize,
        blocked: word & BLOCKED_BIT != 0,
        finished: (word >> FINISHED_SHIFT) as u32,
    }
}

fn pack(u: Unpacked) -> u64 {
    (u.step as u64 & STEP_MASK)
        | ((u.holder as u64 & HOLDER_MASK) << HOLDER_SHIFT)
        | if u.blocked { BLOCKED_BIT } else { 0 }
        | ((u.finished as u64) << FINISHED_SHIFT)
}

/// What a child needs to join a turnstile: pass it in the entry's arguments and its fd in
/// `Options::inherit_fd`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnstileHandle {
    /// The turnstile segment's fd, valid in the child once inherited.
    pub fd: RawFd,
}

/// One event of a run's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The worker (turnstile index) that recorded it.
    pub worker: usize,
    /// What it did, as the scenario labels it ("read stock", "put 3", …; at most 48
    /// bytes kept).
    pub operation: String,
    /// The number the scenario attached to it (the stock it read, the item it got), for
    /// the oracle.
    pub value: i64,
    /// CLOCK_MONOTONIC, nanoseconds (comparable across the processes of one machine).
    pub(crate) at_ns: u64,
}

impl Event {
    /// An event at time 0: for writing histories by hand, to test an oracle on.
    pub fn step(worker: usize, operation: &str, value: i64) -> Event {
        Event {
            worker,
            operation: operation.into(),
            value,
            at_ns: 0,
        }
    }
}

/// The turnstile: shared memory mapped by the case leader and every worker.
pub struct Turnstile {
    shared: Shared<State>,
    /// How long a worker waits for its turn before giving up.
    turn_timeout: Duration,
    rng: std::cell::Cell<u64>,
    /// True while this process runs a forced step's action: only then do schedule points
    /// take the turn (see [`points`]).
    in_step: std::cell::Cell<bool>,
    /// The first error a schedule point met waiting for its turn (it has no caller to
    /// return it to): the enclosing step returns it.
    point_error: std::cell::RefCell<Option<ScheduleError>>,
    /// Blocked steps this worker took in a row (see [`BLOCKED_RUN_BEFORE_PAUSE`]).
    blocked_run: std::cell::Cell<u32>,
}

/// CLOCK_MONOTONIC now, in nanoseconds.
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Turnstile {
    /// Creates a turnstile for `workers` workers. The shared-memory name is removed at
    /// once (children get the fd), so nothing can be left in /dev/shm whatever happens.
    pub fn create(
        workers: usize,
        schedule: &Schedule,
        mode: Mode,
    ) -> Result<Turnstile, ScheduleError> {
        if workers == 0 || workers > MAX_WORKERS {
            return Err(ScheduleError::BadWorker {
                worker: workers,
                workers: MAX_WORKERS,
            });
        }
        let mut shared: Shared<State> = Shared::create("turnstile", 0)?;
        shared.segment_mut().unlink();
        let s = &*shared;
        s.workers.store(workers as u32, Ordering::Relaxed);
        let len = schedule.choices.len().min(MAX_CHOICES);
        for (slot, &c) in s.choices.iter().zip(&schedule.choices[..len]) {
            slot.store(c as u32, Ordering::Relaxed);
        }
        s.choices_len.store(len as u32, Ordering::Relaxed);
        match mode {
            Mode::Forced => s.forced.store(1, Ordering::Relaxed),
            Mode::Free { jitter_us, seed } => {
                s.jitter_us.store(jitter_us as u64, Ordering::Relaxed);
                s.seed.store(seed, Ordering::Relaxed);
            }
        }
        // Step 0 has no previous holder: choose as after a blocked step of the last worker,
        // so an empty schedule starts with worker 0.
        s.state.store(
            pack(Unpacked {
                step: 0,
                holder: workers - 1,
                blocked: true,
                finished: 0,
            }),
            Ordering::Release,
        );
        Ok(Turnstile::new(shared, 0))
    }

    /// What a child needs to join this turnstile (pass its fd with `inherit_fd`).
    pub fn handle(&self) -> TurnstileHandle {
        TurnstileHandle {
            fd: self.shared.segment().raw_fd(),
        }
    }

    /// Maps the turnstile from an inherited fd, in a worker.
    pub fn adopt(handle: TurnstileHandle, worker: usize) -> Result<Turnstile, ScheduleError> {
        // SAFETY: the fd was handed to this child by `inherit_fd`, for it alone to own.
        let shared: Shared<State> = unsafe { Shared::from_raw_fd("turnstile", handle.fd) }?;
        let workers = shared.workers.load(Ordering::Relaxed) as usize;
        if worker >= workers {
            return Err(ScheduleError::BadWorker { worker, workers });
        }
        let seed = shared.seed.load(Ordering::Relaxed)
            ^ (worker as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Ok(Turnstile::new(shared, seed | 1))
    }

    fn new(shared: Shared<State>, rng: u64) -> Turnstile {
        Turnstile {
            shared,
            turn_timeout: Duration::from_secs(30),
            rng: std::cell::Cell::new(rng),
            in_step: std::cell::Cell::new(false),
            blocked_run: std::cell::Cell::new(0),
            point_error: std::cell::RefCell::new(None),
        }
    }

    /// Bounds how long a worker waits for its turn (default 30 s).
    pub fn set_turn_timeout(&mut self, timeout: Duration) {
        self.turn_timeout = timeout;
    }

    pub(crate) fn workers(&self) -> usize {
        self.shared.workers.load(Ordering::Relaxed) as usize
    }

    pub(crate) fn is_forced(&self) -> bool {
        self.shared.forced.load(Ordering::Relaxed) == 1
    }

    /// Runs `action` as one step of `worker`, when the schedule says so; records `label`.
    pub fn step<R>(
        &self,
        worker: usize,
        label: &str,
        action: impl FnOnce() -> R,
    ) -> Result<R, ScheduleError> {
        self.step_inner(worker, label, || (action(), true, 0))
    }

    /// Like [`step`](Self::step) for an operation that may find itself blocked (a
    /// try-lock that failed): `action` returns whether it made progress. A blocked step
    /// passes the turn on. Returns what `action` returned.
    pub fn try_step(
        &self,
        worker: usize,
        label: &str,
        action: impl FnOnce() -> bool,
    ) -> Result<bool, ScheduleError> {
        self.step_inner(worker, label, || {
            let progressed = action();
            (progressed, progressed, if progressed { 1 } else { 0 })
        })
    }

    /// A step whose recorded value is the number `action` returns (a stock read, a count).
    pub(crate) fn step_value(
        &self,
        worker: usize,
        label: &str,
        action: impl FnOnce() -> i64,
    ) -> Result<i64, ScheduleError> {
        self.step_inner(worker, label, || {
            let v = action();
            (v, true, v)
        })
    }

    /// A step whose action reports both whether it progressed and the value to record:
    /// what an outside worker (a Python process, through `scenario::cpython::bridge`)
    /// tells the turnstile after doing its operation.
    pub(crate) fn step_reported(
        &self,
        worker: usize,
        label: &str,
        action: impl FnOnce() -> (bool, i64),
    ) -> Result<(bool, i64), ScheduleError> {
        self.step_inner(worker, label, || {
            let (progressed, value) = action();
            ((progressed, value), progressed, value)
        })
    }

    fn step_inner<R>(
        &self,
        worker: usize,
        label: &str,
        action: impl FnOnce() -> (R, bool, i64),
    ) -> Result<R, ScheduleError> {
        let workers = self.workers();
        if worker >= workers {
            return Err(ScheduleError::BadWorker { worker, workers });
        }
        if !self.is_forced() {
            self.jitter();
            let (r, _, value) = action();
            self.record(worker, label, value);
            return Ok(r);
        }
        if self.in_step.get() {
            return Err(ScheduleError::Nested {
                label: label.to_string(),
            });
        }
        self.wait_turn(worker)?;
        let (r, progressed, value) = {
            let _inside = InStep::enter(&self.in_step);
            action()
        };
        if let Some(e) = self.point_error.borrow_mut().take() {
            return Err(e);
        }
        self.record(worker, label, value);
        self.pace(!progressed);
        self.advance(|u| Unpacked {
            step: u.step + 1,
            holder: worker,
            blocked: !progressed,
            finished: u.finished,
        });
        Ok(r)
    }

    /// Marks `worker` finished: the schedule skips it from now on. Call after its last
    /// step. In forced mode finishing takes a turn of its own: which worker a choice
    /// names depends on who is still running, so a worker must not drop out of the live
    /// set while another is choosing.
    pub fn finish(&self, worker: usize) -> Result<(), ScheduleError> {
        if self.is_forced() {
            self.wait_turn(worker)?;
        }
        self.advance(|u| Unpacked {
            step: if self.is_forced() { u.step + 1 } else { u.step },
            holder: worker,
            blocked: true,
            finished: u.finished | (1 << worker),
        });
        Ok(())
    }

    /// Marks a worker that died without finishing, so that the others are not left
    /// waiting for its turn.
    pub(crate) fn abandon(&self, worker: usize) {
        if worker < self.workers() {
            self.advance(|u| Unpacked {
                finished: u.finished | (1 << worker),
                ..u
            });
        }
    }

    /// A schedule point reached by `worker` inside its step's action (see [`points`]):
    /// records `label`, ends the step there (blocked when the worker is about to wait for
    /// another process) and waits for the worker's next turn. False, doing nothing, when
    /// not inside a forced step (or after a point failed); also false for a wait when no
    /// other worker is left to give the turn to, so the caller waits in the kernel.
    #[cfg_attr(not(feature = "schedule-points"), allow(dead_code))]
    fn reach_point(&self, worker: usize, label: &str, blocked: bool) -> bool {
        if !self.in_step.get() || !self.is_forced() || self.point_error.borrow().is_some() {
            return false;
        }
        let u = unpack(self.shared.state.load(Ordering::Acquire));
        let others = (0..self.workers()).any(|w| w != worker && u.finished & (1 << w) == 0);
        if blocked && !others {
            return false;
        }
        self.record(worker, label, 0);
        self.pace(blocked);
        self.advance(|u| Unpacked {
            step: u.step + 1,
            holder: worker,
            blocked,
            finished: u.finished,
        });
        if let Err(e) = self.wait_turn(worker) {
            *self.point_error.borrow_mut() = Some(e);
        }
        true
    }

    /// Counts this worker's blocked steps in a row, and pauses once the run is long (see
    /// [`BLOCKED_RUN_BEFORE_PAUSE`]); a step that made progress ends the run.
    fn pace(&self, blocked: bool) {
        if !blocked {
            self.blocked_run.set(0);
            return;
        }
        let run = self.blocked_run.get().saturating_add(1);
        self.blocked_run.set(run);
        if run > BLOCKED_RUN_BEFORE_PAUSE {
            std::thread::sleep(BLOCKED_PAUSE);
        }
    }

    fn advance(&self, change: impl Fn(Unpacked) -> Unpacked) {
        let s = &*self.shared;
        let mut current = s.state.load(Ordering::Acquire);
        loop {
            let next = pack(change(unpack(current)));
            match s
                .state
                .compare_exchange(current, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(seen) => current = seen,
            }
        }
        s.generation.fetch_add(1, Ordering::Release);
        futex::wake_all(&s.generation);
    }

    /// Whose turn it is, or None when every worker has finished.
    fn turn(&self, u: Unpacked) -> Option<usize> {
        let s = &*self.shared;
        let workers = s.workers.load(Ordering::Relaxed) as usize;
        let live: Vec<usize> = (0..workers)
            .filter(|w| u.finished & (1 << w) == 0)
            .collect();
        if live.is_empty() {
            return None;
        }
        let len = s.choices_len.load(Ordering::Relaxed);
        if u.step < len {
            // The named worker if it is still running, else the next one that is: a
            // choice keeps naming the same worker when a later worker is shrunk away.
            let named = s.choices[u.step as usize].load(Ordering::Relaxed) as usize % workers;
            return Some(
                live.iter()
                    .copied()
                    .find(|&w| w >= named)
                    .unwrap_or(live[0]),
            );
        }
        let holder_live = u.finished & (1 << u.holder) == 0;
        if holder_live && !u.blocked {
            return Some(u.holder);
        }
        // The next live worker after the last holder, cyclically.
        Some(
            live.iter()
                .copied()
                .find(|&w| w > u.holder)
                .unwrap_or(live[0]),
        )
    }

    fn wait_turn(&self, worker: usize) -> Result<(), ScheduleError> {
        let s = &*self.shared;
        let started = Instant::now();
        let deadline = started + self.turn_timeout;
        loop {
            let generation = s.generation.load(Ordering::Acquire);
            let u = unpack(s.state.load(Ordering::Acquire));
            if u.step >= MAX_STEPS {
                return Err(ScheduleError::Livelock);
            }
            let holder = self.turn(u);
            if holder == Some(worker) {
                return Ok(());
            }
            if futex::wait(&s.generation, generation, Some(deadline)) == futex::Wake::TimedOut {
                return Err(ScheduleError::Timeout {
                    worker,
                    step: u.step,
                    holder: holder.unwrap_or(worker),
                    waited: started.elapsed(),
                });
            }
        }
    }

    fn jitter(&self) {
        let max = self.shared.jitter_us.load(Ordering::Relaxed);
        if max == 0 {
            return;
        }
        // xorshift64: cheap, deterministic per seed and worker.
        let mut x = self.rng.get().max(1);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.set(x);
        let pause = x % (max + 1);
        if pause == 0 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(pause));
        }
    }

    /// Appends an event to the history (outside the schedule: any time, any mode).
    pub(crate) fn record(&self, worker: usize, operation: &str, value: i64) {
        let s = &*self.shared;
        let index = s.events_next.fetch_add(1, Ordering::AcqRel) as usize;
        let Some(slot) = s.events.get(index) else {
            return;
        };
        let mut bytes = [0u8; LABEL_BYTES];
        let n = operation.len().min(LABEL_BYTES);
        bytes[..n].copy_from_slice(&operation.as_bytes()[..n]);
        for (i, word) in slot.label.iter().enumerate() {
            let chunk: [u8; 8] = bytes[i * 8..i * 8 + 8].try_into().expect("8 bytes");
            word.store(u64::from_le_bytes(chunk), Ordering::Relaxed);
        }
        slot.worker.store(worker as u32, Ordering::Relaxed);
        slot.value.store(value, Ordering::Relaxed);
        slot.at_ns.store(monotonic_ns(), Ordering::Relaxed);
        slot.ready.store(1, Ordering::Release);
    }

    /// The events recorded so far, in the order they were appended.
    pub fn history(&self) -> Vec<Event> {
        let s = &*self.shared;
        let count = (s.events_next.load(Ordering::Acquire) as usize).min(MAX_EVENTS);
        s.events[..count]
            .iter()
            .filter(|slot| slot.ready.load(Ordering::Acquire) == 1)
            .map(|slot| {
                let mut bytes = Vec::with_capacity(LABEL_BYTES);
                for word in &slot.label {
                    bytes.extend_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
                }
                let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
                Event {
                    worker: slot.worker.load(Ordering::Relaxed) as usize,
                    operation: String::from_utf8_lossy(&bytes[..end]).into_owned(),
                    value: slot.value.load(Ordering::Relaxed),
                    at_ns: slot.at_ns.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u32 {
        unpack(self.shared.state.load(Ordering::Acquire)).step
    }
}

/// Marks a forced step's action as running, until dropped (also on unwinding).
struct InStep<'a>(&'a std::cell::Cell<bool>);

impl<'a> InStep<'a> {
    fn enter(flag: &'a std::cell::Cell<bool>) -> InStep<'a> {
        flag.set(true);
        InStep(flag)
    }
}

impl Drop for InStep<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_ns_is_the_monotonic_clock_in_nanoseconds() {
        let reference = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
        let reference = reference.tv_sec() as u64 * 1_000_000_000 + reference.tv_nsec() as u64;
        let ours = monotonic_ns();
        // Read just after the reference: later, and by far less than a second.
        assert!(
            ours >= reference && ours - reference < 1_000_000_000,
            "{ours} vs {reference}"
        );
    }

    fn finished_mask(t: &Turnstile) -> u32 {
        unpack(t.shared.state.load(Ordering::Acquire)).finished
    }

    #[test]
    fn abandon_marks_only_a_real_worker_finished() {
        let t = Turnstile::create(3, &Schedule::default(), Mode::Forced).unwrap();
        let finished = || finished_mask(&t);
        // An index past the last (a stale or wrong one from a caller) changes nothing.
        t.abandon(3);
        t.abandon(40);
        assert_eq!(finished(), 0);
        t.abandon(2);
        assert_eq!(finished(), 0b100);
    }

    #[test]
    fn a_finished_worker_stays_finished() {
        // A parent may abandon a worker it took for stuck just before the worker gets to
        // finish: the worker must not come back to life and be waited for.
        let free = Mode::Free {
            jitter_us: 0,
            seed: 1,
        };
        let t = Turnstile::create(2, &Schedule::default(), free).unwrap();
        let finished = || finished_mask(&t);
        t.abandon(1);
        t.finish(1).unwrap();
        assert_eq!(finished(), 0b10);
        t.finish(0).unwrap();
        t.finish(0).unwrap();
        assert_eq!(finished(), 0b11);
    }

    #[test]
    fn pack_round_trips() {
        let u = Unpacked {
            step: 12345,
            holder: 31,
            blocked: true,
            finished: 0xdead_beef,
        };
        assert_eq!(unpack(pack(u)), u);
    }

    #[test]
    fn turn_follows_choices_then_sticks_until_blocked() {
        let t = Turnstile::create(3, &Schedule::new(vec![2, 1, 4]), Mode::Forced).unwrap();
        let at = |step, holder, blocked, finished| {
            t.turn(Unpacked {
                step,
                holder,
                blocked,
                finished,
            })
        };
        assert_eq!(at(0, 2, true, 0), Some(2));
        assert_eq!(at(1, 2, false, 0), Some(1));
        // 4 mod 3 = worker 1, finished: the next live one.
        assert_eq!(at(2, 1, false, 0b010), Some(2));
        // Past the choices: the holder keeps the turn...
        assert_eq!(at(3, 1, false, 0), Some(1));
        // ...until it blocks or finishes.
        assert_eq!(at(3, 1, true, 0), Some(2));
        assert_eq!(at(3, 2, false, 0b100), Some(0));
        assert_eq!(at(3, 2, false, 0b111), None);
    }

    #[test]
    fn empty_schedule_starts_with_worker_zero_and_logs_steps() {
        let t = Turnstile::create(2, &Schedule::default(), Mode::Forced).unwrap();
        assert_eq!(t.step_value(0, "read", || 7).unwrap(), 7);
        assert!(!t.try_step(0, "lock", || false).unwrap());
        // Worker 0 blocked: the turn passed to worker 1.
        t.step(1, "write", || ()).unwrap();
        let history = t.history();
        let ops: Vec<(usize, &str, i64)> = history
            .iter()
            .map(|e| (e.worker, e.operation.as_str(), e.value))
            .collect();
        assert_eq!(ops, vec![(0, "read", 7), (0, "lock", 0), (1, "write", 0)]);
        assert!(history.windows(2).all(|w| w[0].at_ns <= w[1].at_ns));
    }

    /// A worker that keeps finding itself blocked slows down rather than burning the step
    /// budget (a lower bound on time only: a sleep never ends early).
    #[test]
    fn a_long_run_of_blocked_steps_is_paced() {
        let t = Turnstile::create(1, &Schedule::default(), Mode::Forced).unwrap();
        let extra = 10;
        let started = Instant::now();
        for _ in 0..BLOCKED_RUN_BEFORE_PAUSE + extra {
            assert!(!t.try_step(0, "lock", || false).unwrap());
        }
        assert!(started.elapsed() >= BLOCKED_PAUSE * extra);
        // Progress ends the run: the next blocked steps are not paced yet.
        assert!(t.try_step(0, "lock", || true).unwrap());
        assert_eq!(t.blocked_run.get(), 0);
        assert!(!t.try_step(0, "lock", || false).unwrap());
        assert_eq!(t.blocked_run.get(), 1);
        assert_eq!(t.steps(), BLOCKED_RUN_BEFORE_PAUSE + extra + 2);
    }

    #[test]
    fn waiting_for_a_turn_is_bounded() {
        let mut t = Turnstile::create(2, &Schedule::default(), Mode::Forced).unwrap();
        t.set_turn_timeout(Duration::from_millis(50));
        let err = t.step(1, "early", || ()).unwrap_err();
        assert!(
            matches!(
                err,
                ScheduleError::Timeout {
                    worker: 1,
                    holder: 0,
                    ..
                }
            ),
            "{err}"
        );
    }
}
