//! `dgram-chunks`: producer processes share the queue's write end and put recognisable
//! messages, each `put` a forced step; then the case leader reads the queue back. Whole
//! messages stay whole whatever the interleaving (one datagram each). The broken variant
//! is the hurried change that sends a large message as two datagrams and has the reader
//! glue pairs back together: a schedule that runs another producer between the halves
//! makes the reader glue two producers' halves into a message nobody sent.

use crate::DgramQueue;
use ipcbench::conformance::queue::pattern;
use ipcbench::ipc::queue::{Config, PluginQueue, Queue, QueueHandle, Role};
use ipcbench::scenario::{join_workers, results, start_worker, Case, CaseContext, CaseOutcome};
use ipcbench::scenario::{Joined, Scenario, ScenarioError, Variant, Verdict};
use ipcbench::schedule::{Mode, Schedule, Turnstile, TurnstileHandle};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::time::Duration;

/// The scenario (registered below).
pub struct DgramChunks;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    pub producers: usize,
    pub messages_each: u32,
    /// Bytes per message.
    pub len: usize,
}

const VARIANTS: &[Variant] = &[
    Variant::caught_violated(
        "chunked",
        "each message sent as two datagrams: producers' halves interleave",
    ),
    Variant::holds(
        "whole",
        "one datagram per message: whole whatever the interleaving",
    ),
];

/// Datagrams per message in `variant`.
fn chunks(variant: &str) -> usize {
    if variant == "chunked" {
        2
    } else {
        1
    }
}

/// Message `seq` of producer `producer`: bytes no other message has.
pub fn message(producer: usize, seq: u32, len: usize) -> Vec<u8> {
    pattern(producer as u32 * 1000 + seq, len)
}

/// The oracle: the datagrams read back, glued `chunks` at a time, must be every message
/// of every producer exactly once, each whole.
pub fn judge(params: &Params, chunks: usize, datagrams: &[Vec<u8>]) -> Verdict {
    let invariant = "every message arrives whole, exactly once";
    let mut expected: BTreeSet<(usize, u32)> = (0..params.producers)
        .flat_map(|p| (0..params.messages_each).map(move |s| (p, s)))
        .collect();
    for (i, parts) in datagrams.chunks(chunks).enumerate() {
        let glued = parts.concat();
        let Some(&id) = expected
            .iter()
            .find(|&&(p, s)| glued == message(p, s, params.len))
        else {
            let what = format!("message {i} ({} bytes from {} datagrams) is no producer's message, or one already received", glued.len(), parts.len());
            return Verdict::violated(invariant, what);
        };
        expected.remove(&id);
    }
    match expected.first() {
        Some((p, s)) => Verdict::violated(
            invariant,
            format!("producer {p}'s message {s} never arrived"),
        ),
        None => Verdict::Holds,
    }
}

#[derive(Serialize, Deserialize)]
struct ProducerArgs {
    index: usize,
    queue: QueueHandle,
    params: Params,
    chunks: usize,
    turnstile: TurnstileHandle,
}

/// Puts its messages, each datagram one forced step.
fn producer(args: ProducerArgs) -> Result<(), String> {
    let me = args.index;
    let ts = Turnstile::adopt(args.turnstile, me).map_err(|e| e.to_string())?;
    let queue = DgramQueue::open(args.queue).map_err(|e| e.to_string())?;
    for seq in 0..args.params.messages_each {
        let whole = message(me, seq, args.params.len);
        for part in whole.chunks(whole.len().div_ceil(args.chunks)) {
            ts.step(me, "put", || queue.put(part, Some(Duration::from_secs(5))))
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("producer {me}: put: {e}"))?;
        }
    }
    ts.finish(me).map_err(|e| e.to_string())
}
ipcbench::register_entry!("dgram-chunks-producer", producer);

impl Scenario for DgramChunks {
    fn name(&self) -> &'static str {
        "dgram-chunks"
    }
    fn about(&self) -> &'static str {
        "producer processes share a dgram queue; every message must arrive whole"
    }
    fn variants(&self) -> &'static [Variant] {
        VARIANTS
    }
    fn cases(&self, _variant: &str) -> BoxedStrategy<Case> {
        (
            2usize..=3,
            1u32..=2,
            16usize..=4096,
            Schedule::strategy(12, 3),
        )
            .prop_map(|(producers, messages_each, len, schedule)| {
                Case::new(
                    &Params {
                        producers,
                        messages_each,
                        len,
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
        if params.producers == 0 || params.len < 2 {
            return Err(format!("dgram-chunks: bad parameters {params:?}").into());
        }
        let queue = DgramQueue::create(&Config::default())?;
        let handle = queue.handle(Role::Producer)?;
        let turnstile = Turnstile::create(params.producers, &case.schedule, Mode::Forced)?;
        let mut fds = handle.fds();
        fds.push(turnstile.handle().fd);
        let mut children = Vec::new();
        for index in 0..params.producers {
            let (queue, params, turnstile) = (handle.clone(), params.clone(), turnstile.handle());
            let args = ProducerArgs {
                index,
                queue,
                params,
                chunks: chunks(variant),
                turnstile,
            };
            children.push(start_worker(
                "dgram-chunks-producer",
                format!("producer {index}"),
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
        let datagrams: Vec<Vec<u8>> = std::iter::from_fn(|| queue.get_nowait().ok()).collect();
        Ok(CaseOutcome::new(
            judge(&params, chunks(variant), &datagrams),
            history,
        ))
    }
}
ipcbench::register_scenario!(DgramChunks);

#[cfg(test)]
mod tests {
    use super::*;

    const P: Params = Params {
        producers: 2,
        messages_each: 1,
        len: 10,
    };

    fn halves(producer: usize) -> (Vec<u8>, Vec<u8>) {
        let m = message(producer, 0, P.len);
        (m[..5].to_vec(), m[5..].to_vec())
    }

    #[test]
    fn whole_messages_in_any_order_hold() {
        assert_eq!(
            judge(&P, 1, &[message(1, 0, 10), message(0, 0, 10)]),
            Verdict::Holds
        );
        let ((a1, a2), (b1, b2)) = (halves(0), halves(1));
        assert_eq!(judge(&P, 2, &[b1, b2, a1, a2]), Verdict::Holds);
    }

    #[test]
    fn interleaved_halves_a_lost_or_a_repeated_message_are_violated() {
        let ((a1, a2), (b1, b2)) = (halves(0), halves(1));
        let whole = message(0, 0, P.len);
        for (chunks, datagrams) in [
            (2, vec![a1, b1, a2, b2]),
            (1, vec![whole.clone()]),
            (1, vec![whole.clone(), whole]),
        ] {
            let verdict = judge(&P, chunks, &datagrams);
            assert!(
                matches!(verdict, Verdict::Violated { .. }),
                "{} datagrams: {verdict:?}",
                datagrams.len()
            );
        }
    }
}
