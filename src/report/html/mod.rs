//! The HTML report: one self-contained page per run. Charts are inline SVG from plotters,
//! the CSS is inline, and nothing is fetched (no script, no font, no image), so the page
//! reads offline and can be attached to a CI run as a single file.
//!
//! Every number in a table is the JSON's number in the JSON's unit (nanoseconds, bytes/s,
//! messages/s), rounded to at most three decimals: a reader can copy it and find it in
//! results.json. Charts show the same figures in friendlier units (µs, MiB/s).
//!
//! This file is the page's shell: the document head, the header with the verdict, each
//! section's opening, and the order of the sections. Each section is its own file; the
//! cells, tables and figures they share are in `format`, the stylesheet in `style.css`.

mod calibration;
pub(crate) mod deltas;
mod format;
mod latency;
mod overlay;
mod peers;
mod process_pool;
mod scaling;
mod scenarios;
mod stress;
mod summary;
mod throughput;
mod timeline;
mod topology;

pub(crate) use format::{esc, utc_text};

use super::compare::{self, Comparison};
use crate::results::Results;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The page's stylesheet, inlined into its head so the page needs no other file.
const CSS: &str = include_str!("style.css");

/// The parts of the page; a step of `ipcbench run` that did not run names its sections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    Calibration,
    Latency,
    Throughput,
    Scaling,
    ProcessPool,
    Peers,
    Scenarios,
    Stress,
}

impl Section {
    pub(crate) fn id(self) -> &'static str {
        match self {
            Section::Calibration => "calibration",
            Section::Latency => "latency",
            Section::Throughput => "throughput",
            Section::Scaling => "scaling",
            Section::ProcessPool => "process-pool",
            Section::Peers => "peers",
            Section::Scenarios => "scenarios",
            Section::Stress => "stress",
        }
    }

    pub(crate) fn title(self) -> &'static str {
        match self {
            Section::Calibration => "Machine and calibration",
            Section::Latency => "Latency per mechanism",
            Section::Throughput => "Throughput against message size",
            Section::Scaling => "Scaling with producers and consumers",
            Section::ProcessPool => "Process start and pool costs",
            Section::Peers => "ipcbench vs CPython multiprocessing",
            Section::Scenarios => "Scenario verdicts",
            Section::Stress => "Stress and fault injection",
        }
    }
}

/// What the page is built from.
#[derive(Clone, Debug)]
pub(crate) struct Page<'a> {
    pub(crate) results: &'a Results,
    /// The baseline and the file it came from, for the deltas section.
    pub(crate) baseline: Option<(&'a Results, String)>,
    /// The results files the page was built from, shown in its header.
    pub(crate) sources: Vec<String>,
    /// Said at the top of a section instead of data that is not there, e.g.
    /// "not run: not built yet".
    pub(crate) notes: Vec<(Section, String)>,
    /// How each step of `ipcbench run` went, shown in the header: (step, status, seconds,
    /// result). Empty for `ipcbench report`.
    pub(crate) steps: Vec<(String, String, f64, String)>,
    /// Percent change past which a delta counts as a regression.
    pub(crate) threshold_pct: f64,
}

/// Writes DIR/index.html and DIR/results.json; returns the page's path.
pub(crate) fn write(dir: &Path, page: &Page) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: cannot create: {e}", dir.display()))?;
    let html = render(page)?;
    let index = dir.join("index.html");
    std::fs::write(&index, html).map_err(|e| format!("{}: cannot write: {e}", index.display()))?;
    let json = dir.join("results.json");
    page.results
        .save(&json)
        .map_err(|e| format!("{}: cannot write: {e}", json.display()))?;
    Ok(index)
}

/// Renders the whole page.
pub(crate) fn render(page: &Page) -> Result<String, String> {
    super::fonts::register();
    let r = page.results;
    let comparison = page
        .baseline
        .as_ref()
        .map(|(baseline, _)| deltas::compute(baseline, r, page.threshold_pct));
    // The latency workloads whose distributions are drawn overlaid (linked from the
    // verdict and the deltas).
    let overlays = match (&page.baseline, &comparison) {
        (Some((baseline, _)), Some(c)) => {
            let regressed: Vec<&str> = c
                .metrics
                .iter()
                .filter(|m| m.status == compare::Status::Regressed)
                .filter_map(|m| m.key.strip_prefix("latency/"))
                .collect();
            overlay::drawn(baseline, r, &regressed)
        }
        _ => Vec::new(),
    };
    let mut body = String::new();
    body.push_str(&header(page, comparison.as_ref(), &overlays));
    if let (Some((baseline, name)), Some(comparison)) = (&page.baseline, &comparison) {
        body.push_str(&deltas::section(comparison, baseline, name, &overlays));
        body.push_str(&overlay::section(baseline, name, r, &overlays));
    }
    body.push_str(&calibration::section(page));
    body.push_str(&latency::section(page));
    body.push_str(&throughput::section(page));
    body.push_str(&scaling::section(page));
    body.push_str(&process_pool::section(page));
    body.push_str(&peers::section(page));
    body.push_str(&scenarios::section(page));
    body.push_str(&stress::section(page));
    Ok(format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>ipcbench report — {}</title><style>\n{CSS}</style></head><body>{body}\
         <footer>ipcbench {} · schema version {} · self-contained page: nothing here is fetched \
         from anywhere.</footer></body></html>\n",
        esc(&utc_text(r.created_unix)),
        esc(&r.ipcbench_version),
        r.schema_version,
    ))
}

fn header(page: &Page, comparison: Option<&Comparison>, overlays: &[String]) -> String {
    let r = page.results;
    let m = &r.machine;
    let matched = r.scenarios.iter().filter(|s| s.matches).count();
    let stress_bad: u64 = r
        .stress
        .iter()
        .map(|s| s.losses + s.duplicates + s.corrupt + (s.hangs.len() + s.leaks.len()) as u64)
        .sum();
    let mut out = format!(
        "<header><h1>ipcbench report</h1><p class=\"meta\">Run of {} · profile <b>{}</b> · \
         ipcbench {} · from {}</p>",
        esc(&utc_text(r.created_unix)),
        esc(&r.profile),
        esc(&r.ipcbench_version),
        if page.sources.is_empty() {
            "this run".to_string()
        } else {
            page.sources
                .iter()
                .map(|s| format!("<code>{}</code>", esc(s)))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    let _ = write!(
        out,
        "<p class=\"meta\">Machine: {} · {} cores · Linux {} · host {}</p>",
        esc(&m.cpu_model),
        m.cores,
        esc(&m.kernel),
        esc(&m.hostname)
    );
    // The verdict comes first, right under the title; the machine line above it is one
    // line of context.
    out.push_str(&summary::verdict(page, comparison, overlays));
    for warning in r.machine_state.iter().flat_map(|s| &s.warnings) {
        let _ = write!(
            out,
            "<p class=\"note machine-warning\"><b>Busy machine:</b> {}; these figures may \
             not be the machine's own.</p>",
            esc(warning)
        );
    }
    out.push_str("<div class=\"cards\">");
    // A card for a part that has no results says so, rather than a reassuring zero.
    let count = |n: usize, text: String| {
        if n == 0 {
            "none in this run".into()
        } else {
            text
        }
    };
    let _ =
        write!(
        out,
        "<div class=\"card\" id=\"card-scenarios\">Scenario verdicts as expected<b>{}</b></div>",
        count(r.scenarios.len(), format!("{matched} of {}", r.scenarios.len()))
    );
    let _ = write!(
        out,
        "<div class=\"card\" id=\"card-stress\">Stress losses, duplicates, corrupt, hangs, leaks<b>{}</b></div>",
        count(r.stress.len(), stress_bad.to_string())
    );
    let _ = write!(
        out,
        "<div class=\"card\">Latency workloads<b>{}</b></div><div class=\"card\">Throughput workloads<b>{}</b></div>",
        r.latency.len(),
        r.throughput.len()
    );
    out.push_str("</div>");
    if !page.steps.is_empty() {
        out.push_str(
            "<table id=\"table-steps\"><thead><tr><th>step</th><th>status</th>\
             <th>seconds</th><th>result</th></tr></thead><tbody>",
        );
        for (step, status, seconds, result) in &page.steps {
            let _ = write!(
                out,
                "<tr data-key=\"{}\"{}><td>{}</td><td data-field=\"status\">{}</td>\
                 <td class=\"n\">{seconds:.1}</td><td>{}</td></tr>",
                esc(step),
                if status == "FAILED" || status == "PROBLEM" {
                    " class=\"bad\""
                } else {
                    ""
                },
                esc(step),
                esc(status),
                esc(result)
            );
        }
        out.push_str("</tbody></table>");
    }
    out.push_str("<nav>");
    if page.baseline.is_some() {
        out.push_str("<a href=\"#deltas\">Deltas</a><a href=\"#distributions\">Distributions</a>");
    }
    for s in [
        Section::Calibration,
        Section::Latency,
        Section::Throughput,
        Section::Scaling,
        Section::ProcessPool,
        Section::Peers,
        Section::Scenarios,
        Section::Stress,
    ] {
        let _ = write!(out, "<a href=\"#{}\">{}</a>", s.id(), s.title());
    }
    out.push_str("</nav></header>");
    out.push_str(&summary::distance_from_limit(page));
    out
}

/// The section's opening, its notes, and an explanation when it has nothing to show.
fn open_section(page: &Page, section: Section, empty: bool, intro: &str) -> String {
    let mut out = format!(
        "<section id=\"{}\"><h2>{}</h2>",
        section.id(),
        section.title()
    );
    let notes: Vec<&String> = page
        .notes
        .iter()
        .filter(|(s, _)| *s == section)
        .map(|(_, n)| n)
        .collect();
    for note in &notes {
        let _ = write!(out, "<p class=\"note\">{}</p>", esc(note));
    }
    if empty && notes.is_empty() {
        out.push_str("<p class=\"note\">No results for this section in the input.</p>");
    }
    if !empty {
        let _ = write!(out, "<p>{intro}</p>");
    }
    out
}
