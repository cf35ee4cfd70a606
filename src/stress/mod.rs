//! Bounded stress runs with fault injection (`ipcbench stress`, and the short profile in
//! `stress/short.rs` under `cargo test --release`).
//!
//! A run drives one mechanism (a [`Target`]) with many worker processes while the
//! [`faults`] injector SIGKILLs, pauses (SIGSTOP … SIGCONT) and throttles them at points
//! of progress drawn from a seeded schedule, and checks four things:
//!
//! 1. **Exactly once** (`ledger`): every message carries its producer, a sequence
//!    number and a checksum (`message`); at the end each one was delivered exactly once
//!    or is accounted as in flight with a killed process; a torn message is never
//!    delivered.
//! 2. **Liveness**: progress is sampled; a stall becomes a `Hung` report with the
//!    watchdog's diagnosis of every worker (state, syscall, wchan), and the run ends.
//! 3. **Hygiene**: after the run, no zombie, leftover process, /dev/shm name, temp file or
//!    fd ([`crate::process::hygiene::Snapshot`]).
//! 4. **Reproducibility**: the same seed gives the same faults at the same points of
//!    progress (`faults::Schedule`).

#![warn(missing_docs)]

pub(crate) mod barrier;
pub mod board;
pub(crate) mod counter;
mod error;
pub(crate) mod event;
pub mod faults;
pub(crate) mod filestore;
pub(crate) mod joinable;
pub(crate) mod ledger;
pub(crate) mod message;
pub(crate) mod notice;
pub mod pipe;
pub(crate) mod pool;
pub mod queue;
pub(crate) mod rng;
pub(crate) mod runner;
pub(crate) mod semaphore;

pub use error::StressError;
pub(crate) use faults::parse_faults;
pub use faults::FaultKind;
pub use runner::{
    run, Accounting, Config, Event, Flaw, Settlement, StressReport, Target, Tick, Totals,
    WorkerSpec,
};

use crate::ipc::filestore::StoreLockKind;
use crate::ipc::lock::LockFlavor;
use crate::ipc::pipe::PipeKind;
use std::time::Duration;

/// Every target name, in run order.
pub fn target_names() -> Vec<String> {
    all_targets().iter().map(|t| t.name()).collect()
}

/// Every target, fresh.
pub fn all_targets() -> Vec<Box<dyn Target>> {
    let mut targets: Vec<Box<dyn Target>> = Vec::new();
    for flavor in crate::ipc::queue::Flavor::all() {
        targets.push(Box::new(queue::QueueTarget::new(flavor)));
    }
    for kind in PipeKind::ALL {
        targets.push(Box::new(pipe::PipeTarget::new(kind)));
    }
    for flavor in LockFlavor::SAFE {
        targets.push(Box::new(counter::CounterTarget::new(
            counter::CounterKind::Lock(flavor),
        )));
    }
    targets.push(Box::new(counter::CounterTarget::new(
        counter::CounterKind::Manager,
    )));
    targets.push(Box::new(pool::PoolTarget::new()));
    targets.push(Box::new(semaphore::SemaphoreTarget::new()));
    targets.push(Box::new(event::EventTarget::new()));
    targets.push(Box::new(barrier::BarrierTarget::new()));
    targets.push(Box::new(joinable::JoinableTarget::new()));
    for kind in StoreLockKind::LOCKED {
        targets.push(Box::new(filestore::FileStoreTarget::new(kind)));
    }
    targets.extend(registered(false));
    targets
}

/// Stress targets registered with [`register_targets!`](crate::register_targets!) (correct ones, or broken twins).
pub struct TargetSet {
    /// The set's name, for the listing.
    pub name: &'static str,
    /// Broken twins: run only by name and by `prove`, each naming its flaw.
    pub broken: bool,
    /// Builds the set's targets (called once per listing or run).
    pub make: fn() -> Vec<Box<dyn Target>>,
}

/// Every registered target set.
#[linkme::distributed_slice]
pub static TARGET_SETS: [TargetSet];

/// Registers `fn() -> Vec<Box<dyn Target>>` as stress targets (`broken` for twins):
/// `ipcbench::register_targets!("my-queue", my_targets);` or
/// `ipcbench::register_targets!("my-queue-twins", my_twins, broken);`.
#[macro_export]
macro_rules! register_targets {
    ($name:expr, $make:path) => {
        $crate::register_targets!(@set $name, $make, false);
    };
    ($name:expr, $make:path, broken) => {
        $crate::register_targets!(@set $name, $make, true);
    };
    (@set $name:expr, $make:path, $broken:expr) => {
        const _: () = {
            #[$crate::process::entry::linkme::distributed_slice($crate::stress::TARGET_SETS)]
            #[linkme(crate = $crate::process::entry::linkme)]
            static SET: $crate::stress::TargetSet = $crate::stress::TargetSet {
                name: $name,
                broken: $broken,
                make: $make,
            };
        };
    };
}

/// The registered targets, correct or broken, in set-name order.
fn registered(broken: bool) -> Vec<Box<dyn Target>> {
    let mut sets: Vec<&TargetSet> = TARGET_SETS.iter().filter(|s| s.broken == broken).collect();
    sets.sort_by_key(|s| s.name);
    sets.into_iter().flat_map(|s| (s.make)()).collect()
}

/// The broken twins: each target's mechanism with a deliberate defect its books must
/// catch (the power check). Never run by default; selectable by exact name.
/// Each names the figure that must catch it ([`Target::expected_flaw`]).
pub fn broken_targets() -> Vec<Box<dyn Target>> {
    use crate::ipc::queue::Flavor;
    use queue::{Defect, QueueTarget};
    let built_in: Vec<Box<dyn Target>> = vec![
        Box::new(QueueTarget::broken(Flavor::Shm, Defect::Dropping)),
        Box::new(QueueTarget::broken(Flavor::Pipe, Defect::Duplicating)),
        Box::new(QueueTarget::broken(Flavor::Pipe, Defect::Tearing)),
        Box::new(semaphore::SemaphoreTarget::broken()),
        Box::new(semaphore::SemaphoreTarget::leaking()),
        Box::new(event::EventTarget::broken()),
        Box::new(barrier::BarrierTarget::broken()),
        Box::new(joinable::JoinableTarget::broken()),
        Box::new(filestore::FileStoreTarget::new(StoreLockKind::Unlocked)),
        Box::new(pool::PoolTarget::lying()),
    ];
    built_in.into_iter().chain(registered(true)).collect()
}

/// The targets a `--target` value selects: one target by name, or a whole family
/// ("pipe" runs every pipe flavor). Unknown names are an error listing the known ones.
pub(crate) fn select_targets(selector: Option<&str>) -> Result<Vec<Box<dyn Target>>, StressError> {
    let all = all_targets();
    let Some(selector) = selector else {
        return Ok(all);
    };
    let chosen: Vec<Box<dyn Target>> = all
        .into_iter()
        .filter(|t| t.name() == selector || t.family() == selector)
        .chain(
            broken_targets()
                .into_iter()
                .filter(|t| t.name() == selector),
        )
        .collect();
    if chosen.is_empty() {
        let mut known = target_names();
        let mut families: Vec<String> = all_targets()
            .iter()
            .map(|t| t.family().to_string())
            .collect();
        families.dedup();
        known.extend(
            families
                .into_iter()
                .map(|f| format!("{f} (every {f} flavor)")),
        );
        return Err(StressError::Invalid(format!(
            "unknown stress target {selector:?}; known targets: {}",
            known.join(", ")
        )));
    }
    Ok(chosen)
}

/// Parses a duration such as `30s`, `2m`, `500ms`, `1h` or `1.5s`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, StressError> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let bad = || {
        StressError::Invalid(format!(
            "invalid duration {text:?}: expected a number with a unit, e.g. 500ms, 30s, 2m, 1h"
        ))
    };
    let value: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "s" | "" if !number.is_empty() => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(bad()),
    };
    if !seconds.is_finite() || seconds <= 0.0 {
        return Err(StressError::Invalid(format!(
            "invalid duration {text:?}: must be greater than zero"
        )));
    }
    if seconds > 24.0 * 3600.0 {
        return Err(StressError::Invalid(format!(
            "invalid duration {text:?}: at most 24h"
        )));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_strictly() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        for bad in ["forever", "", "s", "0s", "-1s", "10 parsecs", "25h"] {
            let err = parse_duration(bad).unwrap_err().to_string();
            assert!(err.contains("duration"), "{bad}: {err}");
        }
    }

    /// `ipcbench prove` runs every twin and checks that it fails by the flaw it names.
    #[test]
    fn every_broken_twin_names_its_flaw_and_is_selected_only_by_its_name() {
        let names = target_names();
        let mut twins = std::collections::BTreeSet::new();
        for twin in broken_targets() {
            let name = twin.name();
            assert!(twin.expected_flaw().is_some(), "{name} names no flaw");
            assert!(!names.contains(&name), "{name} runs by default");
            assert!(twins.insert(name.clone()), "two twins named {name}");
            let chosen = select_targets(Some(&name)).unwrap();
            assert_eq!(chosen.len(), 1, "{name}");
            assert_eq!(chosen[0].expected_flaw(), twin.expected_flaw(), "{name}");
        }
        for target in all_targets() {
            assert_eq!(target.expected_flaw(), None, "{}", target.name());
        }
    }

    #[test]
    fn only_a_twin_that_must_hang_gets_a_short_stall_bound() {
        let base = || Config::new(Duration::from_secs(2), 4, Vec::new(), 1);
        for flaw in [None, Some(Flaw::Losses), Some(Flaw::Corrupt)] {
            let config = base().for_twin(flaw);
            assert_eq!(
                (config.duration, config.stall_after),
                (base().duration, base().stall_after),
                "{flaw:?}"
            );
        }
        let config = base().for_twin(Some(Flaw::Hung));
        assert_eq!(config.stall_after, runner::TWIN_STALL_AFTER);
        assert_eq!(config.duration, runner::TWIN_HANG_WITHIN);
        assert!(config.stall_after < config.duration);
    }

    #[test]
    fn targets_select_by_name_or_family() {
        assert!(target_names().contains(&"pipe-duplex".to_string()));
        assert_eq!(select_targets(Some("pipe")).unwrap().len(), 2);
        assert_eq!(select_targets(Some("pipe-simplex")).unwrap().len(), 1);
        // A broken twin only by its exact name, never with its family.
        assert_eq!(select_targets(Some("semaphore")).unwrap().len(), 1);
        assert_eq!(select_targets(Some("semaphore-skipping")).unwrap().len(), 1);
        assert_eq!(select_targets(Some("filestore")).unwrap().len(), 3);
        assert!(!target_names().contains(&"filestore-unlocked".to_string()));
        assert_eq!(select_targets(Some("queue")).unwrap().len(), 3);
        assert_eq!(select_targets(Some("queue-pipe-tearing")).unwrap().len(), 1);
        let err = select_targets(Some("telepathy")).err().unwrap().to_string();
        assert!(
            err.contains("telepathy") && err.contains("pipe-duplex"),
            "{err}"
        );
    }
}
