//! `semaphore-capacity`: workers pass, one or more rounds each, through a section
//! guarded by `ipc::sync::Semaphore` of capacity N; never more than N may be inside at
//! once. The `miscounted` semaphore (the library's test subject) gives two permits back
//! for one: the schedule that lets a worker release, then N+1 others in, catches it.
//! Workers take permits with `try_acquire` (a blocked step when none is left), the form
//! a forced schedule needs.

use super::ScenarioError;
use super::{
    join_workers, results, start_worker, Case, CaseContext, CaseOutcome, Joined, Regression,
    Scenario, Variant, Verdict,
};
use crate::ipc::sync::semaphore::Semaphore;
use crate::schedule::{Event, Mode, Schedule, Turnstile, TurnstileHandle};
use crate::sys::shm::Shared;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicI64, Ordering};

pub(crate) struct SemaphoreCapacity;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Params {
    pub(crate) capacity: i64,
    pub(crate) workers: usize,
    /// Times each worker passes through the section.
    pub(crate) rounds: u32,
}

const VARIANTS: &[Variant] = &[
    Variant::caught_violated(
        "miscounted",
        "a semaphore whose release over-counts admits more than N",
    ),
    Variant::holds("bounded", "never more than N inside at once"),
];

/// Worker 0 acquires, enters, leaves, releases; worker 1 acquires and enters; worker 0
/// acquires and enters again (the forced schedule of the deterministic test). Kept as a
/// named regression case, run first on both variants; the generator does not use it.
const OVER_ADMITTING_PREFIX: [u8; 8] = [0, 0, 0, 0, 1, 1, 0, 0];

/// How many are inside the section (the oracle's own count, beside the semaphore).
type Counters = [AtomicI64; 1];

impl Scenario for SemaphoreCapacity {
    fn name(&self) -> &'static str {
        "semaphore-capacity"
    }
    fn about(&self) -> &'static str {
        "workers pass through a section guarded by a counting semaphore"
    }
    fn variants(&self) -> &'static [Variant] {
        VARIANTS
    }

    fn cases(&self, _variant: &str) -> BoxedStrategy<Case> {
        // Two rounds are what the over-counting release needs (a worker must give its
        // permits back before the excess shows), so they are generated more often.
        let rounds = prop_oneof![1 => Just(1u32), 3 => Just(2u32)];
        let schedules = Schedule::strategy(24, 4);
        (1i64..=2, 0usize..=2, rounds, schedules)
            .prop_map(|(capacity, extra, rounds, schedule)| {
                Case::new(
                    &Params {
                        capacity,
                        workers: capacity as usize + extra.max(1),
                        rounds,
                    },
                    schedule,
                )
            })
            .boxed()
    }

    fn regressions(&self) -> Vec<Regression> {
        vec![Regression {
            name: "over-admitting-prefix",
            case: Case::new(
                &Params {
                    capacity: 1,
                    workers: 2,
                    rounds: 2,
                },
                Schedule::new(OVER_ADMITTING_PREFIX.to_vec()),
            ),
        }]
    }

    fn run(
        &self,
        variant: &str,
        case: &Case,
        context: &CaseContext,
    ) -> Result<CaseOutcome, ScenarioError> {
        let params: Params = case.params()?;
        let miscounted = super::is_unsafe_variant(self, variant)?;
        let permits = u32::try_from(params.capacity)
            .map_err(|_| format!("capacity {} is past u32", params.capacity))?;
        let semaphore = if miscounted {
            Semaphore::miscounted(permits)
        } else {
            Semaphore::create(permits)
        }?;
        let mut counters: Shared<Counters> = Shared::create("inside", 0)?;
        counters.segment_mut().unlink();
        let turnstile = Turnstile::create(params.workers, &case.schedule, Mode::Forced)?;
        let fds = [turnstile.handle().fd, counters.segment().raw_fd()];
        let mut children = Vec::new();
        for index in 0..params.workers {
            let args = WorkerArgs {
                index,
                rounds: params.rounds,
                semaphore: semaphore.name().to_string(),
                counters_fd: fds[1],
                turnstile: turnstile.handle(),
            };
            children.push(start_worker(
                "ipcbench-scenario-semaphore-worker",
                format!("worker {index}"),
                &args,
                &fds,
            )?);
        }
        let joined = join_workers(&mut children, context.deadline, Some(&turnstile));
        let history = turnstile.history();
        match joined {
            Joined::Verdict(v) => return Ok(CaseOutcome::new(v, history)),
            Joined::Finished(r) => results::<()>(r)?,
        };
        let verdict = oracle(params.capacity, &history);
        Ok(CaseOutcome::new(verdict, history))
    }
}

/// The oracle: never more than `capacity` workers inside at once, as the workers' own
/// "enter" events count them (each records how many were inside once it was). A pure
/// function of the history, so it is tested on hand-written histories.
pub(crate) fn oracle(capacity: i64, history: &[Event]) -> Verdict {
    let Some(upto) = history
        .iter()
        .position(|e| e.operation == "enter" && e.value > capacity)
    else {
        return Verdict::Holds;
    };
    let most = history
        .iter()
        .filter(|e| e.operation == "enter")
        .map(|e| e.value)
        .max()
        .unwrap_or(0);
    // The events up to the moment one too many was inside.
    let who: Vec<String> = history[..=upto]
        .iter()
        .map(|e| format!("worker {} {}", e.worker, e.operation))
        .collect();
    Verdict::violated(
        "at most N inside at once",
        format!(
            "{most} inside a section of capacity {capacity}: {}",
            who.join(", ")
        ),
    )
}

#[derive(Serialize, Deserialize)]
struct WorkerArgs {
    index: usize,
    rounds: u32,
    semaphore: String,
    counters_fd: i32,
    turnstile: TurnstileHandle,
}

fn worker(args: WorkerArgs) -> Result<(), ScenarioError> {
    let me = args.index;
    let ts = Turnstile::adopt(args.turnstile, me)?;
    // SAFETY: the fd was handed to this child by `inherit_fd`, for it alone to own.
    let counters: Shared<Counters> = unsafe { Shared::from_raw_fd("semaphore", args.counters_fd) }?;
    let semaphore = Semaphore::open(&args.semaphore)?;
    let sched = |e: crate::schedule::ScheduleError| e.to_string();
    for _ in 0..args.rounds {
        while !ts
            .try_step(me, "acquire", || semaphore.try_acquire())
            .map_err(sched)?
        {}
        ts.step_value(me, "enter", || {
            counters[0].fetch_add(1, Ordering::AcqRel) + 1
        })
        .map_err(sched)?;
        ts.step_value(me, "leave", || {
            counters[0].fetch_sub(1, Ordering::AcqRel) - 1
        })
        .map_err(sched)?;
        ts.step(me, "release", || semaphore.release())
            .map_err(sched)??;
    }
    ts.finish(me)?;
    Ok(())
}
crate::register_entry!("ipcbench-scenario-semaphore-worker", worker);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_inside_a_section_of_one_is_caught_at_the_second_enter() {
        let history = [
            Event::step(0, "acquire", 0),
            Event::step(0, "enter", 1),
            Event::step(1, "acquire", 0),
            Event::step(1, "enter", 2),
            Event::step(0, "leave", 1),
        ];
        let verdict = oracle(1, &history);
        assert_eq!(verdict.kind(), Some(crate::scenario::VerdictKind::Violated));
        let text = verdict.evidence().expect("a violation").to_string();
        assert!(text.contains("2 inside a section of capacity 1"), "{text}");
        // The evidence stops at the enter that broke it.
        assert!(text.ends_with("worker 1 enter"), "{text}");
    }

    #[test]
    fn taking_turns_holds() {
        let history = [
            Event::step(0, "enter", 1),
            Event::step(0, "leave", 1),
            Event::step(1, "enter", 1),
            Event::step(1, "leave", 1),
        ];
        assert_eq!(oracle(1, &history), Verdict::Holds);
        assert_eq!(oracle(2, &[Event::step(0, "enter", 2)]), Verdict::Holds);
        assert_eq!(oracle(1, &[]), Verdict::Holds);
    }
}
