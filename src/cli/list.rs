//! `ipcbench list`: list the scenarios with their variants, and the benchmark workloads.

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn main(args: Args) -> i32 {
    let _ = args;
    super::not_built("list")
}
