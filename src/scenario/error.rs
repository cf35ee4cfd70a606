//! Why a case could not be run or judged — as opposed to a [`super::Verdict`], which is
//! what the mechanism did. Each variant keeps the error it came from as its source, so a
//! caller (the CLI, with `anyhow`) can print the whole chain.

use crate::ipc::filestore::StoreError;
use crate::ipc::lock::LockError;
use crate::ipc::manager::ManagerError;
use crate::ipc::pipe::PipeError;
use crate::ipc::pool::PoolError;
use crate::ipc::queue::QueueError;
use crate::ipc::sync::SyncError;
use crate::process::ProcessError;
use crate::programs::queue::RunError;
use crate::schedule::ScheduleError;

/// The error of a scenario's body and of the processes it starts. The mechanism errors
/// are transparent: the message is theirs, and so is the source chain.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// Starting, joining or collecting a worker process failed.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// The turnstile could not be made or a forced step not taken.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// A queue operation failed outside what the scenario judges.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The producer-consumer program could not run its plan.
    #[error(transparent)]
    QueueProgram(#[from] RunError),
    /// A pipe operation failed outside what the scenario judges.
    #[error(transparent)]
    Pipe(#[from] PipeError),
    /// A lock operation failed outside what the scenario judges.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// A semaphore, event or barrier operation failed outside what the scenario judges.
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// The file store could not be created or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The Manager server or a client failed outside what the scenario judges.
    #[error(transparent)]
    Manager(#[from] ManagerError),
    /// The pool failed outside what the scenario judges.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// A file, pipe or socket the body set up failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A case's parameters that are not the scenario's parameter type.
    #[error("bad parameters {params}")]
    Params {
        /// The parameters as JSON text.
        params: String,
        /// Why they do not decode into the scenario's type.
        #[source]
        source: serde_json::Error,
    },
    /// A child's report that did not decode.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// The scenario's own finding of a broken run (a child that reported an impossible
    /// figure, a missing variant), or an error that crossed a process boundary as text.
    #[error("{0}")]
    Failed(String),
}

impl From<String> for ScenarioError {
    fn from(text: String) -> Self {
        ScenarioError::Failed(text)
    }
}

impl From<&str> for ScenarioError {
    fn from(text: &str) -> Self {
        ScenarioError::Failed(text.to_string())
    }
}

impl From<nix::Error> for ScenarioError {
    fn from(e: nix::Error) -> Self {
        ScenarioError::Io(e.into())
    }
}

pub(crate) use crate::process::entry::chain;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{Case, Schedule};

    #[test]
    fn a_cause_stays_typed_and_its_text_reaches_the_chain() {
        let full: ScenarioError = QueueError::Full.into();
        assert!(matches!(full, ScenarioError::Queue(QueueError::Full)));
        assert_eq!(chain(&full), QueueError::Full.to_string());

        let case = Case::new(&"not a number", Schedule::new(Vec::new()));
        let bad = case.params::<u32>().unwrap_err();
        let source = std::error::Error::source(&bad).expect("the decode error is kept");
        assert!(source.is::<serde_json::Error>());
        let text = chain(&bad);
        assert!(
            text.starts_with("bad parameters \"not a number\": "),
            "{text}"
        );
        assert!(text.ends_with(&source.to_string()), "{text}");
    }
}
