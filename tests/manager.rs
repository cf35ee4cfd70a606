//! The Manager across real processes: exact server-side increments, the server killed
//! mid-run, malformed requests, proxies for dicts and lists, shutdown.

mod support;

use ipcbench::ipc::manager::{Manager, ManagerAddress, ManagerClient, ManagerError, Response};
use ipcbench::process::StartMethod;
use ipcbench::register_entry;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::{Duration, Instant};
use support::{leak_checked, results, start_all};

const CALL_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Serialize, Deserialize)]
struct IncrementArgs {
    manager: ManagerAddress,
    /// None: until the server is gone.
    times: Option<u64>,
}

#[derive(Serialize, Deserialize, Debug)]
struct IncrementReport {
    done: u64,
    /// The error that ended an open-ended run, and how long that failing call took.
    ended_by: Option<(String, bool, u64)>,
}

fn increment(args: IncrementArgs) -> Result<IncrementReport, String> {
    let client = ManagerClient::connect(&args.manager)
        .map_err(|e| e.to_string())?
        .with_timeout(CALL_TIMEOUT);
    let counter = client.counter("hits");
    let mut done = 0;
    while args.times.is_none_or(|t| done < t) {
        let started = Instant::now();
        match counter.increment(1) {
            Ok(_) => done += 1,
            Err(e) => {
                let ms = started.elapsed().as_millis() as u64;
                return Ok(IncrementReport {
                    done,
                    ended_by: Some((e.to_string(), e.is_server_gone(), ms)),
                });
            }
        }
    }
    Ok(IncrementReport {
        done,
        ended_by: None,
    })
}
register_entry!("manager-test-increment", increment);

#[test]
fn server_side_increments_from_four_processes_are_exact() {
    leak_checked(|| {
        let manager = Manager::start(StartMethod::Spawn).unwrap();
        let args: Vec<IncrementArgs> = (0..4)
            .map(|_| IncrementArgs {
                manager: manager.address().clone(),
                times: Some(1_000),
            })
            .collect();
        for report in results::<IncrementReport>(start_all("manager-test-increment", &args)) {
            assert_eq!(report.done, 1_000);
        }
        let client = manager.client().unwrap();
        assert_eq!(client.counter("hits").get().unwrap(), 4_000);
        assert!(manager.shutdown(CALL_TIMEOUT).unwrap() >= 4_001);
    });
}

#[test]
fn killing_the_server_mid_run_fails_every_client_call_with_server_gone() {
    leak_checked(|| {
        let mut manager = Manager::start(StartMethod::Fork).unwrap();
        let args: Vec<IncrementArgs> = (0..4)
            .map(|_| IncrementArgs {
                manager: manager.address().clone(),
                times: None,
            })
            .collect();
        let clients = start_all("manager-test-increment", &args);
        let watcher = manager.client().unwrap().with_timeout(CALL_TIMEOUT);
        let deadline = Instant::now() + Duration::from_secs(30);
        while watcher.counter("hits").get().unwrap_or(0) < 200 {
            assert!(Instant::now() < deadline, "clients made no progress");
            std::thread::sleep(Duration::from_millis(5));
        }
        manager.process().kill().unwrap();
        manager.process().join(Some(CALL_TIMEOUT)).unwrap();
        for report in results::<IncrementReport>(clients) {
            let (error, gone, ms) = report.ended_by.expect("run ended by an error");
            assert!(gone && error.contains("is gone"), "{error}");
            assert!(
                ms <= CALL_TIMEOUT.as_millis() as u64,
                "failed after {ms} ms"
            );
        }
        let err = watcher.counter("hits").get().unwrap_err();
        assert!(err.is_server_gone(), "{err}");
        assert!(ManagerClient::connect(manager.address())
            .err()
            .unwrap()
            .is_server_gone());
    });
}

/// Waits (at most 10 s) until every thread of `pid` is stopped (state `T` in
/// /proc/PID/task/TID/stat).
fn all_threads_stopped(pid: i32) {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let states: Vec<char> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .filter_map(|t| {
                let stat = std::fs::read_to_string(t.ok()?.path().join("stat")).ok()?;
                stat.rsplit_once(')')?.1.trim().chars().next()
            })
            .collect();
        if !states.is_empty() && states.iter().all(|&s| s == 'T') {
            return;
        }
        assert!(Instant::now() < until, "not stopped after 10 s: {states:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A stalled server (stopped, alive, its socket open) is a `Timeout` within the client's
/// bound, never a hang, and never a "server gone"; once it runs again the client's next
/// call reconnects and is served. A client that stalls inside a request does not stop the
/// server serving others.
#[test]
fn a_stalled_server_is_a_timeout_within_the_bound_and_a_stalled_client_stalls_no_one() {
    use nix::sys::signal::Signal;
    leak_checked(|| {
        let mut manager = Manager::start(StartMethod::Fork).unwrap();
        let bound = Duration::from_millis(300);
        let client = manager.client().unwrap().with_timeout(bound);
        assert_eq!(client.counter("n").increment(1).unwrap(), 1);
        manager.process().signal(Signal::SIGSTOP).unwrap();
        // kill(2) returns before the stop takes hold: a server thread running on the other
        // CPU at that moment could still serve the next request (seen once in CI).
        all_threads_stopped(manager.process().pid().as_raw());
        let started = Instant::now();
        let err = client.counter("n").increment(1).unwrap_err();
        let took = started.elapsed();
        manager.process().signal(Signal::SIGCONT).unwrap();
        assert!(matches!(err, ManagerError::Timeout { .. }), "{err}");
        assert!(took >= bound, "timed out after {took:?}, before its bound");
        assert!(took < bound * 10, "timed out after {took:?}");
        // The late request may or may not have been applied (it was sent); the client
        // reconnects and goes on.
        let n = client.counter("n").increment(1).unwrap();
        assert!((2..=3).contains(&n), "{n}");

        // Half a request, then nothing: the server waits on that connection alone.
        let mut raw = std::os::unix::net::UnixStream::connect(&manager.address().socket).unwrap();
        let frame = ipcbench::ipc::frame::encode(br#"{"op":"ping"}"#);
        std::io::Write::write_all(&mut raw, &frame[..frame.len() / 2]).unwrap();
        let other = manager.client().unwrap().with_timeout(CALL_TIMEOUT);
        other.ping().unwrap();
        assert_eq!(other.counter("n").increment(1).unwrap(), n + 1);
        drop(raw);
        drop((client, other));
        assert!(manager.shutdown(CALL_TIMEOUT).is_ok());
    });
}

#[test]
fn a_malformed_request_gets_an_error_reply_and_the_server_goes_on() {
    leak_checked(|| {
        let manager = Manager::start(StartMethod::Spawn).unwrap();
        let bystander = manager.client().unwrap();
        bystander.counter("n").set(1).unwrap();
        let client = manager.client().unwrap();
        for garbage in [&b"not json"[..], br#"{"op":"fly"}"#, br#"{"op":"get"}"#] {
            match client.call_raw(garbage).unwrap() {
                Response::Err(message) => assert!(message.contains("malformed"), "{message}"),
                other => panic!("{other:?}"),
            }
        }
        // Bytes that are not a frame at all: an error reply, then that connection (whose
        // stream is out of step) is closed.
        {
            use std::io::Write;
            let mut raw =
                std::os::unix::net::UnixStream::connect(&manager.address().socket).unwrap();
            raw.write_all(b"GARBAGE-GARBAGE-GARBAGE").unwrap();
            let conn = ipcbench::ipc::pipe::Connection::from_socket(raw.into()).unwrap();
            match conn.recv_timeout::<Response>(CALL_TIMEOUT).unwrap() {
                Response::Err(message) => assert!(message.contains("malformed frame"), "{message}"),
                other => panic!("{other:?}"),
            }
            assert!(conn.recv_bytes_timeout(CALL_TIMEOUT).unwrap_err().is_eof());
        }
        // The same connection and the others still work.
        assert_eq!(client.counter("n").increment(1).unwrap(), 2);
        assert_eq!(bystander.counter("n").get().unwrap(), 2);
        // A bad request of the right shape is refused with a reason, too.
        let err = client.dict("n").keys().unwrap_err();
        assert!(
            matches!(&err, ManagerError::Remote { message, .. } if message.contains("not a dict")),
            "{err}"
        );
        assert!(manager.shutdown(CALL_TIMEOUT).is_ok());
    });
}

fn fill(manager: ManagerAddress) -> Result<(), String> {
    let client = ManagerClient::connect(&manager).map_err(|e| e.to_string())?;
    let e = |e: ManagerError| e.to_string();
    let dict = client.dict("beds");
    dict.set("alice", json!(1)).map_err(e)?;
    dict.set("bob", json!({"bed": 2})).map_err(e)?;
    let list = client.list("queue");
    for who in ["carol", "dave", "erin"] {
        list.push(json!(who)).map_err(e)?;
    }
    Ok(())
}
register_entry!("manager-test-fill", fill);

#[test]
fn dict_and_list_proxies_see_another_process_writes() {
    leak_checked(|| {
        let manager = Manager::start(StartMethod::Spawn).unwrap();
        results::<()>(start_all("manager-test-fill", &[manager.address().clone()]));
        let client = manager.client().unwrap();
        let dict = client.dict("beds");
        assert_eq!(dict.keys().unwrap(), vec!["alice", "bob"]);
        assert_eq!(dict.len().unwrap(), 2);
        assert!(!dict.is_empty().unwrap());
        assert_eq!(dict.get("bob").unwrap(), json!({"bed": 2}));
        assert!(dict.compare_and_set("alice", json!(1), json!(3)).unwrap());
        assert!(!dict.compare_and_set("alice", json!(1), json!(4)).unwrap());
        dict.delete("alice").unwrap();
        assert!(dict.get("alice").is_err());
        dict.delete("bob").unwrap();
        assert!(dict.is_empty().unwrap());
        let list = client.list("queue");
        assert_eq!(list.len().unwrap(), 3);
        assert_eq!(list.get(1).unwrap(), json!("dave"));
        list.set(1, json!("frank")).unwrap();
        list.delete(0).unwrap();
        assert_eq!(list.items().unwrap(), vec![json!("frank"), json!("erin")]);
        assert!(list.get(5).is_err());
        let counter = client.counter("c");
        assert!(
            !counter.compare_and_set(0, 5).unwrap(),
            "a missing counter is null, not 0"
        );
        counter.set(0).unwrap();
        assert!(counter.compare_and_set(0, 5).unwrap());
        assert_eq!(counter.get().unwrap(), 5);
        let started = Instant::now();
        let served = manager.shutdown(CALL_TIMEOUT).unwrap();
        assert!(served > 10 && started.elapsed() < CALL_TIMEOUT);
    });
}

/// A header with a good magic claiming `len` bytes of payload (and no payload).
fn header_claiming(len: u32) -> Vec<u8> {
    let mut h = ipcbench::ipc::frame::MAGIC.to_le_bytes().to_vec();
    h.extend_from_slice(&len.to_le_bytes());
    h.extend_from_slice(&[0u8; 4]);
    h
}

#[test]
fn an_oversized_header_gets_an_error_naming_the_limit_and_the_server_goes_on() {
    leak_checked(|| {
        let manager = Manager::start(StartMethod::Spawn).unwrap();
        let bystander = manager.client().unwrap();
        bystander.counter("n").set(1).unwrap();
        {
            use std::io::Write;
            let mut raw =
                std::os::unix::net::UnixStream::connect(&manager.address().socket).unwrap();
            // Claims 200 MiB, sends none of it, and keeps the connection open.
            raw.write_all(&header_claiming(200 << 20)).unwrap();
            let conn = ipcbench::ipc::pipe::Connection::from_socket(raw.into()).unwrap();
            match conn.recv_timeout::<Response>(CALL_TIMEOUT) {
                Ok(Response::Err(message)) => assert!(
                    message.contains("exceeds the maximum")
                        && message
                            .contains(&ipcbench::ipc::manager::DEFAULT_MAX_MESSAGE.to_string()),
                    "{message}"
                ),
                other => panic!("{other:?}"),
            }
            assert!(conn.recv_bytes_timeout(CALL_TIMEOUT).unwrap_err().is_eof());
        }
        // Garbage that is not a frame at all, from another raw client, the same.
        {
            use std::io::Write;
            let mut raw =
                std::os::unix::net::UnixStream::connect(&manager.address().socket).unwrap();
            raw.write_all(&[0xAB; 64]).unwrap();
            let conn = ipcbench::ipc::pipe::Connection::from_socket(raw.into()).unwrap();
            match conn.recv_timeout::<Response>(CALL_TIMEOUT).unwrap() {
                Response::Err(message) => assert!(message.contains("malformed frame"), "{message}"),
                other => panic!("{other:?}"),
            }
            assert!(conn.recv_bytes_timeout(CALL_TIMEOUT).unwrap_err().is_eof());
        }
        assert_eq!(bystander.counter("n").increment(1).unwrap(), 2);
        assert!(manager.shutdown(CALL_TIMEOUT).is_ok());
    });
}

#[test]
fn a_configured_max_message_bounds_requests_and_replies_with_errors_naming_it() {
    use ipcbench::ipc::manager::ManagerConfig;
    leak_checked(|| {
        let config = ManagerConfig {
            max_message: 1024,
            ..ManagerConfig::default()
        };
        let manager = Manager::start_with(StartMethod::Fork, None, config).unwrap();
        // A client that allows more than the server: the server refuses the request's
        // header with the limit, and closes that connection.
        let generous = manager.client().unwrap().with_max_message(1 << 20);
        let big = format!(
            r#"{{"op":"set","name":"s","key":null,"value":"{}"}}"#,
            "x".repeat(2000)
        );
        match generous.call_raw(big.as_bytes()).unwrap() {
            Response::Err(message) => {
                assert!(message.contains("exceeds the maximum 1024"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        // A client with the same limit refuses locally and stays connected.
        let client = manager.client().unwrap().with_max_message(1024);
        let err = client.call_raw(big.as_bytes()).unwrap_err();
        assert!(
            matches!(&err, ManagerError::Protocol { reason, .. } if reason.contains("maximum message size of 1024")),
            "{err}"
        );
        client.ping().unwrap();
        // Requests under the limit whose reply would exceed it: an error reply instead.
        let list = client.list("l");
        for _ in 0..3 {
            list.push(json!("y".repeat(600))).unwrap();
        }
        let err = list.items().unwrap_err();
        assert!(
            matches!(&err, ManagerError::Remote { message, .. } if message.contains("reply of") && message.contains("maximum message size of 1024")),
            "{err}"
        );
        assert_eq!(list.len().unwrap(), 3);
        // A limit above what any frame may carry is refused at start.
        let err = Manager::start_with(
            StartMethod::Fork,
            None,
            ManagerConfig {
                max_message: ipcbench::ipc::frame::MAX_PAYLOAD_LIMIT + 1,
                ..ManagerConfig::default()
            },
        )
        .err()
        .expect("refused");
        assert!(err.to_string().contains("exceeds the limit"), "{err}");
        assert!(manager.shutdown(CALL_TIMEOUT).is_ok());
    });
}

/// Asks until the server serves this client again (a slot freed by a disconnect is seen
/// by the server once it notices the hang-up); the bound is a safety net.
fn ping_until_served(client: &ManagerClient) -> Result<(), ManagerError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client.ping() {
            Err(e) if Instant::now() < deadline && e.to_string().contains("limit of") => {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

#[test]
fn connections_past_the_limit_are_refused_with_an_error_naming_it_and_a_closed_one_frees_a_slot() {
    use ipcbench::ipc::manager::ManagerConfig;
    leak_checked(|| {
        let max = 4;
        let config = ManagerConfig {
            max_connections: max,
            ..ManagerConfig::default()
        };
        let manager = Manager::start_with(StartMethod::Spawn, None, config).unwrap();
        let mut clients: Vec<ManagerClient> = (0..max)
            .map(|_| {
                let client = manager.client().unwrap().with_timeout(CALL_TIMEOUT);
                client.ping().unwrap();
                client
            })
            .collect();
        // One more: refused, with the limit named, not left hanging.
        let extra = manager.client().unwrap().with_timeout(CALL_TIMEOUT);
        let err = extra.ping().unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&format!("limit of {max} connections")),
            "{text}"
        );
        assert!(!err.is_server_gone(), "{err}");
        // The first ones still work.
        for (i, client) in clients.iter().enumerate() {
            assert_eq!(client.counter("n").increment(1).unwrap(), i as i64 + 1);
        }
        // Closing one frees a slot: the refused client is served on a later call.
        drop(clients.pop());
        ping_until_served(&extra).unwrap();
        assert_eq!(extra.counter("n").get().unwrap(), max as i64);
        // And the server still refuses the next one past the limit.
        let another = manager.client().unwrap().with_timeout(CALL_TIMEOUT);
        let err = another.ping().unwrap_err();
        assert!(err.to_string().contains("limit of"), "{err}");
        drop(another);
        drop(extra);
        drop(clients);
        // Shutdown needs a connection of its own: it waits for a slot within its bound.
        assert!(manager.shutdown(CALL_TIMEOUT).unwrap() >= 8);
    });
}

#[test]
fn a_connection_whose_thread_cannot_start_is_refused_and_the_server_survives() {
    use ipcbench::ipc::manager::ManagerConfig;
    leak_checked(|| {
        // A stack no machine can map: every connection's thread fails to start.
        let config = ManagerConfig {
            connection_stack: 1 << 50,
            ..ManagerConfig::default()
        };
        let mut manager = Manager::start_with(StartMethod::Spawn, None, config).unwrap();
        for _ in 0..3 {
            let client = manager.client().unwrap().with_timeout(CALL_TIMEOUT);
            let err = client.ping().unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains("cannot start a thread for this connection"),
                "{text}"
            );
            assert!(!err.is_server_gone(), "{err}");
        }
        assert!(
            manager.process().is_alive(),
            "the server died: {:?}",
            manager.process().exitcode()
        );
        // Dropping the handle kills the server.
    });
}

/// Garbage from many clients, one after another — random bytes, random bytes after a
/// good magic, frames holding random payloads — each sent and then the write side shut:
/// every such connection is answered or closed (never left hanging), and the server
/// goes on serving a well-behaved client throughout.
#[test]
fn random_garbage_from_many_clients_never_stops_the_server() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    use std::io::{Read, Write};
    const CASES: u32 = 1000;
    leak_checked(|| {
        let manager = Manager::start(StartMethod::Fork).unwrap();
        let bystander = manager.client().unwrap().with_timeout(CALL_TIMEOUT);
        let magic = ipcbench::ipc::frame::MAGIC.to_le_bytes().to_vec();
        let garbage = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..2000),
            proptest::collection::vec(any::<u8>(), 0..2000).prop_map(move |rest| {
                let mut b = magic.clone();
                b.extend(rest);
                b
            }),
            proptest::collection::vec(any::<u8>(), 0..2000)
                .prop_map(|payload| ipcbench::ipc::frame::encode(&payload)),
        ];
        let mut runner = TestRunner::new(Config {
            cases: CASES,
            failure_persistence: None,
            ..Config::default()
        });
        let seen = std::cell::Cell::new(0u32);
        runner
            .run(&garbage, |bytes| {
                seen.set(seen.get() + 1);
                let mut raw =
                    std::os::unix::net::UnixStream::connect(&manager.address().socket).unwrap();
                raw.set_read_timeout(Some(CALL_TIMEOUT)).unwrap();
                // The server may close as soon as it has seen a bad header.
                let _ = raw.write_all(&bytes);
                let _ = raw.shutdown(std::net::Shutdown::Write);
                let mut reply = Vec::new();
                let read = raw.read_to_end(&mut reply);
                prop_assert!(
                    read.is_ok()
                        || read.as_ref().unwrap_err().kind() == std::io::ErrorKind::ConnectionReset,
                    "the server neither answered nor closed: {read:?}"
                );
                prop_assert!(bystander.counter("n").increment(1).is_ok());
                Ok(())
            })
            .unwrap();
        assert_eq!(seen.get(), CASES);
        assert_eq!(bystander.counter("n").get().unwrap(), CASES as i64);
        assert!(manager.shutdown(CALL_TIMEOUT).is_ok());
    });
}
