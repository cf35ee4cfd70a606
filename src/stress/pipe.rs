//! Stress target: Pipe. One pipe per worker (a pipe end shared by several writers tears
//! frames larger than PIPE_BUF by design — that is a scenario, not a stress target), the
//! parent reading every pipe on its own thread so a paused writer holding half a frame in
//! its pipe delays no other.

use super::board::Board;
use super::message;
use super::runner::{Event, Settlement, Target, Totals, WorkerSpec};
use super::StressError;
use crate::ipc::pipe::{pipe, Connection, ConnectionHandle, PipeError, PipeKind};
use crate::process::{self, Child};
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;
use std::sync::mpsc::SyncSender;
use std::thread::JoinHandle;
use std::time::Duration;

/// Bound on one send. The parent drains every pipe all the time, so only a stalled run
/// (which the runner reports on its own, sooner) can make a send wait this long.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on the rest of a frame once its first bytes arrived: a writer stopped mid-frame
/// by a fault resumes within a second, so this never cuts a frame that is still coming.
const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// A stress target over one [`Pipe`](crate::ipc::pipe) kind: producers write framed
/// messages to a shared end while faults hit them; the parent reads and keeps the books.
pub struct PipeTarget {
    kind: PipeKind,
    readers: Vec<JoinHandle<()>>,
}

impl PipeTarget {
    /// The target over pipes of `kind` (`pipe-duplex`, `pipe-simplex`).
    pub fn new(kind: PipeKind) -> PipeTarget {
        PipeTarget {
            kind,
            readers: Vec::new(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct PipeWorkerArgs {
    spec: WorkerSpec,
    end: ConnectionHandle,
}

/// Sends messages 0, 1, 2, ... until the stop request; returns how many were committed.
fn pipe_worker(args: PipeWorkerArgs) -> Result<u64, StressError> {
    let board = Board::open(&args.spec.board)?;
    let end = Connection::adopt(args.end)?;
    let cell = board.cell(args.spec.slot);
    let mut seq = 0u64;
    while !board.stop_requested() {
        let msg = message::encode(args.spec.producer, seq, args.spec.max_body);
        cell.attempted.store(seq + 1, Ordering::SeqCst);
        end.send_bytes_timeout(&msg, SEND_TIMEOUT)
            .map_err(|e| StressError::at(format!("send of seq {seq}"), e))?;
        cell.committed.store(seq + 1, Ordering::SeqCst);
        seq += 1;
    }
    Ok(seq)
}
crate::register_entry!("stress-pipe-worker", pipe_worker);

fn read_until_end(end: Connection, producer: u32, events: SyncSender<Event>) {
    loop {
        match end.poll(Duration::from_secs(1)) {
            Ok(true) => {}
            Ok(false) => continue, // the writer is alive (or paused); it always ends
            Err(e) => {
                let _ = events.send(Event::Failed(format!("producer {producer}: poll: {e}")));
                return;
            }
        }
        let event = match end.recv_bytes_timeout(FRAME_TIMEOUT) {
            Ok(payload) => Event::Delivered(payload),
            Err(PipeError::Eof) => return,
            Err(PipeError::Timeout(_)) => continue,
            Err(PipeError::Corrupt(e)) => {
                // The stream has lost its framing; nothing after this can be trusted.
                let _ = events.send(Event::Torn {
                    producer,
                    reason: e.to_string(),
                });
                return;
            }
            Err(e) => Event::Failed(format!("producer {producer}: recv: {e}")),
        };
        let failed = matches!(event, Event::Failed(_));
        if events.send(event).is_err() || failed {
            return;
        }
    }
}

impl Target for PipeTarget {
    fn name(&self) -> String {
        format!("pipe-{}", self.kind.name())
    }
    fn family(&self) -> &'static str {
        "pipe"
    }
    fn mean_fault_gap(&self) -> u64 {
        4_000
    }

    fn start_worker(
        &mut self,
        spec: &WorkerSpec,
        events: &SyncSender<Event>,
    ) -> Result<Child, StressError> {
        // Simplex: the first end reads, the second writes. Duplex: either way.
        let (parent_end, child_end) = pipe(self.kind)?;
        let handle = child_end.handle()?;
        let child = process::start(
            "stress-pipe-worker",
            &PipeWorkerArgs {
                spec: spec.clone(),
                end: handle,
            },
            spec.options('w').inherit_fd(handle.fd),
        )?;
        drop(child_end);
        let events = events.clone();
        let producer = spec.producer;
        let reader = std::thread::Builder::new()
            .name(format!("stress-reader-{producer}"))
            .spawn(move || read_until_end(parent_end, producer, events))
            .map_err(|e| StressError::at("reader thread", e))?;
        self.readers.retain(|r| !r.is_finished());
        self.readers.push(reader);
        Ok(child)
    }

    fn finish(&mut self, _: &Totals) -> Settlement {
        let mut settlement = Settlement::default();
        for reader in self.readers.drain(..) {
            if reader.join().is_err() {
                settlement
                    .failures
                    .push("a pipe reader thread panicked".to_string());
            }
        }
        settlement
    }
}
