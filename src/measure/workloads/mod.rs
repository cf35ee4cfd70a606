//! One definition of each measured workload, shared by the criterion benches and by
//! `ipcbench bench`: each takes an iteration count and returns the time those iterations
//! took, with spawning and setup outside the timed part.

pub mod process;
