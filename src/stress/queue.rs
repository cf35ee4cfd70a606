//! Stress target: every Queue flavor, through the `Queue` trait. Worker processes put
//! stamped messages; one consumer thread in the parent gets them. A producer killed in
//! the middle of a put loses at most that message (accounted in flight); a flavor that
//! detects the loss on the get side (`PeerDied`) reports it, and it is counted as a torn
//! message refused — provided that producer was killed.

use super::board::Board;
use super::message;
use super::runner::{Event, Settlement, Target, Totals, WorkerSpec};
use crate::ipc::queue::{self, Flavor, Queue, QueueError, QueueHandle, Role};
use crate::process::{self, Child, Options, StartMethod};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Bound on one put or get: beyond any pause a fault causes.
const BLOCK_LIMIT: Duration = Duration::from_secs(30);
/// How long the consumer holds the queue per get, so handles for new workers wait little.
const GET_SLICE: Duration = Duration::from_millis(10);

type SharedQueue = Arc<Mutex<Box<dyn Queue>>>;

pub struct QueueTarget {
    flavor: Flavor,
    queue: Option<SharedQueue>,
    /// Worker pid -> producer id, to name the producer of a `PeerDied`.
    producers: Arc<Mutex<HashMap<i32, u32>>>,
    closing: Arc<AtomicBool>,
    consumer: Option<JoinHandle<()>>,
}

impl QueueTarget {
    pub fn new(flavor: Flavor) -> QueueTarget {
        QueueTarget {
            flavor,
            queue: None,
            producers: Arc::default(),
            closing: Arc::default(),
            consumer: None,
        }
    }

    fn queue(&mut self, events: &SyncSender<Event>) -> Result<SharedQueue, String> {
        if let Some(queue) = &self.queue {
            return Ok(queue.clone());
        }
        let config = queue::Config::default()
            .maxsize(256)
            .max_message(64 << 10)
            .block_limit(BLOCK_LIMIT);
        let queue: SharedQueue = Arc::new(Mutex::new(
            self.flavor.create(&config).map_err(|e| e.to_string())?,
        ));
        let (q, events, closing, producers) = (
            queue.clone(),
            events.clone(),
            self.closing.clone(),
            self.producers.clone(),
        );
        self.consumer = Some(
            std::thread::Builder::new()
                .name("stress-queue-consumer".into())
                .spawn(move || consume(q, events, closing, producers))
                .map_err(|e| e.to_string())?,
        );
        self.queue = Some(queue.clone());
        Ok(queue)
    }
}

fn lock(queue: &SharedQueue) -> std::sync::MutexGuard<'_, Box<dyn Queue>> {
    queue.lock().unwrap_or_else(|p| p.into_inner())
}

/// Gets until closing and then until empty.
fn consume(
    queue: SharedQueue,
    events: SyncSender<Event>,
    closing: Arc<AtomicBool>,
    producers: Arc<Mutex<HashMap<i32, u32>>>,
) {
    loop {
        let got = lock(&queue).get(Some(GET_SLICE));
        let event = match got {
            Ok(payload) => Event::Delivered(payload),
            Err(QueueError::Empty) => {
                if closing.load(Ordering::SeqCst) {
                    return;
                }
                continue;
            }
            Err(QueueError::PeerDied { pid, op }) => {
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
            Err(e) => Event::Failed(format!("get: {e}")),
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
}

/// Puts messages 0, 1, 2, ... until the stop request; returns how many were committed.
fn queue_worker(args: QueueWorkerArgs) -> Result<u64, String> {
    let board = Board::open(&args.spec.board).map_err(|e| e.to_string())?;
    let queue = queue::open(args.handle).map_err(|e| e.to_string())?;
    let cell = board.cell(args.spec.slot);
    let mut seq = 0u64;
    while !board.stop_requested() {
        let msg = message::encode(args.spec.producer, seq, args.spec.max_body);
        cell.attempted.store(seq + 1, Ordering::SeqCst);
        queue
            .put(&msg, Some(BLOCK_LIMIT))
            .map_err(|e| format!("put of seq {seq}: {e}"))?;
        cell.committed.store(seq + 1, Ordering::SeqCst);
        seq += 1;
    }
    Ok(seq)
}
crate::register_entry!("stress-queue-worker", queue_worker);

impl Target for QueueTarget {
    fn name(&self) -> String {
        format!("queue-{}", self.flavor.name())
    }
    fn family(&self) -> &'static str {
        "queue"
    }
    fn mean_fault_gap(&self) -> u64 {
        // Roughly in proportion to each flavor's pace under load here.
        match self.flavor {
            Flavor::Pipe => 2_000,
            Flavor::Shm => 8_000,
            Flavor::Channel => 4_000,
        }
    }

    fn start_worker(
        &mut self,
        spec: &WorkerSpec,
        events: &SyncSender<Event>,
    ) -> Result<Child, String> {
        let queue = self.queue(events)?;
        let handle = lock(&queue)
            .handle(Role::Producer)
            .map_err(|e| e.to_string())?;
        let options = handle.inherit(
            Options::new(format!("{}-w{}-p{}", spec.target, spec.slot, spec.producer))
                .method(StartMethod::Fork)
                .daemon(true),
        );
        let child = process::start(
            "stress-queue-worker",
            &QueueWorkerArgs {
                spec: spec.clone(),
                handle,
            },
            options,
        )
        .map_err(|e| e.to_string())?;
        self.producers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(child.pid().as_raw(), spec.producer);
        Ok(child)
    }

    fn close(&mut self) {
        self.closing.store(true, Ordering::SeqCst);
        if let Some(consumer) = self.consumer.take() {
            let _ = consumer.join();
        }
    }

    fn finish(&mut self, _: &Totals) -> Settlement {
        let mut settlement = Settlement::default();
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
