//! `ticket-oversell`: buyers read the stock from a shared file, and if a ticket is left,
//! write back one less. Without a lock, two buyers that both read the last ticket both
//! sell it (read, read, write, write): sold > stock. The forced schedule [0, 1] — buyer 0
//! reads, buyer 1 reads, then each runs on — is the shortest that shows it.

use super::ScenarioError;
use super::{
    describe_history, join_workers, results, start_worker, Case, CaseContext, CaseOutcome, Joined,
    Scenario, Variant, Verdict,
};
use crate::ipc::filestore::{Counts, FileStore, StoreAddress, StoreLockKind};
use crate::ipc::lock::{Lock, LockAddress};
use crate::ipc::manager::{Manager, ManagerAddress, ManagerClient};
use crate::process::StartMethod;
use crate::schedule::{Event, Mode, Schedule, Turnstile, TurnstileHandle};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use std::time::Duration;

pub(crate) struct TicketOversell;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Params {
    pub(crate) buyers: usize,
    pub(crate) tickets: u32,
    /// Purchases each buyer attempts.
    pub(crate) attempts: u32,
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

fn lock_kind_for(variant: &str) -> Result<Option<StoreLockKind>, ScenarioError> {
    match variant {
        "manager" => Ok(None),
        other => StoreLockKind::from_name(other)
            .map(Some)
            .ok_or_else(|| format!("ticket-oversell has no variant {other:?}").into()),
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
    ) -> Result<CaseOutcome, ScenarioError> {
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
    fn open(store: &Store) -> Result<Stock, ScenarioError> {
        Ok(match store {
            Store::File { address, lock } => Stock::File {
                store: FileStore::open(address)?,
                lock: lock.as_ref().map(LockAddress::open).transpose()?,
            },
            Store::Manager(address) => {
                Stock::Manager(ManagerClient::connect(address)?.with_timeout(CALL_TIMEOUT))
            }
        })
    }

    fn locked(&self) -> bool {
        matches!(self, Stock::File { lock: Some(_), .. })
    }

    fn try_lock(&self) -> Result<bool, ScenarioError> {
        match self {
            Stock::File { lock: Some(l), .. } => l
                .try_acquire()
                .map(|a| a.is_some())
                .map_err(ScenarioError::from),
            _ => Ok(true),
        }
    }

    fn unlock(&self) -> Result<(), ScenarioError> {
        match self {
            Stock::File { lock: Some(l), .. } => Ok(l.release()?),
            _ => Ok(()),
        }
    }

    fn read(&self) -> Result<i64, ScenarioError> {
        match self {
            Stock::File { store, .. } => Ok(store.get("stock")?),
            Stock::Manager(client) => Ok(client.counter("stock").get()?),
        }
    }

    /// Writes back one less than `seen`; false when the Manager's compare-and-set found
    /// the stock changed since it was read (the buyer reads again).
    fn sell(&self, seen: i64) -> Result<bool, ScenarioError> {
        match self {
            Stock::File { store, .. } => {
                let counts: Counts = [("stock".to_string(), seen - 1)].into();
                store
                    .write(&counts)
                    .map(|_| true)
                    .map_err(ScenarioError::from)
            }
            Stock::Manager(client) => client
                .counter("stock")
                .compare_and_set(seen, seen - 1)
                .map_err(ScenarioError::from),
        }
    }
}

/// One buyer: per attempt, [lock], read stock, sell if any left, [unlock]. Returns how
/// many tickets it sold.
fn buyer(args: BuyerArgs) -> Result<u32, ScenarioError> {
    let me = args.index;
    let ts = Turnstile::adopt(args.turnstile, me)?;
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
                return Err(format!("buyer {me}: {e}").into());
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
                return Err(format!("buyer {me}: {e}").into());
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
) -> Result<CaseOutcome, ScenarioError> {
    let (holder, store) = match lock {
        Some(kind) => {
            let initial: Counts = [("stock".to_string(), params.tickets as i64)].into();
            let file = FileStore::create(kind, &initial)?;
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
            let manager = Manager::start(StartMethod::Fork)?;
            let client = manager.client()?;
            client.counter("stock").set(params.tickets as i64)?;
            let address = manager.address().clone();
            (Holder::Manager(manager), Store::Manager(address))
        }
    };
    let turnstile = Turnstile::create(params.buyers, schedule, mode)?;
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
    let left = match &holder {
        Holder::File(file) => file.get("stock")?,
        Holder::Manager(manager) => manager.client().and_then(|c| c.counter("stock").get())?,
    };
    if let Holder::Manager(manager) = holder {
        manager.shutdown(CALL_TIMEOUT)?;
    }
    let verdict = oracle(params, &sold, left, &history);
    Ok(CaseOutcome::new(verdict, history))
}

/// The oracle: no more tickets sold than there were, and the stock left is the stock less
/// what was sold (a lost write shows as one or the other). Pure: it judges what the buyers
/// reported (`sold`, one count per buyer), the stock left and the history.
pub(crate) fn oracle(params: &Params, sold: &[u32], left: i64, history: &[Event]) -> Verdict {
    let total: u32 = sold.iter().sum();
    if total <= params.tickets && left == params.tickets as i64 - total as i64 {
        return Verdict::Holds;
    }
    Verdict::violated(
        "tickets sold <= stock, and stock left = stock - sold",
        format!(
            "{total} sold of {} tickets, {left} left; {}",
            params.tickets,
            describe_history(history, "buyer", true)
        ),
    )
}

#[cfg(test)]
mod oracle_tests {
    use super::*;

    fn params(tickets: u32) -> Params {
        Params {
            buyers: 2,
            tickets,
            attempts: 1,
        }
    }

    /// The classic lost update: both read 1, both sell, both write 0.
    #[test]
    fn two_buyers_reading_the_same_stock_oversell() {
        let history = [
            Event::step(0, "read-stock", 1),
            Event::step(1, "read-stock", 1),
            Event::step(0, "write-stock", 0),
            Event::step(1, "write-stock", 0),
        ];
        let verdict = oracle(&params(1), &[1, 1], 0, &history);
        let text = verdict.evidence().expect("a violation").to_string();
        assert!(text.contains("2 sold of 1 tickets, 0 left"), "{text}");
        assert!(text.contains("buyer 1 read-stock=1"), "{text}");
    }

    /// Not oversold, but a write lost: 2 tickets, both sold, 1 left.
    #[test]
    fn a_lost_write_without_overselling_is_caught_too() {
        let history = [
            Event::step(0, "read-stock", 2),
            Event::step(1, "read-stock", 2),
            Event::step(0, "write-stock", 1),
            Event::step(1, "write-stock", 1),
        ];
        let verdict = oracle(&params(2), &[1, 1], 1, &history);
        assert!(verdict
            .evidence()
            .is_some_and(|e| e.contains("2 sold of 2 tickets, 1 left")));
    }

    #[test]
    fn serialized_sales_hold() {
        let history = [
            Event::step(0, "read-stock", 1),
            Event::step(0, "write-stock", 0),
            Event::step(1, "read-stock", 0),
        ];
        assert_eq!(oracle(&params(1), &[1, 0], 0, &history), Verdict::Holds);
    }
}
