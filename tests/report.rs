//! `ipcbench report` over a fixed, realistic results file (tests/fixtures/results.json):
//! the numbers shown are the JSON's, every section and chart is there with its title,
//! axis labels and legend, deltas put regressions first, bad input exits 2 naming the
//! file, and the page renders in headless Chromium with no request and no console error.

use ipcbench::report::model::{Results, SCHEMA_VERSION};
use ipcbench::report::units;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/results.json")
}

/// A real `ipcbench bench --quick --peer cpython` run, trimmed to some CPython workloads,
/// the ipcbench workloads they mirror and the calibrations both are divided by.
fn peers_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/peers.json")
}

fn ipcbench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ipcbench"))
        .args(args)
        .output()
        .expect("run ipcbench")
}

fn report(inputs: &[&Path], baseline: Option<&Path>, out: &Path) -> Output {
    let mut args: Vec<String> = vec!["report".into()];
    args.extend(inputs.iter().map(|p| p.display().to_string()));
    if let Some(b) = baseline {
        args.push("--baseline".into());
        args.push(b.display().to_string());
    }
    args.push("--out".into());
    args.push(out.display().to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ipcbench(&args)
}

/// Runs `ipcbench run ARGS --out DIR`, which must succeed; returns its stdout, the page
/// and the results it wrote.
/// `ipcbench run ARGS --out OUT_DIR` with `env` set, which must succeed.
fn run_into(args: &[&str], env: &[(&str, &str)], out_dir: &Path) -> (String, String, Results) {
    let out_arg = out_dir.display().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_ipcbench"))
        .arg("run")
        .args(args)
        .args(["--out", &out_arg])
        .envs(env.iter().copied())
        .output()
        .expect("run ipcbench");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&out_dir.join("index.html").display().to_string()));
    let html = std::fs::read_to_string(out_dir.join("index.html")).unwrap();
    let results = Results::load(&out_dir.join("results.json")).unwrap();
    (stdout, html, results)
}

fn built(dir: &Path, baseline: Option<&Path>) -> String {
    let out = report(&[&fixture()], baseline, dir);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(dir.join("index.html")).unwrap()
}

/// The text of the cell `field` in the table row keyed `key` (the first such row).
fn cell(html: &str, key: &str, field: &str) -> Option<String> {
    let row_start = html.find(&format!("<tr data-key=\"{key}\""))?;
    let row = &html[row_start..];
    let row = &row[..row.find("</tr>")?];
    let at = row.find(&format!("data-field=\"{field}\""))?;
    let content = &row[at..];
    let content = &content[content.find('>')? + 1..];
    Some(content[..content.find("</td>")?].to_string())
}

/// The opening tag's attribute `name` of the cell `field` in the row keyed `key`.
fn cell_attribute(html: &str, key: &str, field: &str, name: &str) -> Option<String> {
    let row_start = html.find(&format!("<tr data-key=\"{key}\""))?;
    let row = &html[row_start..];
    let row = &row[..row.find("</tr>")?];
    let at = row.find(&format!("data-field=\"{field}\""))?;
    let tag = &row[at..];
    let tag = &tag[..tag.find('>')?];
    let value = &tag[tag.find(&format!("{name}=\""))? + name.len() + 2..];
    Some(value[..value.find('"')?].to_string())
}

/// A cell shows its figure in a unit a person reads (`6.27 GiB/s`) and keeps the exact
/// value in `data-value` (and the title): both must be the JSON's number, the exact one
/// to the table's rounding, the shown one to its three significant figures.
fn assert_same(html: &str, key: &str, field: &str, want: f64) {
    let text = cell(html, key, field).unwrap_or_else(|| panic!("no {field} cell in row {key}"));
    // A plain count is shown exactly and needs no separate exact value.
    let exact_text = cell_attribute(html, key, field, "data-value")
        .unwrap_or_else(|| text.split_whitespace().next().unwrap_or("").to_string());
    let exact: f64 = exact_text
        .parse()
        .unwrap_or_else(|_| panic!("{key} {field}: {text:?} keeps no exact value"));
    let tolerance = if want.abs() >= 1.0 {
        5e-4
    } else {
        want.abs() * 1e-3 + 1e-12
    };
    assert!(
        (exact - want).abs() <= tolerance,
        "{key} {field}: the page keeps {exact}, results.json has {want}"
    );
    let visible = text.split("<small>").next().unwrap_or("");
    let shown = units::parse_human(visible)
        .unwrap_or_else(|| panic!("{key} {field}: {visible:?} is not a figure"));
    assert!(
        (shown - want).abs() <= want.abs() * 6e-3 + 1e-12,
        "{key} {field}: the page shows {visible:?}, results.json has {want}"
    );
}

#[test]
fn tables_show_the_numbers_of_the_json() {
    let dir = tempfile::tempdir().unwrap();
    let html = built(dir.path(), None);
    let results = Results::load(&fixture()).unwrap();
    assert!(!results.latency.is_empty() && !results.throughput.is_empty());
    for c in &results.calibration {
        let key = format!("{}/{}", c.name, c.placement.label());
        assert_same(&html, &key, "value", c.value);
        assert_same(&html, &key, "spread", c.spread);
    }
    for l in &results.latency {
        let p = &l.percentiles;
        for (field, want) in [
            ("p50", p.p50),
            ("p90", p.p90),
            ("p99", p.p99),
            ("p999", p.p999),
            ("max", p.max),
            ("mean", p.mean),
            ("samples", p.samples as f64),
        ] {
            assert_same(&html, &l.workload, field, want);
        }
        if let Some(ratio) = l.ratio {
            assert_same(&html, &l.workload, "ratio", ratio);
        }
    }
    for t in &results.throughput {
        assert_same(&html, &t.workload, "msgs_per_sec", t.msgs_per_sec);
        assert_same(&html, &t.workload, "bytes_per_sec", t.bytes_per_sec);
        assert_same(&html, &t.workload, "message_bytes", t.message_bytes as f64);
        if let Some(ratio) = t.ratio {
            assert_same(&html, &t.workload, "ratio", ratio);
        }
    }
    for s in &results.stress {
        for (field, want) in [
            ("messages", s.messages),
            ("kills", s.kills),
            ("stops", s.stops),
            ("slows", s.slows),
            ("losses", s.losses),
            ("duplicates", s.duplicates),
            ("corrupt", s.corrupt),
            ("accounted_in_flight", s.accounted_in_flight),
        ] {
            assert_same(&html, &s.target, field, want as f64);
        }
    }
    for s in &results.scenarios {
        let key = format!("{}/{}", s.scenario, s.variant);
        assert_eq!(cell(&html, &key, "verdict").as_deref(), Some(&*s.verdict));
        assert_same(&html, &key, "cases", s.cases as f64);
        let marker = cell(&html, &key, "matches").unwrap();
        assert_eq!(marker.contains("yes"), s.matches, "{key}: {marker}");
    }
    // The written results.json is the input, unchanged.
    assert_eq!(
        Results::load(&dir.path().join("results.json")).unwrap(),
        results
    );
}

#[test]
fn every_section_and_chart_is_there_with_labels_and_legend() {
    let dir = tempfile::tempdir().unwrap();
    let html = built(dir.path(), None);
    for section in [
        "calibration",
        "latency",
        "throughput",
        "scaling",
        "process-pool",
        "peers",
        "scenarios",
        "stress",
    ] {
        assert!(
            html.contains(&format!("<section id=\"{section}\">")),
            "section {section} missing"
        );
    }
    let results = Results::load(&fixture()).unwrap();
    let mut charts = vec![
        "calibration".to_string(),
        "throughput".into(),
        "process-pool".into(),
        "stress".into(),
    ];
    // Scaling: one panel per family that has a flavor measured at several configurations.
    let mut configurations: std::collections::BTreeMap<(&str, &str, u64), usize> =
        Default::default();
    for t in results
        .throughput
        .iter()
        .filter(|t| t.family != "process" && t.family != "pool")
    {
        *configurations
            .entry((&t.family, &t.flavor, t.message_bytes))
            .or_default() += 1;
    }
    let mut panels: Vec<String> = configurations
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|((family, _, _), _)| format!("scaling-{family}"))
        .collect();
    panels.dedup();
    assert!(!panels.is_empty(), "the fixture has a scaling panel");
    charts.extend(panels);
    for l in results
        .latency
        .iter()
        .filter(|l| l.family != "process" && l.family != "pool")
    {
        charts.push(format!("latency-{}", l.family));
        charts.push(format!("cdf-{}", l.family));
    }
    for id in charts {
        assert_chart_labelled(&html, &id);
    }
}

/// The chart `id` is drawn, and its title, axis labels (the x axis with a unit), every
/// legend entry and some tick labels are text in its SVG.
fn assert_chart_labelled(html: &str, id: &str) {
    let start = html
        .find(&format!("<figure class=\"chart\" id=\"chart-{id}\""))
        .unwrap_or_else(|| panic!("chart {id} missing"));
    let figure = &html[start..start + html[start..].find("</figure>").unwrap()];
    let attr = |name: &str| -> String {
        let at = figure.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        figure[at..at + figure[at..].find('"').unwrap()].to_string()
    };
    let svg = &figure[figure
        .find("<svg")
        .unwrap_or_else(|| panic!("{id}: no SVG"))..];
    let texts: String = svg
        .split("<text")
        .skip(1)
        .map(|t| &t[t.find('>').unwrap() + 1..t.find("</text>").unwrap()])
        .collect::<Vec<_>>()
        .join("\n");
    for what in ["data-title", "data-x-label", "data-y-label"] {
        let want = attr(what);
        assert!(!want.is_empty(), "{id}: empty {what}");
        assert!(texts.contains(&want), "{id}: {what} {want:?} not drawn");
    }
    assert!(
        attr("data-x-label").contains('('),
        "{id}: x axis has no unit"
    );
    let legend: Vec<String> =
        serde_json::from_str(&attr("data-legend").replace("&quot;", "\"")).unwrap();
    assert!(!legend.is_empty(), "{id}: no legend");
    for entry in legend {
        let entry = entry.replace('&', "&amp;").replace('<', "&lt;");
        assert!(texts.contains(&entry), "{id}: legend {entry:?} not drawn");
    }
    // Tick labels: more than title + axis labels + legend.
    assert!(texts.lines().count() >= 6, "{id}: axes have no ticks");
}

/// Each CPython workload beside the ipcbench workload it mirrors (by the peer's own
/// mapping): both figures as the JSON has them, the ratio in words, both distributions of
/// each latency on one labelled chart, the version and start methods, a link in the nav.
#[test]
fn cpython_figures_sit_beside_the_workloads_they_mirror() {
    use ipcbench::measure::peer::{is_peer_flavor, twin};
    let dir = tempfile::tempdir().unwrap();
    let out = report(&[&peers_fixture()], None, dir.path());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(dir.path().join("index.html")).unwrap();
    let results = Results::load(&peers_fixture()).unwrap();
    assert!(html.contains("<a href=\"#peers\">ipcbench vs CPython multiprocessing</a>"));
    let start = html
        .find("<section id=\"peers\">")
        .expect("the peers section");
    let section = &html[start..start + html[start..].find("</section>").unwrap()];
    let info = &results.peers[0];
    assert!(
        section.contains(&format!(
            "{} {}, start methods <b>{}</b>",
            info.implementation,
            info.version,
            info.start_methods.join(", ")
        )),
        "{section}"
    );
    // Only the CPython rows are in the table: count them against the JSON.
    let mut rows = 0;
    // "ipcbench 12.3× faster": the factor to three significant figures, the right word.
    let assert_ratio = |key: &str, speedup: f64| {
        let text = cell(section, key, "speedup").unwrap_or_else(|| panic!("{key}: no ratio"));
        if text == "ipcbench as fast (1×)" {
            assert!((speedup - 1.0).abs() < 5e-3, "{key}: {text} for {speedup}");
            return;
        }
        let (word, factor) = if speedup > 1.0 {
            ("faster", speedup)
        } else {
            ("slower", 1.0 / speedup)
        };
        let number = text
            .strip_prefix("ipcbench ")
            .and_then(|t| t.strip_suffix(&format!("× {word}")))
            .unwrap_or_else(|| panic!("{key}: {text:?} does not say ipcbench is {word}"));
        let shown: f64 = number.parse().unwrap();
        assert!(
            (shown - factor).abs() <= factor * 5e-3,
            "{key}: {text} for {factor}"
        );
        let digits = number.replace('.', "");
        let digits = digits.trim_start_matches('0').trim_end_matches('0');
        assert!(digits.len() <= 3, "{key}: {text} has more than 3 figures");
    };
    for peer in results.latency.iter().filter(|l| is_peer_flavor(&l.flavor)) {
        let name = twin(&peer.workload).expect("every fixture workload has a twin");
        let ours = results.latency.iter().find(|l| l.workload == name).unwrap();
        let key = format!("peer/{}", peer.workload);
        assert_eq!(cell(section, &key, "workload").as_deref(), Some(&*name));
        assert_same(section, &key, "peer", peer.percentiles.p50);
        assert_same(section, &key, "ours", ours.percentiles.p50);
        assert_ratio(&key, peer.percentiles.p50 / ours.percentiles.p50);
        assert_chart_labelled(
            section,
            &format!("peer-{}", peer.workload.replace('/', "-")),
        );
        rows += 1;
    }
    for peer in results
        .throughput
        .iter()
        .filter(|t| is_peer_flavor(&t.flavor))
    {
        let name = twin(&peer.workload).expect("every fixture workload has a twin");
        let ours = results
            .throughput
            .iter()
            .find(|t| t.workload == name)
            .unwrap();
        let key = format!("peer/{}", peer.workload);
        assert_same(section, &key, "peer", peer.msgs_per_sec);
        assert_same(section, &key, "ours", ours.msgs_per_sec);
        assert_ratio(&key, ours.msgs_per_sec / peer.msgs_per_sec);
        rows += 1;
    }
    assert!(rows >= 10, "the fixture has CPython figures");
    assert_eq!(section.matches("<tr data-key=\"peer/").count(), rows);
    assert!(section.contains("Scenarios: not run on Python code in these results"));

    // Results without CPython figures: the section says the lane was not run.
    let dir = tempfile::tempdir().unwrap();
    let html = built(dir.path(), None);
    let start = html
        .find("<section id=\"peers\">")
        .expect("the peers section");
    let section = &html[start..start + html[start..].find("</section>").unwrap()];
    assert!(section.contains("id=\"peers-not-run\""), "{section}");
    assert!(!section.contains("<table") && !section.contains("<figure"));
}

#[test]
fn the_page_fetches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let html = built(dir.path(), None);
    for banned in [
        "<script", "<link", "<img", "<iframe", "@import", "url(", "src=",
    ] {
        assert!(!html.contains(banned), "the page contains {banned}");
    }
    // The only URL is the SVG namespace, which names and does not fetch.
    let without_ns = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    assert!(!without_ns.contains("http://") && !without_ns.contains("https://"));
}

#[test]
fn failures_show_their_reproduction_first() {
    let dir = tempfile::tempdir().unwrap();
    let html = built(dir.path(), None);
    let results = Results::load(&fixture()).unwrap();
    let failed = results
        .scenarios
        .iter()
        .find(|s| !s.matches)
        .expect("the fixture has a failure");
    let repro = failed.reproduction.as_ref().unwrap();
    let key = format!("{}/{}", failed.scenario, failed.variant);
    assert!(html.contains(&format!(
        "{} of {} verdicts are NOT as expected",
        1,
        results.scenarios.len()
    )));
    let block = html
        .find(&format!("id=\"repro-{key}\""))
        .expect("repro block");
    // Before the reproductions of the caught unsafe variants.
    for s in results
        .scenarios
        .iter()
        .filter(|s| s.matches && s.reproduction.is_some())
    {
        let other = html
            .find(&format!("id=\"repro-{}/{}\"", s.scenario, s.variant))
            .unwrap();
        assert!(block < other, "{key} is not listed first");
    }
    let tail = &html[block..];
    for text in [&repro.command, &repro.seed.to_string(), &repro.parameters] {
        assert!(
            tail[..tail.find("</div>").unwrap()].contains(text.as_str()),
            "{text}"
        );
    }
}

#[test]
fn deltas_put_regressions_first_with_a_text_marker() {
    let dir = tempfile::tempdir().unwrap();
    let current = Results::load(&fixture()).unwrap();
    let mut baseline = current.clone();
    // The baseline had queue/shm twice as fast; pipe/duplex 5% different (within noise).
    let slower = "queue/shm/roundtrip/64B/cross-cpu";
    let noisy = "pipe/duplex/roundtrip/64B/cross-cpu";
    for l in &mut baseline.latency {
        if l.workload == slower {
            l.ratio = l.ratio.map(|r| r / 2.0);
            l.percentiles.p50 /= 2.0;
        }
        if l.workload == noisy {
            l.ratio = l.ratio.map(|r| r * 0.95);
        }
    }
    // ...and its unexpected scenario verdict was fine then.
    for s in &mut baseline.scenarios {
        if !s.matches {
            s.matches = true;
            s.verdict = "holds".into();
        }
    }
    let base_path = dir.path().join("baseline.json");
    baseline.save(&base_path).unwrap();
    let out_dir = dir.path().join("out");
    let html = built(&out_dir, Some(&base_path));
    let rows = |id: &str| -> Vec<String> {
        let table = &html[html.find(&format!("id=\"{id}\"")).expect(id)..];
        let table = &table[..table.find("</table>").unwrap()];
        table
            .split("<tr data-key=")
            .skip(1)
            .map(String::from)
            .collect()
    };
    // Behaviour: the verdict that became unexpected, and the fixture's dirty stress run,
    // lead the table.
    let behaviour = rows("table-deltas-behaviour");
    assert!(behaviour[..2].iter().all(|r| r.contains("▲ REGRESSED")));
    assert!(behaviour[..2]
        .iter()
        .any(|r| r.contains("manager-lost-update/locked")));
    assert!(behaviour[2..].iter().all(|r| !r.contains("REGRESSED")));
    // Speed: the 2x slower queue first, with its numbers; the 5% one is within noise.
    let speed = rows("table-deltas");
    assert!(
        speed[0].contains(slower) && speed[0].contains("▲ REGRESSED"),
        "{}",
        speed[0]
    );
    assert!(speed[0].contains("+100.0%"), "{}", speed[0]);
    let noisy_row = speed.iter().find(|r| r.contains(noisy)).unwrap();
    assert!(noisy_row.contains("= ok"), "{noisy_row}");
    assert_eq!(speed.iter().filter(|r| r.contains("REGRESSED")).count(), 1);
    assert!(html.contains("<b>3 regressions</b>"));
}

/// When a raw cost of the machine moved since the baseline, the page says so as the gate
/// does: which raw cost moved and by how much, which metrics are therefore not gated, and
/// the worse ones marked ≠ (not ▲). On an unmoved machine none of it shows.
#[test]
fn deltas_name_what_moved_on_the_machine_and_what_is_not_gated() {
    use ipcbench::report::model::{Calibration, Placement};
    let dir = tempfile::tempdir().unwrap();
    let raw = |name: &str, placement: Placement, value: f64| Calibration {
        name: name.into(),
        placement,
        value,
        unit: "ns".into(),
        spread: 0.05,
        achieved: None,
    };
    let mut current = Results::load(&fixture()).unwrap();
    // The cross-CPU wake-up 9.36x slower today than in the baseline.
    current
        .calibration
        .push(raw("futex-roundtrip", Placement::CrossCpu, 103_000.0));
    let mut baseline = current.clone();
    for c in &mut baseline.calibration {
        if c.name == "futex-roundtrip" {
            c.value = 11_000.0;
        }
        // And the same-CPU pipe round trip 3x faster today.
        if c.name == "pipe-roundtrip" && c.placement == Placement::SameCpu {
            c.value *= 3.0;
        }
    }
    // Both a cross-CPU and a same-CPU metric resting on them got 2x worse.
    let cross = "queue/shm/roundtrip/64B/cross-cpu";
    let same = "queue/pipe/roundtrip/64B/same-cpu";
    for l in &mut baseline.latency {
        if l.workload == cross || l.workload == same {
            l.ratio = l.ratio.map(|r| r / 2.0);
        }
    }
    let base_path = dir.path().join("baseline.json");
    baseline.save(&base_path).unwrap();
    let current_path = dir.path().join("current.json");
    current.save(&current_path).unwrap();
    let page = |base: &Path, out_dir: &Path| {
        let out = report(&[&current_path], Some(base), out_dir);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read_to_string(out_dir.join("index.html")).unwrap()
    };
    let html = page(&base_path, &dir.path().join("out"));
    let block = &html[html
        .find("id=\"machine-moved\"")
        .expect("the machine-moved notes")..];
    let block = &block[..block.find("</div>").unwrap()];
    assert!(
        block.contains("the machine&#39;s cross-CPU wake-up (futex-roundtrip, cross-cpu) moved 9.36× since the baseline (11 µs → 103 µs)"),
        "{block}"
    );
    assert!(
        block.contains(&format!(
            "the raw figure pipe-roundtrip moved 3× since the baseline (17.9 µs → 5.98 µs): latency/pipe/duplex/roundtrip/64B/same-cpu, latency/pipe/simplex/roundtrip/64B/same-cpu, latency/{same}, latency/queue/shm/roundtrip/64B/same-cpu divided by it are shown but not gated"
        )),
        "{block}"
    );
    // The metrics left ungated, the worse ones first and marked.
    let listed = &block[block
        .find("id=\"machine-moved-metrics\"")
        .expect("the list")..];
    let items: Vec<&str> = listed.split("<li ").skip(1).collect();
    assert!(items.len() >= 2, "{listed}");
    for item in &items[..2] {
        assert!(
            item.contains("≠ worse (the machine moved, not gated)"),
            "{item}"
        );
    }
    assert!(items[..2].iter().any(|i| i.contains(cross)));
    assert!(items[..2].iter().any(|i| i.contains(same)));
    // A cross-CPU metric that did not get worse is not gated either, and listed.
    assert!(
        items
            .iter()
            .any(|i| i.contains("pipe/duplex/roundtrip/64B/cross-cpu")),
        "{listed}"
    );
    // Same-CPU metrics on raw figures that did not move (the Unix-socket round trip)
    // are gated as always.
    assert!(!items
        .iter()
        .any(|i| i.contains("queue/channel/roundtrip/64B/same-cpu")));
    // In the table: the ≠ status, and why it is not gated.
    for key in [cross, same] {
        let key = format!("latency/{key}");
        let marker = cell(&html, &key, "marker").unwrap();
        assert!(
            marker.contains("≠ worse (the machine moved, not gated)"),
            "{marker}"
        );
        let row = &html[html.find(&format!("<tr data-key=\"{key}\"")).unwrap()..];
        let row = &row[..row.find("</tr>").unwrap()];
        assert!(row.contains("no (the machine moved ≠)"), "{row}");
        assert!(!row.contains("REGRESSED"), "{row}");
    }
    let summary = &html[html.find("id=\"delta-summary\"").unwrap()..];
    let summary = &summary[..summary.find("</p>").unwrap()];
    assert!(
        summary.contains("not gated because the machine moved"),
        "{summary}"
    );

    // The same slowdowns on an unmoved machine: regressions, and no machine notes.
    let mut unmoved = baseline.clone();
    unmoved.calibration = current.calibration.clone();
    let unmoved_path = dir.path().join("unmoved.json");
    unmoved.save(&unmoved_path).unwrap();
    let html = page(&unmoved_path, &dir.path().join("out-unmoved"));
    assert!(!html.contains("id=\"machine-moved\""));
    assert!(cell(&html, &format!("latency/{cross}"), "marker")
        .unwrap()
        .contains("▲ REGRESSED"));
}

/// The first thing on the page is the verdict: with a baseline, the slowed workload and
/// the broken scenario are named there, worst first, each linked to a place that exists.
#[test]
fn the_verdict_comes_first_and_links_to_each_problem() {
    let dir = tempfile::tempdir().unwrap();
    let current = Results::load(&fixture()).unwrap();
    let mut baseline = current.clone();
    let slower = "queue/shm/roundtrip/64B/cross-cpu";
    for l in &mut baseline.latency {
        if l.workload == slower {
            l.ratio = l.ratio.map(|r| r / 3.0);
        }
    }
    let base_path = dir.path().join("baseline.json");
    baseline.save(&base_path).unwrap();
    let html = built(&dir.path().join("out"), Some(&base_path));
    let verdict_at = html.find("id=\"verdict\"").expect("a verdict line");
    let verdict = &html[verdict_at..];
    let verdict = &verdict[..verdict.find("</p>").unwrap()];
    // Before every section: it is the first screen.
    assert!(verdict_at < html.find("<section").unwrap());
    assert!(
        verdict.contains("verdict bad") && verdict.contains("problems"),
        "{verdict}"
    );
    // The 3x slower workload leads, in words, with its factor.
    let first_link = &verdict[verdict.find("<a href=").unwrap()..];
    assert!(
        first_link.starts_with(&format!("<a href=\"#delta-latency/{slower}\"")),
        "{verdict}"
    );
    assert!(verdict.contains("3× worse"), "{verdict}");
    // ...with a link to its distributions, overlaid (the gate called it regressed).
    assert!(
        verdict.contains(&format!(
            "<a href=\"#chart-overlay-{}\">distribution</a>",
            slower.replace('/', "-")
        )),
        "{verdict}"
    );
    let broken = current.scenarios.iter().find(|s| !s.matches).unwrap();
    assert!(verdict.contains(&format!("{}/{}", broken.scenario, broken.variant)));
    // Every link lands somewhere on the page.
    for link in verdict.split("<a href=\"#").skip(1) {
        let target = &link[..link.find('"').unwrap()];
        assert!(
            html.contains(&format!("id=\"{target}\"")),
            "the verdict links to #{target}, which the page lacks"
        );
    }
    // The headline chart follows it: one bar per mechanism with a ratio.
    let headline = html
        .find("id=\"headline\"")
        .expect("the distance-from-limit chart");
    assert!(headline < html.find("<section").unwrap());
    assert!(html[headline..].contains("Distance from the limit"));
}

/// A run with nothing wrong says so, and what that covers, rather than nothing.
#[test]
fn a_clean_run_says_it_is_clean() {
    let dir = tempfile::tempdir().unwrap();
    let mut results = Results::load(&fixture()).unwrap();
    for s in &mut results.scenarios {
        s.matches = true;
    }
    for s in &mut results.stress {
        (s.losses, s.duplicates, s.corrupt) = (0, 0, 0);
        s.hangs.clear();
        s.leaks.clear();
    }
    let input = dir.path().join("clean.json");
    results.save(&input).unwrap();
    let out_dir = dir.path().join("out");
    let out = report(&[&input], None, &out_dir);
    assert_eq!(out.status.code(), Some(0));
    let html = std::fs::read_to_string(out_dir.join("index.html")).unwrap();
    let verdict = &html[html.find("id=\"verdict\"").unwrap()..];
    let verdict = &verdict[..verdict.find("</p>").unwrap()];
    assert!(verdict.contains("✔ Clean run"), "{verdict}");
    assert!(
        verdict.contains(&format!(
            "{} scenario verdicts as expected",
            results.scenarios.len()
        )),
        "{verdict}"
    );
}

/// `report A B --compare`: B against A, each workload's distributions overlaid, the one
/// that moved beyond its noise band marked and drawn, the others called within noise.
#[test]
fn two_runs_side_by_side_overlay_their_distributions() {
    let dir = tempfile::tempdir().unwrap();
    let before = Results::load(&fixture()).unwrap();
    let mut after = before.clone();
    let slower = "queue/shm/roundtrip/64B/cross-cpu";
    for l in &mut after.latency {
        if l.workload == slower {
            l.percentiles.p50 *= 2.0;
            l.percentiles.p99 *= 2.0;
            for point in &mut l.cdf {
                point.0 *= 2.0;
            }
        }
    }
    let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
    before.save(&a).unwrap();
    after.save(&b).unwrap();
    let out_dir = dir.path().join("out");
    let (a_text, b_text, out_text) = (
        a.display().to_string(),
        b.display().to_string(),
        out_dir.display().to_string(),
    );
    let out = ipcbench(&["report", &a_text, &b_text, "--compare", "--out", &out_text]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(out_dir.join("index.html")).unwrap();
    let section = &html[html
        .find("<section id=\"distributions\">")
        .expect("section")..];
    let section = &section[..section.find("</section>").unwrap()];
    // The moved workload leads the table, marked, with its change against the band.
    let first_row = &section[section.find("<tr data-key=").unwrap()..];
    assert!(
        first_row.starts_with(&format!("<tr data-key=\"{slower}\"")),
        "{first_row}"
    );
    assert!(first_row[..first_row.find("</tr>").unwrap()].contains("▲ slower"));
    assert!(first_row.contains("+100.0 %"));
    let others = section.matches("= within noise").count();
    assert_eq!(others, before.latency.len() - 1);
    // Its distributions are drawn overlaid: baseline dashed, this run solid.
    assert!(section.contains(&format!(
        "id=\"chart-overlay-{}\"",
        slower.replace('/', "-")
    )));
    // ...and its percentiles as bars beside them, before and after, the change titled.
    let bars = format!("id=\"chart-overlay-bars-{}\"", slower.replace('/', "-"));
    let bars = &section[section.find(&bars).expect("percentile bars")..];
    let bars = &bars[..bars.find("</figure>").unwrap()];
    assert!(bars.contains("median +100.0 %, ▲ slower"), "{bars}");
    for label in ["p50", "p99.9", "baseline", "this run"] {
        assert!(bars.contains(label), "{label}");
    }
    assert_eq!(section.matches("<figure class=\"chart\"").count(), 2);
    // And the deltas (B against A) are on the page.
    assert!(html.contains("<section id=\"deltas\">"));

    // Two files exactly, and not with --baseline too.
    let one = ipcbench(&["report", &a_text, "--compare", "--out", &out_text]);
    assert_eq!(one.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&one.stderr).contains("exactly two results files"));
    let both = ipcbench(&[
        "report",
        &a_text,
        &b_text,
        "--compare",
        "--baseline",
        &a_text,
        "--out",
        &out_text,
    ]);
    assert_eq!(both.status.code(), Some(2));
}

/// A reproduction with a recorded history is drawn as a timeline inside its block: a box
/// per step in its worker's lane.
#[test]
fn a_reproduction_is_drawn_as_a_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let mut results = Results::load(&fixture()).unwrap();
    let failed = results.scenarios.iter_mut().find(|s| !s.matches).unwrap();
    let key = format!("{}/{}", failed.scenario, failed.variant);
    let repro = failed.reproduction.as_mut().unwrap();
    repro.timeline = (0..4)
        .map(|i| ipcbench::report::model::TimelineStep {
            worker: i % 2,
            operation: if i < 2 { "read-count" } else { "write-count" }.into(),
            value: 7 + i64::from(i / 2),
            at_ns: u64::from(i) * 1000,
        })
        .collect();
    let input = dir.path().join("with-timeline.json");
    results.save(&input).unwrap();
    let out_dir = dir.path().join("out");
    assert_eq!(report(&[&input], None, &out_dir).status.code(), Some(0));
    let html = std::fs::read_to_string(out_dir.join("index.html")).unwrap();
    let block = &html[html.find(&format!("id=\"repro-{key}\"")).unwrap()..];
    let figure = &block[block
        .find(&format!("<figure class=\"timeline\" id=\"timeline-{key}\""))
        .expect("a timeline in the reproduction")..];
    let figure = &figure[..figure.find("</figure>").unwrap()];
    assert_eq!(figure.matches("<rect class=\"step").count(), 4);
    assert!(figure.contains(">worker 0<") && figure.contains(">worker 1<"));
    assert!(figure.contains("step 4: worker 1 write-count = 8"));
}

#[test]
fn several_inputs_are_merged() {
    let dir = tempfile::tempdir().unwrap();
    let all = Results::load(&fixture()).unwrap();
    let mut bench = all.clone();
    bench.scenarios.clear();
    bench.stress.clear();
    let mut check = all.clone();
    check.latency.clear();
    check.throughput.clear();
    check.calibration.clear();
    let (a, b) = (dir.path().join("bench.json"), dir.path().join("check.json"));
    bench.save(&a).unwrap();
    check.save(&b).unwrap();
    let out_dir = dir.path().join("out");
    let out = report(&[&a, &b], None, &out_dir);
    assert_eq!(out.status.code(), Some(0));
    let merged = Results::load(&out_dir.join("results.json")).unwrap();
    assert_eq!(merged.latency, all.latency);
    assert_eq!(merged.scenarios, all.scenarios);
    assert_eq!(merged.stress, all.stress);
}

#[test]
fn bad_input_names_the_file_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt.json");
    std::fs::write(&corrupt, "{\"schema_version\": 1, \"latency\": [").unwrap();
    let old = dir.path().join("old-version.json");
    std::fs::write(&old, "{\"schema_version\": 99}").unwrap();
    let wrong_shape = dir.path().join("wrong-shape.json");
    std::fs::write(
        &wrong_shape,
        format!("{{\"schema_version\": {SCHEMA_VERSION}, \"profile\": 3}}"),
    )
    .unwrap();
    let unreadable = dir.path().join("a-directory.json");
    std::fs::create_dir(&unreadable).unwrap();
    let missing = dir.path().join("missing.json");
    let fixture = fixture();
    let cases: Vec<(Vec<&Path>, Option<&Path>, &str, &str)> = vec![
        (vec![&missing], None, "missing.json", "cannot read"),
        (vec![&unreadable], None, "a-directory.json", "cannot read"),
        (vec![&corrupt], None, "corrupt.json", "not valid"),
        (vec![&wrong_shape], None, "wrong-shape.json", "not valid"),
        (vec![&old], None, "old-version.json", "schema version 99"),
        (vec![&fixture, &corrupt], None, "corrupt.json", "not valid"),
        (
            vec![&fixture],
            Some(&missing),
            "missing.json",
            "cannot read",
        ),
        (
            vec![&fixture],
            Some(&old),
            "old-version.json",
            "schema version 99",
        ),
    ];
    for (inputs, baseline, file, what) in cases {
        let out_dir = dir.path().join("out");
        let out = report(&inputs, baseline, &out_dir);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{inputs:?} {baseline:?}: {err}");
        assert!(err.contains(file) && err.contains(what), "{file}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!out_dir.exists(), "a report was written despite bad input");
    }
}

/// The page in a real browser: runs tests/browser/check_report.py (headless Chromium over
/// the DevTools pipe). Without Chromium it says so and passes, unless
/// IPCBENCH_REQUIRE_BROWSER=1 (as .ci/run sets, after installing chromium).
#[test]
fn renders_in_headless_chromium_without_requests_or_errors() {
    let required = std::env::var("IPCBENCH_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
    let have_chromium = ["chromium", "chromium-browser"].iter().any(|b| {
        Command::new("sh")
            .args(["-c", &format!("command -v {b}")])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !have_chromium {
        assert!(
            !required,
            "IPCBENCH_REQUIRE_BROWSER=1 but chromium is not installed"
        );
        eprintln!("SKIPPED: chromium is not installed (apt-get install chromium)");
        return;
    }
    // The Done-when page: a slowed workload (its baseline twice as fast, so it regressed
    // and its distributions are overlaid), a broken scenario (the fixture's unexpected
    // verdict, with its timeline) and the twins said; the browser follows every link of
    // the verdict line.
    let dir = tempfile::tempdir().unwrap();
    let mut current = Results::load(&fixture()).unwrap();
    assert!(current.scenarios.iter().any(|s| !s.matches));
    // CPython figures beside the workloads they mirror, as a run with python3 has.
    current.merge(Results::load(&peers_fixture()).unwrap());
    current.twins = vec!["queue-pipe-slowed".into()];
    // The machine's topology and a core-to-core matrix, as every real run has.
    current.topology = Some(ipcbench::measure::topology::current());
    current.core_to_core = Some(ipcbench::report::model::CoreToCore {
        cpus: vec![0, 1],
        rule: "all 3 pairs of 2 CPUs".into(),
        pairs: [(0, 0, None, 6_100.0), (0, 1, Some(180.0), 11_200.0)]
            .into_iter()
            .map(
                |(initiator, responder, shm, pipe)| ipcbench::report::model::CorePair {
                    initiator,
                    responder,
                    class: if initiator == responder {
                        ipcbench::report::model::PairClass::SameCpu
                    } else {
                        ipcbench::report::model::PairClass::CrossCpu
                    },
                    shm_pingpong_ns: shm,
                    pipe_roundtrip_ns: Some(pipe),
                    samples: (20_000, 3_000),
                    note: None,
                },
            )
            .collect(),
    });
    let mut baseline = current.clone();
    baseline.twins.clear();
    let slowed = baseline
        .latency
        .iter_mut()
        .find(|l| l.ratio.is_some() && !l.cdf.is_empty())
        .expect("a latency with a ratio and a distribution");
    let slowed_name = slowed.workload.clone();
    slowed.ratio = slowed.ratio.map(|r| r / 2.0);
    slowed.spread = 0.02;
    slowed.percentiles.p50 /= 2.0;
    for point in &mut slowed.cdf {
        point.0 /= 2.0;
    }
    let (base_path, current_path) = (
        dir.path().join("baseline.json"),
        dir.path().join("run.json"),
    );
    baseline.save(&base_path).unwrap();
    current.save(&current_path).unwrap();
    let out_dir = dir.path().join("out");
    let out = report(&[&current_path], Some(&base_path), &out_dir);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = std::fs::read_to_string(out_dir.join("index.html")).unwrap();
    let verdict = &page[page.find("id=\"verdict\"").unwrap()..];
    let verdict = &verdict[..verdict.find("</p>").unwrap()];
    assert!(
        verdict.contains(&format!("latency/{slowed_name}")),
        "{verdict}"
    );
    assert!(verdict.contains(">distribution</a>"), "{verdict}");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/check_report.py");
    let check = |dir: &Path| {
        Command::new("python3")
            .arg(&script)
            .arg(dir)
            .arg("--expect-deltas")
            .output()
            .expect("run python3")
    };
    let out = check(&out_dir);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The check can fail: a page that fetches an image, logs an error and lost a chart's
    // legend is caught on each count.
    let index = out_dir.join("index.html");
    let broken = page
        .replacen(
            "</footer>",
            "<img src=\"http://example.invalid/x.png\"><script>console.error('boom')</script></footer>",
            1,
        )
        .replace("\np99.9\n</text>", "\n</text>")
        .replacen("<p id=\"twins\"", "<p id=\"twins-gone\"", 1)
        .replacen("href=\"#chart-overlay-", "href=\"#chart-nowhere-", 1)
        .replacen("× faster</td>", "× slower</td>", 1);
    std::fs::write(&index, broken).unwrap();
    let out = check(&out_dir);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for problem in [
        "network request: http://example.invalid/x.png",
        "console error",
        "legend entry 'p99.9' not drawn",
        "the run measured twins but the page does not say so",
        "lands nowhere",
        "peers: peer/",
    ] {
        assert!(err.contains(problem), "not caught: {problem}: {err}");
    }
}

/// `ipcbench run` with every step left out: still a report, saying in the terminal and on
/// the page that nothing ran, rather than showing empty charts as if measured.
#[test]
fn run_says_what_did_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("run");
    let (stdout, html, results) =
        run_into(&["--quick", "--skip", "bench,check,stress"], &[], &out_dir);
    assert_eq!(results.profile, "quick");
    assert!(results.latency.is_empty() && results.scenarios.is_empty());
    for step in ["bench", "check", "stress"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(step))
            .unwrap_or_else(|| panic!("no summary line for {step}: {stdout}"));
        assert!(line.contains("skipped"), "{line}");
        assert!(html.contains(&format!("not run: skipped (--skip {step})")));
    }
    for step in ["bench", "check", "stress"] {
        assert_eq!(cell(&html, step, "status").as_deref(), Some("not run"));
        // Skipped is not failed: the row is not marked as a failure.
        assert!(
            html.contains(&format!("<tr data-key=\"{step}\"><td>")),
            "{step}"
        );
    }
    for section in ["calibration", "latency", "scenarios", "stress"] {
        let start = html.find(&format!("<section id=\"{section}\">")).unwrap();
        let body = &html[start..start + html[start..].find("</section>").unwrap()];
        assert!(body.contains("not run: skipped"), "{section}: {body}");
        assert!(!body.contains("<svg"), "{section} draws a chart of nothing");
    }
}

#[test]
fn run_refuses_bad_arguments_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let under_file = file.join("out").display().to_string();
    for (args, says) in [
        (
            vec!["run", "--quick", "--skip", "everything"],
            "no such step",
        ),
        (
            vec![
                "run",
                "--quick",
                "--skip",
                "bench,check,stress",
                "--out",
                &under_file,
            ],
            "cannot create",
        ),
    ] {
        let out = ipcbench(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// A real step end to end: `run --quick` with the bench step only runs `ipcbench bench`
/// as a child, folds its JSON in, and the page shows exactly those figures. Without a
/// Python interpreter the CPython lane is left out, and the page says why where its
/// figures would be.
#[test]
fn run_folds_a_real_step_into_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("run");
    let no_python = dir.path().join("no-such-python3");
    let (stdout, html, results) = run_into(
        &["--quick", "--skip", "check,stress"],
        &[(
            ipcbench::measure::peer::cpython::PYTHON_ENV,
            no_python.to_str().unwrap(),
        )],
        &out_dir,
    );
    let line = stdout.lines().find(|l| l.starts_with("bench")).unwrap();
    assert!(
        line.contains(" ok ") && line.contains("calibrations"),
        "{line}"
    );
    assert!(!results.calibration.is_empty() && !results.latency.is_empty());
    // The step's own JSON was folded in and removed: the directory holds the report only.
    assert!(!out_dir.join("bench.json").exists());
    for c in &results.calibration {
        assert_same(
            &html,
            &format!("{}/{}", c.name, c.placement.label()),
            "value",
            c.value,
        );
    }
    for l in &results.latency {
        assert_same(&html, &l.workload, "p50", l.percentiles.p50);
        assert_same(&html, &l.workload, "p99", l.percentiles.p99);
    }
    assert!(html.contains("not run: skipped (--skip check)"));
    assert_eq!(cell(&html, "bench", "status").as_deref(), Some("ok"));
    assert!(results.peers.is_empty());
    assert!(
        html.contains("not run: cpython: skipped: "),
        "the peers section names why the lane was left out"
    );
}
