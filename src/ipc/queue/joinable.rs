//! JoinableQueue over any flavor, as Python's: every put counts an unfinished task,
//! `task_done` marks one finished (an error when called more times than items were put),
//! `join` waits until none is unfinished. The count lives in shared memory beside the
//! queue, so producers, consumers and the joiner can be different processes.
//!
//! An item is counted once it is in the queue, never for a put that did not commit one:
//! a producer killed while its put waits for room, or in the middle of its put (a lost
//! message, `PeerDied` on the shm flavor), leaves nothing for `join` to wait for. Each item
//! travels with a 12-byte stamp naming a *pending* slot its producer holds in shared
//! memory; whichever of the producer (after its put returned) and the consumer (when its
//! get takes the item) clears that slot first counts the item, so the item is counted
//! before any consumer can mark it done, and exactly once — also when its producer died
//! after the item entered the queue. The producer counts before it clears, so a race
//! counts twice for an instant and then takes the extra back (join may wait a moment
//! longer, never return early). Limits: a producer killed between those two steps (two
//! atomic instructions) leaves its item counted twice; and slots of dead producers are
//! only reused when all [`SLOTS`] are taken, after which such a late item would not be
//! counted. Items carry the stamp inside the queue: take them through
//! [`JoinableQueue::get`], not [`JoinableQueue::queue`], and the largest message is the
//! queue's less the stamp.

use super::sync::Counter;
use super::{Queue, QueueError, QueueHandle, Role};
use crate::ipc::shm::{Shared, ShmSafe};
use crate::process::Options;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

/// Puts in progress that can be tracked at once (more wait for a free slot's turn by
/// reclaiming those of dead producers, or go untracked: see the module docs).
pub const SLOTS: usize = 256;
/// Bytes of the stamp before each message: slot index (u32) and token (u64), little-endian.
const STAMP: usize = 12;

#[repr(C)]
struct Books {
    unfinished: Counter,
    next_token: AtomicU32,
    /// Per slot: 0 when free, else the token (producer pid << 32 | a number) of a put
    /// whose item is not yet counted.
    pending: [AtomicU64; SLOTS],
}

// SAFETY: a counter and atomics; zero is empty books.
unsafe impl ShmSafe for Books {}

impl Books {
    /// Takes a free slot for a put; None when every slot is held by a live process.
    fn claim(&self) -> Option<(u32, u64)> {
        let me = std::process::id();
        let token = (u64::from(me) << 32) | u64::from(self.next_token.fetch_add(1, SeqCst).max(1));
        for reclaim in [false, true] {
            for (i, slot) in self.pending.iter().enumerate() {
                let seen = slot.load(SeqCst);
                let free =
                    seen == 0 || (reclaim && super::process_is_dead((seen >> 32) as u32 as i32));
                if free && slot.compare_exchange(seen, token, SeqCst, SeqCst).is_ok() {
                    return Some((i as u32, token));
                }
            }
        }
        None
    }

    /// Clears the slot if it still holds `token`; true when this call cleared it.
    fn clear(&self, slot: u32, token: u64) -> bool {
        self.pending
            .get(slot as usize)
            .is_some_and(|s| s.compare_exchange(token, 0, SeqCst, SeqCst).is_ok())
    }
}

pub struct JoinableQueue<Q: Queue = Box<dyn Queue>> {
    queue: Q,
    books: Shared<Books>,
}

/// What a child needs to open a JoinableQueue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinableHandle {
    pub queue: QueueHandle,
    books: String,
}

impl JoinableHandle {
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

    pub fn queue(&self) -> &Q {
        &self.queue
    }

    /// Largest message a put accepts: the queue's, less the stamp.
    pub fn max_message(&self) -> usize {
        self.queue.max_message().saturating_sub(STAMP)
    }

    pub fn put(&self, message: &[u8], timeout: Option<Duration>) -> Result<(), QueueError> {
        let max = self.max_message();
        if message.len() > max {
            return Err(QueueError::TooLarge {
                len: message.len(),
                max,
            });
        }
        let books = &*self.books;
        let claimed = books.claim();
        let (slot, token) = claimed.unwrap_or((u32::MAX, 0));
        let mut wire = Vec::with_capacity(STAMP + message.len());
        wire.extend_from_slice(&slot.to_le_bytes());
        wire.extend_from_slice(&token.to_le_bytes());
        wire.extend_from_slice(message);
        if claimed.is_none() {
            // No slot to track this put: count first, as a consumer may take the item and
            // call task_done before put returns (a producer killed mid-put then leaves
            // its count behind).
            books.unfinished.add();
        }
        let result = self.queue.put(&wire, timeout);
        match (&result, claimed) {
            (Ok(()), Some(_)) => {
                // Count, then clear: if a consumer cleared the slot first it counted the
                // item itself, and this count is taken back.
                books.unfinished.add();
                if !books.clear(slot, token) {
                    books.unfinished.release();
                }
            }
            (Err(_), Some(_)) => {
                books.clear(slot, token);
            }
            (Ok(()), None) => {}
            (Err(_), None) => {
                books.unfinished.release();
            }
        }
        result
    }

    pub fn put_nowait(&self, message: &[u8]) -> Result<(), QueueError> {
        self.put(message, Some(Duration::ZERO))
    }

    pub fn get(&self, timeout: Option<Duration>) -> Result<Vec<u8>, QueueError> {
        self.unstamp(self.queue.get(timeout)?)
    }

    pub fn get_nowait(&self) -> Result<Vec<u8>, QueueError> {
        self.unstamp(self.queue.get_nowait()?)
    }

    /// Strips an item's stamp, counting the item if its producer has not (yet).
    fn unstamp(&self, mut wire: Vec<u8>) -> Result<Vec<u8>, QueueError> {
        if wire.len() < STAMP {
            return Err(QueueError::Corrupt(format!(
                "JoinableQueue item of {} bytes has no stamp (was it put through queue()?)",
                wire.len()
            )));
        }
        let slot = u32::from_le_bytes(wire[..4].try_into().expect("4 bytes"));
        let token = u64::from_le_bytes(wire[4..STAMP].try_into().expect("8 bytes"));
        if slot != u32::MAX && self.books.clear(slot, token) {
            self.books.unfinished.add();
        }
        wire.drain(..STAMP);
        Ok(wire)
    }

    /// Marks one item as processed.
    pub fn task_done(&self) -> Result<(), QueueError> {
        if self.books.unfinished.release() {
            Ok(())
        } else {
            Err(QueueError::TooManyTaskDone)
        }
    }

    /// Items put and not yet marked done.
    pub fn unfinished(&self) -> usize {
        self.books.unfinished.get() as usize
    }

    /// Waits until every item put has been marked done; false if `timeout` passed first.
    pub fn join(&self, timeout: Duration) -> bool {
        self.books.unfinished.wait_zero(Instant::now() + timeout)
    }

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
