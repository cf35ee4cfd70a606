//! Helpers shared by the test binaries (`mod support;`; the stress profile includes it by
//! path): the lock that serialises a binary's tests which count process-wide resources,
//! and, for the lock, sync, filestore and manager tests, a leak check that forgives other
//! programs' names and the starting of a crowd of children. The JUnit reader beside it,
//! `junit.rs`, is included on its own by the tests that read JUnit files.

#![allow(dead_code)]

use ipcbench::process::{self, hygiene, Child, Options, StartMethod};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Bound on any child in these tests: far above what they need, low enough that a hang
/// fails the test instead of stalling it.
pub const CHILD_BOUND: Duration = Duration::from_secs(60);

static SERIAL: Mutex<()> = Mutex::new(());

/// Holds this binary's tests that count process-wide children, fds and names one at a
/// time: a leak check that overlapped another test would see that test's resources. A
/// test that panicked while holding it poisons nothing: the next one takes it anyway.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `body` alone among this binary's tests and then proves it left nothing behind
/// (processes, shared-memory names, temp files, fds).
pub fn leak_checked(body: impl FnOnce()) {
    let _serial = serial();
    let before = hygiene::Snapshot::take();
    body();
    let leaks: Vec<_> = before
        .leaks_since()
        .into_iter()
        .filter(|leak| !created_by_a_stranger(leak))
        .collect();
    assert!(leaks.is_empty(), "left behind: {leaks:?}");
}

/// Starts `entry` once per argument, forked (fast; the entries here only do system
/// calls and allocate).
pub fn start_all<A: Serialize>(entry: &str, args: &[A]) -> Vec<Child> {
    args.iter()
        .enumerate()
        .map(|(i, a)| {
            process::start(
                entry,
                a,
                Options::new(format!("{entry}-{i}")).method(StartMethod::Fork),
            )
            .unwrap()
        })
        .collect()
}

/// Every child's result, each bounded by [`CHILD_BOUND`] (a child still running then is
/// killed when its handle drops).
pub fn results<R: DeserializeOwned>(children: Vec<Child>) -> Vec<R> {
    children
        .into_iter()
        .map(|mut child| {
            child
                .result(Some(CHILD_BOUND))
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect()
}

/// /dev/shm is machine-wide: a name created by a live process other than this one (every
/// child of these tests has been reaped by the time leaks are counted) belongs to some
/// other program running meanwhile — another test binary, say — not to this test. Names
/// are `ipcbench-<tag>-<pid>-<n>`.
fn created_by_a_stranger(leak: &hygiene::Leak) -> bool {
    let hygiene::Leak::Shm(name) = leak else {
        return false;
    };
    let mut parts = name.rsplit('-');
    let _n = parts.next();
    let Some(pid) = parts.next().and_then(|p| p.parse::<i32>().ok()) else {
        return false;
    };
    pid != std::process::id() as i32 && hygiene::proc_info(pid).is_some_and(|p| p.state != 'Z')
}

/// `sem.mp-*` names in /dev/shm: what a leaking Python multiprocessing semaphore leaves.
pub fn mp_semaphores() -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with("sem.mp-"))
                .collect()
        })
        .unwrap_or_default()
}
