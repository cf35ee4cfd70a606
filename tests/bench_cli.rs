//! `ipcbench bench`: `--filter` selects what it says (plus the calibrations it needs),
//! a filter that matches nothing is exit 2 listing the workloads, and `--json` writes
//! results that load back. No timing is asserted.

mod support;

use ipcbench::process::hygiene::{self, Snapshot};
use ipcbench::report::model::Results;
use std::process::Command;
use support::serial;

fn ipcbench(args: &[&str]) -> std::process::Output {
    let _serial = serial();
    Command::new(env!("CARGO_BIN_EXE_ipcbench"))
        .args(args)
        .output()
        .expect("run ipcbench")
}

/// `ipcbench bench --quick --filter FILTER --json JSON`. The bench tags its shm and temp
/// names with this test's run tag, so a snapshot (which sees only this run's names on a
/// shared machine) covers them.
fn quick_bench_to_json(filter: &str, json: &std::path::Path) -> std::process::Output {
    hygiene::join_run(&mut Command::new(env!("CARGO_BIN_EXE_ipcbench")))
        .args(["bench", "--quick", "--filter", filter, "--json"])
        .arg(json)
        .output()
        .expect("run ipcbench")
}

#[test]
fn filter_matching_nothing_is_exit_2_listing_the_workloads() {
    let out = ipcbench(&["bench", "--quick", "--filter", "no-such-workload"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-workload"), "{err}");
    for name in [
        "process/fork/start-join/unpinned",
        "calibration/pipe-roundtrip/same-cpu",
    ] {
        assert!(err.contains(name), "{name} not listed: {err}");
    }
}

#[test]
fn filter_runs_only_what_it_names_and_json_loads_back() {
    let _serial = serial();
    let before = Snapshot::take();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let out = quick_bench_to_json("process/fork", &json);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("process/fork/start-join/unpinned"),
        "{table}"
    );
    assert!(!table.contains("spawn"), "{table}");
    let results = Results::load(&json).unwrap();
    assert_eq!(results.profile, "quick");
    let latency: Vec<&str> = results
        .latency
        .iter()
        .map(|l| l.workload.as_str())
        .collect();
    assert_eq!(
        latency,
        [
            "calibration/fork-exit/unpinned",
            "process/fork/start-join/unpinned"
        ]
    );
    let calibrations: Vec<&str> = results
        .calibration
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(calibrations, ["fork-exit"]);
    let fork = &results.latency[1];
    assert!(
        fork.percentiles.samples > 0 && fork.ratio.is_some(),
        "{fork:?}"
    );
    assert!(results.machine.cores >= 1);
    let leaks = before.leaks_since();
    assert!(leaks.is_empty(), "{leaks:?}");
}

#[test]
fn json_into_a_missing_directory_is_refused_before_measuring() {
    let out = ipcbench(&[
        "bench",
        "--quick",
        "--json",
        "/nonexistent-ipcbench-dir/r.json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

#[test]
fn list_shows_every_workload() {
    let out = ipcbench(&["list"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    for workload in ipcbench::measure::registry::all() {
        assert!(
            text.contains(&workload.shape.name),
            "{} not listed",
            workload.shape.name
        );
    }
}

/// A task through the pool is divided by the raw hand-off of a task to a worker process
/// (was: by fork+_exit, a process start), measured in the same run; the hand-off gives
/// per-task times. No timing is asserted.
#[test]
fn pool_task_ratio_names_the_raw_hand_off() {
    let _serial = serial();
    let before = Snapshot::take();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let out = quick_bench_to_json("pool/pool-2-apply-async/round-trip", &json);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let results = Results::load(&json).unwrap();
    let calibrations: Vec<(&str, &str)> = results
        .calibration
        .iter()
        .map(|c| (c.name.as_str(), c.unit.as_str()))
        .collect();
    assert_eq!(calibrations, [("unix-socket-task-handoff", "ns")]);
    assert!(results.calibration[0].value > 0.0);
    let handoff = &results.latency[0];
    assert_eq!(
        handoff.workload,
        "calibration/unix-socket-task-handoff/unpinned"
    );
    assert!(handoff.percentiles.samples > 0, "{handoff:?}");
    let [pool] = results.throughput.as_slice() else {
        panic!("one throughput figure: {:?}", results.throughput);
    };
    assert_eq!(pool.workload, "pool/pool-2-apply-async/round-trip");
    assert_eq!(
        pool.calibration.as_deref(),
        Some("unix-socket-task-handoff")
    );
    assert!(pool.ratio.is_some_and(|r| r > 0.0), "{pool:?}");
    let leaks = before.leaks_since();
    assert!(leaks.is_empty(), "{leaks:?}");
}
