//! `queue-many-consumers`: several consumer processes get from one Queue while producers
//! put more than the pipe holds (3-24 MiB), so every consumer is kept busy reading. A
//! pipe-flavor get reads a frame's header, then its payload, in two system calls; the
//! read-side lock is what keeps another consumer from reading in between. Without it a
//! consumer takes part of another's frame as its header, and the stream is lost to all
//! (a header or checksum error, or consumers left waiting for bytes that went elsewhere
//! while the producers wait for room: Hung). The shm ring needs no lock: each get claims
//! a whole slot.
//!
//! Without schedule points no schedule is forced (the race is inside one get, where the
//! turnstile has no step), so the volume is what makes it likely: on a 2-core machine a
//! case with the smallest parameters catches the unlocked reads about 7 times in 8.
//!
//! With the `schedule-points` feature (every `cargo test` build) the same variants run
//! *deep*: a handful of small items, every put and get a forced step, and the queue's own
//! points (`queue-pipe/get:after-header`, ...) cutting each operation into steps, so a
//! schedule can hand the turn to a second consumer between the first one's header and
//! its payload. The race is then found in a few generated cases, shrinks to the one
//! switch that makes it, and reruns the same way every time.
//!
//! Pipe-same-end's twin on the read side: the mistake is sharing an end, the fix a lock.

use super::ScenarioError;
use super::{
    describe_history, join_workers, results, Case, CaseContext, CaseOutcome, Joined, Scenario,
    Variant, Verdict,
};
use crate::ipc::queue::pipe::PipeQueue;
use crate::ipc::queue::{self, Config, Flavor, Queue, QueueError, QueueHandle, Role};
use crate::process::{self, Options, ProcessError, StartMethod};
use crate::programs::queue::{producer_consumer_on, Outcome, Plan, RunError};
use crate::schedule::{self, Mode, Schedule, Turnstile, TurnstileHandle, POINTS_ENABLED};
use crate::sys::shm::Shared;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

pub(crate) struct QueueManyConsumers;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Params {
    pub(crate) producers: usize,
    pub(crate) consumers: usize,
    pub(crate) items_per_producer: u32,
    /// Bytes per message (at least 8: producer and sequence numbers); with the items, enough
    /// to fill the pipe several times over.
    pub(crate) payload: usize,
}

const VARIANTS: &[Variant] = &[
    Variant::caught_hung_or_violated(
        "no-read-lock",
        "consumers share the pipe's read end with no read-side lock: frames split between them \
         (violated: torn or lost items; or hung: a consumer waits in read for the rest of a split frame)",
        &["read", "poll", "futex"],
    ),
    Variant::holds(
        "read-lock",
        "the pipe-flavor Queue: a consumer reads a whole frame under the read-side lock",
    ),
    Variant::holds(
        "shm-ring",
        "the shm-flavor Queue: each get claims a whole slot",
    ),
];

impl Scenario for QueueManyConsumers {
    fn name(&self) -> &'static str {
        "queue-many-consumers"
    }
    fn about(&self) -> &'static str {
        "several consumers share one Queue loaded past what its pipe holds"
    }
    fn variants(&self) -> &'static [Variant] {
        VARIANTS
    }
    /// Each phase (producers, consumers) gets half: a case moves at most 24 MiB, in well
    /// under 100 ms on a quiet machine, and a caught case is usually a hang, so a short
    /// bound keeps the search quick. Not shorter than 3 s a phase: at load 10 on 2 cores
    /// (a build beside the run) a safe `shm-ring` case once overran 1 s and was called hung.
    fn deadline(&self) -> Duration {
        Duration::from_secs(6)
    }

    /// Without schedule points the race is inside one get, out of the turnstile's reach;
    /// with them every step is forced.
    fn reproducible(&self) -> bool {
        POINTS_ENABLED
    }

    fn cases(&self, _variant: &str) -> BoxedStrategy<Case> {
        if POINTS_ENABLED {
            return deep_cases();
        }
        cases_over(
            (1..=2, 2..=4, 1500..=3000, 2048..=4096),
            Just(Schedule::default()).boxed(),
        )
    }

    fn run(
        &self,
        variant: &str,
        case: &Case,
        context: &CaseContext,
    ) -> Result<CaseOutcome, ScenarioError> {
        let params: Params = case.params()?;
        let mut config = Config::default().max_message(params.payload);
        if POINTS_ENABLED {
            // A consumer left inside a torn frame stops waiting for its rest soon.
            config = config.block_limit(DEEP_BLOCK_LIMIT);
        }
        let queue: Box<dyn Queue> = match variant {
            "no-read-lock" => Box::new(PipeQueue::without_read_lock(&config).map_err(str)?),
            "read-lock" => Flavor::Pipe.create(&config).map_err(str)?,
            "shm-ring" => Flavor::Shm.create(&config.maxsize(4)).map_err(str)?,
            other => return Err(format!("queue-many-consumers has no variant {other:?}").into()),
        };
        if POINTS_ENABLED {
            return run_deep(queue, &params, &case.schedule, context);
        }
        let mut plan = Plan::new(
            params.producers,
            params.consumers,
            params.items_per_producer,
        );
        plan.payload = params.payload;
        plan.method = StartMethod::Fork;
        plan.deadline = context.deadline / 2;
        let verdict = match producer_consumer_on(queue, &plan) {
            Ok(outcome) => {
                match outcome.exactly_once_mismatch(params.producers, params.items_per_producer) {
                    None => Verdict::Holds,
                    Some(found) => Verdict::violated(WHOLE_FRAMES, found),
                }
            }
            Err(RunError::Hung(report)) => Verdict::Hung {
                blocked: report.blocked,
            },
            // A consumer that read a torn frame says so and stops.
            Err(RunError::Process(ProcessError::Failed { name, message, .. })) => {
                Verdict::violated(WHOLE_FRAMES, format!("{name}: {message}"))
            }
            Err(e) => return Err(e.into()),
        };
        Ok(CaseOutcome::new(verdict, Vec::new()))
    }
}

fn str(e: impl std::fmt::Display) -> String {
    e.to_string()
}

const WHOLE_FRAMES: &str = "every message reaches exactly one consumer, whole";

/// The queue's block limit in deep cases: a consumer whose frame was torn by another
/// waits this long for the rest (alone, it waits in the kernel), then reports it.
const DEEP_BLOCK_LIMIT: Duration = Duration::from_millis(300);

/// Deep cases: a few small items and a forced schedule over every worker (producers
/// first, then consumers; choices name a worker modulo their number).
fn deep_cases() -> BoxedStrategy<Case> {
    cases_over((1..=2, 2..=3, 1..=3, 8..=32), Schedule::strategy(24, 5))
}

/// Cases over ranges of (producers, consumers, items per producer, payload bytes).
fn cases_over(
    (producers, consumers, items, payload): (
        RangeInclusive<usize>,
        RangeInclusive<usize>,
        RangeInclusive<u32>,
        RangeInclusive<usize>,
    ),
    schedules: BoxedStrategy<Schedule>,
) -> BoxedStrategy<Case> {
    (producers, consumers, items, payload, schedules)
        .prop_map(
            |(producers, consumers, items_per_producer, payload, schedule)| {
                Case::new(
                    &Params {
                        producers,
                        consumers,
                        items_per_producer,
                        payload,
                    },
                    schedule,
                )
            },
        )
        .boxed()
}

/// What the deep workers share beside the queue: items put so far, and a stop flag a
/// consumer raises when it fails (the others then stop at their next empty get).
type Books = [AtomicI64; 2];
const PUT: usize = 0;
const STOP: usize = 1;

#[derive(Serialize, Deserialize)]
struct DeepArgs {
    worker: usize,
    /// Some(producer number) for a producer; None for a consumer.
    producer: Option<u32>,
    items: u32,
    payload: usize,
    /// Items every producer together puts: consumers stop once all are in and the queue
    /// is empty.
    total: i64,
    queue: QueueHandle,
    turnstile: TurnstileHandle,
    books_fd: i32,
}

fn run_deep(
    queue: Box<dyn Queue>,
    params: &Params,
    schedule: &Schedule,
    context: &CaseContext,
) -> Result<CaseOutcome, ScenarioError> {
    let workers = params.producers + params.consumers;
    let turnstile = Turnstile::create(workers, schedule, Mode::Forced).map_err(str)?;
    let mut books: Shared<Books> = Shared::create("consumers", 0).map_err(str)?;
    books.segment_mut().unlink();
    let total = params.producers as i64 * i64::from(params.items_per_producer);
    let mut children = Vec::new();
    for worker in 0..workers {
        let producer = (worker < params.producers).then_some(worker as u32);
        let (role, name) = match producer {
            Some(p) => (Role::Producer, format!("producer-{p}")),
            None => (
                Role::Consumer,
                format!("consumer-{}", worker - params.producers),
            ),
        };
        let handle = queue.handle(role).map_err(str)?;
        let args = DeepArgs {
            worker,
            producer,
            items: params.items_per_producer,
            payload: params.payload,
            total,
            queue: handle.clone(),
            turnstile: turnstile.handle(),
            books_fd: books.segment().raw_fd(),
        };
        let options = handle
            .inherit(Options::new(name).method(StartMethod::Fork))
            .inherit_fd(turnstile.handle().fd)
            .inherit_fd(books.segment().raw_fd());
        children.push(process::start(DEEP_ENTRY, &args, options).map_err(str)?);
    }
    let joined = join_workers(&mut children, context.deadline, Some(&turnstile));
    let history = turnstile.history();
    let finished = match joined {
        Joined::Verdict(v) => return Ok(CaseOutcome::new(v, history)),
        Joined::Finished(finished) => finished,
    };
    let reports: Vec<DeepReport> = results(finished)?;
    // A consumer that took part of another's frame says so and stops.
    if let Some((worker, failure)) = reports
        .iter()
        .enumerate()
        .find_map(|(w, r)| Some((w, r.failure.as_ref()?)))
    {
        // The steps up to the first failed frame: what follows is the torn readers
        // waiting, in turn, for bytes that went elsewhere.
        let upto = history
            .iter()
            .position(|e| e.operation == "queue-pipe/get:mid-frame")
            .map_or(history.len(), |i| i + 1);
        let steps = describe_history(&history[..upto], "worker", false);
        let evidence = format!("worker {worker}: {failure}; steps: {steps}");
        return Ok(CaseOutcome::new(
            Verdict::violated(WHOLE_FRAMES, evidence),
            history,
        ));
    }
    let outcome = Outcome {
        received: reports
            .into_iter()
            .skip(params.producers)
            .map(|r| r.received)
            .collect(),
        joined: None,
    };
    let verdict = match outcome.exactly_once_mismatch(params.producers, params.items_per_producer) {
        None => Verdict::Holds,
        Some(found) => Verdict::violated(WHOLE_FRAMES, found),
    };
    Ok(CaseOutcome::new(verdict, history))
}

const DEEP_ENTRY: &str = "ipcbench-scenario-many-consumers-worker";

/// What a deep worker did: the items it got, and the queue's error if a call failed (an
/// error of the harness itself is the worker's `Err`).
#[derive(Serialize, Deserialize)]
struct DeepReport {
    received: Vec<(u32, u32)>,
    failure: Option<String>,
}

/// One deep worker: puts its items, or gets until every item is in and the queue is
/// empty, each call a forced step (`try_step`: a full or empty queue is a blocked step).
fn deep_worker(args: DeepArgs) -> Result<DeepReport, ScenarioError> {
    let me = args.worker;
    let adopted = Turnstile::adopt(args.turnstile, me).map_err(str)?;
    let ts = schedule::install(adopted, me);
    // SAFETY: the fd was handed to this child by `inherit_fd`, for it alone to own.
    let books: Shared<Books> =
        unsafe { Shared::from_raw_fd("consumers", args.books_fd) }.map_err(str)?;
    let queue = queue::open(args.queue).map_err(str)?;
    let mut received = Vec::new();
    let mut failure: Option<QueueError> = None;
    if let Some(producer) = args.producer {
        let mut item = vec![0u8; args.payload.max(8)];
        item[..4].copy_from_slice(&producer.to_le_bytes());
        for seq in 0..args.items {
            item[4..8].copy_from_slice(&seq.to_le_bytes());
            while !ts
                .try_step(me, "put", || match queue.put(&item, Some(Duration::ZERO)) {
                    Ok(()) => {
                        books[PUT].fetch_add(1, Ordering::SeqCst);
                        true
                    }
                    Err(QueueError::Full) => false,
                    Err(e) => {
                        failure = Some(e);
                        true
                    }
                })
                .map_err(str)?
            {}
            if failure.is_some() {
                break;
            }
        }
    } else {
        loop {
            let mut got = None;
            let mut drained = false;
            ts.try_step(me, "get", || {
                // Read before the get, inside the step: an empty queue after every put
                // was in means nothing more will come.
                let all_in = books[PUT].load(Ordering::SeqCst) == args.total
                    || books[STOP].load(Ordering::SeqCst) != 0;
                match queue.get(Some(Duration::ZERO)) {
                    Ok(item) => {
                        got = Some(item);
                        true
                    }
                    Err(QueueError::Empty) => {
                        drained = all_in;
                        false
                    }
                    Err(e) => {
                        failure = Some(e);
                        true
                    }
                }
            })
            .map_err(str)?;
            if failure.is_some() {
                books[STOP].store(1, Ordering::SeqCst);
                break;
            }
            match got {
                Some(item) if item.len() >= 8 => {
                    let word =
                        |at: usize| u32::from_le_bytes(item[at..at + 4].try_into().expect("4"));
                    received.push((word(0), word(4)));
                }
                Some(item) => {
                    books[STOP].store(1, Ordering::SeqCst);
                    failure = Some(QueueError::Corrupt(format!(
                        "an item of {} bytes",
                        item.len()
                    )));
                    break;
                }
                None if drained => break,
                None => {}
            }
        }
    }
    ts.finish(me).map_err(str)?;
    let what = if args.producer.is_some() {
        "put"
    } else {
        "get"
    };
    Ok(DeepReport {
        received,
        failure: failure.map(|e| format!("{what}: {e}")),
    })
}
crate::register_entry!(DEEP_ENTRY, deep_worker);
