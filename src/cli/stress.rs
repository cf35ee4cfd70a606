//! `ipcbench stress`: bounded stress runs with fault injection.

use crate::results::Results;
use crate::stress::{self, Config, StressReport};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How long each target runs, e.g. 30s, 2m, 500ms.
    #[arg(long, default_value = "30s")]
    pub duration: String,
    /// Worker processes per target.
    #[arg(long)]
    pub procs: Option<usize>,
    /// Comma-separated faults: kill, stop, slow (or none).
    #[arg(long, default_value = "kill,stop,slow")]
    pub faults: String,
    /// One target (e.g. pipe-duplex) or a family (e.g. pipe); default: every target.
    #[arg(long)]
    pub target: Option<String>,
    /// Seed of the fault schedule; the same seed gives the same faults at the same
    /// points of progress. Default: drawn from the clock and printed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Write results as JSON (the results model, `stress` filled) to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also run a broken stress twin (repeatable; `stress/NAME` or `NAME`, see `ipcbench
    /// prove`), to watch the books and the report catch it. Recorded in the results.
    #[arg(long = "twin", value_name = "NAME")]
    pub twins: Vec<String>,
}

/// Default worker count: many more processes than the two cores of the reference machine.
const DEFAULT_PROCS: usize = 16;

pub fn main(args: Args) -> i32 {
    let bad = |message: String| {
        eprintln!("ipcbench stress: {message}");
        super::EXIT_BAD_INPUT
    };
    let duration = match stress::parse_duration(&args.duration) {
        Ok(d) => d,
        Err(e) => return bad(format!("--duration: {e}")),
    };
    let faults = match stress::parse_faults(&args.faults) {
        Ok(f) => f,
        Err(e) => return bad(format!("--faults: {e}")),
    };
    let procs = args.procs.unwrap_or(DEFAULT_PROCS);
    if procs == 0 || procs > stress::board::MAX_SLOTS {
        return bad(format!(
            "--procs: {procs} is out of range: give 1 to {}",
            stress::board::MAX_SLOTS
        ));
    }
    let mut targets = match stress::select_targets(args.target.as_deref()) {
        Ok(t) => t,
        Err(e) => return bad(format!("--target: {e}")),
    };
    let mut twins = Vec::new();
    for name in &args.twins {
        let bare = name.strip_prefix("stress/").unwrap_or(name);
        match stress::broken_targets()
            .into_iter()
            .find(|t| t.name() == bare)
        {
            Some(twin) => {
                targets.push(twin);
                twins.push(format!("stress/{bare}"));
            }
            None => {
                let known: Vec<String> =
                    stress::broken_targets().iter().map(|t| t.name()).collect();
                return bad(format!(
                    "--twin: no broken stress twin is named {bare:?}; the twins: {}",
                    known.join(", ")
                ));
            }
        }
    }
    if let Some(path) = &args.json {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                return bad(format!(
                    "--json: directory {} does not exist",
                    dir.display()
                ));
            }
        }
    }
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    });
    let fault_names: Vec<&str> = faults.iter().map(|f| f.name()).collect();
    println!(
        "stress: {} target(s), {:?} each, {procs} processes, faults {}, seed {seed}",
        targets.len(),
        duration,
        if fault_names.is_empty() {
            "none".to_string()
        } else {
            fault_names.join(",")
        }
    );

    let mut reports = Vec::new();
    for target in targets.iter_mut() {
        let config =
            Config::new(duration, procs, faults.clone(), seed).for_twin(target.expected_flaw());
        let bar = progress_bar(&target.name(), duration);
        let report = stress::run(target.as_mut(), &config, &mut |tick| {
            bar.set_position(tick.elapsed.as_millis().min(duration.as_millis()) as u64);
            bar.set_message(format!("{} msgs, {} faults", tick.messages, tick.faults));
        });
        bar.finish_and_clear();
        print_failures(&report);
        reports.push(report);
    }
    print_table(&reports);

    if let Some(path) = &args.json {
        let mut results = Results::new("stress");
        results.stress = reports.iter().map(StressReport::outcome).collect();
        results.twins = twins;
        if let Err(e) = results.save(path) {
            eprintln!("ipcbench stress: cannot write {}: {e}", path.display());
            return super::EXIT_FAILURE;
        }
        println!("results written to {}", path.display());
    }
    if reports.iter().all(StressReport::passed) {
        super::EXIT_OK
    } else {
        println!("rerun: ipcbench stress --seed {seed} --duration {} --procs {procs} --faults {} [--target NAME]",
            args.duration, args.faults);
        super::EXIT_FAILURE
    }
}

fn progress_bar(name: &str, duration: Duration) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(duration.as_millis() as u64);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{prefix:>14} [{bar:30}] {elapsed:>4} {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(name.to_string());
    bar
}

fn print_failures(report: &StressReport) {
    for note in &report.notes {
        println!("{}: {note}", report.target);
    }
    if report.kills > 0 {
        println!(
            "{}: slowest death (SIGKILL to reaped) {:.0} ms; torn frames refused {}",
            report.target, report.slowest_death_ms, report.torn_rejected
        );
    }
    if report.passed() {
        return;
    }
    println!("{}: FAILED", report.target);
    for line in report
        .hangs
        .iter()
        .map(|h| format!("hang: {h}"))
        .chain(report.leaks.iter().map(|l| format!("leak: {l}")))
        .chain(report.errors.iter().map(|e| format!("error: {e}")))
        .chain(report.samples.iter().cloned())
    {
        println!("  {line}");
    }
}

fn print_table(reports: &[StressReport]) {
    println!(
        "{:<18} {:>6} {:>5} {:>5} {:>5} {:>5} {:>9} {:>11} {:>10} {:>9} {:>5} {:>6} {:>4} {:>7} {:>5} {:>5}  verdict",
        "target", "secs", "procs", "kill", "stop", "slow", "faults/m", "messages", "msgs/s",
        "in-flight", "torn", "losses", "dups", "corrupt", "hangs", "leaks"
    );
    for r in reports {
        println!(
            "{:<18} {:>6.1} {:>5} {:>5} {:>5} {:>5} {:>9.0} {:>11} {:>10.0} {:>9} {:>5} {:>6} {:>4} {:>7} {:>5} {:>5}  {}",
            r.target,
            r.seconds,
            r.procs,
            r.kills,
            r.stops,
            r.slows,
            r.faults_per_minute(),
            r.messages,
            r.messages_per_second(),
            r.accounted_in_flight,
            r.torn_rejected,
            r.losses,
            r.duplicates,
            r.corrupt,
            r.hangs.len(),
            r.leaks.len(),
            if r.passed() { "ok" } else { "FAILED" }
        );
    }
}
