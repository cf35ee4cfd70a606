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
//! timeout (default [`DEFAULT_TIMEOUT`]) or the one passed to the `_timeout` variant.

use super::frame::{self, FrameError, HEADER_LEN};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// The bound on a blocking send or recv unless the caller gives another.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Atomic write size of a pipe on Linux.
pub const PIPE_BUF: usize = libc::PIPE_BUF;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PipeKind {
    /// socketpair(2): both ends read and write.
    Duplex,
    /// pipe(2): one read end, one write end.
    Simplex,
}

impl PipeKind {
    pub const ALL: [PipeKind; 2] = [PipeKind::Duplex, PipeKind::Simplex];
    pub fn name(self) -> &'static str {
        match self {
            PipeKind::Duplex => "duplex",
            PipeKind::Simplex => "simplex",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PipeError {
    /// Every write end is closed and everything sent has been read (Python's EOFError).
    #[error("end of stream: every write end of the pipe is closed")]
    Eof,
    /// This connection was closed by `close()` (Python's OSError on a closed handle).
    #[error("connection is closed")]
    Closed,
    #[error("this end of a simplex pipe cannot receive (it is the write end)")]
    NotReadable,
    #[error("this end of a simplex pipe cannot send (it is the read end)")]
    NotWritable,
    #[error("no message within {0:?}")]
    Timeout(Duration),
    #[error("the peer is gone: every read end of the pipe is closed")]
    PeerGone,
    #[error(transparent)]
    Corrupt(#[from] FrameError),
    #[error("message of {len} bytes exceeds the maximum of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("cannot encode message: {0}")]
    Encode(String),
    #[error("cannot decode message: {0}")]
    Decode(String),
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
    pub fd: RawFd,
    pub readable: bool,
    pub writable: bool,
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

    pub fn kind(&self) -> PipeKind {
        self.kind
    }
    pub fn readable(&self) -> bool {
        self.readable
    }
    pub fn writable(&self) -> bool {
        self.writable
    }
    pub fn is_closed(&self) -> bool {
        self.fd.is_none()
    }
    /// Sets the bound used by `send`/`recv` without an explicit timeout.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }
    /// Sets the largest payload this end accepts or sends.
    pub fn set_max_payload(&mut self, max: usize) {
        self.max_payload = max;
    }
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

    pub fn send_bytes(&self, payload: &[u8]) -> Result<(), PipeError> {
        self.send_bytes_timeout(payload, self.timeout)
    }

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
            &frame::encode(payload),
            Instant::now() + timeout,
            timeout,
            self.mid_frame_bound(timeout),
        )
    }

    pub fn recv_bytes(&self) -> Result<Vec<u8>, PipeError> {
        self.recv_bytes_timeout(self.timeout)
    }

    /// Receives one whole frame, checked. A stream that ends between frames is `Eof`; one
    /// that ends inside a frame, or a frame that fails its checks, is `Corrupt`.
    pub fn recv_bytes_timeout(&self, timeout: Duration) -> Result<Vec<u8>, PipeError> {
        let fd = self.fd()?;
        if !self.readable {
            return Err(PipeError::NotReadable);
        }
        let deadline = Instant::now() + timeout;
        let mid_frame = self.mid_frame_bound(timeout);
        let mut header = [0u8; HEADER_LEN];
        let got = read_exact(fd, &mut header, deadline, timeout, mid_frame)?;
        if got == 0 {
            return Err(PipeError::Eof);
        }
        if got < HEADER_LEN {
            return Err(FrameError::Truncated {
                read: got,
                expected: HEADER_LEN,
            }
            .into());
        }
        let header = frame::decode_header(&header, self.max_payload)?;
        let mut payload = vec![0u8; header.len];
        // The frame has started: its payload gets the mid-frame bound, and a stall before
        // its first byte is a cut frame, not a "no message" timeout.
        let payload_deadline = deadline.max(Instant::now() + mid_frame);
        let got = match read_exact(fd, &mut payload, payload_deadline, timeout, mid_frame) {
            Err(PipeError::Timeout(_)) => 0,
            other => other?,
        };
        if got < header.len {
            return Err(FrameError::Truncated {
                read: HEADER_LEN + got,
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

    pub fn recv<T: DeserializeOwned>(&self) -> Result<T, PipeError> {
        self.recv_timeout(self.timeout)
    }

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
            fd: fd.as_fd().as_raw_fd(),
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
            return Err(e.into());
        }
        if r > 0 {
            return Ok(true);
        }
        if timeout_ms == 0 || deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(false);
        }
    }
}

/// Reads until `buf` is full or the stream ends; returns the bytes read. Times out only
/// while waiting for data: before the first byte at `deadline`, after it at the later of
/// `deadline` and `mid_frame` from then.
fn read_exact(
    fd: &OwnedFd,
    buf: &mut [u8],
    mut deadline: Instant,
    timeout: Duration,
    mid_frame: Duration,
) -> Result<usize, PipeError> {
    let mut filled = 0;
    while filled < buf.len() {
        match nix::unistd::read(fd, &mut buf[filled..]) {
            Ok(0) => return Ok(filled),
            Ok(n) => {
                if filled == 0 {
                    deadline = deadline.max(Instant::now() + mid_frame);
                }
                filled += n;
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::EAGAIN) => {
                if !wait_fd(fd, libc::POLLIN, Some(deadline))? {
                    if filled == 0 {
                        return Err(PipeError::Timeout(timeout));
                    }
                    // Half a frame arrived and the rest never did: the writer died or
                    // stalled mid-frame.
                    return Err(FrameError::Truncated {
                        read: filled,
                        expected: buf.len(),
                    }
                    .into());
                }
            }
            Err(nix::errno::Errno::ECONNRESET) => return Ok(filled),
            Err(e) => return Err(std::io::Error::from(e).into()),
        }
    }
    Ok(filled)
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

/// Ignores SIGPIPE in this process, so a write to a pipe whose readers are gone returns
/// EPIPE (reported as `PeerGone`) instead of killing the writer.
pub fn ignore_sigpipe() {
    // SAFETY: setting a signal disposition to SIG_IGN is async-signal-safe and affects
    // only this process.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}
