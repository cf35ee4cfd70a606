//! `ipcbench report`: build the HTML report from results files.

use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Results JSON files (from run, bench, check or stress).
    #[arg(required = true)]
    pub results: Vec<PathBuf>,
    /// A baseline results file to show deltas against.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Output directory for index.html and results.json.
    #[arg(long, required = true)]
    pub out: PathBuf,
}

pub fn main(args: Args) -> i32 {
    let _ = args;
    super::not_built("report")
}
