//! `queue-many-consumers`: several consumer processes get from one Queue while producers
//! put more than the pipe holds (3-24 MiB), so every consumer is kept busy reading. A
//! pipe-flavor get reads a frame's header, then its payload, in two system calls; the
//! read-side lock is what keeps another consumer from reading in between. Without it a
//! consumer takes part of another's frame as its header, and the stream is lost to all
//! (a header or checksum error, or consumers left waiting for bytes that went elsewhere
//! while the producers wait for room: Hung). The shm ring needs no lock: each get claims
//! a whole slot.
//!
//! No schedule is forced (the race is inside one get, where the turnstile has no step),
//! so the volume is what makes it likely: on a 2-core machine a case with the smallest
//! parameters catches the unlocked reads about 7 times in 8.
//!
//! Pipe-same-end's twin on the read side: the mistake is sharing an end, the fix a lock.

use super::{Case, CaseContext, CaseOutcome, Scenario, Variant, Verdict};
use crate::ipc::queue::pipe::PipeQueue;
use crate::ipc::queue::workers::{producer_consumer_on, Plan, RunError};
use crate::ipc::queue::{Config, Flavor, Queue};
use crate::process::{ProcessError, StartMethod};
use crate::schedule::Schedule;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use std::time::Duration;

pub struct QueueManyConsumers;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    pub producers: usize,
    pub consumers: usize,
    pub items_per_producer: u32,
    /// Bytes per message (at least 8: producer and sequence numbers); with the items, enough
    /// to fill the pipe several times over.
    pub payload: usize,
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
    /// under 100 ms here, and a caught case is usually a hang, so a short bound keeps the
    /// search quick.
    fn deadline(&self) -> Duration {
        Duration::from_secs(2)
    }

    /// The race is inside one get, out of the turnstile's reach.
    fn reproducible(&self) -> bool {
        false
    }

    fn cases(&self, _variant: &str) -> BoxedStrategy<Case> {
        (1usize..=2, 2usize..=4, 1500u32..=3000, 2048usize..=4096)
            .prop_map(|(producers, consumers, items_per_producer, payload)| {
                Case::new(
                    &Params {
                        producers,
                        consumers,
                        items_per_producer,
                        payload,
                    },
                    Schedule::default(),
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
        let config = Config::default().max_message(params.payload);
        let queue: Box<dyn Queue> = match variant {
            "no-read-lock" => Box::new(PipeQueue::without_read_lock(&config).map_err(str)?),
            "read-lock" => Flavor::Pipe.create(&config).map_err(str)?,
            "shm-ring" => Flavor::Shm.create(&config.maxsize(4)).map_err(str)?,
            other => return Err(format!("queue-many-consumers has no variant {other:?}")),
        };
        let mut plan = Plan::new(
            params.producers,
            params.consumers,
            params.items_per_producer,
        );
        plan.payload = params.payload;
        plan.method = StartMethod::Fork;
        plan.deadline = context.deadline / 2;
        let whole_frames = "every message reaches exactly one consumer, whole";
        let verdict = match producer_consumer_on(queue, &plan) {
            Ok(outcome) => {
                match outcome.exactly_once_mismatch(params.producers, params.items_per_producer) {
                    None => Verdict::Holds,
                    Some(found) => Verdict::violated(whole_frames, found),
                }
            }
            Err(RunError::Hung(report)) => Verdict::Hung {
                blocked: report.blocked,
            },
            // A consumer that read a torn frame says so and stops.
            Err(RunError::Process(ProcessError::Failed { name, message, .. })) => {
                Verdict::violated(whole_frames, format!("{name}: {message}"))
            }
            Err(e) => return Err(e.to_string()),
        };
        Ok(CaseOutcome::new(verdict, Vec::new()))
    }
}

fn str(e: impl std::fmt::Display) -> String {
    e.to_string()
}
