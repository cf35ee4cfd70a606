//! `ticket-oversell`: buyers read the stock from a shared file, and if a ticket is left,
//! write back one less. Without a lock, two buyers that both read the last ticket both
//! sell it (read, read, write, write): sold > stock. The forced schedule [0, 1] — buyer 0
//! reads, buyer 1 reads, then each runs on — is the shortest that shows it.

use super::primitives::{FileLock, FileLockKind, Locked, ShmMutex};
use super::{
    describe_history, join_workers, results, start_worker, Case, CaseContext, CaseOutcome, Joined,
    Scenario, Variant, Verdict,
};
use crate::schedule::{Mode, Schedule, Turnstile, TurnstileHandle};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub struct TicketOversell;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    pub buyers: usize,
    pub tickets: u32,
    /// Purchases each buyer attempts.
    pub attempts: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Guard {
    Unlocked,
    File(FileLockKind),
    ShmMutex,
}

fn guard_for(variant: &str) -> Result<Guard, String> {
    Ok(match variant {
        "unlocked" => Guard::Unlocked,
        "flock" => Guard::File(FileLockKind::Flock),
        "fcntl" => Guard::File(FileLockKind::Fcntl),
        "shm-mutex" => Guard::ShmMutex,
        other => return Err(format!("ticket-oversell has no runnable variant {other:?}")),
    })
}

const VARIANTS: &[Variant] = &[
    Variant::caught(
        "unlocked",
        "read stock, pause, write back without a lock: sold > stock",
    ),
    Variant::holds("flock", "flock(2) around read+write"),
    Variant::holds("fcntl", "fcntl(2) record lock around read+write"),
    Variant::holds("shm-mutex", "robust process-shared mutex in shared memory"),
    Variant::holds("manager", "Manager server-side decrement")
        .pending("needs Manager (branch sync)"),
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
            guard_for(variant)?,
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
    guard: Guard,
    stock_file: PathBuf,
    lock_file: PathBuf,
    turnstile: TurnstileHandle,
    mutex_fd: Option<i32>,
}

fn read_stock(file: &std::fs::File) -> Result<i64, String> {
    let mut buf = [0u8; 32];
    let n = file
        .read_at(&mut buf, 0)
        .map_err(|e| format!("read stock: {e}"))?;
    let text = std::str::from_utf8(&buf[..n]).map_err(|e| format!("stock file: {e}"))?;
    text.trim()
        .parse()
        .map_err(|e| format!("stock file holds {text:?}: {e}"))
}

fn write_stock(file: &std::fs::File, stock: i64) -> Result<(), String> {
    file.set_len(0)
        .map_err(|e| format!("truncate stock: {e}"))?;
    file.write_all_at(stock.to_string().as_bytes(), 0)
        .map_err(|e| format!("write stock: {e}"))
}

/// One buyer: per attempt, [lock], read stock, sell if any left, [unlock]. Returns how
/// many tickets it sold.
fn buyer(args: BuyerArgs) -> Result<u32, String> {
    let me = args.index;
    let ts = Turnstile::adopt(args.turnstile, me).map_err(|e| e.to_string())?;
    let stock_file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&args.stock_file)
        .map_err(|e| format!("open {}: {e}", args.stock_file.display()))?;
    let file_lock = match args.guard {
        Guard::File(kind) => {
            Some(FileLock::open(&args.lock_file, kind).map_err(|e| e.to_string())?)
        }
        _ => None,
    };
    let mutex = match args.mutex_fd {
        Some(fd) => Some(ShmMutex::adopt(fd).map_err(|e| e.to_string())?),
        None => None,
    };
    let try_lock = || -> Result<bool, String> {
        match (&file_lock, &mutex) {
            (Some(l), _) => l.try_lock().map_err(|e| e.to_string()),
            (_, Some(m)) => Ok(m.try_lock().map_err(|e| e.to_string())? != Locked::Busy),
            _ => Ok(true),
        }
    };
    let unlock = || -> Result<(), String> {
        match (&file_lock, &mutex) {
            (Some(l), _) => l.unlock().map_err(|e| e.to_string()),
            (_, Some(m)) => m.unlock().map_err(|e| e.to_string()),
            _ => Ok(()),
        }
    };
    let locked = args.guard != Guard::Unlocked;
    let mut sold = 0;
    for _ in 0..args.attempts {
        if locked {
            let mut error = None;
            while !ts
                .try_step(me, "lock", || match try_lock() {
                    Ok(got) => got,
                    Err(e) => {
                        error = Some(e);
                        true
                    }
                })
                .map_err(|e| e.to_string())?
            {}
            if let Some(e) = error {
                return Err(e);
            }
        }
        let stock = ts
            .step_value(me, "read-stock", || read_stock(&stock_file).unwrap_or(-1))
            .map_err(|e| e.to_string())?;
        if stock < 0 {
            return Err(format!("buyer {me}: cannot read the stock file"));
        }
        if stock > 0 {
            let written = ts
                .step_value(me, "write-stock", || {
                    write_stock(&stock_file, stock - 1).map_or(-1, |_| stock - 1)
                })
                .map_err(|e| e.to_string())?;
            if written < 0 {
                return Err(format!("buyer {me}: cannot write the stock file"));
            }
            sold += 1;
        }
        if locked {
            ts.step(me, "unlock", unlock).map_err(|e| e.to_string())??;
        }
    }
    ts.finish(me).map_err(|e| e.to_string())?;
    Ok(sold)
}
crate::register_entry!("ipcbench-scenario-ticket-buyer", buyer);

fn run_buyers(
    guard: Guard,
    params: &Params,
    schedule: &Schedule,
    mode: Mode,
    context: &CaseContext,
) -> Result<CaseOutcome, String> {
    let stock_path = context.temp_dir.join("stock");
    let lock_path = context.temp_dir.join("stock.lock");
    std::fs::write(&stock_path, params.tickets.to_string())
        .map_err(|e| format!("write {}: {e}", stock_path.display()))?;
    let turnstile = Turnstile::create(params.buyers, schedule, mode).map_err(|e| e.to_string())?;
    let mutex = match guard {
        Guard::ShmMutex => Some(ShmMutex::create(true).map_err(|e| e.to_string())?),
        _ => None,
    };
    let mut fds = vec![turnstile.handle().fd];
    fds.extend(mutex.as_ref().map(ShmMutex::fd));
    let mut children = Vec::with_capacity(params.buyers);
    for index in 0..params.buyers {
        let args = BuyerArgs {
            index,
            attempts: params.attempts,
            guard,
            stock_file: stock_path.clone(),
            lock_file: lock_path.clone(),
            turnstile: turnstile.handle(),
            mutex_fd: mutex.as_ref().map(ShmMutex::fd),
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
    let left = read_stock_at(&stock_path)?;
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

fn read_stock_at(path: &Path) -> Result<i64, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    read_stock(&file)
}
