//! `daemon-children`: a parent starts a child, then dies (exits abruptly or is killed). A
//! child not marked daemon outlives it; a daemon child (PR_SET_PDEATHSIG) ends with it.
//!
//! The case leader is the subreaper of its descendants, so the orphaned child comes back
//! to it: it checks whether the child is still running a moment after the parent ended,
//! then kills and reaps it, so nothing outlives the case either way.

use super::ScenarioError;
use super::{
    results, start_worker, wait_for_events, Case, CaseContext, CaseOutcome, Joined, Scenario,
    Variant, Verdict,
};
use crate::process::{self, hygiene, Options, StartMethod};
use crate::schedule::{Mode, Schedule, Turnstile, TurnstileHandle};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

pub(crate) struct DaemonChildren;

/// How the parent ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Ending {
    /// _exit(0) without cleaning up (os._exit in Python).
    Exit,
    Kill,
    Terminate,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Params {
    pub(crate) ending: Ending,
}

const VARIANTS: &[Variant] = &[
    Variant::caught_violated("not-daemon", "the child outlives its parent"),
    Variant::holds("daemon", "the daemon child ends with its parent"),
];

/// How long after the parent's end the child may still be seen running.
const GRACE: Duration = Duration::from_millis(300);

impl Scenario for DaemonChildren {
    fn name(&self) -> &'static str {
        "daemon-children"
    }
    fn about(&self) -> &'static str {
        "a parent with a child dies"
    }
    fn variants(&self) -> &'static [Variant] {
        VARIANTS
    }
    fn deadline(&self) -> Duration {
        Duration::from_secs(3)
    }

    fn cases(&self, _variant: &str) -> BoxedStrategy<Case> {
        prop_oneof![
            Just(Ending::Exit),
            Just(Ending::Kill),
            Just(Ending::Terminate)
        ]
        .prop_map(|ending| Case::new(&Params { ending }, Schedule::default()))
        .boxed()
    }

    fn run(
        &self,
        variant: &str,
        case: &Case,
        context: &CaseContext,
    ) -> Result<CaseOutcome, ScenarioError> {
        let params: Params = case.params()?;
        let daemon = !super::is_unsafe_variant(self, variant)?;
        let log = Turnstile::create(
            2,
            &Schedule::default(),
            Mode::Free {
                jitter_us: 0,
                seed: 0,
            },
        )?;
        let args = ParentArgs {
            daemon,
            ending: params.ending,
            log: log.handle(),
        };
        let mut parent = vec![start_worker(
            "ipcbench-scenario-daemon-parent",
            "parent",
            &args,
            &[log.handle().fd],
        )?];
        let started = wait_for_events(&log, context.deadline, |h| {
            h.iter().any(|e| e.operation == "child-started")
        });
        let child_pid = log
            .history()
            .iter()
            .find(|e| e.operation == "child-started")
            .map(|e| e.value as i32);
        let signal = match params.ending {
            Ending::Exit => None,
            Ending::Kill => Some(nix::sys::signal::Signal::SIGKILL),
            Ending::Terminate => Some(nix::sys::signal::Signal::SIGTERM),
        };
        if let Some(signal) = signal {
            let _ = parent[0].signal(signal);
        }
        let joined = super::join_workers(&mut parent, context.deadline, None);
        let history = log.history();
        let Some(child_pid) = child_pid.filter(|_| started) else {
            return match joined {
                Joined::Verdict(v) => Ok(CaseOutcome::new(v, history)),
                Joined::Finished(r) => {
                    results::<()>(r)?;
                    Err("the parent never reported its child".to_string().into())
                }
            };
        };
        let ended_at = Instant::now();
        let mut outlived = false;
        while ended_at.elapsed() < GRACE {
            hygiene::reap_orphans();
            if !running(child_pid) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
            outlived = ended_at.elapsed() >= GRACE;
        }
        outlived = outlived || running(child_pid);
        // Nothing outlives the case: kill and reap the child (ours now, as subreaper).
        // SAFETY: kill(2) on a pid that is our descendant or already reaped by us.
        unsafe { libc::kill(child_pid, libc::SIGKILL) };
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until && hygiene::proc_info(child_pid).is_some() {
            let _ = nix::sys::wait::waitpid(
                nix::unistd::Pid::from_raw(child_pid),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        let verdict = if outlived {
            Verdict::violated(
                "a child ends with its parent",
                format!(
                    "child pid {child_pid} still running {GRACE:?} after its parent ended ({:?})",
                    params.ending
                ),
            )
        } else {
            Verdict::Holds
        };
        Ok(CaseOutcome::new(verdict, history))
    }
}

/// Running: present in /proc and not a zombie.
fn running(pid: i32) -> bool {
    hygiene::proc_info(pid).is_some_and(|p| p.state != 'Z' && p.state != 'X')
}

#[derive(Serialize, Deserialize)]
struct ParentArgs {
    daemon: bool,
    ending: Ending,
    log: TurnstileHandle,
}

fn nap(ms: u64) -> Result<(), ScenarioError> {
    std::thread::sleep(Duration::from_millis(ms));
    Ok(())
}
crate::register_entry!("ipcbench-scenario-daemon-nap", nap);

/// Starts a child that would run 30 s, reports its pid, then ends as told — without
/// running the suite's cleanup, which would kill the child and hide the bug.
fn parent(args: ParentArgs) -> Result<(), ScenarioError> {
    let log = Turnstile::adopt(args.log, 0)?;
    let child = process::start(
        "ipcbench-scenario-daemon-nap",
        &30_000u64,
        Options::new("child")
            .method(StartMethod::Fork)
            .daemon(args.daemon),
    )?;
    log.record(1, "child-started", child.pid().as_raw() as i64);
    match args.ending {
        // SAFETY: _exit ends this process at once, as os._exit does; nothing of ours
        // needs flushing.
        Ending::Exit => unsafe { libc::_exit(0) },
        Ending::Kill | Ending::Terminate => {
            std::thread::sleep(Duration::from_secs(30));
            std::mem::forget(child);
            Err("the parent was not killed".to_string().into())
        }
    }
}
crate::register_entry!("ipcbench-scenario-daemon-parent", parent);
