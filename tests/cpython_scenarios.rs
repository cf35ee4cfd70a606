//! The race scenarios on CPython's multiprocessing (`check --peer cpython`), both sides:
//! every Python race is caught for the right reason and its printed command reproduces
//! it; every safe Python variant holds; the forced schedule, through the turnstile bridge,
//! decides the order of the Python workers' steps; nothing is left behind. Skipped, saying
//! so, only without python3.

mod support;

use ipcbench::measure::peer::cpython;
use ipcbench::scenario::check::{search, select_peer, Search};
use ipcbench::scenario::{self, run_case, Case, Expectation, Schedule, Verdict};
use std::process::Command;
use std::time::Duration;
use support::{leak_checked, mp_semaphores};

fn python_found(test: &str) -> bool {
    let found = Command::new(cpython::python())
        .arg("-c")
        .arg("import multiprocessing")
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!("{test}: skipped: python3 not found");
    }
    found
}

fn ipcbench(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ipcbench"))
        .args(args)
        .output()
        .expect("ipcbench runs")
}

fn run(scenario: &str, variant: &str, params: serde_json::Value, choices: &[u8]) -> Verdict {
    let case = Case {
        params,
        schedule: Schedule::new(choices.to_vec()),
    };
    run_case(scenario::find(scenario).unwrap(), variant, &case)
        .unwrap_or_else(|e| panic!("{scenario}/{variant}: {e}"))
        .verdict
}

#[test]
fn every_python_race_is_caught_and_its_printed_command_reproduces_it() {
    if !python_found("every_python_race_is_caught") {
        return;
    }
    leak_checked(|| {
        for (scenario, variant) in select_peer("cpython", None, None).unwrap() {
            if variant.expected != Expectation::Caught {
                continue;
            }
            let name = format!("{}/{}", scenario.name(), variant.name);
            let options = Search {
                cases: 24,
                seed: 11,
                max_shrink_time: Duration::from_secs(5),
            };
            let result = search(scenario, variant, options);
            assert!(
                result.matches(),
                "{name} should be caught: {}",
                result.detail()
            );
            if result.verdict_label() == "hung" {
                // Who waits is named by its role and by the Python line it waits at.
                let detail = result.detail();
                assert!(
                    detail.contains("(ipcbench_scenarios.py:"),
                    "{name}: no Python frame in {detail}"
                );
                assert!(
                    !detail.contains("python3 (pid"),
                    "{name}: a process unnamed: {detail}"
                );
            }
            let repro = result
                .reproduction()
                .unwrap_or_else(|| panic!("{name}: caught without a reproduction"));
            // The printed command, run as printed (the shell's quoting undone): the same
            // verdict again. A race left to the kernel's timing may need a second try.
            let command = repro.command.clone();
            let replay = command
                .split_once("--replay '")
                .map(|(_, rest)| rest.trim_end_matches('\'').replace(r"'\''", "'"))
                .unwrap_or_else(|| panic!("{name}: no --replay in {command}"));
            let tries = if scenario.reproducible() { 1 } else { 3 };
            let reproduced = (0..tries).any(|_| {
                let out = ipcbench(&[
                    "check",
                    "--scenario",
                    scenario.name(),
                    "--variant",
                    variant.name,
                    "--replay",
                    &replay,
                ]);
                out.status.code() == Some(0)
                    && String::from_utf8_lossy(&out.stdout).contains("caught, as expected")
            });
            assert!(reproduced, "{name}: `{command}` did not reproduce it");
        }
    });
    assert!(mp_semaphores().is_empty(), "left {:?}", mp_semaphores());
}

#[test]
fn every_safe_python_variant_holds_over_generated_cases() {
    if !python_found("every_safe_python_variant_holds") {
        return;
    }
    leak_checked(|| {
        for (scenario, variant) in select_peer("cpython", None, None).unwrap() {
            if variant.expected != Expectation::Holds {
                continue;
            }
            let options = Search {
                cases: 6,
                seed: 0x5afe,
                max_shrink_time: Duration::from_secs(5),
            };
            let result = search(scenario, variant, options);
            assert!(
                result.matches(),
                "{}/{} should hold: {} ({:?})",
                scenario.name(),
                variant.name,
                result.detail(),
                result.reproduction()
            );
            assert_eq!(result.cases, 6);
        }
    });
}

/// The order is the schedule's, step for step: [1, 0] makes buyer 1 read, then buyer 0
/// read, and both sell the last ticket; the empty schedule runs the buyers one after the
/// other and the same Python code holds.
#[test]
fn the_forced_schedule_orders_the_python_workers_steps() {
    if !python_found("the_forced_schedule_orders_the_python_workers_steps") {
        return;
    }
    leak_checked(|| {
        let params = serde_json::json!({"buyers": 2, "tickets": 1, "attempts": 1});
        let case = Case {
            params: params.clone(),
            schedule: Schedule::new(vec![1, 0]),
        };
        let scenario = scenario::find("cpython/ticket-oversell").unwrap();
        let outcome = run_case(scenario, "unlocked", &case).unwrap();
        let steps: Vec<(usize, &str, i64)> = outcome
            .history
            .iter()
            .map(|e| (e.worker, e.operation.as_str(), e.value))
            .collect();
        assert_eq!(
            steps,
            [
                (1, "read-stock", 1),
                (0, "read-stock", 1),
                (0, "write-stock", 0),
                (1, "write-stock", 0)
            ]
        );
        assert!(
            outcome
                .verdict
                .evidence()
                .is_some_and(|e| e.contains("2 sold of 1 tickets")),
            "{}",
            outcome.verdict
        );
        assert_eq!(
            run("cpython/ticket-oversell", "unlocked", params.clone(), &[]),
            Verdict::Holds
        );
        // With the lock, the same schedule cannot oversell: buyer 0's try fails, and the
        // turn passes until buyer 1 unlocks.
        assert_eq!(
            run("cpython/ticket-oversell", "mp-lock", params, &[1, 0]),
            Verdict::Holds
        );
    });
}

#[test]
fn check_peer_refuses_what_it_cannot_run() {
    let out = ipcbench(&["check", "--peer", "cpython", "--scenario", "no-such"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if python_found("check_peer_refuses_what_it_cannot_run") {
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("has no scenario \"no-such\""), "{stderr}");
        assert!(stderr.contains("cpython/ticket-oversell"), "{stderr}");
    }
    let out = ipcbench(&["check", "--peer", "jython"]);
    assert_eq!(out.status.code(), Some(2));
    let out = ipcbench(&[
        "check",
        "--peer",
        "cpython",
        "--twin",
        "ticket-oversell/unlocked",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not go with --peer"));
    let out = Command::new(env!("CARGO_BIN_EXE_ipcbench"))
        .args(["check", "--peer", "cpython"])
        .env("IPCBENCH_PYTHON", "/nonexistent/python3")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("/nonexistent/python3 not found"),
        "{stderr}"
    );
}
