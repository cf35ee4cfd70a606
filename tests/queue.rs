//! Queue tests: the conformance suite (`ipcbench::conformance::queue`, one test per
//! check) and the tests of particular flavors and harnesses. Each is written once over the
//! `Queue` trait, runs on every flavor across real processes, and proves it left nothing
//! behind.

mod support;

use ipcbench::conformance::{
    self,
    queue::{pattern, CHECKS},
};
use ipcbench::ipc::pipe::{pipe, Connection, ConnectionHandle, PipeKind};
use ipcbench::ipc::queue::joinable::JoinableHandle;
use ipcbench::ipc::queue::shm::ShmQueue;
use ipcbench::ipc::queue::{
    self, Config, Flavor, JoinableQueue, Queue, QueueError, QueueHandle, Role,
};
use ipcbench::process::{self, hygiene, Options, ProcessError, StartMethod};
use ipcbench::programs::queue::{self as program, producer_consumer, Plan, RunError};
use ipcbench::register_entry;
use ipcbench::scenario::{queue_end_signal, Verdict};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(30);

/// What this run left behind since `before` (the snapshot is scoped to this run's names,
/// so other suites running on the machine do not count).
fn leaks_since(before: &hygiene::Snapshot) -> Vec<hygiene::Leak> {
    before.leaks_since()
}

/// Runs `body` for every flavor, then checks that nothing leaked.
fn for_each_flavor(body: impl Fn(Flavor)) {
    let _serial = support::serial();
    for flavor in Flavor::all() {
        let before = hygiene::Snapshot::take();
        body(flavor);
        let leaks = leaks_since(&before);
        assert!(leaks.is_empty(), "{flavor:?} left behind: {leaks:?}");
    }
}

fn start(
    entry: &str,
    args: &impl Serialize,
    handle: &QueueHandle,
    method: StartMethod,
) -> process::Child {
    let options = handle.inherit(Options::new(entry).method(method));
    process::start(entry, args, options).unwrap()
}

// The conformance suite (`ipcbench::conformance::queue`), one test per check, each on
// every flavor. `every_check_has_a_test` keeps the list whole.
macro_rules! conformance_tests {
    ($($test:ident => $check:literal,)*) => {
        $(
            #[test]
            fn $test() {
                let check = conformance::find(CHECKS, $check).expect("a check of that name");
                for_each_flavor(|flavor| {
                    if let Err(e) = (check.run)(flavor) {
                        panic!("{flavor:?}: {}: {}", check.name, e.chain());
                    }
                });
            }
        )*

        #[test]
        fn every_check_has_a_test() {
            let tested: BTreeSet<&str> = [$($check),*].into_iter().collect();
            let all: BTreeSet<&str> = CHECKS.iter().map(|c| c.name).collect();
            assert_eq!(tested, all);
        }
    };
}

conformance_tests! {
    payloads_from_0_bytes_to_1_mib_arrive_whole_and_in_order => "fifo-payloads",
    four_producers_to_four_consumers_deliver_exactly_once_in_each_producers_order => "exactly-once",
    get_into_replaces_what_the_buffer_held_and_leaves_it_empty_on_a_timeout => "get-into",
    a_get_on_an_empty_queue_times_out_as_empty_or_stalled => "empty-get-times-out",
    maxsize_makes_put_nowait_and_timed_puts_full => "full-put-refused",
    a_message_over_max_message_is_too_large_and_the_queue_still_works => "too-large",
    closed_handles_refuse_and_single_consumer_flavors_say_so => "closed",
    one_sentinel_per_consumer_ends_them_all_and_a_missing_one_is_caught_as_hung => "sentinels",
    a_consumer_killed_while_waiting_does_not_wedge_the_queue => "killed-consumer",
    a_consumer_waiting_on_a_killed_producer_returns_within_its_timeout => "killed-producer",
}

/// Test hooks for the joinable plan ([`Plan::consumer_entry`]): the real consumer's
/// body, then a defect in what it reports.
fn consumer_failing_at_the_end(handle: JoinableHandle) -> Result<Vec<(u32, u32)>, QueueError> {
    program::consumer(handle)?;
    Err(QueueError::Other(
        "injected: failed after its last item".into(),
    ))
}
register_entry!("queue-test-consumer-failing", consumer_failing_at_the_end);

/// Loses the last item it took (reports it not received).
fn consumer_losing_one(handle: JoinableHandle) -> Result<Vec<(u32, u32)>, QueueError> {
    let mut received = program::consumer(handle)?;
    received.pop();
    Ok(received)
}
register_entry!("queue-test-consumer-losing", consumer_losing_one);

/// Reports the first item it took twice.
fn consumer_duplicating_one(handle: JoinableHandle) -> Result<Vec<(u32, u32)>, QueueError> {
    let mut received = program::consumer(handle)?;
    if let Some(&first) = received.first() {
        received.push(first);
    }
    Ok(received)
}
register_entry!("queue-test-consumer-duplicating", consumer_duplicating_one);

/// A joinable plan as `queue-end-signal/joinable` runs it (with its sentinels put before
/// `join`, or none), its consumers running `entry`.
fn joinable_plans(flavor: Flavor, entry: &str) -> Vec<Plan> {
    let consumers = if flavor.multi_consumer() { 2 } else { 1 };
    [consumers, 0]
        .into_iter()
        .map(|sentinels| {
            let mut plan = Plan::new(2, consumers, 20);
            plan.method = StartMethod::Fork;
            plan.joinable = true;
            plan.sentinels = sentinels;
            plan.consumer_entry = entry.to_string();
            plan
        })
        .collect()
}

/// Issue 16 item 8: a joinable run used to drop a consumer's error (its result was
/// `unwrap_or_default`ed to "received nothing") and return `Ok`.
#[test]
fn a_joinable_consumer_that_fails_makes_the_run_fail() {
    for_each_flavor(|flavor| {
        for plan in joinable_plans(flavor, "queue-test-consumer-failing") {
            match producer_consumer(flavor, &Config::default(), &plan) {
                Err(RunError::Process(ProcessError::Failed { name, message, .. })) => {
                    assert!(name.starts_with("consumer-"), "{flavor:?}: {name}");
                    assert!(message.contains("injected"), "{flavor:?}: {message}");
                }
                other => panic!(
                    "{flavor:?}, {} sentinels: the consumer's error was not the run's: {other:?}",
                    plan.sentinels
                ),
            }
        }
    });
}

/// Issue 16 item 8: `queue-end-signal/joinable` held whenever `join` returned, whatever
/// the consumers received; it must check exactly-once delivery as the other variants do.
#[test]
fn a_joinable_run_that_loses_or_duplicates_an_item_is_violated() {
    for_each_flavor(|flavor| {
        for (entry, holds) in [
            (program::CONSUMER_ENTRY, true),
            ("queue-test-consumer-losing", false),
            ("queue-test-consumer-duplicating", false),
        ] {
            for plan in joinable_plans(flavor, entry) {
                let outcome = producer_consumer(flavor, &Config::default(), &plan).unwrap();
                assert_eq!(outcome.joined, Some(true), "{flavor:?} {entry}");
                let verdict = queue_end_signal::verdict(&plan, &outcome);
                let what = format!(
                    "{flavor:?} {entry}, {} sentinels: {verdict:?}",
                    plan.sentinels
                );
                if holds {
                    assert_eq!(verdict, Verdict::Holds, "{what}");
                } else {
                    assert!(
                        matches!(&verdict, Verdict::Violated { invariant, .. } if invariant.contains("exactly once")),
                        "{what}"
                    );
                }
            }
        }
    });
}

/// Takes one item a moment after starting, then marks it done.
fn take_one_later(handle: JoinableHandle) -> Result<(), QueueError> {
    let queue = JoinableQueue::open(handle)?;
    std::thread::sleep(Duration::from_millis(50));
    queue.get(Some(LONG))?;
    queue.task_done()
}
register_entry!("queue-test-take-one-later", take_one_later);

#[test]
fn joinable_join_waits_for_another_process_to_mark_the_item_done() {
    for_each_flavor(|flavor| {
        let queue = JoinableQueue::new(flavor.create(&Config::default()).unwrap()).unwrap();
        let handle = queue.handle(Role::Consumer).unwrap();
        queue.put(b"work", None).unwrap();
        let options = handle.inherit(Options::new("take-one-later").method(StartMethod::Fork));
        let mut child = process::start("queue-test-take-one-later", &handle, options).unwrap();
        assert!(
            queue.join(LONG),
            "{flavor:?}: join gave up before the item was done"
        );
        child.result::<()>(Some(LONG)).unwrap();
    });
}

#[test]
fn joinable_join_returns_once_every_item_is_done_and_extra_task_done_is_an_error() {
    for_each_flavor(|flavor| {
        let consumers = if flavor.multi_consumer() { 2 } else { 1 };
        let mut plan = Plan::new(2, consumers, 100);
        plan.method = StartMethod::Fork;
        plan.sentinels = 0;
        plan.joinable = true;
        let outcome = producer_consumer(flavor, &Config::default(), &plan).unwrap();
        assert_eq!(outcome.joined, Some(true), "{flavor:?}");

        let queue = JoinableQueue::new(flavor.create(&Config::default()).unwrap()).unwrap();
        queue.put(b"one", None).unwrap();
        assert_eq!(queue.unfinished(), 1);
        assert!(
            !queue.join(Duration::from_millis(20)),
            "join before task_done"
        );
        assert_eq!(queue.get(None).unwrap(), b"one");
        assert_eq!(queue.unfinished(), 1, "taken, not yet done");
        queue.task_done().unwrap();
        assert_eq!(queue.unfinished(), 0);
        assert!(queue.join(Duration::from_millis(20)));
        assert!(matches!(
            queue.task_done(),
            Err(QueueError::TooManyTaskDone)
        ));
    });
}

/// (queue, put rather than get, claimed rather than only reserved)
fn abandon_midway(args: (QueueHandle, bool, bool)) -> Result<bool, QueueError> {
    let queue = ShmQueue::open(args.0)?;
    Ok(queue.abandon_midway_for_test(args.1, args.2))
}
register_entry!("queue-test-shm-abandon", abandon_midway);

#[test]
fn shm_ring_moves_past_a_producer_or_consumer_that_died_mid_message() {
    let _serial = support::serial();
    let before = hygiene::Snapshot::take();
    {
        let queue = Flavor::Shm.create(&Config::default().maxsize(2)).unwrap();
        let handle = queue.handle(Role::Both).unwrap();
        // A producer dies between claiming a slot and publishing it.
        let pid = {
            let mut child = start(
                "queue-test-shm-abandon",
                &(handle.clone(), true, true),
                &handle,
                StartMethod::Fork,
            );
            assert!(child.result::<bool>(Some(LONG)).unwrap());
            child.pid().as_raw()
        };
        queue.put(b"behind", None).unwrap();
        match queue.get(Some(Duration::from_secs(5))) {
            Err(QueueError::PeerDied {
                pid: dead,
                op: "put",
            }) => assert_eq!(dead, pid),
            other => panic!("expected the lost message to be reported, got {other:?}"),
        }
        assert_eq!(queue.get(Some(Duration::from_secs(5))).unwrap(), b"behind");
        // A consumer dies between claiming a message and releasing its slot: the queue
        // is full of it and one more; a producer must get room back.
        queue.put(b"taken", None).unwrap();
        queue.put(b"kept", None).unwrap();
        let mut child = start(
            "queue-test-shm-abandon",
            &(handle.clone(), false, true),
            &handle,
            StartMethod::Fork,
        );
        assert!(child.result::<bool>(Some(LONG)).unwrap());
        queue.put(b"room", Some(Duration::from_secs(5))).unwrap();
        assert_eq!(queue.get(None).unwrap(), b"kept");
        assert_eq!(queue.get(None).unwrap(), b"room");
    }
    let leaks = leaks_since(&before);
    assert!(leaks.is_empty(), "left behind: {leaks:?}");
}

/// Runs the abandon helper in a child that then exits, as one SIGKILLed there would.
fn abandon_in_child(handle: &QueueHandle, put: bool, claimed: bool) {
    let mut child = start(
        "queue-test-shm-abandon",
        &(handle.clone(), put, claimed),
        handle,
        StartMethod::Fork,
    );
    assert!(child.result::<bool>(Some(LONG)).unwrap());
}

#[test]
fn shm_ring_takes_the_shared_memory_its_geometry_needs() {
    let _serial = support::serial();
    // 4 slots of 1 MiB: the segment is 4 MiB and a little, not a multiple of that.
    let queue = ShmQueue::create(&Config::default().maxsize(4).max_message(1 << 20)).unwrap();
    let ring = queue.shm_name().unwrap();
    let bytes = std::fs::metadata(format!("/dev/shm/{ring}")).unwrap().len();
    assert!(
        (4 << 20..(4 << 20) + (64 << 10)).contains(&bytes),
        "{bytes} bytes of /dev/shm for 4 MiB of slots"
    );
}

#[test]
fn shm_ring_drops_a_reservation_whose_holder_died_before_claiming() {
    // The window that used to wedge the ring: a process killed after taking a slot but
    // before the position was its own. Nothing was claimed, so nothing may be lost.
    let _serial = support::serial();
    let before = hygiene::Snapshot::take();
    {
        let queue = ShmQueue::create(&Config::default().maxsize(2)).unwrap();
        let handle = queue.handle(Role::Both).unwrap();
        abandon_in_child(&handle, true, false);
        queue.put(b"first", Some(Duration::from_secs(5))).unwrap();
        queue.put(b"second", Some(Duration::from_secs(5))).unwrap();
        abandon_in_child(&handle, false, false);
        assert_eq!(queue.get(Some(Duration::from_secs(5))).unwrap(), b"first");
        assert_eq!(queue.get(Some(Duration::from_secs(5))).unwrap(), b"second");
        assert_eq!(queue.lost(), 0);
        // A nowait call recovers a slot a dead process reserved too (before it gives
        // up), so a caller that never blocks is not told Empty forever.
        queue.put(b"third", None).unwrap();
        abandon_in_child(&handle, false, false);
        assert_eq!(queue.get_nowait().unwrap(), b"third");
    }
    let leaks = leaks_since(&before);
    assert!(leaks.is_empty(), "left behind: {leaks:?}");
}

// ---- proptest: random operations from two processes against a model queue ----

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Op {
    Put { len: usize },
    PutNowait { len: usize },
    PutTimeout { len: usize },
    Get,
    GetNowait,
    GetTimeout,
    Qsize,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Reply {
    Done,
    Message(Vec<u8>),
    Full,
    Empty,
    NotConsumer,
    Size(usize),
    Failed(String),
}

const MODEL_MAXSIZE: usize = 3;
const SHORT: Duration = Duration::from_millis(5);

fn apply(queue: &dyn Queue, op: Op, seed: u32) -> Reply {
    let outcome = match op {
        Op::Put { len } => queue
            .put(&pattern(seed, len), Some(SHORT))
            .map(|_| Reply::Done),
        Op::PutNowait { len } => queue.put_nowait(&pattern(seed, len)).map(|_| Reply::Done),
        Op::PutTimeout { len } => queue
            .put(&pattern(seed, len), Some(Duration::from_millis(1)))
            .map(|_| Reply::Done),
        Op::Get => queue.get(Some(SHORT)).map(Reply::Message),
        Op::GetNowait => queue.get_nowait().map(Reply::Message),
        Op::GetTimeout => queue
            .get(Some(Duration::from_millis(1)))
            .map(Reply::Message),
        Op::Qsize => Ok(Reply::Size(queue.qsize())),
    };
    match outcome {
        Ok(reply) => reply,
        Err(QueueError::Full) => Reply::Full,
        Err(QueueError::Empty) => Reply::Empty,
        Err(QueueError::NotConsumer { .. }) => Reply::NotConsumer,
        Err(e) => Reply::Failed(e.to_string()),
    }
}

#[derive(Serialize, Deserialize)]
struct ServeArgs {
    queue: QueueHandle,
    control: ConnectionHandle,
}

/// The second process: runs each operation it is sent and replies with the outcome.
fn serve_ops(args: ServeArgs) -> Result<(), String> {
    let queue = queue::open(args.queue).map_err(|e| e.to_string())?;
    let control = Connection::adopt(args.control).map_err(|e| e.to_string())?;
    loop {
        match control.recv::<Option<(Op, u32)>>() {
            Ok(Some((op, seed))) => control
                .send(&apply(&*queue, op, seed))
                .map_err(|e| e.to_string())?,
            Ok(None) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        }
    }
}
register_entry!("queue-test-serve-ops", serve_ops);

/// What the model says `op` gives, given who can get.
fn expect(model: &mut VecDeque<Vec<u8>>, op: Op, seed: u32, can_get: bool) -> Reply {
    match op {
        Op::Put { len } | Op::PutNowait { len } | Op::PutTimeout { len } => {
            if model.len() >= MODEL_MAXSIZE {
                Reply::Full
            } else {
                model.push_back(pattern(seed, len));
                Reply::Done
            }
        }
        Op::Get | Op::GetNowait | Op::GetTimeout if !can_get => Reply::NotConsumer,
        Op::Get | Op::GetNowait | Op::GetTimeout => {
            model.pop_front().map_or(Reply::Empty, Reply::Message)
        }
        Op::Qsize => Reply::Size(model.len()),
    }
}

fn op_strategy() -> impl Strategy<Value = (bool, Op)> {
    let len = 0usize..300;
    let op = prop_oneof![
        len.clone().prop_map(|len| Op::Put { len }),
        len.clone().prop_map(|len| Op::PutNowait { len }),
        len.prop_map(|len| Op::PutTimeout { len }),
        Just(Op::Get),
        Just(Op::GetNowait),
        Just(Op::GetTimeout),
        Just(Op::Qsize),
    ];
    (any::<bool>(), op)
}

#[test]
fn random_operations_from_two_processes_match_a_model_queue() {
    for_each_flavor(|flavor| {
        let mut runner = TestRunner::new(ProptestConfig {
            cases: 24,
            failure_persistence: None,
            ..ProptestConfig::default()
        });
        let result = runner.run(&prop::collection::vec(op_strategy(), 1..40), |ops| {
            let case_start = hygiene::Snapshot::take();
            run_case(flavor, &ops)?;
            let leaks = leaks_since(&case_start);
            prop_assert!(leaks.is_empty(), "left behind: {:?}", leaks);
            Ok(())
        });
        if let Err(e) = result {
            panic!("{flavor:?}: {e}");
        }
    });
}

fn run_case(flavor: Flavor, ops: &[(bool, Op)]) -> Result<(), TestCaseError> {
    {
        let config = Config::default().maxsize(MODEL_MAXSIZE);
        let queue = flavor.create(&config).unwrap();
        // The child may get; on a single-consumer flavor the receiver moves to it.
        let handle = queue.handle(Role::Both).unwrap();
        let (control, child_end) = pipe(PipeKind::Duplex).unwrap();
        let child_handle = child_end.handle().unwrap();
        let options = handle
            .inherit(Options::new("ops").method(StartMethod::Fork))
            .inherit_fd(child_handle.fd);
        let mut child = process::start(
            "queue-test-serve-ops",
            &ServeArgs {
                queue: handle,
                control: child_handle,
            },
            options,
        )
        .unwrap();
        drop(child_end);
        let mut model = VecDeque::new();
        for (i, &(in_child, op)) in ops.iter().enumerate() {
            let seed = i as u32;
            let got = if in_child {
                control.send(&Some((op, seed))).unwrap();
                control.recv::<Reply>().unwrap()
            } else {
                apply(&*queue, op, seed)
            };
            let can_get = in_child || queue.can_get();
            let want = expect(&mut model, op, seed, can_get);
            prop_assert_eq!(
                got,
                want,
                "op {} {:?} in {}",
                i,
                op,
                if in_child { "child" } else { "parent" }
            );
        }
        control.send(&None::<(Op, u32)>).unwrap();
        child.result::<()>(Some(LONG)).unwrap();
        Ok(())
    }
}

#[test]
fn bench_workloads_run_on_every_flavor_and_clean_up() {
    use ipcbench::measure::workloads::queue as workload;
    use ipcbench::report::model::Placement;
    for_each_flavor(|flavor| {
        let trips = workload::round_trip(flavor, 64, Placement::Unpinned, 50);
        assert_eq!(trips.samples_ns.len(), 50);
        for size in [64, 1 << 20] {
            for (producers, consumers) in [(1, 1), (4, 4)] {
                let took = workload::throughput(flavor, size, producers, consumers, 40);
                assert!(took > Duration::ZERO && took < LONG, "{flavor:?} {size}");
            }
        }
    });
}

#[test]
fn producer_consumer_refuses_several_consumers_on_a_single_consumer_flavor() {
    let _serial = support::serial();
    let plan = Plan::new(1, 2, 1);
    assert!(matches!(
        producer_consumer(Flavor::Channel, &Config::default(), &plan),
        Err(RunError::Unsupported { consumers: 2, .. })
    ));
}
