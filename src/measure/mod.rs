//! Latency histograms, throughput, and calibration against raw baselines.

pub mod workloads;
