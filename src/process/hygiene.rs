//! Resource hygiene: the suite tracks what it creates — child pids, shared-memory names
//! (all starting with `SHM_PREFIX`), temp files — and removes it on every exit path,
//! including SIGINT/SIGTERM of the parent. [`Snapshot`] lets tests and runs prove that
//! nothing was left.

use nix::unistd::Pid;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Every shared-memory name the suite creates starts with this.
pub(crate) const SHM_PREFIX: &str = "ipcbench-";
/// Every temp file or directory the suite creates starts with this.
pub const TEMP_PREFIX: &str = "ipcbench-";

/// Environment variable naming an outer run (CI, a script) that every process it starts
/// inherits: each top-level ipcbench process under it takes the tag `<outer>p<pid>`, so
/// two runs of one CI job started side by side never count each other's live names as
/// leaks, and a tool that looks for `ipcbench-<outer>` still finds them all.
pub const RUN_ENV: &str = "IPCBENCH_RUN";

/// Environment variable carrying a process's exact run tag to the children it spawns
/// (see [`join_run`]): they are part of its run, not runs of their own.
pub const RUN_TAG_ENV: &str = "IPCBENCH_RUN_TAG";

/// A tag shared by a top-level process and all its descendants (spawned children get it
/// through [`RUN_TAG_ENV`], forked ones inherit it), embedded in every shm and temp name
/// the suite creates: `ipcbench-<run>-...`. Leak checks look only at names of their own
/// run, so two test binaries — or two CI jobs — on one machine never see each other's
/// live resources as leaks.
pub(crate) fn run_tag() -> &'static str {
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TAG.get_or_init(|| {
        let valid = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric()))
        };
        let pid = std::process::id();
        valid(RUN_TAG_ENV)
            .or_else(|| valid(RUN_ENV).map(|outer| format!("{outer}p{pid}")))
            .unwrap_or_else(|| format!("r{pid}"))
    })
}

/// Makes the process `command` starts part of this run: its names carry this run's tag,
/// so this process's leak checks see what it leaves behind.
pub fn join_run(command: &mut std::process::Command) -> &mut std::process::Command {
    command.env(RUN_TAG_ENV, run_tag())
}

/// The prefix of every shm or temp name this run creates.
pub(crate) fn run_prefix() -> String {
    format!("{SHM_PREFIX}{}-", run_tag())
}

#[derive(Default)]
struct Resources {
    /// pid -> process group the child leads or joined (None: the parent's group).
    children: BTreeMap<i32, Option<i32>>,
    shm_names: BTreeSet<String>,
    temp_paths: BTreeSet<PathBuf>,
}

static RESOURCES: Mutex<Resources> = Mutex::new(Resources {
    children: BTreeMap::new(),
    shm_names: BTreeSet::new(),
    temp_paths: BTreeSet::new(),
});

fn resources() -> std::sync::MutexGuard<'static, Resources> {
    RESOURCES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) fn track_child(pid: Pid, pgid: Option<Pid>) {
    resources()
        .children
        .insert(pid.as_raw(), pgid.map(Pid::as_raw));
}

thread_local! {
    static BEFORE_TRACKING: std::cell::Cell<Option<fn(Pid)>> = const { std::cell::Cell::new(None) };
}

/// Test hook: `process::start` on this thread calls `hook` with the new child's pid after
/// the fork and before the child is tracked, so a test can force what another thread
/// might do in that window (the child exiting, the orphan reaper running).
#[doc(hidden)]
pub fn set_before_tracking_hook(hook: Option<fn(Pid)>) {
    BEFORE_TRACKING.with(|h| h.set(hook));
}

pub(crate) fn before_tracking(pid: Pid) {
    if let Some(hook) = BEFORE_TRACKING.with(|h| h.get()) {
        hook(pid);
    }
}

/// Starts in progress in this process, from before their fork until their child is
/// tracked (or the start failed). While one is, the orphan reaper leaves every zombie
/// alone: it cannot tell a started-but-not-yet-tracked child from an orphan.
static STARTS_IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Held by `process::start` from before its fork until the child is tracked.
pub(crate) struct Starting(());

pub(crate) fn starting() -> Starting {
    STARTS_IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
    Starting(())
}

impl Drop for Starting {
    fn drop(&mut self) {
        STARTS_IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}

pub(crate) fn untrack_child(pid: Pid) {
    resources().children.remove(&pid.as_raw());
}

/// Records a shared-memory name this process created and must unlink.
pub fn track_shm(name: &str) {
    resources().shm_names.insert(name.to_string());
}

/// Forgets a name once it has been unlinked (or handed to another owner).
pub(crate) fn untrack_shm(name: &str) {
    resources().shm_names.remove(name);
}

/// Records a temp path this process created and must remove.
pub(crate) fn track_temp(path: &Path) {
    resources().temp_paths.insert(path.to_path_buf());
}

pub(crate) fn untrack_temp(path: &Path) {
    resources().temp_paths.remove(path);
}

/// The registry, held across `fork(2)` by the forking thread (as a `pthread_atfork`
/// handler would). Another thread may hold the registry's lock at the moment of fork; the
/// child's copy of the lock would then stay locked forever, since that thread does not
/// exist in the child, and the child would hang in [`forget_inherited`]. Held by the
/// forking thread itself, the lock is released in the child by dropping the guard.
pub(crate) struct ForkGuard(std::sync::MutexGuard<'static, Resources>);

pub(crate) fn lock_for_fork() -> ForkGuard {
    ForkGuard(resources())
}

/// A forked child inherits the parent's registry but owns none of it: without this it
/// would unlink the parent's segments and kill its siblings on exit.
pub(crate) fn forget_inherited(guard: ForkGuard) {
    SUBREAPER.store(false, Ordering::SeqCst);
    // The starts in flight were the parent's (its threads are not here); this child's
    // `Starting` guard is never dropped, since the child leaves through _exit.
    STARTS_IN_FLIGHT.store(0, Ordering::SeqCst);
    let mut r = guard.0;
    r.children.clear();
    r.shm_names.clear();
    r.temp_paths.clear();
}

/// A fresh temp directory (prefix `ipcbench-`), tracked until [`remove_temp`].
pub fn temp_dir() -> std::io::Result<PathBuf> {
    let dir = tempfile::Builder::new()
        .prefix(&run_prefix())
        .tempdir()?
        .keep();
    track_temp(&dir);
    Ok(dir)
}

/// Removes a tracked temp file or directory.
pub fn remove_temp(path: &Path) {
    if path.is_dir() {
        let _ = std::fs::remove_dir_all(path);
    } else {
        let _ = std::fs::remove_file(path);
    }
    untrack_temp(path);
}

/// Kills and reaps every tracked child (with its group), unlinks every tracked segment,
/// removes every tracked temp path, and reaps orphans handed to us as subreaper.
pub(crate) fn cleanup_all() {
    let (children, shm, temps) = {
        let mut r = resources();
        (
            std::mem::take(&mut r.children),
            std::mem::take(&mut r.shm_names),
            std::mem::take(&mut r.temp_paths),
        )
    };
    for (&pid, &pgid) in &children {
        if let Some(pgid) = pgid {
            // SAFETY: kill(2) with a negative pid signals a process group.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
        // SAFETY: kill(2) on a tracked, not yet reaped child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    for &pid in children.keys() {
        let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
    }
    for name in shm {
        let _ = nix::sys::mman::shm_unlink(name.as_str());
    }
    for path in temps {
        remove_temp(&path);
    }
    reap_unowned(true);
}

/// Makes this process the subreaper of its descendants, so that orphans come back to the
/// suite (and are reaped here) instead of to a PID 1 that may never reap them.
pub(crate) fn become_subreaper() {
    if !SUBREAPER.swap(true, Ordering::SeqCst) {
        // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) sets a flag on this process only.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    }
}

/// Whether this process made itself a subreaper (fork does not inherit the flag).
static SUBREAPER: AtomicBool = AtomicBool::new(false);

/// Reaps zombie children that no `Child` handle owns and that live in another process
/// group than ours: orphans of the groups the suite creates for cases, daemons and
/// holders, reparented to us as subreaper.
///
/// Zombies in our own group are left alone: they may be children that other code in this
/// process started with `std::process::Command` and is about to wait for (reaping them
/// here would make its wait fail with ECHILD). `cleanup_all`, at exit, reaps those too.
///
/// Nor does it reap anything while a [`start`](super::start) is between its fork and the
/// tracking of its child, on any thread: that child, if it has already exited, looks
/// like an orphan (a daemon leads its own group), and reaping it would take its exit
/// status from its own handle. Such a round reaps nothing; orphans wait for the next.
pub fn reap_orphans() -> usize {
    reap_unowned(false)
}

fn reap_unowned(including_own_group: bool) -> usize {
    if !SUBREAPER.load(Ordering::SeqCst) {
        return 0; // orphans of our children go elsewhere; ours are reaped by their handles
    }
    let own_group = nix::unistd::getpgrp().as_raw();
    // Held through the scan and the waits: a start tracks its child under this lock, so
    // a child not in `owned` either was tracked after the scan (impossible while we
    // hold it) or belongs to a start still in flight — whose count, raised before its
    // fork, is then still raised when read after the scan below.
    let registry = resources();
    let owned: BTreeSet<i32> = registry.children.keys().copied().collect();
    let children = child_processes();
    if STARTS_IN_FLIGHT.load(Ordering::SeqCst) > 0 {
        return 0;
    }
    let mut reaped = 0;
    for proc_info in children {
        let foreign_group = proc_info.pgid != own_group;
        if proc_info.state == 'Z'
            && !owned.contains(&proc_info.pid)
            && (foreign_group || including_own_group)
        {
            let _ = nix::sys::wait::waitpid(Pid::from_raw(proc_info.pid), None);
            reaped += 1;
        }
    }
    reaped
}

/// Kills every process in `pgid` and reaps those that are our children.
pub fn kill_group(pgid: Pid) {
    let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
}

/// Installs SIGINT/SIGTERM/SIGHUP handling: clean up everything tracked, then exit with
/// 128 + signal as a shell would report it.
pub fn install_signal_cleanup() -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::Builder::new()
        .name("ipcbench-signal-cleanup".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                cleanup_all();
                std::process::exit(128 + signal);
            }
        })?;
    Ok(())
}

/// A process as seen in /proc.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcInfo {
    /// The process id.
    pub pid: i32,
    /// The parent pid, to tell which processes descend from this one.
    pub ppid: i32,
    pub(crate) pgid: i32,
    /// Scheduler state from /proc/PID/stat (`Z` for a zombie).
    pub state: char,
    pub(crate) comm: String,
}

/// Reads /proc/PID/stat. The comm field may hold spaces and parentheses, so split on the
/// last ')'.
pub fn proc_info(pid: i32) -> Option<ProcInfo> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_string();
    let mut rest = stat[close + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    let pgid = rest.next()?.parse().ok()?;
    Some(ProcInfo {
        pid,
        ppid,
        pgid,
        state,
        comm,
    })
}

/// Every process in the system (tests look for what a run left behind).
pub fn all_processes() -> Vec<ProcInfo> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(proc_info)
        .collect()
}

/// Direct children of this process, from /proc/self/task/*/children (cheap: no scan of
/// every process in the system).
pub(crate) fn child_processes() -> Vec<ProcInfo> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut pids: BTreeSet<i32> = BTreeSet::new();
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            pids.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    pids.into_iter().filter_map(proc_info).collect()
}

/// Every descendant of this process (children, grandchildren, ...).
pub(crate) fn descendants() -> Vec<ProcInfo> {
    let all = all_processes();
    let mut found: Vec<ProcInfo> = Vec::new();
    let mut frontier = vec![std::process::id() as i32];
    while let Some(parent) = frontier.pop() {
        for p in all.iter().filter(|p| p.ppid == parent) {
            frontier.push(p.pid);
            found.push(p.clone());
        }
    }
    found
}

/// Names in /dev/shm that this run created (see `run_tag`).
pub fn shm_names() -> BTreeSet<String> {
    list_prefixed(Path::new("/dev/shm"), &run_prefix())
}

/// Entries in the temp directory that this run created.
pub(crate) fn temp_names() -> BTreeSet<String> {
    list_prefixed(&std::env::temp_dir(), &run_prefix())
}

fn list_prefixed(dir: &Path, prefix: &str) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Open file descriptors of this process, not counting the one this listing uses (its
/// number depends on which fds are free, so counting it would make snapshots differ).
pub(crate) fn open_fds() -> BTreeSet<i32> {
    use nix::dir::Dir;
    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode;
    use std::os::fd::AsRawFd;
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let Ok(mut dir) = Dir::open("/proc/self/fd", flags, Mode::empty()) else {
        return BTreeSet::new();
    };
    let own = dir.as_raw_fd();
    dir.iter()
        .filter_map(|e| e.ok()?.file_name().to_str().ok()?.parse().ok())
        .filter(|&fd| fd != own)
        .collect()
}

/// What the suite could leak, at one moment.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub(crate) shm: BTreeSet<String>,
    pub(crate) temp: BTreeSet<String>,
    pub(crate) fds: BTreeSet<i32>,
    pub(crate) descendants: Vec<ProcInfo>,
}

/// Something left behind since a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Leak {
    /// A shared-memory name under /dev/shm.
    Shm(String),
    /// A file or directory under the temp directory, by its name there.
    Temp(String),
    /// A file descriptor still open in this process.
    Fd {
        /// Its number.
        fd: i32,
        /// What it points to (the /proc/self/fd link: a path, `pipe:[…]`, `socket:[…]`).
        target: String,
    },
    /// A descendant process still there: running, stopped, or a zombie nobody reaped.
    Process {
        /// Its pid.
        pid: i32,
        /// Its command name (/proc/PID/comm).
        comm: String,
        /// Its scheduler state (`Z`: a zombie).
        state: char,
    },
}

impl std::fmt::Display for Leak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Leak::Shm(name) => write!(f, "shared-memory name /dev/shm/{name}"),
            Leak::Temp(name) => {
                write!(f, "temp path {}", std::env::temp_dir().join(name).display())
            }
            Leak::Fd { fd, target } => write!(f, "file descriptor {fd} -> {target}"),
            Leak::Process { pid, comm, state } if *state == 'Z' => {
                write!(f, "zombie process {pid} ({comm})")
            }
            Leak::Process { pid, comm, state } => {
                write!(f, "leftover process {pid} ({comm}, state {state})")
            }
        }
    }
}

impl Snapshot {
    /// Records what this run owns now (shared-memory names, temp paths, fds, descendant
    /// processes), to compare against after the code under test.
    pub fn take() -> Snapshot {
        Snapshot {
            shm: shm_names(),
            temp: temp_names(),
            fds: open_fds(),
            descendants: descendants(),
        }
    }

    /// What exists now that did not at this snapshot. Processes are checked for a short
    /// while, since a child that was just killed needs a moment to be reaped.
    pub fn leaks_since(&self) -> Vec<Leak> {
        let mut leaks = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            reap_orphans();
            let now = Snapshot::take();
            leaks.clear();
            leaks.extend(now.shm.difference(&self.shm).cloned().map(Leak::Shm));
            leaks.extend(now.temp.difference(&self.temp).cloned().map(Leak::Temp));
            for fd in now.fds.difference(&self.fds) {
                // An fd closed since the listing is not a leak.
                if let Ok(target) = std::fs::read_link(format!("/proc/self/fd/{fd}")) {
                    let target = target.display().to_string();
                    leaks.push(Leak::Fd { fd: *fd, target });
                }
            }
            let before: BTreeSet<i32> = self.descendants.iter().map(|p| p.pid).collect();
            leaks.extend(
                now.descendants
                    .iter()
                    .filter(|p| !before.contains(&p.pid))
                    .map(|p| Leak::Process {
                        pid: p.pid,
                        comm: p.comm.clone(),
                        state: p.state,
                    }),
            );
            if leaks.is_empty() || std::time::Instant::now() >= deadline {
                return leaks;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// Whether process `pid` has a handler for `signal` (its SigCgt mask in /proc).
pub fn catches_signal(pid: i32, signal: i32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (signal - 1)) != 0)
}

/// Live (not zombie) processes of process group `pgid`.
pub fn group_members(pgid: i32) -> Vec<ProcInfo> {
    all_processes()
        .into_iter()
        .filter(|p| p.pgid == pgid && p.state != 'Z')
        .collect()
}
