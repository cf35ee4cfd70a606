//! Queue workloads, one definition for every flavor: round trips through a child that
//! echoes from one queue into another, and N→M streams. Compare with the raw baselines
//! in [`super::pipe`] (raw pipe round trip, raw shared-memory ping-pong, memcpy), measured
//! in the same bench.

use super::pipe::{finish, CHILD_LIMIT};
use super::{cpus_for, pin, RoundTrips};
use crate::ipc::queue::{self, Config, Flavor, Queue, QueueHandle, Role};
use crate::measure::MeasureError;
use crate::process::{self as proc, Child, Options};
use crate::register_entry;
use crate::results::Placement;
use crate::sys::futex;
use crate::sys::shm::Shared;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The queue configuration the workloads use for `size`-byte messages: room for a few
/// large messages, or many small ones.
pub fn config_for(size: usize) -> Config {
    let maxsize = (8 << 20) / size.max(64);
    Config::default()
        .maxsize(maxsize.clamp(4, 256))
        .max_message(size.max(64))
}

fn start(
    entry: &str,
    args: &impl Serialize,
    handles: &[&QueueHandle],
    cpu: Option<usize>,
) -> Child {
    let options = handles
        .iter()
        .fold(Options::new(entry).cpu(cpu), |o, h| h.inherit(o));
    proc::start(entry, args, options).unwrap_or_else(|e| panic!("workload child {entry}: {e}"))
}

/// Gets from the first queue and puts into the second, until an empty message.
fn echo(handles: (QueueHandle, QueueHandle)) -> Result<(), MeasureError> {
    let requests = queue::open(handles.0)?;
    let replies = queue::open(handles.1)?;
    // One buffer for every message, as for every get this module times: what is measured
    // is the queue's hand-off, not the allocator.
    let mut message = Vec::new();
    loop {
        requests.get_into(&mut message, None)?;
        let last = message.is_empty();
        replies.put(&message, None)?;
        if last {
            return Ok(());
        }
    }
}
register_entry!("workload-queue-echo", echo);

/// Round trips of a `payload`-byte message (payload >= 1) through two queues of
/// `flavor` and a child that echoes requests into replies.
pub fn round_trip(
    flavor: Flavor,
    payload: usize,
    placement: Placement,
    iters: usize,
) -> RoundTrips {
    round_trip_with(flavor, payload, placement, iters, || {})
}

/// [`round_trip`], each trip held back by a real sleep of `extra` between its put and its
/// get, inside the timed part: the deliberately slowed twin of `measure::twins`.
pub fn round_trip_slowed(
    flavor: Flavor,
    payload: usize,
    placement: Placement,
    iters: usize,
    extra: Duration,
) -> RoundTrips {
    round_trip_with(flavor, payload, placement, iters, || {
        std::thread::sleep(extra)
    })
}

/// The round trip, with `between` run between each put and its get (inlined: nothing
/// for the real workload, whose timed loop stays as it was).
fn round_trip_with(
    flavor: Flavor,
    payload: usize,
    placement: Placement,
    iters: usize,
    between: impl Fn(),
) -> RoundTrips {
    let (mine, cpu) = cpus_for(placement);
    let _pin = pin(mine);
    let config = config_for(payload);
    let requests = flavor.create(&config).expect("queue");
    let replies = flavor.create(&config).expect("queue");
    let handles = (
        requests.handle(Role::Consumer).expect("handle"),
        replies.handle(Role::Producer).expect("handle"),
    );
    let child = start(
        "workload-queue-echo",
        &handles,
        &[&handles.0, &handles.1],
        cpu,
    );
    let message = vec![0x5au8; payload.max(1)];
    let mut back = Vec::with_capacity(message.len());
    let mut samples_ns = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        requests.put(&message, None).expect("put");
        between();
        replies.get_into(&mut back, None).expect("get");
        samples_ns.push(t.elapsed().as_nanos() as u64);
        debug_assert_eq!(back.len(), message.len());
    }
    requests.put(&[], None).expect("stop");
    replies.get(None).expect("stop echoed");
    finish(child);
    RoundTrips { samples_ns }
}

/// Shared by the stream's processes: [go, received].
type Gate = [AtomicU32; 2];

#[derive(Serialize, Deserialize)]
struct StreamArgs {
    queue: QueueHandle,
    gate: String,
    size: usize,
    messages: usize,
}

fn stream_producer(args: StreamArgs) -> Result<(), MeasureError> {
    let queue = queue::open(args.queue)?;
    let gate: Shared<Gate> = Shared::open(&args.gate)?;
    let limit = Instant::now() + CHILD_LIMIT;
    while gate[0].load(Ordering::Acquire) == 0 {
        if futex::wait(&gate[0], 0, Some(limit)) == futex::Wake::TimedOut {
            return Err(MeasureError::Failed("never told to go".into()));
        }
    }
    let message = vec![0xa5u8; args.size.max(1)];
    for _ in 0..args.messages {
        queue.put(&message, None)?;
    }
    Ok(())
}
register_entry!("workload-queue-stream-producer", stream_producer);

fn stream_consumer(args: StreamArgs) -> Result<(), MeasureError> {
    let queue = queue::open(args.queue)?;
    let gate: Shared<Gate> = Shared::open(&args.gate)?;
    let mut message = Vec::new();
    loop {
        queue.get_into(&mut message, None)?;
        if message.is_empty() {
            return Ok(());
        }
        if gate[1].fetch_add(1, Ordering::SeqCst) + 1 == args.messages as u32 {
            futex::wake_all(&gate[1]);
        }
    }
}
register_entry!("workload-queue-stream-consumer", stream_consumer);

/// Time for `producers` processes to move `messages` messages of `size` bytes in all
/// through a queue of `flavor` to `consumers` processes (capped at one for a
/// single-consumer flavor), from the go signal to the last message received.
pub fn throughput(
    flavor: Flavor,
    size: usize,
    producers: usize,
    consumers: usize,
    messages: usize,
) -> Duration {
    let consumers = if flavor.multi_consumer() {
        consumers
    } else {
        1
    };
    let per_producer = messages.div_ceil(producers);
    let total = per_producer * producers;
    let queue = flavor.create(&config_for(size)).expect("queue");
    let gate: Shared<Gate> = Shared::create("queue-gate", 0).expect("gate");
    let args = |role: Role, n: usize| StreamArgs {
        queue: queue.handle(role).expect("handle"),
        gate: gate.name().to_string(),
        size,
        messages: n,
    };
    let consumer_children: Vec<Child> = (0..consumers)
        .map(|_| {
            let a = args(Role::Consumer, total);
            start("workload-queue-stream-consumer", &a, &[&a.queue], None)
        })
        .collect();
    let producer_children: Vec<Child> = (0..producers)
        .map(|_| {
            let a = args(Role::Producer, per_producer);
            start("workload-queue-stream-producer", &a, &[&a.queue], None)
        })
        .collect();
    let limit = Instant::now() + CHILD_LIMIT;
    let t = Instant::now();
    gate[0].store(1, Ordering::Release);
    futex::wake_all(&gate[0]);
    loop {
        let seen = gate[1].load(Ordering::SeqCst);
        if seen as usize >= total {
            break;
        }
        assert!(
            futex::wait(&gate[1], seen, Some(limit)) != futex::Wake::TimedOut,
            "stream stalled at {seen} of {total} messages"
        );
    }
    let elapsed = t.elapsed();
    producer_children.into_iter().for_each(finish);
    for _ in 0..consumers {
        queue.put(&[], None).expect("stop");
    }
    consumer_children.into_iter().for_each(finish);
    elapsed
}

crate::register_workloads!("queue", catalogue, rank = 30);

/// This family's entries in `measure::registry`, for every flavor (plug-ins included):
/// round trips of 64 B, each divided by the raw figure its flavor rides on in that
/// placement (pipe flavor: raw pipe round trip; shm flavor: the cache-line ping-pong
/// across CPUs, the futex wake round trip on one CPU, where both sides must sleep;
/// ipc-channel: 64-byte Unix request-reply), and streams 64 B to 1 MiB, 1→1 and 4→4,
/// divided by the raw stream of the same size (pipe and shm flavors: pipe; channel: Unix
/// socket).
pub fn catalogue() -> Vec<crate::measure::registry::Workload> {
    use crate::ipc::queue::BuiltOn;
    use crate::measure::calibration as cal;
    use crate::measure::registry::{Workload, PLACEMENTS};
    let mut all = Vec::new();
    for flavor in Flavor::all() {
        for placement in PLACEMENTS {
            let base = match (flavor.built_on(), placement) {
                (BuiltOn::Pipe, _) => cal::PIPE_ROUNDTRIP,
                (BuiltOn::SharedMemory, Placement::SameCpu) => cal::FUTEX_ROUNDTRIP,
                (BuiltOn::SharedMemory, _) => cal::SHM_PINGPONG,
                (BuiltOn::UnixSocket, _) => cal::UNIX_SOCKET_REQUEST_REPLY,
            };
            all.push(
                Workload::latency("queue", flavor.name(), "roundtrip")
                    .size(64)
                    .placement(placement)
                    .divided_by(base)
                    .ops(2_000, 20_000)
                    .run(move |placement, n| round_trip(flavor, 64, placement, n)),
            );
        }
    }
    for flavor in Flavor::all() {
        for (producers, consumers) in [(1u32, 1u32), (4, 4)] {
            for size in super::SIZES {
                let (quick, full) = super::stream_messages(size);
                all.push(
                    Workload::stream("queue", flavor.name())
                        .size(size)
                        .processes(producers, consumers)
                        .divided_by(match flavor.built_on() {
                            BuiltOn::Pipe | BuiltOn::SharedMemory => cal::pipe_stream_name(size),
                            BuiltOn::UnixSocket => cal::unix_stream_name(size),
                        })
                        .ops(quick, full)
                        .run(move |n| {
                            throughput(
                                flavor,
                                size as usize,
                                producers as usize,
                                consumers as usize,
                                n,
                            )
                        }),
                );
            }
        }
    }
    all
}
