//! `join-before-drain`: a child puts a large item on a pipe-backed queue and exits; the
//! parent joins it before reading. The item does not fit in the pipe, so the child
//! cannot finish writing, and so cannot exit, until the parent reads: a deadlock (the
//! "joining processes that use queues" pitfall of Python's multiprocessing). Caught as
//! Hung, naming the child blocked writing. Reading first, then joining, holds.
//!
//! Built on `ipc::pipe` directly (the queue's pipe flavor puts items on such a pipe).

use super::ScenarioError;
use super::{
    join_workers, results, start_worker, Case, CaseContext, CaseOutcome, Joined, Scenario, Variant,
    Verdict,
};
use crate::ipc::pipe::{pipe, Connection, ConnectionHandle, PipeKind};
use crate::schedule::Schedule;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use std::time::Duration;

pub(crate) struct JoinBeforeDrain;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Params {
    pub(crate) item_bytes: usize,
}

const VARIANTS: &[Variant] = &[
    Variant::caught_hung(
        "join-first",
        "join a child that put a large item before reading it: the child never exits",
        &["poll", "write"],
    ),
    Variant::holds("drain-first", "read the item, then join"),
];

/// A pipe holds 64 KiB by default: larger items cannot be written without a reader.
const PIPE_CAPACITY: usize = 65536;

impl Scenario for JoinBeforeDrain {
    fn name(&self) -> &'static str {
        "join-before-drain"
    }
    fn about(&self) -> &'static str {
        "a parent joins a child that put an item on a queue"
    }
    fn variants(&self) -> &'static [Variant] {
        VARIANTS
    }
    fn deadline(&self) -> Duration {
        Duration::from_millis(800)
    }

    fn cases(&self, _variant: &str) -> BoxedStrategy<Case> {
        (1usize..=4 * PIPE_CAPACITY)
            .prop_map(|item_bytes| Case::new(&Params { item_bytes }, Schedule::default()))
            .boxed()
    }

    fn run(
        &self,
        variant: &str,
        case: &Case,
        context: &CaseContext,
    ) -> Result<CaseOutcome, ScenarioError> {
        let params: Params = case.params()?;
        let join_first = super::is_unsafe_variant(self, variant)?;
        let (read_end, write_end) = pipe(PipeKind::Simplex)?;
        let w = write_end.handle()?;
        let mut child = vec![start_worker(
            "ipcbench-scenario-put-item",
            "child putting a large item",
            &(w, params.item_bytes),
            &[w.fd],
        )?];
        drop(write_end);
        let mut received = None;
        if !join_first {
            received = Some(
                read_end
                    .recv_bytes_timeout(context.deadline)
                    .map_err(|e| format!("parent reading the item: {e}"))?,
            );
        }
        match join_workers(&mut child, context.deadline, None) {
            Joined::Verdict(v) => return Ok(CaseOutcome::new(v, Vec::new())),
            Joined::Finished(r) => results::<()>(r)?,
        };
        let item = match received {
            Some(item) => item,
            None => read_end
                .recv_bytes_timeout(context.deadline)
                .map_err(|e| format!("parent reading the item: {e}"))?,
        };
        let verdict = if item.len() == params.item_bytes {
            Verdict::Holds
        } else {
            Verdict::violated(
                "the parent gets the whole item",
                format!("{} bytes of {}", item.len(), params.item_bytes),
            )
        };
        Ok(CaseOutcome::new(verdict, Vec::new()))
    }
}

fn put_item((handle, bytes): (ConnectionHandle, usize)) -> Result<(), ScenarioError> {
    let conn = Connection::adopt(handle)?;
    Ok(conn.send_bytes(&vec![7u8; bytes])?)
}
crate::register_entry!("ipcbench-scenario-put-item", put_item);
