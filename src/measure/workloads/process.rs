//! Process start+join by start method, beside the raw system-call baselines.

use super::RoundTrips;
use crate::measure::MeasureError;
use crate::process::{self as proc, Options, StartMethod};
use crate::register_entry;
use std::time::{Duration, Instant};

fn empty(_: ()) -> Result<(), MeasureError> {
    Ok(())
}
register_entry!("measure-empty", empty);

/// How a child is started in this workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartKind {
    /// `process::start` with `StartMethod::Fork`, then join.
    Fork,
    /// `process::start` with `StartMethod::Spawn`, then join.
    Spawn,
    /// Calibration: fork, `_exit(0)` in the child, waitpid.
    RawForkExit,
    /// Calibration: fork, exec of this binary (which exits at once), waitpid.
    RawForkExec,
}

impl StartKind {
    /// Every start kind, in the catalogue's order.
    pub const ALL: [StartKind; 4] = [
        StartKind::RawForkExit,
        StartKind::Fork,
        StartKind::RawForkExec,
        StartKind::Spawn,
    ];

    /// The name the workload names and the CLI use.
    pub fn name(self) -> &'static str {
        match self {
            StartKind::Fork => "fork",
            StartKind::Spawn => "spawn",
            StartKind::RawForkExit => "raw-fork-exit",
            StartKind::RawForkExec => "raw-fork-exec",
        }
    }
}

/// Time for `iters` start+join cycles.
pub fn start_join(kind: StartKind, iters: usize) -> Duration {
    start_join_samples(kind, iters).total()
}

/// Each of `iters` start+join cycles timed on its own, for a distribution.
pub fn start_join_samples(kind: StartKind, iters: usize) -> RoundTrips {
    let mut samples_ns = Vec::with_capacity(iters);
    for _ in 0..iters {
        let started = Instant::now();
        start_and_join_one(kind);
        samples_ns.push(started.elapsed().as_nanos() as u64);
    }
    RoundTrips { samples_ns }
}

fn start_and_join_one(kind: StartKind) {
    match kind {
        StartKind::Fork | StartKind::Spawn => {
            let method = if kind == StartKind::Fork {
                StartMethod::Fork
            } else {
                StartMethod::Spawn
            };
            proc::run::<_, ()>(
                "measure-empty",
                &(),
                Options::new("empty").method(method),
                Duration::from_secs(30),
            )
            .expect("empty child");
        }
        StartKind::RawForkExit => raw_fork_exit(),
        StartKind::RawForkExec => raw_fork_exec(),
    }
}

fn raw_fork_exit() {
    // SAFETY: the child calls only _exit.
    match unsafe { nix::unistd::fork() }.expect("fork") {
        nix::unistd::ForkResult::Child => {
            // SAFETY: async-signal-safe exit without running the parent's exit path.
            unsafe { libc::_exit(0) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            nix::sys::wait::waitpid(child, None).expect("waitpid");
        }
    }
}

/// fork(2) + execve(2) of this same binary, which enters the empty entry point through the
/// bootstrap and exits before main, then waitpid: the bare cost of fork+exec+startup,
/// as lmbench's lat_proc exec measures it. Everything the child needs is built before fork.
fn raw_fork_exec() {
    use std::ffi::CString;
    let exe = std::env::current_exe().expect("current_exe");
    let path = CString::new(exe.as_os_str().as_encoded_bytes()).expect("exe path");
    let argv = [path.clone()];
    let mut env: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.into_encoded_bytes();
            kv.push(b'=');
            kv.extend(v.into_encoded_bytes());
            CString::new(kv).ok()
        })
        .collect();
    env.push(
        CString::new(format!(
            "{}=measure-empty",
            crate::process::entry::ENTRY_ENV
        ))
        .unwrap(),
    );
    env.push(CString::new(format!("{}=-1", crate::process::entry::RESULT_FD_ENV)).unwrap());
    // SAFETY: the child only calls execve and _exit, both async-signal-safe, on data
    // prepared before the fork.
    match unsafe { nix::unistd::fork() }.expect("fork") {
        nix::unistd::ForkResult::Child => {
            let _ = nix::unistd::execve(&path, &argv, &env);
            // SAFETY: exec failed; leave without running the parent's exit path.
            unsafe { libc::_exit(127) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            let status = nix::sys::wait::waitpid(child, None).expect("waitpid");
            assert_eq!(
                status,
                nix::sys::wait::WaitStatus::Exited(child, 0),
                "raw exec child"
            );
        }
    }
}

crate::register_workloads!("process", catalogue, rank = 10);

/// This family's entries in `measure::registry`: start+join per start method, fork
/// divided by the raw fork+`_exit`+waitpid, spawn by the raw fork+exec.
pub fn catalogue() -> Vec<crate::measure::registry::Workload> {
    use crate::measure::calibration as cal;
    use crate::measure::registry::Workload;
    [
        (StartKind::Fork, cal::FORK_EXIT, (100, 1_000)),
        (StartKind::Spawn, cal::FORK_EXEC, (30, 300)),
    ]
    .into_iter()
    .map(|(start, calibration, (quick, full))| {
        Workload::latency("process", start.name(), "start-join")
            .divided_by(calibration)
            .ops(quick, full)
            .run(move |_, n| start_join_samples(start, n))
    })
    .collect()
}
