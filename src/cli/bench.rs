//! `ipcbench bench`: run the measurement workloads and print latency and throughput tables.

use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only workloads whose name contains this text.
    #[arg(long)]
    pub filter: Option<String>,
    /// Short profile.
    #[arg(long)]
    pub quick: bool,
    /// Write results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub fn main(args: Args) -> i32 {
    let _ = args;
    super::not_built("bench")
}
