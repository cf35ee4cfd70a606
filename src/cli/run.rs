//! `ipcbench run`: the main job: calibrate, bench, check scenarios, stress, and write the HTML report.
//!
//! An orchestrator over small steps with the results model as the glue: each step adds
//! its part to one `Results`, and the report is built from it. A step whose module is not
//! built yet says so (in the terminal and on the page) instead of producing figures; a
//! step that fails or panics is reported and the others still run, so one broken part
//! never costs the whole report.

use crate::process::{hygiene, watchdog};
use crate::report::html::{self, Page, Section};
use crate::results::Results;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Short profile (under 3 minutes on 2 cores).
    #[arg(long)]
    pub quick: bool,
    /// Directory for index.html and results.json (default: reports/run-<timestamp>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Steps to leave out, comma-separated: bench (calibration included), check, stress.
    #[arg(long, value_delimiter = ',')]
    pub skip: Vec<String>,
    /// A baseline results file: the page shows this run against it (the verdict line, the
    /// deltas, the distributions overlaid), and a regression makes the run exit 1.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// A deliberately broken or slowed twin in place of its mechanism (repeatable): a
    /// slowed bench twin (`queue-pipe-slowed`), an unsafe scenario variant checked as if
    /// it were the safe one (`ticket-oversell/unlocked`) or a stress twin
    /// (`stress/queue-shm-dropping`). To see what a regression looks like; recorded.
    #[arg(long = "twin", value_name = "NAME")]
    pub twins: Vec<String>,
}

/// The twins of a run, by the step that takes them.
#[derive(Clone, Debug, Default)]
pub struct Twins {
    pub bench: Vec<String>,
    pub check: Vec<String>,
    pub stress: Vec<String>,
}

impl Twins {
    /// Sorts `names` to their steps; a name that is no twin is an error naming the kinds.
    fn sort(names: &[String]) -> Result<Twins, String> {
        let mut twins = Twins::default();
        let scenario_twins: Vec<String> = super::prove::twins()
            .iter()
            .filter(|t| matches!(t, super::prove::Twin::Scenario(..)))
            .map(super::prove::Twin::name)
            .collect();
        let stress_twins: Vec<String> = crate::stress::broken_targets()
            .iter()
            .map(|t| t.name())
            .collect();
        for name in names {
            let bare = name.strip_prefix("stress/").unwrap_or(name);
            if crate::measure::twins::find(name).is_some() {
                twins.bench.push(name.clone());
            } else if scenario_twins.contains(name) {
                twins.check.push(name.clone());
            } else if stress_twins.iter().any(|t| t == bare) {
                twins.stress.push(format!("stress/{bare}"));
            } else {
                return Err(format!(
                    "--twin {name}: no such twin; slowed bench twins: {}; scenario twins: the \
                     unsafe variants (e.g. {}); stress twins: {}",
                    crate::measure::twins::SLOWED.map(|t| t.name).join(", "),
                    scenario_twins.first().map(String::as_str).unwrap_or("-"),
                    stress_twins.join(", ")
                ));
            }
        }
        Ok(twins)
    }

    /// `--twin NAME` for each of `names`.
    fn flags(names: &[String]) -> Vec<String> {
        names
            .iter()
            .flat_map(|n| ["--twin".to_string(), n.clone()])
            .collect()
    }
}

/// What the steps are given.
#[derive(Clone, Debug)]
pub struct Profile {
    pub quick: bool,
    /// Where a step may leave files (its JSON results): the report's directory.
    pub dir: PathBuf,
    /// Seed for the steps that draw random cases or faults: the run's start time, so a
    /// run can be repeated from its report.
    pub seed: u64,
    /// Broken or slowed twins each step runs in place of its mechanism.
    pub twins: Twins,
    /// Why a peer's lane was left out (e.g. "python3 not found"), for the page.
    pub peer_skipped: std::cell::RefCell<Vec<String>>,
}

/// What a step did.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Ran; `summary` is one line for the terminal, `ok` false when it found a problem
    /// (an unexpected verdict, a loss under stress).
    Done { summary: String, ok: bool },
    /// Left out with --skip.
    Skipped,
    /// Could not run to the end: the error.
    Failed(String),
}

/// One step of the run.
pub struct Step {
    pub name: &'static str,
    /// The parts of the page it fills.
    pub sections: &'static [Section],
    pub run: fn(&mut Results, &Profile) -> Outcome,
}

/// The run, in order. The bench step calibrates first, in the same measuring run as the
/// workloads, because every figure is divided by a calibration of that run.
pub const STEPS: [Step; 3] = [
    Step {
        name: "bench",
        sections: &[
            Section::Calibration,
            Section::Latency,
            Section::Throughput,
            Section::Scaling,
            Section::ProcessPool,
            Section::Peers,
        ],
        run: bench,
    },
    Step {
        name: "check",
        sections: &[Section::Scenarios],
        run: check,
    },
    Step {
        name: "stress",
        sections: &[Section::Stress],
        run: stress,
    },
];

/// Per-step bounds: hang guards, far above what each step takes (on 2 shared cores the
/// quick bench took about 10 s, check about 20 s, stress about 5 s per target).
const QUICK_LIMIT: Duration = Duration::from_secs(150);
/// Added to the bench step's bound when the CPython lane runs (it took about 40 s in the
/// quick profile on 2 shared cores).
const PEER_ALLOWANCE: Duration = Duration::from_secs(150);
const FULL_LIMIT: Duration = Duration::from_secs(3600);

/// Scenario cases per variant in the quick profile (`check`'s own default otherwise).
const QUICK_CASES: u32 = 16;
/// The same for the CPython scenarios, whose cases start a Python interpreter each (some
/// 0.3 s): 6 cases of every variant take about two minutes on 2 quiet cores, most of it
/// the hung variants' deadlines.
const QUICK_PEER_CASES: u32 = 6;

/// How long each stress target runs.
const QUICK_STRESS: &str = "3s";
const FULL_STRESS: &str = "30s";

fn limit(profile: &Profile) -> Duration {
    if profile.quick {
        QUICK_LIMIT
    } else {
        FULL_LIMIT
    }
}

/// Exit 0 is clean, 1 is "ran, found a problem" (its figures still count), anything else
/// is a failure of the step itself.
fn outcome(code: Result<i32, String>, summary: impl FnOnce() -> String) -> Outcome {
    match code {
        Ok(0) => Outcome::Done {
            summary: summary(),
            ok: true,
        },
        Ok(1) => Outcome::Done {
            summary: summary(),
            ok: false,
        },
        Ok(code) => Outcome::Failed(format!("exited with {code}; {}", summary())),
        Err(e) => Outcome::Failed(e),
    }
}

/// Calibration, then every workload, in one measuring run (`ipcbench bench`): the figures
/// are divided by the calibrations of that same run.
fn bench(results: &mut Results, profile: &Profile) -> Outcome {
    let mut args: Vec<String> = if profile.quick {
        vec!["--quick".into()]
    } else {
        Vec::new()
    };
    args.extend(Twins::flags(&profile.twins.bench));
    // The CPython lane when python3 answers; otherwise said, and the run goes on.
    let mut bound = limit(profile);
    match crate::measure::peer::cpython::probe() {
        Ok(hello) => {
            eprintln!(
                "cpython: {} {} found: its multiprocessing runs beside ipcbench (--peer cpython)",
                hello.implementation, hello.version
            );
            args.extend(["--peer".to_string(), "cpython".to_string()]);
            bound += PEER_ALLOWANCE;
        }
        Err(reason) => {
            eprintln!("cpython: skipped: {reason}");
            profile
                .peer_skipped
                .borrow_mut()
                .push(format!("cpython: skipped: {reason}"));
        }
    }
    let code = run_subcommand(results, profile, "bench", &args, bound);
    outcome(code, || {
        format!(
            "{} calibrations, {} latency and {} throughput workloads",
            results.calibration.len(),
            results.latency.len(),
            results.throughput.len()
        )
    })
}

/// Every scenario variant (`ipcbench check`), seeded with the run's seed.
fn check(results: &mut Results, profile: &Profile) -> Outcome {
    let mut args = vec!["--seed".to_string(), profile.seed.to_string()];
    if profile.quick {
        args.extend(["--cases".to_string(), QUICK_CASES.to_string()]);
    }
    args.extend(Twins::flags(&profile.twins.check));
    let mut code = run_subcommand(results, profile, "check", &args, limit(profile));
    // The same races on Python's own multiprocessing, when python3 answers.
    match crate::measure::peer::cpython::probe() {
        Ok(_) => {
            let mut peer_args = vec![
                "--peer".to_string(),
                "cpython".to_string(),
                "--seed".to_string(),
                profile.seed.to_string(),
            ];
            if profile.quick {
                peer_args.extend(["--cases".to_string(), QUICK_PEER_CASES.to_string()]);
            }
            // A hang guard: the quick profile's Python scenarios took 126 s on 2 quiet cores.
            let peer_code = run_subcommand(
                results,
                profile,
                "check",
                &peer_args,
                limit(profile) + 2 * PEER_ALLOWANCE,
            );
            code = match (code, peer_code) {
                (Ok(a), Ok(b)) => Ok(a.max(b)),
                (Err(e), _) | (_, Err(e)) => Err(e),
            };
        }
        Err(reason) => {
            eprintln!("cpython scenarios: skipped: {reason}");
            let note = format!("cpython: skipped: {reason}");
            let mut skipped = profile.peer_skipped.borrow_mut();
            if !skipped.contains(&note) {
                skipped.push(note);
            }
        }
    }
    outcome(code, || {
        let matched = results.scenarios.iter().filter(|s| s.matches).count();
        format!(
            "{matched} of {} verdicts as expected (seed {})",
            results.scenarios.len(),
            profile.seed
        )
    })
}

/// Every stress target with every fault (`ipcbench stress`), seeded with the run's seed.
fn stress(results: &mut Results, profile: &Profile) -> Outcome {
    let duration = if profile.quick {
        QUICK_STRESS
    } else {
        FULL_STRESS
    };
    let mut args = vec![
        "--duration".to_string(),
        duration.to_string(),
        "--seed".to_string(),
        profile.seed.to_string(),
    ];
    args.extend(Twins::flags(&profile.twins.stress));
    let code = run_subcommand(results, profile, "stress", &args, limit(profile));
    outcome(code, || {
        let s = &results.stress;
        let sum = |f: fn(&crate::results::StressOutcome) -> u64| -> u64 { s.iter().map(f).sum() };
        format!(
            "{} targets, {} messages, {} faults; losses {}, duplicates {}, corrupt {}, hangs {}, leaks {}",
            s.len(),
            sum(|t| t.messages),
            sum(|t| t.kills + t.stops + t.slows),
            sum(|t| t.losses),
            sum(|t| t.duplicates),
            sum(|t| t.corrupt),
            sum(|t| t.hangs.len() as u64),
            sum(|t| t.leaks.len() as u64),
        )
    })
}

/// Runs `ipcbench SUBCOMMAND ARGS... --json DIR/SUBCOMMAND.json` as a child process and
/// folds the results it wrote into `results`. The subcommand is the one a user would run
/// (same flags, same output on the terminal), so a step is only the glue; as a separate
/// process in its own process group it is bounded by `limit` and cannot take the run
/// down with it.
fn run_subcommand(
    results: &mut Results,
    profile: &Profile,
    subcommand: &str,
    args: &[String],
    limit: Duration,
) -> Result<i32, String> {
    let json = profile.dir.join(format!("{subcommand}.json"));
    let exe = std::env::current_exe().map_err(|e| format!("cannot find ipcbench itself: {e}"))?;
    let mut command = Command::new(exe);
    command
        .arg(subcommand)
        .args(args)
        .arg("--json")
        .arg(&json)
        .process_group(0);
    let status = wait_bounded(&mut command, subcommand, limit)?;
    let code = status.code().unwrap_or_else(|| {
        use std::os::unix::process::ExitStatusExt as _;
        -status.signal().unwrap_or(0)
    });
    let part = Results::load(&json).map_err(|e| {
        format!("ipcbench {subcommand} exited with {code} and left no results: {e}")
    })?;
    let _ = std::fs::remove_file(&json);
    results.merge(part);
    Ok(code)
}

/// Starts `command` (which must start a new process group) and waits for it at most
/// `limit`; past that, says what it was blocked in and kills its whole group.
fn wait_bounded(command: &mut Command, name: &str, limit: Duration) -> Result<ExitStatus, String> {
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start {name}: {e}"))?;
    let pid = child.id() as i32;
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                // Whatever it left in its group (it should be nothing) goes too.
                hygiene::kill_group(nix::unistd::Pid::from_raw(pid));
                return Ok(status);
            }
            Ok(None) if Instant::now() >= deadline => {
                let blocked = watchdog::diagnose(pid, name)
                    .map(|b| b.to_string())
                    .unwrap_or_else(|| format!("{name} (pid {pid})"));
                hygiene::kill_group(nix::unistd::Pid::from_raw(pid));
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "did not finish within {} s: {blocked}; killed",
                    limit.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("cannot wait for {name}: {e}")),
        }
    }
}

/// Runs one step, turning a panic into a failure so the other steps and the report go on.
fn run_step(step: &Step, results: &mut Results, profile: &Profile) -> Outcome {
    let mut scratch = results.clone();
    let run = step.run;
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&mut scratch, profile))) {
        Ok(outcome) => {
            // A step that failed half-way keeps what it measured: the page shows it,
            // beside the failure note.
            *results = scratch;
            outcome
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Outcome::Failed(format!("panicked: {what}"))
        }
    }
}

/// The note a step's sections carry on the page when it did not run.
fn note(step: &Step, outcome: &Outcome) -> Option<String> {
    match outcome {
        Outcome::Done { .. } => None,
        Outcome::Skipped => Some(format!("not run: skipped (--skip {})", step.name)),
        Outcome::Failed(e) => Some(format!("{} step failed: {e}", step.name)),
    }
}

fn status_text(outcome: &Outcome) -> (&'static str, String) {
    match outcome {
        Outcome::Done { summary, ok: true } => ("ok", summary.clone()),
        Outcome::Done { summary, ok: false } => ("PROBLEM", summary.clone()),
        Outcome::Skipped => ("not run", "skipped (--skip)".into()),
        Outcome::Failed(e) => ("FAILED", e.clone()),
    }
}

/// reports/run-20261127-043300 (UTC), relative to the working directory.
fn default_out_dir(created_unix: u64) -> PathBuf {
    let stamp: String = html::utc_text(created_unix)
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == ' ')
        .collect::<String>()
        .trim()
        .replacen(' ', "-", 1)
        .replace(' ', "");
    PathBuf::from("reports").join(format!("run-{stamp}"))
}

pub fn main(args: Args) -> i32 {
    for name in &args.skip {
        if !STEPS.iter().any(|s| s.name == name) {
            eprintln!(
                "ipcbench run: --skip {name}: no such step (steps: {})",
                STEPS.map(|s| s.name).join(", ")
            );
            return super::EXIT_BAD_INPUT;
        }
    }
    let twins = match Twins::sort(&args.twins) {
        Ok(twins) => twins,
        Err(e) => {
            eprintln!("ipcbench run: {e}");
            return super::EXIT_BAD_INPUT;
        }
    };
    let baseline = match &args.baseline {
        Some(path) => match Results::load(path) {
            Ok(b) => Some((b, path.display().to_string())),
            Err(e) => {
                eprintln!("ipcbench run: baseline {e}");
                return super::EXIT_BAD_INPUT;
            }
        },
        None => None,
    };
    let mut results = Results::new(if args.quick { "quick" } else { "full" });
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_out_dir(results.created_unix));
    let profile = Profile {
        quick: args.quick,
        dir: out.clone(),
        seed: results.created_unix,
        twins,
        peer_skipped: Default::default(),
    };
    // Fail on an unusable output directory now, not after minutes of measuring.
    if let Err(e) = std::fs::create_dir_all(&out) {
        eprintln!("ipcbench run: {}: cannot create: {e}", out.display());
        return super::EXIT_BAD_INPUT;
    }

    let started = Instant::now();
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for step in &STEPS {
        let t0 = Instant::now();
        let outcome = if args.skip.iter().any(|s| s == step.name) {
            Outcome::Skipped
        } else {
            eprintln!("== {}", step.name);
            run_step(step, &mut results, &profile)
        };
        let seconds = t0.elapsed().as_secs_f64();
        if let Some(text) = note(step, &outcome) {
            notes.extend(step.sections.iter().map(|s| (*s, text.clone())));
        }
        rows.push((step.name, outcome, seconds));
    }
    notes.extend(
        profile
            .peer_skipped
            .take()
            .into_iter()
            .map(|why| (Section::Peers, format!("not run: {why}"))),
    );

    let threshold_pct = crate::report::compare::Policy::default().threshold_pct;
    let regressions = baseline.as_ref().map_or(0, |(b, _)| {
        crate::report::html::deltas::compute(b, &results, threshold_pct).regressions()
    });
    let page = Page {
        results: &results,
        baseline: baseline.as_ref().map(|(b, name)| (b, name.clone())),
        sources: Vec::new(),
        notes,
        steps: rows
            .iter()
            .map(|(name, outcome, seconds)| {
                let (status, text) = status_text(outcome);
                (name.to_string(), status.to_string(), *seconds, text)
            })
            .collect(),
        threshold_pct,
    };
    let index = match html::write(&out, &page) {
        Ok(index) => index,
        Err(e) => {
            eprintln!("ipcbench run: {e}");
            return super::EXIT_BAD_INPUT;
        }
    };

    println!("{:<10} {:<8} {:>8}  result", "step", "status", "seconds");
    let mut all_ok = true;
    for (name, outcome, seconds) in &rows {
        let (status, text) = status_text(outcome);
        all_ok &= !matches!(
            outcome,
            Outcome::Failed(_) | Outcome::Done { ok: false, .. }
        );
        println!("{name:<10} {status:<8} {seconds:>8.1}  {text}");
    }
    if let Some((_, name)) = &baseline {
        println!("against {name}: {regressions} regression(s) (details on the page)");
        all_ok &= regressions == 0;
    }
    if !results.twins.is_empty() {
        println!(
            "twins in place of their mechanisms: {} (deliberately broken or slowed)",
            results.twins.join(", ")
        );
    }
    println!(
        "total {:.1} s; report: {}",
        started.elapsed().as_secs_f64(),
        index.display()
    );
    if all_ok {
        super::EXIT_OK
    } else {
        super::EXIT_FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_past_its_limit_is_killed_with_its_group_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("background.pid");
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!(
                "sleep 30 & echo $! > {}; sleep 30",
                pid_file.display()
            ))
            .process_group(0);
        let started = Instant::now();
        let err = wait_bounded(&mut command, "sleeper", Duration::from_millis(500)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10), "not bounded");
        assert!(
            err.contains("did not finish") && err.contains("sleeper"),
            "{err}"
        );
        // The background sleep was in the step's group: killed with it.
        let background: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while hygiene::proc_info(background).is_some_and(|p| p.state != 'Z') {
            assert!(
                Instant::now() < deadline,
                "pid {background} outlived its group"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn default_dir_is_stamped_in_utc() {
        assert_eq!(
            default_out_dir(1_795_754_000),
            PathBuf::from("reports/run-20261127-043320")
        );
    }

    #[test]
    fn a_panicking_step_is_a_failure_not_a_crash() {
        let step = Step {
            name: "boom",
            sections: &[Section::Stress],
            run: |_, _| panic!("deliberate"),
        };
        let mut results = Results::new("quick");
        let profile = Profile {
            quick: true,
            dir: PathBuf::from("."),
            seed: 1,
            twins: Twins::default(),
            peer_skipped: Default::default(),
        };
        let outcome = run_step(&step, &mut results, &profile);
        assert_eq!(outcome, Outcome::Failed("panicked: deliberate".into()));
        assert!(note(&step, &outcome).unwrap().contains("deliberate"));
    }
}
