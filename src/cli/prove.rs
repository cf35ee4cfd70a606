//! `ipcbench prove`: every broken twin run through what must catch it, and a table of
//! what caught it.
//!
//! The twins are every unsafe variant of every scenario (searched with forced schedules;
//! it must be caught with the verdict kind the variant names) and every stress twin of
//! `stress::broken_targets()` (a short stress run; its books must fail it by the figure
//! `Target::expected_flaw` names). `--repeat N` runs each twin N times with different
//! seeds: a twin caught in some runs and not others proves little, so the verdict is
//! "proven" only at N/N, and for scenarios the generated cases to the first catch are
//! reported (min/median/max). `--no-regressions` leaves out the scenarios' regression
//! cases, to measure the generated search on its own.
//!
//! Exit 0 when every twin was caught for the right reason in every run, 1 otherwise
//! (each such twin named, with what happened and the command that reruns it), 2 on bad
//! input.

use super::{check_output_dir, EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK};
use crate::report::junit::{Suite, TestCase};
use crate::scenario::check::{self as search, Plan, Search};
use crate::scenario::{self, CaseOutcome, Expectation, Scenario, Variant};
use crate::stress::{self, Config, FaultKind, Flaw};
use anyhow::Context;
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Worker processes of a stress twin's run (as the short stress profile).
const STRESS_PROCS: usize = 8;
/// Most runs per twin `--repeat` accepts.
const MAX_REPEAT: u32 = 1000;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only these twins (repeatable): a twin's name (`ticket-oversell/unlocked`,
    /// `stress/pool-lying`), a scenario's name (its unsafe variants), or `stress` (every
    /// stress twin). Default: every twin.
    #[arg(long = "twin", value_name = "NAME")]
    pub twins: Vec<String>,
    /// Runs of each twin, each with its own seed (seed, seed+1, ...): the catch rate k/N.
    #[arg(long, default_value_t = 1)]
    pub repeat: u32,
    /// First seed (default: from the clock; printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Generated cases per scenario run (the search stops at the first catch).
    #[arg(long)]
    pub cases: Option<u32>,
    /// Leave out the scenarios' regression cases: the generated search's own catch rate.
    #[arg(long)]
    pub no_regressions: bool,
    /// How long each stress twin runs, e.g. 2s, 1500ms.
    #[arg(long, default_value = "2s")]
    pub stress_duration: String,
    /// Also write the results (per twin, per run) as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also write JUnit XML (one test case per twin) to this file.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Test hook: run this scenario variant as if it were a twin, even a safe one (which
    /// can never be caught, so the proof must fail). Repeatable.
    #[arg(long, hide = true, value_name = "SCENARIO/VARIANT")]
    pub as_twin: Vec<String>,
}

/// A broken twin: an unsafe scenario variant, or a broken stress target (by name).
#[derive(Clone)]
pub enum Twin {
    Scenario(&'static dyn Scenario, Variant),
    Stress(String),
}

impl Twin {
    /// `scenario/variant`, or `stress/target`.
    pub fn name(&self) -> String {
        match self {
            Twin::Scenario(s, v) => format!("{}/{}", s.name(), v.name),
            Twin::Stress(target) => format!("stress/{target}"),
        }
    }

    fn group(&self) -> &'static str {
        match self {
            Twin::Scenario(s, _) => s.name(),
            Twin::Stress(_) => "stress",
        }
    }
}

/// Every twin, scenarios first in catalogue order, then the stress twins.
pub fn twins() -> Vec<Twin> {
    let mut twins: Vec<Twin> = scenario::catalogue()
        .iter()
        .flat_map(|s| {
            s.variants()
                .iter()
                .filter(|v| v.expected == Expectation::Caught && v.pending.is_none())
                .map(move |v| Twin::Scenario(*s, *v))
        })
        .collect();
    twins.extend(
        stress::broken_targets()
            .iter()
            .map(|t| Twin::Stress(t.name())),
    );
    twins
}

/// The twins `filters` name (all when there are none); a filter that names nothing is an
/// error listing the valid names.
pub fn select(filters: &[String]) -> Result<Vec<Twin>, String> {
    let all = twins();
    if filters.is_empty() {
        return Ok(all);
    }
    for f in filters {
        if !all.iter().any(|t| t.name() == *f || t.group() == f) {
            let names: Vec<String> = all.iter().map(Twin::name).collect();
            return Err(format!(
                "--twin: no twin is named {f:?}; twins: {} (or a scenario's name, or \"stress\")",
                names.join(", ")
            ));
        }
    }
    Ok(all
        .into_iter()
        .filter(|t| filters.iter().any(|f| t.name() == *f || t.group() == f))
        .collect())
}

/// One run of one twin.
#[derive(Clone, Debug, Serialize)]
pub struct Attempt {
    pub seed: u64,
    /// None when caught for the right reason; otherwise what happened instead.
    pub failure: Option<String>,
    /// The verdict (scenarios) or the figures the run failed by (stress), "holds" or
    /// "passed" when nothing caught it.
    pub got: String,
    /// Scenarios: the generated case that caught it (1 = the first).
    pub cases: Option<u32>,
    /// Scenarios: the regression case that caught it.
    pub regression: Option<String>,
    pub seconds: f64,
    /// The command that reruns this run.
    pub rerun: String,
}

/// Every run of one twin.
#[derive(Clone, Debug, Serialize)]
pub struct TwinReport {
    pub twin: String,
    /// "scenario search" or "stress books".
    pub caught_by: String,
    /// The verdict kind (scenarios) or figure (stress) it must be caught by.
    pub expected: String,
    pub attempts: Vec<Attempt>,
}

impl TwinReport {
    pub fn caught(&self) -> usize {
        self.attempts.iter().filter(|a| a.failure.is_none()).count()
    }

    /// Caught for the right reason in every run (and run at least once).
    pub fn proven(&self) -> bool {
        !self.attempts.is_empty() && self.caught() == self.attempts.len()
    }

    /// Generated cases to the first catch over the runs a generated case caught:
    /// (min, median, max); the median of an even count is the lower middle.
    pub fn cases_to_catch(&self) -> Option<(u32, u32, u32)> {
        let mut cases: Vec<u32> = self
            .attempts
            .iter()
            .filter(|a| a.failure.is_none())
            .filter_map(|a| a.cases)
            .collect();
        cases.sort_unstable();
        Some((
            *cases.first()?,
            cases[(cases.len() - 1) / 2],
            *cases.last()?,
        ))
    }

    /// How it was caught, in a few words: "case 3", "cases 1/2/9", "regression case x
    /// (10)", "2.0 s".
    fn to_catch(&self) -> String {
        let mut parts = Vec::new();
        match self.cases_to_catch() {
            Some((a, _, c)) if a == c && self.attempts.len() == 1 => {
                parts.push(format!("case {a}"))
            }
            Some((a, b, c)) => parts.push(format!("cases {a}/{b}/{c}")),
            None => {}
        }
        let by_regression: Vec<&str> = self
            .attempts
            .iter()
            .filter(|a| a.failure.is_none())
            .filter_map(|a| a.regression.as_deref())
            .collect();
        if let Some(name) = by_regression.first() {
            parts.push(format!("regression {name} ({})", by_regression.len()));
        }
        if parts.is_empty() && self.caught_by == "stress books" && self.caught() > 0 {
            let secs: f64 =
                self.attempts.iter().map(|a| a.seconds).sum::<f64>() / self.attempts.len() as f64;
            parts.push(format!("{secs:.1} s run"));
        }
        if parts.is_empty() {
            "-".into()
        } else {
            parts.join(", ")
        }
    }

    /// The verdict to show: the first run's that failed, else the first run's.
    fn got(&self) -> &str {
        self.attempts
            .iter()
            .find(|a| a.failure.is_some())
            .or(self.attempts.first())
            .map_or("-", |a| a.got.as_str())
    }

    fn seconds(&self) -> f64 {
        self.attempts.iter().map(|a| a.seconds).sum()
    }

    /// "caught 3/10: not caught: ... (seed 5; rerun: ...)" for the first run not caught
    /// for the right reason; None when proven.
    pub fn why_not(&self) -> Option<String> {
        if self.attempts.is_empty() {
            return Some("never run".into());
        }
        let first = self.attempts.iter().find(|a| a.failure.is_some())?;
        Some(format!(
            "caught {}/{}: {} (seed {}; rerun: {})",
            self.caught(),
            self.attempts.len(),
            first.failure.as_deref().unwrap_or_default(),
            first.seed,
            first.rerun
        ))
    }

    pub fn to_junit(&self) -> TestCase {
        let class = if self.caught_by == "stress books" {
            "prove.stress"
        } else {
            "prove.scenario"
        };
        let case = TestCase::new(class, self.twin.as_str(), self.seconds());
        let Some(why) = self.why_not() else {
            return case;
        };
        let detail: Vec<String> = self
            .attempts
            .iter()
            .filter_map(|a| {
                let failure = a.failure.as_ref()?;
                Some(format!("seed {}: {failure}\nrerun: {}", a.seed, a.rerun))
            })
            .collect();
        case.failed(format!("{}: {why}", self.twin), detail.join("\n"))
    }
}

/// Why a scenario run did not catch its twin for the right reason; None when it did. A
/// verdict of Holds is "not caught" whatever the variant says (so a safe variant passed
/// as a twin can never be proven).
pub fn judge_scenario(variant: &Variant, outcome: &Result<CaseOutcome, String>) -> Option<String> {
    match outcome {
        Err(e) => Some(format!("could not run: {e}")),
        Ok(o) if o.verdict.holds() => Some(format!(
            "not caught: expected {}, got holds",
            if variant.expected == Expectation::Caught {
                variant.expected_text()
            } else {
                "a catch (a safe variant is no twin)".into()
            }
        )),
        Ok(o) => variant.mismatch(&o.verdict),
    }
}

/// Why a stress run did not catch its twin for the right reason; None when it did: the
/// run failed, and by the figure the twin declares (others may come with it).
pub fn judge_stress(expected: Option<Flaw>, flaws: &[Flaw]) -> Option<String> {
    let names = || flaws.iter().map(|f| f.name()).collect::<Vec<_>>().join("+");
    match expected {
        _ if flaws.is_empty() => Some(format!(
            "not caught: the run passed its books (expected {})",
            expected.map_or("a failure", Flaw::name)
        )),
        None => Some(format!(
            "expected figure not declared (Target::expected_flaw), so no catch can be for \
             the right reason; the run failed by {}",
            names()
        )),
        Some(flaw) if flaws.contains(&flaw) => None,
        Some(flaw) => Some(format!(
            "caught for the wrong reason: expected {}, got {}",
            flaw.name(),
            names()
        )),
    }
}

/// How the twins run: everything but which twins.
struct Settings {
    seed: u64,
    repeat: u32,
    cases: u32,
    regressions: bool,
    stress_duration: Duration,
    stress_duration_text: String,
}

fn prove_scenario(
    scenario: &'static dyn Scenario,
    variant: Variant,
    seed: u64,
    s: &Settings,
) -> Attempt {
    let options = Search {
        cases: s.cases,
        seed,
        ..Search::default()
    };
    let plan = Plan {
        regressions: s.regressions,
        shrink: false,
    };
    let result = search::search_with(scenario, variant, options, plan);
    let name = format!("{}/{}", scenario.name(), variant.name);
    let rerun = result.reproduction().map(|r| r.command).unwrap_or_else(|| {
        format!(
            "ipcbench prove --twin {name} --seed {seed} --cases {}{}",
            s.cases,
            if s.regressions {
                ""
            } else {
                " --no-regressions"
            }
        )
    });
    Attempt {
        seed,
        failure: judge_scenario(&variant, &result.outcome),
        got: result.verdict_label().to_string(),
        cases: result.first_catch,
        regression: result.regression.map(str::to_string),
        seconds: result.elapsed.as_secs_f64(),
        rerun,
    }
}

fn prove_stress(target: &str, seed: u64, s: &Settings) -> Attempt {
    let started = Instant::now();
    let rerun = format!(
        "ipcbench stress --target {target} --duration {} --procs {STRESS_PROCS} --seed {seed}",
        s.stress_duration_text
    );
    let Some(mut twin) = stress::broken_targets()
        .into_iter()
        .find(|t| t.name() == target)
    else {
        return Attempt {
            seed,
            failure: Some(format!("no stress twin named {target}")),
            got: "-".into(),
            cases: None,
            regression: None,
            seconds: 0.0,
            rerun,
        };
    };
    let config = Config::new(
        s.stress_duration,
        STRESS_PROCS,
        FaultKind::ALL.to_vec(),
        seed,
    )
    // A twin that must hang is called hung after a short stall, as `stress` and the short
    // profile do, rather than at the end of a long bound.
    .for_twin(twin.expected_flaw());
    let report = stress::run(twin.as_mut(), &config, &mut |_| {});
    let flaws = report.flaws();
    let got = if flaws.is_empty() {
        "passed".to_string()
    } else {
        flaws.iter().map(|f| f.name()).collect::<Vec<_>>().join("+")
    };
    Attempt {
        seed,
        failure: judge_stress(twin.expected_flaw(), &flaws),
        got,
        cases: None,
        regression: None,
        seconds: started.elapsed().as_secs_f64(),
        rerun,
    }
}

fn prove_twin(twin: &Twin, s: &Settings) -> TwinReport {
    let attempts = (0..s.repeat)
        .map(|i| {
            let seed = s.seed.wrapping_add(u64::from(i));
            match twin {
                Twin::Scenario(scenario, variant) => prove_scenario(*scenario, *variant, seed, s),
                Twin::Stress(target) => prove_stress(target, seed, s),
            }
        })
        .collect();
    let (caught_by, expected) = match twin {
        Twin::Scenario(_, v) => ("scenario search", v.expected_text()),
        Twin::Stress(target) => (
            "stress books",
            stress::broken_targets()
                .iter()
                .find(|t| t.name() == *target)
                .and_then(|t| t.expected_flaw())
                .map_or("(not declared)".to_string(), |f| f.name().to_string()),
        ),
    };
    TwinReport {
        twin: twin.name(),
        caught_by: caught_by.into(),
        expected,
        attempts,
    }
}

/// The twins, the settings, or why the arguments are bad.
fn parse(args: &Args) -> anyhow::Result<(Vec<Twin>, Settings)> {
    if args.repeat == 0 || args.repeat > MAX_REPEAT {
        anyhow::bail!(
            "--repeat: {} is out of range: give 1 to {MAX_REPEAT}",
            args.repeat
        );
    }
    if args.cases == Some(0) {
        anyhow::bail!("--cases must be at least 1");
    }
    let stress_duration = stress::parse_duration(&args.stress_duration)
        .map_err(|e| anyhow::anyhow!("--stress-duration: {e}"))?;
    for (flag, path) in [("--json", &args.json), ("--junit", &args.junit)] {
        if let Some(path) = path {
            check_output_dir(flag, path).map_err(anyhow::Error::msg)?;
        }
    }
    let mut twins = if args.as_twin.is_empty() || !args.twins.is_empty() {
        select(&args.twins).map_err(anyhow::Error::msg)?
    } else {
        Vec::new()
    };
    for name in &args.as_twin {
        let (s, v) = name
            .split_once('/')
            .ok_or_else(|| anyhow::anyhow!("--as-twin: {name:?} is not SCENARIO/VARIANT"))?;
        let scenario = scenario::find(s).context("--as-twin")?;
        twins.push(Twin::Scenario(
            scenario,
            scenario::find_variant(scenario, v).context("--as-twin")?,
        ));
    }
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    });
    Ok((
        twins,
        Settings {
            seed,
            repeat: args.repeat,
            cases: args.cases.unwrap_or(Search::default().cases),
            regressions: !args.no_regressions,
            stress_duration,
            stress_duration_text: args.stress_duration.clone(),
        },
    ))
}

#[derive(Serialize)]
struct ProveJson<'a> {
    seed: u64,
    repeat: u32,
    cases: u32,
    regressions: bool,
    proven: bool,
    twins: &'a [TwinReport],
}

pub fn main(args: Args) -> i32 {
    let (twins, settings) = match parse(&args) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("ipcbench prove: {e:#}");
            return EXIT_BAD_INPUT;
        }
    };
    println!(
        "prove: {} twin(s), {} run(s) each, seed {}, {} generated case(s) per scenario run{}, stress runs of {}",
        twins.len(),
        settings.repeat,
        settings.seed,
        settings.cases,
        if settings.regressions {
            " after its regression cases"
        } else {
            " (no regression cases)"
        },
        settings.stress_duration_text
    );
    let mut reports = Vec::new();
    for twin in &twins {
        let report = prove_twin(twin, &settings);
        eprintln!(
            "prove: {}: caught {}/{} ({:.1} s)",
            report.twin,
            report.caught(),
            report.attempts.len(),
            report.seconds()
        );
        reports.push(report);
    }
    print_table(&reports);
    let proven = reports.iter().all(TwinReport::proven);
    if let Some(path) = &args.junit {
        let mut suite = Suite::new("ipcbench prove");
        suite.cases = reports.iter().map(TwinReport::to_junit).collect();
        if let Err(e) = suite.write(path) {
            eprintln!("ipcbench prove: {e}");
            return EXIT_BAD_INPUT;
        }
    }
    if let Some(path) = &args.json {
        let json = ProveJson {
            seed: settings.seed,
            repeat: settings.repeat,
            cases: settings.cases,
            regressions: settings.regressions,
            proven,
            twins: &reports,
        };
        let written = serde_json::to_string_pretty(&json)
            .map_err(|e| e.to_string())
            .and_then(|text| std::fs::write(path, text + "\n").map_err(|e| e.to_string()));
        if let Err(e) = written {
            eprintln!("ipcbench prove: cannot write {}: {e}", path.display());
            return EXIT_BAD_INPUT;
        }
    }
    if proven {
        println!("\nPROVEN: every twin caught for the right reason in every run");
        EXIT_OK
    } else {
        println!();
        for r in &reports {
            if let Some(why) = r.why_not() {
                println!("NOT PROVEN: {}: {why}", r.twin);
            }
        }
        EXIT_FAILURE
    }
}

fn print_table(reports: &[TwinReport]) {
    let head = [
        "twin",
        "caught by",
        "expected",
        "got",
        "caught",
        "to the catch",
        "time",
    ]
    .map(String::from);
    let rows: Vec<[String; 7]> = reports
        .iter()
        .map(|r| {
            [
                r.twin.clone(),
                r.caught_by.clone(),
                r.expected.clone(),
                r.got().to_string(),
                format!("{}/{}", r.caught(), r.attempts.len()),
                r.to_catch(),
                format!("{:.1}s", r.seconds()),
            ]
        })
        .collect();
    // Columns as wide as their widest cell, so a long entry does not shift the rest.
    let widths: Vec<usize> = (0..head.len())
        .map(|i| {
            std::iter::once(&head)
                .chain(&rows)
                .map(|row| row[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    println!();
    for row in std::iter::once(&head).chain(&rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, width))| {
                // The counts and the time read best right-aligned.
                if i == 4 || i == 6 {
                    format!("{cell:>width$}")
                } else {
                    format!("{cell:<width$}")
                }
            })
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Verdict;

    fn outcome(verdict: Verdict) -> Result<CaseOutcome, String> {
        Ok(CaseOutcome::new(verdict, Vec::new()))
    }

    #[test]
    fn a_scenario_twin_is_caught_only_with_its_kind() {
        let v = Variant::caught_violated("unsafe", "");
        assert_eq!(
            judge_scenario(&v, &outcome(Verdict::violated("x", "y"))),
            None
        );
        let held = judge_scenario(&v, &outcome(Verdict::Holds)).unwrap();
        assert!(held.starts_with("not caught: expected violated"), "{held}");
        let wrong = judge_scenario(
            &v,
            &outcome(Verdict::Crashed {
                who: "w".into(),
                signal: 11,
            }),
        )
        .unwrap();
        assert!(wrong.starts_with("caught for the wrong reason"), "{wrong}");
        let error = judge_scenario(&v, &Err("no fork".into())).unwrap();
        assert_eq!(error, "could not run: no fork");
    }

    #[test]
    fn a_safe_variant_is_never_a_caught_twin() {
        let v = Variant::holds("safe", "");
        assert!(judge_scenario(&v, &outcome(Verdict::Holds))
            .unwrap()
            .starts_with("not caught"));
        assert!(judge_scenario(&v, &outcome(Verdict::violated("x", "y"))).is_some());
    }

    #[test]
    fn a_stress_twin_must_fail_by_its_declared_figure() {
        assert_eq!(judge_stress(Some(Flaw::Losses), &[Flaw::Losses]), None);
        assert_eq!(
            judge_stress(Some(Flaw::Losses), &[Flaw::Duplicates, Flaw::Losses]),
            None
        );
        let passed = judge_stress(Some(Flaw::Losses), &[]).unwrap();
        assert!(passed.starts_with("not caught") && passed.contains("losses"));
        let wrong = judge_stress(Some(Flaw::Duplicates), &[Flaw::Hung]).unwrap();
        assert_eq!(
            wrong,
            "caught for the wrong reason: expected duplicates, got hung"
        );
        let undeclared = judge_stress(None, &[Flaw::Losses]).unwrap();
        assert!(
            undeclared.starts_with("expected figure not declared")
                && undeclared.ends_with("losses"),
            "{undeclared}"
        );
        assert!(judge_stress(None, &[]).unwrap().starts_with("not caught"));
    }

    fn attempt(failure: Option<&str>, cases: Option<u32>) -> Attempt {
        Attempt {
            seed: 1,
            failure: failure.map(str::to_string),
            got: "violated".into(),
            cases,
            regression: None,
            seconds: 0.5,
            rerun: "ipcbench prove --twin t --seed 1".into(),
        }
    }

    #[test]
    fn a_twin_is_proven_only_when_every_run_caught_it() {
        let report = |attempts| TwinReport {
            twin: "s/v".into(),
            caught_by: "scenario search".into(),
            expected: "violated".into(),
            attempts,
        };
        let all = report(vec![
            attempt(None, Some(4)),
            attempt(None, Some(1)),
            attempt(None, Some(9)),
        ]);
        assert!(all.proven() && all.why_not().is_none());
        assert_eq!(all.cases_to_catch(), Some((1, 4, 9)));
        assert_eq!(
            all.to_junit().outcome,
            crate::report::junit::Outcome::Passed
        );
        let most = report(vec![
            attempt(None, Some(2)),
            attempt(Some("not caught"), None),
        ]);
        assert!(!most.proven());
        assert_eq!(most.cases_to_catch(), Some((2, 2, 2)));
        let why = most.why_not().unwrap();
        assert!(
            why.starts_with("caught 1/2: not caught (seed 1; rerun: "),
            "{why}"
        );
        match most.to_junit().outcome {
            crate::report::junit::Outcome::Failed { message, detail } => {
                assert!(message.starts_with("s/v: caught 1/2"), "{message}");
                assert!(detail.contains("rerun: ipcbench prove"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        assert!(!report(Vec::new()).proven());
    }

    #[test]
    fn twins_select_by_name_group_or_nothing_else() {
        let all = twins();
        assert!(all.iter().any(|t| t.name() == "ticket-oversell/unlocked"));
        assert!(all.iter().all(|t| !t.name().ends_with("/flock")));
        assert_eq!(select(&[]).unwrap().len(), all.len());
        let one = select(&["semaphore-capacity/miscounted".into()]).unwrap();
        assert_eq!(one.len(), 1);
        let stress = select(&["stress".into()]).unwrap();
        assert_eq!(stress.len(), stress::broken_targets().len());
        let err = select(&["ticket-oversell/flock".into()]).err().unwrap();
        assert!(err.contains("ticket-oversell/unlocked"), "{err}");
    }
}
