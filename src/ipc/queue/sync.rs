//! The process-shared primitives the queue flavors are built from, kept private to the
//! queue module (the general Lock family lives in `ipc::lock`): a robust mutex, so a
//! process killed while holding a queue's read or write side is reported to the next
//! locker instead of wedging it; a futex-backed counter for the channel flavor's maxsize
//! and qsize; and a gate the pipe flavor's producers wait on for room. The mutex embeds
//! in the queue's control block (the Lock family's owns a segment of its own) but is
//! initialised by the same `lock::robust::init_shared_mutex`.

use crate::sys::futex;
use crate::sys::shm::ShmSafe;
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

/// A `PTHREAD_PROCESS_SHARED` + `PTHREAD_MUTEX_ROBUST` mutex living in shared memory.
/// Why a pthread mutex and not flock: it costs about 40 ns uncontended against about
/// 1 µs for flock, and the kernel's robust list hands `EOWNERDEAD` to the next locker
/// when a holder dies, which is exactly the dead-peer signal the queue needs.
#[repr(C)]
pub(super) struct RobustMutex {
    inner: UnsafeCell<libc::pthread_mutex_t>,
}

// SAFETY: a process-shared pthread mutex is designed to be used concurrently from many
// threads and processes through a shared address; all access goes through pthread calls.
unsafe impl Sync for RobustMutex {}
// SAFETY: no pointers; an all-zero pthread_mutex_t is a valid (default) mutex in glibc,
// and `init` turns it into a robust process-shared one before any other process opens it.
unsafe impl ShmSafe for RobustMutex {}

/// Held lock; unlocks on drop. `owner_died` is true when the previous holder died while
/// holding it (the protected data may be half-updated).
pub(super) struct MutexGuard<'a> {
    mutex: &'a RobustMutex,
    pub(crate) owner_died: bool,
}

impl RobustMutex {
    /// Makes the (zeroed) mutex robust and process-shared. Called once, by the creating
    /// process, before the segment's name or fd is handed to anyone.
    pub(crate) fn init(&self) -> std::io::Result<()> {
        // SAFETY: the mutex memory is valid and not yet shared with any other process.
        unsafe { crate::ipc::lock::robust::init_shared_mutex(self.inner.get(), true) }.map_err(
            |(what, code)| {
                let e = std::io::Error::from_raw_os_error(code);
                std::io::Error::new(e.kind(), format!("{what}: {e}"))
            },
        )
    }

    /// Locks before `deadline`; None when the deadline passed first.
    pub(crate) fn lock(&self, deadline: Instant) -> std::io::Result<Option<MutexGuard<'_>>> {
        // In a forced schedule a held lock passes the turn (its holder needs it to get
        // to its unlock) instead of sleeping in the kernel; without schedule points this
        // loop is compiled out.
        while crate::schedule::POINTS_ENABLED {
            // SAFETY: the mutex was initialised by its creator.
            let r = unsafe { libc::pthread_mutex_trylock(self.inner.get()) };
            if r != libc::EBUSY {
                return self.locked(r);
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            if !crate::schedule::wait_point("queue-lock/lock:busy") {
                break;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let abs = crate::ipc::lock::robust::realtime_deadline(left);
        // SAFETY: the mutex was initialised by its creator; `abs` is a valid timespec.
        let r = unsafe { libc::pthread_mutex_timedlock(self.inner.get(), &abs) };
        self.locked(r)
    }

    /// The guard for a lock call's result `r`; None for a timeout.
    fn locked(&self, r: i32) -> std::io::Result<Option<MutexGuard<'_>>> {
        match r {
            0 => Ok(Some(MutexGuard {
                mutex: self,
                owner_died: false,
            })),
            libc::EOWNERDEAD => {
                // SAFETY: we hold the mutex (EOWNERDEAD means it was acquired); marking it
                // consistent lets later lockers use it normally.
                unsafe { libc::pthread_mutex_consistent(self.inner.get()) };
                Ok(Some(MutexGuard {
                    mutex: self,
                    owner_died: true,
                }))
            }
            libc::ETIMEDOUT => Ok(None),
            e => Err(std::io::Error::from_raw_os_error(e)),
        }
    }
}

impl Drop for MutexGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: this guard holds the lock, taken by this thread.
        unsafe { libc::pthread_mutex_unlock(self.mutex.inner.get()) };
    }
}

/// A shared counter that processes can wait on (futex on the value itself). Waiters
/// announce themselves so that changes skip the wake system call when nobody sleeps.
#[repr(C)]
#[derive(Default)]
pub struct Counter {
    value: AtomicU32,
    waiters: AtomicU32,
}

// SAFETY: two atomics; zero is a valid empty counter.
unsafe impl ShmSafe for Counter {}

impl Counter {
    /// The current value.
    pub fn get(&self) -> u32 {
        self.value.load(Ordering::SeqCst)
    }

    /// Adds one if the value is below `limit`, waiting for room until `deadline`.
    pub fn acquire_below(&self, limit: u32, deadline: Instant) -> bool {
        loop {
            let seen = self.value.load(Ordering::SeqCst);
            if seen < limit {
                if self
                    .value
                    .compare_exchange(seen, seen + 1, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
                {
                    self.wake();
                    return true;
                }
                continue;
            }
            if !self.sleep_while(seen, deadline) {
                return false;
            }
        }
    }

    /// Subtracts one; false (and no change) when the value is already zero.
    pub fn release(&self) -> bool {
        let mut seen = self.value.load(Ordering::SeqCst);
        loop {
            if seen == 0 {
                return false;
            }
            match self
                .value
                .compare_exchange(seen, seen - 1, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => {
                    self.wake();
                    return true;
                }
                Err(now) => seen = now,
            }
        }
    }

    /// Sleeps while the value is still `seen`; false once the deadline has passed.
    fn sleep_while(&self, seen: u32, deadline: Instant) -> bool {
        if Instant::now() >= deadline {
            return false;
        }
        self.waiters.fetch_add(1, Ordering::SeqCst);
        // Announce first, then re-check: a change made after the announcement wakes us,
        // one made before it is seen here (or makes the futex return at once).
        if self.value.load(Ordering::SeqCst) == seen {
            futex::wait(&self.value, seen, Some(deadline));
        }
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        true
    }

    fn wake(&self) {
        if self.waiters.load(Ordering::SeqCst) > 0 {
            futex::wake_all(&self.value);
        }
    }
}

/// A futex word that counts changes, for processes waiting for a condition kept elsewhere
/// (the pipe flavor's room: committed minus taken frames). Waiters read `seen`, test
/// their condition, then `wait` for a `bump` after that reading.
#[repr(C)]
#[derive(Default)]
pub(super) struct Gate {
    seq: AtomicU32,
    waiters: AtomicU32,
}

// SAFETY: two atomics; zero is a valid gate.
unsafe impl ShmSafe for Gate {}

impl Gate {
    pub(crate) fn seen(&self) -> u32 {
        self.seq.load(Ordering::SeqCst)
    }

    /// Wakes every waiter: the condition may have changed.
    pub(crate) fn bump(&self) {
        self.seq.fetch_add(1, Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            futex::wake_all(&self.seq);
        }
    }

    /// Sleeps until a bump after `seen` or `deadline`; false once the deadline has passed.
    pub(crate) fn wait(&self, seen: u32, deadline: Instant) -> bool {
        if Instant::now() >= deadline {
            return false;
        }
        self.waiters.fetch_add(1, Ordering::SeqCst);
        if self.seq.load(Ordering::SeqCst) == seen {
            futex::wait(&self.seq, seen, Some(deadline));
        }
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        true
    }
}
