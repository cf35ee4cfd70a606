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
//! process working in it, and records it *before* the position is claimed: a claimer
//! first reserves the slot (a CAS of its `owner` from 0 to its pid), then advances the
//! counter, and clears `owner` only after it has published or released. So from the
//! counter's advance to the publish there is always a pid to vouch for the slot, and a
//! waiter that finds its slot stuck checks that pid:
//! * reserver dead before advancing the counter: the counter still points at the slot;
//!   a waiter clears the reservation and the queue goes on as if it never happened.
//! * writer dead before publishing: a reader marks the slot as a tombstone; the consumer
//!   that takes it gets `QueueError::PeerDied { pid, op: "put" }` (the message is lost,
//!   and said so), and the queue moves on.
//! * reader dead before releasing: a writer releases the slot (the dead reader's message
//!   was its own to lose; [`ShmQueue::lost`] counts it) and the queue moves on.
//!
//! A recoverer marks the slot with its own pid negated, so a recoverer killed midway is
//! itself recovered from. Pid reuse within one wait is not guarded against. Recovery runs
//! on the way to sleep and before a `*_nowait` call gives up, so a caller that never
//! blocks still moves past a dead peer.
//!
//! # One slot
//! The sequence scheme needs two slots: with one, "published at pos" and "free for the
//! producer at pos + 1" are the same number. A ring asked for `maxsize` 1 (Python's
//! `Queue(1)`) gets two slots and a `limit` of 1, which a put checks against the
//! consumers' counter; rings of two slots and more pay nothing for it.
//!
//! # Untrusted shared memory
//! The geometry is read back from the segment by every opener, and a segment may be
//! stale, of another version, or scribbled on by a buggy process. `Geometry::check`
//! refuses any header that would put a slot or a message outside the segment, and a get
//! refuses a message length beyond the ring's maximum: both are `QueueError::Corrupt`
//! naming the segment, never an out-of-bounds read, a division by zero or a huge
//! allocation. A slot sequence number that no legal history can produce is reported the
//! same way instead of being waited on.

use super::{
    check_size, process_is_dead, Config, Flavor, HandleKind, Queue, QueueError, QueueHandle, Role,
    Wait, DEFAULT_SHM_MAX_MESSAGE, DEFAULT_SHM_SLOTS,
};
use crate::schedule::{point, wait_point};
use crate::sys::futex;
use crate::sys::shm::{Shared, ShmSafe};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Busy re-checks before a waiter starts yielding: a few microseconds, enough to cover a
/// peer running on another CPU (a cache-line hand-off is ~0.1-0.2 µs). Only when a peer
/// can run on another CPU meanwhile (`process::affinity`): a peer that needs this CPU
/// is only delayed by them, so the waiter goes straight to yielding.
const SPIN_TRIES: u32 = 100;
/// Re-checks with a `sched_yield` before each, before sleeping: on a shared CPU they let
/// the peer run at once, which beats a futex wake round trip.
const YIELD_TRIES: u32 = 50;
/// While asleep, wake up this often to check whether the peer in the head slot died.
const RECOVERY_CHECK: Duration = Duration::from_millis(10);
/// First nap of a waiter that found its slot reserved by a peer of its own side: the
/// reserver's release wakes the other side's word, not this one, so the waiter polls,
/// doubling the nap up to [`RECOVERY_CHECK`] while the reservation stays.
const BUSY_NAP: Duration = Duration::from_micros(20);
/// "ipcbrin3": the layout with `limit` and the sides' CPUs (a segment of an earlier
/// layout is refused).
const MAGIC: u64 = 0x6970_6362_7269_6e33;
/// Largest message a slot may be configured for: a slot's length field is a u32.
const MAX_SLOT_MESSAGE: usize = u32::MAX as usize - 1;

#[repr(C, align(64))]
struct Line<T>(T);

#[repr(C)]
struct Header {
    magic: AtomicU64,
    capacity: AtomicU64,
    max_message: AtomicU64,
    stride: AtomicU64,
    lost: AtomicU64,
    /// Most messages in the ring at once: `capacity`, or fewer (a one-slot queue).
    limit: AtomicU64,
    enqueue: Line<AtomicU64>,
    dequeue: Line<AtomicU64>,
    /// Bumped on every publish; readers sleep on it.
    published: Line<(AtomicU32, AtomicU32)>,
    /// Bumped on every release; writers sleep on it.
    released: Line<(AtomicU32, AtomicU32)>,
    /// The CPUs (affinity masks, OR-ed) that producers and consumers may run on, 0 until
    /// one has said: what a waiter for the other side asks before spinning. Read-mostly,
    /// so on a line of their own.
    side_cpus: Line<SideCpus>,
}

struct SideCpus {
    producers: AtomicU64,
    consumers: AtomicU64,
}

/// Adds the calling thread's CPUs to a side's mask (a plain load when they are in it).
fn announce_cpus(side: &AtomicU64) {
    let mine = crate::process::affinity::allowed_mask();
    if side.load(Ordering::Relaxed) & mine != mine {
        side.fetch_or(mine, Ordering::Relaxed);
    }
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
    /// pid of the process that reserved the slot, from before its claim until after its
    /// publish/release; minus the pid of a process recovering the slot; 0 otherwise.
    owner: AtomicI32,
    /// pid of a producer that died before publishing this slot (a tombstone), else 0.
    tomb: AtomicI32,
    _pad: u32,
}

const SLOT_HEADER: usize = std::mem::size_of::<Slot>();

/// A ring's shape as its header states it, checked before any slot is touched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub(crate) capacity: u64,
    pub(crate) limit: u64,
    pub(crate) max_message: u64,
    pub(crate) stride: u64,
}

impl Geometry {
    /// Why this geometry cannot describe a ring in `available` trailing bytes, if it
    /// cannot: every slot and every message must lie inside them.
    pub(crate) fn check(&self, available: usize) -> Result<(), String> {
        let Geometry {
            capacity,
            limit,
            max_message,
            stride,
        } = *self;
        if capacity < 2 {
            return Err(format!("{capacity} slots (a ring has at least 2)"));
        }
        if limit == 0 || limit > capacity {
            return Err(format!("a limit of {limit} messages in {capacity} slots"));
        }
        if max_message > MAX_SLOT_MESSAGE as u64 {
            return Err(format!("a maximum message of {max_message} bytes"));
        }
        if stride % 64 != 0 || stride < SLOT_HEADER as u64 + max_message {
            return Err(format!(
                "a slot stride of {stride} bytes for messages of {max_message} (needs a \
                 multiple of 64 of at least {})",
                SLOT_HEADER as u64 + max_message
            ));
        }
        match stride.checked_mul(capacity) {
            Some(bytes) if bytes <= available as u64 => Ok(()),
            _ => Err(format!(
                "{capacity} slots of {stride} bytes in {available} bytes of ring"
            )),
        }
    }
}

/// The `shm` flavor: a bounded ring of fixed-size slots in one shared-memory segment,
/// futex wake-ups, and a dead claimant detected by pid, so a killed peer costs at most
/// the message it held.
pub struct ShmQueue {
    ring: Option<Shared<Header>>,
    config: Config,
    /// Slots in the ring (at least 2).
    capacity: u64,
    /// `Some(maxsize)` when fewer messages than slots may be in the ring (a one-slot
    /// queue); None when the ring's slots are the bound, as usual.
    limit: Option<u64>,
    /// `capacity - 1` when the capacity is a power of two (the usual case), so finding a
    /// slot is a mask rather than a 64-bit division (tens of cycles, several per hand-off).
    index_mask: Option<u64>,
    stride: usize,
    pid: i32,
}

enum Attempt<T> {
    Done(T),
    /// Nothing to take / no room.
    Blocked,
    /// The slot is reserved by a peer that has yet to advance the counter (or finish with
    /// the slot's previous turn): worth another look in a moment.
    Busy,
    /// Shared memory says something no legal history produces.
    Corrupt(String),
}

/// True when the process named by a slot's `owner` (a worker, or a recoverer) is gone.
fn owner_is_dead(owner: i32) -> bool {
    owner != 0 && process_is_dead(owner.unsigned_abs() as i32)
}

impl ShmQueue {
    /// Creates a ring of `config.maxsize` slots (0: the default) of `config.max_message`
    /// bytes each.
    pub fn create(config: &Config) -> Result<ShmQueue, QueueError> {
        let mut config = *config;
        if config.maxsize == 0 {
            config.maxsize = DEFAULT_SHM_SLOTS;
        }
        if config.max_message == 0 {
            config.max_message = DEFAULT_SHM_MAX_MESSAGE;
        }
        if config.max_message > MAX_SLOT_MESSAGE {
            return Err(QueueError::TooLarge {
                len: config.max_message,
                max: MAX_SLOT_MESSAGE,
            });
        }
        let stride = (SLOT_HEADER + config.max_message).next_multiple_of(64);
        let capacity = config.maxsize.max(2);
        let bytes = stride.checked_mul(capacity).ok_or(QueueError::TooLarge {
            len: config.maxsize,
            max: usize::MAX / stride,
        })?;
        let ring: Shared<Header> = Shared::create("queue-shm", bytes)?;
        ring.capacity.store(capacity as u64, Ordering::Relaxed);
        ring.limit.store(config.maxsize as u64, Ordering::Relaxed);
        ring.max_message
            .store(config.max_message as u64, Ordering::Relaxed);
        ring.stride.store(stride as u64, Ordering::Relaxed);
        let geometry = ShmQueue::geometry(&ring);
        let queue = ShmQueue::assemble(ring, config, geometry);
        for i in 0..queue.capacity {
            queue.slot(i).seq.store(i, Ordering::Relaxed);
        }
        queue.header().magic.store(MAGIC, Ordering::SeqCst);
        Ok(queue)
    }

    /// Maps, in another process, the ring `handle` names.
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
                "shared memory {} is not an initialised shm queue of this version",
                ring.name()
            )));
        }
        // Read once: the checked values are the ones used, whatever the segment says later.
        let geometry = ShmQueue::geometry(&ring);
        geometry.check(ring.trailing().1).map_err(|why| {
            QueueError::Corrupt(format!(
                "shared memory {}: its header says {why}",
                ring.name()
            ))
        })?;
        let mut config = handle.config;
        config.maxsize = geometry.limit as usize;
        config.max_message = geometry.max_message as usize;
        Ok(ShmQueue::assemble(ring, config, geometry))
    }

    fn geometry(ring: &Header) -> Geometry {
        Geometry {
            capacity: ring.capacity.load(Ordering::Relaxed),
            limit: ring.limit.load(Ordering::Relaxed),
            max_message: ring.max_message.load(Ordering::Relaxed),
            stride: ring.stride.load(Ordering::Relaxed),
        }
    }

    fn assemble(ring: Shared<Header>, config: Config, geometry: Geometry) -> ShmQueue {
        let capacity = geometry.capacity;
        ShmQueue {
            stride: geometry.stride as usize,
            capacity,
            limit: (geometry.limit < capacity).then_some(geometry.limit),
            index_mask: capacity.is_power_of_two().then(|| capacity - 1),
            ring: Some(ring),
            config,
            pid: std::process::id() as i32,
        }
    }

    fn corrupt(&self, why: impl std::fmt::Display) -> QueueError {
        QueueError::Corrupt(format!(
            "shared memory {}: {why}",
            self.shm_name().unwrap_or("(closed)")
        ))
    }

    /// The ring's name in /dev/shm (None once closed): where to look at its footprint.
    pub fn shm_name(&self) -> Option<&str> {
        self.ring.as_ref().map(|r| r.name())
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
        let index = match self.index_mask {
            Some(mask) => pos & mask,
            None => pos % self.capacity,
        } as usize;
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
    /// a get), leaving this process's pid in the slot's `owner`. Blocked when it is not
    /// this side's turn (the ring is full, or empty); Busy while another process holds
    /// the slot's reservation.
    fn claim(&self, counter: &AtomicU64, turn: u64) -> Attempt<u64> {
        loop {
            let pos = counter.load(Ordering::Relaxed);
            if turn == 0 && self.beyond_limit(pos) {
                return Attempt::Blocked;
            }
            let slot = self.slot(pos);
            let seq = slot.seq.load(Ordering::Acquire);
            let ahead = seq.wrapping_sub(pos + turn) as i64;
            if ahead < 0 {
                return Attempt::Blocked;
            }
            if ahead > 0 {
                // The counter moved on since we read it: a sequence ahead of the position
                // is written only after the counter passed it. If it has not, the slot
                // holds a number no history produces; waiting on it would spin forever.
                if counter.load(Ordering::Acquire) == pos {
                    return Attempt::Corrupt(format!(
                        "slot sequence {seq} at position {pos} (expected at most {})",
                        pos + turn
                    ));
                }
                continue;
            }
            if turn == 1 {
                self.prefetch(pos, self.config.max_message, false);
            }
            // Another claimer reserving the slot now makes this claim Busy.
            point("queue-shm/claim:turn-seen");
            // Reserve first, so the pid is there before the position is ours. Looked at
            // before the CAS: a failing CAS would still pull the line away from the peer
            // that is about to clear it.
            if slot.owner.load(Ordering::Relaxed) != 0
                || slot
                    .owner
                    .compare_exchange(0, self.pid, Ordering::SeqCst, Ordering::Relaxed)
                    .is_err()
            {
                return Attempt::Busy;
            }
            // Reserved, the counter not yet advanced: another claimer finds the slot Busy.
            point("queue-shm/claim:reserved");
            // Still this position's turn (not a stale read of another lap), and nobody
            // advanced the counter (only a reserver can): the position is ours.
            if slot.seq.load(Ordering::Acquire) == pos + turn
                && counter
                    .compare_exchange(pos, pos + 1, Ordering::SeqCst, Ordering::Relaxed)
                    .is_ok()
            {
                return Attempt::Done(pos);
            }
            // A stale reservation: peers of this side that found the slot Busy nap on
            // their word; tell them it is free again.
            slot.owner.store(0, Ordering::SeqCst);
            let header = self.header();
            signal(if turn == 0 {
                &header.released.0
            } else {
                &header.published.0
            });
        }
    }

    /// True when a put at `pos` would exceed a limit below the ring's slots: only a
    /// one-slot queue has one, so only it pays for reading the consumers' counter.
    #[inline]
    fn beyond_limit(&self, pos: u64) -> bool {
        self.limit.is_some_and(|limit| {
            pos.saturating_sub(self.header().dequeue.0.load(Ordering::Acquire)) >= limit
        })
    }

    /// Takes over a slot whose `owner` has died, marking it with this process's negated
    /// pid. False when the owner is alive (or someone else took over first).
    fn take_over_dead(&self, slot: &Slot, owner: i32) -> bool {
        owner_is_dead(owner)
            && slot
                .owner
                .compare_exchange(owner, -self.pid, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
    }

    /// The slot at `counter` is reserved by a process that died before advancing the
    /// counter (or before restoring a stale reservation): nothing was claimed, so the
    /// reservation is simply dropped. Only when the slot is at this side's turn and the
    /// counter still points at it; otherwise the owner belongs to the slot's other side,
    /// whose recovery is the other function.
    fn recover_dead_reservation(
        &self,
        counter: &AtomicU64,
        turn: u64,
        word: &(AtomicU32, AtomicU32),
    ) {
        let pos = counter.load(Ordering::SeqCst);
        let slot = self.slot(pos);
        let owner = slot.owner.load(Ordering::SeqCst);
        if slot.seq.load(Ordering::SeqCst) != pos + turn || !owner_is_dead(owner) {
            return;
        }
        if counter.load(Ordering::SeqCst) == pos
            && slot
                .owner
                .compare_exchange(owner, 0, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            signal(word);
        }
    }

    fn try_put(&self, message: &[u8]) -> Attempt<()> {
        let header = self.header();
        let pos = match self.claim(&header.enqueue.0, 0) {
            Attempt::Done(pos) => pos,
            Attempt::Blocked => return Attempt::Blocked,
            Attempt::Busy => return Attempt::Busy,
            Attempt::Corrupt(why) => return Attempt::Corrupt(why),
        };
        let slot = self.slot(pos);
        // SAFETY: the claim gives this process the slot exclusively until it publishes;
        // the message fits (checked by the caller against max_message).
        unsafe { std::ptr::copy_nonoverlapping(message.as_ptr(), self.data(pos), message.len()) };
        slot.len.store(message.len() as u32, Ordering::Relaxed);
        // Claimed and written, not published: a get at this position finds the ring empty.
        point("queue-shm/put:before-publish");
        slot.seq.store(pos + 1, Ordering::Release);
        slot.owner.store(0, Ordering::Release);
        signal(&header.published.0);
        self.prefetch(pos + 1, message.len(), true);
        Attempt::Done(())
    }

    /// Asks for the first lines of a slot (header and up to `len` bytes of data, at most
    /// four lines) ahead of need: for writing (`exclusive`), a put's next slot while the
    /// consumer is busy with this message, as those lines were last touched by a consumer
    /// a lap ago and fetching them (twice: to read the sequence, then to write) would
    /// sit on the next put's critical path; for reading, a get's data lines as soon as
    /// the sequence says they are ready, so they travel while the claim's CAS upgrades
    /// the header line. A hint only.
    #[inline]
    fn prefetch(&self, pos: u64, len: usize, exclusive: bool) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_ET0, _MM_HINT_T0};
            let start = self.slot_ptr(pos);
            let bytes = (SLOT_HEADER + len).min(self.stride).min(256);
            for offset in (0..bytes).step_by(64) {
                // SAFETY: a prefetch never faults, and the address is inside the mapping
                // anyway (offset < stride, within the slot).
                unsafe {
                    let line = start.add(offset) as *const i8;
                    if exclusive {
                        _mm_prefetch::<_MM_HINT_ET0>(line)
                    } else {
                        _mm_prefetch::<_MM_HINT_T0>(line)
                    }
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (pos, len, exclusive);
    }

    /// Takes the head message into `buf`, which the caller has emptied (it stays empty
    /// for a tombstone).
    fn try_get(&self, buf: &mut Vec<u8>) -> Attempt<Result<(), QueueError>> {
        let header = self.header();
        let pos = match self.claim(&header.dequeue.0, 1) {
            Attempt::Done(pos) => pos,
            Attempt::Blocked => return Attempt::Blocked,
            Attempt::Busy => return Attempt::Busy,
            Attempt::Corrupt(why) => return Attempt::Corrupt(why),
        };
        let slot = self.slot(pos);
        let tomb = slot.tomb.load(Ordering::Relaxed);
        let result = if tomb != 0 {
            slot.tomb.store(0, Ordering::Relaxed);
            Err(QueueError::PeerDied {
                pid: tomb,
                op: "put",
            })
        } else {
            let len = slot.len.load(Ordering::Relaxed) as usize;
            if len > self.config.max_message {
                // Not ours to trust: the slot is released below like any other, and the
                // caller told, so the ring goes on past it.
                Err(self.corrupt(format_args!(
                    "a message of {len} bytes at position {pos}, beyond the ring's maximum of {}",
                    self.config.max_message
                )))
            } else {
                buf.reserve(len);
                // SAFETY: the claim gives this process the slot until it releases it; len
                // is at most max_message (checked above), which the slot's data area holds
                // (stride >= header + max_message, checked at open); `buf` has room.
                unsafe {
                    std::ptr::copy_nonoverlapping(self.data(pos), buf.as_mut_ptr(), len);
                    buf.set_len(len);
                }
                Ok(())
            }
        };
        // Taken, not released: a put a lap later finds the ring full.
        point("queue-shm/get:before-release");
        // A CAS, not a store: a writer that took this process for dead may have released
        // the slot already (see `recover_dead_reader`).
        let _ = slot.seq.compare_exchange(
            pos + 1,
            pos + self.capacity,
            Ordering::Release,
            Ordering::Relaxed,
        );
        slot.owner.store(0, Ordering::Release);
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
        if slot.seq.load(Ordering::SeqCst) != pos || !self.take_over_dead(slot, owner) {
            return;
        }
        // A recoverer that died here may have recorded the writer already.
        if owner > 0 || slot.tomb.load(Ordering::Relaxed) == 0 {
            slot.tomb.store(owner.abs(), Ordering::Relaxed);
        }
        slot.seq.store(pos + 1, Ordering::Release);
        slot.owner.store(0, Ordering::Release);
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
        if slot.seq.load(Ordering::SeqCst) != held + 1 || !self.take_over_dead(slot, owner) {
            return;
        }
        slot.tomb.store(0, Ordering::Relaxed);
        if slot
            .seq
            .compare_exchange(held + 1, pos, Ordering::Release, Ordering::Relaxed)
            .is_ok()
        {
            header.lost.fetch_add(1, Ordering::Relaxed);
        }
        slot.owner.store(0, Ordering::Release);
        signal(&header.released.0);
    }

    /// Retries `attempt` until it is done or the deadline passes: spin (touching only the
    /// slot, so the hand-off costs a few cache-line transfers and no system call), then
    /// yield (so a peer sharing this CPU can run), then sleep on `word`, waking now and
    /// then to `recover` from a dead peer. `word` is read only on the way to sleep: a
    /// spinner that polled it would pull its cache line away from the peer on every try.
    /// The clock is read only on the way to sleep too (it costs ~25 ns here, a tenth of
    /// a hand-off), so `timeout` counts from there: the bounded spin and yield rounds
    /// come on top of it.
    ///
    /// Ok(None) when the deadline passed; Err when shared memory is corrupt.
    fn wait_for<T>(
        &self,
        timeout: Option<Duration>,
        word: &(AtomicU32, AtomicU32),
        peer_cpus: &AtomicU64,
        mut attempt: impl FnMut() -> Attempt<T>,
        recover: impl Fn(),
    ) -> Result<Option<T>, QueueError> {
        let (word, waiters) = word;
        let nowait = timeout == Some(Duration::ZERO);
        let spins = if crate::process::affinity::spinning_can_pay(peer_cpus.load(Ordering::Relaxed))
        {
            SPIN_TRIES
        } else {
            0
        };
        for round in 0..=spins + YIELD_TRIES {
            if round > spins {
                std::thread::yield_now();
            } else if round > 0 {
                std::hint::spin_loop();
            }
            match attempt() {
                Attempt::Done(value) => return Ok(Some(value)),
                Attempt::Corrupt(why) => return Err(self.corrupt(why)),
                // A nowait call gives up only on a definite full/empty; a reservation in
                // flight is given the spin and yield rounds to clear.
                Attempt::Blocked if nowait => break,
                // A peer's reservation: in a forced schedule, let it run to clear it.
                Attempt::Busy => {
                    wait_point("queue-shm/claim:busy");
                }
                Attempt::Blocked => {}
            }
        }
        if nowait {
            // Full/empty, or a peer held the slot through every round: it may be dead, and
            // a caller that never blocks would otherwise never run recovery.
            recover();
            return match attempt() {
                Attempt::Done(value) => Ok(Some(value)),
                Attempt::Corrupt(why) => Err(self.corrupt(why)),
                Attempt::Blocked | Attempt::Busy => Ok(None),
            };
        }
        let deadline = Wait::new(timeout, self.config.block_limit).deadline;
        let mut busy_nap = BUSY_NAP;
        loop {
            let seen = word.load(Ordering::SeqCst);
            let nap = match attempt() {
                Attempt::Done(value) => return Ok(Some(value)),
                Attempt::Corrupt(why) => return Err(self.corrupt(why)),
                Attempt::Blocked => RECOVERY_CHECK,
                Attempt::Busy => {
                    let nap = busy_nap;
                    busy_nap = (busy_nap * 2).min(RECOVERY_CHECK);
                    nap
                }
            };
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            recover();
            if wait_point("queue-shm/wait") {
                continue;
            }
            waiters.fetch_add(1, Ordering::SeqCst);
            futex::wait(word, seen, Some(deadline.min(now + nap)));
            waiters.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Fault injection for tests: stops where a process SIGKILLed mid-operation would,
    /// on the next put (or get) position: with `claimed`, after claiming it (its pid in
    /// the slot, the counter advanced); without, after only reserving the slot. Returns
    /// false when there was no room (or nothing to take).
    #[doc(hidden)]
    pub fn abandon_midway_for_test(&self, put: bool, claimed: bool) -> bool {
        let header = self.header();
        let (counter, turn) = if put {
            (&header.enqueue.0, 0)
        } else {
            (&header.dequeue.0, 1)
        };
        if claimed {
            return matches!(self.claim(counter, turn), Attempt::Done(_));
        }
        let pos = counter.load(Ordering::SeqCst);
        let slot = self.slot(pos);
        slot.seq.load(Ordering::SeqCst) == pos + turn
            && slot
                .owner
                .compare_exchange(0, self.pid, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
    }

    fn expired(
        &self,
        timeout: Option<Duration>,
        op: &'static str,
        if_bounded: QueueError,
    ) -> QueueError {
        Wait::new(timeout, self.config.block_limit).expired(op, if_bounded)
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
        let sides = &self.header().side_cpus.0;
        announce_cpus(&sides.producers);
        self.wait_for(
            timeout,
            &self.header().released.0,
            &sides.consumers,
            || self.try_put(message),
            || {
                let header = self.header();
                self.recover_dead_reservation(&header.enqueue.0, 0, &header.released.0);
                self.recover_dead_reader();
            },
        )?
        .ok_or_else(|| self.expired(timeout, "put", QueueError::Full))
    }

    fn get(&self, timeout: Option<Duration>) -> Result<Vec<u8>, QueueError> {
        let mut message = Vec::new();
        self.get_into(&mut message, timeout)?;
        Ok(message)
    }

    fn get_into(&self, buf: &mut Vec<u8>, timeout: Option<Duration>) -> Result<(), QueueError> {
        buf.clear();
        self.check_open()?;
        let sides = &self.header().side_cpus.0;
        announce_cpus(&sides.consumers);
        self.wait_for(
            timeout,
            &self.header().published.0,
            &sides.producers,
            || self.try_get(buf),
            || {
                let header = self.header();
                self.recover_dead_reservation(&header.dequeue.0, 1, &header.published.0);
                self.recover_dead_writer();
            },
        )?
        .unwrap_or_else(|| Err(self.expired(timeout, "get", QueueError::Empty)))
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
        enqueue
            .saturating_sub(dequeue)
            .min(self.config.maxsize as u64) as usize
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
