//! The pipe flavor, as multiprocessing.Queue builds it: one pipe(2) carrying framed
//! messages, a process-shared lock on the write side (so frames larger than PIPE_BUF from
//! several producers never interleave) and one on the read side (so one consumer reads a
//! whole frame), plus a shared counter for maxsize and qsize (Python's BoundedSemaphore).
//!
//! Difference from Python: there is no feeder thread, the producer writes the frame
//! itself. So a put of a message larger than the free pipe buffer waits (bounded) for a
//! consumer to read; the pipe is enlarged to 1 MiB where the system allows it to make that
//! rare. A user timeout bounds waiting for room, data and locks; once a frame's first byte
//! has moved it is always finished (within the block limit), never cut by a short timeout.
//!
//! Dead peers: the locks are robust mutexes, so a process killed while holding one does
//! not wedge the others. A producer killed mid-frame leaves a partial frame that the next
//! reader reports as `Corrupt` (the frame's checksum and length catch it) instead of
//! returning it as data.

use super::sync::{Counter, RobustMutex};
use super::{check_size, Config, Flavor, HandleKind, Queue, QueueError, QueueHandle, Role, Wait};
use crate::ipc::pipe::{pipe, Connection, PipeError, PipeKind};
use crate::ipc::shm::{Shared, ShmSafe};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

#[repr(C)]
struct Control {
    read_lock: RobustMutex,
    write_lock: RobustMutex,
    items: Counter,
    /// Config fixed at creation, so an opener cannot disagree with the creator.
    maxsize: AtomicU64,
    max_message: AtomicU64,
    /// Non-zero only in the test subject made by [`PipeQueue::without_read_lock`].
    unlocked_reads: AtomicU32,
}

// SAFETY: robust mutexes (see their impl), atomics; all valid zeroed until `init`.
unsafe impl ShmSafe for Control {}

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
        let (reader, writer) = pipe(PipeKind::Simplex).map_err(pipe_error)?;
        // Best effort: a 1 MiB pipe lets a 1 MiB put complete without a reader. The
        // kernel refuses above /proc/sys/fs/pipe-max-size; the default size then stands.
        // SAFETY: fcntl on an fd we own.
        unsafe {
            libc::fcntl(
                writer.raw_fd().map_err(pipe_error)?,
                libc::F_SETPIPE_SZ,
                1 << 20,
            )
        };
        let control: Shared<Control> = Shared::create("queue-pipe", 0)?;
        control.read_lock.init()?;
        control.write_lock.init()?;
        control
            .maxsize
            .store(config.maxsize as u64, Ordering::SeqCst);
        control
            .max_message
            .store(config.max_message as u64, Ordering::SeqCst);
        Ok(PipeQueue::assemble(reader, writer, control, config))
    }

    /// A **test subject**, not a queue to use: gets skip the read-side lock, so consumers
    /// sharing the read end can each take part of a frame (what the
    /// `queue-many-consumers/no-read-lock` scenario must catch). Every process that opens
    /// it inherits the defect, as the flag lives in the shared control block.
    pub fn without_read_lock(config: &Config) -> Result<PipeQueue, QueueError> {
        let queue = PipeQueue::create(config)?;
        queue.control()?.unlocked_reads.store(1, Ordering::SeqCst);
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
        config.maxsize = control.maxsize.load(Ordering::SeqCst) as usize;
        config.max_message = control.max_message.load(Ordering::SeqCst) as usize;
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

impl Queue for PipeQueue {
    fn flavor(&self) -> Flavor {
        Flavor::Pipe
    }

    fn put(&self, message: &[u8], timeout: Option<Duration>) -> Result<(), QueueError> {
        let control = self.control()?;
        check_size(message.len(), self.config.max_message)?;
        let wait = Wait::new(timeout, self.config.block_limit);
        if !control.items.acquire_below(self.limit(), wait.deadline) {
            return Err(wait.expired("put", QueueError::Full));
        }
        let Some(_guard) = control.write_lock.lock(wait.lock_deadline())? else {
            control.items.release();
            return Err(wait.expired("put", QueueError::Full));
        };
        let left = wait
            .finish_deadline()
            .saturating_duration_since(std::time::Instant::now());
        self.writer
            .send_bytes_timeout(message, left)
            .inspect_err(|_| {
                control.items.release();
            })
            .map_err(pipe_error)
    }

    fn get(&self, timeout: Option<Duration>) -> Result<Vec<u8>, QueueError> {
        let control = self.control()?;
        let wait = Wait::new(timeout, self.config.block_limit);
        let guard = if control.unlocked_reads.load(Ordering::Relaxed) == 0 {
            let Some(guard) = control.read_lock.lock(wait.lock_deadline())? else {
                return Err(wait.expired("get", QueueError::Empty));
            };
            Some(guard)
        } else {
            None
        };
        let owner_died = guard.as_ref().is_some_and(|g| g.owner_died);
        // The timeout bounds the wait for a message to start; once it has, the connection
        // finishes the frame whatever the timeout (see `Connection::mid_frame_bound`).
        let left = wait
            .deadline
            .saturating_duration_since(std::time::Instant::now());
        let message = self.reader.recv_bytes_timeout(left).map_err(|e| match e {
            PipeError::Timeout(_) => wait.expired("get", QueueError::Empty),
            PipeError::Corrupt(frame) if owner_died => QueueError::Corrupt(format!(
                "{frame} (a consumer died while holding the read lock, mid-frame)"
            )),
            e => pipe_error(e),
        })?;
        control.items.release();
        Ok(message)
    }

    fn maxsize(&self) -> usize {
        self.config.maxsize
    }

    fn max_message(&self) -> usize {
        self.config.max_message
    }

    fn qsize(&self) -> usize {
        self.control().map_or(0, |c| c.items.get() as usize)
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
