//! Process-shared futex wait and wake on a 32-bit word in shared memory: the blocking
//! primitive under the shm queue, semaphore, event and barrier. Not FUTEX_PRIVATE: the
//! word is mapped by several processes.

use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

/// How a wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// Woken by a wake call (or spuriously): re-check the condition.
    Woken,
    /// The word did not hold the expected value: re-check the condition.
    Changed,
    /// The deadline passed.
    TimedOut,
}

/// Sleeps while `*word == expected`, until woken or `deadline` (None: without bound — the
/// callers in this crate always pass one, or loop with one).
pub fn wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> Wake {
    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
    if left.is_some_and(|left| left.is_zero()) {
        return Wake::TimedOut;
    }
    let timeout = left.map(|left| libc::timespec {
        tv_sec: left.as_secs() as libc::time_t,
        tv_nsec: left.subsec_nanos() as libc::c_long,
    });
    let timeout_ptr = timeout
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a valid, aligned u32 for the duration of the call; FUTEX_WAIT with
    // a relative timeout reads it and sleeps; no memory is written.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            timeout_ptr,
        )
    };
    if r == 0 {
        return Wake::Woken;
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::ETIMEDOUT) => Wake::TimedOut,
        Some(libc::EAGAIN) => Wake::Changed,
        _ => Wake::Woken, // EINTR: let the caller re-check
    }
}

/// Wakes up to `count` waiters on `word`; returns how many were woken.
pub(crate) fn wake(word: &AtomicU32, count: u32) -> usize {
    // SAFETY: FUTEX_WAKE only uses the address as a key; it does not access memory.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            count.min(i32::MAX as u32),
        )
    };
    r.max(0) as usize
}

/// Wakes every waiter.
pub fn wake_all(word: &AtomicU32) -> usize {
    wake(word, i32::MAX as u32)
}

/// Spins briefly (the peer may be about to change the word), then sleeps on the futex:
/// sub-microsecond hand-offs when the peer is awake, no burnt CPU when it is not.
///
/// `ready` returns None once the awaited condition holds, or Some(the value of `word` it
/// saw) to sleep on while that value is unchanged. Returns Woken when the condition
/// holds, TimedOut at the deadline.
pub fn spin_then_wait(
    word: &AtomicU32,
    deadline: Option<Instant>,
    spins: u32,
    mut ready: impl FnMut() -> Option<u32>,
) -> Wake {
    use std::sync::atomic::Ordering;
    for _ in 0..spins {
        if ready().is_none() {
            return Wake::Woken;
        }
        std::hint::spin_loop();
    }
    loop {
        let Some(seen) = ready() else {
            return Wake::Woken;
        };
        if wait(word, seen, deadline) == Wake::TimedOut {
            return if ready().is_none() {
                Wake::Woken
            } else {
                Wake::TimedOut
            };
        }
        let _ = word.load(Ordering::Acquire);
    }
}

/// A deadline `timeout` from now (None stays None).
pub fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.map(|t| Instant::now() + t)
}
