//! `ipcbench baseline`: folds several runs of the same build into the CI baseline (see
//! `report::compare::combine_runs`): median ratios, spreads widened to what the runs
//! showed between them, so only metrics steady from run to run gate.

use crate::report::compare;
use crate::results::Results;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Results files of repeated runs (e.g. three `ipcbench run --quick`).
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// Where to write the baseline (e.g. reports/baseline.json).
    #[arg(long, required = true)]
    pub out: PathBuf,
}

pub fn main(args: Args) -> i32 {
    let mut runs = Vec::new();
    for path in &args.runs {
        match Results::load(path) {
            Ok(r) if !r.twins.is_empty() => {
                eprintln!(
                    "ipcbench baseline: {} measured deliberately broken or slowed twins ({}): \
                     it cannot be a baseline",
                    path.display(),
                    r.twins.join(", ")
                );
                return super::EXIT_BAD_INPUT;
            }
            Ok(r) => runs.push(r),
            Err(e) => {
                eprintln!("ipcbench baseline: {e}");
                return super::EXIT_BAD_INPUT;
            }
        }
    }
    let Some(combined) = compare::combine_runs(runs) else {
        eprintln!("ipcbench baseline: no runs given");
        return super::EXIT_BAD_INPUT;
    };
    if let Err(e) = combined.save(&args.out) {
        eprintln!(
            "ipcbench baseline: cannot write {}: {e}",
            args.out.display()
        );
        return super::EXIT_BAD_INPUT;
    }
    let gated = combined
        .latency
        .iter()
        .map(|l| (l.ratio, l.spread))
        .chain(combined.throughput.iter().map(|t| (t.ratio, t.spread)))
        .filter(|(ratio, _)| ratio.is_some());
    let (mut steady, mut noisy) = (0, 0);
    for (_, spread) in gated {
        if spread <= compare::DEFAULT_MAX_GATED_SPREAD {
            steady += 1;
        } else {
            noisy += 1;
        }
    }
    println!(
        "baseline of {} runs written to {}: {steady} metrics steady enough to gate, {noisy} shown only",
        args.runs.len(),
        args.out.display()
    );
    super::EXIT_OK
}
