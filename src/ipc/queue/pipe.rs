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
use crate::ipc::pipe::{pipe, Connection, PipeError, PipeKind};
use crate::ipc::shm::{Shared, ShmSafe};
use crate::schedule::{point, wait_point};
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
pub const PIPE_CAPACITY: usize = 1 << 20;

/// Asks for [`PIPE_CAPACITY`] on the pipe of `fd`, best effort: the kernel refuses above
/// /proc/sys/fs/pipe-max-size, and the default size then stands. The raw pipe stream
/// calibration widens its pipe the same way, so the queue is divided by a pipe of its
/// own size.
pub fn widen_pipe(fd: std::os::fd::RawFd) {
    // SAFETY: fcntl on a descriptor the caller owns; F_SETPIPE_SZ changes only its size.
    unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, PIPE_CAPACITY as libc::c_int) };
}

pub struct PipeQueue {
    reader: Connection,
    writer: Connection,
    control: Option<Shared<Control>>,
    config: Config,
}

impl PipeQueue {
    pub fn create(config: &Config) -> Result<PipeQueue, QueueError> {
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
    pub fn without_read_lock(config: &Config) -> Result<PipeQueue, QueueError> {
        let queue = PipeQueue::create(config)?;
        queue.control()?.unlocked_reads.store(1, SeqCst);
        Ok(queue)
    }

    pub fn open(handle: QueueHandle) -> Result<PipeQueue, QueueError> {
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
        other => QueueError::Io(other.to_string()),
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
                            break Some(QueueError::Io(format!(
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
        // the first byte, wait only as long as the caller asked.
        let start = if track { None } else { Some(wait) };
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
        let got = self.read_exact(c, fd, &mut payload, finish, track, None)?;
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
    /// data until `finish`, or (given `start`) at most until the caller's deadline before
    /// the first byte.
    fn read_exact(
        &self,
        c: &Control,
        fd: RawFd,
        buf: &mut [u8],
        finish: Instant,
        track: bool,
        start: Option<&Wait>,
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
                    Some(wait) if filled == 0 => {
                        if !poll_fd(fd, libc::POLLIN, wait.deadline)? {
                            return Err(wait.expired("get", QueueError::Empty));
                        }
                    }
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
        loop {
            // Wait for data holding no lock, so other consumers' calls are not held up.
            if !poll_fd(fd, libc::POLLIN, wait.deadline)? {
                control.check()?;
                return Err(wait.expired("get", QueueError::Empty));
            }
            control.check()?;
            // Data seen, lock not taken: another consumer may take it first.
            point("queue-pipe/get:data-seen");
            let Some(guard) = control.read_lock.lock(wait.lock_deadline())? else {
                return Err(wait.expired("get", QueueError::Empty));
            };
            if guard.owner_died {
                self.recover_reader(control, fd)?;
            }
            // Another consumer may have taken what woke us: then wait again, within the
            // same deadline.
            if !poll_fd(fd, libc::POLLIN, Instant::now())? {
                drop(guard);
                continue;
            }
            return self.read_frame(control, fd, &wait, true);
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
