//! Race scenarios: parameters (a proptest strategy), a body across real processes, a
//! recorded history, and an oracle that returns a [`Verdict`].
//!
//! Each scenario comes in variants: the *unsafe* ones must be caught (violated, hung or
//! crashed), the *safe* ones must hold. [`check`] searches a variant's cases with
//! proptest — parameters and forced schedules together — and shrinks a failure to its
//! smallest parameters and shortest schedule.
//!
//! # One process group per case
//!
//! [`run_case`] forks a *case leader* that leads a new process group and runs the
//! scenario's body there: the body starts its workers (forked from the single-threaded
//! leader, so the fork is clean), joins them under the watchdog, and applies the oracle.
//! The parent bounds the leader too, and kills the whole group afterwards, so nothing a
//! case started outlives it — whatever its verdict, even a timed-out one. The case's temp
//! directory is made and removed by the parent; the leader removes each shared-memory
//! name as soon as it is mapped, so a killed case cannot leave one behind.
//!
//! proptest's own fork mode kills only its direct child on a timeout (docs/dependencies.md), so
//! cases are run here, under our watchdog, and proptest only generates and shrinks them.
//! A forced schedule makes each case deterministic, which shrinking needs.

#![warn(missing_docs)]

pub mod check;
pub mod cpython;
pub(crate) mod daemon_children;
pub(crate) mod error;
pub(crate) mod join_before_drain;
pub(crate) mod lock_holder_killed;
pub(crate) mod manager_lost_update;
pub(crate) mod pipe_end_signal;
pub(crate) mod pipe_same_end;
pub(crate) mod pool_worker_death;
pub mod queue_end_signal;
pub(crate) mod queue_many_consumers;
pub(crate) mod segment_cleanup;
pub(crate) mod semaphore_capacity;
pub(crate) mod ticket_oversell;

pub use crate::results::Expectation;
pub use crate::schedule::{Event, Schedule};
pub use error::ScenarioError;

use crate::process::watchdog::{self, BlockedProcess};
use crate::process::{self, hygiene, Child, Group, Options, ProcessError, StartMethod};
use crate::schedule::Turnstile;
use proptest::strategy::BoxedStrategy;
use serde::{Deserialize, Serialize};
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What the oracle concluded about one case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// Every invariant held and every process ended.
    Holds,
    /// An invariant broke.
    Violated {
        /// The law that broke, as the scenario states it ("sold <= stock").
        invariant: String,
        /// What shows it: the numbers and the steps that break it.
        evidence: String,
    },
    /// Still running at the deadline: who waits, in which system call.
    Hung {
        /// Each process still running, with its state, wait channel and system call.
        blocked: Vec<BlockedProcess>,
    },
    /// A process died of a signal it did not ask for.
    Crashed {
        /// Which process (its label).
        who: String,
        /// The signal number.
        signal: i32,
    },
}

impl Verdict {
    /// "holds", "violated", "hung" or "crashed" (as in the results JSON).
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Holds => "holds",
            Verdict::Violated { .. } => "violated",
            Verdict::Hung { .. } => "hung",
            Verdict::Crashed { .. } => "crashed",
        }
    }

    /// True for Holds.
    pub fn holds(&self) -> bool {
        matches!(self, Verdict::Holds)
    }

    /// The kind of a verdict that is not Holds; None for Holds.
    pub(crate) fn kind(&self) -> Option<VerdictKind> {
        match self {
            Verdict::Holds => None,
            Verdict::Violated { .. } => Some(VerdictKind::Violated),
            Verdict::Hung { .. } => Some(VerdictKind::Hung),
            Verdict::Crashed { .. } => Some(VerdictKind::Crashed),
        }
    }

    /// Whether this verdict is what `variant` asks for: Holds for a safe variant; for an
    /// unsafe one, a verdict of one of its expected kinds (see [`Variant::mismatch`]).
    pub(crate) fn matches(&self, variant: &Variant) -> bool {
        variant.mismatch(self).is_none()
    }

    /// A violation's evidence (None for any other verdict).
    pub fn evidence(&self) -> Option<&str> {
        match self {
            Verdict::Violated { evidence, .. } => Some(evidence),
            _ => None,
        }
    }

    /// A short account of the verdict for a mismatch: "crashed by signal 11", "hung in
    /// read [wchan pipe_read]", "violated (sold <= stock)", "holds".
    pub(crate) fn summary(&self) -> String {
        match self {
            Verdict::Holds => "holds".into(),
            Verdict::Violated { invariant, .. } => format!("violated ({invariant})"),
            Verdict::Hung { blocked } if blocked.is_empty() => "hung (nobody named)".into(),
            Verdict::Hung { blocked } => {
                let waits: Vec<String> = blocked
                    .iter()
                    .map(|b| format!("{} [wchan {}]", b.syscall, b.wchan))
                    .collect();
                format!("hung in {}", waits.join(", "))
            }
            Verdict::Crashed { signal, .. } => format!("crashed by signal {signal}"),
        }
    }

    /// A violation of `invariant` (as a law: "sold <= stock"), with the `evidence` that breaks
    /// it (the numbers, the history).
    pub fn violated(invariant: impl Into<String>, evidence: impl Into<String>) -> Verdict {
        Verdict::Violated {
            invariant: invariant.into(),
            evidence: evidence.into(),
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Holds => write!(f, "holds"),
            Verdict::Violated {
                invariant,
                evidence,
            } => write!(f, "violated: {invariant}: {evidence}"),
            Verdict::Hung { blocked } => {
                write!(f, "hung: ")?;
                for (i, b) in blocked.iter().enumerate() {
                    if i > 0 {
                        write!(f, "; ")?;
                    }
                    write!(f, "{b}")?;
                }
                Ok(())
            }
            Verdict::Crashed { who, signal } => write!(
                f,
                "crashed: {who} killed by signal {signal} ({})",
                process::signal_name(*signal)
            ),
        }
    }
}

/// The kind of verdict an unsafe variant must be caught with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum VerdictKind {
    Violated,
    Hung,
    Crashed,
}

impl VerdictKind {
    /// "violated", "hung" or "crashed" (as [`Verdict::label`]).
    pub(crate) fn label(self) -> &'static str {
        match self {
            VerdictKind::Violated => "violated",
            VerdictKind::Hung => "hung",
            VerdictKind::Crashed => "crashed",
        }
    }
}

/// A variant of a scenario and what it must give.
#[derive(Clone, Copy, Debug)]
pub struct Variant {
    /// The variant's name, a contract: `--scenario NAME/VARIANT`, the JSON, the baseline.
    pub name: &'static str,
    /// Whether it must hold (safe) or be caught (unsafe).
    pub expected: Expectation,
    /// For a caught variant, the verdict kinds it may be caught with (in label order);
    /// empty for a safe one. Any other kind is "caught for the wrong reason".
    pub(crate) kinds: &'static [VerdictKind],
    /// For a caught-as-hung variant, the waits it must hang in: a blocked process's
    /// syscall or wchan contains one of these. Empty: any wait.
    pub(crate) waits_in: &'static [&'static str],
    /// For a caught-as-crashed variant, the signal it must die of (None: any).
    pub(crate) signal: Option<i32>,
    pub(crate) about: &'static str,
    /// Some(reason) when the mechanism it needs has not landed yet: listed, not run.
    pub pending: Option<&'static str>,
}

impl Variant {
    const fn caught(
        name: &'static str,
        about: &'static str,
        kinds: &'static [VerdictKind],
    ) -> Variant {
        Variant {
            name,
            expected: Expectation::Caught,
            kinds,
            waits_in: &[],
            signal: None,
            about,
            pending: None,
        }
    }
    /// An unsafe variant that must be caught as Violated.
    pub const fn caught_violated(name: &'static str, about: &'static str) -> Variant {
        Variant::caught(name, about, &[VerdictKind::Violated])
    }
    /// An unsafe variant that must be caught as Hung, a blocked process waiting in one of
    /// `waits_in` (a substring of its syscall or wchan).
    pub(crate) const fn caught_hung(
        name: &'static str,
        about: &'static str,
        waits_in: &'static [&'static str],
    ) -> Variant {
        Variant {
            waits_in,
            ..Variant::caught(name, about, &[VerdictKind::Hung])
        }
    }
    /// An unsafe variant that must be caught as Crashed by `signal`.
    pub const fn caught_crashed(name: &'static str, about: &'static str, signal: i32) -> Variant {
        Variant {
            signal: Some(signal),
            ..Variant::caught(name, about, &[VerdictKind::Crashed])
        }
    }
    /// An unsafe variant that may legitimately be caught either way: Hung (in one of
    /// `waits_in`) or Violated — say why in `about`.
    pub(crate) const fn caught_hung_or_violated(
        name: &'static str,
        about: &'static str,
        waits_in: &'static [&'static str],
    ) -> Variant {
        Variant {
            waits_in,
            ..Variant::caught(name, about, &[VerdictKind::Violated, VerdictKind::Hung])
        }
    }
    /// A safe variant: every case must hold.
    pub const fn holds(name: &'static str, about: &'static str) -> Variant {
        Variant {
            name,
            expected: Expectation::Holds,
            kinds: &[],
            waits_in: &[],
            signal: None,
            about,
            pending: None,
        }
    }
    /// Marks the variant as listed but not run, until the mechanism it needs lands.
    pub const fn pending(self, reason: &'static str) -> Variant {
        Variant {
            pending: Some(reason),
            ..self
        }
    }

    /// "holds", or the expected kinds joined by `|` ("violated", "hung|violated"), as
    /// the results JSON's `expected_kind`.
    pub(crate) fn expected_kind(&self) -> String {
        if self.expected == Expectation::Holds {
            return "holds".into();
        }
        let mut labels: Vec<&str> = self.kinds.iter().map(|k| k.label()).collect();
        labels.sort_unstable();
        labels.join("|")
    }

    /// What the variant expects, in words: "holds", "violated", "hung in poll|futex",
    /// "crashed by signal 9", "hung|violated (hung in read)".
    pub(crate) fn expected_text(&self) -> String {
        let mut text = self.expected_kind();
        let mut extra = Vec::new();
        if self.kinds.contains(&VerdictKind::Hung) && !self.waits_in.is_empty() {
            extra.push(format!("hung in {}", self.waits_in.join("|")));
        }
        if let (true, Some(signal)) = (self.kinds.contains(&VerdictKind::Crashed), self.signal) {
            extra.push(format!("crashed by signal {signal}"));
        }
        if self.kinds.len() == 1 && extra.len() == 1 {
            return extra.remove(0);
        }
        if !extra.is_empty() {
            text = format!("{text} ({})", extra.join(", "));
        }
        text
    }

    /// None when `verdict` is what this variant asks for; otherwise why not. A caught
    /// variant caught with the wrong kind (or hung in the wrong wait, or crashed by the
    /// wrong signal) is "caught for the wrong reason: expected violated, got crashed by
    /// signal 11".
    pub(crate) fn mismatch(&self, verdict: &Verdict) -> Option<String> {
        let Some(kind) = verdict.kind() else {
            return match self.expected {
                Expectation::Holds => None,
                Expectation::Caught => Some(format!(
                    "not caught: expected {}, got holds",
                    self.expected_text()
                )),
            };
        };
        if self.expected == Expectation::Holds {
            return Some(format!("a safe variant failed: {}", verdict.summary()));
        }
        let right = self.kinds.contains(&kind)
            && match verdict {
                Verdict::Hung { blocked } => {
                    self.waits_in.is_empty()
                        || blocked.iter().any(|b| {
                            self.waits_in
                                .iter()
                                .any(|w| b.syscall.contains(w) || b.wchan.contains(w))
                        })
                }
                Verdict::Crashed { signal, .. } => self.signal.is_none_or(|s| s == *signal),
                _ => true,
            };
        (!right).then(|| {
            format!(
                "caught for the wrong reason: expected {}, got {}",
                self.expected_text(),
                verdict.summary()
            )
        })
    }
}

/// One generated case: the scenario's parameters (its own type, as JSON) and a schedule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Case {
    /// The scenario's parameters, as the JSON of its own type (see [`Case::params`]).
    pub params: serde_json::Value,
    /// The interleaving the turnstile forces.
    pub schedule: Schedule,
}

impl Case {
    /// A case of these parameters (serialised) and this schedule.
    pub fn new<P: Serialize>(params: &P, schedule: Schedule) -> Case {
        Case {
            params: serde_json::to_value(params).expect("scenario parameters serialise"),
            schedule,
        }
    }

    /// The parameters as the scenario's own type; a mismatch is a clear error.
    pub fn params<P: serde::de::DeserializeOwned>(&self) -> Result<P, ScenarioError> {
        serde_json::from_value(self.params.clone()).map_err(|source| ScenarioError::Params {
            params: self.params.to_string(),
            source,
        })
    }
}

/// A named, fixed case a scenario always runs first (see [`Scenario::regressions`]).
#[derive(Clone, Debug)]
pub struct Regression {
    pub(crate) name: &'static str,
    pub(crate) case: Case,
}

/// What one case gave: the verdict and the history it was judged on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseOutcome {
    /// What the oracle concluded.
    pub verdict: Verdict,
    /// The turnstile's events, in the order they were recorded.
    pub history: Vec<Event>,
}

impl CaseOutcome {
    /// An outcome of this verdict, judged on this history.
    pub fn new(verdict: Verdict, history: Vec<Event>) -> CaseOutcome {
        CaseOutcome { verdict, history }
    }
}

/// What the body of a case gets from the runner.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CaseContext {
    /// A fresh directory for the case's files, removed by the parent afterwards.
    pub(crate) temp_dir: PathBuf,
    /// How long the case's processes may run before the watchdog calls it hung.
    pub deadline: Duration,
}

/// A race scenario. Implementations are stateless: `run` executes in the case leader
/// process, which finds the scenario again by name.
///
/// A scenario is two halves: its **body** ([`Scenario::run`]) starts the processes, forces
/// the schedule and collects what they did (the turnstile's history and what it reads at
/// the end); its **oracle** is a pure function from the case's parameters, that observation
/// and the history to a [`Verdict`], named `oracle` in the scenario's module and unit-tested
/// there on hand-written histories (`ticket_oversell`, `manager_lost_update`,
/// `semaphore_capacity`), so an invariant is checked without starting a process.
pub trait Scenario: Send + Sync {
    /// The catalogue name (a contract: `ipcbench check --scenario NAME`).
    fn name(&self) -> &'static str;
    /// One line on what the scenario shows, for `list` and the report.
    fn about(&self) -> &'static str;
    /// Its variants: the unsafe ones that must be caught and the safe ones that must hold.
    fn variants(&self) -> &'static [Variant];
    /// The cases proptest searches for `variant`.
    fn cases(&self, variant: &str) -> BoxedStrategy<Case>;
    /// Named cases that once caught a bug, run before the generated ones on every variant
    /// (as proptest reruns its persisted failures): a known bug is caught at once, and a
    /// safe variant is held to that very interleaving. The generator must not need them:
    /// `ipcbench prove --no-regressions` measures the search without them.
    fn regressions(&self) -> Vec<Regression> {
        Vec::new()
    }
    /// Runs one case (in the case leader, in its own process group) and judges it.
    fn run(
        &self,
        variant: &str,
        case: &Case,
        context: &CaseContext,
    ) -> Result<CaseOutcome, ScenarioError>;
    /// The watchdog's deadline for one case.
    fn deadline(&self) -> Duration {
        Duration::from_secs(5)
    }
    /// Whether a failing case fails again, the same way, when rerun: true where the
    /// schedule forces the race; false where it is left to the kernel's timing and the
    /// search catches it by volume (a rerun fails most times, not every time).
    fn reproducible(&self) -> bool {
        true
    }
}

/// Scenarios registered with [`register_scenario!`](crate::register_scenario!), from this crate or any crate
/// linking it.
#[linkme::distributed_slice]
pub static REGISTERED_SCENARIOS: [&'static dyn Scenario];

/// Registers a scenario (a `static` value implementing [`Scenario`]): `check`, `prove`,
/// `list` and the forked case leaders find it by name, with no central list to edit.
/// `ipcbench::register_scenario!(MY_SCENARIO);`
#[macro_export]
macro_rules! register_scenario {
    ($scenario:expr) => {
        const _: () = {
            #[$crate::process::entry::linkme::distributed_slice(
                $crate::scenario::REGISTERED_SCENARIOS
            )]
            #[linkme(crate = $crate::process::entry::linkme)]
            static SCENARIO: &'static dyn $crate::scenario::Scenario = &$scenario;
        };
    };
}

/// Every scenario: the suite's own in catalogue order, then the registered ones by name
/// (one whose name is taken is left out, with a warning).
pub fn catalogue() -> &'static [&'static dyn Scenario] {
    static ALL: std::sync::OnceLock<Vec<&'static dyn Scenario>> = std::sync::OnceLock::new();
    ALL.get_or_init(|| {
        let mut all: Vec<&'static dyn Scenario> = BUILT_IN.to_vec();
        let mut registered: Vec<&'static dyn Scenario> =
            REGISTERED_SCENARIOS.iter().copied().collect();
        registered.sort_by_key(|s| s.name());
        for scenario in registered {
            if all.iter().any(|s| s.name() == scenario.name()) {
                eprintln!(
                    "ipcbench: scenario {} is already in the catalogue; the registered one is ignored",
                    scenario.name()
                );
                continue;
            }
            all.push(scenario);
        }
        all
    })
}

/// The suite's own scenarios, in catalogue order.
const BUILT_IN: &[&dyn Scenario] = {
    const CATALOGUE: &[&dyn Scenario] = &[
        &ticket_oversell::TicketOversell,
        &pipe_same_end::PipeSameEnd,
        &queue_end_signal::QueueEndSignal,
        &queue_many_consumers::QueueManyConsumers,
        &pipe_end_signal::PipeEndSignal,
        &manager_lost_update::ManagerLostUpdate,
        &lock_holder_killed::LockHolderKilled,
        &semaphore_capacity::SemaphoreCapacity,
        &daemon_children::DaemonChildren,
        &pool_worker_death::PoolWorkerDeath,
        &join_before_drain::JoinBeforeDrain,
    ];
    CATALOGUE
};

/// Finds a scenario by name; an unknown name is an error listing the valid ones.
pub fn find(name: &str) -> Result<&'static dyn Scenario, ScenarioError> {
    catalogue()
        .iter()
        .chain(cpython::catalogue())
        .copied()
        .find(|s| s.name() == name)
        .ok_or_else(|| {
            let names: Vec<&str> = catalogue().iter().map(|s| s.name()).collect();
            ScenarioError::Failed(format!(
                "unknown scenario {name:?}; valid scenarios: {}",
                names.join(", ")
            ))
        })
}

/// For a scenario with one unsafe and one safe variant: whether `variant` is the unsafe
/// one (the one to be caught), read from its catalogue entry rather than restated in each
/// scenario's body. An unknown variant is an error listing the valid ones.
pub(crate) fn is_unsafe_variant(
    scenario: &dyn Scenario,
    variant: &str,
) -> Result<bool, ScenarioError> {
    Ok(find_variant(scenario, variant)?.expected == Expectation::Caught)
}

/// Finds a variant of a scenario; an unknown one is an error listing the valid ones.
pub fn find_variant(scenario: &dyn Scenario, name: &str) -> Result<Variant, ScenarioError> {
    scenario
        .variants()
        .iter()
        .copied()
        .find(|v| v.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = scenario.variants().iter().map(|v| v.name).collect();
            ScenarioError::Failed(format!(
                "unknown variant {name:?} of scenario {}; valid variants: {}",
                scenario.name(),
                names.join(", ")
            ))
        })
}

#[derive(Serialize, Deserialize)]
struct LeaderArgs {
    scenario: String,
    variant: String,
    case: Case,
    context: CaseContext,
}

fn case_leader(args: LeaderArgs) -> Result<CaseOutcome, ScenarioError> {
    // A forked leader inherits the parent's signal handlers (the CLI's cleanup handler)
    // without the thread that serves them: restore the defaults, so that SIGTERM ends a
    // worker as a scenario expects.
    for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: setting a disposition to SIG_DFL affects only this process.
        unsafe { libc::signal(signal, libc::SIG_DFL) };
    }
    // Whatever the mechanisms under test create in the temp directory (a file store, a
    // Manager's socket) goes into the case's own directory, which the parent removes
    // even when this leader is killed.
    //
    // Not std::env::set_var: it takes std's environment write lock, and this leader was
    // forked from a process whose other threads may have held that lock at the fork (a
    // test harness starting commands): it would wait for them forever. libc's setenv
    // takes no lock another thread could have held; std's readers then see the value.
    use std::os::unix::ffi::OsStrExt;
    let dir = std::ffi::CString::new(args.context.temp_dir.as_os_str().as_bytes())
        .map_err(|e| format!("temp dir path: {e}"))?;
    // SAFETY: both strings are NUL-terminated and outlive the call; this process is
    // single-threaded here (a fresh fork), so nothing reads the environment concurrently.
    unsafe { libc::setenv(c"TMPDIR".as_ptr(), dir.as_ptr(), 1) };
    let scenario = find(&args.scenario)?;
    let outcome = scenario.run(&args.variant, &args.case, &args.context);
    // Whatever the body left (an orphan it adopted as subreaper) goes with it.
    hygiene::cleanup_all();
    outcome
}
crate::register_entry!("ipcbench-scenario-case", case_leader);

/// Slack the parent gives the leader beyond the scenario's own deadline (diagnosis,
/// killing and reaping take a moment, more on a loaded machine).
const LEADER_SLACK: Duration = Duration::from_secs(10);

/// Runs one case of `scenario`/`variant` in its own process group and returns its outcome.
/// Nothing the case started survives this call: the group is killed, orphans are reaped,
/// the temp directory is removed. An error means the case could not be run at all.
pub fn run_case(
    scenario: &dyn Scenario,
    variant: &str,
    case: &Case,
) -> Result<CaseOutcome, ScenarioError> {
    let temp_dir = case_temp_dir()?;
    let deadline = scenario.deadline();
    let args = LeaderArgs {
        scenario: scenario.name().to_string(),
        variant: variant.to_string(),
        case: case.clone(),
        context: CaseContext {
            temp_dir: temp_dir.clone(),
            deadline,
        },
    };
    let name = format!("case {}/{variant}", scenario.name());
    let outcome = match process::start(
        "ipcbench-scenario-case",
        &args,
        Options::new(name.clone())
            .method(StartMethod::Fork)
            .group(Group::New),
    ) {
        Err(e) => Err(e.into()),
        Ok(mut leader) => {
            let result = leader.result::<CaseOutcome>(Some(deadline + LEADER_SLACK));
            let outcome = match result {
                Ok(outcome) => Ok(outcome),
                Err(ProcessError::Timeout { .. }) => {
                    let blocked = watchdog::diagnose(leader.pid().as_raw(), &name)
                        .into_iter()
                        .collect();
                    Ok(CaseOutcome::new(Verdict::Hung { blocked }, Vec::new()))
                }
                Err(ProcessError::Killed { signal, .. }) => Ok(CaseOutcome::new(
                    Verdict::Crashed { who: name, signal },
                    Vec::new(),
                )),
                Err(e) => Err(e.into()),
            };
            leader.kill_group();
            let leader_pid = leader.pid().as_raw();
            drop(leader);
            remove_shm_of(leader_pid);
            outcome
        }
    };
    hygiene::reap_orphans();
    hygiene::remove_temp(&temp_dir);
    outcome
}

/// Every case's directory starts with this: the run's prefix (so the run's leak checks
/// see it) and `case-` (so a leftover one is recognisably a case's).
pub(crate) fn case_dir_prefix() -> String {
    format!("{}case-", hygiene::run_prefix())
}

/// The case's directory goes on tmpfs (/dev/shm) when there is one: creating files on a
/// disk file system (ext4 inode allocation) was a quarter of a case's CPU time, and a
/// case creates several (store, lock file, temp file renamed over the store, socket).
fn case_temp_dir() -> std::io::Result<PathBuf> {
    let tmpfs = std::path::Path::new("/dev/shm");
    let parent = if tmpfs.is_dir() {
        tmpfs.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let dir = tempfile::Builder::new()
        .prefix(&case_dir_prefix())
        .tempdir_in(parent)?
        .keep();
    hygiene::track_temp(&dir);
    Ok(dir)
}

/// Unlinks the shared-memory names a (killed) case leader created and could not remove:
/// they are `ipcbench-<tag>-<pid>-<n>` (see `ipc::shm::unique_name`).
fn remove_shm_of(pid: i32) {
    let pid = pid.to_string();
    for name in hygiene::shm_names() {
        let mut parts = name.rsplitn(3, '-');
        let (_, owner) = (parts.next(), parts.next());
        if owner == Some(pid.as_str()) {
            let _ = nix::sys::mman::shm_unlink(name.as_str());
        }
    }
}

/// Starts a worker of a case: forked from the case leader, in the case's group, keeping
/// exactly `fds`.
pub fn start_worker<A: Serialize>(
    entry: &str,
    name: impl Into<String>,
    args: &A,
    fds: &[RawFd],
) -> Result<Child, ScenarioError> {
    let mut options = Options::new(name).method(StartMethod::Fork);
    for &fd in fds {
        options = options.inherit_fd(fd);
    }
    Ok(process::start(entry, args, options)?)
}

/// How the workers of a case ended.
pub enum Joined {
    /// Every worker exited; each one's result (or the error it returned), in order.
    Finished(Vec<Result<serde_json::Value, ScenarioError>>),
    /// The verdict is already known: some worker hung or was killed by a signal.
    Verdict(Verdict),
}

/// Joins every worker before `deadline` passes. A worker killed by a signal is a
/// `Crashed` verdict (and is taken off the turnstile, so the others are not left waiting
/// for its turn); workers still running at the deadline are a `Hung` verdict naming what
/// each waits on, and are killed.
pub fn join_workers(
    children: &mut [Child],
    deadline: Duration,
    turnstile: Option<&Turnstile>,
) -> Joined {
    let until = Instant::now() + deadline;
    let mut crashed: Option<Verdict> = None;
    let mut done = vec![false; children.len()];
    let slice = Duration::from_millis(50);
    loop {
        for (index, child) in children.iter_mut().enumerate() {
            if done[index] {
                continue;
            }
            let left = until.saturating_duration_since(Instant::now());
            let _ = child.join(Some(left.min(slice)));
            if let Some(code) = child.exitcode() {
                done[index] = true;
                // A worker that ended without finishing (error, signal) must not keep the
                // others waiting for its turn.
                if let Some(t) = turnstile {
                    t.abandon(index);
                }
                if code < 0 {
                    crashed.get_or_insert(Verdict::Crashed {
                        who: child.name().to_string(),
                        signal: -code,
                    });
                }
            }
        }
        if done.iter().all(|&d| d) {
            break;
        }
        if Instant::now() >= until {
            let hang = watchdog::join_all(children, Duration::ZERO);
            if let Some(verdict) = crashed {
                return Joined::Verdict(verdict);
            }
            if let Err(report) = hang {
                return Joined::Verdict(Verdict::Hung {
                    blocked: report.blocked,
                });
            }
            break;
        }
    }
    if let Some(verdict) = crashed {
        return Joined::Verdict(verdict);
    }
    Joined::Finished(
        children
            .iter_mut()
            .map(|c| {
                c.result::<serde_json::Value>(Some(Duration::ZERO))
                    .map_err(ScenarioError::from)
            })
            .collect(),
    )
}

/// Decodes each worker's result as `R`; the first error fails the case.
pub fn results<R: serde::de::DeserializeOwned>(
    results: Vec<Result<serde_json::Value, ScenarioError>>,
) -> Result<Vec<R>, ScenarioError> {
    results
        .into_iter()
        .map(|r| Ok(serde_json::from_value(r?)?))
        .collect()
}

/// Formats a history for evidence: "buyer 0 read-stock=1, buyer 1 read-stock=1, ...".
pub(crate) fn describe_history(history: &[Event], who: &str, with_values: bool) -> String {
    history
        .iter()
        .map(|e| {
            if with_values {
                format!("{who} {} {}={}", e.worker, e.operation, e.value)
            } else {
                format!("{who} {} {}", e.worker, e.operation)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Waits (polling the history, bounded by `bound`) until `ready` holds of it.
pub(crate) fn wait_for_events(
    log: &Turnstile,
    bound: Duration,
    ready: impl Fn(&[Event]) -> bool,
) -> bool {
    let until = Instant::now() + bound;
    loop {
        if ready(&log.history()) {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked(syscall: &str, wchan: &str) -> BlockedProcess {
        BlockedProcess {
            pid: 42,
            name: "consumer 0".into(),
            state: 'S',
            wchan: wchan.into(),
            syscall: syscall.into(),
            waits_on: None,
            stack: None,
        }
    }

    fn violated() -> Verdict {
        Verdict::violated("sold <= stock", "sold 2 of 1")
    }

    fn hung(syscall: &str, wchan: &str) -> Verdict {
        Verdict::Hung {
            blocked: vec![blocked(syscall, wchan)],
        }
    }

    fn crashed(signal: i32) -> Verdict {
        Verdict::Crashed {
            who: "case x/y".into(),
            signal,
        }
    }

    #[test]
    fn a_safe_variant_matches_only_holds() {
        let v = Variant::holds("safe", "");
        assert!(Verdict::Holds.matches(&v));
        for verdict in [violated(), hung("read", "pipe_read"), crashed(9)] {
            assert!(!verdict.matches(&v), "{verdict}");
        }
        assert_eq!(v.expected_kind(), "holds");
    }

    #[test]
    fn a_caught_variant_matches_only_its_kind() {
        let v = Variant::caught_violated("unsafe", "");
        assert!(violated().matches(&v));
        assert!(!Verdict::Holds.matches(&v));
        assert!(!hung("read", "pipe_read").matches(&v));
        assert!(!crashed(11).matches(&v));
        assert_eq!(
            v.mismatch(&crashed(11)).unwrap(),
            "caught for the wrong reason: expected violated, got crashed by signal 11"
        );
        assert_eq!(v.expected_kind(), "violated");
    }

    #[test]
    fn a_hung_variant_must_hang_in_an_expected_wait() {
        let v = Variant::caught_hung("unsafe", "", &["poll", "futex"]);
        assert!(hung("poll", "do_sys_poll").matches(&v));
        assert!(hung("ppoll", "-").matches(&v));
        assert!(hung("-", "futex_wait_queue").matches(&v));
        let wrong = hung("wait4", "do_wait");
        let why = v.mismatch(&wrong).unwrap();
        assert!(
            why.starts_with(
                "caught for the wrong reason: expected hung in poll|futex, got hung in wait4"
            ),
            "{why}"
        );
        assert!(!Verdict::Hung { blocked: vec![] }.matches(&v));
        assert!(!violated().matches(&v));
        assert!(!crashed(9).matches(&v));
        assert_eq!(v.expected_kind(), "hung");
        // No waits named: any hang will do.
        assert!(wrong.matches(&Variant::caught_hung("unsafe", "", &[])));
    }

    #[test]
    fn a_crashed_variant_must_die_of_its_signal() {
        let v = Variant::caught_crashed("unsafe", "", libc::SIGSEGV);
        assert!(crashed(libc::SIGSEGV).matches(&v));
        assert!(!crashed(libc::SIGKILL).matches(&v));
        assert!(!violated().matches(&v));
        assert!(!hung("futex", "futex_wait_queue").matches(&v));
        assert!(!Verdict::Holds.matches(&v));
        assert_eq!(v.expected_kind(), "crashed");
    }

    #[test]
    fn a_variant_with_two_kinds_takes_either_and_nothing_else() {
        let v = Variant::caught_hung_or_violated("unsafe", "", &["read"]);
        assert!(violated().matches(&v));
        assert!(hung("read", "pipe_read").matches(&v));
        assert!(!hung("futex", "futex_wait_queue").matches(&v));
        assert!(!crashed(9).matches(&v));
        assert!(!Verdict::Holds.matches(&v));
        assert_eq!(v.expected_kind(), "hung|violated");
    }

    #[test]
    fn every_unsafe_variant_in_the_catalogue_names_its_kinds() {
        for scenario in catalogue() {
            for v in scenario.variants() {
                assert_eq!(
                    v.expected == Expectation::Caught,
                    !v.kinds.is_empty(),
                    "{}/{}",
                    scenario.name(),
                    v.name
                );
            }
        }
    }
}
