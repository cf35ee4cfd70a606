//! Schedule points (the `schedule-points` feature, on in every `cargo test` build): two
//! real processes interleaved *inside* one operation in the order a schedule says, and
//! the payoff — the pipe queue without its read lock caught by a forced schedule that
//! cuts one consumer's get between a frame's header and its payload, while the locked
//! queue and the shm ring hold on the same schedule.

mod support;

use ipcbench::ipc::sync::semaphore::Semaphore;
use ipcbench::process::hygiene::Snapshot;
use ipcbench::process::{self, Options, StartMethod};
use ipcbench::register_entry;
use ipcbench::scenario::{self, run_case, Case, Schedule, Verdict};
use ipcbench::schedule::{self, Mode, Turnstile, TurnstileHandle};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use support::serial;

/// What a worker does to the semaphore in its one step.
#[derive(Clone, Copy, Serialize, Deserialize)]
enum SemaphoreOp {
    TryAcquire,
    /// A waiting acquire (bounded at 20 s).
    Acquire,
    Release,
}

#[derive(Serialize, Deserialize)]
struct AcquirerArgs {
    worker: usize,
    semaphore: String,
    turnstile: TurnstileHandle,
    op: SemaphoreOp,
}

/// One forced step: `op` on the semaphore, with its points installed; whether it
/// succeeded.
fn acquire_once(args: AcquirerArgs) -> Result<bool, String> {
    let me = args.worker;
    let adopted = Turnstile::adopt(args.turnstile, me).map_err(|e| e.to_string())?;
    let ts = schedule::install(adopted, me);
    let semaphore = Semaphore::open(&args.semaphore).map_err(|e| e.to_string())?;
    let got = match args.op {
        SemaphoreOp::TryAcquire => ts.try_step(me, "acquire", || semaphore.try_acquire()),
        SemaphoreOp::Acquire => ts.try_step(me, "acquire", || {
            semaphore.acquire(Duration::from_secs(20)).is_ok()
        }),
        SemaphoreOp::Release => ts.try_step(me, "release", || semaphore.release().is_ok()),
    }
    .map_err(|e| e.to_string())?;
    ts.finish(me).map_err(|e| e.to_string())?;
    Ok(got)
}
register_entry!("schedule-points-test-acquire-once", acquire_once);

/// Two processes each try to take the one permit of a semaphore, under `choices`; returns
/// what each got and the history.
fn race_for_one_permit(choices: &[u8]) -> (Vec<bool>, Vec<(usize, String, i64)>) {
    let semaphore = Semaphore::create(1).unwrap();
    semaphore_steps(&semaphore, [SemaphoreOp::TryAcquire; 2], choices)
}

/// Worker i does `ops[i]` on `semaphore` in one forced step each, under `choices`; returns
/// what each got and the history.
fn semaphore_steps(
    semaphore: &Semaphore,
    ops: [SemaphoreOp; 2],
    choices: &[u8],
) -> (Vec<bool>, Vec<(usize, String, i64)>) {
    let turnstile = Turnstile::create(2, &Schedule::new(choices.to_vec()), Mode::Forced).unwrap();
    let mut children: Vec<_> = (0..2)
        .map(|worker| {
            let args = AcquirerArgs {
                worker,
                semaphore: semaphore.name().to_string(),
                turnstile: turnstile.handle(),
                op: ops[worker],
            };
            let options = Options::new(format!("acquirer {worker}"))
                .method(StartMethod::Spawn)
                .inherit_fd(turnstile.handle().fd);
            process::start("schedule-points-test-acquire-once", &args, options).unwrap()
        })
        .collect();
    let got = children
        .iter_mut()
        .map(|c| c.result::<bool>(Some(Duration::from_secs(20))).unwrap())
        .collect();
    let history = turnstile
        .history()
        .into_iter()
        .map(|e| (e.worker, e.operation, e.value))
        .collect();
    (got, history)
}

fn op(worker: usize, operation: &str, value: i64) -> (usize, String, i64) {
    (worker, operation.to_string(), value)
}

/// The semaphore's check-then-take window, entered by two processes: worker 0 sees the
/// count of 1 and stops at its point; worker 1 sees the same count and stops at its own;
/// worker 0 takes the permit; worker 1's take then fails, and it finds none left.
#[test]
fn two_processes_interleave_inside_one_acquire_in_the_order_the_schedule_says() {
    let _serial = serial();
    let before = Snapshot::take();
    let count_seen = |w| op(w, "semaphore/acquire:count-seen", 0);
    for (choices, expected) in [
        (
            &[0u8, 1, 0, 1][..],
            vec![
                count_seen(0),
                count_seen(1),
                op(0, "acquire", 1),
                op(1, "acquire", 0),
            ],
        ),
        // Without a switch inside the acquire, worker 1 never sees a permit at all.
        (
            &[][..],
            vec![count_seen(0), op(0, "acquire", 1), op(1, "acquire", 0)],
        ),
    ] {
        let (got, history) = race_for_one_permit(choices);
        assert_eq!(got, vec![true, false], "{choices:?}");
        assert_eq!(history, expected, "{choices:?}");
    }
    let leaks = before.leaks_since();
    assert!(leaks.is_empty(), "left behind: {leaks:?}");
}

/// A forced acquire that finds no permit passes the turn at its wait point instead of
/// sleeping in the kernel, and once the turn is back (the other worker released) it
/// re-checks within its deadline and takes the permit.
#[test]
fn a_forced_acquire_with_no_permit_passes_the_turn_and_takes_the_released_one() {
    let _serial = serial();
    let before = Snapshot::take();
    let semaphore = Semaphore::with_bound(0, 1).unwrap();
    let (got, history) = semaphore_steps(
        &semaphore,
        [SemaphoreOp::Acquire, SemaphoreOp::Release],
        &[],
    );
    assert_eq!(got, vec![true, true], "{history:?}");
    assert_eq!(
        history,
        vec![
            op(0, "semaphore/acquire:wait", 0),
            op(1, "semaphore/release:count-seen", 0),
            op(1, "release", 1),
            op(0, "semaphore/acquire:count-seen", 0),
            op(0, "acquire", 1),
        ]
    );
    assert_eq!(semaphore.value(), 0);
    drop(semaphore);
    let leaks = before.leaks_since();
    assert!(leaks.is_empty(), "left behind: {leaks:?}");
}

/// What `check --seed 1` shrinks the search to: one producer puts two items (steps 0-4);
/// consumer 0 (worker 1) takes the first whole and has seen data for the second (5-8);
/// consumer 2 (worker 3) gets the turn and reads the second frame's header (9, 10); then
/// consumer 0 reads on, taking that frame's payload for its own header.
fn split_get_case() -> Case {
    Case {
        params: serde_json::json!({
            "producers": 1, "consumers": 3, "items_per_producer": 2, "payload": 8
        }),
        schedule: Schedule::new(vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 3, 0]),
    }
}

/// The payoff: a race that free-running traffic shows only with megabytes in flight is
/// caught by one forced case of two 8-byte items, named by the point it happens at, and
/// the same case holds for the locked pipe queue and the shm ring. (Before schedule
/// points this scenario ran such a case free, and it held: two small frames never race.)
#[test]
fn the_unlocked_pipe_queue_is_torn_inside_one_get_and_the_safe_queues_hold_on_the_same_schedule() {
    let _serial = serial();
    let before = Snapshot::take();
    let many = scenario::find("queue-many-consumers").unwrap();
    assert!(
        many.reproducible(),
        "deep cases are forced, hence reproducible"
    );
    let case = split_get_case();
    let outcome = run_case(many, "no-read-lock", &case).unwrap();
    let Verdict::Violated { evidence, .. } = &outcome.verdict else {
        panic!("no-read-lock should be violated: {}", outcome.verdict);
    };
    assert!(
        evidence.contains("worker 1 queue-pipe/get:after-header")
            && evidence.contains("worker 3 queue-pipe/get:after-header"),
        "the evidence names the window: {evidence}"
    );
    // Consumer 0 waited for the rest of a frame whose bytes went to consumer 2.
    assert!(evidence.contains("corrupt"), "{evidence}");
    // Forced, so the rerun takes the same steps to the same verdict.
    let steps = |o: &scenario::CaseOutcome| -> Vec<(usize, String)> {
        o.history
            .iter()
            .map(|e| (e.worker, e.operation.clone()))
            .take(16)
            .collect()
    };
    let again = run_case(many, "no-read-lock", &case).unwrap();
    assert_eq!(again.verdict.label(), "violated", "{}", again.verdict);
    assert_eq!(steps(&again), steps(&outcome));
    for safe in ["read-lock", "shm-ring"] {
        let held = run_case(many, safe, &case).unwrap();
        assert_eq!(held.verdict, Verdict::Holds, "{safe}");
        assert!(
            held.history.iter().any(|e| e.operation.contains(':')),
            "{safe}: the points were reached: {:?}",
            held.history
        );
    }
    let leaks = before.leaks_since();
    assert!(leaks.is_empty(), "left behind: {leaks:?}");
}

/// One switch later than [`split_get_case`]: consumer 2 stops after reading the second
/// frame's header (holding the read lock where there is one), and consumer 0 goes on.
/// Unlocked, consumer 0 reads the payload as a header; locked, it finds the lock busy
/// and passes the turn until consumer 2 is done; the ring's slots are claimed whole.
#[test]
fn a_get_stopped_after_its_header_tears_the_unlocked_queue_and_blocks_a_locked_reader() {
    let _serial = serial();
    let many = scenario::find("queue-many-consumers").unwrap();
    let mut case = split_get_case();
    case.schedule = Schedule::new(vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 3, 1]);
    let labels = |variant: &str| {
        let outcome = run_case(many, variant, &case).unwrap();
        let labels: Vec<(usize, String)> = outcome
            .history
            .iter()
            .map(|e| (e.worker, e.operation.clone()))
            .collect();
        (outcome.verdict, labels)
    };
    let (verdict, _) = labels("no-read-lock");
    assert_eq!(verdict.label(), "violated", "{verdict}");
    let (verdict, history) = labels("read-lock");
    assert_eq!(verdict, Verdict::Holds);
    assert!(
        history.contains(&(1, "queue-lock/lock:busy".to_string())),
        "consumer 0 should find the read lock held: {history:?}"
    );
    let (verdict, history) = labels("shm-ring");
    assert_eq!(verdict, Verdict::Holds);
    for point in ["queue-shm/claim:reserved", "queue-shm/put:before-publish"] {
        assert!(
            history.iter().any(|(_, op)| op == point),
            "{point} in {history:?}"
        );
    }
}

/// The binary the CLI tests start (`CARGO_BIN_EXE_ipcbench`) has the points too: its
/// search catches the unlocked queue in a handful of cases, shrunk to a schedule whose
/// evidence names the point.
#[test]
fn the_ipcbench_binary_finds_the_torn_get_in_a_few_cases() {
    let _serial = serial();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ipcbench"))
        .args([
            "check",
            "--scenario",
            "queue-many-consumers",
            "--variant",
            "no-read-lock",
            "--cases",
            "16",
            "--seed",
            "1",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("queue-pipe/get:after-header"), "{text}");
}
