//! Stress and fault injection: every target's faults and its accounting of messages,
//! where anything but zero losses, duplicates, corruptions, hangs and leaks is a failure.

use super::format::{cell, num_cell, pair, unit_cell, Table};
use super::{open_section, Page, Section};
use crate::report::charts::{self, Axis, Scale, Ticks};
use crate::report::units::Unit;

pub(super) fn section(page: &Page) -> String {
    let r = page.results;
    let mut out = open_section(
        page,
        Section::Stress,
        r.stress.is_empty(),
        "Bounded runs of many processes while a fault injector kills (SIGKILL), stops \
         (SIGSTOP then SIGCONT) and slows random workers. Every message must be delivered \
         exactly once or be accounted as in flight with a killed process: losses, duplicates \
         and corrupt deliveries must be 0, with no hang and no leak.",
    );
    if r.stress.is_empty() {
        out.push_str("</section>");
        return out;
    }
    let mut table = Table::new(
        "table-stress",
        vec![
            "target",
            "status",
            "seconds",
            "procs",
            "seed",
            "kills",
            "stops",
            "slows",
            "messages",
            "≈ msgs/s",
            "in flight (accounted)",
            "losses",
            "duplicates",
            "corrupt",
            "hangs",
            "leaks",
        ],
    );
    for s in &r.stress {
        let ok = s.losses == 0
            && s.duplicates == 0
            && s.corrupt == 0
            && s.hangs.is_empty()
            && s.leaks.is_empty();
        if !ok {
            table.bad.push(s.target.clone());
        }
        table.rows.push((
            s.target.clone(),
            vec![
                cell("target", &s.target),
                cell("status", if ok { "✔ ok" } else { "✘ FAILED" }),
                num_cell("seconds", s.seconds),
                num_cell("procs", s.procs as f64),
                num_cell("seed", s.seed as f64),
                num_cell("kills", s.kills as f64),
                num_cell("stops", s.stops as f64),
                num_cell("slows", s.slows as f64),
                num_cell("messages", s.messages as f64),
                if s.seconds > 0.0 {
                    unit_cell("msgs_per_sec", s.messages as f64 / s.seconds, Unit::Rate)
                } else {
                    cell("msgs_per_sec", "—")
                },
                num_cell("accounted_in_flight", s.accounted_in_flight as f64),
                num_cell("losses", s.losses as f64),
                num_cell("duplicates", s.duplicates as f64),
                num_cell("corrupt", s.corrupt as f64),
                cell("hangs", &list_or_none(&s.hangs)),
                cell("leaks", &list_or_none(&s.leaks)),
            ],
        ));
    }
    let labels: Vec<String> = r.stress.iter().map(|s| s.target.clone()).collect();
    let per_minute = |n: u64, s: f64| if s > 0.0 { n as f64 * 60.0 / s } else { 0.0 };
    let chart = charts::grouped_bars(
        "stress",
        "Faults injected per minute, by target",
        &Axis::new("faults injected (per minute)", Scale::Linear, Ticks::Count),
        "target",
        &labels,
        &[
            (
                "kills".into(),
                r.stress
                    .iter()
                    .map(|s| Some(per_minute(s.kills, s.seconds)))
                    .collect(),
            ),
            (
                "stops".into(),
                r.stress
                    .iter()
                    .map(|s| Some(per_minute(s.stops, s.seconds)))
                    .collect(),
            ),
            (
                "slows".into(),
                r.stress
                    .iter()
                    .map(|s| Some(per_minute(s.slows, s.seconds)))
                    .collect(),
            ),
        ],
    );
    out.push_str(&pair(chart, &table));
    out.push_str("</section>");
    out
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join("; ")
    }
}
