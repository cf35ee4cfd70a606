//! Why a stress run could not set up a target, start a worker, or why a worker gave up —
//! as opposed to what the books record (report errors, [`super::Event::Failed`], hang
//! descriptions), which are findings about the mechanism and stay text.
//!
//! The mechanism errors are transparent: the message is theirs, and so is the source
//! chain. Where a worker adds what it was doing ([`StressError::At`]), the cause is the
//! source and not repeated in the message; [`StressError::chain`] is the text with every
//! cause, which is what the run writes in its books and what a worker's parent receives.

use crate::ipc::filestore::StoreError;
use crate::ipc::lock::LockError;
use crate::ipc::manager::ManagerError;
use crate::ipc::pipe::PipeError;
use crate::ipc::pool::PoolError;
use crate::ipc::queue::QueueError;
use crate::ipc::sync::SyncError;
use crate::process::ProcessError;

/// The error of a stress target's setup, of its worker processes and of the run's own
/// arguments.
#[derive(Debug, thiserror::Error)]
pub enum StressError {
    /// Starting, joining or collecting a worker process failed.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// A queue could not be created or opened, or an operation on it failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// A pipe could not be made or adopted, or an operation on it failed.
    #[error(transparent)]
    Pipe(#[from] PipeError),
    /// A lock could not be made or opened, or an acquire or release failed.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// A semaphore, event or barrier could not be made or opened, or an operation failed.
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// The file store could not be made, opened, locked, read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The Manager server could not start or a client call failed.
    #[error(transparent)]
    Manager(#[from] ManagerError),
    /// The pool could not start or a submission failed.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// A shared-memory segment (the progress board, a target's cells), a thread or a file
    /// could not be made or opened.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A handle that did not serialize or deserialize.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A worker's operation that failed, named with what the books need to place it (the
    /// round, the sequence number); the cause is the source.
    #[error("{op}")]
    At {
        /// What was being done, e.g. "send of seq 12".
        op: String,
        /// Why it failed.
        #[source]
        source: Box<StressError>,
    },
    /// A run argument that does not parse, an unknown target, a process count the target
    /// cannot run.
    #[error("{0}")]
    Invalid(String),
    /// A target's own finding with no error under it (a notice too large to publish, a
    /// queue that gave back an item of another round).
    #[error("{0}")]
    Failed(String),
}

impl StressError {
    /// Names what failed (`op`) over its cause: the books then say which round or message.
    pub(crate) fn at(op: impl Into<String>, source: impl Into<StressError>) -> StressError {
        StressError::At {
            op: op.into(),
            source: Box::new(source.into()),
        }
    }

    /// The message with every cause under it, `: `-separated: the text the run writes in
    /// its books, where a plain `to_string` would drop the cause of an [`StressError::At`].
    pub fn chain(&self) -> String {
        crate::process::entry::chain(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operation_keeps_its_cause_as_source_and_in_its_chain() {
        let e = StressError::at("round 3: put of item 5", QueueError::Full);
        assert_eq!(e.to_string(), "round 3: put of item 5");
        let source = std::error::Error::source(&e).expect("a source");
        assert_eq!(source.to_string(), "queue is full");
        assert_eq!(e.chain(), "round 3: put of item 5: queue is full");
    }

    #[test]
    fn a_mechanism_error_reads_as_its_own() {
        let e = StressError::from(PipeError::PeerGone);
        assert_eq!(e.to_string(), PipeError::PeerGone.to_string());
        assert_eq!(e.chain(), PipeError::PeerGone.to_string());
        assert!(matches!(e, StressError::Pipe(PipeError::PeerGone)));
    }
}
