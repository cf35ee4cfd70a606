//! `semaphore-capacity`: workers pass, one or more rounds each, through a section
//! guarded by `ipc::sync::Semaphore` of capacity N; never more than N may be inside at
//! once. The `miscounted` semaphore (the library's test subject) gives two permits back
//! for one: the schedule that lets a worker release, then N+1 others in, catches it.
//! Workers take permits with `try_acquire` (a blocked step when none is left), the form
//! a forced schedule needs.

use super::{
    join_workers, results, start_worker, Case, CaseContext, CaseOutcome, Joined, Regression,
    Scenario, Variant, Verdict,
};
use crate::ipc::shm::Shared;
use crate::ipc::sync::semaphore::Semaphore;
use crate::schedule::{Mode, Schedule, Turnstile, TurnstileHandle};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicI64, Ordering};

pub struct SemaphoreCapacity;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    pub capacity: i64,
    pub workers: usize,
    /// Times each worker passes through the section.
    pub rounds: u32,
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
    ) -> Result<CaseOutcome, String> {
        let params: Params = case.params()?;
        let miscounted = super::is_unsafe_variant(self, variant)?;
        let permits = u32::try_from(params.capacity).map_err(|e| e.to_string())?;
        let semaphore = if miscounted {
            Semaphore::miscounted(permits)
        } else {
            Semaphore::create(permits)
        }
        .map_err(|e| e.to_string())?;
        let mut counters: Shared<Counters> =
            Shared::create("inside", 0).map_err(|e| e.to_string())?;
        counters.segment_mut().unlink();
        let turnstile = Turnstile::create(params.workers, &case.schedule, Mode::Forced)
            .map_err(|e| e.to_string())?;
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
        let most = history
            .iter()
            .filter(|e| e.operation == "enter")
            .map(|e| e.value)
            .max()
            .unwrap_or(0);
        let verdict = if most > params.capacity {
            // The events up to the moment one too many was inside.
            let upto = history
                .iter()
                .position(|e| e.operation == "enter" && e.value > params.capacity)
                .map_or(history.len(), |i| i + 1);
            let who: Vec<String> = history[..upto]
                .iter()
                .map(|e| format!("worker {} {}", e.worker, e.operation))
                .collect();
            Verdict::violated(
                "at most N inside at once",
                format!(
                    "{most} inside a section of capacity {}: {}",
                    params.capacity,
                    who.join(", ")
                ),
            )
        } else {
            Verdict::Holds
        };
        Ok(CaseOutcome::new(verdict, history))
    }
}

#[derive(Serialize, Deserialize)]
struct WorkerArgs {
    index: usize,
    rounds: u32,
    semaphore: String,
    counters_fd: i32,
    turnstile: TurnstileHandle,
}

fn worker(args: WorkerArgs) -> Result<(), String> {
    let me = args.index;
    let ts = Turnstile::adopt(args.turnstile, me).map_err(|e| e.to_string())?;
    // SAFETY: the fd was handed to this child by `inherit_fd`, for it alone to own.
    let counters: Shared<Counters> =
        unsafe { Shared::from_raw_fd("semaphore", args.counters_fd) }.map_err(|e| e.to_string())?;
    let semaphore = Semaphore::open(&args.semaphore).map_err(|e| e.to_string())?;
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
            .map_err(sched)?
            .map_err(|e| e.to_string())?;
    }
    ts.finish(me).map_err(|e| e.to_string())?;
    Ok(())
}
crate::register_entry!("ipcbench-scenario-semaphore-worker", worker);
