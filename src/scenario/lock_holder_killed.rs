//! `lock-holder-killed`: a worker is killed inside its critical section while others wait
//! for the lock. With a plain process-shared mutex the waiters block in futex forever
//! (caught as Hung, naming them); a robust mutex hands the lock to one waiter with
//! EOWNERDEAD; the kernel drops a dead holder's flock.
//!
//! The order is forced by events, not by a turnstile (the waiters really block): the
//! holder takes the lock, the waiters announce that they are about to wait, then the
//! holder is killed.

use super::ScenarioError;
use super::{
    join_workers, results, start_worker, wait_for_events, Case, CaseContext, CaseOutcome, Joined,
    Scenario, Variant, Verdict,
};
use crate::ipc::lock::{Acquired, LockAddress, LockFlavor};
use crate::schedule::{Mode, Schedule, Turnstile, TurnstileHandle};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use std::time::Duration;

pub(crate) struct LockHolderKilled;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Params {
    pub(crate) waiters: usize,
    /// SIGKILL or SIGTERM.
    pub(crate) signal: i32,
}

const VARIANTS: &[Variant] = &[
    Variant::caught_hung(
        "plain",
        "non-robust mutex: the waiters block forever in futex (caught as Hung)",
        &["futex"],
    ),
    Variant::holds(
        "robust",
        "robust mutex: a waiter gets EOWNERDEAD and recovers",
    ),
    Variant::holds("flock", "the kernel drops a dead holder's flock"),
];

impl Scenario for LockHolderKilled {
    fn name(&self) -> &'static str {
        "lock-holder-killed"
    }
    fn about(&self) -> &'static str {
        "the holder of a lock is killed inside its critical section"
    }
    fn variants(&self) -> &'static [Variant] {
        VARIANTS
    }
    fn deadline(&self) -> Duration {
        Duration::from_millis(1500)
    }

    fn cases(&self, _variant: &str) -> BoxedStrategy<Case> {
        (
            1usize..=3,
            prop_oneof![Just(libc::SIGKILL), Just(libc::SIGTERM)],
        )
            .prop_map(|(waiters, signal)| {
                Case::new(&Params { waiters, signal }, Schedule::default())
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
        let flavor = match variant {
            "plain" => LockFlavor::Plain,
            "robust" => LockFlavor::Robust,
            "flock" => LockFlavor::Flock,
            other => return Err(format!("lock-holder-killed has no variant {other:?}").into()),
        };
        let signal = nix::sys::signal::Signal::try_from(params.signal)
            .map_err(|e| format!("signal {}: {e}", params.signal))?;
        let lock = flavor.create()?;
        let workers = params.waiters + 1;
        let log = Turnstile::create(
            workers,
            &Schedule::default(),
            Mode::Free {
                jitter_us: 0,
                seed: 0,
            },
        )?;
        let fds = [log.handle().fd];
        let args = |index| LockerArgs {
            index,
            lock: lock.address(),
            log: log.handle(),
        };
        let holder = start_worker("ipcbench-scenario-locker", "holder", &args(0), &fds)?;
        let bound = context.deadline;
        if !wait_for_events(&log, bound, |h| h.iter().any(|e| e.operation == "acquired")) {
            return Err("the holder did not take the lock".to_string().into());
        }
        let mut waiters = Vec::new();
        for index in 1..workers {
            waiters.push(start_worker(
                "ipcbench-scenario-locker",
                format!("waiter {index}"),
                &args(index),
                &fds,
            )?);
        }
        let announced = wait_for_events(&log, bound, |h| {
            h.iter().filter(|e| e.operation == "waiting").count() == params.waiters
        });
        if !announced {
            return Err("the waiters did not start waiting".to_string().into());
        }
        nix::sys::signal::kill(holder.pid(), signal).map_err(|e| format!("kill holder: {e}"))?;
        let mut holder = vec![holder];
        let _ = join_workers(&mut holder, bound, None);
        let joined = join_workers(&mut waiters, bound, None);
        let history = log.history();
        match joined {
            Joined::Verdict(v) => return Ok(CaseOutcome::new(v, history)),
            Joined::Finished(r) => results::<String>(r)?,
        };
        let recovered = history
            .iter()
            .filter(|e| e.operation == "owner-died")
            .count();
        let acquired = history
            .iter()
            .filter(|e| e.worker > 0 && (e.operation == "acquired" || e.operation == "owner-died"))
            .count();
        let verdict = if acquired != params.waiters {
            Verdict::violated(
                "every waiter gets the lock after the holder dies",
                format!("{acquired} of {} waiters got it", params.waiters),
            )
        } else if recovered != 1 {
            Verdict::violated(
                "exactly one waiter learns that the owner died",
                format!("{recovered} waiters were told"),
            )
        } else {
            Verdict::Holds
        };
        Ok(CaseOutcome::new(verdict, history))
    }
}

#[derive(Serialize, Deserialize)]
struct LockerArgs {
    index: usize,
    lock: LockAddress,
    log: TurnstileHandle,
}

/// How long a waiter waits: far beyond the case's deadline, so a lock that is never
/// handed over shows as a hang (the watchdog's bound), not as a timeout.
const WAIT: Duration = Duration::from_secs(60);

/// Worker 0 takes the lock and waits to be killed; the others wait for the lock, take
/// it, and release it.
fn locker(args: LockerArgs) -> Result<String, ScenarioError> {
    let me = args.index;
    let log = Turnstile::adopt(args.log, me)?;
    let lock = args.lock.open()?;
    if me > 0 {
        log.record(me, "waiting", 0);
    }
    let how = lock.acquire(WAIT)?;
    let label = if how == Acquired::OwnerDied {
        "owner-died"
    } else {
        "acquired"
    };
    log.record(me, label, 0);
    if me == 0 {
        // Hold the lock until killed (bounded, in case nobody does).
        std::thread::sleep(Duration::from_secs(30));
        return Err("the holder was not killed".to_string().into());
    }
    lock.release()?;
    Ok(label.to_string())
}
crate::register_entry!("ipcbench-scenario-locker", locker);
