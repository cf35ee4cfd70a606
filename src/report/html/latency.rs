//! Latency per mechanism: a percentile chart and a distribution per family. Its table,
//! bars and curves are also what the process-pool section and the two-run overlay draw,
//! so that one latency looks the same wherever it appears.

use super::format::{cell, chart_html, esc, ratio_cell, unit_cell, Table};
use super::process_pool::is_process_family;
use super::{open_section, Page, Section};
use crate::report::charts::{self, Axis, Chart, Line, Scale, Ticks};
use crate::report::units::Unit;
use crate::results::{Latency, Placement};
use std::fmt::Write as _;

/// The row label of a latency workload within its family's chart.
pub(super) fn latency_label(l: &Latency) -> String {
    if l.message_bytes == 0 {
        // No message (a lock, a process start): the size would only be noise.
        format!("{} · {}", l.flavor, l.placement.label())
    } else {
        format!(
            "{} · {} · {}",
            l.flavor,
            charts::byte_ticks(l.message_bytes as f64),
            l.placement.label()
        )
    }
}

pub(super) fn latency_table(id: &str, items: &[&Latency]) -> Table {
    let mut table = Table::new(
        id,
        vec![
            "workload",
            "placement",
            "bytes",
            "p50",
            "p90",
            "p99",
            "p99.9",
            "max",
            "mean",
            "samples",
            "spread",
            "ratio to calibration",
        ],
    );
    for l in items {
        let p = &l.percentiles;
        table.rows.push((
            l.workload.clone(),
            vec![
                cell("workload", &l.workload),
                cell("placement", l.placement.label()),
                unit_cell("message_bytes", l.message_bytes as f64, Unit::Bytes),
                unit_cell("p50", p.p50, Unit::Nanos),
                unit_cell("p90", p.p90, Unit::Nanos),
                unit_cell("p99", p.p99, Unit::Nanos),
                unit_cell("p999", p.p999, Unit::Nanos),
                unit_cell("max", p.max, Unit::Nanos),
                unit_cell("mean", p.mean, Unit::Nanos),
                unit_cell("samples", p.samples as f64, Unit::Rate),
                unit_cell("spread", l.spread, Unit::Fraction),
                ratio_cell(l.ratio, l.calibration.as_deref()),
            ],
        ));
    }
    table
}

/// p50/p99/p99.9 bars, one group per latency, on a log time axis.
pub(super) fn percentile_chart(
    id: &str,
    title: &str,
    items: &[&Latency],
    labels: &[String],
    category_label: &str,
) -> Result<Chart, String> {
    let pick = |f: fn(&Latency) -> f64| -> Vec<Option<f64>> {
        items.iter().map(|l| Some(f(l) / 1000.0)).collect()
    };
    charts::grouped_bars(
        id,
        title,
        &Axis::new(
            "time per operation (µs, log scale)",
            Scale::Log,
            Ticks::Plain,
        ),
        category_label,
        labels,
        &[
            ("p50".into(), pick(|l| l.percentiles.p50)),
            ("p99".into(), pick(|l| l.percentiles.p99)),
            ("p99.9".into(), pick(|l| l.percentiles.p999)),
        ],
    )
}

fn cdf_chart(id: &str, title: &str, items: &[&Latency]) -> Option<Result<Chart, String>> {
    let lines: Vec<Line> = items
        .iter()
        .filter(|l| !l.cdf.is_empty())
        .map(|l| Line {
            label: latency_label(l),
            points: l.cdf.iter().map(|(ns, f)| (ns / 1000.0, *f)).collect(),
            dashed: l.placement == Placement::SameCpu,
        })
        .collect();
    if lines.is_empty() {
        return None;
    }
    Some(cdf_lines(id, title, &lines))
}

/// A CDF chart of `lines` (points in µs and cumulative fraction): the latency sections'
/// and the two-run overlay's one shape.
pub(super) fn cdf_lines(id: &str, title: &str, lines: &[Line]) -> Result<Chart, String> {
    charts::lines(
        id,
        title,
        &Axis::new(
            "time per operation (µs, log scale)",
            Scale::Log,
            Ticks::Plain,
        ),
        &Axis::new(
            "fraction of operations ≤ time (0–1)",
            Scale::Linear,
            Ticks::Plain,
        ),
        lines,
        None,
        false,
    )
}

/// Groups by family, keeping the order of first appearance.
fn by_family<'a, T>(
    items: impl Iterator<Item = &'a T>,
    family: fn(&T) -> &str,
) -> Vec<(String, Vec<&'a T>)>
where
    T: 'a,
{
    let mut groups: Vec<(String, Vec<&T>)> = Vec::new();
    for item in items {
        let f = family(item).to_string();
        match groups.iter_mut().find(|(g, _)| *g == f) {
            Some((_, list)) => list.push(item),
            None => groups.push((f, vec![item])),
        }
    }
    groups
}

pub(super) fn section(page: &Page) -> String {
    let items = page
        .results
        .latency
        .iter()
        .filter(|l| !is_process_family(&l.family));
    let groups = by_family(items, |l: &Latency| &l.family);
    let mut out = open_section(
        page,
        Section::Latency,
        groups.is_empty(),
        "Time per operation between real processes — a ping-pong round trip for message \
         passing, a lock+unlock for locks — one chart pair per mechanism. Bars: p50, p99 and \
         p99.9; curve: the whole distribution (the share of operations at or under a time). \
         Dashed curves: both processes on one CPU. Lower and further left is faster.",
    );
    for (family, items) in &groups {
        let _ = write!(out, "<h3 id=\"latency-{0}\">{0}</h3>", esc(family));
        let labels: Vec<String> = items.iter().map(|l| latency_label(l)).collect();
        let bars = percentile_chart(
            &format!("latency-{family}"),
            &format!("{family}: latency percentiles"),
            items,
            &labels,
            "flavor · message size · placement",
        );
        let table = latency_table(&format!("table-latency-{family}"), items);
        // The two charts side by side, the table under them (it is wide).
        let mut charts = chart_html(bars);
        if let Some(cdf) = cdf_chart(
            &format!("cdf-{family}"),
            &format!("{family}: latency distribution (CDF)"),
            items,
        ) {
            charts.push_str(&chart_html(cdf));
        }
        let _ = write!(
            out,
            "<div class=\"pair\">{charts}</div><div class=\"table\">{}</div>",
            table.html()
        );
    }
    out.push_str("</section>");
    out
}
