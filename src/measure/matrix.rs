//! The core-to-core latency matrix: the cache-line ping-pong and the 1-byte pipe round
//! trip of [`calibration`](super::calibration) between two real processes pinned to each
//! pair of CPUs this process may use (as the `core-to-core-latency` tool does for its CAS
//! ping-pong), each figure time-bounded, pairs sampled on large machines.

use super::calibration::{pipe_roundtrip_on, shm_pingpong_on, Rounds};
use super::histogram::median;
use super::registry::Profile;
use super::runner::{panic_text, Failure};
use crate::results::{CorePair, CoreToCore, PairClass, Topology};
use std::collections::BTreeSet;
use std::time::Duration;

/// The most pairs measured: all of them up to 11 CPUs (66 pairs with the diagonal).
pub const MAX_PAIRS: usize = 64;

/// How long each figure of a pair may be timed, and at most how many round trips.
pub fn rounds(profile: Profile) -> Rounds {
    match profile {
        Profile::Quick => Rounds {
            iters: 20_000,
            budget: Some(Duration::from_millis(50)),
        },
        Profile::Full => Rounds {
            iters: 200_000,
            budget: Some(Duration::from_millis(250)),
        },
    }
}

/// The unordered pairs (a ≤ b, diagonal included) of `cpus` to measure, and the rule
/// that chose them: all of them when there are at most `max`; otherwise the first pair
/// of each topology class, then the rest evenly spaced in order up to `max`.
pub fn choose_pairs(
    cpus: &[usize],
    topology: &Topology,
    max: usize,
) -> (Vec<(usize, usize)>, String) {
    let all: Vec<(usize, usize)> = cpus
        .iter()
        .enumerate()
        .flat_map(|(i, &a)| cpus[i..].iter().map(move |&b| (a, b)))
        .collect();
    if all.len() <= max {
        let rule = format!("all {} pairs of {} CPUs", all.len(), cpus.len());
        return (all, rule);
    }
    let mut chosen = BTreeSet::new();
    let mut classes: Vec<PairClass> = Vec::new();
    for &(a, b) in &all {
        let class = topology.class(a, b);
        if !classes.contains(&class) && chosen.len() < max {
            classes.push(class);
            chosen.insert((a, b));
        }
    }
    let rest: Vec<(usize, usize)> = all
        .iter()
        .filter(|p| !chosen.contains(p))
        .copied()
        .collect();
    let need = max.saturating_sub(chosen.len()).min(rest.len());
    chosen.extend((0..need).map(|i| rest[i * rest.len() / need]));
    let rule = format!(
        "{} of the {} pairs of {} CPUs: the first pair of each topology class, then {need} \
         evenly spaced in order",
        chosen.len(),
        all.len(),
        cpus.len()
    );
    (chosen.into_iter().collect(), rule)
}

/// The median (ns) of one figure of a pair, or why there is none.
fn figure(run: impl FnOnce() -> Vec<u64>) -> Result<(f64, u64), String> {
    let samples = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run))
        .map_err(|payload| panic_text(payload.as_ref()))?;
    let values: Vec<f64> = samples.iter().map(|&ns| ns as f64).collect();
    Ok((median(&values), values.len() as u64))
}

/// Measures the matrix over the CPUs `topology.allowed`. `progress` is told each pair
/// before it is measured. A pair whose figure failed keeps its cell empty with the
/// reason, and is returned as a failure by name.
pub fn measure(
    topology: &Topology,
    profile: Profile,
    mut progress: impl FnMut(usize, (usize, usize)),
) -> (CoreToCore, Vec<Failure>) {
    let cpus = topology.allowed.clone();
    let (pairs, chosen) = choose_pairs(&cpus, topology, MAX_PAIRS);
    let rounds = rounds(profile);
    let mut failures = Vec::new();
    let mut cells = Vec::with_capacity(pairs.len());
    for (i, &(a, b)) in pairs.iter().enumerate() {
        progress(i, (a, b));
        let cpus = (Some(a), Some(b));
        let shm = (a != b).then(|| figure(|| shm_pingpong_on(cpus, rounds).samples_ns));
        let pipe = figure(|| pipe_roundtrip_on(cpus, rounds).samples_ns);
        let mut notes = Vec::new();
        for (what, result) in [
            ("shm-pingpong", shm.as_ref()),
            ("pipe-roundtrip", Some(&pipe)),
        ] {
            if let Some(Err(why)) = result {
                notes.push(format!("{what}: {why}"));
                failures.push(Failure {
                    workload: format!("calibration/core-to-core/{what}/cpu{a}-cpu{b}"),
                    message: why.clone(),
                });
            }
        }
        let ok = |r: Option<&Result<(f64, u64), String>>| r.and_then(|r| r.as_ref().ok()).copied();
        let (shm, pipe) = (ok(shm.as_ref()), ok(Some(&pipe)));
        cells.push(CorePair {
            initiator: a,
            responder: b,
            class: topology.class(a, b),
            shm_pingpong_ns: shm.map(|s| s.0),
            pipe_roundtrip_ns: pipe.map(|p| p.0),
            samples: (shm.map_or(0, |s| s.1), pipe.map_or(0, |p| p.1)),
            note: (!notes.is_empty()).then(|| notes.join("; ")),
        });
    }
    let budget = rounds.budget.unwrap_or_default();
    let rule = format!(
        "{chosen}; each figure timed for at most {} ms or {} round trips after a warm-up, \
         initiator on the row's CPU and responder on the column's; no cache-line ping-pong \
         on one CPU (two spinners there measure the scheduler)",
        budget.as_millis(),
        rounds.iters
    );
    (
        CoreToCore {
            cpus,
            rule,
            pairs: cells,
        },
        failures,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::hygiene::Snapshot;

    /// On this machine: every pair measured (shm off the diagonal only) within the
    /// profile's bound on round trips; a CPU the process may not use gives empty cells
    /// with the reason and a failure by name, not a hang or a cell measured elsewhere.
    /// Nothing is left behind. No timing is asserted.
    #[test]
    fn every_pair_is_measured_or_named_and_nothing_is_left() {
        let _serial = crate::process::tests_serial();
        let before = Snapshot::take();
        let mut topology = super::super::topology::current();
        let n = topology.allowed.len();
        let (m, failures) = measure(&topology, Profile::Quick, |_, _| {});
        assert!(failures.is_empty(), "{failures:?}");
        assert_eq!(m.pairs.len(), (n * (n + 1) / 2).min(MAX_PAIRS));
        let limit = rounds(Profile::Quick).iters as u64;
        for p in &m.pairs {
            assert!(p.pipe_roundtrip_ns.is_some_and(|ns| ns > 0.0), "{p:?}");
            assert_eq!(
                p.shm_pingpong_ns.is_some(),
                p.initiator != p.responder,
                "{p:?}"
            );
            assert!((1..=limit).contains(&p.samples.1), "{p:?}");
            assert_eq!(p.class, topology.class(p.initiator, p.responder));
        }

        let first = topology.allowed[0];
        let forbidden = *topology.allowed.last().unwrap() + 1;
        topology.allowed = vec![first, forbidden];
        let (m, failures) = measure(&topology, Profile::Quick, |_, _| {});
        let bad: Vec<&CorePair> = m
            .pairs
            .iter()
            .filter(|p| p.responder == forbidden)
            .collect();
        assert_eq!(bad.len(), 2);
        for p in bad {
            assert_eq!(
                (p.shm_pingpong_ns, p.pipe_roundtrip_ns),
                (None, None),
                "{p:?}"
            );
            assert!(
                p.note
                    .as_deref()
                    .is_some_and(|n| n.contains("pipe-roundtrip: ")),
                "{p:?}"
            );
        }
        assert!(failures.iter().any(|f| f.workload
            == format!("calibration/core-to-core/shm-pingpong/cpu{first}-cpu{forbidden}")));
        assert_eq!(failures.len(), 3, "{failures:?}");
        let leaks = before.leaks_since();
        assert!(leaks.is_empty(), "{leaks:?}");
    }
}
