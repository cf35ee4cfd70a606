//! `pool-worker-death`: a pool worker is killed in the middle of a task. A pool without
//! death handling (`DeathHandling::IgnoreLikePython`, as Python's `Pool`) replaces the
//! worker but forgets its task, so the caller waits for that result forever: caught as
//! Hung, naming the caller. The supervised pool reports the task as lost
//! (`PoolError::WorkerDied`) and every other task completes.
//!
//! The caller is a process of its own (so the watchdog can say where it waits); the case
//! leader kills the worker that announced the first task, while it runs it.

use super::ScenarioError;
use super::{
    join_workers, results, start_worker, wait_for_events, Case, CaseContext, CaseOutcome, Joined,
    Scenario, Variant, Verdict,
};
use crate::ipc::pool::{DeathHandling, Pool, PoolError, PoolOptions};
use crate::process::StartMethod;
use crate::schedule::{Mode, Schedule, Turnstile, TurnstileHandle};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use std::time::Duration;

pub(crate) struct PoolWorkerDeath;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Params {
    pub(crate) workers: usize,
    pub(crate) tasks: usize,
}

const VARIANTS: &[Variant] = &[
    Variant::caught_hung(
        "naive",
        "a pool without death handling hangs: the caller waits in futex",
        &["futex"],
    ),
    Variant::holds(
        "supervised",
        "the pool replaces the worker and reports the task",
    ),
];

/// How long each task runs: long enough to be killed in the middle of it.
const TASK: Duration = Duration::from_millis(100);
/// The caller's own bound on each result: far beyond the case's deadline.
const WAIT: Duration = Duration::from_secs(60);

impl Scenario for PoolWorkerDeath {
    fn name(&self) -> &'static str {
        "pool-worker-death"
    }
    fn about(&self) -> &'static str {
        "a pool worker is killed in the middle of a task"
    }
    fn variants(&self) -> &'static [Variant] {
        VARIANTS
    }
    fn deadline(&self) -> Duration {
        Duration::from_secs(2)
    }

    fn cases(&self, _variant: &str) -> BoxedStrategy<Case> {
        (1usize..=2, 1usize..=3)
            .prop_map(|(workers, tasks)| Case::new(&Params { workers, tasks }, Schedule::default()))
            .boxed()
    }

    fn run(
        &self,
        variant: &str,
        case: &Case,
        context: &CaseContext,
    ) -> Result<CaseOutcome, ScenarioError> {
        let params: Params = case.params()?;
        let death_handling = match variant {
            "naive" => DeathHandling::IgnoreLikePython,
            "supervised" => DeathHandling::Supervised,
            other => return Err(format!("pool-worker-death has no variant {other:?}").into()),
        };
        let log = Turnstile::create(
            1,
            &Schedule::default(),
            Mode::Free {
                jitter_us: 0,
                seed: 0,
            },
        )?;
        let args = CallerArgs {
            workers: params.workers,
            tasks: params.tasks,
            death_handling,
            log: log.handle(),
        };
        let mut caller = vec![start_worker(
            "ipcbench-scenario-pool-caller",
            "pool caller",
            &args,
            &[log.handle().fd],
        )?];
        let started = wait_for_events(&log, context.deadline, |h| {
            h.iter().any(|e| e.operation == "task-started")
        });
        let victim = log
            .history()
            .iter()
            .find(|e| e.operation == "task-started")
            .map(|e| e.value as i32);
        if let (true, Some(pid)) = (started, victim) {
            // SAFETY: kill(2) on a pool worker of this case (a descendant).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let joined = join_workers(&mut caller, context.deadline, None);
        let history = log.history();
        let report: CallerReport = match joined {
            Joined::Verdict(v) => return Ok(CaseOutcome::new(v, history)),
            Joined::Finished(r) => results(r)?.remove(0),
        };
        let verdict = if report.completed + report.lost != params.tasks || report.lost != 1 {
            Verdict::violated(
                "every task completes or is reported lost with its worker",
                format!(
                    "{} completed, {} reported lost, of {} tasks ({})",
                    report.completed,
                    report.lost,
                    params.tasks,
                    report.errors.join("; ")
                ),
            )
        } else {
            Verdict::Holds
        };
        Ok(CaseOutcome::new(verdict, history))
    }
}

#[derive(Serialize, Deserialize)]
struct CallerArgs {
    workers: usize,
    tasks: usize,
    death_handling: DeathHandling,
    log: TurnstileHandle,
}

#[derive(Serialize, Deserialize)]
struct CallerReport {
    completed: usize,
    lost: usize,
    errors: Vec<String>,
}

/// Starts a pool, submits the tasks, waits for every result.
fn caller(args: CallerArgs) -> Result<CallerReport, ScenarioError> {
    let log_fd = args.log.fd;
    let mut pool = Pool::new(
        PoolOptions::new()
            .size(args.workers)
            .method(StartMethod::Fork)
            .death_handling(args.death_handling)
            .timeout(WAIT)
            .inherit_fd(log_fd)
            .name("pool worker"),
    )?;
    let handles = (0..args.tasks)
        .map(|index| pool.apply_async::<_, usize>("ipcbench-scenario-pool-task", &(index, log_fd)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut report = CallerReport {
        completed: 0,
        lost: 0,
        errors: Vec::new(),
    };
    for handle in handles {
        match handle.get(WAIT) {
            Ok(_) => report.completed += 1,
            Err(e @ PoolError::WorkerDied { .. }) => {
                report.lost += 1;
                report.errors.push(e.to_string());
            }
            Err(e) => report.errors.push(e.to_string()),
        }
    }
    pool.close();
    pool.join(Some(Duration::from_secs(10)))?;
    Ok(report)
}
crate::register_entry!("ipcbench-scenario-pool-caller", caller);

/// Announces itself (pid) on the case's log, then works for a while.
fn task((index, log_fd): (usize, i32)) -> Result<usize, ScenarioError> {
    // SAFETY: dup of the inherited log fd; the copy is owned by the turnstile we adopt,
    // so the worker keeps its own fd for its next task.
    let fd = unsafe { libc::dup(log_fd) };
    if fd < 0 {
        return Err(format!("dup: {}", std::io::Error::last_os_error()).into());
    }
    let log = Turnstile::adopt(TurnstileHandle { fd }, 0)?;
    log.record(0, "task-started", std::process::id() as i64);
    std::thread::sleep(TASK);
    Ok(index)
}
crate::register_entry!("ipcbench-scenario-pool-task", task);
