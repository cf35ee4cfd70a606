//! The mechanisms under test, one module per family with its flavors inside, and the
//! shared pieces they are built from (frames, futexes, shared memory).

#![warn(missing_docs)]

pub mod filestore;
pub mod frame;
pub mod lock;
pub mod manager;
pub mod pipe;
pub mod pool;
pub mod queue;
pub mod sync;

// The primitives moved below this layer (to `sys`), kept at their old paths.
pub use crate::sys::{futex, shm};
