//! Runs registered workloads with repeats and turns what they give into the results
//! model: calibrations first, then every figure with its distribution, its spread across
//! repeats and its ratio to the calibration of the same run.

use super::histogram::{median, spread, LatencyHistogram};
use super::registry::{Kind, Profile, Sample, Workload};
use crate::report::model::{Calibration, Latency, Placement, Results, Throughput};

/// Points kept of each latency distribution, for the report's CDF chart.
const CDF_POINTS: usize = 64;

/// A workload that panicked or failed; the others still ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub workload: String,
    pub message: String,
}

/// Results of a run, and what failed.
#[derive(Debug)]
pub struct Run {
    pub results: Results,
    pub failures: Vec<Failure>,
}

/// Runs `selection` (calibrations first, whatever the order given), `profile.repeats()`
/// times each. `progress` is called before each repeat with the workload and the
/// repeat's index.
pub fn run(
    selection: &[Workload],
    profile: Profile,
    mut progress: impl FnMut(&Workload, usize),
) -> Run {
    let mut ordered: Vec<&Workload> = selection.iter().collect();
    ordered.sort_by_key(|w| w.kind != Kind::Calibration);
    let mut results = Results::new(profile.name());
    let mut failures = Vec::new();
    for workload in ordered {
        let mut samples = Vec::with_capacity(profile.repeats());
        let mut failed = None;
        for repeat in 0..profile.repeats() {
            progress(workload, repeat);
            let ops = workload.ops(profile);
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (workload.run)(ops))) {
                Ok(sample) => samples.push(sample),
                Err(payload) => {
                    failed = Some(panic_text(payload.as_ref()));
                    break;
                }
            }
        }
        if let Some(message) = failed {
            failures.push(Failure {
                workload: workload.name.clone(),
                message,
            });
            continue;
        }
        record(&mut results, workload, &samples);
    }
    Run { results, failures }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panicked".into())
}

/// Adds what `samples` (one per repeat) say about `workload` to `results`.
pub fn record(results: &mut Results, workload: &Workload, samples: &[Sample]) {
    match workload.kind {
        Kind::Calibration => {
            // A time calibration's distribution is kept too (mean included), so its
            // tail can be charted and its mean compared with tools that report means.
            if samples.iter().all(|s| matches!(s, Sample::Times(_))) {
                record_latency(results, workload, samples);
            }
            let (values, unit) = per_repeat_figures(samples);
            results.calibration.push(Calibration {
                name: workload
                    .calibration_name()
                    .unwrap_or(&workload.name)
                    .to_string(),
                placement: workload.placement,
                value: median(&values),
                unit: unit.to_string(),
                spread: spread(&values),
            });
        }
        Kind::Latency => record_latency(results, workload, samples),
        Kind::Throughput => {
            let mut msgs = Vec::new();
            let mut bytes = Vec::new();
            for sample in samples {
                if let Sample::Moved {
                    messages,
                    bytes: moved,
                    elapsed,
                } = sample
                {
                    let seconds = elapsed.as_secs_f64().max(1e-9);
                    msgs.push(*messages as f64 / seconds);
                    bytes.push(*moved as f64 / seconds);
                }
            }
            let (msgs_per_sec, bytes_per_sec) = (median(&msgs), median(&bytes));
            let base = calibration_for(results, workload);
            results.throughput.push(Throughput {
                workload: workload.name.clone(),
                family: workload.family.to_string(),
                flavor: workload.flavor.to_string(),
                producers: workload.producers,
                consumers: workload.consumers,
                message_bytes: workload.message_bytes,
                msgs_per_sec,
                bytes_per_sec,
                spread: spread(&msgs),
                ratio: base.and_then(|c| throughput_ratio(c, msgs_per_sec, bytes_per_sec)),
                calibration: base.map(|c| c.name.clone()),
            });
        }
    }
}

/// Adds the merged distribution of time samples, one per repeat.
fn record_latency(results: &mut Results, workload: &Workload, samples: &[Sample]) {
    let mut merged = LatencyHistogram::new();
    let mut medians = Vec::new();
    for sample in samples {
        if let Sample::Times(trips) = sample {
            let histogram = LatencyHistogram::from_samples(&trips.samples_ns);
            medians.push(histogram.quantile(0.5));
            merged.merge(&histogram);
        }
    }
    let percentiles = merged.percentiles();
    let base = calibration_for(results, workload);
    results.latency.push(Latency {
        workload: workload.name.clone(),
        family: workload.family.to_string(),
        flavor: workload.flavor.to_string(),
        placement: workload.placement,
        message_bytes: workload.message_bytes,
        ratio: base.and_then(|c| (c.value > 0.0).then(|| percentiles.p50 / c.value)),
        calibration: base.map(|c| c.name.clone()),
        spread: spread(&medians),
        cdf: merged.cdf(CDF_POINTS),
        percentiles,
    });
}

/// One figure per repeat: the median time (ns) of a time sample, or bytes/s of a volume.
fn per_repeat_figures(samples: &[Sample]) -> (Vec<f64>, &'static str) {
    let mut unit = "ns";
    let values = samples
        .iter()
        .map(|sample| match sample {
            Sample::Times(trips) => LatencyHistogram::from_samples(&trips.samples_ns).quantile(0.5),
            Sample::Moved { bytes, elapsed, .. } => {
                unit = "bytes/s";
                *bytes as f64 / elapsed.as_secs_f64().max(1e-9)
            }
        })
        .collect();
    (values, unit)
}

/// Against a bandwidth: the fraction of it achieved. Against a round-trip time: messages
/// moved per calibration round trip. Higher is better either way.
fn throughput_ratio(base: &Calibration, msgs_per_sec: f64, bytes_per_sec: f64) -> Option<f64> {
    if base.value <= 0.0 {
        return None;
    }
    Some(match base.unit.as_str() {
        "ns" => msgs_per_sec * base.value / 1e9,
        _ => bytes_per_sec / base.value,
    })
}

/// The calibration a workload is divided by: same name, same placement; else unpinned;
/// else cross-CPU (where several unpinned processes on 2 cores mostly run); else the
/// name in any placement.
fn calibration_for<'a>(results: &'a Results, workload: &Workload) -> Option<&'a Calibration> {
    let name = workload.calibration?;
    let named = || results.calibration.iter().filter(move |c| c.name == name);
    named()
        .find(|c| c.placement == workload.placement)
        .or_else(|| named().find(|c| c.placement == Placement::Unpinned))
        .or_else(|| named().find(|c| c.placement == Placement::CrossCpu))
        .or_else(|| named().next())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::workloads::RoundTrips;
    use std::sync::Arc;
    use std::time::Duration;

    fn fake(
        name: &str,
        kind: Kind,
        calibration: Option<&'static str>,
        run: fn(usize) -> Sample,
    ) -> Workload {
        Workload {
            name: name.to_string(),
            family: "test",
            flavor: "fake",
            kind,
            placement: Placement::CrossCpu,
            message_bytes: 64,
            producers: 1,
            consumers: 1,
            calibration,
            ops: (3, 3),
            run: Arc::new(run),
        }
    }

    /// Known per-operation times in, known figures and ratios out (no clock involved).
    #[test]
    fn figures_and_ratios_from_known_samples() {
        let selection = [
            fake(
                "test/fake/roundtrip/cross-cpu",
                Kind::Latency,
                Some("base"),
                |_| {
                    Sample::Times(RoundTrips {
                        samples_ns: vec![2_000, 2_000, 2_000],
                    })
                },
            ),
            fake(
                "test/fake/stream",
                Kind::Throughput,
                Some("bandwidth"),
                |n| Sample::Moved {
                    messages: n as u64,
                    bytes: n as u64 * 1_000,
                    elapsed: Duration::from_secs(1),
                },
            ),
            // Listed last on purpose: calibrations run first whatever the order.
            fake(
                "calibration/base/cross-cpu",
                Kind::Calibration,
                None,
                |_| {
                    Sample::Times(RoundTrips {
                        samples_ns: vec![1_000, 1_000, 1_000],
                    })
                },
            ),
            fake(
                "calibration/bandwidth/cross-cpu",
                Kind::Calibration,
                None,
                |_| Sample::Moved {
                    messages: 1,
                    bytes: 6_000,
                    elapsed: Duration::from_secs(1),
                },
            ),
        ];
        let mut seen = Vec::new();
        let run = run(&selection, Profile::Quick, |w, repeat| {
            seen.push((w.name.clone(), repeat))
        });
        assert!(run.failures.is_empty());
        assert_eq!(seen.len(), 4 * Profile::Quick.repeats());
        assert!(seen[0].0.starts_with("calibration/"));
        let r = &run.results;
        assert_eq!(r.calibration.len(), 2);
        assert_eq!(r.calibration[0].name, "base");
        assert_eq!(r.calibration[0].value, 1_000.0);
        assert_eq!(r.calibration[1].unit, "bytes/s");
        assert_eq!(
            r.latency.len(),
            2,
            "the time calibration's distribution is kept"
        );
        assert_eq!(r.latency[0].workload, "calibration/base/cross-cpu");
        assert_eq!(r.latency[0].ratio, None);
        let latency = &r.latency[1];
        assert_eq!(
            latency.percentiles.samples,
            3 * Profile::Quick.repeats() as u64
        );
        assert_eq!(latency.ratio, Some(2.0));
        assert_eq!(latency.calibration.as_deref(), Some("base"));
        assert_eq!(latency.spread, 0.0);
        let throughput = &r.throughput[0];
        assert_eq!(throughput.msgs_per_sec, 3.0);
        assert_eq!(throughput.bytes_per_sec, 3_000.0);
        assert_eq!(throughput.ratio, Some(0.5));
    }

    #[test]
    fn a_panicking_workload_is_a_failure_not_a_crash() {
        let selection = [fake("test/fake/broken", Kind::Latency, None, |_| {
            panic!("deliberate")
        })];
        let run = run(&selection, Profile::Quick, |_, _| {});
        assert_eq!(
            run.failures,
            [Failure {
                workload: "test/fake/broken".into(),
                message: "deliberate".into()
            }]
        );
        assert!(run.results.latency.is_empty());
    }

    #[test]
    fn results_round_trip_through_json() {
        let selection = [fake(
            "test/fake/roundtrip/cross-cpu",
            Kind::Latency,
            None,
            |_| {
                Sample::Times(RoundTrips {
                    samples_ns: vec![1_500, 2_500, 9_000],
                })
            },
        )];
        let results = run(&selection, Profile::Quick, |_, _| {}).results;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bench.json");
        results.save(&path).unwrap();
        assert_eq!(Results::load(&path).unwrap(), results);
        assert!(!results.latency[0].cdf.is_empty());
    }
}
