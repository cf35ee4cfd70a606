//! Stress target: the Pool. The parent submits tasks without pause (a bounded window of
//! them outstanding); each task returns the stamped message for its number, delivered
//! through the task's callback. The faults hit the pool's own worker processes: the pool
//! must replace a killed worker and report its task as failed (`WorkerDied`) — accounted
//! in flight, once — and every other task must come back exactly once.
//!
//! Every excuse is bounded by an observed cause: tasks excused as `WorkerDied` ≤ worker
//! deaths the pool saw ≤ kills the injector delivered. A pool that reported a live
//! worker's task as dead would otherwise pass with no loss ([`PoolTarget::lying`] is that
//! pool, and the books catch it).

use super::message;
use super::runner::{Event, Flaw, Settlement, Target, Totals, WorkerSpec};
use super::StressError;
use crate::ipc::pool::{Pool, PoolError, PoolOptions};
use crate::process::{Pid, StartMethod};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Tasks outstanding at most: enough to keep every worker busy.
const WINDOW: u64 = 64;
/// Bound on the pool's own waits (a task, join).
const POOL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Serialize, Deserialize)]
struct TaskArgs {
    producer: u32,
    seq: u64,
    max_body: usize,
}

fn stamped_task(args: TaskArgs) -> Result<Vec<u8>, StressError> {
    Ok(message::encode(args.producer, args.seq, args.max_body))
}
crate::register_entry!("stress-pool-task", stamped_task);

#[derive(Default)]
pub(crate) struct PoolTarget {
    pool: Option<Arc<Pool>>,
    stop: Arc<AtomicBool>,
    submitter: Option<JoinHandle<()>>,
    /// Tasks the pool reported as lost with a dead worker.
    excused: Arc<AtomicU64>,
    /// The broken twin: reports 1 task in this many as `WorkerDied` although it came back.
    lie_every: Option<u64>,
}

impl PoolTarget {
    pub(crate) fn new() -> PoolTarget {
        PoolTarget::default()
    }

    /// A **broken twin**: a pool that reports one live worker's task in 64 as lost with a
    /// dead worker, as a supervisor that blamed the wrong worker would.
    pub(crate) fn lying() -> PoolTarget {
        PoolTarget {
            lie_every: Some(64),
            ..PoolTarget::default()
        }
    }
}

fn submit_until_stopped(
    pool: Arc<Pool>,
    spec: WorkerSpec,
    events: SyncSender<Event>,
    stop: Arc<AtomicBool>,
    excused: Arc<AtomicU64>,
    lie_every: Option<u64>,
) {
    let outstanding = Arc::new(AtomicU64::new(0));
    let mut seq = 0u64;
    while !stop.load(Ordering::SeqCst) {
        if outstanding.load(Ordering::SeqCst) >= WINDOW {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        outstanding.fetch_add(1, Ordering::SeqCst);
        let (events_cb, outstanding_cb, excused_cb, producer) = (
            events.clone(),
            outstanding.clone(),
            excused.clone(),
            spec.producer,
        );
        let this = seq;
        let lie = lie_every.is_some_and(|n| seq % n == n - 1);
        let submitted = pool.apply_async_with(
            "stress-pool-task",
            &TaskArgs {
                producer,
                seq,
                max_body: spec.max_body,
            },
            move |result: Result<Vec<u8>, PoolError>| {
                let event = match result {
                    Ok(_) | Err(PoolError::WorkerDied { .. })
                        if lie || matches!(result, Err(PoolError::WorkerDied { .. })) =>
                    {
                        excused_cb.fetch_add(1, Ordering::SeqCst);
                        Event::Excused {
                            producer,
                            seq: this,
                        }
                    }
                    Ok(payload) => Event::Delivered(payload),
                    Err(e) => Event::Failed(format!("pool task {this}: {e}")),
                };
                let _ = events_cb.send(event);
                outstanding_cb.fetch_sub(1, Ordering::SeqCst);
            },
        );
        if let Err(e) = submitted {
            outstanding.fetch_sub(1, Ordering::SeqCst);
            let _ = events.send(Event::Failed(format!("submit of task {seq}: {e}")));
            break;
        }
        seq += 1;
    }
    // Every submitted task's callback runs before the pool's join returns; wait for them
    // here too (bounded), then declare how many were sent.
    let until = Instant::now() + POOL_TIMEOUT;
    while outstanding.load(Ordering::SeqCst) > 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = events.send(Event::Ended {
        producer: spec.producer,
        sent: seq,
    });
}

impl Target for PoolTarget {
    fn name(&self) -> String {
        if self.lie_every.is_some() {
            "pool-lying".into()
        } else {
            "pool".into()
        }
    }
    fn family(&self) -> &'static str {
        "pool"
    }
    /// Tasks excused beyond the worker deaths are counted as losses.
    fn expected_flaw(&self) -> Option<Flaw> {
        self.lie_every.map(|_| Flaw::Losses)
    }
    fn mean_fault_gap(&self) -> u64 {
        400
    }

    fn setup(
        &mut self,
        spec: &WorkerSpec,
        events: &SyncSender<Event>,
    ) -> Result<bool, StressError> {
        let pool = Pool::new(
            PoolOptions::new()
                .name("stress-pool")
                .size(spec.procs)
                .method(StartMethod::Fork)
                .timeout(POOL_TIMEOUT),
        )?;
        let pool = Arc::new(pool);
        self.pool = Some(pool.clone());
        let (spec, events, stop) = (spec.clone(), events.clone(), self.stop.clone());
        let (excused, lie_every) = (self.excused.clone(), self.lie_every);
        self.submitter = Some(
            std::thread::Builder::new()
                .name("stress-pool-submitter".into())
                .spawn(move || {
                    submit_until_stopped(pool, spec, events, stop, excused, lie_every)
                })?,
        );
        Ok(true)
    }

    fn external_victims(&self) -> Vec<Pid> {
        self.pool
            .as_ref()
            .map(|p| p.worker_pids())
            .unwrap_or_default()
    }

    fn start_worker(
        &mut self,
        _: &WorkerSpec,
        _: &SyncSender<Event>,
    ) -> Result<crate::process::Child, StressError> {
        Err(StressError::Failed(
            "the pool starts its own workers".into(),
        ))
    }

    fn close(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(submitter) = self.submitter.take() {
            let _ = submitter.join();
        }
    }

    fn finish(&mut self, totals: &Totals) -> Settlement {
        let mut settlement = Settlement::default();
        if let Some(pool) = self.pool.take() {
            match Arc::try_unwrap(pool) {
                Ok(mut pool) => {
                    pool.close();
                    if let Err(e) = pool.join(Some(POOL_TIMEOUT)) {
                        settlement.failures.push(format!("pool join: {e}"));
                    }
                    let stats = pool.stats();
                    let excused = self.excused.load(Ordering::SeqCst);
                    settlement.notes.push(format!(
                        "pool excused {excused} tasks over {} worker deaths over {} kills",
                        stats.deaths, totals.kills
                    ));
                    if excused > stats.deaths {
                        // The excess had no cause: they are losses, not in-flight work.
                        settlement.losses += excused - stats.deaths;
                        settlement.failures.push(format!(
                            "the pool reported {excused} tasks lost with a dead worker, but saw \
                             only {} worker deaths",
                            stats.deaths
                        ));
                    }
                    if stats.deaths > totals.kills {
                        settlement.failures.push(format!(
                            "the pool saw {} worker deaths, but only {} kills were delivered",
                            stats.deaths, totals.kills
                        ));
                    }
                }
                Err(_) => settlement
                    .failures
                    .push("the pool is still shared at the end of the run".into()),
            }
        }
        settlement
    }
}
