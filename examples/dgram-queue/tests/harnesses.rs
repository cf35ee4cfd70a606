//! The example's binary through the harnesses a plug-in flavor gets: the conformance suite,
//! the race scenario (its broken variant caught), and a short fault-injection stress run.

use std::process::Command;
use std::time::{Duration, Instant};

/// Runs the example's ipcbench with `args`; its exit code and stdout, bounded in time.
fn ipcbench(args: &[&str]) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ipcbench-dgram-queue"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the example's binary");
    let limit = Instant::now() + Duration::from_secs(120);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ipcbench {args:?} ran past 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code().unwrap_or(-1), stdout)
}

#[test]
fn conform_passes_every_check_on_dgram() {
    let (code, out) = ipcbench(&["conform", "--flavor", "dgram"]);
    assert_eq!(code, 0, "{out}");
    let rows = out.lines().filter(|l| l.starts_with("dgram ")).count();
    assert_eq!(rows, ipcbench::conformance::queue::CHECKS.len(), "{out}");
    assert!(!out.contains("FAILED"), "{out}");
}

#[test]
fn conform_refuses_an_unknown_flavor_naming_dgram_among_the_known() {
    let out = Command::new(env!("CARGO_BIN_EXE_ipcbench-dgram-queue"))
        .args(["conform", "--flavor", "no-such"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("dgram"), "{stderr}");
}

#[test]
fn check_catches_the_chunked_put_and_holds_on_whole_datagrams() {
    let (code, out) = ipcbench(&["check", "--scenario", "dgram-chunks", "--cases", "64"]);
    assert_eq!(code, 0, "{out}");
    let row = |variant: &str| {
        out.lines()
            .find(|l| l.starts_with("dgram-chunks") && l.split_whitespace().nth(1) == Some(variant))
            .unwrap_or_else(|| panic!("no row for {variant}: {out}"))
            .to_string()
    };
    assert!(row("chunked").contains("violated  yes"), "{out}");
    assert!(row("whole").contains("holds     yes"), "{out}");
}

#[test]
fn a_two_second_stress_run_on_the_dgram_queue_is_clean() {
    let (code, out) = ipcbench(&["stress", "--target", "queue-dgram", "--duration", "2s"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("queue-dgram") && l.ends_with("ok")),
        "{out}"
    );
}

/// `bench` measures the plugged flavor beside the built-in ones, divided by the same run's
/// raw baseline, and the report shows it in the same tables and headline chart.
#[test]
fn bench_measures_dgram_beside_the_built_in_flavors_and_the_report_shows_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("bench.json");
    let workload = "roundtrip/64B/same-cpu";
    let json_arg = json.to_str().expect("utf-8 path");
    let (code, out) = ipcbench(&["bench", "--quick", "--filter", workload, "--json", json_arg]);
    assert_eq!(code, 0, "{out}");
    let results = ipcbench::results::Results::load(&json).expect("results");
    let flavors: Vec<&str> = results.latency.iter().map(|l| l.flavor.as_str()).collect();
    for flavor in ["dgram", "pipe", "shm"] {
        assert!(
            flavors.contains(&flavor),
            "{flavor} not measured: {flavors:?}"
        );
    }
    let dgram = results
        .latency
        .iter()
        .find(|l| l.workload == "queue/dgram/roundtrip/64B/same-cpu")
        .expect("the dgram round trip");
    assert_eq!(
        dgram.calibration.as_deref(),
        Some("unix-socket-request-reply")
    );
    assert!(dgram.ratio.is_some_and(|r| r > 0.0), "{dgram:?}");

    let site = dir.path().join("site");
    let site_arg = site.to_str().expect("utf-8 path");
    let (code, out) = ipcbench(&["report", json_arg, "--out", site_arg]);
    assert_eq!(code, 0, "{out}");
    let page = std::fs::read_to_string(site.join("index.html")).expect("index.html");
    for shown in [
        "queue/dgram/roundtrip/64B/same-cpu",
        "queue/pipe/roundtrip/64B/same-cpu",
    ] {
        assert!(page.contains(shown), "{shown} not on the page");
    }
}

#[test]
fn list_shows_the_dgram_workloads_and_the_scenario() {
    let (code, out) = ipcbench(&["list"]);
    assert_eq!(code, 0, "{out}");
    for name in [
        "queue/dgram/roundtrip/64B/same-cpu",
        "queue/dgram/stream/64B/1x1",
        "dgram-chunks",
    ] {
        assert!(out.contains(name), "{name} not listed: {out}");
    }
}

/// `queue-end-signal` is written over every flavor several consumers can share: on the
/// plugged flavor, a missing sentinel is caught (a consumer hung waiting) and one sentinel
/// per consumer holds, each replayed through the command `check` prints.
#[test]
fn queue_end_signal_runs_on_the_plugged_flavor_both_ways() {
    let case = r#"{"params":{"consumers":2,"flavor":{"Plugin":"dgram"},"items_per_producer":3,"missing":1,"producers":2},"schedule":{"choices":[]}}"#;
    for (variant, verdict) in [
        ("missing-sentinel", "hung"),
        ("sentinel-per-consumer", "holds"),
    ] {
        let (code, out) = ipcbench(&[
            "check",
            "--scenario",
            "queue-end-signal",
            "--variant",
            variant,
            "--replay",
            case,
        ]);
        assert_eq!(code, 0, "{variant}: {out}");
        let row = out
            .lines()
            .find(|l| {
                l.starts_with("queue-end-signal") && l.split_whitespace().nth(1) == Some(variant)
            })
            .unwrap_or_else(|| panic!("no row for {variant}: {out}"));
        assert_eq!(row.split_whitespace().nth(3), Some(verdict), "{out}");
    }
    // The flavor in the parameters is the one the case opens: an unknown one is refused.
    let unknown = case.replace(r#""dgram""#, r#""no-such""#);
    let (code, out) = ipcbench(&[
        "check",
        "--scenario",
        "queue-end-signal",
        "--variant",
        "sentinel-per-consumer",
        "--replay",
        &unknown,
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(r#"queue flavor "no-such" is not registered"#),
        "{out}"
    );
}
