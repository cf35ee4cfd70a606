//! Size limits on the wire: a peer's frame header cannot make a reader allocate what it
//! claims. This binary counts, per thread, the largest single allocation request (a
//! global allocator wrapping the system one), so a test can prove that reading a frame
//! allocated no more than the bytes that actually arrived.

mod support;

use ipcbench::ipc::frame::{self, FrameError, HEADER_LEN};
use ipcbench::ipc::pipe::{pipe, Connection, PipeError, PipeKind};
use ipcbench::process::hygiene;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|largest| {
        if size > largest.get() {
            largest.set(size);
        }
    });
}

/// The system allocator, noting the largest request made on each thread.
struct LargestAllocation;

// SAFETY: every call is forwarded unchanged to the system allocator; the bookkeeping
// only touches a const-initialised thread-local Cell (no allocation, no destructor).
unsafe impl GlobalAlloc for LargestAllocation {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: LargestAllocation = LargestAllocation;

/// Runs `f` and returns its value with the largest single allocation it requested on
/// this thread.
fn largest_allocation_in<R>(f: impl FnOnce() -> R) -> (R, usize) {
    LARGEST.with(|l| l.set(0));
    let value = f();
    (value, LARGEST.with(|l| l.get()))
}

/// Serialises the tests of this binary (fds are process-wide) and checks for leaks.
fn leak_checked(body: impl FnOnce()) {
    let _serial = support::serial();
    let before = hygiene::Snapshot::take();
    body();
    let leaks = before.leaks_since();
    assert!(leaks.is_empty(), "left behind: {leaks:?}");
}

/// Writes raw bytes on a write end, bypassing the framing.
fn write_raw(conn: &Connection, bytes: &[u8]) {
    let fd = conn.raw_fd().unwrap();
    // SAFETY: writes from a valid slice to an fd the connection holds open.
    let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    assert_eq!(n, bytes.len() as isize);
}

/// A header with a good magic claiming `len` bytes of payload.
fn header_claiming(len: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(&frame::MAGIC.to_le_bytes());
    h[4..8].copy_from_slice(&len.to_le_bytes());
    h
}

const CLAIM: u32 = 200 << 20;
/// What reading a frame may allocate whatever its header claims: far below the claim.
const ALLOCATION_BOUND: usize = 1 << 20;

#[test]
fn a_header_claiming_200_mib_then_end_of_stream_allocates_nothing_like_it() {
    leak_checked(|| {
        for kind in PipeKind::ALL {
            let (reader, mut writer) = pipe(kind).unwrap();
            write_raw(&writer, &header_claiming(CLAIM));
            write_raw(&writer, &[5u8; 1000]);
            writer.close();
            let (got, largest) =
                largest_allocation_in(|| reader.recv_bytes_timeout(Duration::from_secs(30)));
            assert!(
                matches!(
                    got,
                    Err(PipeError::Corrupt(FrameError::Truncated { read, expected }))
                        if read == HEADER_LEN + 1000 && expected == HEADER_LEN + CLAIM as usize
                ),
                "{kind:?}: {got:?}"
            );
            assert!(
                largest <= ALLOCATION_BOUND,
                "{kind:?}: reading a frame whose header claimed {CLAIM} bytes (1000 arrived) allocated {largest} bytes at once"
            );
        }
    });
}

#[test]
fn a_header_claiming_200_mib_then_a_stall_is_cut_at_the_bound_without_allocating_it() {
    leak_checked(|| {
        for kind in PipeKind::ALL {
            let (mut reader, writer) = pipe(kind).unwrap();
            // The bound on a frame that has started (a safety net for the stalled peer).
            reader.set_timeout(Duration::from_millis(300));
            write_raw(&writer, &header_claiming(CLAIM));
            write_raw(&writer, &[5u8; 3000]);
            let (got, largest) = largest_allocation_in(|| reader.recv_bytes());
            assert!(
                matches!(
                    got,
                    Err(PipeError::Corrupt(FrameError::Truncated { read, .. })) if read == HEADER_LEN + 3000
                ),
                "{kind:?}: {got:?}"
            );
            assert!(
                largest <= ALLOCATION_BOUND,
                "{kind:?}: a stalled frame claiming {CLAIM} bytes allocated {largest} bytes at once"
            );
            drop(writer);
        }
    });
}

// ---------------------------------------------------------------------------------------
// Fuzzing the decoders: random and mutated bytes, no process per case.

use ipcbench::ipc::manager::{decode_request, decode_response, Key, Request, Response};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Cases per fuzz property.
const FUZZ_CASES: u32 = 2000;

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: FUZZ_CASES,
        failure_persistence: None,
        ..Config::default()
    })
}

/// One change to a byte stream; positions are taken modulo the stream's length.
#[derive(Clone, Debug)]
enum Mutation {
    Flip {
        at: usize,
        bit: u8,
    },
    Set {
        at: usize,
        byte: u8,
    },
    Cut {
        at: usize,
    },
    Delete {
        at: usize,
        len: usize,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    /// Rewrites the length field of the header at frame `frame` (of those encoded).
    Length {
        frame: usize,
        len: u32,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set { at, byte }),
        any::<usize>().prop_map(|at| Mutation::Cut { at }),
        (any::<usize>(), 1usize..64).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..64)
        )
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (
            any::<usize>(),
            prop_oneof![
                any::<u32>(),
                0u32..2048,
                Just(200 << 20),
                Just(u32::MAX),
                Just(frame::READ_CHUNK as u32 + 1),
            ]
        )
            .prop_map(|(frame, len)| Mutation::Length { frame, len }),
    ]
}

fn apply(stream: &mut Vec<u8>, starts: &[usize], m: &Mutation) {
    let n = stream.len();
    match m {
        Mutation::Flip { at, bit } if n > 0 => stream[at % n] ^= 1 << bit,
        Mutation::Set { at, byte } if n > 0 => stream[at % n] = *byte,
        Mutation::Cut { at } if n > 0 => stream.truncate(at % n),
        Mutation::Delete { at, len } if n > 0 => {
            let from = at % n;
            stream.drain(from..(from + len).min(n));
        }
        Mutation::Insert { at, bytes } => {
            let at = at % (n + 1);
            stream.splice(at..at, bytes.iter().copied());
        }
        Mutation::Length { frame, len } if !starts.is_empty() => {
            let at = starts[frame % starts.len()] + 4;
            if at + 4 <= n {
                stream[at..at + 4].copy_from_slice(&len.to_le_bytes());
            }
        }
        _ => {}
    }
}

/// A byte stream to feed a reader, and the payloads of the valid frames it was made
/// from (the only payloads a reader may ever return from it).
#[derive(Clone, Debug)]
struct Stream {
    bytes: Vec<u8>,
    originals: Vec<Vec<u8>>,
    mutated: bool,
}

fn stream() -> impl Strategy<Value = Stream> {
    let frames = proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..700), 0..6);
    let mutated =
        (frames, proptest::collection::vec(mutation(), 0..4)).prop_map(|(payloads, mutations)| {
            let mut bytes = Vec::new();
            let mut starts = Vec::new();
            for p in &payloads {
                starts.push(bytes.len());
                bytes.extend_from_slice(&frame::encode(p));
            }
            for m in &mutations {
                apply(&mut bytes, &starts, m);
            }
            Stream {
                bytes,
                originals: payloads,
                mutated: !mutations.is_empty(),
            }
        });
    let random = proptest::collection::vec(any::<u8>(), 0..3000).prop_map(|bytes| Stream {
        bytes,
        originals: Vec::new(),
        mutated: true,
    });
    // A good magic, then anything: gets past the first check to the length and checksum.
    let after_magic = proptest::collection::vec(any::<u8>(), 0..3000).prop_map(|rest| {
        let mut bytes = frame::MAGIC.to_le_bytes().to_vec();
        bytes.extend(rest);
        Stream {
            bytes,
            originals: Vec::new(),
            mutated: true,
        }
    });
    prop_oneof![6 => mutated, 2 => random, 2 => after_magic]
}

/// The frame reader over a real pipe or socketpair, fed random and mutated streams (its
/// writer closed afterwards): it never panics or hangs, returns only payloads of frames
/// that were really sent, ends with end-of-stream or a corrupt-frame error, and never
/// allocates more at once than the smaller of its configured maximum and one read chunk.
#[test]
fn fuzz_frame_reader_on_random_and_mutated_streams() {
    static INPUTS: AtomicUsize = AtomicUsize::new(0);
    static FRAMES_RETURNED: AtomicUsize = AtomicUsize::new(0);
    leak_checked(|| {
        let strategy = (
            stream(),
            prop_oneof![Just(PipeKind::Duplex), Just(PipeKind::Simplex)],
            prop_oneof![
                Just(16usize),
                Just(1000),
                Just(frame::READ_CHUNK),
                Just(1 << 20),
                Just(frame::DEFAULT_MAX_PAYLOAD),
            ],
        );
        runner()
            .run(&strategy, |(stream, kind, max)| {
                INPUTS.fetch_add(1, Ordering::Relaxed);
                let (mut reader, mut writer) = pipe(kind).unwrap();
                reader.set_max_payload(max);
                if !stream.bytes.is_empty() {
                    write_raw(&writer, &stream.bytes);
                }
                writer.close();
                // Room for every frame the stream could hold, so that recording them
                // allocates nothing inside the measured reads.
                let mut got: Vec<Vec<u8>> = Vec::with_capacity(stream.bytes.len() / HEADER_LEN + 1);
                let (end, largest) = largest_allocation_in(|| loop {
                    match reader.recv_bytes_timeout(Duration::from_secs(30)) {
                        Ok(payload) if got.len() < got.capacity() => got.push(payload),
                        Ok(_) => break Err("more frames than the stream can hold".to_string()),
                        Err(e) => break Ok(e),
                    }
                });
                let end = end.map_err(TestCaseError::fail)?;
                FRAMES_RETURNED.fetch_add(got.len(), Ordering::Relaxed);
                prop_assert!(
                    matches!(end, PipeError::Eof | PipeError::Corrupt(_)),
                    "the stream ended with {end:?}"
                );
                for payload in &got {
                    prop_assert!(payload.len() <= max);
                    prop_assert!(
                        stream.originals.contains(payload),
                        "returned a payload of {} bytes that was never sent",
                        payload.len()
                    );
                }
                if !stream.mutated && stream.originals.iter().all(|p| p.len() <= max) {
                    prop_assert_eq!(&got, &stream.originals);
                    prop_assert!(end.is_eof());
                }
                prop_assert!(
                    largest <= max.min(frame::READ_CHUNK),
                    "allocated {largest} bytes at once (max {max})"
                );
                Ok(())
            })
            .unwrap();
    });
    eprintln!(
        "fuzz_frame_reader_on_random_and_mutated_streams: {} inputs, {} frames returned",
        INPUTS.load(Ordering::Relaxed),
        FRAMES_RETURNED.load(Ordering::Relaxed)
    );
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(".{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn request() -> impl Strategy<Value = Request> {
    let name = ".{0,10}";
    let key = proptest::option::of(prop_oneof![
        ".{0,6}".prop_map(Key::Field),
        any::<usize>().prop_map(Key::Index),
    ]);
    prop_oneof![
        (name, key.clone()).prop_map(|(name, key)| Request::Get { name, key }),
        (name, key.clone(), json_value()).prop_map(|(name, key, value)| Request::Set {
            name,
            key,
            value
        }),
        (name, key.clone()).prop_map(|(name, key)| Request::Delete { name, key }),
        name.prop_map(|name| Request::Keys { name }),
        name.prop_map(|name| Request::Len { name }),
        (name, key.clone(), any::<i64>()).prop_map(|(name, key, by)| Request::Increment {
            name,
            key,
            by
        }),
        (name, key, json_value(), json_value()).prop_map(|(name, key, expected, new)| {
            Request::CompareAndSet {
                name,
                key,
                expected,
                new,
            }
        }),
        (name, json_value()).prop_map(|(name, value)| Request::Push { name, value }),
        Just(Request::Ping),
        Just(Request::Shutdown),
    ]
}

fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        json_value().prop_map(Response::Ok),
        ".{0,40}".prop_map(Response::Err),
        ".{0,40}".prop_map(Response::Refused),
    ]
}

/// Equal JSON, numbers compared as f64 to within an ulp or so: serde_json (built without
/// its `float_roundtrip` feature) may parse a long float one ulp off, so a re-encoded
/// float need not be bit-identical (e.g. 4.9881971714124555e299 came back as
/// 4.988197171412455e299).
fn same_json(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x == y || (x - y).abs() <= 4.0 * f64::EPSILON * x.abs().max(y.abs())
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((kx, vx), (ky, vy))| kx == ky && same_json(vx, vy))
        }
        _ => a == b,
    }
}

/// `value` survives an encode and decode by `decode` (up to float parsing, above).
fn round_trips<T: serde::Serialize>(value: &T, decode: fn(&[u8]) -> Result<T, String>) -> bool {
    let bytes = serde_json::to_vec(value).unwrap();
    match decode(&bytes) {
        Ok(again) => same_json(
            &serde_json::to_value(value).unwrap(),
            &serde_json::to_value(&again).unwrap(),
        ),
        Err(_) => false,
    }
}

/// Bytes for a decoder: a valid encoding mutated 0 to 3 times, or random bytes.
fn decoder_input<T: serde::Serialize + std::fmt::Debug>(
    valid: impl Strategy<Value = T>,
) -> impl Strategy<Value = Vec<u8>> {
    let mutated = (valid, proptest::collection::vec(mutation(), 0..4)).prop_map(|(v, ms)| {
        let mut bytes = serde_json::to_vec(&v).unwrap();
        for m in &ms {
            apply(&mut bytes, &[], m);
        }
        bytes
    });
    prop_oneof![
        7 => mutated,
        2 => proptest::collection::vec(any::<u8>(), 0..400),
        1 => (1usize..5000).prop_map(|depth| {
            // Deep nesting: refused by serde_json's recursion limit, never a stack overflow.
            let mut s = br#"{"op":"set","name":"x","key":null,"value":"#.to_vec();
            s.extend(std::iter::repeat_n(b'[', depth));
            s.extend(std::iter::repeat_n(b']', depth));
            s.push(b'}');
            s
        }),
    ]
}

/// The Manager server's request decoder on mutated requests and random bytes: never a
/// panic; what decodes re-encodes to a request that decodes the same.
#[test]
fn fuzz_manager_request_decoder() {
    static INPUTS: AtomicUsize = AtomicUsize::new(0);
    static DECODED: AtomicUsize = AtomicUsize::new(0);
    runner()
        .run(&decoder_input(request()), |bytes| {
            INPUTS.fetch_add(1, Ordering::Relaxed);
            match decode_request(&bytes) {
                Ok(request) => {
                    DECODED.fetch_add(1, Ordering::Relaxed);
                    prop_assert!(round_trips(&request, decode_request), "{request:?}");
                }
                Err(message) => prop_assert!(message.starts_with("malformed request")),
            }
            Ok(())
        })
        .unwrap();
    eprintln!(
        "fuzz_manager_request_decoder: {} inputs, {} decoded",
        INPUTS.load(Ordering::Relaxed),
        DECODED.load(Ordering::Relaxed)
    );
}

/// The Manager client's reply decoder, likewise.
#[test]
fn fuzz_manager_response_decoder() {
    static INPUTS: AtomicUsize = AtomicUsize::new(0);
    static DECODED: AtomicUsize = AtomicUsize::new(0);
    runner()
        .run(&decoder_input(response()), |bytes| {
            INPUTS.fetch_add(1, Ordering::Relaxed);
            match decode_response(&bytes) {
                Ok(response) => {
                    DECODED.fetch_add(1, Ordering::Relaxed);
                    prop_assert!(round_trips(&response, decode_response), "{response:?}");
                }
                Err(message) => prop_assert!(message.starts_with("reply does not decode")),
            }
            Ok(())
        })
        .unwrap();
    eprintln!(
        "fuzz_manager_response_decoder: {} inputs, {} decoded",
        INPUTS.load(Ordering::Relaxed),
        DECODED.load(Ordering::Relaxed)
    );
}
