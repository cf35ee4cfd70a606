//! Stress targets that count instead of carrying messages: each worker increments one
//! shared counter, through a Lock flavor (a plain read-then-write under the lock, so
//! broken exclusion shows as lost updates) or through the Manager (a server-side
//! increment over RPC).
//!
//! # The books
//!
//! `C` is the sum of the workers' committed increments (on the board, which outlives
//! them). The final counter must be `C` plus the increments of workers killed in the
//! middle of one:
//!
//! * **Lock**: the worker commits *inside* the critical section, right after its
//!   increment, so an increment without its commit means the worker died holding the
//!   lock — which the lock must report to the next holder (`Acquired::OwnerDied`,
//!   counted on the board). Checks: `counter >= C` (else updates were lost: exclusion
//!   failed), `counter - C <= owner deaths reported` (else a dead holder went
//!   unreported), `owner deaths reported <= kills` (else a death was invented).
//! * **Manager**: a client killed during its call may or may not have had the increment
//!   applied. Checks: `C <= counter <= C + clients killed mid-call`.

use super::board::Board;
use super::runner::{Accounting, Event, Settlement, Target, Totals, WorkerSpec};
use super::StressError;
use crate::ipc::lock::{Acquired, Lock, LockAddress, LockFlavor};
use crate::ipc::manager::{Manager, ManagerAddress, ManagerClient};
use crate::process::{self, Child, StartMethod};
use crate::sys::shm::Shared;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::time::Duration;

/// Bound on one acquire or one call: far beyond any pause a fault causes, so reaching it
/// means a lost wake-up or a dead holder left unreported.
const OP_TIMEOUT: Duration = Duration::from_secs(30);
/// Name of the Manager counter the workers increment.
const COUNTER: &str = "stress-counter";

/// The counter guarded by a lock, and the holder's mark (producer + 1 while inside).
type CounterCells = [AtomicU64; 2];
const VALUE: usize = 0;
const HOLDER: usize = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CounterKind {
    Lock(LockFlavor),
    Manager,
}

/// Where a worker finds the counter.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum CounterAddress {
    Lock { lock: LockAddress, cells: String },
    Manager(ManagerAddress),
}

enum Resources {
    Lock {
        lock: Box<dyn Lock>,
        cells: Shared<CounterCells>,
    },
    Manager(Manager),
}

pub(crate) struct CounterTarget {
    kind: CounterKind,
    resources: Option<Resources>,
}

impl CounterTarget {
    pub(crate) fn new(kind: CounterKind) -> CounterTarget {
        CounterTarget {
            kind,
            resources: None,
        }
    }

    fn address(&mut self) -> Result<CounterAddress, StressError> {
        if self.resources.is_none() {
            self.resources = Some(match self.kind {
                CounterKind::Lock(flavor) => Resources::Lock {
                    lock: flavor.create()?,
                    cells: Shared::create("stress-counter", 0)?,
                },
                CounterKind::Manager => Resources::Manager(Manager::start(StartMethod::Fork)?),
            });
        }
        let address = match self.resources.as_ref().expect("just set") {
            Resources::Lock { lock, cells } => CounterAddress::Lock {
                lock: lock.address(),
                cells: cells.name().to_string(),
            },
            Resources::Manager(manager) => CounterAddress::Manager(manager.address().clone()),
        };
        Ok(address)
    }
}

#[derive(Serialize, Deserialize)]
struct CounterWorkerArgs {
    spec: WorkerSpec,
    address: CounterAddress,
}

/// Increments until the stop request; returns how many increments it committed.
fn counter_worker(args: CounterWorkerArgs) -> Result<u64, StressError> {
    let board = Board::open(&args.spec.board)?;
    let cell = board.cell(args.spec.slot);
    let mark = args.spec.producer as u64 + 1;
    let mut seq = 0u64;
    match args.address {
        CounterAddress::Lock { lock, cells } => {
            let lock = lock.open()?;
            let cells: Shared<CounterCells> = Shared::open(&cells)?;
            while !board.stop_requested() {
                cell.attempted.store(seq + 1, Ordering::SeqCst);
                if lock.acquire(OP_TIMEOUT)? == Acquired::OwnerDied {
                    cell.extra.fetch_add(1, Ordering::SeqCst);
                }
                cells[HOLDER].store(mark, Ordering::Relaxed);
                // Read, then write: only the lock makes this an increment.
                let value = cells[VALUE].load(Ordering::Relaxed);
                cells[VALUE].store(value + 1, Ordering::Relaxed);
                cell.committed.store(seq + 1, Ordering::SeqCst);
                cells[HOLDER].store(0, Ordering::Relaxed);
                lock.release()?;
                seq += 1;
            }
        }
        CounterAddress::Manager(address) => {
            let client = ManagerClient::connect(&address)?.with_timeout(OP_TIMEOUT);
            let counter = client.counter(COUNTER);
            while !board.stop_requested() {
                cell.attempted.store(seq + 1, Ordering::SeqCst);
                counter.increment(1)?;
                cell.committed.store(seq + 1, Ordering::SeqCst);
                seq += 1;
            }
        }
    }
    Ok(seq)
}
crate::register_entry!("stress-counter-worker", counter_worker);

impl Target for CounterTarget {
    fn name(&self) -> String {
        match self.kind {
            CounterKind::Lock(flavor) => format!("lock-{}", flavor.name()),
            CounterKind::Manager => "manager".into(),
        }
    }
    fn family(&self) -> &'static str {
        match self.kind {
            CounterKind::Lock(_) => "lock",
            CounterKind::Manager => "manager",
        }
    }
    fn accounting(&self) -> Accounting {
        Accounting::Operations
    }
    fn mean_fault_gap(&self) -> u64 {
        match self.kind {
            // A contended robust mutex does millions of increments a second here (the
            // holder keeps its CPU); the file locks and the Manager's RPC are slower.
            CounterKind::Lock(LockFlavor::Robust) => 150_000,
            CounterKind::Lock(_) => 4_000,
            CounterKind::Manager => 1_000,
        }
    }

    fn start_worker(
        &mut self,
        spec: &WorkerSpec,
        _: &SyncSender<Event>,
    ) -> Result<Child, StressError> {
        let address = self.address()?;
        process::start(
            "stress-counter-worker",
            &CounterWorkerArgs {
                spec: spec.clone(),
                address,
            },
            spec.options('w'),
        )
        .map_err(StressError::from)
    }

    fn finish(&mut self, totals: &Totals) -> Settlement {
        let mut settlement = Settlement::default();
        let Some(resources) = self.resources.take() else {
            return settlement;
        };
        let c = totals.committed;
        match resources {
            Resources::Lock { lock, cells } => {
                // The last holder may have died with the lock: one more acquire hears it.
                let mut reports = totals.extra;
                match lock.acquire(OP_TIMEOUT) {
                    Ok(acquired) => {
                        reports += u64::from(acquired == Acquired::OwnerDied);
                        let _ = lock.release();
                    }
                    Err(e) => settlement
                        .failures
                        .push(format!("final acquire of the lock: {e}")),
                }
                let counter = cells[VALUE].load(Ordering::SeqCst);
                if counter < c {
                    settlement.losses = c - counter;
                    settlement.failures.push(format!(
                        "lost updates: counter {counter} < {c} committed increments (exclusion failed)"
                    ));
                } else {
                    settlement.accounted_in_flight = counter - c;
                    if counter - c > reports {
                        settlement.corrupt = counter - c - reports;
                        settlement.failures.push(format!(
                            "{} increments of dead holders, only {reports} owner deaths reported",
                            counter - c
                        ));
                    }
                }
                settlement.notes.push(format!(
                    "{reports} owner deaths reported by the lock over {} kills; {} increments by dead holders",
                    totals.kills,
                    counter.saturating_sub(c)
                ));
                if reports > totals.kills {
                    settlement.failures.push(format!(
                        "{reports} owner deaths reported, but only {} kills",
                        totals.kills
                    ));
                }
            }
            Resources::Manager(manager) => {
                let counter = manager
                    .client()
                    .and_then(|client| client.counter(COUNTER).get());
                match counter {
                    Ok(counter) => {
                        let counter = counter.max(0) as u64;
                        let bound = c + totals.killed_mid_operation;
                        if counter < c {
                            settlement.losses = c - counter;
                            settlement
                                .failures
                                .push(format!("counter {counter} < {c} committed increments"));
                        } else if counter > bound {
                            settlement.duplicates = counter - bound;
                            settlement.failures.push(format!(
                                "counter {counter} > {c} committed + {} clients killed mid-call",
                                totals.killed_mid_operation
                            ));
                        } else {
                            settlement.accounted_in_flight = counter - c;
                        }
                    }
                    Err(e) => settlement
                        .failures
                        .push(format!("cannot read the final counter: {e}")),
                }
                if let Err(e) = manager.shutdown(Duration::from_secs(10)) {
                    settlement.failures.push(format!("manager shutdown: {e}"));
                }
            }
        }
        settlement
    }
}
