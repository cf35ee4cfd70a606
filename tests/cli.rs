//! The command line's contract: help, version, and exit 2 with a clear message on bad
//! arguments.

use std::process::Command;

fn ipcbench(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ipcbench"))
        .args(args)
        .output()
        .expect("run ipcbench")
}

#[test]
fn help_lists_every_subcommand() {
    let out = ipcbench(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    for sub in [
        "run", "bench", "check", "stress", "report", "compare", "list", "prove", "conform",
    ] {
        assert!(text.contains(sub), "--help does not mention {sub}: {text}");
    }
}

#[test]
fn version_prints_the_crate_version() {
    let out = ipcbench(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn bad_arguments_exit_2_with_a_message() {
    for args in [
        &["no-such-command"][..],
        &["compare", "a.json", "b.json", "--format", "xml"],
        &["compare", "a.json", "b.json", "--threshold", "lots"],
        &["bench", "--no-such-flag"],
        &[],
    ] {
        let out = ipcbench(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.trim().is_empty(), "{args:?} printed no message");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn conform_runs_every_check_on_a_flavor_and_refuses_an_unknown_one() {
    let out = ipcbench(&["conform", "--flavor", "channel"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let rows = text.lines().filter(|l| l.starts_with("channel ")).count();
    assert_eq!(rows, ipcbench::conformance::queue::CHECKS.len(), "{text}");

    let out = ipcbench(&["conform", "--flavor", "channel", "--flavor", "no-such"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"no-such\"") && err.contains("known: pipe, shm, channel"),
        "{err}"
    );
}

/// A child forked by the binary — where the CLI's SIGINT/SIGTERM/SIGHUP cleanup handlers
/// are installed — must not inherit those handlers: `terminate()` must end it with
/// exitcode -15 (and SIGINT, SIGHUP with -2, -1), and its signal mask must be empty.
#[test]
fn forked_child_of_the_binary_has_default_signal_handlers() {
    let out = ipcbench(&["__fork-terminate-probe"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{text}\nstderr:\n{err}"
    );
    assert!(
        text.contains("SIGTERM: forked child exitcode -15"),
        "{text}"
    );
    assert!(text.contains("caught signals []"), "{text}");
}

/// The file store's figures are divided by a raw figure of their own kind (file I/O: the
/// store's read, temp-file write and rename without its lock and its JSON), listed as a
/// calibration like its siblings, never by a lock: file I/O and locks move apart between
/// machines (2.8× on one CI machine with no change in the code).
#[test]
fn the_file_store_is_divided_by_raw_file_io_of_its_own_kind() {
    let out = ipcbench(&["list"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().any(|l| l
            .trim_start()
            .starts_with("calibration/file-read-modify-write/unpinned ")),
        "{text}"
    );
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("filestore/"))
        .collect();
    // Four locks (none, flock, fcntl, shm-mutex), one and two processes: names unchanged.
    assert_eq!(rows.len(), 8, "{text}");
    for row in rows {
        assert!(
            row.trim_end()
                .ends_with("divided by file-read-modify-write"),
            "{row}"
        );
    }
}
