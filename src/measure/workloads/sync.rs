//! Semaphore and Event wake-up latency across two processes: ping-pong round trips.

use super::{cpus_for, pin, RoundTrips};
use crate::ipc::sync::{Event, Semaphore};
use crate::measure::MeasureError;
use crate::process::{self as proc, Options, StartMethod};
use crate::register_entry;
use crate::results::Placement;
use serde::{Deserialize, Serialize};

use super::crowd::BOUND;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
/// A primitive two processes ping-pong with.
pub enum Primitive {
    /// Two semaphores, one for each direction.
    Semaphore,
    /// Two events, set and cleared in turn.
    Event,
}

impl Primitive {
    /// Both, in the catalogue's order.
    pub const ALL: [Primitive; 2] = [Primitive::Semaphore, Primitive::Event];
    /// The name the workload names use.
    pub fn name(self) -> &'static str {
        match self {
            Primitive::Semaphore => "semaphore",
            Primitive::Event => "event",
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Responder {
    primitive: String,
    ping: String,
    pong: String,
    rounds: usize,
}

fn respond(args: Responder) -> Result<(), MeasureError> {
    if args.primitive == "semaphore" {
        let (ping, pong) = (Semaphore::open(&args.ping)?, Semaphore::open(&args.pong)?);
        for _ in 0..args.rounds {
            ping.acquire(BOUND)?;
            pong.release()?;
        }
    } else {
        let (ping, pong) = (Event::open(&args.ping)?, Event::open(&args.pong)?);
        for _ in 0..args.rounds {
            if !ping.wait(BOUND) {
                return Err(MeasureError::Failed("ping never set".into()));
            }
            ping.clear();
            pong.set();
        }
    }
    Ok(())
}
register_entry!("measure-sync-respond", respond);

/// `iters` wake-up round trips: this process releases (sets) "ping", the responder
/// process wakes and releases (sets) "pong", this process wakes. One untimed warm-up
/// round first, so the responder is known to be running.
pub fn wake_round_trips(primitive: Primitive, placement: Placement, iters: usize) -> RoundTrips {
    let (mine, theirs) = cpus_for(placement);
    let _pin = pin(mine);
    enum Pair {
        Sem(Semaphore, Semaphore),
        Ev(Event, Event),
    }
    let pair = match primitive {
        Primitive::Semaphore => Pair::Sem(
            Semaphore::with_bound(0, 1).expect("semaphore"),
            Semaphore::with_bound(0, 1).expect("semaphore"),
        ),
        Primitive::Event => Pair::Ev(
            Event::create().expect("event"),
            Event::create().expect("event"),
        ),
    };
    let (ping, pong) = match &pair {
        Pair::Sem(a, b) => (a.name(), b.name()),
        Pair::Ev(a, b) => (a.name(), b.name()),
    };
    let mut child = proc::start(
        "measure-sync-respond",
        &Responder {
            primitive: primitive.name().into(),
            ping: ping.into(),
            pong: pong.into(),
            rounds: iters + 1,
        },
        Options::new("responder")
            .method(StartMethod::Fork)
            .cpu(theirs),
    )
    .expect("start responder");
    let round = || match &pair {
        Pair::Sem(ping, pong) => {
            ping.release().expect("release ping");
            pong.acquire(BOUND).expect("acquire pong");
        }
        Pair::Ev(ping, pong) => {
            ping.set();
            assert!(pong.wait(BOUND), "pong never set");
            pong.clear();
        }
    };
    let round_trips = super::lock::time_rounds(iters, round);
    child.result::<()>(Some(BOUND)).expect("responder");
    round_trips
}

crate::register_workloads!("sync", catalogue, rank = 60);

/// This family's entries in `measure::registry`: wake-up round trips, divided by the raw
/// futex wake round trip of the same placement (what both primitives sleep on).
pub fn catalogue() -> Vec<crate::measure::registry::Workload> {
    use crate::measure::calibration::FUTEX_ROUNDTRIP;
    use crate::measure::registry::{Workload, PLACEMENTS};
    let mut all = Vec::new();
    for primitive in Primitive::ALL {
        for placement in PLACEMENTS {
            all.push(
                Workload::latency("sync", primitive.name(), "wake-roundtrip")
                    .placement(placement)
                    .divided_by(FUTEX_ROUNDTRIP)
                    .ops(2_000, 20_000)
                    .run(move |placement, n| wake_round_trips(primitive, placement, n)),
            );
        }
    }
    all
}
