//! The `ipcbench` command line: argument parsing and dispatch to each subcommand.

use clap::{Parser, Subcommand};

pub mod baseline;
pub mod bench;
pub mod check;
pub mod compare;
pub mod list;
pub mod report;
pub mod run;
pub mod stress;

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
    /// Fold repeated runs into a CI baseline (median ratios, run-to-run spreads)
    Baseline(baseline::Args),
    /// List the scenarios with their variants, and the benchmark workloads
    List(list::Args),
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
        Command::List(args) => list::main(args),
        Command::ForkTerminateProbe => fork_terminate_probe(),
    }
}

/// Bound on each probe child: a safety net, far above the time a signal takes.
const PROBE_BOUND: std::time::Duration = std::time::Duration::from_secs(10);

/// What a forked child sees of its signal state.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ChildSignals {
    /// Signals with a handler installed (not SIG_DFL, not SIG_IGN), other than the Rust
    /// runtime's SIGSEGV/SIGBUS stack-overflow reporters.
    caught: Vec<i32>,
    /// Signals blocked in the child's mask.
    blocked: Vec<i32>,
}

fn probe_child_signals(_: ()) -> Result<ChildSignals, String> {
    let mut seen = ChildSignals {
        caught: Vec::new(),
        blocked: Vec::new(),
    };
    // SAFETY: sigaction with a null new action only reads this process's disposition
    // into a zeroed struct we own; pthread_sigmask with a null new set only reads this
    // thread's mask into a set we own.
    unsafe {
        let mut mask: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut mask);
        for sig in 1..=libc::SIGRTMAX() {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction != libc::SIG_DFL
                && old.sa_sigaction != libc::SIG_IGN
                && sig != libc::SIGSEGV
                && sig != libc::SIGBUS
            {
                seen.caught.push(sig);
            }
            if libc::sigismember(&mask, sig) == 1 {
                seen.blocked.push(sig);
            }
        }
    }
    Ok(seen)
}
crate::register_entry!("ipcbench-cli-probe-signals", probe_child_signals);

fn probe_sleep(ms: u64) -> Result<(), String> {
    std::thread::sleep(std::time::Duration::from_millis(ms));
    Ok(())
}
crate::register_entry!("ipcbench-cli-probe-sleep", probe_sleep);

/// `ipcbench __fork-terminate-probe`: run from the real binary, after `main_with_args`
/// installed the CLI's SIGINT/SIGTERM/SIGHUP handlers. Prints one line per check and
/// exits 0 when every check passed, 1 otherwise.
fn fork_terminate_probe() -> i32 {
    use crate::process::{self, Options, StartMethod};
    let fork = |name: &str| Options::new(name).method(StartMethod::Fork);
    let mut failed = false;
    match process::run::<_, ChildSignals>(
        "ipcbench-cli-probe-signals",
        &(),
        fork("probe-signals"),
        PROBE_BOUND,
    ) {
        Ok(seen) => {
            let ok = seen.caught.is_empty() && seen.blocked.is_empty();
            failed |= !ok;
            println!(
                "{} forked child: caught signals {:?}, blocked signals {:?}",
                if ok { "ok  " } else { "FAIL" },
                seen.caught,
                seen.blocked
            );
        }
        Err(e) => {
            failed = true;
            println!("FAIL forked child could not report its signals: {e}");
        }
    }
    use nix::sys::signal::Signal;
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        let mut child =
            match process::start("ipcbench-cli-probe-sleep", &60_000u64, fork("probe-sleep")) {
                Ok(child) => child,
                Err(e) => {
                    failed = true;
                    println!("FAIL {signal}: cannot start a forked child: {e}");
                    continue;
                }
            };
        let sent = if signal == Signal::SIGTERM {
            child.terminate()
        } else {
            child.signal(signal)
        };
        let exitcode = sent.and_then(|()| child.join(Some(PROBE_BOUND)));
        let expected = -(signal as i32);
        let ok = matches!(exitcode, Ok(Some(code)) if code == expected);
        failed |= !ok;
        match exitcode {
            Ok(Some(code)) => println!(
                "{} {signal}: forked child exitcode {code} (expected {expected})",
                if ok { "ok  " } else { "FAIL" }
            ),
            Ok(None) => println!(
                "FAIL {signal}: forked child still running {PROBE_BOUND:?} after the signal (expected exitcode {expected})"
            ),
            Err(e) => println!("FAIL {signal}: {e}"),
        }
        // Dropping a child still running kills and reaps it.
    }
    if failed {
        EXIT_FAILURE
    } else {
        EXIT_OK
    }
}
