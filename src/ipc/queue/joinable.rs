//! JoinableQueue over any flavor, as Python's: every put counts an unfinished task,
//! `task_done` marks one finished (an error when called more times than items were put),
//! `join` waits until none is unfinished. The count lives in shared memory beside the
//! queue, so producers, consumers and the joiner can be different processes.
//!
//! An item is counted once its put has committed it, never for a put that did not: a
//! producer killed while its put waits for room, or in the middle of its put (a lost
//! message, `PeerDied` on the shm flavor), leaves nothing for `join` to wait for. A put in
//! progress holds a *pending* slot (its pid) in shared memory from before the item can
//! reach a consumer until after it is counted, so:
//! * a consumer may take the item and call `task_done` before its producer counted it:
//!   the count then goes below zero for a moment (allowed while puts are pending, so
//!   `task_done` fails only when called more times than items put or being put);
//! * `join` returns when the count is at most zero **and** no live process has a put
//!   pending — so it never returns while an item it must wait for is still being put.
//!
//! Limit: a producer killed after its put committed and before it counted (a few
//! instructions) leaves an item uncounted: its `task_done` then balances nothing, and
//! `join` may return before it is done. Slots of dead producers are reused only when all
//! `SLOTS` are taken.

use super::{Queue, QueueError, QueueHandle, Role};
use crate::process::Options;
use crate::sys::futex;
use crate::sys::shm::{Shared, ShmSafe};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering::SeqCst};
use std::time::{Duration, Instant};

/// Puts that can be pending at once (one more goes untracked, counted before it puts).
pub(crate) const SLOTS: usize = 256;
/// How often `join` re-checks while a put is pending (its end wakes nobody).
const PENDING_CHECK: Duration = Duration::from_millis(5);

#[repr(C)]
struct Books {
    /// Items counted minus items done, as an i32 (below zero while a consumer is ahead of
    /// a pending put's count). A futex word: joiners sleep on it.
    unfinished: AtomicU32,
    waiters: AtomicU32,
    /// Per slot: 0 when free, else the pid of a process with a put pending.
    pending: [AtomicI32; SLOTS],
}

// SAFETY: atomics; zero is empty books.
unsafe impl ShmSafe for Books {}

impl Books {
    fn value(&self) -> i32 {
        self.unfinished.load(SeqCst) as i32
    }

    fn change(&self, by: i32) {
        self.unfinished.fetch_add(by as u32, SeqCst);
        if self.waiters.load(SeqCst) > 0 {
            futex::wake_all(&self.unfinished);
        }
    }

    /// Takes a free slot for a put (reusing a dead process's only when none is free).
    fn claim(&self) -> Option<usize> {
        let me = std::process::id() as i32;
        for reuse_dead in [false, true] {
            for (i, slot) in self.pending.iter().enumerate() {
                let seen = slot.load(SeqCst);
                let free = seen == 0 || (reuse_dead && super::process_is_dead(seen));
                if free && slot.compare_exchange(seen, me, SeqCst, SeqCst).is_ok() {
                    return Some(i);
                }
            }
        }
        None
    }

    /// Puts pending, by any process (dead ones included).
    fn held(&self) -> i32 {
        self.pending.iter().filter(|s| s.load(SeqCst) != 0).count() as i32
    }

    /// Whether a live process has a put pending.
    fn live_pending(&self) -> bool {
        self.pending.iter().any(|s| {
            let pid = s.load(SeqCst);
            pid != 0 && !super::process_is_dead(pid)
        })
    }
}

/// Python's `JoinableQueue` over any queue flavor: a count of unfinished items in shared
/// memory, so `join` in one process waits for `task_done` calls in others.
pub struct JoinableQueue<Q: Queue = Box<dyn Queue>> {
    queue: Q,
    books: Shared<Books>,
}

/// What a child needs to open a JoinableQueue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinableHandle {
    pub(crate) queue: QueueHandle,
    books: String,
}

impl JoinableHandle {
    /// Adds the fds the child needs to open the queue to `options`.
    pub fn inherit(&self, options: Options) -> Options {
        self.queue.inherit(options)
    }
}

impl<Q: Queue> JoinableQueue<Q> {
    /// Makes `queue` joinable. Only items put through the JoinableQueue are counted.
    pub fn new(queue: Q) -> Result<JoinableQueue<Q>, QueueError> {
        Ok(JoinableQueue {
            queue,
            books: Shared::create("queue-joinable", 0)?,
        })
    }

    pub(crate) fn queue(&self) -> &Q {
        &self.queue
    }

    /// Puts a message and counts it unfinished until a `task_done`.
    pub fn put(&self, message: &[u8], timeout: Option<Duration>) -> Result<(), QueueError> {
        let books = &*self.books;
        let Some(slot) = books.claim() else {
            // No slot to track this put: count first (a consumer may take the item and
            // call task_done before put returns); a producer killed mid-put then leaves
            // its count behind.
            books.change(1);
            return self
                .queue
                .put(message, timeout)
                .inspect_err(|_| books.change(-1));
        };
        let result = self.queue.put(message, timeout);
        if result.is_ok() {
            // Count before the slot is freed, so join never sees neither.
            books.change(1);
        }
        books.pending[slot].store(0, SeqCst);
        result
    }

    /// Puts without waiting for room (`Full` at once).
    pub fn put_nowait(&self, message: &[u8]) -> Result<(), QueueError> {
        self.put(message, Some(Duration::ZERO))
    }

    /// Takes the oldest message; call `task_done` once it is handled.
    pub fn get(&self, timeout: Option<Duration>) -> Result<Vec<u8>, QueueError> {
        self.queue.get(timeout)
    }

    /// Takes a message without waiting for one (`Empty` at once).
    pub fn get_nowait(&self) -> Result<Vec<u8>, QueueError> {
        self.queue.get_nowait()
    }

    /// Marks one item as processed.
    pub fn task_done(&self) -> Result<(), QueueError> {
        let books = &*self.books;
        loop {
            // Pending puts first, then the count: a put counts before it frees its slot,
            // so a slot seen free has its count in the value read after.
            let pending = books.held();
            let seen = books.value();
            // Below zero only as far as puts are pending: their items may be the ones
            // being marked done before they were counted.
            if seen <= -pending {
                return Err(QueueError::TooManyTaskDone);
            }
            if books
                .unfinished
                .compare_exchange(seen as u32, (seen - 1) as u32, SeqCst, SeqCst)
                .is_ok()
            {
                books.change(0);
                return Ok(());
            }
        }
    }

    /// Items put and not yet marked done.
    pub fn unfinished(&self) -> usize {
        self.books.value().max(0) as usize
    }

    /// Waits until every item put has been marked done and no live process is in the
    /// middle of a put; false if `timeout` passed first.
    pub fn join(&self, timeout: Duration) -> bool {
        let books = &*self.books;
        let deadline = Instant::now() + timeout;
        loop {
            // Pending puts first, then the count (see task_done).
            let pending = books.live_pending();
            let seen = books.unfinished.load(SeqCst);
            if seen as i32 <= 0 && !pending {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let until = if pending {
                deadline.min(now + PENDING_CHECK)
            } else {
                deadline
            };
            books.waiters.fetch_add(1, SeqCst);
            if books.unfinished.load(SeqCst) == seen {
                futex::wait(&books.unfinished, seen, Some(until));
            }
            books.waiters.fetch_sub(1, SeqCst);
        }
    }

    /// What a child needs to open this queue (and its count) with `role`.
    pub fn handle(&self, role: Role) -> Result<JoinableHandle, QueueError> {
        Ok(JoinableHandle {
            queue: self.queue.handle(role)?,
            books: self.books.name().to_string(),
        })
    }
}

impl JoinableQueue<Box<dyn Queue>> {
    /// Opens a JoinableQueue handed over by another process.
    pub fn open(handle: JoinableHandle) -> Result<Self, QueueError> {
        Ok(JoinableQueue {
            books: Shared::open(&handle.books)?,
            queue: super::open(handle.queue)?,
        })
    }
}
