//! Raw hand-off of a task to a worker process: what a Pool task costs at the OS level
//! with no Pool code (no framing, no serde, no supervisor thread), the baseline the pool
//! workloads are divided by.
//!
//! A Pool worker talks to the parent over a duplex `Pipe`, a Unix stream socketpair, so
//! these do too (hence `unix-socket-` in the names, as the other calibrations name their
//! transport). The worker runs the pool workloads' own short task, so the ratio leaves
//! the Pool's overhead and nothing else:
//!
//! * `unix-socket-task-handoff`: one worker started beforehand; per task the parent
//!   writes an 8-byte seed, the worker runs the task and writes the 8-byte result back;
//!   each task timed (one `apply_async` + `get` at a time).
//! * `unix-socket-task-handoff-2-workers`: a stream of tasks to 2 workers, one in flight
//!   per worker as the Pool's supervisor keeps them; the parent polls both and hands the
//!   next task to whichever answered; time per task of the whole stream (`map`,
//!   pipelined `apply_async`).

use super::{read_full, serve, socket_channels, start_armed, write_full, Deadman, RUN_LIMIT};
use crate::measure::workloads::pool::short_task;
use crate::measure::workloads::RoundTrips;
use crate::measure::MeasureError;
use crate::process::Child;
use crate::register_entry;
use serde::{Deserialize, Serialize};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// Name of the task handoff over a Unix socket to one worker: what Pool's apply is divided by.
pub const TASK_HANDOFF: &str = "unix-socket-task-handoff";
/// The same with two workers: what a Pool map over two workers is divided by.
pub const TASK_HANDOFF_2_WORKERS: &str = "unix-socket-task-handoff-2-workers";
/// Workers of [`TASK_HANDOFF_2_WORKERS`]: those of the pool workloads.
pub const STREAM_WORKERS: usize = 2;

#[derive(Serialize, Deserialize)]
struct WorkerArgs {
    fd: RawFd,
}

/// Worker side: read an 8-byte seed, run the short task, write the 8-byte result, until
/// end of file. Returns how many tasks it ran.
fn task_worker(args: WorkerArgs) -> Result<u64, MeasureError> {
    serve(args.fd, args.fd, 8, "task worker", |message| {
        let seed = u64::from_ne_bytes(
            message
                .try_into()
                .map_err(|_| MeasureError::Failed("task size".into()))?,
        );
        message.copy_from_slice(&short_task(seed)?.to_ne_bytes());
        Ok(())
    })
}
register_entry!("calibration-task-worker", task_worker);

/// A started worker and the parent's end of its socketpair.
struct Worker {
    fd: OwnedFd,
    child: Child,
    deadman: Deadman,
    /// Tasks handed to it.
    handed: u64,
}

impl Worker {
    fn start() -> Worker {
        let channels = socket_channels().expect("socketpair");
        let (fd, _) = channels.child_fds();
        let args = WorkerArgs { fd };
        let (child, parent, deadman) =
            start_armed("calibration-task-worker", &args, channels, None);
        Worker {
            fd: parent.0,
            child,
            deadman,
            handed: 0,
        }
    }

    fn hand(&mut self, seed: u64) {
        write_full(self.fd.as_raw_fd(), &seed.to_ne_bytes()).expect("hand a task to the worker");
        self.handed += 1;
    }

    fn result(&self) -> u64 {
        let mut result = [0u8; 8];
        assert!(
            read_full(self.fd.as_raw_fd(), &mut result).expect("read a task's result"),
            "task worker ended early (killed after {RUN_LIMIT:?}, or crashed)"
        );
        u64::from_ne_bytes(result)
    }

    /// Ends the worker (end of file) and checks it ran every task handed to it.
    fn finish(self) {
        let Worker {
            fd,
            mut child,
            deadman,
            handed,
        } = self;
        drop(fd);
        drop(deadman); // before the reap: the guard must not outlive the pid
        let done: u64 = child
            .result(Some(Duration::from_secs(30)))
            .expect("task worker result");
        assert_eq!(done, handed, "task worker ran a different number of tasks");
    }
}

/// XOR of the short task's results over `seeds`: what the workers must have answered.
fn expected(seeds: std::ops::Range<u64>) -> u64 {
    seeds.fold(0, |all, seed| all ^ short_task(seed).expect("short task"))
}

/// `iters` tasks handed to one worker one at a time, each timed from the parent's write
/// of the seed to its read of the result, after a warm-up of a tenth as many (at least 10).
pub fn task_handoff(iters: usize) -> RoundTrips {
    let mut worker = Worker::start();
    let warm_up = (iters / 10).max(10) as u64;
    for seed in 0..warm_up {
        worker.hand(seed);
        worker.result();
    }
    let mut samples_ns = Vec::with_capacity(iters);
    let mut answers = 0u64;
    for seed in 0..iters as u64 {
        let started = Instant::now();
        worker.hand(seed);
        answers ^= worker.result();
        samples_ns.push(started.elapsed().as_nanos() as u64);
    }
    worker.finish();
    assert_eq!(answers, expected(0..iters as u64), "wrong task results");
    RoundTrips { samples_ns }
}

/// `tasks` tasks through `workers` workers started beforehand, one task in flight per
/// worker: the time from the first hand-off to the last result.
pub fn task_stream(workers: usize, tasks: usize) -> Duration {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut pool: Vec<Worker> = (0..workers.max(1)).map(|_| Worker::start()).collect();
    for worker in &mut pool {
        worker.hand(0); // warm-up: each worker runs once before the clock starts
        worker.result();
    }
    let deadline = Instant::now() + RUN_LIMIT;
    let tasks = tasks as u64;
    let started = Instant::now();
    let mut next = 0u64;
    let mut answers = 0u64;
    for worker in pool.iter_mut().take(tasks as usize) {
        worker.hand(next);
        next += 1;
    }
    let mut in_flight = next;
    while in_flight > 0 {
        let mut ready: Vec<PollFd> = pool
            .iter()
            .map(|w| PollFd::new(w.fd.as_fd(), PollFlags::POLLIN))
            .collect();
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = PollTimeout::try_from(left.as_millis().min(i32::MAX as u128) as i32)
            .unwrap_or(PollTimeout::MAX);
        match poll(&mut ready, timeout) {
            Ok(0) => panic!("no task result within {RUN_LIMIT:?}"),
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => panic!("poll the task workers: {e}"),
        }
        let answered: Vec<usize> = ready
            .iter()
            .enumerate()
            .filter(|(_, fd)| fd.revents().is_some_and(|r| !r.is_empty()))
            .map(|(i, _)| i)
            .collect();
        for i in answered {
            answers ^= pool[i].result();
            in_flight -= 1;
            if next < tasks {
                pool[i].hand(next);
                next += 1;
                in_flight += 1;
            }
        }
    }
    let elapsed = started.elapsed();
    for worker in pool {
        worker.finish();
    }
    assert_eq!(answers, expected(0..tasks), "wrong task results");
    elapsed
}
