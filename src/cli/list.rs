//! `ipcbench list`: list the scenarios with their variants, and the benchmark workloads.
//!
//! Each section is one function returning rows, so another family of names (benchmark
//! workloads) is one more section in [`sections`].

use super::EXIT_OK;
use crate::results::Expectation;

#[derive(Debug, clap::Args)]
pub struct Args {}

/// One listed name with what it is and what is expected of it.
pub struct Row {
    pub name: String,
    pub expected: String,
    pub about: String,
}

/// The sections `list` prints, in order: a title and its rows.
pub fn sections() -> Vec<(&'static str, Vec<Row>)> {
    vec![
        (
            "scenarios (ipcbench check --scenario NAME --variant V)",
            scenario_rows(crate::scenario::catalogue()),
        ),
        ("workloads (ipcbench bench --filter TEXT)", workload_rows()),
        ("peers (ipcbench bench --peer NAME)", peer_rows()),
        (
            "peer scenarios (ipcbench check --peer cpython --scenario NAME --variant V)",
            scenario_rows(crate::scenario::cpython::catalogue()),
        ),
    ]
}

/// Each peer, then its workloads (run by the peer's own process, beside ipcbench's).
fn peer_rows() -> Vec<Row> {
    use crate::measure::peer;
    let mut rows = Vec::new();
    for p in peer::known() {
        rows.push(Row {
            name: p.name.to_string(),
            expected: "peer".into(),
            about: p.about.to_string(),
        });
        for spec in (p.specs)() {
            rows.push(Row {
                expected: kind_name(spec.shape.kind).to_string(),
                about: divided_by(spec.shape.calibration),
                name: spec.shape.name,
            });
        }
    }
    rows
}

fn kind_name(kind: crate::measure::registry::Kind) -> &'static str {
    use crate::measure::registry::Kind;
    match kind {
        Kind::Calibration => "calibration",
        Kind::Latency => "latency",
        Kind::Throughput => "throughput",
    }
}

/// "divided by NAME", or nothing for a workload divided by no calibration.
fn divided_by(calibration: Option<&str>) -> String {
    calibration
        .map(|base| format!("divided by {base}"))
        .unwrap_or_default()
}

fn workload_rows() -> Vec<Row> {
    use crate::measure::registry;
    registry::all()
        .into_iter()
        .map(|w| Row {
            expected: kind_name(w.shape.kind).to_string(),
            about: divided_by(w.shape.calibration),
            name: w.shape.name,
        })
        .collect()
}

fn scenario_rows(catalogue: &[&dyn crate::scenario::Scenario]) -> Vec<Row> {
    let mut rows = Vec::new();
    for scenario in catalogue {
        for variant in scenario.variants() {
            let expected = match variant.expected {
                Expectation::Holds => "must hold".to_string(),
                Expectation::Caught => format!("caught: {}", variant.expected_text()),
            };
            let about = match variant.pending {
                Some(reason) => format!("{} [not run yet: {reason}]", variant.about),
                None => variant.about.to_string(),
            };
            rows.push(Row {
                name: format!("{}/{}", scenario.name(), variant.name),
                expected,
                about,
            });
        }
    }
    rows
}

pub fn main(args: Args) -> i32 {
    let _ = args;
    for (title, rows) in sections() {
        println!("{title}");
        for row in rows {
            println!("  {:<44} {:<32} {}", row.name, row.expected, row.about);
        }
    }
    EXIT_OK
}
