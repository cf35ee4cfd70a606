//! The open harness from outside the library: this test crate registers its own scenario,
//! workload set and stress twin with the public macros, and the suite's machinery finds
//! them — the scenario is searched through the forked case leader (which once looked
//! scenarios up only in the built-in catalogue and failed with "unknown scenario").

use ipcbench::process::hygiene;
use ipcbench::register_entry;
use ipcbench::scenario::check::{search, Search};
use ipcbench::scenario::{
    self, join_workers, results, start_worker, Case, CaseContext, CaseOutcome, Joined, Scenario,
    Variant, Verdict,
};
use ipcbench::schedule::Schedule;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

/// A scenario written outside the suite: a worker process doubles a number; the broken
/// variant's worker is off by one. Its oracle is a pure function.
struct Doubling;

const VARIANTS: &[Variant] = &[
    Variant::holds("exact", "the worker doubles the number"),
    Variant::caught_violated("off-by-one", "the worker adds one too many"),
];

#[derive(Serialize, Deserialize)]
struct WorkerArgs {
    value: i64,
    broken: bool,
}

fn double(args: WorkerArgs) -> Result<i64, String> {
    Ok(args.value * 2 + i64::from(args.broken))
}
register_entry!("plugin-test-double", double);

fn oracle(value: i64, answer: i64) -> Verdict {
    if answer == value * 2 {
        Verdict::Holds
    } else {
        Verdict::violated(
            "answer = 2 × value",
            format!("{value} doubled gave {answer}"),
        )
    }
}

impl Scenario for Doubling {
    fn name(&self) -> &'static str {
        "plugin-doubling"
    }
    fn about(&self) -> &'static str {
        "a scenario registered from outside the library"
    }
    fn variants(&self) -> &'static [Variant] {
        VARIANTS
    }
    fn cases(&self, _variant: &str) -> BoxedStrategy<Case> {
        (0i64..1000)
            .prop_map(|value| Case::new(&value, Schedule::new(Vec::new())))
            .boxed()
    }
    fn run(
        &self,
        variant: &str,
        case: &Case,
        context: &CaseContext,
    ) -> Result<CaseOutcome, ipcbench::scenario::ScenarioError> {
        let value: i64 = case.params()?;
        let args = WorkerArgs {
            value,
            broken: variant == "off-by-one",
        };
        let mut workers = vec![start_worker("plugin-test-double", "doubler", &args, &[])?];
        let answer: Vec<i64> = match join_workers(&mut workers, context.deadline, None) {
            Joined::Verdict(v) => return Ok(CaseOutcome::new(v, Vec::new())),
            Joined::Finished(r) => results(r)?,
        };
        Ok(CaseOutcome::new(oracle(value, answer[0]), Vec::new()))
    }
}

static DOUBLING: Doubling = Doubling;
ipcbench::register_scenario!(DOUBLING);

fn plugin_workloads() -> Vec<ipcbench::measure::registry::Workload> {
    use ipcbench::measure::registry::Workload;
    use ipcbench::report::model::Placement;
    vec![Workload::latency("plugin", "raw-pipe", "roundtrip")
        .size(64)
        .placement(Placement::SameCpu)
        .ops(10, 10)
        .run(|placement, n| {
            ipcbench::measure::workloads::pipe::round_trip(
                ipcbench::ipc::pipe::PipeKind::Duplex,
                64,
                placement,
                n,
            )
        })]
}
ipcbench::register_workloads!("plugin-test", plugin_workloads);

/// One workload on its own, registered with the singular macro.
fn plugin_stream() -> ipcbench::measure::registry::Workload {
    ipcbench::measure::registry::Workload::stream("plugin", "raw-pipe")
        .size(64)
        .ops(10, 10)
        .run(|n| {
            ipcbench::measure::workloads::pipe::throughput(
                64,
                n,
                ipcbench::report::model::Placement::Unpinned,
            )
        })
}
ipcbench::register_workload!(plugin_stream);

fn plugin_twins() -> Vec<Box<dyn ipcbench::stress::Target>> {
    use ipcbench::ipc::queue::Flavor;
    use ipcbench::stress::queue::{Defect, QueueTarget};
    vec![Box::new(QueueTarget::broken(
        Flavor::Channel,
        Defect::Dropping,
    ))]
}
ipcbench::register_targets!("plugin-test-twins", plugin_twins, broken);

#[test]
fn a_registered_scenario_is_in_the_catalogue_and_searched_both_ways() {
    let before = hygiene::Snapshot::take();
    let found = scenario::find("plugin-doubling").expect("registered");
    assert!(scenario::catalogue()
        .iter()
        .any(|s| s.name() == "plugin-doubling"));
    // The built-in catalogue is still first, in its order.
    assert_eq!(scenario::catalogue()[0].name(), "ticket-oversell");
    let options = Search {
        cases: 8,
        seed: 1,
        max_shrink_time: std::time::Duration::from_secs(10),
    };
    let exact = search(found, VARIANTS[0], options);
    assert!(exact.matches(), "{:?}", exact.outcome);
    let broken = search(found, VARIANTS[1], options);
    assert!(broken.matches(), "the off-by-one variant was not caught");
    let leaks = before.leaks_since();
    assert!(leaks.is_empty(), "left behind: {leaks:?}");
}

#[test]
fn registered_workloads_and_twins_join_the_catalogues() {
    let workloads = ipcbench::measure::registry::all();
    let names: Vec<&str> = workloads.iter().map(|w| w.shape.name.as_str()).collect();
    assert!(
        names.contains(&"plugin/raw-pipe/roundtrip/64B/same-cpu"),
        "{names:?}"
    );
    assert!(
        names.contains(&"plugin/raw-pipe/stream/64B/1x1"),
        "register_workload! adds one workload: {names:?}"
    );
    // After the built-ins, which keep their order (calibrations first).
    let plugin = names.iter().position(|n| n.starts_with("plugin/")).unwrap();
    let last_builtin = names
        .iter()
        .rposition(|n| n.starts_with("filestore/"))
        .unwrap();
    assert!(plugin > last_builtin);
    assert!(names[0].starts_with("calibration/"));

    let twins: Vec<String> = ipcbench::stress::broken_targets()
        .iter()
        .map(|t| t.name())
        .collect();
    assert!(
        twins.contains(&"queue-channel-dropping".to_string()),
        "{twins:?}"
    );
    // A twin is never among the targets run by default.
    assert!(!ipcbench::stress::target_names().contains(&"queue-channel-dropping".to_string()));
}
