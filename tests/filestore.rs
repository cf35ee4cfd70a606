//! The ticket file store across real processes: exact totals under every lock, whole
//! files even without one, a writer killed holding the lock, clear errors.

mod support;

use ipcbench::ipc::filestore::{Counts, FileStore, StoreAddress, StoreLockKind};
use ipcbench::ipc::sync::Event;
use ipcbench::process::{self, Options, StartMethod};
use ipcbench::register_entry;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use support::{leak_checked, results, start_all};

const PROCESSES: usize = 4;
const UPDATES: i64 = 300;
const LOCK_BOUND: Duration = Duration::from_secs(30);

#[derive(Serialize, Deserialize)]
struct BuyerArgs {
    store: StoreAddress,
    updates: i64,
}

#[derive(Serialize, Deserialize, Debug, Default)]
struct BuyerReport {
    /// Reads that failed (a torn or missing file would show here).
    failed_reads: Vec<String>,
}

/// Buys one ticket per update: read, move one from stock to sold, write back — through
/// `update` when the store has a lock, as separate read and write steps when it has none.
fn buyer(args: BuyerArgs) -> Result<BuyerReport, String> {
    let store = FileStore::open(&args.store).map_err(|e| e.to_string())?;
    let mut report = BuyerReport::default();
    for _ in 0..args.updates {
        if store.lock_kind() == StoreLockKind::Unlocked {
            let _guard = store.lock(LOCK_BOUND).map_err(|e| e.to_string())?;
            let mut counts = match store.read() {
                Ok(counts) => counts,
                Err(e) => {
                    report.failed_reads.push(e.to_string());
                    continue;
                }
            };
            *counts.get_mut("stock").ok_or("no stock")? -= 1;
            *counts.get_mut("sold").ok_or("no sold")? += 1;
            store.write(&counts).map_err(|e| e.to_string())?;
        } else {
            store
                .update(LOCK_BOUND, |counts| {
                    *counts.entry("stock".into()).or_default() -= 1;
                    *counts.entry("sold".into()).or_default() += 1;
                })
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(report)
}
register_entry!("filestore-test-buyer", buyer);

fn initial() -> Counts {
    Counts::from([("stock".into(), 10_000), ("sold".into(), 0)])
}

#[test]
fn locked_read_modify_write_is_exact_and_unlocked_never_tears_the_file() {
    leak_checked(|| {
        for kind in StoreLockKind::ALL {
            let store = FileStore::create(kind, &initial()).unwrap();
            let args: Vec<BuyerArgs> = (0..PROCESSES)
                .map(|_| BuyerArgs {
                    store: store.address(),
                    updates: UPDATES,
                })
                .collect();
            let reports: Vec<BuyerReport> = results(start_all("filestore-test-buyer", &args));
            for report in &reports {
                assert!(
                    report.failed_reads.is_empty(),
                    "{kind:?}: {:?}",
                    report.failed_reads
                );
            }
            let counts = store.read().unwrap();
            assert_eq!(
                counts["stock"] + counts["sold"],
                10_000,
                "{kind:?}: {counts:?}"
            );
            let total = PROCESSES as i64 * UPDATES;
            if kind == StoreLockKind::Unlocked {
                assert!(counts["sold"] <= total, "{kind:?}: {counts:?}");
            } else {
                assert_eq!(counts["sold"], total, "{kind:?}: lost updates");
            }
        }
    });
}

#[derive(Serialize, Deserialize)]
struct HoldArgs {
    store: StoreAddress,
    holding: String,
}

/// Takes the store's lock, reads, says so, and is killed before writing.
fn hold_store_lock(args: HoldArgs) -> Result<(), String> {
    let store = FileStore::open(&args.store).map_err(|e| e.to_string())?;
    let _guard = store.lock(LOCK_BOUND).map_err(|e| e.to_string())?;
    store.read().map_err(|e| e.to_string())?;
    Event::open(&args.holding).map_err(|e| e.to_string())?.set();
    std::thread::sleep(Duration::from_secs(60));
    Err("was not killed".into())
}
register_entry!("filestore-test-hold", hold_store_lock);

#[test]
fn a_writer_killed_holding_the_lock_is_reported_and_leaves_a_whole_file() {
    leak_checked(|| {
        for kind in StoreLockKind::LOCKED {
            let store = FileStore::create(kind, &initial()).unwrap();
            let holding = Event::create().unwrap();
            let mut holder = process::start(
                "filestore-test-hold",
                &HoldArgs {
                    store: store.address(),
                    holding: holding.name().to_string(),
                },
                Options::new("holder").method(StartMethod::Fork),
            )
            .unwrap();
            assert!(
                holding.wait(LOCK_BOUND),
                "{kind:?}: holder never got the lock"
            );
            holder.kill().unwrap();
            holder.join(Some(LOCK_BOUND)).unwrap();
            let updated = store
                .update(Duration::from_secs(10), |counts| counts["stock"])
                .unwrap();
            assert!(updated.owner_died, "{kind:?}: death not reported");
            assert_eq!(updated.value, 10_000, "{kind:?}");
            assert!(!store.update(LOCK_BOUND, |_| ()).unwrap().owner_died);
        }
    });
}

fn open_store(address: StoreAddress) -> Result<(), String> {
    FileStore::open(&address)
        .map(|_| ())
        .map_err(|e| e.to_string())
}
register_entry!("filestore-test-open", open_store);

/// The error a child gets opening the store.
fn open_in_another_process(address: &StoreAddress) -> String {
    let mut child = process::start(
        "filestore-test-open",
        address,
        Options::new("opener").method(StartMethod::Fork),
    )
    .unwrap();
    child
        .result::<()>(Some(LOCK_BOUND))
        .unwrap_err()
        .to_string()
}

#[test]
fn another_process_gets_a_clear_error_for_a_corrupt_or_missing_file() {
    leak_checked(|| {
        let store = FileStore::create(StoreLockKind::Fcntl, &initial()).unwrap();
        std::fs::write(store.path(), b"{\"stock\": \"ten\"}").unwrap();
        let path = store.path().display().to_string();
        let err = open_in_another_process(&store.address());
        assert!(err.contains("corrupt") && err.contains(&path), "{err}");
        std::fs::remove_file(store.path()).unwrap();
        let err = open_in_another_process(&store.address());
        assert!(
            err.contains("does not exist") && err.contains(&path),
            "{err}"
        );
    });
}
