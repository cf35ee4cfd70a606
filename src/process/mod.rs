//! Code in real child processes: two start methods (as Python has them), `Child` handles
//! that are always reaped, a watchdog that turns a hang into a report, and the hygiene
//! registry that removes what the suite created on every exit path.
//!
//! # Start methods
//!
//! * [`StartMethod::Spawn`] re-executes the current executable; a constructor that runs
//!   before `main` enters the registered entry point (see [`entry`]). Safe from any
//!   binary, test or bench; costs an exec.
//! * [`StartMethod::Fork`] calls the entry point directly in a `fork(2)`ed copy. Test
//!   harnesses and criterion are multi-threaded, and only the forking thread survives in
//!   the child, so a lock another thread held at the moment of fork stays locked forever
//!   in the child. A forked child therefore must not touch stdout/stderr (their locks),
//!   must not rely on other threads, and must not start thread pools that were already
//!   running in the parent. glibc makes `malloc` usable after fork, so ordinary Rust code
//!   that allocates is fine. Panics are caught and reported without printing, and the
//!   child always leaves through `_exit`, never through the harness's own exit path.
//!   Every fd except stdio, the result pipe and `Options::inherit_fds` is closed in the
//!   forked child, so it holds exactly what a spawned child would; likewise every signal
//!   the parent handles is reset to SIG_DFL (ignored ones stay ignored) and the signal
//!   mask is cleared, as exec would (see `reset_signals_in_child`).
//!
//! # Lifetime
//!
//! Every child is reaped. Dropping a `Child` that is still running kills it (SIGKILL)
//! and reaps it: a handle owns its process, so nothing outlives the handle by accident.
//! A process that must outlive its handle has to be started by a child that exits (the
//! orphan then belongs to the nearest subreaper, which the suite makes itself — see
//! [`hygiene`]).

#![warn(missing_docs)]

pub mod affinity;
pub mod entry;
pub mod hygiene;
pub mod watchdog;

use entry::Outcome;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

pub use nix::unistd::Pid;

/// Serialises the library's own tests that start processes or count fds: children and
/// fds are process-wide, and the tests of one binary run in parallel threads.
#[cfg(test)]
pub(crate) fn tests_serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How a child process is started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum StartMethod {
    /// Re-execute the current executable and enter a registered entry point.
    Spawn,
    /// `fork(2)` and call the entry point in the copy.
    Fork,
}

impl StartMethod {
    /// Both methods, for a test or a benchmark that runs each.
    pub const ALL: [StartMethod; 2] = [StartMethod::Spawn, StartMethod::Fork];

    /// The method's name as the CLI and the results spell it (`spawn`, `fork`).
    pub fn name(self) -> &'static str {
        match self {
            StartMethod::Spawn => "spawn",
            StartMethod::Fork => "fork",
        }
    }
}

/// Which process group the child joins.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Group {
    /// Stay in the parent's group (unless the child is a daemon: daemons lead their own).
    #[default]
    Inherit,
    /// Lead a new group, so that it and everything it starts can be killed at once.
    New,
    /// Join an existing group (for example the one a scenario's first process leads).
    Join(Pid),
}

/// Options for starting a child.
#[derive(Clone, Debug)]
pub struct Options {
    pub(crate) name: String,
    pub(crate) method: StartMethod,
    /// Dies with its parent, even when the parent is SIGKILLed (PR_SET_PDEATHSIG), and
    /// leads its own process group so that its own children can be killed with it.
    ///
    /// Linux delivers the death signal when the parent *thread* ends: start daemons from
    /// a thread that outlives them.
    pub(crate) daemon: bool,
    pub(crate) group: Group,
    /// File descriptors the child keeps under the same numbers (pipe ends, sockets).
    /// Everything else is close-on-exec for a spawned child; a forked child inherits all.
    pub(crate) inherit_fds: Vec<RawFd>,
    /// Pin the child to this CPU (sched affinity).
    pub(crate) cpu: Option<usize>,
}

impl Options {
    /// Options for a child labelled `name` (in hang reports and errors): spawned, not a
    /// daemon, in the parent's process group, no fd inherited, not pinned.
    pub fn new(name: impl Into<String>) -> Self {
        Options {
            name: name.into(),
            method: StartMethod::Spawn,
            daemon: false,
            group: Group::Inherit,
            inherit_fds: Vec::new(),
            cpu: None,
        }
    }
    /// Starts the child with `method` instead of spawn.
    pub fn method(mut self, method: StartMethod) -> Self {
        self.method = method;
        self
    }
    /// Makes the child a daemon: see [`Child::daemon`].
    pub fn daemon(mut self, daemon: bool) -> Self {
        self.daemon = daemon;
        self
    }
    /// Chooses the process group the child joins.
    pub fn group(mut self, group: Group) -> Self {
        self.group = group;
        self
    }
    /// Keeps `fd` open in the child under the same number (add one call per fd).
    pub fn inherit_fd(mut self, fd: RawFd) -> Self {
        self.inherit_fds.push(fd);
        self
    }
    /// Pins the child to `cpu` (None: wherever the scheduler puts it).
    pub fn cpu(mut self, cpu: Option<usize>) -> Self {
        self.cpu = cpu;
        self
    }
}

/// Errors from starting, joining or collecting a child.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The child could not be started (fork, exec, its arguments, its pipes).
    #[error("cannot start child {name:?}: {reason}")]
    Start {
        /// The child's label.
        name: String,
        /// What failed.
        reason: String,
    },
    /// The child was still running at the deadline (it is left running: the caller
    /// decides whether to kill it).
    #[error("child {name:?} (pid {pid}) did not finish within {timeout:?}")]
    Timeout {
        /// The child's label.
        name: String,
        /// Its pid.
        pid: i32,
        /// The bound that passed.
        timeout: Duration,
    },
    /// The entry point panicked.
    #[error("child {name:?} (pid {pid}) panicked: {message}")]
    Panicked {
        /// The child's label.
        name: String,
        /// Its pid.
        pid: i32,
        /// The panic message.
        message: String,
    },
    /// The entry point returned an error.
    #[error("child {name:?} (pid {pid}) failed: {message}")]
    Failed {
        /// The child's label.
        name: String,
        /// Its pid.
        pid: i32,
        /// The error's text.
        message: String,
    },
    /// A signal ended the child before it reported a result.
    #[error("child {name:?} (pid {pid}) was killed by signal {signal} ({})", signal_name(*signal))]
    Killed {
        /// The child's label.
        name: String,
        /// Its pid.
        pid: i32,
        /// The signal number.
        signal: i32,
    },
    /// The child exited without reporting a result (it called `exit` itself, or its
    /// result pipe broke).
    #[error("child {name:?} (pid {pid}) exited with code {code} without reporting a result")]
    NoResult {
        /// The child's label.
        name: String,
        /// Its pid.
        pid: i32,
        /// Its exit code.
        code: i32,
    },
    /// The child's result is not the JSON of the type the caller expects.
    #[error("child {name:?} (pid {pid}) returned a result that does not decode: {reason}")]
    Decode {
        /// The child's label.
        name: String,
        /// Its pid.
        pid: i32,
        /// The decoder's complaint.
        reason: String,
    },
    /// A system call on the child (wait, kill, pidfd) failed.
    #[error("system call failed for child {name:?}: {source}")]
    Sys {
        /// The child's label.
        name: String,
        /// The call's error.
        #[source]
        source: nix::Error,
    },
}

/// Name of a signal number, e.g. "SIGKILL".
pub(crate) fn signal_name(signal: i32) -> &'static str {
    nix::sys::signal::Signal::try_from(signal)
        .map(|s| s.as_str())
        .unwrap_or("unknown signal")
}

/// A child process. Always reaped: by `join`, or on drop (after SIGKILL if still running).
#[derive(Debug)]
pub struct Child {
    pid: Pid,
    name: String,
    daemon: bool,
    pgid: Option<Pid>,
    pidfd: OwnedFd,
    result_pipe: Option<OwnedFd>,
    result_bytes: Vec<u8>,
    exitcode: Option<i32>,
}

/// Starts the registered entry point `entry` with `args` in a new child process.
pub fn start<A: Serialize>(entry: &str, args: &A, options: Options) -> Result<Child, ProcessError> {
    let start_error = |reason: String| ProcessError::Start {
        name: options.name.clone(),
        reason,
    };
    entry::lookup(entry).map_err(start_error)?;
    if let Some(cpu) = options.cpu.filter(|&c| c >= libc::CPU_SETSIZE as usize) {
        return Err(start_error(format!(
            "cannot pin to CPU {cpu}: a CPU set names CPUs below {} only",
            libc::CPU_SETSIZE
        )));
    }
    let args = serde_json::to_string(args).map_err(|e| start_error(e.to_string()))?;
    // Until the child is tracked, the orphan reaper must not take it (see reap_orphans).
    let _starting = hygiene::starting();
    hygiene::become_subreaper();
    let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| start_error(format!("pipe2: {e}")))?;
    // Our end never blocks (results are drained as they come); the child's end is a
    // separate open file description and stays blocking.
    nix::fcntl::fcntl(
        &read_end,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .map_err(|e| start_error(format!("fcntl O_NONBLOCK: {e}")))?;
    let parent = nix::unistd::getpid();
    let setup = ChildSetup {
        parent,
        daemon: options.daemon,
        group: effective_group(&options),
        cpu: options.cpu,
    };
    let pid = match options.method {
        StartMethod::Spawn => spawn_exec(entry, &args, &options, &setup, write_end.as_raw_fd())
            .map_err(start_error)?,
        StartMethod::Fork => {
            let mut keep = options.inherit_fds.clone();
            keep.extend([0, 1, 2, write_end.as_raw_fd()]);
            keep.sort_unstable();
            keep.dedup();
            fork_entry(entry, &args, &setup, &keep, write_end.as_raw_fd()).map_err(start_error)?
        }
    };
    drop(write_end);
    let pgid = match setup.group {
        Group::Inherit => None,
        Group::New => {
            // Also set from the parent, so the group exists before start() returns.
            let _ = nix::unistd::setpgid(pid, pid);
            Some(pid)
        }
        Group::Join(leader) => {
            let _ = nix::unistd::setpgid(pid, leader);
            Some(leader)
        }
    };
    let pidfd = pidfd_open(pid).map_err(|e| start_error(format!("pidfd_open: {e}")))?;
    hygiene::before_tracking(pid);
    hygiene::track_child(pid, pgid);
    Ok(Child {
        pid,
        name: options.name,
        daemon: options.daemon,
        pgid,
        pidfd,
        result_pipe: Some(read_end),
        result_bytes: Vec::new(),
        exitcode: None,
    })
}

fn effective_group(options: &Options) -> Group {
    match (options.group, options.daemon) {
        (Group::Inherit, true) => Group::New,
        (group, _) => group,
    }
}

/// What the child does to itself before it runs the entry.
#[derive(Clone, Copy)]
struct ChildSetup {
    parent: Pid,
    daemon: bool,
    group: Group,
    cpu: Option<usize>,
}

impl ChildSetup {
    /// Only async-signal-safe calls: this runs between fork and exec (or entry).
    fn apply(&self) -> std::io::Result<()> {
        match self.group {
            Group::Inherit => {}
            Group::New => {
                // SAFETY: setpgid is async-signal-safe.
                unsafe { libc::setpgid(0, 0) };
            }
            Group::Join(leader) => {
                // SAFETY: setpgid is async-signal-safe.
                unsafe { libc::setpgid(0, leader.as_raw()) };
            }
        }
        if self.daemon {
            // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a flag on this process.
            if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before the prctl took effect.
            // SAFETY: getppid and _exit are async-signal-safe.
            unsafe {
                if libc::getppid() != self.parent.as_raw() {
                    libc::_exit(1);
                }
            }
        }
        if let Some(cpu) = self.cpu {
            // The child checks its own placement: a pin that failed or did not take
            // (a CPU it may not use) fails the start, rather than leaving it unpinned
            // under a pinned label. EINVAL either way (no allocation here).
            // SAFETY: zeroed cpu_set_t values are valid empty sets; `cpu` is below
            // CPU_SETSIZE (checked by `start`); sched_set/getaffinity only touch these
            // sets and this process.
            unsafe {
                let size = std::mem::size_of::<libc::cpu_set_t>();
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                if libc::sched_setaffinity(0, size, &set) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let mut now: libc::cpu_set_t = std::mem::zeroed();
                if libc::sched_getaffinity(0, size, &mut now) != 0
                    || libc::CPU_COUNT(&now) != 1
                    || !libc::CPU_ISSET(cpu, &now)
                {
                    return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
                }
            }
            // A forked child carries its parent thread's cached mask.
            affinity::forget_allowed();
        }
        Ok(())
    }
}

fn spawn_exec(
    entry: &str,
    args: &str,
    options: &Options,
    setup: &ChildSetup,
    result_fd: RawFd,
) -> Result<Pid, String> {
    let _ = entry::bootstrap_anchor();
    if args.len() > 100_000 {
        return Err(format!(
            "arguments are {} bytes of JSON; the environment allows at most 100000 (pass bulk data through a pipe or shared memory)",
            args.len()
        ));
    }
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut keep: Vec<RawFd> = options.inherit_fds.clone();
    keep.push(result_fd);
    let setup = *setup;
    let mut command = std::process::Command::new(exe);
    command
        .env(entry::ENTRY_ENV, entry)
        .env(entry::ARGS_ENV, args)
        .env(entry::RESULT_FD_ENV, result_fd.to_string())
        .env(entry::NAME_ENV, &options.name)
        .stdin(std::process::Stdio::null());
    hygiene::join_run(&mut command);
    // SAFETY: the closure runs between fork and exec and makes only async-signal-safe
    // calls (fcntl, setpgid, prctl, getppid, sched_setaffinity).
    unsafe {
        command.pre_exec(move || {
            for &fd in &keep {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            setup.apply()
        });
    }
    let child = command.spawn().map_err(|e| match setup.cpu {
        Some(cpu) if e.raw_os_error() == Some(libc::EINVAL) => {
            format!("spawn: cannot pin the child to CPU {cpu} (not one it may run on): {e}")
        }
        _ => format!("spawn: {e}"),
    })?;
    // std's Child does not reap on drop; we reap through waitpid ourselves.
    Ok(Pid::from_raw(child.id() as i32))
}

/// In a forked child, closes every fd except `keep` (sorted), so a forked child holds
/// exactly the ends it was handed, as a spawned one does: an end inherited by accident
/// would keep a reader from ever seeing end of stream.
fn close_fds_except(keep: &[RawFd]) {
    let mut from: u32 = 0;
    for &fd in keep {
        let fd = fd as u32;
        if fd > from {
            // SAFETY: close_range is async-signal-safe and only closes fds of this process.
            unsafe { libc::syscall(libc::SYS_close_range, from, fd - 1, 0) };
        }
        from = fd + 1;
    }
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_close_range, from, u32::MAX, 0) };
}

/// Blocks every signal in the calling thread; returns the mask it had.
fn block_all_signals() -> libc::sigset_t {
    // SAFETY: sigfillset and pthread_sigmask only write the sets we own and this
    // thread's mask; a zeroed sigset_t is valid storage for either.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        old
    }
}

fn restore_signal_mask(mask: &libc::sigset_t) {
    // SAFETY: sets this thread's mask from a set returned by `block_all_signals`.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, mask, std::ptr::null_mut()) };
}

/// In a forked child, right after fork (signals still blocked): every signal the parent
/// *handles* goes back to SIG_DFL, as exec(2) does for a spawned child; ignored ones stay
/// ignored (SIGPIPE, which the suite ignores on purpose); then the mask is cleared.
///
/// The parent's handlers are not the child's: the CLI's SIGINT/SIGTERM/SIGHUP handlers
/// (signal-hook) only write to a self-pipe, whose fds the child closes — so with them
/// `terminate()` did nothing, Ctrl-C left forked children running, and the handler wrote
/// into whatever fd later took the self-pipe's number. SIGSEGV and SIGBUS keep the Rust
/// runtime's stack-overflow reporters, which are as valid in the copy as in the parent.
///
/// Only sigaction and sigprocmask: async-signal-safe.
fn reset_signals_in_child() {
    // SAFETY: sigaction reads and sets this process's dispositions with structs we own
    // (glibc refuses its own reserved signals and SIGKILL/SIGSTOP with EINVAL, which is
    // ignored); sigemptyset/sigprocmask set this (single-threaded) child's mask.
    unsafe {
        for sig in 1..=libc::SIGRTMAX() {
            if sig == libc::SIGSEGV || sig == libc::SIGBUS {
                continue;
            }
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
                continue;
            }
            if old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN {
                let mut default: libc::sigaction = std::mem::zeroed();
                default.sa_sigaction = libc::SIG_DFL;
                libc::sigemptyset(&mut default.sa_mask);
                libc::sigaction(sig, &default, std::ptr::null_mut());
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
}

fn fork_entry(
    entry: &str,
    args: &str,
    setup: &ChildSetup,
    keep_fds: &[RawFd],
    write_fd: RawFd,
) -> Result<Pid, String> {
    entry::prepare_fork();
    // Held across the fork so that no other thread holds the registry's lock when the
    // child is copied (see `hygiene::lock_for_fork`).
    let registry = hygiene::lock_for_fork();
    // Every signal is blocked in this thread across the fork, so none reaches the child
    // while it still runs the parent's handlers (a handler there would, for example,
    // write into the CLI's signal self-pipe, which the child still shares until
    // `close_fds_except`, and make the *parent* clean up and exit).
    let parent_mask = block_all_signals();
    // SAFETY: the child only makes async-signal-safe calls before the entry, runs the
    // entry with panics caught and silent, and leaves through _exit; see the module docs
    // for what the entry itself may do.
    let forked = unsafe { nix::unistd::fork() };
    if !matches!(forked, Ok(nix::unistd::ForkResult::Child)) {
        restore_signal_mask(&parent_mask);
    }
    match forked.map_err(|e| format!("fork: {e}"))? {
        nix::unistd::ForkResult::Parent { child } => {
            drop(registry);
            Ok(child)
        }
        nix::unistd::ForkResult::Child => {
            reset_signals_in_child();
            close_fds_except(keep_fds);
            if setup.apply().is_err() {
                // SAFETY: _exit is async-signal-safe and skips the harness's exit path.
                unsafe { libc::_exit(entry::EXIT_BOOTSTRAP) };
            }
            hygiene::forget_inherited(registry);
            let outcome = entry::run_entry(entry, args, true);
            let code = match outcome {
                Outcome::Returned(_) => 0,
                _ => entry::EXIT_FAILED,
            };
            entry::report_outcome(write_fd, &outcome);
            hygiene::cleanup_all();
            // SAFETY: as above; never return into the parent's code.
            unsafe { libc::_exit(code) }
        }
    }
}

fn pidfd_open(pid: Pid) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

impl Child {
    /// The child's pid (still its own until it is reaped, which only this `Child` does).
    pub fn pid(&self) -> Pid {
        self.pid
    }
    /// The label given in [`Options::new`].
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Whether the child dies with its parent (PR_SET_PDEATHSIG) and leads its own process
    /// group, so that its own children go with it.
    pub fn daemon(&self) -> bool {
        self.daemon
    }
    /// The process group this child leads or joined, if not the parent's.
    pub fn pgid(&self) -> Option<Pid> {
        self.pgid
    }

    /// None while running; the exit code; or minus the signal number that killed it.
    pub fn exitcode(&mut self) -> Option<i32> {
        let _ = self.wait_until(Some(Instant::now()));
        self.exitcode
    }

    /// True until the child has ended (reaping it if it has, without waiting).
    pub fn is_alive(&mut self) -> bool {
        self.exitcode().is_none()
    }

    /// Waits for the child to end, at most `timeout` (None: without bound — only for
    /// children that are known to end). Returns the exit code, or None if still running.
    pub fn join(&mut self, timeout: Option<Duration>) -> Result<Option<i32>, ProcessError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        self.wait_until(deadline)?;
        Ok(self.exitcode)
    }

    /// SIGTERM, as Python's `terminate()`.
    pub fn terminate(&self) -> Result<(), ProcessError> {
        self.signal(nix::sys::signal::Signal::SIGTERM)
    }

    /// SIGKILL, as Python's `kill()`.
    pub fn kill(&self) -> Result<(), ProcessError> {
        self.signal(nix::sys::signal::Signal::SIGKILL)
    }

    /// Sends `signal` to the child; a child already reaped is left alone (its pid may belong
    /// to another process by now).
    pub fn signal(&self, signal: nix::sys::signal::Signal) -> Result<(), ProcessError> {
        if self.exitcode.is_some() {
            return Ok(());
        }
        // Not yet reaped, so the pid cannot have been reused.
        match nix::sys::signal::kill(self.pid, signal) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(source) => Err(ProcessError::Sys {
                name: self.name.clone(),
                source,
            }),
        }
    }

    /// Kills the child's whole process group (if it has its own) or the child.
    pub(crate) fn kill_group(&self) {
        match self.pgid {
            Some(pgid) => {
                let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            }
            None => {
                let _ = self.kill();
            }
        }
    }

    /// Joins and decodes the value the entry returned. A panic, an error, a signal or a
    /// timeout is an error naming the child; on timeout the child is left running.
    pub fn result<R: DeserializeOwned>(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<R, ProcessError> {
        let code = self.join(timeout)?;
        let Some(code) = code else {
            return Err(ProcessError::Timeout {
                name: self.name.clone(),
                pid: self.pid.as_raw(),
                timeout: timeout.unwrap_or_default(),
            });
        };
        let (name, pid) = (self.name.clone(), self.pid.as_raw());
        let outcome: Option<Outcome> = if self.result_bytes.is_empty() {
            None
        } else {
            Some(
                serde_json::from_slice(&self.result_bytes).map_err(|e| ProcessError::Decode {
                    name: name.clone(),
                    pid,
                    reason: format!("outcome frame: {e}"),
                })?,
            )
        };
        match (outcome, code) {
            (Some(Outcome::Returned(value)), _) => {
                serde_json::from_value(value).map_err(|e| ProcessError::Decode {
                    name,
                    pid,
                    reason: e.to_string(),
                })
            }
            (Some(Outcome::Panicked(message)), _) => {
                Err(ProcessError::Panicked { name, pid, message })
            }
            (Some(Outcome::Failed(message)), _) => Err(ProcessError::Failed { name, pid, message }),
            (None, code) if code < 0 => Err(ProcessError::Killed {
                name,
                pid,
                signal: -code,
            }),
            (None, code) => Err(ProcessError::NoResult { name, pid, code }),
        }
    }

    /// Polls the result pipe and the pidfd until the child has exited and been reaped, or
    /// the deadline passes. Reads the result as it comes so a large one cannot block the
    /// child on a full pipe.
    fn wait_until(&mut self, deadline: Option<Instant>) -> Result<(), ProcessError> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        while self.exitcode.is_none() {
            let timeout = match deadline {
                None => PollTimeout::NONE,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    PollTimeout::try_from(left.as_millis().min(i32::MAX as u128) as i32)
                        .unwrap_or(PollTimeout::MAX)
                }
            };
            let pipe_ready;
            let exited;
            {
                let mut fds = vec![PollFd::new(self.pidfd.as_fd(), PollFlags::POLLIN)];
                if let Some(pipe) = &self.result_pipe {
                    fds.push(PollFd::new(pipe.as_fd(), PollFlags::POLLIN));
                }
                match poll(&mut fds, timeout) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(source) => {
                        return Err(ProcessError::Sys {
                            name: self.name.clone(),
                            source,
                        })
                    }
                }
                exited = fds[0].any().unwrap_or(false);
                pipe_ready = fds
                    .get(1)
                    .map(|f| f.any().unwrap_or(false))
                    .unwrap_or(false);
            }
            if pipe_ready {
                self.drain_result_pipe();
            }
            if exited {
                // Whatever the child wrote before exiting is in the pipe now.
                self.drain_result_pipe();
                self.reap()?;
            } else if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(());
            }
        }
        Ok(())
    }

    fn drain_result_pipe(&mut self) {
        let Some(pipe) = self.result_pipe.take() else {
            return;
        };
        let mut file = std::fs::File::from(pipe);
        // The fd is non-blocking (set at creation). read_to_end grows the heap buffer
        // only as far as the data goes: a large stack buffer here cost ~16 copy-on-write
        // page faults per start, as the parent's stack pages are shared with a forked
        // child that is still alive. Through `take` it skips File's size probe (statx,
        // lseek), two system calls per child.
        // Ok means EOF (every write end closed): drop the pipe. WouldBlock (or another
        // error) keeps what was read and the pipe, for later. EINTR is retried inside.
        if (&mut file)
            .take(u64::MAX)
            .read_to_end(&mut self.result_bytes)
            .is_ok()
        {
            return;
        }
        self.result_pipe = Some(OwnedFd::from(file));
    }

    fn reap(&mut self) -> Result<(), ProcessError> {
        use nix::sys::wait::{waitpid, WaitStatus};
        loop {
            match waitpid(self.pid, None) {
                Ok(WaitStatus::Exited(_, code)) => self.exitcode = Some(code),
                Ok(WaitStatus::Signaled(_, signal, _)) => self.exitcode = Some(-(signal as i32)),
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(source) => {
                    return Err(ProcessError::Sys {
                        name: self.name.clone(),
                        source,
                    })
                }
            }
            hygiene::untrack_child(self.pid);
            return Ok(());
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.exitcode.is_none() {
            let _ = self.kill();
            let _ = self.wait_until(Some(Instant::now() + Duration::from_secs(5)));
        }
    }
}

/// Starts `entry` in a child and waits for its typed result (a convenience for the common
/// "run this over there" case). On timeout the child is killed.
pub fn run<A: Serialize, R: DeserializeOwned>(
    entry: &str,
    args: &A,
    options: Options,
    timeout: Duration,
) -> Result<R, ProcessError> {
    let mut child = start(entry, args, options)?;
    child.result(Some(timeout))
}

/// Ignores SIGPIPE in this process, so a write to a pipe whose readers are gone returns
/// EPIPE (which the pipe mechanisms report as `PeerGone`) instead of killing the writer.
pub(crate) fn ignore_sigpipe() {
    // SAFETY: setting a signal disposition to SIG_IGN is async-signal-safe and affects
    // only this process.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// Environment variable naming the Python interpreter the CPython lane and its scenarios
/// run (default `python3` on PATH).
pub const PYTHON_ENV: &str = "IPCBENCH_PYTHON";

/// The Python interpreter to start: `IPCBENCH_PYTHON`, else `python3` on PATH.
pub fn python() -> std::ffi::OsString {
    std::env::var_os(PYTHON_ENV).unwrap_or_else(|| "python3".into())
}
