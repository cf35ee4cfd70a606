//! Why a peer could not be found, started, or asked for a repeat.
//!
//! Each message is whole on its own — the peer's name, what it was doing, how it ended and
//! the end of its stderr — because it is what `bench` prints and what a failed workload
//! records, word for word. Where an error of the system or of the JSON parser is the
//! cause, it is in the message and is also the [`source`](std::error::Error::source).

use std::path::PathBuf;
use std::time::Duration;

/// The error of a peer's lane and session.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// `--peer NAME` names no peer.
    #[error("--peer {name}: no such peer; the known peers are: {}", known.join(", "))]
    Unknown {
        /// The name given.
        name: String,
        /// The peers there are.
        known: Vec<&'static str>,
    },
    /// The peer's interpreter is not there (starting it failed with "no such file").
    #[error("{program} not found")]
    Missing {
        /// The program that was not found.
        program: String,
    },
    /// The session's temp directory could not be made.
    #[error("{peer}: cannot create a temp directory: {source}")]
    TempDir {
        /// The peer.
        peer: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The shipped script could not be written into the session's directory.
    #[error("{peer}: cannot write {}: {source}", path.display())]
    Script {
        /// The peer.
        peer: String,
        /// Where it was to go.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The peer's program could not be started.
    #[error("{peer}: cannot start {program}: {source}")]
    Spawn {
        /// The peer.
        peer: String,
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The thread that reads the peer's answers could not be started.
    #[error("{peer}: cannot start a reader thread: {source}")]
    Reader {
        /// The peer.
        peer: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A request to a session that has already ended (killed at a bound, or dead).
    #[error("{peer}: the peer has already ended")]
    Ended {
        /// The peer.
        peer: String,
    },
    /// A request could not be written to the peer: it had ended.
    #[error("{peer}: cannot send {doing} to the peer ({source}): {death}")]
    Send {
        /// The peer.
        peer: String,
        /// The request (a workload's name, "hello").
        doing: String,
        /// The write's error.
        #[source]
        source: std::io::Error,
        /// How the peer ended, with the end of its stderr.
        death: String,
    },
    /// The peer died while it ran a request.
    #[error("{peer}: the peer died while running {doing}: {death}")]
    Died {
        /// The peer.
        peer: String,
        /// The request.
        doing: String,
        /// How the peer ended, with the end of its stderr.
        death: String,
    },
    /// The peer answered with a line that is not JSON; it was killed.
    #[error(
        "{peer}: while running {doing}, the peer wrote a line that is not JSON ({source}): \
         {line:?}{stderr}"
    )]
    NotJson {
        /// The peer.
        peer: String,
        /// The request.
        doing: String,
        /// The line (its start).
        line: String,
        /// The end of the peer's stderr ("" when it wrote nothing).
        stderr: String,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// The peer did not answer within the bound; its process group was killed.
    #[error(
        "{peer}: {doing} did not finish within {:.0} s; killed the peer's process group. \
         Blocked: {blocked}{stacks_and_stderr}",
        bound.as_secs_f64()
    )]
    Stalled {
        /// The peer.
        peer: String,
        /// The request.
        doing: String,
        /// The bound it had.
        bound: Duration,
        /// Each process of the peer's group and what it was blocked in.
        blocked: String,
        /// Their Python stacks, then the end of the peer's stderr from before the stacks
        /// were asked for.
        stacks_and_stderr: String,
    },
    /// The peer ran the workload and says it failed.
    #[error("{peer}: {workload} failed in the peer: {error}{stderr}")]
    Failed {
        /// The peer.
        peer: String,
        /// The workload.
        workload: String,
        /// The peer's own words.
        error: String,
        /// The end of the peer's stderr.
        stderr: String,
    },
    /// The peer's answer does not say what the protocol wants (a hello without its
    /// version, a sample that is not a count of ns, ...).
    #[error("{peer}: {}{problem}", doing.as_ref().map(|d| format!("{d}: ")).unwrap_or_default())]
    Answer {
        /// The peer.
        peer: String,
        /// The workload asked for, when the answer was to one.
        doing: Option<String>,
        /// What is wrong with the answer.
        problem: String,
    },
}

impl PeerError {
    /// The peer's interpreter or program is missing: a reason to skip the lane, not a
    /// failure of it.
    pub fn is_missing(&self) -> bool {
        matches!(self, PeerError::Missing { .. })
    }
}
