//! Manager RPC: round-trip latency and ops/s with several client processes. The raw
//! Unix-socket round trip it is divided by is `measure::calibration::unix_socket_roundtrip`.

use super::crowd::{crowd_member, timed_crowd, CrowdArgs, BOUND};
use super::{cpus_for, pin, RoundTrips};
use crate::ipc::manager::{Manager, ManagerAddress, ManagerClient};
use crate::measure::MeasureError;
use crate::process::StartMethod;
use crate::register_entry;
use crate::results::Placement;
use std::time::Duration;

/// `iters` server-side increments from this process, each timed.
pub fn rpc_round_trips(placement: Placement, iters: usize) -> RoundTrips {
    let (mine, theirs) = cpus_for(placement);
    let _pin = pin(mine);
    let manager = Manager::start_on(StartMethod::Fork, theirs).expect("start manager");
    let client = manager.client().expect("connect").with_timeout(BOUND);
    let counter = client.counter("n");
    let round_trips = super::lock::time_rounds(iters, || {
        counter.increment(1).expect("increment");
    });
    drop(client);
    manager.shutdown(Duration::from_secs(10)).expect("shutdown");
    round_trips
}

fn client(args: CrowdArgs<ManagerAddress>) -> Result<(), MeasureError> {
    crowd_member(
        args,
        |address| ManagerClient::connect(address).map_err(MeasureError::from),
        |client| {
            client
                .counter("n")
                .increment(1)
                .map(|_| ())
                .map_err(MeasureError::from)
        },
    )
}
register_entry!("measure-manager-client", client);

/// Time for `iters` server-side increments shared among `clients` client processes.
pub fn increments(clients: usize, iters: usize) -> Duration {
    let manager = Manager::start(StartMethod::Fork).expect("start manager");
    let elapsed = timed_crowd(
        "measure-manager-client",
        manager.address(),
        clients.max(1),
        iters,
    );
    manager.shutdown(Duration::from_secs(10)).expect("shutdown");
    elapsed
}

crate::register_workloads!("manager", catalogue, rank = 70);

/// This family's entries in `measure::registry`: the RPC round trip divided by the raw
/// 64-byte Unix-socket request-reply of the same placement, and increments/s with 1, 2
/// and 4 clients divided by the unpinned one (increments per raw round trip).
pub fn catalogue() -> Vec<crate::measure::registry::Workload> {
    use crate::measure::calibration::UNIX_SOCKET_REQUEST_REPLY;
    use crate::measure::registry::{Workload, PLACEMENTS};
    let mut all: Vec<Workload> = PLACEMENTS
        .into_iter()
        .map(|placement| {
            Workload::latency("manager", "server", "rpc-increment")
                .placement(placement)
                .divided_by(UNIX_SOCKET_REQUEST_REPLY)
                .ops(2_000, 20_000)
                .run(rpc_round_trips)
        })
        .collect();
    for clients in [1u32, 2, 4] {
        all.push(
            Workload::operations("manager", "server", "increments")
                .contenders(clients)
                .divided_by(UNIX_SOCKET_REQUEST_REPLY)
                .ops(2_000, 20_000)
                .run(move |n| increments(clients as usize, n)),
        );
    }
    all
}
