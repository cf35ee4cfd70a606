//! The seed's process lessons, each across real processes.

use ipcbench::process::{self, hygiene, watchdog, Group, Options, ProcessError, StartMethod};
use ipcbench::register_entry;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(20);

fn square(x: u64) -> Result<u64, String> {
    Ok(x * x)
}
register_entry!("test-square", square);

fn sleep_ms(ms: u64) -> Result<(), String> {
    std::thread::sleep(Duration::from_millis(ms));
    Ok(())
}
register_entry!("test-sleep", sleep_ms);

fn panicker(message: String) -> Result<(), String> {
    panic!("{message}");
}
register_entry!("test-panic", panicker);

fn failer(message: String) -> Result<(), String> {
    Err(message)
}
register_entry!("test-fail", failer);

/// Changes a static in the child and reports what it saw.
static mut SHARED_LOOKING: u64 = 7;
fn mutate_global(_: ()) -> Result<u64, String> {
    // SAFETY: this child process is single-threaded here; nothing else reads the static.
    unsafe {
        SHARED_LOOKING += 100;
        Ok(SHARED_LOOKING)
    }
}
register_entry!("test-mutate-global", mutate_global);

/// Blocks in read(2) on a pipe nobody writes to.
fn block_in_read(_: ()) -> Result<(), String> {
    let (reader, _writer) = nix::unistd::pipe().map_err(|e| e.to_string())?;
    let mut buf = [0u8; 1];
    let _ = nix::unistd::read(&reader, &mut buf);
    Ok(())
}
register_entry!("test-block-read", block_in_read);

/// Spins on the CPU for `ms` milliseconds, then blocks in read(2) as above.
fn spin_then_block_in_read(ms: u64) -> Result<(), String> {
    let until = std::time::Instant::now() + Duration::from_millis(ms);
    while std::time::Instant::now() < until {
        std::hint::spin_loop();
    }
    block_in_read(())
}
register_entry!("test-spin-then-block-read", spin_then_block_in_read);

/// A result far larger than a pipe's buffer (64 KiB), made of `len` bytes.
fn big_result(len: usize) -> Result<String, String> {
    Ok((0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect())
}
register_entry!("test-big-result", big_result);

/// The CPUs this child may run on, as it sees them.
fn own_cpus(_: ()) -> Result<Vec<usize>, String> {
    Ok(ipcbench::measure::workloads::allowed_cpus())
}
register_entry!("test-own-cpus", own_cpus);

fn both_methods() -> [StartMethod; 2] {
    StartMethod::ALL
}

#[test]
fn start_then_join_returns_result() {
    for method in both_methods() {
        let mut child =
            process::start("test-square", &12u64, Options::new("sq").method(method)).unwrap();
        assert!(child.pid().as_raw() > 0);
        assert_eq!(child.name(), "sq");
        assert_eq!(child.result::<u64>(Some(LONG)).unwrap(), 144, "{method:?}");
        assert_eq!(child.exitcode(), Some(0));
        assert!(!child.is_alive());
    }
}

/// A result that cannot fit in the result pipe arrives whole: the parent drains the
/// pipe while the child is still writing (a parent that only waited for the exit would
/// leave the child blocked on a full pipe until the timeout).
#[test]
fn result_larger_than_the_pipe_arrives_whole() {
    for method in both_methods() {
        let len = 1 << 20;
        let text: String = process::run(
            "test-big-result",
            &len,
            Options::new("big").method(method),
            LONG,
        )
        .unwrap();
        assert_eq!(text, big_result(len).unwrap(), "{method:?}");
    }
}

#[test]
fn ten_children_started_then_all_joined() {
    for method in both_methods() {
        let mut children: Vec<_> = (0..10u64)
            .map(|i| {
                process::start(
                    "test-square",
                    &i,
                    Options::new(format!("c{i}")).method(method),
                )
                .unwrap()
            })
            .collect();
        let pids: std::collections::BTreeSet<i32> =
            children.iter().map(|c| c.pid().as_raw()).collect();
        assert_eq!(pids.len(), 10, "distinct processes");
        for (i, child) in children.iter_mut().enumerate() {
            assert_eq!(child.result::<u64>(Some(LONG)).unwrap(), (i * i) as u64);
        }
    }
}

#[test]
fn data_is_isolated_between_processes() {
    for method in both_methods() {
        let seen: u64 = process::run(
            "test-mutate-global",
            &(),
            Options::new("mutator").method(method),
            LONG,
        )
        .unwrap();
        assert_eq!(seen, 107, "the child saw its own change");
        // SAFETY: read of a static no other thread of this test writes.
        assert_eq!(
            unsafe { SHARED_LOOKING },
            7,
            "the parent's copy is untouched"
        );
    }
}

#[test]
fn terminate_gives_minus_15_and_kill_minus_9() {
    for method in both_methods() {
        let mut child =
            process::start("test-sleep", &60_000u64, Options::new("t").method(method)).unwrap();
        assert!(child.is_alive());
        assert_eq!(child.exitcode(), None);
        child.terminate().unwrap();
        assert_eq!(child.join(Some(LONG)).unwrap(), Some(-15));
        let err = child.result::<()>(Some(LONG)).unwrap_err();
        assert!(
            matches!(err, ProcessError::Killed { signal: 15, .. }),
            "{err}"
        );

        let mut child =
            process::start("test-sleep", &60_000u64, Options::new("k").method(method)).unwrap();
        child.kill().unwrap();
        assert_eq!(child.join(Some(LONG)).unwrap(), Some(-9));
        assert!(child
            .result::<()>(None)
            .unwrap_err()
            .to_string()
            .contains("SIGKILL"));
    }
}

#[test]
fn join_with_timeout_on_sleeping_child_returns_in_time() {
    let mut child = process::start("test-sleep", &10_000u64, Options::new("sleeper")).unwrap();
    let started = Instant::now();
    assert_eq!(child.join(Some(Duration::from_millis(200))).unwrap(), None);
    let waited = started.elapsed();
    // A generous bound: the point is that join returned long before the child ended.
    assert!(waited < Duration::from_secs(5), "join waited {waited:?}");
    assert!(child.is_alive());
    let err = child
        .result::<()>(Some(Duration::from_millis(10)))
        .unwrap_err();
    assert!(matches!(err, ProcessError::Timeout { .. }), "{err}");
    child.kill().unwrap();
    assert_eq!(child.join(Some(LONG)).unwrap(), Some(-9));
}

#[test]
fn panicking_child_reports_its_message() {
    for method in both_methods() {
        let err = process::run::<_, ()>(
            "test-panic",
            &"the sky fell".to_string(),
            Options::new("panicky").method(method),
            LONG,
        )
        .unwrap_err();
        match err {
            ProcessError::Panicked { message, name, .. } => {
                assert!(message.contains("the sky fell"), "{message}");
                assert_eq!(name, "panicky");
            }
            other => panic!("expected a panic error, got {other}"),
        }
        let err = process::run::<_, ()>(
            "test-fail",
            &"no luck".to_string(),
            Options::new("failing").method(method),
            LONG,
        )
        .unwrap_err();
        assert!(
            matches!(&err, ProcessError::Failed { message, .. } if message == "no luck"),
            "{err}"
        );
    }
}

#[test]
fn unknown_entry_is_a_clear_error() {
    let err = process::start("no-such-entry", &(), Options::new("x")).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("no-such-entry") && text.contains("test-square"),
        "{text}"
    );
}

#[test]
fn dropping_a_running_child_kills_and_reaps_it() {
    let child = process::start("test-sleep", &60_000u64, Options::new("dropped")).unwrap();
    let pid = child.pid().as_raw();
    drop(child);
    assert!(
        hygiene::proc_info(pid).is_none(),
        "the dropped child {pid} still exists: {:?}",
        hygiene::proc_info(pid)
    );
}

fn wait_gone(pid: i32, within: Duration) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        hygiene::reap_orphans();
        match hygiene::proc_info(pid) {
            None => return true,
            Some(p) if p.state == 'Z' => {}
            Some(_) => {}
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Starts a sleeping grandchild (daemon or not), writes its pid to a file named by this
/// process's pid, then waits to be SIGKILLed.
fn hold_grandchild(daemon: bool) -> Result<(), String> {
    let options = Options::new("grandchild").daemon(daemon);
    let child = process::start("test-sleep", &60_000u64, options).map_err(|e| e.to_string())?;
    std::fs::write(
        grandchild_file(std::process::id() as i32),
        child.pid().as_raw().to_string(),
    )
    .map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_secs(60));
    Ok(())
}
register_entry!("test-hold-grandchild", hold_grandchild);

fn grandchild_file(holder: i32) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("ipcbench-test-grandchild-{holder}"))
}

/// Starts a holder in its own group, reads its grandchild's pid, SIGKILLs the holder.
fn kill_holder_of(daemon: bool) -> (i32, process::Pid) {
    let mut holder = process::start(
        "test-hold-grandchild",
        &daemon,
        Options::new("holder").group(Group::New),
    )
    .unwrap();
    let path = grandchild_file(holder.pid().as_raw());
    let until = Instant::now() + LONG;
    let grandchild: i32 = loop {
        if let Some(pid) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            break pid;
        }
        assert!(
            Instant::now() < until,
            "holder never reported its grandchild"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let _ = std::fs::remove_file(&path);
    assert!(
        hygiene::proc_info(grandchild).is_some(),
        "grandchild running before the kill"
    );
    holder.kill().unwrap();
    assert_eq!(holder.join(Some(LONG)).unwrap(), Some(-9));
    (grandchild, holder.pid())
}

#[test]
fn daemon_child_dies_when_its_parent_is_sigkilled() {
    let (grandchild, _) = kill_holder_of(true);
    assert!(
        wait_gone(grandchild, Duration::from_secs(5)),
        "daemon {grandchild} outlived its SIGKILLed parent"
    );
}

#[test]
fn non_daemon_child_outlives_its_parent_and_the_suite_cleans_it_up() {
    let (grandchild, holder_group) = kill_holder_of(false);
    std::thread::sleep(Duration::from_millis(200));
    let info = hygiene::proc_info(grandchild).expect("a non-daemon child outlives its parent");
    assert_ne!(info.state, 'Z');
    assert_eq!(
        info.ppid,
        std::process::id() as i32,
        "the orphan came back to us as subreaper"
    );
    hygiene::kill_group(holder_group);
    assert!(
        wait_gone(grandchild, Duration::from_secs(5)),
        "cleanup left {grandchild}"
    );
}

#[test]
fn watchdog_reports_a_child_blocked_in_read() {
    for method in both_methods() {
        let mut children = vec![
            process::start(
                "test-block-read",
                &(),
                Options::new("reader").method(method),
            )
            .unwrap(),
            process::start("test-square", &3u64, Options::new("quick").method(method)).unwrap(),
        ];
        let report = watchdog::join_all(&mut children, Duration::from_millis(500)).unwrap_err();
        assert_eq!(report.blocked.len(), 1, "{report}");
        let blocked = &report.blocked[0];
        assert_eq!(blocked.name, "reader");
        assert_eq!(blocked.syscall, "read", "{report}");
        assert_eq!(blocked.state, 'S');
        assert!(blocked.wchan.contains("pipe"), "{report}");
        for child in &mut children {
            assert!(!child.is_alive(), "the watchdog killed the group");
        }
    }
}

/// A process found on the CPU is read again until it sleeps: the diagnosis names the
/// wait it ends in, not the instant it was seen running (a hung scenario whose waiter
/// loops on short timed waits was once reported "running" and so caught for the wrong
/// reason). Read once, the same process shows as running.
#[test]
fn watchdog_rereads_a_running_process_until_it_waits() {
    let mut child = process::start(
        "test-spin-then-block-read",
        &1500u64,
        Options::new("spinner").method(StartMethod::Fork),
    )
    .unwrap();
    let pid = child.pid().as_raw();
    let by = std::time::Instant::now() + Duration::from_secs(5);
    while hygiene::proc_info(pid).is_some_and(|i| i.state != 'R') {
        assert!(std::time::Instant::now() < by, "the child never ran");
        std::thread::sleep(Duration::from_millis(1));
    }
    let once = watchdog::diagnose_within(pid, "spinner", Duration::ZERO).unwrap();
    assert_eq!(once.syscall, "running", "{once}");
    let settled = watchdog::diagnose_within(pid, "spinner", Duration::from_secs(20)).unwrap();
    let _ = child.kill();
    let _ = child.join(Some(LONG));
    assert_eq!(settled.syscall, "read", "{settled}");
    assert_eq!(settled.state, 'S', "{settled}");
}

#[test]
fn watchdog_passes_when_everyone_finishes() {
    let mut children: Vec<_> = (0..3u64)
        .map(|i| process::start("test-square", &i, Options::new(format!("w{i}"))).unwrap())
        .collect();
    watchdog::join_all(&mut children, LONG).unwrap();
    for child in &mut children {
        assert_eq!(child.exitcode(), Some(0));
    }
}

fn quick_seven(_: ()) -> Result<u32, String> {
    Ok(7)
}
register_entry!("test-quick-seven", quick_seven);

/// Runs between the fork and the tracking of a new child: lets the child exit, then runs
/// the orphan reaper — what a reaper on another thread may do in that window.
fn exit_then_reap_before_tracking(pid: process::Pid) {
    let until = Instant::now() + LONG;
    while hygiene::proc_info(pid.as_raw()).is_some_and(|p| p.state != 'Z') {
        assert!(Instant::now() < until, "child {pid} never exited");
        std::thread::sleep(Duration::from_millis(1));
    }
    hygiene::reap_orphans();
}

/// Item 10d: a daemon child (its own process group, so "foreign" to the orphan reaper)
/// that exits before `start` has tracked it must still be joined by its own handle, with
/// its own exit status and result.
#[test]
fn the_orphan_reaper_never_takes_a_child_that_is_still_being_started() {
    for method in both_methods() {
        hygiene::set_before_tracking_hook(Some(exit_then_reap_before_tracking));
        let started = process::start(
            "test-quick-seven",
            &(),
            Options::new("quick-daemon").method(method).daemon(true),
        );
        hygiene::set_before_tracking_hook(None);
        let mut child = started.unwrap();
        assert_eq!(
            child
                .result::<u32>(Some(LONG))
                .unwrap_or_else(|e| panic!("{method:?}: {e}")),
            7
        );
        assert_eq!(child.exitcode(), Some(0), "{method:?}");
    }
}

/// A child pinned to a CPU runs there only; one pinned to a CPU it may not use does not
/// start (spawn: the error names the CPU; fork: the child ends before its entry) —
/// before, it ran unpinned under its pinned label.
#[test]
fn a_pinned_child_has_its_cpu_or_does_not_run() {
    let allowed = ipcbench::measure::workloads::allowed_cpus();
    let last = *allowed.last().unwrap();
    let outside = last + 1;
    for method in both_methods() {
        let pinned: Result<Vec<usize>, _> = process::run(
            "test-own-cpus",
            &(),
            Options::new("pinned").method(method).cpu(Some(last)),
            LONG,
        );
        assert_eq!(pinned.unwrap(), vec![last], "{method:?}");
        let started = process::start(
            "test-own-cpus",
            &(),
            Options::new("misplaced").method(method).cpu(Some(outside)),
        );
        match started {
            Err(e) => assert!(
                e.to_string()
                    .contains(&format!("cannot pin the child to CPU {outside}")),
                "{method:?}: {e}"
            ),
            Ok(mut child) => {
                let ran = child.result::<Vec<usize>>(Some(LONG));
                assert!(ran.is_err(), "{method:?}: ran unpinned on {ran:?}");
            }
        }
    }
    let far = process::start("test-own-cpus", &(), Options::new("far").cpu(Some(1 << 20)));
    assert!(far.unwrap_err().to_string().contains("below 1024"));
}
