//! The first screen: one line saying whether the run is good news or bad news (what went
//! wrong, worst first, each linked to its place on the page), and the headline chart of how
//! far each mechanism sits from the raw baseline of its kind.

use super::format::{chart_html, esc};
use super::{overlay, Page};
use crate::report::charts::{self, Axis, Scale, Ticks};
use crate::report::compare::{Comparison, Status};
use crate::report::units::{human, Unit};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Most problems named in the verdict line; the rest are counted.
const NAMED_PROBLEMS: usize = 8;

/// One thing wrong with the run, and where the page shows it (and, for a slower latency,
/// its distributions overlaid).
struct Problem {
    text: String,
    anchor: String,
    distribution: Option<String>,
}

/// The verdict line: "clean" with what that covers, or every problem, worst first.
pub(crate) fn verdict(page: &Page, comparison: Option<&Comparison>, overlays: &[String]) -> String {
    let r = page.results;
    let mut problems: Vec<Problem> = Vec::new();
    // Regressions against the baseline, as the gate orders them (largest first).
    if let Some(c) = comparison {
        for m in c.metrics.iter().filter(|m| m.status == Status::Regressed) {
            problems.push(Problem {
                text: match m.worse_by {
                    Some(w) => format!("{} {} worse", m.key, human(1.0 + w, Unit::Times)),
                    None => format!("{} missing", m.key),
                },
                anchor: format!("delta-{}", m.key),
                distribution: m
                    .key
                    .strip_prefix("latency/")
                    .filter(|w| overlays.iter().any(|o| o == w))
                    .map(|w| format!("chart-{}", overlay::chart_id(w))),
            });
        }
        for b in c.behaviour.iter().filter(|b| b.status == Status::Regressed) {
            problems.push(Problem {
                text: format!("{}: {}", b.key, b.detail),
                anchor: format!("delta-{}", b.key),
                distribution: None,
            });
        }
    }
    for s in r.scenarios.iter().filter(|s| !s.matches) {
        let key = format!("{}/{}", s.scenario, s.variant);
        problems.push(Problem {
            text: format!("{key} verdict {} (not as expected)", s.verdict),
            anchor: format!("repro-{key}"),
            distribution: None,
        });
    }
    for s in &r.stress {
        let flaws = s.losses + s.duplicates + s.corrupt;
        if flaws > 0 || !s.hangs.is_empty() || !s.leaks.is_empty() {
            problems.push(Problem {
                text: format!(
                    "stress {}: {} losses, {} duplicates, {} corrupt, {} hangs, {} leaks",
                    s.target,
                    s.losses,
                    s.duplicates,
                    s.corrupt,
                    s.hangs.len(),
                    s.leaks.len()
                ),
                anchor: "stress".into(),
                distribution: None,
            });
        }
    }
    for (step, status, _, result) in &page.steps {
        if status == "FAILED" || status == "PROBLEM" {
            problems.push(Problem {
                text: format!("step {step} {status}: {result}"),
                anchor: "table-steps".into(),
                distribution: None,
            });
        }
    }
    let against = page
        .baseline
        .as_ref()
        .map(|(_, name)| format!(" against <code>{}</code>", esc(name)))
        .unwrap_or_default();
    if problems.is_empty() {
        let what = [
            (r.scenarios.len(), "scenario verdicts as expected"),
            (r.stress.len(), "stress targets clean"),
            (r.latency.len() + r.throughput.len(), "workloads measured"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, text)| format!("{n} {text}"))
        .collect::<Vec<_>>()
        .join(", ");
        let regressions = if comparison.is_some() {
            format!("; no regression{against}")
        } else {
            String::new()
        };
        return format!(
            "<p id=\"verdict\" class=\"verdict good\"><b>✔ Clean run</b>: {what}{regressions}.</p>{}",
            twins_note(r)
        );
    }
    let mut out = format!(
        "<p id=\"verdict\" class=\"verdict bad\"><b>✘ {} problem{}{}</b>: ",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" },
        if comparison.is_some() {
            format!(" (regressions{against} first, worst first)")
        } else {
            String::new()
        }
    );
    let named: Vec<String> = named_first(&problems)
        .into_iter()
        .map(|p| {
            let distribution = p
                .distribution
                .as_ref()
                .map(|id| format!(" (<a href=\"#{}\">distribution</a>)", esc(id)))
                .unwrap_or_default();
            format!(
                "<a href=\"#{}\">{}</a>{distribution}",
                esc(&p.anchor),
                esc(&p.text)
            )
        })
        .collect();
    out.push_str(&named.join(" · "));
    if problems.len() > NAMED_PROBLEMS {
        let _ = write!(out, " · and {} more", problems.len() - NAMED_PROBLEMS);
    }
    out.push_str("</p>");
    out.push_str(&twins_note(r));
    out
}

/// The problems the line names: at most [`NAMED_PROBLEMS`], in their order, the first of
/// each kind (regression, verdict, stress, step) always among them, so a slowdown that
/// regressed many metrics cannot push a broken scenario out of the first screen.
fn named_first(problems: &[Problem]) -> Vec<&Problem> {
    let kind = |p: &Problem| p.anchor.split('-').next().unwrap_or_default().to_string();
    let mut kinds_seen = Vec::new();
    let mut keep = vec![false; problems.len()];
    for (i, p) in problems.iter().enumerate() {
        if !kinds_seen.contains(&kind(p)) {
            kinds_seen.push(kind(p));
            keep[i] = true;
        }
    }
    let mut room = NAMED_PROBLEMS.saturating_sub(kinds_seen.len());
    for k in keep.iter_mut().filter(|k| !**k) {
        if room == 0 {
            break;
        }
        *k = true;
        room -= 1;
    }
    problems
        .iter()
        .zip(keep)
        .filter_map(|(p, k)| k.then_some(p))
        .collect()
}

/// Said right under the verdict when the run measured twins: its problems were staged.
fn twins_note(r: &crate::results::Results) -> String {
    if r.twins.is_empty() {
        return String::new();
    }
    let names: Vec<String> = r
        .twins
        .iter()
        .map(|t| format!("<code>{}</code>", esc(t)))
        .collect();
    format!(
        "<p id=\"twins\" class=\"note\">This run measured deliberately broken or slowed \
         twins in place of their mechanisms ({}): the problems they cause are staged, to show \
         what a regression looks like. It can never be a baseline.</p>",
        names.join(", ")
    )
}

/// How many times its raw baseline a workload costs: a latency's ratio, or the inverse
/// of a throughput's (a rate at half the raw one is 2× from the limit).
fn times_from_limit(page: &Page) -> BTreeMap<String, Vec<f64>> {
    let r = page.results;
    let mut by_mechanism: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let latencies = r
        .latency
        .iter()
        .filter_map(|l| Some((format!("{}/{}", l.family, l.flavor), l.ratio?)));
    let throughputs = r
        .throughput
        .iter()
        .filter_map(|t| Some((format!("{}/{}", t.family, t.flavor), 1.0 / t.ratio?)));
    for (mechanism, times) in latencies.chain(throughputs) {
        if times.is_finite() && times > 0.0 {
            by_mechanism.entry(mechanism).or_default().push(times);
        }
    }
    by_mechanism
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The headline chart: one bar per mechanism, the median over its workloads of how many
/// times the same run's raw baseline of the same kind and placement it costs.
pub(crate) fn distance_from_limit(page: &Page) -> String {
    let mut rows: Vec<(String, f64, usize)> = times_from_limit(page)
        .into_iter()
        .map(|(mechanism, mut times)| {
            let n = times.len();
            (mechanism, median(&mut times), n)
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    rows.sort_by(|a, b| a.1.total_cmp(&b.1));
    let categories: Vec<String> = rows
        .iter()
        .map(|(mechanism, _, n)| {
            format!(
                "{mechanism} ({n} workload{})",
                if *n == 1 { "" } else { "s" }
            )
        })
        .collect();
    let series = vec![(
        "median × raw baseline".to_string(),
        rows.iter().map(|(_, times, _)| Some(*times)).collect(),
    )];
    let chart = charts::grouped_bars(
        "distance-from-limit",
        "Distance from the limit: times the raw baseline of the same kind (1 = the physics)",
        &Axis::new("× raw baseline (log scale)", Scale::Log, Ticks::Plain),
        "mechanism",
        &categories,
        &series,
    );
    format!(
        "<div id=\"headline\"><p>Each mechanism's cost as a multiple of the same run's raw \
         baseline of its kind and placement (a raw pipe, socket, futex or lock round trip, a \
         raw stream, memcpy): the median over its workloads, closest to the physics first. \
         The calibration, latency and throughput sections give each workload's own \
         ratio.</p>{}</div>",
        chart_html(chart)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(anchor: &str) -> Problem {
        Problem {
            text: anchor.to_string(),
            anchor: anchor.to_string(),
            distribution: None,
        }
    }

    /// Ten regressions cannot push the one broken scenario out of the line.
    #[test]
    fn the_first_problem_of_each_kind_is_always_named() {
        let mut problems: Vec<Problem> = (0..10)
            .map(|i| problem(&format!("delta-latency/w{i}")))
            .collect();
        problems.push(problem("repro-ticket-oversell/locked"));
        problems.push(problem("stress"));
        let named: Vec<&str> = named_first(&problems)
            .iter()
            .map(|p| p.anchor.as_str())
            .collect();
        assert_eq!(named.len(), NAMED_PROBLEMS);
        assert!(named.contains(&"repro-ticket-oversell/locked"), "{named:?}");
        assert!(named.contains(&"stress"), "{named:?}");
        // In the order given, worst regressions first.
        assert_eq!(named[0], "delta-latency/w0");
        assert_eq!(named[NAMED_PROBLEMS - 3], "delta-latency/w5");
        assert_eq!(named[NAMED_PROBLEMS - 2], "repro-ticket-oversell/locked");
    }
}
