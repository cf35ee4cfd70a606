//! The race scenarios on CPython's own `multiprocessing`: the seed's warnings shown where
//! they happen, in Python, and judged by the same oracles as ipcbench's mechanisms.
//!
//! Each scenario here mirrors one of the catalogue (`ticket-oversell` →
//! `cpython/ticket-oversell`) with variants in Python's terms (`unlocked` and `mp-lock`).
//! A case runs `peers/cpython/ipcbench_scenarios.py` once, in the case's process group:
//! the program starts the Python processes, runs the scenario and writes what it saw;
//! the oracle, in Rust, gives the verdict. Forced schedules reach the Python workers
//! through the turnstile [`bridge`], so `ticket-oversell` and `manager-lost-update` are
//! reproduced step for step and shrink like their Rust twins. A Python process that
//! blocks for ever is the finding of the hang scenarios: at the deadline every process of
//! the case is read from /proc (named by its role: "consumer 1", "pool worker") and the
//! verdict is Hung, naming who waits on what. `ipcbench check --peer cpython` runs them.

pub(crate) mod bridge;

use super::{
    manager_lost_update, ticket_oversell, Case, CaseContext, CaseOutcome, Scenario, ScenarioError,
    Schedule, Variant, Verdict,
};
use crate::process::watchdog::{self, BlockedProcess};
use crate::schedule::{Event, Mode, Turnstile};
use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use std::io::Write;
use std::time::{Duration, Instant};

/// The program that runs a case, shipped in the binary and written into the case's
/// directory (its tracebacks then name a real file).
const SCRIPT: &str = include_str!("../../../peers/cpython/ipcbench_scenarios.py");
const SCRIPT_NAME: &str = "ipcbench_scenarios.py";

/// What `--peer` names, and the prefix of these scenarios' names.
pub const PEER: &str = "cpython";

/// A scenario run by the CPython peer. Its fields are what differs between scenarios;
/// running a case (start the program, bridge the turnstile, wait under the deadline,
/// judge) is written once, in [`run_python`].
pub(crate) struct PythonScenario {
    /// `cpython/` and the name of the ipcbench scenario it mirrors.
    name: &'static str,
    about: &'static str,
    variants: &'static [Variant],
    cases: fn(&str) -> BoxedStrategy<Case>,
    /// Workers that take forced steps (0: none; the race is left to the kernel, or the
    /// finding is a hang that needs no schedule).
    stepping: fn(&Value) -> usize,
    /// The verdict, from the variant, the parameters, what the program saw, the history.
    oracle: fn(&str, &Value, &Value, &[Event]) -> Result<Verdict, ScenarioError>,
    reproducible: bool,
}

impl PythonScenario {
    /// The catalogue scenario this one mirrors ("ticket-oversell").
    pub(crate) fn mirrors(&self) -> &'static str {
        self.name.trim_start_matches("cpython/")
    }
}

/// Python and its `multiprocessing` start in some 50 ms; a safe case needs under a second
/// on an idle machine. The deadline leaves room for a loaded one, and is what a hung case
/// costs.
const DEADLINE: Duration = Duration::from_secs(4);

impl Scenario for PythonScenario {
    fn name(&self) -> &'static str {
        self.name
    }
    fn about(&self) -> &'static str {
        self.about
    }
    fn variants(&self) -> &'static [Variant] {
        self.variants
    }
    fn cases(&self, variant: &str) -> BoxedStrategy<Case> {
        (self.cases)(variant)
    }
    fn run(
        &self,
        variant: &str,
        case: &Case,
        context: &CaseContext,
    ) -> Result<CaseOutcome, ScenarioError> {
        run_python(self, variant, case, context)
    }
    fn deadline(&self) -> Duration {
        DEADLINE
    }
    fn reproducible(&self) -> bool {
        self.reproducible
    }
}

/// The CPython scenarios, in the catalogue's order.
pub fn catalogue() -> &'static [&'static dyn Scenario] {
    static CATALOGUE: [&dyn Scenario; 8] = [
        &TICKET_OVERSELL,
        &PIPE_SAME_END,
        &QUEUE_END_SIGNAL,
        &MANAGER_LOST_UPDATE,
        &LOCK_HOLDER_KILLED,
        &DAEMON_CHILDREN,
        &POOL_WORKER_DEATH,
        &JOIN_BEFORE_DRAIN,
    ];
    &CATALOGUE
}

/// The CPython scenario that mirrors `name` (given as `ticket-oversell` or
/// `cpython/ticket-oversell`).
pub(crate) fn find(name: &str) -> Option<&'static dyn Scenario> {
    let short = name.strip_prefix("cpython/").unwrap_or(name);
    catalogue()
        .iter()
        .copied()
        .find(|s| s.name().strip_prefix("cpython/") == Some(short))
}

/// Runs one case: the program in the case's directory, its workers bridged to the
/// turnstile, its end awaited under the deadline; then the oracle.
fn run_python(
    scenario: &PythonScenario,
    variant: &str,
    case: &Case,
    context: &CaseContext,
) -> Result<CaseOutcome, ScenarioError> {
    let workers = (scenario.stepping)(&case.params);
    let turnstile = match workers {
        0 => None,
        n => Some(Turnstile::create(n, &case.schedule, Mode::Forced)?),
    };
    let bridge = match &turnstile {
        Some(t) => Some(bridge::Bridge::start(t, workers, context.deadline)?),
        None => None,
    };
    let script = context.temp_dir.join(SCRIPT_NAME);
    std::fs::write(&script, SCRIPT)?;
    let answer_path = context.temp_dir.join("answer.json");
    let stderr_path = context.temp_dir.join("python.stderr");
    let request = json!({
        "scenario": scenario.mirrors(),
        "variant": variant,
        "params": case.params,
        "dir": context.temp_dir,
        "answer": answer_path,
        "steps": bridge.as_ref().map(bridge::Bridge::python_fds).unwrap_or_default(),
    });
    // One file for both, appended to: the program's output, tracebacks and the stacks
    // `faulthandler` prints when asked.
    let output = std::fs::File::options()
        .create(true)
        .append(true)
        .open(&stderr_path)?;
    let mut python = std::process::Command::new(crate::process::python())
        .arg(&script)
        .stdin(std::process::Stdio::piped())
        .stdout(output.try_clone()?)
        .stderr(output)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .spawn()
        .map_err(|e| {
            ScenarioError::Failed(format!(
                "cannot start {}: {e}",
                crate::process::python().to_string_lossy()
            ))
        })?;
    let mut bridge = bridge;
    if let Some(b) = bridge.as_mut() {
        b.hand_over();
    }
    if let Some(mut stdin) = python.stdin.take() {
        stdin.write_all(request.to_string().as_bytes())?;
    }
    let history = || {
        turnstile
            .as_ref()
            .map(Turnstile::history)
            .unwrap_or_default()
    };
    let until = Instant::now() + context.deadline;
    let status = loop {
        if let Some(status) = python.try_wait()? {
            break status;
        }
        if Instant::now() >= until {
            return Ok(CaseOutcome::new(
                Verdict::Hung {
                    blocked: blocked_processes(&stderr_path),
                },
                history(),
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let stderr_tail = || {
        tail(
            &std::fs::read_to_string(&stderr_path).unwrap_or_default(),
            1500,
        )
    };
    use std::os::unix::process::ExitStatusExt as _;
    if let Some(signal) = status.signal() {
        return Ok(CaseOutcome::new(
            Verdict::Crashed {
                who: "python main".into(),
                signal,
            },
            history(),
        ));
    }
    let bridged = bridge.map_or(Ok(()), |b| b.finish(Duration::from_secs(5)));
    let answer: Value = std::fs::read_to_string(&answer_path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .ok_or_else(|| {
            ScenarioError::Failed(format!(
                "the CPython scenario program gave no answer ({status}); its stderr ends:\n{}",
                stderr_tail()
            ))
        })?;
    if answer["ok"] != json!(true) {
        let error = answer["error"].as_str().unwrap_or("no error given");
        let turnstile = bridged
            .err()
            .map(|e| format!(" (turnstile: {e})"))
            .unwrap_or_default();
        return Err(ScenarioError::Failed(format!(
            "the CPython scenario failed: {error}{turnstile}; its stderr ends:\n{}",
            stderr_tail()
        )));
    }
    bridged.map_err(ScenarioError::Failed)?;
    let history = history();
    let verdict = (scenario.oracle)(variant, &case.params, &answer["observed"], &history)?;
    Ok(CaseOutcome::new(verdict, history))
}

/// Every other process of the case's group (the Python processes), as the watchdog sees
/// it, named by the role the program gave it, with its Python stack.
fn blocked_processes(output: &std::path::Path) -> Vec<BlockedProcess> {
    // SAFETY: getpgrp and getpid cannot fail.
    let (group, me) = unsafe { (libc::getpgrp(), libc::getpid()) };
    crate::process::hygiene::group_members(group)
        .into_iter()
        .filter(|p| p.pid != me)
        .filter_map(|p| {
            let mut blocked = watchdog::diagnose(p.pid, &p.comm)?;
            blocked.stack = python_stack(p.pid, output);
            Some(blocked)
        })
        .collect()
}

/// How long a process asked for its stack gets to print it, and the quiet that ends a
/// dump (`faulthandler` writes one in many small writes).
const STACK_GRACE: Duration = Duration::from_millis(300);
const DUMP_QUIET: Duration = Duration::from_millis(20);

/// Asks process `pid` for its Python stack (SIGUSR1, which the program registered with
/// `faulthandler` and its forked processes inherit) and reads it from the case's output
/// file. One process at a time, so that the dumps do not interleave; only a process that
/// catches the signal is sent it (to any other it would be fatal).
fn python_stack(pid: i32, output: &std::path::Path) -> Option<String> {
    if !crate::process::hygiene::catches_signal(pid, libc::SIGUSR1) {
        return None;
    }
    let size = || std::fs::metadata(output).map(|m| m.len()).unwrap_or(0);
    let mark = size();
    // SAFETY: kill(2) on a live process of this case's group, which nothing reaps (so
    // its pid is not reused) until the group is killed after the verdict.
    unsafe { libc::kill(pid, libc::SIGUSR1) };
    let until = Instant::now() + STACK_GRACE;
    let (mut seen, mut quiet_since) = (mark, Instant::now());
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(2));
        let now = size();
        if now != seen {
            (seen, quiet_since) = (now, Instant::now());
        } else if seen > mark && quiet_since.elapsed() >= DUMP_QUIET {
            break;
        }
    }
    let text = std::fs::read(output).ok()?;
    let dump = String::from_utf8_lossy(text.get(mark as usize..seen as usize)?);
    let dump = dump.trim();
    (!dump.is_empty()).then(|| tail(dump, 4000))
}

fn tail(text: &str, max: usize) -> String {
    let start = text.len().saturating_sub(max);
    let start = (start..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    text[start..].to_string()
}

fn params<P: DeserializeOwned>(params: &Value) -> Result<P, ScenarioError> {
    serde_json::from_value(params.clone()).map_err(|source| ScenarioError::Params {
        params: params.to_string(),
        source,
    })
}

fn observed<O: DeserializeOwned>(observed: &Value) -> Result<O, ScenarioError> {
    serde_json::from_value(observed.clone()).map_err(|e| {
        ScenarioError::Failed(format!(
            "the CPython program's observation {observed} is not what the oracle reads: {e}"
        ))
    })
}

fn no_schedule() -> Schedule {
    Schedule::new(Vec::new())
}

/// A case of `params` with no forced schedule.
fn unforced<P: serde::Serialize>(params: P) -> Case {
    Case::new(&params, no_schedule())
}

// --- ticket-oversell --------------------------------------------------------------------

static TICKET_OVERSELL: PythonScenario = PythonScenario {
    name: "cpython/ticket-oversell",
    about: "Python buyers decrement a ticket stock kept in a JSON file",
    variants: &[
        Variant::caught_violated(
            "unlocked",
            "read the stock, write back one less, no lock: sold > stock",
        ),
        Variant::holds("mp-lock", "multiprocessing.Lock around read+write"),
    ],
    cases: |variant| ticket_oversell::TicketOversell.cases(variant),
    stepping: |p| p["buyers"].as_u64().unwrap_or(0) as usize,
    oracle: |_, p, o, history| {
        #[derive(Deserialize)]
        struct Seen {
            sold: Vec<u32>,
            left: i64,
        }
        let seen: Seen = observed(o)?;
        Ok(ticket_oversell::oracle(
            &params(p)?,
            &seen.sold,
            seen.left,
            history,
        ))
    },
    reproducible: true,
};

// --- manager-lost-update ----------------------------------------------------------------

static MANAGER_LOST_UPDATE: PythonScenario = PythonScenario {
    name: "cpython/manager-lost-update",
    about: "Python clients do d[k] = d[k] + 1 on a Manager dict",
    variants: &[
        Variant::caught_violated(
            "get-then-set",
            "d[k] = d[k] + 1 is two RPCs; without a lock updates are lost",
        ),
        Variant::holds("locked", "multiprocessing.Lock around get+set"),
    ],
    cases: |variant| manager_lost_update::ManagerLostUpdate.cases(variant),
    stepping: |p| p["clients"].as_u64().unwrap_or(0) as usize,
    oracle: |_, p, o, history| {
        let total = o["total"].as_i64().ok_or_else(|| {
            ScenarioError::Failed(format!("the CPython program reported no total: {o}"))
        })?;
        Ok(manager_lost_update::oracle(&params(p)?, total, history))
    },
    reproducible: true,
};

// --- pipe-same-end ----------------------------------------------------------------------

/// `frame_bytes` above `PIPE_BUF` (4096) is written by `send_bytes` in several writes
/// (a frame above 16 KiB even sends its length and its payload apart), which another
/// writer's bytes can come between.
#[derive(serde::Serialize, Deserialize)]
struct PipeParams {
    writers: usize,
    frames_each: u32,
    frame_bytes: usize,
}

static PIPE_SAME_END: PythonScenario = PythonScenario {
    name: "cpython/pipe-same-end",
    about: "several Python processes send_bytes on one end of one Pipe",
    variants: &[
        Variant::caught_violated(
            "large-frames",
            "frames > PIPE_BUF from two or more writers: torn frames",
        ),
        Variant::holds(
            "small-frames",
            "frames <= PIPE_BUF: send_bytes is one atomic write",
        ),
        Variant::holds(
            "writer-lock",
            "large frames, send_bytes under multiprocessing.Lock",
        ),
    ],
    cases: |variant| {
        // Measured with two writers and 8 frames each: 100 kB frames came torn in 4 runs
        // of 10, 300 kB and 1 MB frames in 10 of 10.
        let sizes = if variant == "small-frames" {
            64usize..=4000
        } else {
            200_000usize..=1_000_000
        };
        (2usize..=3, 4u32..=12, sizes)
            .prop_map(|(writers, frames_each, frame_bytes)| {
                unforced(PipeParams {
                    writers,
                    frames_each,
                    frame_bytes,
                })
            })
            .boxed()
    },
    stepping: |_| 0,
    oracle: |_, _, o, _| {
        #[derive(Deserialize)]
        struct Seen {
            sent: u64,
            whole: u64,
            torn: u64,
            first: Option<String>,
        }
        let seen: Seen = observed(o)?;
        if seen.torn == 0 && seen.whole == seen.sent {
            return Ok(Verdict::Holds);
        }
        Ok(Verdict::violated(
            "every frame arrives whole, in order per writer",
            format!(
                "{} of {} frames whole, {} torn; first: {}",
                seen.whole,
                seen.sent,
                seen.torn,
                seen.first.as_deref().unwrap_or("frames missing")
            ),
        ))
    },
    reproducible: false,
};

// --- queue-end-signal -------------------------------------------------------------------

#[derive(serde::Serialize, Deserialize)]
struct QueueParams {
    consumers: usize,
    items: u32,
    /// Sentinels left out (missing-sentinel only).
    missing: usize,
}

static QUEUE_END_SIGNAL: PythonScenario = PythonScenario {
    name: "cpython/queue-end-signal",
    about: "Python consumers read a multiprocessing.Queue until a None sentinel",
    variants: &[
        Variant::caught_hung(
            "missing-sentinel",
            "fewer None sentinels than consumers: a consumer blocks in get() for ever",
            &["read", "futex"],
        ),
        Variant::holds("sentinel-per-consumer", "one None per consumer"),
        Variant::holds("joinable", "JoinableQueue: task_done per item, then join"),
    ],
    cases: |_| {
        (2usize..=3, 0u32..=12)
            .prop_flat_map(|(consumers, items)| {
                (1usize..=consumers).prop_map(move |missing| {
                    unforced(QueueParams {
                        consumers,
                        items,
                        missing,
                    })
                })
            })
            .boxed()
    },
    stepping: |_| 0,
    oracle: |_, _, o, _| {
        #[derive(Deserialize)]
        struct Seen {
            items: u32,
            got: Vec<u32>,
        }
        let seen: Seen = observed(o)?;
        let expected: Vec<u32> = (0..seen.items).collect();
        if seen.got == expected {
            return Ok(Verdict::Holds);
        }
        Ok(Verdict::violated(
            "every item is consumed exactly once",
            format!("put 0..{}, consumed {:?}", seen.items, seen.got),
        ))
    },
    reproducible: true,
};

// --- join-before-drain ------------------------------------------------------------------

#[derive(serde::Serialize, Deserialize)]
struct DrainParams {
    item_bytes: usize,
}

static JOIN_BEFORE_DRAIN: PythonScenario = PythonScenario {
    name: "cpython/join-before-drain",
    about: "a Python parent joins a child that put a large item on a Queue",
    variants: &[
        Variant::caught_hung(
            "join-first",
            "join before get: the child's exit waits for its feeder thread, which waits for \
             room in the pipe",
            &["futex", "wait4"],
        ),
        Variant::holds("drain-first", "get the item, then join"),
    ],
    cases: |_| {
        (100_000usize..=1_000_000)
            .prop_map(|item_bytes| unforced(DrainParams { item_bytes }))
            .boxed()
    },
    stepping: |_| 0,
    oracle: |_, _, o, _| {
        #[derive(Deserialize)]
        struct Seen {
            item_bytes: usize,
            received: usize,
        }
        let seen: Seen = observed(o)?;
        if seen.received == seen.item_bytes {
            return Ok(Verdict::Holds);
        }
        Ok(Verdict::violated(
            "the item arrives whole",
            format!("{} of {} bytes", seen.received, seen.item_bytes),
        ))
    },
    reproducible: true,
};

// --- pool-worker-death ------------------------------------------------------------------

#[derive(serde::Serialize, Deserialize)]
struct PoolParams {
    workers: usize,
    tasks: usize,
}

static POOL_WORKER_DEATH: PythonScenario = PythonScenario {
    name: "cpython/pool-worker-death",
    about: "a Python pool worker is SIGKILLed in the middle of a task",
    variants: &[
        Variant::caught_hung(
            "naive",
            "multiprocessing.Pool.map: the lost task's result never comes, the caller waits \
             for ever in futex",
            &["futex"],
        ),
        Variant::holds(
            "supervised",
            "concurrent.futures.ProcessPoolExecutor: the death is reported (BrokenProcessPool)",
        ),
    ],
    cases: |_| {
        (1usize..=3, 1usize..=8)
            .prop_map(|(workers, tasks)| unforced(PoolParams { workers, tasks }))
            .boxed()
    },
    stepping: |_| 0,
    oracle: |_, _, o, _| {
        #[derive(Deserialize)]
        struct Seen {
            tasks: usize,
            results: usize,
            reported: Option<String>,
        }
        let seen: Seen = observed(o)?;
        if seen.reported.is_some() || seen.results == seen.tasks {
            return Ok(Verdict::Holds);
        }
        Ok(Verdict::violated(
            "every task gives its result, or its loss is reported",
            format!("{} of {} results, no error", seen.results, seen.tasks),
        ))
    },
    reproducible: true,
};

// --- lock-holder-killed -----------------------------------------------------------------

#[derive(serde::Serialize, Deserialize)]
struct LockParams {
    waiters: usize,
    /// SIGKILL or SIGTERM (Python's default for SIGTERM is to die).
    signal: i32,
}

static LOCK_HOLDER_KILLED: PythonScenario = PythonScenario {
    name: "cpython/lock-holder-killed",
    about: "the Python process holding a lock is killed; do the waiters get it?",
    variants: &[
        Variant::caught_hung(
            "plain",
            "multiprocessing.Lock: a dead holder's lock is never released, the waiters block \
             for ever in futex",
            &["futex"],
        ),
        Variant::holds(
            "flock",
            "fcntl.flock: the kernel drops a dead holder's lock",
        ),
    ],
    cases: |_| {
        (
            1usize..=3,
            prop_oneof![Just(libc::SIGKILL), Just(libc::SIGTERM)],
        )
            .prop_map(|(waiters, signal)| unforced(LockParams { waiters, signal }))
            .boxed()
    },
    stepping: |_| 0,
    oracle: |_, _, o, _| {
        #[derive(Deserialize)]
        struct Seen {
            waiters: usize,
            acquired: usize,
        }
        let seen: Seen = observed(o)?;
        if seen.acquired == seen.waiters {
            return Ok(Verdict::Holds);
        }
        Ok(Verdict::violated(
            "every waiter gets the lock",
            format!("{} of {} waiters got it", seen.acquired, seen.waiters),
        ))
    },
    reproducible: true,
};

// --- daemon-children --------------------------------------------------------------------

#[derive(serde::Serialize, Deserialize)]
struct DaemonParams {
    /// How long after its parent's end the child may still be seen running.
    grace_ms: u64,
}

static DAEMON_CHILDREN: PythonScenario = PythonScenario {
    name: "cpython/daemon-children",
    about: "does a Python daemon child end with its parent?",
    variants: &[
        Variant::caught_violated(
            "parent-killed",
            "daemon=True is kept by the parent's exit handler: a SIGKILLed parent leaves its \
             daemon child running",
        ),
        Variant::holds(
            "daemon",
            "the parent returns: multiprocessing terminates its daemon child",
        ),
    ],
    cases: |_| Just(unforced(DaemonParams { grace_ms: 500 })).boxed(),
    stepping: |_| 0,
    oracle: |_, _, o, _| {
        let outlived = o["child_outlived_ms"].as_u64().unwrap_or(0);
        if outlived == 0 {
            return Ok(Verdict::Holds);
        }
        Ok(Verdict::violated(
            "a daemon child ends with its parent",
            format!(
                "the daemon child was still running {outlived} ms after its parent ended (exit {})",
                o["parent_exit"]
            ),
        ))
    },
    reproducible: true,
};

#[cfg(test)]
mod oracle_tests {
    //! The oracles on hand-written observations, as the program reports them.
    use super::*;

    fn judge(scenario: &PythonScenario, params: Value, observed: Value) -> Verdict {
        (scenario.oracle)("any", &params, &observed, &[]).expect("an observation it reads")
    }

    #[test]
    fn a_torn_or_missing_frame_is_a_violation() {
        let whole = json!({"sent": 8, "whole": 8, "torn": 0, "first": null});
        assert_eq!(judge(&PIPE_SAME_END, json!({}), whole), Verdict::Holds);
        let torn = json!({"sent": 8, "whole": 5, "torn": 1, "first": "frame 6 arrived torn"});
        let v = judge(&PIPE_SAME_END, json!({}), torn);
        assert!(v
            .evidence()
            .is_some_and(|e| e.contains("5 of 8 frames whole, 1 torn; first: frame 6")));
        let missing = json!({"sent": 8, "whole": 7, "torn": 0, "first": null});
        assert!(judge(&PIPE_SAME_END, json!({}), missing)
            .evidence()
            .is_some_and(|e| e.contains("frames missing")));
    }

    #[test]
    fn every_item_exactly_once() {
        let once = json!({"items": 3, "got": [0, 1, 2]});
        assert_eq!(judge(&QUEUE_END_SIGNAL, json!({}), once), Verdict::Holds);
        for got in [json!([0, 1]), json!([0, 1, 1, 2])] {
            let v = judge(
                &QUEUE_END_SIGNAL,
                json!({}),
                json!({"items": 3, "got": got}),
            );
            assert!(v.evidence().is_some(), "{v}");
        }
    }

    #[test]
    fn a_lost_task_must_be_reported() {
        let all = json!({"tasks": 4, "results": 4, "reported": null});
        assert_eq!(judge(&POOL_WORKER_DEATH, json!({}), all), Verdict::Holds);
        let reported = json!({"tasks": 4, "results": 0, "reported": "BrokenProcessPool: x"});
        assert_eq!(
            judge(&POOL_WORKER_DEATH, json!({}), reported),
            Verdict::Holds
        );
        let silent = json!({"tasks": 4, "results": 3, "reported": null});
        assert!(judge(&POOL_WORKER_DEATH, json!({}), silent)
            .evidence()
            .is_some());
    }

    #[test]
    fn every_waiter_gets_the_lock_and_the_item_arrives_whole() {
        let v = judge(
            &LOCK_HOLDER_KILLED,
            json!({}),
            json!({"waiters": 2, "acquired": 1}),
        );
        assert!(v.evidence().is_some_and(|e| e.contains("1 of 2 waiters")));
        let ok = json!({"waiters": 2, "acquired": 2});
        assert_eq!(judge(&LOCK_HOLDER_KILLED, json!({}), ok), Verdict::Holds);
        let short = json!({"item_bytes": 10, "received": 4});
        assert!(judge(&JOIN_BEFORE_DRAIN, json!({}), short)
            .evidence()
            .is_some());
    }

    #[test]
    fn a_daemon_child_seen_after_its_parent_is_a_violation() {
        let ended = json!({"parent_exit": 0, "child_outlived_ms": 0});
        assert_eq!(judge(&DAEMON_CHILDREN, json!({}), ended), Verdict::Holds);
        let outlived = json!({"parent_exit": -9, "child_outlived_ms": 500});
        assert!(judge(&DAEMON_CHILDREN, json!({}), outlived)
            .evidence()
            .is_some_and(|e| e.contains("500 ms after its parent ended (exit -9)")));
    }

    #[test]
    fn an_observation_the_oracle_cannot_read_is_an_error_not_a_verdict() {
        let e = (QUEUE_END_SIGNAL.oracle)("any", &json!({}), &json!({"items": "x"}), &[]);
        assert!(e.is_err());
        let e = (MANAGER_LOST_UPDATE.oracle)("any", &json!({}), &json!({}), &[]);
        assert!(e.is_err());
    }

    #[test]
    fn a_scenario_is_found_by_either_name() {
        assert_eq!(
            find("ticket-oversell").unwrap().name(),
            "cpython/ticket-oversell"
        );
        assert_eq!(
            find("cpython/pipe-same-end").unwrap().name(),
            "cpython/pipe-same-end"
        );
        assert!(find("segment-cleanup").is_none());
        for s in catalogue() {
            assert!(
                super::super::catalogue()
                    .iter()
                    .any(|c| c.name() == s.name().trim_start_matches("cpython/")),
                "{} mirrors no catalogue scenario",
                s.name()
            );
        }
    }
}
