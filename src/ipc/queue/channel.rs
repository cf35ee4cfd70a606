//! The channel flavor, over ipc-channel 0.23 (Unix sockets with fd passing).
//!
//! What it cannot do, and how the trait says so:
//! * **One consumer.** An `IpcReceiver` cannot be cloned or shared; it moves, whole, to
//!   the one process that opens a `Role::Consumer` (or `Both`) handle. `multi_consumer()`
//!   is false; `can_get()` is false everywhere else and `get` there is
//!   `QueueError::NotConsumer`; a second consumer handle is `QueueError::SingleConsumer`.
//! * **No native size or bound.** ipc-channel does not count messages, so qsize and
//!   maxsize come from a counter in shared memory beside the channel (as the pipe flavor).
//!
//! Handing it to a child: ipc-channel values can only travel through ipc-channel, so each
//! handle names a one-shot bootstrap server. A parent thread accepts the child's
//! connection and sends it the sender (and the receiver, for a consumer). `accept()` has
//! no timeout, so a guard thread connects to the server itself and hangs up if
//! no child has come within the block limit, or when the queue is closed or dropped:
//! the accepting thread always ends and the server's socket never leaks.

use super::sync::Counter;
use super::{
    check_size, process_is_dead, Config, Flavor, HandleKind, Queue, QueueError, QueueHandle, Role,
    Wait,
};
use crate::sys::shm::Shared;
use ipc_channel::ipc::{self, IpcOneShotServer, IpcReceiver, IpcSender};
use ipc_channel::{IpcError, TryRecvError};
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{mpsc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A message on the channel. Serialized as one byte string: serde's default for a
/// `Vec<u8>` is a sequence of single bytes, which cost about 300 ms per MiB in a debug
/// build and still per-byte work in release.
struct Payload(Vec<u8>);

impl Serialize for Payload {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BytesVisitor;
        impl<'de> serde::de::Visitor<'de> for BytesVisitor {
            type Value = Payload;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Payload, E> {
                Ok(Payload(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Payload, E> {
                Ok(Payload(v))
            }
        }
        deserializer.deserialize_byte_buf(BytesVisitor)
    }
}

/// Sets ipc-channel's process-wide lazy value (`SYSTEM_SENDBUF_SIZE`, which sizes every
/// send and receive buffer) now, on the thread that creates or opens the queue. Left to
/// the first `recv`, it is set by whichever thread receives first (the stress target's
/// consumer thread) while another thread forks workers: a child forked in that window
/// inherits it half-set, and its first send waits forever on a lock no thread of its own
/// will release (a stress worker stuck in an untimed futex wait in the program's static
/// data, about one quick run in four).
fn settle_ipc_channel_statics() {
    let _ = ipc_channel::platform::OsIpcSender::get_max_fragment_size();
}

/// What the accepting thread sends a child that opened a handle.
#[derive(Serialize, Deserialize)]
struct Grant {
    sender: IpcSender<Payload>,
    receiver: Option<IpcReceiver<Payload>>,
}

/// What a child sends the bootstrap server: where to send the grant.
type Request = IpcSender<Grant>;

/// Producers that may hold a maxsize permit without having sent at once: past this, a
/// put still works, unrecorded (a death in its window then leaks its permit, as before).
const RESERVATIONS: usize = 64;
/// How often a put waiting for room looks for permits of dead producers.
const RECOVERY_CHECK: Duration = Duration::from_millis(10);

#[repr(C)]
struct Control {
    items: Counter,
    maxsize: AtomicU64,
    /// Pids of producers between taking a permit and finishing their send: a permit
    /// whose producer died there is given back by the next put that waits for room (or
    /// gives up on it). Python's queue has the same window; it leaks there. Two windows of
    /// a few instructions remain: a death between taking the permit and recording the pid
    /// leaks it; a death between the send returning and the record being cleared gives it
    /// back although the message was sent (maxsize then overshoots by one until it is
    /// taken).
    reservations: [AtomicI32; RESERVATIONS],
}

// SAFETY: a counter and atomics, valid at zero.
unsafe impl crate::sys::shm::ShmSafe for Control {}

impl Control {
    /// Records this process as holding a permit; the slot to clear once sent, if any.
    fn reserve(&self, pid: i32) -> Option<&AtomicI32> {
        self.reservations
            .iter()
            .find(|slot| slot.compare_exchange(0, pid, SeqCst, SeqCst).is_ok())
    }

    /// Gives back the permit of every recorded producer that died before it had sent;
    /// true when any was.
    fn recover_dead_reservations(&self) -> bool {
        let mut recovered = false;
        for slot in &self.reservations {
            let pid = slot.load(SeqCst);
            if process_is_dead(pid) && slot.compare_exchange(pid, 0, SeqCst, SeqCst).is_ok() {
                self.items.release();
                recovered = true;
            }
        }
        recovered
    }
}

/// An outstanding handle: the guard thread (which owns the accepting one) and its stop.
struct Bootstrap {
    stop: mpsc::Sender<()>,
    threads: Vec<JoinHandle<()>>,
}

/// The `channel` flavor: ipc-channel's typed channels over Unix sockets, bootstrapped
/// through a one-shot server per opening process; senders clone, the receiver moves to
/// the one process that opens a consumer handle.
pub struct ChannelQueue {
    sender: Option<IpcSender<Payload>>,
    receiver: Mutex<Option<IpcReceiver<Payload>>>,
    control: Option<Shared<Control>>,
    config: Config,
    bootstraps: Mutex<Vec<Bootstrap>>,
}

impl ChannelQueue {
    pub(crate) fn create(config: &Config) -> Result<ChannelQueue, QueueError> {
        let mut config = *config;
        if config.max_message == 0 {
            config.max_message = crate::ipc::frame::DEFAULT_MAX_PAYLOAD;
        }
        settle_ipc_channel_statics();
        let (sender, receiver) = ipc::channel::<Payload>()?;
        let control: Shared<Control> = Shared::create("queue-channel", 0)?;
        control
            .maxsize
            .store(config.maxsize as u64, Ordering::SeqCst);
        Ok(ChannelQueue {
            sender: Some(sender),
            receiver: Mutex::new(Some(receiver)),
            control: Some(control),
            config,
            bootstraps: Mutex::new(Vec::new()),
        })
    }

    /// Opens, in another process, the queue `handle` names (the consumer's handle takes
    /// the receiver).
    pub fn open(handle: QueueHandle) -> Result<ChannelQueue, QueueError> {
        let HandleKind::Channel { bootstrap, counter } = &handle.kind else {
            return Err(QueueError::WrongFlavor {
                expected: "channel",
                found: handle.flavor().name(),
            });
        };
        settle_ipc_channel_statics();
        let control: Shared<Control> = Shared::open(counter)?;
        let server = IpcSender::<Request>::connect(bootstrap.clone()).map_err(|e| {
            QueueError::transport(
                format!("cannot reach the channel queue's bootstrap server {bootstrap} (was the handle already used, or cancelled after the block limit?)"),
                e,
            )
        })?;
        let (reply_to, replies) = ipc::channel::<Grant>()?;
        server
            .send(reply_to)
            .map_err(|e| QueueError::transport("bootstrap request", e))?;
        let grant = replies
            .try_recv_timeout(handle.config.block_limit)
            .map_err(|e| match e {
                TryRecvError::Empty => QueueError::Stalled {
                    op: "open",
                    waited: handle.config.block_limit,
                },
                TryRecvError::IpcError(e) => QueueError::transport("bootstrap reply", e),
            })?;
        let mut config = handle.config;
        config.maxsize = control.maxsize.load(Ordering::SeqCst) as usize;
        Ok(ChannelQueue {
            sender: Some(grant.sender),
            receiver: Mutex::new(grant.receiver),
            control: Some(control),
            config,
            bootstraps: Mutex::new(Vec::new()),
        })
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

    /// Ends every outstanding bootstrap: cancels servers nobody connected to, joins the
    /// threads.
    fn finish_bootstraps(&self) {
        let pending =
            std::mem::take(&mut *self.bootstraps.lock().unwrap_or_else(|p| p.into_inner()));
        for bootstrap in pending {
            let _ = bootstrap.stop.send(());
            for thread in bootstrap.threads {
                let _ = thread.join();
            }
        }
    }
}

/// Unblocks a server's `accept()`: connects and hangs up without a message, so the
/// accept fails and its thread ends. Done with a raw socket rather than
/// `IpcSender::connect`, which leaks its socket when the connect fails (ipc-channel 0.23
/// does not close the fd on that path), and it fails whenever the server has just gone.
fn cancel(name: &str) {
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    use std::os::fd::AsRawFd;
    let Ok(fd) = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    ) else {
        return;
    };
    if let Ok(addr) = UnixAddr::new(name) {
        let _ = connect(fd.as_raw_fd(), &addr);
    }
}

impl ChannelQueue {
    /// Fault injection for tests: stops where a producer SIGKILLed inside its send would,
    /// holding a maxsize permit and its reservation. False when there was no room.
    #[doc(hidden)]
    pub fn abandon_put_for_test(&self) -> Result<bool, QueueError> {
        let control = self.control()?;
        if !control.items.acquire_below(self.limit(), Instant::now()) {
            return Ok(false);
        }
        Ok(control.reserve(std::process::id() as i32).is_some())
    }
}

impl Queue for ChannelQueue {
    fn flavor(&self) -> Flavor {
        Flavor::Channel
    }

    fn can_get(&self) -> bool {
        self.receiver.lock().map(|r| r.is_some()).unwrap_or(false)
    }

    fn put(&self, message: &[u8], timeout: Option<Duration>) -> Result<(), QueueError> {
        let control = self.control()?;
        let sender = self.sender.as_ref().ok_or(QueueError::Closed)?;
        check_size(message.len(), self.config.max_message)?;
        let wait = Wait::new(timeout, self.config.block_limit);
        // Wait for room in short steps, taking back dead producers' permits between them
        // (and once more before a nowait call gives up).
        loop {
            let step = wait.deadline.min(Instant::now() + RECOVERY_CHECK);
            if control.items.acquire_below(self.limit(), step) {
                break;
            }
            let recovered = control.recover_dead_reservations();
            if Instant::now() >= wait.deadline && !recovered {
                return Err(wait.expired("put", QueueError::Full));
            }
        }
        let reservation = control.reserve(std::process::id() as i32);
        let sent = sender.send(Payload(message.to_vec()));
        if let Some(slot) = reservation {
            slot.store(0, SeqCst);
        }
        sent.map_err(|e| {
            control.items.release();
            match e {
                IpcError::Disconnected => QueueError::Disconnected,
                IpcError::Io(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                    QueueError::Disconnected
                }
                e => QueueError::transport("put", e),
            }
        })
    }

    fn get(&self, timeout: Option<Duration>) -> Result<Vec<u8>, QueueError> {
        let control = self.control()?;
        let wait = Wait::new(timeout, self.config.block_limit);
        let receiver = self.receiver.lock().unwrap_or_else(|p| p.into_inner());
        let receiver = receiver
            .as_ref()
            .ok_or(QueueError::NotConsumer { flavor: "channel" })?;
        let left = wait.deadline.saturating_duration_since(Instant::now());
        let result = if left.is_zero() {
            receiver.try_recv()
        } else {
            receiver.try_recv_timeout(left)
        };
        match result {
            Ok(Payload(message)) => {
                control.items.release();
                Ok(message)
            }
            Err(TryRecvError::Empty) => Err(wait.expired("get", QueueError::Empty)),
            Err(TryRecvError::IpcError(IpcError::Disconnected)) => Err(QueueError::Disconnected),
            Err(TryRecvError::IpcError(e)) => Err(QueueError::transport("get", e)),
        }
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
        self.finish_bootstraps();
        self.sender = None;
        *self.receiver.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.control = None;
    }

    /// Starts a bootstrap server for one child to open. A `Consumer`/`Both` handle takes
    /// this process's receiver with it (once).
    fn handle(&self, role: Role) -> Result<QueueHandle, QueueError> {
        let control = self.control.as_ref().ok_or(QueueError::Closed)?;
        let sender = self.sender.as_ref().ok_or(QueueError::Closed)?.clone();
        let receiver = if role.gets() {
            let taken = self
                .receiver
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            Some(taken.ok_or(QueueError::SingleConsumer { flavor: "channel" })?)
        } else {
            None
        };
        let (server, name) = IpcOneShotServer::<Request>::new()?;
        let (stop, stopped) = mpsc::channel::<()>();
        let accepting = std::thread::Builder::new()
            .name("queue-bootstrap".into())
            .spawn(move || {
                if let Ok((_, reply_to)) = server.accept() {
                    let _ = reply_to.send(Grant { sender, receiver });
                }
            })?;
        let guard_name = name.clone();
        let limit = self.config.block_limit;
        let guard = std::thread::Builder::new()
            .name("queue-bootstrap-guard".into())
            .spawn(move || {
                let _ = stopped.recv_timeout(limit);
                // Whether the limit passed or the queue is closing: if the child has not
                // connected, this connection ends the accept; if it has, it fails quietly.
                if !accepting.is_finished() {
                    cancel(&guard_name);
                }
                let _ = accepting.join();
            })?;
        self.bootstraps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Bootstrap {
                stop,
                threads: vec![guard],
            });
        Ok(QueueHandle {
            config: self.config,
            role,
            kind: HandleKind::Channel {
                bootstrap: name,
                counter: control.name().to_string(),
            },
        })
    }
}

impl Drop for ChannelQueue {
    fn drop(&mut self) {
        self.finish_bootstraps();
    }
}
