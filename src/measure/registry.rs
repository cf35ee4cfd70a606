//! The workload catalogue `ipcbench bench`, `list` and the criterion benches run, and
//! what a workload is: [`Workload`] (made with its builder, [`builder`]), the sets
//! registered with [`register_workloads!`](crate::register_workloads), and `--filter`
//! ([`select`]).
//!
//! There is no list of workloads here: each family registers its own set from its file
//! (`measure/workloads/*.rs`, the calibrations from `measure/calibration/catalogue.rs`),
//! so adding a workload is one new file and its `mod` line. A set's rank orders the
//! catalogue: calibrations 0, process 10, pipe 20, queue 30, pool 40, lock 50, sync 60,
//! barrier 65, Manager 70, file store 80; a set registered without one comes after them.
//!
//! Naming: `family/flavor/what[/size][/placement]`, e.g. `pipe/duplex/roundtrip/64B/
//! cross-cpu`; calibrations are `calibration/NAME/placement`. `--filter` matches a
//! substring of these names.

pub mod builder;

pub use builder::{Baseline, Latency, Operations, Stream, WorkloadBuilder};

use crate::results::Placement;
use std::sync::Arc;
use std::time::Duration;

use super::workloads::RoundTrips;

/// What a workload produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A raw baseline other figures are divided by.
    Calibration,
    /// A distribution of per-operation times.
    Latency,
    /// Messages (and bytes) moved per second.
    Throughput,
}

/// How long a run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// Short: every family in well under a minute on 2 cores.
    Quick,
    /// Longer runs and more repeats, for figures worth keeping.
    Full,
}

impl Profile {
    /// The name the CLI and the results use.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Quick => "quick",
            Profile::Full => "full",
        }
    }
    /// Repeated runs of each workload; their spread is recorded with each figure.
    pub fn repeats(self) -> usize {
        match self {
            Profile::Quick => 3,
            Profile::Full => 5,
        }
    }
}

/// What one run (one repeat) of a workload gives.
#[derive(Clone, Debug)]
pub enum Sample {
    /// Per-operation times (latency workloads and time calibrations).
    Times(RoundTrips),
    /// A volume moved in a time (throughput workloads and bandwidth calibrations).
    Moved {
        /// Messages moved.
        messages: u64,
        /// Payload bytes moved.
        bytes: u64,
        /// The time they took.
        elapsed: Duration,
    },
}

impl Sample {
    /// The time the operations took (the sum of the samples, for times): what criterion's
    /// `iter_custom` wants.
    pub fn total(&self) -> Duration {
        match self {
            Sample::Times(trips) => trips.total(),
            Sample::Moved { elapsed, .. } => *elapsed,
        }
    }
}

/// Runs one repeat with the given number of operations.
pub type RunFn = Arc<dyn Fn(usize) -> Sample + Send + Sync>;

/// What a workload is, apart from how it runs: its name and the facts the results record
/// with its figures. Written once, by [`WorkloadBuilder`], for ipcbench's own workloads,
/// a plug-in's and a peer's alike (a peer's `Spec` holds one too).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadShape {
    /// Unique; also the key in the results file.
    pub name: String,
    /// Mechanism family: "pipe", "queue", ...
    pub family: &'static str,
    /// Flavor within the family: what a row of the report compares.
    pub flavor: &'static str,
    /// Latency or throughput: which list of the results it goes to.
    pub kind: Kind,
    /// Where its processes run: a baseline divides only figures of its own placement.
    pub placement: Placement,
    /// Payload of one message, bytes.
    pub message_bytes: u64,
    /// Producer processes (throughput).
    pub producers: u32,
    /// Consumer processes (throughput).
    pub consumers: u32,
    /// The calibration this workload is divided by: its name; the ratio is only computed
    /// against that calibration measured in the workload's own placement.
    pub calibration: Option<&'static str>,
    /// Operations per repeat: (quick, full).
    pub ops: (usize, usize),
}

impl WorkloadShape {
    /// Operations per repeat in `profile`.
    pub fn ops(&self, profile: Profile) -> usize {
        match profile {
            Profile::Quick => self.ops.0,
            Profile::Full => self.ops.1,
        }
    }

    /// For a calibration: its calibration name (the middle of `calibration/NAME/...`).
    pub fn calibration_name(&self) -> Option<&str> {
        match self.kind {
            Kind::Calibration => self.name.split('/').nth(1),
            _ => None,
        }
    }
}

/// One registered workload: what it is, and how to run one repeat of it. Made with a
/// builder: [`Workload::latency`], [`Workload::stream`], [`Workload::operations`] or
/// [`Workload::calibration`], finished by its `run`.
#[derive(Clone)]
pub struct Workload {
    /// What it is.
    pub shape: WorkloadShape,
    /// Runs one repeat.
    pub run: RunFn,
}

impl std::fmt::Debug for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workload")
            .field("name", &self.shape.name)
            .field("kind", &self.shape.kind)
            .field("placement", &self.shape.placement)
            .finish_non_exhaustive()
    }
}

impl Workload {
    /// A latency workload, `family/flavor/what[/SIZE]/PLACEMENT`: per-operation times
    /// between two processes. `.size(64).placement(p).divided_by(c).ops(q, f).run(|p, n| ..)`.
    pub fn latency(
        family: &'static str,
        flavor: &'static str,
        what: &str,
    ) -> WorkloadBuilder<Latency> {
        WorkloadBuilder::latency(family, flavor, what)
    }

    /// A stream, `family/flavor/stream/SIZE/PxC`: messages and bytes moved per second.
    /// `.size(64).processes(4, 4).divided_by(c).ops(q, f).run(|n| elapsed)`.
    pub fn stream(family: &'static str, flavor: &'static str) -> WorkloadBuilder<Stream> {
        WorkloadBuilder::stream(family, flavor)
    }

    /// Operations done by several processes together (lock acquire+release, file store
    /// updates, tasks, requests), `family/flavor/what`: operations per second.
    /// `.processes(n)` or `.contenders(n)`, then `.divided_by(c).ops(q, f).run(|n| elapsed)`.
    pub fn operations(
        family: &'static str,
        flavor: &'static str,
        what: &str,
    ) -> WorkloadBuilder<Operations> {
        WorkloadBuilder::operations(family, flavor, what)
    }

    /// A raw baseline, `calibration/NAME/PLACEMENT`, that other figures are divided by.
    /// `.placement(p).ops(q, f).run(|p, n| sample)`.
    pub fn calibration(name: &'static str) -> WorkloadBuilder<Baseline> {
        WorkloadBuilder::baseline(name)
    }

    /// Operations per repeat in `profile`.
    pub fn ops(&self, profile: Profile) -> usize {
        self.shape.ops(profile)
    }

    /// For a calibration: its calibration name (the middle of `calibration/NAME/...`).
    pub fn calibration_name(&self) -> Option<&str> {
        self.shape.calibration_name()
    }
}

/// "64B", "4KiB", "1MiB".
pub fn size_label(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{}MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{}KiB", b >> 10),
        b => format!("{b}B"),
    }
}

/// The two placements of a two-process latency workload.
pub const PLACEMENTS: [Placement; 2] = [Placement::SameCpu, Placement::CrossCpu];

/// Every workload, calibrations first.
pub fn all() -> Vec<Workload> {
    let mut sets: Vec<&WorkloadSet> = WORKLOAD_SETS.iter().collect();
    sets.sort_by_key(|s| (s.rank, s.name));
    let mut all: Vec<Workload> = Vec::new();
    for set in sets {
        for workload in (set.make)() {
            // A name is a results key: the first registration keeps it.
            if all.iter().any(|w| w.shape.name == workload.shape.name) {
                eprintln!(
                    "ipcbench: workload {} of set {} is already registered; ignored",
                    workload.shape.name, set.name
                );
                continue;
            }
            all.push(workload);
        }
    }
    all
}

/// A set of workloads registered with [`register_workloads!`](crate::register_workloads),
/// from this crate or any crate linking it: `bench`, `list` and the criterion benches find
/// it with no central list to edit.
pub struct WorkloadSet {
    /// Names the set in messages.
    pub name: &'static str,
    /// Where the set comes in the catalogue (built-ins 0–99; a set registered without a
    /// rank comes after them, by name).
    pub rank: u32,
    /// Builds the set's workloads (called once per listing or run).
    pub make: fn() -> Vec<Workload>,
}

/// Every registered workload set.
#[linkme::distributed_slice]
pub static WORKLOAD_SETS: [WorkloadSet];

/// Registers `fn() -> Vec<Workload>` as a set of workloads:
/// `ipcbench::register_workloads!("my-queue", my_workloads);`.
#[macro_export]
macro_rules! register_workloads {
    ($name:expr, $make:path) => {
        $crate::register_workloads!($name, $make, rank = 1000);
    };
    ($name:expr, $make:path, rank = $rank:expr) => {
        const _: () = {
            #[$crate::process::entry::linkme::distributed_slice(
                $crate::measure::registry::WORKLOAD_SETS
            )]
            #[linkme(crate = $crate::process::entry::linkme)]
            static SET: $crate::measure::registry::WorkloadSet =
                $crate::measure::registry::WorkloadSet {
                    name: $name,
                    rank: $rank,
                    make: $make,
                };
        };
    };
}

/// Registers one workload, made by `fn() -> Workload` (usually a builder chain), in a set of
/// its own named after the function: `ipcbench::register_workload!(my_queue_roundtrip);`.
/// The plural [`register_workloads!`] registers a family's set in one go.
#[macro_export]
macro_rules! register_workload {
    ($make:path) => {
        const _: () = {
            fn make_one() -> ::std::vec::Vec<$crate::measure::registry::Workload> {
                ::std::vec![$make()]
            }
            $crate::register_workloads!(stringify!($make), make_one);
        };
    };
}

/// A `--filter` that matches no workload; its message lists every workload name, one a
/// line, so the user can pick one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("--filter {pattern:?} matches no workload; the workloads are:\n  {}", names.join("\n  "))]
pub struct NoMatch {
    /// The filter given.
    pub pattern: String,
    /// Every workload it was matched against, in the catalogue's order.
    pub names: Vec<String>,
}

/// The workloads whose name contains `filter` (all without one), plus the calibrations
/// they are divided by (same name, same placement), calibrations first. A filter that
/// matches nothing is an error listing every workload name.
pub fn select(filter: Option<&str>) -> Result<Vec<Workload>, NoMatch> {
    select_from(all(), filter)
}

/// [`select`] over `all` (the catalogue, and a peer's workloads beside it).
pub fn select_from(all: Vec<Workload>, filter: Option<&str>) -> Result<Vec<Workload>, NoMatch> {
    let Some(pattern) = filter else {
        return Ok(all);
    };
    let chosen: Vec<&Workload> = all
        .iter()
        .filter(|w| w.shape.name.contains(pattern))
        .collect();
    if chosen.is_empty() {
        return Err(NoMatch {
            pattern: pattern.to_string(),
            names: all.iter().map(|w| w.shape.name.clone()).collect(),
        });
    }
    // A ratio needs the calibration of the same name in the same placement: only those.
    let needed: Vec<(&str, Placement)> = chosen
        .iter()
        .filter_map(|w| Some((w.shape.calibration?, w.shape.placement)))
        .collect();
    Ok(all
        .iter()
        .filter(|w| {
            w.shape.name.contains(pattern)
                || (w.shape.kind == Kind::Calibration
                    && w.calibration_name()
                        .is_some_and(|c| needed.contains(&(c, w.shape.placement))))
        })
        .cloned()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::calibration::catalogue::MESSAGING_LOOPS;
    use crate::measure::calibration::{self as cal, handoff};

    #[test]
    fn names_are_unique_and_every_calibration_reference_exists() {
        let all = all();
        let mut names: Vec<&str> = all.iter().map(|w| w.shape.name.as_str()).collect();
        names.sort_unstable();
        let count = names.len();
        names.dedup();
        assert_eq!(names.len(), count, "duplicate workload names");
        // The builder leaves ops at (0, 0) until `.ops(quick, full)` is called.
        for w in &all {
            let (quick, full) = w.shape.ops;
            assert!(
                0 < quick && quick <= full,
                "{}: ops {quick}, {full}",
                w.shape.name
            );
        }
        // A ratio is only computed against the same name in the same placement.
        let calibrations: Vec<(&str, Placement)> = all
            .iter()
            .filter_map(|w| Some((w.calibration_name()?, w.shape.placement)))
            .collect();
        for w in &all {
            if let Some(c) = w.shape.calibration {
                assert!(
                    calibrations.contains(&(c, w.shape.placement)),
                    "{} refers to missing {c} in placement {}",
                    w.shape.name,
                    w.shape.placement.label()
                );
            }
        }
    }

    /// Every measured workload names a baseline, and a stream one of its own kind and
    /// size; the lock-like throughputs divide by a time ("ns") calibration, never by a
    /// bandwidth (their byte rate is 0).
    #[test]
    fn every_workload_names_a_baseline_of_its_kind() {
        let all = all();
        for w in all.iter().filter(|w| w.shape.kind != Kind::Calibration) {
            let c = w
                .shape
                .calibration
                .unwrap_or_else(|| panic!("{} names no calibration", w.shape.name));
            if w.shape.kind == Kind::Throughput && w.shape.message_bytes > 0 {
                let size = size_label(w.shape.message_bytes);
                assert!(
                    c.contains("-stream-") && c.ends_with(&format!("-{size}")),
                    "{} is divided by {c}, not a stream of {size}",
                    w.shape.name
                );
            }
            if w.shape.kind == Kind::Throughput && w.shape.message_bytes == 0 {
                assert!(
                    !c.contains("-stream-") && c != cal::MEMCPY,
                    "{}: {c}",
                    w.shape.name
                );
            }
        }
        let named = |name: &str| {
            all.iter()
                .find(|w| w.shape.name == name)
                .and_then(|w| w.shape.calibration)
        };
        assert_eq!(
            named("queue/shm/roundtrip/64B/same-cpu"),
            Some(cal::FUTEX_ROUNDTRIP)
        );
        assert_eq!(
            named("queue/shm/roundtrip/64B/cross-cpu"),
            Some(cal::SHM_PINGPONG)
        );
        assert_eq!(
            named("lock/robust-mutex/acquire-release/4-proc"),
            Some("atomic-increment-contended-4")
        );
        assert_eq!(
            named("lock/flock/acquire-release/2-proc"),
            Some(cal::FLOCK_ACQUIRE_RELEASE)
        );
        assert_eq!(
            named("sync/event/wake-roundtrip/cross-cpu"),
            Some(cal::FUTEX_ROUNDTRIP)
        );
        // The file store by raw file I/O of its own kind, never by a lock: the two move
        // apart between machines.
        for kind in crate::ipc::filestore::StoreLockKind::ALL {
            for processes in [1, 2] {
                let workload = format!(
                    "filestore/{}/read-modify-write/{processes}-proc",
                    kind.name()
                );
                assert_eq!(
                    named(&workload),
                    Some(cal::FILE_READ_MODIFY_WRITE),
                    "{workload}"
                );
            }
        }
        assert!(all.iter().any(
            |w| w.shape.name == "calibration/file-read-modify-write/unpinned"
                && w.shape.kind == Kind::Calibration
        ));
        // A task through the pool by the raw hand-off of a task; a process per task by
        // the raw process start.
        for (workload, base) in [
            ("pool/fork/apply-async/unpinned", handoff::TASK_HANDOFF),
            ("pool/pool-2-apply-async/round-trip", handoff::TASK_HANDOFF),
            (
                "pool/pool-2-apply-async/pipelined",
                handoff::TASK_HANDOFF_2_WORKERS,
            ),
            (
                "pool/pool-2-map/short-tasks/chunksize-1",
                handoff::TASK_HANDOFF_2_WORKERS,
            ),
            (
                "pool/pool-2-map/short-tasks/chunksize-auto",
                handoff::TASK_HANDOFF_2_WORKERS,
            ),
            ("pool/process-per-task-fork/short-tasks", cal::FORK_EXIT),
            ("pool/process-per-task-spawn/short-tasks", cal::FORK_EXIT),
        ] {
            assert_eq!(named(workload), Some(base), "{workload}");
        }
    }

    /// The raw hand-offs and the hackbench twins are calibrations of their own names,
    /// unpinned, and a pool filter brings the hand-offs along (not fork-exit alone).
    #[test]
    fn pool_baselines_and_messaging_are_registered() {
        let all = all();
        for name in [
            "calibration/unix-socket-task-handoff/unpinned",
            "calibration/unix-socket-task-handoff-2-workers/unpinned",
            "calibration/pipe-messaging/unpinned",
            "calibration/unix-socket-messaging/unpinned",
        ] {
            let w = all.iter().find(|w| w.shape.name == name).expect(name);
            assert_eq!(w.shape.kind, Kind::Calibration, "{name}");
        }
        let messaging: Vec<_> = all
            .iter()
            .filter(|w| w.shape.name.contains("-messaging/"))
            .collect();
        assert!(messaging.iter().all(|w| w.shape.ops == MESSAGING_LOOPS));
        let chosen = select(Some("pool/pool-2")).unwrap();
        let calibrations: Vec<&str> = chosen.iter().filter_map(|w| w.calibration_name()).collect();
        assert_eq!(
            calibrations,
            [handoff::TASK_HANDOFF, handoff::TASK_HANDOFF_2_WORKERS],
            "{chosen:?}"
        );
    }

    #[test]
    fn filter_selects_matches_and_their_calibrations_only() {
        let chosen = select(Some("process/fork")).unwrap();
        let names: Vec<&str> = chosen.iter().map(|w| w.shape.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "calibration/fork-exit/unpinned",
                "process/fork/start-join/unpinned"
            ]
        );
        let chosen = select(Some("pipe-roundtrip")).unwrap();
        assert!(chosen.len() == 2 && chosen.iter().all(|w| w.shape.kind == Kind::Calibration));
        // Only the calibration in the workload's own placement comes along.
        let chosen = select(Some("sync/event/wake-roundtrip/same-cpu")).unwrap();
        let names: Vec<&str> = chosen.iter().map(|w| w.shape.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "calibration/futex-roundtrip/same-cpu",
                "sync/event/wake-roundtrip/same-cpu"
            ]
        );
        assert_eq!(select(None).unwrap().len(), all().len());
    }

    #[test]
    fn filter_matching_nothing_lists_the_workloads() {
        let err = select(Some("no-such-workload")).unwrap_err();
        assert_eq!(err.names.len(), all().len());
        let err = err.to_string();
        assert!(err.contains("no-such-workload"), "{err}");
        for w in all() {
            assert!(
                err.contains(&w.shape.name),
                "{} missing from: {err}",
                w.shape.name
            );
        }
    }

    #[test]
    fn size_labels() {
        assert_eq!(size_label(8), "8B");
        assert_eq!(size_label(4096), "4KiB");
        assert_eq!(size_label(1 << 20), "1MiB");
        assert_eq!(size_label(1000), "1000B");
    }
}
