//! The shm ring's hardening: a one-slot ring, a ring whose shared memory lies about its
//! geometry or a message's length, and a dead peer met only by `*_nowait` callers. Each
//! test here failed (or crashed a child) on the ring before these were fixed.
//!
//! Corruption is written the way another process's bug would write it: straight into the
//! segment's file under /dev/shm, at the offsets of the ring's `#[repr(C)]` layout.

mod support;

use ipcbench::ipc::queue::shm::ShmQueue;
use ipcbench::ipc::queue::{Config, Queue, QueueError, QueueHandle, Role};
use ipcbench::process::{self, hygiene, watchdog, Options, StartMethod};
use ipcbench::register_entry;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use std::os::unix::fs::FileExt;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(30);

/// Byte offsets in the ring's header (`Header` in src/ipc/queue/shm.rs).
const CAPACITY: u64 = 8;
const MAX_MESSAGE: u64 = 16;
const STRIDE: u64 = 24;
/// The header is six words and five 64-byte lines: the first slot starts here.
const FIRST_SLOT: u64 = 384;
/// Offset of a slot's message length in the slot header.
const SLOT_LEN: u64 = 8;

/// Runs `body` alone in this binary and checks it left nothing behind.
fn hygienic(body: impl FnOnce()) {
    let _serial = support::serial();
    let before = hygiene::Snapshot::take();
    body();
    let leaks = before.leaks_since();
    assert!(leaks.is_empty(), "left behind: {leaks:?}");
}

/// Writes `bytes` into the ring's segment at `offset`, as a buggy process mapping it would.
fn scribble(queue: &ShmQueue, offset: u64, bytes: &[u8]) {
    let name = queue.shm_name().expect("open queue");
    let path = format!("/dev/shm/{}", name.trim_start_matches('/'));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    file.write_all_at(bytes, offset).unwrap();
}

fn start(entry: &str, args: &impl serde::Serialize) -> process::Child {
    process::start(entry, args, Options::new(entry).method(StartMethod::Fork)).unwrap()
}

fn put_numbered(args: (QueueHandle, u32)) -> Result<u32, QueueError> {
    let queue = ShmQueue::open(args.0)?;
    for i in 0..args.1 {
        queue.put(&i.to_le_bytes(), None)?;
    }
    Ok(args.1)
}
register_entry!("queue-shm-test-put-numbered", put_numbered);

/// Python's `Queue(1)`: one message, then Full; taken, then Empty. Run in a child under a
/// bound, as the ring this was written against overwrote the message and then spun
/// forever in `get_nowait`.
fn one_slot_basics(_: ()) -> Result<(), String> {
    let queue = ShmQueue::create(&Config::default().maxsize(1)).map_err(|e| e.to_string())?;
    let check = |ok: bool, what: &str| if ok { Ok(()) } else { Err(what.to_string()) };
    check(queue.maxsize() == 1, "maxsize is not 1")?;
    queue.put(b"first", None).map_err(|e| e.to_string())?;
    check(
        queue.full() && queue.qsize() == 1,
        "one message does not fill it",
    )?;
    check(
        matches!(queue.put_nowait(b"second"), Err(QueueError::Full)),
        "a second put_nowait was not Full (it overwrote the first message)",
    )?;
    check(
        matches!(
            queue.put(b"second", Some(Duration::from_millis(20))),
            Err(QueueError::Full)
        ),
        "a second put with a timeout was not Full",
    )?;
    check(
        queue.get_nowait().ok().as_deref() == Some(&b"first"[..]),
        "the first message did not come back",
    )?;
    check(
        matches!(queue.get_nowait(), Err(QueueError::Empty)),
        "get_nowait on the emptied queue was not Empty",
    )?;
    check(
        matches!(
            queue.get(Some(Duration::from_millis(20))),
            Err(QueueError::Empty)
        ),
        "get with a timeout on the emptied queue was not Empty",
    )?;
    queue.put(b"third", None).map_err(|e| e.to_string())?;
    check(
        queue.get(None).ok().as_deref() == Some(&b"third"[..]),
        "the ring did not go on after a full lap",
    )
}
register_entry!("queue-shm-test-one-slot-basics", one_slot_basics);

#[test]
fn a_one_slot_ring_holds_one_message_and_says_full() {
    hygienic(|| {
        let mut child = start("queue-shm-test-one-slot-basics", &());
        let outcome = child.result::<()>(Some(LONG));
        assert!(outcome.is_ok(), "{outcome:?}");
    });
}

fn get_numbered(args: (QueueHandle, u32)) -> Result<u32, String> {
    let queue = ShmQueue::open(args.0).map_err(|e| e.to_string())?;
    for expected in 0..args.1 {
        if queue.qsize() > 1 {
            return Err(format!("qsize {} in a one-slot queue", queue.qsize()));
        }
        let message = queue.get(Some(LONG)).map_err(|e| e.to_string())?;
        if message != expected.to_le_bytes() {
            return Err(format!("message {expected} arrived as {message:?}"));
        }
    }
    Ok(args.1)
}
register_entry!("queue-shm-test-get-numbered", get_numbered);

#[test]
fn a_one_slot_ring_carries_a_stream_between_processes_in_order() {
    hygienic(|| {
        let queue = ShmQueue::create(&Config::default().maxsize(1).block_limit(LONG)).unwrap();
        let count = 2000u32;
        let mut children = vec![
            start(
                "queue-shm-test-put-numbered",
                &(queue.handle(Role::Producer).unwrap(), count),
            ),
            start(
                "queue-shm-test-get-numbered",
                &(queue.handle(Role::Consumer).unwrap(), count),
            ),
        ];
        if let Err(hang) = watchdog::join_all(&mut children, LONG) {
            panic!("one-slot stream hung: {hang}");
        }
        assert_eq!(children[0].result::<u32>(None).unwrap(), count);
        assert_eq!(children[1].result::<u32>(None).unwrap(), count);
        assert!(matches!(queue.get_nowait(), Err(QueueError::Empty)));
    });
}

/// Every header field a stale or foreign segment could hold wrong, each refused by `open`
/// with `Corrupt` naming the segment.
#[test]
fn open_refuses_a_ring_whose_header_lies_about_its_geometry() {
    let huge = u64::MAX / 2;
    let cases: [(&str, u64, u64); 6] = [
        ("no slots", CAPACITY, 0),
        ("slots overflowing the stride product", CAPACITY, huge),
        ("a stride shorter than its message", STRIDE, 64),
        ("a stride off the 64-byte grid", STRIDE, 65 + 64 * 64),
        ("a message longer than a slot", MAX_MESSAGE, 1 << 30),
        ("a zero stride", STRIDE, 0),
    ];
    hygienic(|| {
        for (what, offset, value) in cases {
            let queue = ShmQueue::create(&Config::default().maxsize(4).max_message(4096)).unwrap();
            scribble(&queue, offset, &value.to_le_bytes());
            let name = queue.shm_name().unwrap().to_string();
            match ShmQueue::open(queue.handle(Role::Both).unwrap()) {
                Err(QueueError::Corrupt(why)) => {
                    assert!(why.contains(&name), "{what}: {why:?} names no segment")
                }
                Ok(_) => panic!("{what}: opened a ring whose header is corrupt"),
                Err(other) => panic!("{what}: {other:?}"),
            }
        }
    });
}

/// Takes one message off the ring and reports what happened, so that the test process
/// survives a ring that reads out of bounds.
fn get_one(handle: QueueHandle) -> Result<String, String> {
    let queue = ShmQueue::open(handle).map_err(|e| e.to_string())?;
    match queue.get(Some(Duration::from_secs(5))) {
        Ok(message) => Ok(format!("message of {} bytes", message.len())),
        Err(QueueError::Corrupt(why)) => Err(format!("corrupt: {why}")),
        Err(other) => Err(other.to_string()),
    }
}
register_entry!("queue-shm-test-get-one", get_one);

#[test]
fn a_corrupt_message_length_is_an_error_naming_the_segment_and_the_ring_goes_on() {
    hygienic(|| {
        let queue = ShmQueue::create(&Config::default().maxsize(4).max_message(256)).unwrap();
        let name = queue.shm_name().unwrap().to_string();
        queue.put(b"hello", None).unwrap();
        queue.put(b"next", None).unwrap();
        scribble(&queue, FIRST_SLOT + SLOT_LEN, &(u32::MAX - 1).to_le_bytes());
        let mut child = start("queue-shm-test-get-one", &queue.handle(Role::Both).unwrap());
        match child.result::<String>(Some(LONG)) {
            Err(process::ProcessError::Failed { message: why, .. }) => {
                assert!(why.starts_with("corrupt: "), "{why}");
                assert!(why.contains(&name), "{why} names no segment");
            }
            other => panic!("a 4 GiB length in a 256-byte slot must be Corrupt: {other:?}"),
        }
        // The corrupt slot was taken off; the next message is intact.
        assert_eq!(queue.get(Some(LONG)).unwrap(), b"next");
    });
}

/// Any header value, any message length: `open` and `get` answer or refuse, never panic,
/// never read outside the segment (a child would crash), never wait past their bounds.
#[test]
fn random_header_and_length_words_are_refused_or_harmless() {
    hygienic(|| {
        let mut runner = TestRunner::new(ProptestConfig {
            cases: 300,
            ..ProptestConfig::default()
        });
        let word = prop_oneof![
            0u64..=4,
            60u64..=70,
            4000u64..=5000,
            any::<u32>().prop_map(u64::from),
            any::<u64>(),
        ];
        let field = prop_oneof![Just(CAPACITY), Just(MAX_MESSAGE), Just(STRIDE), Just(40u64)];
        runner
            .run(
                &(field, word, any::<u32>(), 0usize..300),
                |(offset, value, len, message)| {
                    let queue =
                        ShmQueue::create(&Config::default().maxsize(4).max_message(256)).unwrap();
                    queue.put(&vec![7u8; message.min(256)], None).unwrap();
                    scribble(&queue, FIRST_SLOT + SLOT_LEN, &len.to_le_bytes());
                    scribble(&queue, offset, &value.to_le_bytes());
                    if let Ok(reader) = ShmQueue::open(queue.handle(Role::Both).unwrap()) {
                        // Whatever the geometry now says, a get is a message within the
                        // limit it states, an error, or Empty.
                        match reader.get(Some(Duration::from_millis(10))) {
                            Ok(got) => prop_assert!(got.len() <= reader.max_message()),
                            Err(QueueError::Corrupt(_)) | Err(QueueError::Empty) => {}
                            Err(other) => prop_assert!(false, "{other:?}"),
                        }
                    }
                    Ok(())
                },
            )
            .unwrap();
    });
}

/// (queue, put rather than get, claimed rather than only reserved): stops where a
/// process SIGKILLed mid-operation would, then exits.
fn abandon(args: (QueueHandle, bool, bool)) -> Result<bool, QueueError> {
    let queue = ShmQueue::open(args.0)?;
    Ok(queue.abandon_midway_for_test(args.1, args.2))
}
register_entry!("queue-shm-test-abandon", abandon);

fn abandon_in_child(queue: &ShmQueue, put: bool, claimed: bool) -> i32 {
    let mut child = start(
        "queue-shm-test-abandon",
        &(queue.handle(Role::Both).unwrap(), put, claimed),
    );
    assert!(child.result::<bool>(Some(LONG)).unwrap());
    child.pid().as_raw()
}

#[test]
fn get_nowait_alone_moves_past_a_producer_that_died_mid_put() {
    hygienic(|| {
        let queue = ShmQueue::create(&Config::default().maxsize(4)).unwrap();
        let dead = abandon_in_child(&queue, true, true);
        queue.put(b"behind", None).unwrap();
        match queue.get_nowait() {
            Err(QueueError::PeerDied { pid, op: "put" }) => assert_eq!(pid, dead),
            other => panic!("get_nowait must report the dead producer's message: {other:?}"),
        }
        assert_eq!(queue.get_nowait().unwrap(), b"behind");
    });
}

#[test]
fn get_nowait_alone_clears_a_dead_consumers_reservation() {
    hygienic(|| {
        let queue = ShmQueue::create(&Config::default().maxsize(4)).unwrap();
        queue.put(b"waiting", None).unwrap();
        abandon_in_child(&queue, false, false);
        assert_eq!(queue.get_nowait().unwrap(), b"waiting");
    });
}

#[test]
fn put_nowait_alone_gets_room_back_from_a_consumer_that_died_mid_get() {
    hygienic(|| {
        let queue = ShmQueue::create(&Config::default().maxsize(2)).unwrap();
        queue.put(b"taken", None).unwrap();
        queue.put(b"kept", None).unwrap();
        abandon_in_child(&queue, false, true);
        queue.put_nowait(b"room").unwrap();
        assert_eq!(queue.lost(), 1);
        assert_eq!(queue.get_nowait().unwrap(), b"kept");
        assert_eq!(queue.get_nowait().unwrap(), b"room");
    });
}
