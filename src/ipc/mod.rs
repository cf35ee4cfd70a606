//! The mechanisms under test, one module per family with its flavors inside, and the
//! shared pieces they are built from (frames, futexes, shared memory).

pub mod filestore;
pub mod frame;
pub mod futex;
pub mod lock;
pub mod manager;
pub mod pipe;
pub mod pool;
pub mod queue;
pub mod shm;
pub mod sync;
