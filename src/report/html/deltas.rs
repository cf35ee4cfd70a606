//! The report's deltas against a baseline. The verdicts are `compare`'s, the CI gate's own
//! (calibrated ratios, noise-aware rule), so the page never disagrees with the gate; this
//! module only lays them out: regressions first, the largest first, each row with a text
//! marker ("▲ REGRESSED", "▼ improved", "= ok") so that nothing depends on colour.

use super::format::{esc, num, utc_text};
use crate::report::compare::{self, Comparison, MetricDelta, Policy, Status};
use crate::results::Results;
use std::fmt::Write as _;

/// The marker shown for a status: a symbol and words.
pub(crate) fn marker(status: Status) -> String {
    let symbol = match status {
        Status::Regressed => "▲",
        Status::NoisyWorse => "△",
        Status::MachineMoved => "≠",
        Status::Missing => "?",
        Status::Improved => "▼",
        Status::Unchanged => "=",
        Status::New => "+",
        Status::Peer => "◦",
    };
    format!("{symbol} {}", status.marker())
}

fn row_class(status: Status) -> &'static str {
    match status {
        Status::Regressed => "bad",
        Status::Improved => "good",
        _ => "",
    }
}

/// Why a metric is or is not gated, in the table's "gated" column.
fn gated_text(m: &MetricDelta) -> &'static str {
    match m.status {
        _ if m.gated => "yes",
        Status::Peer => "no (a peer's figure)",
        Status::New => "no (not in the baseline)",
        _ if m.machine_moved => "no (the machine moved ≠)",
        _ => "no (too noisy)",
    }
}

/// The machine-moved notes, as the gate prints them: which raw cost moved, by how much,
/// and the metrics left ungated on this run for it (the worse ones, marked ≠, first).
/// Empty when the machine did not move.
fn machine_moved(c: &Comparison, ungated: &[&MetricDelta]) -> String {
    if c.machine_moved.is_empty() && ungated.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<div id=\"machine-moved\" class=\"note\"><p><b>The machine moved since the \
         baseline.</b> A ratio to the same run's raw figure cancels a uniformly faster or \
         slower machine, not a change in one kind of raw cost; the metrics resting on a raw \
         cost that moved are shown, not gated, on this run (behaviour is gated as \
         always).</p><ul>",
    );
    for note in &c.machine_moved {
        let _ = write!(out, "<li>{}</li>", esc(note));
    }
    out.push_str("</ul>");
    if !ungated.is_empty() {
        let mut sorted = ungated.to_vec();
        sorted.sort_by_key(|m| (m.status != Status::MachineMoved, m.key.clone()));
        let _ = write!(
            out,
            "<p>Not gated on this run for that reason ({}; worse ones marked ≠):</p><ul id=\"machine-moved-metrics\">",
            sorted.len()
        );
        for m in sorted {
            let _ = write!(
                out,
                "<li data-key=\"{key}\"><a href=\"#delta-{key}\">{key}</a>{}</li>",
                if m.status == Status::MachineMoved {
                    format!(" — {}", esc(&marker(m.status)))
                } else {
                    String::new()
                },
                key = esc(&m.key)
            );
        }
        out.push_str("</ul>");
    }
    out.push_str("</div>");
    out
}

/// The comparison with, inside each status, the largest change first.
pub(crate) fn compute(baseline: &Results, current: &Results, threshold_pct: f64) -> Comparison {
    let mut comparison = compare::compare(
        baseline,
        current,
        Policy {
            threshold_pct,
            ..Policy::default()
        },
    );
    let size = |m: &MetricDelta| m.worse_by.map(f64::abs).unwrap_or(0.0);
    comparison.metrics.sort_by(|a, b| {
        a.status
            .cmp(&b.status)
            .then(size(b).total_cmp(&size(a)))
            .then(a.key.cmp(&b.key))
    });
    comparison
}

/// The deltas section of the page.
pub(crate) fn section(
    c: &Comparison,
    baseline: &Results,
    baseline_name: &str,
    overlays: &[String],
) -> String {
    let regressions = c.regressions();
    let mut out = format!(
        "<section id=\"deltas\"><h2>Deltas against the baseline</h2><p>Baseline \
         <code>{}</code> ({}). As the CI gate (<code>ipcbench compare</code>) decides: \
         timings compare by their ratio to a calibration of the same run; a metric regresses \
         when it got worse by more than {}% <i>and</i> by more than the spread the baseline \
         recorded; a metric whose baseline spread exceeds {} is shown but not gated, and so is \
         one whose raw cost moved more than {}× since the baseline (the machine moved, \
         marked ≠). Every scenario verdict must match its expectation and every stress run \
         must be clean.</p>",
        esc(baseline_name),
        esc(&utc_text(baseline.created_unix)),
        num(c.threshold_pct),
        num(c.max_gated_spread),
        num(compare::MACHINE_MOVED),
    );
    let ungated: Vec<&MetricDelta> = c.metrics.iter().filter(|m| m.machine_moved).collect();
    let _ = write!(
        out,
        "<p id=\"delta-summary\" class=\"{}\"><b>{regressions} regression{}</b> — the gate \
         would {}{}.</p>",
        if regressions > 0 { "note" } else { "" },
        if regressions == 1 { "" } else { "s" },
        if regressions > 0 { "FAIL" } else { "pass" },
        if ungated.is_empty() {
            String::new()
        } else {
            format!(
                "; {} metric{} not gated because the machine moved (<a href=\"#machine-moved\">below</a>)",
                ungated.len(),
                if ungated.len() == 1 { "" } else { "s" }
            )
        },
    );
    out.push_str(&machine_moved(c, &ungated));
    for note in &c.recalibrated {
        let _ = write!(
            out,
            "<p class=\"note recalibrated\"><b>Recalibrated:</b> {}.</p>",
            esc(note)
        );
    }
    out.push_str(
        "<h3>Behaviour</h3><div class=\"table\"><table id=\"table-deltas-behaviour\"><thead><tr>\
         <th>status</th><th>scenario or stress target</th><th>expected</th><th>baseline</th>\
         <th>current</th><th>detail</th></tr></thead><tbody>",
    );
    for b in &c.behaviour {
        let _ = write!(
            out,
            "<tr data-key=\"{key}\" id=\"delta-{key}\" class=\"{}\"><td data-field=\"marker\">{}</td><td>{key}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            row_class(b.status),
            marker(b.status),
            esc(&b.expected),
            esc(b.baseline.as_deref().unwrap_or("—")),
            esc(b.current.as_deref().unwrap_or("—")),
            esc(&b.detail),
            key = esc(&b.key),
        );
    }
    out.push_str(
        "</tbody></table></div><h3>Speed (calibrated ratios)</h3><div class=\"table\">\
         <table id=\"table-deltas\"><thead><tr><th>status</th><th>metric</th>\
         <th>baseline ratio</th><th>current ratio</th><th>worse by</th><th>spread</th>\
         <th>gated</th></tr></thead><tbody>",
    );
    for m in &c.metrics {
        let opt = |v: Option<f64>| v.map(num).unwrap_or_else(|| "—".into());
        let _ = write!(
            out,
            "<tr data-key=\"{key}\" id=\"delta-{key}\" class=\"{}\"><td data-field=\"marker\">{}</td><td>{key}{distribution}</td>\
             <td data-field=\"baseline\" class=\"n\">{}</td><td data-field=\"current\" class=\"n\">{}</td>\
             <td data-field=\"worse_by\" class=\"n\">{}</td><td data-field=\"spread\" class=\"n\">{}</td>\
             <td>{}</td></tr>",
            row_class(m.status),
            marker(m.status),
            opt(m.baseline),
            opt(m.current),
            m.worse_by
                // A change that rounds to nothing shows as 0.0%, never as -0.0%.
                .map(|w| format!("{:+.1}%", if (w * 100.0).abs() < 0.05 { 0.0 } else { w * 100.0 }))
                .unwrap_or_else(|| "—".into()),
            num(m.spread),
            gated_text(m),
            key = esc(&m.key),
            distribution = m
                .key
                .strip_prefix("latency/")
                .filter(|w| overlays.iter().any(|o| o == w))
                .map(|w| format!(
                    " <a href=\"#chart-{}\">(distribution)</a>",
                    esc(&super::overlay::chart_id(w))
                ))
                .unwrap_or_default(),
        );
    }
    out.push_str("</tbody></table></div></section>");
    out
}
