//! Pipe: two connected `Connection`s, as Python's `multiprocessing.Pipe(duplex)`.
//!
//! Flavors: duplex over `socketpair(2)` (both ends send and receive), simplex over
//! `pipe(2)` (the first end only receives, the second only sends). Messages are framed
//! (`ipc::frame`): boundaries are kept and a torn or interleaved frame is reported as
//! corrupt, never returned as data.
//!
//! Every fd is non-blocking and every wait is a `poll` with a deadline, so a reader that
//! loses a race for data to another process sharing the same end waits again instead of
//! blocking in read(2) forever. Every blocking call is bounded by the connection's
//! timeout (default `DEFAULT_TIMEOUT`) or the one passed to the `_timeout` variant.

use super::frame::{self, FrameError, HEADER_LEN};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// The bound on a blocking send or recv unless the caller gives another.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Atomic write size of a pipe on Linux.
pub const PIPE_BUF: usize = libc::PIPE_BUF;

/// Which system object carries a pipe, as Python's `Pipe(duplex)` chooses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PipeKind {
    /// socketpair(2): both ends read and write.
    Duplex,
    /// pipe(2): one read end, one write end.
    Simplex,
}

impl PipeKind {
    /// Both kinds, for the tests and benchmarks that run each.
    pub const ALL: [PipeKind; 2] = [PipeKind::Duplex, PipeKind::Simplex];
    /// The kind's name in flavors, figures and target names (`duplex`, `simplex`).
    pub fn name(self) -> &'static str {
        match self {
            PipeKind::Duplex => "duplex",
            PipeKind::Simplex => "simplex",
        }
    }
}

/// Why a pipe operation failed. A `Corrupt` stream has lost its framing for good.
#[derive(Debug, thiserror::Error)]
pub enum PipeError {
    /// Every write end is closed and everything sent has been read (Python's EOFError).
    #[error("end of stream: every write end of the pipe is closed")]
    Eof,
    /// This connection was closed by `close()` (Python's OSError on a closed handle).
    #[error("connection is closed")]
    Closed,
    /// A receive on the write end of a simplex pipe.
    #[error("this end of a simplex pipe cannot receive (it is the write end)")]
    NotReadable,
    /// A send on the read end of a simplex pipe.
    #[error("this end of a simplex pipe cannot send (it is the read end)")]
    NotWritable,
    /// Nothing arrived (or no room to send) within the bound given.
    #[error("no message within {0:?}")]
    Timeout(Duration),
    /// A send with every read end closed (EPIPE).
    #[error("the peer is gone: every read end of the pipe is closed")]
    PeerGone,
    /// The bytes read are not a whole, checked frame (a torn or interleaved write, or a
    /// writer that died mid-frame).
    #[error(transparent)]
    Corrupt(#[from] FrameError),
    /// A message above this end's maximum payload, refused before anything was sent.
    #[error("message of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// The message's length.
        len: usize,
        /// This end's maximum payload.
        max: usize,
    },
    /// A value that serde could not turn into JSON.
    #[error("cannot encode message: {0}")]
    Encode(String),
    /// A frame that is not the JSON of the type asked for.
    #[error("cannot decode message: {0}")]
    Decode(String),
    /// A system call on the pipe failed otherwise.
    #[error("pipe i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl PipeError {
    /// True for the end-of-stream condition (every writer gone).
    pub fn is_eof(&self) -> bool {
        matches!(self, PipeError::Eof)
    }
}

/// What a child needs to adopt an inherited end: pass it in the entry's arguments and its
/// fd in `Options::inherit_fd`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionHandle {
    /// The end's fd, valid in the child once inherited.
    pub fd: RawFd,
    /// Whether the end may receive.
    pub readable: bool,
    /// Whether the end may send.
    pub writable: bool,
    /// The pipe it belongs to.
    pub kind: PipeKind,
}

/// One end of a pipe.
#[derive(Debug)]
pub struct Connection {
    fd: Option<OwnedFd>,
    readable: bool,
    writable: bool,
    kind: PipeKind,
    timeout: Duration,
    max_payload: usize,
    /// Whether a receive polls before it reads.
    read_first: ReadFirst,
}

/// Whether a receive polls before it reads. Reading first costs no poll when a frame is
/// waiting (a stream) and a wasted read when none is (a request/reply, where the receive
/// waits anyway): after a read that found nothing, the next
/// [`ReadFirst::POLL_FIRST_AFTER_EMPTY`] receives poll first, then reading first is tried
/// again. Shared by [`Connection`] and the pipe Queue's get.
#[derive(Debug, Default)]
pub(crate) struct ReadFirst {
    poll_first_for: AtomicU32,
}

impl ReadFirst {
    const POLL_FIRST_AFTER_EMPTY: u32 = 8;

    /// Whether this receive polls first (and counts it against the run of polls).
    pub(crate) fn poll_first(&self) -> bool {
        let left = self.poll_first_for.load(Relaxed);
        if left > 0 {
            self.poll_first_for.store(left - 1, Relaxed);
        }
        left > 0
    }

    /// A read made first found nothing: poll first for a while.
    pub(crate) fn found_empty(&self) {
        self.poll_first_for
            .store(Self::POLL_FIRST_AFTER_EMPTY, Relaxed);
    }
}

/// Creates a pipe: `(a, b)`. Duplex: both ends send and receive. Simplex: `a` receives,
/// `b` sends (as Python's `Pipe(duplex=False)`).
pub fn pipe(kind: PipeKind) -> Result<(Connection, Connection), PipeError> {
    let (a, b) = match kind {
        PipeKind::Duplex => {
            use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
            socketpair(
                AddressFamily::Unix,
                SockType::Stream,
                None,
                SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            )
            .map_err(std::io::Error::from)?
        }
        PipeKind::Simplex => {
            use nix::fcntl::OFlag;
            nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
                .map_err(std::io::Error::from)?
        }
    };
    let duplex = kind == PipeKind::Duplex;
    Ok((
        Connection::new(a, true, duplex, kind),
        Connection::new(b, duplex, true, kind),
    ))
}

impl Connection {
    fn new(fd: OwnedFd, readable: bool, writable: bool, kind: PipeKind) -> Connection {
        Connection {
            fd: Some(fd),
            readable,
            writable,
            kind,
            timeout: DEFAULT_TIMEOUT,
            max_payload: frame::DEFAULT_MAX_PAYLOAD,
            read_first: ReadFirst::default(),
        }
    }

    /// The handle to pass to a child (with `Options::inherit_fd(handle.fd)`).
    pub fn handle(&self) -> Result<ConnectionHandle, PipeError> {
        Ok(ConnectionHandle {
            fd: self.fd()?.as_raw_fd(),
            readable: self.readable,
            writable: self.writable,
            kind: self.kind,
        })
    }

    /// Takes ownership of an end inherited from the parent. Call once per handle, in the
    /// child it was handed to; the fd is checked to be an open pipe or socket.
    pub fn adopt(handle: ConnectionHandle) -> Result<Connection, PipeError> {
        let stat = nix::sys::stat::fstat(
            // SAFETY: only used for the duration of this fstat call.
            unsafe { std::os::fd::BorrowedFd::borrow_raw(handle.fd) },
        )
        .map_err(|e| {
            std::io::Error::other(format!("inherited pipe fd {} is not open: {e}", handle.fd))
        })?;
        let file_type = stat.st_mode & libc::S_IFMT;
        if file_type != libc::S_IFIFO && file_type != libc::S_IFSOCK {
            return Err(PipeError::Io(std::io::Error::other(format!(
                "inherited fd {} is not a pipe or socket",
                handle.fd
            ))));
        }
        // SAFETY: the fd is open (checked) and was handed to this process for it to own;
        // the handle contract is that nothing else in this process adopts it.
        let fd = unsafe { OwnedFd::from_raw_fd(handle.fd) };
        set_nonblocking(&fd)?;
        Ok(Connection::new(
            fd,
            handle.readable,
            handle.writable,
            handle.kind,
        ))
    }

    /// Wraps a connected stream socket (a Unix-socket client or an accepted connection)
    /// as a duplex Connection, so every byte stream in the suite shares one framing and
    /// one deadline-bounded I/O path (the Manager's RPC uses this).
    pub fn from_socket(fd: OwnedFd) -> Result<Connection, PipeError> {
        set_nonblocking(&fd)?;
        Ok(Connection::new(fd, true, true, PipeKind::Duplex))
    }

    /// The kind of pipe this end belongs to.
    pub fn kind(&self) -> PipeKind {
        self.kind
    }
    /// Whether this end may receive (false for a simplex write end).
    pub fn readable(&self) -> bool {
        self.readable
    }
    /// Whether this end may send (false for a simplex read end).
    pub fn writable(&self) -> bool {
        self.writable
    }
    /// True once [`Connection::close`] was called on this end.
    pub fn is_closed(&self) -> bool {
        self.fd.is_none()
    }
    /// Sets the bound used by `send`/`recv` without an explicit timeout.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }
    /// Sets the largest payload this end accepts or sends, at most
    /// [`frame::MAX_PAYLOAD_LIMIT`] (a larger value is taken as that limit; check a
    /// configured value first with `frame::check_max_payload` to refuse it instead).
    pub fn set_max_payload(&mut self, max: usize) {
        self.max_payload = max.min(frame::MAX_PAYLOAD_LIMIT);
    }
    /// The largest payload this end accepts or sends.
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }
    /// The end's fd, to poll it beside others or pass it to a child; `Closed` once closed.
    pub fn raw_fd(&self) -> Result<RawFd, PipeError> {
        Ok(self.fd()?.as_raw_fd())
    }

    /// Closes this end. Later calls on it fail with `Closed`.
    pub fn close(&mut self) {
        self.fd = None;
    }

    fn fd(&self) -> Result<&OwnedFd, PipeError> {
        self.fd.as_ref().ok_or(PipeError::Closed)
    }

    /// True when a message (or end of stream) is ready within `timeout`.
    pub fn poll(&self, timeout: Duration) -> Result<bool, PipeError> {
        if !self.readable {
            return Err(PipeError::NotReadable);
        }
        wait_fd(self.fd()?, libc::POLLIN, Some(Instant::now() + timeout))
    }

    /// Sends one frame of `payload`, waiting for room at most the end's own bound.
    pub fn send_bytes(&self, payload: &[u8]) -> Result<(), PipeError> {
        self.send_bytes_timeout(payload, self.timeout)
    }

    /// Sends one frame of `payload`, waiting for room to start it at most `timeout`; a
    /// frame once started is finished (see the receiving side), never cut.
    pub fn send_bytes_timeout(&self, payload: &[u8], timeout: Duration) -> Result<(), PipeError> {
        let fd = self.fd()?;
        if !self.writable {
            return Err(PipeError::NotWritable);
        }
        if payload.len() > self.max_payload {
            return Err(PipeError::TooLarge {
                len: payload.len(),
                max: self.max_payload,
            });
        }
        write_all(
            fd,
            &frame::try_encode(payload)?,
            Instant::now() + timeout,
            timeout,
            self.mid_frame_bound(timeout),
        )
    }

    /// Receives one whole frame, checked, waiting at most the end's own bound. A stream
    /// that ends between frames is `Eof`; one that ends inside a frame, or a frame that
    /// fails its checks, is `Corrupt`.
    pub fn recv_bytes(&self) -> Result<Vec<u8>, PipeError> {
        self.recv_bytes_timeout(self.timeout)
    }

    /// Receives one whole frame, checked. A stream that ends between frames is `Eof`; one
    /// that ends inside a frame, or a frame that fails its checks, is `Corrupt`.
    ///
    /// The header's length is a claim, checked against this end's maximum and then
    /// trusted for nothing else: the payload buffer grows as bytes arrive (see
    /// `frame::next_capacity`), so a peer that claims 200 MiB and stops costs 64 KiB.
    pub fn recv_bytes_timeout(&self, timeout: Duration) -> Result<Vec<u8>, PipeError> {
        let fd = self.fd()?;
        if !self.readable {
            return Err(PipeError::NotReadable);
        }
        let mut clock = FrameClock {
            deadline: Instant::now() + timeout,
            mid_frame: self.mid_frame_bound(timeout),
            started: false,
            found_empty: false,
        };
        let mut header = [0u8; HEADER_LEN];
        let (got, stalled) = if self.read_first.poll_first() {
            if wait_fd(fd, libc::POLLIN, Some(clock.deadline))? {
                fill(fd, &mut header, &mut clock)?
            } else {
                (0, true)
            }
        } else {
            let filled = fill(fd, &mut header, &mut clock)?;
            if clock.found_empty {
                self.read_first.found_empty();
            }
            filled
        };
        if got == 0 {
            return Err(if stalled {
                PipeError::Timeout(timeout)
            } else {
                PipeError::Eof
            });
        }
        if got < HEADER_LEN {
            return Err(FrameError::Truncated {
                read: got,
                expected: HEADER_LEN,
            }
            .into());
        }
        let header = frame::decode_header(&header, self.max_payload)?;
        // The frame has started: its payload gets the mid-frame bound from now, and again
        // from its first byte; a stall anywhere in it is a cut frame, not a "no message"
        // timeout.
        clock.deadline = clock.deadline.max(Instant::now() + clock.mid_frame);
        clock.started = false;
        let payload = read_payload(fd, header.len, &mut clock)?;
        if payload.len() < header.len {
            return Err(FrameError::Truncated {
                read: HEADER_LEN + payload.len(),
                expected: HEADER_LEN + header.len,
            }
            .into());
        }
        frame::check_payload(header, &payload)?;
        Ok(payload)
    }

    /// How long a frame that has started may take to finish. A caller's timeout bounds
    /// the wait for a message to *start* (or for room to start sending one); cutting a
    /// frame in half at that timeout would desynchronise the stream for good, so once
    /// the first byte has moved the frame gets the connection's own bound (at least).
    fn mid_frame_bound(&self, timeout: Duration) -> Duration {
        self.timeout.max(timeout)
    }

    /// Sends a serde value (JSON in a frame).
    pub fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), PipeError> {
        let bytes = serde_json::to_vec(value).map_err(|e| PipeError::Encode(e.to_string()))?;
        self.send_bytes(&bytes)
    }

    /// Receives a serde value sent with [`Connection::send`], waiting at most the end's
    /// own bound.
    pub fn recv<T: DeserializeOwned>(&self) -> Result<T, PipeError> {
        self.recv_timeout(self.timeout)
    }

    /// Receives a serde value, waiting at most `timeout` for it to start.
    pub fn recv_timeout<T: DeserializeOwned>(&self, timeout: Duration) -> Result<T, PipeError> {
        let bytes = self.recv_bytes_timeout(timeout)?;
        serde_json::from_slice(&bytes).map_err(|e| PipeError::Decode(e.to_string()))
    }
}

fn set_nonblocking(fd: &OwnedFd) -> std::io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// Waits until `fd` is ready for `events` or the deadline passes. Returns Ok(false) on
/// timeout; readiness includes hang-up and error (the next read or write reports them).
pub(crate) fn wait_fd(
    fd: &OwnedFd,
    events: libc::c_short,
    deadline: Option<Instant>,
) -> Result<bool, PipeError> {
    Ok(wait_raw_fd(fd.as_fd().as_raw_fd(), events, deadline)?)
}

/// [`wait_fd`] on a raw descriptor the caller keeps open for the call (a passed deadline
/// still polls once; EINTR is retried).
pub(crate) fn wait_raw_fd(
    fd: RawFd,
    events: libc::c_short,
    deadline: Option<Instant>,
) -> std::io::Result<bool> {
    loop {
        let timeout_ms = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                // Round up so a sub-millisecond remainder still waits.
                left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
            }
        };
        let mut pfd = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let r = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if r > 0 {
            return Ok(true);
        }
        if timeout_ms == 0 || deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(false);
        }
    }
}

/// The bound on reading one frame: `deadline` until its first byte arrives, then moved
/// (once) to at least `mid_frame` after that byte.
struct FrameClock {
    deadline: Instant,
    mid_frame: Duration,
    started: bool,
    /// Whether a read before the frame's first byte found nothing there.
    found_empty: bool,
}

/// Reads until `buf` is full, the stream ends or the clock runs out. Returns the bytes
/// read and whether it stopped because the clock ran out (`true`) rather than because
/// the buffer filled or the stream ended.
fn fill(fd: &OwnedFd, buf: &mut [u8], clock: &mut FrameClock) -> Result<(usize, bool), PipeError> {
    let mut filled = 0;
    while filled < buf.len() {
        match nix::unistd::read(fd, &mut buf[filled..]) {
            Ok(0) => return Ok((filled, false)),
            Ok(n) => {
                if !clock.started {
                    clock.started = true;
                    clock.deadline = clock.deadline.max(Instant::now() + clock.mid_frame);
                }
                filled += n;
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::EAGAIN) => {
                clock.found_empty |= !clock.started;
                if !wait_fd(fd, libc::POLLIN, Some(clock.deadline))? {
                    // Before any byte: no message in time. After one: the writer died or
                    // stalled mid-frame; the caller says which.
                    return Ok((filled, true));
                }
            }
            Err(nix::errno::Errno::ECONNRESET) => return Ok((filled, false)),
            Err(e) => return Err(std::io::Error::from(e).into()),
        }
    }
    Ok((filled, false))
}

/// Reads a `len`-byte payload into a buffer that grows only as bytes arrive (see
/// [`frame::next_capacity`]). Returns fewer than `len` bytes when the stream ended or the
/// clock ran out first.
fn read_payload(fd: &OwnedFd, len: usize, clock: &mut FrameClock) -> Result<Vec<u8>, PipeError> {
    let mut payload: Vec<u8> = Vec::new();
    while payload.len() < len {
        let received = payload.len();
        let target = frame::next_capacity(received, len);
        payload.reserve_exact(target - received);
        payload.resize(target, 0);
        let (got, stalled) = fill(fd, &mut payload[received..], clock)?;
        payload.truncate(received + got);
        if payload.len() < target || stalled {
            break;
        }
    }
    Ok(payload)
}

/// Writes all of `bytes`. Times out at `deadline` only before the first byte; once part
/// of a frame is out, the rest gets `mid_frame` more (see `Connection::mid_frame_bound`).
fn write_all(
    fd: &OwnedFd,
    bytes: &[u8],
    mut deadline: Instant,
    timeout: Duration,
    mid_frame: Duration,
) -> Result<(), PipeError> {
    let mut written = 0;
    while written < bytes.len() {
        match write_nosignal(fd, &bytes[written..]) {
            Ok(n) => {
                if written == 0 {
                    deadline = deadline.max(Instant::now() + mid_frame);
                }
                written += n;
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::EAGAIN) => {
                if !wait_fd(fd, libc::POLLOUT, Some(deadline))? {
                    if written == 0 {
                        return Err(PipeError::Timeout(timeout));
                    }
                    return Err(PipeError::Io(std::io::Error::other(format!(
                        "send stalled after {written} of {} bytes: the reader stopped reading mid-frame, and the stream now holds a torn frame",
                        bytes.len()
                    ))));
                }
            }
            Err(nix::errno::Errno::EPIPE) | Err(nix::errno::Errno::ECONNRESET) => {
                return Err(PipeError::PeerGone)
            }
            Err(e) => return Err(std::io::Error::from(e).into()),
        }
    }
    Ok(())
}

/// write(2) that cannot raise SIGPIPE: send(MSG_NOSIGNAL) on sockets; on pipes SIGPIPE is
/// ignored process-wide by the suite (see `process::entry`), so EPIPE comes back instead.
fn write_nosignal(fd: &OwnedFd, bytes: &[u8]) -> nix::Result<usize> {
    let raw = fd.as_raw_fd();
    // SAFETY: writes from a valid slice to an fd we hold.
    let r = unsafe { libc::send(raw, bytes.as_ptr().cast(), bytes.len(), libc::MSG_NOSIGNAL) };
    if r >= 0 {
        return Ok(r as usize);
    }
    match nix::errno::Errno::last() {
        nix::errno::Errno::ENOTSOCK => nix::unistd::write(fd, bytes),
        e => Err(e),
    }
}

/// SIGPIPE ignored, so a write to a pipe whose readers are gone returns EPIPE (reported as
/// `PeerGone`); it lives in `process`, which every child's start needs.
pub(crate) use crate::process::ignore_sigpipe;
