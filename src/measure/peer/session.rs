//! One running peer process and the JSON-lines conversation with it.
//!
//! The peer is an outside program (a Python interpreter running a script ipcbench ships),
//! so nothing it does is trusted to end: every read is bounded, its stderr is captured
//! into the error a failure reports, and on a bound or a death its whole process group
//! (it leads one, and its own children inherit it) is killed and reaped. It runs with
//! `TMPDIR` pointing into a directory of this run's, removed when the session ends, so
//! the temp files a killed interpreter could not remove (`pymp-*` sockets) go with it.

use super::PeerError;
use crate::process::hygiene::catches_signal;
pub use crate::process::hygiene::group_members;
use crate::process::{hygiene, watchdog, Pid};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How to start a peer: a program, its arguments, and optionally a script ipcbench ships
/// (written into the session's directory and passed as the first argument).
#[derive(Clone, Debug)]
pub struct PeerCommand {
    /// The interpreter (or any program speaking the peer protocol).
    pub program: std::ffi::OsString,
    /// Its arguments, after the script when there is one.
    pub args: Vec<std::ffi::OsString>,
    /// (file name, contents).
    pub script: Option<(&'static str, &'static str)>,
}

/// Bytes of the peer's stderr kept for error messages (the end of it).
const STDERR_KEPT: usize = 16 * 1024;

/// After a bound passes: how long the peer gets to print its Python stacks (SIGUSR1,
/// faulthandler) before its group is killed.
const STACK_GRACE: Duration = Duration::from_millis(300);
/// A stack dump is over once the peer's stderr has been quiet this long.
const DUMP_QUIET: Duration = Duration::from_millis(30);

/// The end of the peer's stderr, and how many bytes it has written in all (so that what
/// it wrote after a given moment can be told apart).
#[derive(Default)]
struct StderrTail {
    text: String,
    total: usize,
}

impl StderrTail {
    /// The kept text written before the mark `total` was taken, and what came after it.
    fn split_at_mark(&self, mark: usize) -> (&str, &str) {
        let after = self.total.saturating_sub(mark).min(self.text.len());
        let mut cut = self.text.len() - after;
        while !self.text.is_char_boundary(cut) {
            cut += 1;
        }
        self.text.split_at(cut)
    }
}

/// A running peer.
pub struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<std::io::Result<String>>,
    stderr: Arc<Mutex<StderrTail>>,
    stderr_reader: Option<std::thread::JoinHandle<()>>,
    dir: PathBuf,
    name: String,
    ended: bool,
    /// How the peer ended, once reaped.
    status: Option<std::process::ExitStatus>,
}

impl Session {
    /// Starts the peer in its own process group. `name` names it in every message.
    pub fn start(name: &str, command: &PeerCommand) -> Result<Session, PeerError> {
        let dir = hygiene::temp_dir().map_err(|source| PeerError::TempDir {
            peer: name.to_string(),
            source,
        })?;
        let result = Session::start_in(name, command, dir.clone());
        if result.is_err() {
            hygiene::remove_temp(&dir);
        }
        result
    }

    fn start_in(name: &str, command: &PeerCommand, dir: PathBuf) -> Result<Session, PeerError> {
        let mut cmd = Command::new(&command.program);
        if let Some((file, source)) = command.script {
            let path = dir.join(file);
            std::fs::write(&path, source).map_err(|source| PeerError::Script {
                peer: name.to_string(),
                path: path.clone(),
                source,
            })?;
            cmd.arg(path);
        }
        cmd.args(&command.args)
            .env("TMPDIR", &dir)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn().map_err(|source| PeerError::Spawn {
            peer: name.to_string(),
            program: command.program.to_string_lossy().into_owned(),
            source,
        })?;
        let pid = Pid::from_raw(child.id() as i32);
        hygiene::track_child(pid, Some(pid));
        let (stdin, stdout, stderr) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let (tx, lines) = std::sync::mpsc::channel();
        if let Some(stdout) = stdout {
            std::thread::Builder::new()
                .name(format!("{name}-stdout"))
                .spawn(move || {
                    for line in BufReader::new(stdout).lines() {
                        let end = line.is_err();
                        if tx.send(line).is_err() || end {
                            break;
                        }
                    }
                })
                .map_err(|source| PeerError::Reader {
                    peer: name.to_string(),
                    source,
                })?;
        }
        let kept = Arc::new(Mutex::new(StderrTail::default()));
        let stderr_reader = stderr.map(|mut stderr| {
            let kept = kept.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stderr.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let mut tail = kept.lock().unwrap_or_else(|p| p.into_inner());
                    tail.total += n;
                    let text = &mut tail.text;
                    text.push_str(&String::from_utf8_lossy(&buf[..n]));
                    if text.len() > 2 * STDERR_KEPT {
                        let mut cut = text.len() - STDERR_KEPT;
                        while !text.is_char_boundary(cut) {
                            cut += 1;
                        }
                        text.drain(..cut);
                    }
                }
            })
        });
        Ok(Session {
            child,
            stdin,
            lines,
            stderr: kept,
            stderr_reader,
            dir,
            name: name.to_string(),
            ended: false,
            status: None,
        })
    }

    /// The peer's pid (it leads its process group).
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends `request` and waits at most `bound` for its one-line answer. `doing` says
    /// what the request is (the workload's name) in the error. On a bound or a death the
    /// peer's group is killed and the session is over: later calls fail at once.
    pub fn request(
        &mut self,
        doing: &str,
        request: &Value,
        bound: Duration,
    ) -> Result<Value, PeerError> {
        if self.ended {
            return Err(PeerError::Ended {
                peer: self.name.clone(),
            });
        }
        let mut line = request.to_string();
        line.push('\n');
        let sent = self
            .stdin
            .as_mut()
            .map(|s| s.write_all(line.as_bytes()).and_then(|_| s.flush()));
        if let Some(Err(source)) = sent {
            let death = self.end_dead(Duration::from_secs(2));
            return Err(PeerError::Send {
                peer: self.name.clone(),
                doing: doing.to_string(),
                source,
                death,
            });
        }
        let deadline = Instant::now() + bound;
        loop {
            let slice = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100));
            match self.lines.recv_timeout(slice) {
                Ok(Ok(text)) if text.trim().is_empty() => continue,
                Ok(Ok(text)) => {
                    return serde_json::from_str(&text).map_err(|source| {
                        self.kill();
                        PeerError::NotJson {
                            peer: self.name.clone(),
                            doing: doing.to_string(),
                            line: shorten(&text, 200),
                            stderr: self.stderr_note(),
                            source,
                        }
                    })
                }
                Ok(Err(_)) | Err(RecvTimeoutError::Disconnected) => {
                    let death = self.end_dead(Duration::from_secs(2));
                    return Err(PeerError::Died {
                        peer: self.name.clone(),
                        doing: doing.to_string(),
                        death,
                    });
                }
                Err(RecvTimeoutError::Timeout) => {
                    if self.exited() {
                        // Dead, but a child of its kept stdout open: no EOF.
                        let death = self.end_dead(Duration::ZERO);
                        return Err(PeerError::Died {
                            peer: self.name.clone(),
                            doing: doing.to_string(),
                            death,
                        });
                    }
                    if Instant::now() >= deadline {
                        let blocked = self.blocked();
                        let mark = self.stderr_total();
                        let stacks = self.python_stacks();
                        self.kill();
                        return Err(PeerError::Stalled {
                            peer: self.name.clone(),
                            doing: doing.to_string(),
                            bound,
                            blocked,
                            stacks_and_stderr: stacks + &self.stderr_note_before(mark),
                        });
                    }
                }
            }
        }
    }

    /// Asks the peer to leave, waits for it at most `bound`, then kills whatever is left
    /// of its group; removes its directory.
    pub fn close(mut self, bound: Duration) {
        if !self.ended {
            let _ = self.request("bye", &serde_json::json!({"op": "bye"}), bound);
            drop(self.stdin.take());
            let deadline = Instant::now() + bound;
            while Instant::now() < deadline && !self.exited() {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        self.kill();
    }

    /// The processes of the peer's group and what each is blocked in.
    fn blocked(&self) -> String {
        let group = group_members(self.pid());
        if group.is_empty() {
            return "no process left in its group".into();
        }
        group
            .iter()
            .map(|p| {
                let name = self.member_name(p);
                watchdog::diagnose_within(p.pid, &name, Duration::from_millis(20))
                    .map(|b| b.to_string())
                    .unwrap_or_else(|| format!("{name} (pid {}) gone", p.pid))
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// How a process of the peer's group is named in a report.
    fn member_name(&self, p: &hygiene::ProcInfo) -> String {
        if p.pid == self.pid() {
            format!("{} peer", self.name)
        } else {
            format!("{} child ({})", self.name, p.comm)
        }
    }

    /// The Python stack of every thread of each process of the peer's group that catches
    /// SIGUSR1 (the peer registers faulthandler for it, and its forked children inherit
    /// that): one process at a time, so that each dump is attributed to its process
    /// rather than interleaved with the others' on the shared stderr. A process that does
    /// not catch it (a spawned child) is not signalled: SIGUSR1 would kill it.
    fn python_stacks(&self) -> String {
        let mut out = String::new();
        for p in group_members(self.pid()) {
            if !catches_signal(p.pid, libc::SIGUSR1) {
                continue;
            }
            let mark = self.stderr_total();
            // SAFETY: kill(2) on a live member of the peer's group, which is not reaped
            // (hence its pid not reused) until the group is killed below.
            unsafe { libc::kill(p.pid, libc::SIGUSR1) };
            let stack = self.stderr_after_quiet(mark);
            if !stack.trim().is_empty() {
                out.push_str(&format!(
                    "\n--- Python stack of {} (pid {}) ---\n{}",
                    self.member_name(&p),
                    p.pid,
                    stack.trim_end()
                ));
            }
        }
        out
    }

    fn stderr_total(&self) -> usize {
        self.stderr.lock().unwrap_or_else(|p| p.into_inner()).total
    }

    /// What the peer wrote to stderr after `mark`, once it has begun and then paused for
    /// [`DUMP_QUIET`] (a dump is written in many small writes), at most [`STACK_GRACE`].
    fn stderr_after_quiet(&self, mark: usize) -> String {
        let until = Instant::now() + STACK_GRACE;
        let mut seen = mark;
        let mut quiet_since = Instant::now();
        while Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
            let total = self.stderr_total();
            if total != seen {
                seen = total;
                quiet_since = Instant::now();
            } else if seen > mark && quiet_since.elapsed() >= DUMP_QUIET {
                break;
            }
        }
        let tail = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        tail.split_at_mark(mark).1.to_string()
    }

    /// The peer ended (or its stdout did): how, with its stderr. Kills what is left of
    /// its group.
    fn end_dead(&mut self, wait: Duration) -> String {
        let deadline = Instant::now() + wait;
        let exited = loop {
            match self.exited() {
                true => break true,
                _ if Instant::now() >= deadline => break false,
                _ => std::thread::sleep(Duration::from_millis(10)),
            }
        };
        self.kill();
        let how = match self.status {
            Some(status) if exited => exit_text(status),
            _ => "its output closed while it was still running".into(),
        };
        format!("{how}{}", self.stderr_note())
    }

    /// Whether the peer has exited, without reaping it: while it is an unreaped zombie its
    /// pid, which is its group's id, cannot be reused, so killing the group stays safe.
    fn exited(&self) -> bool {
        // SAFETY: a zeroed siginfo_t is a valid out-parameter; waitid with WNOWAIT only
        // reads the state of our own child and leaves it unreaped.
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let rc = libc::waitid(
                libc::P_PID,
                self.pid() as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            );
            rc == 0 && info.si_pid() != 0
        }
    }

    /// Kills the peer's group (before reaping the peer, whose pid is the group's id),
    /// reaps the peer and its orphans, removes its directory.
    fn kill(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        drop(self.stdin.take());
        let pid = self.pid();
        hygiene::kill_group(Pid::from_raw(pid));
        let _ = self.child.kill();
        self.status = self.child.wait().ok();
        hygiene::untrack_child(Pid::from_raw(pid));
        // The group's other members were its children, killed above while the group's id
        // was still reserved by the unreaped leader: orphans now, reaped by us as
        // subreaper (or by init). Wait, bounded, until none is left.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !group_members(pid).is_empty() && Instant::now() < deadline {
            hygiene::reap_orphans();
            std::thread::sleep(Duration::from_millis(10));
        }
        hygiene::reap_orphans();
        if let Some(reader) = self.stderr_reader.take() {
            // With every writer of its pipe dead it ends at once; one that is not (a
            // process stuck in the kernel past the wait above) is left to end on its own.
            let deadline = Instant::now() + Duration::from_secs(1);
            while !reader.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if reader.is_finished() {
                let _ = reader.join();
            }
        }
        hygiene::remove_temp(&self.dir);
    }

    /// The end of the peer's stderr, for an error message ("" when it wrote nothing).
    pub fn stderr_note(&self) -> String {
        self.stderr_note_before(usize::MAX)
    }

    /// [`stderr_note`](Self::stderr_note), of what the peer wrote before `mark` only (the
    /// stacks asked for after it are reported on their own).
    fn stderr_note_before(&self, mark: usize) -> String {
        let tail = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        let text = tail.split_at_mark(mark).0.trim();
        if text.is_empty() {
            return String::new();
        }
        let mut start = text.len().saturating_sub(4000);
        while !text.is_char_boundary(start) {
            start += 1;
        }
        format!("\n--- peer stderr ---\n{}", &text[start..])
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.kill();
    }
}

fn exit_text(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("it exited with status {code}"),
        (None, Some(signal)) => format!(
            "it was killed by signal {signal} ({})",
            crate::process::signal_name(signal)
        ),
        _ => format!("it ended: {status}"),
    }
}

fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}
