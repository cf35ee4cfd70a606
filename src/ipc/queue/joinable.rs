//! JoinableQueue over any flavor, as Python's: every put counts an unfinished task,
//! `task_done` marks one finished (an error when called more times than items were put),
//! `join` waits until none is unfinished. The count lives in shared memory beside the
//! queue, so producers, consumers and the joiner can be different processes.

use super::sync::Counter;
use super::{Queue, QueueError, QueueHandle, Role};
use crate::ipc::shm::Shared;
use crate::process::Options;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

pub struct JoinableQueue<Q: Queue = Box<dyn Queue>> {
    queue: Q,
    unfinished: Shared<Counter>,
}

/// What a child needs to open a JoinableQueue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinableHandle {
    pub queue: QueueHandle,
    unfinished: String,
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
            unfinished: Shared::create("queue-joinable", 0)?,
        })
    }

    pub fn queue(&self) -> &Q {
        &self.queue
    }

    pub fn put(&self, message: &[u8], timeout: Option<Duration>) -> Result<(), QueueError> {
        // Count first: a consumer may take the item and call task_done before put returns.
        self.unfinished.add();
        self.queue.put(message, timeout).inspect_err(|_| {
            self.unfinished.release();
        })
    }

    pub fn put_nowait(&self, message: &[u8]) -> Result<(), QueueError> {
        self.put(message, Some(Duration::ZERO))
    }

    pub fn get(&self, timeout: Option<Duration>) -> Result<Vec<u8>, QueueError> {
        self.queue.get(timeout)
    }

    pub fn get_nowait(&self) -> Result<Vec<u8>, QueueError> {
        self.queue.get_nowait()
    }

    /// Marks one item as processed.
    pub fn task_done(&self) -> Result<(), QueueError> {
        if self.unfinished.release() {
            Ok(())
        } else {
            Err(QueueError::TooManyTaskDone)
        }
    }

    /// Items put and not yet marked done.
    pub fn unfinished(&self) -> usize {
        self.unfinished.get() as usize
    }

    /// Waits until every item put has been marked done; false if `timeout` passed first.
    pub fn join(&self, timeout: Duration) -> bool {
        self.unfinished.wait_zero(Instant::now() + timeout)
    }

    pub fn handle(&self, role: Role) -> Result<JoinableHandle, QueueError> {
        Ok(JoinableHandle {
            queue: self.queue.handle(role)?,
            unfinished: self.unfinished.name().to_string(),
        })
    }
}

impl JoinableQueue<Box<dyn Queue>> {
    /// Opens a JoinableQueue handed over by another process.
    pub fn open(handle: JoinableHandle) -> Result<Self, QueueError> {
        Ok(JoinableQueue {
            unfinished: Shared::open(&handle.unfinished)?,
            queue: super::open(handle.queue)?,
        })
    }
}
