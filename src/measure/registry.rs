//! Every workload `ipcbench bench` can run, with what it measures and how to run it in
//! the quick and full profiles. The functions themselves live in `workloads/` and
//! `calibration`, shared with the criterion benches; this is only the catalogue.
//!
//! Naming: `family/flavor/what[/size][/placement]`, e.g. `pipe/duplex/roundtrip/64B/
//! cross-cpu`; calibrations are `calibration/NAME/placement`. `--filter` matches a
//! substring of these names.

use super::calibration as cal;
use super::workloads::process::{start_join_samples, StartKind};
use super::workloads::RoundTrips;
use crate::report::model::Placement;
use std::sync::Arc;
use std::time::Duration;

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
        messages: u64,
        bytes: u64,
        elapsed: Duration,
    },
}

/// Runs one repeat with the given number of operations.
pub type RunFn = Arc<dyn Fn(usize) -> Sample + Send + Sync>;

/// One registered workload.
#[derive(Clone)]
pub struct Workload {
    /// Unique; also the key in the results file.
    pub name: String,
    pub family: &'static str,
    pub flavor: &'static str,
    pub kind: Kind,
    pub placement: Placement,
    pub message_bytes: u64,
    pub producers: u32,
    pub consumers: u32,
    /// The calibration (name; same placement, else unpinned) this workload is divided by.
    pub calibration: Option<&'static str>,
    /// Operations per repeat: (quick, full).
    pub ops: (usize, usize),
    pub run: RunFn,
}

impl std::fmt::Debug for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workload")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("placement", &self.placement)
            .finish_non_exhaustive()
    }
}

impl Workload {
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

    /// A latency workload: `run(placement, ops)` gives per-operation times.
    #[allow(clippy::too_many_arguments)]
    pub fn latency(
        family: &'static str,
        flavor: &'static str,
        what: &str,
        message_bytes: Option<u64>,
        placement: Placement,
        calibration: Option<&'static str>,
        ops: (usize, usize),
        run: impl Fn(Placement, usize) -> RoundTrips + Send + Sync + 'static,
    ) -> Workload {
        let size = message_bytes.map(|b| format!("/{}", size_label(b)));
        Workload {
            name: format!(
                "{family}/{flavor}/{what}{}/{}",
                size.unwrap_or_default(),
                placement.label()
            ),
            family,
            flavor,
            kind: Kind::Latency,
            placement,
            message_bytes: message_bytes.unwrap_or(0),
            producers: 1,
            consumers: 1,
            calibration,
            ops,
            run: Arc::new(move |n| Sample::Times(run(placement, n))),
        }
    }

    /// A throughput workload: `run(messages)` gives the time to move them.
    #[allow(clippy::too_many_arguments)]
    pub fn throughput(
        family: &'static str,
        flavor: &'static str,
        message_bytes: u64,
        producers: u32,
        consumers: u32,
        calibration: Option<&'static str>,
        ops: (usize, usize),
        run: impl Fn(usize) -> Duration + Send + Sync + 'static,
    ) -> Workload {
        Workload {
            name: format!(
                "{family}/{flavor}/stream/{}/{producers}x{consumers}",
                size_label(message_bytes)
            ),
            family,
            flavor,
            kind: Kind::Throughput,
            placement: Placement::Unpinned,
            message_bytes,
            producers,
            consumers,
            calibration,
            ops,
            run: Arc::new(move |n| Sample::Moved {
                messages: n as u64,
                bytes: n as u64 * message_bytes,
                elapsed: run(n),
            }),
        }
    }

    fn calibration(
        name: &'static str,
        placement: Placement,
        ops: (usize, usize),
        run: impl Fn(usize) -> Sample + Send + Sync + 'static,
    ) -> Workload {
        Workload {
            name: format!("calibration/{name}/{}", placement.label()),
            family: "calibration",
            flavor: name,
            kind: Kind::Calibration,
            placement,
            message_bytes: 0,
            producers: 1,
            consumers: 1,
            calibration: None,
            ops,
            run: Arc::new(run),
        }
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

fn calibrations() -> Vec<Workload> {
    let mut all = Vec::new();
    // Two spinners on one CPU would measure the scheduler, not the cache line.
    all.push(Workload::calibration(
        cal::SHM_PINGPONG,
        Placement::CrossCpu,
        (20_000, 200_000),
        |n| Sample::Times(cal::shm_pingpong(Placement::CrossCpu, n)),
    ));
    for placement in PLACEMENTS {
        all.push(Workload::calibration(
            cal::PIPE_ROUNDTRIP,
            placement,
            (3_000, 30_000),
            move |n| Sample::Times(cal::pipe_roundtrip(placement, n)),
        ));
        all.push(Workload::calibration(
            cal::UNIX_SOCKET_ROUNDTRIP,
            placement,
            (3_000, 30_000),
            move |n| Sample::Times(cal::unix_socket_roundtrip(placement, n)),
        ));
    }
    all.push(Workload::calibration(
        cal::MEMCPY,
        Placement::Unpinned,
        (4, 32),
        |n| {
            let started = std::time::Instant::now();
            let rate = cal::memcpy_bandwidth(n);
            let elapsed = started.elapsed();
            Sample::Moved {
                messages: n as u64,
                bytes: (rate * elapsed.as_secs_f64()) as u64,
                elapsed,
            }
        },
    ));
    all.push(Workload::calibration(
        cal::FORK_EXIT,
        Placement::Unpinned,
        (100, 1_000),
        |n| Sample::Times(cal::fork_exit(n)),
    ));
    all.push(Workload::calibration(
        cal::FORK_EXEC,
        Placement::Unpinned,
        (30, 300),
        |n| Sample::Times(cal::fork_exec(n)),
    ));
    all
}

fn process_workloads() -> Vec<Workload> {
    [
        (StartKind::Fork, cal::FORK_EXIT, (100, 1_000)),
        (StartKind::Spawn, cal::FORK_EXEC, (30, 300)),
    ]
    .into_iter()
    .map(|(start, calibration, ops)| {
        Workload::latency(
            "process",
            start.name(),
            "start-join",
            None,
            Placement::Unpinned,
            Some(calibration),
            ops,
            move |_, n| start_join_samples(start, n),
        )
    })
    .collect()
}

/// A task through a running pool, beside the cost of a process per task: divided by
/// fork+exit, the ratio says how many pool tasks one bare fork costs.
fn pool_workloads() -> Vec<Workload> {
    vec![Workload::latency(
        "pool",
        "fork",
        "apply-async",
        None,
        Placement::Unpinned,
        Some(cal::FORK_EXIT),
        (300, 3_000),
        |_, n| super::workloads::pool::apply_async_samples(n),
    )]
}

/// Every workload, calibrations first.
pub fn all() -> Vec<Workload> {
    let mut all = calibrations();
    all.extend(process_workloads());
    all.extend(pool_workloads());
    all.extend(super::workloads::lock::catalogue());
    all.extend(super::workloads::sync::catalogue());
    all.extend(super::workloads::manager::catalogue());
    all.extend(super::workloads::filestore::catalogue());
    all
}

/// The workloads whose name contains `filter` (all without one), plus the calibrations
/// they are divided by, calibrations first. A filter that matches nothing is an error
/// listing every workload name.
pub fn select(filter: Option<&str>) -> Result<Vec<Workload>, String> {
    let all = all();
    let Some(pattern) = filter else {
        return Ok(all);
    };
    let chosen: Vec<&Workload> = all.iter().filter(|w| w.name.contains(pattern)).collect();
    if chosen.is_empty() {
        let names: Vec<&str> = all.iter().map(|w| w.name.as_str()).collect();
        return Err(format!(
            "--filter {pattern:?} matches no workload; the workloads are:\n  {}",
            names.join("\n  ")
        ));
    }
    let needed: Vec<&str> = chosen.iter().filter_map(|w| w.calibration).collect();
    Ok(all
        .iter()
        .filter(|w| {
            w.name.contains(pattern)
                || (w.kind == Kind::Calibration
                    && w.calibration_name().is_some_and(|c| needed.contains(&c)))
        })
        .cloned()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_every_calibration_reference_exists() {
        let all = all();
        let mut names: Vec<&str> = all.iter().map(|w| w.name.as_str()).collect();
        names.sort_unstable();
        let count = names.len();
        names.dedup();
        assert_eq!(names.len(), count, "duplicate workload names");
        let calibrations: Vec<&str> = all.iter().filter_map(|w| w.calibration_name()).collect();
        for w in &all {
            if let Some(c) = w.calibration {
                assert!(
                    calibrations.contains(&c),
                    "{} refers to missing {c}",
                    w.name
                );
            }
        }
    }

    #[test]
    fn filter_selects_matches_and_their_calibrations_only() {
        let chosen = select(Some("process/fork")).unwrap();
        let names: Vec<&str> = chosen.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "calibration/fork-exit/unpinned",
                "process/fork/start-join/unpinned"
            ]
        );
        let chosen = select(Some("pipe-roundtrip")).unwrap();
        assert!(chosen.len() == 2 && chosen.iter().all(|w| w.kind == Kind::Calibration));
        assert_eq!(select(None).unwrap().len(), all().len());
    }

    #[test]
    fn filter_matching_nothing_lists_the_workloads() {
        let err = select(Some("no-such-workload")).unwrap_err();
        assert!(err.contains("no-such-workload"), "{err}");
        for w in all() {
            assert!(err.contains(&w.name), "{} missing from: {err}", w.name);
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
