//! `ipcbench __fork-terminate-probe` (hidden): a self-check the test suite runs from the
//! real binary, where the CLI's signal handlers are installed, to prove that forked
//! children start with default signal dispositions and an empty mask.

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
pub(super) fn fork_terminate_probe() -> i32 {
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
        super::EXIT_FAILURE
    } else {
        super::EXIT_OK
    }
}
