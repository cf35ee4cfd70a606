//! Scaling with producers and consumers: small multiples, one panel per family, as
//! processes are added.

use super::format::chart_html;
use super::process_pool::is_process_family;
use super::throughput::{flavor_key, processes_label, throughput_table};
use super::{open_section, Page, Section};
use crate::report::charts::{self, Axis, Line, Scale, Ticks};
use crate::results::Throughput;
use std::collections::BTreeMap;

pub(super) fn section(page: &Page) -> String {
    let all = &page.results.throughput;
    // Small multiples: a panel per family, a line per (flavor, message size) measured at
    // more than one configuration; 22 lines on one plot read as none.
    let mut panels: BTreeMap<String, BTreeMap<(String, u64), Vec<&Throughput>>> = BTreeMap::new();
    for t in all.iter().filter(|t| !is_process_family(&t.family)) {
        panels
            .entry(t.family.clone())
            .or_default()
            .entry((flavor_key(t), t.message_bytes))
            .or_default()
            .push(t);
    }
    for groups in panels.values_mut() {
        groups.retain(|_, v| v.len() > 1);
    }
    panels.retain(|_, groups| !groups.is_empty());
    let mut out = open_section(
        page,
        Section::Scaling,
        panels.is_empty(),
        "Messages (or operations) per second as processes are added, one panel per family: \
         for queues and pipes, P producers and C consumers on one instance of the mechanism \
         (the x axis counts pairs); for locks, the Manager and the file store, N processes \
         contending for one lock or server. One line per flavor (and message size); the y \
         scale is shared within a panel. Higher is faster; on 2 cores more processes mostly \
         add contention.",
    );
    if panels.is_empty() {
        out.push_str("</section>");
        return out;
    }
    let mut rows: Vec<&Throughput> = Vec::new();
    out.push_str("<div class=\"pair\">");
    for (family, groups) in &panels {
        let mut configs: Vec<(u32, u32)> = groups
            .values()
            .flatten()
            .map(|t| (t.producers, t.consumers))
            .collect();
        configs.sort_by_key(|(p, c)| (p + c, *p, *c));
        configs.dedup();
        // Producer × consumer pairs are their own axis; a crowd is counted in processes.
        let paired = configs.iter().all(|(_, c)| *c > 0);
        let names: Vec<(f64, String)> = configs
            .iter()
            .enumerate()
            .map(|(i, (p, c))| (i as f64, processes_label(*p, *c)))
            .collect();
        let mut lines = Vec::new();
        for ((flavor, bytes), items) in groups {
            let mut points: Vec<(f64, f64)> = items
                .iter()
                .filter_map(|t| {
                    configs
                        .iter()
                        .position(|c| *c == (t.producers, t.consumers))
                        .map(|i| (i as f64, t.msgs_per_sec))
                })
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            lines.push(Line {
                label: if *bytes == 0 {
                    flavor.clone()
                } else {
                    format!("{flavor} · {}", charts::byte_ticks(*bytes as f64))
                },
                points,
                dashed: false,
            });
            let mut sorted = items.clone();
            sorted.sort_by_key(|t| (t.producers + t.consumers, t.producers));
            rows.extend(sorted);
        }
        let chart = charts::lines(
            &format!("scaling-{family}"),
            &format!("Scaling: {family}"),
            &Axis::new(
                if paired {
                    "producer × consumer pairs (P×C)"
                } else {
                    "contending processes (N)"
                },
                Scale::Linear,
                Ticks::Plain,
            ),
            &Axis::new(
                "messages or operations per second (log scale)",
                Scale::Log,
                Ticks::Count,
            ),
            &lines,
            Some(&names),
            true,
        );
        out.push_str(&chart_html(chart));
    }
    out.push_str("</div>");
    out.push_str(&format!(
        "<div class=\"table\">{}</div>",
        throughput_table("table-scaling", &rows).html()
    ));
    out.push_str("</section>");
    out
}
