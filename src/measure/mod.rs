//! Latency histograms, throughput, and calibration against raw baselines.
//!
//! * [`workloads`]: one definition of each measured workload, shared by the criterion
//!   benches and `ipcbench bench`.
//! * [`calibration`]: the raw baselines every figure is divided by.
//! * [`registry`]: the catalogue `ipcbench bench` runs (names, kinds, placements, which
//!   calibration divides what, quick and full sizes).
//! * [`runner`]: repeats, histograms and ratios into the results model.
//! * [`histogram`]: distributions and the statistics on them.
//! * [`topology`]: CPU topology from sysfs and the class of each pair of CPUs.
//! * [`matrix`]: the core-to-core latency matrix over those pairs.

#![warn(missing_docs)]

pub mod calibration;
mod error;
pub mod histogram;
pub mod machine;
pub mod matrix;
pub mod peer;
pub mod registry;
pub mod runner;
pub mod topology;
pub mod twins;
pub mod workloads;

pub use error::MeasureError;
