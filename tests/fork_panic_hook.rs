//! A fork while another thread of the parent is inside the panic hook. std's hook lock is
//! then held, and it stays held for ever in the child (no thread of the child releases
//! it), so a child that replaced the hook hung before its entry ran — seen as a crowd
//! member that never reached its barrier while a concurrent test printed a panic with
//! its backtrace. Its own process: the test replaces the process's panic hook.

use ipcbench::process::{self as proc, Options, StartMethod};
use ipcbench::register_entry;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn seven(_: ()) -> Result<u32, String> {
    Ok(7)
}
register_entry!("test-fork-hook-seven", seven);

fn fork_seven() -> Result<u32, proc::ProcessError> {
    let options = Options::new("seven").method(StartMethod::Fork);
    proc::start("test-fork-hook-seven", &(), options)?.result(Some(Duration::from_secs(10)))
}

#[test]
fn a_fork_while_another_thread_is_in_the_panic_hook_runs_its_entry() {
    assert_eq!(fork_seven().unwrap(), 7);
    let entered = Arc::new(AtomicBool::new(false));
    let release = Arc::new(AtomicBool::new(false));
    let previous = std::panic::take_hook();
    let (hook_entered, hook_release) = (entered.clone(), release.clone());
    // Holds the hook lock (the hook runs under it) until released, at most 30 s.
    std::panic::set_hook(Box::new(move |_| {
        hook_entered.store(true, Ordering::SeqCst);
        let limit = Instant::now() + Duration::from_secs(30);
        while !hook_release.load(Ordering::SeqCst) && Instant::now() < limit {
            std::thread::sleep(Duration::from_millis(1));
        }
    }));
    let panicking = std::thread::spawn(|| panic!("held in the hook"));
    let limit = Instant::now() + Duration::from_secs(10);
    while !entered.load(Ordering::SeqCst) && Instant::now() < limit {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(
        entered.load(Ordering::SeqCst),
        "the panicking thread never ran the hook"
    );
    let forked = fork_seven();
    release.store(true, Ordering::SeqCst);
    assert!(panicking.join().is_err());
    // Restoring needs the hook lock: only once the panicking thread has left the hook.
    std::panic::set_hook(previous);
    assert_eq!(forked.unwrap(), 7);
}
