//! Two runs side by side: each latency workload's distribution in the baseline and in this
//! run, overlaid, with the change of its percentiles marked against the baseline's noise
//! band — the page a reviewer opens on a pull request (as criterion's change plots).

use super::format::{cell, chart_html, esc, unit_cell, Table};
use super::latency::{cdf_lines, latency_label};
use crate::report::charts::{self, Axis, Chart, Line, Scale, Ticks};
use crate::report::units::{human, Unit};
use crate::results::{Latency, Results};
use std::fmt::Write as _;

/// A change smaller than this is never called one, whatever the recorded spread.
const MIN_CHANGE: f64 = 0.05;

/// How a workload moved from the baseline to this run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Move {
    Slower,
    Faster,
    WithinNoise,
}

impl Move {
    fn marker(self) -> &'static str {
        match self {
            Move::Slower => "▲ slower",
            Move::Faster => "▼ faster",
            Move::WithinNoise => "= within noise",
        }
    }
}

/// The relative change of the median and whether it leaves the noise band (the
/// baseline's recorded spread, at least [`MIN_CHANGE`]).
pub(crate) fn change(before: &Latency, after: &Latency) -> (f64, f64, Move) {
    let change = after.percentiles.p50 / before.percentiles.p50 - 1.0;
    let band = before.spread.max(MIN_CHANGE);
    let moved = if !change.is_finite() || change.abs() <= band {
        Move::WithinNoise
    } else if change > 0.0 {
        Move::Slower
    } else {
        Move::Faster
    };
    (change, band, moved)
}

/// The id of a workload's overlay chart (the page's links to it use this).
pub(crate) fn chart_id(workload: &str) -> String {
    format!("overlay-{}", workload.replace('/', "-"))
}

fn overlay_chart(before: &Latency, after: &Latency) -> String {
    let label = latency_label(after);
    let lines = vec![
        Line {
            label: format!("baseline · {label}"),
            points: before.cdf.iter().map(|(ns, f)| (ns / 1000.0, *f)).collect(),
            dashed: true,
        },
        Line {
            label: format!("this run · {label}"),
            points: after.cdf.iter().map(|(ns, f)| (ns / 1000.0, *f)).collect(),
            dashed: false,
        },
    ];
    let cdf = chart_html(cdf_lines(
        &chart_id(&after.workload),
        &after.workload,
        &lines,
    ));
    format!("{cdf}{}", chart_html(percentile_bars(before, after)))
}

/// The percentiles before and after as bars side by side, the median's change and its
/// noise band in the title: the tail's move read at a glance, beside the CDFs.
fn percentile_bars(before: &Latency, after: &Latency) -> Result<Chart, String> {
    let (change, band, moved) = change(before, after);
    let pick = |l: &Latency| {
        let p = &l.percentiles;
        [p.p50, p.p90, p.p99, p.p999]
            .iter()
            .map(|ns| Some(ns / 1000.0))
            .collect::<Vec<_>>()
    };
    charts::grouped_bars(
        &format!("overlay-bars-{}", after.workload.replace('/', "-")),
        // The workload is in the CDF's title beside it; this one must fit the chart.
        &format!(
            "Percentiles: median {:+.1} %, {} (noise ±{})",
            change * 100.0,
            moved.marker(),
            human(band, Unit::Fraction)
        ),
        &Axis::new(
            "time per operation (µs, log scale)",
            Scale::Log,
            Ticks::Plain,
        ),
        "percentile",
        &PERCENTILES.map(String::from),
        &[
            ("baseline".to_string(), pick(before)),
            ("this run".to_string(), pick(after)),
        ],
    )
}

/// The percentiles the bars show.
const PERCENTILES: [&str; 4] = ["p50", "p90", "p99", "p99.9"];

/// The latency workloads whose distributions the section draws: those that moved beyond
/// their noise band, and those the gate calls regressed (`regressed`, by workload name).
pub(crate) fn drawn(baseline: &Results, current: &Results, regressed: &[&str]) -> Vec<String> {
    current
        .latency
        .iter()
        .filter(|after| !after.cdf.is_empty())
        .filter_map(|after| {
            let before = baseline
                .latency
                .iter()
                .find(|b| b.workload == after.workload && !b.cdf.is_empty())?;
            (change(before, after).2 != Move::WithinNoise
                || regressed.contains(&after.workload.as_str()))
            .then(|| after.workload.clone())
        })
        .collect()
}

/// The section: a table of every workload both runs measured (largest move first), and
/// the overlaid distributions of those in `drawn`.
pub(crate) fn section(
    baseline: &Results,
    baseline_name: &str,
    current: &Results,
    drawn: &[String],
) -> String {
    let mut pairs: Vec<(&Latency, &Latency, f64, f64, Move)> = current
        .latency
        .iter()
        .filter_map(|after| {
            let before = baseline
                .latency
                .iter()
                .find(|b| b.workload == after.workload)?;
            let (change, band, moved) = change(before, after);
            Some((before, after, change, band, moved))
        })
        .collect();
    pairs.sort_by(|a, b| {
        (a.4 == Move::WithinNoise)
            .cmp(&(b.4 == Move::WithinNoise))
            .then(b.2.abs().total_cmp(&a.2.abs()))
    });
    let mut out = format!(
        "<section id=\"distributions\"><h2>Distributions: baseline against this run</h2>\
         <p>Each latency workload measured by both <code>{}</code> (dashed) and this run \
         (solid). A median that moved by more than the baseline's recorded spread (and by \
         at least {}) is marked; those workloads' whole distributions, and those of the \
         workloads the gate calls regressed, are drawn overlaid below the table. Times here are raw, not ratios: for the gate's machine-independent \
         verdict see the deltas section.</p>",
        esc(baseline_name),
        human(MIN_CHANGE, Unit::Fraction)
    );
    if pairs.is_empty() {
        out.push_str("<p class=\"note\">No latency workload is in both runs.</p></section>");
        return out;
    }
    let mut table = Table::new(
        "table-distributions",
        vec![
            "change",
            "workload",
            "p50 baseline",
            "p50 this run",
            "p50 change",
            "noise band",
            "p99 baseline",
            "p99 this run",
        ],
    );
    for (before, after, change, band, moved) in &pairs {
        if *moved != Move::WithinNoise {
            table.bad.push(after.workload.clone());
        }
        table.rows.push((
            after.workload.clone(),
            vec![
                cell("marker", moved.marker()),
                cell("workload", &after.workload),
                unit_cell("p50_before", before.percentiles.p50, Unit::Nanos),
                unit_cell("p50_after", after.percentiles.p50, Unit::Nanos),
                cell("change", &format!("{:+.1} %", change * 100.0)),
                cell("band", &format!("±{}", human(*band, Unit::Fraction))),
                unit_cell("p99_before", before.percentiles.p99, Unit::Nanos),
                unit_cell("p99_after", after.percentiles.p99, Unit::Nanos),
            ],
        ));
    }
    let _ = write!(out, "<div class=\"table\">{}</div>", table.html());
    let moved: Vec<_> = pairs
        .iter()
        .filter(|p| drawn.contains(&p.1.workload))
        .collect();
    if !moved.is_empty() {
        out.push_str("<div class=\"pair\">");
        for (before, after, ..) in moved {
            out.push_str(&overlay_chart(before, after));
        }
        out.push_str("</div>");
    }
    out.push_str("</section>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{Percentiles, Placement};

    fn latency(p50: f64, spread: f64) -> Latency {
        Latency {
            workload: "queue/shm/roundtrip/64B/cross-cpu".into(),
            family: "queue".into(),
            flavor: "shm".into(),
            placement: Placement::CrossCpu,
            message_bytes: 64,
            percentiles: Percentiles {
                p50,
                ..Percentiles::default()
            },
            spread,
            calibration: None,
            ratio: None,
            ratio_note: None,
            cdf: Vec::new(),
            achieved: None,
        }
    }

    #[test]
    fn a_change_inside_the_noise_band_is_not_called_one() {
        assert_eq!(
            change(&latency(100.0, 0.2), &latency(115.0, 0.1)).2,
            Move::WithinNoise
        );
        assert_eq!(
            change(&latency(100.0, 0.2), &latency(130.0, 0.1)).2,
            Move::Slower
        );
        assert_eq!(
            change(&latency(100.0, 0.0), &latency(96.0, 0.0)).2,
            Move::WithinNoise
        );
        assert_eq!(
            change(&latency(100.0, 0.0), &latency(50.0, 0.0)).2,
            Move::Faster
        );
        assert_eq!(
            change(&latency(0.0, 0.0), &latency(50.0, 0.0)).2,
            Move::WithinNoise
        );
    }
}
