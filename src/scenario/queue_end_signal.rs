//! `queue-end-signal`: producers put items on a Queue, the parent then puts sentinels,
//! consumers get until they see one. With fewer sentinels than consumers, a consumer
//! waits in `get` forever: caught as Hung, naming it and the system call it waits in.
//! One sentinel per consumer, or a JoinableQueue the parent joins, ends every consumer.
//!
//! Built on the queue family's producer-consumer program (`programs::queue`), over
//! the flavors several consumers can share (pipe, shm).

use super::ScenarioError;
use super::{Case, CaseContext, CaseOutcome, Scenario, Variant, Verdict};
use crate::ipc::queue::{Config, Flavor};
use crate::process::StartMethod;
use crate::programs::queue::{producer_consumer, Outcome, Plan, RunError};
use crate::schedule::Schedule;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use std::time::Duration;

pub(crate) struct QueueEndSignal;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Params {
    pub(crate) flavor: Flavor,
    pub(crate) producers: usize,
    pub(crate) consumers: usize,
    pub(crate) items_per_producer: u32,
    /// Sentinels left out (missing-sentinel only; at least one).
    pub(crate) missing: usize,
}

const VARIANTS: &[Variant] = &[
    Variant::caught_hung(
        "missing-sentinel",
        "fewer sentinels than consumers: a consumer blocks in get() forever",
        &["read", "poll", "futex"],
    ),
    Variant::holds("sentinel-per-consumer", "one sentinel per consumer"),
    Variant::holds("joinable", "JoinableQueue: task_done per item, join"),
];

/// The flavors whose consumers may be several processes: the built-in pipe and shm, and
/// every plug-in flavor that says so.
fn shared_flavors() -> Vec<Flavor> {
    Flavor::all()
        .into_iter()
        .filter(|f| f.multi_consumer())
        .collect()
}

impl Scenario for QueueEndSignal {
    fn name(&self) -> &'static str {
        "queue-end-signal"
    }
    fn about(&self) -> &'static str {
        "consumers stop on sentinels from a shared Queue"
    }
    fn variants(&self) -> &'static [Variant] {
        VARIANTS
    }
    /// Each phase (producers, consumers) gets half: a missing sentinel is reported
    /// within about a second of the consumers' start.
    fn deadline(&self) -> Duration {
        Duration::from_millis(1500)
    }

    fn cases(&self, _variant: &str) -> BoxedStrategy<Case> {
        (
            // Every flavor several consumers can share, plug-ins included.
            proptest::sample::select(shared_flavors()),
            1usize..=2,
            1usize..=3,
            0u32..=4,
            1usize..=3,
        )
            .prop_map(
                |(flavor, producers, consumers, items_per_producer, missing)| {
                    Case::new(
                        &Params {
                            flavor,
                            producers,
                            consumers,
                            items_per_producer,
                            missing: missing.min(consumers),
                        },
                        Schedule::default(),
                    )
                },
            )
            .boxed()
    }

    fn run(
        &self,
        variant: &str,
        case: &Case,
        context: &CaseContext,
    ) -> Result<CaseOutcome, ScenarioError> {
        let params: Params = case.params()?;
        let mut plan = Plan::new(
            params.producers,
            params.consumers,
            params.items_per_producer,
        );
        plan.method = StartMethod::Fork;
        plan.deadline = context.deadline / 2;
        match variant {
            "missing-sentinel" => {
                plan.sentinels = params.consumers - params.missing.clamp(1, params.consumers)
            }
            "sentinel-per-consumer" => plan.sentinels = params.consumers,
            "joinable" => plan.joinable = true,
            other => return Err(format!("queue-end-signal has no variant {other:?}").into()),
        }
        let outcome = match producer_consumer(params.flavor, &Config::default(), &plan) {
            Ok(outcome) => outcome,
            Err(RunError::Hung(report)) => {
                return Ok(CaseOutcome::new(
                    Verdict::Hung {
                        blocked: report.blocked,
                    },
                    Vec::new(),
                ))
            }
            Err(e) => return Err(e.into()),
        };
        Ok(CaseOutcome::new(verdict(&plan, &outcome), Vec::new()))
    }
}

/// The oracle of a run that ended (a hang is caught before): a joinable run must have
/// joined, and every run, joinable or not, must have delivered every item exactly once.
pub fn verdict(plan: &Plan, outcome: &Outcome) -> Verdict {
    if plan.joinable && outcome.joined != Some(true) {
        Verdict::violated("join returns once every item is done", "join timed out")
    } else if let Some(found) =
        outcome.exactly_once_mismatch(plan.producers, plan.items_per_producer)
    {
        Verdict::violated("every item is received exactly once", found)
    } else {
        Verdict::Holds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joinable() -> Plan {
        let mut plan = Plan::new(1, 2, 3);
        plan.joinable = true;
        plan
    }

    fn joined(received: Vec<Vec<(u32, u32)>>) -> Outcome {
        Outcome {
            received,
            joined: Some(true),
        }
    }

    #[test]
    fn a_joined_run_holds_only_when_every_item_came_once() {
        let plan = joinable();
        assert_eq!(
            verdict(&plan, &joined(vec![vec![(0, 0), (0, 2)], vec![(0, 1)]])),
            Verdict::Holds
        );
        for received in [
            vec![vec![(0, 0)], vec![(0, 1)]],                 // lost (0, 2)
            vec![vec![(0, 0), (0, 1)], vec![(0, 1), (0, 2)]], // (0, 1) twice
            vec![Vec::new(), Vec::new()],                     // consumers reported nothing
        ] {
            let found = verdict(&plan, &joined(received.clone()));
            assert!(
                matches!(&found, Verdict::Violated { invariant, .. } if invariant.contains("exactly once")),
                "{received:?}: {found:?}"
            );
        }
        let timed_out = Outcome {
            received: vec![Vec::new(); 2],
            joined: Some(false),
        };
        assert!(matches!(
            verdict(&plan, &timed_out),
            Verdict::Violated { invariant, .. } if invariant.contains("join")
        ));
    }
}
