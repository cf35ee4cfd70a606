//! Every workload `ipcbench bench` can run, with what it measures and how to run it in
//! the quick and full profiles. The functions themselves live in `workloads/` and
//! `calibration`, shared with the criterion benches; this is only the catalogue.
//!
//! Naming: `family/flavor/what[/size][/placement]`, e.g. `pipe/duplex/roundtrip/64B/
//! cross-cpu`; calibrations are `calibration/NAME/placement`. `--filter` matches a
//! substring of these names.

use super::calibration as cal;
use super::calibration::{handoff, messaging};
use super::workloads::process::{start_join_samples, StartKind};
use super::workloads::RoundTrips;
use crate::results::Placement;
use std::sync::Arc;
use std::time::Duration;

/// What a workload produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A raw baseline other figures are divided by.
    Calibration,
    /// A distribution of per-operation times.
    Latency,
    /// Messages (and bytes) moved per second.
    Throughput,
}

/// How long a run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// Short: every family in well under a minute on 2 cores.
    Quick,
    /// Longer runs and more repeats, for figures worth keeping.
    Full,
}

impl Profile {
    /// The name the CLI and the results use.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Quick => "quick",
            Profile::Full => "full",
        }
    }
    /// Repeated runs of each workload; their spread is recorded with each figure.
    pub fn repeats(self) -> usize {
        match self {
            Profile::Quick => 3,
            Profile::Full => 5,
        }
    }
}

/// What one run (one repeat) of a workload gives.
#[derive(Clone, Debug)]
pub enum Sample {
    /// Per-operation times (latency workloads and time calibrations).
    Times(RoundTrips),
    /// A volume moved in a time (throughput workloads and bandwidth calibrations).
    Moved {
        /// Messages moved.
        messages: u64,
        /// Payload bytes moved.
        bytes: u64,
        /// The time they took.
        elapsed: Duration,
    },
}

impl Sample {
    /// The time the operations took (the sum of the samples, for times): what criterion's
    /// `iter_custom` wants.
    pub fn total(&self) -> Duration {
        match self {
            Sample::Times(trips) => trips.total(),
            Sample::Moved { elapsed, .. } => *elapsed,
        }
    }
}

/// Runs one repeat with the given number of operations.
pub type RunFn = Arc<dyn Fn(usize) -> Sample + Send + Sync>;

/// One registered workload.
#[derive(Clone)]
pub struct Workload {
    /// Unique; also the key in the results file.
    pub name: String,
    /// Mechanism family: "pipe", "queue", ...
    pub family: &'static str,
    /// Flavor within the family: what a row of the report compares.
    pub flavor: &'static str,
    /// Latency or throughput: which list of the results it goes to.
    pub kind: Kind,
    /// Where its processes run: a baseline divides only figures of its own placement.
    pub placement: Placement,
    /// Payload of one message, bytes.
    pub message_bytes: u64,
    /// Producer processes (throughput).
    pub producers: u32,
    /// Consumer processes (throughput).
    pub consumers: u32,
    /// The calibration this workload is divided by: its name; the ratio is only computed
    /// against that calibration measured in the workload's own placement.
    pub calibration: Option<&'static str>,
    /// Operations per repeat: (quick, full).
    pub ops: (usize, usize),
    /// Runs one repeat.
    pub run: RunFn,
}

impl std::fmt::Debug for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workload")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("placement", &self.placement)
            .finish_non_exhaustive()
    }
}

impl Workload {
    /// Operations per repeat in `profile`.
    pub fn ops(&self, profile: Profile) -> usize {
        match profile {
            Profile::Quick => self.ops.0,
            Profile::Full => self.ops.1,
        }
    }

    /// For a calibration: its calibration name (the middle of `calibration/NAME/...`).
    pub fn calibration_name(&self) -> Option<&str> {
        match self.kind {
            Kind::Calibration => self.name.split('/').nth(1),
            _ => None,
        }
    }

    /// A latency workload: `run(placement, ops)` gives per-operation times.
    #[allow(clippy::too_many_arguments)]
    pub fn latency(
        family: &'static str,
        flavor: &'static str,
        what: &str,
        message_bytes: Option<u64>,
        placement: Placement,
        calibration: Option<&'static str>,
        ops: (usize, usize),
        run: impl Fn(Placement, usize) -> RoundTrips + Send + Sync + 'static,
    ) -> Workload {
        let size = message_bytes.map(|b| format!("/{}", size_label(b)));
        Workload {
            name: format!(
                "{family}/{flavor}/{what}{}/{}",
                size.unwrap_or_default(),
                placement.label()
            ),
            family,
            flavor,
            kind: Kind::Latency,
            placement,
            message_bytes: message_bytes.unwrap_or(0),
            producers: 1,
            consumers: 1,
            calibration,
            ops,
            run: Arc::new(move |n| Sample::Times(run(placement, n))),
        }
    }

    /// A throughput workload: `run(messages)` gives the time to move them.
    #[allow(clippy::too_many_arguments)]
    pub fn throughput(
        family: &'static str,
        flavor: &'static str,
        message_bytes: u64,
        producers: u32,
        consumers: u32,
        calibration: Option<&'static str>,
        ops: (usize, usize),
        run: impl Fn(usize) -> Duration + Send + Sync + 'static,
    ) -> Workload {
        Workload {
            name: format!(
                "{family}/{flavor}/stream/{}/{producers}x{consumers}",
                size_label(message_bytes)
            ),
            family,
            flavor,
            kind: Kind::Throughput,
            placement: Placement::Unpinned,
            message_bytes,
            producers,
            consumers,
            calibration,
            ops,
            run: Arc::new(move |n| Sample::Moved {
                messages: n as u64,
                bytes: n as u64 * message_bytes,
                elapsed: run(n),
            }),
        }
    }

    /// Operations done by `processes` processes together (lock acquire+release, file
    /// store updates, tasks, requests): `run(ops)` gives the time for all of them; the
    /// figure is operations per second. Named `family/flavor/what`.
    pub fn operations(
        family: &'static str,
        flavor: &'static str,
        what: &str,
        processes: u32,
        calibration: Option<&'static str>,
        ops: (usize, usize),
        run: impl Fn(usize) -> Duration + Send + Sync + 'static,
    ) -> Workload {
        Workload {
            name: format!("{family}/{flavor}/{what}"),
            family,
            flavor,
            kind: Kind::Throughput,
            placement: Placement::Unpinned,
            message_bytes: 0,
            producers: processes,
            consumers: processes,
            calibration,
            ops,
            run: Arc::new(move |n| Sample::Moved {
                messages: n as u64,
                bytes: 0,
                elapsed: run(n),
            }),
        }
    }

    fn calibration(
        name: &'static str,
        placement: Placement,
        ops: (usize, usize),
        run: impl Fn(usize) -> Sample + Send + Sync + 'static,
    ) -> Workload {
        Workload {
            name: format!("calibration/{name}/{}", placement.label()),
            family: "calibration",
            flavor: name,
            kind: Kind::Calibration,
            placement,
            message_bytes: 0,
            producers: 1,
            consumers: 1,
            calibration: None,
            ops,
            run: Arc::new(run),
        }
    }
}

/// "64B", "4KiB", "1MiB".
pub fn size_label(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{}MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{}KiB", b >> 10),
        b => format!("{b}B"),
    }
}

/// The two placements of a two-process latency workload.
pub const PLACEMENTS: [Placement; 2] = [Placement::SameCpu, Placement::CrossCpu];

fn calibrations() -> Vec<Workload> {
    let mut all = Vec::new();
    // Two spinners on one CPU would measure the scheduler, not the cache line.
    all.push(Workload::calibration(
        cal::SHM_PINGPONG,
        Placement::CrossCpu,
        (20_000, 200_000),
        |n| Sample::Times(cal::shm_pingpong(Placement::CrossCpu, n)),
    ));
    for placement in PLACEMENTS {
        all.push(Workload::calibration(
            cal::FUTEX_ROUNDTRIP,
            placement,
            (3_000, 30_000),
            move |n| Sample::Times(cal::futex_roundtrip(placement, n)),
        ));
        all.push(Workload::calibration(
            cal::PIPE_ROUNDTRIP,
            placement,
            (3_000, 30_000),
            move |n| Sample::Times(cal::pipe_roundtrip(placement, n)),
        ));
        all.push(Workload::calibration(
            cal::UNIX_SOCKET_ROUNDTRIP,
            placement,
            (3_000, 30_000),
            move |n| Sample::Times(cal::unix_socket_roundtrip(placement, n)),
        ));
    }
    // Unpinned too: the multi-client Manager and pool echo workloads are.
    for placement in [Placement::SameCpu, Placement::CrossCpu, Placement::Unpinned] {
        all.push(Workload::calibration(
            cal::UNIX_SOCKET_REQUEST_REPLY,
            placement,
            (3_000, 30_000),
            move |n| Sample::Times(cal::unix_socket_request_reply(placement, n)),
        ));
    }
    // Unpinned, as the stream workloads run (a ratio needs the same placement).
    for size in cal::STREAM_SIZES {
        let ops = raw_stream_messages(size);
        all.push(Workload::calibration(
            cal::pipe_stream_name(size),
            Placement::Unpinned,
            ops,
            move |n| cal::pipe_stream(size as usize, Placement::Unpinned, n),
        ));
        all.push(Workload::calibration(
            cal::unix_stream_name(size),
            Placement::Unpinned,
            ops,
            move |n| cal::unix_stream(size as usize, Placement::Unpinned, n),
        ));
    }
    for (name, lock) in [
        (cal::FLOCK_ACQUIRE_RELEASE, cal::FileLock::Flock),
        (cal::FCNTL_ACQUIRE_RELEASE, cal::FileLock::Fcntl),
    ] {
        all.push(Workload::calibration(
            name,
            Placement::Unpinned,
            (20_000, 200_000),
            move |n| Sample::Times(cal::file_lock_acquire_release(lock, n)),
        ));
    }
    // Unpinned, one process, as the file store's workloads run.
    all.push(Workload::calibration(
        cal::FILE_READ_MODIFY_WRITE,
        Placement::Unpinned,
        (500, 5_000),
        |n| {
            let content = super::workloads::filestore::initial_bytes();
            Sample::Times(cal::file_read_modify_write(&content, n))
        },
    ));
    for (processes, ops) in [
        (1u32, (10_000_000, 100_000_000)),
        (2, (4_000_000, 40_000_000)),
        (4, (4_000_000, 40_000_000)),
    ] {
        all.push(Workload::calibration(
            cal::atomic_increment_name(processes),
            Placement::Unpinned,
            ops,
            move |n| {
                Sample::Times(cal::per_op(
                    cal::atomic_increments(processes as usize, n),
                    n,
                ))
            },
        ));
    }
    all.push(Workload::calibration(
        cal::MEMCPY,
        Placement::Unpinned,
        (4, 32),
        |n| {
            let started = std::time::Instant::now();
            let rate = cal::memcpy_bandwidth(n);
            let elapsed = started.elapsed();
            Sample::Moved {
                messages: n as u64,
                bytes: (rate * elapsed.as_secs_f64()) as u64,
                elapsed,
            }
        },
    ));
    all.push(Workload::calibration(
        cal::FORK_EXIT,
        Placement::Unpinned,
        (100, 1_000),
        |n| Sample::Times(cal::fork_exit(n)),
    ));
    all.push(Workload::calibration(
        cal::FORK_EXEC,
        Placement::Unpinned,
        (30, 300),
        |n| Sample::Times(cal::fork_exec(n)),
    ));
    // Unpinned, as the pool workloads run.
    all.push(Workload::calibration(
        handoff::TASK_HANDOFF,
        Placement::Unpinned,
        (3_000, 30_000),
        |n| Sample::Times(handoff::task_handoff(n)),
    ));
    all.push(Workload::calibration(
        handoff::TASK_HANDOFF_2_WORKERS,
        Placement::Unpinned,
        (3_000, 30_000),
        |n| {
            let workers = handoff::STREAM_WORKERS;
            Sample::Times(cal::per_op(handoff::task_stream(workers, n), n))
        },
    ));
    // Operations are hackbench's loops; scripts/fidelity.sh passes perf the same.
    for transport in [messaging::Transport::Pipe, messaging::Transport::UnixSocket] {
        all.push(Workload::calibration(
            transport.calibration_name(),
            Placement::Unpinned,
            MESSAGING_LOOPS,
            move |loops| Sample::Times(messaging::messaging(transport, messaging::GROUPS, loops)),
        ));
    }
    all
}

/// hackbench's loops per run of the messaging calibrations: (quick, full); the full
/// figure is what scripts/fidelity.sh compares with `perf bench sched messaging -g 1 -l
/// 1000` (the longer run leaves less to the start and exit of its 40 processes).
pub const MESSAGING_LOOPS: (usize, usize) = (100, 1_000);

fn process_workloads() -> Vec<Workload> {
    [
        (StartKind::Fork, cal::FORK_EXIT, (100, 1_000)),
        (StartKind::Spawn, cal::FORK_EXEC, (30, 300)),
    ]
    .into_iter()
    .map(|(start, calibration, ops)| {
        Workload::latency(
            "process",
            start.name(),
            "start-join",
            None,
            Placement::Unpinned,
            Some(calibration),
            ops,
            move |_, n| start_join_samples(start, n),
        )
    })
    .collect()
}

/// Message sizes of the throughput workloads (each has a raw stream calibration).
pub const SIZES: [u64; 4] = cal::STREAM_SIZES;

/// Messages per raw stream repeat: (quick, full); 32 MiB in the quick profile (30,000
/// messages at 64 B), ten times as many in the full one; under 0.1 s a repeat at
/// 64 KiB on an idle machine.
fn raw_stream_messages(size: u64) -> (usize, usize) {
    let quick = ((32u64 << 20) / size).clamp(32, 30_000) as usize;
    (quick, quick * 10)
}

/// Messages per throughput repeat: (quick, full); multiples of 4 so that 4 producers
/// share them evenly.
pub fn stream_messages(size: u64) -> (usize, usize) {
    let quick = ((4u64 << 20) / size).clamp(16, 4_000) as usize;
    let full = ((64u64 << 20) / size).clamp(32, 20_000) as usize;
    (quick, full)
}

/// Pipe round trips of 64 B and streams from 64 B to 1 MiB, each divided by the raw
/// figure of its own transport: a duplex `Connection` is a socketpair (raw 64-byte Unix
/// request-reply, raw Unix stream of the same size), a simplex one two pipes (raw pipe
/// round trip).
fn pipe_workloads() -> Vec<Workload> {
    use crate::ipc::pipe::PipeKind;
    use crate::measure::workloads::pipe;
    let mut all = Vec::new();
    for (kind, flavor) in [(PipeKind::Duplex, "duplex"), (PipeKind::Simplex, "simplex")] {
        for placement in PLACEMENTS {
            all.push(Workload::latency(
                "pipe",
                flavor,
                "roundtrip",
                Some(64),
                placement,
                Some(match kind {
                    PipeKind::Duplex => cal::UNIX_SOCKET_REQUEST_REPLY,
                    PipeKind::Simplex => cal::PIPE_ROUNDTRIP,
                }),
                (2_000, 20_000),
                move |placement, n| pipe::round_trip(kind, 64, placement, n),
            ));
        }
    }
    for size in SIZES {
        all.push(Workload::throughput(
            "pipe",
            "duplex",
            size,
            1,
            1,
            Some(cal::unix_stream_name(size)),
            stream_messages(size),
            move |n| pipe::throughput(size as usize, n, Placement::Unpinned),
        ));
    }
    all
}

/// Queue round trips of 64 B per flavor, each divided by the raw figure its flavor rides
/// on in that placement (pipe flavor: raw pipe round trip; shm flavor: the cache-line
/// ping-pong across CPUs, the futex wake round trip on one CPU, where both sides must
/// sleep; ipc-channel: 64-byte Unix request-reply), and streams 64 B to 1 MiB, 1→1 and
/// 4→4, divided by the raw stream of the same size (pipe and shm flavors: pipe; channel:
/// Unix socket).
fn queue_workloads() -> Vec<Workload> {
    use crate::ipc::queue::{BuiltOn, Flavor};
    use crate::measure::workloads::queue;
    let mut all = Vec::new();
    for flavor in Flavor::all() {
        for placement in PLACEMENTS {
            let base = match (flavor.built_on(), placement) {
                (BuiltOn::Pipe, _) => cal::PIPE_ROUNDTRIP,
                (BuiltOn::SharedMemory, Placement::SameCpu) => cal::FUTEX_ROUNDTRIP,
                (BuiltOn::SharedMemory, _) => cal::SHM_PINGPONG,
                (BuiltOn::UnixSocket, _) => cal::UNIX_SOCKET_REQUEST_REPLY,
            };
            all.push(Workload::latency(
                "queue",
                flavor.name(),
                "roundtrip",
                Some(64),
                placement,
                Some(base),
                (2_000, 20_000),
                move |placement, n| queue::round_trip(flavor, 64, placement, n),
            ));
        }
    }
    for flavor in Flavor::all() {
        for (producers, consumers) in [(1u32, 1u32), (4, 4)] {
            for size in SIZES {
                all.push(Workload::throughput(
                    "queue",
                    flavor.name(),
                    size,
                    producers,
                    consumers,
                    Some(match flavor.built_on() {
                        BuiltOn::Pipe | BuiltOn::SharedMemory => cal::pipe_stream_name(size),
                        BuiltOn::UnixSocket => cal::unix_stream_name(size),
                    }),
                    stream_messages(size),
                    move |n| {
                        queue::throughput(
                            flavor,
                            size as usize,
                            producers as usize,
                            consumers as usize,
                            n,
                        )
                    },
                ));
            }
        }
    }
    all
}

/// Short tasks through a pool of 2 (started outside the timed part) vs one process per
/// task vs in-process; apply_async; the echo servers. A task through the pool is divided
/// by the raw hand-off of the same task to a worker process (one at a time: the raw
/// round trip; map and pipelined apply_async: the raw stream to 2 workers); a process
/// per task, and the in-process run beside it, by the raw fork+_exit+waitpid.
fn pool_workloads() -> Vec<Workload> {
    use crate::ipc::pool::{Pool, PoolOptions};
    use crate::measure::workloads::pool;
    use crate::process::StartMethod;
    use crate::programs::pool_echo::ServerKind;
    fn with_pool<T>(run: impl FnOnce(&Pool) -> T) -> T {
        let pool =
            Pool::new(PoolOptions::new().size(2).method(StartMethod::Fork)).expect("start pool");
        run(&pool)
    }
    let mut all = vec![
        // One task through a running pool, timed per task for a distribution.
        Workload::latency(
            "pool",
            "fork",
            "apply-async",
            None,
            Placement::Unpinned,
            Some(handoff::TASK_HANDOFF),
            (300, 3_000),
            |_, n| pool::apply_async_samples(n),
        ),
        Workload::operations(
            "pool",
            "sequential",
            "short-tasks",
            1,
            Some(cal::FORK_EXIT),
            (2_000, 20_000),
            pool::short_tasks_sequential,
        ),
        Workload::operations(
            "pool",
            "pool-2-map",
            "short-tasks/chunksize-1",
            2,
            Some(handoff::TASK_HANDOFF_2_WORKERS),
            (1_000, 10_000),
            |n| with_pool(|p| pool::short_tasks_pool_map(p, n, 1)),
        ),
        Workload::operations(
            "pool",
            "pool-2-map",
            "short-tasks/chunksize-auto",
            2,
            Some(handoff::TASK_HANDOFF_2_WORKERS),
            (1_000, 10_000),
            |n| with_pool(|p| pool::short_tasks_pool_map(p, n, p.default_chunksize(n))),
        ),
        Workload::operations(
            "pool",
            "pool-2-apply-async",
            "round-trip",
            2,
            Some(handoff::TASK_HANDOFF),
            (1_000, 10_000),
            |n| with_pool(|p| pool::apply_async_round_trips(p, n)),
        ),
        Workload::operations(
            "pool",
            "pool-2-apply-async",
            "pipelined",
            2,
            Some(handoff::TASK_HANDOFF_2_WORKERS),
            (1_000, 10_000),
            |n| with_pool(|p| pool::apply_async_pipelined(p, n)),
        ),
    ];
    for (method, ops) in [
        (StartMethod::Fork, (100, 1_000)),
        (StartMethod::Spawn, (30, 300)),
    ] {
        all.push(Workload::operations(
            "pool",
            match method {
                StartMethod::Fork => "process-per-task-fork",
                StartMethod::Spawn => "process-per-task-spawn",
            },
            "short-tasks",
            1,
            Some(cal::FORK_EXIT),
            ops,
            move |n| pool::short_tasks_process_per_task(method, n),
        ));
    }
    for (kind, flavor) in [
        (
            ServerKind::ProcessPerConnection,
            "echo-process-per-connection",
        ),
        (ServerKind::Pool { workers: 4 }, "echo-pool-4"),
    ] {
        for clients in [1usize, 4, 16] {
            all.push(Workload::operations(
                "pool",
                flavor,
                &format!(
                    "roundtrip/{}/{clients}-clients",
                    size_label(pool::ECHO_MESSAGE as u64)
                ),
                clients as u32,
                Some(cal::UNIX_SOCKET_REQUEST_REPLY),
                // Multiples of 16, so every client does the same number of rounds.
                (256, 2_048),
                move |rounds| {
                    pool::echo_round_trips(
                        kind,
                        clients,
                        rounds.div_ceil(clients),
                        StartMethod::Fork,
                    )
                },
            ));
        }
    }
    all
}

/// Every workload, calibrations first.
pub fn all() -> Vec<Workload> {
    let mut sets: Vec<&WorkloadSet> = WORKLOAD_SETS.iter().collect();
    sets.sort_by_key(|s| (s.rank, s.name));
    let mut all: Vec<Workload> = Vec::new();
    for set in sets {
        for workload in (set.make)() {
            // A name is a results key: the first registration keeps it.
            if all.iter().any(|w| w.name == workload.name) {
                eprintln!(
                    "ipcbench: workload {} of set {} is already registered; ignored",
                    workload.name, set.name
                );
                continue;
            }
            all.push(workload);
        }
    }
    all
}

/// A set of workloads registered with [`register_workloads!`], from this crate or any
/// crate linking it: `bench`, `list` and the criterion benches find it with no central
/// list to edit.
pub struct WorkloadSet {
    /// Names the set in messages.
    pub name: &'static str,
    /// Where the set comes in the catalogue (built-ins 0–99; a set registered without a
    /// rank comes after them, by name).
    pub rank: u32,
    /// Builds the set's workloads (called once per listing or run).
    pub make: fn() -> Vec<Workload>,
}

/// Every registered workload set.
#[linkme::distributed_slice]
pub static WORKLOAD_SETS: [WorkloadSet];

/// Registers `fn() -> Vec<Workload>` as a set of workloads:
/// `ipcbench::register_workloads!("my-queue", my_workloads);`.
#[macro_export]
macro_rules! register_workloads {
    ($name:expr, $make:path) => {
        $crate::register_workloads!($name, $make, rank = 1000);
    };
    ($name:expr, $make:path, rank = $rank:expr) => {
        const _: () = {
            #[$crate::process::entry::linkme::distributed_slice(
                $crate::measure::registry::WORKLOAD_SETS
            )]
            #[linkme(crate = $crate::process::entry::linkme)]
            static SET: $crate::measure::registry::WorkloadSet =
                $crate::measure::registry::WorkloadSet {
                    name: $name,
                    rank: $rank,
                    make: $make,
                };
        };
    };
}

crate::register_workloads!("calibration", calibrations, rank = 0);
crate::register_workloads!("process", process_workloads, rank = 10);
crate::register_workloads!("pipe", pipe_workloads, rank = 20);
crate::register_workloads!("queue", queue_workloads, rank = 30);
crate::register_workloads!("pool", pool_workloads, rank = 40);

/// The workloads whose name contains `filter` (all without one), plus the calibrations
/// they are divided by (same name, same placement), calibrations first. A filter that matches nothing is an error
/// listing every workload name.
pub fn select(filter: Option<&str>) -> Result<Vec<Workload>, String> {
    select_from(all(), filter)
}

/// [`select`] over `all` (the catalogue, and a peer's workloads beside it).
pub fn select_from(all: Vec<Workload>, filter: Option<&str>) -> Result<Vec<Workload>, String> {
    let Some(pattern) = filter else {
        return Ok(all);
    };
    let chosen: Vec<&Workload> = all.iter().filter(|w| w.name.contains(pattern)).collect();
    if chosen.is_empty() {
        let names: Vec<&str> = all.iter().map(|w| w.name.as_str()).collect();
        return Err(format!(
            "--filter {pattern:?} matches no workload; the workloads are:\n  {}",
            names.join("\n  ")
        ));
    }
    // A ratio needs the calibration of the same name in the same placement: only those.
    let needed: Vec<(&str, Placement)> = chosen
        .iter()
        .filter_map(|w| Some((w.calibration?, w.placement)))
        .collect();
    Ok(all
        .iter()
        .filter(|w| {
            w.name.contains(pattern)
                || (w.kind == Kind::Calibration
                    && w.calibration_name()
                        .is_some_and(|c| needed.contains(&(c, w.placement))))
        })
        .cloned()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_every_calibration_reference_exists() {
        let all = all();
        let mut names: Vec<&str> = all.iter().map(|w| w.name.as_str()).collect();
        names.sort_unstable();
        let count = names.len();
        names.dedup();
        assert_eq!(names.len(), count, "duplicate workload names");
        // A ratio is only computed against the same name in the same placement.
        let calibrations: Vec<(&str, Placement)> = all
            .iter()
            .filter_map(|w| Some((w.calibration_name()?, w.placement)))
            .collect();
        for w in &all {
            if let Some(c) = w.calibration {
                assert!(
                    calibrations.contains(&(c, w.placement)),
                    "{} refers to missing {c} in placement {}",
                    w.name,
                    w.placement.label()
                );
            }
        }
    }

    /// Every measured workload names a baseline, and a stream one of its own kind and
    /// size; the lock-like throughputs divide by a time ("ns") calibration, never by a
    /// bandwidth (their byte rate is 0).
    #[test]
    fn every_workload_names_a_baseline_of_its_kind() {
        let all = all();
        for w in all.iter().filter(|w| w.kind != Kind::Calibration) {
            let c = w
                .calibration
                .unwrap_or_else(|| panic!("{} names no calibration", w.name));
            if w.kind == Kind::Throughput && w.message_bytes > 0 {
                let size = size_label(w.message_bytes);
                assert!(
                    c.contains("-stream-") && c.ends_with(&format!("-{size}")),
                    "{} is divided by {c}, not a stream of {size}",
                    w.name
                );
            }
            if w.kind == Kind::Throughput && w.message_bytes == 0 {
                assert!(
                    !c.contains("-stream-") && c != cal::MEMCPY,
                    "{}: {c}",
                    w.name
                );
            }
        }
        let named = |name: &str| {
            all.iter()
                .find(|w| w.name == name)
                .and_then(|w| w.calibration)
        };
        assert_eq!(
            named("queue/shm/roundtrip/64B/same-cpu"),
            Some(cal::FUTEX_ROUNDTRIP)
        );
        assert_eq!(
            named("queue/shm/roundtrip/64B/cross-cpu"),
            Some(cal::SHM_PINGPONG)
        );
        assert_eq!(
            named("lock/robust-mutex/acquire-release/4-proc"),
            Some("atomic-increment-contended-4")
        );
        assert_eq!(
            named("lock/flock/acquire-release/2-proc"),
            Some(cal::FLOCK_ACQUIRE_RELEASE)
        );
        assert_eq!(
            named("sync/event/wake-roundtrip/cross-cpu"),
            Some(cal::FUTEX_ROUNDTRIP)
        );
        // The file store by raw file I/O of its own kind, never by a lock: the two move
        // apart between machines.
        for kind in crate::ipc::filestore::StoreLockKind::ALL {
            for processes in [1, 2] {
                let workload = format!(
                    "filestore/{}/read-modify-write/{processes}-proc",
                    kind.name()
                );
                assert_eq!(
                    named(&workload),
                    Some(cal::FILE_READ_MODIFY_WRITE),
                    "{workload}"
                );
            }
        }
        assert!(all
            .iter()
            .any(|w| w.name == "calibration/file-read-modify-write/unpinned"
                && w.kind == Kind::Calibration));
        // A task through the pool by the raw hand-off of a task; a process per task by
        // the raw process start.
        for (workload, base) in [
            ("pool/fork/apply-async/unpinned", handoff::TASK_HANDOFF),
            ("pool/pool-2-apply-async/round-trip", handoff::TASK_HANDOFF),
            (
                "pool/pool-2-apply-async/pipelined",
                handoff::TASK_HANDOFF_2_WORKERS,
            ),
            (
                "pool/pool-2-map/short-tasks/chunksize-1",
                handoff::TASK_HANDOFF_2_WORKERS,
            ),
            (
                "pool/pool-2-map/short-tasks/chunksize-auto",
                handoff::TASK_HANDOFF_2_WORKERS,
            ),
            ("pool/process-per-task-fork/short-tasks", cal::FORK_EXIT),
            ("pool/process-per-task-spawn/short-tasks", cal::FORK_EXIT),
        ] {
            assert_eq!(named(workload), Some(base), "{workload}");
        }
    }

    /// The raw hand-offs and the hackbench twins are calibrations of their own names,
    /// unpinned, and a pool filter brings the hand-offs along (not fork-exit alone).
    #[test]
    fn pool_baselines_and_messaging_are_registered() {
        let all = all();
        for name in [
            "calibration/unix-socket-task-handoff/unpinned",
            "calibration/unix-socket-task-handoff-2-workers/unpinned",
            "calibration/pipe-messaging/unpinned",
            "calibration/unix-socket-messaging/unpinned",
        ] {
            let w = all.iter().find(|w| w.name == name).expect(name);
            assert_eq!(w.kind, Kind::Calibration, "{name}");
        }
        let messaging: Vec<_> = all
            .iter()
            .filter(|w| w.name.contains("-messaging/"))
            .collect();
        assert!(messaging.iter().all(|w| w.ops == MESSAGING_LOOPS));
        let chosen = select(Some("pool/pool-2")).unwrap();
        let calibrations: Vec<&str> = chosen.iter().filter_map(|w| w.calibration_name()).collect();
        assert_eq!(
            calibrations,
            [handoff::TASK_HANDOFF, handoff::TASK_HANDOFF_2_WORKERS],
            "{chosen:?}"
        );
    }

    #[test]
    fn filter_selects_matches_and_their_calibrations_only() {
        let chosen = select(Some("process/fork")).unwrap();
        let names: Vec<&str> = chosen.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "calibration/fork-exit/unpinned",
                "process/fork/start-join/unpinned"
            ]
        );
        let chosen = select(Some("pipe-roundtrip")).unwrap();
        assert!(chosen.len() == 2 && chosen.iter().all(|w| w.kind == Kind::Calibration));
        // Only the calibration in the workload's own placement comes along.
        let chosen = select(Some("sync/event/wake-roundtrip/same-cpu")).unwrap();
        let names: Vec<&str> = chosen.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "calibration/futex-roundtrip/same-cpu",
                "sync/event/wake-roundtrip/same-cpu"
            ]
        );
        assert_eq!(select(None).unwrap().len(), all().len());
    }

    #[test]
    fn filter_matching_nothing_lists_the_workloads() {
        let err = select(Some("no-such-workload")).unwrap_err();
        assert!(err.contains("no-such-workload"), "{err}");
        for w in all() {
            assert!(err.contains(&w.name), "{} missing from: {err}", w.name);
        }
    }

    #[test]
    fn size_labels() {
        assert_eq!(size_label(8), "8B");
        assert_eq!(size_label(4096), "4KiB");
        assert_eq!(size_label(1 << 20), "1MiB");
        assert_eq!(size_label(1000), "1000B");
    }
}
