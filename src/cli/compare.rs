//! `ipcbench compare`: the CI gate. Exit 0 when nothing regressed, 1 on any regression,
//! 2 on bad input (each input file is named in its error).

use crate::report::compare::{self, Policy, DEFAULT_MAX_GATED_SPREAD};
use crate::results::Results;
use std::path::PathBuf;

/// Output format of the comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Markdown,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    pub baseline: PathBuf,
    pub current: PathBuf,
    /// Percent change beyond which a metric counts as regressed.
    #[arg(long, default_value_t = 25.0)]
    pub threshold: f64,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Metrics whose recorded spread (relative, 0.5 = 50%) is above this are shown but
    /// never gate.
    #[arg(long, default_value_t = DEFAULT_MAX_GATED_SPREAD)]
    pub max_gated_spread: f64,
    /// Also write JUnit XML (one test case per metric and behaviour) to this file.
    #[arg(long)]
    pub junit: Option<PathBuf>,
}

pub fn main(args: Args) -> i32 {
    if !(args.threshold.is_finite() && args.threshold >= 0.0) {
        eprintln!(
            "ipcbench compare: --threshold must be a non-negative percentage, got {}",
            args.threshold
        );
        return super::EXIT_BAD_INPUT;
    }
    if let Some(e) = args
        .junit
        .as_deref()
        .and_then(|p| super::check_output_dir("--junit", p).err())
    {
        eprintln!("ipcbench compare: {e}");
        return super::EXIT_BAD_INPUT;
    }
    let load = |path: &PathBuf| {
        Results::load(path).map_err(|e| {
            eprintln!("ipcbench compare: {e}");
            super::EXIT_BAD_INPUT
        })
    };
    let baseline = match load(&args.baseline) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let current = match load(&args.current) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let policy = Policy {
        threshold_pct: args.threshold,
        max_gated_spread: args.max_gated_spread,
    };
    let comparison = compare::compare(&baseline, &current, policy);
    match args.format {
        Format::Table => print!("{}", compare::to_table(&comparison)),
        Format::Markdown => print!("{}", compare::to_markdown(&comparison)),
        Format::Json => match serde_json::to_string_pretty(&comparison) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("ipcbench compare: cannot encode the comparison: {e}");
                return super::EXIT_FAILURE;
            }
        },
    }
    if let Some(path) = &args.junit {
        if let Err(e) = compare::to_junit(&comparison, &current).write(path) {
            eprintln!("ipcbench compare: {e}");
            return super::EXIT_BAD_INPUT;
        }
    }
    if comparison.passed() {
        super::EXIT_OK
    } else {
        super::EXIT_FAILURE
    }
}
