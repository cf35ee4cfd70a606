//! The classic producer-consumer program over a queue, in real processes: N producers
//! put numbered items, the parent then puts a configurable number of sentinels, M
//! consumers get until they see one. With one sentinel per consumer every consumer ends;
//! with fewer, a consumer blocks in `get` and the watchdog reports it as hung (the
//! `queue-end-signal/missing-sentinel` scenario is built on this). With `joinable`, the
//! parent instead waits in `JoinableQueue::join` for every item to be marked done, then
//! stops the consumers (as Python programs with daemon consumers do).

use crate::ipc::queue::joinable::{JoinableHandle, JoinableQueue};
use crate::ipc::queue::{Config, Flavor, Queue, QueueError, Role};
use crate::process::watchdog::{self, HangReport};
use crate::process::{self, Child, Options, ProcessError, StartMethod};
use crate::register_entry;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::time::Duration;

/// The end-of-work message. Items are never empty (they carry producer and sequence).
pub(crate) const SENTINEL: &[u8] = &[];

/// Entry point names, for scenarios that start the workers themselves.
pub(crate) const PRODUCER_ENTRY: &str = "queue-pc-producer";
/// The entry point every consumer runs unless the plan names another (see
/// [`Plan::consumer_entry`]).
pub const CONSUMER_ENTRY: &str = "queue-pc-consumer";

/// One producer-consumer run: how many processes of each side, how much each producer
/// puts, and how the parent tells the consumers that the work is done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub(crate) producers: usize,
    pub(crate) consumers: usize,
    pub(crate) items_per_producer: u32,
    /// Bytes per item, at least 8 (producer and sequence numbers, then filler).
    pub(crate) payload: usize,
    /// Sentinels the parent puts once every producer is done (one per consumer is right).
    pub sentinels: usize,
    /// Use `JoinableQueue::join` to learn that the work is done, instead of the sentinels.
    pub joinable: bool,
    /// How the producers and consumers are started (spawn or fork).
    pub method: StartMethod,
    /// Bound on each phase (producers, then consumers); past it, a `Hung` report.
    pub(crate) deadline: Duration,
    /// The entry point every consumer runs: [`CONSUMER_ENTRY`], or (a test hook) an
    /// entry of the same arguments and result that wraps [`consumer`] with a defect, so
    /// that a test can prove a consumer's error or a lost item reaches the verdict.
    #[serde(default = "default_consumer_entry")]
    pub consumer_entry: String,
}

fn default_consumer_entry() -> String {
    CONSUMER_ENTRY.to_string()
}

impl Plan {
    /// One sentinel per consumer, spawn, 20 s per phase.
    pub fn new(producers: usize, consumers: usize, items_per_producer: u32) -> Plan {
        Plan {
            producers,
            consumers,
            items_per_producer,
            payload: 8,
            sentinels: consumers,
            joinable: false,
            method: StartMethod::Spawn,
            deadline: Duration::from_secs(20),
            consumer_entry: default_consumer_entry(),
        }
    }
}

/// What the run produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// Per consumer, the (producer, sequence) items it received, in the order received.
    /// Empty for consumers that were stopped after `join` (they report nothing).
    pub(crate) received: Vec<Vec<(u32, u32)>>,
    /// `Some(true)` when `join` returned (joinable plans), `Some(false)` when it timed out.
    pub joined: Option<bool>,
}

impl Outcome {
    /// None when every item of `producers` × `items_per_producer` was received exactly
    /// once; otherwise what was received instead.
    pub(crate) fn exactly_once_mismatch(
        &self,
        producers: usize,
        items_per_producer: u32,
    ) -> Option<String> {
        let expected: BTreeSet<(u32, u32)> = (0..producers as u32)
            .flat_map(|p| (0..items_per_producer).map(move |s| (p, s)))
            .collect();
        let received: Vec<(u32, u32)> = self.received.iter().flatten().copied().collect();
        let unique: BTreeSet<(u32, u32)> = received.iter().copied().collect();
        (unique != expected || received.len() != expected.len()).then(|| {
            format!(
                "{} received ({} distinct) of {}",
                received.len(),
                unique.len(),
                expected.len()
            )
        })
    }
}

/// Why a producer-consumer run gave no counts.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A phase outlived its deadline: who was still blocked, and on what.
    #[error("processes still blocked: {0}")]
    Hung(HangReport),
    /// The plan has several consumers on a flavor whose receiving end cannot be shared.
    #[error("the {flavor} queue flavor has a single consumer; this plan has {consumers}")]
    Unsupported {
        /// The queue flavor's name.
        flavor: &'static str,
        /// Consumers the plan asked for.
        consumers: usize,
    },
    /// The plan cannot run (no producer or no consumer).
    #[error("bad plan: {0}")]
    BadPlan(String),
    /// The queue failed in the parent (create, the sentinels, the joinable wait).
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// A worker could not be started, or failed (its error or the signal that killed it).
    #[error(transparent)]
    Process(#[from] ProcessError),
}

#[derive(Serialize, Deserialize)]
struct ProducerArgs {
    queue: JoinableHandle,
    producer: u32,
    items: u32,
    payload: usize,
}

fn producer(args: ProducerArgs) -> Result<u32, QueueError> {
    let queue = JoinableQueue::open(args.queue)?;
    let mut item = vec![0u8; args.payload.max(8)];
    for seq in 0..args.items {
        item[..4].copy_from_slice(&args.producer.to_le_bytes());
        item[4..8].copy_from_slice(&seq.to_le_bytes());
        queue.put(&item, None)?;
    }
    Ok(args.items)
}
register_entry!(PRODUCER_ENTRY, producer);

/// The consumer's body ([`CONSUMER_ENTRY`]): gets until a sentinel, marking each item
/// done; returns what it received.
pub fn consumer(queue: JoinableHandle) -> Result<Vec<(u32, u32)>, QueueError> {
    let queue = JoinableQueue::open(queue)?;
    let mut received = Vec::new();
    loop {
        let item = queue.get(None)?;
        queue.task_done()?;
        if item.as_slice() == SENTINEL {
            return Ok(received);
        }
        if item.len() < 8 {
            return Err(QueueError::Corrupt(format!(
                "item of {} bytes (expected at least 8)",
                item.len()
            )));
        }
        let word = |at: usize| u32::from_le_bytes(item[at..at + 4].try_into().expect("4 bytes"));
        received.push((word(0), word(4)));
    }
}
register_entry!(CONSUMER_ENTRY, consumer);

/// Runs `plan` over a new queue of `flavor`. A consumer still blocked at the deadline
/// makes the result `Err(RunError::Hung)` naming it and the system call it waits in.
pub fn producer_consumer(
    flavor: Flavor,
    config: &Config,
    plan: &Plan,
) -> Result<Outcome, RunError> {
    producer_consumer_on(flavor.create(config)?, plan)
}

/// [`producer_consumer`] over a queue the caller made (a test subject, say).
pub(crate) fn producer_consumer_on(
    queue: Box<dyn Queue>,
    plan: &Plan,
) -> Result<Outcome, RunError> {
    if plan.consumers > 1 && !queue.flavor().multi_consumer() {
        return Err(RunError::Unsupported {
            flavor: queue.flavor().name(),
            consumers: plan.consumers,
        });
    }
    if plan.consumers == 0 || plan.producers == 0 {
        return Err(RunError::BadPlan(
            "at least one producer and one consumer".into(),
        ));
    }
    let queue = JoinableQueue::new(queue)?;
    let start = |entry: &str,
                 name: String,
                 role: Role,
                 args: &dyn Fn(JoinableHandle) -> serde_json::Value|
     -> Result<Child, RunError> {
        let handle = queue.handle(role)?;
        let options = handle.inherit(Options::new(name).method(plan.method));
        Ok(process::start(entry, &args(handle), options)?)
    };
    let mut consumers = (0..plan.consumers)
        .map(|i| {
            start(
                &plan.consumer_entry,
                format!("consumer-{i}"),
                Role::Consumer,
                &|h| serde_json::to_value(h).expect("handle encodes"),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut producers = (0..plan.producers)
        .map(|i| {
            start(
                PRODUCER_ENTRY,
                format!("producer-{i}"),
                Role::Producer,
                &|h| {
                    serde_json::to_value(ProducerArgs {
                        queue: h,
                        producer: i as u32,
                        items: plan.items_per_producer,
                        payload: plan.payload,
                    })
                    .expect("args encode")
                },
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    watchdog::join_all(&mut producers, plan.deadline).map_err(RunError::Hung)?;
    for p in &mut producers {
        p.result::<u32>(Some(Duration::ZERO))?;
    }
    for _ in 0..plan.sentinels {
        queue.put(SENTINEL, Some(plan.deadline))?;
    }
    if plan.joinable {
        let joined = queue.join(plan.deadline);
        if !joined {
            // Consumers still waiting for work are stopped; what they took is not asked
            // for (the verdict is the timed-out join).
            for c in &mut consumers {
                c.kill()?;
                c.join(Some(Duration::from_secs(5)))?;
            }
            return Ok(Outcome {
                received: vec![Vec::new(); consumers.len()],
                joined: Some(false),
            });
        }
        // Every item is done: a sentinel for each consumer not yet sent one lets them all
        // report what they took, so exactly-once is checked too, and a consumer's own
        // error is the run's error.
        for _ in plan.sentinels..plan.consumers {
            queue.put(SENTINEL, Some(plan.deadline))?;
        }
        watchdog::join_all(&mut consumers, plan.deadline).map_err(RunError::Hung)?;
        let received = consumers
            .iter_mut()
            .map(|c| c.result(Some(Duration::ZERO)))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Outcome {
            received,
            joined: Some(true),
        });
    }
    watchdog::join_all(&mut consumers, plan.deadline).map_err(RunError::Hung)?;
    let received = consumers
        .iter_mut()
        .map(|c| c.result(Some(Duration::ZERO)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Outcome {
        received,
        joined: None,
    })
}
