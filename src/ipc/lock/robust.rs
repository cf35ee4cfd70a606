//! Process-shared pthread mutexes in shared memory (libc, not raw_sync: raw_sync's
//! mutex is not robust and its timed lock fails with EINVAL for sub-second timeouts —
//! docs/dependencies.md).
//!
//! * [`RobustMutex`]: `PTHREAD_MUTEX_ROBUST`. When the holder dies, the kernel walks its
//!   robust-futex list and marks the mutex; the next locker gets `EOWNERDEAD`, calls
//!   `pthread_mutex_consistent` and is told [`Acquired::OwnerDied`].
//! * `PlainMutex`: **test subject only** — the same mutex without the robust flag, which
//!   is what Python's `multiprocessing.Lock` (a POSIX semaphore) amounts to: when its
//!   holder is killed, every waiter sleeps in `futex(FUTEX_WAIT)` until its own bound.
//!   Its acquire is still timed (`pthread_mutex_timedlock`): a caller that wants the
//!   "blocked forever" of the `lock-holder-killed/plain` scenario passes a bound longer
//!   than the scenario's watchdog deadline, and the watchdog reports the waiter as Hung
//!   (blocked in the futex syscall) and kills the group.
//!
//! Both are `PTHREAD_MUTEX_ERRORCHECK`, so a release by a thread that does not hold the
//! mutex is refused (EPERM) instead of unlocking someone else's lock. Ownership is per
//! thread (the kernel's futex owner is a tid). The timed lock measures its deadline on
//! CLOCK_REALTIME (glibc's `pthread_mutex_clocklock` is not in the libc crate): a wall
//! clock step during a wait shifts its bound.

use super::{Acquired, Lock, LockAddress, LockError};
use crate::sys::shm::{Shared, ShmSafe};
use std::cell::UnsafeCell;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::time::Duration;

const READY: u32 = 0x4d55_5458; // "MUTX"

/// The mutex as it lies in shared memory.
#[repr(C)]
pub(crate) struct MutexCell {
    /// READY once the creator has initialised the mutex.
    ready: AtomicU32,
    /// 1 robust, 2 plain: an opener of the wrong kind is refused.
    kind: AtomicU32,
    mutex: UnsafeCell<libc::pthread_mutex_t>,
}

// SAFETY: the pthread mutex is designed for concurrent use (PTHREAD_PROCESS_SHARED) and
// is only touched through pthread calls; the other fields are atomics.
unsafe impl Sync for MutexCell {}
// SAFETY: no pointers; all-zero is a valid "not ready" state that `open` refuses.
unsafe impl ShmSafe for MutexCell {}

/// A process-shared pthread mutex; `ROBUST` selects the robust protocol.
///
/// The handle is `Send` and `Sync` (the [`Lock`] trait asks for both), but the mutex is
/// held by a *thread*: glibc links every robust mutex a thread holds into that thread's
/// robust list, through the mutex's own memory. A handle dropped while another live thread
/// of this process holds the mutex through it therefore does not unmap the segment — that
/// would leave the holder's list pointing into unmapped memory, and its next robust lock
/// or unlock would write there. It removes the name and closes the fd, and leaves the
/// mapping (one page) for the rest of the process's life.
pub struct PthreadMutex<const ROBUST: bool> {
    /// Dropped by hand in `Drop` (see above for when it is not).
    cell: ManuallyDrop<Shared<MutexCell>>,
    /// The thread (tid) that took the mutex through this handle and has not released it,
    /// 0 for none: drop releases only then, so dropping a second handle of the same thread
    /// leaves the first one's hold alone.
    holder: AtomicI32,
}

fn current_tid() -> i32 {
    nix::unistd::gettid().as_raw()
}

/// Whether the kernel may still walk `tid`'s robust list: `tid` is a thread of this
/// process (its `/proc/self/task` entry exists) and its list is still registered.
///
/// The entry alone is not enough: a thread that has exited stays in `/proc/self/task`
/// after the kernel walked its list (an exited group leader as a zombie while other
/// threads run; any thread for a moment after `pthread_join` returned), and a handle
/// dropped then would leak its mapping for nothing. The kernel clears a thread's list
/// head (`futex_cleanup`) once it has walked it, so `get_robust_list` says exactly
/// whether anything can still point into the mapping. Only a definite "no" unmaps:
/// failing to look (EMFILE, EPERM, ...) counts as yes.
fn robust_list_still_walkable(tid: i32) -> bool {
    match std::fs::metadata(format!("/proc/self/task/{tid}")) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return false,
        Err(_) => return true,
    }
    let mut head: *mut libc::c_void = std::ptr::null_mut();
    let mut len: libc::size_t = 0;
    // SAFETY: get_robust_list writes one pointer and one size_t through the two
    // pointers, both to live locals of exactly those types.
    let status = unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            tid,
            &mut head as *mut *mut libc::c_void,
            &mut len as *mut libc::size_t,
        )
    };
    if status != 0 {
        return std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH);
    }
    !head.is_null()
}

/// Reports owner death: the flavor to use.
pub type RobustMutex = PthreadMutex<true>;
/// Does not: a test subject (see the module docs).
pub(crate) type PlainMutex = PthreadMutex<false>;

fn kind_code(robust: bool) -> u32 {
    if robust {
        1
    } else {
        2
    }
}

impl<const ROBUST: bool> PthreadMutex<ROBUST> {
    fn address_of(name: &str) -> LockAddress {
        if ROBUST {
            LockAddress::Robust(name.to_string())
        } else {
            LockAddress::Plain(name.to_string())
        }
    }

    /// A new mutex in a new shared-memory segment, removed when this handle drops in the
    /// creating process.
    pub fn create() -> Result<Self, LockError> {
        let cell: Shared<MutexCell> = Shared::create(if ROBUST { "robust" } else { "plain" }, 0)
            .map_err(|e| LockError::Open {
                address: "new shared-memory mutex".into(),
                message: e.to_string(),
            })?;
        let fail = |what: &str, code: i32| LockError::Sys {
            address: Self::address_of(cell.name()).to_string(),
            message: format!("{what}: {}", std::io::Error::from_raw_os_error(code)),
        };
        // SAFETY: the mutex lives in a fresh mapping nobody else has opened yet (the name
        // is not handed out before `ready` is set).
        unsafe { init_shared_mutex(cell.mutex.get(), ROBUST) }
            .map_err(|(what, code)| fail(what, code))?;
        cell.kind.store(kind_code(ROBUST), Ordering::Relaxed);
        cell.ready.store(READY, Ordering::Release);
        Ok(PthreadMutex {
            cell: ManuallyDrop::new(cell),
            holder: AtomicI32::new(0),
        })
    }

    /// Opens a mutex another process created.
    pub fn open(name: &str) -> Result<Self, LockError> {
        let open_error = |message: String| LockError::Open {
            address: Self::address_of(name).to_string(),
            message,
        };
        let cell: Shared<MutexCell> = Shared::open(name).map_err(|e| open_error(e.to_string()))?;
        if cell.ready.load(Ordering::Acquire) != READY {
            return Err(open_error("not an initialised ipcbench mutex".into()));
        }
        if cell.kind.load(Ordering::Relaxed) != kind_code(ROBUST) {
            return Err(open_error(format!(
                "it is not a {} mutex",
                if ROBUST { "robust" } else { "plain" }
            )));
        }
        Ok(PthreadMutex {
            cell: ManuallyDrop::new(cell),
            holder: AtomicI32::new(0),
        })
    }

    /// The mutex segment's shared-memory name, which another process opens.
    pub fn name(&self) -> &str {
        self.cell.name()
    }

    fn mutex(&self) -> *mut libc::pthread_mutex_t {
        self.cell.mutex.get()
    }

    /// Maps a pthread lock result to the outcome; Ok(None) for "busy" or "timed out".
    fn outcome(&self, r: i32, what: &str) -> Result<Option<Acquired>, LockError> {
        match r {
            0 => Ok(Some(Acquired::Clean)),
            libc::EOWNERDEAD => {
                // SAFETY: we hold the mutex (EOWNERDEAD hands it over); marking it
                // consistent lets later lockers use it normally.
                let r = unsafe { libc::pthread_mutex_consistent(self.mutex()) };
                if r != 0 {
                    return Err(self.sys("pthread_mutex_consistent", r));
                }
                Ok(Some(Acquired::OwnerDied))
            }
            libc::EBUSY | libc::ETIMEDOUT => Ok(None),
            libc::EDEADLK => Err(LockError::Sys {
                address: self.address().to_string(),
                message: "this thread already holds it (use RLock to re-enter)".into(),
            }),
            r => Err(self.sys(what, r)),
        }
    }

    fn sys(&self, what: &str, code: i32) -> LockError {
        LockError::Sys {
            address: self.address().to_string(),
            message: format!("{what}: {}", std::io::Error::from_raw_os_error(code)),
        }
    }
}

/// Initialises a pthread mutex in shared memory as process-shared and error-checking,
/// and robust when `robust` (the queue flavors' locks use this too). On failure, the call
/// that failed and its error code.
///
/// # Safety
/// `mutex` must point to writable memory for a `pthread_mutex_t` that no other thread or
/// process uses yet.
pub(crate) unsafe fn init_shared_mutex(
    mutex: *mut libc::pthread_mutex_t,
    robust: bool,
) -> Result<(), (&'static str, i32)> {
    // SAFETY: the attribute object is initialised before use and destroyed after; the
    // caller guarantees the mutex memory is valid and not yet shared.
    unsafe {
        let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
        let r = libc::pthread_mutexattr_init(&mut attr);
        if r != 0 {
            return Err(("pthread_mutexattr_init", r));
        }
        let mut r = libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
        if r == 0 {
            r = libc::pthread_mutexattr_settype(&mut attr, libc::PTHREAD_MUTEX_ERRORCHECK);
        }
        if r == 0 && robust {
            r = libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST);
        }
        if r == 0 {
            r = libc::pthread_mutex_init(mutex, &attr);
        }
        libc::pthread_mutexattr_destroy(&mut attr);
        if r != 0 {
            return Err(("pthread_mutex_init", r));
        }
    }
    Ok(())
}

/// CLOCK_REALTIME now + `timeout`, as pthread_mutex_timedlock wants.
pub(crate) fn realtime_deadline(timeout: Duration) -> libc::timespec {
    // SAFETY: clock_gettime writes one timespec.
    let mut now: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: as above; CLOCK_REALTIME always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
    let nanos = now.tv_nsec as u64 + timeout.subsec_nanos() as u64;
    libc::timespec {
        tv_sec: now
            .tv_sec
            .saturating_add(timeout.as_secs().min(i32::MAX as u64) as libc::time_t)
            .saturating_add((nanos / 1_000_000_000) as libc::time_t),
        tv_nsec: (nanos % 1_000_000_000) as libc::c_long,
    }
}

impl<const ROBUST: bool> Lock for PthreadMutex<ROBUST> {
    fn acquire(&self, timeout: Duration) -> Result<Acquired, LockError> {
        let mut left = timeout;
        // In a forced schedule a held mutex passes the turn (its holder needs it to get
        // to its unlock) instead of sleeping in the kernel; compiled out without schedule
        // points.
        if crate::schedule::POINTS_ENABLED {
            let until = std::time::Instant::now() + timeout;
            let label = if ROBUST {
                "lock-robust/acquire:busy"
            } else {
                "lock-plain/acquire:busy"
            };
            loop {
                if let Some(acquired) = self.try_acquire()? {
                    return Ok(acquired);
                }
                left = until.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() || !crate::schedule::wait_point(label) {
                    break;
                }
            }
        }
        let deadline = realtime_deadline(left);
        loop {
            // SAFETY: the mutex was initialised by its creator (checked at open) and stays
            // mapped while `self` lives.
            let r = unsafe { libc::pthread_mutex_timedlock(self.mutex(), &deadline) };
            if r == libc::EINTR {
                continue;
            }
            let acquired =
                self.outcome(r, "pthread_mutex_timedlock")?
                    .ok_or_else(|| LockError::Timeout {
                        address: self.address().to_string(),
                        timeout,
                    })?;
            self.holder.store(current_tid(), Ordering::Release);
            return Ok(acquired);
        }
    }

    fn try_acquire(&self) -> Result<Option<Acquired>, LockError> {
        // SAFETY: as in acquire.
        let r = unsafe { libc::pthread_mutex_trylock(self.mutex()) };
        let acquired = self.outcome(r, "pthread_mutex_trylock")?;
        if acquired.is_some() {
            self.holder.store(current_tid(), Ordering::Release);
        }
        Ok(acquired)
    }

    fn release(&self) -> Result<(), LockError> {
        let me = current_tid();
        // Cleared before the unlock: the next thread to take the mutex through this handle
        // records itself only once it holds it, that is after this unlock.
        let mine = self
            .holder
            .compare_exchange(me, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        // SAFETY: as in acquire; an error-checking mutex refuses a non-owner (EPERM).
        let r = unsafe { libc::pthread_mutex_unlock(self.mutex()) };
        if r != 0 && mine {
            self.holder.store(me, Ordering::Release); // still ours
        }
        match r {
            0 => Ok(()),
            libc::EPERM => Err(LockError::NotHeld {
                address: self.address().to_string(),
            }),
            r => Err(self.sys("pthread_mutex_unlock", r)),
        }
    }

    fn address(&self) -> LockAddress {
        Self::address_of(self.cell.name())
    }
}

impl<const ROBUST: bool> Drop for PthreadMutex<ROBUST> {
    fn drop(&mut self) {
        let holder = self.holder.load(Ordering::Acquire);
        if holder != 0 && holder == current_tid() {
            // A handle dropped by the thread holding the mutex releases it: the mapping is
            // about to go away, and a mutex left locked would wait for a thread that has
            // moved on.
            // SAFETY: as in acquire; this thread holds it.
            unsafe { libc::pthread_mutex_unlock(self.mutex()) };
        } else if ROBUST && holder != 0 && robust_list_still_walkable(holder) {
            // Another live thread holds it through this mapping, and its robust list
            // points here: keep the mapping (see the type's docs). A holder that has
            // exited (its list was walked and cleared by the kernel at its exit) or one of
            // the process this was forked from (not in this process's lists) needs no such
            // care.
            self.cell.segment_mut().unlink();
            // SAFETY: the Segment inside `cell` is never dropped (ManuallyDrop, not dropped
            // on this path), so its OwnedFd never closes this number again; the mapping
            // does not need the fd.
            unsafe { libc::close(self.cell.segment().raw_fd()) };
            return;
        }
        // SAFETY: `cell` is not used after this point, and dropped only here.
        unsafe { ManuallyDrop::drop(&mut self.cell) };
    }
}

#[cfg(test)]
mod tests {
    use super::realtime_deadline;
    use std::time::Duration;

    #[test]
    fn realtime_deadline_is_now_plus_the_timeout_with_the_nanoseconds_carried() {
        let to_ns = |t: libc::timespec| t.tv_sec as i128 * 1_000_000_000 + t.tv_nsec as i128;
        let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_REALTIME).unwrap();
        let now = now.tv_sec() as i128 * 1_000_000_000 + now.tv_nsec() as i128;
        // 1.999999999 s: its nanoseconds almost always carry into the seconds.
        let deadline = realtime_deadline(Duration::new(1, 999_999_999));
        assert!(
            (0..1_000_000_000).contains(&deadline.tv_nsec),
            "{}",
            deadline.tv_nsec
        );
        let ahead = to_ns(deadline) - now;
        assert!(
            (1_999_999_999..2_999_999_999).contains(&ahead),
            "deadline {ahead} ns ahead"
        );
    }
}
