//! Stress target: the Barrier, every worker a party (parties = processes). A party writes
//! the generation it is about to wait for (epoch and number) into its slot's cell, then
//! waits; once it passes, every slot's cell must show that generation or a later one —
//! all parties of the generation arrived before anyone passed.
//!
//! A party's death breaks a barrier for good, so the run goes by *epochs*: when the run
//! reaps a killed worker, the target aborts the current barrier and publishes a new one
//! (a [`Notice`]), and every party moves to it. A party records the epoch it is about to
//! join *before* registering, and a replacement only joins epochs after its slot's last
//! record, so every slot has at most one party in an epoch: with parties = processes, a
//! generation passes only once every slot's party has arrived.
//!
//! # The books
//!
//! * **No early pass**: every slot's cell at least the generation passed, at every pass.
//!   An early pass is counted (as corrupt) and fails the run.
//! * **Breaks are explained**: a party may see the barrier broken because a party died or
//!   because the target aborted it (both follow a kill); a break by a timeout (or any other
//!   reason) before the stop request fails the run. Epochs started: at most one per kill.
//!
//! The broken twin ([`BarrierTarget::broken`]) lets a party through without waiting once
//! in [`SKIP_EVERY`] generations, which the first book must catch.

use super::board::Board;
use super::notice::Notice;
use super::runner::{Accounting, Event, Flaw, Settlement, Target, Totals, WorkerSpec};
use super::StressError;
use crate::ipc::sync::barrier::MAX_PARTIES;
use crate::ipc::sync::{Barrier, SyncError};
use crate::process::{self, Child, Pid};
use crate::sys::shm::{Shared, ShmSafe};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::mpsc::SyncSender;
use std::time::Duration;

/// The broken twin skips one wait in this many.
pub(crate) const SKIP_EVERY: u64 = 16;
/// Bound on one wait: far beyond any pause a fault causes.
const OP_TIMEOUT: Duration = Duration::from_secs(30);

#[repr(C)]
struct Cells {
    notice: Notice,
    /// Per slot: (epoch << 32) | generation the party is waiting for or passed.
    arrived: [AtomicU64; MAX_PARTIES],
    /// Per slot: the last epoch a party of this slot set out to join.
    joining: [AtomicU64; MAX_PARTIES],
    early: AtomicU64,
    /// (epoch << 32 | generation) of the first early pass, and the slot found behind.
    first_early: AtomicU64,
    first_behind: AtomicU64,
    breaks_by_death: AtomicU64,
    breaks_by_abort: AtomicU64,
    breaks_unexplained: AtomicU64,
}

// SAFETY: atomics only (the notice too); zero is the valid initial state.
unsafe impl ShmSafe for Cells {}

pub(crate) struct BarrierTarget {
    broken: bool,
    cells: Option<Shared<Cells>>,
    barrier: Option<Barrier>,
    epoch: u64,
    parties: u32,
    failures: Vec<String>,
}

impl BarrierTarget {
    pub(crate) fn new() -> BarrierTarget {
        BarrierTarget {
            broken: false,
            cells: None,
            barrier: None,
            epoch: 0,
            parties: 0,
            failures: Vec::new(),
        }
    }

    /// The broken twin: a party passes without waiting once in [`SKIP_EVERY`].
    pub(crate) fn broken() -> BarrierTarget {
        BarrierTarget {
            broken: true,
            ..BarrierTarget::new()
        }
    }

    /// Aborts the current barrier (if any) and publishes a fresh one.
    fn next_epoch(&mut self) -> Result<(), StressError> {
        let cells = self
            .cells
            .as_ref()
            .ok_or_else(|| StressError::Failed("no cells".into()))?;
        let barrier = Barrier::create(self.parties)?;
        self.epoch += 1;
        cells
            .notice
            .publish(self.epoch, barrier.name().as_bytes())?;
        if let Some(old) = self.barrier.replace(barrier) {
            old.abort();
        }
        Ok(())
    }

    fn cells_name(&mut self, procs: usize) -> Result<String, StressError> {
        if self.cells.is_none() {
            if procs > MAX_PARTIES {
                return Err(StressError::Invalid(format!(
                    "the barrier target runs at most {MAX_PARTIES} processes"
                )));
            }
            self.parties = procs as u32;
            self.cells = Some(Shared::create("stress-barrier", 0)?);
            self.next_epoch()?;
        }
        Ok(self.cells.as_ref().expect("just set").name().to_string())
    }
}

impl Default for BarrierTarget {
    fn default() -> Self {
        BarrierTarget::new()
    }
}

#[derive(Serialize, Deserialize)]
struct BarrierWorkerArgs {
    spec: WorkerSpec,
    cells: String,
    broken: bool,
}

fn barrier_worker(args: BarrierWorkerArgs) -> Result<u64, StressError> {
    let board = Board::open(&args.spec.board)?;
    let cell = board.cell(args.spec.slot);
    let cells: Shared<Cells> = Shared::open(&args.cells)?;
    let slot = args.spec.slot;
    let procs = args.spec.procs.min(MAX_PARTIES);
    let mut current: Option<(u64, Barrier, u64)> = None;
    let mut seq = 0u64;
    while !board.stop_requested() {
        let Some((epoch, barrier, generation)) = current.as_mut() else {
            // Join the published epoch if this slot has not set out to join it already.
            let joinable = cells
                .notice
                .read()
                .filter(|(e, _)| *e > cells.joining[slot].load(SeqCst));
            let Some((epoch, name)) = joinable else {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            };
            cells.joining[slot].store(epoch, SeqCst);
            let name = String::from_utf8_lossy(&name).into_owned();
            // Gone already (a later epoch replaced it), or full: wait for the next.
            if let Ok(barrier) = Barrier::open(&name) {
                current = Some((epoch, barrier, 0));
            }
            continue;
        };
        let stamp = (*epoch << 32) | *generation;
        cells.arrived[slot].store(stamp, SeqCst);
        cell.attempted.store(seq + 1, SeqCst);
        let skip = args.broken && (seq % SKIP_EVERY == SKIP_EVERY - 1);
        let waited = if skip {
            Ok(0)
        } else {
            barrier.wait(OP_TIMEOUT)
        };
        match waited {
            Ok(_) => {
                if let Some(behind) = (0..procs).find(|&j| cells.arrived[j].load(SeqCst) < stamp) {
                    if cells.early.fetch_add(1, SeqCst) == 0 {
                        cells.first_early.store(stamp, SeqCst);
                        cells.first_behind.store(behind as u64, SeqCst);
                    }
                }
                *generation += 1;
                cell.committed.store(seq + 1, SeqCst);
                seq += 1;
            }
            Err(SyncError::Broken { reason, .. }) => {
                cell.attempted.store(seq, SeqCst);
                let counter = if reason.contains("died") {
                    &cells.breaks_by_death
                } else if reason.contains("aborted") {
                    &cells.breaks_by_abort
                } else {
                    &cells.breaks_unexplained
                };
                if !board.stop_requested() {
                    counter.fetch_add(1, SeqCst);
                }
                current = None;
            }
            Err(SyncError::Timeout { .. }) => {
                cell.attempted.store(seq, SeqCst);
                if !board.stop_requested() {
                    cells.breaks_unexplained.fetch_add(1, SeqCst);
                }
                current = None;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(seq)
}
crate::register_entry!("stress-barrier-worker", barrier_worker);

impl Target for BarrierTarget {
    fn name(&self) -> String {
        if self.broken {
            "barrier-skipping".into()
        } else {
            "barrier".into()
        }
    }
    fn family(&self) -> &'static str {
        "barrier"
    }
    /// A pass before every party arrived is counted as corrupt.
    fn expected_flaw(&self) -> Option<Flaw> {
        self.broken.then_some(Flaw::Corrupt)
    }
    fn accounting(&self) -> Accounting {
        Accounting::Operations
    }
    fn mean_fault_gap(&self) -> u64 {
        800
    }

    fn start_worker(
        &mut self,
        spec: &WorkerSpec,
        _: &SyncSender<Event>,
    ) -> Result<Child, StressError> {
        let cells = self.cells_name(spec.procs)?;
        process::start(
            "stress-barrier-worker",
            &BarrierWorkerArgs {
                spec: spec.clone(),
                cells,
                broken: self.broken,
            },
            spec.options('w'),
        )
        .map_err(StressError::from)
    }

    fn worker_ended(&mut self, _: usize, _: Pid, killed: bool) {
        if killed && self.cells.is_some() {
            if let Err(e) = self.next_epoch() {
                self.failures
                    .push(format!("cannot start a new epoch: {}", e.chain()));
            }
        }
    }

    fn finish(&mut self, totals: &Totals) -> Settlement {
        let mut settlement = Settlement {
            failures: std::mem::take(&mut self.failures),
            ..Settlement::default()
        };
        self.barrier = None;
        let Some(cells) = self.cells.take() else {
            return settlement;
        };
        let early = cells.early.load(SeqCst);
        let (deaths, aborts, unexplained) = (
            cells.breaks_by_death.load(SeqCst),
            cells.breaks_by_abort.load(SeqCst),
            cells.breaks_unexplained.load(SeqCst),
        );
        settlement.notes.push(format!(
            "{} epochs over {} kills; parties saw a break by a death {deaths} times, by the target's abort {aborts} times",
            self.epoch, totals.kills
        ));
        if early > 0 {
            let first = cells.first_early.load(SeqCst);
            settlement.corrupt = early;
            settlement.failures.push(format!(
                "{early} passes before every party arrived; the first: epoch {} generation {}, slot {} behind",
                first >> 32,
                first & 0xffff_ffff,
                cells.first_behind.load(SeqCst)
            ));
        }
        if unexplained > 0 {
            settlement.failures.push(format!(
                "parties saw the barrier broken {unexplained} times by a timeout or an unknown reason"
            ));
        }
        if self.epoch > totals.kills + 1 {
            settlement.failures.push(format!(
                "{} epochs, but only {} kills",
                self.epoch, totals.kills
            ));
        }
        settlement
    }
}
