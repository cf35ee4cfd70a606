//! The fault injector.
//!
//! Three faults, each applied to a worker process from outside, at any instruction:
//!
//! * **kill** — SIGKILL. The worker dies wherever it is: mid-send, holding a lock, between
//!   two writes of one frame. The run replaces it with a fresh worker (new producer id) in
//!   the same slot, so the load stays the same.
//! * **stop** — SIGSTOP, then SIGCONT after 100–600 ms: a long pause (a debugger, a swapped
//!   or descheduled process) during which the others must keep going or wait, boundedly.
//! * **slow** — a throttle: for 100–400 ms the worker is stopped 5 ms out of every 10 ms.
//!   Chosen over `nice` or an affinity squeeze because an unprivileged process cannot
//!   restore its nice value and because SIGSTOP/SIGCONT slow it at arbitrary points
//!   (inside a critical section, half-way through a frame) on any machine, loaded or not.
//!
//! # Reproducibility
//!
//! The schedule is a pure function of the seed: a stream of [`PlannedFault`]s, each due
//! at a point of *progress* (operations the run has counted, not wall time), naming a
//! worker slot, a fault and its length. Same seed, same faults at the same points of
//! progress, whatever the speed of the machine; `Injector::applied` records what was
//! done, and two runs with one seed agree on it up to where the shorter one ended.

use super::rng::Rng;
use super::StressError;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// A fault the injector applies to a worker process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// SIGKILL: the worker dies wherever it is; the runner starts a replacement.
    Kill,
    /// SIGSTOP, then SIGCONT 100–600 ms later.
    Stop,
    /// A throttle: for 100–400 ms the worker is stopped 5 ms out of every 10 ms.
    Slow,
}

impl FaultKind {
    /// Every kind, the default of `--faults`.
    pub const ALL: [FaultKind; 3] = [FaultKind::Kill, FaultKind::Stop, FaultKind::Slow];

    pub(crate) fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Stop => "stop",
            FaultKind::Slow => "slow",
        }
    }
}

/// Parses `kill,stop,slow` (any subset, any order) or `none`.
pub(crate) fn parse_faults(text: &str) -> Result<Vec<FaultKind>, StressError> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("none") || text.is_empty() {
        return Ok(Vec::new());
    }
    let mut kinds = Vec::new();
    for word in text.split(',') {
        let word = word.trim();
        let kind = FaultKind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(word))
            .ok_or_else(|| {
                StressError::Invalid(format!("unknown fault {word:?} in {text:?}: expected a comma-separated list of kill, stop, slow, or none"))
            })?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    kinds.sort();
    Ok(kinds)
}

/// One fault of the schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedFault {
    /// Due once the run's progress counter reaches this.
    pub at_progress: u64,
    pub(crate) slot: usize,
    pub(crate) kind: FaultKind,
    /// Pause (stop) or throttle span (slow), in milliseconds; 0 for kill.
    pub(crate) millis: u64,
}

/// The seeded stream of faults.
#[derive(Clone, Debug)]
pub(crate) struct Schedule {
    rng: Rng,
    kinds: Vec<FaultKind>,
    slots: usize,
    mean_gap: u64,
    last: u64,
}

impl Schedule {
    /// `mean_gap`: progress units between faults on average (gaps are uniform in
    /// [mean/2, 3·mean/2]).
    pub(crate) fn new(seed: u64, kinds: &[FaultKind], slots: usize, mean_gap: u64) -> Schedule {
        Schedule {
            rng: Rng::new(seed),
            kinds: kinds.to_vec(),
            slots: slots.max(1),
            mean_gap: mean_gap.max(2),
            last: 0,
        }
    }
}

impl Iterator for Schedule {
    type Item = PlannedFault;
    fn next(&mut self) -> Option<PlannedFault> {
        if self.kinds.is_empty() {
            return None;
        }
        let gap = self.rng.range(self.mean_gap / 2, self.mean_gap * 3 / 2);
        self.last += gap.max(1);
        let slot = self.rng.range(0, self.slots as u64 - 1) as usize;
        let kind = self.kinds[self.rng.range(0, self.kinds.len() as u64 - 1) as usize];
        let millis = match kind {
            FaultKind::Kill => 0,
            FaultKind::Stop => self.rng.range(100, 600),
            FaultKind::Slow => self.rng.range(100, 400),
        };
        Some(PlannedFault {
            at_progress: self.last,
            slot,
            kind,
            millis,
        })
    }
}

/// A fault as it was applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedFault {
    /// The fault as the schedule drew it (slot, kind, length, due progress).
    pub planned: PlannedFault,
    /// The producer id of the worker that was in the slot.
    pub(crate) producer: u32,
    /// Progress when it was applied (>= planned.at_progress).
    pub progress: u64,
}

/// Throttle period of a slow fault: stopped for half of it.
const THROTTLE_PERIOD: Duration = Duration::from_millis(10);

#[derive(Clone, Copy, Debug, Default)]
struct SlotState {
    /// A stop fault's SIGCONT time.
    resume_at: Option<Instant>,
    /// A slow fault's end, and whether the worker is in the stopped half of its period.
    throttle_until: Option<Instant>,
    throttled_stopped: bool,
    next_toggle: Option<Instant>,
    /// Whether the last signal sent was SIGSTOP (signals go out on transitions only).
    sent_stop: bool,
}

impl SlotState {
    fn is_stopped(&self) -> bool {
        self.resume_at.is_some() || self.throttled_stopped
    }
}

/// Applies the schedule to the live workers.
pub(crate) struct Injector {
    schedule: std::iter::Peekable<Schedule>,
    states: Vec<SlotState>,
    applied: Vec<AppliedFault>,
}

/// A live worker in a slot, as the injector needs it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Victim {
    pub(crate) pid: Pid,
    pub(crate) producer: u32,
}

impl Injector {
    pub(crate) fn new(schedule: Schedule, slots: usize) -> Injector {
        Injector {
            schedule: schedule.peekable(),
            states: vec![SlotState::default(); slots],
            applied: Vec::new(),
        }
    }

    /// The progress point of the next fault, if any: the run stops taking deliveries
    /// there so that the fault lands exactly at its point.
    pub(crate) fn next_due(&mut self) -> Option<u64> {
        self.schedule.peek().map(|f| f.at_progress)
    }

    pub(crate) fn applied(&self) -> &[AppliedFault] {
        &self.applied
    }

    pub(crate) fn count(&self, kind: FaultKind) -> u64 {
        self.applied
            .iter()
            .filter(|f| f.planned.kind == kind)
            .count() as u64
    }

    /// Whether the worker in `slot` is held stopped by a fault right now.
    pub(crate) fn is_stopped(&self, slot: usize) -> bool {
        self.states[slot].is_stopped()
    }

    /// Applies the faults now due and the stop/throttle transitions whose time has come.
    /// Returns the slots whose worker was SIGKILLed: the caller reaps and replaces them.
    pub(crate) fn tick(
        &mut self,
        progress: u64,
        now: Instant,
        victims: &[Option<Victim>],
    ) -> Vec<usize> {
        let mut killed = Vec::new();
        while let Some(fault) = self.schedule.next_if(|f| f.at_progress <= progress) {
            let Some(victim) = victims.get(fault.slot).copied().flatten() else {
                continue; // slot empty at this instant (being replaced): fault skipped
            };
            let state = &mut self.states[fault.slot];
            match fault.kind {
                FaultKind::Kill => {
                    let _ = kill(victim.pid, Signal::SIGKILL);
                    *state = SlotState::default();
                    killed.push(fault.slot);
                }
                FaultKind::Stop => {
                    let until = now + Duration::from_millis(fault.millis);
                    state.resume_at = Some(state.resume_at.map_or(until, |r| r.max(until)));
                }
                FaultKind::Slow => {
                    let until = now + Duration::from_millis(fault.millis);
                    state.throttle_until =
                        Some(state.throttle_until.map_or(until, |t| t.max(until)));
                    state.next_toggle.get_or_insert(now);
                }
            }
            self.applied.push(AppliedFault {
                planned: fault,
                producer: victim.producer,
                progress,
            });
        }
        for (slot, state) in self.states.iter_mut().enumerate() {
            let Some(victim) = victims.get(slot).copied().flatten() else {
                *state = SlotState::default();
                continue;
            };
            if state.resume_at.is_some_and(|r| now >= r) {
                state.resume_at = None;
            }
            if let Some(until) = state.throttle_until {
                if now >= until {
                    state.throttle_until = None;
                    state.throttled_stopped = false;
                    state.next_toggle = None;
                } else if state.next_toggle.is_some_and(|t| now >= t) {
                    state.throttled_stopped = !state.throttled_stopped;
                    state.next_toggle = Some(now + THROTTLE_PERIOD / 2);
                }
            }
            let stop = state.is_stopped();
            if stop != state.sent_stop {
                let signal = if stop {
                    Signal::SIGSTOP
                } else {
                    Signal::SIGCONT
                };
                let _ = kill(victim.pid, signal);
                state.sent_stop = stop;
            }
        }
        killed
    }

    /// Ends every pause and throttle and continues every worker (end of run).
    pub(crate) fn release_all(&mut self, victims: &[Option<Victim>]) {
        for (state, victim) in self.states.iter_mut().zip(victims) {
            *state = SlotState::default();
            if let Some(victim) = victim {
                let _ = kill(victim.pid, Signal::SIGCONT);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_a_function_of_the_seed() {
        let kinds = FaultKind::ALL;
        let a: Vec<_> = Schedule::new(42, &kinds, 8, 1000).take(200).collect();
        let b: Vec<_> = Schedule::new(42, &kinds, 8, 1000).take(200).collect();
        let c: Vec<_> = Schedule::new(43, &kinds, 8, 1000).take(200).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.windows(2).all(|w| w[0].at_progress < w[1].at_progress));
        assert!(a.iter().all(|f| f.slot < 8));
        for kind in kinds {
            assert!(a.iter().any(|f| f.kind == kind), "{kind:?} never planned");
        }
        assert_eq!(Schedule::new(1, &[], 8, 1000).next(), None);
        let kills_only: Vec<_> = Schedule::new(1, &[FaultKind::Kill], 4, 10)
            .take(50)
            .collect();
        assert!(kills_only
            .iter()
            .all(|f| f.kind == FaultKind::Kill && f.millis == 0));
    }

    #[test]
    fn faults_parse_strictly() {
        assert_eq!(parse_faults("kill,stop,slow").unwrap(), FaultKind::ALL);
        assert_eq!(
            parse_faults("slow, kill").unwrap(),
            [FaultKind::Kill, FaultKind::Slow]
        );
        assert!(parse_faults("none").unwrap().is_empty());
        let err = parse_faults("kill,explode").unwrap_err().to_string();
        assert!(
            err.contains("explode") && err.contains("kill, stop, slow"),
            "{err}"
        );
    }
}
