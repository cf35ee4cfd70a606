//! Pipe conformance: each test runs on both kinds (duplex socketpair, simplex pipe) and
//! across real processes by both start methods, and proves it left nothing behind.

mod support;

use ipcbench::ipc::frame::{self, FrameError};
use ipcbench::ipc::pipe::{pipe, Connection, ConnectionHandle, PipeError, PipeKind};
use ipcbench::process::{self, hygiene, Options, StartMethod};
use ipcbench::register_entry;
use serde::{Deserialize, Serialize};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(30);
const SHORT: Duration = Duration::from_millis(100);

/// Runs `body` for every pipe kind and start method, checking for leaks after each.
fn for_each_kind_and_method(body: impl Fn(PipeKind, StartMethod)) {
    let _serial = support::serial();
    for kind in PipeKind::ALL {
        for method in StartMethod::ALL {
            let before = hygiene::Snapshot::take();
            body(kind, method);
            let leaks = before.leaks_since();
            assert!(
                leaks.is_empty(),
                "{kind:?} {method:?} left behind: {leaks:?}"
            );
        }
    }
}

/// (reader, writer) of a pipe of `kind`: for duplex either end does, so use (a, b).
fn ends(kind: PipeKind) -> (Connection, Connection) {
    pipe(kind).unwrap()
}

fn start_with(
    entry: &str,
    args: &impl Serialize,
    fds: &[i32],
    method: StartMethod,
) -> process::Child {
    let options = fds
        .iter()
        .fold(Options::new(entry).method(method), |o, &fd| {
            o.inherit_fd(fd)
        });
    process::start(entry, args, options).unwrap()
}

fn sizes() -> Vec<usize> {
    vec![0, 1, 7, 4084, 4085, 4096, 65_536, 1 << 20, 3]
}

fn message(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 31 + j * 7) as u8).collect()
}

fn send_sizes(handle: ConnectionHandle) -> Result<usize, String> {
    let conn = Connection::adopt(handle).map_err(|e| e.to_string())?;
    for (i, len) in sizes().into_iter().enumerate() {
        conn.send_bytes(&message(i, len))
            .map_err(|e| e.to_string())?;
    }
    Ok(sizes().len())
}
register_entry!("pipe-test-send-sizes", send_sizes);

#[test]
fn message_boundaries_are_kept_from_0_bytes_to_1_mib() {
    for_each_kind_and_method(|kind, method| {
        let (reader, writer) = ends(kind);
        let handle = writer.handle().unwrap();
        let mut child = start_with("pipe-test-send-sizes", &handle, &[handle.fd], method);
        drop(writer);
        for (i, len) in sizes().into_iter().enumerate() {
            let got = reader.recv_bytes_timeout(LONG).unwrap();
            assert_eq!(got.len(), len, "{kind:?} {method:?} message {i}");
            assert!(
                got == message(i, len),
                "{kind:?} {method:?} message {i} garbled"
            );
        }
        assert_eq!(child.result::<usize>(Some(LONG)).unwrap(), sizes().len());
        assert!(reader.recv_bytes_timeout(LONG).unwrap_err().is_eof());
    });
}

#[derive(Serialize, Deserialize)]
struct HoldArgs {
    writer: ConnectionHandle,
    go: ConnectionHandle,
}

/// Sends one message, then keeps its copy of the write end until told to go.
fn send_then_hold(args: HoldArgs) -> Result<(), String> {
    let writer = Connection::adopt(args.writer).map_err(|e| e.to_string())?;
    let go = Connection::adopt(args.go).map_err(|e| e.to_string())?;
    writer.send(&"hello").map_err(|e| e.to_string())?;
    go.recv_bytes_timeout(LONG).map_err(|e| e.to_string())?;
    Ok(())
}
register_entry!("pipe-test-send-then-hold", send_then_hold);

#[test]
fn eof_arrives_only_once_both_the_childs_and_the_parents_write_ends_are_closed() {
    for_each_kind_and_method(|kind, method| {
        for parent_closes_first in [true, false] {
            let (reader, mut writer) = ends(kind);
            let (go_rx, go_tx) = pipe(PipeKind::Simplex).unwrap();
            let args = HoldArgs {
                writer: writer.handle().unwrap(),
                go: go_rx.handle().unwrap(),
            };
            let mut child = start_with(
                "pipe-test-send-then-hold",
                &args,
                &[args.writer.fd, args.go.fd],
                method,
            );
            drop(go_rx);
            assert_eq!(reader.recv::<String>().unwrap(), "hello");
            let not_yet = |when: &str| {
                assert!(
                    matches!(reader.recv_bytes_timeout(SHORT), Err(PipeError::Timeout(_))),
                    "{kind:?} {method:?}: end of stream {when}"
                );
            };
            not_yet("while both copies of the write end are open");
            if parent_closes_first {
                writer.close();
                not_yet("while the child still holds its write end");
                go_tx.send_bytes(b"go").unwrap();
                child.result::<()>(Some(LONG)).unwrap();
            } else {
                go_tx.send_bytes(b"go").unwrap();
                child.result::<()>(Some(LONG)).unwrap();
                not_yet("while the parent still holds its write end");
                writer.close();
            }
            assert!(
                reader.recv_bytes_timeout(LONG).unwrap_err().is_eof(),
                "{kind:?} {method:?}: no end of stream once every write end is closed"
            );
            assert!(
                reader.poll(Duration::ZERO).unwrap(),
                "end of stream polls ready"
            );
        }
    });
}

fn try_send_on(handle: ConnectionHandle) -> Result<String, String> {
    let conn = Connection::adopt(handle).map_err(|e| e.to_string())?;
    Ok(match conn.send_bytes(b"x") {
        Ok(()) => "sent".into(),
        Err(e) => format!("{e:?}"),
    })
}
register_entry!("pipe-test-try-send", try_send_on);

#[test]
fn a_simplex_read_end_refuses_to_send_in_any_process_and_a_duplex_end_does_not() {
    for_each_kind_and_method(|kind, method| {
        let (first, second) = ends(kind);
        let handle = first.handle().unwrap();
        let mut child = start_with("pipe-test-try-send", &handle, &[handle.fd], method);
        drop(first);
        let outcome = child.result::<String>(Some(LONG)).unwrap();
        match kind {
            PipeKind::Simplex => {
                assert_eq!(outcome, "NotWritable");
                assert!(matches!(second.recv_bytes(), Err(PipeError::NotReadable)));
                assert!(matches!(second.poll(SHORT), Err(PipeError::NotReadable)));
            }
            PipeKind::Duplex => {
                assert_eq!(outcome, "sent");
                assert_eq!(second.recv_bytes_timeout(LONG).unwrap(), b"x");
            }
        }
    });
}

#[test]
fn closed_ends_are_errors_and_a_gone_reader_is_peer_gone() {
    for_each_kind_and_method(|kind, _| {
        let (mut reader, writer) = ends(kind);
        reader.close();
        assert!(reader.is_closed());
        assert!(matches!(reader.recv_bytes(), Err(PipeError::Closed)));
        assert!(matches!(reader.poll(SHORT), Err(PipeError::Closed)));
        assert!(matches!(reader.send_bytes(b"x"), Err(PipeError::Closed)));
        assert!(matches!(reader.handle(), Err(PipeError::Closed)));
        assert!(matches!(
            writer.send_bytes_timeout(b"x", LONG),
            Err(PipeError::PeerGone)
        ));
    });
}

#[test]
fn poll_times_out_when_idle_and_is_ready_when_a_message_waits() {
    for_each_kind_and_method(|kind, _| {
        let (reader, writer) = ends(kind);
        assert!(!reader.poll(SHORT).unwrap());
        writer.send(&42u32).unwrap();
        assert!(reader.poll(SHORT).unwrap());
        assert_eq!(reader.recv::<u32>().unwrap(), 42);
        assert!(!reader.poll(Duration::ZERO).unwrap());
    });
}

/// Writes raw bytes on a write end, bypassing the framing.
fn write_raw(conn: &Connection, bytes: &[u8]) {
    let fd = conn.raw_fd().unwrap();
    // SAFETY: writes from a valid slice to an fd the connection holds open.
    let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    assert_eq!(n, bytes.len() as isize);
}

#[test]
fn torn_or_foreign_bytes_are_reported_as_corrupt_never_returned_as_data() {
    for_each_kind_and_method(|kind, _| {
        // Not a frame at all.
        let (reader, writer) = ends(kind);
        write_raw(&writer, b"this is not a frame header");
        assert!(matches!(
            reader.recv_bytes_timeout(LONG),
            Err(PipeError::Corrupt(FrameError::BadMagic { .. }))
        ));
        // A frame whose payload was altered in flight.
        let (reader, writer) = ends(kind);
        let mut frame = frame::encode(b"payload");
        *frame.last_mut().unwrap() ^= 0xff;
        write_raw(&writer, &frame);
        assert!(matches!(
            reader.recv_bytes_timeout(LONG),
            Err(PipeError::Corrupt(FrameError::BadChecksum { .. }))
        ));
        // A frame cut short by its writer's end: the stream ends inside it.
        let (reader, writer) = ends(kind);
        let frame = frame::encode(&[7u8; 100]);
        write_raw(&writer, &frame[..50]);
        drop(writer);
        assert!(matches!(
            reader.recv_bytes_timeout(LONG),
            Err(PipeError::Corrupt(FrameError::Truncated {
                read: 50,
                expected: 112
            }))
        ));
        // A length field beyond the end's maximum.
        let (mut reader, writer) = ends(kind);
        reader.set_max_payload(16);
        writer
            .send_bytes(&[1u8; 17])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            reader.recv_bytes_timeout(LONG),
            Err(PipeError::Corrupt(FrameError::TooLong { len: 17, max: 16 }))
        ));
        let mut small = ends(kind).1;
        small.set_max_payload(4);
        assert!(matches!(
            small.send_bytes(b"12345"),
            Err(PipeError::TooLarge { len: 5, max: 4 })
        ));
    });
}

#[test]
fn adopt_rejects_an_fd_that_is_not_a_pipe_or_socket() {
    let _serial = support::serial();
    let file = std::fs::File::open("/dev/null").unwrap();
    use std::os::fd::AsRawFd;
    let handle = ConnectionHandle {
        fd: file.as_raw_fd(),
        readable: true,
        writable: false,
        kind: PipeKind::Simplex,
    };
    let err = Connection::adopt(handle).unwrap_err().to_string();
    assert!(err.contains("not a pipe or socket"), "{err}");
    let closed = ConnectionHandle { fd: 9999, ..handle };
    let err = Connection::adopt(closed).unwrap_err().to_string();
    assert!(err.contains("not open"), "{err}");
}

/// Writes the first half of a 1 MiB frame, pauses, then the rest: a slow writer.
fn send_slowly(handle: ConnectionHandle) -> Result<(), String> {
    let conn = Connection::adopt(handle).map_err(|e| e.to_string())?;
    let frame = frame::encode(&message(1, 1 << 20));
    let (first, rest) = frame.split_at(frame.len() / 2);
    let fd = conn.raw_fd().map_err(|e| e.to_string())?;
    for (part, pause) in [(first, true), (rest, false)] {
        let mut left = part;
        while !left.is_empty() {
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLOUT,
                revents: 0,
            };
            // SAFETY: one valid pollfd for the duration of the call.
            if unsafe { libc::poll(&mut pfd, 1, LONG.as_millis() as i32) } <= 0 {
                return Err("peer stopped reading".into());
            }
            // SAFETY: writes from a valid slice to the fd this connection holds.
            let n = unsafe { libc::write(fd, left.as_ptr().cast(), left.len()) };
            if n > 0 {
                left = &left[n as usize..];
            }
        }
        if pause {
            std::thread::sleep(SHORT * 3);
        }
    }
    Ok(())
}
register_entry!("pipe-test-send-slowly", send_slowly);

#[test]
fn a_short_recv_timeout_waits_for_a_message_to_start_and_never_cuts_one_in_half() {
    for_each_kind_and_method(|kind, method| {
        let (reader, writer) = ends(kind);
        let handle = writer.handle().unwrap();
        let mut child = start_with("pipe-test-send-slowly", &handle, &[handle.fd], method);
        drop(writer);
        // The frame starts within the timeout but pauses mid-way for longer than it.
        let got = loop {
            match reader.recv_bytes_timeout(SHORT) {
                Err(PipeError::Timeout(_)) => continue,
                other => break other,
            }
        };
        let got = got.unwrap_or_else(|e| panic!("{kind:?} {method:?}: {e}"));
        assert!(got == message(1, 1 << 20), "{kind:?} {method:?}: garbled");
        child.result::<()>(Some(LONG)).unwrap();
    });
}

#[test]
fn bench_workloads_and_raw_baselines_run_and_clean_up() {
    use ipcbench::measure::workloads::pipe as workload;
    use ipcbench::report::model::Placement;
    let _serial = support::serial();
    let before = hygiene::Snapshot::take();
    for placement in [Placement::SameCpu, Placement::CrossCpu] {
        assert_eq!(
            ipcbench::measure::calibration::pipe_roundtrip(placement, 50)
                .samples_ns
                .len(),
            50
        );
        assert_eq!(
            ipcbench::measure::calibration::shm_pingpong(placement, 50)
                .samples_ns
                .len(),
            50
        );
        for kind in PipeKind::ALL {
            assert_eq!(
                workload::round_trip(kind, 64, placement, 50)
                    .samples_ns
                    .len(),
                50
            );
        }
    }
    for size in [64, 1 << 20] {
        assert!(workload::throughput(size, 20, Placement::Unpinned) < LONG);
    }
    assert!(workload::memcpy(4096, 10) < LONG);
    let leaks = before.leaks_since();
    assert!(leaks.is_empty(), "left behind: {leaks:?}");
}
