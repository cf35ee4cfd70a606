//! Deliberately slowed twins of workloads: a mechanism made slower on purpose, measured
//! under its real workload names, so a reviewer (or a test) can watch the gate and the
//! report catch a slowdown end to end. Selected only by name (`bench --twin`, `run
//! --twin`), never by default; a run that used one records it (`Results::twins`), and
//! `ipcbench baseline` refuses such a run.

use super::registry::{Kind, Sample, Workload};
use super::workloads::queue;
use crate::ipc::queue::Flavor;
use std::sync::Arc;
use std::time::Duration;

/// A slowed twin: which workloads it replaces, and by how much it holds each operation.
#[derive(Clone, Copy, Debug)]
pub struct SlowedTwin {
    /// The `--twin` name.
    pub name: &'static str,
    /// What is broken or slowed, in one line for `list`.
    pub about: &'static str,
    flavor: Flavor,
    extra: Duration,
}

/// Every slowed twin.
pub const SLOWED: [SlowedTwin; 1] = [SlowedTwin {
    name: "queue-pipe-slowed",
    about: "the pipe Queue's round trips, each held back by a 200 µs sleep between put and get",
    flavor: Flavor::Pipe,
    extra: Duration::from_micros(200),
}];

impl SlowedTwin {
    /// Whether `workload` is one this twin replaces: its flavor's queue round trips.
    fn replaces(&self, workload: &Workload) -> bool {
        workload.shape.kind == Kind::Latency
            && workload.shape.family == "queue"
            && workload.shape.flavor == self.flavor.name()
            && workload.shape.name.contains("/roundtrip/")
    }

    /// The held-back time per operation.
    pub fn extra(&self) -> Duration {
        self.extra
    }
}

/// The slowed twin named `name`.
pub fn find(name: &str) -> Option<&'static SlowedTwin> {
    SLOWED.iter().find(|t| t.name == name)
}

/// Why `--twin` names cannot be applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TwinError {
    /// No slowed twin has this name.
    #[error("--twin: no slowed twin is named {name:?}; the slowed twins: {}", known.join(", "))]
    Unknown {
        /// The name given.
        name: String,
        /// The slowed twins there are.
        known: Vec<&'static str>,
    },
    /// The twin replaces none of the selected workloads (a `--filter` left them out).
    #[error("--twin {name}: none of the selected workloads is one it replaces ({about})")]
    NothingToReplace {
        /// The twin's name.
        name: String,
        /// What it slows.
        about: &'static str,
    },
}

/// Replaces the workloads of `selection` that the twins named in `names` stand in for.
/// An unknown name, or a twin none of whose workloads is selected, is an error.
pub fn apply(selection: &mut [Workload], names: &[String]) -> Result<(), TwinError> {
    for name in names {
        let twin = find(name).ok_or_else(|| TwinError::Unknown {
            name: name.clone(),
            known: SLOWED.iter().map(|t| t.name).collect(),
        })?;
        let mut replaced = 0;
        for workload in selection.iter_mut().filter(|w| twin.replaces(w)) {
            let (flavor, extra, placement) = (twin.flavor, twin.extra, workload.shape.placement);
            let bytes = workload.shape.message_bytes as usize;
            workload.run = Arc::new(move |n| {
                Sample::Times(queue::round_trip_slowed(flavor, bytes, placement, n, extra))
            });
            replaced += 1;
        }
        if replaced == 0 {
            return Err(TwinError::NothingToReplace {
                name: name.clone(),
                about: twin.about,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::registry;

    #[test]
    fn a_slowed_twin_replaces_only_its_own_workloads() {
        let mut all = registry::select(None).unwrap();
        let before: Vec<String> = all.iter().map(|w| w.shape.name.clone()).collect();
        let runs: Vec<_> = all
            .iter()
            .map(|w| Arc::as_ptr(&w.run) as *const ())
            .collect();
        apply(&mut all, &["queue-pipe-slowed".to_string()]).unwrap();
        let after: Vec<String> = all.iter().map(|w| w.shape.name.clone()).collect();
        assert_eq!(before, after, "a twin keeps the workloads' names");
        let changed: Vec<&str> = all
            .iter()
            .zip(&runs)
            .filter(|(w, old)| Arc::as_ptr(&w.run) as *const () != **old)
            .map(|(w, _)| w.shape.name.as_str())
            .collect();
        assert!(!changed.is_empty());
        for name in changed {
            assert!(name.starts_with("queue/pipe/roundtrip/"), "{name}");
        }
    }

    #[test]
    fn an_unknown_or_unselected_twin_is_an_error() {
        let mut all = registry::select(None).unwrap();
        let err = apply(&mut all, &["queue-pipe-slow".to_string()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("queue-pipe-slowed"), "{err}");
        let mut locks = registry::select(Some("lock/")).unwrap();
        let err = apply(&mut locks, &["queue-pipe-slowed".to_string()]).unwrap_err();
        assert!(matches!(err, TwinError::NothingToReplace { .. }), "{err:?}");
        assert!(
            err.to_string().contains("none of the selected workloads"),
            "{err}"
        );
    }
}
