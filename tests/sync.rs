//! Semaphore, Event and Barrier across real processes that open them by name.

mod support;

use ipcbench::ipc::futex;
use ipcbench::ipc::shm::Shared;
use ipcbench::ipc::sync::{Barrier, Event, Semaphore, SyncError};
use ipcbench::process::{self, Options, StartMethod};
use ipcbench::register_entry;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use support::{leak_checked, results, start_all};

const LONG: Duration = Duration::from_secs(30);

#[derive(Serialize, Deserialize)]
struct RoomArgs {
    semaphore: String,
    /// [inside now, most ever inside]
    room: String,
    visits: u32,
}

/// The seed's four-bed room: enter (acquire), count heads, stay a moment, leave.
fn visit_room(args: RoomArgs) -> Result<u32, String> {
    let semaphore = Semaphore::open(&args.semaphore).map_err(|e| e.to_string())?;
    let room: Shared<[AtomicU32; 2]> = Shared::open(&args.room).map_err(|e| e.to_string())?;
    for _ in 0..args.visits {
        semaphore.acquire(LONG).map_err(|e| e.to_string())?;
        let inside = room[0].fetch_add(1, Ordering::SeqCst) + 1;
        room[1].fetch_max(inside, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(2));
        room[0].fetch_sub(1, Ordering::SeqCst);
        semaphore.release().map_err(|e| e.to_string())?;
    }
    Ok(args.visits)
}
register_entry!("sync-test-room", visit_room);

fn crowd_the_room(semaphore: &Semaphore) -> u32 {
    let room: Shared<[AtomicU32; 2]> = Shared::create("sync-test", 0).unwrap();
    let args: Vec<RoomArgs> = (0..10)
        .map(|_| RoomArgs {
            semaphore: semaphore.name().to_string(),
            room: room.name().to_string(),
            visits: 5,
        })
        .collect();
    let visits: Vec<u32> = results(start_all("sync-test-room", &args));
    assert_eq!(visits, vec![5; 10], "every process got in every time");
    assert_eq!(room[0].load(Ordering::SeqCst), 0);
    room[1].load(Ordering::SeqCst)
}

#[test]
fn semaphore_of_four_never_lets_a_fifth_in_and_everyone_gets_in() {
    leak_checked(|| {
        let semaphore = Semaphore::create(4).unwrap();
        let most = crowd_the_room(&semaphore);
        assert!((1..=4).contains(&most), "{most} inside at once");
        assert_eq!(semaphore.value(), 4);
    });
}

#[test]
fn bounded_semaphore_refuses_a_release_past_its_bound_and_times_out() {
    leak_checked(|| {
        let semaphore = Semaphore::create(1).unwrap();
        assert!(matches!(
            semaphore.release(),
            Err(SyncError::ReleasedTooMany { bound: 1, .. })
        ));
        semaphore.acquire(LONG).unwrap();
        let other = Semaphore::open(semaphore.name()).unwrap();
        assert!(!other.try_acquire());
        assert!(matches!(
            other.acquire(Duration::from_millis(50)),
            Err(SyncError::Timeout { .. })
        ));
        other.release().unwrap();
        assert_eq!(semaphore.value(), 1);
        assert!(Semaphore::create(5).is_ok() && Semaphore::with_bound(3, 2).is_err());
        // The bound is a futex word: i32::MAX is the largest allowed.
        let largest = i32::MAX as u32;
        assert!(Semaphore::with_bound(0, largest).is_ok());
        assert!(Semaphore::with_bound(0, largest + 1).is_err());
    });
}

/// The test subject over-counts, so the same crowd overfills the room (the
/// semaphore-capacity scenario relies on this being caught).
#[test]
fn miscounted_semaphore_overfills() {
    leak_checked(|| {
        let semaphore = Semaphore::miscounted(1).unwrap();
        semaphore.acquire(LONG).unwrap();
        semaphore.release().unwrap();
        assert_eq!(semaphore.value(), 2, "one release gave back two permits");
    });
}

#[derive(Serialize, Deserialize)]
struct WaitArgs {
    event: String,
    timeout_ms: u64,
}

fn wait_for_event(args: WaitArgs) -> Result<bool, String> {
    let event = Event::open(&args.event).map_err(|e| e.to_string())?;
    Ok(event.wait(Duration::from_millis(args.timeout_ms)))
}
register_entry!("sync-test-wait", wait_for_event);

#[test]
fn one_set_wakes_every_waiter_and_an_unset_wait_times_out() {
    leak_checked(|| {
        let event = Event::create().unwrap();
        let unset: bool = results(start_all(
            "sync-test-wait",
            &[WaitArgs {
                event: event.name().to_string(),
                timeout_ms: 100,
            }],
        ))
        .remove(0);
        assert!(!unset, "wait returned true with the event unset");
        let waiters = start_all(
            "sync-test-wait",
            &(0..4)
                .map(|_| WaitArgs {
                    event: event.name().to_string(),
                    // Far past the children's join bound: a waiter must be woken by the
                    // set, not let out by its timeout (which also returns true).
                    timeout_ms: 3_600_000,
                })
                .collect::<Vec<_>>(),
        );
        std::thread::sleep(Duration::from_millis(100));
        event.set();
        assert!(event.is_set());
        assert_eq!(results::<bool>(waiters), vec![true; 4]);
        event.clear();
        assert!(!event.is_set());
    });
}

#[derive(Serialize, Deserialize)]
struct PartyArgs {
    barrier: String,
    /// Arrivals counted before waiting.
    arrived: String,
}

#[derive(Serialize, Deserialize, Debug)]
struct Passed {
    arrived_when_passing: u32,
}

fn party(args: PartyArgs) -> Result<Passed, String> {
    let barrier = Barrier::open(&args.barrier).map_err(|e| e.to_string())?;
    let arrived: Shared<AtomicU32> = Shared::open(&args.arrived).map_err(|e| e.to_string())?;
    arrived.fetch_add(1, Ordering::SeqCst);
    barrier.wait(LONG).map_err(|e| e.to_string())?;
    Ok(Passed {
        arrived_when_passing: arrived.load(Ordering::SeqCst),
    })
}
register_entry!("sync-test-party", party);

fn sleeping_party(barrier: String) -> Result<(), String> {
    let _barrier = Barrier::open(&barrier).map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_secs(60));
    Ok(())
}
register_entry!("sync-test-sleeping-party", sleeping_party);

#[test]
fn barrier_parties_pass_together() {
    leak_checked(|| {
        let barrier = Barrier::create(4).unwrap();
        let arrived: Shared<AtomicU32> = Shared::create("sync-test", 0).unwrap();
        let args: Vec<PartyArgs> = (0..4)
            .map(|_| PartyArgs {
                barrier: barrier.name().to_string(),
                arrived: arrived.name().to_string(),
            })
            .collect();
        for passed in results::<Passed>(start_all("sync-test-party", &args)) {
            assert_eq!(
                passed.arrived_when_passing, 4,
                "passed before everyone arrived"
            );
        }
        assert!(!barrier.is_broken());
    });
}

#[test]
fn barrier_breaks_for_everyone_when_a_party_is_killed() {
    leak_checked(|| {
        let barrier = Barrier::create(4).unwrap();
        let arrived: Shared<AtomicU32> = Shared::create("sync-test", 0).unwrap();
        let mut victim = process::start(
            "sync-test-sleeping-party",
            &barrier.name().to_string(),
            Options::new("victim").method(StartMethod::Fork),
        )
        .unwrap();
        let args: Vec<PartyArgs> = (0..3)
            .map(|_| PartyArgs {
                barrier: barrier.name().to_string(),
                arrived: arrived.name().to_string(),
            })
            .collect();
        let waiters = start_all("sync-test-party", &args);
        let deadline = std::time::Instant::now() + LONG;
        // The victim must have registered (on open) before it is killed, or nobody
        // could know a party died: wait for its pid among the parties, not only for
        // the three waiters.
        let victim_pid = victim.pid().as_raw() as u32;
        while barrier.n_waiting() < 3 || !barrier.registered_parties().contains(&victim_pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "parties never arrived"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        victim.kill().unwrap();
        victim.join(Some(LONG)).unwrap();
        for mut waiter in waiters {
            let err = waiter.result::<Passed>(Some(LONG)).unwrap_err().to_string();
            assert!(err.contains("broken") && err.contains("died"), "{err}");
        }
        assert!(barrier.is_broken());
    });
}

#[test]
fn barrier_breaks_on_timeout_and_abort() {
    leak_checked(|| {
        let barrier = Barrier::create(2).unwrap();
        assert!(matches!(
            barrier.wait(Duration::from_millis(50)),
            Err(SyncError::Timeout { .. })
        ));
        assert!(matches!(barrier.wait(LONG), Err(SyncError::Broken { .. })));
        let other = Barrier::create(3).unwrap();
        other.abort();
        let err = other.wait(LONG).unwrap_err().to_string();
        assert!(err.contains("aborted"), "{err}");
        assert!(Barrier::create(0).is_err());
    });
}

/// Regression: parties that pass a barrier and exit at once must not be taken for dead by
/// a party still waking up (found by the lock bench's crowds of forked contenders).
#[test]
fn crowds_that_pass_and_exit_at_once_never_break_the_barrier() {
    use ipcbench::ipc::lock::LockFlavor;
    use ipcbench::measure::workloads::lock::acquire_release;
    leak_checked(|| {
        for round in 0..50 {
            for processes in [2, 4] {
                acquire_release(LockFlavor::Robust, processes, round % 5);
            }
        }
    });
}

// ---- the futex wrapper under the three mechanisms, woken from another process ----

/// [0]: the word waited on; [1]: the parent says it is about to sleep.
type Words = Shared<[AtomicU32; 2]>;

/// Waits for the parent to announce its sleep, then changes word 0 to each value in
/// turn (20 ms apart, so the parent is asleep again each time) and wakes it.
fn futex_waker(args: (String, Vec<u32>)) -> Result<(), String> {
    let words: Words = Shared::open(&args.0).map_err(|e| e.to_string())?;
    let until = Instant::now() + LONG;
    while words[1].load(Ordering::SeqCst) == 0 {
        if futex::wait(&words[1], 0, Some(until)) == futex::Wake::TimedOut {
            return Err("the parent never got ready".into());
        }
    }
    for value in args.1 {
        std::thread::sleep(Duration::from_millis(20));
        words[0].store(value, Ordering::SeqCst);
        futex::wake_all(&words[0]);
    }
    Ok(())
}
register_entry!("sync-test-futex-waker", futex_waker);

fn start_waker(words: &Words, values: Vec<u32>) -> process::Child {
    words[1].store(1, Ordering::SeqCst);
    futex::wake_all(&words[1]);
    process::start(
        "sync-test-futex-waker",
        &(words.name().to_string(), values),
        Options::new("futex-waker").method(StartMethod::Fork),
    )
    .unwrap()
}

#[test]
fn a_futex_wait_sleeps_until_another_process_wakes_it() {
    leak_checked(|| {
        let words: Words = Shared::create("sync-test", 0).unwrap();
        let waker = start_waker(&words, vec![1]);
        // A 30 s deadline: only a wake (or the word changing first) ends this wait early.
        let woke = futex::wait(&words[0], 0, Some(Instant::now() + LONG));
        assert_ne!(woke, futex::Wake::TimedOut, "returned before its deadline");
        assert_eq!(words[0].load(Ordering::SeqCst), 1);
        results::<()>(vec![waker]);
    });
}

#[test]
fn spin_then_wait_sleeps_through_changes_until_the_condition_holds() {
    leak_checked(|| {
        let words: Words = Shared::create("sync-test", 0).unwrap();
        // Woken once with the condition still false (1), then with it true (2).
        let waker = start_waker(&words, vec![1, 2]);
        let outcome = futex::spin_then_wait(&words[0], Some(Instant::now() + LONG), 10, || {
            let now = words[0].load(Ordering::SeqCst);
            (now != 2).then_some(now)
        });
        assert_eq!(outcome, futex::Wake::Woken);
        results::<()>(vec![waker]);
    });
}

fn spin_until_deadline(millis: u64) -> Result<String, String> {
    let word = AtomicU32::new(0);
    let deadline = Instant::now() + Duration::from_millis(millis);
    let outcome = futex::spin_then_wait(&word, Some(deadline), 10, || Some(0));
    Ok(format!("{outcome:?}"))
}
register_entry!("sync-test-spin-until-deadline", spin_until_deadline);

#[test]
fn spin_then_wait_gives_up_at_its_deadline() {
    leak_checked(|| {
        // In a child, so that a wait that never ends fails this test instead of hanging it.
        let child = process::start(
            "sync-test-spin-until-deadline",
            &30u64,
            Options::new("spin-until-deadline").method(StartMethod::Fork),
        )
        .unwrap();
        assert_eq!(results::<String>(vec![child]), vec!["TimedOut".to_string()]);
    });
}

// ---- a waiter SIGKILLed while asleep ----

/// Waits (bounded) until `child` sleeps in a futex wait: wchan is only reported for a
/// task off the CPU, so this means it is queued on the futex.
fn asleep_in_futex(child: &process::Child) {
    ipcbench::process::watchdog::await_wchan(child.pid().as_raw(), "futex", Instant::now() + LONG)
        .unwrap();
}

fn acquire_within_an_hour(name: String) -> Result<(), String> {
    let semaphore = Semaphore::open(&name).map_err(|e| e.to_string())?;
    semaphore
        .acquire(Duration::from_secs(3600))
        .map_err(|e| e.to_string())
}
register_entry!("sync-test-acquire-within-an-hour", acquire_within_an_hour);

/// A waiter SIGKILLed in acquire took nothing and holds up nobody: the one release that
/// follows reaches a live waiter (bounded at an hour, so only a wake lets it out within
/// the join bound), and the count stays exact.
#[test]
fn a_semaphore_waiter_killed_while_asleep_leaks_no_permit_and_strands_nobody() {
    leak_checked(|| {
        let semaphore = Semaphore::with_bound(0, 1).unwrap();
        let name = semaphore.name().to_string();
        let mut waiters = start_all("sync-test-acquire-within-an-hour", &[&name, &name]);
        for waiter in &waiters {
            asleep_in_futex(waiter);
        }
        let mut victim = waiters.remove(0);
        victim.kill().unwrap();
        assert_eq!(victim.join(Some(LONG)).unwrap(), Some(-9));
        assert_eq!(semaphore.value(), 0, "the killed waiter took nothing");
        semaphore.release().unwrap();
        results::<()>(waiters);
        assert_eq!(semaphore.value(), 0, "the live waiter took the one permit");
        semaphore.release().unwrap();
        assert!(
            matches!(semaphore.release(), Err(SyncError::ReleasedTooMany { .. })),
            "no permit appeared or vanished"
        );
    });
}

#[test]
fn an_event_waiter_killed_while_asleep_does_not_hold_up_the_others() {
    leak_checked(|| {
        let event = Event::create().unwrap();
        let args: Vec<WaitArgs> = (0..3)
            .map(|_| WaitArgs {
                event: event.name().to_string(),
                timeout_ms: 3_600_000,
            })
            .collect();
        let mut waiters = start_all("sync-test-wait", &args);
        for waiter in &waiters {
            asleep_in_futex(waiter);
        }
        let mut victim = waiters.remove(1);
        victim.kill().unwrap();
        assert_eq!(victim.join(Some(LONG)).unwrap(), Some(-9));
        event.set();
        assert_eq!(results::<bool>(waiters), vec![true; 2]);
    });
}
