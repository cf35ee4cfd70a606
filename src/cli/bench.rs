//! `ipcbench bench`: run the measurement workloads and print latency and throughput tables.

use crate::measure::registry::{self, Profile};
use crate::measure::topology::{groups_text, smt_text};
use crate::measure::{matrix, peer, runner, twins};
use crate::report::units::{human, Unit};
use crate::results::Results;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only workloads whose name contains this text (and the calibrations they are
    /// divided by). A filter that matches nothing is an error listing the workloads.
    #[arg(long)]
    pub filter: Option<String>,
    /// Short profile: every family in under a minute on 2 cores.
    #[arg(long)]
    pub quick: bool,
    /// Write results as JSON (the versioned schema of the README) to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Leave out the core-to-core latency matrix (a round trip between every pair of
    /// CPUs; measured on every run without --filter).
    #[arg(long)]
    pub no_matrix: bool,
    /// Measure a deliberately slowed twin in place of its mechanism, under the real
    /// workload names (repeatable; e.g. queue-pipe-slowed): to watch the gate and the
    /// report catch a slowdown. Recorded in the results; never a baseline.
    #[arg(long = "twin", value_name = "NAME")]
    pub twins: Vec<String>,
    /// Also run a peer's workloads beside ipcbench's (repeatable; `cpython`: the same
    /// workloads with Python's multiprocessing, run by python3), divided by the same
    /// calibrations. `--filter` applies to them too.
    #[arg(long = "peer", value_name = "NAME")]
    pub peers: Vec<String>,
}

pub fn main(args: Args) -> i32 {
    let mut lanes = Vec::new();
    for name in &args.peers {
        match peer::find(name) {
            Ok(found)
                if lanes
                    .iter()
                    .any(|l: &std::sync::Arc<peer::Lane>| l.peer().name == found.name) => {}
            Ok(found) => lanes.push(peer::Lane::new(found)),
            Err(message) => {
                eprintln!("ipcbench bench: {message}");
                return super::EXIT_BAD_INPUT;
            }
        }
    }
    let mut catalogue = registry::all();
    for lane in &lanes {
        catalogue.extend(lane.workloads());
    }
    let selection = registry::select_from(catalogue, args.filter.as_deref())
        .map_err(anyhow::Error::from)
        .and_then(|mut selection| {
            twins::apply(&mut selection, &args.twins)?;
            Ok(selection)
        });
    let selection = match selection {
        Ok(selection) => selection,
        Err(message) => {
            eprintln!("ipcbench bench: {message}");
            return super::EXIT_BAD_INPUT;
        }
    };
    if let Some(path) = &args.json {
        if let Some(problem) = unwritable(path) {
            eprintln!("ipcbench bench: --json {}: {problem}", path.display());
            return super::EXIT_BAD_INPUT;
        }
    }
    // A peer that cannot start fails here, with why, before minutes of measuring.
    for lane in &lanes {
        let wanted = selection.iter().any(|w| {
            w.shape
                .flavor
                .starts_with(&format!("{}-", lane.peer().name))
        });
        if !wanted {
            continue;
        }
        match lane.hello() {
            Ok(hello) => eprintln!(
                "peer {}: {} {} (start methods {})",
                lane.peer().name,
                hello.implementation,
                hello.version,
                hello.start_methods.join(", ")
            ),
            Err(e) => {
                eprintln!(
                    "ipcbench bench: --peer {}: cannot start the peer: {e}",
                    lane.peer().name
                );
                return super::EXIT_FAILURE;
            }
        }
    }
    let profile = if args.quick {
        Profile::Quick
    } else {
        Profile::Full
    };
    let repeats = profile.repeats();
    let bar = indicatif::ProgressBar::new((selection.len() * repeats) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut started = 0u64;
    let mut run = runner::run(&selection, profile, |workload, repeat| {
        bar.set_position(started);
        started += 1;
        bar.set_message(format!(
            "{} ({}/{repeats})",
            workload.shape.name,
            repeat + 1
        ));
    });
    if !args.no_matrix && args.filter.is_none() {
        if let Some(topology) = run.results.topology.clone() {
            let (core_to_core, failures) = matrix::measure(&topology, profile, |i, (a, b)| {
                bar.set_message(format!("core-to-core cpu{a}-cpu{b} (pair {})", i + 1));
            });
            run.results.core_to_core = Some(core_to_core);
            run.failures.extend(failures);
        }
    }
    bar.finish_and_clear();
    for lane in &lanes {
        lane.close();
        run.results.peers.extend(lane.info());
    }
    run.results.twins = args.twins.clone();
    for name in &args.twins {
        if let Some(twin) = twins::find(name) {
            println!(
                "twin {name} measured in place of its mechanism: {}",
                twin.about
            );
        }
    }
    print!("{}", table(&run.results));
    let _ = std::io::Write::flush(&mut std::io::stdout());
    for failure in &run.failures {
        eprintln!(
            "ipcbench bench: {} failed: {}",
            failure.workload, failure.message
        );
    }
    if let Some(path) = &args.json {
        if let Err(e) = run.results.save(path) {
            eprintln!("ipcbench bench: cannot write {}: {e}", path.display());
            return super::EXIT_FAILURE;
        }
        eprintln!("results written to {}", path.display());
    }
    if run.failures.is_empty() {
        super::EXIT_OK
    } else {
        super::EXIT_FAILURE
    }
}

/// Why `path` cannot take the results, checked before minutes of measuring.
fn unwritable(path: &std::path::Path) -> Option<String> {
    if path.is_dir() {
        return Some("is a directory".into());
    }
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    if !parent.is_dir() {
        return Some(format!("directory {} does not exist", parent.display()));
    }
    None
}

/// "950 ns", "12.3 µs", "1.25 ms", "2.00 s".
pub fn format_ns(ns: f64) -> String {
    match ns {
        n if n < 1e3 => format!("{n:.0} ns"),
        n if n < 1e6 => format!("{:.2} µs", n / 1e3),
        n if n < 1e9 => format!("{:.2} ms", n / 1e6),
        n => format!("{:.2} s", n / 1e9),
    }
}

/// "1.50 M/s", "2.40 GiB/s" and so on.
fn format_rate(value: f64, unit: &str) -> String {
    if unit == "bytes/s" {
        let gib = value / (1u64 << 30) as f64;
        if gib >= 1.0 {
            return format!("{gib:.2} GiB/s");
        }
        return format!("{:.1} MiB/s", value / (1u64 << 20) as f64);
    }
    match value {
        v if v >= 1e6 => format!("{:.2} M/s", v / 1e6),
        v if v >= 1e3 => format!("{:.1} k/s", v / 1e3),
        v => format!("{v:.0} /s"),
    }
}

fn format_ratio(ratio: Option<f64>, calibration: Option<&str>) -> String {
    match (ratio, calibration) {
        // Three significant figures: a small ratio (a spinning wake against a futex round
        // trip, a file update against a bare lock) must not print as "0.00x".
        (Some(r), Some(c)) => format!("{} {c}", human(r, Unit::Times)),
        _ => "-".into(),
    }
}

/// The terminal tables: calibration, latency, throughput.
pub fn table(results: &Results) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "ipcbench {} — {} profile — {} ({} cores), kernel {}",
        results.ipcbench_version,
        results.profile,
        results.machine.cpu_model,
        results.machine.cores,
        results.machine.kernel
    );
    for warning in results.machine_state.iter().flat_map(|m| &m.warnings) {
        let _ = writeln!(
            out,
            "WARNING: {warning}; these figures may not be the machine's own"
        );
    }
    if !results.calibration.is_empty() {
        let _ = writeln!(out, "\ncalibration (median of repeats)");
        let _ = writeln!(
            out,
            "  {:<26} {:<10} {:>14} {:>8}",
            "raw figure", "placement", "value", "spread"
        );
        for c in &results.calibration {
            let value = if c.unit == "ns" {
                format_ns(c.value)
            } else {
                format_rate(c.value, &c.unit)
            };
            let _ = writeln!(
                out,
                "  {:<26} {:<10} {:>14} {:>7.1}%",
                c.name,
                c.placement.label(),
                value,
                c.spread * 100.0
            );
        }
    }
    out.push_str(&topology_table(results));
    if !results.latency.is_empty() {
        let _ = writeln!(out, "\nlatency (per operation)");
        let _ = writeln!(
            out,
            "  {:<44} {:>10} {:>10} {:>10} {:>10} {:>8} {:>7}  ratio (p50 / raw)",
            "workload", "p50", "p99", "p99.9", "max", "samples", "spread"
        );
        for l in &results.latency {
            let p = &l.percentiles;
            let _ = writeln!(
                out,
                "  {:<44} {:>10} {:>10} {:>10} {:>10} {:>8} {:>6.1}%  {}",
                l.workload,
                format_ns(p.p50),
                format_ns(p.p99),
                format_ns(p.p999),
                format_ns(p.max),
                p.samples,
                l.spread * 100.0,
                format_ratio(l.ratio, l.calibration.as_deref())
            );
        }
    }
    if !results.throughput.is_empty() {
        let _ = writeln!(out, "\nthroughput");
        let _ = writeln!(
            out,
            "  {:<58} {:>12} {:>12} {:>7}  ratio",
            "workload", "ops", "bytes", "spread"
        );
        for t in &results.throughput {
            let _ = writeln!(
                out,
                "  {:<58} {:>12} {:>12} {:>6.1}%  {}",
                t.workload,
                format_rate(t.msgs_per_sec, "msgs/s"),
                if t.bytes_per_sec > 0.0 {
                    format_rate(t.bytes_per_sec, "bytes/s")
                } else {
                    "-".to_string()
                },
                t.spread * 100.0,
                format_ratio(t.ratio, t.calibration.as_deref())
            );
        }
    }
    let unratioed: Vec<(&str, &str)> = results
        .latency
        .iter()
        .filter_map(|l| Some((l.workload.as_str(), l.ratio_note.as_deref()?)))
        .chain(
            results
                .throughput
                .iter()
                .filter_map(|t| Some((t.workload.as_str(), t.ratio_note.as_deref()?))),
        )
        .collect();
    if !unratioed.is_empty() {
        let _ = writeln!(
            out,
            "
no ratio (never divided by a baseline of another kind or placement)"
        );
        for (workload, why) in unratioed {
            let _ = writeln!(out, "  {workload:<58} {why}");
        }
    }
    out
}

/// The topology in a few lines, and the core-to-core matrix as one row per pair.
fn topology_table(results: &Results) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if let Some(t) = &results.topology {
        let _ = writeln!(
            out,
            "\ntopology: CPUs allowed {:?} of {} online; SMT {}; LLC{} {}; NUMA {}",
            t.allowed,
            t.online.len(),
            smt_text(t),
            t.llc_level.map(|l| format!(" (L{l})")).unwrap_or_default(),
            groups_text(&t.llc_groups, "unknown"),
            groups_text(&t.numa_nodes, "unknown"),
        );
        for note in &t.notes {
            let _ = writeln!(out, "  {note}");
        }
    }
    if let Some(m) = &results.core_to_core {
        let _ = writeln!(out, "\ncore-to-core round trips (median): {}", m.rule);
        let _ = writeln!(
            out,
            "  {:<14} {:<12} {:>14} {:>14}",
            "cpus", "class", "shm ping-pong", "pipe"
        );
        let shown = |v: Option<f64>| v.map_or_else(|| "-".to_string(), format_ns);
        for p in &m.pairs {
            let _ = writeln!(
                out,
                "  {:<14} {:<12} {:>14} {:>14}{}",
                format!("cpu{}-cpu{}", p.initiator, p.responder),
                p.class.label(),
                shown(p.shm_pingpong_ns),
                shown(p.pipe_roundtrip_ns),
                p.note
                    .as_deref()
                    .map(|n| format!("  ({n})"))
                    .unwrap_or_default()
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_ratio_keeps_its_significant_figures() {
        assert_eq!(
            format_ratio(Some(0.002_61), Some("futex-roundtrip")),
            "0.00261× futex-roundtrip"
        );
        assert_eq!(
            format_ratio(Some(1.5), Some("pipe-roundtrip")),
            "1.5× pipe-roundtrip"
        );
        assert_eq!(format_ratio(None, Some("memcpy")), "-");
    }

    #[test]
    fn times_and_rates_read_well() {
        assert_eq!(format_ns(950.0), "950 ns");
        assert_eq!(format_ns(12_345.0), "12.35 µs");
        assert_eq!(format_ns(1_250_000.0), "1.25 ms");
        assert_eq!(format_rate(2.5e6, "msgs/s"), "2.50 M/s");
        assert_eq!(
            format_rate(3.0 * (1u64 << 30) as f64, "bytes/s"),
            "3.00 GiB/s"
        );
    }

    #[test]
    fn unwritable_json_paths_are_named_before_measuring() {
        let dir = tempfile::tempdir().unwrap();
        assert!(unwritable(dir.path()).unwrap().contains("directory"));
        assert!(unwritable(&dir.path().join("missing/r.json"))
            .unwrap()
            .contains("does not exist"));
        assert!(unwritable(&dir.path().join("r.json")).is_none());
        assert!(unwritable(std::path::Path::new("r.json")).is_none());
    }
}
