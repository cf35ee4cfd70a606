//! Lock: one trait, several flavors, all usable across processes and openable by address
//! from processes that did not create them.
//!
//! Flavors:
//! * `flock`: `flock(2)` on a lock file (whole file, per open file description).
//! * `fcntl`: `fcntl(F_OFD_SETLK)` record lock on a lock file (open-file-description
//!   locks: like flock, unlike classic POSIX record locks they are not dropped when the
//!   process closes *another* fd of the same file).
//! * [`robust`]: a robust, process-shared pthread mutex in shared memory.
//! * `robust::PlainMutex`: a plain process-shared pthread mutex, NOT robust — a test
//!   subject only, for the scenario that shows what Python's Lock does when its holder
//!   is killed (every waiter blocks until its bound).
//! * [`rlock::RLock`]: re-entrant wrapper over any flavor.
//!
//! Unlike Python's Lock, a holder's death is never a silent deadlock here: the next
//! acquirer gets [`Acquired::OwnerDied`] and should treat the guarded data as suspect
//! (the dead holder may have left it half-updated). The kernel drops a dead process's
//! flock/fcntl locks by itself; those flavors detect the death by a marker in the lock
//! file (the holder's pid, written after acquiring and cleared before releasing: a marker
//! still present when the lock is next acquired means its writer never released).
//! The robust mutex learns it from the kernel's robust-futex list (EOWNERDEAD).
//!
//! Every acquire is bounded by a timeout. `flock` and `fcntl` have no timed blocking
//! form, so those flavors retry the non-blocking call with a short exponential backoff
//! (1 µs doubling to 1 ms): a waiter may notice a release up to 1 ms late under
//! contention — the price of a bound.

pub(crate) mod fcntl;
pub(crate) mod flock;
mod lockfile;
pub mod rlock;
pub mod robust;

use serde::{Deserialize, Serialize};
use std::marker::PhantomData;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What an acquire found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Acquired {
    /// The lock was free or released normally.
    Clean,
    /// The previous owner died holding the lock: the lock is now ours and consistent
    /// again, but what it guards may be half-updated.
    OwnerDied,
}

/// Why a lock operation failed. An owner's death is not an error: it is
/// [`Acquired::OwnerDied`].
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another holder kept the lock past the bound.
    #[error("lock {address} not acquired within {timeout:?}")]
    Timeout {
        /// The lock, as its address prints.
        address: String,
        /// The bound that passed.
        timeout: Duration,
    },
    /// A release by a thread that does not hold the lock (Python's RuntimeError).
    #[error("lock {address} released by a thread that does not hold it")]
    NotHeld {
        /// The lock, as its address prints.
        address: String,
    },
    /// A system call on the lock failed.
    #[error("lock {address}: {message}")]
    Sys {
        /// The lock, as its address prints.
        address: String,
        /// The call and its error.
        message: String,
    },
    /// The lock could not be created or opened (a missing file, a segment of another
    /// kind).
    #[error("cannot open lock {address}: {message}")]
    Open {
        /// The lock, as its address prints.
        address: String,
        /// What failed.
        message: String,
    },
}

/// One lock, whatever its flavor. Ownership is per thread of a process for the mutex
/// flavors and per handle for the file flavors; the tests and scenarios use one handle
/// per process.
pub trait Lock: Send + Sync {
    /// Waits at most `timeout` for the lock.
    fn acquire(&self, timeout: Duration) -> Result<Acquired, LockError>;
    /// Takes the lock if it is free now: None if another holds it.
    fn try_acquire(&self) -> Result<Option<Acquired>, LockError>;
    /// Releases a lock this handle holds; releasing one it does not hold is an error.
    fn release(&self) -> Result<(), LockError>;
    /// How another process opens the same lock.
    fn address(&self) -> LockAddress;
}

/// Where a lock lives; serde, so it can be passed to a child.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockAddress {
    /// A flock lock: its lock file.
    Flock(PathBuf),
    /// An fcntl (OFD) lock: its lock file.
    Fcntl(PathBuf),
    /// A robust mutex: its shared-memory name.
    Robust(String),
    /// The non-robust test subject.
    Plain(String),
}

impl std::fmt::Display for LockAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockAddress::Flock(p) => write!(f, "flock:{}", p.display()),
            LockAddress::Fcntl(p) => write!(f, "fcntl:{}", p.display()),
            LockAddress::Robust(n) => write!(f, "robust-mutex:/dev/shm/{n}"),
            LockAddress::Plain(n) => write!(f, "plain-mutex:/dev/shm/{n}"),
        }
    }
}

impl LockAddress {
    /// Opens the lock at this address (created by another process or this one).
    pub fn open(&self) -> Result<Box<dyn Lock>, LockError> {
        Ok(match self {
            LockAddress::Flock(path) => Box::new(flock::FlockLock::open(path)?),
            LockAddress::Fcntl(path) => Box::new(fcntl::FcntlLock::open(path)?),
            LockAddress::Robust(name) => Box::new(robust::RobustMutex::open(name)?),
            LockAddress::Plain(name) => Box::new(robust::PlainMutex::open(name)?),
        })
    }

    /// The flavor of the lock at this address.
    pub fn flavor(&self) -> LockFlavor {
        match self {
            LockAddress::Flock(_) => LockFlavor::Flock,
            LockAddress::Fcntl(_) => LockFlavor::Fcntl,
            LockAddress::Robust(_) => LockFlavor::Robust,
            LockAddress::Plain(_) => LockFlavor::Plain,
        }
    }
}

/// The lock flavors, to create one and to iterate over them in tests and benches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LockFlavor {
    /// `flock(2)` on a lock file: the kernel drops a dead holder's lock.
    Flock,
    /// `fcntl(2)` open-file-description locks on a lock file: dropped with a dead holder
    /// too.
    Fcntl,
    /// A process-shared robust pthread mutex in shared memory: the next locker is told
    /// the owner died.
    Robust,
    /// Not robust: a test subject (see the module docs).
    Plain,
}

impl LockFlavor {
    /// The flavors that honour the contract (owner death reported).
    pub const SAFE: [LockFlavor; 3] = [LockFlavor::Flock, LockFlavor::Fcntl, LockFlavor::Robust];

    /// The flavor's name, a contract (`flock`, `fcntl`, `robust`, `plain-mutex`).
    pub fn name(self) -> &'static str {
        match self {
            LockFlavor::Flock => "flock",
            LockFlavor::Fcntl => "fcntl",
            LockFlavor::Robust => "robust-mutex",
            LockFlavor::Plain => "plain-mutex",
        }
    }

    /// Creates a fresh lock of this flavor. Its file or shared-memory name belongs to
    /// this process and is removed when the returned handle drops here.
    pub fn create(self) -> Result<Box<dyn Lock>, LockError> {
        Ok(match self {
            LockFlavor::Flock => Box::new(flock::FlockLock::create()?),
            LockFlavor::Fcntl => Box::new(fcntl::FcntlLock::create()?),
            LockFlavor::Robust => Box::new(robust::RobustMutex::create()?),
            LockFlavor::Plain => Box::new(robust::PlainMutex::create()?),
        })
    }
}

/// Holds a lock until dropped, on the thread that took it.
///
/// Not `Send`: the mutex flavors belong to a thread, so a guard dropped on another thread
/// would fail to release (EPERM, swallowed by drop) and leave the lock held by a thread
/// that believes it let go. Sending one across threads does not compile:
///
/// ```compile_fail,E0277
/// use ipcbench::ipc::lock::{robust::RobustMutex, LockExt};
/// use std::time::Duration;
/// let mutex = RobustMutex::create().unwrap();
/// let guard = mutex.lock(Duration::from_secs(1)).unwrap();
/// std::thread::scope(|s| {
///     s.spawn(move || drop(guard));
/// });
/// ```
///
/// while the same code that keeps the guard on its thread does:
///
/// ```
/// use ipcbench::ipc::lock::{robust::RobustMutex, LockExt};
/// use std::time::Duration;
/// let mutex = RobustMutex::create().unwrap();
/// let guard = mutex.lock(Duration::from_secs(1)).unwrap();
/// std::thread::scope(|s| {
///     s.spawn(|| ());
/// });
/// drop(guard);
/// ```
pub struct LockGuard<'a, L: Lock + ?Sized> {
    lock: &'a L,
    acquired: Acquired,
    /// Makes the guard `!Send` (and `!Sync`).
    _on_this_thread: PhantomData<*const ()>,
}

impl<L: Lock + ?Sized> LockGuard<'_, L> {
    /// True when the previous owner died holding the lock: the guarded data is suspect.
    pub fn owner_died(&self) -> bool {
        self.acquired == Acquired::OwnerDied
    }
    /// How the lock was acquired (clean, or after its owner died).
    pub fn acquired(&self) -> Acquired {
        self.acquired
    }
    /// Releases now, reporting a failure that drop would have to swallow.
    pub fn release(self) -> Result<(), LockError> {
        let lock = self.lock;
        std::mem::forget(self);
        lock.release()
    }
}

impl<L: Lock + ?Sized> Drop for LockGuard<'_, L> {
    fn drop(&mut self) {
        let _ = self.lock.release();
    }
}

/// Guard-returning acquire for every lock, sized or `dyn`.
pub trait LockExt: Lock {
    /// Acquires within `timeout` and returns a guard that releases on drop.
    fn lock(&self, timeout: Duration) -> Result<LockGuard<'_, Self>, LockError> {
        let acquired = self.acquire(timeout)?;
        Ok(LockGuard {
            lock: self,
            acquired,
            _on_this_thread: PhantomData,
        })
    }
}

impl<L: Lock + ?Sized> LockExt for L {}

/// Retries a non-blocking attempt with exponential backoff (1 µs doubling to 1 ms) until
/// it succeeds or `timeout` passes: the bounded acquire of the file-lock flavors.
pub(crate) fn retry_with_backoff<T>(
    timeout: Duration,
    mut attempt: impl FnMut() -> Result<Option<T>, LockError>,
) -> Result<Option<T>, LockError> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(1);
    loop {
        if let Some(done) = attempt()? {
            return Ok(Some(done));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flavor_locks_releases_and_refuses_a_second_holder() {
        for flavor in [
            LockFlavor::Flock,
            LockFlavor::Fcntl,
            LockFlavor::Robust,
            LockFlavor::Plain,
        ] {
            let lock = flavor.create().unwrap();
            let other = lock.address().open().unwrap();
            let guard = lock.lock(Duration::from_secs(1)).unwrap();
            assert!(!guard.owner_died(), "{flavor:?}");
            if matches!(flavor, LockFlavor::Flock | LockFlavor::Fcntl) {
                // File locks belong to the open file description: a second handle in
                // the same process is excluded like another process would be.
                assert!(other.try_acquire().unwrap().is_none(), "{flavor:?}");
                assert!(matches!(
                    other.acquire(Duration::from_millis(20)),
                    Err(LockError::Timeout { .. })
                ));
            }
            guard.release().unwrap();
            assert!(
                matches!(lock.release(), Err(LockError::NotHeld { .. })),
                "{flavor:?} extra release"
            );
            assert_eq!(other.try_acquire().unwrap(), Some(Acquired::Clean));
            other.release().unwrap();
        }
    }
}
