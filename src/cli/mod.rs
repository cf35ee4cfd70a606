//! The `ipcbench` command line: argument parsing and dispatch to each subcommand.
//!
//! Its one public door is [`main_with_args`] (and the exit codes), so that a plug-in
//! crate's binary is the same CLI; the subcommands and their arguments are internal.

#![warn(missing_docs)]

use clap::{Parser, Subcommand};

pub(crate) mod baseline;
pub(crate) mod bench;
pub(crate) mod check;
pub(crate) mod compare;
pub(crate) mod conform;
pub(crate) mod list;
mod probe;
pub(crate) mod prove;
pub(crate) mod report;
pub(crate) mod run;
pub(crate) mod stress;

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
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// The main job: calibrate, bench, check scenarios, stress, and write the HTML report
    Run(run::Args),
    /// Run the measurement workloads and print latency and throughput tables
    Bench(bench::Args),
    /// Run the race scenarios and compare each verdict with its expectation
    Check(check::Args),
    /// Bounded stress runs with fault injection
    Stress(stress::Args),
    /// Build the HTML report from results files
    Report(report::Args),
    /// CI gate: compare CURRENT against BASELINE; exit 1 on a regression
    Compare(compare::Args),
    /// Run every broken twin through what must catch it; exit 1 unless each is caught
    /// for the right reason
    Prove(prove::Args),
    /// Fold repeated runs into a CI baseline (median ratios, run-to-run spreads)
    Baseline(baseline::Args),
    /// List the scenarios with their variants, and the benchmark workloads
    List(list::Args),
    /// Run the queue conformance suite on every flavor (or those named); exit 1 on a failure
    Conform(conform::Args),
    /// Self-check (hidden, for the test suite): with the CLI's signal handlers installed,
    /// forked children start with default signal dispositions and an empty signal mask,
    /// so SIGTERM, SIGINT and SIGHUP end them
    #[command(name = "__fork-terminate-probe", hide = true)]
    ForkTerminateProbe,
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
    match command {
        Command::Run(args) => run::main(args),
        Command::Bench(args) => bench::main(args),
        Command::Check(args) => check::main(args),
        Command::Stress(args) => stress::main(args),
        Command::Report(args) => report::main(args),
        Command::Compare(args) => compare::main(args),
        Command::Baseline(args) => baseline::main(args),
        Command::Prove(args) => prove::main(args),
        Command::List(args) => list::main(args),
        Command::Conform(args) => conform::main(args),
        Command::ForkTerminateProbe => probe::fork_terminate_probe(),
    }
}

/// Refuses an output file (`--json`, `--junit`) whose directory does not exist, before
/// any work is done rather than after it.
pub fn check_output_dir(flag: &str, path: &std::path::Path) -> Result<(), String> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) if !dir.is_dir() => Err(format!(
            "{flag}: directory {} does not exist",
            dir.display()
        )),
        _ => Ok(()),
    }
}
