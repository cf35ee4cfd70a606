//! The queue conformance suite: what every [`Flavor`] must do, across real processes.
//! `tests/queue.rs` runs each check on `Flavor::all()`; `ipcbench conform` runs them on
//! the flavors linked into its binary (a plug-in flavor's crate included).

use super::{ensure, Check, ConformanceError};
use crate::ipc::queue::{self, Config, Flavor, QueueError, QueueHandle, Role};
use crate::process::{self, Child, Options, StartMethod};
use crate::programs::queue::{producer_consumer, Plan, RunError};
use crate::register_entry;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Bound on a child's whole job, or a get that must succeed.
const LONG: Duration = Duration::from_secs(30);
/// How late a timed call may return, past its timeout, before it counts as a hang (wide:
/// the machine may be loaded; a hang is minutes, not this).
const LATE: Duration = Duration::from_secs(5);

/// Every queue check, in the order `ipcbench conform` runs them.
pub const CHECKS: &[Check<Flavor>] = &[
    Check {
        name: "fifo-payloads",
        about: "one producer process to one consumer process: payloads of 0 B to the maximum (up to 1 MiB) arrive whole and in order, with either start method",
        run: fifo_payloads,
    },
    Check {
        name: "exactly-once",
        about: "4 producer processes to 4 consumer processes (1 on a single-consumer flavor): every item exactly once, each producer's order kept",
        run: exactly_once,
    },
    Check {
        name: "get-into",
        about: "get_into replaces what the buffer held, and leaves it empty on a timeout",
        run: get_into,
    },
    Check {
        name: "empty-get-times-out",
        about: "a get with a timeout on an empty queue is Empty within a bound; without one, Stalled after the block limit",
        run: empty_get_times_out,
    },
    Check {
        name: "full-put-refused",
        about: "maxsize 3, filled by another process: put_nowait and a timed put are Full; qsize, full and empty agree",
        run: full_put_refused,
    },
    Check {
        name: "too-large",
        about: "a message over max_message is TooLarge, and the queue still works",
        run: too_large,
    },
    Check {
        name: "closed",
        about: "after close every call is Closed; a single-consumer flavor refuses a second consumer",
        run: closed,
    },
    Check {
        name: "sentinels",
        about: "one sentinel per consumer ends them all; a missing one is reported as a hang naming the consumer",
        run: sentinels,
    },
    Check {
        name: "killed-consumer",
        about: "a consumer SIGKILLed while blocked in get does not wedge the queue",
        run: killed_consumer,
    },
    Check {
        name: "killed-producer",
        about: "a consumer blocked in get while the only producer is SIGKILLed returns within its timeout",
        run: killed_producer,
    },
];

/// Deterministic, seed-dependent bytes, so a message that arrives garbled or swapped
/// cannot compare equal.
pub fn pattern(seed: u32, len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

fn start(
    entry: &str,
    args: &impl Serialize,
    handle: &QueueHandle,
    method: StartMethod,
) -> Result<Child, ConformanceError> {
    let options = handle.inherit(Options::new(entry).method(method));
    process::start(entry, args, options)
        .map_err(|e| ConformanceError::at(format!("start {entry}"), e))
}

#[derive(Serialize, Deserialize)]
struct PatternArgs {
    queue: QueueHandle,
    sizes: Vec<usize>,
}

fn put_patterns(args: PatternArgs) -> Result<usize, QueueError> {
    let queue = queue::open(args.queue)?;
    for (i, &len) in args.sizes.iter().enumerate() {
        queue.put(&pattern(i as u32, len), None)?;
    }
    Ok(args.sizes.len())
}
register_entry!("conform-queue-put-patterns", put_patterns);

/// Gets `sizes.len()` messages and checks each is the pattern of its place in the order.
fn get_patterns(args: PatternArgs) -> Result<usize, ConformanceError> {
    let queue = queue::open(args.queue)?;
    for (i, &len) in args.sizes.iter().enumerate() {
        let got = queue
            .get(Some(LONG))
            .map_err(|e| ConformanceError::at(format!("get {i}"), e))?;
        ensure!(
            got.len() == len,
            "message {i}: {} bytes, sent {len}",
            got.len()
        );
        ensure!(
            got == pattern(i as u32, len),
            "message {i} ({len} bytes) garbled or out of order"
        );
    }
    Ok(args.sizes.len())
}
register_entry!("conform-queue-get-patterns", get_patterns);

fn fifo_payloads(flavor: Flavor) -> Result<(), ConformanceError> {
    for method in StartMethod::ALL {
        let config = Config::default().maxsize(3).max_message(1 << 20);
        let queue = flavor
            .create(&config)
            .map_err(|e| ConformanceError::at("create", e))?;
        let max = queue.max_message();
        let sizes: Vec<usize> = [0, 1, 4095, 4096, 4097, 64 << 10, 1 << 20]
            .into_iter()
            .filter(|&len| len <= max)
            .collect();
        let handle = |role| {
            queue
                .handle(role)
                .map_err(|e| ConformanceError::at("handle", e))
        };
        let (consumer, producer) = (handle(Role::Consumer)?, handle(Role::Producer)?);
        let args = |queue| PatternArgs {
            queue,
            sizes: sizes.clone(),
        };
        // The consumer first, so the producer's puts meet a reader.
        let mut children = Vec::new();
        for (entry, handle) in [
            ("conform-queue-get-patterns", consumer),
            ("conform-queue-put-patterns", producer),
        ] {
            children.push(start(entry, &args(handle.clone()), &handle, method)?);
        }
        // The producer first: when it fails, its error says more than a waiting consumer.
        for child in children.iter_mut().rev() {
            let name = child.name().to_string();
            let moved = child
                .result::<usize>(Some(LONG))
                .map_err(|e| ConformanceError::at(format!("{method:?}"), e))?;
            ensure!(
                moved == sizes.len(),
                "{method:?}: {name} moved {moved} of {} messages",
                sizes.len()
            );
        }
    }
    Ok(())
}

fn exactly_once(flavor: Flavor) -> Result<(), ConformanceError> {
    let (producers, items) = (4, 10_000);
    let consumers = if flavor.multi_consumer() { 4 } else { 1 };
    let plan = Plan::new(producers, consumers, items);
    let outcome = producer_consumer(flavor, &Config::default().maxsize(256), &plan)?;
    let mut seen = BTreeSet::new();
    for (c, received) in outcome.received.iter().enumerate() {
        let mut last = vec![None::<u32>; producers];
        for &(producer, seq) in received {
            ensure!(
                seen.insert((producer, seq)),
                "({producer}, {seq}) delivered twice"
            );
            let previous = last[producer as usize].replace(seq);
            ensure!(
                previous < Some(seq),
                "consumer {c} got producer {producer}'s {seq} after {previous:?}"
            );
        }
    }
    let sent = producers * items as usize;
    ensure!(seen.len() == sent, "{} of {sent} items arrived", seen.len());
    Ok(())
}

fn get_into(flavor: Flavor) -> Result<(), ConformanceError> {
    let queue = flavor
        .create(&Config::default())
        .map_err(|e| ConformanceError::at("create", e))?;
    let mut buf = b"stale bytes from before".to_vec();
    for message in [pattern(1, 3000), pattern(2, 5), Vec::new(), pattern(3, 64)] {
        queue
            .put(&message, None)
            .map_err(|e| ConformanceError::at("put", e))?;
        queue
            .get_into(&mut buf, Some(LONG))
            .map_err(|e| ConformanceError::at("get_into", e))?;
        ensure!(
            buf == message,
            "get_into gave {} bytes for a {}-byte message",
            buf.len(),
            message.len()
        );
    }
    buf.extend_from_slice(b"stale");
    let timeout = queue.get_into(&mut buf, Some(Duration::from_millis(20)));
    ensure!(
        matches!(timeout, Err(QueueError::Empty)),
        "get_into on an empty queue: {timeout:?}"
    );
    ensure!(
        buf.is_empty(),
        "{} bytes left in the buffer after a timeout",
        buf.len()
    );
    Ok(())
}

/// Runs `call`, which must give up after about `timeout`: its result, or an error when it
/// took more than [`LATE`] longer.
fn bounded<T>(
    what: &str,
    timeout: Duration,
    call: impl FnOnce() -> T,
) -> Result<T, ConformanceError> {
    let start = Instant::now();
    let result = call();
    let took = start.elapsed();
    ensure!(
        took <= timeout + LATE,
        "{what} took {took:?} with a timeout of {timeout:?}"
    );
    Ok(result)
}

fn empty_get_times_out(flavor: Flavor) -> Result<(), ConformanceError> {
    let limit = Duration::from_millis(200);
    let queue = flavor
        .create(&Config::default().block_limit(limit))
        .map_err(|e| ConformanceError::at("create", e))?;
    let nowait = bounded("get_nowait", Duration::ZERO, || queue.get_nowait())?;
    ensure!(
        matches!(nowait, Err(QueueError::Empty)),
        "get_nowait on an empty queue: {nowait:?}"
    );
    let timeout = Duration::from_millis(50);
    let timed = bounded("get(50 ms)", timeout, || queue.get(Some(timeout)))?;
    ensure!(
        matches!(timed, Err(QueueError::Empty)),
        "get(50 ms) on an empty queue: {timed:?}"
    );
    // No timeout: bounded by the block limit, and said so.
    let unbounded = bounded("get(None)", limit, || queue.get(None))?;
    ensure!(
        matches!(unbounded, Err(QueueError::Stalled { op: "get", .. })),
        "get(None) on an empty queue past the block limit: {unbounded:?}"
    );
    ensure!(
        queue.empty() && queue.qsize() == 0,
        "empty queue: qsize {}",
        queue.qsize()
    );
    Ok(())
}

/// Fills the queue with nowait puts, then tries a timed put on the full queue:
/// (accepted, then refused as Full, timed put Full).
fn fill(queue: QueueHandle) -> Result<(usize, bool, bool), QueueError> {
    let queue = queue::open(queue)?;
    let mut n = 0;
    let refused = loop {
        match queue.put_nowait(&pattern(n as u32, 10)) {
            Ok(()) => n += 1,
            Err(QueueError::Full) => break true,
            Err(e) => return Err(e),
        }
        if n > 1000 {
            break false;
        }
    };
    let timed_out = matches!(
        queue.put(b"late", Some(Duration::from_millis(50))),
        Err(QueueError::Full)
    );
    Ok((n, refused, timed_out))
}
register_entry!("conform-queue-fill", fill);

fn full_put_refused(flavor: Flavor) -> Result<(), ConformanceError> {
    let config = Config::default()
        .maxsize(3)
        .block_limit(Duration::from_millis(200));
    let queue = flavor
        .create(&config)
        .map_err(|e| ConformanceError::at("create", e))?;
    ensure!(
        queue.maxsize() == 3,
        "maxsize {} for a queue made with 3",
        queue.maxsize()
    );
    ensure!(
        queue.empty() && !queue.full(),
        "a new queue is not empty, or is full"
    );
    let handle = queue
        .handle(Role::Producer)
        .map_err(|e| ConformanceError::at("handle", e))?;
    let mut child = start("conform-queue-fill", &handle, &handle, StartMethod::Fork)?;
    let filled = child
        .result::<(usize, bool, bool)>(Some(LONG))
        .map_err(|e| ConformanceError::at("filler", e))?;
    ensure!(
        filled == (3, true, true),
        "(accepted, then Full, then timed put Full) = {filled:?}, not (3, true, true)"
    );
    ensure!(
        queue.qsize() == 3 && queue.full() && !queue.empty(),
        "full queue: qsize {}, full {}",
        queue.qsize(),
        queue.full()
    );
    let more = queue.put_nowait(b"x");
    ensure!(
        matches!(more, Err(QueueError::Full)),
        "put_nowait on a full queue: {more:?}"
    );
    for n in 0..3 {
        let got = queue
            .get_nowait()
            .map_err(|e| ConformanceError::at(format!("get_nowait {n}"), e))?;
        ensure!(got == pattern(n, 10), "message {n} garbled or out of order");
    }
    ensure!(
        matches!(queue.get_nowait(), Err(QueueError::Empty)),
        "a drained queue is not Empty"
    );
    ensure!(queue.empty(), "a drained queue: qsize {}", queue.qsize());
    Ok(())
}

fn too_large(flavor: Flavor) -> Result<(), ConformanceError> {
    let queue = flavor
        .create(&Config::default().max_message(4096))
        .map_err(|e| ConformanceError::at("create", e))?;
    let max = queue.max_message();
    ensure!(max == 4096, "max_message {max} for a queue made with 4096");
    let refused = queue.put_nowait(&vec![7; max + 1]);
    ensure!(
        matches!(refused, Err(QueueError::TooLarge { len, max: m }) if len == max + 1 && m == max),
        "a message of max_message + 1 bytes: {refused:?}"
    );
    queue
        .put_nowait(&pattern(9, max))
        .map_err(|e| ConformanceError::at("then a message of max_message bytes", e))?;
    let got = queue
        .get(Some(LONG))
        .map_err(|e| ConformanceError::at("get after TooLarge", e))?;
    ensure!(
        got == pattern(9, max),
        "the message after a refused one arrived garbled"
    );
    ensure!(
        queue.empty(),
        "the refused message was counted: qsize {}",
        queue.qsize()
    );
    Ok(())
}

fn closed(flavor: Flavor) -> Result<(), ConformanceError> {
    let mut queue = flavor
        .create(&Config::default())
        .map_err(|e| ConformanceError::at("create", e))?;
    ensure!(
        queue.multi_consumer() == flavor.multi_consumer(),
        "the queue and its flavor disagree on multi_consumer"
    );
    if !queue.multi_consumer() {
        let _first = queue
            .handle(Role::Consumer)
            .map_err(|e| ConformanceError::at("first consumer handle", e))?;
        ensure!(
            !queue.can_get(),
            "can_get after the receiver was handed out"
        );
        let get = queue.get_nowait();
        ensure!(
            matches!(get, Err(QueueError::NotConsumer { .. })),
            "get after the receiver moved: {get:?}"
        );
        let second = queue.handle(Role::Consumer);
        ensure!(
            matches!(second, Err(QueueError::SingleConsumer { .. })),
            "a second consumer handle: {second:?}"
        );
    }
    queue.close();
    let put = queue.put_nowait(b"x");
    ensure!(
        matches!(put, Err(QueueError::Closed)),
        "put after close: {put:?}"
    );
    let get = queue.get_nowait();
    ensure!(
        matches!(get, Err(QueueError::Closed)),
        "get after close: {get:?}"
    );
    let handle = queue.handle(Role::Producer);
    ensure!(
        matches!(handle, Err(QueueError::Closed)),
        "handle after close: {handle:?}"
    );
    Ok(())
}

fn sentinels(flavor: Flavor) -> Result<(), ConformanceError> {
    let consumers = if flavor.multi_consumer() { 3 } else { 1 };
    let mut plan = Plan::new(2, consumers, 200);
    plan.method = StartMethod::Fork;
    let outcome = producer_consumer(flavor, &Config::default(), &plan)?;
    let got: usize = outcome.received.iter().map(Vec::len).sum();
    ensure!(got == 400, "{got} of 400 items arrived");
    plan.sentinels = consumers - 1;
    plan.deadline = Duration::from_secs(2);
    match producer_consumer(flavor, &Config::default(), &plan) {
        Err(RunError::Hung(report)) => {
            ensure!(
                report.blocked.len() == 1,
                "one consumer must be left waiting: {report}"
            );
            ensure!(report.blocked[0].name.starts_with("consumer-"), "{report}");
            Ok(())
        }
        other => Err(ConformanceError::Broken(format!(
            "a missing sentinel was not caught: {other:?}"
        ))),
    }
}

fn get_one(queue: QueueHandle) -> Result<Vec<u8>, QueueError> {
    queue::open(queue)?.get(None)
}
register_entry!("conform-queue-get-one", get_one);

fn killed_consumer(flavor: Flavor) -> Result<(), ConformanceError> {
    let queue = flavor
        .create(&Config::default().maxsize(4))
        .map_err(|e| ConformanceError::at("create", e))?;
    // The channel flavor's receiver moves to the child; the others stay usable here.
    let handle = queue
        .handle(Role::Consumer)
        .map_err(|e| ConformanceError::at("handle", e))?;
    let mut child = start("conform-queue-get-one", &handle, &handle, StartMethod::Fork)?;
    std::thread::sleep(Duration::from_millis(100)); // let it block inside get
    child.kill().map_err(|e| ConformanceError::at("kill", e))?;
    let code = child
        .join(Some(LONG))
        .map_err(|e| ConformanceError::at("join", e))?;
    ensure!(
        code == Some(-9),
        "the consumer ended with {code:?}, not SIGKILL"
    );
    let put = queue.put(b"after", Some(Duration::from_secs(5)));
    if queue.can_get() {
        put.map_err(|e| ConformanceError::at("put after the kill", e))?;
        let got = queue
            .get(Some(Duration::from_secs(5)))
            .map_err(|e| ConformanceError::at("get after the kill", e))?;
        ensure!(
            got == b"after",
            "the message after the kill arrived garbled"
        );
    } else {
        // The only consumer is gone (channel flavor): an error at once, not a hang.
        ensure!(
            matches!(put, Err(QueueError::Disconnected)),
            "put with the only consumer dead: {put:?}"
        );
    }
    Ok(())
}

/// Puts one message, then waits to be killed (bounded, so it never outlives a failed check).
fn put_then_wait(queue: QueueHandle) -> Result<(), QueueError> {
    queue::open(queue)?.put(b"ready", None)?;
    std::thread::sleep(LONG);
    Ok(())
}
register_entry!("conform-queue-put-then-wait", put_then_wait);

/// Gets the producer's first message, then blocks in a timed get: how that ended.
fn get_then_wait(args: (QueueHandle, Duration)) -> Result<String, QueueError> {
    let queue = queue::open(args.0)?;
    queue.get(Some(LONG))?;
    Ok(match queue.get(Some(args.1)) {
        Ok(message) => format!("a message of {} bytes", message.len()),
        Err(e @ (QueueError::Empty | QueueError::Disconnected)) => format!("ok: {e}"),
        Err(e) => format!("error: {e}"),
    })
}
register_entry!("conform-queue-get-then-wait", get_then_wait);

fn killed_producer(flavor: Flavor) -> Result<(), ConformanceError> {
    let queue = flavor
        .create(&Config::default())
        .map_err(|e| ConformanceError::at("create", e))?;
    let (consumer, producer) = (
        queue
            .handle(Role::Consumer)
            .map_err(|e| ConformanceError::at("handle", e))?,
        queue
            .handle(Role::Producer)
            .map_err(|e| ConformanceError::at("handle", e))?,
    );
    let mut producer = start(
        "conform-queue-put-then-wait",
        &producer,
        &producer,
        StartMethod::Fork,
    )?;
    let until = Instant::now() + LONG;
    while queue.qsize() == 0 {
        ensure!(
            Instant::now() < until,
            "the producer's message was never counted (qsize 0)"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let timeout = Duration::from_secs(2);
    let mut waiter = start(
        "conform-queue-get-then-wait",
        &(consumer.clone(), timeout),
        &consumer,
        StartMethod::Fork,
    )?;
    std::thread::sleep(Duration::from_millis(100)); // let the consumer block in its second get
    producer
        .kill()
        .map_err(|e| ConformanceError::at("kill", e))?;
    let code = producer
        .join(Some(LONG))
        .map_err(|e| ConformanceError::at("join the producer", e))?;
    ensure!(
        code == Some(-9),
        "the producer ended with {code:?}, not SIGKILL"
    );
    let ended = waiter
        .result::<String>(Some(timeout + LATE))
        .map_err(|e| ConformanceError::at("the consumer did not return within its timeout", e))?;
    ensure!(
        ended.starts_with("ok: "),
        "the consumer's get ended with {ended}, not Empty or Disconnected"
    );
    Ok(())
}
