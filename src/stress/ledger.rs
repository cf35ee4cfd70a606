//! Exactly-once accounting.
//!
//! Each producer publishes, in shared memory that outlives it ([`super::board`]), how many
//! messages it *attempted* (bumped before a send starts) and how many it *committed*
//! (bumped after the send returned). When the producer has ended — killed or finished —
//! and everything it wrote has been drained, its messages settle as follows:
//!
//! * `seq < committed`: the mechanism accepted it, so it must have been delivered exactly
//!   once; missing is a **loss** (the target is 0), twice a **duplicate**.
//! * `seq == committed < attempted`, producer killed: the send was cut by the kill. It may
//!   have been delivered whole, or not at all — then it is **accounted in flight** with the
//!   killed process. A torn remainder must be rejected by the mechanism, never delivered.
//! * `seq >= attempted`: never sent; delivering it is **corrupt**, as is any payload that
//!   fails [`super::message::decode`] or names a producer that never ran.

use super::message::{self, Stamp};
use std::collections::BTreeMap;

/// How many examples of each kind of failure are kept for the report.
const SAMPLES: usize = 8;

#[derive(Debug, Default)]
struct Producer {
    /// seen[seq]: delivered (or excused) at least once.
    seen: Vec<bool>,
    /// (attempted, committed, killed) once the producer has ended.
    ended: Option<(u64, u64, bool)>,
}

/// The accountant's books for one run.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    producers: BTreeMap<u32, Producer>,
    pub(crate) delivered: u64,
    pub(crate) duplicates: u64,
    pub(crate) corrupt: u64,
    /// Torn frames the mechanism refused (from killed writers): correct behaviour, counted.
    pub(crate) torn_rejected: u64,
    pub(crate) losses: u64,
    pub(crate) accounted_in_flight: u64,
    /// A few examples of each failure, for the report.
    pub(crate) samples: Vec<String>,
}

impl Ledger {
    /// Declares a producer before it starts (a message from an undeclared one is corrupt).
    pub(crate) fn open(&mut self, producer: u32) {
        self.producers.entry(producer).or_default();
    }

    /// Undeclares a producer that turned out not to run (nothing was delivered from it).
    pub(crate) fn forget(&mut self, producer: u32) {
        self.producers.remove(&producer);
    }

    /// Records one delivered payload.
    pub(crate) fn deliver(&mut self, payload: &[u8]) {
        match message::decode(payload) {
            Ok(stamp) => self.deliver_stamp(stamp),
            Err(e) => {
                self.corrupt += 1;
                self.sample(format!("corrupt delivery ({} bytes): {e}", payload.len()));
            }
        }
    }

    fn deliver_stamp(&mut self, Stamp { producer, seq }: Stamp) {
        let Some(record) = self.producers.get_mut(&producer) else {
            self.corrupt += 1;
            self.sample(format!(
                "delivery from producer {producer}, which never ran"
            ));
            return;
        };
        let index = seq as usize;
        if record.seen.len() <= index {
            if index > (1 << 32) {
                self.corrupt += 1;
                self.sample(format!("producer {producer} seq {seq} is out of range"));
                return;
            }
            record.seen.resize(index + 1, false);
        }
        if record.seen[index] {
            self.duplicates += 1;
            self.sample(format!("duplicate: producer {producer} seq {seq}"));
        } else {
            record.seen[index] = true;
            self.delivered += 1;
        }
    }

    /// The mechanism reported message `seq` of `producer` lost with a killed process: it
    /// counts as accounted in flight, and delivering it as well (or excusing it twice)
    /// is a duplicate.
    pub(crate) fn excuse(&mut self, producer: u32, seq: u64) {
        let before = self.delivered;
        self.deliver_stamp(Stamp { producer, seq });
        if self.delivered > before {
            self.delivered -= 1;
            self.accounted_in_flight += 1;
        }
    }

    /// A torn frame was refused by the mechanism.
    pub(crate) fn torn(&mut self) {
        self.torn_rejected += 1;
    }

    /// Records how a producer ended (its board counters, read after it was reaped).
    pub(crate) fn end(&mut self, producer: u32, attempted: u64, committed: u64, killed: bool) {
        self.producers.entry(producer).or_default().ended = Some((attempted, committed, killed));
    }

    /// (operations committed by every ended producer, producers killed between starting
    /// an operation and committing it).
    pub(crate) fn totals(&self) -> (u64, u64) {
        self.producers.values().filter_map(|p| p.ended).fold(
            (0, 0),
            |(c, k), (attempted, committed, killed)| {
                (
                    c + committed,
                    k + u64::from(killed && attempted > committed),
                )
            },
        )
    }

    /// Settles every ended producer (call once everything has been drained). A producer
    /// that never ended is a failure of the run itself and is reported as a loss of all
    /// it delivered plus one.
    pub(crate) fn settle(&mut self) {
        let mut findings = Vec::new();
        for (&producer, record) in &self.producers {
            let Some((attempted, committed, killed)) = record.ended else {
                findings.push((1, 0, 0, format!("producer {producer} never ended")));
                continue;
            };
            let seen = |seq: u64| record.seen.get(seq as usize).copied().unwrap_or(false);
            let mut losses = 0;
            let mut in_flight = 0;
            for seq in 0..committed {
                if !seen(seq) {
                    if losses < 3 {
                        findings.push((
                            0,
                            0,
                            0,
                            format!("lost: producer {producer} seq {seq} (committed {committed})"),
                        ));
                    }
                    losses += 1;
                }
            }
            if attempted > committed && !seen(committed) {
                if killed {
                    in_flight += 1;
                } else {
                    losses += 1;
                    findings.push((
                        0,
                        0,
                        0,
                        format!("lost: producer {producer} seq {committed}, attempted but never committed by a live producer"),
                    ));
                }
            }
            let phantom = (attempted..record.seen.len() as u64)
                .filter(|&s| seen(s))
                .count() as u64;
            if phantom > 0 {
                findings.push((
                    0,
                    0,
                    0,
                    format!("corrupt: {phantom} deliveries of producer {producer} beyond its {attempted} attempts"),
                ));
            }
            findings.push((losses, in_flight, phantom, String::new()));
        }
        for (losses, in_flight, phantom, text) in findings {
            self.losses += losses;
            self.accounted_in_flight += in_flight;
            self.corrupt += phantom;
            if !text.is_empty() {
                self.sample(text);
            }
        }
    }

    fn sample(&mut self, text: String) {
        if self.samples.len() < SAMPLES * 4 {
            self.samples.push(text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stress::message::encode;

    #[test]
    fn exact_books_settle_to_zero() {
        let mut l = Ledger::default();
        l.open(1);
        for seq in 0..10 {
            l.deliver(&encode(1, seq, 32));
        }
        l.end(1, 10, 10, false);
        l.settle();
        assert_eq!(
            (l.delivered, l.losses, l.duplicates, l.corrupt),
            (10, 0, 0, 0)
        );
    }

    #[test]
    fn killed_in_flight_is_accounted_and_everything_else_is_caught() {
        let mut l = Ledger::default();
        l.open(1);
        l.open(2);
        for seq in 0..5 {
            l.deliver(&encode(1, seq, 32));
        }
        // Producer 1 was killed in the send of seq 5: accounted in flight.
        l.end(1, 6, 5, true);
        // Producer 2 lost seq 1, duplicated seq 2, delivered an unsent seq 9.
        for seq in [0, 2, 2, 3, 9] {
            l.deliver(&encode(2, seq, 32));
        }
        l.deliver(&encode(7, 0, 32)); // never ran
        let mut torn = encode(2, 4, 32);
        torn.truncate(10);
        l.deliver(&torn);
        l.end(2, 4, 4, false);
        l.settle();
        assert_eq!(l.accounted_in_flight, 1);
        assert_eq!(l.losses, 1, "{:?}", l.samples);
        assert_eq!(l.duplicates, 1);
        assert_eq!(l.corrupt, 3, "{:?}", l.samples); // seq 9, producer 7, torn
    }
}
