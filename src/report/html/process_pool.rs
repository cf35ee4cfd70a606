//! Process start and pool costs. These are costs of processes, not of message passing,
//! so the other sections leave these families out and this one gathers them.

use super::format::pair;
use super::latency::{latency_table, percentile_chart};
use super::throughput::throughput_table;
use super::{open_section, Page, Section};
use crate::results::{Latency, Throughput};

/// Families whose latencies are costs of processes and pools rather than message passing.
const PROCESS_FAMILIES: [&str; 2] = ["process", "pool"];

pub(super) fn is_process_family(family: &str) -> bool {
    PROCESS_FAMILIES.contains(&family)
}

pub(super) fn section(page: &Page) -> String {
    let r = page.results;
    let latencies: Vec<&Latency> = r
        .latency
        .iter()
        .filter(|l| is_process_family(&l.family))
        .collect();
    let throughputs: Vec<&Throughput> = r
        .throughput
        .iter()
        .filter(|t| is_process_family(&t.family))
        .collect();
    let mut out = open_section(
        page,
        Section::ProcessPool,
        latencies.is_empty() && throughputs.is_empty(),
        "What it costs to start and join a process (by start method), and to run a task on a \
         pool compared with a process per task. Shorter is cheaper.",
    );
    if !latencies.is_empty() {
        let labels: Vec<String> = latencies
            .iter()
            .map(|l| format!("{}/{} · {}", l.family, l.flavor, l.placement.label()))
            .collect();
        let chart = percentile_chart(
            "process-pool",
            "Process start+join and pool task costs",
            &latencies,
            &labels,
            "family/flavor · placement",
        );
        out.push_str(&pair(
            chart,
            &latency_table("table-process-pool", &latencies),
        ));
    }
    if !throughputs.is_empty() {
        out.push_str("<h3>Tasks per second</h3>");
        out.push_str(&throughput_table("table-process-pool-throughput", &throughputs).html());
    }
    out.push_str("</section>");
    out
}
