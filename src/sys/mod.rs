//! The system primitives every layer above shares: shared-memory segments and futexes.
//! Below `schedule` and `ipc` (both use them), above only `process` (for the hygiene
//! registry), so the module graph has no cycle.

#![warn(missing_docs)]

pub mod futex;
pub mod shm;
