//! The report's deltas against a baseline: every metric present in both runs, regressions
//! first. Each row carries a text marker ("▲ WORSE", "▼ better", "= same") so that the
//! verdict does not depend on colour.
//!
//! Timing figures compare by their calibrated ratio when both runs have one (that is what
//! makes runs on different machines comparable), else by the absolute figure. A change
//! counts only past the threshold and past the spread either run recorded for it, so
//! noise is not called a regression.

use super::{esc, num};
use crate::report::model::Results;
use std::fmt::Write as _;

/// Whether a bigger number is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    Lower,
    Higher,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// Ordered first: worse past the threshold, or a verdict that became unexpected.
    Worse,
    Better,
    Same,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Delta {
    /// "latency", "throughput", "calibration", "scenario", "stress".
    pub kind: &'static str,
    pub key: String,
    /// What is compared, with its unit: "p50/calibration ratio", "msgs/s", ...
    pub metric: String,
    pub baseline: String,
    pub current: String,
    /// Percent change of the number (None for verdicts).
    pub change_pct: Option<f64>,
    pub change: Change,
}

impl Change {
    pub fn marker(self) -> &'static str {
        match self {
            Change::Worse => "▲ WORSE",
            Change::Better => "▼ better",
            Change::Same => "= same",
        }
    }
}

fn numeric(
    kind: &'static str,
    key: String,
    metric: &str,
    (base, cur): (f64, f64),
    better: Better,
    threshold_pct: f64,
    spread: f64,
) -> Delta {
    let change_pct = if base != 0.0 {
        (cur - base) / base * 100.0
    } else {
        0.0
    };
    let limit = threshold_pct.max(spread * 100.0);
    let worse_pct = match better {
        Better::Lower => change_pct,
        Better::Higher => -change_pct,
    };
    let change = if worse_pct > limit {
        Change::Worse
    } else if worse_pct < -limit {
        Change::Better
    } else {
        Change::Same
    };
    Delta {
        kind,
        key,
        metric: metric.to_string(),
        baseline: num(base),
        current: num(cur),
        change_pct: Some(change_pct),
        change,
    }
}

/// Every delta between the two runs, regressions first (the largest first), then
/// improvements, then the unchanged.
pub fn compute(baseline: &Results, current: &Results, threshold_pct: f64) -> Vec<Delta> {
    let mut out = Vec::new();
    for c in &current.calibration {
        let Some(b) = baseline
            .calibration
            .iter()
            .find(|b| b.name == c.name && b.placement == c.placement)
        else {
            continue;
        };
        let better = if c.unit == "ns" {
            Better::Lower
        } else {
            Better::Higher
        };
        out.push(numeric(
            "calibration",
            format!("{}/{}", c.name, c.placement.label()),
            &c.unit,
            (b.value, c.value),
            better,
            threshold_pct,
            b.spread.max(c.spread),
        ));
    }
    for c in &current.latency {
        let Some(b) = baseline.latency.iter().find(|b| b.workload == c.workload) else {
            continue;
        };
        let (metric, pair) = match (b.ratio, c.ratio) {
            (Some(rb), Some(rc)) => ("p50 / calibration (ratio)", (rb, rc)),
            _ => ("p50 (ns)", (b.percentiles.p50, c.percentiles.p50)),
        };
        out.push(numeric(
            "latency",
            c.workload.clone(),
            metric,
            pair,
            Better::Lower,
            threshold_pct,
            b.spread.max(c.spread),
        ));
    }
    for c in &current.throughput {
        let Some(b) = baseline
            .throughput
            .iter()
            .find(|b| b.workload == c.workload)
        else {
            continue;
        };
        let (metric, pair) = match (b.ratio, c.ratio) {
            (Some(rb), Some(rc)) => ("throughput / calibration (ratio)", (rb, rc)),
            _ => ("msgs/s", (b.msgs_per_sec, c.msgs_per_sec)),
        };
        out.push(numeric(
            "throughput",
            c.workload.clone(),
            metric,
            pair,
            Better::Higher,
            threshold_pct,
            b.spread.max(c.spread),
        ));
    }
    for c in &current.scenarios {
        let key = format!("{}/{}", c.scenario, c.variant);
        let b = baseline
            .scenarios
            .iter()
            .find(|b| b.scenario == c.scenario && b.variant == c.variant);
        let describe = |verdict: &str, matches: bool| {
            format!(
                "{verdict} ({})",
                if matches { "as expected" } else { "unexpected" }
            )
        };
        let change = match (b.map(|b| b.matches), c.matches) {
            (_, false) if b.is_none_or(|b| b.matches) => Change::Worse,
            (Some(false), true) => Change::Better,
            _ => Change::Same,
        };
        out.push(Delta {
            kind: "scenario",
            key,
            metric: "verdict".into(),
            baseline: b
                .map(|b| describe(&b.verdict, b.matches))
                .unwrap_or_else(|| "not run".into()),
            current: describe(&c.verdict, c.matches),
            change_pct: None,
            change,
        });
    }
    for c in &current.stress {
        let Some(b) = baseline.stress.iter().find(|b| b.target == c.target) else {
            continue;
        };
        let faults = |s: &crate::report::model::StressOutcome| {
            s.losses + s.duplicates + s.corrupt + (s.hangs.len() + s.leaks.len()) as u64
        };
        let (fb, fc) = (faults(b), faults(c));
        out.push(Delta {
            kind: "stress",
            key: c.target.clone(),
            metric: "losses + duplicates + corrupt + hangs + leaks".into(),
            baseline: fb.to_string(),
            current: fc.to_string(),
            change_pct: None,
            change: match fc.cmp(&fb) {
                std::cmp::Ordering::Greater => Change::Worse,
                std::cmp::Ordering::Less => Change::Better,
                std::cmp::Ordering::Equal => Change::Same,
            },
        });
    }
    // Regressions first, largest first; verdicts (no percentage) lead their group.
    out.sort_by(|a, b| {
        let size = |d: &Delta| d.change_pct.map(f64::abs).unwrap_or(f64::INFINITY);
        a.change
            .cmp(&b.change)
            .then(size(b).total_cmp(&size(a)))
            .then(a.key.cmp(&b.key))
    });
    out
}

/// The deltas section of the page.
pub fn section(
    baseline: &Results,
    baseline_name: &str,
    current: &Results,
    threshold_pct: f64,
) -> String {
    let deltas = compute(baseline, current, threshold_pct);
    let worse = deltas.iter().filter(|d| d.change == Change::Worse).count();
    let better = deltas.iter().filter(|d| d.change == Change::Better).count();
    let mut out = format!(
        "<section id=\"deltas\"><h2>Deltas against the baseline</h2><p>Baseline \
         <code>{}</code> ({}). A number counts as changed past {}% or past the spread either \
         run recorded for it, whichever is larger; timings compare by their calibration \
         ratio when both runs have one.</p>",
        esc(baseline_name),
        esc(&super::utc_text(baseline.created_unix)),
        num(threshold_pct),
    );
    let _ = write!(
        out,
        "<p id=\"delta-summary\" class=\"{}\"><b>{worse} worse</b>, {better} better, {} the same \
         ({} compared).</p>",
        if worse > 0 { "note" } else { "" },
        deltas.len() - worse - better,
        deltas.len()
    );
    out.push_str(
        "<div class=\"table\"><table id=\"table-deltas\"><thead><tr><th>change</th><th>kind</th>\
         <th>workload</th><th>metric</th><th>baseline</th><th>current</th><th>change %</th>\
         </tr></thead><tbody>",
    );
    for d in &deltas {
        let _ = write!(
            out,
            "<tr data-key=\"{kind}:{key}\" class=\"{class}\"><td data-field=\"marker\">{}</td>\
             <td>{kind}</td><td>{key}</td><td>{}</td><td data-field=\"baseline\" class=\"n\">{}</td>\
             <td data-field=\"current\" class=\"n\">{}</td><td data-field=\"change_pct\" class=\"n\">{}</td></tr>",
            d.change.marker(),
            esc(&d.metric),
            esc(&d.baseline),
            esc(&d.current),
            d.change_pct
                .map(|p| format!("{:+.1}%", p))
                .unwrap_or_else(|| "—".into()),
            kind = d.kind,
            key = esc(&d.key),
            class = match d.change {
                Change::Worse => "bad",
                Change::Better => "good",
                Change::Same => "",
            },
        );
    }
    out.push_str("</tbody></table></div></section>");
    out
}
