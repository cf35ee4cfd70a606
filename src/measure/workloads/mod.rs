//! One definition of each measured workload, shared by the criterion benches and by
//! `ipcbench bench`, so both measure exactly the same thing.
//!
//! Conventions every family follows (one file per family here):
//!
//! * A **latency** workload is `fn(..., placement: Placement, iters: usize) -> RoundTrips`:
//!   it sets up its processes first (outside the timed part), then times `iters` round
//!   trips one by one. Criterion's `iter_custom` uses `RoundTrips::total()`; the CLI
//!   feeds the samples into a histogram.
//! * A **throughput** workload is `fn(..., messages: usize) -> Duration`: the time to move
//!   `messages` messages once everything is started.
//! * Placement: [`pin`] the processes to the CPUs that [`cpus_for`] gives, so same-CPU and
//!   cross-CPU figures are measured apart and labelled (on 2 cores a pipe round trip is
//!   ~6 µs on one CPU and ~11 µs across two; unpinned runs flip between them).

pub mod crowd;
pub mod filestore;
pub mod lock;
pub mod manager;
pub mod pipe;
pub mod pool;
pub mod process;
pub mod queue;
pub mod sync;

use crate::report::model::Placement;
use std::time::Duration;

/// Per-operation times of one latency run, in nanoseconds, in the order measured.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RoundTrips {
    pub samples_ns: Vec<u64>,
}

impl RoundTrips {
    pub fn total(&self) -> Duration {
        Duration::from_nanos(self.samples_ns.iter().sum())
    }
}

/// CPUs for the two sides of a two-process workload: (initiator, responder). None means
/// "leave to the scheduler".
pub fn cpus_for(placement: Placement) -> (Option<usize>, Option<usize>) {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    match placement {
        Placement::SameCpu => (Some(0), Some(0)),
        Placement::CrossCpu if cores >= 2 => (Some(0), Some(1)),
        // One CPU only: cross-CPU cannot be measured; run unpinned rather than lie.
        Placement::CrossCpu | Placement::Unpinned => (None, None),
    }
}

/// Restores the calling thread's CPU affinity when dropped.
pub struct PinGuard {
    previous: Option<libc::cpu_set_t>,
}

/// Pins the calling thread to `cpu` (None: no change) until the guard drops.
pub fn pin(cpu: Option<usize>) -> PinGuard {
    let Some(cpu) = cpu else {
        return PinGuard { previous: None };
    };
    // SAFETY: zeroed cpu_set_t values are valid empty sets; sched_get/setaffinity(0, ..)
    // read and write only the calling thread's mask and the sets passed.
    unsafe {
        let mut previous: libc::cpu_set_t = std::mem::zeroed();
        let size = std::mem::size_of::<libc::cpu_set_t>();
        if libc::sched_getaffinity(0, size, &mut previous) != 0 {
            return PinGuard { previous: None };
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, size, &set) != 0 {
            return PinGuard { previous: None };
        }
        PinGuard {
            previous: Some(previous),
        }
    }
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        if let Some(previous) = &self.previous {
            // SAFETY: restores the mask read in `pin` for the calling thread.
            unsafe {
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), previous);
            }
        }
    }
}
