//! What a dead or waiting peer leaves in a Queue: a producer or consumer SIGKILLed in the
//! middle of a frame, a producer killed while it waits, a consumer blocked in `get`.
//! Every test here drives real processes to the exact point with /proc and FIONREAD (no
//! sleeps that decide a result), and proves it left nothing behind.

mod support;

use ipcbench::ipc::queue::joinable::JoinableHandle;
use ipcbench::ipc::queue::{
    self, Config, Flavor, JoinableQueue, Queue, QueueError, QueueHandle, Role,
};
use ipcbench::process::{self, hygiene, Options, StartMethod};
use ipcbench::register_entry;
use nix::sys::signal::Signal;
use serde::Serialize;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(30);

/// Runs `body` under the serial lock, then checks that nothing leaked.
fn clean(body: impl FnOnce()) {
    let _serial = support::serial();
    let before = hygiene::Snapshot::take();
    body();
    let leaks = before.leaks_since();
    assert!(leaks.is_empty(), "left behind: {leaks:?}");
}

fn start(entry: &str, args: &impl Serialize, handle: &QueueHandle) -> process::Child {
    let options = handle.inherit(Options::new(entry).method(StartMethod::Fork));
    process::start(entry, args, options).unwrap()
}

fn pattern(seed: u32, len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

/// Waits (bounded: a safety net, not a measurement) until `ready` holds.
fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + LONG;
    while !ready() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// True when `pid` sleeps inside one of the system calls `nrs`.
fn sleeping_in(pid: i32, nrs: &[libc::c_long]) -> bool {
    let Ok(raw) = std::fs::read_to_string(format!("/proc/{pid}/syscall")) else {
        return false;
    };
    let nr = raw.split_whitespace().next().and_then(|n| n.parse().ok());
    let state = hygiene::proc_info(pid).map(|p| p.state);
    state == Some('S') && nr.is_some_and(|nr| nrs.contains(&nr))
}

fn polling(pid: i32) -> bool {
    sleeping_in(pid, &[libc::SYS_poll, libc::SYS_ppoll])
}

fn in_futex(pid: i32) -> bool {
    sleeping_in(pid, &[libc::SYS_futex])
}

/// Bytes waiting in the pipe behind a pipe-flavor queue (its read end is the first fd).
fn pipe_bytes(reader: RawFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through a valid pointer; `reader` is open.
    let r = unsafe { libc::ioctl(reader, libc::FIONREAD, &mut n) };
    assert_eq!(r, 0, "FIONREAD: {}", std::io::Error::last_os_error());
    n as usize
}

fn pipe_capacity(reader: RawFd) -> usize {
    // SAFETY: F_GETPIPE_SZ only reads the pipe's size.
    let r = unsafe { libc::fcntl(reader, libc::F_GETPIPE_SZ) };
    assert!(r > 0, "F_GETPIPE_SZ: {}", std::io::Error::last_os_error());
    r as usize
}

fn put_len(args: (QueueHandle, usize)) -> Result<(), QueueError> {
    queue::open(args.0)?.put(&pattern(7, args.1), None)
}
register_entry!("queue-recovery-put", put_len);

fn get_len(handle: QueueHandle) -> Result<usize, QueueError> {
    Ok(queue::open(handle)?.get(None)?.len())
}
register_entry!("queue-recovery-get", get_len);

/// Tries a put and a get on a queue opened here; returns what each said.
fn try_both(handle: QueueHandle) -> Result<(String, String), QueueError> {
    let queue = queue::open(handle)?;
    let put = format!("{:?}", queue.put(b"x", Some(Duration::from_secs(2))));
    let get = format!("{:?}", queue.get(Some(Duration::from_secs(2))));
    Ok((put, get))
}
register_entry!("queue-recovery-try-both", try_both);

fn assert_poisoned(got: Result<impl std::fmt::Debug, QueueError>, dead: i32, op: &str) {
    match got {
        Err(e @ QueueError::Poisoned { .. }) => {
            let QueueError::Poisoned { pid, op: what } = &e else {
                unreachable!()
            };
            assert_eq!((*pid, *what), (dead, op), "{e}");
            assert!(e.to_string().contains(&dead.to_string()), "{e}");
        }
        other => panic!("expected the queue poisoned by {op} of process {dead}, got {other:?}"),
    }
}

/// A producer killed half-way through a frame larger than the pipe's room leaves a torn
/// prefix: the queue must say so, with the dead pid, to every process, at once.
#[test]
fn a_producer_killed_mid_frame_poisons_the_pipe_queue_for_every_process() {
    clean(|| {
        let config = Config::default().max_message(8 << 20);
        let queue = Flavor::Pipe.create(&config).unwrap();
        let handle = queue.handle(Role::Both).unwrap();
        let reader = handle.fds()[0];
        let big = 2 * pipe_capacity(reader);
        let mut producer = start("queue-recovery-put", &(handle.clone(), big), &handle);
        let pid = producer.pid().as_raw();
        // The pipe holds the frame's first part; the producer waits for room to write more.
        wait_until("the producer blocks mid-frame", || {
            pipe_bytes(reader) > 0 && polling(pid)
        });
        producer.kill().unwrap();
        assert_eq!(producer.join(Some(LONG)).unwrap(), Some(-9));

        let started = Instant::now();
        assert_poisoned(queue.put_nowait(b"live"), pid, "put");
        assert_poisoned(queue.get(Some(Duration::from_secs(2))), pid, "put");
        assert_poisoned(queue.put(b"live", None), pid, "put");
        let mut other = start("queue-recovery-try-both", &handle, &handle);
        let (put, get) = other.result::<(String, String)>(Some(LONG)).unwrap();
        for said in [put, get] {
            assert!(
                said.contains("Poisoned") && said.contains(&pid.to_string()),
                "another process was told {said}"
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the poisoned queue stalled its callers: {:?}",
            started.elapsed()
        );
    });
}

/// A consumer killed after reading part of a frame leaves the rest of it in the pipe,
/// where the next consumer would take payload bytes for a header.
#[test]
fn a_consumer_killed_mid_frame_poisons_the_pipe_queue() {
    clean(|| {
        let config = Config::default().max_message(8 << 20);
        let queue = Flavor::Pipe.create(&config).unwrap();
        let handle = queue.handle(Role::Both).unwrap();
        let reader = handle.fds()[0];
        // More than the pipe holds, so the producer blocks mid-frame; its rest fits in the
        // pipe once the consumer has emptied it, so the producer can then finish alone.
        let big = pipe_capacity(reader) * 3 / 2;
        let mut producer = start("queue-recovery-put", &(handle.clone(), big), &handle);
        let producer_pid = producer.pid().as_raw();
        wait_until("the producer blocks mid-frame", || {
            pipe_bytes(reader) > 0 && polling(producer_pid)
        });
        // Freeze the producer half-way, so the consumer reads what there is and then
        // waits for the rest inside the frame.
        producer.signal(Signal::SIGSTOP).unwrap();
        let mut consumer = start("queue-recovery-get", &handle, &handle);
        let pid = consumer.pid().as_raw();
        wait_until("the consumer waits mid-frame", || {
            pipe_bytes(reader) == 0 && polling(pid)
        });
        consumer.kill().unwrap();
        assert_eq!(consumer.join(Some(LONG)).unwrap(), Some(-9));
        producer.signal(Signal::SIGCONT).unwrap();
        producer.result::<()>(Some(LONG)).unwrap();

        assert_poisoned(queue.get(Some(Duration::from_secs(2))), pid, "get");
        assert_poisoned(queue.put_nowait(b"live"), pid, "get");
    });
}

/// A producer killed while it waits for the write lock (another producer is mid-frame)
/// must not take a place in the queue with it.
#[test]
fn a_producer_killed_waiting_for_the_write_lock_leaves_the_room_it_waited_for() {
    clean(|| {
        let config = Config::default().maxsize(2).max_message(8 << 20);
        let queue = Flavor::Pipe.create(&config).unwrap();
        let handle = queue.handle(Role::Both).unwrap();
        let reader = handle.fds()[0];
        let big = 2 * pipe_capacity(reader);
        let mut first = start("queue-recovery-put", &(handle.clone(), big), &handle);
        let first_pid = first.pid().as_raw();
        wait_until("the first producer blocks mid-frame", || {
            pipe_bytes(reader) > 0 && polling(first_pid)
        });
        let waiting = start("queue-recovery-put", &(handle.clone(), 10usize), &handle);
        let waiting_pid = waiting.pid().as_raw();
        wait_until("the second producer waits for the write lock", || {
            in_futex(waiting_pid)
        });
        let mut waiting = waiting;
        waiting.kill().unwrap();
        assert_eq!(waiting.join(Some(LONG)).unwrap(), Some(-9));
        assert_eq!(queue.get(Some(LONG)).unwrap(), pattern(7, big));
        first.result::<()>(Some(LONG)).unwrap();

        assert_eq!(
            queue.qsize(),
            0,
            "an empty queue counts a dead producer's place"
        );
        queue.put_nowait(b"one").unwrap();
        queue.put_nowait(b"two").unwrap();
        assert!(matches!(queue.put_nowait(b"three"), Err(QueueError::Full)));
        assert_eq!(queue.get_nowait().unwrap(), b"one");
        assert_eq!(queue.get_nowait().unwrap(), b"two");
    });
}

fn joinable_put(args: (JoinableHandle, Vec<u8>)) -> Result<(), QueueError> {
    JoinableQueue::open(args.0)?.put(&args.1, None)
}
register_entry!("queue-recovery-joinable-put", joinable_put);

/// A producer killed while its put waits for room put nothing: `join` must not wait for
/// an item that never entered the queue.
#[test]
fn join_does_not_wait_for_the_item_of_a_producer_killed_waiting_for_room() {
    for flavor in Flavor::ALL {
        clean(|| {
            // maxsize 2, not 1: the shm ring lets a second put into a ring of one slot
            // (a defect of its own, outside this test).
            let queue =
                JoinableQueue::new(flavor.create(&Config::default().maxsize(2)).unwrap()).unwrap();
            let handle = queue.handle(Role::Producer).unwrap();
            queue.put(b"first", None).unwrap();
            queue.put(b"other", None).unwrap();
            let options = handle.inherit(Options::new("joinable-put").method(StartMethod::Fork));
            let mut child = process::start(
                "queue-recovery-joinable-put",
                &(handle, b"never".to_vec()),
                options,
            )
            .unwrap();
            let pid = child.pid().as_raw();
            wait_until(&format!("{flavor:?}: the producer waits for room"), || {
                in_futex(pid)
            });
            child.kill().unwrap();
            assert_eq!(child.join(Some(LONG)).unwrap(), Some(-9));
            for item in [&b"first"[..], b"other"] {
                assert_eq!(queue.get(Some(LONG)).unwrap(), item, "{flavor:?}");
                queue.task_done().unwrap();
            }
            assert!(
                queue.join(Duration::from_secs(2)),
                "{flavor:?}: join waits for the dead producer's item ({} unfinished)",
                queue.unfinished()
            );
            assert!(matches!(
                queue.get(Some(Duration::from_millis(20))),
                Err(QueueError::Empty)
            ));
        });
    }
}

fn get_within(args: (QueueHandle, Option<Duration>)) -> Result<Vec<u8>, QueueError> {
    queue::open(args.0)?.get(args.1)
}
register_entry!("queue-recovery-get-within", get_within);

/// One consumer blocked in `get` must not make another consumer's `get_nowait` or short
/// `get` wait for the read lock: on an empty queue they say Empty at once, as Python's.
#[test]
fn a_consumer_waiting_for_data_does_not_hold_back_another_consumers_nowait_get() {
    for flavor in Flavor::ALL.into_iter().filter(|f| f.multi_consumer()) {
        clean(|| {
            let queue = flavor.create(&Config::default()).unwrap();
            let handle = queue.handle(Role::Both).unwrap();
            let mut waiter = start(
                "queue-recovery-get-within",
                &(handle.clone(), None::<Duration>),
                &handle,
            );
            let pid = waiter.pid().as_raw();
            wait_until("the first consumer waits in get", || {
                polling(pid) || in_futex(pid)
            });
            // A bound far below the 5 s lock grace: a correctness bound on the lock, not
            // a speed measurement.
            let started = Instant::now();
            let nowait = queue.get_nowait();
            let short = queue.get(Some(Duration::from_millis(10)));
            let took = started.elapsed();
            assert!(
                matches!(nowait, Err(QueueError::Empty)),
                "{flavor:?}: {nowait:?}"
            );
            assert!(
                matches!(short, Err(QueueError::Empty)),
                "{flavor:?}: {short:?}"
            );
            assert!(
                took < Duration::from_secs(2),
                "{flavor:?}: Empty took {took:?}: the waiting consumer held the read lock"
            );
            // The waiting consumer still gets the next message, whole.
            queue.put(&pattern(3, 10_000), None).unwrap();
            assert_eq!(
                waiter.result::<Vec<u8>>(Some(LONG)).unwrap(),
                pattern(3, 10_000)
            );
        });
    }
}

/// A pipe queue's largest message is capped at the wire's limit: a length the frame
/// header cannot carry, or a reader should never be asked to accept, is refused at
/// creation (the old queue took any `max_message`).
#[test]
fn a_pipe_queue_refuses_a_max_message_beyond_the_wire_limit() {
    clean(|| {
        let limit = ipcbench::ipc::frame::MAX_PAYLOAD_LIMIT;
        match Flavor::Pipe.create(&Config::default().max_message(limit + 1)) {
            Err(QueueError::TooLarge { len, max }) => {
                assert_eq!((len, max), (limit + 1, limit));
            }
            Err(other) => panic!("expected TooLarge, got {other:?}"),
            Ok(_) => panic!("a pipe queue accepted messages beyond the wire limit"),
        }
        let queue = Flavor::Pipe
            .create(&Config::default().max_message(limit))
            .unwrap();
        assert_eq!(queue.max_message(), limit);
    });
}

/// A channel-flavor producer that dies holding a maxsize permit (inside its send): the
/// next put that finds no room takes the permit back. The old queue leaked it, so a
/// bounded queue became Full for good after enough kills.
fn channel_abandon_put(handle: QueueHandle) -> Result<bool, QueueError> {
    let queue = ipcbench::ipc::queue::channel::ChannelQueue::open(handle)?;
    queue.abandon_put_for_test()
}
register_entry!("queue-recovery-channel-abandon-put", channel_abandon_put);

#[test]
fn a_channel_producer_dead_inside_its_send_gives_its_room_back() {
    clean(|| {
        let queue = Flavor::Channel
            .create(&Config::default().maxsize(1))
            .unwrap();
        let handle = queue.handle(Role::Producer).unwrap();
        let mut child = start("queue-recovery-channel-abandon-put", &handle, &handle);
        assert!(child.result::<bool>(Some(Duration::from_secs(30))).unwrap());
        drop(child);
        queue
            .put_nowait(b"after")
            .expect("the dead producer's room was given back");
        assert_eq!(queue.get(Some(Duration::from_secs(5))).unwrap(), b"after");
        assert_eq!(queue.qsize(), 0);
        assert!(matches!(queue.get_nowait(), Err(QueueError::Empty)));
    });
}
