//! `ipcbench report`: build the HTML report from results files.

use crate::report::html::{self, Page};
use crate::results::Results;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Results JSON files (from run, bench, check or stress).
    #[arg(required = true)]
    pub results: Vec<PathBuf>,
    /// A baseline results file to show deltas against.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Two runs side by side: `report A.json B.json --compare` shows B with A as its
    /// baseline (deltas, and each workload's distributions overlaid).
    #[arg(long, conflicts_with = "baseline")]
    pub compare: bool,
    /// Output directory for index.html and results.json.
    #[arg(long, required = true)]
    pub out: PathBuf,
}

pub fn main(mut args: Args) -> i32 {
    if args.compare {
        if args.results.len() != 2 {
            eprintln!(
                "ipcbench report: --compare takes exactly two results files (A B: B is shown \
                 against A), got {}",
                args.results.len()
            );
            return super::EXIT_BAD_INPUT;
        }
        args.baseline = Some(args.results.remove(0));
    }
    // Every input is read before anything is written, so a bad file leaves no half report.
    let mut merged: Option<Results> = None;
    for path in &args.results {
        match Results::load(path) {
            Ok(results) => match &mut merged {
                Some(all) => all.merge(results),
                None => merged = Some(results),
            },
            Err(e) => {
                eprintln!("ipcbench report: {e}");
                return super::EXIT_BAD_INPUT;
            }
        }
    }
    let Some(results) = merged else {
        eprintln!("ipcbench report: no results files given");
        return super::EXIT_BAD_INPUT;
    };
    let baseline = match &args.baseline {
        Some(path) => match Results::load(path) {
            Ok(b) => Some((b, path.display().to_string())),
            Err(e) => {
                eprintln!("ipcbench report: baseline {e}");
                return super::EXIT_BAD_INPUT;
            }
        },
        None => None,
    };
    let page = Page {
        results: &results,
        baseline: baseline.as_ref().map(|(b, name)| (b, name.clone())),
        sources: args
            .results
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        notes: Vec::new(),
        steps: Vec::new(),
        // The gate's own default, so the page shows what `ipcbench compare` would decide.
        threshold_pct: crate::report::compare::Policy::default().threshold_pct,
    };
    match html::write(&args.out, &page) {
        Ok(index) => {
            println!("{}", index.display());
            super::EXIT_OK
        }
        Err(e) => {
            eprintln!("ipcbench report: {e}");
            super::EXIT_BAD_INPUT
        }
    }
}
