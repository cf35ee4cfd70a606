//! The HTML report: one self-contained page per run. Charts are inline SVG from plotters,
//! the CSS is inline, and nothing is fetched (no script, no font, no image), so the page
//! reads offline and can be attached to a CI run as a single file.
//!
//! Every number in a table is the JSON's number in the JSON's unit (nanoseconds, bytes/s,
//! messages/s), rounded to at most three decimals: a reader can copy it and find it in
//! results.json. Charts show the same figures in friendlier units (µs, MiB/s).

pub mod deltas;
mod overlay;
mod summary;
mod timeline;
mod topology;

use super::charts::{self, Axis, Chart, Line, Scale, Ticks};
use super::compare::{self, Comparison};
use super::model::{Latency, Placement, Results, ScenarioOutcome, Throughput};
use super::units::{self, human, Unit};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The parts of the page; a step of `ipcbench run` that did not run names its sections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    Calibration,
    Latency,
    Throughput,
    Scaling,
    ProcessPool,
    Scenarios,
    Stress,
}

impl Section {
    pub fn id(self) -> &'static str {
        match self {
            Section::Calibration => "calibration",
            Section::Latency => "latency",
            Section::Throughput => "throughput",
            Section::Scaling => "scaling",
            Section::ProcessPool => "process-pool",
            Section::Scenarios => "scenarios",
            Section::Stress => "stress",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Section::Calibration => "Machine and calibration",
            Section::Latency => "Latency per mechanism",
            Section::Throughput => "Throughput against message size",
            Section::Scaling => "Scaling with producers and consumers",
            Section::ProcessPool => "Process start and pool costs",
            Section::Scenarios => "Scenario verdicts",
            Section::Stress => "Stress and fault injection",
        }
    }
}

/// What the page is built from.
#[derive(Clone, Debug)]
pub struct Page<'a> {
    pub results: &'a Results,
    /// The baseline and the file it came from, for the deltas section.
    pub baseline: Option<(&'a Results, String)>,
    /// The results files the page was built from, shown in its header.
    pub sources: Vec<String>,
    /// Said at the top of a section instead of data that is not there, e.g.
    /// "not run: not built yet".
    pub notes: Vec<(Section, String)>,
    /// How each step of `ipcbench run` went, shown in the header: (step, status, seconds,
    /// result). Empty for `ipcbench report`.
    pub steps: Vec<(String, String, f64, String)>,
    /// Percent change past which a delta counts as a regression.
    pub threshold_pct: f64,
}

/// Families whose latencies are costs of processes and pools rather than message passing.
const PROCESS_FAMILIES: [&str; 2] = ["process", "pool"];

fn is_process_family(family: &str) -> bool {
    PROCESS_FAMILIES.contains(&family)
}

/// Writes DIR/index.html and DIR/results.json; returns the page's path.
pub fn write(dir: &Path, page: &Page) -> Result<PathBuf, String> {
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

/// A number as the tables show it: the JSON's value, rounded to at most three decimals.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return "—".into();
    }
    // Below 1, four significant digits, so a small ratio does not show as 0.
    let decimals = if v.abs() >= 1.0 || v == 0.0 {
        3
    } else {
        (3 - v.abs().log10().floor() as i32).clamp(3, 12) as usize
    };
    let text = format!("{v:.decimals$}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".into()
    } else {
        text.to_string()
    }
}

/// Escapes text for HTML content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// "2026-11-27 04:33:00 UTC" from seconds since the epoch (no date crate needed for this).
pub fn utc_text(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// A table: header cells (with units) and rows keyed for the tests; each cell names the
/// JSON field it shows.
struct Table {
    id: String,
    head: Vec<&'static str>,
    rows: Vec<(String, Vec<Cell>)>,
    /// Keys of rows to mark as failed.
    bad: Vec<String>,
}

struct Cell {
    field: &'static str,
    html: String,
    class: &'static str,
    /// The exact figure behind a rounded one: kept in `data-value` and the title (hover).
    exact: Option<f64>,
}

fn cell(field: &'static str, text: &str) -> Cell {
    Cell {
        field,
        html: esc(text),
        class: "",
        exact: None,
    }
}

fn num_cell(field: &'static str, v: f64) -> Cell {
    Cell {
        field,
        html: num(v),
        class: "n",
        exact: Some(v),
    }
}

/// A figure in the unit a person reads (`6.27 GiB/s`), the exact value on hover.
fn unit_cell(field: &'static str, v: f64, unit: Unit) -> Cell {
    Cell {
        field,
        html: esc(&human(v, unit)),
        class: "n",
        exact: Some(v),
    }
}

/// A figure's ratio, with the calibration it is a ratio to.
fn ratio_cell(ratio: Option<f64>, calibration: Option<&str>) -> Cell {
    match (ratio, calibration) {
        (Some(ratio), Some(name)) => Cell {
            field: "ratio",
            html: format!(
                "{} <small>of {}</small>",
                esc(&human(ratio, Unit::Times)),
                esc(name)
            ),
            class: "n",
            exact: Some(ratio),
        },
        (Some(ratio), None) => unit_cell("ratio", ratio, Unit::Times),
        (None, _) => cell("ratio", "—"),
    }
}

impl Table {
    fn new(id: &str, head: Vec<&'static str>) -> Table {
        Table {
            id: id.to_string(),
            head,
            rows: Vec::new(),
            bad: Vec::new(),
        }
    }

    fn html(&self) -> String {
        let mut out = format!("<table id=\"{}\"><thead><tr>", esc(&self.id));
        for h in &self.head {
            let _ = write!(out, "<th>{}</th>", esc(h));
        }
        out.push_str("</tr></thead><tbody>");
        for (key, cells) in &self.rows {
            let class = if self.bad.contains(key) {
                " class=\"bad\""
            } else {
                ""
            };
            let _ = write!(out, "<tr data-key=\"{}\"{class}>", esc(key));
            for c in cells {
                let class = if c.class.is_empty() {
                    String::new()
                } else {
                    format!(" class=\"{}\"", c.class)
                };
                let exact = match c.exact {
                    Some(v) => format!(" data-value=\"{0}\" title=\"{0}\"", num(v)),
                    None => String::new(),
                };
                let _ = write!(
                    out,
                    "<td data-field=\"{}\"{class}{exact}>{}</td>",
                    c.field, c.html
                );
            }
            out.push_str("</tr>");
        }
        out.push_str("</tbody></table>");
        out
    }
}

fn figure(chart: &Chart) -> String {
    let legend = serde_json::to_string(&chart.legend).unwrap_or_default();
    format!(
        "<figure class=\"chart\" id=\"chart-{id}\" data-title=\"{title}\" data-x-label=\"{x}\" \
         data-y-label=\"{y}\" data-legend=\"{legend}\">{svg}<figcaption>{title}</figcaption></figure>",
        id = esc(&chart.id),
        title = esc(&chart.title),
        x = esc(&chart.x_label),
        y = esc(&chart.y_label),
        legend = esc(&legend),
        svg = chart.svg,
    )
}

fn chart_html(chart: Result<Chart, String>) -> String {
    match chart {
        Ok(chart) => figure(&chart),
        Err(e) => format!("<p class=\"note\">Chart not drawn: {}</p>", esc(&e)),
    }
}

/// A chart with its table beside it (below it on a narrow screen).
fn pair(chart: Result<Chart, String>, table: &Table) -> String {
    format!(
        "<div class=\"pair\">{}<div class=\"table\">{}</div></div>",
        chart_html(chart),
        table.html()
    )
}

/// Renders the whole page.
pub fn render(page: &Page) -> Result<String, String> {
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
    body.push_str(&calibration_section(page));
    body.push_str(&latency_section(page));
    body.push_str(&throughput_section(page));
    body.push_str(&scaling_section(page));
    body.push_str(&process_section(page));
    body.push_str(&scenario_section(page));
    body.push_str(&stress_section(page));
    Ok(format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>ipcbench report — {}</title><style>{CSS}</style></head><body>{body}\
         <footer>ipcbench {} · schema version {} · self-contained page: nothing here is fetched \
         from anywhere.</footer></body></html>\n",
        esc(&utc_text(r.created_unix)),
        esc(&r.ipcbench_version),
        r.schema_version,
    ))
}

const CSS: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 auto;max-width:1800px;
padding:0 24px 40px;color:#1a1a1a;background:#fafafa;line-height:1.4}
h1{font-size:1.6em;margin:.8em 0 .2em}h2{border-bottom:2px solid #ccc;padding-bottom:.2em;margin-top:2em}
h3{margin:1.2em 0 .4em}
nav{margin-top:1em}nav a{margin-right:1em}
.meta{color:#444}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:1em 0}
.card{background:#fff;border:1px solid #ccc;border-radius:6px;padding:8px 14px;min-width:10em}
.card b{display:block;font-size:1.4em}
.pair{display:flex;flex-wrap:wrap;gap:20px;align-items:flex-start;margin:12px 0}
figure.chart{margin:0;background:#fff;border:1px solid #ddd;padding:4px;max-width:100%}
figure.chart svg{display:block;max-width:100%;height:auto}
figcaption{display:none}
.table{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;background:#fff;font-size:.9em}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eee}
td.n{text-align:right;font-variant-numeric:tabular-nums}
td[data-field=marker],td[data-field=matches],td[data-field=status]{white-space:nowrap}
tr.bad td{background:#fde8e0}
tr.good td{background:#e6f4ea}
.note{background:#fff6d6;border:1px solid #e0c060;padding:6px 10px;border-radius:4px}
pre{background:#f0f0f0;padding:6px 10px;overflow-x:auto;margin:4px 0}
.verdict{font-size:1.15em;padding:8px 12px;border-radius:4px;border:1px solid}
.verdict.good{background:#e6f4ea;border-color:#7bbf8e}.verdict.bad{background:#fde8e0;border-color:#d98c6f}
.timeline{margin:8px 0;overflow-x:auto;background:#fff}
.repro{background:#fff;border:1px solid #ddd;padding:6px 12px;margin:8px 0;border-radius:4px}
footer{margin-top:3em;color:#666;font-size:.85em}
";

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

fn calibration_section(page: &Page) -> String {
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

/// The row label of a latency workload within its family's chart.
fn latency_label(l: &Latency) -> String {
    if l.message_bytes == 0 {
        // No message (a lock, a process start): the size would only be noise.
        format!("{} · {}", l.flavor, l.placement.label())
    } else {
        format!(
            "{} · {} · {}",
            l.flavor,
            charts::byte_ticks(l.message_bytes as f64),
            l.placement.label()
        )
    }
}

fn latency_table(id: &str, items: &[&Latency]) -> Table {
    let mut table = Table::new(
        id,
        vec![
            "workload",
            "placement",
            "bytes",
            "p50",
            "p90",
            "p99",
            "p99.9",
            "max",
            "mean",
            "samples",
            "spread",
            "ratio to calibration",
        ],
    );
    for l in items {
        let p = &l.percentiles;
        table.rows.push((
            l.workload.clone(),
            vec![
                cell("workload", &l.workload),
                cell("placement", l.placement.label()),
                unit_cell("message_bytes", l.message_bytes as f64, Unit::Bytes),
                unit_cell("p50", p.p50, Unit::Nanos),
                unit_cell("p90", p.p90, Unit::Nanos),
                unit_cell("p99", p.p99, Unit::Nanos),
                unit_cell("p999", p.p999, Unit::Nanos),
                unit_cell("max", p.max, Unit::Nanos),
                unit_cell("mean", p.mean, Unit::Nanos),
                unit_cell("samples", p.samples as f64, Unit::Rate),
                unit_cell("spread", l.spread, Unit::Fraction),
                ratio_cell(l.ratio, l.calibration.as_deref()),
            ],
        ));
    }
    table
}

/// p50/p99/p99.9 bars, one group per latency, on a log time axis.
fn percentile_chart(
    id: &str,
    title: &str,
    items: &[&Latency],
    labels: &[String],
    category_label: &str,
) -> Result<Chart, String> {
    let pick = |f: fn(&Latency) -> f64| -> Vec<Option<f64>> {
        items.iter().map(|l| Some(f(l) / 1000.0)).collect()
    };
    charts::grouped_bars(
        id,
        title,
        &Axis::new(
            "time per operation (µs, log scale)",
            Scale::Log,
            Ticks::Plain,
        ),
        category_label,
        labels,
        &[
            ("p50".into(), pick(|l| l.percentiles.p50)),
            ("p99".into(), pick(|l| l.percentiles.p99)),
            ("p99.9".into(), pick(|l| l.percentiles.p999)),
        ],
    )
}

fn cdf_chart(id: &str, title: &str, items: &[&Latency]) -> Option<Result<Chart, String>> {
    let lines: Vec<Line> = items
        .iter()
        .filter(|l| !l.cdf.is_empty())
        .map(|l| Line {
            label: latency_label(l),
            points: l.cdf.iter().map(|(ns, f)| (ns / 1000.0, *f)).collect(),
            dashed: l.placement == Placement::SameCpu,
        })
        .collect();
    if lines.is_empty() {
        return None;
    }
    Some(cdf_lines(id, title, &lines))
}

/// A CDF chart of `lines` (points in µs and cumulative fraction): the latency sections'
/// and the two-run overlay's one shape.
fn cdf_lines(id: &str, title: &str, lines: &[Line]) -> Result<Chart, String> {
    charts::lines(
        id,
        title,
        &Axis::new(
            "time per operation (µs, log scale)",
            Scale::Log,
            Ticks::Plain,
        ),
        &Axis::new(
            "fraction of operations ≤ time (0–1)",
            Scale::Linear,
            Ticks::Plain,
        ),
        lines,
        None,
        false,
    )
}

/// Groups by family, keeping the order of first appearance.
fn by_family<'a, T>(
    items: impl Iterator<Item = &'a T>,
    family: fn(&T) -> &str,
) -> Vec<(String, Vec<&'a T>)>
where
    T: 'a,
{
    let mut groups: Vec<(String, Vec<&T>)> = Vec::new();
    for item in items {
        let f = family(item).to_string();
        match groups.iter_mut().find(|(g, _)| *g == f) {
            Some((_, list)) => list.push(item),
            None => groups.push((f, vec![item])),
        }
    }
    groups
}

fn latency_section(page: &Page) -> String {
    let items = page
        .results
        .latency
        .iter()
        .filter(|l| !is_process_family(&l.family));
    let groups = by_family(items, |l: &Latency| &l.family);
    let mut out = open_section(
        page,
        Section::Latency,
        groups.is_empty(),
        "Time per operation between real processes — a ping-pong round trip for message \
         passing, a lock+unlock for locks — one chart pair per mechanism. Bars: p50, p99 and \
         p99.9; curve: the whole distribution (the share of operations at or under a time). \
         Dashed curves: both processes on one CPU. Lower and further left is faster.",
    );
    for (family, items) in &groups {
        let _ = write!(out, "<h3 id=\"latency-{0}\">{0}</h3>", esc(family));
        let labels: Vec<String> = items.iter().map(|l| latency_label(l)).collect();
        let bars = percentile_chart(
            &format!("latency-{family}"),
            &format!("{family}: latency percentiles"),
            items,
            &labels,
            "flavor · message size · placement",
        );
        let table = latency_table(&format!("table-latency-{family}"), items);
        // The two charts side by side, the table under them (it is wide).
        let mut charts = chart_html(bars);
        if let Some(cdf) = cdf_chart(
            &format!("cdf-{family}"),
            &format!("{family}: latency distribution (CDF)"),
            items,
        ) {
            charts.push_str(&chart_html(cdf));
        }
        let _ = write!(
            out,
            "<div class=\"pair\">{charts}</div><div class=\"table\">{}</div>",
            table.html()
        );
    }
    out.push_str("</section>");
    out
}

fn throughput_table(id: &str, items: &[&Throughput]) -> Table {
    let mut table = Table::new(
        id,
        vec![
            "workload",
            "processes",
            "bytes",
            "msgs/s",
            "bandwidth",
            "spread",
            "ratio to calibration",
        ],
    );
    for t in items {
        table.rows.push((
            t.workload.clone(),
            vec![
                cell("workload", &t.workload),
                cell("config", &processes_label(t.producers, t.consumers)),
                unit_cell("message_bytes", t.message_bytes as f64, Unit::Bytes),
                unit_cell("msgs_per_sec", t.msgs_per_sec, Unit::Rate),
                unit_cell("bytes_per_sec", t.bytes_per_sec, Unit::BytesPerSec),
                unit_cell("spread", t.spread, Unit::Fraction),
                ratio_cell(t.ratio, t.calibration.as_deref()),
            ],
        ));
    }
    table
}

/// "2×2" for producers × consumers; "4 procs" for processes that all do the same (a lock
/// contended by 4, recorded with no consumers).
fn processes_label(producers: u32, consumers: u32) -> String {
    if consumers == 0 {
        format!("{producers} proc{}", if producers == 1 { "" } else { "s" })
    } else {
        format!("{producers}×{consumers}")
    }
}

fn flavor_key(t: &Throughput) -> String {
    format!("{}/{}", t.family, t.flavor)
}

fn throughput_section(page: &Page) -> String {
    let items: Vec<&Throughput> = page
        .results
        .throughput
        .iter()
        .filter(|t| t.producers == 1 && t.consumers == 1 && !is_process_family(&t.family))
        .collect();
    let mut out = open_section(
        page,
        Section::Throughput,
        items.is_empty(),
        "One producer streaming to one consumer, by message size (both axes logarithmic), one \
         line per mechanism flavor. Higher is faster.",
    );
    if items.is_empty() {
        out.push_str("</section>");
        return out;
    }
    let mut lines: Vec<Line> = Vec::new();
    for t in &items {
        let key = flavor_key(t);
        let point = (t.message_bytes as f64, t.bytes_per_sec / 1_048_576.0);
        match lines.iter_mut().find(|l| l.label == key) {
            Some(line) => line.points.push(point),
            None => lines.push(Line {
                label: key,
                points: vec![point],
                dashed: false,
            }),
        }
    }
    for line in &mut lines {
        line.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let chart = charts::lines(
        "throughput",
        "Throughput against message size (1 producer → 1 consumer)",
        &Axis::new("message size (bytes, log scale)", Scale::Log, Ticks::Bytes),
        &Axis::new("throughput (MiB/s, log scale)", Scale::Log, Ticks::Plain),
        &lines,
        None,
        true,
    );
    out.push_str(&pair(chart, &throughput_table("table-throughput", &items)));
    out.push_str("</section>");
    out
}

fn scaling_section(page: &Page) -> String {
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

fn process_section(page: &Page) -> String {
    let r = page.results;
    let latencies: Vec<&Latency> = r
        .latency
        .iter()
        .filter(|l| is_process_family(&l.family))
        .collect();
    let throughputs: Vec<&Throughput> = r
        .throughput
        .iter()
        .filter(|t| is_process_family(&t.family))
        .collect();
    let mut out = open_section(
        page,
        Section::ProcessPool,
        latencies.is_empty() && throughputs.is_empty(),
        "What it costs to start and join a process (by start method), and to run a task on a \
         pool compared with a process per task. Shorter is cheaper.",
    );
    if !latencies.is_empty() {
        let labels: Vec<String> = latencies
            .iter()
            .map(|l| format!("{}/{} · {}", l.family, l.flavor, l.placement.label()))
            .collect();
        let chart = percentile_chart(
            "process-pool",
            "Process start+join and pool task costs",
            &latencies,
            &labels,
            "family/flavor · placement",
        );
        out.push_str(&pair(
            chart,
            &latency_table("table-process-pool", &latencies),
        ));
    }
    if !throughputs.is_empty() {
        out.push_str("<h3>Tasks per second</h3>");
        out.push_str(&throughput_table("table-process-pool-throughput", &throughputs).html());
    }
    out.push_str("</section>");
    out
}

fn scenario_row_class(s: &ScenarioOutcome) -> &'static str {
    if s.matches {
        ""
    } else {
        "bad"
    }
}

fn scenario_section(page: &Page) -> String {
    let r = page.results;
    let mut out = open_section(
        page,
        Section::Scenarios,
        r.scenarios.is_empty(),
        "Each race scenario in its variants. <i>Unsafe</i> variants are expected to be \
         <b>caught</b> (violated, hung or crashed); <i>safe</i> variants are expected to \
         <b>hold</b>. The last column says whether the verdict is what was expected — in \
         words, not only by colour.",
    );
    if r.scenarios.is_empty() {
        out.push_str("</section>");
        return out;
    }
    let unexpected: Vec<&ScenarioOutcome> = r.scenarios.iter().filter(|s| !s.matches).collect();
    if unexpected.is_empty() {
        let _ = write!(
            out,
            "<p id=\"scenario-summary\">All {} verdicts are as expected.</p>",
            r.scenarios.len()
        );
    } else {
        let _ = write!(
            out,
            "<p id=\"scenario-summary\" class=\"note\"><b>✘ {} of {} verdicts are NOT as expected:</b> {}</p>",
            unexpected.len(),
            r.scenarios.len(),
            unexpected
                .iter()
                .map(|s| format!("<a href=\"#repro-{0}\">{0}</a>", esc(&scenario_key(s))))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut table = String::from(
        "<table id=\"table-scenarios\"><thead><tr><th>scenario</th><th>variant</th>\
         <th>expected</th><th>verdict</th><th>as expected?</th><th>cases</th><th>seconds</th>\
         <th>detail</th></tr></thead><tbody>",
    );
    for s in &r.scenarios {
        let expected = match s.expected {
            super::model::Expectation::Holds => "holds",
            super::model::Expectation::Caught => "caught",
        };
        let _ = write!(
            table,
            "<tr data-key=\"{key}\" class=\"{class}\"><td data-field=\"scenario\">{}</td>\
             <td data-field=\"variant\">{}</td><td data-field=\"expected\">{expected}</td>\
             <td data-field=\"verdict\">{}</td><td data-field=\"matches\">{}</td>\
             <td data-field=\"cases\" class=\"n\">{}</td><td data-field=\"seconds\" class=\"n\">{}</td>\
             <td data-field=\"detail\">{}</td></tr>",
            esc(&s.scenario),
            esc(&s.variant),
            esc(&s.verdict),
            if s.matches {
                "✔ yes"
            } else {
                "✘ NO — unexpected"
            },
            s.cases,
            num(s.seconds),
            esc(&s.detail),
            key = esc(&scenario_key(s)),
            class = scenario_row_class(s),
        );
    }
    table.push_str("</tbody></table>");
    out.push_str(&table);
    // Reproductions: the unexpected verdicts first, then the caught unsafe variants.
    let mut with_repro: Vec<&ScenarioOutcome> = r
        .scenarios
        .iter()
        .filter(|s| s.reproduction.is_some())
        .collect();
    with_repro.sort_by_key(|s| s.matches);
    if !with_repro.is_empty() {
        out.push_str(
            "<h3>Reproductions</h3><p>Every failing case with what reruns it: seed, shrunk \
             parameters, forced schedule and the exact command.</p>",
        );
    }
    for s in with_repro {
        let Some(repro) = &s.reproduction else {
            continue;
        };
        let _ = write!(
            out,
            "<div class=\"repro\" id=\"repro-{key}\"><b>{key}</b> — {} ({})<br>seed <code>{}</code> \
             · parameters <code>{}</code>{}<pre class=\"command\"><code>{}</code></pre>{}</div>",
            esc(&s.verdict),
            if s.matches {
                "expected: the unsafe variant was caught"
            } else {
                "✘ NOT as expected"
            },
            repro.seed,
            esc(&repro.parameters),
            if repro.schedule.is_empty() {
                " · free-running (no forced schedule)".to_string()
            } else {
                format!(" · schedule <code>{}</code>", esc(&repro.schedule))
            },
            esc(&repro.command),
            timeline::svg(&scenario_key(s), repro, &s.verdict),
            key = esc(&scenario_key(s)),
        );
    }
    out.push_str("</section>");
    out
}

fn scenario_key(s: &ScenarioOutcome) -> String {
    format!("{}/{}", s.scenario, s.variant)
}

fn stress_section(page: &Page) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_the_json_value() {
        assert_eq!(num(11234.0), "11234");
        assert_eq!(num(0.9545454), "0.9545");
        assert_eq!(num(2_684_354_560.0), "2684354560");
        assert_eq!(num(-0.00001), "-0.00001");
        assert_eq!(num(0.000_512_34), "0.0005123");
        assert_eq!(num(-0.0), "0");
        assert_eq!(num(118.5), "118.5");
        assert_eq!(num(f64::NAN), "—");
    }

    #[test]
    fn dates_are_utc() {
        assert_eq!(utc_text(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_text(1_795_754_000), "2026-11-27 04:33:20 UTC");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
