//! Barrier all-arrive latency by party count: how long one generation takes, from this
//! party's arrival to its release, while every other party arrives again at once.

use super::{cpus_for, pin, RoundTrips};
use crate::ipc::sync::Barrier;
use crate::measure::MeasureError;
use crate::process::{self as proc, Options, StartMethod};
use crate::register_entry;
use crate::results::Placement;
use serde::{Deserialize, Serialize};

use super::crowd::BOUND;

/// Party counts measured: the smallest barrier, and more parties than this machine class
/// has CPUs (every generation then needs the scheduler).
pub const PARTIES: [u32; 2] = [2, 4];

#[derive(Serialize, Deserialize)]
struct Party {
    barrier: String,
    generations: usize,
}

fn party(args: Party) -> Result<(), MeasureError> {
    let barrier = Barrier::open(&args.barrier)?;
    for _ in 0..args.generations {
        barrier.wait(BOUND)?;
    }
    Ok(())
}
register_entry!("measure-barrier-party", party);

/// `iters` generations of a barrier of `parties`: this process is one party, the others
/// are forked children waiting in a loop. Same-CPU: all on one CPU; cross-CPU: this
/// process on one, the children alternating between the other and this one. One untimed
/// generation first, so every party is known to be running.
pub fn all_arrive(parties: u32, placement: Placement, iters: usize) -> RoundTrips {
    let (mine, theirs) = cpus_for(placement);
    let _pin = pin(mine);
    let barrier = Barrier::create(parties).expect("barrier");
    let mut children: Vec<_> = (1..parties)
        .map(|i| {
            let cpu = if i % 2 == 1 { theirs } else { mine };
            proc::start(
                "measure-barrier-party",
                &Party {
                    barrier: barrier.name().to_string(),
                    generations: iters + 1,
                },
                Options::new(format!("party-{i}"))
                    .method(StartMethod::Fork)
                    .cpu(cpu),
            )
            .expect("start barrier party")
        })
        .collect();
    let generations = super::lock::time_rounds(iters, || {
        barrier.wait(BOUND).expect("barrier generation");
    });
    for child in &mut children {
        child.result::<()>(Some(BOUND)).expect("barrier party");
    }
    generations
}

crate::register_workloads!("barrier", catalogue, rank = 65);

/// `sync/barrier/all-arrive/N-parties/PLACEMENT`, divided by the raw futex wake round trip
/// of the same placement: a generation is at least one wake of every sleeping party.
pub fn catalogue() -> Vec<crate::measure::registry::Workload> {
    use crate::measure::calibration::FUTEX_ROUNDTRIP;
    use crate::measure::registry::{Workload, PLACEMENTS};
    let mut all = Vec::new();
    for parties in PARTIES {
        for placement in PLACEMENTS {
            all.push(
                Workload::latency("sync", "barrier", &format!("all-arrive/{parties}-parties"))
                    .placement(placement)
                    .divided_by(FUTEX_ROUNDTRIP)
                    .ops(1_000, 10_000)
                    .run(move |placement, n| all_arrive(parties, placement, n)),
            );
        }
    }
    all
}
