//! Lock flavors across real processes: exclusion, a holder killed in its critical
//! section, RLock. Written once over the `Lock` trait, run on every flavor.

mod support;

use ipcbench::ipc::lock::rlock::RLock;
use ipcbench::ipc::lock::{Acquired, Lock, LockAddress, LockError, LockExt, LockFlavor};
use ipcbench::ipc::shm::Shared;
use ipcbench::ipc::sync::Event;
use ipcbench::process::{self, hygiene, Options, StartMethod};
use ipcbench::register_entry;
use serde::{Deserialize, Serialize};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use support::{leak_checked, results, start_all};

const PROCESSES: usize = 4;
const INCREMENTS: u64 = 2_000;
const ACQUIRE: Duration = Duration::from_secs(20);

#[derive(Serialize, Deserialize)]
struct IncrementArgs {
    lock: LockAddress,
    counter_file: PathBuf,
    counter_shm: String,
    times: u64,
}

/// Non-atomic read-then-write increments of a counter in a file and one in shared memory,
/// under the lock: only exclusion keeps the totals exact.
fn increment_under_lock(args: IncrementArgs) -> Result<u32, String> {
    let lock = args.lock.open().map_err(|e| e.to_string())?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&args.counter_file)
        .map_err(|e| e.to_string())?;
    let shm: Shared<AtomicU64> = Shared::open(&args.counter_shm).map_err(|e| e.to_string())?;
    let mut owner_died = 0;
    for _ in 0..args.times {
        let guard = lock.lock(ACQUIRE).map_err(|e| e.to_string())?;
        owner_died += guard.owner_died() as u32;
        let mut bytes = [0u8; 8];
        file.read_exact_at(&mut bytes, 0)
            .map_err(|e| e.to_string())?;
        let value = u64::from_le_bytes(bytes);
        std::hint::spin_loop();
        file.write_all_at(&(value + 1).to_le_bytes(), 0)
            .map_err(|e| e.to_string())?;
        let seen = shm.load(Ordering::Relaxed);
        std::hint::spin_loop();
        shm.store(seen + 1, Ordering::Relaxed);
        guard.release().map_err(|e| e.to_string())?;
    }
    Ok(owner_died)
}
register_entry!("lock-test-increment", increment_under_lock);

#[test]
fn exclusion_is_exact_under_every_flavor() {
    leak_checked(|| {
        for flavor in LockFlavor::SAFE {
            let lock = flavor.create().unwrap();
            let dir = hygiene::temp_dir().unwrap();
            let counter_file = dir.join("counter");
            std::fs::write(&counter_file, 0u64.to_le_bytes()).unwrap();
            let shm: Shared<AtomicU64> = Shared::create("lock-test", 0).unwrap();
            let args: Vec<IncrementArgs> = (0..PROCESSES)
                .map(|_| IncrementArgs {
                    lock: lock.address(),
                    counter_file: counter_file.clone(),
                    counter_shm: shm.name().to_string(),
                    times: INCREMENTS,
                })
                .collect();
            let owner_deaths: Vec<u32> = results(start_all("lock-test-increment", &args));
            assert_eq!(owner_deaths, vec![0; PROCESSES], "{flavor:?}");
            let file_total = u64::from_le_bytes(
                std::fs::read(&counter_file).unwrap()[..8]
                    .try_into()
                    .unwrap(),
            );
            let expected = PROCESSES as u64 * INCREMENTS;
            assert_eq!(file_total, expected, "{flavor:?}: file counter");
            assert_eq!(
                shm.load(Ordering::SeqCst),
                expected,
                "{flavor:?}: shm counter"
            );
            hygiene::remove_temp(&dir);
        }
    });
}

#[derive(Serialize, Deserialize)]
struct HoldArgs {
    lock: LockAddress,
    holding: String,
}

/// Takes the lock, says so, and stays in its critical section until killed.
fn hold_until_killed(args: HoldArgs) -> Result<(), String> {
    let lock = args.lock.open().map_err(|e| e.to_string())?;
    let _guard = lock.lock(ACQUIRE).map_err(|e| e.to_string())?;
    Event::open(&args.holding).map_err(|e| e.to_string())?.set();
    std::thread::sleep(Duration::from_secs(60));
    Err("was not killed".into())
}
register_entry!("lock-test-hold", hold_until_killed);

/// Starts a holder of `lock`, waits until it holds it, SIGKILLs it inside its critical
/// section and reaps it.
fn kill_holder_inside(lock: &dyn Lock, method: StartMethod) {
    let holding = Event::create().unwrap();
    let mut holder = process::start(
        "lock-test-hold",
        &HoldArgs {
            lock: lock.address(),
            holding: holding.name().to_string(),
        },
        Options::new("holder").method(method),
    )
    .unwrap();
    assert!(
        holding.wait(Duration::from_secs(30)),
        "holder never got the lock"
    );
    holder.kill().unwrap();
    assert_eq!(
        holder.join(Some(Duration::from_secs(10))).unwrap(),
        Some(-9)
    );
}

#[test]
fn a_holder_killed_inside_its_critical_section_is_reported_to_the_next_acquirer() {
    leak_checked(|| {
        for flavor in LockFlavor::SAFE {
            for method in StartMethod::ALL {
                let lock = flavor.create().unwrap();
                kill_holder_inside(lock.as_ref(), method);
                let started = Instant::now();
                let guard = lock
                    .lock(Duration::from_secs(10))
                    .unwrap_or_else(|e| panic!("{flavor:?}/{method:?}: {e}"));
                assert!(
                    guard.owner_died(),
                    "{flavor:?}/{method:?}: death not reported"
                );
                assert!(started.elapsed() < Duration::from_secs(10));
                guard.release().unwrap();
                // Consistent again: the next holder is told nothing.
                assert_eq!(
                    lock.acquire(ACQUIRE).unwrap(),
                    Acquired::Clean,
                    "{flavor:?}"
                );
                lock.release().unwrap();
            }
        }
    });
}

/// The test subject shows the hazard the others avoid: its waiters wait out their whole
/// bound (Python's Lock would wait forever).
#[test]
fn the_plain_mutex_leaves_a_waiter_blocked_when_its_holder_dies() {
    leak_checked(|| {
        let lock = LockFlavor::Plain.create().unwrap();
        kill_holder_inside(lock.as_ref(), StartMethod::Fork);
        assert!(matches!(
            lock.acquire(Duration::from_millis(300)),
            Err(LockError::Timeout { .. })
        ));
        assert_eq!(lock.try_acquire().unwrap(), None);
    });
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Intruder {
    release_refused: bool,
    got_it_while_held: bool,
}

fn intrude(address: LockAddress) -> Result<Intruder, String> {
    let lock = RLock::open(&address).map_err(|e| e.to_string())?;
    let release_refused = matches!(lock.release(), Err(LockError::NotHeld { .. }));
    let got_it_while_held = lock.try_acquire().map_err(|e| e.to_string())?.is_some();
    Ok(Intruder {
        release_refused,
        got_it_while_held,
    })
}
register_entry!("lock-test-intrude", intrude);

#[test]
fn rlock_nests_refuses_an_extra_release_and_cannot_be_released_by_another_process() {
    leak_checked(|| {
        for flavor in LockFlavor::SAFE {
            let lock = RLock::new(flavor.create().unwrap());
            for depth in 1..=3 {
                assert_eq!(lock.acquire(ACQUIRE).unwrap(), Acquired::Clean);
                assert_eq!(lock.depth(), depth);
            }
            let intruder: Intruder =
                results(start_all("lock-test-intrude", &[lock.address()])).remove(0);
            assert_eq!(
                intruder,
                Intruder {
                    release_refused: true,
                    got_it_while_held: false
                },
                "{flavor:?}"
            );
            for _ in 0..3 {
                lock.release().unwrap();
            }
            assert!(
                matches!(lock.release(), Err(LockError::NotHeld { .. })),
                "{flavor:?}: extra release"
            );
            // Really released: another process gets it now.
            let intruder: Intruder =
                results(start_all("lock-test-intrude", &[lock.address()])).remove(0);
            assert!(
                intruder.got_it_while_held,
                "{flavor:?}: still held after release"
            );
        }
    });
}

#[test]
fn an_explicit_guard_release_reports_what_drop_would_swallow() {
    leak_checked(|| {
        for flavor in LockFlavor::SAFE {
            let lock = flavor.create().unwrap();
            let guard = lock.lock(ACQUIRE).unwrap();
            // Released behind the guard's back: the guard's own release now fails, and
            // says so, where a drop could only ignore it.
            lock.release().unwrap();
            assert!(guard.release().is_err(), "{flavor:?}");
        }
    });
}

#[test]
fn a_lock_address_names_its_kind_and_where_it_lives() {
    let shown = |a: LockAddress| a.to_string();
    assert_eq!(shown(LockAddress::Flock("/t/a".into())), "flock:/t/a");
    assert_eq!(shown(LockAddress::Fcntl("/t/b".into())), "fcntl:/t/b");
    assert_eq!(
        shown(LockAddress::Robust("ipcbench-x".into())),
        "robust-mutex:/dev/shm/ipcbench-x"
    );
    assert_eq!(
        shown(LockAddress::Plain("ipcbench-y".into())),
        "plain-mutex:/dev/shm/ipcbench-y"
    );
}

#[test]
fn an_rlock_belongs_to_the_thread_that_took_it() {
    // The robust flavor only: flock and fcntl locks belong to the open file, which every
    // thread of a process shares, so they cannot tell two threads apart (see RLock).
    leak_checked(|| {
        let lock = RLock::new(LockFlavor::Robust.create().unwrap());
        lock.acquire(ACQUIRE).unwrap();
        let other_thread_got_it = std::thread::scope(|s| {
            s.spawn(|| lock.try_acquire().unwrap().is_some())
                .join()
                .unwrap()
        });
        assert!(
            !other_thread_got_it,
            "re-entered by a thread that does not hold it"
        );
        assert_eq!(lock.depth(), 1);
        lock.release().unwrap();
    });
}

/// Takes a robust mutex on this thread, then drops the handle on another thread (it is
/// `Send`, as the `Lock` trait requires), and then locks a second robust mutex here.
/// glibc links every robust mutex a thread holds into that thread's robust list, writing
/// into the list's current head when it links the next one: had the drop unmapped the
/// first mutex's segment while this thread still held it, that write would land in
/// unmapped memory (SIGSEGV) or in whatever was mapped there since.
fn drop_a_held_robust_mutex_on_another_thread(_: ()) -> Result<String, String> {
    use ipcbench::ipc::lock::robust::RobustMutex;
    let other = RobustMutex::create().map_err(|e| e.to_string())?;
    let held = RobustMutex::create().map_err(|e| e.to_string())?;
    held.acquire(ACQUIRE).map_err(|e| e.to_string())?;
    let name = held.name().to_string();
    std::thread::spawn(move || drop(held))
        .join()
        .map_err(|_| "the dropping thread panicked".to_string())?;
    other.acquire(ACQUIRE).map_err(|e| e.to_string())?;
    other.release().map_err(|e| e.to_string())?;
    // The creator's drop still removes the name, wherever it ran.
    if hygiene::shm_names().contains(&name) {
        return Err(format!("{name} left in /dev/shm"));
    }
    Ok("the robust list survived".into())
}
register_entry!(
    "lock-test-drop-held-robust-elsewhere",
    drop_a_held_robust_mutex_on_another_thread
);

/// Item 10c: a robust mutex held by one thread and dropped on another must not be
/// unmapped under the holder's robust list (undefined behaviour from safe code).
#[test]
fn a_held_robust_mutex_dropped_on_another_thread_leaves_the_holder_sound() {
    leak_checked(|| {
        // Spawned, not forked: the child starts threads of its own.
        let outcome: String = process::run(
            "lock-test-drop-held-robust-elsewhere",
            &(),
            Options::new("drop-elsewhere").method(StartMethod::Spawn),
            Duration::from_secs(60),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(outcome, "the robust list survived");
    });
}

/// A robust mutex's handle unmaps its segment on drop unless a *live* thread holds the
/// mutex through it: not after the holder thread exited (the kernel walked its robust
/// list at its exit, so nothing points into the mapping), nor after the holder released
/// it, wherever the drop runs; dropped by its holder, it releases the mutex first.
#[test]
fn a_robust_mutex_handle_is_unmapped_on_drop_unless_a_live_thread_holds_it() {
    use ipcbench::ipc::lock::robust::RobustMutex;
    let mapped = |name: &str| {
        std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .contains(name)
    };
    leak_checked(|| {
        // Taken by a thread that then exits holding it, dropped here.
        let mutex = RobustMutex::create().unwrap();
        let name = mutex.name().to_string();
        std::thread::scope(|s| {
            s.spawn(|| mutex.acquire(ACQUIRE).unwrap()).join().unwrap();
        });
        drop(mutex);
        assert!(!mapped(&name), "{name}: holder exited, still mapped");
        // Taken and released here, dropped on another thread.
        let mutex = RobustMutex::create().unwrap();
        let name = mutex.name().to_string();
        mutex.acquire(ACQUIRE).unwrap();
        mutex.release().unwrap();
        std::thread::spawn(move || drop(mutex)).join().unwrap();
        assert!(!mapped(&name), "{name}: released, still mapped");
        // Held here and dropped here: the drop releases it, then unmaps.
        let mutex = RobustMutex::create().unwrap();
        let name = mutex.name().to_string();
        let other = RobustMutex::open(&name).unwrap();
        mutex.acquire(ACQUIRE).unwrap();
        drop(mutex);
        assert_eq!(
            other.try_acquire().unwrap(),
            Some(Acquired::Clean),
            "{name}: dropped by its holder, still held"
        );
        other.release().unwrap();
        drop(other);
        assert!(
            !mapped(&name),
            "{name}: dropped by its holder, still mapped"
        );
    });
}

/// Exit codes of the leader-exited child: the verdict travels as its exit status, since
/// the thread that would return the entry's result is gone.
const UNMAPPED: i32 = 0;
const STILL_MAPPED: i32 = 3;
const LEADER_NEVER_EXITED: i32 = 4;

/// The main thread takes a robust mutex and exits alone (SYS_exit, not exit_group): the
/// kernel walks its robust list, and it stays in /proc/self/task as a zombie while the
/// other thread runs. That thread then drops the handle: nothing can point into the
/// mapping any more, so it must be unmapped.
fn drop_after_the_holding_leader_exited(_: ()) -> Result<(), String> {
    use ipcbench::ipc::lock::robust::RobustMutex;
    let mutex = RobustMutex::create().map_err(|e| e.to_string())?;
    mutex.acquire(ACQUIRE).map_err(|e| e.to_string())?;
    let leader = std::process::id();
    std::thread::spawn(move || {
        let zombie = || {
            std::fs::read_to_string(format!("/proc/self/task/{leader}/stat"))
                .ok()
                .and_then(|stat| stat.rsplit(") ").next().map(|rest| rest.starts_with('Z')))
                .unwrap_or(false)
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !zombie() {
            if Instant::now() > deadline {
                std::process::exit(LEADER_NEVER_EXITED);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let name = mutex.name().to_string();
        drop(mutex);
        // thread-self: the exited leader has no mm, so /proc/self/maps reads empty.
        let maps = std::fs::read_to_string("/proc/thread-self/maps").unwrap_or_default();
        std::process::exit(if maps.contains(&name) {
            STILL_MAPPED
        } else {
            UNMAPPED
        });
    });
    // SAFETY: ends only this thread, without unwinding: nothing on its stack is used
    // again (the other thread owns the mutex), and that thread ends the process.
    unsafe { libc::syscall(libc::SYS_exit, 0) };
    unreachable!("SYS_exit returned")
}
register_entry!(
    "lock-test-drop-after-leader-exit",
    drop_after_the_holding_leader_exited
);

/// The flake CI saw (`holder exited, still mapped`), made deterministic: a holder that
/// has exited but still has a /proc/self/task entry was taken for a live one.
#[test]
fn a_robust_mutex_held_by_an_exited_thread_still_listed_in_proc_is_unmapped() {
    leak_checked(|| {
        let mut child = process::start(
            "lock-test-drop-after-leader-exit",
            &(),
            Options::new("leader-exits").method(StartMethod::Spawn),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let code = child
            .join(Some(Duration::from_secs(60)))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            code,
            Some(UNMAPPED),
            "exit {code:?}: {STILL_MAPPED} = kept the mapping for an exited holder, \
             {LEADER_NEVER_EXITED} = the leader never became a zombie"
        );
    });
}

/// A name opened as the other kind of mutex is refused: a plain opener of a robust mutex
/// would lose owner-death reports, a robust opener of a plain one would expect them.
#[test]
fn a_mutex_opened_as_the_other_kind_is_refused() {
    leak_checked(|| {
        let robust = LockFlavor::Robust.create().unwrap();
        let plain = LockFlavor::Plain.create().unwrap();
        let (LockAddress::Robust(robust_name), LockAddress::Plain(plain_name)) =
            (robust.address(), plain.address())
        else {
            panic!("addresses of the wrong kind");
        };
        for (wrong, kind) in [
            (LockAddress::Plain(robust_name.clone()), "plain"),
            (LockAddress::Robust(plain_name.clone()), "robust"),
        ] {
            let message = match wrong.open() {
                Err(LockError::Open { message, .. }) => message,
                Err(e) => panic!("{wrong}: {e}"),
                Ok(_) => panic!("{wrong} opened as the wrong kind"),
            };
            assert_eq!(message, format!("it is not a {kind} mutex"));
        }
        // The right kind still opens.
        assert!(LockAddress::Robust(robust_name).open().is_ok());
        assert!(LockAddress::Plain(plain_name).open().is_ok());
        // A handle's name is its segment's: what another process opens it by.
        let mutex = ipcbench::ipc::lock::robust::RobustMutex::create().unwrap();
        assert_eq!(LockAddress::Robust(mutex.name().into()), mutex.address());
        assert!(hygiene::shm_names().contains(mutex.name()));
    });
}

/// Acquires (with the long bound) and releases; what it was told.
fn acquire_and_release(address: LockAddress) -> Result<Acquired, String> {
    let lock = address.open().map_err(|e| e.to_string())?;
    let acquired = lock.acquire(ACQUIRE).map_err(|e| e.to_string())?;
    lock.release().map_err(|e| e.to_string())?;
    Ok(acquired)
}
register_entry!("lock-test-acquire-and-release", acquire_and_release);

/// Outside a forced schedule a waiter for a held mutex sleeps in the kernel (the futex
/// behind pthread_mutex_timedlock) instead of spinning on try-lock until its deadline,
/// and takes the mutex once it is released.
#[test]
fn a_waiter_for_a_held_pthread_mutex_sleeps_in_the_kernel() {
    leak_checked(|| {
        for flavor in [LockFlavor::Robust, LockFlavor::Plain] {
            let lock = flavor.create().unwrap();
            lock.acquire(ACQUIRE).unwrap();
            let mut waiter = start_all("lock-test-acquire-and-release", &[lock.address()]);
            let asleep = ipcbench::process::watchdog::await_wchan(
                waiter[0].pid().as_raw(),
                "futex",
                Instant::now() + ACQUIRE,
            );
            lock.release().unwrap();
            let acquired: Vec<Acquired> = results(std::mem::take(&mut waiter));
            asleep.unwrap_or_else(|e| panic!("{flavor:?}: the waiter never slept: {e}"));
            assert_eq!(acquired, vec![Acquired::Clean], "{flavor:?}");
        }
    });
}
