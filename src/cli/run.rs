//! `ipcbench run`: the main job: calibrate, bench, check scenarios, stress, and write the HTML report.
//!
//! An orchestrator over small steps with the results model as the glue: each step adds
//! its part to one `Results`, and the report is built from it. A step whose module is not
//! built yet says so (in the terminal and on the page) instead of producing figures; a
//! step that fails or panics is reported and the others still run, so one broken part
//! never costs the whole report.

use crate::report::html::{self, Page, Section};
use crate::report::model::Results;
use std::path::PathBuf;
use std::time::Instant;

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
}

/// What the steps are given.
#[derive(Clone, Copy, Debug)]
pub struct Profile {
    pub quick: bool,
}

/// What a step did.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Ran; `summary` is one line for the terminal, `ok` false when it found a problem
    /// (an unexpected verdict, a loss under stress).
    Done { summary: String, ok: bool },
    /// The module this step drives has not landed yet.
    NotBuilt,
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
    pub run: fn(&mut Results, Profile) -> Outcome,
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

fn bench(_results: &mut Results, _profile: Profile) -> Outcome {
    Outcome::NotBuilt
}

fn check(_results: &mut Results, _profile: Profile) -> Outcome {
    Outcome::NotBuilt
}

fn stress(_results: &mut Results, _profile: Profile) -> Outcome {
    Outcome::NotBuilt
}

/// Runs one step, turning a panic into a failure so the other steps and the report go on.
fn run_step(step: &Step, results: &mut Results, profile: Profile) -> Outcome {
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
        Outcome::NotBuilt => Some(format!(
            "not run: not built yet (the {} step of ipcbench run)",
            step.name
        )),
        Outcome::Skipped => Some(format!("not run: skipped (--skip {})", step.name)),
        Outcome::Failed(e) => Some(format!("{} step failed: {e}", step.name)),
    }
}

fn status_text(outcome: &Outcome) -> (&'static str, String) {
    match outcome {
        Outcome::Done { summary, ok: true } => ("ok", summary.clone()),
        Outcome::Done { summary, ok: false } => ("PROBLEM", summary.clone()),
        Outcome::NotBuilt => ("not run", "not built yet".into()),
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
    let profile = Profile { quick: args.quick };
    let mut results = Results::new(if args.quick { "quick" } else { "full" });
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_out_dir(results.created_unix));
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
            run_step(step, &mut results, profile)
        };
        let seconds = t0.elapsed().as_secs_f64();
        if let Some(text) = note(step, &outcome) {
            notes.extend(step.sections.iter().map(|s| (*s, text.clone())));
        }
        rows.push((step.name, outcome, seconds));
    }

    let page = Page {
        results: &results,
        baseline: None,
        sources: Vec::new(),
        notes,
        threshold_pct: crate::report::compare::Policy::default().threshold_pct,
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
        let outcome = run_step(&step, &mut results, Profile { quick: true });
        assert_eq!(outcome, Outcome::Failed("panicked: deliberate".into()));
        assert!(note(&step, &outcome).unwrap().contains("deliberate"));
    }
}
