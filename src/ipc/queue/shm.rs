//! The shm flavor: a bounded multi-producer multi-consumer ring in shared memory
//! (Vyukov's bounded MPMC queue: each slot carries a sequence number that says whose turn
//! it is), with variable-size messages up to a configured maximum per slot. Waiting spins
//! briefly, then sleeps on a futex, so a hand-off between awake processes costs no
//! system call and an idle waiter burns no CPU.
//!
//! # A peer that dies mid-message
//! A put claims a position, copies, then publishes; a get claims, copies, then releases.
//! A process killed between claim and publish/release would leave the slot in limbo and
//! wedge every later reader (or writer). Each slot therefore records the pid of the
//! process working in it. A waiter that finds the head slot stuck checks that pid:
//! * writer dead before publishing: a reader marks the slot as a tombstone; the consumer
//!   that takes it gets `QueueError::PeerDied { pid, op: "put" }` (the message is lost,
//!   and said so), and the queue moves on.
//! * reader dead before releasing: a writer releases the slot (the dead reader's message
//!   was its own to lose; [`ShmQueue::lost`] counts it) and the queue moves on.
//!
//! The pid is stored right after the claim, so a process killed in the few instructions
//! between claim and store leaves a slot nobody can vouch for: waiters on it then fail
//! with `Stalled` at their block limit instead of hanging. Pid reuse within one wait is
//! not guarded against.

use super::{
    check_size, process_is_dead, Config, Flavor, HandleKind, Queue, QueueError, QueueHandle, Role,
    Wait, DEFAULT_SHM_MAX_MESSAGE, DEFAULT_SHM_SLOTS,
};
use crate::ipc::futex;
use crate::ipc::shm::{Shared, ShmSafe};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Busy re-checks before a waiter starts yielding: a few microseconds, enough to cover a
/// peer running on another CPU (a cache-line hand-off is ~0.1-0.2 µs) without starving
/// for long a peer that shares this CPU.
const SPIN_TRIES: u32 = 100;
/// Re-checks with a `sched_yield` before each, before sleeping: on a shared CPU they let
/// the peer run at once, which beats a futex wake round trip.
const YIELD_TRIES: u32 = 50;
/// While asleep, wake up this often to check whether the peer in the head slot died.
const RECOVERY_CHECK: Duration = Duration::from_millis(10);
/// Owner value of a slot being recovered by one waiter.
const RECOVERING: i32 = -1;
const MAGIC: u64 = 0x6970_6362_7269_6e67; // "ipcbring"

#[repr(C, align(64))]
struct Line<T>(T);

#[repr(C)]
struct Header {
    magic: AtomicU64,
    capacity: AtomicU64,
    max_message: AtomicU64,
    stride: AtomicU64,
    lost: AtomicU64,
    enqueue: Line<AtomicU64>,
    dequeue: Line<AtomicU64>,
    /// Bumped on every publish; readers sleep on it.
    published: Line<(AtomicU32, AtomicU32)>,
    /// Bumped on every release; writers sleep on it.
    released: Line<(AtomicU32, AtomicU32)>,
}

// SAFETY: atomics only, all valid at zero; the creator fills in the geometry before the
// name is handed to anyone.
unsafe impl ShmSafe for Header {}

/// Bumps a wait word and wakes its sleepers, if any (no system call when none sleeps).
fn signal((word, waiters): &(AtomicU32, AtomicU32)) {
    word.fetch_add(1, Ordering::SeqCst);
    if waiters.load(Ordering::SeqCst) > 0 {
        futex::wake_all(word);
    }
}

#[repr(C)]
struct Slot {
    seq: AtomicU64,
    len: AtomicU32,
    /// pid of the process between claim and publish/release; 0 otherwise.
    owner: AtomicI32,
    /// pid of a producer that died before publishing this slot (a tombstone), else 0.
    tomb: AtomicI32,
    _pad: u32,
}

const SLOT_HEADER: usize = std::mem::size_of::<Slot>();

pub struct ShmQueue {
    ring: Option<Shared<Header>>,
    config: Config,
    capacity: u64,
    stride: usize,
    pid: i32,
}

enum Attempt<T> {
    Done(T),
    /// Nothing to take / no room.
    Blocked,
}

impl ShmQueue {
    pub fn create(config: &Config) -> Result<ShmQueue, QueueError> {
        let mut config = *config;
        if config.maxsize == 0 {
            config.maxsize = DEFAULT_SHM_SLOTS;
        }
        if config.max_message == 0 {
            config.max_message = DEFAULT_SHM_MAX_MESSAGE;
        }
        if config.max_message > u32::MAX as usize - 1 {
            return Err(QueueError::TooLarge {
                len: config.max_message,
                max: u32::MAX as usize - 1,
            });
        }
        let stride = (SLOT_HEADER + config.max_message).next_multiple_of(64);
        let bytes = stride
            .checked_mul(config.maxsize)
            .ok_or(QueueError::TooLarge {
                len: config.maxsize,
                max: usize::MAX / stride,
            })?;
        let ring: Shared<Header> = Shared::create("queue-shm", bytes)?;
        ring.capacity
            .store(config.maxsize as u64, Ordering::Relaxed);
        ring.max_message
            .store(config.max_message as u64, Ordering::Relaxed);
        ring.stride.store(stride as u64, Ordering::Relaxed);
        let queue = ShmQueue::assemble(ring, config);
        for i in 0..queue.capacity {
            queue.slot(i).seq.store(i, Ordering::Relaxed);
        }
        queue.header().magic.store(MAGIC, Ordering::SeqCst);
        Ok(queue)
    }

    pub fn open(handle: QueueHandle) -> Result<ShmQueue, QueueError> {
        let HandleKind::Shm { ring } = handle.kind else {
            return Err(QueueError::WrongFlavor {
                expected: "shm",
                found: handle.flavor().name(),
            });
        };
        let ring: Shared<Header> = Shared::open(&ring)?;
        if ring.magic.load(Ordering::SeqCst) != MAGIC {
            return Err(QueueError::Corrupt(format!(
                "shared memory {} is not an initialised shm queue",
                ring.name()
            )));
        }
        let mut config = handle.config;
        config.maxsize = ring.capacity.load(Ordering::Relaxed) as usize;
        config.max_message = ring.max_message.load(Ordering::Relaxed) as usize;
        let stride = ring.stride.load(Ordering::Relaxed) as usize;
        if ring.trailing().1 < stride * config.maxsize {
            return Err(QueueError::Corrupt(format!(
                "shared memory {} is smaller than its ring geometry says",
                ring.name()
            )));
        }
        Ok(ShmQueue::assemble(ring, config))
    }

    fn assemble(ring: Shared<Header>, config: Config) -> ShmQueue {
        ShmQueue {
            stride: ring.stride.load(Ordering::Relaxed) as usize,
            capacity: config.maxsize as u64,
            ring: Some(ring),
            config,
            pid: std::process::id() as i32,
        }
    }

    /// Messages lost because a consumer died holding them (recovered slots).
    pub fn lost(&self) -> u64 {
        self.ring
            .as_ref()
            .map_or(0, |r| r.lost.load(Ordering::Relaxed))
    }

    fn header(&self) -> &Header {
        self.ring.as_deref().expect("checked open by callers")
    }

    fn slot_ptr(&self, pos: u64) -> *mut u8 {
        let ring = self.ring.as_ref().expect("checked open by callers");
        let index = (pos % self.capacity) as usize;
        // SAFETY: index < capacity and the trailing area holds capacity * stride bytes
        // (checked at create/open).
        unsafe { ring.trailing().0.add(index * self.stride) }
    }

    fn slot(&self, pos: u64) -> &Slot {
        // SAFETY: each slot starts at a 64-byte-aligned offset inside the mapping and
        // holds only atomics, valid at zero.
        unsafe { &*(self.slot_ptr(pos) as *const Slot) }
    }

    fn data(&self, pos: u64) -> *mut u8 {
        // SAFETY: the data area follows the slot header inside the same stride.
        unsafe { self.slot_ptr(pos).add(SLOT_HEADER) }
    }

    /// Claims the next position on `counter` (enqueue for a put, dequeue for a get) when
    /// its slot's sequence says it is this side's turn (`pos + turn`: 0 for a put, 1 for
    /// a get). None when it is not (the ring is full, or empty).
    fn claim(&self, counter: &AtomicU64, turn: u64) -> Option<u64> {
        let mut pos = counter.load(Ordering::Relaxed);
        loop {
            let seq = self.slot(pos).seq.load(Ordering::Acquire);
            let ahead = seq as i64 - (pos + turn) as i64;
            if ahead == 0 {
                match counter.compare_exchange_weak(
                    pos,
                    pos + 1,
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return Some(pos),
                    Err(now) => pos = now,
                }
            } else if ahead < 0 {
                return None;
            } else {
                pos = counter.load(Ordering::Relaxed);
            }
        }
    }

    fn try_put(&self, message: &[u8]) -> Attempt<()> {
        let header = self.header();
        let Some(pos) = self.claim(&header.enqueue.0, 0) else {
            return Attempt::Blocked;
        };
        let slot = self.slot(pos);
        slot.owner.store(self.pid, Ordering::SeqCst);
        // SAFETY: the claim gives this process the slot exclusively until it publishes;
        // the message fits (checked by the caller against max_message).
        unsafe { std::ptr::copy_nonoverlapping(message.as_ptr(), self.data(pos), message.len()) };
        slot.len.store(message.len() as u32, Ordering::Relaxed);
        slot.owner.store(0, Ordering::Relaxed);
        slot.seq.store(pos + 1, Ordering::Release);
        signal(&header.published.0);
        Attempt::Done(())
    }

    fn try_get(&self) -> Attempt<Result<Vec<u8>, QueueError>> {
        let header = self.header();
        let Some(pos) = self.claim(&header.dequeue.0, 1) else {
            return Attempt::Blocked;
        };
        let slot = self.slot(pos);
        slot.owner.store(self.pid, Ordering::SeqCst);
        let tomb = slot.tomb.load(Ordering::Relaxed);
        let result = if tomb != 0 {
            slot.tomb.store(0, Ordering::Relaxed);
            Err(QueueError::PeerDied {
                pid: tomb,
                op: "put",
            })
        } else {
            let len = slot.len.load(Ordering::Relaxed) as usize;
            let mut message = Vec::with_capacity(len);
            // SAFETY: the claim gives this process the slot until it releases it; len was
            // written by the producer before it published (Acquire above) and is at most
            // max_message, which the slot's data area holds.
            unsafe {
                std::ptr::copy_nonoverlapping(self.data(pos), message.as_mut_ptr(), len);
                message.set_len(len);
            }
            Ok(message)
        };
        slot.owner.store(0, Ordering::Relaxed);
        // A CAS, not a store: a writer that took this process for dead may have released
        // the slot already (see `recover_dead_reader`).
        let _ = slot.seq.compare_exchange(
            pos + 1,
            pos + self.capacity,
            Ordering::Release,
            Ordering::Relaxed,
        );
        signal(&header.released.0);
        Attempt::Done(result)
    }

    /// The head slot was claimed by a producer that died before publishing: make it a
    /// tombstone so that consumers move past it (the one that takes it is told).
    fn recover_dead_writer(&self) {
        let header = self.header();
        let pos = header.dequeue.0.load(Ordering::SeqCst);
        if header.enqueue.0.load(Ordering::SeqCst) <= pos {
            return;
        }
        let slot = self.slot(pos);
        let owner = slot.owner.load(Ordering::SeqCst);
        if slot.seq.load(Ordering::SeqCst) != pos || owner == 0 || !process_is_dead(owner) {
            return;
        }
        if slot
            .owner
            .compare_exchange(owner, RECOVERING, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return;
        }
        slot.tomb.store(owner, Ordering::Relaxed);
        slot.owner.store(0, Ordering::Relaxed);
        slot.seq.store(pos + 1, Ordering::Release);
        signal(&header.published.0);
    }

    /// The slot a producer needs is held by a consumer that died before releasing it:
    /// release it on its behalf (its message is lost; counted in `lost`).
    fn recover_dead_reader(&self) {
        let header = self.header();
        let pos = header.enqueue.0.load(Ordering::SeqCst);
        if pos < self.capacity {
            return;
        }
        let held = pos - self.capacity;
        if header.dequeue.0.load(Ordering::SeqCst) <= held {
            return; // not claimed: the queue is simply full
        }
        let slot = self.slot(held);
        let owner = slot.owner.load(Ordering::SeqCst);
        if slot.seq.load(Ordering::SeqCst) != held + 1 || owner == 0 || !process_is_dead(owner) {
            return;
        }
        if slot
            .owner
            .compare_exchange(owner, RECOVERING, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return;
        }
        slot.tomb.store(0, Ordering::Relaxed);
        slot.owner.store(0, Ordering::Relaxed);
        if slot
            .seq
            .compare_exchange(held + 1, pos, Ordering::Release, Ordering::Relaxed)
            .is_ok()
        {
            header.lost.fetch_add(1, Ordering::Relaxed);
        }
        signal(&header.released.0);
    }

    /// Retries `attempt` until it is done or the deadline passes: spin (touching only the
    /// slot, so the hand-off costs a few cache-line transfers and no system call), then
    /// yield (so a peer sharing this CPU can run), then sleep on `word`, waking now and
    /// then to `recover` from a dead peer. `word` is read only on the way to sleep: a
    /// spinner that polled it would pull its cache line away from the peer on every try.
    fn wait_for<T>(
        &self,
        deadline: Instant,
        nowait: bool,
        word: &(AtomicU32, AtomicU32),
        mut attempt: impl FnMut() -> Attempt<T>,
        recover: impl Fn(),
    ) -> Option<T> {
        let (word, waiters) = word;
        if let Attempt::Done(value) = attempt() {
            return Some(value);
        }
        if nowait {
            return None;
        }
        for round in 0..SPIN_TRIES + YIELD_TRIES {
            if round < SPIN_TRIES {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
            if let Attempt::Done(value) = attempt() {
                return Some(value);
            }
        }
        loop {
            let seen = word.load(Ordering::SeqCst);
            if let Attempt::Done(value) = attempt() {
                return Some(value);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            recover();
            waiters.fetch_add(1, Ordering::SeqCst);
            futex::wait(word, seen, Some(deadline.min(now + RECOVERY_CHECK)));
            waiters.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Fault injection for tests: claims the next position as a put (or a get) would,
    /// records this process as working in it, and stops there, as a process killed
    /// mid-message would. Returns false when there was no room (or nothing to take).
    #[doc(hidden)]
    pub fn abandon_midway_for_test(&self, put: bool) -> bool {
        let header = self.header();
        let claimed = if put {
            self.claim(&header.enqueue.0, 0)
        } else {
            self.claim(&header.dequeue.0, 1)
        };
        let Some(pos) = claimed else {
            return false;
        };
        let slot = self.slot(pos);
        slot.owner.store(self.pid, Ordering::SeqCst);
        true
    }

    fn check_open(&self) -> Result<(), QueueError> {
        if self.ring.is_none() {
            Err(QueueError::Closed)
        } else {
            Ok(())
        }
    }
}

impl Queue for ShmQueue {
    fn flavor(&self) -> Flavor {
        Flavor::Shm
    }

    fn put(&self, message: &[u8], timeout: Option<Duration>) -> Result<(), QueueError> {
        self.check_open()?;
        check_size(message.len(), self.config.max_message)?;
        let wait = Wait::new(timeout, self.config.block_limit);
        let nowait = timeout == Some(Duration::ZERO);
        self.wait_for(
            wait.deadline,
            nowait,
            &self.header().released.0,
            || self.try_put(message),
            || self.recover_dead_reader(),
        )
        .ok_or_else(|| wait.expired("put", QueueError::Full))
    }

    fn get(&self, timeout: Option<Duration>) -> Result<Vec<u8>, QueueError> {
        self.check_open()?;
        let wait = Wait::new(timeout, self.config.block_limit);
        let nowait = timeout == Some(Duration::ZERO);
        self.wait_for(
            wait.deadline,
            nowait,
            &self.header().published.0,
            || self.try_get(),
            || self.recover_dead_writer(),
        )
        .unwrap_or_else(|| Err(wait.expired("get", QueueError::Empty)))
    }

    fn maxsize(&self) -> usize {
        self.config.maxsize
    }

    fn max_message(&self) -> usize {
        self.config.max_message
    }

    fn qsize(&self) -> usize {
        let Some(ring) = self.ring.as_ref() else {
            return 0;
        };
        let dequeue = ring.dequeue.0.load(Ordering::SeqCst);
        let enqueue = ring.enqueue.0.load(Ordering::SeqCst);
        enqueue.saturating_sub(dequeue).min(self.capacity) as usize
    }

    fn close(&mut self) {
        self.ring = None;
    }

    fn handle(&self, role: Role) -> Result<QueueHandle, QueueError> {
        let ring = self.ring.as_ref().ok_or(QueueError::Closed)?;
        Ok(QueueHandle {
            config: self.config,
            role,
            kind: HandleKind::Shm {
                ring: ring.name().to_string(),
            },
        })
    }
}
