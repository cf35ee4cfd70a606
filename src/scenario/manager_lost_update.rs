//! `manager-lost-update`: clients add one to a counter held by a Manager server. A proxy
//! get followed by a set is two round trips: a client that gets, then another that gets
//! the same value, and both set value + 1 — one update is lost. A lock around get+set,
//! or the server's own atomic increment, keeps every update.

use super::ScenarioError;
use super::{
    describe_history, join_workers, results, start_worker, Case, CaseContext, CaseOutcome, Joined,
    Scenario, Variant, Verdict,
};
use crate::ipc::lock::{LockAddress, LockFlavor};
use crate::ipc::manager::{Manager, ManagerAddress, ManagerClient};
use crate::process::StartMethod;
use crate::schedule::{Event, Mode, Schedule, ScheduleError, Turnstile, TurnstileHandle};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use std::time::Duration;

pub(crate) struct ManagerLostUpdate;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Params {
    pub(crate) clients: usize,
    pub(crate) increments: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Update {
    GetThenSet,
    Locked,
    ServerSide,
}

const VARIANTS: &[Variant] = &[
    Variant::caught_violated(
        "get-then-set",
        "proxy get, then set, without a lock: updates lost",
    ),
    Variant::holds("locked", "a lock (flock) around get+set"),
    Variant::holds("server-update", "the server's atomic increment"),
];

const CALL_TIMEOUT: Duration = Duration::from_secs(10);

impl Scenario for ManagerLostUpdate {
    fn name(&self) -> &'static str {
        "manager-lost-update"
    }
    fn about(&self) -> &'static str {
        "several clients increment one Manager counter"
    }
    fn variants(&self) -> &'static [Variant] {
        VARIANTS
    }

    fn cases(&self, _variant: &str) -> BoxedStrategy<Case> {
        (2usize..=3, 1u32..=2, Schedule::strategy(16, 4))
            .prop_map(|(clients, increments, schedule)| {
                Case::new(
                    &Params {
                        clients,
                        increments,
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
        let update = match variant {
            "get-then-set" => Update::GetThenSet,
            "locked" => Update::Locked,
            "server-update" => Update::ServerSide,
            other => return Err(format!("manager-lost-update has no variant {other:?}").into()),
        };
        let manager = Manager::start(StartMethod::Fork)?;
        manager
            .client()
            .and_then(|c| c.with_timeout(CALL_TIMEOUT).counter("count").set(0))?;
        let lock = match update {
            Update::Locked => Some(LockFlavor::Flock.create()?),
            _ => None,
        };
        let turnstile = Turnstile::create(params.clients, &case.schedule, Mode::Forced)?;
        let mut children = Vec::new();
        for index in 0..params.clients {
            let args = ClientArgs {
                index,
                increments: params.increments,
                update,
                manager: manager.address().clone(),
                lock: lock.as_ref().map(|l| l.address()),
                turnstile: turnstile.handle(),
            };
            children.push(start_worker(
                "ipcbench-scenario-manager-client",
                format!("client {index}"),
                &args,
                &[turnstile.handle().fd],
            )?);
        }
        let joined = join_workers(&mut children, context.deadline, Some(&turnstile));
        let history = turnstile.history();
        match joined {
            Joined::Verdict(v) => return Ok(CaseOutcome::new(v, history)),
            Joined::Finished(r) => results::<()>(r)?,
        };
        let total = manager
            .client()
            .and_then(|c| c.with_timeout(CALL_TIMEOUT).counter("count").get())?;
        manager.shutdown(CALL_TIMEOUT)?;
        let verdict = oracle(&params, total, &history);
        Ok(CaseOutcome::new(verdict, history))
    }
}

/// The oracle: every increment of every client is in the final count. Pure, so it is
/// tested on hand-written histories.
pub(crate) fn oracle(params: &Params, total: i64, history: &[Event]) -> Verdict {
    let expected = params.clients as i64 * params.increments as i64;
    if total == expected {
        return Verdict::Holds;
    }
    Verdict::violated(
        "every increment is kept",
        format!(
            "counter is {total} after {expected} increments; {}",
            describe_history(history, "client", true)
        ),
    )
}

#[derive(Serialize, Deserialize)]
struct ClientArgs {
    index: usize,
    increments: u32,
    update: Update,
    manager: ManagerAddress,
    lock: Option<LockAddress>,
    turnstile: TurnstileHandle,
}

fn client(args: ClientArgs) -> Result<(), ScenarioError> {
    let me = args.index;
    let ts = Turnstile::adopt(args.turnstile, me)?;
    let client = ManagerClient::connect(&args.manager)?.with_timeout(CALL_TIMEOUT);
    let counter = client.counter("count");
    let lock = args.lock.as_ref().map(LockAddress::open).transpose()?;
    let sched = |e: ScheduleError| e.to_string();
    let mut error: Option<String> = None;
    let mut keep = |r: Result<i64, String>| {
        r.unwrap_or_else(|e| {
            error.get_or_insert(e);
            -1
        })
    };
    for _ in 0..args.increments {
        match args.update {
            Update::ServerSide => {
                ts.step_value(me, "increment", || {
                    keep(counter.increment(1).map_err(|e| e.to_string()))
                })
                .map_err(sched)?;
            }
            Update::GetThenSet | Update::Locked => {
                if let Some(lock) = &lock {
                    while !ts
                        .try_step(me, "lock", || {
                            lock.try_acquire().map(|a| a.is_some()).unwrap_or(true)
                        })
                        .map_err(sched)?
                    {}
                }
                let seen = ts
                    .step_value(me, "get", || keep(counter.get().map_err(|e| e.to_string())))
                    .map_err(sched)?;
                ts.step_value(me, "set", || {
                    keep(
                        counter
                            .set(seen + 1)
                            .map(|_| seen + 1)
                            .map_err(|e| e.to_string()),
                    )
                })
                .map_err(sched)?;
                if let Some(lock) = &lock {
                    ts.step(me, "unlock", || lock.release()).map_err(sched)??;
                }
            }
        }
    }
    ts.finish(me).map_err(sched)?;
    match error {
        Some(e) => Err(format!("client {me}: {e}").into()),
        None => Ok(()),
    }
}
crate::register_entry!("ipcbench-scenario-manager-client", client);

#[cfg(test)]
mod tests {
    use super::*;

    /// get, get, set, set: the second set overwrites the first increment.
    #[test]
    fn an_interleaved_get_then_set_loses_an_increment() {
        let params = Params {
            clients: 2,
            increments: 1,
        };
        let history = [
            Event::step(0, "get", 0),
            Event::step(1, "get", 0),
            Event::step(0, "set", 1),
            Event::step(1, "set", 1),
        ];
        let verdict = oracle(&params, 1, &history);
        let text = verdict.evidence().expect("a violation").to_string();
        assert!(text.contains("counter is 1 after 2 increments"), "{text}");
        assert!(text.contains("client 1 get=0"), "{text}");
        assert_eq!(oracle(&params, 2, &history[..2]), Verdict::Holds);
    }
}
