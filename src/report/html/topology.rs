//! The topology part of the page: what sysfs told of the CPUs, the class of each pair of
//! CPUs the figures were measured on (as achieved), and the core-to-core latency matrix
//! as heatmaps with its table.

use super::format::{cell, chart_html, esc, pair, unit_cell, Table};
use crate::measure::topology::{cpus_text, groups_text, smt_text};
use crate::report::charts;
use crate::report::units::{human, Unit};
use crate::results::{Achieved, CoreToCore, Results, Topology};
use std::collections::BTreeMap;
use std::fmt::Write as _;

fn topology_table(t: &Topology) -> Table {
    let mut table = Table::new("table-topology", vec!["what", "sysfs says"]);
    let smt = smt_text(t);
    let llc = match t.llc_level {
        Some(level) => format!("L{level}: {}", groups_text(&t.llc_groups, "")),
        None => "unknown".to_string(),
    };
    for (key, value) in [
        (
            "cpus",
            format!(
                "{} online ({}); this process may use {}",
                t.online.len(),
                cpus_text(&t.online),
                cpus_text(&t.allowed)
            ),
        ),
        ("smt", smt),
        ("llc", llc),
        ("numa", groups_text(&t.numa_nodes, "unknown")),
        ("notes", t.notes.join("; ")),
    ] {
        table.rows.push((
            key.to_string(),
            vec![cell("what", key), cell("value", &value)],
        ));
    }
    table
}

/// The pairs of CPUs the figures ran on, as achieved, with their class and how many
/// figures of each placement used them.
fn pairs_used_table(r: &Results) -> Table {
    let mut used: BTreeMap<(String, String, String), BTreeMap<&str, usize>> = BTreeMap::new();
    let achieved = r
        .latency
        .iter()
        .map(|l| (l.achieved.as_ref(), l.placement.label()))
        .chain(
            r.throughput
                .iter()
                .map(|t| (t.achieved.as_ref(), "unpinned")),
        );
    for (a, placement) in achieved {
        let Some(Achieved {
            initiator_cpus,
            responder_cpus,
            class,
        }) = a
        else {
            continue;
        };
        let key = (
            cpus_text(initiator_cpus),
            cpus_text(responder_cpus),
            class.map_or("— (free to move)", |c| c.label()).to_string(),
        );
        *used.entry(key).or_default().entry(placement).or_default() += 1;
    }
    let mut table = Table::new(
        "table-pairs-used",
        vec!["initiator CPUs", "responder CPUs", "class", "figures"],
    );
    for ((initiator, responder, class), by_placement) in used {
        let figures = by_placement
            .iter()
            .map(|(p, n)| format!("{n} {p}"))
            .collect::<Vec<_>>()
            .join(", ");
        table.rows.push((
            format!("{initiator}/{responder}"),
            vec![
                cell("initiator", &initiator),
                cell("responder", &responder),
                cell("class", &class),
                cell("figures", &figures),
            ],
        ));
    }
    table
}

fn matrix_table(m: &CoreToCore) -> Table {
    let mut table = Table::new(
        "table-core-to-core",
        vec![
            "pair",
            "class",
            "shm ping-pong (ns)",
            "pipe round trip (ns)",
            "note",
        ],
    );
    for p in &m.pairs {
        let key = format!("cpu{}-cpu{}", p.initiator, p.responder);
        let figure = |field, v: Option<f64>| {
            v.map_or_else(|| cell(field, "—"), |v| unit_cell(field, v, Unit::Nanos))
        };
        table.rows.push((
            key.clone(),
            vec![
                cell("pair", &key),
                cell("class", p.class.label()),
                figure("shm", p.shm_pingpong_ns),
                figure("pipe", p.pipe_roundtrip_ns),
                cell("note", p.note.as_deref().unwrap_or("")),
            ],
        ));
    }
    table
}

/// One heatmap of the matrix: `figure` picks the value of a pair; both orders of a pair
/// show its (unordered) figure.
fn matrix_heatmap(
    m: &CoreToCore,
    id: &str,
    title: &str,
    figure: fn(&crate::results::CorePair) -> Option<f64>,
) -> Result<charts::Chart, String> {
    let cells: Vec<((usize, usize), f64)> = m
        .pairs
        .iter()
        .filter_map(|p| Some(((p.initiator, p.responder), figure(p)?)))
        .flat_map(|((a, b), v)| [((a, b), v), ((b, a), v)])
        .collect();
    charts::heatmap(id, title, "median round trip", &m.cpus, &cells, |v| {
        human(v, Unit::Nanos)
    })
}

/// The topology subsection: tables, heatmaps, or why they are absent.
pub(crate) fn html(r: &Results) -> String {
    let mut out = String::from("<h3 id=\"topology\">Topology and core-to-core latency</h3>");
    match &r.topology {
        Some(t) => {
            out.push_str(
                "<p>CPU topology as sysfs told it. A pair of CPUs is named by the finest \
                 level the machine tells apart (<i>smt-sibling</i>, <i>same-llc</i>, \
                 <i>cross-llc</i>, <i>cross-numa</i>); where it tells nothing finer, two \
                 CPUs are <i>cross-cpu</i>.</p>",
            );
            let _ = write!(
                out,
                "<div class=\"pair\"><div class=\"table\">{}</div><div class=\"table\">{}</div></div>",
                topology_table(t).html(),
                pairs_used_table(r).html()
            );
        }
        None => out.push_str(
            "<p class=\"note\">No topology in these results (written before ipcbench \
             recorded it).</p>",
        ),
    }
    match &r.core_to_core {
        Some(m) => {
            let _ = write!(
                out,
                "<p>Round trips between two processes pinned to each pair of CPUs: {}.</p>",
                esc(&m.rule)
            );
            out.push_str(&pair(
                matrix_heatmap(
                    m,
                    "core-to-core-shm",
                    "Core-to-core: cache-line ping-pong (median round trip)",
                    |p| p.shm_pingpong_ns,
                ),
                &matrix_table(m),
            ));
            out.push_str(&chart_html(matrix_heatmap(
                m,
                "core-to-core-pipe",
                "Core-to-core: 1-byte pipe round trip (median)",
                |p| p.pipe_roundtrip_ns,
            )));
        }
        None => out.push_str(
            "<p class=\"note\">No core-to-core matrix in these results (measured by \
             <code>ipcbench bench</code> without <code>--filter</code> or \
             <code>--no-matrix</code>).</p>",
        ),
    }
    out
}
