//! Stress target: the Event. A setter thread in the parent runs rounds: it creates a
//! fresh (clear) Event, publishes it ([`Notice`]), waits a moment so that waiters reach
//! it (some spinning, some asleep on the futex), stamps the round as set — its number in
//! shared memory, then the time — and sets it. The workers are the waiters, killed,
//! stopped and slowed by the injector: each opens the newest round's event and waits.
//! An event is never cleared, and each round has its own, so a waiter held back by a fault
//! never mistakes one round for another (a waiter too late to open its round's event
//! skips it).
//!
//! # The books
//!
//! * **None let through before `set`**: a wait that returned true while the set stamp is
//!   still below the waiter's round (the stamp is written before `set`) is an early
//!   pass: counted (as corrupt), the run fails.
//! * **No waiter left asleep after `set`**: every wait returns true, and within
//!   [`LATE_BOUND`] of its round's set stamp (a generous safety bound: a stop fault pauses
//!   a waiter for at most 0.6 s; a waiter left asleep sleeps to its 20 s timeout). A false
//!   return or a late one is counted (as a loss), the run fails.
//!
//! The setter is not a fault victim (it lives in the parent). The broken twin
//! ([`EventTarget::broken`]) returns from a wait at once, true, once in [`SKIP_EVERY`].

use super::board::Board;
use super::notice::{now_ns, Notice};
use super::rng::Rng;
use super::runner::{Accounting, Event, Flaw, Settlement, Target, Totals, WorkerSpec};
use super::StressError;
use crate::ipc::sync::Event as SyncEvent;
use crate::process::{self, Child};
use crate::sys::shm::{Shared, ShmSafe};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How long after its round's set a waiter may return (see the module docs).
pub(crate) const LATE_BOUND: Duration = Duration::from_secs(5);
/// The broken twin lets one wait in this many through at once.
pub(crate) const SKIP_EVERY: u64 = 16;
/// Bound on one wait.
const WAIT_TIMEOUT: Duration = Duration::from_secs(20);
/// Stamps kept, one per round modulo this.
const STAMPS: usize = 256;
/// Rounds whose event the parent keeps open after setting it.
const KEEP: usize = 8;

#[repr(C)]
struct Cells {
    notice: Notice,
    /// The highest round set so far (written before its set).
    set_round: AtomicU64,
    /// Per round modulo STAMPS: (round, set time in ns).
    stamp_round: [AtomicU64; STAMPS],
    stamp_ns: [AtomicU64; STAMPS],
    early: AtomicU64,
    late: AtomicU64,
    timed_out: AtomicU64,
    latest_ns: AtomicU64,
    first_early_round: AtomicU64,
}

// SAFETY: atomics only; zero is the valid initial state.
unsafe impl ShmSafe for Cells {}

pub(crate) struct EventTarget {
    broken: bool,
    cells: Option<Arc<Shared<Cells>>>,
    closing: Arc<AtomicBool>,
    setter: Option<JoinHandle<Result<u64, StressError>>>,
}

impl EventTarget {
    pub(crate) fn new() -> EventTarget {
        EventTarget {
            broken: false,
            cells: None,
            closing: Arc::default(),
            setter: None,
        }
    }

    /// The broken twin: lets one wait in [`SKIP_EVERY`] through at once.
    pub(crate) fn broken() -> EventTarget {
        EventTarget {
            broken: true,
            ..EventTarget::new()
        }
    }

    fn cells_name(&mut self, seed: u64) -> Result<String, StressError> {
        if self.cells.is_none() {
            let cells: Arc<Shared<Cells>> = Arc::new(Shared::create("stress-event", 0)?);
            let (c, closing) = (cells.clone(), self.closing.clone());
            self.setter = Some(
                std::thread::Builder::new()
                    .name("stress-event-setter".into())
                    .spawn(move || set_rounds(&c, &closing, seed))?,
            );
            self.cells = Some(cells);
        }
        Ok(self.cells.as_ref().expect("just set").name().to_string())
    }
}

impl Default for EventTarget {
    fn default() -> Self {
        EventTarget::new()
    }
}

/// The setter: one round after another until closing; returns the rounds set.
fn set_rounds(cells: &Shared<Cells>, closing: &AtomicBool, seed: u64) -> Result<u64, StressError> {
    let mut rng = Rng::new(seed);
    let mut kept: VecDeque<SyncEvent> = VecDeque::new();
    let mut round = 0u64;
    while !closing.load(SeqCst) {
        round += 1;
        let event = SyncEvent::create()?;
        cells.notice.publish(round, event.name().as_bytes())?;
        // Let waiters reach it: some still spinning, some asleep.
        std::thread::sleep(Duration::from_micros(rng.range(200, 3_000)));
        let index = (round as usize) % STAMPS;
        cells.set_round.store(round, SeqCst);
        cells.stamp_round[index].store(0, SeqCst);
        cells.stamp_ns[index].store(now_ns(), SeqCst);
        cells.stamp_round[index].store(round, SeqCst);
        event.set();
        kept.push_back(event);
        if kept.len() > KEEP {
            kept.pop_front();
        }
    }
    Ok(round)
}

#[derive(Serialize, Deserialize)]
struct EventWorkerArgs {
    spec: WorkerSpec,
    cells: String,
    broken: bool,
}

fn event_worker(args: EventWorkerArgs) -> Result<u64, StressError> {
    let board = Board::open(&args.spec.board)?;
    let cell = board.cell(args.spec.slot);
    let cells: Shared<Cells> = Shared::open(&args.cells)?;
    let mut last = 0u64;
    let mut seq = 0u64;
    while !board.stop_requested() {
        let Some((round, name)) = cells.notice.read().filter(|(r, _)| *r > last) else {
            std::thread::yield_now();
            continue;
        };
        last = round;
        let Ok(event) = SyncEvent::open(&String::from_utf8_lossy(&name)) else {
            continue; // too late: the parent has let it go
        };
        cell.attempted.store(seq + 1, SeqCst);
        let skip = args.broken && seq % SKIP_EVERY == SKIP_EVERY - 1;
        let set = skip || event.wait(WAIT_TIMEOUT);
        let returned = now_ns();
        if !set {
            cells.timed_out.fetch_add(1, SeqCst);
        } else if cells.set_round.load(SeqCst) < round {
            if cells.early.fetch_add(1, SeqCst) == 0 {
                cells.first_early_round.store(round, SeqCst);
            }
        } else {
            let index = (round as usize) % STAMPS;
            let set_ns = cells.stamp_ns[index].load(SeqCst);
            if cells.stamp_round[index].load(SeqCst) == round {
                let late = returned.saturating_sub(set_ns);
                cells.latest_ns.fetch_max(late, SeqCst);
                if late > LATE_BOUND.as_nanos() as u64 {
                    cells.late.fetch_add(1, SeqCst);
                }
            }
        }
        cell.committed.store(seq + 1, SeqCst);
        seq += 1;
    }
    Ok(seq)
}
crate::register_entry!("stress-event-worker", event_worker);

impl Target for EventTarget {
    fn name(&self) -> String {
        if self.broken {
            "event-skipping".into()
        } else {
            "event".into()
        }
    }
    fn family(&self) -> &'static str {
        "event"
    }
    /// A wait that returns before its round was set is counted as corrupt.
    fn expected_flaw(&self) -> Option<Flaw> {
        self.broken.then_some(Flaw::Corrupt)
    }
    fn accounting(&self) -> Accounting {
        Accounting::Operations
    }
    fn mean_fault_gap(&self) -> u64 {
        300
    }

    fn start_worker(
        &mut self,
        spec: &WorkerSpec,
        _: &SyncSender<Event>,
    ) -> Result<Child, StressError> {
        let cells = self.cells_name(spec.producer as u64 ^ 0xE7E7)?;
        process::start(
            "stress-event-worker",
            &EventWorkerArgs {
                spec: spec.clone(),
                cells,
                broken: self.broken,
            },
            spec.options('w'),
        )
        .map_err(StressError::from)
    }

    fn close(&mut self) {
        self.closing.store(true, SeqCst);
    }

    fn finish(&mut self, _: &Totals) -> Settlement {
        let mut settlement = Settlement::default();
        self.closing.store(true, SeqCst);
        let rounds = match self.setter.take().map(|s| s.join()) {
            Some(Ok(Ok(rounds))) => rounds,
            Some(Ok(Err(e))) => {
                settlement
                    .failures
                    .push(format!("the setter failed: {}", e.chain()));
                0
            }
            Some(Err(_)) => {
                settlement.failures.push("the setter panicked".into());
                0
            }
            None => 0,
        };
        let Some(cells) = self.cells.take() else {
            return settlement;
        };
        let (early, late, timed_out) = (
            cells.early.load(SeqCst),
            cells.late.load(SeqCst),
            cells.timed_out.load(SeqCst),
        );
        settlement.notes.push(format!(
            "{rounds} rounds set; the latest waiter returned {:.1} ms after its set",
            cells.latest_ns.load(SeqCst) as f64 / 1e6
        ));
        if early > 0 {
            settlement.corrupt = early;
            settlement.failures.push(format!(
                "{early} waits returned true before their round was set (the first in round {})",
                cells.first_early_round.load(SeqCst)
            ));
        }
        if late + timed_out > 0 {
            settlement.losses = late + timed_out;
            settlement.failures.push(format!(
                "{timed_out} waits returned false and {late} returned more than {LATE_BOUND:?} after their set"
            ));
        }
        settlement
    }
}
