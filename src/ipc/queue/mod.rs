//! Queue: one trait, three flavors, usable by many processes, as Python's
//! `multiprocessing.Queue` (and `JoinableQueue`, see [`joinable`]).
//!
//! | flavor | built on | consumers | maxsize | notes |
//! |---|---|---|---|---|
//! | [`pipe`] | one pipe(2) + robust process-shared locks on each side | many | counter in shm | as multiprocessing.Queue, minus its feeder thread |
//! | [`shm`] | bounded MPMC ring in shared memory, spin then futex | many | ring slots (required, default 64) | messages up to a configured maximum |
//! | [`channel`] | ipc-channel 0.23 | **one** | counter in shm | the receiver moves to exactly one process |
//!
//! Messages are byte strings. Every blocking call is bounded: `timeout: None` means "as
//! long as the queue's [`Config::block_limit`]" (default 60 s), after which the call
//! fails with [`QueueError::Stalled`] — a dead peer never makes a caller wait forever.
//!
//! # How exact `qsize`, `empty` and `full` are
//! They are snapshots, as in Python: another process may change the queue before the
//! caller acts on the answer. When no put or get is in progress they are exact. While
//! operations are in flight they may be off by the number of operations in progress: the
//! shm and channel flavors count a put from the moment it reserves room (before its bytes
//! are readable) and a get until it has finished reading (an over-count); the pipe flavor
//! counts a put once its whole frame is in the pipe and a get once it has read one (so a
//! frame written but not yet counted is an under-count), which is what lets a process
//! killed mid-operation leave no room taken.
//!
//! # Handing a queue to a child
//! [`Queue::handle`] gives a serializable [`QueueHandle`]; pass it in the child's entry
//! arguments, give the child its fds with [`QueueHandle::inherit`], and [`open`] it there
//! (once per process), with either start method.

pub mod channel;
pub mod joinable;
pub mod pipe;
pub mod shm;
mod sync;
pub mod workers;

use crate::ipc::pipe::ConnectionHandle;
use crate::process::Options;
use serde::{Deserialize, Serialize};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

pub use joinable::JoinableQueue;

/// The bound on a put or get called without a timeout.
pub const DEFAULT_BLOCK_LIMIT: Duration = Duration::from_secs(60);
/// Ring slots of an shm queue created with `maxsize: 0` (it cannot be unbounded).
pub const DEFAULT_SHM_SLOTS: usize = 64;
/// Largest message of an shm queue unless configured otherwise.
pub const DEFAULT_SHM_MAX_MESSAGE: usize = 64 << 10;
/// How long a nowait call may still wait for a lock another process holds only while it
/// moves one message (not for room or data).
const LOCK_GRACE: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Flavor {
    Pipe,
    Shm,
    Channel,
}

impl Flavor {
    pub const ALL: [Flavor; 3] = [Flavor::Pipe, Flavor::Shm, Flavor::Channel];

    pub fn name(self) -> &'static str {
        match self {
            Flavor::Pipe => "pipe",
            Flavor::Shm => "shm",
            Flavor::Channel => "channel",
        }
    }

    /// Whether queues of this flavor let several processes get (the channel flavor's
    /// receiver cannot be shared).
    pub fn multi_consumer(self) -> bool {
        !matches!(self, Flavor::Channel)
    }

    /// Creates a queue of this flavor.
    pub fn create(self, config: &Config) -> Result<Box<dyn Queue>, QueueError> {
        Ok(match self {
            Flavor::Pipe => Box::new(pipe::PipeQueue::create(config)?),
            Flavor::Shm => Box::new(shm::ShmQueue::create(config)?),
            Flavor::Channel => Box::new(channel::ChannelQueue::create(config)?),
        })
    }
}

impl std::str::FromStr for Flavor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Flavor::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| format!("unknown queue flavor {s:?} (known: pipe, shm, channel)"))
    }
}

/// How a queue is created; travels inside its handle so every process agrees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Most items in the queue at once; 0 means unbounded (pipe, channel) or
    /// [`DEFAULT_SHM_SLOTS`] (shm, which is always bounded).
    pub maxsize: usize,
    /// Largest message in bytes; 0 means the flavor's default.
    pub max_message: usize,
    /// Bound on a put or get called with `timeout: None`.
    pub block_limit: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            maxsize: 0,
            max_message: 0,
            block_limit: DEFAULT_BLOCK_LIMIT,
        }
    }
}

impl Config {
    pub fn maxsize(mut self, maxsize: usize) -> Self {
        self.maxsize = maxsize;
        self
    }
    pub fn max_message(mut self, max_message: usize) -> Self {
        self.max_message = max_message;
        self
    }
    pub fn block_limit(mut self, block_limit: Duration) -> Self {
        self.block_limit = block_limit;
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// put_nowait, or put whose timeout passed, on a queue at maxsize (Python's queue.Full).
    #[error("queue is full")]
    Full,
    /// get_nowait, or get whose timeout passed, on an empty queue (Python's queue.Empty).
    #[error("queue is empty")]
    Empty,
    /// A put or get without timeout waited the whole block limit: the peer is probably
    /// gone or stuck.
    #[error(
        "{op} waited {waited:?} (the queue's block limit) without progress: is the peer alive?"
    )]
    Stalled { op: &'static str, waited: Duration },
    #[error("queue handle is closed in this process")]
    Closed,
    #[error("message of {len} bytes exceeds the queue's maximum of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("this process cannot get from a {flavor} queue: its single consumer is another process (open a handle with Role::Consumer there)")]
    NotConsumer { flavor: &'static str },
    #[error("a {flavor} queue has a single consumer and its receiver was already handed out")]
    SingleConsumer { flavor: &'static str },
    /// A message was lost because the process moving it died mid-operation.
    #[error("a message was lost: process {pid} died in the middle of {op}")]
    PeerDied { pid: i32, op: &'static str },
    /// The queue's stream was torn by a process that died in the middle of moving a
    /// message (`op` is what it was doing: "put" or "get"). Unusable from then on, in every
    /// process, as Python's queue is after its feeder was killed mid-message: nothing later
    /// could be told apart from the torn bytes.
    #[error("queue is poisoned: process {pid} died in the middle of a {op}, leaving a torn message in the stream; every later put and get fails")]
    Poisoned { pid: i32, op: &'static str },
    /// Every producer end is gone and the queue is empty.
    #[error("every producer of the queue is gone")]
    Disconnected,
    #[error("queue stream is corrupt: {0}")]
    Corrupt(String),
    #[error("handle is for a {found} queue, not {expected}")]
    WrongFlavor {
        expected: &'static str,
        found: &'static str,
    },
    #[error("JoinableQueue: task_done() called more times than items were put")]
    TooManyTaskDone,
    #[error("queue i/o: {0}")]
    Io(String),
}

impl From<std::io::Error> for QueueError {
    fn from(e: std::io::Error) -> Self {
        QueueError::Io(e.to_string())
    }
}

/// What a handed-out handle lets the opening process do. Only the channel flavor cares:
/// its one receiver moves to the process that opens a `Consumer` or `Both` handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Producer,
    Consumer,
    Both,
}

impl Role {
    pub fn gets(self) -> bool {
        !matches!(self, Role::Producer)
    }
}

/// A queue's identity, to open it in another process. Serializable (entry arguments).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueHandle {
    pub config: Config,
    pub role: Role,
    pub(crate) kind: HandleKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum HandleKind {
    Pipe {
        reader: ConnectionHandle,
        writer: ConnectionHandle,
        control: String,
    },
    Shm {
        ring: String,
    },
    Channel {
        bootstrap: String,
        counter: String,
    },
}

impl QueueHandle {
    pub fn flavor(&self) -> Flavor {
        match self.kind {
            HandleKind::Pipe { .. } => Flavor::Pipe,
            HandleKind::Shm { .. } => Flavor::Shm,
            HandleKind::Channel { .. } => Flavor::Channel,
        }
    }

    /// File descriptors the child must inherit.
    pub fn fds(&self) -> Vec<RawFd> {
        match &self.kind {
            HandleKind::Pipe { reader, writer, .. } => vec![reader.fd, writer.fd],
            _ => Vec::new(),
        }
    }

    /// Adds the fds this handle needs to a child's start options.
    pub fn inherit(&self, options: Options) -> Options {
        self.fds().into_iter().fold(options, Options::inherit_fd)
    }
}

/// Opens a queue from a handle made in another process. Once per handle per process
/// (a pipe handle's fds become owned by the queue opened from it).
pub fn open(handle: QueueHandle) -> Result<Box<dyn Queue>, QueueError> {
    Ok(match handle.flavor() {
        Flavor::Pipe => Box::new(pipe::PipeQueue::open(handle)?),
        Flavor::Shm => Box::new(shm::ShmQueue::open(handle)?),
        Flavor::Channel => Box::new(channel::ChannelQueue::open(handle)?),
    })
}

/// A multi-process FIFO queue of byte messages. Written once, implemented by every flavor;
/// tests, benches and scenarios take `&dyn Queue` or a generic `Q: Queue`.
pub trait Queue: Send {
    fn flavor(&self) -> Flavor;

    /// Whether several processes may get from this queue at once. Callers ask instead of
    /// finding out by misbehaviour (the channel flavor answers false).
    fn multi_consumer(&self) -> bool {
        self.flavor().multi_consumer()
    }

    /// Whether this process can get (false for a channel-flavor producer-only handle).
    fn can_get(&self) -> bool {
        true
    }

    /// Puts a message, waiting for room at most `timeout` (None: the block limit).
    fn put(&self, message: &[u8], timeout: Option<Duration>) -> Result<(), QueueError>;

    /// Takes the oldest message, waiting at most `timeout` (None: the block limit).
    fn get(&self, timeout: Option<Duration>) -> Result<Vec<u8>, QueueError>;

    /// Takes the oldest message into `buf`, replacing what it held, so a caller that
    /// reuses one buffer allocates nothing per message (Python's `recv_bytes_into`). On an
    /// error `buf` holds nothing of any message. Flavors that receive into a fresh buffer
    /// anyway keep this default.
    fn get_into(&self, buf: &mut Vec<u8>, timeout: Option<Duration>) -> Result<(), QueueError> {
        buf.clear();
        *buf = self.get(timeout)?;
        Ok(())
    }

    /// Puts without waiting for room: `Full` at once when the queue is at maxsize.
    fn put_nowait(&self, message: &[u8]) -> Result<(), QueueError> {
        self.put(message, Some(Duration::ZERO))
    }

    /// Gets without waiting for data: `Empty` at once when nothing is readable.
    fn get_nowait(&self) -> Result<Vec<u8>, QueueError> {
        self.get(Some(Duration::ZERO))
    }

    /// Most items at once (0: unbounded).
    fn maxsize(&self) -> usize;

    /// Largest message accepted, in bytes.
    fn max_message(&self) -> usize;

    /// Items in the queue (see the module docs for how exact).
    fn qsize(&self) -> usize;

    fn empty(&self) -> bool {
        self.qsize() == 0
    }

    fn full(&self) -> bool {
        self.maxsize() > 0 && self.qsize() >= self.maxsize()
    }

    /// Releases this process's use of the queue; later calls fail with `Closed`. Other
    /// processes keep using it.
    fn close(&mut self);

    /// A handle for another process to open this queue with.
    fn handle(&self, role: Role) -> Result<QueueHandle, QueueError>;
}

impl<Q: Queue + ?Sized> Queue for Box<Q> {
    fn flavor(&self) -> Flavor {
        (**self).flavor()
    }
    fn multi_consumer(&self) -> bool {
        (**self).multi_consumer()
    }
    fn can_get(&self) -> bool {
        (**self).can_get()
    }
    fn put(&self, message: &[u8], timeout: Option<Duration>) -> Result<(), QueueError> {
        (**self).put(message, timeout)
    }
    fn get(&self, timeout: Option<Duration>) -> Result<Vec<u8>, QueueError> {
        (**self).get(timeout)
    }
    fn get_into(&self, buf: &mut Vec<u8>, timeout: Option<Duration>) -> Result<(), QueueError> {
        (**self).get_into(buf, timeout)
    }
    fn put_nowait(&self, message: &[u8]) -> Result<(), QueueError> {
        (**self).put_nowait(message)
    }
    fn get_nowait(&self) -> Result<Vec<u8>, QueueError> {
        (**self).get_nowait()
    }
    fn maxsize(&self) -> usize {
        (**self).maxsize()
    }
    fn max_message(&self) -> usize {
        (**self).max_message()
    }
    fn qsize(&self) -> usize {
        (**self).qsize()
    }
    fn close(&mut self) {
        (**self).close()
    }
    fn handle(&self, role: Role) -> Result<QueueHandle, QueueError> {
        (**self).handle(role)
    }
}

/// When a put or get gives up, and which error it gives then.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Wait {
    pub deadline: Instant,
    /// True when the caller gave no timeout (so expiry is `Stalled`, not Full/Empty).
    unbounded: bool,
    limit: Duration,
}

impl Wait {
    pub fn new(timeout: Option<Duration>, block_limit: Duration) -> Wait {
        let now = Instant::now();
        Wait {
            deadline: now + timeout.unwrap_or(block_limit),
            unbounded: timeout.is_none(),
            limit: block_limit,
        }
    }

    /// The deadline for taking a lock that is only ever held while one message moves.
    pub fn lock_deadline(&self) -> Instant {
        self.deadline.max(Instant::now() + LOCK_GRACE)
    }

    /// The deadline for finishing a message once its first byte has moved: always the
    /// block limit, so a short user timeout never cuts a frame in half.
    pub fn finish_deadline(&self) -> Instant {
        Instant::now() + self.limit
    }

    pub fn expired(&self, op: &'static str, if_bounded: QueueError) -> QueueError {
        if self.unbounded {
            QueueError::Stalled {
                op,
                waited: self.limit,
            }
        } else {
            if_bounded
        }
    }
}

/// True when `pid` is gone (or a zombie): a peer that can no longer finish what it began.
pub(crate) fn process_is_dead(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks for existence and permission.
    if unsafe { libc::kill(pid, 0) } != 0 {
        return std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
    }
    crate::process::hygiene::proc_info(pid).is_some_and(|p| p.state == 'Z' || p.state == 'X')
}

fn check_size(len: usize, max: usize) -> Result<(), QueueError> {
    if len > max {
        Err(QueueError::TooLarge { len, max })
    } else {
        Ok(())
    }
}
