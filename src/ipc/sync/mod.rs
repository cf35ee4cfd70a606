//! Semaphore, Event and Barrier in shared memory with futex waits, each openable by name
//! from processes that did not create it (as Python's `multiprocessing` equivalents are
//! inherited or pickled). Every wait is bounded by a timeout.

pub(crate) mod barrier;
pub(crate) mod event;
pub mod semaphore;

pub use barrier::Barrier;
pub use event::Event;
pub use semaphore::Semaphore;

use crate::sys::shm::{Shared, ShmSafe};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Why a semaphore, event or barrier operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// A wait outlived its bound.
    #[error("{what} {name}: not done within {timeout:?}")]
    Timeout {
        /// "semaphore", "event" or "barrier".
        what: &'static str,
        /// Its shared-memory name.
        name: String,
        /// The bound that passed.
        timeout: Duration,
    },
    /// A bounded semaphore released past its initial value (Python's ValueError).
    #[error("semaphore {name}: released more times than acquired (value would exceed its bound {bound})")]
    ReleasedTooMany {
        /// Its shared-memory name.
        name: String,
        /// Its initial value, which the value may not exceed.
        bound: u32,
    },
    /// The barrier broke (an abort, a timeout, a dead party), for good.
    #[error("barrier {name} is broken: {reason}")]
    Broken {
        /// Its shared-memory name.
        name: String,
        /// Why it broke.
        reason: String,
    },
    /// The segment could not be opened, or holds another kind of primitive.
    #[error("cannot open {what} {name}: {message}")]
    Open {
        /// The kind asked for.
        what: &'static str,
        /// The name given.
        name: String,
        /// What failed.
        message: String,
    },
    /// An argument out of range (a barrier of 0 parties, …).
    #[error("{0}")]
    Invalid(String),
}

/// A primitive's state type: starts with a `ready` word holding its own tag, so that
/// opening a segment of another kind, or one not yet initialised, is refused.
pub(crate) trait Tagged: ShmSafe {
    const WHAT: &'static str;
    const TAG: u32;
    fn ready(&self) -> &AtomicU32;
}

pub(crate) fn create_state<T: Tagged>(init: impl FnOnce(&T)) -> Result<Shared<T>, SyncError> {
    let state: Shared<T> = Shared::create(T::WHAT, 0).map_err(|e| SyncError::Open {
        what: T::WHAT,
        name: "(new)".into(),
        message: e.to_string(),
    })?;
    init(&state);
    state.ready().store(T::TAG, Ordering::Release);
    Ok(state)
}

pub(crate) fn open_state<T: Tagged>(name: &str) -> Result<Shared<T>, SyncError> {
    let open_error = |message: String| SyncError::Open {
        what: T::WHAT,
        name: name.to_string(),
        message,
    };
    let state: Shared<T> = Shared::open(name).map_err(|e| open_error(e.to_string()))?;
    if state.ready().load(Ordering::Acquire) != T::TAG {
        return Err(open_error(format!("it is not an initialised {}", T::WHAT)));
    }
    Ok(state)
}
