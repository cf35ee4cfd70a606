//! Why a conformance check failed: the flavor broke the check's rule ([`ConformanceError::Broken`],
//! a finding), or an operation the check needed failed — kept as the source, under what the
//! check was doing, so the verdict says both.

use crate::ipc::queue::QueueError;
use crate::process::ProcessError;
use crate::programs::queue::RunError;

/// A failed check.
#[derive(Debug, thiserror::Error)]
pub enum ConformanceError {
    /// The flavor broke the check's rule: what it did instead.
    #[error("{0}")]
    Broken(String),
    /// An operation of the check failed, named with what the check was doing ("create",
    /// "get 3"); the cause is the source.
    #[error("{op}")]
    At {
        /// What the check was doing.
        op: String,
        /// Why it failed.
        #[source]
        source: Box<ConformanceError>,
    },
    /// A queue operation failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// A helper process could not be started, joined or collected, or reported an error.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// The producer-consumer program could not run its plan.
    #[error(transparent)]
    Program(#[from] RunError),
    /// The check passed but left something behind (a shared-memory name, a temp file, an
    /// fd, a process): what a user's flavor most easily gets wrong.
    #[error("left behind: {}", .0.join(", "))]
    Leaked(Vec<String>),
}

impl ConformanceError {
    /// Names what the check was doing (`op`) over the error that stopped it.
    pub(crate) fn at(op: impl Into<String>, source: impl Into<ConformanceError>) -> Self {
        ConformanceError::At {
            op: op.into(),
            source: Box::new(source.into()),
        }
    }

    /// The message with every cause under it, `: `-separated: what a verdict prints, where
    /// a plain `to_string` would drop the cause of an [`ConformanceError::At`].
    pub fn chain(&self) -> String {
        crate::process::entry::chain(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_operation_prints_what_the_check_did_and_why() {
        let e = ConformanceError::at("get 3", QueueError::Empty);
        assert_eq!(e.to_string(), "get 3");
        assert_eq!(
            std::error::Error::source(&e).map(ToString::to_string),
            Some("queue is empty".to_string())
        );
        assert_eq!(e.chain(), "get 3: queue is empty");
        let leaked = ConformanceError::Leaked(vec!["/dev/shm/a".into(), "fd 9".into()]);
        assert_eq!(leaked.chain(), "left behind: /dev/shm/a, fd 9");
    }
}
