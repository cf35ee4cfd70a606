//! `--twin`: a deliberately broken or slowed twin measured in place of its mechanism, by
//! `bench`, `check`, `stress` and `run`: the problem it stages shows where a real one
//! would (a slower figure, an unexpected verdict, a failed stress target), the results
//! record it, and `baseline` refuses such a run. Unknown names are exit 2.

mod support;

use ipcbench::process::hygiene::{self, Snapshot};
use ipcbench::report::model::{Expectation, Results};
use std::process::{Command, Output};
use support::serial;

fn ipcbench(args: &[&str]) -> Output {
    hygiene::join_run(&mut Command::new(env!("CARGO_BIN_EXE_ipcbench")))
        .args(args)
        .output()
        .expect("run ipcbench")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The slowed twin is measured under the real workload's name, slower by at least its
/// sleep (a lower bound the kernel guarantees, not a timing guess), and recorded.
#[test]
fn a_slowed_bench_twin_is_measured_under_the_real_name_and_recorded() {
    let _serial = serial();
    let before = Snapshot::take();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let workload = "queue/pipe/roundtrip/64B/same-cpu";
    let out = ipcbench(&[
        "bench",
        "--quick",
        "--filter",
        workload,
        "--twin",
        "queue-pipe-slowed",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("twin queue-pipe-slowed measured in place"));
    let results = Results::load(&json).unwrap();
    assert_eq!(results.twins, ["queue-pipe-slowed"]);
    let slowed = results
        .latency
        .iter()
        .find(|l| l.workload == workload)
        .expect("measured under its own name");
    let extra = ipcbench::measure::twins::find("queue-pipe-slowed")
        .unwrap()
        .extra();
    assert!(
        slowed.percentiles.min >= extra.as_nanos() as f64,
        "min {} ns is below the twin's {extra:?} sleep",
        slowed.percentiles.min
    );
    // A run of twins is never a baseline.
    let out = ipcbench(&[
        "baseline",
        json.to_str().unwrap(),
        "--out",
        dir.path().join("baseline.json").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("cannot be a baseline"),
        "{}",
        text(&out)
    );
    assert!(!dir.path().join("baseline.json").exists());
    let leaks = before.leaks_since();
    assert!(leaks.is_empty(), "left behind: {leaks:?}");
}

/// An unsafe variant checked as the mechanism under test is an unexpected verdict, with
/// its reproduction, exactly as a regression of the safe variant would be.
#[test]
fn a_scenario_twin_checked_as_the_mechanism_is_an_unexpected_verdict() {
    let _serial = serial();
    let before = Snapshot::take();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("check.json");
    let out = ipcbench(&[
        "check",
        "--scenario",
        "ticket-oversell",
        "--twin",
        "ticket-oversell/unlocked",
        "--cases",
        "32",
        "--seed",
        "7",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let results = Results::load(&json).unwrap();
    assert_eq!(results.twins, ["ticket-oversell/unlocked"]);
    let twin = results
        .scenarios
        .iter()
        .find(|s| s.variant == "unlocked")
        .unwrap();
    assert_eq!(twin.expected, Expectation::Holds);
    assert_eq!(twin.verdict, "violated");
    assert!(!twin.matches && twin.reproduction.is_some());
    // The real variants are as they always are.
    let locked = results
        .scenarios
        .iter()
        .find(|s| s.variant == "flock")
        .unwrap();
    assert!(locked.matches);
    assert_eq!(
        results
            .scenarios
            .iter()
            .filter(|s| s.variant == "unlocked")
            .count(),
        1
    );
    let leaks = before.leaks_since();
    assert!(leaks.is_empty(), "left behind: {leaks:?}");
}

/// A stress twin added to a run fails the run by its flaw, and is recorded.
#[test]
fn a_stress_twin_fails_the_run_and_is_recorded() {
    let _serial = serial();
    let before = Snapshot::take();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("stress.json");
    let out = ipcbench(&[
        "stress",
        "--target",
        "pipe-duplex",
        "--twin",
        "stress/queue-shm-dropping",
        "--duration",
        "1s",
        "--procs",
        "4",
        "--seed",
        "3",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let results = Results::load(&json).unwrap();
    assert_eq!(results.twins, ["stress/queue-shm-dropping"]);
    let twin = results
        .stress
        .iter()
        .find(|s| s.target == "queue-shm-dropping")
        .unwrap();
    assert!(twin.losses > 0, "{twin:?}");
    let real = results
        .stress
        .iter()
        .find(|s| s.target == "pipe-duplex")
        .unwrap();
    assert_eq!(real.losses + real.duplicates + real.corrupt, 0);
    let leaks = before.leaks_since();
    assert!(leaks.is_empty(), "left behind: {leaks:?}");
}

#[test]
fn a_name_that_is_no_twin_is_exit_2_listing_the_twins() {
    let _serial = serial();
    for (args, says) in [
        (
            vec!["bench", "--quick", "--twin", "queue-pipe-fast"],
            "queue-pipe-slowed",
        ),
        (
            vec![
                "bench",
                "--quick",
                "--filter",
                "lock/",
                "--twin",
                "queue-pipe-slowed",
            ],
            "none of the selected workloads",
        ),
        (
            vec!["check", "--twin", "ticket-oversell/locked"],
            "is not a broken twin",
        ),
        (
            vec!["stress", "--twin", "pipe-duplex"],
            "no broken stress twin",
        ),
        (vec!["run", "--quick", "--twin", "nothing"], "no such twin"),
        (
            vec!["run", "--quick", "--baseline", "/nonexistent/baseline.json"],
            "baseline",
        ),
    ] {
        let out = ipcbench(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(says), "{args:?}: {}", text(&out));
        assert!(!text(&out).contains("panicked"), "{args:?}");
    }
}
