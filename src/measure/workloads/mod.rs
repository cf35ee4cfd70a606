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

pub mod barrier;
pub mod crowd;
pub mod filestore;
pub mod lock;
pub mod manager;
pub mod pipe;
pub mod pool;
pub mod pool_elastic;
pub mod process;
pub mod queue;
pub mod sync;

use crate::results::{Achieved, Placement, Topology};
use std::cell::RefCell;
use std::time::Duration;

/// Message sizes of the stream workloads, 64 B to 1 MiB (each has a raw stream
/// calibration of its size).
pub const SIZES: [u64; 4] = crate::measure::calibration::STREAM_SIZES;

/// Messages per stream repeat: (quick, full); multiples of 4 so that 4 producers share
/// them evenly.
pub fn stream_messages(size: u64) -> (usize, usize) {
    let quick = ((4u64 << 20) / size).clamp(16, 4_000) as usize;
    let full = ((64u64 << 20) / size).clamp(32, 20_000) as usize;
    (quick, full)
}

/// Per-operation times of one latency run, in nanoseconds, in the order measured.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RoundTrips {
    /// One time per round trip, nanoseconds.
    pub samples_ns: Vec<u64>,
}

impl RoundTrips {
    /// The sum of the samples: what criterion's `iter_custom` wants.
    pub fn total(&self) -> Duration {
        Duration::from_nanos(self.samples_ns.iter().sum())
    }
}

/// The CPUs this process may run on, in order.
pub fn allowed_cpus() -> Vec<usize> {
    nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
        .map(|set| {
            (0..nix::sched::CpuSet::count())
                .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
                .collect()
        })
        .unwrap_or_default()
}

/// CPUs for the two sides of a two-process workload: (initiator, responder), taken from
/// the CPUs this process may use. None means "leave to the scheduler" (unpinned only). A
/// placement the machine cannot give (cross-CPU with one usable CPU) panics with the
/// reason, so the workload fails by name instead of running unpinned under its label.
pub fn cpus_for(placement: Placement) -> (Option<usize>, Option<usize>) {
    let cpus = allowed_cpus();
    let pair = match (placement, cpus.as_slice()) {
        (Placement::Unpinned, _) => (None, None),
        (Placement::SameCpu, [first, ..]) => (Some(*first), Some(*first)),
        (Placement::CrossCpu, [first, second, ..]) => (Some(*first), Some(*second)),
        (placement, cpus) => panic!(
            "placement {} cannot be measured: this process may run on CPUs {cpus:?} only",
            placement.label()
        ),
    };
    PLACED.with(|p| p.borrow_mut().responder = pair.1);
    pair
}

/// What the measurement running on this thread was given: the initiator's CPUs as read
/// back by [`pin`], and the CPU [`cpus_for`] handed its peer (which the peer checks for
/// itself when it starts: `process::Options::cpu`).
#[derive(Clone, Debug, Default)]
struct Placed {
    initiator: Option<Vec<usize>>,
    responder: Option<usize>,
}

thread_local! {
    static PLACED: RefCell<Placed> = RefCell::default();
}

/// Forgets the placement recorded on this thread: call before a measurement.
pub fn begin_placement() {
    PLACED.with(|p| *p.borrow_mut() = Placed::default());
}

/// Records where a measurement whose processes another program placed ran (a peer's
/// workload: it pins its own processes and says where): the initiator's CPUs and the
/// responder's one CPU (None: not pinned to one).
pub fn record_placement(initiator: Vec<usize>, responder: Option<usize>) {
    PLACED.with(|p| {
        let mut p = p.borrow_mut();
        p.initiator = (!initiator.is_empty()).then_some(initiator);
        p.responder = responder;
    });
}

/// Where the two sides of the measurement run on this thread since [`begin_placement`]
/// were: a side not pinned could use every CPU this process may use, and then the pair
/// has no class.
pub fn achieved_placement(topology: &Topology) -> Achieved {
    let placed = PLACED.with(|p| p.borrow().clone());
    let allowed = allowed_cpus();
    let initiator = placed.initiator.unwrap_or_else(|| allowed.clone());
    let responder = placed.responder.map_or(allowed, |cpu| vec![cpu]);
    let class = match (initiator.as_slice(), responder.as_slice()) {
        ([a], [b]) => Some(topology.class(*a, *b)),
        _ => None,
    };
    Achieved {
        initiator_cpus: initiator,
        responder_cpus: responder,
        class,
    }
}

/// Restores the calling thread's CPU affinity when dropped.
pub struct PinGuard {
    previous: Option<libc::cpu_set_t>,
}

/// Pins the calling thread to `cpu` (None: no change) until the guard drops, and checks
/// that the affinity now is exactly that CPU: a pin that did not take panics with the
/// reason, so the workload fails by name rather than keeping a placement it does not have.
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
            panic!(
                "cannot read this thread's CPU affinity to pin it to CPU {cpu}: {}",
                std::io::Error::last_os_error()
            );
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, size, &set) != 0 {
            panic!(
                "cannot pin to CPU {cpu}: {}",
                std::io::Error::last_os_error()
            );
        }
        let guard = PinGuard {
            previous: Some(previous),
        };
        let mut now: libc::cpu_set_t = std::mem::zeroed();
        let achieved = libc::sched_getaffinity(0, size, &mut now) == 0
            && libc::CPU_COUNT(&now) == 1
            && libc::CPU_ISSET(cpu, &now);
        assert!(
            achieved,
            "pinned to CPU {cpu}, but the affinity did not take"
        );
        crate::process::affinity::forget_allowed();
        let had: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &now))
            .collect();
        PLACED.with(|p| p.borrow_mut().initiator = Some(had));
        guard
    }
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        if let Some(previous) = &self.previous {
            // SAFETY: restores the mask read in `pin` for the calling thread.
            unsafe {
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), previous);
            }
            crate::process::affinity::forget_allowed();
        }
    }
}
