//! A queue over a Unix datagram socketpair, plugged into every ipcbench harness. Writers
//! send on one end, readers receive on the other: a datagram is one message, so processes
//! sharing the ends never see one torn or merged. `qsize` is a counter in shared memory from
//! a put's reservation to a get's release (a process killed in between leaves it one high).

use ipcbench::ipc::queue::QueueError as E;
use ipcbench::ipc::queue::{check_size, BuiltOn, Config, Counter, Flavor, PluginFlavor};
use ipcbench::ipc::queue::{PluginQueue, Queue, QueueHandle, Role, Wait};
use ipcbench::ipc::shm::Shared;
use nix::poll::PollFlags;
use nix::sys::socket::{self as sock, sockopt, MsgFlags};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

pub mod scenario;

/// `ends[0]` is written, `ends[1]` read (None once closed); `count` is the shared qsize.
pub struct DgramQueue {
    ends: Option<[OwnedFd; 2]>,
    count: Shared<Counter>,
    config: Config,
}

impl Queue for DgramQueue {
    fn flavor(&self) -> Flavor {
        Flavor::Plugin(PluginFlavor::find(Self::NAME).expect("registered below"))
    }
    fn put(&self, message: &[u8], timeout: Option<Duration>) -> Result<(), E> {
        let fd = self.ends.as_ref().ok_or(E::Closed)?[0].as_fd();
        check_size(message.len(), self.config.max_message)?;
        let wait = Wait::new(timeout, self.config.block_limit);
        let room = match self.config.maxsize {
            0 => u32::MAX, // unbounded
            n => n.try_into().unwrap_or(u32::MAX),
        };
        if !self.count.acquire_below(room, wait.deadline) {
            return Err(wait.expired("put", E::Full));
        }
        let send = || sock::send(fd.as_raw_fd(), message, MsgFlags::MSG_DONTWAIT);
        let sent = wait.retry_fd(fd, PollFlags::POLLOUT, "put", E::Full, send);
        sent.map(drop).inspect_err(|_| _ = self.count.release())
    }
    fn get(&self, timeout: Option<Duration>) -> Result<Vec<u8>, E> {
        let fd = self.ends.as_ref().ok_or(E::Closed)?[1].as_fd();
        let mut buf = vec![0; self.config.max_message.max(1)];
        let recv = || sock::recv(fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT);
        let wait = Wait::new(timeout, self.config.block_limit);
        let len = wait.retry_fd(fd, PollFlags::POLLIN, "get", E::Empty, recv)?;
        self.count.release();
        buf.truncate(len);
        Ok(buf)
    }
    fn maxsize(&self) -> usize {
        self.config.maxsize
    }
    fn max_message(&self) -> usize {
        self.config.max_message
    }
    fn qsize(&self) -> usize {
        self.count.get() as usize
    }
    fn close(&mut self) {
        self.ends = None;
    }
    fn handle(&self, role: Role) -> Result<QueueHandle, E> {
        let [w, r] = self.ends.as_ref().ok_or(E::Closed)?;
        let fds = [w.as_raw_fd(), r.as_raw_fd()];
        QueueHandle::plugin::<Self>(self.config, role, &(fds, self.count.name()), fds.to_vec())
    }
}

impl PluginQueue for DgramQueue {
    const NAME: &'static str = "dgram";
    const MULTI_CONSUMER: bool = true;
    const BUILT_ON: BuiltOn = BuiltOn::UnixSocket;

    fn create(config: &Config) -> Result<Self, E> {
        use sock::{AddressFamily::Unix, SockFlag, SockType::Datagram};
        let (w, r) = sock::socketpair(Unix, Datagram, None, SockFlag::SOCK_CLOEXEC)
            .map_err(|e| E::Io(e.into()))?;
        let mut config = *config;
        if config.max_message == 0 {
            config.max_message = 64 << 10;
        }
        // Room for two of the largest messages (past wmem_max only with CAP_NET_ADMIN); the
        // kernel refuses a datagram longer than the send buffer less 32 bytes.
        let want = 2 * config.max_message + (64 << 10);
        let _ = sock::setsockopt(&w, sockopt::SndBufForce, &want)
            .or_else(|_| sock::setsockopt(&w, sockopt::SndBuf, &want));
        let room = sock::getsockopt(&w, sockopt::SndBuf).map_or(0, |b| b.saturating_sub(32));
        config.max_message = config.max_message.min(room);
        let (ends, count) = (Some([w, r]), Shared::create("dgram", 0)?);
        Ok(DgramQueue {
            ends,
            count,
            config,
        })
    }

    fn open(handle: QueueHandle) -> Result<Self, E> {
        let (fds, name): ([RawFd; 2], String) = handle.plugin_data::<Self, _>()?;
        // SAFETY: the fds were inherited for this handle (`QueueHandle::inherit`), and a
        // handle is opened once per process: nothing else here owns them.
        let ends = Some(fds.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
        let (count, config) = (Shared::open(&name)?, handle.config);
        Ok(DgramQueue {
            ends,
            count,
            config,
        })
    }
}

ipcbench::register_queue_flavor!(DgramQueue);
