//! Queue: one trait, three flavors, usable by many processes, as Python's
//! `multiprocessing.Queue` (and `JoinableQueue`, see [`joinable`]).
//!
//! | flavor | built on | consumers | maxsize | notes |
//! |---|---|---|---|---|
//! | `pipe` | one pipe(2) + robust process-shared locks on each side | many | counter in shm | as multiprocessing.Queue, minus its feeder thread |
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
pub(crate) mod pipe;
pub mod shm;
mod sync;

use crate::ipc::pipe::ConnectionHandle;
use crate::process::Options;
use serde::{Deserialize, Serialize};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

pub use joinable::JoinableQueue;
/// The shared counter the built-in flavors keep `qsize` and `maxsize` with, for plug-ins.
pub use sync::Counter;

/// The bound on a put or get called without a timeout.
pub(crate) const DEFAULT_BLOCK_LIMIT: Duration = Duration::from_secs(60);
/// Ring slots of an shm queue created with `maxsize: 0` (it cannot be unbounded).
pub(crate) const DEFAULT_SHM_SLOTS: usize = 64;
/// Largest message of an shm queue unless configured otherwise.
pub(crate) const DEFAULT_SHM_MAX_MESSAGE: usize = 64 << 10;
/// How long a nowait call may still wait for a lock another process holds only while it
/// moves one message (not for room or data).
const LOCK_GRACE: Duration = Duration::from_secs(5);

/// A queue implementation, selected by name (`--flavor`, `queue-NAME` targets, figures).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Flavor {
    /// As Python's multiprocessing: a pipe, with a lock on each end shared by the
    /// processes that use it.
    Pipe,
    /// A ring of slots in shared memory, with futex wake-ups.
    Shm,
    /// ipc-channel (Unix sockets): several producers, a single consumer.
    Channel,
    /// A flavor registered from outside the suite with [`register_queue_flavor!`](crate::register_queue_flavor!): the
    /// same tests, scenarios, stress targets and workloads run on it.
    Plugin(PluginFlavor),
}

/// What a flavor is built on: which raw baseline of the same run its figures are divided
/// by (a queue over a pipe against the raw pipe, and so on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuiltOn {
    /// pipe(2): divided by the raw pipe figures.
    Pipe,
    /// Shared memory and futexes: divided by the shared-memory ping-pong figures.
    SharedMemory,
    /// A Unix socket: divided by the raw socket figures.
    UnixSocket,
}

/// A queue flavor registered with [`register_queue_flavor!`](crate::register_queue_flavor!) (see [`PluginQueue`]).
#[derive(Debug)]
pub struct QueueFlavorEntry {
    /// The flavor's name ([`PluginQueue::NAME`]).
    pub name: &'static str,
    /// Whether several processes may get from one queue.
    pub multi_consumer: bool,
    /// What its figures are divided by.
    pub built_on: BuiltOn,
    /// Creates a queue of the flavor in this process.
    pub create: fn(&Config) -> Result<Box<dyn Queue>, QueueError>,
    /// Opens, in another process, the queue a handle names.
    pub open: fn(QueueHandle) -> Result<Box<dyn Queue>, QueueError>,
}

/// Every plug-in queue flavor linked into this binary.
#[linkme::distributed_slice]
pub static QUEUE_FLAVORS: [QueueFlavorEntry];

/// A plug-in flavor, by its registration: compared, hashed and serialized by name (a
/// handle crossing to a child names its flavor; the child's binary has the same entries).
#[derive(Clone, Copy)]
pub struct PluginFlavor(&'static QueueFlavorEntry);

impl PluginFlavor {
    /// The registered flavor named `name`.
    pub fn find(name: &str) -> Option<PluginFlavor> {
        QUEUE_FLAVORS
            .iter()
            .find(|e| e.name == name)
            .map(PluginFlavor)
    }
    pub(crate) fn name(self) -> &'static str {
        self.0.name
    }
}

impl std::fmt::Debug for PluginFlavor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Plugin({:?})", self.0.name)
    }
}

impl PartialEq for PluginFlavor {
    fn eq(&self, other: &Self) -> bool {
        self.0.name == other.0.name
    }
}
impl Eq for PluginFlavor {}

impl std::hash::Hash for PluginFlavor {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.name.hash(state);
    }
}

impl Serialize for PluginFlavor {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0.name)
    }
}

impl<'de> Deserialize<'de> for PluginFlavor {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        PluginFlavor::find(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "queue flavor {name:?} is not registered in this binary"
            ))
        })
    }
}

/// A queue type from outside the suite, made a flavor by [`register_queue_flavor!`](crate::register_queue_flavor!).
/// Its handle is made with [`QueueHandle::plugin`] (data and the fds it names);
/// [`PluginQueue::open`] gets them back in the other process with
/// [`QueueHandle::plugin_data`]. [`Wait`] (with [`Wait::retry_fd`]), [`Counter`] and
/// [`check_size`] give it the built-in flavors' bounded waits, counts and size check;
/// `examples/dgram-queue` is a whole one.
pub trait PluginQueue: Queue + Sized + 'static {
    /// The flavor's name: unique, as in `queue/NAME/...` workloads and `queue-NAME` targets.
    const NAME: &'static str;
    /// Whether several processes may get at once.
    const MULTI_CONSUMER: bool;
    /// What it is built on: its figures are divided by that raw baseline.
    const BUILT_ON: BuiltOn;
    /// Creates a queue in this process.
    fn create(config: &Config) -> Result<Self, QueueError>;
    /// Opens the queue another process handed over.
    fn open(handle: QueueHandle) -> Result<Self, QueueError>;
}

/// Registers a [`PluginQueue`] type as a queue flavor, from any crate linking ipcbench:
/// `ipcbench::register_queue_flavor!(MyQueue);`.
#[macro_export]
macro_rules! register_queue_flavor {
    ($queue:ty) => {
        const _: () = {
            #[$crate::process::entry::linkme::distributed_slice($crate::ipc::queue::QUEUE_FLAVORS)]
            #[linkme(crate = $crate::process::entry::linkme)]
            static FLAVOR: $crate::ipc::queue::QueueFlavorEntry =
                $crate::ipc::queue::QueueFlavorEntry {
                    name: <$queue as $crate::ipc::queue::PluginQueue>::NAME,
                    multi_consumer: <$queue as $crate::ipc::queue::PluginQueue>::MULTI_CONSUMER,
                    built_on: <$queue as $crate::ipc::queue::PluginQueue>::BUILT_ON,
                    create: |config| {
                        Ok(Box::new(
                            <$queue as $crate::ipc::queue::PluginQueue>::create(config)?,
                        ))
                    },
                    open: |handle| {
                        Ok(Box::new(<$queue as $crate::ipc::queue::PluginQueue>::open(
                            handle,
                        )?))
                    },
                };
        };
    };
}

impl Flavor {
    /// The built-in flavors.
    pub const ALL: [Flavor; 3] = [Flavor::Pipe, Flavor::Shm, Flavor::Channel];

    /// The built-in flavors, then every plug-in flavor linked into this binary (by name):
    /// what the generic tests, targets and workloads iterate.
    pub fn all() -> Vec<Flavor> {
        let mut plugins: Vec<PluginFlavor> = QUEUE_FLAVORS.iter().map(PluginFlavor).collect();
        plugins.sort_by_key(|p| p.name());
        Flavor::ALL
            .into_iter()
            .chain(plugins.into_iter().map(Flavor::Plugin))
            .collect()
    }

    /// The flavor's name, a contract (`pipe`, `shm`, `channel`, or the plug-in's).
    pub fn name(self) -> &'static str {
        match self {
            Flavor::Pipe => "pipe",
            Flavor::Shm => "shm",
            Flavor::Channel => "channel",
            Flavor::Plugin(p) => p.name(),
        }
    }

    /// Whether queues of this flavor let several processes get (the channel flavor's
    /// receiver cannot be shared).
    pub fn multi_consumer(self) -> bool {
        match self {
            Flavor::Channel => false,
            Flavor::Plugin(p) => p.0.multi_consumer,
            Flavor::Pipe | Flavor::Shm => true,
        }
    }

    /// What the flavor is built on (the raw baseline its figures are divided by).
    pub(crate) fn built_on(self) -> BuiltOn {
        match self {
            Flavor::Pipe => BuiltOn::Pipe,
            Flavor::Shm => BuiltOn::SharedMemory,
            // ipc-channel's Linux backend is a Unix socket.
            Flavor::Channel => BuiltOn::UnixSocket,
            Flavor::Plugin(p) => p.0.built_on,
        }
    }

    /// Creates a queue of this flavor.
    pub fn create(self, config: &Config) -> Result<Box<dyn Queue>, QueueError> {
        Ok(match self {
            Flavor::Pipe => Box::new(pipe::PipeQueue::create(config)?),
            Flavor::Shm => Box::new(shm::ShmQueue::create(config)?),
            Flavor::Channel => Box::new(channel::ChannelQueue::create(config)?),
            Flavor::Plugin(p) => (p.0.create)(config)?,
        })
    }
}

impl std::str::FromStr for Flavor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let all = Flavor::all();
        all.iter().copied().find(|f| f.name() == s).ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|f| f.name()).collect();
            format!("unknown queue flavor {s:?} (known: {})", names.join(", "))
        })
    }
}

/// How a queue is created; travels inside its handle so every process agrees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Most items in the queue at once; 0 means unbounded (pipe, channel) or
    /// `DEFAULT_SHM_SLOTS` (shm, which is always bounded).
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
    /// Sets [`Config::maxsize`].
    pub fn maxsize(mut self, maxsize: usize) -> Self {
        self.maxsize = maxsize;
        self
    }
    /// Sets [`Config::max_message`].
    pub fn max_message(mut self, max_message: usize) -> Self {
        self.max_message = max_message;
        self
    }
    /// Sets [`Config::block_limit`].
    pub fn block_limit(mut self, block_limit: Duration) -> Self {
        self.block_limit = block_limit;
        self
    }
}

/// Why a queue operation failed, with Python's `Full` and `Empty` among them.
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
    Stalled {
        /// "put" or "get".
        op: &'static str,
        /// How long it waited (the block limit).
        waited: Duration,
    },
    /// `close` was called on this handle; later calls in this process fail.
    #[error("queue handle is closed in this process")]
    Closed,
    /// A message above the queue's maximum, refused before anything moved (the queue
    /// stays usable).
    #[error("message of {len} bytes exceeds the queue's maximum of {max} bytes")]
    TooLarge {
        /// The message's length.
        len: usize,
        /// The queue's maximum message.
        max: usize,
    },
    /// A get in a process that does not hold the single consumer's receiver.
    #[error("this process cannot get from a {flavor} queue: its single consumer is another process (open a handle with Role::Consumer there)")]
    NotConsumer {
        /// The flavor's name.
        flavor: &'static str,
    },
    /// A second consumer handle asked of a flavor that has one receiver.
    #[error("a {flavor} queue has a single consumer and its receiver was already handed out")]
    SingleConsumer {
        /// The flavor's name.
        flavor: &'static str,
    },
    /// A message was lost because the process moving it died mid-operation.
    #[error("a message was lost: process {pid} died in the middle of {op}")]
    PeerDied {
        /// The process that died.
        pid: i32,
        /// What it was doing ("put" or "get").
        op: &'static str,
    },
    /// The queue's stream was torn by a process that died in the middle of moving a
    /// message (`op` is what it was doing: "put" or "get"). Unusable from then on, in every
    /// process, as Python's queue is after its feeder was killed mid-message: nothing later
    /// could be told apart from the torn bytes.
    #[error("queue is poisoned: process {pid} died in the middle of a {op}, leaving a torn message in the stream; every later put and get fails")]
    Poisoned {
        /// The process that died.
        pid: i32,
        /// What it was doing ("put" or "get").
        op: &'static str,
    },
    /// Every producer end is gone and the queue is empty.
    #[error("every producer of the queue is gone")]
    Disconnected,
    /// Bytes read off the queue are not a whole, checked message.
    #[error("queue stream is corrupt: {0}")]
    Corrupt(String),
    /// A handle opened by a flavor it does not belong to.
    #[error("handle is for a {found} queue, not {expected}")]
    WrongFlavor {
        /// The flavor that tried to open it.
        expected: &'static str,
        /// The flavor the handle names.
        found: &'static str,
    },
    /// `task_done` called more times than items were put (Python's ValueError).
    #[error("JoinableQueue: task_done() called more times than items were put")]
    TooManyTaskDone,
    /// A system call failed; the OS error is kept as the source.
    #[error("queue i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The transport under the queue failed (`context` says doing what); its own error is
    /// kept as the source.
    #[error("{context}: {source}")]
    Transport {
        /// What the queue was doing.
        context: String,
        /// The transport's own error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A failure with no error under it (a misuse, a stall part-way through a message).
    #[error("{0}")]
    Other(String),
}

impl QueueError {
    /// A transport failure while doing `context`, keeping `source`.
    pub(crate) fn transport(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> QueueError {
        QueueError::Transport {
            context: context.into(),
            source: source.into(),
        }
    }
}

/// What a handed-out handle lets the opening process do. Only the channel flavor cares:
/// its one receiver moves to the process that opens a `Consumer` or `Both` handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Puts only.
    Producer,
    /// Gets (and may put).
    Consumer,
    /// Puts and gets.
    Both,
}

impl Role {
    pub(crate) fn gets(self) -> bool {
        !matches!(self, Role::Producer)
    }
}

/// A queue's identity, to open it in another process. Serializable (entry arguments).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueHandle {
    /// The queue's configuration, so the opening process applies the same limits.
    pub config: Config,
    pub(crate) role: Role,
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
    /// A plug-in flavor's own handle, as it serialized it, and the fds it needs.
    Plugin {
        flavor: PluginFlavor,
        data: serde_json::Value,
        fds: Vec<RawFd>,
    },
}

impl QueueHandle {
    pub(crate) fn flavor(&self) -> Flavor {
        match self.kind {
            HandleKind::Pipe { .. } => Flavor::Pipe,
            HandleKind::Shm { .. } => Flavor::Shm,
            HandleKind::Channel { .. } => Flavor::Channel,
            HandleKind::Plugin { flavor, .. } => Flavor::Plugin(flavor),
        }
    }

    /// File descriptors the child must inherit.
    pub fn fds(&self) -> Vec<RawFd> {
        match &self.kind {
            HandleKind::Pipe { reader, writer, .. } => vec![reader.fd, writer.fd],
            HandleKind::Plugin { fds, .. } => fds.clone(),
            _ => Vec::new(),
        }
    }

    /// A plug-in flavor's handle: `data` is whatever its `open` needs (serializable),
    /// `fds` the descriptors a child must inherit for it.
    pub fn plugin<Q: PluginQueue>(
        config: Config,
        role: Role,
        data: &impl Serialize,
        fds: Vec<RawFd>,
    ) -> Result<QueueHandle, QueueError> {
        let flavor = PluginFlavor::find(Q::NAME).ok_or_else(|| {
            QueueError::Other(format!(
                "queue flavor {:?} is not registered (register_queue_flavor!)",
                Q::NAME
            ))
        })?;
        let data = serde_json::to_value(data).map_err(|e| {
            QueueError::transport(format!("cannot encode the {} handle", Q::NAME), e)
        })?;
        Ok(QueueHandle {
            config,
            role,
            kind: HandleKind::Plugin { flavor, data, fds },
        })
    }

    /// A plug-in flavor's data, as [`QueueHandle::plugin`] stored it; an error for a
    /// handle of another flavor.
    pub fn plugin_data<Q: PluginQueue, T: serde::de::DeserializeOwned>(
        &self,
    ) -> Result<T, QueueError> {
        match &self.kind {
            HandleKind::Plugin { flavor, data, .. } if flavor.name() == Q::NAME => {
                serde_json::from_value(data.clone()).map_err(|e| {
                    QueueError::Corrupt(format!("a {} handle does not decode: {e}", Q::NAME))
                })
            }
            _ => Err(QueueError::WrongFlavor {
                expected: Q::NAME,
                found: self.flavor().name(),
            }),
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
        Flavor::Plugin(p) => (p.0.open)(handle)?,
    })
}

/// A multi-process FIFO queue of byte messages. Written once, implemented by every flavor;
/// tests, benches and scenarios take `&dyn Queue` or a generic `Q: Queue`.
pub trait Queue: Send {
    /// Which implementation this is (its name labels figures, errors and targets).
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

    /// Whether `qsize` is 0 (as exact as `qsize`).
    fn empty(&self) -> bool {
        self.qsize() == 0
    }

    /// Whether the queue is bounded and at its maxsize (as exact as `qsize`).
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

/// When a put or get gives up, and which error it gives then: public so that a plug-in
/// flavor bounds its waits as the built-in ones do.
#[derive(Clone, Copy, Debug)]
pub struct Wait {
    /// When the wait gives up.
    pub deadline: Instant,
    /// True when the caller gave no timeout (so expiry is `Stalled`, not Full/Empty).
    unbounded: bool,
    limit: Duration,
}

impl Wait {
    /// A wait of `timeout`, or of `block_limit` when there is none.
    pub fn new(timeout: Option<Duration>, block_limit: Duration) -> Wait {
        let now = Instant::now();
        Wait {
            deadline: now + timeout.unwrap_or(block_limit),
            unbounded: timeout.is_none(),
            limit: block_limit,
        }
    }

    /// The deadline for taking a lock that is only ever held while one message moves.
    pub(crate) fn lock_deadline(&self) -> Instant {
        self.deadline.max(Instant::now() + LOCK_GRACE)
    }

    /// The deadline for finishing a message once its first byte has moved: always the
    /// block limit, so a short user timeout never cuts a frame in half.
    pub(crate) fn finish_deadline(&self) -> Instant {
        Instant::now() + self.limit
    }

    /// What a call gives when this wait ran out: `if_bounded` (Full, Empty) when the
    /// caller gave a timeout, `Stalled` when it waited the whole block limit.
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

    /// Runs `call`, one non-blocking send or receive on `fd`, until it goes through,
    /// waiting in poll(2) for `events` while it would block; once the deadline has passed,
    /// [`Wait::expired`]. For flavors over sockets or pipes (several processes may race
    /// for what poll reported: the call is simply tried again).
    pub fn retry_fd<T, E: Into<std::io::Error>>(
        &self,
        fd: std::os::fd::BorrowedFd,
        events: nix::poll::PollFlags,
        op: &'static str,
        if_bounded: QueueError,
        mut call: impl FnMut() -> Result<T, E>,
    ) -> Result<T, QueueError> {
        use std::io::ErrorKind::{Interrupted, WouldBlock};
        use std::os::fd::AsRawFd;
        loop {
            match call().map_err(Into::into) {
                Err(e) if matches!(e.kind(), WouldBlock | Interrupted) => {}
                done => return Ok(done?),
            }
            if Instant::now() >= self.deadline {
                return Err(self.expired(op, if_bounded));
            }
            // Ready or not at the deadline, the call is tried once more.
            crate::ipc::pipe::wait_raw_fd(fd.as_raw_fd(), events.bits(), Some(self.deadline))?;
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

/// `TooLarge` when a `len`-byte message exceeds `max`.
pub fn check_size(len: usize, max: usize) -> Result<(), QueueError> {
    if len > max {
        Err(QueueError::TooLarge { len, max })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    /// An OS or transport error under a queue error stays reachable, typed, as its source.
    #[test]
    fn the_error_under_a_queue_error_is_its_source() {
        let os = QueueError::from(std::io::Error::from_raw_os_error(libc::EPIPE));
        let source = os.source().expect("the OS error is kept");
        let io = source
            .downcast_ref::<std::io::Error>()
            .expect("as an io::Error");
        assert_eq!(io.raw_os_error(), Some(libc::EPIPE));

        let cut = crate::ipc::pipe::PipeError::Eof;
        let transport = QueueError::transport("bootstrap reply", cut);
        let source = transport.source().expect("the transport error is kept");
        assert!(source.is::<crate::ipc::pipe::PipeError>());
        assert!(transport.to_string().starts_with("bootstrap reply: "));
    }
}
