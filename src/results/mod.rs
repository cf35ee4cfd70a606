//! The results model: what every command writes as JSON and what `report` and `compare`
//! read. Versioned: a file of another schema version is refused with a clear error.
//!
//! Times are in nanoseconds, rates per second. Every measured figure carries the spread
//! seen across repeated runs (relative: (max - min) / median of the per-repeat values)
//! and, where it has one, its ratio to a calibration figure of the same run — the ratio
//! is what `compare` gates on.

#![warn(missing_docs)]

use serde::{Deserialize, Serialize};
use std::path::Path;

/// Bump when a field changes meaning or a required field is added.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
/// Everything one command produced: the file `report` draws and `compare` gates on.
pub struct Results {
    /// [`SCHEMA_VERSION`] when written; a file of another version is refused on load.
    pub schema_version: u32,
    /// The ipcbench that wrote it, so a figure can be traced to its code.
    pub ipcbench_version: String,
    /// Seconds since the Unix epoch when the run started.
    pub created_unix: u64,
    /// "quick" or "full" (or what the producing command says).
    pub profile: String,
    /// The machine the figures belong to: they are comparable only on like machines.
    pub machine: Machine,
    /// The machine's state while measuring (absent when nothing was measured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_state: Option<MachineState>,
    #[serde(default)]
    /// The raw baselines the ratios are divided by, measured in the same run.
    pub calibration: Vec<Calibration>,
    #[serde(default)]
    /// Round-trip distributions, one per workload.
    pub latency: Vec<Latency>,
    #[serde(default)]
    /// Sustained rates, one per workload.
    pub throughput: Vec<Throughput>,
    #[serde(default)]
    /// One verdict per scenario variant.
    pub scenarios: Vec<ScenarioOutcome>,
    #[serde(default)]
    /// One set of books per stress target.
    pub stress: Vec<StressOutcome>,
    /// The CPU topology read from sysfs (absent in files written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<Topology>,
    /// Round trips between every (sampled) pair of CPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub core_to_core: Option<CoreToCore>,
    /// The deliberately broken or slowed twins this run measured in place of the real
    /// mechanism (`--twin`): its problems are staged, and it can never be a baseline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub twins: Vec<String>,
    /// The peers (other implementations run by an outside process, e.g. CPython's
    /// multiprocessing) whose workloads this run measured beside ipcbench's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<PeerInfo>,
}

/// A peer whose workloads a run measured: what ran them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// The `--peer` name, e.g. "cpython".
    pub name: String,
    /// The interpreter's version, e.g. "3.11.7".
    pub version: String,
    /// e.g. "CPython".
    pub implementation: String,
    /// The start methods its measured workloads used (fork, spawn, forkserver).
    #[serde(default)]
    pub start_methods: Vec<String>,
    /// Each of its workloads and the ipcbench workload it mirrors (the peer's own pairing),
    /// so that a reader of the file (the README's script, a user's) compares like with
    /// like without restating the pairing.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub pairs: std::collections::BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
/// What the figures were measured on, as the report's header shows it.
pub struct Machine {
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: String,
    /// Online CPUs.
    pub cores: usize,
    /// `uname -r`: IPC costs move with the kernel.
    pub kernel: String,
    /// So that two files from different hosts are told apart.
    pub hostname: String,
}

/// Load, steal and governor around a measurement, and what they mean for its figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MachineState {
    /// 1-minute load average before measuring, and after.
    pub load1_before: Option<f64>,
    /// 1-minute load average after measuring: a rise means the run shared the machine.
    pub load1_after: Option<f64>,
    /// Share of CPU time stolen by the hypervisor while measuring (0.05 = 5%).
    pub steal_share: Option<f64>,
    /// cpu0's frequency governor, where readable (often absent in a VM).
    pub governor: Option<String>,
    /// Why the figures may not be the machine's speed; empty when it was quiet.
    pub warnings: Vec<String>,
}

/// Where the two processes of a measurement ran.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Placement {
    /// Both pinned to one CPU.
    SameCpu,
    /// Pinned to two different CPUs.
    CrossCpu,
    /// Left to the OS scheduler.
    #[default]
    Unpinned,
}

impl Placement {
    /// The name the CLI, the JSON and the report use.
    pub fn label(self) -> &'static str {
        match self {
            Placement::SameCpu => "same-cpu",
            Placement::CrossCpu => "cross-cpu",
            Placement::Unpinned => "unpinned",
        }
    }
}

/// How two CPUs relate, from the topology: the finest level sysfs tells apart on this
/// machine. Two different CPUs stay `cross-cpu` where it says nothing finer (a VM whose
/// vCPUs share one last-level cache and have no SMT siblings).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PairClass {
    /// The same CPU (both processes take turns on it).
    SameCpu,
    /// Two hardware threads of one core.
    SmtSibling,
    /// Two cores sharing a last-level cache.
    SameLlc,
    /// Two cores under different last-level caches of one NUMA node.
    CrossLlc,
    /// Two NUMA nodes.
    CrossNuma,
    /// Two different CPUs that sysfs does not relate any finer.
    CrossCpu,
}

impl PairClass {
    /// The name the JSON, the report and the matrix legend use.
    pub fn label(self) -> &'static str {
        match self {
            PairClass::SameCpu => "same-cpu",
            PairClass::SmtSibling => "smt-sibling",
            PairClass::SameLlc => "same-llc",
            PairClass::CrossLlc => "cross-llc",
            PairClass::CrossNuma => "cross-numa",
            PairClass::CrossCpu => "cross-cpu",
        }
    }
}

/// The CPU topology as sysfs told it. A level sysfs did not tell (file missing,
/// unreadable or garbage) has no groups, and `notes` says why.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    /// Where it was read from (the sysfs CPU directory).
    pub source: String,
    /// Online CPUs.
    pub online: Vec<usize>,
    /// The CPUs this process may run on (its affinity).
    pub allowed: Vec<usize>,
    /// CPUs of one core (SMT siblings), one group per core; empty when unknown.
    pub smt_groups: Vec<Vec<usize>>,
    /// The level of the last-level cache (e.g. 3), when known.
    pub llc_level: Option<u32>,
    /// CPUs sharing one last-level cache, one group per cache; empty when unknown.
    pub llc_groups: Vec<Vec<usize>>,
    /// CPUs of each NUMA node that has CPUs; empty when unknown.
    pub numa_nodes: Vec<Vec<usize>>,
    /// What could not be read, and so is not known.
    #[serde(default)]
    pub notes: Vec<String>,
}

/// Where the processes of one measurement ran, as checked: the measuring process reads
/// its affinity back after pinning, and a pinned peer checks its own before it starts
/// (and fails the workload otherwise), so a recorded figure had exactly these CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Achieved {
    /// CPUs the measuring process could run on.
    pub initiator_cpus: Vec<usize>,
    /// CPUs its peer could run on (every allowed CPU when unpinned).
    pub responder_cpus: Vec<usize>,
    /// The pair's topology class; absent when a side was free to move.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<PairClass>,
}

/// The core-to-core latency matrix: round trips between two processes pinned to each
/// measured pair of CPUs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CoreToCore {
    /// The CPUs on both axes.
    pub cpus: Vec<usize>,
    /// Which pairs were measured, how long each, and why a cell may be empty.
    pub rule: String,
    /// Every measured cell.
    pub pairs: Vec<CorePair>,
}

/// One cell of the matrix (unordered: `initiator` ≤ `responder`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CorePair {
    /// The lower-numbered CPU of the pair.
    pub initiator: usize,
    /// The other CPU.
    pub responder: usize,
    /// How the two relate, which explains most of the figure.
    pub class: PairClass,
    /// Median cache-line ping-pong round trip (ns); absent on one CPU or when it failed.
    pub shm_pingpong_ns: Option<f64>,
    /// Median 1-byte pipe round trip (ns).
    pub pipe_roundtrip_ns: Option<f64>,
    /// Round trips timed for each figure (shm, pipe).
    pub samples: (u64, u64),
    /// Why a figure is absent, when one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A raw figure that other results are divided by.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// e.g. "pipe-roundtrip", "shm-pingpong", "unix-socket-roundtrip", "memcpy", "fork-exit".
    pub name: String,
    /// Where its processes ran: a baseline divides only figures of its own placement.
    pub placement: Placement,
    /// The figure, in `unit`.
    pub value: f64,
    /// "ns" for times, "bytes/s" for bandwidths.
    pub unit: String,
    /// Relative spread across repeats ((max - min) / median).
    pub spread: f64,
    /// Where its processes actually ran (absent in older files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub achieved: Option<Achieved>,
}

/// Percentiles of a latency distribution, in nanoseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Fastest sample.
    pub min: f64,
    /// Median: the figure ratios and the gate use.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile: the tail a stalled peer shows in.
    pub p999: f64,
    /// Slowest sample.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
    /// How many samples the distribution holds.
    pub samples: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
/// The round-trip distribution of one latency workload.
pub struct Latency {
    /// Unique key, e.g. "queue/shm/roundtrip/64B/cross-cpu".
    pub workload: String,
    /// Mechanism family: "pipe", "queue", "lock", "process", "pool", ...
    pub family: String,
    /// Flavor within the family: "duplex", "shm", "flock", "fork", ...
    pub flavor: String,
    /// Where its processes ran.
    pub placement: Placement,
    /// Payload of one message, bytes.
    pub message_bytes: u64,
    /// The distribution, in nanoseconds.
    pub percentiles: Percentiles,
    /// Relative spread of the median across repeats.
    pub spread: f64,
    /// Name of the calibration figure (same placement) this is divided by.
    pub calibration: Option<String>,
    /// p50 / calibration value (lower is better).
    pub ratio: Option<f64>,
    /// Why `ratio` is absent, when it is (no baseline of its kind and placement).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio_note: Option<String>,
    /// Points (nanoseconds, cumulative fraction) of the distribution, for the CDF chart.
    #[serde(default)]
    pub cdf: Vec<(f64, f64)>,
    /// Where its processes actually ran (absent in older files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub achieved: Option<Achieved>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
/// The sustained rate of one throughput workload.
pub struct Throughput {
    /// Unique key, e.g. "queue/shm/stream/4KiB/4x4".
    pub workload: String,
    /// Mechanism family: "pipe", "queue", ...
    pub family: String,
    /// Flavor within the family.
    pub flavor: String,
    /// Producer processes.
    pub producers: u32,
    /// Consumer processes.
    pub consumers: u32,
    /// Payload of one message, bytes.
    pub message_bytes: u64,
    /// Messages per second through the mechanism.
    pub msgs_per_sec: f64,
    /// Payload bytes per second.
    pub bytes_per_sec: f64,
    /// Relative spread across repeats.
    pub spread: f64,
    /// Name of the calibration figure this is divided by.
    pub calibration: Option<String>,
    /// bytes_per_sec (or msgs_per_sec) / calibration value (higher is better).
    pub ratio: Option<f64>,
    /// Why `ratio` is absent, when it is (no baseline of its kind and placement).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio_note: Option<String>,
    /// Where its processes actually ran (absent in older files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub achieved: Option<Achieved>,
}

/// What a scenario variant is expected to give.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expectation {
    /// A safe variant: every case must hold.
    Holds,
    /// An unsafe variant: the checker must catch it, with the verdict kind it names
    /// (`ScenarioOutcome::expected_kind`: violated, hung or crashed).
    Caught,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
/// The verdict of one scenario variant, against what it was expected to give.
pub struct ScenarioOutcome {
    /// The scenario's name.
    pub scenario: String,
    /// The variant (flavor or broken twin) it ran on.
    pub variant: String,
    /// Whether the variant must hold or be caught.
    pub expected: Expectation,
    /// The verdict kinds the variant must show: "holds", or for a caught variant its
    /// kinds joined by `|` ("violated", "hung", "hung|violated"). Empty in files written
    /// before kinds were recorded (then any caught verdict counts).
    #[serde(default)]
    pub expected_kind: String,
    /// "holds", "violated", "hung" or "crashed".
    pub verdict: String,
    /// Human-readable detail: the invariant and evidence, who hung on what, who crashed.
    pub detail: String,
    /// Whether `verdict` is what `expected` asks for.
    pub matches: bool,
    /// How many cases were run.
    pub cases: u32,
    /// Wall time of the search.
    pub seconds: f64,
    /// How to rerun the failing case, when there is one.
    pub reproduction: Option<Reproduction>,
}

/// Everything needed to rerun one failing case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reproduction {
    /// The seed that generated the case.
    pub seed: u64,
    /// The shrunk parameters, as text.
    pub parameters: String,
    /// The forced schedule, as text (empty when free-running).
    pub schedule: String,
    /// The exact command that reruns this case.
    pub command: String,
    /// The failing case's history in order, for its timeline (empty in older files).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<TimelineStep>,
    /// For a hung case: who was still blocked at the deadline, on what.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked: Vec<BlockedAt>,
}

/// One step of a case's history: which worker did what, and the value it read or wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineStep {
    /// The worker process, by index.
    pub worker: u32,
    /// What it did ("get", "put", "acquire", ...).
    pub operation: String,
    /// The value it read or wrote.
    pub value: i64,
    /// CLOCK_MONOTONIC, nanoseconds.
    pub at_ns: u64,
}

/// A process still blocked when a hung case's deadline passed (the watchdog's view).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockedAt {
    /// The process's display name.
    pub name: String,
    /// Its state letter from /proc (S, D, T, ...).
    pub state: String,
    /// The syscall it was in.
    pub syscall: String,
    /// The kernel function it waited in.
    pub wchan: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
/// The books of one stress run on one target.
pub struct StressOutcome {
    /// The target's name.
    pub target: String,
    /// Wall time of the run.
    pub seconds: f64,
    /// Worker processes.
    pub procs: u32,
    /// The fault schedule's seed: the same seed gives the same faults.
    pub seed: u64,
    /// Workers SIGKILLed.
    pub kills: u64,
    /// Workers paused (SIGSTOP ... SIGCONT).
    pub stops: u64,
    /// Workers throttled.
    pub slows: u64,
    /// Messages (or operations) delivered.
    pub messages: u64,
    /// Lost with a killed process, and so accounted.
    pub accounted_in_flight: u64,
    /// Lost with no killed process to account for them (target 0).
    pub losses: u64,
    /// Messages delivered more than once (target 0).
    pub duplicates: u64,
    /// Torn or corrupt messages delivered (target 0).
    pub corrupt: u64,
    /// Stalls, each with the watchdog's diagnosis (target none).
    pub hangs: Vec<String>,
    /// Processes, /dev/shm names, temp files or fds left behind (target none).
    pub leaks: Vec<String>,
}

/// Reading a results file failed; the message names the file and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: cannot read: {source}")]
    /// The file could not be read.
    Read {
        /// The file.
        path: String,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not valid results JSON: {source}")]
    /// The file is not JSON of this shape.
    Parse {
        /// The file.
        path: String,
        /// Where and why it does not parse.
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: schema version {found}, but this ipcbench reads version {SCHEMA_VERSION}")]
    /// The file was written by an ipcbench of another schema.
    Version {
        /// The file.
        path: String,
        /// The schema version it declares.
        found: u64,
    },
}

impl Results {
    /// An empty result set describing this machine and build.
    pub fn new(profile: &str) -> Results {
        Results {
            schema_version: SCHEMA_VERSION,
            ipcbench_version: env!("CARGO_PKG_VERSION").to_string(),
            created_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            profile: profile.to_string(),
            machine: Machine::current(),
            ..Results::default()
        }
    }

    /// Reads a results file, checking the schema version before the rest of the fields so
    /// that a file of another version gets that error rather than a field error.
    pub fn load(path: &Path) -> Result<Results, LoadError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: name.clone(),
            source,
        })?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|source| LoadError::Parse {
                path: name.clone(),
                source,
            })?;
        let found = value.get("schema_version").and_then(|v| v.as_u64());
        match found {
            Some(v) if v == SCHEMA_VERSION as u64 => {}
            Some(found) => return Err(LoadError::Version { path: name, found }),
            None => {
                return Err(LoadError::Parse {
                    path: name,
                    source: serde::de::Error::missing_field("schema_version"),
                })
            }
        }
        serde_json::from_value(value).map_err(|source| LoadError::Parse { path: name, source })
    }

    /// Writes pretty JSON (atomically: temp file then rename).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)
    }

    /// Folds another result set into this one (later entries replace earlier ones with
    /// the same key).
    pub fn merge(&mut self, other: Results) {
        fn upsert<T>(into: &mut Vec<T>, from: Vec<T>, key: impl Fn(&T) -> String) {
            for item in from {
                let k = key(&item);
                match into.iter_mut().find(|i| key(i) == k) {
                    Some(slot) => *slot = item,
                    None => into.push(item),
                }
            }
        }
        upsert(&mut self.calibration, other.calibration, |c| {
            format!("{}/{}", c.name, c.placement.label())
        });
        upsert(&mut self.latency, other.latency, |l| l.workload.clone());
        upsert(&mut self.throughput, other.throughput, |t| {
            t.workload.clone()
        });
        upsert(&mut self.scenarios, other.scenarios, |s| {
            format!("{}/{}", s.scenario, s.variant)
        });
        upsert(&mut self.stress, other.stress, |s| s.target.clone());
        upsert(&mut self.peers, other.peers, |p| p.name.clone());
        if other.machine_state.is_some() {
            self.machine_state = other.machine_state;
        }
        if other.topology.is_some() {
            self.topology = other.topology;
        }
        if other.core_to_core.is_some() {
            self.core_to_core = other.core_to_core;
        }
        for twin in other.twins {
            if !self.twins.contains(&twin) {
                self.twins.push(twin);
            }
        }
    }
}

impl Machine {
    /// This machine, read from /proc and uname.
    pub fn current() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let uname = nix::sys::utsname::uname().ok();
        Machine {
            cpu_model,
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            kernel: uname
                .as_ref()
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_default(),
            hostname: uname
                .as_ref()
                .map(|u| u.nodename().to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json() {
        let mut results = Results::new("quick");
        results.calibration.push(Calibration {
            name: "pipe-roundtrip".into(),
            placement: Placement::CrossCpu,
            value: 11_000.0,
            unit: "ns".into(),
            spread: 0.05,
            achieved: None,
        });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        results.save(&path).unwrap();
        assert_eq!(Results::load(&path).unwrap(), results);
    }

    #[test]
    fn other_schema_version_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.json");
        std::fs::write(&path, r#"{"schema_version": 99}"#).unwrap();
        let err = Results::load(&path).unwrap_err().to_string();
        assert!(err.contains("old.json") && err.contains("99"), "{err}");
        std::fs::write(&path, "{not json").unwrap();
        let err = Results::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("old.json") && err.contains("not valid"),
            "{err}"
        );
        let err = Results::load(&dir.path().join("missing.json"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("missing.json") && err.contains("cannot read"),
            "{err}"
        );
    }
}
