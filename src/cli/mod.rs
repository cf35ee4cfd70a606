//! The `ipcbench` command line: argument parsing and dispatch to each subcommand.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Exit code when every result matched its expectation.
pub const EXIT_OK: i32 = 0;
/// Exit code for a regression or an unexpected verdict.
pub const EXIT_FAILURE: i32 = 1;
/// Exit code for bad input: a bad argument, a missing or corrupt file, an unknown name.
pub const EXIT_BAD_INPUT: i32 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "ipcbench",
    version,
    about = "Measure and stress-test inter-process communication on Linux",
    long_about = "Measure and stress-test inter-process communication on Linux: the mechanisms \
                  of Python's multiprocessing (Process, Lock, Queue, JoinableQueue, Pipe, Manager, \
                  Semaphore, Event, Pool) rebuilt over real OS processes."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The main job: calibrate, bench, check scenarios, stress, and write the HTML report.
    Run {
        /// Short profile (under 3 minutes on 2 cores).
        #[arg(long)]
        quick: bool,
        /// Directory for index.html and results.json (default: reports/run-<timestamp>).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Run the measurement workloads and print latency and throughput tables.
    Bench {
        /// Only workloads whose name contains this text.
        #[arg(long)]
        filter: Option<String>,
        /// Short profile.
        #[arg(long)]
        quick: bool,
        /// Write results as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Run the race scenarios and compare each verdict with its expectation.
    Check {
        #[arg(long)]
        scenario: Option<String>,
        #[arg(long)]
        variant: Option<String>,
        /// Generated cases per variant.
        #[arg(long)]
        cases: Option<u32>,
        #[arg(long)]
        seed: Option<u64>,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Bounded stress runs with fault injection.
    Stress {
        /// How long each target runs, e.g. 30s, 2m, 500ms.
        #[arg(long, default_value = "30s")]
        duration: String,
        /// Worker processes per target.
        #[arg(long)]
        procs: Option<usize>,
        /// Comma-separated faults: kill, stop, slow (or none).
        #[arg(long, default_value = "kill,stop,slow")]
        faults: String,
        #[arg(long)]
        target: Option<String>,
        #[arg(long)]
        seed: Option<u64>,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Build the HTML report from results files.
    Report {
        /// Results JSON files (from run, bench, check or stress).
        #[arg(required = true)]
        results: Vec<PathBuf>,
        /// A baseline results file to show deltas against.
        #[arg(long)]
        baseline: Option<PathBuf>,
        /// Output directory for index.html and results.json.
        #[arg(long, required = true)]
        out: PathBuf,
    },
    /// CI gate: compare CURRENT against BASELINE; exit 1 on a regression.
    Compare {
        baseline: PathBuf,
        current: PathBuf,
        /// Percent change beyond which a metric counts as regressed.
        #[arg(long, default_value_t = 25.0)]
        threshold: f64,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// List the scenarios with their variants, and the benchmark workloads.
    List,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Markdown,
}

/// Parses the command line and runs it; returns the process exit code.
pub fn main_with_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    EXIT_OK
                }
                _ => EXIT_BAD_INPUT,
            };
        }
    };
    let _ = crate::process::hygiene::install_signal_cleanup();
    let code = dispatch(cli.command);
    crate::process::hygiene::cleanup_all();
    code
}

fn dispatch(command: Command) -> i32 {
    let name = match command {
        Command::Run { .. } => "run",
        Command::Bench { .. } => "bench",
        Command::Check { .. } => "check",
        Command::Stress { .. } => "stress",
        Command::Report { .. } => "report",
        Command::Compare { .. } => "compare",
        Command::List => "list",
    };
    not_built(name)
}

fn not_built(name: &str) -> i32 {
    eprintln!("ipcbench {name}: not built yet");
    EXIT_BAD_INPUT
}
