//! The worker process: receives jobs over its pipe, runs each item through the registered
//! entry point (panics caught by `process::entry`), sends the outcomes back.

use crate::ipc::pipe::{Connection, ConnectionHandle, PipeError};
use crate::process::entry::{self, Outcome};
use crate::register_entry;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Name of the worker's entry point.
pub(super) const WORKER_ENTRY: &str = "ipcbench-pool-worker";

/// Parent to worker.
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum ToWorker {
    /// Run `entry` once per item of `args`, in order.
    Run {
        job: u64,
        entry: String,
        args: Vec<serde_json::Value>,
    },
    /// Leave the loop and exit (close, or an elastic pool shrinking).
    Stop,
}

/// Worker to parent: the outcome of every item of one job.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct FromWorker {
    pub(crate) job: u64,
    pub(crate) outcomes: Vec<Outcome>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct WorkerArgs {
    pub(crate) conn: ConnectionHandle,
}

/// How long one wait for a job lasts before it is simply started again. The wait itself
/// is not what bounds the worker's life: the worker is a daemon (it dies with the pool's
/// supervisor thread) and end of stream on its pipe ends it.
const IDLE_WAIT: Duration = Duration::from_secs(60);

fn worker_main(args: WorkerArgs) -> Result<(), String> {
    let conn = Connection::adopt(args.conn).map_err(|e| format!("pool worker: {e}"))?;
    loop {
        match conn.recv_timeout::<ToWorker>(IDLE_WAIT) {
            Ok(ToWorker::Run { job, entry, args }) => {
                let outcomes = args
                    .iter()
                    .map(|item| entry::call_entry(&entry, &item.to_string()))
                    .collect();
                conn.send(&FromWorker { job, outcomes }).map_err(|e| {
                    format!("pool worker: cannot send the result of job {job}: {e}")
                })?;
            }
            Ok(ToWorker::Stop) | Err(PipeError::Eof) => return Ok(()),
            Err(PipeError::Timeout(_)) => continue,
            Err(e) => return Err(format!("pool worker: {e}")),
        }
    }
}
register_entry!("ipcbench-pool-worker", worker_main);
