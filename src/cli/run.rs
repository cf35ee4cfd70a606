//! `ipcbench run`: the main job: calibrate, bench, check scenarios, stress, and write the HTML report.

use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Short profile (under 3 minutes on 2 cores).
    #[arg(long)]
    pub quick: bool,
    /// Directory for index.html and results.json (default: reports/run-<timestamp>).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn main(args: Args) -> i32 {
    let _ = args;
    super::not_built("run")
}
