//! `ipcbench check`: run the race scenarios and compare each verdict with its expectation.

use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long)]
    pub scenario: Option<String>,
    #[arg(long)]
    pub variant: Option<String>,
    /// Generated cases per variant.
    #[arg(long)]
    pub cases: Option<u32>,
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub fn main(args: Args) -> i32 {
    let _ = args;
    super::not_built("check")
}
