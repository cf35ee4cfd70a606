//! `ticket-oversell`: buyers read the stock from a shared file, and if a ticket is left,
//! write back one less. Without a lock, two buyers that both read the last ticket both
//! sell it (read, read, write, write): sold > stock. The forced schedule [0, 1] — buyer 0
//! reads, buyer 1 reads, then each runs on — is the shortest that shows it.

use super::{
    describe_history, join_workers, results, start_worker, Case, CaseContext, CaseOutcome, Joined,
    Scenario, Variant, Verdict,
};
use crate::ipc::filestore::{Counts, FileStore, StoreAddress, StoreLockKind};
use crate::ipc::lock::{Lock, LockAddress};
use crate::ipc::manager::{Manager, ManagerAddress, ManagerClient};
use crate::process::StartMethod;
use crate::schedule::{Mode, Schedule, Turnstile, TurnstileHandle};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use std::time::Duration;

pub struct TicketOversell;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    pub buyers: usize,
    pub tickets: u32,
    /// Purchases each buyer attempts.
    pub attempts: u32,
}

/// Where the stock lives and what guards it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Store {
    /// The file store (`ipc::filestore`), with its lock (none for `unlocked`).
    File {
        address: StoreAddress,
        lock: Option<LockAddress>,
    },
    /// A Manager counter, decremented on the server by compare-and-set.
    Manager(ManagerAddress),
}

fn lock_kind_for(variant: &str) -> Result<Option<StoreLockKind>, String> {
    match variant {
        "manager" => Ok(None),
        other => StoreLockKind::from_name(other)
            .map(Some)
            .ok_or_else(|| format!("ticket-oversell has no variant {other:?}")),
    }
}

const VARIANTS: &[Variant] = &[
    Variant::caught_violated(
        "unlocked",
        "read stock, pause, write back without a lock: sold > stock",
    ),
    Variant::holds("flock", "flock(2) around read+write"),
    Variant::holds("fcntl", "fcntl(2) record lock around read+write"),
    Variant::holds("shm-mutex", "robust process-shared mutex in shared memory"),
    Variant::holds("manager", "Manager server-side decrement (compare-and-set)"),
];

impl Scenario for TicketOversell {
    fn name(&self) -> &'static str {
        "ticket-oversell"
    }
    fn about(&self) -> &'static str {
        "buyers decrement a ticket stock kept in a shared file"
    }
    fn variants(&self) -> &'static [Variant] {
        VARIANTS
    }

    fn cases(&self, _variant: &str) -> BoxedStrategy<Case> {
        (2usize..=4, 1u32..=3, 1u32..=2, Schedule::strategy(16, 4))
            .prop_map(|(buyers, tickets, attempts, schedule)| {
                Case::new(
                    &Params {
                        buyers,
                        tickets,
                        attempts,
                    },
                    schedule,
                )
            })
            .boxed()
    }

    fn run(
        &self,
        variant: &str,
        case: &Case,
        context: &CaseContext,
    ) -> Result<CaseOutcome, String> {
        let params: Params = case.params()?;
        run_buyers(
            lock_kind_for(variant)?,
            &params,
            &case.schedule,
            Mode::Forced,
            context,
        )
    }
}

#[derive(Serialize, Deserialize)]
struct BuyerArgs {
    index: usize,
    attempts: u32,
    store: Store,
    turnstile: TurnstileHandle,
}

/// A buyer's view of the stock: the operations its steps are made of.
enum Stock {
    File {
        store: FileStore,
        lock: Option<Box<dyn Lock>>,
    },
    Manager(ManagerClient),
}

const CALL_TIMEOUT: Duration = Duration::from_secs(10);

impl Stock {
    fn open(store: &Store) -> Result<Stock, String> {
        Ok(match store {
            Store::File { address, lock } => Stock::File {
                store: FileStore::open(address).map_err(|e| e.to_string())?,
                lock: lock
                    .as_ref()
                    .map(LockAddress::open)
                    .transpose()
                    .map_err(|e| e.to_string())?,
            },
            Store::Manager(address) => Stock::Manager(
                ManagerClient::connect(address)
                    .map_err(|e| e.to_string())?
                    .with_timeout(CALL_TIMEOUT),
            ),
        })
    }

    fn locked(&self) -> bool {
        matches!(self, Stock::File { lock: Some(_), .. })
    }

    fn try_lock(&self) -> Result<bool, String> {
        match self {
            Stock::File { lock: Some(l), .. } => l
                .try_acquire()
                .map(|a| a.is_some())
                .map_err(|e| e.to_string()),
            _ => Ok(true),
        }
    }

    fn unlock(&self) -> Result<(), String> {
        match self {
            Stock::File { lock: Some(l), .. } => l.release().map_err(|e| e.to_string()),
            _ => Ok(()),
        }
    }

    fn read(&self) -> Result<i64, String> {
        match self {
            Stock::File { store, .. } => store.get("stock").map_err(|e| e.to_string()),
            Stock::Manager(client) => client.counter("stock").get().map_err(|e| e.to_string()),
        }
    }

    /// Writes back one less than `seen`; false when the Manager's compare-and-set found
    /// the stock changed since it was read (the buyer reads again).
    fn sell(&self, seen: i64) -> Result<bool, String> {
        match self {
            Stock::File { store, .. } => {
                let counts: Counts = [("stock".to_string(), seen - 1)].into();
                store
                    .write(&counts)
                    .map(|_| true)
                    .map_err(|e| e.to_string())
            }
            Stock::Manager(client) => client
                .counter("stock")
                .compare_and_set(seen, seen - 1)
                .map_err(|e| e.to_string()),
        }
    }
}

/// One buyer: per attempt, [lock], read stock, sell if any left, [unlock]. Returns how
/// many tickets it sold.
fn buyer(args: BuyerArgs) -> Result<u32, String> {
    let me = args.index;
    let ts = Turnstile::adopt(args.turnstile, me).map_err(|e| e.to_string())?;
    let stock = Stock::open(&args.store)?;
    let sched = |e: crate::schedule::ScheduleError| e.to_string();
    let mut sold = 0;
    for _ in 0..args.attempts {
        if stock.locked() {
            let mut error = None;
            while !ts
                .try_step(me, "lock", || {
                    stock.try_lock().unwrap_or_else(|e| {
                        error = Some(e);
                        true
                    })
                })
                .map_err(sched)?
            {}
            if let Some(e) = error {
                return Err(e);
            }
        }
        loop {
            let mut error = None;
            let seen = ts
                .step_value(me, "read-stock", || {
                    stock.read().unwrap_or_else(|e| {
                        error = Some(e);
                        -1
                    })
                })
                .map_err(sched)?;
            if let Some(e) = error {
                return Err(format!("buyer {me}: {e}"));
            }
            if seen <= 0 {
                break;
            }
            let written = ts
                .step_value(me, "write-stock", || match stock.sell(seen) {
                    Ok(true) => seen - 1,
                    Ok(false) => seen,
                    Err(e) => {
                        error = Some(e);
                        -1
                    }
                })
                .map_err(sched)?;
            if let Some(e) = error {
                return Err(format!("buyer {me}: {e}"));
            }
            if written == seen - 1 {
                sold += 1;
                break;
            }
        }
        if stock.locked() {
            ts.step(me, "unlock", || stock.unlock()).map_err(sched)??;
        }
    }
    ts.finish(me).map_err(sched)?;
    Ok(sold)
}
crate::register_entry!("ipcbench-scenario-ticket-buyer", buyer);

/// The stock and whatever serves it, owned by the case leader for the case's length.
enum Holder {
    File(FileStore),
    Manager(Manager),
}

fn run_buyers(
    lock: Option<StoreLockKind>,
    params: &Params,
    schedule: &Schedule,
    mode: Mode,
    context: &CaseContext,
) -> Result<CaseOutcome, String> {
    let (holder, store) = match lock {
        Some(kind) => {
            let initial: Counts = [("stock".to_string(), params.tickets as i64)].into();
            let file = FileStore::create(kind, &initial).map_err(|e| e.to_string())?;
            let address = file.address();
            let store = Store::File {
                address: StoreAddress {
                    path: address.path.clone(),
                    lock: None,
                },
                lock: address.lock,
            };
            (Holder::File(file), store)
        }
        None => {
            let manager = Manager::start(StartMethod::Fork).map_err(|e| e.to_string())?;
            let client = manager.client().map_err(|e| e.to_string())?;
            client
                .counter("stock")
                .set(params.tickets as i64)
                .map_err(|e| e.to_string())?;
            let address = manager.address().clone();
            (Holder::Manager(manager), Store::Manager(address))
        }
    };
    let turnstile = Turnstile::create(params.buyers, schedule, mode).map_err(|e| e.to_string())?;
    let fds = [turnstile.handle().fd];
    let mut children = Vec::with_capacity(params.buyers);
    for index in 0..params.buyers {
        let args = BuyerArgs {
            index,
            attempts: params.attempts,
            store: store.clone(),
            turnstile: turnstile.handle(),
        };
        match start_worker(
            "ipcbench-scenario-ticket-buyer",
            format!("buyer {index}"),
            &args,
            &fds,
        ) {
            Ok(child) => children.push(child),
            Err(e) => {
                // Let the ones already started run to the end of the schedule.
                for i in index..params.buyers {
                    turnstile.abandon(i);
                }
                let _ = join_workers(&mut children, context.deadline, Some(&turnstile));
                return Err(e);
            }
        }
    }
    let joined = join_workers(&mut children, context.deadline, Some(&turnstile));
    let history = turnstile.history();
    let sold: Vec<u32> = match joined {
        Joined::Verdict(v) => return Ok(CaseOutcome::new(v, history)),
        Joined::Finished(r) => results(r)?,
    };
    let total: u32 = sold.iter().sum();
    let left = match &holder {
        Holder::File(file) => file.get("stock").map_err(|e| e.to_string())?,
        Holder::Manager(manager) => manager
            .client()
            .and_then(|c| c.counter("stock").get())
            .map_err(|e| e.to_string())?,
    };
    if let Holder::Manager(manager) = holder {
        manager.shutdown(CALL_TIMEOUT).map_err(|e| e.to_string())?;
    }
    let verdict = if total > params.tickets || left != params.tickets as i64 - total as i64 {
        Verdict::violated(
            "tickets sold <= stock, and stock left = stock - sold",
            format!(
                "{total} sold of {} tickets, {left} left; {}",
                params.tickets,
                describe_history(&history, "buyer", true)
            ),
        )
    } else {
        Verdict::Holds
    };
    Ok(CaseOutcome::new(verdict, history))
}
