//! `ipcbench stress`: bounded stress runs with fault injection.

use std::path::PathBuf;

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
    #[arg(long)]
    pub target: Option<String>,
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub fn main(args: Args) -> i32 {
    let _ = args;
    super::not_built("stress")
}
