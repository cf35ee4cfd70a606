//! The CI gate: compare a run against a baseline, metric by metric on calibrated ratios
//! (never absolute times, which differ between machines), and every scenario verdict and
//! stress result against its expectation.
//!
//! One measure both ways: "times worse" — current / baseline for a latency ratio, baseline
//! / current for a throughput ratio — so a stream three times slower fails exactly as a
//! round trip three times longer does. `worse_by` is that factor minus one (+1.5 is 2.5
//! times worse), and for an improvement minus (times better − 1).
//!
//! The noise rule: a metric regresses only when it got worse by more than the threshold
//! *and* by more than the spread the *baseline* recorded for it, so a metric that varies
//! by 40% between repeats on a shared 2-core machine cannot fail CI by varying 30%, and a
//! slowdown that also adds jitter cannot ungate itself. Metrics whose baseline spread
//! exceeds `max_gated_spread` are shown but never gate: too noisy to gate without
//! flapping.
//!
//! What the baseline gates and the run lacks is a regression, named: a metric gone or
//! left without a usable ratio (none, zero, not finite), a stress target gone. A stress
//! result that moved no messages, or under which no fault fired, tested nothing and fails
//! too.

use crate::report::junit::{Suite, TestCase};
use crate::results::{Expectation, Placement, Results};
use serde::{Deserialize, Serialize};

/// Spread above which a speed metric is informational only (see the README's CI gate
/// section for the measurements behind the choice).
pub(crate) const DEFAULT_MAX_GATED_SPREAD: f64 = 0.5;

/// How strict the gate is: the regression threshold and the spread above which a speed
/// metric is only informational. `Policy::default()` is what `ipcbench compare` uses.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Policy {
    /// Percent change beyond which a metric counts as regressed (e.g. 25.0).
    pub(crate) threshold_pct: f64,
    pub(crate) max_gated_spread: f64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            threshold_pct: 25.0,
            max_gated_spread: DEFAULT_MAX_GATED_SPREAD,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Status {
    /// Worse beyond threshold and noise, on a gated metric or a behaviour: fails the gate.
    Regressed,
    /// Worse beyond threshold and noise, but too noisy to gate.
    NoisyWorse,
    /// Worse beyond threshold and noise, but the machine's raw cost of the same kind moved
    /// since the baseline (see [`MACHINE_MOVED`]): not gated on this run.
    MachineMoved,
    /// In the baseline, not in this run.
    Missing,
    /// Better beyond threshold and noise.
    Improved,
    /// Within threshold or noise.
    Unchanged,
    /// In this run, not in the baseline.
    New,
    /// A peer's figure (CPython's multiprocessing, flavors `cpython-*`): another
    /// implementation's speed, shown beside ipcbench's and never gated, with or without a
    /// baseline, so it is not "new" either: a refresh would not gate it.
    Peer,
}

impl Status {
    /// A marker that does not rely on colour.
    pub(crate) fn marker(self) -> &'static str {
        match self {
            Status::Regressed => "REGRESSED",
            Status::NoisyWorse => "worse (noisy, not gated)",
            Status::MachineMoved => "worse (the machine moved, not gated)",
            Status::Missing => "missing",
            Status::Improved => "improved",
            Status::Unchanged => "ok",
            Status::New => "new",
            Status::Peer => "peer (never gated)",
        }
    }
}

/// Which way is better for a metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Better {
    Lower,
    Higher,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct MetricDelta {
    pub(crate) key: String,
    pub(crate) better: Better,
    pub(crate) baseline: Option<f64>,
    pub(crate) current: Option<f64>,
    /// Change in the "worse" direction: times worse − 1 (+0.3: 1.3 times worse), or for
    /// an improvement −(times better − 1).
    pub(crate) worse_by: Option<f64>,
    /// The spread the baseline recorded (what gating is decided on).
    pub(crate) spread: f64,
    pub(crate) gated: bool,
    pub(crate) status: Status,
    /// Not gated on this run because a raw cost it rests on moved more than
    /// [`MACHINE_MOVED`] times since the baseline (named in `Comparison::machine_moved`).
    #[serde(default)]
    pub(crate) machine_moved: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct BehaviourDelta {
    /// "scenario/variant" or "stress/target".
    pub(crate) key: String,
    pub(crate) expected: String,
    pub(crate) baseline: Option<String>,
    pub(crate) current: Option<String>,
    pub(crate) status: Status,
    pub(crate) detail: String,
}

/// The gate's finding for one baseline and one run: every metric and scenario compared,
/// with its status, and the policy it was judged by. What `compare` prints as a table, JSON,
/// markdown and JUnit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub(crate) threshold_pct: f64,
    pub(crate) max_gated_spread: f64,
    /// Regressions first, then the rest by status and key.
    pub(crate) metrics: Vec<MetricDelta>,
    pub(crate) behaviour: Vec<BehaviourDelta>,
    /// How the machine's raw costs moved since the baseline, where they moved enough to
    /// leave metrics ungated (empty on the same machine in the same state).
    #[serde(default)]
    pub(crate) machine_moved: Vec<String>,
    /// Metrics divided by another raw figure in this run than in the baseline (a new
    /// calibration of their own kind): their ratios are not comparable, so they show as
    /// new until the baseline is refreshed. One line each, naming both figures.
    #[serde(default)]
    pub(crate) recalibrated: Vec<String>,
}

impl Comparison {
    pub(crate) fn regressions(&self) -> usize {
        self.metrics
            .iter()
            .filter(|m| m.status == Status::Regressed)
            .count()
            + self
                .behaviour
                .iter()
                .filter(|b| b.status == Status::Regressed)
                .count()
    }

    pub(crate) fn passed(&self) -> bool {
        self.regressions() == 0
    }

    /// Metrics and behaviours in this run that the baseline does not have and a refresh
    /// of it would gate: the catalogue or the workload list changed since it was recorded.
    /// Peers' figures are never gated ([`Status::Peer`]), and a new metric whose spread in
    /// this run is above the gated spread would be recorded too noisy to gate
    /// ([`Comparison::new_too_noisy`]): neither is counted.
    pub(crate) fn new_since_baseline(&self) -> usize {
        self.metrics
            .iter()
            .filter(|m| m.status == Status::New && m.spread <= self.max_gated_spread)
            .count()
            + self
                .behaviour
                .iter()
                .filter(|b| b.status == Status::New)
                .count()
    }

    /// New metrics whose spread in this run is above the gated spread: a baseline folded
    /// from this run would record them too noisy to gate.
    pub(crate) fn new_too_noisy(&self) -> usize {
        self.metrics
            .iter()
            .filter(|m| m.status == Status::New && m.spread > self.max_gated_spread)
            .count()
    }

    /// Peers' figures shown for reference, never gated.
    pub(crate) fn peers(&self) -> usize {
        self.metrics
            .iter()
            .filter(|m| m.status == Status::Peer)
            .count()
    }
}

/// A calibrated metric of a result set: its ratio (None when the run has none usable:
/// absent, zero or not finite), its spread, which way is better.
struct Metric {
    key: String,
    ratio: Option<f64>,
    spread: f64,
    better: Better,
    /// A peer's figure (CPython's multiprocessing): another implementation's speed is
    /// shown beside ipcbench's, never a regression of ipcbench.
    peer: bool,
    /// Whether its processes hand work to each other across CPUs (pinned apart, or left
    /// to the scheduler with more than one process): its cost then rides on the machine's
    /// cross-CPU wake-up.
    crosses_cpus: bool,
    /// The name of the raw figure it is divided by, if recorded.
    calibration_name: Option<String>,
    /// That raw figure in the same run and its unit, if recorded.
    calibration: Option<(f64, String)>,
}

/// Factor by which a raw cost of the machine may move between the baseline and the run
/// before the ratios that rest on it stop being comparable. A ratio to the same run's raw
/// baseline cancels a uniformly faster or slower machine, but not a change in one kind
/// of cost: on a VM whose idle vCPUs take ~100 µs instead of ~11 µs to wake (seen from
/// one day to the next on the same machine class), a raw round trip pays it twice and a
/// Pool's or a duplex Pipe's round trip several times, so their ratios move 2–15× with no
/// change in the code. Such a metric is shown, marked, and not gated; behaviour is gated
/// as always.
pub(crate) const MACHINE_MOVED: f64 = 2.0;

/// The raw cross-CPU wake-up the machine-state rule watches.
const CROSS_CPU_WAKE: &str = "futex-roundtrip";

/// The raw figure `name` of `results` in `placement` (or, failing that, any placement)
/// and its unit, when usable.
fn calibration_value(results: &Results, name: &str, placement: Placement) -> Option<(f64, String)> {
    let of = |p: Option<Placement>| {
        results
            .calibration
            .iter()
            .find(|c| c.name == name && p.is_none_or(|p| c.placement == p))
            .map(|c| (c.value, c.unit.clone()))
    };
    of(Some(placement))
        .or_else(|| of(None))
        .filter(|(v, _)| v.is_finite() && *v > 0.0)
}

/// A raw figure for people, in its own unit.
fn raw_text(value: f64, unit: &str) -> String {
    use crate::report::units::{human, Unit};
    match unit {
        "ns" => human(value, Unit::Nanos),
        "bytes/s" => human(value, Unit::BytesPerSec),
        other => format!("{} {other}", crate::report::units::significant(value)),
    }
}

fn metrics(results: &Results) -> Vec<Metric> {
    let usable = |r: Option<f64>| r.filter(|r| r.is_finite() && *r > 0.0);
    let raw = |name: &Option<String>, placement| {
        name.as_deref()
            .and_then(|n| calibration_value(results, n, placement))
    };
    let latency = results.latency.iter().map(|l| Metric {
        key: format!("latency/{}", l.workload),
        ratio: usable(l.ratio),
        spread: l.spread,
        better: Better::Lower,
        peer: crate::measure::peer::is_peer_flavor(&l.flavor),
        crosses_cpus: l.placement != Placement::SameCpu,
        calibration_name: l.calibration.clone(),
        calibration: raw(&l.calibration, l.placement),
    });
    let throughput = results.throughput.iter().map(|t| Metric {
        key: format!("throughput/{}", t.workload),
        ratio: usable(t.ratio),
        spread: t.spread,
        better: Better::Higher,
        peer: crate::measure::peer::is_peer_flavor(&t.flavor),
        crosses_cpus: t.producers + t.consumers >= 2,
        calibration_name: t.calibration.clone(),
        calibration: raw(&t.calibration, Placement::Unpinned),
    });
    latency.chain(throughput).collect()
}

/// How many times a raw cost moved (either way), when it moved by more than
/// [`MACHINE_MOVED`].
fn moved(base: Option<f64>, cur: Option<f64>) -> Option<f64> {
    let (b, c) = (base?, cur?);
    let factor = (c / b).max(b / c);
    (factor > MACHINE_MOVED).then_some(factor)
}

/// Times worse than the baseline (above 1) or better (below 1), in the metric's own sense.
fn times_worse(better: Better, base: f64, cur: f64) -> f64 {
    match better {
        Better::Lower => cur / base,
        Better::Higher => base / cur,
    }
}

/// Compares `current` against `baseline` under `policy`: each calibrated metric by how many
/// times worse it is (gated only where the baseline's spread allows), each scenario by
/// whether its verdict kind still matches its expectation, and anything the baseline gates
/// that the run lacks.
pub fn compare(baseline: &Results, current: &Results, policy: Policy) -> Comparison {
    // A peer's figures are never gated, even in a baseline that has them: they show as
    // peers' figures in every comparison, never as new (a refresh would not gate them).
    let base: Vec<Metric> = metrics(baseline)
        .into_iter()
        .filter(|m| m.ratio.is_some() && !m.peer)
        .collect();
    let cur = metrics(current);
    let wake = |r: &Results| {
        calibration_value(r, CROSS_CPU_WAKE, Placement::CrossCpu).map(|(value, _)| value)
    };
    let (wake_base, wake_cur) = (wake(baseline), wake(current));
    let wake_moved = moved(wake_base, wake_cur);
    let mut machine_moved = Vec::new();
    let mut recalibrated = Vec::new();
    if let (Some(factor), Some(b), Some(c)) = (wake_moved, wake_base, wake_cur) {
        machine_moved.push(format!(
            "the machine's cross-CPU wake-up ({CROSS_CPU_WAKE}, cross-cpu) moved {}× since the baseline ({} → {}): metrics whose processes hand off across CPUs are shown but not gated",
            crate::report::units::significant(factor),
            crate::report::units::human(b, crate::report::units::Unit::Nanos),
            crate::report::units::human(c, crate::report::units::Unit::Nanos),
        ));
    }
    // Each raw figure that moved on its own, and the metrics divided by it.
    let mut own_moved: Vec<(String, Vec<String>)> = Vec::new();
    let mut deltas = Vec::new();
    for b in &base {
        let found = cur.iter().find(|c| c.key == b.key);
        match found.filter(|c| c.ratio.is_some()) {
            // Divided by another raw figure than in the baseline: a ratio of another
            // kind, new until the baseline is refreshed (neither a regression nor an
            // improvement of the code).
            Some(c)
                if b.calibration_name.is_some()
                    && c.calibration_name.is_some()
                    && b.calibration_name != c.calibration_name =>
            {
                recalibrated.push(format!(
                    "{}: divided by {} in this run, by {} in the baseline: the ratios are not comparable, so it shows as new until the baseline is refreshed",
                    b.key,
                    c.calibration_name.as_deref().unwrap_or_default(),
                    b.calibration_name.as_deref().unwrap_or_default(),
                ));
                deltas.push(not_in_baseline(c, Status::New));
            }
            Some(c) => {
                let by_wake = b.crosses_cpus && wake_moved.is_some();
                let own = moved(
                    b.calibration.as_ref().map(|r| r.0),
                    c.calibration.as_ref().map(|r| r.0),
                );
                let delta = metric_delta(b, c, policy, by_wake || own.is_some());
                if let (Some(factor), false, Some(bc), Some(cc)) =
                    (own, by_wake, b.calibration.as_ref(), c.calibration.as_ref())
                {
                    let name = b.calibration_name.clone().unwrap_or_default();
                    let text = format!(
                        "the raw figure {name} moved {}× since the baseline ({} → {})",
                        crate::report::units::significant(factor),
                        raw_text(bc.0, &bc.1),
                        raw_text(cc.0, &cc.1),
                    );
                    match own_moved.iter_mut().find(|(t, _)| *t == text) {
                        Some((_, keys)) => keys.push(b.key.clone()),
                        None => own_moved.push((text, vec![b.key.clone()])),
                    }
                }
                deltas.push(delta);
            }
            None => {
                // Gone, or left without a ratio: a regression when the baseline gates it.
                let gated = b.spread <= policy.max_gated_spread;
                deltas.push(MetricDelta {
                    key: b.key.clone(),
                    better: b.better,
                    baseline: b.ratio,
                    current: found.and_then(|c| c.ratio),
                    worse_by: None,
                    spread: b.spread,
                    gated,
                    status: if gated {
                        Status::Regressed
                    } else {
                        Status::Missing
                    },
                    machine_moved: false,
                })
            }
        }
    }
    // New: what this run could gate (it has a ratio) and the baseline does not have.
    // Calibrations and figures without a baseline of their kind have no ratio to gate.
    // A peer's figure is shown as such: no baseline would gate it.
    for c in cur
        .iter()
        .filter(|c| c.ratio.is_some() && !base.iter().any(|b| b.key == c.key))
    {
        deltas.push(not_in_baseline(
            c,
            if c.peer { Status::Peer } else { Status::New },
        ));
    }
    deltas.sort_by(|a, b| a.status.cmp(&b.status).then_with(|| a.key.cmp(&b.key)));
    for (text, keys) in own_moved {
        machine_moved.push(format!(
            "{text}: {} divided by it {} shown but not gated",
            keys.join(", "),
            if keys.len() == 1 { "is" } else { "are" }
        ));
    }

    let mut behaviour = scenario_deltas(baseline, current);
    behaviour.extend(stress_deltas(baseline, current));
    behaviour.sort_by(|a, b| a.status.cmp(&b.status).then_with(|| a.key.cmp(&b.key)));
    Comparison {
        threshold_pct: policy.threshold_pct,
        max_gated_spread: policy.max_gated_spread,
        metrics: deltas,
        behaviour,
        machine_moved,
        recalibrated,
    }
}

/// Both ratios present (the caller checked).
/// `machine`: the machine's raw cost this metric rests on moved since the baseline, so a
/// worse figure is shown, not gated.
/// A metric of this run with no comparable baseline figure: shown with `status`, not gated.
fn not_in_baseline(c: &Metric, status: Status) -> MetricDelta {
    MetricDelta {
        key: c.key.clone(),
        better: c.better,
        baseline: None,
        current: c.ratio,
        worse_by: None,
        spread: c.spread,
        gated: false,
        status,
        machine_moved: false,
    }
}

fn metric_delta(base: &Metric, cur: &Metric, policy: Policy, machine: bool) -> MetricDelta {
    let (b, c) = (base.ratio.unwrap_or(1.0), cur.ratio.unwrap_or(1.0));
    let factor = times_worse(base.better, b, c);
    let worse_by = if factor >= 1.0 {
        factor - 1.0
    } else {
        -(1.0 / factor - 1.0)
    };
    let spread = base.spread;
    let gated = spread <= policy.max_gated_spread && !machine;
    let beyond = |x: f64| x > policy.threshold_pct / 100.0 && x > spread;
    let status = if beyond(worse_by) {
        if gated {
            Status::Regressed
        } else if machine {
            Status::MachineMoved
        } else {
            Status::NoisyWorse
        }
    } else if beyond(-worse_by) {
        Status::Improved
    } else {
        Status::Unchanged
    };
    MetricDelta {
        key: base.key.clone(),
        better: base.better,
        baseline: Some(b),
        current: Some(c),
        worse_by: Some(worse_by),
        spread,
        gated,
        status,
        machine_moved: machine,
    }
}

fn expectation_text(e: Expectation) -> &'static str {
    match e {
        Expectation::Holds => "holds",
        Expectation::Caught => "caught",
    }
}

/// Every scenario of the current run must match its expectation; a scenario the baseline
/// checked and this run did not is a regression too (behaviour that went unchecked).
fn scenario_deltas(baseline: &Results, current: &Results) -> Vec<BehaviourDelta> {
    let mut out = Vec::new();
    for s in &current.scenarios {
        let key = format!("{}/{}", s.scenario, s.variant);
        let before = baseline
            .scenarios
            .iter()
            .find(|b| b.scenario == s.scenario && b.variant == s.variant);
        // A caught verdict of a kind the variant does not expect is a regression even
        // when the file says it matched (an older writer, a doctored file).
        let wrong_kind = s.expected == Expectation::Caught
            && s.verdict != "holds"
            && !s.expected_kind.is_empty()
            && !s.expected_kind.split('|').any(|k| k == s.verdict);
        let matches = s.matches && !wrong_kind;
        let status = if !matches {
            Status::Regressed
        } else if before.is_none() {
            Status::New
        } else {
            Status::Unchanged
        };
        let detail = if matches {
            String::new()
        } else {
            let what = match s.expected {
                Expectation::Holds => "a safe variant failed: ".to_string(),
                Expectation::Caught if s.verdict == "holds" => {
                    "an unsafe variant is no longer caught: ".to_string()
                }
                // The checker's own detail already says why ("caught for the wrong
                // reason: expected hung in poll, got hung in read ...").
                Expectation::Caught if s.detail.starts_with("caught for the wrong reason") => {
                    String::new()
                }
                Expectation::Caught => {
                    let expected = if s.expected_kind.is_empty() {
                        "caught"
                    } else {
                        s.expected_kind.as_str()
                    };
                    format!(
                        "caught for the wrong reason: expected {expected}, got {}: ",
                        s.verdict
                    )
                }
            };
            let rerun = s
                .reproduction
                .as_ref()
                .map(|r| format!("; rerun: {}", r.command))
                .unwrap_or_default();
            format!("{what}{}{rerun}", s.detail)
        };
        out.push(BehaviourDelta {
            key,
            expected: expectation_text(s.expected).into(),
            baseline: before.map(|b| b.verdict.clone()),
            current: Some(s.verdict.clone()),
            status,
            detail,
        });
    }
    for b in &baseline.scenarios {
        if !current
            .scenarios
            .iter()
            .any(|s| s.scenario == b.scenario && s.variant == b.variant)
        {
            out.push(BehaviourDelta {
                key: format!("{}/{}", b.scenario, b.variant),
                expected: expectation_text(b.expected).into(),
                baseline: Some(b.verdict.clone()),
                current: None,
                status: Status::Regressed,
                detail: "checked in the baseline, not in this run: behaviour went unchecked".into(),
            });
        }
    }
    out
}

/// Stress results gate on their zeros: no unaccounted loss, duplicate, corrupt delivery,
/// hang or leak; and on having tested something: messages moved and faults fired. A
/// target the baseline ran and this run did not is a regression.
fn stress_deltas(baseline: &Results, current: &Results) -> Vec<BehaviourDelta> {
    let gone = baseline
        .stress
        .iter()
        .filter(|b| !current.stress.iter().any(|s| s.target == b.target))
        .map(|b| BehaviourDelta {
            key: format!("stress/{}", b.target),
            expected: "run, as in the baseline".into(),
            baseline: Some("run".into()),
            current: None,
            status: Status::Regressed,
            detail: "stressed in the baseline, not in this run: behaviour went unchecked".into(),
        });
    let ran = current.stress.iter().map(|s| {
        let mut problems = Vec::new();
        if s.messages == 0 {
            problems.push("moved no messages".to_string());
        }
        if s.kills + s.stops + s.slows == 0 {
            problems.push("no fault fired".to_string());
        }
        for (n, what) in [
            (s.losses, "unaccounted losses"),
            (s.duplicates, "duplicates"),
            (s.corrupt, "corrupt deliveries"),
        ] {
            if n > 0 {
                problems.push(format!("{n} {what}"));
            }
        }
        problems.extend(s.hangs.iter().map(|h| format!("hang: {h}")));
        problems.extend(s.leaks.iter().map(|l| format!("leak: {l}")));
        BehaviourDelta {
            key: format!("stress/{}", s.target),
            expected: "no loss, duplicate, corruption, hang or leak".into(),
            baseline: None,
            current: Some(
                if problems.is_empty() {
                    "clean"
                } else {
                    "dirty"
                }
                .into(),
            ),
            status: if problems.is_empty() {
                Status::Unchanged
            } else {
                Status::Regressed
            },
            detail: problems.join("; "),
        }
    });
    ran.chain(gone).collect()
}

/// JUnit for CI test reporters: one test case per metric (skipped when the baseline does
/// not gate it) and per behaviour (scenario variant, stress target), a regression failed
/// with its detail and the command that reproduces it. `current` gives the stress seeds.
pub(crate) fn to_junit(c: &Comparison, current: &Results) -> Suite {
    let mut suite = Suite::new("ipcbench compare");
    for m in &c.metrics {
        let (kind, workload) = m.key.split_once('/').unwrap_or(("metric", &m.key));
        let case = TestCase::new(format!("compare.{kind}"), workload, 0.0);
        suite.cases.push(match m.status {
            Status::Regressed => {
                let what = match m.worse_by {
                    Some(w) => format!("{:.2}× worse (threshold {}%)", w + 1.0, c.threshold_pct),
                    None => "gated by the baseline, missing or without a ratio in this run".into(),
                };
                case.failed(
                    format!("{}: {what}", m.key),
                    format!(
                        "baseline ratio {}, current {}, baseline spread {:.0}%\nrerun: ipcbench bench --filter {workload}",
                        fmt_opt(m.baseline),
                        fmt_opt(m.current),
                        m.spread * 100.0
                    ),
                )
            }
            Status::New => case.skipped("new since the baseline, not gated"),
            Status::Peer => case.skipped("a peer's figure (another implementation), never gated"),
            Status::MachineMoved => case.skipped(
                "worse, but the machine's raw cost it rests on moved since the baseline: shown, not gated",
            ),
            _ if !m.gated => case.skipped(format!(
                "baseline spread {:.0}% above {:.0}%: shown, not gated",
                m.spread * 100.0,
                c.max_gated_spread * 100.0
            )),
            _ => case,
        });
    }
    for b in &c.behaviour {
        let (kind, name) = match b.key.split_once('/') {
            Some(("stress", target)) => ("stress".to_string(), target.to_string()),
            Some((scenario, variant)) => (format!("scenario.{scenario}"), variant.to_string()),
            None => ("behaviour".to_string(), b.key.clone()),
        };
        let case = TestCase::new(format!("compare.{kind}"), name.as_str(), 0.0);
        if b.status != Status::Regressed {
            suite.cases.push(case);
            continue;
        }
        let rerun = if kind == "stress" {
            current
                .stress
                .iter()
                .find(|s| s.target == name)
                .map(|s| {
                    format!(
                        "ipcbench stress --target {name} --seed {} --procs {} --duration {:.0}s",
                        s.seed,
                        s.procs,
                        s.seconds.ceil().max(1.0)
                    )
                })
                .unwrap_or_else(|| format!("ipcbench stress --target {name}"))
        } else if b.detail.contains("rerun: ") {
            String::new()
        } else {
            format!(
                "ipcbench check --scenario {} --variant {name}",
                kind.trim_start_matches("scenario.")
            )
        };
        let detail = if rerun.is_empty() {
            b.detail.clone()
        } else {
            format!("{}\nrerun: {rerun}", b.detail)
        };
        let headline = b.detail.split("; rerun: ").next().unwrap_or_default();
        suite
            .cases
            .push(case.failed(format!("{}: {headline}", b.key), detail));
    }
    suite
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into())
}

/// The change in the metric's own "worse" direction: +30% is 30% worse, -20% is better.
fn fmt_change(v: Option<f64>) -> String {
    v.map(|v| format!("{:+.1}%", v * 100.0))
        .unwrap_or_else(|| "-".into())
}

/// A plain-text table for people.
pub(crate) fn to_table(c: &Comparison) -> String {
    let mut out = String::new();
    let verdict = if c.passed() { "PASS" } else { "FAIL" };
    out.push_str(&format!(
        "ipcbench compare: {verdict} — {} regression(s); threshold {}%, metrics with spread above {:.0}% are not gated\n\n",
        c.regressions(),
        c.threshold_pct,
        c.max_gated_spread * 100.0
    ));
    for note in &c.machine_moved {
        out.push_str(&format!("machine moved: {note}\n"));
    }
    for note in &c.recalibrated {
        out.push_str(&format!("recalibrated: {note}\n"));
    }
    if !c.machine_moved.is_empty() || !c.recalibrated.is_empty() {
        out.push('\n');
    }
    out.push_str(&new_and_peers(c, ""));
    out.push_str(&format!(
        "{:<11} {:<58} {:>10} {:>10} {:>16} {:>8}\n",
        "status", "metric (ratio to calibration)", "baseline", "current", "worse by", "spread"
    ));
    for m in &c.metrics {
        out.push_str(&format!(
            "{:<11} {:<58} {:>10} {:>10} {:>16} {:>7.0}%\n",
            short_marker(m.status),
            m.key,
            fmt_opt(m.baseline),
            fmt_opt(m.current),
            fmt_change(m.worse_by),
            m.spread * 100.0
        ));
    }
    out.push('\n');
    out.push_str(&format!(
        "{:<11} {:<44} {:<8} {:<10} {:<10} detail\n",
        "status", "behaviour", "expected", "baseline", "current"
    ));
    for b in &c.behaviour {
        out.push_str(&format!(
            "{:<11} {:<44} {:<8} {:<10} {:<10} {}\n",
            short_marker(b.status),
            b.key,
            b.expected,
            b.baseline.as_deref().unwrap_or("-"),
            b.current.as_deref().unwrap_or("-"),
            b.detail
        ));
    }
    out
}

/// What the run has that the baseline does not gate, counted apart: new metrics and
/// behaviours a refresh would gate, new metrics too noisy for a refresh to gate, peers'
/// figures no refresh gates. A paragraph per kind present (counts in `strong`, e.g. `**`
/// for markdown), each ending in a blank line; empty when there are none.
pub(crate) fn new_and_peers(c: &Comparison, strong: &str) -> String {
    let mut out = String::new();
    let new = c.new_since_baseline();
    if new > 0 {
        out.push_str(&format!(
            "{strong}{new}{strong} metric(s) or behaviour(s) new since the baseline, not gated: refresh the baseline to gate them\n\n"
        ));
    }
    let noisy = c.new_too_noisy();
    if noisy > 0 {
        out.push_str(&format!(
            "{strong}{noisy}{strong} metric(s) new since the baseline with a spread above {:.0}% in this run: a refreshed baseline would show them, not gate them\n\n",
            c.max_gated_spread * 100.0
        ));
    }
    let peers = c.peers();
    if peers > 0 {
        out.push_str(&format!(
            "{strong}{peers}{strong} peer figure(s) (CPython's multiprocessing) shown for reference, never gated\n\n"
        ));
    }
    out
}

fn short_marker(s: Status) -> &'static str {
    match s {
        Status::Regressed => "REGRESSED",
        Status::NoisyWorse => "worse~",
        Status::MachineMoved => "worse≠",
        Status::Missing => "missing",
        Status::Improved => "improved",
        Status::Unchanged => "ok",
        Status::New => "new",
        Status::Peer => "peer",
    }
}

/// Markdown for a pull-request comment: the verdict, the regressions, then the rest
/// folded away.
pub(crate) fn to_markdown(c: &Comparison) -> String {
    let mut out = String::new();
    let (icon, verdict) = if c.passed() {
        ("✅", "PASS")
    } else {
        ("❌", "FAIL")
    };
    out.push_str(&format!(
        "### {icon} ipcbench compare: **{verdict}** — {} regression(s)\n\nThreshold {}% (times worse − 1, the same measure for latency and throughput); a metric regresses only when it is worse by more than both the threshold and the spread the baseline recorded; metrics whose baseline spread is above {:.0}% are shown but not gated.\n\n",
        c.regressions(),
        c.threshold_pct,
        c.max_gated_spread * 100.0
    ));
    for note in &c.machine_moved {
        out.push_str(&format!("**Machine moved:** {note}.\n\n"));
    }
    for note in &c.recalibrated {
        out.push_str(&format!("**Recalibrated:** {note}.\n\n"));
    }
    out.push_str(&new_and_peers(c, "**"));
    let behaviour_header = "| status | behaviour | expected | baseline | current | detail |\n|---|---|---|---|---|---|\n";
    let metric_header = "| status | metric (ratio to calibration) | baseline | current | worse by | spread |\n|---|---|---:|---:|---:|---:|\n";
    let behaviour_row = |b: &BehaviourDelta| {
        format!(
            "| {} | `{}` | {} | {} | {} | {} |\n",
            b.status.marker(),
            b.key,
            b.expected,
            b.baseline.as_deref().unwrap_or("-"),
            b.current.as_deref().unwrap_or("-"),
            b.detail.replace('|', "\\|")
        )
    };
    let metric_row = |m: &MetricDelta| {
        format!(
            "| {} | `{}` | {} | {} | {} | {:.0}% |\n",
            m.status.marker(),
            m.key,
            fmt_opt(m.baseline),
            fmt_opt(m.current),
            fmt_change(m.worse_by),
            m.spread * 100.0
        )
    };
    let bad_b: Vec<_> = c
        .behaviour
        .iter()
        .filter(|b| b.status == Status::Regressed)
        .collect();
    let bad_m: Vec<_> = c
        .metrics
        .iter()
        .filter(|m| m.status == Status::Regressed)
        .collect();
    if !bad_b.is_empty() || !bad_m.is_empty() {
        out.push_str("#### Regressions\n\n");
        if !bad_b.is_empty() {
            out.push_str(behaviour_header);
            bad_b.iter().for_each(|b| out.push_str(&behaviour_row(b)));
            out.push('\n');
        }
        if !bad_m.is_empty() {
            out.push_str(metric_header);
            bad_m.iter().for_each(|m| out.push_str(&metric_row(m)));
            out.push('\n');
        }
    }
    out.push_str("<details><summary>All behaviour checks</summary>\n\n");
    out.push_str(behaviour_header);
    c.behaviour
        .iter()
        .for_each(|b| out.push_str(&behaviour_row(b)));
    out.push_str("\n</details>\n\n<details><summary>All metrics</summary>\n\n");
    out.push_str(metric_header);
    c.metrics.iter().for_each(|m| out.push_str(&metric_row(m)));
    out.push_str("\n</details>\n");
    out
}

/// Folds several runs of the same build into one baseline. Each metric's ratio is the
/// median over the runs, and its spread is widened to the run-to-run spread
/// ((max - min) / median of the ratios) when that is larger than the spread recorded
/// within a run: a metric that moves by 200% from one run to the next on this kind of
/// machine (a same-CPU spinning ring, say) then carries that spread and is shown but not
/// gated, while a steady one keeps a tight spread and stays gated.
pub(crate) fn combine_runs(mut runs: Vec<Results>) -> Option<Results> {
    if runs.is_empty() {
        return None;
    }
    let first = runs.remove(0);
    let mut combined = first.clone();
    let all: Vec<&Results> = std::iter::once(&first).chain(runs.iter()).collect();
    let widen = |ratios: &mut Vec<f64>, spread: f64| -> Option<(f64, f64)> {
        ratios.sort_by(f64::total_cmp);
        let median = *ratios.get(ratios.len() / 2)?;
        let run_to_run = match (ratios.first(), ratios.last()) {
            (Some(lo), Some(hi)) if median > 0.0 => (hi - lo) / median,
            _ => 0.0,
        };
        Some((median, spread.max(run_to_run)))
    };
    for entry in &mut combined.latency {
        let mut ratios: Vec<f64> = all
            .iter()
            .filter_map(|r| {
                r.latency
                    .iter()
                    .find(|l| l.workload == entry.workload)?
                    .ratio
            })
            .collect();
        let spread = all
            .iter()
            .filter_map(|r| r.latency.iter().find(|l| l.workload == entry.workload))
            .map(|l| l.spread)
            .fold(0.0, f64::max);
        if let Some((ratio, spread)) = widen(&mut ratios, spread) {
            entry.ratio = Some(ratio);
            entry.spread = spread;
        }
    }
    for entry in &mut combined.throughput {
        let mut ratios: Vec<f64> = all
            .iter()
            .filter_map(|r| {
                r.throughput
                    .iter()
                    .find(|t| t.workload == entry.workload)?
                    .ratio
            })
            .collect();
        let spread = all
            .iter()
            .filter_map(|r| r.throughput.iter().find(|t| t.workload == entry.workload))
            .map(|t| t.spread)
            .fold(0.0, f64::max);
        if let Some((ratio, spread)) = widen(&mut ratios, spread) {
            entry.ratio = Some(ratio);
            entry.spread = spread;
        }
    }
    Some(combined)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{Latency, Percentiles, Placement};

    fn run_with(ratio: f64, spread: f64) -> Results {
        let mut r = Results::new("quick");
        r.latency.push(Latency {
            workload: "queue/shm/roundtrip/64B/same-cpu".into(),
            family: "queue".into(),
            flavor: "shm".into(),
            placement: Placement::SameCpu,
            message_bytes: 64,
            percentiles: Percentiles::default(),
            spread,
            calibration: Some("pipe-roundtrip".into()),
            ratio: Some(ratio),
            ratio_note: None,
            cdf: vec![],
            achieved: None,
        });
        r
    }

    /// A CPython figure ten times worse than a baseline that (wrongly) has it is a peer's
    /// figure, not gated and not counted as new: the peer's speed is not ipcbench's
    /// regression, and no refresh of the baseline would gate it.
    #[test]
    fn peer_figures_are_never_gated() {
        let peer = |ratio: f64| {
            let mut r = run_with(ratio, 0.01);
            r.latency[0].workload = "queue/cpython-queue/roundtrip/64B/same-cpu".into();
            r.latency[0].flavor = "cpython-queue".into();
            r
        };
        let c = compare(&peer(1.0), &peer(10.0), Policy::default());
        assert!(c.passed(), "{:?}", c.metrics);
        assert_eq!(c.metrics.len(), 1);
        assert_eq!(c.metrics[0].status, Status::Peer);
        assert!(!c.metrics[0].gated);
        assert_eq!(c.new_since_baseline(), 0, "a refresh would not gate it");
        assert_eq!(c.peers(), 1);
        // ipcbench's own figure, the same way, regresses.
        let c = compare(
            &run_with(1.0, 0.01),
            &run_with(10.0, 0.01),
            Policy::default(),
        );
        assert!(!c.passed());
    }

    #[test]
    fn combining_runs_takes_the_median_and_widens_the_spread() {
        let combined = combine_runs(vec![
            run_with(1.0, 0.1),
            run_with(3.0, 0.1),
            run_with(1.2, 0.2),
        ])
        .unwrap();
        let l = &combined.latency[0];
        assert_eq!(l.ratio, Some(1.2));
        assert!((l.spread - (3.0 - 1.0) / 1.2).abs() < 1e-9, "{}", l.spread);
        // A steady metric keeps its own, larger, within-run spread.
        let steady = combine_runs(vec![run_with(1.0, 0.3), run_with(1.01, 0.1)]).unwrap();
        assert!((steady.latency[0].spread - 0.3).abs() < 1e-9);
        assert!(combine_runs(vec![]).is_none());
    }

    #[test]
    fn the_noise_rule_needs_both_threshold_and_spread() {
        let policy = Policy {
            threshold_pct: 25.0,
            max_gated_spread: 0.5,
        };
        let verdict = |base: f64, cur: f64, spread: f64| {
            compare(&run_with(base, spread), &run_with(cur, spread), policy).metrics[0].status
        };
        assert_eq!(verdict(1.0, 2.0, 0.1), Status::Regressed);
        assert_eq!(
            verdict(1.0, 1.2, 0.1),
            Status::Unchanged,
            "under the threshold"
        );
        assert_eq!(
            verdict(1.0, 1.4, 0.45),
            Status::Unchanged,
            "within the spread"
        );
        assert_eq!(
            verdict(1.0, 3.0, 0.6),
            Status::NoisyWorse,
            "too noisy to gate"
        );
        assert_eq!(verdict(2.0, 1.0, 0.1), Status::Improved);
    }
}
