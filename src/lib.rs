//! ipcbench measures and stress-tests inter-process communication on Linux: the
//! mechanisms of Python's `multiprocessing`, rebuilt over real OS processes.
//!
//! The layout follows the architecture: [`process`] runs code in real children;
//! [`ipc`] holds the mechanisms under test, one module per family with its flavors
//! inside; [`schedule`] forces interleavings across processes; [`scenario`] holds the race
//! scenarios and their oracles; [`measure`] the latency and throughput workloads and their
//! calibration; [`report`] the results model, charts and HTML.

pub mod cli;
pub mod ipc;
pub mod measure;
pub mod process;
pub mod report;
pub mod scenario;
pub mod schedule;
pub mod stress;
