//! Peers: implementations in other languages whose workloads an outside process runs,
//! measured in the same run as ipcbench's own and divided by the same calibrations.
//!
//! A peer is a name and a set of flavors ([`Peer`]); its workloads are ordinary registry
//! [`Workload`]s whose `run` asks the peer's process for one repeat ([`Lane`]), so the
//! runner, the histograms, the ratios, the report and the gate treat them as any other.
//! They are not in the registry's catalogue: `ipcbench bench --peer NAME` adds them.
//!
//! * [`session`]: starting, speaking to and killing the peer's process.
//! * [`cpython`]: CPython's `multiprocessing`, the workloads mirroring ipcbench's.

pub mod cpython;
mod error;
pub mod session;

pub use error::PeerError;

use crate::measure::registry::{Sample, Workload, WorkloadShape};
use crate::measure::workloads::{cpus_for, record_placement, RoundTrips};
use crate::results::{PeerInfo, Placement};
use serde_json::{json, Value};
use session::{PeerCommand, Session};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A peer the harness knows.
pub struct Peer {
    /// What `--peer` takes.
    pub name: &'static str,
    /// What the peer is, in one line for `list`.
    pub about: &'static str,
    /// How to start its process.
    pub command: fn() -> PeerCommand,
    /// Its workloads, without the lane that runs them.
    pub specs: fn() -> Vec<Spec>,
    /// The ipcbench workload one of its workloads mirrors (None for a name not its own).
    pub twin: fn(&str) -> Option<String>,
}

/// Every peer, by name.
pub fn known() -> Vec<&'static Peer> {
    vec![&cpython::PEER]
}

/// Whether `flavor` is a peer's (`cpython-queue`, …): its figures are shown, never gated.
pub fn is_peer_flavor(flavor: &str) -> bool {
    known().iter().any(|p| {
        flavor
            .strip_prefix(p.name)
            .is_some_and(|rest| rest.starts_with('-'))
    })
}

/// The ipcbench workload the peer workload `name` mirrors, by its peer's mapping: what
/// the report sets beside it. None for a name no peer owns.
pub fn twin(name: &str) -> Option<String> {
    known().iter().find_map(|p| (p.twin)(name))
}

/// The peer called `name`; an unknown name is an error naming the known ones.
pub fn find(name: &str) -> Result<&'static Peer, PeerError> {
    known()
        .into_iter()
        .find(|p| p.name == name)
        .ok_or_else(|| PeerError::Unknown {
            name: name.to_string(),
            known: known().iter().map(|p| p.name).collect(),
        })
}

/// One workload a peer runs: what it is, described as any registry workload is (by the
/// same builder, so its name follows the same rule as its ipcbench counterpart's), and
/// what to ask the peer.
#[derive(Clone, Debug)]
pub struct Spec {
    /// What it is: its name (the results key), family, flavor, kind, placement, sizes,
    /// processes, the calibration it is divided by (the same as its ipcbench
    /// counterpart's) and its operations per repeat.
    pub shape: WorkloadShape,
    /// The peer's own words for it (the request's fields besides ops, cpus and bound).
    pub request: Value,
    /// The start method its processes use (recorded in the results).
    pub start_method: &'static str,
    /// The bound of a repeat is `min_bound` plus `per_op` per operation: generous, since
    /// a bound only has to turn a hang into an error.
    pub min_bound: Duration,
    /// Extra bound per operation.
    pub per_op: Duration,
}

impl Spec {
    /// A spec of `shape` asking the peer `request`: fork-started, bounded at 20 s plus
    /// 10 ms per operation.
    pub fn new(shape: WorkloadShape, request: Value) -> Spec {
        Spec {
            shape,
            request,
            start_method: "fork",
            min_bound: Duration::from_secs(20),
            per_op: Duration::from_millis(10),
        }
    }

    /// The bound of one repeat of `ops` operations.
    pub fn bound(&self, ops: usize) -> Duration {
        self.min_bound
            + self
                .per_op
                .saturating_mul(ops.min(u32::MAX as usize) as u32)
    }

    /// The request for one repeat of `ops` operations.
    pub fn request(&self, ops: usize, cpus: Option<(usize, usize)>, bound: Duration) -> Value {
        let mut request = self.request.clone();
        let fields = [
            ("op", json!("run")),
            ("workload", json!(self.shape.name)),
            ("ops", json!(ops)),
            ("size", json!(self.shape.message_bytes)),
            ("producers", json!(self.shape.producers)),
            ("consumers", json!(self.shape.consumers)),
            ("start_method", json!(self.start_method)),
            ("cpus", json!(cpus.map(|(a, b)| [a, b]))),
            ("bound_s", json!(bound.as_secs_f64())),
        ];
        if let Some(map) = request.as_object_mut() {
            for (key, value) in fields {
                map.entry(key).or_insert(value);
            }
        }
        request
    }
}

/// How long after the harness's bound the peer's own watchdog fires (see [`Lane::run`]).
const PEER_WATCHDOG_AFTER: Duration = Duration::from_secs(10);

/// What a peer said about itself when it started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The interpreter's version, e.g. "3.11.7".
    pub version: String,
    /// e.g. "CPython".
    pub implementation: String,
    /// The start methods it offers.
    pub start_methods: Vec<String>,
    /// CPUs it sees, to check it runs on the machine ipcbench measures.
    pub cpu_count: usize,
}

impl Hello {
    /// `peer`'s hello, from its answer.
    pub(crate) fn parse(peer: &str, answer: &Value) -> Result<Hello, PeerError> {
        let text = |key: &str| {
            answer
                .get(key)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| PeerError::Answer {
                    peer: peer.to_string(),
                    doing: None,
                    problem: format!("its hello has no {key}: {answer}"),
                })
        };
        Ok(Hello {
            version: text("python")?,
            implementation: text("implementation")?,
            start_methods: answer
                .get("start_methods")
                .and_then(Value::as_array)
                .map(|m| {
                    m.iter()
                        .filter_map(Value::as_str)
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
            cpu_count: answer.get("cpu_count").and_then(Value::as_u64).unwrap_or(0) as usize,
        })
    }
}

/// How long a peer may take to start and answer hello.
const HELLO_BOUND: Duration = Duration::from_secs(20);

/// A peer's workloads in one run: one peer process at a time, started on first use and
/// again after one was killed, shared by the workloads (the runner runs them one after
/// another).
pub struct Lane {
    peer: &'static Peer,
    session: Mutex<Option<Session>>,
    hello: Mutex<Option<Hello>>,
    methods: Mutex<BTreeSet<String>>,
    /// The running peer's pid (0: none), readable while a request holds the session.
    pid: AtomicI32,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Lane {
    /// A lane of `peer`, not yet started: the first workload starts its session.
    pub fn new(peer: &'static Peer) -> Arc<Lane> {
        Arc::new(Lane {
            peer,
            session: Mutex::new(None),
            hello: Mutex::new(None),
            methods: Mutex::new(BTreeSet::new()),
            pid: AtomicI32::new(0),
        })
    }

    /// The peer this lane runs.
    pub fn peer(&self) -> &'static Peer {
        self.peer
    }

    /// The pid of the peer process running now, if one is.
    pub fn pid(&self) -> Option<i32> {
        Some(self.pid.load(Ordering::SeqCst)).filter(|&p| p > 0)
    }

    /// Starts the peer (if it is not running) and returns its hello: whether the lane can
    /// run here, and if not, why.
    pub fn hello(&self) -> Result<Hello, PeerError> {
        let mut session = locked(&self.session);
        self.ensure(&mut session)?;
        locked(&self.hello)
            .clone()
            .ok_or_else(|| PeerError::Answer {
                peer: self.peer.name.to_string(),
                doing: None,
                problem: "no hello".into(),
            })
    }

    fn ensure(&self, slot: &mut Option<Session>) -> Result<(), PeerError> {
        if slot.is_some() {
            return Ok(());
        }
        let mut session = Session::start(self.peer.name, &(self.peer.command)())?;
        let answer = session.request("hello", &json!({"op": "hello"}), HELLO_BOUND)?;
        let hello = Hello::parse(self.peer.name, &answer)?;
        *locked(&self.hello) = Some(hello);
        self.pid.store(session.pid(), Ordering::SeqCst);
        *slot = Some(session);
        Ok(())
    }

    /// One repeat of `spec` with `ops` operations, in the placement its spec names.
    pub fn run(&self, spec: &Spec, ops: usize) -> Result<Sample, PeerError> {
        let cpus = match spec.shape.placement {
            Placement::Unpinned => None,
            placement => match cpus_for(placement) {
                (Some(a), Some(b)) => Some((a, b)),
                _ => None,
            },
        };
        let bound = spec.bound(ops);
        // Ours comes first: at it the harness names every process of the peer's group and
        // what it waits on, with each one's Python stack. The peer's own watchdog, which
        // dumps only its own stack and exits, is the last resort of a harness that stopped
        // answering.
        let request = spec.request(ops, cpus, bound + PEER_WATCHDOG_AFTER);
        let mut slot = locked(&self.session);
        self.ensure(&mut slot)?;
        let session = slot.as_mut().expect("ensured");
        let answer = session.request(&spec.shape.name, &request, bound);
        let answer = match answer {
            Ok(answer) => answer,
            Err(e) => {
                // Killed: the next workload starts a fresh peer.
                *slot = None;
                self.pid.store(0, Ordering::SeqCst);
                return Err(e);
            }
        };
        if answer.get("ok").and_then(Value::as_bool) != Some(true) {
            let error = answer
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("no error given");
            return Err(PeerError::Failed {
                peer: self.peer.name.to_string(),
                workload: spec.shape.name.clone(),
                error: error.to_string(),
                stderr: session.stderr_note(),
            });
        }
        locked(&self.methods).insert(spec.start_method.to_string());
        if let Some(cpus) = answer.get("cpus") {
            let list = |key: &str| -> Vec<usize> {
                cpus.get(key)
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|c| c.as_u64().map(|c| c as usize))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let responder = list("responder");
            record_placement(
                list("initiator"),
                (responder.len() == 1).then(|| responder[0]),
            );
        }
        sample(spec, &answer).map_err(|problem| PeerError::Answer {
            peer: self.peer.name.to_string(),
            doing: Some(spec.shape.name.clone()),
            problem,
        })
    }

    /// What the results record about this peer: None if it never answered.
    pub fn info(&self) -> Option<PeerInfo> {
        let hello = locked(&self.hello).clone()?;
        Some(PeerInfo {
            name: self.peer.name.to_string(),
            version: hello.version,
            implementation: hello.implementation,
            start_methods: locked(&self.methods).iter().cloned().collect(),
            pairs: (self.peer.specs)()
                .into_iter()
                .filter_map(|spec| Some(((self.peer.twin)(&spec.shape.name)?, spec.shape.name)))
                .map(|(ours, peer)| (peer, ours))
                .collect(),
        })
    }

    /// Ends the peer's process (asks it to leave, then kills what is left).
    pub fn close(&self) {
        if let Some(session) = locked(&self.session).take() {
            session.close(Duration::from_secs(10));
        }
        self.pid.store(0, Ordering::SeqCst);
    }

    /// Registry workloads for every spec of the peer, run through this lane.
    pub fn workloads(self: &Arc<Self>) -> Vec<Workload> {
        (self.peer.specs)()
            .into_iter()
            .map(|spec| {
                let lane = self.clone();
                let run_spec = spec.clone();
                Workload {
                    shape: spec.shape,
                    // The runner records a panic as the workload's failure, by name.
                    run: Arc::new(move |ops| {
                        lane.run(&run_spec, ops).unwrap_or_else(|e| panic!("{e}"))
                    }),
                }
            })
            .collect()
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        self.close();
    }
}

/// The sample a peer's answer carries, checked against what was asked; the error says
/// what is wrong with the answer (the caller names the peer and the workload).
fn sample(spec: &Spec, answer: &Value) -> Result<Sample, String> {
    match answer.get("kind").and_then(Value::as_str) {
        Some("times") => {
            let samples_ns: Vec<u64> = answer
                .get("samples_ns")
                .and_then(Value::as_array)
                .ok_or("its answer has no samples_ns")?
                .iter()
                .map(|v| {
                    v.as_u64()
                        .ok_or_else(|| format!("a sample is not a count of ns: {v}"))
                })
                .collect::<Result<_, _>>()?;
            if samples_ns.is_empty() {
                return Err("no samples".into());
            }
            Ok(Sample::Times(RoundTrips { samples_ns }))
        }
        Some("moved") => {
            let number = |key: &str| {
                answer
                    .get(key)
                    .and_then(Value::as_u64)
                    .ok_or_else(|| format!("its answer has no {key}"))
            };
            let elapsed = number("elapsed_ns")?;
            if elapsed == 0 {
                return Err("an elapsed time of 0 ns".into());
            }
            Ok(Sample::Moved {
                messages: number("ops")?,
                bytes: number("bytes")?,
                elapsed: Duration::from_nanos(elapsed),
            })
        }
        other => Err(format!(
            "an answer of kind {other:?} for a {:?} workload",
            spec.shape.kind
        )),
    }
}
