//! Building a [`Workload`]: a sentence of what it is, then how to run it.
//!
//! ```
//! use ipcbench::measure::registry::Workload;
//! use ipcbench::measure::workloads::pipe;
//! use ipcbench::ipc::pipe::PipeKind;
//! use ipcbench::results::Placement;
//!
//! let workload = Workload::latency("pipe", "duplex", "roundtrip")
//!     .size(64)
//!     .placement(Placement::SameCpu)
//!     .divided_by("unix-socket-request-reply")
//!     .ops(2_000, 20_000)
//!     .run(|placement, n| pipe::round_trip(PipeKind::Duplex, 64, placement, n));
//! assert_eq!(workload.shape.name, "pipe/duplex/roundtrip/64B/same-cpu");
//! ```
//!
//! Each kind of workload has its own builder type ([`WorkloadBuilder<Latency>`],
//! [`WorkloadBuilder<Stream>`], [`WorkloadBuilder<Operations>`],
//! [`WorkloadBuilder<Baseline>`]) because each is named after a different rule and each
//! runs a different function: a latency run gives per-operation times, a stream or
//! operations run the time for all of them, a baseline whichever [`Sample`] it measures.
//! The name is made here, from the parts, so that every workload of a kind — a built-in,
//! a plug-in's or a peer's ([`WorkloadBuilder::shape`]) — is named by the same rule: the
//! names are the results' keys, which a baseline file is matched on.

use super::{size_label, Kind, Sample, Workload, WorkloadShape};
use crate::measure::workloads::RoundTrips;
use crate::results::Placement;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

/// A latency workload: `family/flavor/what[/SIZE]/PLACEMENT`, a distribution of
/// per-operation times between two processes (one producer, one consumer).
#[derive(Debug)]
pub enum Latency {}
/// A stream: `family/flavor/stream/SIZE/PxC`, messages and bytes moved per second by P
/// producer and C consumer processes, unpinned.
#[derive(Debug)]
pub enum Stream {}
/// Operations done by several processes together: `family/flavor/what` (or
/// `.../N-proc` for contenders), operations per second, unpinned, no payload.
#[derive(Debug)]
pub enum Operations {}
/// A raw baseline other figures are divided by: `calibration/NAME/PLACEMENT`.
#[derive(Debug)]
pub enum Baseline {}

/// A workload being described; finished by `run` (a [`Workload`]) or
/// [`shape`](WorkloadBuilder::shape) (its description alone). `K` is its kind:
/// [`Latency`], [`Stream`], [`Operations`] or [`Baseline`].
#[derive(Clone, Debug)]
#[must_use = "a workload builder does nothing until `run` (or `shape`) finishes it"]
pub struct WorkloadBuilder<K> {
    family: &'static str,
    flavor: &'static str,
    what: String,
    placement: Placement,
    message_bytes: Option<u64>,
    producers: u32,
    consumers: u32,
    /// `Some(n)`: operations by `n` contenders, named `.../N-proc`.
    contenders: Option<u32>,
    calibration: Option<&'static str>,
    ops: (usize, usize),
    kind: PhantomData<K>,
}

impl<K> WorkloadBuilder<K> {
    fn new(family: &'static str, flavor: &'static str, what: String) -> Self {
        WorkloadBuilder {
            family,
            flavor,
            what,
            placement: Placement::Unpinned,
            message_bytes: None,
            producers: 1,
            consumers: 1,
            contenders: None,
            calibration: None,
            ops: (0, 0),
            kind: PhantomData,
        }
    }

    /// The raw baseline (a calibration's name, e.g. `pipe-roundtrip`) its figures are
    /// divided by. The ratio is computed only against that calibration measured in the
    /// workload's own placement.
    pub fn divided_by(mut self, calibration: &'static str) -> Self {
        self.calibration = Some(calibration);
        self
    }

    /// Operations per repeat: `quick` in the quick profile, `full` in the full one (no
    /// default: a workload built without it runs no operation, and the registry's test
    /// refuses one).
    pub fn ops(mut self, quick: usize, full: usize) -> Self {
        self.ops = (quick, full);
        self
    }

    fn finish(self, kind: Kind, name: String) -> WorkloadShape {
        WorkloadShape {
            name,
            family: self.family,
            flavor: self.flavor,
            kind,
            placement: self.placement,
            message_bytes: self.message_bytes.unwrap_or(0),
            producers: self.producers,
            consumers: self.consumers,
            calibration: self.calibration,
            ops: self.ops,
        }
    }
}

impl WorkloadBuilder<Latency> {
    pub(super) fn latency(family: &'static str, flavor: &'static str, what: &str) -> Self {
        Self::new(family, flavor, what.to_string())
    }

    /// The payload of one message, in bytes; it joins the name (`.../64B/...`).
    pub fn size(mut self, bytes: u64) -> Self {
        self.message_bytes = Some(bytes);
        self
    }

    /// Where its two processes run (default unpinned); it ends the name.
    pub fn placement(mut self, placement: Placement) -> Self {
        self.placement = placement;
        self
    }

    /// The description alone (a peer runs it with its own process: see `measure::peer`).
    pub fn shape(self) -> WorkloadShape {
        let size = self
            .message_bytes
            .map(|b| format!("/{}", size_label(b)))
            .unwrap_or_default();
        let name = format!(
            "{}/{}/{}{size}/{}",
            self.family,
            self.flavor,
            self.what,
            self.placement.label()
        );
        self.finish(Kind::Latency, name)
    }

    /// Finishes it: `run(placement, ops)` gives the per-operation times of one repeat.
    pub fn run(
        self,
        run: impl Fn(Placement, usize) -> RoundTrips + Send + Sync + 'static,
    ) -> Workload {
        let shape = self.shape();
        let placement = shape.placement;
        Workload {
            shape,
            run: Arc::new(move |n| Sample::Times(run(placement, n))),
        }
    }
}

impl WorkloadBuilder<Stream> {
    pub(super) fn stream(family: &'static str, flavor: &'static str) -> Self {
        Self::new(family, flavor, "stream".to_string())
    }

    /// The payload of one message, in bytes; it joins the name (`.../stream/64B/...`).
    pub fn size(mut self, bytes: u64) -> Self {
        self.message_bytes = Some(bytes);
        self
    }

    /// Producer and consumer processes (default one each); they end the name (`4x4`).
    pub fn processes(mut self, producers: u32, consumers: u32) -> Self {
        self.producers = producers;
        self.consumers = consumers;
        self
    }

    /// The description alone (a peer runs it with its own process: see `measure::peer`).
    pub fn shape(self) -> WorkloadShape {
        let name = format!(
            "{}/{}/stream/{}/{}x{}",
            self.family,
            self.flavor,
            size_label(self.message_bytes.unwrap_or(0)),
            self.producers,
            self.consumers
        );
        self.finish(Kind::Throughput, name)
    }

    /// Finishes it: `run(messages)` gives the time one repeat took to move them.
    pub fn run(self, run: impl Fn(usize) -> Duration + Send + Sync + 'static) -> Workload {
        let shape = self.shape();
        let bytes = shape.message_bytes;
        Workload {
            shape,
            run: Arc::new(move |n| Sample::Moved {
                messages: n as u64,
                bytes: n as u64 * bytes,
                elapsed: run(n),
            }),
        }
    }
}

impl WorkloadBuilder<Operations> {
    pub(super) fn operations(family: &'static str, flavor: &'static str, what: &str) -> Self {
        Self::new(family, flavor, what.to_string())
    }

    /// Done by `n` processes sharing the operations, each both asking and answering
    /// (pool workers, echo clients): recorded as `n` producers and `n` consumers.
    pub fn processes(mut self, n: u32) -> Self {
        self.producers = n;
        self.consumers = n;
        self.contenders = None;
        self
    }

    /// Done by `n` processes contending for one object (a lock, the file store, a
    /// Manager): the name ends in `/N-proc`, recorded as `n` producers and no consumer.
    pub fn contenders(mut self, n: u32) -> Self {
        self.producers = n;
        self.consumers = 0;
        self.contenders = Some(n);
        self
    }

    /// The description alone (a peer runs it with its own process: see `measure::peer`).
    pub fn shape(self) -> WorkloadShape {
        let name = match self.contenders {
            Some(n) => format!("{}/{}/{}/{n}-proc", self.family, self.flavor, self.what),
            None => format!("{}/{}/{}", self.family, self.flavor, self.what),
        };
        self.finish(Kind::Throughput, name)
    }

    /// Finishes it: `run(ops)` gives the time one repeat took to do them all.
    pub fn run(self, run: impl Fn(usize) -> Duration + Send + Sync + 'static) -> Workload {
        Workload {
            shape: self.shape(),
            run: Arc::new(move |n| Sample::Moved {
                messages: n as u64,
                bytes: 0,
                elapsed: run(n),
            }),
        }
    }
}

impl WorkloadBuilder<Baseline> {
    pub(super) fn baseline(name: &'static str) -> Self {
        Self::new("calibration", name, String::new())
    }

    /// Where its processes run (default unpinned); it ends the name, and a baseline
    /// divides only the figures of its own placement.
    pub fn placement(mut self, placement: Placement) -> Self {
        self.placement = placement;
        self
    }

    /// The description alone.
    pub fn shape(self) -> WorkloadShape {
        let name = format!("calibration/{}/{}", self.flavor, self.placement.label());
        self.finish(Kind::Calibration, name)
    }

    /// Finishes it: `run(placement, ops)` gives one repeat's sample (times, or a volume
    /// moved for the bandwidth baselines).
    pub fn run(self, run: impl Fn(Placement, usize) -> Sample + Send + Sync + 'static) -> Workload {
        let shape = self.shape();
        let placement = shape.placement;
        Workload {
            shape,
            run: Arc::new(move |n| run(placement, n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each kind is named by its rule and records what its positional constructor did.
    #[test]
    fn each_kind_names_and_records_as_its_rule_says() {
        let latency = Workload::latency("queue", "pipe", "roundtrip")
            .size(64)
            .placement(Placement::CrossCpu)
            .divided_by("pipe-roundtrip")
            .ops(2, 20)
            .shape();
        assert_eq!(latency.name, "queue/pipe/roundtrip/64B/cross-cpu");
        assert_eq!(
            (
                latency.kind,
                latency.message_bytes,
                latency.producers,
                latency.consumers
            ),
            (Kind::Latency, 64, 1, 1)
        );
        assert_eq!(latency.calibration, Some("pipe-roundtrip"));
        assert_eq!(latency.ops, (2, 20));
        let unsized_ = Workload::latency("process", "fork", "start-join").shape();
        assert_eq!(unsized_.name, "process/fork/start-join/unpinned");
        assert_eq!((unsized_.message_bytes, unsized_.calibration), (0, None));

        let stream = Workload::stream("queue", "shm")
            .size(4096)
            .processes(4, 4)
            .shape();
        assert_eq!(stream.name, "queue/shm/stream/4KiB/4x4");
        assert_eq!(
            (
                stream.kind,
                stream.placement,
                stream.producers,
                stream.consumers
            ),
            (Kind::Throughput, Placement::Unpinned, 4, 4)
        );

        let crowd = Workload::operations("lock", "flock", "acquire-release")
            .contenders(2)
            .shape();
        assert_eq!(crowd.name, "lock/flock/acquire-release/2-proc");
        assert_eq!((crowd.producers, crowd.consumers), (2, 0));
        let pool = Workload::operations("pool", "pool-2-map", "short-tasks")
            .processes(2)
            .shape();
        assert_eq!(pool.name, "pool/pool-2-map/short-tasks");
        assert_eq!((pool.producers, pool.consumers), (2, 2));

        let base = Workload::calibration("futex-roundtrip")
            .placement(Placement::SameCpu)
            .shape();
        assert_eq!(base.name, "calibration/futex-roundtrip/same-cpu");
        assert_eq!(
            (base.family, base.flavor),
            ("calibration", "futex-roundtrip")
        );
        assert_eq!(base.kind, Kind::Calibration);
    }

    /// A stream's sample counts the bytes of its messages; an operations one none; a
    /// latency run is handed the placement it was built with.
    #[test]
    fn a_run_reports_what_its_kind_moves() {
        let stream = Workload::stream("pipe", "duplex")
            .size(64)
            .run(|_| Duration::from_millis(1));
        match (stream.run)(10) {
            Sample::Moved {
                messages, bytes, ..
            } => assert_eq!((messages, bytes), (10, 640)),
            other => panic!("{other:?}"),
        }
        let ops = Workload::operations("pool", "sequential", "short-tasks")
            .processes(1)
            .run(|_| Duration::from_millis(1));
        match (ops.run)(10) {
            Sample::Moved {
                messages, bytes, ..
            } => assert_eq!((messages, bytes), (10, 0)),
            other => panic!("{other:?}"),
        }
        let latency = Workload::latency("t", "f", "w")
            .placement(Placement::CrossCpu)
            .run(|placement, n| {
                assert_eq!(placement, Placement::CrossCpu);
                RoundTrips {
                    samples_ns: vec![1; n],
                }
            });
        match (latency.run)(3) {
            Sample::Times(trips) => assert_eq!(trips.samples_ns, [1, 1, 1]),
            other => panic!("{other:?}"),
        }
    }
}
