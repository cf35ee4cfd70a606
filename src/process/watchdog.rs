//! The watchdog: run a group of processes under a deadline; on expiry, say who is blocked
//! on what (from /proc/PID/{stat,wchan,syscall}), then kill the whole group.

use super::{Child, ProcessError};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// One process that was still running when the deadline passed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockedProcess {
    pub(crate) pid: i32,
    /// The label it was started with.
    pub name: String,
    /// Scheduler state from /proc/PID/stat: S (sleeping), R, D, T (stopped), Z ...
    pub state: char,
    /// Kernel function the process sleeps in (/proc/PID/wchan), e.g. `pipe_read`.
    pub wchan: String,
    /// The system call it is blocked in, by name (from /proc/PID/syscall), e.g. `read`.
    pub syscall: String,
}

impl std::fmt::Display for BlockedProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (pid {}) state {} in {} [wchan {}]",
            self.name, self.pid, self.state, self.syscall, self.wchan
        )
    }
}

/// What a watchdog found at its deadline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HangReport {
    pub(crate) deadline: Duration,
    /// Every process still running at the deadline, with what it waits on.
    pub blocked: Vec<BlockedProcess>,
}

impl std::fmt::Display for HangReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "still running after {:?}: ", self.deadline)?;
        for (i, b) in self.blocked.iter().enumerate() {
            if i > 0 {
                write!(f, "; ")?;
            }
            write!(f, "{b}")?;
        }
        Ok(())
    }
}

/// Waits, at most until `by`, for process `pid` to sleep in a kernel function whose name
/// contains `wchan` (e.g. "futex": /proc reports a wait channel only for a task off the
/// CPU, so this means it is queued there). For tests that must act on a process known
/// to be blocked; the error says where it was instead.
#[doc(hidden)]
pub fn await_wchan(pid: i32, wchan: &str, by: std::time::Instant) -> Result<(), String> {
    loop {
        let now = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
        if now.contains(wchan) {
            return Ok(());
        }
        if std::time::Instant::now() >= by {
            return Err(format!("{pid} never slept in {wchan} (wchan {now:?})"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// How long [`diagnose`] rereads a process it finds on a CPU or runnable. One that waits
/// in a loop of short timed waits (a futex wait with a timeout, a poll slice) is between
/// two of them now and then, more often on a loaded machine; a hang report must name the
/// wait it spends its time in, not the instant it was woken (a scenario's verdict is
/// judged on that wait). A process that really spins costs this much, and is reported
/// running.
pub(crate) const RUNNING_REREAD: Duration = Duration::from_millis(100);

/// Reads what process `pid` is doing, from /proc; rereads it for up to
/// [`RUNNING_REREAD`] while it is running.
pub(crate) fn diagnose(pid: i32, name: &str) -> Option<BlockedProcess> {
    diagnose_within(pid, name, RUNNING_REREAD)
}

/// `diagnose`, rereading a running process for up to `reread` until it sleeps.
pub fn diagnose_within(pid: i32, name: &str, reread: Duration) -> Option<BlockedProcess> {
    let until = Instant::now() + reread;
    loop {
        let seen = read_state(pid, name)?;
        let running = seen.state == 'R' || seen.syscall == "running";
        if !running || Instant::now() >= until {
            return Some(seen);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn read_state(pid: i32, name: &str) -> Option<BlockedProcess> {
    let info = super::hygiene::proc_info(pid)?;
    let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan"))
        .map(|w| w.trim().to_string())
        .ok()
        .filter(|w| !w.is_empty() && w != "0")
        .unwrap_or_else(|| "-".into());
    let syscall = std::fs::read_to_string(format!("/proc/{pid}/syscall"))
        .map(|s| syscall_text(s.trim()))
        .unwrap_or_else(|_| "unknown".into());
    Some(BlockedProcess {
        pid,
        name: name.to_string(),
        state: info.state,
        wchan,
        syscall,
    })
}

/// /proc/PID/syscall holds "NR arg1 ... sp pc", "running", or "-1 sp pc" (not in a call).
fn syscall_text(raw: &str) -> String {
    let first = raw.split_whitespace().next().unwrap_or("");
    match first.parse::<i64>() {
        Ok(-1) => "no syscall (user space)".into(),
        Ok(nr) => syscall_name(nr)
            .map(str::to_string)
            .unwrap_or_else(|| format!("syscall {nr}")),
        Err(_) => raw.to_string(),
    }
}

/// Names of the system calls a blocked process is likely to sit in (x86_64 and aarch64).
fn syscall_name(nr: i64) -> Option<&'static str> {
    let table: &[(i64, &str)] = &[
        (libc::SYS_read, "read"),
        (libc::SYS_write, "write"),
        (libc::SYS_readv, "readv"),
        (libc::SYS_writev, "writev"),
        (libc::SYS_futex, "futex"),
        (libc::SYS_ppoll, "ppoll"),
        (libc::SYS_pselect6, "pselect6"),
        (libc::SYS_epoll_pwait, "epoll_pwait"),
        (libc::SYS_nanosleep, "nanosleep"),
        (libc::SYS_clock_nanosleep, "clock_nanosleep"),
        (libc::SYS_wait4, "wait4"),
        (libc::SYS_waitid, "waitid"),
        (libc::SYS_flock, "flock"),
        (libc::SYS_fcntl, "fcntl"),
        (libc::SYS_accept4, "accept4"),
        (libc::SYS_connect, "connect"),
        (libc::SYS_recvfrom, "recvfrom"),
        (libc::SYS_sendto, "sendto"),
        (libc::SYS_recvmsg, "recvmsg"),
        (libc::SYS_sendmsg, "sendmsg"),
        (libc::SYS_openat, "openat"),
        #[cfg(target_arch = "x86_64")]
        (libc::SYS_poll, "poll"),
        #[cfg(target_arch = "x86_64")]
        (libc::SYS_select, "select"),
        #[cfg(target_arch = "x86_64")]
        (libc::SYS_accept, "accept"),
        #[cfg(target_arch = "x86_64")]
        (libc::SYS_pause, "pause"),
        #[cfg(target_arch = "x86_64")]
        (libc::SYS_epoll_wait, "epoll_wait"),
    ];
    table.iter().find(|(n, _)| *n == nr).map(|(_, name)| *name)
}

/// Waits for every child to end before `deadline` elapses. On expiry, diagnoses each live
/// child, kills every child's group, reaps them all, and returns the report.
pub fn join_all(children: &mut [Child], deadline: Duration) -> Result<(), HangReport> {
    let until = Instant::now() + deadline;
    for child in children.iter_mut() {
        let left = until.saturating_duration_since(Instant::now());
        match child.join(Some(left)) {
            Ok(Some(_)) => {}
            Ok(None) | Err(ProcessError::Timeout { .. }) => break,
            Err(_) => {}
        }
    }
    let mut blocked = Vec::new();
    for child in children.iter_mut() {
        if child.is_alive() {
            if let Some(b) = diagnose(child.pid().as_raw(), child.name()) {
                blocked.push(b);
            }
        }
    }
    if blocked.is_empty() {
        return Ok(());
    }
    for child in children.iter_mut() {
        child.kill_group();
        let _ = child.join(Some(Duration::from_secs(5)));
    }
    Err(HangReport { deadline, blocked })
}
