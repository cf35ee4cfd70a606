//! The pipe flavor, as multiprocessing.Queue builds it: one pipe(2) carrying framed
//! messages, a process-shared lock on the write side (so frames larger than PIPE_BUF from
//! several producers never interleave) and one on the read side (so one consumer reads a
//! whole frame), plus committed and taken frame counts for maxsize and qsize (where Python
//! has a BoundedSemaphore).
//!
//! Difference from Python: there is no feeder thread, the producer writes the frame
//! itself. So a put of a message larger than the free pipe buffer waits (bounded) for a
//! consumer to read; the pipe is enlarged to 1 MiB where the system allows it to make that
//! rare. A user timeout bounds waiting for room, data and locks; once a frame's first byte
//! has moved it is always finished (within the block limit), never cut by a short timeout.
//!
//! Dead peers: the locks are robust mutexes, so a process killed while holding one does
//! not wedge the others, and the next holder finds out. Every read(2) and write(2) is
//! accounted in the shared control block (bytes moved, calls begun and finished, which
//! process is moving which frame), so the next holder can tell exactly where the dead one
//! stopped — even when it died between a system call's return and its bookkeeping, by
//! comparing the pipe's byte count (FIONREAD) with the other side's books while that side
//! has no call in flight:
//! * before the first byte of its frame, or after the last: nothing is torn. A frame that
//!   went out whole is counted as committed; one a consumer read whole is counted as taken
//!   (its message is gone with its consumer, as in Python).
//! * in the middle of a frame: the stream is torn for good (the next frame would follow a
//!   prefix, and a reader would take payload bytes for a header). The queue is then
//!   **poisoned**: every later put and get, in every process, fails at once with
//!   [`QueueError::Poisoned`] naming the dead pid, as Python's queue is unusable after its
//!   feeder died mid-message. A consumer waiting inside a frame whose producer died does
//!   the producer's recovery itself instead of waiting out the block limit.
//!
//! Counting: `qsize` is frames committed minus frames taken, each updated under its lock
//! after the frame moved (and by the recovery of a dead holder), so a process killed while
//! it waits holds no permit and one killed mid-frame is accounted by its recovery. A put
//! waits for room holding nothing, then re-checks the count under the write lock (where
//! it can only fall) before writing, so maxsize still bounds the queue. `qsize` may
//! under-count by the puts whose frame is out but not yet counted, and over-count by the
//! gets reading a frame; it is exact when no put or get is in progress.
//!
//! Waiting consumers hold no lock: a get polls the read end for data with its timeout,
//! then takes the read lock, and reads one whole frame only if data is still there
//! (otherwise another consumer won it, and it waits again within the same deadline). So a
//! consumer blocked in `get` never makes another's `get_nowait` wait.

use super::sync::{Gate, RobustMutex};
use super::{
    check_size, process_is_dead, Config, Flavor, HandleKind, Queue, QueueError, QueueHandle, Role,
    Wait, LOCK_GRACE,
};
use crate::ipc::frame::{self, HEADER_LEN};
use crate::ipc::pipe::{pipe, Connection, PipeError, PipeKind, ReadFirst};
use crate::schedule::{point, wait_point};
use crate::sys::shm::{Shared, ShmSafe};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

/// How often a consumer waiting inside a frame checks that the frame's producer lives.
const MID_FRAME_CHECK: Duration = Duration::from_millis(20);
/// How long a recovery waits for the other side to have no system call in flight (a
/// live process leaves one within microseconds; a dead one never does).
const QUIET_WAIT: Duration = Duration::from_secs(1);

const OP_PUT: u64 = 1;
const OP_GET: u64 = 2;

/// The books of one side of the pipe (all writers, or all readers).
#[repr(C)]
struct Side {
    /// Bytes moved by this side's system calls, as recorded after each call.
    bytes: AtomicU64,
    /// System calls begun and recorded: equal when no call of this side is in flight.
    begun: AtomicU64,
    done: AtomicU64,
    /// The process moving a frame now, 0 when none (set before its first byte moves,
    /// cleared after its last is counted).
    pid: AtomicI32,
    /// That frame's number: the committed (or taken) count once it has moved whole.
    seq: AtomicU64,
    /// That frame's length with its header; 0 on the read side until the header is read.
    frame_len: AtomicU64,
    /// Bytes of that frame moved, as recorded.
    moved: AtomicU64,
}

#[repr(C)]
struct Control {
    read_lock: RobustMutex,
    write_lock: RobustMutex,
    /// Bumped when room may have appeared (a frame taken) or the queue was poisoned.
    room: Gate,
    /// Frames whose every byte is in the pipe (under the write lock).
    committed: AtomicU64,
    /// Frames read whole (under the read lock).
    taken: AtomicU64,
    write: Side,
    read: Side,
    /// 0, or the dead pid (low 32 bits) and OP_PUT / OP_GET (high bits) that tore the
    /// stream.
    poisoned: AtomicU64,
    /// Config fixed at creation, so an opener cannot disagree with the creator.
    maxsize: AtomicU64,
    max_message: AtomicU64,
    /// Non-zero only in the test subject made by [`PipeQueue::without_read_lock`].
    unlocked_reads: AtomicU32,
}

// SAFETY: robust mutexes (see their impl), a gate and atomics; all valid zeroed until
// `init`.
unsafe impl ShmSafe for Control {}

impl Control {
    /// `Err(Poisoned)` once a dead process tore the stream.
    fn check(&self) -> Result<(), QueueError> {
        match self.poisoned.load(SeqCst) {
            0 => Ok(()),
            word => Err(QueueError::Poisoned {
                pid: word as u32 as i32,
                op: if word >> 32 == OP_GET { "get" } else { "put" },
            }),
        }
    }

    fn poison(&self, pid: i32, op: u64) {
        let _ =
            self.poisoned
                .compare_exchange(0, (op << 32) | u64::from(pid as u32), SeqCst, SeqCst);
        self.room.bump();
    }

    /// Frames in the pipe and not yet taken.
    fn items(&self) -> u64 {
        let taken = self.taken.load(SeqCst);
        self.committed.load(SeqCst).saturating_sub(taken)
    }
}

/// The capacity the queue asks for its pipe: a 1 MiB put then completes without a reader.
pub(crate) const PIPE_CAPACITY: usize = 1 << 20;

/// Asks for [`PIPE_CAPACITY`] on the pipe of `fd`, best effort: the kernel refuses above
/// /proc/sys/fs/pipe-max-size, and the default size then stands. The raw pipe stream
/// calibration widens its pipe the same way, so the queue is divided by a pipe of its
/// own size.
pub(crate) fn widen_pipe(fd: std::os::fd::RawFd) {
    // SAFETY: fcntl on a descriptor the caller owns; F_SETPIPE_SZ changes only its size.
    unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, PIPE_CAPACITY as libc::c_int) };
}

pub(crate) struct PipeQueue {
    reader: Connection,
    writer: Connection,
    control: Option<Shared<Control>>,
    config: Config,
    /// Whether a get polls before it reads (per handle).
    read_first: ReadFirst,
}

/// What a read does while no byte of its frame has come.
#[derive(Clone, Copy)]
enum BeforeFirstByte<'a> {
    /// Waits for data until the caller's deadline (the lock-free reads of the test subject).
    Wait(&'a Wait),
    /// Gives up at once with `Empty`: the caller holds the read lock and waits without it.
    GiveUp,
    /// The frame has begun: waits for the rest.
    MidFrame,
}

impl PipeQueue {
    pub(crate) fn create(config: &Config) -> Result<PipeQueue, QueueError> {
        let mut config = *config;
        if config.max_message == 0 {
            config.max_message = crate::ipc::frame::DEFAULT_MAX_PAYLOAD;
        }
        max_message_within_limit(config.max_message)?;
        let (reader, writer) = pipe(PipeKind::Simplex).map_err(pipe_error)?;
        widen_pipe(writer.raw_fd().map_err(pipe_error)?);
        let control: Shared<Control> = Shared::create("queue-pipe", 0)?;
        control.read_lock.init()?;
        control.write_lock.init()?;
        control.maxsize.store(config.maxsize as u64, SeqCst);
        control.max_message.store(config.max_message as u64, SeqCst);
        Ok(PipeQueue::assemble(reader, writer, control, config))
    }

    /// A **test subject**, not a queue to use: gets skip the read-side lock, so consumers
    /// sharing the read end can each take part of a frame (what the
    /// `queue-many-consumers/no-read-lock` scenario must catch). Every process that opens
    /// it inherits the defect, as the flag lives in the shared control block.
    pub(crate) fn without_read_lock(config: &Config) -> Result<PipeQueue, QueueError> {
        let queue = PipeQueue::create(config)?;
        queue.control()?.unlocked_reads.store(1, SeqCst);
        Ok(queue)
    }

    pub(crate) fn open(handle: QueueHandle) -> Result<PipeQueue, QueueError> {
        let HandleKind::Pipe {
            reader,
            writer,
            control,
        } = handle.kind
        else {
            return Err(QueueError::WrongFlavor {
                expected: "pipe",
                found: handle.flavor().name(),
            });
        };
        let control: Shared<Control> = Shared::open(&control)?;
        let reader = Connection::adopt(reader).map_err(pipe_error)?;
        let writer = Connection::adopt(writer).map_err(pipe_error)?;
        let mut config = handle.config;
        config.maxsize = control.maxsize.load(SeqCst) as usize;
        config.max_message = control.max_message.load(SeqCst) as usize;
        max_message_within_limit(config.max_message)
            .map_err(|e| QueueError::Corrupt(format!("shared memory {}: {e}", control.name())))?;
        Ok(PipeQueue::assemble(reader, writer, control, config))
    }

    fn assemble(
        mut reader: Connection,
        mut writer: Connection,
        control: Shared<Control>,
        config: Config,
    ) -> PipeQueue {
        reader.set_max_payload(config.max_message);
        writer.set_max_payload(config.max_message);
        PipeQueue {
            reader,
            writer,
            control: Some(control),
            config,
            read_first: ReadFirst::default(),
        }
    }

    fn control(&self) -> Result<&Control, QueueError> {
        self.control.as_deref().ok_or(QueueError::Closed)
    }

    fn limit(&self) -> u32 {
        match self.config.maxsize {
            0 => u32::MAX,
            n => n.min(u32::MAX as usize) as u32,
        }
    }
}

fn pipe_error(e: PipeError) -> QueueError {
    match e {
        PipeError::Closed => QueueError::Closed,
        PipeError::Eof | PipeError::PeerGone => QueueError::Disconnected,
        PipeError::Corrupt(frame) => QueueError::Corrupt(frame.to_string()),
        PipeError::TooLarge { len, max } => QueueError::TooLarge { len, max },
        other => QueueError::transport("pipe", other),
    }
}

fn my_pid() -> i32 {
    std::process::id() as i32
}

/// Waits until `fd` is ready for `events` (or hung up) or `deadline` passes (a passed
/// deadline still checks once).
fn poll_fd(fd: RawFd, events: libc::c_short, deadline: Instant) -> Result<bool, QueueError> {
    Ok(crate::ipc::pipe::wait_raw_fd(fd, events, Some(deadline))?)
}

/// Bytes in the pipe now.
fn bytes_in_pipe(fd: RawFd) -> Option<u64> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through a valid pointer.
    let r = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    (r == 0 && n >= 0).then_some(n as u64)
}

/// One read(2) or write(2), accounted on `side` (and on its frame when `track`).
fn accounted(side: &Side, track: bool, call: impl FnOnce() -> isize) -> std::io::Result<usize> {
    side.begun.fetch_add(1, SeqCst);
    let r = call();
    let error = (r < 0).then(std::io::Error::last_os_error);
    if r > 0 {
        side.bytes.fetch_add(r as u64, SeqCst);
        if track {
            side.moved.fetch_add(r as u64, SeqCst);
        }
    }
    side.done.fetch_add(1, SeqCst);
    match error {
        Some(e) => Err(e),
        None => Ok(r as usize),
    }
}

/// `side`'s recorded bytes and the bytes in the pipe, read together while no system call
/// of `side` is in flight; None when that does not happen within [`QUIET_WAIT`] (a process
/// died inside one).
fn quiet(side: &Side, fd: RawFd) -> Option<(u64, u64)> {
    let deadline = Instant::now() + QUIET_WAIT;
    loop {
        let (begun, done) = (side.begun.load(SeqCst), side.done.load(SeqCst));
        if begun == done {
            let bytes = side.bytes.load(SeqCst);
            let in_pipe = bytes_in_pipe(fd)?;
            if side.done.load(SeqCst) == done && side.begun.load(SeqCst) == begun {
                return Some((bytes, in_pipe));
            }
        }
        let dead = side.pid.load(SeqCst);
        if Instant::now() >= deadline || (dead != 0 && process_is_dead(dead)) {
            return None;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

impl PipeQueue {
    /// Called holding the write lock when its previous holder died: settles the frame it
    /// was writing. Whole or not begun: counted or forgotten. Torn: the queue is poisoned.
    fn recover_writer(&self, c: &Control, fd: RawFd) -> Result<(), QueueError> {
        let w = &c.write;
        let pid = w.pid.load(SeqCst);
        if pid == 0 {
            return c.check();
        }
        let mut unrecorded = 0;
        if w.begun.load(SeqCst) != w.done.load(SeqCst) {
            // It died around a write(2) whose bytes it never recorded: in the pipe are
            // (written + unrecorded) - read, with the readers' books read while quiet.
            let Some((read, in_pipe)) = quiet(&c.read, fd) else {
                c.poison(pid, OP_PUT);
                return c.check();
            };
            let x = i128::from(in_pipe) + i128::from(read) - i128::from(w.bytes.load(SeqCst));
            let room = w.frame_len.load(SeqCst) - w.moved.load(SeqCst);
            if x < 0 || x > i128::from(room) {
                c.poison(pid, OP_PUT);
                return c.check();
            }
            unrecorded = x as u64;
            w.bytes.fetch_add(unrecorded, SeqCst);
            w.done.store(w.begun.load(SeqCst), SeqCst);
        }
        let moved = w.moved.load(SeqCst) + unrecorded;
        if moved == w.frame_len.load(SeqCst) {
            c.committed.store(w.seq.load(SeqCst), SeqCst);
        } else if moved != 0 {
            c.poison(pid, OP_PUT);
        }
        w.pid.store(0, SeqCst);
        c.check()
    }

    /// Called holding the read lock when its previous holder died: settles the frame it
    /// was reading. Whole: taken (lost with its consumer, as in Python). Not begun:
    /// nothing. Part of it: the rest is in the pipe, and the queue is poisoned.
    fn recover_reader(&self, c: &Control, fd: RawFd) -> Result<(), QueueError> {
        let r = &c.read;
        let pid = r.pid.load(SeqCst);
        if pid == 0 {
            return c.check();
        }
        let mut unrecorded = 0;
        if r.begun.load(SeqCst) != r.done.load(SeqCst) {
            // In the pipe are written - (read + unrecorded), with the writers' books read
            // while quiet.
            let Some((written, in_pipe)) = quiet(&c.write, fd) else {
                c.poison(pid, OP_GET);
                return c.check();
            };
            let y = i128::from(written) - i128::from(in_pipe) - i128::from(r.bytes.load(SeqCst));
            if y < 0 {
                c.poison(pid, OP_GET);
                return c.check();
            }
            unrecorded = y as u64;
            r.bytes.fetch_add(unrecorded, SeqCst);
            r.done.store(r.begun.load(SeqCst), SeqCst);
        }
        let moved = r.moved.load(SeqCst) + unrecorded;
        let len = r.frame_len.load(SeqCst);
        if len != 0 && moved == len {
            c.taken.store(r.seq.load(SeqCst), SeqCst);
            c.room.bump();
        } else if moved != 0 {
            // Includes a header read whole but not yet recorded: its length is unknown.
            c.poison(pid, OP_GET);
        }
        r.pid.store(0, SeqCst);
        c.check()
    }

    /// Writes one whole frame, holding the write lock.
    fn write_frame(
        &self,
        c: &Control,
        fd: RawFd,
        bytes: &[u8],
        wait: &Wait,
    ) -> Result<(), QueueError> {
        let w = &c.write;
        let me = my_pid();
        w.seq.store(c.committed.load(SeqCst) + 1, SeqCst);
        w.frame_len.store(bytes.len() as u64, SeqCst);
        w.moved.store(0, SeqCst);
        w.pid.store(me, SeqCst);
        let mut sent = 0;
        let mut deadline = wait.deadline;
        let failed = loop {
            if sent == bytes.len() {
                break None;
            }
            let rest = &bytes[sent..];
            // SAFETY: writes from a valid slice to an fd this queue owns.
            match accounted(w, true, || unsafe {
                libc::write(fd, rest.as_ptr().cast(), rest.len())
            }) {
                Ok(n) => {
                    if sent + n < bytes.len() {
                        // Part of the frame is out: a reader may take it before the rest.
                        point("queue-pipe/put:mid-frame");
                    }
                    if sent == 0 {
                        // Once a frame has started it is always finished, whatever the
                        // caller's timeout (within the block limit).
                        deadline = deadline.max(wait.finish_deadline());
                    }
                    sent += n;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    match poll_fd(fd, libc::POLLOUT, deadline) {
                        Ok(true) => {}
                        Ok(false) if sent == 0 => break Some(wait.expired("put", QueueError::Full)),
                        Ok(false) => {
                            break Some(QueueError::Other(format!(
                                "put stalled after {sent} of {} bytes: no consumer read within the block limit",
                                bytes.len()
                            )))
                        }
                        Err(e) => break Some(e),
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => {
                    break Some(QueueError::Disconnected)
                }
                Err(e) => break Some(e.into()),
            }
        };
        match failed {
            None => c.committed.store(w.seq.load(SeqCst), SeqCst),
            // Half a frame is out and the rest never will be: torn, by this process.
            Some(_) if sent != 0 => c.poison(me, OP_PUT),
            Some(_) => {}
        }
        w.pid.store(0, SeqCst);
        match failed {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }

    /// Reads one whole frame (holding the read lock unless this is the lockless test
    /// subject, `track` false).
    fn read_frame(
        &self,
        c: &Control,
        fd: RawFd,
        wait: &Wait,
        track: bool,
    ) -> Result<Vec<u8>, QueueError> {
        let r = &c.read;
        if track {
            r.seq.store(c.taken.load(SeqCst) + 1, SeqCst);
            r.frame_len.store(0, SeqCst);
            r.moved.store(0, SeqCst);
            r.pid.store(my_pid(), SeqCst);
        }
        let result = self.read_frame_inner(c, fd, wait, track);
        if result.is_ok() {
            if track {
                c.taken.store(r.seq.load(SeqCst), SeqCst);
            } else {
                c.taken.fetch_add(1, SeqCst);
            }
            c.room.bump();
        }
        if track {
            r.pid.store(0, SeqCst);
        }
        result
    }

    fn read_frame_inner(
        &self,
        c: &Control,
        fd: RawFd,
        wait: &Wait,
        track: bool,
    ) -> Result<Vec<u8>, QueueError> {
        let finish = wait.deadline.max(wait.finish_deadline());
        let mut header = [0u8; HEADER_LEN];
        // Without the read lock another consumer may take the bytes that woke us: until
        // the first byte, wait only as long as the caller asked. With it, an empty pipe
        // sends the caller back to wait without the lock.
        let start = if track {
            BeforeFirstByte::GiveUp
        } else {
            BeforeFirstByte::Wait(wait)
        };
        let got = self.read_exact(c, fd, &mut header, finish, track, start)?;
        if got == 0 {
            return Err(QueueError::Disconnected);
        }
        if got < HEADER_LEN {
            return Err(pipe_error(
                frame::FrameError::Truncated {
                    read: got,
                    expected: HEADER_LEN,
                }
                .into(),
            ));
        }
        // Header read, payload still in the pipe: without the read lock, another consumer
        // reading now takes this frame's payload for its header.
        point("queue-pipe/get:after-header");
        let header = frame::decode_header(&header, self.config.max_message)
            .map_err(|e| QueueError::Corrupt(e.to_string()))?;
        if track {
            c.read
                .frame_len
                .store((HEADER_LEN + header.len) as u64, SeqCst);
        }
        let mut payload = vec![0u8; header.len];
        let got = self.read_exact(
            c,
            fd,
            &mut payload,
            finish,
            track,
            BeforeFirstByte::MidFrame,
        )?;
        if got < header.len {
            return Err(QueueError::Corrupt(
                frame::FrameError::Truncated {
                    read: HEADER_LEN + got,
                    expected: HEADER_LEN + header.len,
                }
                .to_string(),
            ));
        }
        frame::check_payload(header, &payload).map_err(|e| QueueError::Corrupt(e.to_string()))?;
        Ok(payload)
    }

    /// Reads until `buf` is full or the stream ends; returns the bytes read. Waits for
    /// data until `finish`; before the first byte, as `start` says.
    fn read_exact(
        &self,
        c: &Control,
        fd: RawFd,
        buf: &mut [u8],
        finish: Instant,
        track: bool,
        start: BeforeFirstByte,
    ) -> Result<usize, QueueError> {
        let mut filled = 0;
        while filled < buf.len() {
            let rest = &mut buf[filled..];
            // SAFETY: reads into a valid mutable slice from an fd this queue owns.
            match accounted(&c.read, track, || unsafe {
                libc::read(fd, rest.as_mut_ptr().cast(), rest.len())
            }) {
                Ok(0) => return Ok(filled),
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => match start {
                    BeforeFirstByte::Wait(wait) if filled == 0 => {
                        if !poll_fd(fd, libc::POLLIN, wait.deadline)? {
                            return Err(wait.expired("get", QueueError::Empty));
                        }
                    }
                    BeforeFirstByte::GiveUp if filled == 0 => return Err(QueueError::Empty),
                    _ => self.wait_mid_frame(c, fd, finish)?,
                },
                Err(e) => return Err(e.into()),
            }
        }
        Ok(filled)
    }

    /// Waits for the rest of a frame. A frame whose producer died will never be finished:
    /// if that producer's lock has not been recovered, recover it here (which poisons the
    /// queue), rather than wait out the block limit.
    fn wait_mid_frame(&self, c: &Control, fd: RawFd, finish: Instant) -> Result<(), QueueError> {
        loop {
            // In a forced schedule the rest comes from a process that needs the turn.
            if wait_point("queue-pipe/get:mid-frame") {
                if poll_fd(fd, libc::POLLIN, Instant::now())? {
                    return Ok(());
                }
                c.check()?;
                if Instant::now() < finish {
                    continue;
                }
            }
            let slice = (Instant::now() + MID_FRAME_CHECK).min(finish);
            if poll_fd(fd, libc::POLLIN, slice)? {
                return Ok(());
            }
            c.check()?;
            if Instant::now() >= finish {
                return Err(QueueError::Corrupt(
                    "a frame stopped arriving half-way and its producer is alive: it stalled past the block limit".into(),
                ));
            }
            let writer = c.write.pid.load(SeqCst);
            if writer != 0 && process_is_dead(writer) {
                let deadline = (Instant::now() + LOCK_GRACE).min(finish);
                if let Some(guard) = c.write_lock.lock(deadline)? {
                    if guard.owner_died {
                        self.recover_writer(c, fd)?;
                    }
                }
                c.check()?;
            }
        }
    }
}

impl Queue for PipeQueue {
    fn flavor(&self) -> Flavor {
        Flavor::Pipe
    }

    fn put(&self, message: &[u8], timeout: Option<Duration>) -> Result<(), QueueError> {
        let control = self.control()?;
        control.check()?;
        check_size(message.len(), self.config.max_message)?;
        let fd = self.writer.raw_fd().map_err(pipe_error)?;
        let wait = Wait::new(timeout, self.config.block_limit);
        let limit = u64::from(self.limit());
        let bytes = frame::encode(message);
        let _guard = loop {
            // Wait for room holding nothing: a producer killed here takes nothing with it.
            loop {
                let seen = control.room.seen();
                control.check()?;
                if control.items() < limit {
                    break;
                }
                if wait_point("queue-pipe/put:full") && Instant::now() < wait.deadline {
                    continue;
                }
                if !control.room.wait(seen, wait.deadline) {
                    return Err(wait.expired("put", QueueError::Full));
                }
            }
            // Room seen, lock not taken: another producer may fill it first.
            point("queue-pipe/put:room-seen");
            let Some(guard) = control.write_lock.lock(wait.lock_deadline())? else {
                return Err(wait.expired("put", QueueError::Full));
            };
            if guard.owner_died {
                self.recover_writer(control, fd)?;
            }
            control.check()?;
            // Under the write lock nothing adds to the count, so room seen here stays.
            if control.items() < limit {
                break guard;
            }
            drop(guard);
            if Instant::now() >= wait.deadline {
                return Err(wait.expired("put", QueueError::Full));
            }
        };
        self.write_frame(control, fd, &bytes, &wait)
    }

    fn get(&self, timeout: Option<Duration>) -> Result<Vec<u8>, QueueError> {
        let control = self.control()?;
        control.check()?;
        let fd = self.reader.raw_fd().map_err(pipe_error)?;
        let wait = Wait::new(timeout, self.config.block_limit);
        if control.unlocked_reads.load(SeqCst) != 0 {
            if !poll_fd(fd, libc::POLLIN, wait.deadline)? {
                return Err(wait.expired("get", QueueError::Empty));
            }
            point("queue-pipe/get:data-seen");
            return self.read_frame(control, fd, &wait, false);
        }
        let mut poll_first = self.read_first.poll_first();
        loop {
            if poll_first {
                // Wait for data holding no lock, so other consumers' calls are not held up.
                if !poll_fd(fd, libc::POLLIN, wait.deadline)? {
                    control.check()?;
                    return Err(wait.expired("get", QueueError::Empty));
                }
                control.check()?;
            }
            // Data seen (or, reading first, hoped for), lock not taken: another consumer
            // may take it first. A point on either path, so a forced schedule takes the
            // same steps whichever this handle does.
            point("queue-pipe/get:data-seen");
            let Some(guard) = control.read_lock.lock(wait.lock_deadline())? else {
                return Err(wait.expired("get", QueueError::Empty));
            };
            if guard.owner_died {
                self.recover_reader(control, fd)?;
            }
            // An empty pipe (another consumer took what woke us, or nothing had come):
            // give the lock back and wait, within the same deadline.
            match self.read_frame(control, fd, &wait, true) {
                Err(QueueError::Empty) => drop(guard),
                other => return other,
            }
            if !poll_first {
                self.read_first.found_empty();
            }
            poll_first = true;
        }
    }

    fn maxsize(&self) -> usize {
        self.config.maxsize
    }

    fn max_message(&self) -> usize {
        self.config.max_message
    }

    fn qsize(&self) -> usize {
        self.control().map_or(0, |c| c.items() as usize)
    }

    fn close(&mut self) {
        self.reader.close();
        self.writer.close();
        self.control = None;
    }

    fn handle(&self, role: Role) -> Result<QueueHandle, QueueError> {
        let control = self.control.as_ref().ok_or(QueueError::Closed)?;
        Ok(QueueHandle {
            config: self.config,
            role,
            kind: HandleKind::Pipe {
                reader: self.reader.handle().map_err(pipe_error)?,
                writer: self.writer.handle().map_err(pipe_error)?,
                control: control.name().to_string(),
            },
        })
    }
}

/// A queue's largest message is capped at the wire's documented limit
/// ([`crate::ipc::frame::MAX_PAYLOAD_LIMIT`]): a frame's length must fit its header, and
/// a reader must never be asked to accept more.
fn max_message_within_limit(max_message: usize) -> Result<(), QueueError> {
    crate::ipc::frame::check_max_payload(max_message)
        .map(|_| ())
        .map_err(|_| QueueError::TooLarge {
            len: max_message,
            max: crate::ipc::frame::MAX_PAYLOAD_LIMIT,
        })
}

/// The recovery of a peer that died between a read(2) or write(2) and its bookkeeping:
/// the window is a few instructions wide, too narrow to hit with a kill, so these tests
/// set the books as such a peer leaves them and move the bytes it moved by hand.
#[cfg(test)]
mod tests {
    use super::*;

    fn get_from_empty(args: (QueueHandle, Duration)) -> Result<String, String> {
        let queue = PipeQueue::open(args.0).map_err(|e| e.to_string())?;
        match queue.get(Some(args.1)) {
            Err(QueueError::Empty) => Ok("empty".into()),
            other => Err(format!("{other:?}")),
        }
    }
    crate::register_entry!("queue-pipe-unit-get-from-empty", get_from_empty);

    /// A get (and a get_nowait) on an empty queue gives up at its timeout. In a child,
    /// killed past its bound: a get that never gives up fails this test instead of hanging
    /// the test binary.
    #[test]
    fn a_get_on_an_empty_queue_gives_up_at_its_timeout() {
        use crate::process::{self, Options, StartMethod};
        let _serial = crate::process::tests_serial();
        let queue = PipeQueue::create(&Config::default()).unwrap();
        let handle = queue.handle(Role::Both).unwrap();
        for timeout in [Duration::ZERO, Duration::from_millis(50)] {
            let options = handle.inherit(Options::new("get-from-empty").method(StartMethod::Fork));
            let got: String = process::run(
                "queue-pipe-unit-get-from-empty",
                &(handle.clone(), timeout),
                options,
                Duration::from_secs(20),
            )
            .unwrap_or_else(|e| panic!("get({timeout:?}) on an empty queue: {e}"));
            assert_eq!(got, "empty");
        }
    }

    /// Runs `body` under the tests' serial lock (its pipes and segments must not show up
    /// in another test's leak check), aborting the test binary if it has not returned
    /// within 30 s: a put or get that never returns (a broken wait) then fails the run at
    /// once, where it would hang every test after it. A safety net, not a measurement.
    fn bounded(body: impl FnOnce()) {
        let _serial = crate::process::tests_serial();
        let (done, finished) = std::sync::mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            let waited = finished.recv_timeout(Duration::from_secs(30));
            if waited == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
                eprintln!("a pipe-queue unit test hung for 30 s: aborting the test binary");
                // The abort runs no destructor: unlink the tracked segments and kill the
                // tracked children first (bounded, in case the hung test holds the
                // registry's lock), or they outlive the binary.
                let (cleaned, done) = std::sync::mpsc::channel::<()>();
                std::thread::spawn(move || {
                    crate::process::hygiene::cleanup_all();
                    let _ = cleaned.send(());
                });
                let _ = done.recv_timeout(Duration::from_secs(2));
                std::process::abort();
            }
        });
        body();
        drop(done);
        watchdog.join().unwrap();
    }

    /// A pid nobody has: a child that exited and was reaped.
    fn dead_pid() -> i32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        child.wait().unwrap();
        child.id() as i32
    }

    /// Raw bytes into (or out of) the queue's pipe, outside its books.
    fn write_raw(queue: &PipeQueue, bytes: &[u8]) {
        let fd = queue.writer.raw_fd().unwrap();
        // SAFETY: writes from a valid slice to the queue's own pipe.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        assert_eq!(n, bytes.len() as isize);
    }

    fn read_raw(queue: &PipeQueue, len: usize) {
        let fd = queue.reader.raw_fd().unwrap();
        let mut buf = vec![0u8; len];
        // SAFETY: reads into a valid mutable slice from the queue's own pipe.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), len) };
        assert_eq!(n, len as isize);
    }

    /// `side`'s books as a peer leaves them when it dies after its read(2) or write(2) of
    /// frame number `seq` moved bytes and before it recorded them: one call in flight.
    fn died_in_a_call(side: &Side, seq: u64, frame_len: u64, pid: i32) {
        side.seq.store(seq, SeqCst);
        side.frame_len.store(frame_len, SeqCst);
        side.moved.store(0, SeqCst);
        side.pid.store(pid, SeqCst);
        side.begun.fetch_add(1, SeqCst);
    }

    /// A new queue whose producer died in its first write(2) of the frame of `message`:
    /// the queue, that frame, the dead pid.
    fn writer_died_in_a_call(message: &[u8]) -> (PipeQueue, Vec<u8>, i32) {
        let queue = PipeQueue::create(&Config::default()).unwrap();
        let frame = frame::encode(message);
        let dead = dead_pid();
        let c = queue.control().unwrap();
        died_in_a_call(
            &c.write,
            c.committed.load(SeqCst) + 1,
            frame.len() as u64,
            dead,
        );
        (queue, frame, dead)
    }

    fn recover_writer(queue: &PipeQueue) -> Result<(), QueueError> {
        let c = queue.control().unwrap();
        queue.recover_writer(c, queue.writer.raw_fd().unwrap())
    }

    fn assert_poisoned(got: Result<(), QueueError>, dead: i32, op: &str) {
        match got {
            Err(QueueError::Poisoned { pid, op: o }) => assert_eq!((pid, o), (dead, op)),
            other => panic!("expected poisoned by {dead} in {op}, got {other:?}"),
        }
    }

    #[test]
    fn a_frame_written_whole_by_a_writer_dead_before_its_books_is_committed() {
        bounded(|| {
            let (queue, frame, _) = writer_died_in_a_call(b"whole");
            write_raw(&queue, &frame);
            recover_writer(&queue).unwrap();
            let c = queue.control().unwrap();
            assert_eq!(c.committed.load(SeqCst), 1);
            assert_eq!(c.write.pid.load(SeqCst), 0, "the frame is settled");
            assert_eq!(c.write.begun.load(SeqCst), c.write.done.load(SeqCst));
            assert_eq!(c.write.bytes.load(SeqCst), frame.len() as u64);
            assert_eq!(queue.qsize(), 1);
            assert_eq!(queue.get(Some(Duration::ZERO)).unwrap(), b"whole");
        });
    }

    #[test]
    fn a_writer_dead_in_a_call_that_moved_nothing_leaves_nothing_behind() {
        bounded(|| {
            let (queue, _, _) = writer_died_in_a_call(b"never");
            recover_writer(&queue).unwrap();
            let c = queue.control().unwrap();
            assert_eq!((c.committed.load(SeqCst), c.write.pid.load(SeqCst)), (0, 0));
            assert_eq!(c.write.begun.load(SeqCst), c.write.done.load(SeqCst));
            // Still usable: a put and a get go through.
            queue.put(b"after", Some(Duration::ZERO)).unwrap();
            assert_eq!(queue.get(Some(Duration::ZERO)).unwrap(), b"after");
        });
    }

    #[test]
    fn part_of_a_frame_written_by_a_writer_dead_before_its_books_poisons_the_queue() {
        bounded(|| {
            let (queue, frame, dead) = writer_died_in_a_call(b"torn in two");
            write_raw(&queue, &frame[..HEADER_LEN + 2]);
            assert_poisoned(recover_writer(&queue), dead, "put");
            assert_eq!(queue.control().unwrap().committed.load(SeqCst), 0);
        });
    }

    #[test]
    fn more_bytes_in_the_pipe_than_the_dead_writers_frame_had_left_poisons_the_queue() {
        bounded(|| {
            let (queue, frame, dead) = writer_died_in_a_call(b"short");
            write_raw(&queue, &frame);
            write_raw(&queue, b"unexplained");
            assert_poisoned(recover_writer(&queue), dead, "put");
        });
    }

    #[test]
    fn a_reader_dead_inside_its_own_call_makes_the_writers_recovery_poison() {
        bounded(|| {
            // Neither side's books can be trusted: the pipe's byte count cannot be split
            // between them.
            let (queue, frame, dead) = writer_died_in_a_call(b"unknowable");
            let r = &queue.control().unwrap().read;
            r.pid.store(dead_pid(), SeqCst);
            r.begun.fetch_add(1, SeqCst);
            write_raw(&queue, &frame);
            assert_poisoned(recover_writer(&queue), dead, "put");
        });
    }

    /// A consumer dead in a read(2) of the next frame, `frame_len` 0 until its header
    /// was recorded.
    fn reader_died_in_a_call(queue: &PipeQueue, frame_len: u64, pid: i32) {
        let c = queue.control().unwrap();
        died_in_a_call(&c.read, c.taken.load(SeqCst) + 1, frame_len, pid);
    }

    fn recover_reader(queue: &PipeQueue) -> Result<(), QueueError> {
        let c = queue.control().unwrap();
        queue.recover_reader(c, queue.reader.raw_fd().unwrap())
    }

    #[test]
    fn a_frame_read_whole_by_a_reader_dead_before_its_books_is_taken() {
        bounded(|| {
            let queue = PipeQueue::create(&Config::default()).unwrap();
            queue.put(b"gone with it", Some(Duration::ZERO)).unwrap();
            queue.put(b"next", Some(Duration::ZERO)).unwrap();
            let len = frame::encode(b"gone with it").len();
            reader_died_in_a_call(&queue, len as u64, dead_pid());
            read_raw(&queue, len);
            let room = queue.control().unwrap().room.seen();
            recover_reader(&queue).unwrap();
            let c = queue.control().unwrap();
            assert_eq!(c.taken.load(SeqCst), 1);
            assert_ne!(c.room.seen(), room, "room made for waiting producers");
            assert_eq!((c.read.pid.load(SeqCst), queue.qsize()), (0, 1));
            assert_eq!(c.read.begun.load(SeqCst), c.read.done.load(SeqCst));
            assert_eq!(c.read.bytes.load(SeqCst), len as u64);
            assert_eq!(queue.get(Some(Duration::ZERO)).unwrap(), b"next");
        });
    }

    #[test]
    fn a_reader_dead_in_a_call_that_moved_nothing_leaves_the_frame_for_the_next() {
        bounded(|| {
            let queue = PipeQueue::create(&Config::default()).unwrap();
            queue.put(b"still there", Some(Duration::ZERO)).unwrap();
            reader_died_in_a_call(&queue, 0, dead_pid());
            recover_reader(&queue).unwrap();
            let c = queue.control().unwrap();
            assert_eq!((c.taken.load(SeqCst), c.read.pid.load(SeqCst)), (0, 0));
            assert_eq!(queue.get(Some(Duration::ZERO)).unwrap(), b"still there");
        });
    }

    #[test]
    fn part_of_a_frame_read_by_a_reader_dead_before_its_books_poisons_the_queue() {
        bounded(|| {
            let queue = PipeQueue::create(&Config::default()).unwrap();
            queue.put(b"half read", Some(Duration::ZERO)).unwrap();
            let len = frame::encode(b"half read").len();
            let dead = dead_pid();
            reader_died_in_a_call(&queue, len as u64, dead);
            read_raw(&queue, len - 3);
            assert_poisoned(recover_reader(&queue), dead, "get");
            // A header read whole but not recorded: its length is unknown, also torn.
            let queue = PipeQueue::create(&Config::default()).unwrap();
            queue.put(b"header only", Some(Duration::ZERO)).unwrap();
            reader_died_in_a_call(&queue, 0, dead);
            read_raw(&queue, HEADER_LEN);
            assert_poisoned(recover_reader(&queue), dead, "get");
        });
    }

    #[test]
    fn more_bytes_in_the_pipe_than_the_writers_recorded_poisons_the_readers_recovery() {
        bounded(|| {
            // The pipe holds more than the writers wrote minus what was read: a negative
            // count of unrecorded reads.
            let queue = PipeQueue::create(&Config::default()).unwrap();
            queue.put(b"counted", Some(Duration::ZERO)).unwrap();
            write_raw(&queue, b"not on the writers' books");
            let dead = dead_pid();
            reader_died_in_a_call(&queue, 0, dead);
            assert_poisoned(recover_reader(&queue), dead, "get");
        });
    }
}
