//! Stress target: the bounded Semaphore (bound [`BOUND`]). Every worker loops acquire,
//! enter, hold briefly, leave, release. Entering sets the worker's bit in an occupancy
//! mask in shared memory (one `fetch_or`, so the number of holders it saw is exact) and
//! leaving clears it; the bit is set only after acquire returned and cleared before
//! release, so a set bit always means "holds a permit".
//!
//! # The books
//!
//! * **Exclusion**: occupancy (the bits set, this worker's included) never exceeds the
//!   bound. Each excess is counted (as a duplicate: a permit held twice) and fails the run;
//!   the highest occupancy seen is reported.
//! * **Dead holders**: this semaphore keeps no record of who holds a permit, so a holder
//!   killed inside keeps its permit for good (a leak the DESIGN forbids; noted in the
//!   report). When the run reaps a killed worker whose bit is still set, the target clears
//!   the bit and gives the permit back on its behalf, counted — so the run goes on and
//!   the occupancy stays exact. A release refused as over the bound would mean the
//!   semaphore had already taken the permit back itself: then nothing is given back.
//! * **No permit lost without a death**: at the end, with every worker gone, the value
//!   must be the bound less the permits of holders killed outside the bit's span (between
//!   acquire and the `fetch_or`, or between the clear and release), so
//!   `bound - value <= kills - dead holders given back`.
//!
//! Two broken twins, each hitting one operation in [`SKIP_EVERY`]:
//! * `semaphore-skipping` ([`SemaphoreTarget::broken`]) skips the acquire (and its
//!   release): more holders than permits, which the exclusion book must catch;
//! * `semaphore-leaking` ([`SemaphoreTarget::leaking`]) forgets the release (an early
//!   return that skips it): the permits run out with no process dead, every worker then
//!   waits in `acquire` for good, and the run must end as `Hung`, naming each worker and
//!   the futex it waits on.

use super::board::Board;
use super::runner::{Accounting, Event, Flaw, Settlement, Target, Totals, WorkerSpec};
use super::StressError;
use crate::ipc::sync::{Semaphore, SyncError};
use crate::process::{self, Child, Pid};
use crate::sys::shm::{Shared, ShmSafe};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::mpsc::SyncSender;
use std::time::Duration;

/// Permits.
pub(crate) const BOUND: u32 = 3;
/// A broken twin skips one acquire (or forgets one release) in this many.
pub(crate) const SKIP_EVERY: u64 = 8;
/// Bound on one acquire: far beyond any pause a fault causes.
const OP_TIMEOUT: Duration = Duration::from_secs(30);
/// Most worker processes (one bit each in the occupancy mask).
const MAX_PROCS: usize = 64;

#[repr(C)]
#[derive(Default)]
struct Cells {
    inside: AtomicU64,
    max_seen: AtomicU64,
    violations: AtomicU64,
}

// SAFETY: atomics only; zero is the valid initial state.
unsafe impl ShmSafe for Cells {}

/// A broken twin's defect, in its workers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Defect {
    /// The correct target.
    #[default]
    None,
    /// Skips one acquire (and its release) in [`SKIP_EVERY`].
    Skipping,
    /// Forgets one release in [`SKIP_EVERY`].
    Leaking,
}

impl Defect {
    /// Whether this defect is `wanted` and hits operation `seq` (from 0).
    fn hits(self, wanted: Defect, seq: u64) -> bool {
        self == wanted && seq % SKIP_EVERY == SKIP_EVERY - 1
    }
}

pub(crate) struct SemaphoreTarget {
    defect: Defect,
    state: Option<(Semaphore, Shared<Cells>)>,
    /// Permits given back on behalf of holders killed inside.
    given_back: u64,
    /// Killed holders whose permit the semaphore had taken back itself.
    recovered_by_semaphore: u64,
    failures: Vec<String>,
}

impl SemaphoreTarget {
    pub(crate) fn new() -> SemaphoreTarget {
        SemaphoreTarget {
            defect: Defect::None,
            state: None,
            given_back: 0,
            recovered_by_semaphore: 0,
            failures: Vec::new(),
        }
    }

    /// The broken twin `semaphore-skipping`: skips one acquire in [`SKIP_EVERY`].
    pub(crate) fn broken() -> SemaphoreTarget {
        SemaphoreTarget {
            defect: Defect::Skipping,
            ..SemaphoreTarget::new()
        }
    }

    /// The broken twin `semaphore-leaking`: forgets one release in [`SKIP_EVERY`].
    pub(crate) fn leaking() -> SemaphoreTarget {
        SemaphoreTarget {
            defect: Defect::Leaking,
            ..SemaphoreTarget::new()
        }
    }

    fn names(&mut self) -> Result<(String, String), StressError> {
        if self.state.is_none() {
            let sem = Semaphore::create(BOUND)?;
            let cells = Shared::create("stress-semaphore", 0)?;
            self.state = Some((sem, cells));
        }
        let (sem, cells) = self.state.as_ref().expect("just set");
        Ok((sem.name().to_string(), cells.name().to_string()))
    }
}

impl Default for SemaphoreTarget {
    fn default() -> Self {
        SemaphoreTarget::new()
    }
}

#[derive(Serialize, Deserialize)]
struct SemaphoreWorkerArgs {
    spec: WorkerSpec,
    semaphore: String,
    cells: String,
    #[serde(default)]
    defect: Defect,
}

fn semaphore_worker(args: SemaphoreWorkerArgs) -> Result<u64, StressError> {
    let board = Board::open(&args.spec.board)?;
    let cell = board.cell(args.spec.slot);
    if args.spec.slot >= MAX_PROCS {
        return Err(StressError::Invalid(format!(
            "the semaphore target runs at most {MAX_PROCS} processes"
        )));
    }
    let sem = Semaphore::open(&args.semaphore)?;
    let cells: Shared<Cells> = Shared::open(&args.cells)?;
    let bit = 1u64 << args.spec.slot;
    let mut seq = 0u64;
    while !board.stop_requested() {
        cell.attempted.store(seq + 1, SeqCst);
        let skip = args.defect.hits(Defect::Skipping, seq);
        if !skip {
            sem.acquire(OP_TIMEOUT)?;
        }
        let occupancy = (cells.inside.fetch_or(bit, SeqCst) | bit).count_ones() as u64;
        cells.max_seen.fetch_max(occupancy, SeqCst);
        if occupancy > BOUND as u64 {
            cells.violations.fetch_add(1, SeqCst);
        }
        // Hold a little, so holders overlap (and a fault may land inside).
        std::thread::yield_now();
        cells.inside.fetch_and(!bit, SeqCst);
        if !skip && !args.defect.hits(Defect::Leaking, seq) {
            sem.release()?;
        }
        cell.committed.store(seq + 1, SeqCst);
        seq += 1;
    }
    Ok(seq)
}
crate::register_entry!("stress-semaphore-worker", semaphore_worker);

impl Target for SemaphoreTarget {
    fn name(&self) -> String {
        match self.defect {
            Defect::None => "semaphore",
            Defect::Skipping => "semaphore-skipping",
            Defect::Leaking => "semaphore-leaking",
        }
        .into()
    }
    fn family(&self) -> &'static str {
        "semaphore"
    }
    /// More holders than permits are counted as duplicates (a permit held twice); a
    /// leaked permit stalls every worker.
    fn expected_flaw(&self) -> Option<Flaw> {
        match self.defect {
            Defect::None => None,
            Defect::Skipping => Some(Flaw::Duplicates),
            Defect::Leaking => Some(Flaw::Hung),
        }
    }
    fn accounting(&self) -> Accounting {
        Accounting::Operations
    }
    fn mean_fault_gap(&self) -> u64 {
        10_000
    }

    fn start_worker(
        &mut self,
        spec: &WorkerSpec,
        _: &SyncSender<Event>,
    ) -> Result<Child, StressError> {
        let (semaphore, cells) = self.names()?;
        process::start(
            "stress-semaphore-worker",
            &SemaphoreWorkerArgs {
                spec: spec.clone(),
                semaphore,
                cells,
                defect: self.defect,
            },
            spec.options('w'),
        )
        .map_err(StressError::from)
    }

    fn worker_ended(&mut self, slot: usize, _: Pid, killed: bool) {
        let Some((sem, cells)) = &self.state else {
            return;
        };
        if slot >= MAX_PROCS {
            return;
        }
        let bit = 1u64 << slot;
        if cells.inside.load(SeqCst) & bit == 0 {
            return;
        }
        // Only a killed worker leaves its bit set (a live one clears it before release).
        cells.inside.fetch_and(!bit, SeqCst);
        if !killed {
            self.failures
                .push(format!("worker {slot} ended inside, without being killed"));
            return;
        }
        match sem.release() {
            Ok(()) => self.given_back += 1,
            Err(SyncError::ReleasedTooMany { .. }) => self.recovered_by_semaphore += 1,
            Err(e) => self
                .failures
                .push(format!("giving back a dead holder's permit: {e}")),
        }
    }

    fn finish(&mut self, totals: &Totals) -> Settlement {
        let mut settlement = Settlement {
            failures: std::mem::take(&mut self.failures),
            ..Settlement::default()
        };
        let Some((sem, cells)) = self.state.take() else {
            return settlement;
        };
        let violations = cells.violations.load(SeqCst);
        let max_seen = cells.max_seen.load(SeqCst);
        let value = sem.value();
        let dead_holders = self.given_back + self.recovered_by_semaphore;
        settlement.notes.push(format!(
            "bound {BOUND}: most holders at once {max_seen}; {dead_holders} holders killed inside over {} kills, \
             {} of whose permits the semaphore kept (given back by the harness), {} it took back itself; \
             final value {value}",
            totals.kills, self.given_back, self.recovered_by_semaphore
        ));
        if violations > 0 {
            settlement.duplicates = violations;
            settlement.failures.push(format!(
                "{violations} entries found more than {BOUND} holders inside (at most {max_seen})"
            ));
        }
        let missing = (BOUND as u64).saturating_sub(value as u64);
        let unexplained_kills = totals.kills.saturating_sub(dead_holders);
        settlement.accounted_in_flight = missing.min(unexplained_kills);
        if missing > unexplained_kills {
            settlement.losses = missing - unexplained_kills;
            settlement.failures.push(format!(
                "{missing} permits missing at the end, but only {unexplained_kills} kills could have taken one"
            ));
        }
        settlement
    }
}
