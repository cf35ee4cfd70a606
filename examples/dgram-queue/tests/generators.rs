//! The scenarios written over the queue family draw the plugged flavor in their search,
//! not only the built-in ones.

use ipcbench_dgram_queue as _; // links the flavor's registration into this test binary
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;

#[test]
fn queue_end_signal_searches_the_plugged_flavor_too() {
    let scenario = ipcbench::scenario::find("queue-end-signal").expect("in the catalogue");
    let strategy = scenario.cases("missing-sentinel");
    let mut runner = TestRunner::deterministic();
    let mut flavors = std::collections::BTreeSet::new();
    for _ in 0..300 {
        let case = strategy.new_tree(&mut runner).expect("a case").current();
        flavors.insert(case.params["flavor"].to_string());
    }
    let drawn: Vec<_> = flavors.iter().map(String::as_str).collect();
    assert_eq!(
        drawn,
        [r#""Pipe""#, r#""Shm""#, r#"{"Plugin":"dgram"}"#],
        "flavors the search drew"
    );
}
