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
    /// For a futex wait, what it waits on: the word's address, whether the wait has a
    /// timeout, and the mapping the word lives in (a shared segment is a cross-process
    /// lock; the program's own data is a static, e.g. a lock or a lazy value another
    /// thread held when this process was forked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waits_on: Option<String>,
    /// Its own stack, where the program can give one (a Python process's, printed by
    /// `faulthandler` when asked): the line of the program it is blocked at, which /proc
    /// cannot say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
}

impl std::fmt::Display for BlockedProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (pid {}) state {} in {} [wchan {}]",
            self.name, self.pid, self.state, self.syscall, self.wchan
        )?;
        if let Some(on) = &self.waits_on {
            write!(f, " on {on}")?;
        }
        match self.stack.as_deref().and_then(innermost_frame) {
            Some(frame) => write!(f, ", at {frame}"),
            None => Ok(()),
        }
    }
}

/// The innermost frame of a `faulthandler` dump worth naming: the first frame of the
/// program itself (not of the standard library), else the first frame. `File "x.py",
/// line 290 in consumer_body` reads `consumer_body (x.py:290)`.
fn innermost_frame(stack: &str) -> Option<String> {
    let frames: Vec<(&str, &str, &str)> = stack
        .lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("File \"")?;
            let (path, rest) = rest.split_once("\", line ")?;
            let (line_no, function) = rest.split_once(" in ")?;
            Some((path, line_no, function))
        })
        .collect();
    let library = |path: &str| path.contains("/lib/python") || path.starts_with('<');
    let (path, line_no, function) = frames
        .iter()
        .find(|(path, ..)| !library(path))
        .or(frames.first())?;
    let file = path.rsplit('/').next().unwrap_or(path);
    Some(format!("{} ({file}:{line_no})", function.trim()))
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
    let raw = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
    let syscall = if raw.is_empty() {
        "unknown".into()
    } else {
        syscall_text(raw.trim())
    };
    let waits_on = futex_wait(raw.trim()).map(|wait| {
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
        wait.describe(&maps)
    });
    Some(BlockedProcess {
        stack: None,
        pid,
        name: name.to_string(),
        state: info.state,
        wchan,
        syscall,
        waits_on,
    })
}

/// A futex wait read from /proc/PID/syscall.
#[derive(Debug, PartialEq, Eq)]
struct FutexWait {
    word: u64,
    timed: bool,
}

/// The futex wait in a /proc/PID/syscall line ("NR uaddr op val timeout ..."), if it is
/// one (FUTEX_WAIT or FUTEX_WAIT_BITSET, private or not).
fn futex_wait(raw: &str) -> Option<FutexWait> {
    let mut fields = raw.split_whitespace();
    let nr: i64 = fields.next()?.parse().ok()?;
    if nr != libc::SYS_futex {
        return None;
    }
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
    let word = hex(fields.next()?)?;
    let op = hex(fields.next()?)? as i32 & libc::FUTEX_CMD_MASK;
    if op != libc::FUTEX_WAIT && op != libc::FUTEX_WAIT_BITSET {
        return None;
    }
    let _value = fields.next()?;
    let timed = hex(fields.next()?)? != 0;
    Some(FutexWait { word, timed })
}

impl FutexWait {
    /// "futex 0x… (no timeout) in the static data of /path/ipcbench", from /proc/PID/maps.
    fn describe(&self, maps: &str) -> String {
        let timeout = if self.timed { "timed" } else { "no timeout" };
        let mut previous: Option<Mapping> = None;
        let mut place = "an unmapped address".to_string();
        for mapping in maps.lines().filter_map(Mapping::parse) {
            if mapping.holds(self.word) {
                place = mapping.describe(previous.as_ref());
                break;
            }
            previous = Some(mapping);
        }
        format!("futex {:#x} ({timeout}) in {place}", self.word)
    }
}

/// One line of /proc/PID/maps.
struct Mapping<'a> {
    start: u64,
    end: u64,
    shared: bool,
    path: &'a str,
}

impl<'a> Mapping<'a> {
    fn parse(line: &'a str) -> Option<Mapping<'a>> {
        let mut fields = line.split_whitespace();
        let (start, end) = fields.next()?.split_once('-')?;
        Some(Mapping {
            start: u64::from_str_radix(start, 16).ok()?,
            end: u64::from_str_radix(end, 16).ok()?,
            shared: fields.next()?.contains('s'),
            path: fields.nth(3).unwrap_or(""),
        })
    }

    fn holds(&self, address: u64) -> bool {
        (self.start..self.end).contains(&address)
    }

    /// What a word here is likely to be. Anonymous memory right after a file's mapping
    /// is that file's zero-initialised statics (.bss).
    fn describe(&self, previous: Option<&Mapping>) -> String {
        let bss_of = previous
            .filter(|p| p.end == self.start && !p.path.is_empty() && !p.path.starts_with('['))
            .map(|p| p.path);
        match (self.path, self.shared, bss_of) {
            ("", true, _) => "shared anonymous memory".into(),
            ("", false, Some(file)) | (file, false, _)
                if !file.is_empty() && !file.starts_with('[') =>
            {
                format!("the static data of {file} (a lock, condition or lazy value of that file)")
            }
            ("", false, _) => "private anonymous memory (the heap or a thread's stack)".into(),
            (path, true, _) => format!("shared mapping {path} (a cross-process lock or counter)"),
            (path, false, _) => path.to_string(),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
5555d0a00000-5555d0c00000 r-xp 00000000 08:01 1234 /work/target/release/ipcbench
5555d0c00000-5555d0c10000 rw-p 00200000 08:01 1234 /work/target/release/ipcbench
5555d0c10000-5555d0c20000 rw-p 00000000 00:00 0
5555d1000000-5555d1100000 rw-p 00000000 00:00 0 [heap]
7f0000000000-7f0000001000 rw-s 00000000 00:1a 99 /dev/shm/ipcbench-abc-queue-channel
7f0000002000-7f0000003000 rw-p 00000000 00:00 0
";

    fn futex_line(word: u64, op: i32, timeout: u64) -> String {
        format!(
            "{} {word:#x} {op:#x} 0x0 {timeout:#x} 0x0 0x0 0x7ffc00000000 0x7f0000000100",
            libc::SYS_futex
        )
    }

    #[test]
    fn a_futex_wait_is_read_with_its_word_and_timeout() {
        let untimed = futex_wait(&futex_line(
            0x10,
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            0,
        ));
        assert_eq!(
            untimed,
            Some(FutexWait {
                word: 0x10,
                timed: false
            })
        );
        let timed = futex_wait(&futex_line(0x10, libc::FUTEX_WAIT_BITSET, 0x7ffc0));
        assert_eq!(timed.map(|w| w.timed), Some(true));
        assert_eq!(futex_wait(&futex_line(0x10, libc::FUTEX_WAKE, 0)), None);
        assert_eq!(futex_wait("0 0x3 0x0 0x0 0x0 0x0 0x0 0x0 0x0"), None);
        assert_eq!(futex_wait("running"), None);
    }

    #[test]
    fn a_futex_word_is_placed_in_its_mapping() {
        let place = |word| FutexWait { word, timed: false }.describe(MAPS);
        assert!(place(0x5555d0c00010).contains("static data of /work/target/release/ipcbench"));
        // .bss: anonymous, right after the binary's data.
        assert!(place(0x5555d0c10010).contains("static data of /work/target/release/ipcbench"));
        assert!(place(0x5555d1000010).ends_with("in [heap]"));
        assert!(place(0x7f0000000010).contains("shared mapping /dev/shm/ipcbench-abc"));
        assert!(place(0x7f0000002010).contains("private anonymous memory"));
        assert!(place(0x10).contains("an unmapped address"));
        assert!(place(0x10).contains("(no timeout)"));
    }
}
