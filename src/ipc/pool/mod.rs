//! Pool: worker processes that run registered tasks, as Python's `multiprocessing.Pool`,
//! fixed or elastic, and never hanging when a worker dies.
//!
//! Tasks are entry points registered with [`register_entry!`](crate::register_entry): a
//! `fn(Args) -> Result<R, E>` with serde `Args` and `R`. Each worker is a real process
//! started with [`process::start`](crate::process::start) (spawn or fork) that talks to the
//! parent over one framed duplex [`pipe`](crate::ipc::pipe). A worker runs one job at a
//! time (a job is one `apply` or one `map` chunk), so a death loses exactly one job.
//!
//! One supervisor thread in the parent owns the workers: it hands queued jobs to idle
//! workers, collects results, runs callbacks (in the parent, once per job, before the
//! handle becomes ready — as Python does), notices a worker's death through end of stream
//! on its pipe, replaces it and — unlike Python, whose `Pool` waits forever for the lost
//! task — fails that job with [`PoolError::WorkerDied`] or retries it once when asked.
//! It also grows an elastic pool while jobs wait and shrinks it after an idle timeout.
//! A worker that cannot be started (a replacement, or growth) is tried again after a
//! back-off while the live workers go on with the queue; waiting jobs fail, each with
//! [`PoolError::Start`], only when no worker is left to run them.
//!
//! Every wait of a caller is bounded: `get(timeout)`, and `map`/`imap`/`apply`/`join` by
//! [`PoolOptions::timeout`].

mod supervisor;
mod worker;

use crate::process::entry::{self, Outcome};
use crate::process::{Pid, StartMethod};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::VecDeque;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The bound on `map`, `imap`, `apply` and `join` unless the options give another.
pub(crate) const DEFAULT_TIMEOUT: Duration = crate::ipc::pipe::DEFAULT_TIMEOUT;

/// Most workers a pool may have: beyond this a typo, not a plan.
pub(crate) const MAX_WORKERS: usize = 1024;

/// What happens to the job of a worker that dies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DeathHandling {
    /// The worker is replaced and its job fails with [`PoolError::WorkerDied`] (or runs
    /// again once, with [`PoolOptions::retry_on_death`]).
    Supervised,
    /// **Deliberately broken, as Python's `Pool`:** the worker is replaced but its job is
    /// forgotten, so its handle never becomes ready. Exists for the naive variant of the
    /// `pool-worker-death` scenario, which must be caught hanging; callers still wait
    /// with a bound (`get(timeout)` returns [`PoolError::Timeout`]), never forever.
    IgnoreLikePython,
}

/// How a pool is sized and behaves.
#[derive(Clone, Debug)]
pub struct PoolOptions {
    /// Prefix of the workers' process names.
    pub(crate) name: String,
    /// Workers kept at all times (started with the pool, replaced when they die).
    pub(crate) min_workers: usize,
    /// Workers at most; above `min_workers` the pool is elastic.
    pub(crate) max_workers: usize,
    /// An elastic pool stops a worker idle this long while it has more than the minimum.
    pub(crate) idle_timeout: Duration,
    pub(crate) method: StartMethod,
    /// Run the job of a worker that died once more before reporting the death.
    pub(crate) retry_on_death: bool,
    pub(crate) death_handling: DeathHandling,
    /// The bound on `map`, `imap`, `apply`, `join` and on starting the pool.
    pub(crate) timeout: Duration,
    /// File descriptors every worker inherits (a listening socket, for example); they
    /// must stay open in the parent while the pool lives.
    pub(crate) inherit_fds: Vec<RawFd>,
    /// Test hook: the worker starts (numbered from 1, in the order the pool makes them)
    /// that fail with an injected error instead of starting a process.
    injected_start_failures: std::collections::BTreeSet<u64>,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl PoolOptions {
    /// A fixed pool with one worker per CPU, as Python's `Pool()`.
    pub fn new() -> Self {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        PoolOptions {
            name: "pool".into(),
            min_workers: cpus,
            max_workers: cpus,
            idle_timeout: Duration::from_secs(5),
            method: StartMethod::Spawn,
            retry_on_death: false,
            death_handling: DeathHandling::Supervised,
            timeout: DEFAULT_TIMEOUT,
            inherit_fds: Vec::new(),
            injected_start_failures: Default::default(),
        }
    }
    /// A fixed pool of `workers`.
    pub fn size(mut self, workers: usize) -> Self {
        self.min_workers = workers;
        self.max_workers = workers;
        self
    }
    /// An elastic pool: `min` workers always, up to `max` while jobs wait.
    pub fn elastic(mut self, min: usize, max: usize) -> Self {
        self.min_workers = min;
        self.max_workers = max;
        self
    }
    /// How long an elastic pool's extra worker may sit idle before it is retired (default
    /// 5 s).
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = idle;
        self
    }
    /// How workers are started (default spawn).
    pub fn method(mut self, method: StartMethod) -> Self {
        self.method = method;
        self
    }
    /// Runs a job whose worker died once more on a fresh worker, instead of failing it.
    pub fn retry_on_death(mut self, retry: bool) -> Self {
        self.retry_on_death = retry;
        self
    }
    /// What happens to the job of a worker that dies (default supervised).
    pub fn death_handling(mut self, handling: DeathHandling) -> Self {
        self.death_handling = handling;
        self
    }
    /// Bound on the waits that take no timeout of their own (`apply`, `map`, `join`).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
    pub(crate) fn inherit_fd(mut self, fd: RawFd) -> Self {
        self.inherit_fds.push(fd);
        self
    }
    pub(crate) fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
    /// Test hook: make these worker starts (numbered from 1 in the order the pool makes
    /// them) fail with an injected error, as a start that hits a resource limit would.
    #[doc(hidden)]
    pub fn fail_worker_starts(mut self, starts: impl IntoIterator<Item = u64>) -> Self {
        self.injected_start_failures.extend(starts);
        self
    }

    fn validate(&self) -> Result<(), PoolError> {
        let bad = |why: String| Err(PoolError::BadOptions(why));
        if self.max_workers == 0 {
            return bad("max_workers is 0: a pool needs at least one worker".into());
        }
        if self.min_workers > self.max_workers {
            return bad(format!(
                "min_workers {} exceeds max_workers {}",
                self.min_workers, self.max_workers
            ));
        }
        if self.max_workers > MAX_WORKERS {
            return bad(format!(
                "max_workers {} exceeds the limit of {MAX_WORKERS}",
                self.max_workers
            ));
        }
        if self.timeout.is_zero() {
            return bad("timeout is zero".into());
        }
        Ok(())
    }
}

/// Why a task, or the pool, failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// Options that cannot make a pool (no worker, min above max).
    #[error("invalid pool options: {0}")]
    BadOptions(String),
    /// A call the pool cannot run (a chunk size of 0, …).
    #[error("invalid call: {0}")]
    BadInput(String),
    /// A task name no entry point is registered under.
    #[error("unknown task: {0}")]
    UnknownTask(String),
    /// A worker process could not be started.
    #[error("cannot start a pool worker: {0}")]
    Start(String),
    /// The task returned an error.
    #[error("task {entry:?} (item {index}) failed: {message}")]
    Failed {
        /// The task's entry point.
        entry: String,
        /// The item it failed on (0 for `apply`).
        index: usize,
        /// The task's error text.
        message: String,
    },
    /// The task panicked (the worker survives it).
    #[error("task {entry:?} (item {index}) panicked: {message}")]
    Panicked {
        /// The task's entry point.
        entry: String,
        /// The item it panicked on (0 for `apply`).
        index: usize,
        /// The panic message.
        message: String,
    },
    /// The worker running the task died; it was replaced.
    #[error("worker died: pool worker {pid} {how} while running task {entry:?}")]
    WorkerDied {
        /// The task's entry point.
        entry: String,
        /// The dead worker's pid.
        pid: i32,
        /// How it died ("was killed by signal 9 (SIGKILL)", "exited with code 3").
        how: String,
    },
    /// No result within the bound (the task may still be running).
    #[error("no result from task {entry:?} within {timeout:?}")]
    Timeout {
        /// The task's entry point.
        entry: String,
        /// The bound that passed.
        timeout: Duration,
    },
    /// `terminate` ended the pool before the task finished.
    #[error("the pool was terminated before task {entry:?} finished")]
    Terminated {
        /// The task's entry point.
        entry: String,
    },
    /// A task submitted after `close` or `terminate`.
    #[error("the pool is closed: it takes no new tasks")]
    Closed,
    /// `join` before `close` or `terminate` (Python's ValueError).
    #[error("the pool is still running: close() or terminate() it before join()")]
    StillRunning,
    /// `join` gave up waiting for the workers to finish.
    #[error("the pool did not finish within {0:?}")]
    JoinTimeout(Duration),
    /// The task's arguments do not serialise.
    #[error("cannot encode the arguments of task {entry:?}: {reason}")]
    Encode {
        /// The task's entry point.
        entry: String,
        /// serde's complaint.
        reason: String,
    },
    /// A result that is not the JSON of the type asked for.
    #[error("cannot decode the result of task {entry:?} (item {index}): {reason}")]
    Decode {
        /// The task's entry point.
        entry: String,
        /// The item whose result does not decode.
        index: usize,
        /// serde's complaint.
        reason: String,
    },
}

/// The outcome of one job: one `Outcome` per item, or why there are none.
type JobResult = Result<Vec<Outcome>, PoolError>;
type Callback = Box<dyn FnOnce(&JobResult) + Send>;

/// Where a job's result lands; shared by the job (in the supervisor) and its handle.
struct Slot {
    state: Mutex<SlotState>,
    ready: Condvar,
}

#[derive(Default)]
struct SlotState {
    result: Option<JobResult>,
    worker_pid: Option<i32>,
}

impl Slot {
    fn new() -> Arc<Slot> {
        Arc::new(Slot {
            state: Mutex::new(SlotState::default()),
            ready: Condvar::new(),
        })
    }
    fn lock(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn set(&self, result: JobResult) {
        self.lock().result = Some(result);
        self.ready.notify_all();
    }
    fn set_worker(&self, pid: Option<i32>) {
        self.lock().worker_pid = pid;
    }
    /// Waits for the result at most `timeout`; None when it has not come.
    fn wait(&self, timeout: Duration) -> Option<JobResult> {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            if let Some(result) = &state.result {
                return Some(result.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            state = self
                .ready
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// One unit of work for one worker: an `apply`, or a `map` chunk.
struct Job {
    id: u64,
    entry: String,
    args: Vec<serde_json::Value>,
    slot: Arc<Slot>,
    callback: Option<Callback>,
    retries_left: u32,
}

/// What the caller threads and the supervisor share.
struct Shared {
    state: Mutex<State>,
    /// Signalled when the pool has started its workers or finished.
    changed: Condvar,
    wake: Waker,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Job>,
    closed: bool,
    terminate: bool,
    started: bool,
    finished: bool,
    start_error: Option<PoolError>,
    /// Pids of the live workers.
    workers: Vec<i32>,
    busy: usize,
    peak: usize,
    deaths: u64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
    /// Waits until `done(state)` holds or the deadline passes.
    fn wait_for(&self, deadline: Instant, done: impl Fn(&State) -> bool) -> bool {
        let mut state = self.lock();
        loop {
            if done(&state) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// Wakes the supervisor out of its poll(2): an eventfd it polls beside the workers' pipes.
struct Waker(OwnedFd);

impl Waker {
    fn new() -> std::io::Result<Waker> {
        // SAFETY: eventfd takes an initial value and flags and returns a new fd or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this fd; nothing else owns it.
        Ok(Waker(unsafe { OwnedFd::from_raw_fd(fd) }))
    }
    fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64 to an eventfd we own. A full counter
        // (EAGAIN) already means "wake up".
        unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }
    fn drain(&self) {
        let mut value: u64 = 0;
        // SAFETY: reads 8 bytes into a valid u64 from an eventfd we own (non-blocking).
        unsafe { libc::read(self.0.as_raw_fd(), (&mut value as *mut u64).cast(), 8) };
    }
    fn raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Counters describing a pool's life so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Live workers now.
    pub workers: usize,
    /// Workers running a job now.
    pub busy: usize,
    /// Jobs waiting for a worker.
    pub queued: usize,
    /// Most workers alive at once.
    pub peak_workers: usize,
    /// Workers that died (not stopped by the pool).
    pub deaths: u64,
}

/// A pool of worker processes. Dropping it terminates it.
pub struct Pool {
    shared: Arc<Shared>,
    supervisor: Option<JoinHandle<()>>,
    timeout: Duration,
    retry_on_death: bool,
    next_job: AtomicU64,
}

impl Pool {
    /// Starts the pool and its `min_workers` workers; returns once they are running.
    pub fn new(options: PoolOptions) -> Result<Pool, PoolError> {
        options.validate()?;
        entry::lookup(worker::WORKER_ENTRY).map_err(PoolError::Start)?;
        let wake = Waker::new().map_err(|e| PoolError::Start(format!("eventfd: {e}")))?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            wake,
        });
        let timeout = options.timeout;
        let retry_on_death = options.retry_on_death;
        let supervisor = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(format!("{}-supervisor", options.name))
                .spawn(move || supervisor::run(shared, options))
                .map_err(|e| PoolError::Start(format!("supervisor thread: {e}")))?
        };
        let mut pool = Pool {
            shared,
            supervisor: Some(supervisor),
            timeout,
            retry_on_death,
            next_job: AtomicU64::new(0),
        };
        let started = pool
            .shared
            .wait_for(Instant::now() + timeout, |s| s.started || s.finished);
        let error = pool.shared.lock().start_error.clone();
        match (started, error) {
            (true, None) => Ok(pool),
            (_, Some(error)) => {
                let _ = pool.terminate();
                Err(error)
            }
            (false, None) => {
                let _ = pool.terminate();
                Err(PoolError::Start(format!(
                    "the workers did not start within {timeout:?}"
                )))
            }
        }
    }

    /// Live workers now (an elastic pool's current size).
    pub fn size(&self) -> usize {
        self.shared.lock().workers.len()
    }

    /// Pids of the live workers.
    pub fn worker_pids(&self) -> Vec<Pid> {
        self.shared
            .lock()
            .workers
            .iter()
            .map(|&p| Pid::from_raw(p))
            .collect()
    }

    /// The pool's workers and jobs now, and its peak and deaths so far.
    pub fn stats(&self) -> PoolStats {
        let s = self.shared.lock();
        PoolStats {
            workers: s.workers.len(),
            busy: s.busy,
            queued: s.queue.len(),
            peak_workers: s.peak,
            deaths: s.deaths,
        }
    }

    /// The bound this pool puts on `map`, `imap`, `apply` and `join`.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    fn submit(
        &self,
        entry: &str,
        args: Vec<serde_json::Value>,
        callback: Option<Callback>,
    ) -> Result<Arc<Slot>, PoolError> {
        let slot = Slot::new();
        let job = Job {
            id: self.next_job.fetch_add(1, Ordering::Relaxed),
            entry: entry.to_string(),
            args,
            slot: Arc::clone(&slot),
            callback,
            retries_left: u32::from(self.retry_on_death),
        };
        {
            let mut state = self.shared.lock();
            if state.closed || state.terminate || state.finished {
                return Err(PoolError::Closed);
            }
            state.queue.push_back(job);
        }
        self.shared.wake.wake();
        Ok(slot)
    }

    /// Runs `entry(args)` in a worker; returns at once with a handle.
    pub fn apply_async<A: Serialize, R: DeserializeOwned>(
        &self,
        entry: &str,
        args: &A,
    ) -> Result<AsyncResult<R>, PoolError> {
        self.apply_async_inner(entry, args, None)
    }

    /// As [`apply_async`](Self::apply_async), and runs `callback` in this (the parent)
    /// process, on the pool's supervisor thread, once, with the task's result, before the
    /// handle becomes ready. A callback must not block: it holds up the pool.
    pub fn apply_async_with<A, R, F>(
        &self,
        entry: &str,
        args: &A,
        callback: F,
    ) -> Result<AsyncResult<R>, PoolError>
    where
        A: Serialize,
        R: DeserializeOwned,
        F: FnOnce(Result<R, PoolError>) + Send + 'static,
    {
        let name = entry.to_string();
        let callback: Callback = Box::new(move |result: &JobResult| {
            callback(decode_single(&name, result.clone()));
        });
        self.apply_async_inner(entry, args, Some(callback))
    }

    fn apply_async_inner<A: Serialize, R: DeserializeOwned>(
        &self,
        entry: &str,
        args: &A,
        callback: Option<Callback>,
    ) -> Result<AsyncResult<R>, PoolError> {
        check_task(entry)?;
        let args = encode(entry, args)?;
        let slot = self.submit(entry, vec![args], callback)?;
        Ok(AsyncResult {
            slot,
            entry: entry.to_string(),
            _result: PhantomData,
        })
    }

    /// Runs `entry(args)` in a worker and waits for its result (at most the pool's
    /// timeout).
    pub fn apply<A: Serialize, R: DeserializeOwned>(
        &self,
        entry: &str,
        args: &A,
    ) -> Result<R, PoolError> {
        self.apply_async(entry, args)?.get(self.timeout)
    }

    /// `entry` over every item, results in input order; the first failing item's error
    /// otherwise. Items travel in chunks of `chunksize` (one job each).
    pub fn map<A, R, I>(&self, entry: &str, items: I, chunksize: usize) -> Result<Vec<R>, PoolError>
    where
        A: Serialize,
        R: DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        self.imap(entry, items, chunksize)?.collect()
    }

    /// Submits every chunk now and yields the results in input order as they arrive:
    /// the first result is available as soon as the first chunk is done.
    pub fn imap<A, R, I>(
        &self,
        entry: &str,
        items: I,
        chunksize: usize,
    ) -> Result<Imap<R>, PoolError>
    where
        A: Serialize,
        R: DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        if chunksize == 0 {
            return Err(PoolError::BadInput("chunksize must be at least 1".into()));
        }
        check_task(entry)?;
        let args: Vec<serde_json::Value> = items
            .into_iter()
            .map(|item| encode(entry, &item))
            .collect::<Result<_, _>>()?;
        let mut chunks = VecDeque::new();
        for (n, chunk) in args.chunks(chunksize).enumerate() {
            let slot = self.submit(entry, chunk.to_vec(), None)?;
            chunks.push_back(Chunk {
                slot,
                first_index: n * chunksize,
                len: chunk.len(),
            });
        }
        Ok(Imap {
            entry: entry.to_string(),
            chunks,
            current: VecDeque::new(),
            timeout: self.timeout,
            _result: PhantomData,
        })
    }

    /// Python's default chunk size for `map`: about four chunks per worker.
    pub fn default_chunksize(&self, items: usize) -> usize {
        let workers = self.size().max(1);
        items.div_ceil(workers * 4).max(1)
    }

    /// Takes no new tasks; the workers stop once the queued ones are done.
    pub fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.wake.wake();
    }

    /// Kills every worker now; unfinished tasks fail with [`PoolError::Terminated`].
    /// Returns once every worker is reaped (at most the pool's timeout).
    pub fn terminate(&mut self) -> Result<(), PoolError> {
        self.shared.lock().terminate = true;
        self.shared.wake.wake();
        self.join(Some(self.timeout))
    }

    /// Waits for the pool to finish after `close` or `terminate` (at most `timeout`, the
    /// pool's timeout if None).
    pub fn join(&mut self, timeout: Option<Duration>) -> Result<(), PoolError> {
        let timeout = timeout.unwrap_or(self.timeout);
        {
            let state = self.shared.lock();
            if !state.closed && !state.terminate && !state.finished {
                return Err(PoolError::StillRunning);
            }
        }
        if !self
            .shared
            .wait_for(Instant::now() + timeout, |s| s.finished)
        {
            return Err(PoolError::JoinTimeout(timeout));
        }
        if let Some(handle) = self.supervisor.take() {
            let _ = handle.join();
        }
        Ok(())
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if self.supervisor.is_some() {
            let _ = self.terminate();
        }
    }
}

fn check_task(entry: &str) -> Result<(), PoolError> {
    entry::lookup(entry)
        .map(|_| ())
        .map_err(PoolError::UnknownTask)
}

fn encode<A: Serialize>(entry: &str, args: &A) -> Result<serde_json::Value, PoolError> {
    serde_json::to_value(args).map_err(|e| PoolError::Encode {
        entry: entry.to_string(),
        reason: e.to_string(),
    })
}

fn decode_outcome<R: DeserializeOwned>(
    entry: &str,
    index: usize,
    outcome: Outcome,
) -> Result<R, PoolError> {
    match outcome {
        Outcome::Returned(value) => serde_json::from_value(value).map_err(|e| PoolError::Decode {
            entry: entry.to_string(),
            index,
            reason: e.to_string(),
        }),
        Outcome::Failed(message) => Err(PoolError::Failed {
            entry: entry.to_string(),
            index,
            message,
        }),
        Outcome::Panicked(message) => Err(PoolError::Panicked {
            entry: entry.to_string(),
            index,
            message,
        }),
    }
}

fn decode_single<R: DeserializeOwned>(entry: &str, result: JobResult) -> Result<R, PoolError> {
    let outcome = result?
        .into_iter()
        .next()
        .ok_or_else(|| PoolError::Decode {
            entry: entry.to_string(),
            index: 0,
            reason: "the worker returned no outcome".into(),
        })?;
    decode_outcome(entry, 0, outcome)
}

/// The handle of one `apply_async` task.
pub struct AsyncResult<R> {
    slot: Arc<Slot>,
    entry: String,
    _result: PhantomData<fn() -> R>,
}

impl<R: DeserializeOwned> AsyncResult<R> {
    /// The task's result, waiting at most `timeout`; may be called again.
    pub fn get(&self, timeout: Duration) -> Result<R, PoolError> {
        match self.slot.wait(timeout) {
            Some(result) => decode_single(&self.entry, result),
            None => Err(PoolError::Timeout {
                entry: self.entry.clone(),
                timeout,
            }),
        }
    }

    /// Waits at most `timeout` for the task to finish; true if it has.
    pub fn wait(&self, timeout: Duration) -> bool {
        self.slot.wait(timeout).is_some()
    }

    /// Whether the task has finished (without waiting).
    pub fn ready(&self) -> bool {
        self.slot.lock().result.is_some()
    }

    /// Whether the task succeeded; None while it is not finished (Python raises there).
    pub fn successful(&self) -> Option<bool> {
        self.slot
            .lock()
            .result
            .as_ref()
            .map(|r| matches!(r.as_deref(), Ok([Outcome::Returned(_)])))
    }

    /// The worker running the task now, once it has been handed to one.
    pub fn worker_pid(&self) -> Option<Pid> {
        let state = self.slot.lock();
        if state.result.is_some() {
            return None;
        }
        state.worker_pid.map(Pid::from_raw)
    }
}

struct Chunk {
    slot: Arc<Slot>,
    first_index: usize,
    len: usize,
}

/// The results of [`Pool::imap`], in input order. Each wait for a chunk is bounded by the
/// pool's timeout; a chunk that fails as a whole (its worker died) yields its error once
/// per item.
pub struct Imap<R> {
    entry: String,
    chunks: VecDeque<Chunk>,
    current: VecDeque<Result<R, PoolError>>,
    timeout: Duration,
    _result: PhantomData<fn() -> R>,
}

impl<R: DeserializeOwned> Iterator for Imap<R> {
    type Item = Result<R, PoolError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(item) = self.current.pop_front() {
            return Some(item);
        }
        let chunk = self.chunks.pop_front()?;
        let entry = &self.entry;
        match chunk.slot.wait(self.timeout) {
            Some(Ok(outcomes)) => {
                self.current = outcomes
                    .into_iter()
                    .enumerate()
                    .map(|(i, o)| decode_outcome(entry, chunk.first_index + i, o))
                    .collect();
            }
            Some(Err(error)) => self.current = (0..chunk.len).map(|_| Err(error.clone())).collect(),
            None => {
                let error = PoolError::Timeout {
                    entry: entry.clone(),
                    timeout: self.timeout,
                };
                self.current = (0..chunk.len).map(|_| Err(error.clone())).collect();
            }
        }
        self.current.pop_front()
    }
}

/// A fail-fast check in the library's own test binary, which runs first: a pool that
/// never hands results back fails here at its 20-s bound, where the integration suite
/// would wait its bound in every one of its tests.
#[cfg(test)]
mod tests {
    use super::*;

    fn double(x: u32) -> Result<u32, String> {
        Ok(2 * x)
    }
    crate::register_entry!("pool-unit-double", double);

    #[test]
    fn a_small_map_comes_back_in_order() {
        let _serial = crate::process::tests_serial();
        let options = PoolOptions::new()
            .size(1)
            .method(StartMethod::Fork)
            .timeout(Duration::from_secs(20));
        let mut pool = Pool::new(options).unwrap();
        let doubled: Vec<u32> = pool.map("pool-unit-double", [1u32, 2, 3], 1).unwrap();
        assert_eq!(doubled, [2, 4, 6]);
        pool.close();
        pool.join(None).unwrap();
    }
}
