//! The CPython lane: the peer answers hello, runs one workload of every flavor with the
//! number of samples asked, a peer killed or stalled mid-workload is a clear error naming
//! the workload with nothing left behind, `--peer` is checked, and the results carry the
//! peer. Tiny counts; no timing is asserted. Skipped, saying so, only without python3.

mod support;

use ipcbench::measure::peer::{self, cpython, session, Lane, Spec};
use ipcbench::measure::registry::Sample;
use ipcbench::process::hygiene;
use ipcbench::results::Results;
use std::process::Command;
use std::time::{Duration, Instant};
use support::{leak_checked, mp_semaphores};

/// python3's version, or None (the test then says it is skipped).
fn python_version(test: &str) -> Option<String> {
    let out = Command::new(cpython::python())
        .args(["-c", "import platform; print(platform.python_version())"])
        .output();
    match out {
        Ok(out) if out.status.success() => {
            Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
        }
        _ => {
            eprintln!("{test}: skipped: python3 not found");
            None
        }
    }
}

fn spec(name: &str) -> Spec {
    cpython::specs()
        .into_iter()
        .find(|s| s.shape.name == name)
        .unwrap_or_else(|| panic!("no CPython workload {name}"))
}

fn count(sample: &Sample) -> usize {
    match sample {
        Sample::Times(trips) => trips.samples_ns.len(),
        Sample::Moved { messages, .. } => *messages as usize,
    }
}

/// No process of `pgid` is alive (bounded wait: a killed process needs a moment).
fn group_gone(pgid: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !session::group_members(pgid).is_empty() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

#[test]
fn the_peer_answers_hello_with_its_version() {
    let Some(version) = python_version("hello") else {
        return;
    };
    leak_checked(|| {
        let lane = Lane::new(&cpython::PEER);
        let hello = lane.hello().expect("hello");
        assert_eq!(hello.version, version);
        assert_eq!(hello.implementation, "CPython");
        assert!(hello.start_methods.iter().any(|m| m == "fork"), "{hello:?}");
        assert!(hello.cpu_count >= 1);
        let pid = lane.pid().expect("a running peer");
        lane.close();
        assert!(group_gone(pid), "the peer's group outlived close");
        assert_eq!(lane.pid(), None);
    });
}

#[test]
fn a_missing_interpreter_is_a_reason_not_a_crash() {
    let err = cpython::probe_program("/nonexistent/python3".as_ref()).unwrap_err();
    assert!(err.is_missing(), "{err:?}");
    assert_eq!(err.to_string(), "/nonexistent/python3 not found");
}

/// One workload of every CPython flavor returns exactly the operations asked.
#[test]
fn one_workload_of_each_flavor_runs() {
    if python_version("each flavor").is_none() {
        return;
    }
    let before = mp_semaphores();
    leak_checked(|| {
        let lane = Lane::new(&cpython::PEER);
        let mut seen: Vec<&str> = Vec::new();
        for spec in cpython::specs() {
            if seen.contains(&spec.shape.flavor) {
                continue;
            }
            seen.push(spec.shape.flavor);
            // Multiples of 4 so that every stream and crowd splits evenly.
            let ops = 8;
            let sample = lane
                .run(&spec, ops)
                .unwrap_or_else(|e| panic!("{}: {e}", spec.shape.name));
            assert_eq!(count(&sample), ops, "{}", spec.shape.name);
            if let Sample::Times(trips) = &sample {
                assert!(
                    trips.samples_ns.iter().all(|&ns| ns > 0),
                    "{}",
                    spec.shape.name
                );
            }
        }
        for flavor in [
            "cpython-queue",
            "cpython-simplequeue",
            "cpython-joinablequeue",
            "cpython-pipe-duplex",
            "cpython-pipe-simplex",
            "cpython-lock",
            "cpython-semaphore",
            "cpython-event",
            "cpython-manager",
            "cpython-manager-value",
            "cpython-manager-dict",
            "cpython-pool-fork",
            "cpython-pool-2-map",
            "cpython-pool-2-apply-async",
            "cpython-process-fork",
            "cpython-process-spawn",
            "cpython-process-forkserver",
        ] {
            assert!(seen.contains(&flavor), "{flavor} not run");
        }
        let info = lane.info().expect("peer info");
        assert_eq!(info.start_methods, ["fork", "forkserver", "spawn"]);
        lane.close();
    });
    let left: Vec<String> = mp_semaphores()
        .into_iter()
        .filter(|n| !before.contains(n))
        .collect();
    assert!(left.is_empty(), "semaphores left in /dev/shm: {left:?}");
}

#[test]
fn a_peer_killed_mid_workload_is_an_error_naming_it_with_nothing_left() {
    if python_version("killed peer").is_none() {
        return;
    }
    leak_checked(|| {
        let lane = Lane::new(&cpython::PEER);
        lane.hello().expect("hello");
        let pid = lane.pid().expect("pid");
        let spec = spec("queue/cpython-queue/roundtrip/64B/cross-cpu");
        let worker = {
            let lane = lane.clone();
            let spec = spec.clone();
            std::thread::spawn(move || lane.run(&spec, 100_000_000))
        };
        // Mid-workload: the peer has started its echo child.
        let deadline = Instant::now() + Duration::from_secs(60);
        let child = loop {
            if let Some(c) = hygiene::all_processes().into_iter().find(|p| p.ppid == pid) {
                break c.pid;
            }
            assert!(
                Instant::now() < deadline,
                "the peer never started its child"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        // SAFETY: kill(2) on the peer this test started (its pid, read from the lane).
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let err = worker.join().unwrap().unwrap_err().to_string();
        assert!(err.contains(&spec.shape.name), "{err}");
        assert!(err.contains("died") && err.contains("signal 9"), "{err}");
        assert!(group_gone(pid), "the peer's group outlived it");
        assert!(hygiene::proc_info(child).is_none_or(|p| p.state == 'Z'));
        // The lane starts a fresh peer for the next workload.
        let again = lane.run(&spec, 4).expect("a fresh peer");
        assert_eq!(count(&again), 4);
        lane.close();
    });
}

#[test]
fn a_stalled_peer_is_killed_at_its_bound() {
    if python_version("stalled peer").is_none() {
        return;
    }
    leak_checked(|| {
        let lane = Lane::new(&cpython::PEER);
        lane.hello().expect("hello");
        let pid = lane.pid().expect("pid");
        let mut spec = spec("pipe/cpython-pipe-duplex/roundtrip/64B/same-cpu");
        spec.min_bound = Duration::from_secs(1);
        spec.per_op = Duration::ZERO;
        // Stopped, the peer cannot answer nor run its own watchdog: only the harness's
        // bound ends this.
        // SAFETY: kill(2) on the peer this test started.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        let err = lane.run(&spec, 4).unwrap_err().to_string();
        assert!(err.contains(&spec.shape.name), "{err}");
        assert!(err.contains("did not finish within"), "{err}");
        assert!(
            err.contains("state T"),
            "the diagnosis names the stopped peer: {err}"
        );
        assert!(group_gone(pid), "the peer's group outlived its bound");
        lane.close();
    });
}

/// A peer busy past its bound (not stopped: its processes run and wait as in a real
/// stall) is reported process by process: each one's state from /proc and its Python
/// stack, the peer's and its forked children's, each under its own name and pid.
#[test]
fn a_stalled_peer_is_reported_with_the_python_stack_of_each_process() {
    if python_version("stalled peer stacks").is_none() {
        return;
    }
    leak_checked(|| {
        let lane = Lane::new(&cpython::PEER);
        lane.hello().expect("hello");
        let pid = lane.pid().expect("pid");
        let mut spec = spec("queue/cpython-queue/stream/64B/1x1");
        spec.min_bound = Duration::from_secs(2);
        spec.per_op = Duration::ZERO;
        let err = lane.run(&spec, 50_000_000).unwrap_err().to_string();
        assert!(err.contains("did not finish within"), "{err}");
        assert!(
            err.contains(&format!("cpython peer (pid {pid}) state ")),
            "{err}"
        );
        assert!(
            err.contains(&format!("--- Python stack of cpython peer (pid {pid}) ---")),
            "the peer's own stack: {err}"
        );
        let stacks = err.matches("--- Python stack of cpython child").count();
        assert!(
            stacks >= 2,
            "a stack for each of the producer and consumer: {err}"
        );
        assert!(
            err.contains("ipcbench_peer.py"),
            "frames of the peer's code: {err}"
        );
        assert!(group_gone(pid), "the peer's group outlived its bound");
        lane.close();
    });
}

#[test]
fn an_unknown_peer_is_exit_2_naming_the_known_ones() {
    let out = Command::new(env!("CARGO_BIN_EXE_ipcbench"))
        .args(["bench", "--quick", "--peer", "no-such-peer"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no-such-peer") && err.contains("cpython"),
        "{err}"
    );
    assert!(peer::find("cpython").is_ok());
}

#[test]
fn list_shows_the_peers() {
    let out = Command::new(env!("CARGO_BIN_EXE_ipcbench"))
        .arg("list")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("peers (ipcbench bench --peer NAME)"),
        "{text}"
    );
    assert!(text.contains("queue/cpython-queue/roundtrip/64B/same-cpu"));
}

/// `bench --peer cpython --filter ...` runs only what the filter names (and its
/// calibration), records the peer in the results, and the figure is a peer's (never gated,
/// not counted as new) in a comparison with the committed baseline.
#[test]
fn results_carry_the_peer_and_compare_does_not_gate_it() {
    let Some(version) = python_version("results") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("cpython.json");
    let name = "pipe/cpython-pipe-simplex/roundtrip/64B/same-cpu";
    let out = hygiene::join_run(&mut Command::new(env!("CARGO_BIN_EXE_ipcbench")))
        .args([
            "bench",
            "--quick",
            "--peer",
            "cpython",
            "--no-matrix",
            "--filter",
            name,
            "--json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results = Results::load(&json).unwrap();
    assert_eq!(results.peers.len(), 1);
    assert_eq!(results.peers[0].name, "cpython");
    assert_eq!(results.peers[0].version, version);
    assert_eq!(results.peers[0].start_methods, ["fork"]);
    let measured: Vec<&str> = results
        .latency
        .iter()
        .filter(|l| l.family != "calibration")
        .map(|l| l.workload.as_str())
        .collect();
    assert_eq!(measured, [name]);
    let figure = &results.latency.iter().find(|l| l.workload == name).unwrap();
    assert_eq!(figure.calibration.as_deref(), Some("pipe-roundtrip"));
    assert!(figure.ratio.is_some(), "{figure:?}");

    // The baseline plus this figure: everything the baseline gates is there, and the
    // CPython figure is a peer's, never gated and not counted as new (no refresh of the
    // baseline would gate it).
    let baseline_path = concat!(env!("CARGO_MANIFEST_DIR"), "/reports/baseline.json");
    let mut current = Results::load(baseline_path.as_ref()).unwrap();
    current.merge(results);
    let current_path = dir.path().join("current.json");
    current.save(&current_path).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ipcbench"))
        .args(["compare", baseline_path])
        .arg(&current_path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let row = text
        .lines()
        .find(|l| l.contains(name))
        .unwrap_or_else(|| panic!("{name} not in the comparison: {text}"));
    assert!(row.starts_with("peer "), "{row}");
    assert!(!text.contains("new since the baseline"), "{text}");
    assert!(text.contains("peer figure(s)"), "{text}");
    // Old files, without peers, still load; a file with none writes no key.
    let mut old: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(baseline_path).unwrap()).unwrap();
    old.as_object_mut().unwrap().remove("peers");
    let plain: Results = serde_json::from_value(old).unwrap();
    assert!(plain.peers.is_empty());
    assert!(!serde_json::to_string(&plain).unwrap().contains("\"peers\""));
}
