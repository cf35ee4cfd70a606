//! Pipe basics across real processes (the conformance suite is in tests/pipe.rs).

use ipcbench::ipc::pipe::{pipe, Connection, ConnectionHandle, PipeError, PipeKind};
use ipcbench::process::{self, Options, StartMethod};
use ipcbench::register_entry;
use std::time::Duration;

fn echo_until_eof(handle: ConnectionHandle) -> Result<u32, String> {
    let conn = Connection::adopt(handle).map_err(|e| e.to_string())?;
    let mut n = 0;
    loop {
        match conn.recv_bytes() {
            Ok(bytes) => {
                conn.send_bytes(&bytes).map_err(|e| e.to_string())?;
                n += 1;
            }
            Err(PipeError::Eof) => return Ok(n),
            Err(e) => return Err(e.to_string()),
        }
    }
}
register_entry!("pipe-basics-echo", echo_until_eof);

#[test]
fn duplex_echo_then_eof_in_both_start_methods() {
    for method in StartMethod::ALL {
        let (mut parent_end, child_end) = pipe(PipeKind::Duplex).unwrap();
        let handle = child_end.handle().unwrap();
        let mut child = process::start(
            "pipe-basics-echo",
            &handle,
            Options::new("echo").method(method).inherit_fd(handle.fd),
        )
        .unwrap();
        drop(child_end);
        for size in [0usize, 1, 4096, 70_000] {
            let msg: Vec<u8> = (0..size).map(|i| i as u8).collect();
            parent_end.send_bytes(&msg).unwrap();
            assert_eq!(parent_end.recv_bytes().unwrap(), msg, "{method:?} {size}");
        }
        parent_end.close();
        assert!(matches!(
            parent_end.send_bytes(b"x"),
            Err(PipeError::Closed)
        ));
        assert_eq!(
            child.result::<u32>(Some(Duration::from_secs(20))).unwrap(),
            4
        );
    }
}

#[test]
fn simplex_ends_refuse_the_wrong_direction_and_time_out() {
    let (reader, writer) = pipe(PipeKind::Simplex).unwrap();
    assert!(matches!(
        reader.send_bytes(b"x"),
        Err(PipeError::NotWritable)
    ));
    assert!(matches!(writer.recv_bytes(), Err(PipeError::NotReadable)));
    assert!(matches!(
        reader.recv_bytes_timeout(Duration::from_millis(20)),
        Err(PipeError::Timeout(_))
    ));
    writer.send(&("hello", 5)).unwrap();
    assert_eq!(reader.recv::<(String, i32)>().unwrap(), ("hello".into(), 5));
    drop(writer);
    assert!(reader.recv_bytes().unwrap_err().is_eof());
}

#[test]
fn set_timeout_is_the_bound_of_a_recv_without_one() {
    let (mut reader, writer) = pipe(PipeKind::Simplex).unwrap();
    reader.set_timeout(Duration::from_millis(30));
    match reader.recv_bytes() {
        Err(PipeError::Timeout(bound)) => assert_eq!(bound, Duration::from_millis(30)),
        other => panic!("expected a timeout after the bound set, got {other:?}"),
    }
    drop(writer);
}

/// Every end is non-blocking, so that a deadline can bound each read and write (a
/// blocking fd would wait past it, for ever if the peer stalls), and close-on-exec, so
/// that an exec'd child gets only the ends it is handed.
#[test]
fn every_end_is_non_blocking_and_close_on_exec() {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
    for kind in PipeKind::ALL {
        let (a, b) = pipe(kind).unwrap();
        for end in [&a, &b] {
            let raw = end.raw_fd().unwrap();
            // SAFETY: `end` owns the fd and outlives this borrow.
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(raw) };
            let status = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL).unwrap());
            assert!(status.contains(OFlag::O_NONBLOCK), "{kind:?} fd {raw}");
            let flags = FdFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFD).unwrap());
            assert!(flags.contains(FdFlag::FD_CLOEXEC), "{kind:?} fd {raw}");
        }
    }
}
