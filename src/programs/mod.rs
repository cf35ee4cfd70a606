//! Harness programs: multi-process programs built *on* the mechanisms, which the harnesses
//! run as they are rather than measure or judge as mechanisms. They sit above `ipc` so
//! that a mechanism's module holds only the mechanism, and below the harnesses that run
//! them (`scenario`, `conformance`, `measure`).
//!
//! Their children find their entry points by the names registered here
//! (`register_entry!`), so a name is part of the program's contract, not of its path.

#![warn(missing_docs)]

pub mod pool_echo;
pub mod queue;
