//! Stress target: every Queue flavor, through the `Queue` trait.
//!
//! Producer processes put stamped messages; **consumer processes** (the first slots, two
//! of them by default) get them and forward each one over a pipe of their own to the
//! parent, whose reader threads hand them to the books. Producers and consumers alike are
//! killed, stopped and slowed by the injector, so the read side is contended under faults
//! too. (The channel flavor's receiver moves to exactly one process and can never move
//! again, so a killed consumer would end that queue: its consumer stays a thread in the
//! parent.)
//!
//! # The books
//!
//! * A producer killed in the middle of a put loses at most that message (accounted in
//!   flight by the ledger); a flavor that detects the loss on the get side (`PeerDied`)
//!   reports it, and it is counted as a torn message refused — provided that producer was
//!   killed.
//! * A consumer killed after taking a message and before its forward was written whole
//!   loses that message: at most one per consumer kill. So ledger losses are accounted in
//!   flight up to the number of kills delivered to consumers, never more.
//! * The shm ring counts the messages it took back from consumers that died holding a
//!   slot ([`ShmQueue::lost`]): that count must not exceed the consumer kills either.
//! * A flavor that tears its stream when a process dies mid-frame reports it (`Corrupt`,
//!   or `Poisoned` where the flavor has it): the queue is unusable from then on, so the
//!   run ends there, the poisoned state is recorded, and the messages left in the stream
//!   (at most the queue's maxsize) are accounted in flight with it — provided a kill was
//!   delivered; a poisoned queue with no kill behind it is a failure.
//!
//! # Broken twins
//!
//! [`QueueTarget::broken`] injects a [`Defect`] in the target's own producers or
//! consumers around the real queue, one message in `DEFECT_EVERY`: `dropping` must be
//! caught as losses, `duplicating` as duplicates, `tearing` as corrupt deliveries.

use super::board::Board;
use super::message;
use super::runner::{Event, Flaw, Settlement, Target, Totals, WorkerSpec};
use super::StressError;
use crate::ipc::pipe::{pipe, Connection, ConnectionHandle, PipeError, PipeKind};
use crate::ipc::queue::shm::ShmQueue;
use crate::ipc::queue::{self, Flavor, Queue, QueueError, QueueHandle, Role};
use crate::process::{self, Child};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Bound on finishing a frame once started (the queue's block limit): beyond any pause a
/// fault causes, and below the runner's end bound.
const BLOCK_LIMIT: Duration = Duration::from_secs(10);
/// How long one get waits, so that a consumer sees the end of the run promptly.
const GET_SLICE: Duration = Duration::from_millis(10);
/// How long one put waits for room before checking for the stop request.
const PUT_SLICE: Duration = Duration::from_millis(50);
/// Bound on one forward to the parent, which drains every forward pipe all the time.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on the rest of a forwarded frame once its first bytes arrived.
const FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// The queue's maxsize: also the most messages a poisoned stream can hold.
const MAXSIZE: usize = 256;

/// Forwarded frames: a tag byte, then the body.
const TAG_MESSAGE: u8 = b'M';
const TAG_PEER_DIED: u8 = b'D';
const TAG_POISONED: u8 = b'P';

type SharedQueue = Arc<Mutex<Box<dyn Queue>>>;
type PidMap = Arc<Mutex<HashMap<i32, u32>>>;

/// When `e` says the queue's stream is torn for good: `Poisoned` (a frame torn by a
/// process that died mid-frame), or `Corrupt`.
pub(crate) fn poisoning(e: &QueueError) -> Option<String> {
    match e {
        QueueError::Corrupt(_) | QueueError::Poisoned { .. } => Some(e.to_string()),
        _ => None,
    }
}

/// A broken twin's defect hits one message in this many (by a consumer's count of
/// messages taken, or a producer's sequence number): deterministic, and dozens of times
/// in a two-second run.
pub(crate) const DEFECT_EVERY: u64 = 64;

/// The deliberate defect of a broken queue twin, injected in the target's own worker
/// processes around the real queue (the kind of bug a hurried change to a put or a get
/// path makes), so the books must catch it end to end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Defect {
    /// The correct target.
    #[default]
    None,
    /// Consumers take one message in `DEFECT_EVERY` and never forward it (a loss with
    /// no kill behind it, which the bounded excuse must not cover).
    Dropping,
    /// Consumers forward one message in `DEFECT_EVERY` twice (a retry after a send
    /// believed to have failed that had in fact gone through).
    Duplicating,
    /// Producers put one message in `DEFECT_EVERY` first torn (its last byte cut, as a
    /// write cut short leaves a frame) and then whole (the retry): the torn copy must be
    /// refused by the message's checksum, as corrupt.
    Tearing,
}

impl Defect {
    /// The suffix of the twin's target name.
    fn suffix(self) -> &'static str {
        match self {
            Defect::None => "",
            Defect::Dropping => "-dropping",
            Defect::Duplicating => "-duplicating",
            Defect::Tearing => "-tearing",
        }
    }

    /// The figure of the books that must catch it.
    fn flaw(self) -> Option<Flaw> {
        match self {
            Defect::None => None,
            Defect::Dropping => Some(Flaw::Losses),
            Defect::Duplicating => Some(Flaw::Duplicates),
            Defect::Tearing => Some(Flaw::Corrupt),
        }
    }

    /// Whether the defect hits the `n`-th message (counted from 1) a worker handles.
    fn hits(self, wanted: Defect, n: u64) -> bool {
        self == wanted && n.is_multiple_of(DEFECT_EVERY)
    }
}

/// A stress target over one queue flavor (built-in or plugged in), or a broken twin of it:
/// producer and consumer processes under faults, every message accounted exactly once.
pub struct QueueTarget {
    flavor: Flavor,
    /// A broken twin's defect ([`Defect::None`] for the real target).
    defect: Defect,
    queue: Option<SharedQueue>,
    /// The shm ring opened a second time, to read its `lost` counter at the end.
    lost_probe: Option<ShmQueue>,
    /// Worker pid -> producer id, to name the producer of a `PeerDied`.
    producers: PidMap,
    closing: Arc<AtomicBool>,
    /// The in-parent consumer (channel flavor, or a run of one process).
    consumer: Option<JoinHandle<()>>,
    /// One reader thread per consumer process, reading its forward pipe.
    readers: Vec<JoinHandle<()>>,
    poisoned: Arc<Mutex<Option<String>>>,
}

impl QueueTarget {
    /// The target `queue-FLAVOR` over `flavor`.
    pub fn new(flavor: Flavor) -> QueueTarget {
        QueueTarget {
            flavor,
            defect: Defect::None,
            queue: None,
            lost_probe: None,
            producers: Arc::default(),
            closing: Arc::default(),
            consumer: None,
            readers: Vec::new(),
            poisoned: Arc::default(),
        }
    }

    /// A broken twin: `flavor`'s queue with `defect` (named `queue-FLAVOR-DEFECT`).
    pub fn broken(flavor: Flavor, defect: Defect) -> QueueTarget {
        QueueTarget {
            defect,
            ..QueueTarget::new(flavor)
        }
    }

    fn queue(
        &mut self,
        spec: &WorkerSpec,
        events: &SyncSender<Event>,
    ) -> Result<SharedQueue, StressError> {
        if let Some(queue) = &self.queue {
            return Ok(queue.clone());
        }
        let config = queue::Config::default()
            .maxsize(MAXSIZE)
            .max_message(64 << 10)
            .block_limit(BLOCK_LIMIT);
        let created = self.flavor.create(&config)?;
        if self.flavor == Flavor::Shm {
            let handle = created.handle(Role::Consumer)?;
            self.lost_probe = Some(ShmQueue::open(handle)?);
        }
        let queue: SharedQueue = Arc::new(Mutex::new(created));
        if self.consumer_slots(spec.procs) == 0 {
            let (q, events, closing, producers, poisoned) = (
                queue.clone(),
                events.clone(),
                self.closing.clone(),
                self.producers.clone(),
                self.poisoned.clone(),
            );
            self.consumer = Some(
                std::thread::Builder::new()
                    .name("stress-queue-consumer".into())
                    .spawn(move || consume(q, events, closing, producers, poisoned))?,
            );
        }
        self.queue = Some(queue.clone());
        Ok(queue)
    }
}

fn lock(queue: &SharedQueue) -> std::sync::MutexGuard<'_, Box<dyn Queue>> {
    queue.lock().unwrap_or_else(|p| p.into_inner())
}

fn peer_died(producers: &PidMap, pid: i32, op: &str) -> Event {
    let producer = producers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&pid)
        .copied();
    match producer {
        Some(producer) => Event::Torn {
            producer,
            reason: format!("process {pid} died in the middle of {op}"),
        },
        None => Event::Failed(format!("PeerDied from unknown process {pid}")),
    }
}

fn record_poison(poisoned: &Mutex<Option<String>>, why: &str) {
    poisoned
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert_with(|| why.to_string());
}

/// The in-parent consumer: gets until closing and then until empty.
fn consume(
    queue: SharedQueue,
    events: SyncSender<Event>,
    closing: Arc<AtomicBool>,
    producers: PidMap,
    poisoned: Arc<Mutex<Option<String>>>,
) {
    loop {
        let closing_now = closing.load(Ordering::SeqCst);
        let got = lock(&queue).get(Some(GET_SLICE));
        let event = match got {
            Ok(payload) => Event::Delivered(payload),
            Err(QueueError::Empty) => {
                if closing_now {
                    return;
                }
                continue;
            }
            Err(QueueError::PeerDied { pid, op }) => peer_died(&producers, pid, op),
            Err(e) => match poisoning(&e) {
                Some(why) => {
                    record_poison(&poisoned, &why);
                    let _ = events.send(Event::Poisoned(format!("parent consumer: {why}")));
                    return;
                }
                None => Event::Failed(format!("get: {e}")),
            },
        };
        let failed = matches!(event, Event::Failed(_));
        if events.send(event).is_err() || failed {
            return;
        }
    }
}

#[derive(Serialize, Deserialize)]
struct QueueWorkerArgs {
    spec: WorkerSpec,
    handle: QueueHandle,
    /// Consumers only: the write end of the pipe to the parent.
    forward: Option<ConnectionHandle>,
    #[serde(default)]
    defect: Defect,
}

/// Waits for the end of the run (a poisoned queue moves nothing more).
fn idle_until(board: &Board, done: impl Fn(&Board) -> bool) {
    while !done(board) {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Puts messages 0, 1, 2, ... until the stop request; returns how many were committed. A
/// put refused for want of room (`Full`) wrote nothing: once the stop is requested it is
/// withdrawn (attempted goes back), so the books never wait on it.
fn queue_worker(args: QueueWorkerArgs) -> Result<u64, StressError> {
    let board = Board::open(&args.spec.board)?;
    let queue = queue::open(args.handle)?;
    let cell = board.cell(args.spec.slot);
    let mut seq = 0u64;
    while !board.stop_requested() {
        let msg = message::encode(args.spec.producer, seq, args.spec.max_body);
        cell.attempted.store(seq + 1, Ordering::SeqCst);
        if args.defect.hits(Defect::Tearing, seq + 1) {
            let torn = &msg[..msg.len() - 1];
            match queue.put(torn, Some(BLOCK_LIMIT)) {
                Ok(()) => {}
                Err(e) if poisoning(&e).is_some() => {}
                Err(e) => return Err(StressError::at(format!("torn put of seq {seq}"), e)),
            }
        }
        loop {
            match queue.put(&msg, Some(PUT_SLICE)) {
                Ok(()) => break,
                Err(QueueError::Full) if board.stop_requested() => {
                    cell.attempted.store(seq, Ordering::SeqCst);
                    return Ok(seq);
                }
                Err(QueueError::Full) => {}
                Err(e) if poisoning(&e).is_some() => {
                    // Refused by a poisoned queue: not sent. Marked on the board.
                    cell.attempted.store(seq, Ordering::SeqCst);
                    cell.extra.store(1, Ordering::SeqCst);
                    idle_until(&board, Board::stop_requested);
                    return Ok(seq);
                }
                Err(e) => return Err(StressError::at(format!("put of seq {seq}"), e)),
            }
        }
        cell.committed.store(seq + 1, Ordering::SeqCst);
        seq += 1;
    }
    Ok(seq)
}
crate::register_entry!("stress-queue-worker", queue_worker);

/// Gets and forwards until every producer has ended and the queue is empty. Commits
/// nothing on the board (it sends no messages of its own); returns 0.
fn consumer_worker(args: QueueWorkerArgs) -> Result<u64, StressError> {
    let board = Board::open(&args.spec.board)?;
    let queue = queue::open(args.handle)?;
    let forward = Connection::adopt(
        args.forward
            .ok_or_else(|| StressError::Failed("a consumer needs its forward pipe".into()))?,
    )?;
    let mut frame = Vec::new();
    let mut send = |tag: u8, body: &[u8]| {
        frame.clear();
        frame.push(tag);
        frame.extend_from_slice(body);
        forward
            .send_bytes_timeout(&frame, SEND_TIMEOUT)
            .map_err(|e| StressError::at("forward to the parent", e))
    };
    let mut buf = Vec::new();
    let mut empty_after_done = 0;
    let mut taken = 0u64;
    loop {
        // Read before the get: an empty queue after every producer ended stays empty.
        let done = board.producers_done();
        match queue.get_into(&mut buf, Some(GET_SLICE)) {
            Ok(()) => {
                empty_after_done = 0;
                taken += 1;
                if !args.defect.hits(Defect::Dropping, taken) {
                    send(TAG_MESSAGE, &buf)?;
                }
                if args.defect.hits(Defect::Duplicating, taken) {
                    send(TAG_MESSAGE, &buf)?;
                }
            }
            Err(QueueError::Empty) => {
                // Twice, so that a dead producer's slot is surely recovered in between.
                empty_after_done = if done { empty_after_done + 1 } else { 0 };
                if empty_after_done >= 2 {
                    return Ok(0);
                }
            }
            Err(QueueError::PeerDied { pid, .. }) => send(TAG_PEER_DIED, &pid.to_le_bytes())?,
            Err(e) => match poisoning(&e) {
                Some(why) => {
                    send(TAG_POISONED, why.as_bytes())?;
                    idle_until(&board, Board::producers_done);
                    return Ok(0);
                }
                None => return Err(StressError::at("get", e)),
            },
        }
    }
}
crate::register_entry!("stress-queue-consumer", consumer_worker);

/// The parent's side of one consumer's forward pipe.
fn read_forwarded(
    end: Connection,
    consumer: u32,
    producers: PidMap,
    poisoned: Arc<Mutex<Option<String>>>,
    events: SyncSender<Event>,
) {
    loop {
        match end.poll(Duration::from_secs(1)) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                let _ = events.send(Event::Failed(format!("consumer {consumer}: poll: {e}")));
                return;
            }
        }
        let event = match end.recv_bytes_timeout(FRAME_TIMEOUT) {
            Ok(frame) => match frame.split_first() {
                Some((&TAG_MESSAGE, payload)) => Event::Delivered(payload.to_vec()),
                Some((&TAG_PEER_DIED, pid)) if pid.len() == 4 => {
                    let pid = i32::from_le_bytes(pid.try_into().expect("4 bytes"));
                    peer_died(&producers, pid, "put")
                }
                Some((&TAG_POISONED, why)) => {
                    let why = format!("consumer {consumer}: {}", String::from_utf8_lossy(why));
                    record_poison(&poisoned, &why);
                    Event::Poisoned(why)
                }
                _ => Event::Failed(format!(
                    "consumer {consumer} forwarded a frame of no known kind ({} bytes)",
                    frame.len()
                )),
            },
            Err(PipeError::Eof) => return,
            Err(PipeError::Timeout(_)) => continue,
            Err(PipeError::Corrupt(e)) => {
                // The consumer died mid-forward: that message is lost with it.
                let _ = events.send(Event::Torn {
                    producer: consumer,
                    reason: format!("forward cut: {e}"),
                });
                return;
            }
            Err(e) => Event::Failed(format!("consumer {consumer}: recv: {e}")),
        };
        let failed = matches!(event, Event::Failed(_));
        if events.send(event).is_err() || failed {
            return;
        }
    }
}

impl Target for QueueTarget {
    fn name(&self) -> String {
        format!("queue-{}{}", self.flavor.name(), self.defect.suffix())
    }
    fn family(&self) -> &'static str {
        "queue"
    }
    fn expected_flaw(&self) -> Option<Flaw> {
        self.defect.flaw()
    }
    fn mean_fault_gap(&self) -> u64 {
        // Roughly in proportion to each flavor's pace under load here.
        match self.flavor {
            Flavor::Pipe | Flavor::Plugin(_) => 2_000,
            Flavor::Shm => 4_000,
            Flavor::Channel => 4_000,
        }
    }
    fn consumer_slots(&self, procs: usize) -> usize {
        if self.flavor.multi_consumer() && procs >= 2 {
            2.min(procs - 1)
        } else {
            0
        }
    }

    fn start_worker(
        &mut self,
        spec: &WorkerSpec,
        events: &SyncSender<Event>,
    ) -> Result<Child, StressError> {
        let queue = self.queue(spec, events)?;
        let consumer = spec.slot < self.consumer_slots(spec.procs);
        let role = if consumer {
            Role::Consumer
        } else {
            Role::Producer
        };
        let handle = lock(&queue).handle(role)?;
        let mut options = handle.inherit(spec.options(if consumer { 'c' } else { 'w' }));
        let (entry, forward, parent_end) = if consumer {
            // Simplex: the first end reads, the second writes.
            let (parent_end, child_end) = pipe(PipeKind::Simplex)?;
            let forward = child_end.handle()?;
            options = options.inherit_fd(forward.fd);
            (
                "stress-queue-consumer",
                Some((forward, child_end)),
                Some(parent_end),
            )
        } else {
            ("stress-queue-worker", None, None)
        };
        let child = process::start(
            entry,
            &QueueWorkerArgs {
                spec: spec.clone(),
                handle,
                forward: forward.as_ref().map(|(h, _)| *h),
                defect: self.defect,
            },
            options,
        )?;
        drop(forward);
        self.producers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(child.pid().as_raw(), spec.producer);
        if let Some(parent_end) = parent_end {
            let (events, producers, poisoned, id) = (
                events.clone(),
                self.producers.clone(),
                self.poisoned.clone(),
                spec.producer,
            );
            let reader = std::thread::Builder::new()
                .name(format!("stress-forward-{id}"))
                .spawn(move || read_forwarded(parent_end, id, producers, poisoned, events))
                .map_err(|e| StressError::at("reader thread", e))?;
            self.readers.retain(|r| !r.is_finished());
            self.readers.push(reader);
        }
        Ok(child)
    }

    fn close(&mut self) {
        self.closing.store(true, Ordering::SeqCst);
        if let Some(consumer) = self.consumer.take() {
            let _ = consumer.join();
        }
    }

    fn finish(&mut self, totals: &Totals) -> Settlement {
        let mut settlement = Settlement::default();
        for reader in self.readers.drain(..) {
            if reader.join().is_err() {
                settlement
                    .failures
                    .push("a forward reader thread panicked".into());
            }
        }
        let mut causes = vec![format!(
            "{} kills delivered to consumers, each of which may have taken one message with it",
            totals.consumer_kills
        )];
        settlement.excusable_losses = totals.consumer_kills;
        if let Some(probe) = self.lost_probe.take() {
            let lost = probe.lost();
            settlement.notes.push(format!(
                "the ring took back {lost} messages from consumers that died holding them, over {} consumer kills",
                totals.consumer_kills
            ));
            if lost > totals.consumer_kills {
                settlement.failures.push(format!(
                    "the ring says {lost} messages were taken by dead consumers, but only {} consumers were killed",
                    totals.consumer_kills
                ));
            }
        }
        let poisoned = self
            .poisoned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if poisoned.is_some() || totals.extra > 0 {
            let why = poisoned.unwrap_or_else(|| "a producer's put was refused as poisoned".into());
            if totals.kills == 0 {
                settlement.failures.push(format!(
                    "the queue was poisoned with no process killed: {why}"
                ));
            } else {
                settlement.notes.push(format!(
                    "queue poisoned after {} kills: {why}",
                    totals.kills
                ));
                settlement.excusable_losses += MAXSIZE as u64;
                causes.push(format!(
                    "the stream was poisoned by a killed process and holds at most {MAXSIZE} messages"
                ));
            }
        }
        settlement.excuse = causes.join("; ");
        if let Some(queue) = self.queue.take() {
            match Arc::try_unwrap(queue) {
                Ok(queue) => {
                    let mut queue = queue.into_inner().unwrap_or_else(|p| p.into_inner());
                    queue.close();
                }
                Err(_) => settlement
                    .failures
                    .push("the queue is still shared at the end of the run".into()),
            }
        }
        settlement
    }
}
