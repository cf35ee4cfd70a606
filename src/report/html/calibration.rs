//! The machine and its calibration: the raw figures the other sections are ratios to,
//! and the machine's topology under them.

use super::format::{cell, num_cell, pair, unit_cell, Table};
use super::{open_section, topology, Page, Section};
use crate::report::charts::{self, Axis, Scale, Ticks};
use crate::report::units::{self, Unit};
use crate::results::Placement;

pub(super) fn section(page: &Page) -> String {
    let r = page.results;
    let mut out = open_section(
        page,
        Section::Calibration,
        r.calibration.is_empty(),
        "Raw figures measured in the same run; the other results are also given as ratios to \
         these, which makes runs on different machines comparable. Placement: <i>same-cpu</i> \
         = both processes pinned to one CPU, <i>cross-cpu</i> = pinned to two CPUs.",
    );
    if r.calibration.is_empty() {
        out.push_str(&topology::html(r));
        out.push_str("</section>");
        return out;
    }
    let mut table = Table::new(
        "table-calibration",
        vec!["calibration", "placement", "value", "unit", "spread"],
    );
    for c in &r.calibration {
        table.rows.push((
            format!("{}/{}", c.name, c.placement.label()),
            vec![
                cell("name", &c.name),
                cell("placement", c.placement.label()),
                match units::of_calibration(&c.unit) {
                    Some(unit) => unit_cell("value", c.value, unit),
                    None => num_cell("value", c.value),
                },
                cell("unit", &c.unit),
                unit_cell("spread", c.spread, Unit::Fraction),
            ],
        ));
    }
    // Times on one chart (bars per placement); bandwidths stay in the table, since a
    // different unit on the same axis would mislead.
    let times: Vec<_> = r.calibration.iter().filter(|c| c.unit == "ns").collect();
    let mut names: Vec<String> = Vec::new();
    for c in &times {
        if !names.contains(&c.name) {
            names.push(c.name.clone());
        }
    }
    let placements = placements_of(times.iter().map(|c| c.placement));
    let series: Vec<(String, Vec<Option<f64>>)> = placements
        .iter()
        .map(|p| {
            (
                p.label().to_string(),
                names
                    .iter()
                    .map(|n| {
                        times
                            .iter()
                            .find(|c| &c.name == n && c.placement == *p)
                            .map(|c| c.value / 1000.0)
                    })
                    .collect(),
            )
        })
        .collect();
    let chart = if names.is_empty() {
        Err("no time calibrations".to_string())
    } else {
        charts::grouped_bars(
            "calibration",
            "Calibration: raw round trips and process costs by placement",
            &Axis::new("time (µs, log scale)", Scale::Log, Ticks::Plain),
            "raw figure",
            &names,
            &series,
        )
    };
    out.push_str(&pair(chart, &table));
    out.push_str(&topology::html(r));
    out.push_str("</section>");
    out
}

fn placements_of(items: impl Iterator<Item = Placement>) -> Vec<Placement> {
    let mut list: Vec<Placement> = items.collect();
    list.sort();
    list.dedup();
    list
}
