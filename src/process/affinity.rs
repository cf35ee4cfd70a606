//! Where a thread may run and where it runs now: what a spin-then-sleep wait asks before
//! spinning. A spin pays only while the peer it waits for can run on another CPU; on the
//! waiter's own CPU the peer cannot make progress until the spinner gives the CPU up, so
//! every spin there is a delay added to the hand-off (issue 19: the Event's same-CPU wake
//! round trip cost 3.3× the raw futex round trip, all of it spinning). Here, at the
//! bottom of the module graph, because `process` pins the children it starts.

use std::cell::Cell;
use std::sync::OnceLock;

thread_local! {
    /// This thread's allowed CPUs as a mask (see [`mask_of`]), 0 until read. Affinity is
    /// per thread, so the cache is too; whoever changes it calls [`forget_allowed`].
    static ALLOWED: Cell<u64> = const { Cell::new(0) };
}

/// One bit per CPU; CPUs 63 and up share the last bit (a mask that says "one of the high
/// CPUs" errs towards not spinning, never towards spinning on the peer's CPU).
pub fn mask_of(cpu: usize) -> u64 {
    1 << cpu.min(63)
}

/// The CPUs the calling thread may run on, as a mask; read once per thread (and again
/// after [`forget_allowed`]). All ones when the affinity cannot be read.
pub fn allowed_mask() -> u64 {
    ALLOWED.with(|cached| {
        if cached.get() == 0 {
            cached.set(read_allowed_mask());
        }
        cached.get()
    })
}

/// Drops the cached mask: call after changing this thread's affinity.
pub fn forget_allowed() {
    ALLOWED.with(|cached| cached.set(0));
}

fn read_allowed_mask() -> u64 {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity(0, ..) writes
    // only into it, the calling thread's mask.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return u64::MAX;
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .fold(0, |mask, cpu| mask | mask_of(cpu))
    }
}

/// The CPU the calling thread runs on now (vDSO / rseq: a few nanoseconds), None if the
/// kernel will not say.
pub fn current() -> Option<usize> {
    // SAFETY: sched_getcpu takes nothing and only returns a number.
    let cpu = unsafe { libc::sched_getcpu() };
    usize::try_from(cpu).ok()
}

/// CPUs online, read once per process.
pub fn online() -> usize {
    static ONLINE: OnceLock<usize> = OnceLock::new();
    *ONLINE.get_or_init(|| {
        // SAFETY: sysconf only returns a number.
        let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
        usize::try_from(n).unwrap_or(1).max(1)
    })
}

/// Whether spinning can pay while waiting for a peer that may run on `peer_cpus` (a mask
/// as [`allowed_mask`] gives; 0 when no peer has said, taken as "anywhere").
pub fn spinning_can_pay(peer_cpus: u64) -> bool {
    spin_pays(online(), current(), peer_cpus)
}

/// The rule, apart from the machine: with one CPU online never; otherwise only if the
/// peer may run on some CPU other than the one this thread is on.
fn spin_pays(online: usize, current: Option<usize>, peer_cpus: u64) -> bool {
    if online < 2 {
        return false;
    }
    let peer = if peer_cpus == 0 { u64::MAX } else { peer_cpus };
    match current {
        Some(cpu) => peer & !mask_of(cpu) != 0,
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spinning_pays_only_when_the_peer_can_run_elsewhere() {
        // Both pinned to CPU 0: the peer needs the spinner's CPU.
        assert!(!spin_pays(2, Some(0), mask_of(0)));
        // Peer pinned to CPU 0, waiter on CPU 1: the peer runs meanwhile.
        assert!(spin_pays(2, Some(1), mask_of(0)));
        // Peer unpinned on two CPUs: it can run on the one the waiter is not on.
        assert!(spin_pays(2, Some(0), mask_of(0) | mask_of(1)));
        // Nothing known about the peer: it may be anywhere.
        assert!(spin_pays(2, Some(0), 0));
        // One CPU online: never, whatever the masks say.
        assert!(!spin_pays(1, Some(0), 0));
        assert!(!spin_pays(1, None, u64::MAX));
        // High CPUs share the last bit: a peer only there, waiter there too, no spin.
        assert!(!spin_pays(128, Some(100), mask_of(70)));
    }

    #[test]
    fn the_allowed_mask_follows_this_threads_affinity() {
        std::thread::spawn(|| {
            let all = allowed_mask();
            assert_ne!(all, 0);
            let cpu = current().expect("sched_getcpu");
            assert_ne!(all & mask_of(cpu), 0, "runs on a CPU it may not use");
            // SAFETY: zeroed sets are valid; pins only this (scratch) thread.
            unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                assert_eq!(
                    libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
                    0
                );
            }
            assert_eq!(allowed_mask(), all, "cached until forgotten");
            forget_allowed();
            assert_eq!(allowed_mask(), mask_of(cpu));
        })
        .join()
        .unwrap();
    }
}
