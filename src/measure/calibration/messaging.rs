//! What `perf bench sched messaging` (hackbench, perf 6.1) does, in processes, with its
//! parameters, over pipes (`-p`) and over Unix stream socketpairs (its default), so that
//! `scripts/fidelity.sh` can hold ipcbench's N×M message figure against it.
//!
//! Each group has [`FDS`] receivers, each reading from its own pipe (or socketpair), and
//! [`FDS`] senders, each writing `loops` rounds of one [`MESSAGE`]-byte message to every
//! receiver of its group. Every worker writes one byte to a shared "ready" channel and
//! waits for the parent's byte on a shared "wake" channel; the parent reads every ready
//! byte, reads the clock, writes the wake byte and reaps every worker: the figure is that
//! total time, as perf reports it (in ns here, one sample per run).

use super::{read_full, write_full, RUN_LIMIT};
use crate::measure::workloads::RoundTrips;
use crate::measure::MeasureError;
use crate::process::{self as proc, Child, Options, StartMethod};
use crate::register_entry;
use serde::{Deserialize, Serialize};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Instant;

/// Name of perf-messaging over pipes: what the many-to-many pipe workloads are divided by.
pub const PIPE_MESSAGING: &str = "pipe-messaging";
/// Name of perf-messaging over Unix sockets: the socket counterpart.
pub const UNIX_SOCKET_MESSAGING: &str = "unix-socket-messaging";
/// Groups (perf's `-g`): one group is 40 processes, enough for 2 CPUs.
pub const GROUPS: usize = 1;
/// Senders and receivers per group (perf's fixed `num_fds`).
pub const FDS: usize = 20;
/// Bytes per message (perf's `DATASIZE`).
pub const MESSAGE: usize = 100;

/// The channel every message of a run goes through, as perf's `-p` chooses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Pipes (`perf bench sched messaging -p`).
    Pipe,
    /// Unix stream sockets (perf's default).
    UnixSocket,
}

impl Transport {
    /// The calibration this transport's run records.
    pub fn calibration_name(self) -> &'static str {
        match self {
            Transport::Pipe => PIPE_MESSAGING,
            Transport::UnixSocket => UNIX_SOCKET_MESSAGING,
        }
    }
}

/// A channel: (read end, write end); perf's `fdpair`.
fn fd_pair(transport: Transport) -> (OwnedFd, OwnedFd) {
    match transport {
        Transport::Pipe => {
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe2 for messaging")
        }
        Transport::UnixSocket => {
            use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
            socketpair(
                AddressFamily::Unix,
                SockType::Stream,
                None,
                SockFlag::SOCK_CLOEXEC,
            )
            .expect("socketpair for messaging")
        }
    }
}

#[derive(Serialize, Deserialize)]
enum Role {
    /// `loops` rounds of one message to each of `out_fds`.
    Sender { out_fds: Vec<RawFd>, loops: usize },
    /// `messages` messages read from `in_fd`.
    Receiver { in_fd: RawFd, messages: usize },
}

#[derive(Serialize, Deserialize)]
struct WorkerArgs {
    ready_fd: RawFd,
    wake_fd: RawFd,
    role: Role,
}

/// One sender or receiver: "ready", wait for "go" (bounded, where perf waits forever),
/// then its share of the messages. Returns how many messages it moved.
fn messaging_worker(args: WorkerArgs) -> Result<u64, MeasureError> {
    write_full(args.ready_fd, b"R").map_err(|e| MeasureError::at("ready write", e))?;
    let deadline = Instant::now() + RUN_LIMIT;
    if !crate::ipc::pipe::wait_raw_fd(args.wake_fd, libc::POLLIN, Some(deadline))
        .map_err(|e| MeasureError::at("wait for go", e))?
    {
        return Err(MeasureError::Failed(format!("no go within {RUN_LIMIT:?}")));
    }
    match args.role {
        Role::Sender { out_fds, loops } => {
            let data = [b'S'; MESSAGE];
            for _ in 0..loops {
                for &fd in &out_fds {
                    write_full(fd, &data).map_err(|e| MeasureError::at("sender write", e))?;
                }
            }
            Ok((loops * out_fds.len()) as u64)
        }
        Role::Receiver { in_fd, messages } => {
            let mut data = [0u8; MESSAGE];
            for received in 0..messages {
                if !read_full(in_fd, &mut data).map_err(|e| MeasureError::at("receiver read", e))? {
                    return Err(MeasureError::Failed(format!(
                        "end of stream after {received} of {messages}"
                    )));
                }
            }
            Ok(messages as u64)
        }
    }
}
register_entry!("calibration-messaging-worker", messaging_worker);

/// Forks one worker holding `fds` (perf forks its workers too).
fn start_worker(args: &WorkerArgs, fds: &[RawFd], name: String) -> Child {
    let options = fds.iter().fold(
        Options::new(name)
            .method(StartMethod::Fork)
            .daemon(true)
            .inherit_fd(args.ready_fd)
            .inherit_fd(args.wake_fd),
        |options, &fd| options.inherit_fd(fd),
    );
    proc::start("calibration-messaging-worker", args, options).expect("start messaging worker")
}

/// One hackbench run of `groups` groups and `loops` loops over `transport`: the total
/// time from the wake byte to the last worker reaped, as one sample (ns).
pub fn messaging(transport: Transport, groups: usize, loops: usize) -> RoundTrips {
    let (ready_read, ready_write) = fd_pair(transport);
    let (wake_read, wake_write) = fd_pair(transport);
    let (ready_fd, wake_fd) = (ready_write.as_raw_fd(), wake_read.as_raw_fd());
    let mut workers = Vec::with_capacity(groups * FDS * 2);
    for group in 0..groups {
        let channels: Vec<(OwnedFd, OwnedFd)> = (0..FDS).map(|_| fd_pair(transport)).collect();
        for (i, (in_fd, _)) in channels.iter().enumerate() {
            let in_fd = in_fd.as_raw_fd();
            let role = Role::Receiver {
                in_fd,
                messages: FDS * loops,
            };
            let args = WorkerArgs {
                ready_fd,
                wake_fd,
                role,
            };
            workers.push(start_worker(
                &args,
                &[in_fd],
                format!("receiver-{group}-{i}"),
            ));
        }
        let out_fds: Vec<RawFd> = channels.iter().map(|(_, out)| out.as_raw_fd()).collect();
        for i in 0..FDS {
            let role = Role::Sender {
                out_fds: out_fds.clone(),
                loops,
            };
            let args = WorkerArgs {
                ready_fd,
                wake_fd,
                role,
            };
            workers.push(start_worker(&args, &out_fds, format!("sender-{group}-{i}")));
        }
        // The workers hold their ends; ours would keep a dead sender's receiver waiting.
        drop(channels);
    }
    let deadline = Instant::now() + RUN_LIMIT;
    let mut ready = [0u8; 1];
    for _ in 0..workers.len() {
        let readable =
            crate::ipc::pipe::wait_raw_fd(ready_read.as_raw_fd(), libc::POLLIN, Some(deadline))
                .expect("wait for the workers' ready bytes");
        assert!(readable, "messaging workers not ready within {RUN_LIMIT:?}");
        assert!(
            read_full(ready_read.as_raw_fd(), &mut ready).expect("read a ready byte"),
            "ready channel closed"
        );
    }
    let started = Instant::now();
    write_full(wake_write.as_raw_fd(), b"G").expect("wake the workers");
    let mut moved = 0u64;
    for worker in &mut workers {
        let left = deadline.saturating_duration_since(Instant::now());
        moved += worker
            .result::<u64>(Some(left))
            .expect("messaging worker result");
    }
    let elapsed = started.elapsed();
    // Every message is counted once by its sender and once by its receiver.
    assert_eq!(
        moved,
        2 * (groups * FDS * FDS * loops) as u64,
        "messages lost"
    );
    RoundTrips {
        samples_ns: vec![elapsed.as_nanos() as u64],
    }
}
