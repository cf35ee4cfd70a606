//! `semaphore-capacity`: workers enter a section guarded by a semaphore of capacity N;
//! never more than N may be inside at once. The `miscounted` semaphore has an off-by-one
//! (it admits while the count is >= 0, not > 0): the schedule that puts N+1 workers in
//! the section together catches it.
//!
//! The semaphore here is a counter in shared memory taken with compare-and-swap, in the
//! try form a forced schedule needs. The library's Semaphore (`ipc::sync`, branch `sync`)
//! replaces the `bounded` one when it lands.

use super::{
    join_workers, results, start_worker, Case, CaseContext, CaseOutcome, Joined, Scenario, Variant,
    Verdict,
};
use crate::ipc::shm::Shared;
use crate::schedule::{Mode, Schedule, Turnstile, TurnstileHandle};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicI64, Ordering};

pub struct SemaphoreCapacity;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    pub capacity: i64,
    pub workers: usize,
}

const VARIANTS: &[Variant] = &[
    Variant::caught("miscounted", "a semaphore with an off-by-one admits N+1"),
    Variant::holds("bounded", "never more than N inside at once"),
];

/// [0]: the semaphore's count; [1]: how many are inside the section.
type Counters = [AtomicI64; 2];

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
        (1i64..=2, 1usize..=2, Schedule::strategy(16, 4))
            .prop_map(|(capacity, extra, schedule)| {
                Case::new(
                    &Params {
                        capacity,
                        workers: capacity as usize + extra,
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
        let miscounted = match variant {
            "miscounted" => true,
            "bounded" => false,
            other => return Err(format!("semaphore-capacity has no variant {other:?}")),
        };
        let mut counters: Shared<Counters> =
            Shared::create("semaphore", 0).map_err(|e| e.to_string())?;
        counters.segment_mut().unlink();
        counters[0].store(params.capacity, Ordering::SeqCst);
        let turnstile = Turnstile::create(params.workers, &case.schedule, Mode::Forced)
            .map_err(|e| e.to_string())?;
        let fds = [turnstile.handle().fd, counters.segment().raw_fd()];
        let mut children = Vec::new();
        for index in 0..params.workers {
            let args = WorkerArgs {
                index,
                miscounted,
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
            let who: Vec<String> = history
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
    miscounted: bool,
    counters_fd: i32,
    turnstile: TurnstileHandle,
}

fn try_acquire(count: &AtomicI64, miscounted: bool) -> bool {
    let mut seen = count.load(Ordering::Acquire);
    loop {
        let admits = if miscounted { seen >= 0 } else { seen > 0 };
        if !admits {
            return false;
        }
        match count.compare_exchange(seen, seen - 1, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return true,
            Err(now) => seen = now,
        }
    }
}

fn worker(args: WorkerArgs) -> Result<(), String> {
    let me = args.index;
    let ts = Turnstile::adopt(args.turnstile, me).map_err(|e| e.to_string())?;
    // SAFETY: the fd was handed to this child by `inherit_fd`, for it alone to own.
    let counters: Shared<Counters> =
        unsafe { Shared::from_raw_fd("semaphore", args.counters_fd) }.map_err(|e| e.to_string())?;
    let sched = |e: crate::schedule::ScheduleError| e.to_string();
    while !ts
        .try_step(me, "acquire", || try_acquire(&counters[0], args.miscounted))
        .map_err(sched)?
    {}
    ts.step_value(me, "enter", || {
        counters[1].fetch_add(1, Ordering::AcqRel) + 1
    })
    .map_err(sched)?;
    ts.step_value(me, "leave", || {
        counters[1].fetch_sub(1, Ordering::AcqRel) - 1
    })
    .map_err(sched)?;
    ts.step(me, "release", || counters[0].fetch_add(1, Ordering::AcqRel))
        .map_err(sched)?;
    ts.finish(me).map_err(|e| e.to_string())?;
    Ok(())
}
crate::register_entry!("ipcbench-scenario-semaphore-worker", worker);
