//! `pipe-end-signal`: a reader reads until end of stream. End of stream comes only when
//! every write end is closed; a process that keeps an unused write end open (the parent,
//! or a sibling that inherited it) keeps the reader waiting forever: caught as Hung,
//! naming the reader and the system call it waits in.

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

pub(crate) struct PipeEndSignal;

/// Who keeps the unused write end open (in `write-end-leaked`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Leaker {
    Parent,
    Sibling,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Params {
    pub(crate) messages: u32,
    pub(crate) leaker: Leaker,
}

const VARIANTS: &[Variant] = &[
    Variant::caught_hung(
        "write-end-leaked",
        "a process keeps an unused write end open: the reader never sees EOF",
        &["poll", "read"],
    ),
    Variant::holds(
        "ends-closed",
        "every unused end closed: the reader gets EOF",
    ),
];

impl Scenario for PipeEndSignal {
    fn name(&self) -> &'static str {
        "pipe-end-signal"
    }
    fn about(&self) -> &'static str {
        "a reader reads a pipe until end of stream"
    }
    fn variants(&self) -> &'static [Variant] {
        VARIANTS
    }
    fn deadline(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn cases(&self, _variant: &str) -> BoxedStrategy<Case> {
        (
            0u32..=4,
            prop_oneof![Just(Leaker::Parent), Just(Leaker::Sibling)],
        )
            .prop_map(|(messages, leaker)| {
                Case::new(&Params { messages, leaker }, Schedule::default())
            })
            .boxed()
    }

    fn run(
        &self,
        variant: &str,
        case: &Case,
        context: &CaseContext,
    ) -> Result<CaseOutcome, ScenarioError> {
        let params: Params = case.params()?;
        let leaked = super::is_unsafe_variant(self, variant)?;
        let (read_end, mut write_end) = pipe(PipeKind::Simplex)?;
        let r = read_end.handle()?;
        let w = write_end.handle()?;
        let mut children = vec![
            start_worker("ipcbench-scenario-eof-reader", "reader", &r, &[r.fd])?,
            start_worker(
                "ipcbench-scenario-eof-writer",
                "writer",
                &(w, params.messages),
                &[w.fd],
            )?,
        ];
        if leaked && params.leaker == Leaker::Sibling {
            children.push(start_worker(
                "ipcbench-scenario-eof-bystander",
                "sibling holding the write end",
                &w,
                &[w.fd],
            )?);
        }
        drop(read_end);
        let _kept = if leaked && params.leaker == Leaker::Parent {
            Some(write_end)
        } else {
            write_end.close();
            None
        };
        let joined = join_workers(&mut children, context.deadline, None);
        let got: Vec<u32> = match joined {
            Joined::Verdict(v) => return Ok(CaseOutcome::new(v, Vec::new())),
            Joined::Finished(mut r) => {
                r.truncate(1);
                results(r)?
            }
        };
        let verdict = if got[0] == params.messages {
            Verdict::Holds
        } else {
            Verdict::violated(
                "the reader gets every message, then end of stream",
                format!("{} of {} messages", got[0], params.messages),
            )
        };
        Ok(CaseOutcome::new(verdict, Vec::new()))
    }
}

/// Reads messages until end of stream (each wait bounded by the pipe's default timeout,
/// far beyond the case's deadline); returns how many arrived.
fn reader(handle: ConnectionHandle) -> Result<u32, ScenarioError> {
    let conn = Connection::adopt(handle)?;
    let mut count = 0;
    loop {
        match conn.recv::<u32>() {
            Ok(_) => count += 1,
            Err(e) if e.is_eof() => return Ok(count),
            Err(e) => return Err(format!("reader: {e}").into()),
        }
    }
}
crate::register_entry!("ipcbench-scenario-eof-reader", reader);

fn writer((handle, messages): (ConnectionHandle, u32)) -> Result<(), ScenarioError> {
    let conn = Connection::adopt(handle)?;
    for i in 0..messages {
        conn.send(&i)?;
    }
    Ok(())
}
crate::register_entry!("ipcbench-scenario-eof-writer", writer);

/// Holds an inherited write end it never uses, as a sibling that was not told to close it.
fn bystander(handle: ConnectionHandle) -> Result<(), ScenarioError> {
    let _conn = Connection::adopt(handle)?;
    std::thread::sleep(Duration::from_secs(30));
    Ok(())
}
crate::register_entry!("ipcbench-scenario-eof-bystander", bystander);
