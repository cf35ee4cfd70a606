//! CPython's `multiprocessing` as a peer: `peers/cpython/ipcbench_peer.py` (stdlib only,
//! shipped inside the binary and written into the session's directory), run by `python3`
//! (or the interpreter `IPCBENCH_PYTHON` names).
//!
//! Each workload mirrors one of ipcbench's own: the same name with the flavor replaced
//! (`queue/pipe/roundtrip/64B/same-cpu` → `queue/cpython-queue/roundtrip/64B/same-cpu`),
//! the same message size, operation count, chunksize and placement, divided by the same
//! raw calibration of the same run, so the two ratios compare. Where ipcbench's flavor is
//! a variant of the mechanism (duplex/simplex pipe, the start method, the pool's call),
//! the variant follows the CPython flavor: `cpython-pipe-duplex`,
//! `cpython-process-spawn`, `cpython-pool-2-map`. Every flavor starts with `cpython-`.

use super::session::PeerCommand;
use super::{Peer, PeerError, Spec};
use crate::measure::calibration::{self as cal, handoff};
use crate::measure::registry::{Workload, PLACEMENTS};
use crate::measure::workloads::{stream_messages, SIZES};
use serde_json::json;
use std::time::Duration;

/// The peer program.
pub const SCRIPT: &str = include_str!("../../../peers/cpython/ipcbench_peer.py");
/// The file the shipped peer script is written to in the session's directory.
pub const SCRIPT_NAME: &str = "ipcbench_peer.py";

pub use crate::process::{python, PYTHON_ENV};

/// CPython's multiprocessing, run by `python3` with the shipped script.
pub static PEER: Peer = Peer {
    name: "cpython",
    about: "CPython's multiprocessing, run by python3 (peers/cpython/ipcbench_peer.py)",
    command,
    specs,
    twin,
};

/// The ipcbench flavor a CPython flavor mirrors. The one statement of the pairing: the
/// test below holds every spec to it, and the report puts each pair side by side by it.
pub fn twin_flavor(flavor: &str) -> Option<&'static str> {
    Some(match flavor {
        "cpython-queue" | "cpython-simplequeue" | "cpython-joinablequeue" => "pipe",
        "cpython-pipe-duplex" => "duplex",
        "cpython-pipe-simplex" => "simplex",
        "cpython-lock" => "robust-mutex",
        "cpython-semaphore" => "semaphore",
        "cpython-event" => "event",
        f if f.starts_with("cpython-manager") => "server",
        "cpython-pool-fork" => "fork",
        "cpython-pool-2-map" => "pool-2-map",
        "cpython-pool-2-apply-async" => "pool-2-apply-async",
        "cpython-process-fork" | "cpython-process-forkserver" => "fork",
        "cpython-process-spawn" => "spawn",
        _ => return None,
    })
}

/// The ipcbench workload the CPython workload `name` mirrors: the same name with the
/// flavor (its second part) replaced by [`twin_flavor`]'s. None for any other name.
fn twin(name: &str) -> Option<String> {
    let mut parts: Vec<&str> = name.split('/').collect();
    parts[1] = twin_flavor(parts.get(1)?)?;
    Some(parts.join("/"))
}

fn command() -> PeerCommand {
    command_with(&python())
}

fn command_with(program: &std::ffi::OsStr) -> PeerCommand {
    PeerCommand {
        program: program.to_owned(),
        args: Vec::new(),
        script: Some((SCRIPT_NAME, SCRIPT)),
    }
}

/// Whether the lane can run here: the peer's hello, or why not ("python3 not found").
pub fn probe() -> Result<super::Hello, PeerError> {
    probe_program(&python())
}

/// [`probe`] with the interpreter `program`.
pub fn probe_program(program: &std::ffi::OsStr) -> Result<super::Hello, PeerError> {
    let mut session =
        super::session::Session::start(PEER.name, &command_with(program)).map_err(|e| match e {
            PeerError::Spawn { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                PeerError::Missing {
                    program: program.to_string_lossy().into_owned(),
                }
            }
            other => other,
        })?;
    let answer = session.request(
        "hello",
        &serde_json::json!({"op": "hello"}),
        Duration::from_secs(20),
    )?;
    session.close(Duration::from_secs(10));
    super::Hello::parse(PEER.name, &answer)
}

/// A stream of `size`-byte messages, `p`x`c`, named as ipcbench's throughput workloads.
fn stream(
    flavor: &'static str,
    mechanism: &str,
    size: u64,
    (p, c): (u32, u32),
    base: &'static str,
) -> Spec {
    let family = if mechanism == "pipe" { "pipe" } else { "queue" };
    let (quick, full) = stream_messages(size);
    Spec::new(
        Workload::stream(family, flavor)
            .size(size)
            .processes(p, c)
            .divided_by(base)
            .ops(quick, full)
            .shape(),
        json!({"mechanism": mechanism, "what": "stream"}),
    )
}

/// Every CPython workload, each beside the ipcbench workload it mirrors.
pub fn specs() -> Vec<Spec> {
    let mut all = Vec::new();
    // Queues: mp.Queue, SimpleQueue and JoinableQueue are pipes with locks, as ipcbench's
    // pipe flavor (queue/pipe/...): the raw pipe round trip and pipe streams.
    for (flavor, mechanism) in [
        ("cpython-queue", "queue"),
        ("cpython-simplequeue", "simplequeue"),
        ("cpython-joinablequeue", "joinablequeue"),
    ] {
        for placement in PLACEMENTS {
            all.push(Spec::new(
                Workload::latency("queue", flavor, "roundtrip")
                    .size(64)
                    .placement(placement)
                    .divided_by(cal::PIPE_ROUNDTRIP)
                    .ops(2_000, 20_000)
                    .shape(),
                json!({"mechanism": mechanism, "what": "roundtrip"}),
            ));
        }
        for size in SIZES {
            all.push(stream(
                flavor,
                mechanism,
                size,
                (1, 1),
                cal::pipe_stream_name(size),
            ));
        }
    }
    for size in SIZES {
        all.push(stream(
            "cpython-queue",
            "queue",
            size,
            (4, 4),
            cal::pipe_stream_name(size),
        ));
    }
    // Pipe(): duplex is a socketpair (ipcbench's pipe/duplex), duplex=False two pipes
    // (pipe/simplex).
    for (flavor, variant, base) in [
        (
            "cpython-pipe-duplex",
            "duplex",
            cal::UNIX_SOCKET_REQUEST_REPLY,
        ),
        ("cpython-pipe-simplex", "simplex", cal::PIPE_ROUNDTRIP),
    ] {
        for placement in PLACEMENTS {
            all.push(Spec::new(
                Workload::latency("pipe", flavor, "roundtrip")
                    .size(64)
                    .placement(placement)
                    .divided_by(base)
                    .ops(2_000, 20_000)
                    .shape(),
                json!({"mechanism": "pipe", "what": "roundtrip", "variant": variant}),
            ));
        }
    }
    for size in SIZES {
        all.push(stream(
            "cpython-pipe-duplex",
            "pipe",
            size,
            (1, 1),
            cal::unix_stream_name(size),
        ));
    }
    // mp.Lock is a semaphore in shared memory (futex), as the robust mutex: divided by
    // the atomic increment of as many processes.
    for processes in [1u32, 2, 4] {
        all.push(Spec::new(
            Workload::operations("lock", "cpython-lock", "acquire-release")
                .contenders(processes)
                .divided_by(cal::atomic_increment_name(processes))
                .ops(5_000, 50_000)
                .shape(),
            json!({"mechanism": "lock", "what": "acquire-release"}),
        ));
    }
    for (flavor, mechanism) in [
        ("cpython-semaphore", "semaphore"),
        ("cpython-event", "event"),
    ] {
        for placement in PLACEMENTS {
            all.push(Spec::new(
                Workload::latency("sync", flavor, "wake-roundtrip")
                    .placement(placement)
                    .divided_by(cal::FUTEX_ROUNDTRIP)
                    .ops(2_000, 20_000)
                    .shape(),
                json!({"mechanism": mechanism, "what": "wake-roundtrip"}),
            ));
        }
    }
    // Manager: a registered counter is one RPC per increment, as ipcbench's server-side
    // increment; the Value and dict proxies' `x = x + 1` are two (get, then set).
    for (flavor, variant) in [
        ("cpython-manager", "counter"),
        ("cpython-manager-value", "value"),
        ("cpython-manager-dict", "dict"),
    ] {
        for placement in PLACEMENTS {
            all.push(Spec::new(
                Workload::latency("manager", flavor, "rpc-increment")
                    .placement(placement)
                    .divided_by(cal::UNIX_SOCKET_REQUEST_REPLY)
                    .ops(2_000, 20_000)
                    .shape(),
                json!({"mechanism": "manager", "what": "rpc-increment", "variant": variant}),
            ));
        }
    }
    for clients in [1u32, 2, 4] {
        all.push(Spec::new(
            Workload::operations("manager", "cpython-manager", "increments")
                .contenders(clients)
                .divided_by(cal::UNIX_SOCKET_REQUEST_REPLY)
                .ops(2_000, 20_000)
                .shape(),
            json!({"mechanism": "manager", "what": "increments"}),
        ));
    }
    // Pool(2), fork-started outside the clock, as ipcbench's pool workloads.
    all.push(Spec::new(
        Workload::latency("pool", "cpython-pool-fork", "apply-async")
            .divided_by(handoff::TASK_HANDOFF)
            .ops(300, 3_000)
            .shape(),
        json!({"mechanism": "pool", "what": "apply-async-latency", "workers": 2}),
    ));
    for (what, base, request) in [
        (
            "short-tasks/chunksize-1",
            handoff::TASK_HANDOFF_2_WORKERS,
            json!({"mechanism": "pool", "what": "map", "chunksize": 1}),
        ),
        (
            // Python's own default chunksize (ipcbench's default_chunksize is the same rule).
            "short-tasks/chunksize-auto",
            handoff::TASK_HANDOFF_2_WORKERS,
            json!({"mechanism": "pool", "what": "map", "chunksize": null}),
        ),
    ] {
        all.push(Spec::new(
            Workload::operations("pool", "cpython-pool-2-map", what)
                .processes(2)
                .divided_by(base)
                .ops(1_000, 10_000)
                .shape(),
            request,
        ));
    }
    for (what, base) in [
        ("round-trip", handoff::TASK_HANDOFF),
        ("pipelined", handoff::TASK_HANDOFF_2_WORKERS),
    ] {
        all.push(Spec::new(
            Workload::operations("pool", "cpython-pool-2-apply-async", what)
                .processes(2)
                .divided_by(base)
                .ops(1_000, 10_000)
                .shape(),
            json!({"mechanism": "pool", "what": format!("apply-async-{what}"), "workers": 2}),
        ));
    }
    // Process start+join per start method: fork by the raw fork+_exit, spawn (an
    // interpreter started afresh) by the raw fork+exec, forkserver (a fork of the server,
    // asked over a socket) by the raw fork+_exit. Spawn and forkserver take tens of
    // milliseconds each in CPython: the counts of ipcbench's spawn workload.
    for (method, base, (quick, full), per_op) in [
        ("fork", cal::FORK_EXIT, (100, 1_000), 100),
        ("spawn", cal::FORK_EXEC, (30, 300), 1_000),
        ("forkserver", cal::FORK_EXIT, (30, 300), 1_000),
    ] {
        let flavor = match method {
            "fork" => "cpython-process-fork",
            "spawn" => "cpython-process-spawn",
            _ => "cpython-process-forkserver",
        };
        let mut s = Spec::new(
            Workload::latency("process", flavor, "start-join")
                .divided_by(base)
                .ops(quick, full)
                .shape(),
            json!({"mechanism": "process", "what": "start-join"}),
        );
        s.start_method = method;
        s.per_op = Duration::from_millis(per_op);
        all.push(s);
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::registry;

    /// Each CPython workload mirrors one of ipcbench's: same name with the flavor
    /// replaced, same size, counts and placement, divided by the same calibration.
    #[test]
    fn every_workload_mirrors_one_of_ipcbench() {
        let ours = registry::all();
        let specs = specs();
        for s in specs.iter().map(|s| &s.shape) {
            assert!(s.flavor.starts_with("cpython-"), "{}", s.name);
            assert!(s.name.starts_with(&format!("{}/{}/", s.family, s.flavor)));
            let counterpart =
                twin(&s.name).unwrap_or_else(|| panic!("unmapped flavor {}", s.flavor));
            let w = &ours
                .iter()
                .find(|w| w.shape.name == counterpart)
                .unwrap_or_else(|| panic!("{} mirrors no workload ({counterpart})", s.name))
                .shape;
            assert_eq!(w.message_bytes, s.message_bytes, "{}", s.name);
            assert_eq!(w.placement, s.placement, "{}", s.name);
            assert_eq!(w.kind, s.kind, "{}", s.name);
            if s.flavor != "cpython-process-forkserver" {
                assert_eq!(w.ops, s.ops, "{}", s.name);
            }
            assert!(s.calibration.is_some(), "{} is divided by nothing", s.name);
            assert_eq!(w.calibration, s.calibration, "{}", s.name);
        }
        let mut names: Vec<&str> = specs.iter().map(|s| s.shape.name.as_str()).collect();
        names.sort_unstable();
        let count = names.len();
        names.dedup();
        assert_eq!(names.len(), count, "duplicate names");
        assert!(names.contains(&"queue/cpython-queue/roundtrip/64B/same-cpu"));
    }

    #[test]
    fn only_a_cpython_workload_has_a_twin() {
        assert_eq!(
            twin("queue/cpython-joinablequeue/stream/64B/1x1").as_deref(),
            Some("queue/pipe/stream/64B/1x1")
        );
        assert_eq!(twin("queue/pipe/stream/64B/1x1"), None);
        assert_eq!(twin("cpython-queue"), None);
        assert_eq!(twin(""), None);
    }

    #[test]
    fn a_request_carries_what_the_peer_needs() {
        let s = specs()
            .into_iter()
            .find(|s| s.shape.name == "pool/cpython-pool-2-map/short-tasks/chunksize-1")
            .unwrap();
        let r = s.request(10, Some((0, 1)), Duration::from_secs(3));
        assert_eq!(r["op"], "run");
        assert_eq!(r["mechanism"], "pool");
        assert_eq!(r["chunksize"], 1);
        assert_eq!(r["ops"], 10);
        assert_eq!(r["cpus"], json!([0, 1]));
        assert_eq!(r["bound_s"], 3.0);
        assert_eq!(r["workload"], s.shape.name.as_str());
    }
}
