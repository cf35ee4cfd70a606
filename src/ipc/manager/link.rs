//! The Manager's transport: a connected Unix stream socket carrying the suite's frames
//! (`ipc::frame`): a send is one `sendmsg`, a receive one `poll` and one `recv` of the
//! header and the payload together.
//!
//! # Why not `pipe::Connection`
//!
//! A `Connection` reads a frame's header and its payload with separate reads, and tries
//! a read before its poll now and then (both right for a pipe end several readers
//! share). A Manager connection has one reader at each end and one request in flight: a
//! receive here is one `poll` for input and one `recv` into a buffer the link keeps
//! (header and payload together, bytes beyond the frame kept for the next receive), a
//! send one `sendmsg` of the header and the payload from where they lie. An RPC makes 6
//! system calls where it made 8.2 (`strace -ff`, docs/notes/issue-19.md).
//!
//! # Why a poll, not a blocking recv bounded by `SO_RCVTIMEO`
//!
//! One system call per receive was tried first: a blocking socket, the bound as the
//! socket's receive timeout. It made the RPC *slower* across CPUs (2.10–2.22× the raw
//! request/reply against 1.86–1.93× with poll + recv, alternated runs). A thread asleep
//! in a stream socket's `recv` waits on the socket's queue with a wake function that
//! does not look at the event, so each time its peer takes a message this thread sent,
//! the kernel's write-space callback (`unix_write_space`, an EPOLLOUT wake) wakes it for
//! nothing: `perf record -e sched:sched_wakeup` counted one such wake-up per message. A
//! thread asleep in `poll` for POLLIN is only woken for input. The raw request/reply
//! baseline (blocking reads) pays those wake-ups too.
//!
//! # How the bound is kept
//!
//! The bounds are those of `Connection`: the caller's timeout bounds the wait for a
//! frame to *start* (or for room to start sending one); once its first byte has moved a
//! frame gets the link's own bound (at least), counted from that byte, and a stall
//! inside it is a cut frame (`FrameError::Truncated`, or a send error naming the torn
//! frame), never a "no message" timeout. A receive waits in `poll` until the deadline;
//! the socket is blocking and a send is bounded by the socket's own send timeout
//! (`SO_SNDTIMEO`, set only when a send's bound differs from the one set, so not on the
//! hot path); a zero bound is a non-blocking try (`MSG_DONTWAIT`: a zero `SO_SNDTIMEO`
//! would mean "wait for ever"). A signal (`EINTR`) waits again for what is left.
//!
//! # Memory
//!
//! The receive buffer starts at [`BUFFER`] bytes. A frame larger than it grows the
//! buffer only as its bytes arrive (`frame::next_capacity`), never to the length its
//! header claims, and the buffer shrinks back once such a frame has been taken.

use crate::ipc::frame::{self, FrameError, HEADER_LEN};
use crate::ipc::pipe::PipeError;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// What a link's receive buffer holds at rest: a Manager request or reply (tens of
/// bytes) and far more, so one `recv` takes a whole frame.
pub(crate) const BUFFER: usize = 16 << 10;

/// A buffer grown past this for a large frame is given back once the frame is taken.
const KEEP_AT_MOST: usize = 4 * frame::READ_CHUNK;

/// One end of a Manager connection (see the module docs).
#[derive(Debug)]
pub(crate) struct Link {
    fd: OwnedFd,
    /// Received bytes not yet taken are `buf[start..end]`; `buf.len()` is the room.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    max_payload: usize,
    /// The link's own bound, which a frame that has started gets (at least).
    bound: Duration,
    /// What `SO_SNDTIMEO` is set to now (None: not set by us).
    send_timeout: Option<Duration>,
}

impl Link {
    /// Takes a connected stream socket (a client's, or one the server accepted), makes it
    /// blocking, and gives it the bound `bound` and the largest payload `max_payload`.
    pub(crate) fn new(fd: OwnedFd, bound: Duration, max_payload: usize) -> std::io::Result<Link> {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        let flags = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL)?);
        if flags.contains(OFlag::O_NONBLOCK) {
            fcntl(&fd, FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK))?;
        }
        // The socket's send timeout is set by the first send that may wait (then only
        // when a send's bound differs).
        Ok(Link {
            fd,
            buf: vec![0; BUFFER],
            start: 0,
            end: 0,
            max_payload: max_payload.min(frame::MAX_PAYLOAD_LIMIT),
            bound,
            send_timeout: None,
        })
    }

    /// Sets the link's own bound (the one a started frame gets).
    pub(crate) fn set_bound(&mut self, bound: Duration) {
        self.bound = bound;
    }

    /// Sets the largest payload this end accepts or sends (at most
    /// [`frame::MAX_PAYLOAD_LIMIT`]).
    pub(crate) fn set_max_payload(&mut self, max: usize) {
        self.max_payload = max.min(frame::MAX_PAYLOAD_LIMIT);
    }

    /// Bytes the receive buffer holds room for now (for tests of the memory bound).
    #[cfg(test)]
    pub(crate) fn buffer_len(&self) -> usize {
        self.buf.len()
    }

    /// Sets `SO_SNDTIMEO` to `timeout`, unless it is set to that already.
    fn set_send_timeout(&mut self, timeout: Duration) -> std::io::Result<()> {
        if self.send_timeout == Some(timeout) {
            return Ok(());
        }
        // Zero would mean "no timeout": the caller uses MSG_DONTWAIT for a zero bound, and
        // anything shorter than the timeval's microsecond is rounded up to it.
        let seconds = timeout.as_secs().min(i32::MAX as u64);
        let mut micros = timeout.subsec_micros();
        if seconds == 0 && micros == 0 {
            micros = 1;
        }
        let value = libc::timeval {
            tv_sec: seconds as libc::time_t,
            tv_usec: micros as libc::suseconds_t,
        };
        // SAFETY: passes one valid timeval, of the size given, for the duration of the
        // call, on a socket this link owns.
        let r = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDTIMEO,
                (&value as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if r != 0 {
            self.send_timeout = None;
            return Err(std::io::Error::last_os_error());
        }
        self.send_timeout = Some(timeout);
        Ok(())
    }

    /// Receives one whole frame, checked, and returns its payload (valid until the next
    /// call). Waits at most `timeout` for a frame to start (zero: only what is already
    /// there). A stream that ends between frames is `Eof`; one that ends or stalls inside
    /// a frame, or a frame that fails its checks, is `Corrupt`.
    pub(crate) fn recv(&mut self, timeout: Duration) -> Result<&[u8], PipeError> {
        self.compact();
        let called = Instant::now();
        // Until the frame's first byte: the caller's bound. From it: the link's own (at
        // least), counted from that byte.
        let mut deadline = called + timeout;
        let mut started = self.end > self.start;
        if started {
            deadline = deadline.max(called + self.bound);
        }
        loop {
            if let Some(range) = self.whole_frame()? {
                self.start = range.end;
                return Ok(&self.buf[range]);
            }
            self.make_room();
            // Wait in poll for input only, then take what came in one recv (see the
            // module docs for why not a blocking recv). A passed deadline still polls
            // once, without waiting.
            if !crate::ipc::pipe::wait_raw_fd(self.fd.as_raw_fd(), libc::POLLIN, Some(deadline))? {
                return Err(if started {
                    self.cut()
                } else {
                    PipeError::Timeout(timeout)
                });
            }
            let room = &mut self.buf[self.end..];
            // SAFETY: receives at most `room.len()` bytes into the live buffer `room`, on
            // a socket this link owns.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    room.as_mut_ptr().cast(),
                    room.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                if !started {
                    started = true;
                    deadline = deadline.max(Instant::now() + self.bound);
                }
                self.end += n as usize;
                continue;
            }
            let errno = if n == 0 {
                None
            } else {
                Some(nix::errno::Errno::last())
            };
            match errno {
                // Ready but taken by nothing else (one reader): spurious, or a signal.
                Some(nix::errno::Errno::EINTR) => continue,
                Some(nix::errno::Errno::EAGAIN) if Instant::now() < deadline => continue,
                Some(nix::errno::Errno::EAGAIN) if !started => {
                    return Err(PipeError::Timeout(timeout))
                }
                // The end of the stream, a reset, or a stall inside a frame: the frame is
                // cut (or there was none).
                None | Some(nix::errno::Errno::ECONNRESET) | Some(nix::errno::Errno::EAGAIN) => {
                    return Err(self.cut());
                }
                Some(e) => return Err(std::io::Error::from(e).into()),
            }
        }
    }

    /// The error for a stream that stopped (ended, or stalled past its bound) with
    /// `buf[start..end]` received: end of stream between frames, else a cut frame.
    fn cut(&self) -> PipeError {
        let read = self.end - self.start;
        if read == 0 {
            return PipeError::Eof;
        }
        let expected = if read >= HEADER_LEN {
            match self.header() {
                Ok(header) => HEADER_LEN + header.len,
                Err(e) => return e.into(),
            }
        } else {
            HEADER_LEN
        };
        FrameError::Truncated { read, expected }.into()
    }

    fn header(&self) -> Result<frame::Header, FrameError> {
        let bytes: &[u8; HEADER_LEN] = self.buf[self.start..self.start + HEADER_LEN]
            .try_into()
            .expect("a header's bytes");
        frame::decode_header(bytes, self.max_payload)
    }

    /// The payload's range when a whole frame is buffered (checked); None when more bytes
    /// are needed.
    fn whole_frame(&self) -> Result<Option<std::ops::Range<usize>>, FrameError> {
        if self.end - self.start < HEADER_LEN {
            return Ok(None);
        }
        let header = self.header()?;
        let payload = self.start + HEADER_LEN;
        if self.end - payload < header.len {
            return Ok(None);
        }
        let range = payload..payload + header.len;
        frame::check_payload(header, &self.buf[range.clone()])?;
        Ok(Some(range))
    }

    /// Moves the bytes not yet taken to the front of the buffer (and gives back a buffer
    /// grown for a large frame once it is empty).
    fn compact(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > KEEP_AT_MOST {
                self.buf = vec![0; BUFFER];
            }
        } else if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    /// Room for the next `recv`: compacts a full buffer, then grows it for the frame under
    /// way only as its bytes have arrived (never to what its header claims at once).
    fn make_room(&mut self) {
        if self.end < self.buf.len() {
            return;
        }
        if self.start > 0 {
            self.compact();
            return;
        }
        // Full from the front: a frame larger than the buffer (its header is in, since
        // BUFFER > HEADER_LEN, and passed its checks in whole_frame).
        let Ok(header) = self.header() else {
            return;
        };
        let received = self.end - HEADER_LEN;
        let target = HEADER_LEN + frame::next_capacity(received, header.len);
        if target > self.buf.len() {
            self.buf.reserve_exact(target - self.buf.len());
            self.buf.resize(target, 0);
        }
    }

    /// Sends one frame of `payload`, waiting for room to start it at most `timeout` (zero:
    /// only if there is room now); a frame once started is finished within the link's own
    /// bound, never cut silently (a stall is an error naming the torn frame).
    pub(crate) fn send(&mut self, payload: &[u8], timeout: Duration) -> Result<(), PipeError> {
        if payload.len() > self.max_payload {
            return Err(PipeError::TooLarge {
                len: payload.len(),
                max: self.max_payload,
            });
        }
        let mut header = [0u8; HEADER_LEN];
        header[..4].copy_from_slice(&frame::MAGIC.to_le_bytes());
        header[4..8].copy_from_slice(&frame::length_field(payload.len())?.to_le_bytes());
        header[8..].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
        let total = HEADER_LEN + payload.len();
        let called = Instant::now();
        let mut deadline = called + timeout;
        let mut written = 0usize;
        let mut first = true;
        while written < total {
            let wait = if first {
                timeout
            } else {
                deadline.saturating_duration_since(Instant::now())
            };
            first = false;
            let mut flags = libc::MSG_NOSIGNAL;
            if wait.is_zero() {
                flags |= libc::MSG_DONTWAIT;
            } else {
                self.set_send_timeout(wait)?;
            }
            let (head, body) = if written < HEADER_LEN {
                (&header[written..], payload)
            } else {
                (&header[..0], &payload[written - HEADER_LEN..])
            };
            let mut iov = [
                libc::iovec {
                    iov_base: head.as_ptr() as *mut libc::c_void,
                    iov_len: head.len(),
                },
                libc::iovec {
                    iov_base: body.as_ptr() as *mut libc::c_void,
                    iov_len: body.len(),
                },
            ];
            // SAFETY: zeroed msghdr is valid (no name, no control); it points at two
            // iovecs over live slices that sendmsg only reads, for the call's duration.
            let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
            message.msg_iov = iov.as_mut_ptr();
            message.msg_iovlen = iov.len() as _;
            // SAFETY: as above, on a socket this link owns.
            let n = unsafe { libc::sendmsg(self.fd.as_raw_fd(), &message, flags) };
            if n > 0 {
                if written == 0 {
                    deadline = deadline.max(Instant::now() + self.bound);
                }
                written += n as usize;
                continue;
            }
            match nix::errno::Errno::last() {
                nix::errno::Errno::EINTR => {}
                nix::errno::Errno::EAGAIN if !wait.is_zero() && Instant::now() < deadline => {}
                nix::errno::Errno::EAGAIN if written == 0 => {
                    return Err(PipeError::Timeout(timeout))
                }
                nix::errno::Errno::EAGAIN => {
                    return Err(PipeError::Io(std::io::Error::other(format!(
                        "send stalled after {written} of {total} bytes: the reader stopped reading mid-frame, and the stream now holds a torn frame"
                    ))))
                }
                nix::errno::Errno::EPIPE | nix::errno::Errno::ECONNRESET => {
                    return Err(PipeError::PeerGone)
                }
                e => return Err(std::io::Error::from(e).into()),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    fn pair() -> (Link, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        (
            Link::new(OwnedFd::from(a), Duration::from_secs(5), 1 << 20).unwrap(),
            b,
        )
    }

    #[test]
    fn frames_split_over_writes_and_several_in_one_write_are_each_received_whole() {
        let (mut link, mut peer) = pair();
        let first = frame::encode(b"first");
        // A frame in three pieces, the last one carrying the start of the next frame.
        // Larger than the buffer keeps: it grows as the bytes come, and shrinks after.
        let large = vec![7u8; KEEP_AT_MOST + 40_000];
        let second = frame::encode(&large);
        let mut bytes = first.clone();
        bytes.extend_from_slice(&second);
        let (a, rest) = bytes.split_at(5);
        let (b, c) = rest.split_at(first.len() - 5 + 100);
        peer.write_all(a).unwrap();
        let writer = std::thread::spawn({
            let mut peer = peer.try_clone().unwrap();
            let (b, c) = (b.to_vec(), c.to_vec());
            move || {
                std::thread::sleep(Duration::from_millis(20));
                peer.write_all(&b).unwrap();
                std::thread::sleep(Duration::from_millis(20));
                peer.write_all(&c).unwrap();
            }
        });
        assert_eq!(link.recv(Duration::from_secs(5)).unwrap(), b"first");
        assert_eq!(link.recv(Duration::from_secs(5)).unwrap(), &large[..]);
        assert!(link.buffer_len() > KEEP_AT_MOST);
        writer.join().unwrap();
        // Two whole frames in one write: both, in order, the second with no wait.
        let mut two = frame::encode(b"a");
        two.extend_from_slice(&frame::encode(b"bc"));
        peer.write_all(&two).unwrap();
        assert_eq!(link.recv(Duration::from_secs(5)).unwrap(), b"a");
        assert_eq!(link.recv(Duration::ZERO).unwrap(), b"bc");
        // The buffer grown for the large frame was given back.
        assert_eq!(link.buffer_len(), BUFFER);
    }

    #[test]
    fn nothing_within_the_bound_is_a_timeout_and_a_closed_peer_is_end_of_stream() {
        let (mut link, peer) = pair();
        assert!(matches!(
            link.recv(Duration::ZERO),
            Err(PipeError::Timeout(d)) if d.is_zero()
        ));
        let started = Instant::now();
        assert!(matches!(
            link.recv(Duration::from_millis(50)),
            Err(PipeError::Timeout(_))
        ));
        assert!(started.elapsed() >= Duration::from_millis(50));
        drop(peer);
        assert!(matches!(
            link.recv(Duration::from_secs(5)),
            Err(PipeError::Eof)
        ));
        assert!(matches!(
            link.send(b"x", Duration::from_secs(5)),
            Err(PipeError::PeerGone)
        ));
    }

    /// A frame that starts and stalls is cut at the link's bound (not the caller's), as
    /// a truncated frame; a header claiming far more than arrived grows the buffer only
    /// as bytes arrive.
    #[test]
    fn a_stalled_frame_is_cut_at_the_links_bound_without_allocating_its_claim() {
        let (mut link, mut peer) = pair();
        link.set_bound(Duration::from_millis(200));
        link.set_max_payload(200 << 20);
        let mut header = [0u8; HEADER_LEN];
        header[..4].copy_from_slice(&frame::MAGIC.to_le_bytes());
        header[4..8].copy_from_slice(&(200u32 << 20).to_le_bytes());
        peer.write_all(&header).unwrap();
        peer.write_all(&[5u8; 40_000]).unwrap();
        let got = link.recv(Duration::from_millis(10));
        assert!(
            matches!(
                got,
                Err(PipeError::Corrupt(FrameError::Truncated { read, expected }))
                    if read == HEADER_LEN + 40_000 && expected == HEADER_LEN + (200 << 20)
            ),
            "{got:?}"
        );
        // Grown past its 16 KiB for the 40 000 bytes that came, no further.
        assert!(link.buffer_len() > BUFFER, "{}", link.buffer_len());
        assert!(
            link.buffer_len() <= HEADER_LEN + frame::READ_CHUNK,
            "{}",
            link.buffer_len()
        );
    }

    #[test]
    fn bad_frames_are_corrupt_and_large_payloads_are_refused_before_sending() {
        let (mut link, mut peer) = pair();
        link.set_max_payload(1000);
        assert!(matches!(
            link.send(&[0u8; 1001], Duration::from_secs(1)),
            Err(PipeError::TooLarge {
                len: 1001,
                max: 1000
            })
        ));
        let mut torn = frame::encode(b"hello");
        torn[HEADER_LEN] ^= 1;
        peer.write_all(&torn).unwrap();
        assert!(matches!(
            link.recv(Duration::from_secs(1)),
            Err(PipeError::Corrupt(FrameError::BadChecksum { .. }))
        ));
        let (mut link, mut peer) = pair();
        peer.write_all(b"not a frame at all").unwrap();
        assert!(matches!(
            link.recv(Duration::from_secs(1)),
            Err(PipeError::Corrupt(FrameError::BadMagic { .. }))
        ));
        // What the link sends is a frame any reader of the codec takes.
        let (mut link, mut peer) = pair();
        link.send(b"reply", Duration::from_secs(1)).unwrap();
        let mut got = vec![0u8; HEADER_LEN + 5];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(got, frame::encode(b"reply"));
    }

    /// A reader that stops reading mid-frame stalls the send: an error naming the torn
    /// frame within the link's bound, not a hang; with no byte out, a timeout.
    #[test]
    fn a_send_with_no_room_is_bounded() {
        let (mut link, _peer) = pair();
        link.set_bound(Duration::from_millis(100));
        link.set_max_payload(16 << 20);
        let big = vec![1u8; 8 << 20];
        let got = link.send(&big, Duration::from_millis(50));
        let text = format!("{got:?}");
        assert!(text.contains("send stalled after"), "{text}");
        // The socket's buffer is now full: nothing more starts.
        assert!(matches!(
            link.send(b"x", Duration::from_millis(20)),
            Err(PipeError::Timeout(_))
        ));
    }
}
