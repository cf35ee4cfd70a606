//! Stress target: the file store (a JSON file of counts, read-modify-written through a
//! temp file and a rename) under each lock kind. Every worker adds one to the count
//! `"n"` per operation: lock, read, add, write, commit (on the board), unlock.
//!
//! # The books
//!
//! `C` is the sum of the committed increments. The commit is made *inside* the critical
//! section, right after the write, so an increment without its commit means the writer
//! died holding the lock, which the lock must report to the next holder (owner died,
//! counted on the board):
//!
//! * every read parses: a file that does not is **torn** (a failure, as the store
//!   promises readers the old whole file or the new whole file, even across a kill);
//! * `n >= C`, else updates were lost (exclusion failed): **losses**;
//! * `n - C <= owner deaths reported`, else a dead writer went unreported;
//! * `owner deaths reported <= kills`.
//!
//! The `unlocked` kind is the broken twin: not in [`super::all_targets`], selectable by
//! name, caught by its lost updates.

use super::board::Board;
use super::runner::{Accounting, Event, Flaw, Settlement, Target, Totals, WorkerSpec};
use super::StressError;
use crate::ipc::filestore::{Counts, FileStore, StoreAddress, StoreError, StoreLockKind};
use crate::process::{self, Child};
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;
use std::sync::mpsc::SyncSender;
use std::time::Duration;

/// Bound on one acquire: far beyond any pause a fault causes.
const OP_TIMEOUT: Duration = Duration::from_secs(30);
const KEY: &str = "n";

pub(crate) struct FileStoreTarget {
    kind: StoreLockKind,
    store: Option<FileStore>,
}

impl FileStoreTarget {
    pub(crate) fn new(kind: StoreLockKind) -> FileStoreTarget {
        FileStoreTarget { kind, store: None }
    }

    fn address(&mut self) -> Result<StoreAddress, StressError> {
        if self.store.is_none() {
            self.store = Some(FileStore::create(
                self.kind,
                &Counts::from([(KEY.to_string(), 0)]),
            )?);
        }
        Ok(self.store.as_ref().expect("just set").address())
    }
}

#[derive(Serialize, Deserialize)]
struct StoreWorkerArgs {
    spec: WorkerSpec,
    address: StoreAddress,
}

/// A corrupt store file is named torn (what the books count), over the store's own error.
fn torn(e: StoreError) -> StressError {
    match e {
        StoreError::Corrupt { .. } => StressError::at("torn store file", e),
        e => e.into(),
    }
}

/// Increments until the stop request; returns how many increments it committed.
fn store_worker(args: StoreWorkerArgs) -> Result<u64, StressError> {
    let board = Board::open(&args.spec.board)?;
    let cell = board.cell(args.spec.slot);
    let store = FileStore::open(&args.address).map_err(torn)?;
    let mut seq = 0u64;
    while !board.stop_requested() {
        cell.attempted.store(seq + 1, Ordering::SeqCst);
        let guard = store.lock(OP_TIMEOUT).map_err(torn)?;
        if guard.owner_died() {
            cell.extra.fetch_add(1, Ordering::SeqCst);
        }
        let mut counts = store.read().map_err(torn)?;
        *counts.entry(KEY.to_string()).or_insert(0) += 1;
        store.write(&counts).map_err(torn)?;
        cell.committed.store(seq + 1, Ordering::SeqCst);
        drop(guard);
        seq += 1;
    }
    Ok(seq)
}
crate::register_entry!("stress-filestore-worker", store_worker);

impl Target for FileStoreTarget {
    fn name(&self) -> String {
        format!("filestore-{}", self.kind.name())
    }
    fn family(&self) -> &'static str {
        "filestore"
    }
    /// Without the lock, increments are lost (the store ends below the commits).
    fn expected_flaw(&self) -> Option<Flaw> {
        (self.kind == StoreLockKind::Unlocked).then_some(Flaw::Losses)
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
        let address = self.address()?;
        process::start(
            "stress-filestore-worker",
            &StoreWorkerArgs {
                spec: spec.clone(),
                address,
            },
            spec.options('w'),
        )
        .map_err(StressError::from)
    }

    fn finish(&mut self, totals: &Totals) -> Settlement {
        let mut settlement = Settlement::default();
        let Some(store) = self.store.take() else {
            return settlement;
        };
        let c = totals.committed;
        // The last holder may have died with the lock: one more acquire hears it.
        let mut reports = totals.extra;
        match store.lock(OP_TIMEOUT) {
            Ok(guard) => reports += u64::from(guard.owner_died()),
            Err(e) => settlement
                .failures
                .push(format!("final acquire of the store's lock: {e}")),
        }
        let n = match store.get(KEY) {
            Ok(n) => n.max(0) as u64,
            Err(e) => {
                settlement.failures.push(format!("final read: {}", torn(e)));
                return settlement;
            }
        };
        if n < c {
            settlement.losses = c - n;
            settlement.failures.push(format!(
                "lost updates: the store says {n} < {c} committed increments (exclusion failed)"
            ));
        } else {
            settlement.accounted_in_flight = n - c;
            if n - c > reports {
                settlement.corrupt = n - c - reports;
                settlement.failures.push(format!(
                    "{} increments of dead writers, only {reports} owner deaths reported",
                    n - c
                ));
            }
        }
        settlement.notes.push(format!(
            "store count {n}, {c} committed; {reports} owner deaths reported over {} kills",
            totals.kills
        ));
        if reports > totals.kills {
            settlement.failures.push(format!(
                "{reports} owner deaths reported, but only {} kills",
                totals.kills
            ));
        }
        settlement
    }
}
