//! Throughput against message size, one producer to one consumer. Its table and labels
//! are also the scaling and process-pool sections'.

use super::format::{cell, pair, ratio_cell, unit_cell, Table};
use super::process_pool::is_process_family;
use super::{open_section, Page, Section};
use crate::report::charts::{self, Axis, Line, Scale, Ticks};
use crate::report::units::Unit;
use crate::results::Throughput;

pub(super) fn throughput_table(id: &str, items: &[&Throughput]) -> Table {
    let mut table = Table::new(
        id,
        vec![
            "workload",
            "processes",
            "bytes",
            "msgs/s",
            "bandwidth",
            "spread",
            "ratio to calibration",
        ],
    );
    for t in items {
        table.rows.push((
            t.workload.clone(),
            vec![
                cell("workload", &t.workload),
                cell("config", &processes_label(t.producers, t.consumers)),
                unit_cell("message_bytes", t.message_bytes as f64, Unit::Bytes),
                unit_cell("msgs_per_sec", t.msgs_per_sec, Unit::Rate),
                unit_cell("bytes_per_sec", t.bytes_per_sec, Unit::BytesPerSec),
                unit_cell("spread", t.spread, Unit::Fraction),
                ratio_cell(t.ratio, t.calibration.as_deref()),
            ],
        ));
    }
    table
}

/// "2×2" for producers × consumers; "4 procs" for processes that all do the same (a lock
/// contended by 4, recorded with no consumers).
pub(super) fn processes_label(producers: u32, consumers: u32) -> String {
    if consumers == 0 {
        format!("{producers} proc{}", if producers == 1 { "" } else { "s" })
    } else {
        format!("{producers}×{consumers}")
    }
}

pub(super) fn flavor_key(t: &Throughput) -> String {
    format!("{}/{}", t.family, t.flavor)
}

pub(super) fn section(page: &Page) -> String {
    let items: Vec<&Throughput> = page
        .results
        .throughput
        .iter()
        .filter(|t| t.producers == 1 && t.consumers == 1 && !is_process_family(&t.family))
        .collect();
    let mut out = open_section(
        page,
        Section::Throughput,
        items.is_empty(),
        "One producer streaming to one consumer, by message size (both axes logarithmic), one \
         line per mechanism flavor. Higher is faster.",
    );
    if items.is_empty() {
        out.push_str("</section>");
        return out;
    }
    let mut lines: Vec<Line> = Vec::new();
    for t in &items {
        let key = flavor_key(t);
        let point = (t.message_bytes as f64, t.bytes_per_sec / 1_048_576.0);
        match lines.iter_mut().find(|l| l.label == key) {
            Some(line) => line.points.push(point),
            None => lines.push(Line {
                label: key,
                points: vec![point],
                dashed: false,
            }),
        }
    }
    for line in &mut lines {
        line.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let chart = charts::lines(
        "throughput",
        "Throughput against message size (1 producer → 1 consumer)",
        &Axis::new("message size (bytes, log scale)", Scale::Log, Ticks::Bytes),
        &Axis::new("throughput (MiB/s, log scale)", Scale::Log, Ticks::Plain),
        &lines,
        None,
        true,
    );
    out.push_str(&pair(chart, &throughput_table("table-throughput", &items)));
    out.push_str("</section>");
    out
}
