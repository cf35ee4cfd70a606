//! `ipcbench check`: run the race scenarios and compare each verdict with its expectation.
//!
//! Prints one row per variant (scenario, variant, expected, verdict, cases, time, cases/s)
//! and, for every case that did not hold, its reproduction: seed, shrunk parameters,
//! schedule and the exact command that reruns that one case (`--replay`). Exit 0 when
//! every verdict matches its expectation, 1 when one does not, 2 on bad input.
//! `--junit FILE` writes one JUnit test case per variant (see `report::junit`).

use super::{EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK};
use crate::report::junit::{Suite, TestCase};
use crate::results::Results;
use crate::scenario::check::{self as search, Search, VariantResult};
use crate::scenario::{Scenario, Variant};
use anyhow::Context;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this scenario (see `ipcbench list`).
    #[arg(long)]
    pub scenario: Option<String>,
    /// Only this variant of the scenario.
    #[arg(long)]
    pub variant: Option<String>,
    /// Generated cases per variant.
    #[arg(long)]
    pub cases: Option<u32>,
    /// Seed of the case generator (default: from the clock; printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Also write the results (schema of `results::Results`) to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also write JUnit XML (one test case per variant) to this file.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Rerun exactly one case, given as the JSON a reproduction prints.
    #[arg(long, requires_all = ["scenario", "variant"])]
    pub replay: Option<String>,
    /// Check a broken twin (an unsafe variant, `SCENARIO/VARIANT`) as if it were the
    /// mechanism under test, expected to hold (repeatable): what a regression looks like
    /// in the table, the results and the report. Recorded in the results.
    #[arg(long = "twin", value_name = "SCENARIO/VARIANT")]
    pub twins: Vec<String>,
    /// Run the scenarios on a peer's own mechanisms instead: `cpython` runs them on
    /// Python's multiprocessing, through python3 (`IPCBENCH_PYTHON` names another).
    #[arg(long, value_name = "PEER", value_parser = ["cpython"])]
    pub peer: Option<String>,
}

pub fn main(args: Args) -> i32 {
    if let Some(path) = &args.junit {
        if let Err(e) = super::check_output_dir("--junit", path) {
            eprintln!("ipcbench check: {e}");
            return EXIT_BAD_INPUT;
        }
    }
    match run(&args) {
        Ok((results, pending)) => {
            print_table(&results);
            if let Some(path) = &args.junit {
                let mut suite = Suite::new("ipcbench check");
                suite.cases = results.iter().map(VariantResult::to_junit).collect();
                suite.cases.extend(pending);
                if let Err(e) = suite.write(path) {
                    eprintln!("ipcbench check: {e}");
                    return EXIT_BAD_INPUT;
                }
            }
            if let Some(path) = &args.json {
                let mut model = Results::new("check");
                model.scenarios = results.iter().map(VariantResult::to_model).collect();
                model.twins = args.twins.clone();
                if let Err(e) = model.save(path) {
                    eprintln!("ipcbench check: cannot write {}: {e}", path.display());
                    return EXIT_BAD_INPUT;
                }
            }
            if results.iter().all(VariantResult::matches) {
                EXIT_OK
            } else {
                EXIT_FAILURE
            }
        }
        Err(error) => {
            eprintln!("ipcbench check: {error:#}");
            EXIT_BAD_INPUT
        }
    }
}

/// The variants searched, and the JUnit cases of those not run (pending).
fn run(args: &Args) -> anyhow::Result<(Vec<VariantResult>, Vec<TestCase>)> {
    if let Some(case) = &args.replay {
        let mut scenario = args.scenario.as_deref().unwrap_or_default();
        if args.peer.is_some() {
            // `--peer cpython --scenario ticket-oversell`: the Python one.
            if let Some(python) = crate::scenario::cpython::find(scenario) {
                scenario = python.name();
            }
        }
        let variant = args.variant.as_deref().unwrap_or_default();
        let replayed = search::replay(scenario, variant, case).context("--replay")?;
        return Ok((vec![replayed], Vec::new()));
    }
    if args.cases == Some(0) {
        anyhow::bail!("--cases must be at least 1");
    }
    let mut selected = match &args.peer {
        Some(peer) => {
            anyhow::ensure!(
                args.twins.is_empty(),
                "--twin names ipcbench's broken twins; it does not go with --peer"
            );
            crate::measure::peer::cpython::probe()
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("--peer {peer}"))?;
            search::select_peer(peer, args.scenario.as_deref(), args.variant.as_deref())?
        }
        None => search::select(args.scenario.as_deref(), args.variant.as_deref())?,
    };
    for name in &args.twins {
        let (scenario, twin) = as_mechanism_under_test(name).map_err(anyhow::Error::msg)?;
        match selected
            .iter_mut()
            .find(|(s, v)| s.name() == scenario.name() && v.name == twin.name)
        {
            Some(slot) => slot.1 = twin,
            None => selected.push((scenario, twin)),
        }
    }
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    });
    println!("seed {seed}");
    for name in &args.twins {
        println!("twin {name}: checked as the mechanism under test, expected to hold");
    }
    let mut results = Vec::new();
    let mut pending = Vec::new();
    for (scenario, variant) in selected {
        if let Some(reason) = variant.pending {
            println!("{}/{}: not run ({reason})", scenario.name(), variant.name);
            pending.push(
                TestCase::new(format!("check.{}", scenario.name()), variant.name, 0.0)
                    .skipped(format!("not run: {reason}")),
            );
            continue;
        }
        let options = Search {
            cases: args.cases.unwrap_or(Search::default().cases),
            seed,
            max_shrink_time: Duration::from_secs(20),
        };
        results.push(search::search(scenario, variant, options));
    }
    Ok((results, pending))
}

/// The broken twin `name` (an unsafe variant), expected to hold as the mechanism under
/// test would be.
fn as_mechanism_under_test(name: &str) -> Result<(&'static dyn Scenario, Variant), String> {
    super::prove::twins()
        .into_iter()
        .find_map(|twin| match twin {
            super::prove::Twin::Scenario(s, v) if format!("{}/{}", s.name(), v.name) == name => {
                Some((s, Variant::holds(v.name, v.about)))
            }
            _ => None,
        })
        .ok_or_else(|| {
            format!(
                "--twin: {name:?} is not a broken twin; the twins are the unsafe variants \
                 (SCENARIO/VARIANT, see `ipcbench prove --help` and `ipcbench list`)"
            )
        })
}

fn print_table(results: &[VariantResult]) {
    println!(
        "{:<22} {:<22} {:<14} {:<9} {:<5} {:>6} {:>9} {:>8}",
        "scenario", "variant", "expected", "verdict", "ok", "cases", "time", "cases/s"
    );
    for r in results {
        println!(
            "{:<22} {:<22} {:<14} {:<9} {:<5} {:>6} {:>8.2}s {:>8.1}",
            r.scenario,
            r.variant.name,
            r.variant.expected_kind(),
            r.verdict_label(),
            if r.matches() { "yes" } else { "NO" },
            r.cases,
            r.elapsed.as_secs_f64(),
            r.cases_per_second()
        );
    }
    for r in results
        .iter()
        .filter(|r| r.failing.is_some() || r.outcome.is_err())
    {
        println!();
        let what = if r.matches() {
            format!("caught, as expected: {}", r.variant.expected_text())
        } else {
            "UNEXPECTED".to_string()
        };
        println!("{}/{} ({what}): {}", r.scenario, r.variant.name, r.detail());
        if let Some(repro) = r.reproduction() {
            println!("  seed:       {}", repro.seed);
            println!("  parameters: {}", repro.parameters);
            println!("  schedule:   {}", repro.schedule);
            println!("  rerun:      {}", repro.command);
            if crate::scenario::find(r.scenario).is_ok_and(|s| !s.reproducible()) {
                println!("              (a race left to timing: the rerun fails most times, not every time)");
            }
        }
    }
}
