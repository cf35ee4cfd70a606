//! The supervisor thread: the only owner of the workers. It polls the workers' pipes and
//! the waker, hands out jobs, collects results, replaces dead workers and sizes an elastic
//! pool. Callers only touch the shared queue and the result slots.

use super::worker::{FromWorker, ToWorker, WorkerArgs, WORKER_ENTRY};
use super::{DeathHandling, Job, JobResult, PoolError, PoolOptions, Shared};
use crate::ipc::pipe::{pipe, Connection, PipeError, PipeKind};
use crate::process::{self, Child, Options};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest wait in poll(2) when nothing else sets a deadline: the loop re-checks its
/// state at least this often even if a wake-up were lost.
const TICK: Duration = Duration::from_millis(100);
/// Bound on one message exchange with a worker (a ready reply, a job sent to an idle
/// worker). A worker that takes longer is treated as dead.
const EXCHANGE_BOUND: Duration = Duration::from_secs(10);
/// Bound on waiting for a stopped or killed worker to exit.
const EXIT_BOUND: Duration = Duration::from_secs(5);
/// After a worker start fails, the next attempt waits this long, doubling with each
/// further failure up to [`START_RETRY_MAX`]: a cause that persists (a resource limit)
/// is not hammered, one that passes is retried soon.
const START_RETRY_FIRST: Duration = Duration::from_millis(50);
const START_RETRY_MAX: Duration = Duration::from_secs(2);

struct Worker {
    child: Child,
    conn: Connection,
    job: Option<Job>,
    idle_since: Instant,
}

struct Supervisor {
    shared: Arc<Shared>,
    options: PoolOptions,
    workers: Vec<Worker>,
    started: u64,
    /// Worker starts that failed in a row, and when the next one may be tried.
    start_failures: u32,
    start_retry_at: Option<Instant>,
}

pub(super) fn run(shared: Arc<Shared>, options: PoolOptions) {
    let mut sup = Supervisor {
        shared,
        options,
        workers: Vec::new(),
        started: 0,
        start_failures: 0,
        start_retry_at: None,
    };
    let start = (0..sup.options.min_workers).try_for_each(|_| sup.start_worker());
    {
        let mut state = sup.shared.lock();
        match start {
            Ok(()) => state.started = true,
            Err(e) => {
                state.start_error = Some(e);
                state.terminate = true;
            }
        }
    }
    sup.publish();
    sup.shared.changed.notify_all();
    sup.serve();
    sup.shared.lock().finished = true;
    sup.publish();
    sup.shared.changed.notify_all();
}

impl Supervisor {
    fn serve(&mut self) {
        loop {
            let (terminate, closed) = {
                let s = self.shared.lock();
                (s.terminate, s.closed)
            };
            if terminate {
                self.terminate_all();
                return;
            }
            self.keep_minimum();
            self.dispatch();
            self.shrink_idle();
            self.publish();
            if closed && self.drained() {
                self.stop_all();
                return;
            }
            for index in self.poll_ready().into_iter().rev() {
                self.collect(index);
            }
        }
    }

    fn start_worker(&mut self) -> Result<(), PoolError> {
        let (parent_end, worker_end) = pipe(PipeKind::Duplex)
            .map_err(|e| PoolError::Start(format!("pipe for a worker: {e}")))?;
        let handle = worker_end
            .handle()
            .map_err(|e| PoolError::Start(e.to_string()))?;
        self.started += 1;
        if self.options.injected_start_failures.contains(&self.started) {
            return Err(PoolError::Start(format!(
                "worker start {} failed (injected by the test hook)",
                self.started
            )));
        }
        // Daemon: a worker dies with this thread (PR_SET_PDEATHSIG), which outlives
        // every worker it starts, and leads its own group for `kill_group`.
        let mut options = Options::new(format!("{}-worker-{}", self.options.name, self.started))
            .method(self.options.method)
            .daemon(true)
            .inherit_fd(handle.fd);
        for &fd in &self.options.inherit_fds {
            options = options.inherit_fd(fd);
        }
        let child = process::start(WORKER_ENTRY, &WorkerArgs { conn: handle }, options)
            .map_err(|e| PoolError::Start(e.to_string()))?;
        drop(worker_end);
        let mut conn = parent_end;
        conn.set_timeout(EXCHANGE_BOUND);
        self.workers.push(Worker {
            child,
            conn,
            job: None,
            idle_since: Instant::now(),
        });
        Ok(())
    }

    /// Replaces dead workers: never fewer than the minimum while the pool runs (once a
    /// failed start's back-off has passed).
    fn keep_minimum(&mut self) {
        while self.workers.len() < self.options.min_workers {
            match self.start_with_backoff() {
                None => return,
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    self.start_failed(e);
                    return;
                }
            }
        }
    }

    /// Whether a worker may be started now (no failed start's back-off pending).
    fn may_start(&self) -> bool {
        self.start_retry_at.is_none_or(|at| Instant::now() >= at)
    }

    /// Starts a worker unless a failed start's back-off is pending (None); a failure
    /// sets the next back-off.
    fn start_with_backoff(&mut self) -> Option<Result<(), PoolError>> {
        if !self.may_start() {
            return None;
        }
        let started = self.start_worker();
        match &started {
            Ok(()) => {
                self.start_failures = 0;
                self.start_retry_at = None;
            }
            Err(_) => {
                let doublings = self.start_failures.min(8);
                self.start_failures += 1;
                let pause = (START_RETRY_FIRST * (1 << doublings)).min(START_RETRY_MAX);
                self.start_retry_at = Some(Instant::now() + pause);
            }
        }
        Some(started)
    }

    /// A worker could not start. The queued jobs stay queued for the live workers, and
    /// the start is tried again after a back-off; only when no worker is left to run
    /// them do they fail, each with the reason.
    fn start_failed(&self, error: PoolError) {
        if !self.workers.is_empty() {
            return;
        }
        let why = match error {
            PoolError::Start(why) => why,
            other => other.to_string(),
        };
        self.fail_queued(PoolError::Start(format!(
            "no worker is running and none could be started: {why}"
        )));
    }

    /// Hands queued jobs to idle workers, growing an elastic pool while jobs wait.
    fn dispatch(&mut self) {
        loop {
            let idle = self.workers.iter().position(|w| w.job.is_none());
            if idle.is_none()
                && (self.workers.len() >= self.options.max_workers || !self.may_start())
            {
                return;
            }
            let Some(job) = self.shared.lock().queue.pop_front() else {
                return;
            };
            let index = match idle {
                Some(index) => index,
                None => match self.start_with_backoff() {
                    Some(Ok(())) => self.workers.len() - 1,
                    failed => {
                        // Back in front: it waits for a worker like the jobs behind it.
                        self.shared.lock().queue.push_front(job);
                        if let Some(Err(e)) = failed {
                            self.start_failed(e);
                        }
                        return;
                    }
                },
            };
            let worker = &mut self.workers[index];
            let request = ToWorker::Run {
                job: job.id,
                entry: job.entry.clone(),
                args: job.args.clone(),
            };
            job.slot.set_worker(Some(worker.child.pid().as_raw()));
            worker.job = Some(job);
            if let Err(e) = worker.conn.send(&request) {
                let gone = matches!(e, PipeError::PeerGone);
                self.worker_lost(index, gone, &format!("could not be sent a job ({e})"));
            }
        }
    }

    /// An elastic pool stops workers idle longer than the idle timeout, down to the
    /// minimum.
    fn shrink_idle(&mut self) {
        let now = Instant::now();
        while self.workers.len() > self.options.min_workers {
            let Some(index) = self.workers.iter().position(|w| {
                w.job.is_none() && now.duration_since(w.idle_since) >= self.options.idle_timeout
            }) else {
                return;
            };
            let worker = self.workers.swap_remove(index);
            stop_worker(worker);
        }
    }

    fn drained(&self) -> bool {
        self.shared.lock().queue.is_empty() && self.workers.iter().all(|w| w.job.is_none())
    }

    /// Waits for a reply, a death, a wake-up or the next idle deadline; returns the
    /// indices of the workers whose pipes are readable, in increasing order.
    fn poll_ready(&mut self) -> Vec<usize> {
        let mut timeout = TICK;
        if let Some(at) = self.start_retry_at {
            timeout = timeout.min(at.saturating_duration_since(Instant::now()));
        }
        if self.workers.len() > self.options.min_workers {
            let now = Instant::now();
            for w in self.workers.iter().filter(|w| w.job.is_none()) {
                let expiry =
                    (w.idle_since + self.options.idle_timeout).saturating_duration_since(now);
                timeout = timeout.min(expiry);
            }
        }
        let mut fds = vec![libc::pollfd {
            fd: self.shared.wake.raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        for w in &self.workers {
            fds.push(libc::pollfd {
                fd: w.conn.raw_fd().unwrap_or(-1),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let timeout_ms = timeout.as_micros().div_ceil(1000) as libc::c_int;
        // SAFETY: `fds` is a valid array of pollfd for the duration of the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if n <= 0 {
            return Vec::new(); // timeout or EINTR: the loop re-checks everything
        }
        if fds[0].revents != 0 {
            self.shared.wake.drain();
        }
        fds[1..]
            .iter()
            .enumerate()
            .filter(|(_, f)| f.revents != 0)
            .map(|(i, _)| i)
            .collect()
    }

    /// Reads the reply of a readable worker; end of stream or a broken frame means it
    /// died.
    fn collect(&mut self, index: usize) {
        let reply = self.workers[index].conn.recv::<FromWorker>();
        match reply {
            Ok(reply) => {
                let worker = &mut self.workers[index];
                match worker.job.take() {
                    Some(job) if job.id == reply.job => {
                        worker.idle_since = Instant::now();
                        self.complete(job, Ok(reply.outcomes));
                    }
                    job => {
                        worker.job = job;
                        let why = format!("sent a reply for job {} it was not running", reply.job);
                        self.worker_lost(index, false, &why);
                    }
                }
            }
            Err(e) if e.is_eof() => self.worker_lost(index, true, "closed its pipe"),
            Err(e) => self.worker_lost(index, false, &format!("broke its pipe ({e})")),
        }
    }

    /// Removes a worker that died (or misbehaved), reaps it, and settles its job.
    fn worker_lost(&mut self, index: usize, exited: bool, what: &str) {
        let mut worker = self.workers.swap_remove(index);
        self.publish();
        let pid = worker.child.pid().as_raw();
        // End of stream means the process is exiting; anything else is a worker that
        // misbehaved while alive: kill it rather than wait.
        let mut code = if exited {
            worker.child.join(Some(EXIT_BOUND)).ok().flatten()
        } else {
            None
        };
        if code.is_none() {
            worker.child.kill_group();
            code = worker.child.join(Some(EXIT_BOUND)).ok().flatten();
        }
        let how = match code {
            Some(c) if c < 0 => {
                format!("was killed by signal {} ({})", -c, process::signal_name(-c))
            }
            Some(c) => format!("exited with code {c}"),
            None => format!("{what} and could not be reaped"),
        };
        self.shared.lock().deaths += 1;
        let Some(mut job) = worker.job.take() else {
            return;
        };
        job.slot.set_worker(None);
        match self.options.death_handling {
            DeathHandling::IgnoreLikePython => drop(job), // its handle never becomes ready
            DeathHandling::Supervised if job.retries_left > 0 => {
                job.retries_left -= 1;
                self.shared.lock().queue.push_front(job);
            }
            DeathHandling::Supervised => {
                let entry = job.entry.clone();
                self.complete(job, Err(PoolError::WorkerDied { entry, pid, how }));
            }
        }
    }

    /// Runs the job's callback (here, in the parent), then makes its result ready.
    fn complete(&self, mut job: Job, result: JobResult) {
        if let Some(callback) = job.callback.take() {
            // A panicking callback must not take the pool down; the panic hook has
            // already printed it.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| callback(&result)));
        }
        job.slot.set(result);
    }

    fn fail_queued(&self, error: PoolError) {
        let queued: Vec<Job> = self.shared.lock().queue.drain(..).collect();
        for job in queued {
            self.complete(job, Err(error.clone()));
        }
    }

    fn stop_all(&mut self) {
        for worker in std::mem::take(&mut self.workers) {
            stop_worker(worker);
        }
    }

    fn terminate_all(&mut self) {
        for w in &self.workers {
            w.child.kill_group();
        }
        for mut worker in std::mem::take(&mut self.workers) {
            let _ = worker.child.join(Some(EXIT_BOUND));
            if let Some(job) = worker.job.take() {
                let entry = job.entry.clone();
                self.complete(job, Err(PoolError::Terminated { entry }));
            }
        }
        let queued: Vec<Job> = self.shared.lock().queue.drain(..).collect();
        for job in queued {
            let entry = job.entry.clone();
            self.complete(job, Err(PoolError::Terminated { entry }));
        }
    }

    /// Makes the workers' pids and counts visible to callers.
    fn publish(&self) {
        let mut state = self.shared.lock();
        state.workers = self
            .workers
            .iter()
            .map(|w| w.child.pid().as_raw())
            .collect();
        state.busy = self.workers.iter().filter(|w| w.job.is_some()).count();
        state.peak = state.peak.max(self.workers.len());
    }
}

/// Asks a worker to leave, waits for it (bounded), kills it if it does not.
fn stop_worker(mut worker: Worker) {
    let _ = worker.conn.send(&ToWorker::Stop);
    if !matches!(worker.child.join(Some(EXIT_BOUND)), Ok(Some(_))) {
        worker.child.kill_group();
        let _ = worker.child.join(Some(EXIT_BOUND));
    }
}
