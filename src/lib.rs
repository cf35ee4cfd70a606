//! ipcbench measures and stress-tests inter-process communication on Linux: the
//! mechanisms of Python's `multiprocessing`, rebuilt over real OS processes.
//!
//! The layout follows the architecture: [`process`] runs code in real children;
//! [`ipc`] holds the mechanisms under test, one module per family with its flavors
//! inside; [`programs`] the programs built on them that the harnesses run (the queue's
//! producer-consumer, the echo servers); [`schedule`] forces interleavings across
//! processes; [`scenario`] holds the race scenarios and their oracles; [`measure`] the
//! latency and throughput workloads and their calibration; [`stress`] the fault-injection
//! runs; [`results`] the one schema they all write; [`report`] the charts, HTML and the CI
//! gate. [`sys`] holds the primitives below them all (shared memory, futexes). Dependencies
//! point down only: `process` ← `sys` ← `schedule` ← `ipc` ← `programs` ← `measure` /
//! `scenario` / `stress` ← `report` ← `cli`.

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod cli;
pub mod conformance;
pub mod ipc;
pub mod measure;
pub mod process;
pub mod programs;
pub mod report;
pub mod results;
pub mod scenario;
pub mod schedule;
pub mod stress;
pub mod sys;
