//! Pool across real worker processes: results, callbacks, panics, terminate, worker
//! death (SIGKILL mid-task), the elastic pool, and the seed's echo servers. Every test
//! proves it left nothing behind.

mod support;

use ipcbench::ipc::pool::{DeathHandling, Pool, PoolError, PoolOptions};
use ipcbench::process::{hygiene, StartMethod};
use ipcbench::programs::pool_echo::{ClientCommand, ClientEvent, Clients, EchoServer, ServerKind};
use ipcbench::register_entry;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bound on any single wait in these tests: only a hang reaches it.
const LONG: Duration = Duration::from_secs(30);

/// Runs `body` alone and asserts it left no process, fd, shared-memory name or temp path
/// (of this run: names carry the run tag, so other test binaries do not count).
fn leak_checked(body: impl FnOnce()) {
    let _serial = support::serial();
    let before = hygiene::Snapshot::take();
    body();
    let leaks = before.leaks_since();
    assert!(leaks.is_empty(), "left behind: {leaks:?}");
}

/// A tracked temp directory that is removed, and checked gone, when dropped.
struct TempDir(PathBuf);

fn temp_dir() -> TempDir {
    TempDir(hygiene::temp_dir().unwrap())
}

impl Drop for TempDir {
    fn drop(&mut self) {
        hygiene::remove_temp(&self.0);
        if !std::thread::panicking() {
            assert!(!self.0.exists(), "{} left behind", self.0.display());
        }
    }
}

fn affine(x: i64) -> Result<i64, String> {
    Ok(x.wrapping_mul(3).wrapping_sub(7))
}
register_entry!("test-pool-affine", affine);

fn panic_on_three(x: u32) -> Result<u32, String> {
    if x == 3 {
        panic!("three is not allowed");
    }
    Ok(x + 1)
}
register_entry!("test-pool-panic-on-three", panic_on_three);

fn fail_with(message: String) -> Result<u32, String> {
    Err(message)
}
register_entry!("test-pool-fail", fail_with);

fn sleep_ms(ms: u64) -> Result<u32, String> {
    std::thread::sleep(Duration::from_millis(ms));
    Ok(std::process::id())
}
register_entry!("test-pool-sleep", sleep_ms);

/// Blocks until `path` exists (bounded): a gate the test opens.
fn wait_for_file(path: PathBuf) -> Result<u32, String> {
    let deadline = Instant::now() + LONG;
    while !path.exists() {
        if Instant::now() >= deadline {
            return Err(format!("gate {} never opened", path.display()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(std::process::id())
}
register_entry!("test-pool-gate", wait_for_file);

/// SIGKILLs its own worker the first time (leaving `marker`), returns 42 the second.
fn die_once(marker: PathBuf) -> Result<u32, String> {
    if !marker.exists() {
        std::fs::write(&marker, b"died").map_err(|e| e.to_string())?;
        // SAFETY: kill(2) of this very process.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
    Ok(42)
}
register_entry!("test-pool-die-once", die_once);

/// Returns `x`, after waiting for `gate` to open when one is given.
fn gated_echo((x, gate): (u32, Option<PathBuf>)) -> Result<u32, String> {
    match gate {
        Some(gate) => wait_for_file(gate).map(|_| x),
        None => Ok(x),
    }
}
register_entry!("test-pool-gated-echo", gated_echo);

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + LONG;
    while !done() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn pool(method: StartMethod, workers: usize) -> Pool {
    Pool::new(
        PoolOptions::new()
            .size(workers)
            .method(method)
            .timeout(LONG),
    )
    .unwrap()
}

#[test]
fn map_and_imap_equal_sequential_results() {
    leak_checked(|| {
        for method in StartMethod::ALL {
            let pool = pool(method, 2);
            let config = Config {
                cases: 24,
                failure_persistence: None,
                ..Config::default()
            };
            let mut runner = TestRunner::new(config);
            runner
                .run(
                    &(proptest::collection::vec(any::<i64>(), 0..40), 1usize..9),
                    |(items, chunksize)| {
                        let expected: Vec<i64> =
                            items.iter().map(|&x| affine(x).unwrap()).collect();
                        let mapped: Vec<i64> = pool
                            .map("test-pool-affine", items.clone(), chunksize)
                            .unwrap();
                        prop_assert_eq!(&mapped, &expected);
                        let lazily: Vec<i64> = pool
                            .imap("test-pool-affine", items.clone(), chunksize)
                            .unwrap()
                            .collect::<Result<_, _>>()
                            .unwrap();
                        prop_assert_eq!(&lazily, &expected);
                        Ok(())
                    },
                )
                .unwrap();
            let auto = pool.default_chunksize(100);
            let mapped: Vec<i64> = pool.map("test-pool-affine", 0..100i64, auto).unwrap();
            assert_eq!(
                mapped,
                (0..100).map(|x| affine(x).unwrap()).collect::<Vec<_>>()
            );
            assert_eq!(pool.stats().deaths, 0, "{method:?}");
        }
    });
}

#[test]
fn imap_yields_the_first_result_while_later_tasks_still_run() {
    leak_checked(|| {
        let dir = temp_dir();
        let gate = dir.0.join("gate");
        let pool = pool(StartMethod::Fork, 2);
        let items = vec![(7u32, None), (8, Some(gate.clone())), (9, None)];
        let mut results = pool
            .imap::<_, u32, _>("test-pool-gated-echo", items, 1)
            .unwrap();
        assert_eq!(
            results.next(),
            Some(Ok(7)),
            "first result before the second task ends"
        );
        assert!(
            pool.stats().busy >= 1,
            "the second task is still blocked on its gate"
        );
        std::fs::write(&gate, b"open").unwrap();
        assert_eq!(results.collect::<Vec<_>>(), vec![Ok(8), Ok(9)]);
    });
}

#[test]
fn callbacks_run_in_the_parent_once_per_task() {
    leak_checked(|| {
        let pool = pool(StartMethod::Fork, 2);
        let seen: Arc<Mutex<Vec<(u32, i64)>>> = Arc::default();
        let handles: Vec<_> = (0..20i64)
            .map(|x| {
                let seen = Arc::clone(&seen);
                pool.apply_async_with("test-pool-affine", &x, move |r: Result<i64, PoolError>| {
                    seen.lock().unwrap().push((std::process::id(), r.unwrap()));
                })
                .unwrap()
            })
            .collect();
        for (x, handle) in handles.iter().enumerate() {
            assert_eq!(handle.get(LONG).unwrap(), affine(x as i64).unwrap());
            assert!(handle.ready());
            assert_eq!(handle.successful(), Some(true));
        }
        let mut seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 20, "one callback per task");
        assert!(
            seen.iter().all(|&(pid, _)| pid == std::process::id()),
            "ran in the parent"
        );
        seen.sort_by_key(|&(_, value)| value);
        let mut expected: Vec<i64> = (0..20).map(|x| affine(x).unwrap()).collect();
        expected.sort();
        assert_eq!(seen.iter().map(|&(_, v)| v).collect::<Vec<_>>(), expected);
    });
}

#[test]
fn a_panicking_or_failing_task_errors_alone() {
    leak_checked(|| {
        for method in StartMethod::ALL {
            let pool = pool(method, 2);
            let pids = pool.worker_pids();
            let handles: Vec<_> = (0..6u32)
                .map(|x| {
                    pool.apply_async::<_, u32>("test-pool-panic-on-three", &x)
                        .unwrap()
                })
                .collect();
            for (x, handle) in handles.iter().enumerate() {
                match handle.get(LONG) {
                    Ok(v) => assert_eq!(v as usize, x + 1),
                    Err(PoolError::Panicked { message, .. }) => {
                        assert_eq!(x, 3);
                        assert!(message.contains("three is not allowed"), "{message}");
                        assert_eq!(handle.successful(), Some(false));
                    }
                    Err(e) => panic!("task {x}: {e}"),
                }
            }
            let err = pool
                .map::<_, u32, _>("test-pool-panic-on-three", 0..6u32, 2)
                .unwrap_err();
            assert!(
                matches!(err, PoolError::Panicked { index: 3, .. }),
                "map reports the item: {err}"
            );
            let err = pool
                .apply::<_, u32>("test-pool-fail", &"no such thing".to_string())
                .unwrap_err();
            assert!(err.to_string().contains("no such thing"), "{err}");
            assert_eq!(pool.worker_pids(), pids, "a panic does not cost a worker");
        }
    });
}

#[test]
fn bad_calls_are_clear_errors() {
    leak_checked(|| {
        assert!(matches!(
            Pool::new(PoolOptions::new().elastic(3, 2)),
            Err(PoolError::BadOptions(_))
        ));
        assert!(matches!(
            Pool::new(PoolOptions::new().size(0)),
            Err(PoolError::BadOptions(_))
        ));
        let mut pool = pool(StartMethod::Fork, 1);
        assert!(matches!(
            pool.map::<_, i64, _>("test-pool-affine", [1i64], 0),
            Err(PoolError::BadInput(_))
        ));
        let err = pool.apply::<_, i64>("no-such-task", &1).unwrap_err();
        assert!(
            matches!(err, PoolError::UnknownTask(ref m) if m.contains("no-such-task")),
            "{err}"
        );
        let err = pool
            .apply::<_, String>("test-pool-affine", &1i64)
            .unwrap_err();
        assert!(matches!(err, PoolError::Decode { .. }), "{err}");
        assert_eq!(pool.join(Some(LONG)), Err(PoolError::StillRunning));
        pool.close();
        assert_eq!(
            pool.apply::<_, i64>("test-pool-affine", &1i64).unwrap_err(),
            PoolError::Closed
        );
        pool.join(Some(LONG)).unwrap();
        assert_eq!(pool.size(), 0);
    });
}

#[test]
fn terminate_while_tasks_run_leaves_no_process() {
    leak_checked(|| {
        for method in StartMethod::ALL {
            let mut pool = pool(method, 2);
            let pids = pool.worker_pids();
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    pool.apply_async::<_, u32>("test-pool-sleep", &60_000u64)
                        .unwrap()
                })
                .collect();
            wait_until("both workers busy", || pool.stats().busy == 2);
            pool.terminate().unwrap();
            for handle in &handles {
                assert!(matches!(
                    handle.get(LONG),
                    Err(PoolError::Terminated { .. })
                ));
            }
            for pid in pids {
                let alive = hygiene::proc_info(pid.as_raw())
                    .is_some_and(|p| p.ppid == std::process::id() as i32);
                assert!(!alive, "worker {pid} survived terminate");
            }
        }
    });
}

#[test]
fn sigkill_of_a_worker_mid_task_fails_that_task_only_and_replaces_the_worker() {
    leak_checked(|| {
        for method in StartMethod::ALL {
            let pool = pool(method, 2);
            let victim = pool
                .apply_async::<_, u32>("test-pool-sleep", &60_000u64)
                .unwrap();
            wait_until("the victim task reaches a worker", || {
                victim.worker_pid().is_some()
            });
            let victim_pid = victim.worker_pid().unwrap();
            let others: Vec<_> = (0..10i64)
                .map(|x| pool.apply_async::<_, i64>("test-pool-affine", &x).unwrap())
                .collect();
            nix::sys::signal::kill(victim_pid, nix::sys::signal::Signal::SIGKILL).unwrap();
            match victim.get(LONG) {
                Err(PoolError::WorkerDied { pid, how, .. }) => {
                    assert_eq!(pid, victim_pid.as_raw());
                    assert!(how.contains("SIGKILL"), "{how}");
                }
                other => panic!("{method:?}: expected a worker death, got {other:?}"),
            }
            assert!(victim
                .get(LONG)
                .unwrap_err()
                .to_string()
                .starts_with("worker died"));
            for (x, handle) in others.iter().enumerate() {
                assert_eq!(handle.get(LONG).unwrap(), affine(x as i64).unwrap());
            }
            wait_until("the dead worker is replaced", || {
                pool.size() == 2 && !pool.worker_pids().contains(&victim_pid)
            });
            assert_eq!(pool.stats().deaths, 1);
            let after: Vec<i64> = pool.map("test-pool-affine", 0..8i64, 1).unwrap();
            assert_eq!(after.len(), 8, "the pool stays usable");
        }
    });
}

fn marker(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

#[test]
fn a_task_whose_worker_dies_is_retried_once_when_asked() {
    leak_checked(|| {
        let dir = temp_dir();
        for retry in [false, true] {
            let pool = Pool::new(
                PoolOptions::new()
                    .size(1)
                    .method(StartMethod::Fork)
                    .retry_on_death(retry)
                    .timeout(LONG),
            )
            .unwrap();
            let result =
                pool.apply::<_, u32>("test-pool-die-once", &marker(&dir.0, &format!("m{retry}")));
            if retry {
                assert_eq!(result.unwrap(), 42, "ran again in the replacement worker");
            } else {
                let err = result.unwrap_err();
                assert!(matches!(err, PoolError::WorkerDied { .. }), "{err}");
            }
            assert_eq!(pool.stats().deaths, 1);
            assert_eq!(pool.apply::<_, i64>("test-pool-affine", &1i64).unwrap(), -4);
        }
    });
}

#[test]
fn without_death_handling_the_lost_task_times_out_instead_of_hanging() {
    leak_checked(|| {
        let dir = temp_dir();
        let pool = Pool::new(
            PoolOptions::new()
                .size(1)
                .method(StartMethod::Fork)
                .death_handling(DeathHandling::IgnoreLikePython)
                .timeout(LONG),
        )
        .unwrap();
        let lost = pool
            .apply_async::<_, u32>("test-pool-die-once", &marker(&dir.0, "lost"))
            .unwrap();
        let wait = Duration::from_millis(300);
        wait_until("the worker dies", || pool.stats().deaths == 1);
        assert_eq!(
            lost.get(wait),
            Err(PoolError::Timeout {
                entry: "test-pool-die-once".into(),
                timeout: wait
            })
        );
        assert!(!lost.ready(), "as in Python, the task never completes");
        assert_eq!(
            pool.apply::<_, i64>("test-pool-affine", &2i64).unwrap(),
            -1,
            "replaced"
        );
        drop(pool);
    });
}

#[test]
fn elastic_pool_grows_to_max_under_a_burst_and_shrinks_back_when_idle() {
    leak_checked(|| {
        let dir = temp_dir();
        let gate = dir.0.join("gate");
        let pool = Pool::new(
            PoolOptions::new()
                .elastic(1, 4)
                .idle_timeout(Duration::from_millis(200))
                .method(StartMethod::Fork)
                .timeout(LONG),
        )
        .unwrap();
        assert_eq!(pool.size(), 1);
        let burst: Vec<_> = (0..8)
            .map(|_| pool.apply_async::<_, u32>("test-pool-gate", &gate).unwrap())
            .collect();
        wait_until("the pool grows to its maximum", || pool.stats().busy == 4);
        let stats = pool.stats();
        assert_eq!((stats.workers, stats.queued), (4, 4), "{stats:?}");
        std::fs::write(&gate, b"open").unwrap();
        let served: std::collections::BTreeSet<u32> =
            burst.iter().map(|h| h.get(LONG).unwrap()).collect();
        assert_eq!(served.len(), 4, "the burst ran on four workers: {served:?}");
        wait_until("the pool shrinks back to its minimum", || pool.size() == 1);
        assert_eq!(pool.stats().peak_workers, 4);
        assert_eq!(pool.stats().deaths, 0, "shrinking is not dying");
        assert_eq!(pool.apply::<_, i64>("test-pool-affine", &0i64).unwrap(), -7);
        drop(pool);
    });
}

/// Starts `n` holding clients and waits until each has connected and been told to go.
fn holding_clients(server: &EchoServer, n: usize) -> Clients {
    let clients = Clients::start(server.addr(), n, 1, 64, true, StartMethod::Fork).unwrap();
    for i in 0..n {
        assert_eq!(clients.next_event(i, LONG).unwrap(), ClientEvent::Connected);
    }
    for i in 0..n {
        clients.command(i, ClientCommand::Go).unwrap();
    }
    clients
}

/// Collects `Served` events until `count` clients have been served; returns which.
fn await_served(clients: &Clients, count: usize, served: &mut Vec<usize>) {
    let deadline = Instant::now() + LONG;
    while served.len() < count {
        assert!(Instant::now() < deadline, "only {served:?} were served");
        for i in 0..clients.len() {
            if !served.contains(&i) && clients.has_event(i, Duration::from_millis(5)) {
                assert_eq!(clients.next_event(i, LONG).unwrap(), ClientEvent::Served);
                served.push(i);
            }
        }
    }
}

/// Lets each of `which` (served clients) finish its round trips and close.
fn release(clients: &Clients, which: &[usize]) {
    for &i in which {
        assert!(matches!(
            clients.next_event(i, LONG).unwrap(),
            ClientEvent::Done { .. }
        ));
        clients.command(i, ClientCommand::Release).unwrap();
    }
}

#[test]
fn echo_pool_of_four_serves_four_clients_at_once_and_the_fifth_waits() {
    leak_checked(|| {
        let server =
            EchoServer::start(ServerKind::Pool { workers: 4 }, StartMethod::Fork, 5).unwrap();
        let clients = holding_clients(&server, 5);
        let mut served = Vec::new();
        await_served(&clients, 4, &mut served);
        assert_eq!(server.in_service(), 4);
        let waiting = (0..5).find(|i| !served.contains(i)).unwrap();
        // Every worker holds a connection: the fifth is connected but cannot be served.
        assert!(
            !clients.has_event(waiting, Duration::from_millis(300)),
            "a fifth client was served while four held the pool's four workers"
        );
        assert_eq!(server.in_service(), 4);
        // Releasing one client frees its worker, which takes the fifth.
        let first = served[0];
        release(&clients, &[first]);
        await_served(&clients, 5, &mut served);
        assert_eq!(served[4], waiting);
        assert_eq!(server.most_in_service(), 4, "never more than four at once");
        release(&clients, &served[1..]);
        clients.join().unwrap();
        assert_eq!(server.finish().unwrap(), 5 * 64);
    });
}

#[test]
fn echo_process_per_connection_serves_every_client_at_once() {
    leak_checked(|| {
        let server =
            EchoServer::start(ServerKind::ProcessPerConnection, StartMethod::Fork, 5).unwrap();
        let clients = holding_clients(&server, 5);
        let mut served = Vec::new();
        await_served(&clients, 5, &mut served);
        assert_eq!(server.in_service(), 5);
        assert_eq!(server.most_in_service(), 5);
        release(&clients, &served);
        clients.join().unwrap();
        assert_eq!(server.finish().unwrap(), 5 * 64);
    });
}

#[test]
fn echo_round_trips_through_both_servers() {
    leak_checked(|| {
        for kind in [
            ServerKind::ProcessPerConnection,
            ServerKind::Pool { workers: 4 },
        ] {
            let elapsed =
                ipcbench::programs::pool_echo::round_trips(kind, 6, 20, 100, StartMethod::Spawn)
                    .unwrap();
            assert!(elapsed < LONG, "{kind:?}");
        }
    });
}

/// Pools fork workers from their supervisor thread while other threads fork too (the
/// process-per-connection echo server forks from its acceptor thread while the driver
/// forks clients). A fork child once inherited the process registry's lock held by
/// another thread and hung; every child must finish.
#[test]
fn forking_from_several_threads_at_once_never_hangs_a_child() {
    leak_checked(|| {
        let fork_many = |offset: i64| {
            move || {
                for x in offset..offset + 150 {
                    let got: i64 = ipcbench::process::run(
                        "test-pool-affine",
                        &x,
                        ipcbench::process::Options::new("concurrent-fork")
                            .method(StartMethod::Fork),
                        LONG,
                    )
                    .unwrap();
                    assert_eq!(got, affine(x).unwrap());
                }
            }
        };
        let threads: Vec<_> = (0..3)
            .map(|t| std::thread::spawn(fork_many(t * 1000)))
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
    });
}

/// Ends its worker with exit code 0 in the middle of the task.
fn exit_cleanly(_: ()) -> Result<u32, String> {
    // SAFETY: _exit ends this worker process at once, as a task calling exit(0) would.
    unsafe { libc::_exit(0) }
}
register_entry!("test-pool-exit-cleanly", exit_cleanly);

#[test]
fn a_worker_that_exits_with_code_zero_mid_task_is_reported_by_its_code() {
    leak_checked(|| {
        let pool = Pool::new(
            PoolOptions::new()
                .size(1)
                .method(StartMethod::Fork)
                .timeout(LONG),
        )
        .unwrap();
        match pool.apply::<_, u32>("test-pool-exit-cleanly", &()) {
            Err(PoolError::WorkerDied { how, .. }) => {
                assert!(how.contains("exited with code 0"), "{how}")
            }
            other => panic!("expected WorkerDied, got {other:?}"),
        }
    });
}

#[test]
fn echo_clients_that_cannot_reach_a_server_fail_their_join() {
    leak_checked(|| {
        // A port nobody listens on any more.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let clients = Clients::start(addr, 2, 1, 64, false, StartMethod::Fork).unwrap();
        let joined = clients.join();
        assert!(
            joined.as_ref().is_err_and(|e| e.contains("echo client")),
            "{joined:?}"
        );
    });
}

/// Item 10e: a worker dies while both workers are busy and jobs wait; its replacement
/// fails to start. The live worker must still run the waiting jobs, and the pool must
/// get its second worker back once a start succeeds again.
#[test]
fn a_failed_replacement_start_leaves_the_queued_jobs_to_the_live_worker() {
    leak_checked(|| {
        let dir = temp_dir();
        let gate = dir.0.join("gate");
        // Starts 1 and 2 make the pool; start 3 (the first replacement) fails.
        let mut pool = Pool::new(
            PoolOptions::new()
                .size(2)
                .method(StartMethod::Fork)
                .timeout(LONG)
                .fail_worker_starts([3]),
        )
        .unwrap();
        let doomed = pool.apply_async::<_, u32>("test-pool-gate", &gate).unwrap();
        let blocked = pool.apply_async::<_, u32>("test-pool-gate", &gate).unwrap();
        wait_until("both workers busy", || pool.stats().busy == 2);
        let queued: Vec<_> = (0..4u32)
            .map(|x| {
                pool.apply_async::<_, u32>("test-pool-gated-echo", &(x, None::<PathBuf>))
                    .unwrap()
            })
            .collect();
        wait_until("the doomed job on a worker", || {
            doomed.worker_pid().is_some()
        });
        let victim = doomed.worker_pid().unwrap();
        nix::sys::signal::kill(victim, nix::sys::signal::Signal::SIGKILL).unwrap();
        let died = doomed.get(LONG).unwrap_err();
        assert!(matches!(died, PoolError::WorkerDied { .. }), "{died}");
        std::fs::write(&gate, b"open").unwrap();
        blocked.get(LONG).unwrap();
        for (x, handle) in queued.iter().enumerate() {
            assert_eq!(
                handle.get(LONG),
                Ok(x as u32),
                "queued job {x}: a live worker could have run it"
            );
        }
        wait_until("the pool back to two workers", || pool.size() == 2);
        pool.close();
        pool.join(None).unwrap();
    });
}

/// Only when no worker runs, and none can start, do waiting jobs fail — each with an
/// error that says why.
#[test]
fn with_no_live_worker_and_no_start_possible_waiting_jobs_fail_clearly() {
    leak_checked(|| {
        let dir = temp_dir();
        let gate = dir.0.join("gate");
        // One worker (start 1); every replacement fails.
        let mut pool = Pool::new(
            PoolOptions::new()
                .size(1)
                .method(StartMethod::Fork)
                .timeout(LONG)
                .fail_worker_starts(2..=10_000),
        )
        .unwrap();
        let doomed = pool.apply_async::<_, u32>("test-pool-gate", &gate).unwrap();
        wait_until("the doomed job on the worker", || {
            doomed.worker_pid().is_some()
        });
        let queued: Vec<_> = (0..3u32)
            .map(|x| {
                pool.apply_async::<_, u32>("test-pool-gated-echo", &(x, None::<PathBuf>))
                    .unwrap()
            })
            .collect();
        let victim = doomed.worker_pid().unwrap();
        nix::sys::signal::kill(victim, nix::sys::signal::Signal::SIGKILL).unwrap();
        assert!(matches!(
            doomed.get(LONG),
            Err(PoolError::WorkerDied { .. })
        ));
        for handle in &queued {
            let err = handle.get(LONG).unwrap_err();
            assert!(
                matches!(&err, PoolError::Start(why) if why.contains("injected")),
                "{err}"
            );
        }
        pool.terminate().unwrap();
    });
}
