//! RLock: re-entrant within the thread that holds it, over any lock flavor, as Python's
//! `multiprocessing.RLock`. The depth is kept in the handle: only the owner needs it, and
//! every other thread or process sees "not mine" and gets an error from `release`
//! without touching the underlying lock.
//!
//! Two threads of one process sharing one handle are told apart only over the robust
//! mutex: flock and fcntl (OFD) locks belong to the open file, which the threads share,
//! so the second thread's acquire succeeds at the kernel. Give each thread its own
//! handle (`RLock::open`) with those flavors, as each process has its own.

use super::{Acquired, Lock, LockAddress, LockError};
use std::sync::Mutex;
use std::time::Duration;

/// A reentrant lock (Python's `RLock`) over any lock flavor: the owning thread may
/// acquire again, and the lock is released when every acquire was released.
pub struct RLock<L: Lock> {
    inner: L,
    /// (owning thread id, depth); depth 0 means this handle does not hold the lock.
    owner: Mutex<(i32, u32)>,
}

fn current_tid() -> i32 {
    nix::unistd::gettid().as_raw()
}

impl<L: Lock> RLock<L> {
    /// Makes `inner` reentrant for the threads of this process that share this handle.
    pub fn new(inner: L) -> Self {
        RLock {
            inner,
            owner: Mutex::new((0, 0)),
        }
    }

    /// How many times the calling thread holds it (0: not at all).
    pub fn depth(&self) -> u32 {
        let owner = self.state();
        if owner.0 == current_tid() {
            owner.1
        } else {
            0
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, (i32, u32)> {
        self.owner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Re-enters if the calling thread already holds it; None if it must really lock.
    fn reenter(&self) -> Option<Acquired> {
        let mut owner = self.state();
        if owner.1 > 0 && owner.0 == current_tid() {
            owner.1 += 1;
            return Some(Acquired::Clean);
        }
        None
    }

    fn took(&self, acquired: Acquired) -> Acquired {
        *self.state() = (current_tid(), 1);
        acquired
    }
}

impl<L: Lock> Lock for RLock<L> {
    fn acquire(&self, timeout: Duration) -> Result<Acquired, LockError> {
        if let Some(done) = self.reenter() {
            return Ok(done);
        }
        let acquired = self.inner.acquire(timeout)?;
        Ok(self.took(acquired))
    }

    fn try_acquire(&self) -> Result<Option<Acquired>, LockError> {
        if let Some(done) = self.reenter() {
            return Ok(Some(done));
        }
        Ok(self.inner.try_acquire()?.map(|a| self.took(a)))
    }

    fn release(&self) -> Result<(), LockError> {
        let mut owner = self.state();
        if owner.1 == 0 || owner.0 != current_tid() {
            return Err(LockError::NotHeld {
                address: self.address().to_string(),
            });
        }
        owner.1 -= 1;
        if owner.1 == 0 {
            owner.0 = 0;
            return self.inner.release();
        }
        Ok(())
    }

    fn address(&self) -> LockAddress {
        self.inner.address()
    }
}

impl RLock<Box<dyn Lock>> {
    /// Opens the lock at `address` as an RLock.
    pub fn open(address: &LockAddress) -> Result<Self, LockError> {
        Ok(RLock::new(address.open()?))
    }
}

impl Lock for Box<dyn Lock> {
    fn acquire(&self, timeout: Duration) -> Result<Acquired, LockError> {
        (**self).acquire(timeout)
    }
    fn try_acquire(&self) -> Result<Option<Acquired>, LockError> {
        (**self).try_acquire()
    }
    fn release(&self) -> Result<(), LockError> {
        (**self).release()
    }
    fn address(&self) -> LockAddress {
        (**self).address()
    }
}
