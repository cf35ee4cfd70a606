//! `ipcbench compare`: cI gate: compare CURRENT against BASELINE; exit 1 on a regression.

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
}

pub fn main(args: Args) -> i32 {
    let _ = args;
    super::not_built("compare")
}
