//! Nothing is left behind: an interrupted parent cleans up what it created, and a whole
//! sequence of process work leaves no process, shm name, temp file or fd.

mod support;

use ipcbench::process::{self, hygiene, Group, Options};
use ipcbench::register_entry;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(20);

fn nap(ms: u64) -> Result<(), String> {
    std::thread::sleep(Duration::from_millis(ms));
    Ok(())
}
register_entry!("hygiene-nap", nap);

/// Creates one of each resource the suite tracks, reports their names, then waits for a
/// signal with the suite's cleanup handler installed.
fn create_then_wait(report: String) -> Result<(), String> {
    hygiene::install_signal_cleanup().map_err(|e| e.to_string())?;
    let shm_name = ipcbench::ipc::shm::unique_name("hygiene");
    let fd = nix::sys::mman::shm_open(
        shm_name.as_str(),
        nix::fcntl::OFlag::O_CREAT | nix::fcntl::OFlag::O_RDWR,
        nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
    )
    .map_err(|e| e.to_string())?;
    drop(fd);
    hygiene::track_shm(&shm_name);
    let dir = hygiene::temp_dir().map_err(|e| e.to_string())?;
    let child = process::start("hygiene-nap", &60_000u64, Options::new("nap"))
        .map_err(|e| e.to_string())?;
    let line = format!("{shm_name}\n{}\n{}\n", dir.display(), child.pid());
    std::fs::write(&report, line).map_err(|e| e.to_string())?;
    std::mem::forget(child);
    std::thread::sleep(Duration::from_secs(60));
    Ok(())
}
register_entry!("hygiene-create-then-wait", create_then_wait);

fn interrupted_parent_cleans_up(signal: nix::sys::signal::Signal) {
    let report = std::env::temp_dir().join(format!(
        "ipcbench-hygiene-report-{}-{}",
        std::process::id(),
        signal as i32
    ));
    let mut parent = process::start(
        "hygiene-create-then-wait",
        &report.display().to_string(),
        Options::new("interrupted").group(Group::New),
    )
    .unwrap();
    let until = Instant::now() + LONG;
    let text = loop {
        if let Ok(text) = std::fs::read_to_string(&report) {
            if text.lines().count() == 3 {
                break text;
            }
        }
        assert!(
            Instant::now() < until,
            "the child never reported what it created"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    std::fs::remove_file(&report).unwrap();
    let mut lines = text.lines();
    let (shm, dir, grandchild) = (
        lines.next().unwrap().to_string(),
        std::path::PathBuf::from(lines.next().unwrap()),
        lines.next().unwrap().parse::<i32>().unwrap(),
    );
    assert!(
        hygiene::shm_names().contains(&shm),
        "the segment exists before the signal"
    );
    assert!(dir.exists());
    assert!(hygiene::proc_info(grandchild).is_some());

    parent.signal(signal).unwrap();
    let code = parent.join(Some(LONG)).unwrap();
    assert_eq!(code, Some(128 + signal as i32), "exit status after cleanup");
    assert!(
        !hygiene::shm_names().contains(&shm),
        "{shm} left in /dev/shm"
    );
    assert!(!dir.exists(), "{} left behind", dir.display());
    std::thread::sleep(Duration::from_millis(50));
    hygiene::reap_orphans();
    assert!(
        hygiene::proc_info(grandchild).is_none(),
        "grandchild {grandchild} left running"
    );
}

/// One test, run sequentially, so that the process-wide fd and child counts are not
/// disturbed by other tests of this binary.
#[test]
fn nothing_is_left_behind() {
    let _serial = support::serial();
    let before = hygiene::Snapshot::take();
    interrupted_parent_cleans_up(nix::sys::signal::Signal::SIGTERM);
    interrupted_parent_cleans_up(nix::sys::signal::Signal::SIGINT);
    for method in process::StartMethod::ALL {
        let mut running =
            process::start("hygiene-nap", &60_000u64, Options::new("n").method(method)).unwrap();
        let mut done =
            process::start("hygiene-nap", &1u64, Options::new("d").method(method)).unwrap();
        done.join(Some(LONG)).unwrap();
        running.kill().unwrap();
        running.join(Some(LONG)).unwrap();
        let dropped =
            process::start("hygiene-nap", &60_000u64, Options::new("x").method(method)).unwrap();
        drop(dropped);
    }
    let leaks = before.leaks_since();
    assert!(leaks.is_empty(), "left behind: {leaks:?}");
}

#[test]
fn a_leak_is_detected() {
    let _serial = support::serial();
    // The check itself must be able to fail: a deliberately kept fd is reported, exactly
    // the two ends and nothing else (not the fd the listing itself uses)...
    let before = hygiene::Snapshot::take();
    let (r, w) = nix::unistd::pipe().unwrap();
    let leaks = before.leaks_since();
    let kept = [r.as_raw_fd(), w.as_raw_fd()];
    assert_eq!(leaks.len(), 2, "{leaks:?}");
    for leak in &leaks {
        assert!(
            matches!(leak, hygiene::Leak::Fd { fd, target } if kept.contains(fd) && target.starts_with("pipe:")),
            "{leaks:?}"
        );
    }
    // ...and once they are closed it must not cry wolf.
    drop((r, w));
    let leaks = before.leaks_since();
    assert!(leaks.is_empty(), "{leaks:?}");
}

/// Two top-level runs started under one outer tag (CI exports `IPCBENCH_RUN` to every
/// process it starts) each get a tag of their own: a stress run's leak check does not
/// count a name another run of the same CI job holds while it runs. (CI once failed on
/// exactly that: the example's `stress` and `check` ran side by side under `ciNNN`.)
#[test]
fn runs_under_one_outer_tag_do_not_see_each_others_names_as_leaks() {
    let _serial = support::serial();
    let outer = format!("outer{}", std::process::id());
    let mut run = std::process::Command::new(env!("CARGO_BIN_EXE_ipcbench"))
        .args(["stress", "--target", "queue-shm", "--duration", "2s"])
        .env(hygiene::RUN_ENV, &outer)
        .env_remove(hygiene::RUN_TAG_ENV)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start ipcbench stress");
    // Once the run has created its first name its "before" snapshot is taken: a name of
    // the outer tag that appears now is another run's, live past this one's end.
    let ours = format!("ipcbench-{outer}");
    let limit = Instant::now() + LONG;
    let started = || {
        std::fs::read_dir("/dev/shm")
            .unwrap()
            .any(|e| e.unwrap().file_name().to_string_lossy().starts_with(&ours))
    };
    while !started() {
        assert!(Instant::now() < limit, "the stress run created no shm name");
        assert!(
            run.try_wait().unwrap().is_none(),
            "the stress run ended early"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let squatter = format!("/dev/shm/ipcbench-{outer}-another-run");
    std::fs::write(&squatter, b"").unwrap();
    let out = run.wait_with_output().expect("wait for ipcbench stress");
    std::fs::remove_file(&squatter).unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(!text.contains("another-run"), "{text}");
}
