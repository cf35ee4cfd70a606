//! ipcbench against CPython's `multiprocessing`: each peer workload beside the ipcbench
//! workload it mirrors, measured in the same run, so the question a Python programmer asks
//! ("how much faster than `mp.Queue`?") is answered by one ratio of two figures taken on
//! the same machine at the same time.
//!
//! Which ipcbench workload a peer workload mirrors is the peer's own mapping
//! ([`crate::measure::peer::twin`]); this section only looks both figures up.

use super::format::{cell, chart_html, esc, unit_cell, Table};
use super::latency::cdf_lines;
use super::{open_section, Page, Section};
use crate::measure::peer::{is_peer_flavor, twin};
use crate::report::charts::Line;
use crate::report::units::{significant, Unit};
use crate::results::{Latency, Results, Throughput};
use std::fmt::Write as _;

/// The prefix of a scenario run on Python's own multiprocessing (`check --peer cpython`).
const PYTHON_SCENARIO: &str = "cpython/";

/// Every race scenario run on Python code beside ipcbench's verdicts on the scenario it
/// mirrors: "ticket-oversell: Python unlocked violated, mp-lock holds; ipcbench unlocked
/// violated, flock holds, …" — the seed's warnings shown where they happen, and what
/// ipcbench's mechanisms do instead (pool-worker-death: Python hangs, the supervised pool
/// reports the task).
fn verdicts(r: &Results) -> String {
    let python: Vec<&crate::results::ScenarioOutcome> = r
        .scenarios
        .iter()
        .filter(|s| s.scenario.starts_with(PYTHON_SCENARIO))
        .collect();
    if python.is_empty() {
        return "<p class=\"note\" id=\"peers-scenarios\">Scenarios: not run on Python code in \
                these results; <code>ipcbench check --peer cpython</code> runs them, and \
                <code>ipcbench run</code> does when <code>python3</code> is found.</p>"
            .into();
    }
    let mut table = Table::new(
        "peers-scenarios",
        vec![
            "scenario",
            "Python variant",
            "expected",
            "Python verdict",
            "as expected",
            "ipcbench's verdicts",
        ],
    );
    for s in &python {
        let mirrored = s.scenario.trim_start_matches(PYTHON_SCENARIO);
        let ours: Vec<String> = r
            .scenarios
            .iter()
            .filter(|o| o.scenario == mirrored)
            .map(|o| format!("{} {}", o.variant, o.verdict))
            .collect();
        let ours = if ours.is_empty() {
            "not run".to_string()
        } else {
            ours.join(", ")
        };
        let key = format!("{}/{}", s.scenario, s.variant);
        if !s.matches {
            table.bad.push(key.clone());
        }
        table.rows.push((
            key,
            vec![
                cell("scenario", mirrored),
                cell("variant", &s.variant),
                cell("expected", &s.expected_kind),
                // The detail starts with the verdict ("violated: tickets sold <= ...").
                cell(
                    "verdict",
                    if s.detail.is_empty() {
                        &s.verdict
                    } else {
                        &s.detail
                    },
                ),
                cell("matches", if s.matches { "yes" } else { "NO" }),
                cell("ipcbench", &ours),
            ],
        ));
    }
    let matched = python.iter().filter(|s| s.matches).count();
    format!(
        "<h3>The race scenarios on Python code</h3><p>{matched} of {} Python verdicts as \
         expected. Each scenario's Python program is judged by the same oracle as ipcbench's \
         mechanisms; a forced interleaving reaches the Python workers through the turnstile \
         (details and reproductions in <a href=\"#{}\">{}</a>).</p><div class=\"table\">{}</div>",
        python.len(),
        Section::Scenarios.id(),
        Section::Scenarios.title(),
        table.html()
    )
}

/// A peer workload and the ipcbench workload it mirrors, both measured in the run.
#[derive(Clone, Copy, Debug)]
pub(super) enum Pair<'a> {
    Latency {
        peer: &'a Latency,
        ours: &'a Latency,
    },
    Throughput {
        peer: &'a Throughput,
        ours: &'a Throughput,
    },
}

impl Pair<'_> {
    fn peer_workload(&self) -> &str {
        match self {
            Pair::Latency { peer, .. } => &peer.workload,
            Pair::Throughput { peer, .. } => &peer.workload,
        }
    }

    fn our_workload(&self) -> &str {
        match self {
            Pair::Latency { ours, .. } => &ours.workload,
            Pair::Throughput { ours, .. } => &ours.workload,
        }
    }

    /// How many times faster ipcbench is (below 1: slower). Latency compares medians,
    /// since a tail is one process's bad luck and a median the mechanism's cost;
    /// throughput compares messages (or tasks, or acquisitions) per second, which for
    /// a stream of one size is the same ratio as bytes per second.
    pub(super) fn speedup(&self) -> f64 {
        match self {
            Pair::Latency { peer, ours } => peer.percentiles.p50 / ours.percentiles.p50,
            Pair::Throughput { peer, ours } => ours.msgs_per_sec / peer.msgs_per_sec,
        }
    }
}

/// Every peer workload of `r` with the ipcbench workload it mirrors, in the results'
/// order; and the peer workloads whose twin the run did not measure (e.g. left out by
/// `--filter`), which have no ratio to show.
pub(super) fn pairs(r: &Results) -> (Vec<Pair<'_>>, Vec<&str>) {
    let mut pairs = Vec::new();
    let mut alone = Vec::new();
    for peer in r.latency.iter().filter(|l| is_peer_flavor(&l.flavor)) {
        let ours =
            twin(&peer.workload).and_then(|name| r.latency.iter().find(|l| l.workload == name));
        match ours {
            Some(ours) => pairs.push(Pair::Latency { peer, ours }),
            None => alone.push(peer.workload.as_str()),
        }
    }
    for peer in r.throughput.iter().filter(|t| is_peer_flavor(&t.flavor)) {
        let ours =
            twin(&peer.workload).and_then(|name| r.throughput.iter().find(|t| t.workload == name));
        match ours {
            Some(ours) => pairs.push(Pair::Throughput { peer, ours }),
            None => alone.push(peer.workload.as_str()),
        }
    }
    (pairs, alone)
}

/// "ipcbench 12.3× faster", "ipcbench 4.17× slower", to three significant figures; "—"
/// where a figure is zero or missing.
pub(super) fn ratio_text(speedup: f64) -> String {
    if !speedup.is_finite() || speedup <= 0.0 {
        return "—".into();
    }
    if three_figures(speedup) == "1" {
        "ipcbench as fast (1×)".into()
    } else if speedup > 1.0 {
        format!("ipcbench {}× faster", three_figures(speedup))
    } else {
        format!("ipcbench {}× slower", three_figures(1.0 / speedup))
    }
}

/// `v` (positive) to three significant figures also past 1000, where
/// [`significant`] keeps every whole digit: 1234.5 → "1230".
fn three_figures(v: f64) -> String {
    let step = 10f64.powi(v.log10().floor() as i32 - 2);
    significant((v / step).round() * step)
}

/// The id of a pair's chart (and of the row's link to it).
fn chart_id(peer_workload: &str) -> String {
    format!("peer-{}", peer_workload.replace('/', "-"))
}

/// The peers' versions and start methods, one line each.
fn about(r: &Results) -> String {
    if r.peers.is_empty() {
        return "<p class=\"note\">The peer's version was not recorded in these results.</p>"
            .into();
    }
    let mut out = String::new();
    for p in &r.peers {
        let _ = write!(
            out,
            "<p class=\"peer-info\" data-peer=\"{}\">Peer <b>{}</b>: {} {}, start method{} \
             <b>{}</b>.</p>",
            esc(&p.name),
            esc(&p.name),
            esc(&p.implementation),
            esc(&p.version),
            if p.start_methods.len() == 1 { "" } else { "s" },
            if p.start_methods.is_empty() {
                "not recorded".to_string()
            } else {
                esc(&p.start_methods.join(", "))
            }
        );
    }
    out
}

fn table(pairs: &[Pair]) -> Table {
    let mut table = Table::new(
        "table-peers",
        vec![
            "ipcbench workload",
            "CPython workload",
            "figure",
            "CPython",
            "ipcbench",
            "ipcbench vs CPython",
        ],
    );
    for pair in pairs {
        let (what, peer, ours) = match pair {
            Pair::Latency { peer, ours } => (
                "p50 time per operation",
                unit_cell("peer", peer.percentiles.p50, Unit::Nanos),
                unit_cell("ours", ours.percentiles.p50, Unit::Nanos),
            ),
            Pair::Throughput { peer, ours } => (
                "operations per second",
                unit_cell("peer", peer.msgs_per_sec, Unit::Rate),
                unit_cell("ours", ours.msgs_per_sec, Unit::Rate),
            ),
        };
        // Keyed apart from the latency and throughput tables' rows (which are keyed by
        // workload), so that a page's rows stay unique by key.
        table.rows.push((
            format!("peer/{}", pair.peer_workload()),
            vec![
                cell("workload", pair.our_workload()),
                cell("peer_workload", pair.peer_workload()),
                cell("figure", what),
                peer,
                ours,
                cell("speedup", &ratio_text(pair.speedup())),
            ],
        ));
    }
    table
}

/// Both distributions of a latency pair on the CDF chart the latency sections and the
/// two-run overlay draw: the peer's dashed, ipcbench's solid.
fn chart(peer: &Latency, ours: &Latency) -> Option<String> {
    if peer.cdf.is_empty() || ours.cdf.is_empty() {
        return None;
    }
    // The title names the workload (size, placement); the legend says whose line is whose.
    let line = |who: &str, l: &Latency, dashed: bool| Line {
        label: format!("{who} · {}", l.flavor),
        points: l.cdf.iter().map(|(ns, f)| (ns / 1000.0, *f)).collect(),
        dashed,
    };
    Some(chart_html(cdf_lines(
        &chart_id(&peer.workload),
        &format!("{} against {}", ours.workload, peer.flavor),
        &[line("CPython", peer, true), line("ipcbench", ours, false)],
    )))
}

pub(super) fn section(page: &Page) -> String {
    let r = page.results;
    let (pairs, alone) = pairs(r);
    let python_verdicts = r
        .scenarios
        .iter()
        .any(|s| s.scenario.starts_with(PYTHON_SCENARIO));
    let measured = !pairs.is_empty() || !alone.is_empty() || python_verdicts;
    let has_notes = page.notes.iter().any(|(s, _)| *s == Section::Peers);
    let mut out = if measured || has_notes {
        open_section(
            page,
            Section::Peers,
            !measured,
            "Each workload run with CPython's <code>multiprocessing</code> beside the ipcbench \
             workload it mirrors, in the same run: the same message size, operation count, \
             chunksize and placement. Latencies compare medians (lower is faster), the others \
             operations per second (higher is faster). For each latency, both distributions \
             on one chart: CPython dashed, ipcbench solid.",
        )
    } else {
        // A peer that answered but left no figure ran and failed (its workloads'
        // failures are in bench's output): not the same as a lane never started.
        let why = if r.peers.is_empty() {
            "Not run: these results have no CPython figures. <code>ipcbench bench --peer \
             cpython</code> measures them, and <code>ipcbench run</code> does when \
             <code>python3</code> is found."
        } else {
            "The CPython lane started but recorded no figure: each of its workloads failed \
             (the failures are in the bench step's output)."
        };
        open_section(
            page,
            Section::Peers,
            false,
            &format!("<span class=\"note\" id=\"peers-not-run\">{why}</span>"),
        )
    };
    if !measured {
        out.push_str("</section>");
        return out;
    }
    if !r.peers.is_empty() {
        out.push_str(&about(r));
    }
    if !pairs.is_empty() {
        let _ = write!(out, "<div class=\"table\">{}</div>", table(&pairs).html());
    }
    if !alone.is_empty() {
        let _ = write!(
            out,
            "<p class=\"note\" id=\"peers-alone\">Measured without the ipcbench workload they \
             mirror, so with no ratio: {}.</p>",
            alone
                .iter()
                .map(|w| format!("<code>{}</code>", esc(w)))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let charts: Vec<String> = pairs
        .iter()
        .filter_map(|p| match p {
            Pair::Latency { peer, ours } => chart(peer, ours),
            Pair::Throughput { .. } => None,
        })
        .collect();
    if !charts.is_empty() {
        let _ = write!(out, "<div class=\"pair\">{}</div>", charts.concat());
    }
    out.push_str(&verdicts(r));
    out.push_str("</section>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{PeerInfo, Percentiles, Placement, ScenarioOutcome};

    fn latency(workload: &str, p50: f64) -> Latency {
        let parts: Vec<&str> = workload.split('/').collect();
        Latency {
            workload: workload.into(),
            family: parts[0].into(),
            flavor: parts[1].into(),
            placement: Placement::SameCpu,
            message_bytes: 64,
            percentiles: Percentiles {
                p50,
                ..Percentiles::default()
            },
            spread: 0.01,
            calibration: None,
            ratio: None,
            ratio_note: None,
            cdf: vec![(p50 / 2.0, 0.1), (p50, 0.5), (p50 * 2.0, 1.0)],
            achieved: None,
        }
    }

    fn throughput(workload: &str, msgs_per_sec: f64) -> Throughput {
        let parts: Vec<&str> = workload.split('/').collect();
        Throughput {
            workload: workload.into(),
            family: parts[0].into(),
            flavor: parts[1].into(),
            producers: 1,
            consumers: 1,
            message_bytes: 64,
            msgs_per_sec,
            bytes_per_sec: msgs_per_sec * 64.0,
            spread: 0.01,
            calibration: None,
            ratio: None,
            ratio_note: None,
            achieved: None,
        }
    }

    /// A run with two CPython latencies (one mirrored by a measured ipcbench workload,
    /// one whose twin was filtered out) and a CPython stream beside ipcbench's.
    fn results() -> Results {
        Results {
            latency: vec![
                latency("queue/pipe/roundtrip/64B/same-cpu", 10_000.0),
                latency("queue/cpython-queue/roundtrip/64B/same-cpu", 123_456.0),
                latency("pipe/cpython-pipe-duplex/roundtrip/64B/same-cpu", 50_000.0),
                latency("queue/shm/roundtrip/64B/same-cpu", 900.0),
            ],
            throughput: vec![
                throughput("queue/cpython-queue/stream/64B/1x1", 400_000.0),
                throughput("queue/pipe/stream/64B/1x1", 100_000.0),
            ],
            peers: vec![PeerInfo {
                name: "cpython".into(),
                version: "3.11.7".into(),
                implementation: "CPython".into(),
                start_methods: vec!["fork".into(), "spawn".into()],
                pairs: Default::default(),
            }],
            ..Results::default()
        }
    }

    fn page(r: &Results) -> Page<'_> {
        Page {
            results: r,
            baseline: None,
            sources: Vec::new(),
            notes: Vec::new(),
            steps: Vec::new(),
            threshold_pct: 10.0,
        }
    }

    #[test]
    fn each_peer_workload_is_paired_with_the_workload_it_mirrors() {
        let r = results();
        let (pairs, alone) = pairs(&r);
        let names: Vec<(&str, &str)> = pairs
            .iter()
            .map(|p| (p.peer_workload(), p.our_workload()))
            .collect();
        assert_eq!(
            names,
            [
                (
                    "queue/cpython-queue/roundtrip/64B/same-cpu",
                    "queue/pipe/roundtrip/64B/same-cpu"
                ),
                (
                    "queue/cpython-queue/stream/64B/1x1",
                    "queue/pipe/stream/64B/1x1"
                ),
            ]
        );
        assert_eq!(alone, ["pipe/cpython-pipe-duplex/roundtrip/64B/same-cpu"]);
        // Latency: the peer's median over ours; throughput: our rate over the peer's.
        assert!((pairs[0].speedup() - 12.3456).abs() < 1e-9);
        assert!((pairs[1].speedup() - 0.25).abs() < 1e-9);
    }

    #[test]
    fn the_ratio_says_who_is_faster_to_three_figures() {
        assert_eq!(ratio_text(12.3456), "ipcbench 12.3× faster");
        assert_eq!(ratio_text(1234.5), "ipcbench 1230× faster");
        assert_eq!(ratio_text(0.25), "ipcbench 4× slower");
        assert_eq!(ratio_text(1.0 / 3.0), "ipcbench 3× slower");
        assert_eq!(ratio_text(0.24), "ipcbench 4.17× slower");
        assert_eq!(ratio_text(1.0004), "ipcbench as fast (1×)");
        assert_eq!(ratio_text(0.0), "—");
        assert_eq!(ratio_text(f64::NAN), "—");
        assert_eq!(ratio_text(f64::INFINITY), "—");
    }

    #[test]
    fn the_section_shows_versions_table_charts_and_what_is_missing() {
        let r = results();
        let html = section(&page(&r));
        assert!(html.starts_with("<section id=\"peers\">"), "{html}");
        assert!(html.contains("CPython 3.11.7, start methods <b>fork, spawn</b>"));
        assert!(html.contains("<tr data-key=\"peer/queue/cpython-queue/roundtrip/64B/same-cpu\">"));
        assert!(html.contains(">ipcbench 12.3× faster</td>"));
        assert!(html.contains(">ipcbench 4× slower</td>"));
        // Human units in the cell, the exact figure in its title.
        assert!(html.contains("data-value=\"123456\" title=\"123456\">123 µs</td>"));
        assert!(html.contains("data-value=\"400000\" title=\"400000\">400 k</td>"));
        // One chart per latency pair, none for the stream or the unpaired latency.
        assert_eq!(html.matches("<figure class=\"chart\"").count(), 1);
        assert!(html.contains("id=\"chart-peer-queue-cpython-queue-roundtrip-64B-same-cpu\""));
        assert!(
            html.contains("&quot;CPython · cpython-queue&quot;"),
            "{html}"
        );
        assert!(html.contains("&quot;ipcbench · pipe&quot;"));
        assert!(html.contains("id=\"peers-alone\""));
        assert!(html.contains("pipe/cpython-pipe-duplex/roundtrip/64B/same-cpu"));
        assert!(html.contains("Scenarios: not run on Python code in these results"));
    }

    fn outcome(scenario: &str, variant: &str, verdict: &str, matches: bool) -> ScenarioOutcome {
        ScenarioOutcome {
            scenario: scenario.into(),
            variant: variant.into(),
            expected: crate::results::Expectation::Caught,
            expected_kind: "hung".into(),
            verdict: verdict.into(),
            detail: format!("{verdict} in futex"),
            matches,
            cases: 1,
            seconds: 4.0,
            reproduction: None,
        }
    }

    #[test]
    fn each_python_verdict_sits_beside_ipcbench_s_on_the_scenario_it_mirrors() {
        let mut r = results();
        r.scenarios = vec![
            outcome("pool-worker-death", "naive", "hung", true),
            outcome("pool-worker-death", "supervised", "holds", true),
            outcome("cpython/pool-worker-death", "naive", "hung", true),
            outcome("cpython/lock-holder-killed", "plain", "holds", false),
        ];
        let html = section(&page(&r));
        assert!(
            html.contains("1 of 2 Python verdicts as expected"),
            "{html}"
        );
        let row = |key: &str| {
            let start = html.find(&format!("data-key=\"{key}\"")).expect(key);
            html[start..start + html[start..].find("</tr>").unwrap()].to_string()
        };
        let pool = row("cpython/pool-worker-death/naive");
        assert!(pool.contains(">hung in futex<"), "{pool}");
        assert!(pool.contains(">naive hung, supervised holds<"), "{pool}");
        let lock = row("cpython/lock-holder-killed/plain");
        assert!(
            lock.contains(">NO<") && lock.contains(">not run<"),
            "{lock}"
        );
        // Python verdicts alone (no CPython figures) still make the section.
        r.latency.retain(|l| !is_peer_flavor(&l.flavor));
        r.throughput.retain(|t| !is_peer_flavor(&t.flavor));
        r.peers.clear();
        let html = section(&page(&r));
        assert!(!html.contains("id=\"peers-not-run\""));
        assert!(html.contains("id=\"peers-scenarios\""));
    }

    #[test]
    fn without_peer_figures_the_section_says_it_was_not_run_and_why() {
        let mut r = results();
        r.latency.retain(|l| !is_peer_flavor(&l.flavor));
        r.throughput.retain(|t| !is_peer_flavor(&t.flavor));
        r.peers.clear();
        let html = section(&page(&r));
        assert!(html.contains("id=\"peers-not-run\""), "{html}");
        assert!(!html.contains("<table") && !html.contains("<figure"));
        assert!(html.contains("Not run: these results have no CPython figures"));
        // The peer answered, but every workload failed: said as such.
        let mut failed = r.clone();
        failed.peers = results().peers;
        let html = section(&page(&failed));
        assert!(html.contains("started but recorded no figure"), "{html}");
        let mut with_note = page(&r);
        with_note.notes = vec![(Section::Peers, "skipped: python3 not found".into())];
        let html = section(&with_note);
        assert!(html.contains("<p class=\"note\">skipped: python3 not found</p>"));
        assert!(!html.contains("peers-not-run"), "{html}");
    }
}
