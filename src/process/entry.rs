//! Registered entry points and the re-exec bootstrap behind `StartMethod::Spawn`.
//!
//! A spawned child is the current executable started again with `IPCBENCH_ENTRY` naming
//! an entry point. A constructor (the `ctor` crate) runs before `main` — before libtest or
//! criterion parse their arguments — so the same mechanism works from the `ipcbench`
//! binary, from integration tests and from benches, with no custom harness.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::io::Write;
use std::os::fd::{FromRawFd, IntoRawFd, RawFd};

pub use linkme;

/// Environment variable naming the entry point a re-executed child runs.
pub(crate) const ENTRY_ENV: &str = "IPCBENCH_ENTRY";
/// Environment variable carrying the entry's JSON arguments.
pub(crate) const ARGS_ENV: &str = "IPCBENCH_ARGS";
/// Environment variable giving the fd on which the child writes its outcome.
pub(crate) const RESULT_FD_ENV: &str = "IPCBENCH_RESULT_FD";
/// Environment variable with the child's display name (for panic messages and reports).
pub(crate) const NAME_ENV: &str = "IPCBENCH_NAME";

/// A function a child process can run, registered by name.
pub struct EntryPoint {
    /// The name a parent passes to `process::start`; unique across everything linked.
    pub name: &'static str,
    /// JSON arguments in, JSON result (or error text) out.
    pub run: fn(&str) -> Result<serde_json::Value, String>,
}

/// Every entry point linked into this executable (library, tests and benches alike).
#[linkme::distributed_slice]
pub static ENTRY_POINTS: [EntryPoint];

/// Registers `func` (any `fn(Args) -> Result<R, E>` with serde `Args`/`R` and an error
/// `E` that is a `String` or a `std::error::Error`) as an entry point named `name`, startable in a child by either start method.
#[macro_export]
macro_rules! register_entry {
    ($name:expr, $func:path) => {
        const _: () = {
            #[$crate::process::entry::linkme::distributed_slice(
                $crate::process::entry::ENTRY_POINTS
            )]
            #[linkme(crate = $crate::process::entry::linkme)]
            static ENTRY: $crate::process::entry::EntryPoint = $crate::process::entry::EntryPoint {
                name: $name,
                run: |args| $crate::process::entry::invoke(args, $func),
            };
        };
    };
}

/// Decodes arguments, runs the entry, encodes its result.
pub fn invoke<A, R, E, F>(args: &str, func: F) -> Result<serde_json::Value, String>
where
    A: DeserializeOwned,
    R: Serialize,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
    F: FnOnce(A) -> Result<R, E>,
{
    let args: A =
        serde_json::from_str(args).map_err(|e| format!("cannot decode entry arguments: {e}"))?;
    let result = func(args).map_err(|e| chain(&*e.into()))?;
    serde_json::to_value(result).map_err(|e| format!("cannot encode entry result: {e}"))
}

/// An error and every cause under it, `: `-separated: what crosses a process boundary (a
/// child's error reaches its parent as text) or reaches a report.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        // A wrapper that already prints its cause in its own message adds nothing new.
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}

/// Finds an entry point by name; an unknown or duplicated name is an error listing the
/// known ones.
pub(crate) fn lookup(name: &str) -> Result<&'static EntryPoint, String> {
    let mut found = ENTRY_POINTS.iter().filter(|e| e.name == name);
    match (found.next(), found.next()) {
        (Some(entry), None) => Ok(entry),
        (Some(_), Some(_)) => Err(format!("entry point {name:?} is registered twice")),
        (None, _) => {
            let mut known: Vec<&str> = ENTRY_POINTS.iter().map(|e| e.name).collect();
            known.sort_unstable();
            Err(format!(
                "no entry point named {name:?} in this executable (known: {})",
                known.join(", ")
            ))
        }
    }
}

/// What a child reports to its parent over the result pipe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum Outcome {
    Returned(serde_json::Value),
    Failed(String),
    Panicked(String),
}

thread_local! {
    static PANIC_MESSAGE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Does in the forking thread, once, what a forked child would otherwise redo in every
/// copy: the first use of the panic-message thread-local registers its destructor through
/// a lazily bound libc symbol, which cost each forked child a dynamic-linker symbol lookup
/// and about a dozen page faults. The child is a copy of this thread, so it inherits the
/// initialised slot and the resolved symbol.
///
/// It also installs the recording panic hook here, in the parent, once: a forked child
/// must not replace the hook itself, because std's hook lock may be held at the fork by
/// another thread of the parent (one running the hook for its own panic, which takes long
/// when it prints a backtrace), and no thread of the child would ever release it.
///
/// For the same reason it sets the process-wide lazy values children use (the online CPU
/// count): one that another thread is setting at the fork is half-set in the child for
/// ever (ipc-channel's own is set where a channel queue is created or opened).
pub(crate) fn prepare_fork() {
    PANIC_MESSAGE.with(|m| drop(m.borrow()));
    install_panic_hook();
    crate::process::affinity::online();
}

/// Whether the hook of [`capture_panics`] only records (a forked child), or also runs the
/// hook it replaced (which prints).
static QUIET_PANICS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static PANIC_HOOK: std::sync::Once = std::sync::Once::new();

/// The hook that records each panic's message and location for [`call_entry`], installed
/// once per process (and inherited by forked children).
fn install_panic_hook() {
    PANIC_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let location = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let message = payload_text(info.payload());
            PANIC_MESSAGE.with(|m| *m.borrow_mut() = Some(format!("{message}{location}")));
            if !QUIET_PANICS.load(std::sync::atomic::Ordering::Relaxed) {
                previous(info);
            }
        }));
    });
}

/// Runs an entry point in this (child) process and returns its outcome. Panics are caught
/// and turned into `Outcome::Panicked` with the message and location.
///
/// `quiet_panics` makes the panic hook only record the message: a forked child must not
/// take the stderr lock, which another thread of the parent may have held at the time of
/// fork.
pub(crate) fn run_entry(name: &str, args: &str, quiet_panics: bool) -> Outcome {
    capture_panics(quiet_panics);
    call_entry(name, args)
}

/// Makes sure the panic hook that records each panic's message and location for
/// [`call_entry`] is installed (once per process: a process that runs many entries in
/// turn, a pool worker, does not stack one hook per call), printing or not.
pub(crate) fn capture_panics(quiet_panics: bool) {
    QUIET_PANICS.store(quiet_panics, std::sync::atomic::Ordering::Relaxed);
    install_panic_hook();
}

/// Runs the entry point `name` once and returns its outcome, a panic included. Relies on
/// the hook of [`capture_panics`] for the panic's message and location.
pub(crate) fn call_entry(name: &str, args: &str) -> Outcome {
    let entry = match lookup(name) {
        Ok(entry) => entry,
        Err(e) => return Outcome::Failed(e),
    };
    PANIC_MESSAGE.with(|m| m.borrow_mut().take());
    match std::panic::catch_unwind(|| (entry.run)(args)) {
        Ok(Ok(value)) => Outcome::Returned(value),
        Ok(Err(message)) => Outcome::Failed(message),
        Err(payload) => Outcome::Panicked(
            PANIC_MESSAGE
                .with(|m| m.borrow_mut().take())
                .unwrap_or_else(|| payload_text(payload.as_ref())),
        ),
    }
}

fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-text payload".to_string()
    }
}

/// Writes the outcome on the result fd; call it only just before the process exits (the
/// fd is left for the exit to close). Errors are ignored: a parent that stopped listening
/// learns the child's fate from its exit status.
pub(crate) fn report_outcome(fd: RawFd, outcome: &Outcome) {
    if fd < 0 {
        return; // started without a result pipe (the raw exec calibration)
    }
    let Ok(bytes) = serde_json::to_vec(outcome) else {
        return;
    };
    // SAFETY: `fd` is the write end of the result pipe handed to this child; it is owned
    // here.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    let _ = file.write_all(&bytes);
    // Left open on purpose: the caller exits right after, and the exit closes it at the
    // same moment the pidfd turns readable, so the parent wakes once for both. Closing
    // here cost the parent an extra wake-up (and context switch) per child.
    let _ = file.into_raw_fd();
}

/// Exit status of a child whose entry returned an error or panicked.
pub(crate) const EXIT_FAILED: i32 = 1;
/// Exit status when the bootstrap itself could not run (bad environment).
pub(crate) const EXIT_BOOTSTRAP: i32 = 3;

/// Runs before `main` in every executable linking this library: if this process was
/// started as a spawned child, run the named entry and exit without ever reaching main.
#[ctor::ctor(unsafe)]
fn bootstrap() {
    let Ok(name) = std::env::var(ENTRY_ENV) else {
        return;
    };
    let args = std::env::var(ARGS_ENV).unwrap_or_else(|_| "null".into());
    let fd = std::env::var(RESULT_FD_ENV)
        .ok()
        .and_then(|v| v.parse::<RawFd>().ok());
    // SAFETY: this runs before main, with a single thread, so nothing reads the
    // environment concurrently. Removing the variables keeps grandchildren from
    // re-entering this entry.
    unsafe {
        std::env::remove_var(ENTRY_ENV);
        std::env::remove_var(ARGS_ENV);
        std::env::remove_var(RESULT_FD_ENV);
    }
    let Some(fd) = fd else {
        eprintln!("ipcbench: {RESULT_FD_ENV} missing or invalid in spawned child");
        std::process::exit(EXIT_BOOTSTRAP);
    };
    super::ignore_sigpipe();
    let outcome = run_entry(&name, &args, false);
    let code = match outcome {
        Outcome::Returned(_) => 0,
        _ => EXIT_FAILED,
    };
    report_outcome(fd, &outcome);
    crate::process::hygiene::cleanup_all();
    std::process::exit(code);
}

/// Referenced from the spawn path so that any executable able to spawn children also
/// links the bootstrap constructor.
pub(crate) fn bootstrap_anchor() -> fn() {
    bootstrap
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("open the store")]
    struct Outer(#[source] std::io::Error);

    /// What a child's error becomes in its parent: the whole chain, not its top line.
    #[test]
    fn an_entry_error_crosses_as_its_whole_chain() {
        let missing = || std::io::Error::from_raw_os_error(libc::ENOENT);
        let failed = invoke("null", |()| -> Result<(), Outer> { Err(Outer(missing())) });
        assert_eq!(failed, Err(format!("open the store: {}", missing())));
        let text = invoke("null", |()| -> Result<(), String> { Err("plain".into()) });
        assert_eq!(text, Err("plain".to_string()));
    }
}
