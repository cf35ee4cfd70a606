//! Why a workload's or a baseline's helper process gave up — as opposed to a figure, or
//! the reason a ratio is missing, which are results and stay text in the results file.
//!
//! The mechanism errors are transparent: the message is theirs, and so is the source
//! chain. Where the helper adds what it was doing ([`MeasureError::At`]), the cause is the
//! source; the parent receives the whole chain as text (`register_entry!`).

use crate::ipc::filestore::StoreError;
use crate::ipc::lock::LockError;
use crate::ipc::manager::ManagerError;
use crate::ipc::pipe::PipeError;
use crate::ipc::pool::PoolError;
use crate::ipc::queue::QueueError;
use crate::ipc::sync::SyncError;
use crate::process::ProcessError;

/// The error of a measured workload's helper processes.
#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    /// Starting, joining or collecting a helper process failed.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// A queue could not be opened or an operation on it failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// A pipe end could not be adopted or an operation on it failed.
    #[error(transparent)]
    Pipe(#[from] PipeError),
    /// A lock could not be opened, acquired or released.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// A semaphore, event or barrier could not be opened or an operation failed.
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// The file store could not be opened, locked, read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A Manager client could not connect or a call failed.
    #[error(transparent)]
    Manager(#[from] ManagerError),
    /// The pool failed.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// A shared-memory segment could not be opened, or a raw read or write on an fd failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A helper's operation that failed, named with what it was doing ("sender write",
    /// "stream go"); the cause is the source.
    #[error("{op}")]
    At {
        /// What the helper was doing.
        op: String,
        /// Why it failed.
        #[source]
        source: Box<MeasureError>,
    },
    /// A helper's own finding with no error under it (a peer that never signalled, a
    /// message of the wrong size).
    #[error("{0}")]
    Failed(String),
}

impl MeasureError {
    /// Names what the helper was doing (`op`) over the error that stopped it.
    pub(crate) fn at(op: impl Into<String>, source: impl Into<MeasureError>) -> Self {
        MeasureError::At {
            op: op.into(),
            source: Box::new(source.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_helper_error_reaches_the_parent_with_its_cause() {
        let io = std::io::Error::from_raw_os_error(libc::EPIPE);
        let e = MeasureError::at("sender write", io);
        assert_eq!(e.to_string(), "sender write");
        let text = crate::process::entry::chain(&e);
        assert!(text.starts_with("sender write: "), "{text}");
        assert!(text.contains("pipe"), "{text}");
    }
}
