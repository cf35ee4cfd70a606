//! The run loop shared by every target: start the workers, account every delivery, apply
//! the fault schedule at its points of progress, replace killed workers, sample progress
//! and turn a stall into a `Hung` report, stop, drain, settle the books, check hygiene.

use super::board::{Board, MAX_SLOTS};
use super::faults::{AppliedFault, FaultKind, Injector, Schedule, Victim};
use super::ledger::Ledger;
use super::StressError;
use crate::process::{hygiene, watchdog, Child};
use crate::results::StressOutcome;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

/// What a target's parent side (reader threads, consumers) tells the accountant.
#[derive(Debug)]
pub enum Event {
    /// A payload came out of the mechanism.
    Delivered(Vec<u8>),
    /// Progress of a target that moves no messages (e.g. lock increments).
    Progress(u64),
    /// The mechanism refused bytes as a torn or corrupt frame (expected only from a
    /// killed producer).
    Torn {
        /// The worker (producer id) whose process the tear is blamed on: excused only if
        /// that process was killed.
        producer: u32,
        /// Why the mechanism refused it.
        reason: String,
    },
    /// The mechanism failed in a way no fault explains.
    Failed(String),
    /// The mechanism reported that message `seq` was lost with a killed process (e.g. a
    /// Pool task whose worker died): accounted in flight, once.
    Excused {
        /// The message's producer.
        producer: u32,
        /// Its sequence number.
        seq: u64,
    },
    /// A producer that is not a worker process (e.g. the Pool's submitter in the parent)
    /// has ended: every seq below `sent` must be delivered or excused.
    Ended {
        /// The producer that ended.
        producer: u32,
        /// How many messages it sent (sequence numbers 0..sent).
        sent: u64,
    },
    /// The mechanism entered its explicit poisoned state (e.g. a queue whose stream a
    /// killed process tore): nothing more can move through it, so the run ends now. The
    /// target's settlement must explain it by an observed kill, or fail it.
    Poisoned(String),
}

/// Everything a target needs to start one worker.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkerSpec {
    pub(crate) target: String,
    /// The worker's slot: its cell on the board and its place in the fault schedule.
    pub slot: usize,
    pub(crate) producer: u32,
    /// Name of the shared progress board ([`Board::open`]).
    pub board: String,
    /// Largest message body, bytes.
    pub(crate) max_body: usize,
    /// Worker processes of the run (a target running its own sizes itself by it).
    pub(crate) procs: usize,
}

impl WorkerSpec {
    /// How every target starts this slot's process: forked, dying with the run, named
    /// `TARGET-{role}{slot}-p{producer}` (role `w` for a worker, `c` for a consumer).
    pub(crate) fn options(&self, role: char) -> crate::process::Options {
        crate::process::Options::new(format!(
            "{}-{role}{}-p{}",
            self.target, self.slot, self.producer
        ))
        .method(crate::process::StartMethod::Fork)
        .daemon(true)
    }
}

/// A mechanism under stress.
pub trait Target {
    /// Unique name, e.g. "pipe-duplex".
    fn name(&self) -> String;
    /// Family, e.g. "pipe" (`--target FAMILY` runs every flavor of it).
    fn family(&self) -> &'static str;
    /// Progress units (deliveries) between two faults on average: tuned so that a
    /// target sees a few faults per second at its pace under load.
    fn mean_fault_gap(&self) -> u64 {
        2_000
    }
    /// Starts the worker process for `spec`; parent-side delivery sends on `events`.
    fn start_worker(
        &mut self,
        spec: &WorkerSpec,
        events: &SyncSender<Event>,
    ) -> Result<Child, StressError>;
    /// Targets whose processes the run does not start itself (the Pool starts its own
    /// workers): called once before the run, with the producer id for messages the
    /// parent itself sends through the mechanism. The faults then go to
    /// [`Target::external_victims`]. The default starts nothing, and the run starts one
    /// worker per slot with [`Target::start_worker`].
    fn setup(
        &mut self,
        spec: &WorkerSpec,
        events: &SyncSender<Event>,
    ) -> Result<bool, StressError> {
        let _ = (spec, events);
        Ok(false)
    }
    /// The processes to inject faults into when the target runs its own (slot i is the
    /// i-th pid; a killed one is the target's to replace).
    fn external_victims(&self) -> Vec<crate::process::Pid> {
        Vec::new()
    }
    /// For a broken twin: the figure its books must catch it by (the proof that the
    /// books see that kind of defect end to end). `None` for a correct target.
    fn expected_flaw(&self) -> Option<Flaw> {
        None
    }
    /// How the run accounts this target's work.
    fn accounting(&self) -> Accounting {
        Accounting::Messages
    }
    /// How many slots (the first ones, `0..n`) run *consumers* rather than producers for
    /// a run of `procs` processes. Consumers are faulted like any worker and replaced when
    /// killed; at the end of the run the producers are stopped first, then the board's
    /// `producers_done` word is set, and the consumers drain the mechanism and return.
    fn consumer_slots(&self, procs: usize) -> usize {
        let _ = procs;
        0
    }
    /// The worker in `slot` has ended and been reaped (`killed`: by the injector or at a
    /// hang), before a replacement starts in the slot: e.g. to take back on the dead
    /// process's behalf what the mechanism does not.
    fn worker_ended(&mut self, slot: usize, pid: crate::process::Pid, killed: bool) {
        let _ = (slot, pid, killed);
    }
    /// Every worker has ended: let parent-side consumers finish once drained, so that
    /// every `SyncSender<Event>` they hold is dropped.
    fn close(&mut self) {}
    /// Final target-specific checks after everything was drained (e.g. the counter under
    /// a lock), given the run's totals. Also joins parent-side threads and releases what
    /// the target created (locks, segments, servers), before the hygiene check.
    fn finish(&mut self, totals: &Totals) -> Settlement {
        let _ = totals;
        Settlement::default()
    }
}

/// How a run keeps the books of a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accounting {
    /// Stamped messages, each delivered to the parent and settled by the ledger;
    /// progress is deliveries.
    Messages,
    /// Operations counted on the board by the workers (e.g. increments under a lock);
    /// progress is committed operations, and the target settles them in `finish`.
    Operations,
}

/// What the run saw, for a target's own settlement.
#[derive(Clone, Copy, Debug, Default)]
pub struct Totals {
    /// Operations committed by every producer, live or killed.
    pub(crate) committed: u64,
    /// Producers killed between starting an operation and committing it.
    pub(crate) killed_mid_operation: u64,
    pub(crate) kills: u64,
    /// Sum of the board's `extra` word over every producer (e.g. owner deaths reported
    /// by the lock).
    pub(crate) extra: u64,
    /// Kills delivered to consumer slots ([`Target::consumer_slots`]).
    pub(crate) consumer_kills: u64,
}

/// A target's settlement of its operations.
#[derive(Clone, Debug, Default)]
pub struct Settlement {
    pub(crate) accounted_in_flight: u64,
    pub(crate) losses: u64,
    pub(crate) duplicates: u64,
    pub(crate) corrupt: u64,
    /// Failures no fault explains.
    pub(crate) failures: Vec<String>,
    /// What else is worth reporting (e.g. owner deaths the lock reported).
    pub(crate) notes: Vec<String>,
    /// Losses of the message ledger the target can tie to an observed cause (e.g. one
    /// message per killed consumer, which took it and died before forwarding it): up to
    /// this many are accounted in flight instead, never more.
    pub(crate) excusable_losses: u64,
    /// The observed cause behind `excusable_losses`, for the report.
    pub(crate) excuse: String,
}

/// Parameters of one run.
#[derive(Clone, Debug)]
pub struct Config {
    /// How long faults are injected; the run then drains and settles its books.
    pub duration: Duration,
    pub(crate) procs: usize,
    pub(crate) faults: Vec<FaultKind>,
    pub(crate) seed: u64,
    /// No progress for this long while some worker runs: a hang.
    pub stall_after: Duration,
    /// Override of the target's mean fault gap (progress units).
    pub fault_gap: Option<u64>,
    pub(crate) max_body: usize,
}

impl Config {
    /// A run of `procs` worker processes for `duration`, injecting `faults` drawn from `seed`
    /// (stall bound 10 s, target's own fault gap, bodies up to 512 bytes).
    pub fn new(duration: Duration, procs: usize, faults: Vec<FaultKind>, seed: u64) -> Config {
        Config {
            duration,
            procs,
            faults,
            seed,
            stall_after: Duration::from_secs(10),
            fault_gap: None,
            max_body: 512,
        }
    }

    /// The run of a target that must be caught by `flaw` ([`Target::expected_flaw`]):
    /// unchanged, except for a twin that must hang, whose stall is a hang after
    /// `TWIN_STALL_AFTER` and may come as late as `TWIN_HANG_WITHIN` (the hang, not
    /// the duration, ends its run), so that it is caught in the main loop within about a
    /// second, not by the bound on the end of the run.
    pub fn for_twin(mut self, flaw: Option<Flaw>) -> Config {
        if flaw == Some(Flaw::Hung) {
            self.stall_after = self.stall_after.min(TWIN_STALL_AFTER);
            self.duration = self.duration.max(TWIN_HANG_WITHIN);
        }
        self
    }
}

/// How long a twin that must hang may make no progress before it is reported hung.
pub(crate) const TWIN_STALL_AFTER: Duration = Duration::from_secs(1);
/// How long a twin that must hang is given to stall.
pub(crate) const TWIN_HANG_WITHIN: Duration = Duration::from_secs(10);

/// Progress while running, for a bar.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tick {
    pub(crate) elapsed: Duration,
    pub(crate) messages: u64,
    pub(crate) faults: u64,
}

/// The result of one target's run, with more detail than the JSON model keeps.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StressReport {
    /// The target's name (`queue-shm`, `lock-robust`, …).
    pub target: String,
    pub(crate) family: String,
    pub(crate) seconds: f64,
    pub(crate) procs: usize,
    pub(crate) seed: u64,
    /// Every fault applied, in order.
    pub faults: Vec<AppliedFault>,
    /// SIGKILLs applied.
    pub kills: u64,
    /// SIGSTOPs applied.
    pub stops: u64,
    /// Throttles applied.
    pub slows: u64,
    /// Messages delivered (or operations done, for targets without messages).
    pub messages: u64,
    /// Torn or corrupt frames the mechanism refused (each explained by a killed producer).
    pub torn_rejected: u64,
    /// Messages missing but excused: the one a killed producer (or consumer) was in the
    /// middle of, each bounded by an observed kill.
    pub accounted_in_flight: u64,
    /// Committed messages never delivered and not excused.
    pub losses: u64,
    /// Messages delivered more than once.
    pub duplicates: u64,
    /// Deliveries whose body or checksum is wrong.
    pub corrupt: u64,
    /// Each stall of the run: no progress while a worker ran, with what the processes waited on.
    pub hangs: Vec<String>,
    /// What the run left behind (shared-memory names, temp files, fds, processes).
    pub leaks: Vec<String>,
    /// Failures no fault explains (a worker's error, a mechanism error, a failed check).
    pub errors: Vec<String>,
    /// Examples of losses, duplicates and corrupt deliveries.
    pub samples: Vec<String>,
    /// Longest time from a SIGKILL to the reaping of its worker, in milliseconds (a
    /// holder of a contended robust mutex can take seconds to leave the kernel).
    #[serde(default)]
    pub(crate) slowest_death_ms: f64,
    /// Target-specific observations (e.g. owner deaths reported by a lock).
    #[serde(default)]
    pub notes: Vec<String>,
    /// Set when the mechanism entered its poisoned state and ended the run early: why.
    #[serde(default)]
    pub(crate) poisoned: Option<String>,
}

/// A figure by which a stress run fails: what a broken twin must be caught by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Flaw {
    /// Committed messages went missing.
    Losses,
    /// A message was delivered twice.
    Duplicates,
    /// A delivery's body or checksum was wrong.
    Corrupt,
    /// The run stalled.
    Hung,
    /// The run left something behind.
    Leaks,
    /// A failure no fault explains.
    Errors,
}

impl Flaw {
    /// The flaw's name, as `--twin` listings and the JSON spell it.
    pub fn name(self) -> &'static str {
        match self {
            Flaw::Losses => "losses",
            Flaw::Duplicates => "duplicates",
            Flaw::Corrupt => "corrupt",
            Flaw::Hung => "hung",
            Flaw::Leaks => "leaks",
            Flaw::Errors => "errors",
        }
    }
}

impl StressReport {
    /// Every figure by which this run failed (empty when it passed).
    pub fn flaws(&self) -> Vec<Flaw> {
        let mut flaws = Vec::new();
        for (flaw, present) in [
            (Flaw::Losses, self.losses > 0),
            (Flaw::Duplicates, self.duplicates > 0),
            (Flaw::Corrupt, self.corrupt > 0),
            (Flaw::Hung, !self.hangs.is_empty()),
            (Flaw::Leaks, !self.leaks.is_empty()),
            (Flaw::Errors, !self.errors.is_empty()),
        ] {
            if present {
                flaws.push(flaw);
            }
        }
        flaws
    }

    /// Every zero the run must hold.
    pub fn passed(&self) -> bool {
        self.flaws().is_empty()
    }

    pub(crate) fn fault_count(&self) -> u64 {
        self.kills + self.stops + self.slows
    }

    pub(crate) fn faults_per_minute(&self) -> f64 {
        self.fault_count() as f64 * 60.0 / self.seconds.max(1e-9)
    }

    pub(crate) fn messages_per_second(&self) -> f64 {
        self.messages as f64 / self.seconds.max(1e-9)
    }

    /// The results-model view. Errors no fault explains are listed with the hangs, as
    /// the model has no field of its own for them and they fail the run alike.
    pub(crate) fn outcome(&self) -> StressOutcome {
        StressOutcome {
            target: self.target.clone(),
            seconds: self.seconds,
            procs: self.procs as u32,
            seed: self.seed,
            kills: self.kills,
            stops: self.stops,
            slows: self.slows,
            messages: self.messages,
            accounted_in_flight: self.accounted_in_flight,
            losses: self.losses,
            duplicates: self.duplicates,
            corrupt: self.corrupt,
            hangs: self
                .hangs
                .iter()
                .cloned()
                .chain(self.errors.iter().map(|e| format!("error: {e}")))
                .collect(),
            leaks: self.leaks.clone(),
        }
    }
}

struct Worker {
    child: Child,
    producer: u32,
}

/// A killed worker not yet reaped: a dying process may take a while to leave the kernel.
struct Dying {
    slot: usize,
    worker: Worker,
    /// When the fault (or the run, at a hang) sent its SIGKILL.
    killed_at: Instant,
}

/// How a worker left its slot, which decides how [`Run::retire`] books it.
#[derive(Clone, Copy)]
enum Exit {
    /// SIGKILLed by the injector at this instant and reaped (or given up on).
    Killed(Instant),
    /// Ended on its own before the stop request: a failure, reported with what it returned.
    Early,
    /// Still in its slot when the run stopped: asked to stop, or killed at a hang or at the
    /// end bound (`killed`). What it returned must match its board cell.
    Stopped {
        /// Whether the run killed it.
        killed: bool,
    },
}

/// Operations committed by producers that have ended, and their `extra` words.
#[derive(Default)]
struct Retired {
    ops: u64,
    extra: u64,
}

impl Retired {
    /// Books a worker that is gone (its board cell is final): into the ledger and the
    /// totals. Returns what it committed.
    fn book(
        &mut self,
        board: &Board,
        ledger: &mut Ledger,
        slot: usize,
        producer: u32,
        killed: bool,
    ) -> u64 {
        let (attempted, committed, extra) = board.read(slot);
        ledger.end(producer, attempted, committed, killed);
        self.ops += committed;
        self.extra += extra;
        committed
    }
}

/// Events waiting for the accountant at most: readers block beyond it, so a mechanism
/// faster than the books pushes back on its producers instead of filling memory.
const EVENT_BACKLOG: usize = 4096;

/// How long the end of a run may take (stop, drain, join) before it is a hang.
const END_BOUND: Duration = Duration::from_secs(15);

/// Runs `target` under `config`. Never hangs: a stall is reported in `hangs` and the
/// run ends. The caller should not run two stress runs at once in one process: the
/// hygiene check counts the whole process's children and fds.
pub fn run(
    target: &mut dyn Target,
    config: &Config,
    on_tick: &mut dyn FnMut(Tick),
) -> StressReport {
    let before = hygiene::Snapshot::take();
    let mut report = StressReport {
        target: target.name(),
        family: target.family().to_string(),
        procs: config.procs,
        seed: config.seed,
        ..StressReport::default()
    };
    if config.procs == 0 || config.procs > MAX_SLOTS {
        report.errors.push(format!(
            "procs must be 1..={MAX_SLOTS}, not {}",
            config.procs
        ));
        return report;
    }
    let started = Instant::now();
    match Board::create() {
        Ok(board) => drive(target, config, &board, &mut report, on_tick),
        Err(e) => report
            .errors
            .push(format!("cannot create the progress board: {e}")),
    }
    report.seconds = started.elapsed().as_secs_f64();
    // The snapshot lists only names of this run (the hygiene run tag), so other ipcbench
    // runs on the machine are not counted.
    report.leaks = before.leaks_since().iter().map(|l| l.to_string()).collect();
    report
}

/// Runs the phases of one run in order: start, step until the duration ends (or an error,
/// a poisoned mechanism or a hang ends it), stop, drain, settle.
fn drive(
    target: &mut dyn Target,
    config: &Config,
    board: &Board,
    report: &mut StressReport,
    on_tick: &mut dyn FnMut(Tick),
) {
    let mut run = Run::new(target, config, board, report);
    run.start();
    while run.running() {
        run.step(on_tick);
    }
    run.stop();
    run.drain();
    run.settle();
}

/// One run of a target: its workers (live and dying), its books (the ledger, the retired
/// workers' operations, the killed producers), its fault schedule and its clocks. Each
/// phase is a method; a worker that ended, however it ended, goes through [`Run::retire`].
struct Run<'a> {
    target: &'a mut dyn Target,
    config: &'a Config,
    board: &'a Board,
    report: &'a mut StressReport,
    name: String,
    accounting: Accounting,
    /// The sending side every worker's parent-side reader gets a clone of; dropped by
    /// [`Run::drain`], after which no worker starts.
    events: Option<SyncSender<Event>>,
    rx: Receiver<Event>,
    ledger: Ledger,
    /// Progress reported by [`Event::Progress`] (targets that move no messages).
    progress_ops: u64,
    injector: Injector,
    /// The live worker of each slot; `None` while its slot is empty.
    workers: Vec<Option<Worker>>,
    /// Killed workers not yet reaped.
    dying: Vec<Dying>,
    next_producer: u32,
    /// Producers whose process the run killed (a torn frame from one is excused).
    killed: BTreeSet<u32>,
    retired: Retired,
    /// Whether the target runs its own processes ([`Target::setup`]).
    external: bool,
    /// Slots `0..consumers` run consumers ([`Target::consumer_slots`]).
    consumers: usize,
    consumer_kills: u64,
    /// The run stalled: the stop kills the workers left and replaces none.
    hung: bool,
    /// The stop was requested: a killed worker is replaced only if it is a consumer the
    /// producers still need.
    stopping: bool,
    /// The board's `producers_done` word is set.
    producers_signalled: bool,
    clock: Clock,
}

/// The clocks of a run's main loop, started once its workers are up.
struct Clock {
    deadline: Instant,
    began: Instant,
    /// The last progress seen, and when it changed.
    last_progress: (u64, Instant),
    last_tick: Instant,
}

impl Clock {
    fn start(duration: Duration) -> Clock {
        Clock {
            deadline: Instant::now() + duration,
            began: Instant::now(),
            last_progress: (0, Instant::now()),
            last_tick: Instant::now(),
        }
    }
}

impl<'a> Run<'a> {
    fn new(
        target: &'a mut dyn Target,
        config: &'a Config,
        board: &'a Board,
        report: &'a mut StressReport,
    ) -> Run<'a> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Event>(EVENT_BACKLOG);
        let gap = config.fault_gap.unwrap_or_else(|| target.mean_fault_gap());
        let injector = Injector::new(
            Schedule::new(config.seed, &config.faults, config.procs, gap),
            config.procs,
        );
        let name = target.name();
        let accounting = target.accounting();
        Run {
            target,
            config,
            board,
            report,
            name,
            accounting,
            events: Some(tx),
            rx,
            ledger: Ledger::default(),
            progress_ops: 0,
            injector,
            workers: (0..config.procs).map(|_| None).collect(),
            dying: Vec::new(),
            next_producer: 0,
            killed: BTreeSet::new(),
            retired: Retired::default(),
            external: false,
            consumers: 0,
            consumer_kills: 0,
            hung: false,
            stopping: false,
            producers_signalled: false,
            clock: Clock::start(config.duration),
        }
    }

    /// Start: sets the target up (a target that runs its own processes says so), else
    /// starts one worker per slot; then starts the clocks.
    fn start(&mut self) {
        let spec = self.open_producer(0);
        let producer = spec.producer;
        let setup = match &self.events {
            Some(events) => self.target.setup(&spec, events),
            None => Err(closed()),
        };
        self.external = match setup {
            Ok(external) => external,
            Err(e) => {
                self.report
                    .errors
                    .push(format!("cannot set up: {}", e.chain()));
                false
            }
        };
        if !self.external {
            self.ledger.forget(producer);
        }
        let slots_to_start = if self.external { 0 } else { self.config.procs };
        for slot in 0..slots_to_start {
            match self.start_worker(slot) {
                Ok(w) => self.workers[slot] = Some(w),
                Err(e) => {
                    self.report
                        .errors
                        .push(format!("cannot start worker {slot}: {}", e.chain()));
                    break;
                }
            }
        }
        self.clock = Clock::start(self.config.duration);
        self.consumers = if self.external {
            0
        } else {
            self.target
                .consumer_slots(self.config.procs)
                .min(self.config.procs)
        };
    }

    /// Whether the main loop goes on: no error, not poisoned, not hung, time left.
    fn running(&self) -> bool {
        !self.hung
            && self.report.errors.is_empty()
            && self.report.poisoned.is_none()
            && Instant::now() < self.clock.deadline
    }

    /// Step, one tick of the main loop: take the events up to the next fault's point,
    /// deliver the faults due, reap and replace the killed, fail a worker that ended on
    /// its own, watch for a stall (which sets `hung`), and report progress.
    fn step(&mut self, on_tick: &mut dyn FnMut(Tick)) {
        let due = self.injector.next_due();
        self.take_events(Duration::from_millis(2), due);
        let progress = match self.accounting {
            Accounting::Messages => self.ledger.delivered + self.progress_ops,
            Accounting::Operations => self.retired.ops + live_ops(self.board, &self.workers),
        };
        let now = Instant::now();
        let victims = self.victims();
        for slot in self.injector.tick(progress, now, &victims) {
            if let Some(mut worker) = self.workers[slot].take() {
                self.killed.insert(worker.producer);
                self.consumer_kills += u64::from(slot < self.consumers);
                // Usually gone at once: wait a little so that the replacement is in place
                // before the next fault (which keeps a seed's run reproducible); a slow
                // death is left to the reaping below.
                let _ = worker.child.join(Some(Duration::from_millis(100)));
                self.dying.push(Dying {
                    slot,
                    worker,
                    killed_at: now,
                });
            }
        }
        self.reap_dying();
        // A worker that ended on its own before the stop request failed.
        for slot in 0..self.workers.len() {
            if let Some(worker) = self.workers[slot].take_if(|w| !w.child.is_alive()) {
                self.retire(slot, worker, Exit::Early);
            }
        }
        if progress != self.clock.last_progress.0 {
            self.clock.last_progress = (progress, now);
        } else if now.duration_since(self.clock.last_progress.1) >= self.config.stall_after {
            let any_running = self.external
                || (0..self.workers.len())
                    .any(|slot| self.workers[slot].is_some() && !self.injector.is_stopped(slot));
            if any_running {
                self.report.hangs.push(format!(
                    "no progress for {:?} at {progress} operations: {}",
                    self.config.stall_after,
                    diagnose(&self.workers)
                ));
                self.hung = true;
                return;
            }
        }
        if now.duration_since(self.clock.last_tick) >= Duration::from_millis(100) {
            self.clock.last_tick = now;
            on_tick(Tick {
                elapsed: self.clock.began.elapsed(),
                messages: progress,
                faults: self.injector.applied().len() as u64,
            });
        }
    }

    /// Stop: asks every worker to finish its operation and return, continues the paused
    /// (kills every worker after a hang), waits for them all to end, then retires them.
    fn stop(&mut self) {
        self.board.request_stop();
        let victims = self.victims();
        self.injector.release_all(&victims);
        if self.hung {
            self.kill_workers();
        }
        self.stopping = true;
        self.wait_for_end();
        self.retire_all();
    }

    /// Waits, within `END_BOUND`, for every worker to end: keeps taking events and
    /// reaping the killed, and once no producer is left sets the board's
    /// `producers_done` word for the consumers. Past the bound, reports a hang and kills
    /// the workers left.
    fn wait_for_end(&mut self) {
        let end_by = Instant::now() + END_BOUND;
        loop {
            self.take_events(Duration::from_millis(5), None);
            // While producers still run, a killed consumer is replaced: the mechanism must
            // keep draining for the producers to finish.
            self.reap_dying();
            if !self.producers_signalled {
                let consumers = self.consumers;
                let producer_alive = self
                    .workers
                    .iter_mut()
                    .skip(consumers)
                    .any(|w| w.as_mut().is_some_and(|w| w.child.is_alive()))
                    || self
                        .dying
                        .iter_mut()
                        .any(|d| d.slot >= consumers && d.worker.child.is_alive());
                if !producer_alive {
                    self.board.signal_producers_done();
                    self.producers_signalled = true;
                }
            }
            let all_done = self
                .workers
                .iter_mut()
                .all(|w| w.as_mut().is_none_or(|w| !w.child.is_alive()))
                && self.dying.iter_mut().all(|d| !d.worker.child.is_alive());
            if all_done {
                break;
            }
            if Instant::now() >= end_by {
                self.report.hangs.push(format!(
                    "workers did not finish within {END_BOUND:?} of the stop request: {}{}",
                    diagnose(&self.workers),
                    self.dying
                        .iter()
                        .filter_map(|d| watchdog::diagnose(
                            d.worker.child.pid().as_raw(),
                            d.worker.child.name()
                        ))
                        .map(|b| format!("; killed but not gone: {b}"))
                        .collect::<String>()
                ));
                self.kill_workers();
                break;
            }
        }
    }

    /// Retires every worker left once they have ended (or been given up on): the killed
    /// first, then each slot's last worker.
    fn retire_all(&mut self) {
        for mut dying in std::mem::take(&mut self.dying) {
            // Reaped above, or given up on with a hang report: its cell is as final as it
            // gets.
            let _ = dying.worker.child.join(Some(Duration::from_secs(5)));
            self.retire(dying.slot, dying.worker, Exit::Killed(dying.killed_at));
        }
        for slot in 0..self.workers.len() {
            let Some(worker) = self.workers[slot].take() else {
                continue;
            };
            let killed = self.killed.contains(&worker.producer);
            self.retire(slot, worker, Exit::Stopped { killed });
        }
    }

    /// Drain: lets the target's parent-side consumers finish, drops the run's sender,
    /// and takes everything still in flight until the channel disconnects (every reader
    /// has seen its stream end), within `END_BOUND`.
    fn drain(&mut self) {
        self.target.close();
        drop(self.events.take());
        let drained_by = Instant::now() + END_BOUND;
        loop {
            match self.rx.recv_timeout(Duration::from_millis(50)) {
                Ok(event) => self.handle(event),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) if Instant::now() >= drained_by => {
                    self.report.hangs.push(format!(
                        "deliveries still pending {END_BOUND:?} after every worker ended"
                    ));
                    break;
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }

    /// Settle: the target's own settlement over the run's totals, the ledger's, and every
    /// figure into the report.
    fn settle(mut self) {
        let report = &mut *self.report;
        let ledger = &mut self.ledger;
        let kills = self.injector.count(FaultKind::Kill);
        let (committed, killed_mid_operation) = ledger.totals();
        let settlement = self.target.finish(&Totals {
            committed,
            killed_mid_operation,
            kills,
            extra: self.retired.extra,
            consumer_kills: self.consumer_kills,
        });
        report.errors.extend(settlement.failures);
        report.notes.extend(settlement.notes);
        if let Some(why) = &report.poisoned {
            report
                .notes
                .push(format!("the run ended early, poisoned: {why}"));
        }
        if self.accounting == Accounting::Messages {
            ledger.settle();
        }
        if settlement.excusable_losses > 0 {
            let excused = ledger.losses.min(settlement.excusable_losses);
            ledger.losses -= excused;
            ledger.accounted_in_flight += excused;
            report.notes.push(format!(
                "{excused} losses accounted in flight, at most {} allowed: {}",
                settlement.excusable_losses, settlement.excuse
            ));
        }
        ledger.accounted_in_flight += settlement.accounted_in_flight;
        ledger.losses += settlement.losses;
        ledger.duplicates += settlement.duplicates;
        ledger.corrupt += settlement.corrupt;
        report.faults = self.injector.applied().to_vec();
        report.kills = self.injector.count(FaultKind::Kill);
        report.stops = self.injector.count(FaultKind::Stop);
        report.slows = self.injector.count(FaultKind::Slow);
        report.messages = match self.accounting {
            Accounting::Messages => ledger.delivered + self.progress_ops,
            Accounting::Operations => self.retired.ops,
        };
        report.torn_rejected = ledger.torn_rejected;
        report.accounted_in_flight = ledger.accounted_in_flight;
        report.losses = ledger.losses;
        report.duplicates = ledger.duplicates;
        report.corrupt = ledger.corrupt;
        report.samples = ledger.samples.clone();
    }

    /// Retires a worker that ended and is out of its slot: books its board cell (now
    /// final) into the ledger and the totals, reports what is wrong with how it ended,
    /// and tells the target (except for a worker that ended early, as before).
    fn retire(&mut self, slot: usize, mut worker: Worker, exit: Exit) {
        let killed = match exit {
            Exit::Killed(killed_at) => {
                self.report.slowest_death_ms = self
                    .report
                    .slowest_death_ms
                    .max(killed_at.elapsed().as_secs_f64() * 1000.0);
                true
            }
            Exit::Early => {
                let outcome = worker.child.result::<u64>(Some(Duration::ZERO));
                self.report.errors.push(format!(
                    "worker {slot} (producer {}) ended before the stop request: {}",
                    worker.producer,
                    match outcome {
                        Ok(n) => format!("returned after {n} operations"),
                        Err(e) => e.to_string(),
                    }
                ));
                false
            }
            Exit::Stopped { killed } => killed,
        };
        let committed =
            self.retired
                .book(self.board, &mut self.ledger, slot, worker.producer, killed);
        match exit {
            Exit::Early => return,
            Exit::Killed(_) => {}
            Exit::Stopped { killed } => {
                match worker.child.result::<u64>(Some(Duration::from_secs(5))) {
                    Ok(n) if n == committed => {}
                    Ok(n) => self.report.errors.push(format!(
                        "worker {slot} (producer {}) returned {n} operations, the board says {committed}",
                        worker.producer
                    )),
                    Err(_) if killed => {}
                    Err(e) => self.report.errors.push(format!("worker {slot}: {e}")),
                }
            }
        }
        self.target.worker_ended(slot, worker.child.pid(), killed);
    }

    /// Retires each killed worker that is gone (without waiting: a dying process may
    /// take a while to leave the kernel), so its board cell is final, and starts a
    /// replacement in its slot where one is due ([`Run::replacement`]).
    fn reap_dying(&mut self) {
        for mut dying in std::mem::take(&mut self.dying) {
            if dying.worker.child.is_alive() {
                self.dying.push(dying);
                continue;
            }
            let slot = dying.slot;
            self.retire(slot, dying.worker, Exit::Killed(dying.killed_at));
            if let Some(role) = self.replacement(slot) {
                match self.start_worker(slot) {
                    Ok(w) => self.workers[slot] = Some(w),
                    Err(e) => self
                        .report
                        .errors
                        .push(format!("cannot replace {role} {slot}: {}", e.chain())),
                }
            }
        }
    }

    /// Whether a killed worker of `slot` is replaced, named as the error would name it:
    /// always before the stop; after it, only a consumer, while producers still run and
    /// the run did not hang.
    fn replacement(&self, slot: usize) -> Option<&'static str> {
        if !self.stopping {
            Some("worker")
        } else if slot < self.consumers && !self.producers_signalled && !self.hung {
            Some("consumer")
        } else {
            None
        }
    }

    /// Kills every live worker (a hang, or the end bound passed); each is then retired as
    /// killed.
    fn kill_workers(&mut self) {
        for worker in self.workers.iter().flatten() {
            let _ = worker.child.kill();
            self.killed.insert(worker.producer);
        }
    }

    /// A new producer id, open in the ledger, and the spec of a process for `slot`.
    fn open_producer(&mut self, slot: usize) -> WorkerSpec {
        let producer = self.next_producer;
        self.next_producer += 1;
        self.ledger.open(producer);
        WorkerSpec {
            target: self.name.clone(),
            slot,
            producer,
            board: self.board.name().to_string(),
            max_body: self.config.max_body,
            procs: self.config.procs,
        }
    }

    /// Starts a worker in `slot` with a fresh board cell and a new producer id.
    fn start_worker(&mut self, slot: usize) -> Result<Worker, StressError> {
        self.board.reset(slot);
        let spec = self.open_producer(slot);
        let Some(events) = &self.events else {
            return Err(closed());
        };
        let child = self.target.start_worker(&spec, events)?;
        Ok(Worker {
            child,
            producer: spec.producer,
        })
    }

    /// The processes the injector may fault, slot by slot.
    fn victims(&self) -> Vec<Option<Victim>> {
        if self.external {
            external_victims(&*self.target, self.config.procs)
        } else {
            victims(&self.workers)
        }
    }

    /// Takes the events queued (waiting up to `wait` for the first), stopping early once
    /// progress reaches `until` (the next fault's point) and after a bounded batch, so
    /// that faults land at their exact point and timed pauses are not starved.
    fn take_events(&mut self, wait: Duration, until: Option<u64>) {
        let reached =
            |run: &Run| until.is_some_and(|u| run.ledger.delivered + run.progress_ops >= u);
        if reached(self) {
            return;
        }
        match self.rx.recv_timeout(wait) {
            Ok(event) => self.handle(event),
            Err(_) => return,
        }
        for _ in 0..2_000 {
            if reached(self) {
                return;
            }
            match self.rx.try_recv() {
                Ok(event) => self.handle(event),
                Err(_) => return,
            }
        }
    }

    /// Accounts one event.
    fn handle(&mut self, event: Event) {
        let report = &mut *self.report;
        match event {
            Event::Delivered(payload) => self.ledger.deliver(&payload),
            Event::Progress(n) => self.progress_ops += n,
            Event::Torn { producer, .. } if self.killed.contains(&producer) => self.ledger.torn(),
            Event::Torn { producer, reason } => report.errors.push(format!(
                "torn frame from producer {producer}, which was not killed: {reason}"
            )),
            Event::Failed(text) => report.errors.push(text),
            Event::Excused { producer, seq } => self.ledger.excuse(producer, seq),
            Event::Ended { producer, sent } => self.ledger.end(producer, sent, sent, false),
            Event::Poisoned(why) => {
                report.poisoned.get_or_insert(why);
            }
        }
    }
}

/// Why a worker cannot start once the run has drained: its events would go nowhere.
fn closed() -> StressError {
    StressError::Failed("the run's event channel is closed".into())
}

/// Operations committed so far by the live workers.
fn live_ops(board: &Board, workers: &[Option<Worker>]) -> u64 {
    workers
        .iter()
        .enumerate()
        .filter(|(_, w)| w.is_some())
        .map(|(slot, _)| board.read(slot).1)
        .sum()
}

fn external_victims(target: &dyn Target, slots: usize) -> Vec<Option<Victim>> {
    let pids = target.external_victims();
    (0..slots)
        .map(|slot| {
            pids.get(slot).map(|&pid| Victim {
                pid,
                producer: u32::MAX,
            })
        })
        .collect()
}

fn victims(workers: &[Option<Worker>]) -> Vec<Option<Victim>> {
    workers
        .iter()
        .map(|w| {
            w.as_ref().map(|w| Victim {
                pid: w.child.pid(),
                producer: w.producer,
            })
        })
        .collect()
}

/// What each live worker is doing, from /proc (the watchdog's diagnosis).
fn diagnose(workers: &[Option<Worker>]) -> String {
    let found: Vec<String> = workers
        .iter()
        .flatten()
        .filter_map(|w| watchdog::diagnose(w.child.pid().as_raw(), w.child.name()))
        .map(|b| b.to_string())
        .collect();
    if found.is_empty() {
        "no worker alive".into()
    } else {
        found.join("; ")
    }
}
