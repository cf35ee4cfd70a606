//! Stress target: the JoinableQueue (over the shm flavor). A driver thread in the parent
//! runs rounds: it creates a fresh JoinableQueue, publishes its handle ([`Notice`]), puts
//! [`ITEMS`] items and joins. The workers are consumers, killed, stopped and slowed by the
//! injector: each takes items of the newest round, counts each one done in shared memory
//! (before `task_done`), then calls `task_done`.
//!
//! # The books
//!
//! * **join never returns early**: when `join` returns, the round's done count must be
//!   every item put. Fewer is an early join: counted (as corrupt), the run fails.
//! * **join returns once every item is done**: a round whose join does not return is
//!   explained only by consumers killed during it, each of which may have taken one item
//!   with it: the round is abandoned (a new queue for the next, as the old one can never
//!   reach zero) once the items missing are at most the consumer kills of the round and
//!   nothing moves any more; those items are accounted in flight. A round stuck for
//!   [`STUCK_BOUND`] otherwise fails the run.
//!
//! The broken twin ([`JoinableTarget::broken`]) joins until one task is left unfinished
//! instead of none (an off-by-one), which the first book must catch.

use super::board::Board;
use super::notice::Notice;
use super::runner::{Accounting, Event, Flaw, Settlement, Target, Totals, WorkerSpec};
use super::StressError;
use crate::ipc::queue::shm::ShmQueue;
use crate::ipc::queue::{self, JoinableQueue, Queue, QueueError, Role};
use crate::process::{self, Child, Pid};
use crate::sys::shm::{Shared, ShmSafe};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Items per round.
pub(crate) const ITEMS: u64 = 32;
/// A round with no kill to explain it may not be stuck longer than this.
pub(crate) const STUCK_BOUND: Duration = Duration::from_secs(20);
/// Done counters kept, one per round modulo this.
const RING: usize = 64;

#[repr(C)]
struct Cells {
    notice: Notice,
    /// Per round modulo RING: (round << 32) | items done.
    done: [AtomicU64; RING],
}

// SAFETY: atomics only; zero is the valid initial state.
unsafe impl ShmSafe for Cells {}

#[derive(Debug, Default)]
struct Rounds {
    rounds: u64,
    early: u64,
    first_early: Option<(u64, u64)>,
    abandoned: u64,
    stranded: u64,
    failures: Vec<String>,
}

pub(crate) struct JoinableTarget {
    broken: bool,
    cells: Option<Arc<Shared<Cells>>>,
    kills: Arc<AtomicU64>,
    closing: Arc<AtomicBool>,
    rounds: Arc<Mutex<Rounds>>,
    driver: Option<JoinHandle<()>>,
}

impl JoinableTarget {
    pub(crate) fn new() -> JoinableTarget {
        JoinableTarget {
            broken: false,
            cells: None,
            kills: Arc::default(),
            closing: Arc::default(),
            rounds: Arc::default(),
            driver: None,
        }
    }

    /// The broken twin: join returns with one task unfinished.
    pub(crate) fn broken() -> JoinableTarget {
        JoinableTarget {
            broken: true,
            ..JoinableTarget::new()
        }
    }

    fn cells_name(&mut self, board: &str) -> Result<String, StressError> {
        if self.cells.is_none() {
            let cells: Arc<Shared<Cells>> = Arc::new(Shared::create("stress-joinable", 0)?);
            let board = Board::open(board)?;
            let (c, closing, kills, rounds, broken) = (
                cells.clone(),
                self.closing.clone(),
                self.kills.clone(),
                self.rounds.clone(),
                self.broken,
            );
            self.driver = Some(
                std::thread::Builder::new()
                    .name("stress-joinable-driver".into())
                    .spawn(move || {
                        let mut r = rounds.lock().unwrap_or_else(|p| p.into_inner());
                        if let Err(e) = drive_rounds(&c, &board, &closing, &kills, broken, &mut r) {
                            r.failures.push(e.chain());
                        }
                    })?,
            );
            self.cells = Some(cells);
        }
        Ok(self.cells.as_ref().expect("just set").name().to_string())
    }
}

impl Default for JoinableTarget {
    fn default() -> Self {
        JoinableTarget::new()
    }
}

fn done_of(cells: &Cells, round: u64) -> u64 {
    let word = cells.done[round as usize % RING].load(SeqCst);
    if word >> 32 == round {
        word & 0xffff_ffff
    } else {
        0
    }
}

/// The broken twin's join: returns once at most one task is unfinished.
fn off_by_one_join(q: &JoinableQueue, timeout: Duration) -> bool {
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        if q.unfinished() <= 1 {
            return true;
        }
        std::thread::sleep(Duration::from_micros(50));
    }
    false
}

fn drive_rounds(
    cells: &Cells,
    board: &Board,
    closing: &AtomicBool,
    kills: &AtomicU64,
    broken: bool,
    out: &mut Rounds,
) -> Result<(), StressError> {
    let config = queue::Config::default()
        .maxsize(ITEMS as usize)
        .max_message(64);
    let mut round = 0u64;
    while !closing.load(SeqCst) && !board.stop_requested() {
        round += 1;
        let ring: Box<dyn Queue> = Box::new(ShmQueue::create(&config)?);
        let q = JoinableQueue::new(ring)?;
        let handle = q.handle(Role::Consumer)?;
        let handle = serde_json::to_vec(&handle)?;
        cells.done[round as usize % RING].store(round << 32, SeqCst);
        let kills_at_start = kills.load(SeqCst);
        for i in 0..ITEMS {
            let mut item = round.to_le_bytes().to_vec();
            item.extend_from_slice(&i.to_le_bytes());
            q.put(&item, Some(Duration::from_secs(5)))
                .map_err(|e| StressError::at(format!("round {round}: put of item {i}"), e))?;
        }
        cells.notice.publish(round, &handle)?;
        out.rounds = round;
        let mut last_change = (0u64, Instant::now());
        loop {
            let joined = if broken {
                off_by_one_join(&q, Duration::from_millis(20))
            } else {
                q.join(Duration::from_millis(20))
            };
            let done = done_of(cells, round);
            if joined {
                if done < ITEMS {
                    out.early += 1;
                    out.first_early.get_or_insert((round, done));
                }
                break;
            }
            if closing.load(SeqCst) || board.stop_requested() {
                break; // the end of the run: an unfinished round is not judged
            }
            if done != last_change.0 {
                last_change = (done, Instant::now());
            }
            let still = last_change.1.elapsed();
            let round_kills = kills.load(SeqCst) - kills_at_start;
            let missing = ITEMS - done.min(ITEMS);
            let settled = (q.queue().qsize() == 0 && still >= Duration::from_millis(100))
                || still >= Duration::from_secs(2);
            if round_kills > 0 && missing <= round_kills && settled {
                out.abandoned += 1;
                out.stranded += missing;
                break;
            }
            if still >= STUCK_BOUND {
                out.failures.push(format!(
                    "round {round}: join did not return for {STUCK_BOUND:?}, {done} of {ITEMS} items done, {round_kills} consumers killed during the round"
                ));
                return Ok(());
            }
        }
    }
    Ok(())
}

#[derive(Serialize, Deserialize)]
struct JoinableWorkerArgs {
    spec: WorkerSpec,
    cells: String,
}

fn joinable_worker(args: JoinableWorkerArgs) -> Result<u64, StressError> {
    let board = Board::open(&args.spec.board)?;
    let cell = board.cell(args.spec.slot);
    let cells: Shared<Cells> = Shared::open(&args.cells)?;
    let mut current: Option<(u64, JoinableQueue)> = None;
    let mut last = 0u64;
    let mut seq = 0u64;
    while !board.stop_requested() {
        if cells.notice.round() > last {
            if let Some((round, handle)) = cells.notice.read() {
                last = round;
                current = None;
                let handle = serde_json::from_slice(&handle)?;
                // A round already gone (its queue let go) is skipped.
                if let Ok(q) = JoinableQueue::open(handle) {
                    current = Some((round, q));
                }
            }
        }
        let Some((round, q)) = &current else {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        };
        match q.get(Some(Duration::from_millis(5))) {
            Ok(item) => {
                cell.attempted.store(seq + 1, SeqCst);
                let of = item
                    .get(..8)
                    .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
                if of != Some(*round) {
                    return Err(StressError::Failed(format!(
                        "round {round}'s queue gave an item of {of:?}"
                    )));
                }
                // Processing takes a moment: the item is out of the queue, not yet done.
                std::thread::yield_now();
                let done = &cells.done[*round as usize % RING];
                let _ = done.fetch_update(SeqCst, SeqCst, |w| (w >> 32 == *round).then_some(w + 1));
                q.task_done()
                    .map_err(|e| StressError::at(format!("round {round}"), e))?;
                cell.committed.store(seq + 1, SeqCst);
                seq += 1;
            }
            Err(QueueError::Empty) => {}
            Err(e) => return Err(StressError::at(format!("round {round}: get"), e)),
        }
    }
    Ok(seq)
}
crate::register_entry!("stress-joinable-worker", joinable_worker);

impl Target for JoinableTarget {
    fn name(&self) -> String {
        if self.broken {
            "joinable-off-by-one".into()
        } else {
            "joinable".into()
        }
    }
    fn family(&self) -> &'static str {
        "joinable"
    }
    /// A join that returns before every item is done is counted as corrupt.
    fn expected_flaw(&self) -> Option<Flaw> {
        self.broken.then_some(Flaw::Corrupt)
    }
    fn accounting(&self) -> Accounting {
        Accounting::Operations
    }
    fn mean_fault_gap(&self) -> u64 {
        3_000
    }

    fn start_worker(
        &mut self,
        spec: &WorkerSpec,
        _: &SyncSender<Event>,
    ) -> Result<Child, StressError> {
        let cells = self.cells_name(&spec.board)?;
        process::start(
            "stress-joinable-worker",
            &JoinableWorkerArgs {
                spec: spec.clone(),
                cells,
            },
            spec.options('w'),
        )
        .map_err(StressError::from)
    }

    fn worker_ended(&mut self, _: usize, _: Pid, killed: bool) {
        if killed {
            self.kills.fetch_add(1, SeqCst);
        }
    }

    fn close(&mut self) {
        self.closing.store(true, SeqCst);
    }

    fn finish(&mut self, totals: &Totals) -> Settlement {
        let mut settlement = Settlement::default();
        self.closing.store(true, SeqCst);
        if let Some(driver) = self.driver.take() {
            if driver.join().is_err() {
                settlement.failures.push("the round driver panicked".into());
            }
        }
        self.cells = None;
        let rounds = std::mem::take(&mut *self.rounds.lock().unwrap_or_else(|p| p.into_inner()));
        settlement.failures.extend(rounds.failures);
        settlement.notes.push(format!(
            "{} rounds of {ITEMS} items; {} abandoned after consumer kills, {} items stranded with {} killed consumers",
            rounds.rounds, rounds.abandoned, rounds.stranded, totals.kills
        ));
        settlement.accounted_in_flight = rounds.stranded;
        if rounds.stranded > totals.kills {
            settlement.losses = rounds.stranded - totals.kills;
            settlement.failures.push(format!(
                "{} items stranded, but only {} consumers killed",
                rounds.stranded, totals.kills
            ));
        }
        if rounds.early > 0 {
            let (round, done) = rounds.first_early.unwrap_or_default();
            settlement.corrupt = rounds.early;
            settlement.failures.push(format!(
                "join returned before every item was done {} times; the first: round {round}, {done} of {ITEMS} done",
                rounds.early
            ));
        }
        settlement
    }
}
