//! `ipcbench prove` through the real binary, and the JUnit XML of `prove` and `check`
//! read by an independent XML parser.

#[path = "support/junit.rs"]
mod junit;

use ipcbench::process::hygiene;
use std::process::{Command, Output};

fn ipcbench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ipcbench"))
        .args(args)
        .output()
        .expect("run ipcbench")
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs ipcbench with `args` and `--junit FILE` (in a temp directory removed after) and
/// reads the file back.
fn with_junit(args: &[&str]) -> (Output, junit::Report) {
    let dir = hygiene::temp_dir().unwrap();
    let xml = dir.join("out.xml");
    let mut all = args.to_vec();
    all.extend(["--junit", xml.to_str().unwrap()]);
    let out = ipcbench(&all);
    let report = junit::read(&xml);
    hygiene::remove_temp(&dir);
    (out, report)
}

#[test]
fn a_twin_named_alone_is_caught_and_reported_in_junit_and_json() {
    let dir = hygiene::temp_dir().unwrap();
    let (xml, json) = (dir.join("prove.xml"), dir.join("prove.json"));
    let out = ipcbench(&[
        "prove",
        "--twin",
        "ticket-oversell/unlocked",
        "--repeat",
        "2",
        "--seed",
        "5",
        "--junit",
        xml.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    let report = junit::read(&xml);
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    hygiene::remove_temp(&dir);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    let row = all
        .lines()
        .find(|l| l.starts_with("ticket-oversell/unlocked"))
        .unwrap_or_else(|| panic!("no row for the twin: {all}"));
    assert!(
        row.contains("violated") && row.contains("2/2") && row.contains("cases "),
        "{row}"
    );
    assert!(all.contains("PROVEN"), "{all}");
    assert_eq!((report.tests, report.failures), (1, 0), "{report:?}");
    assert_eq!(report.cases[0].name, "ticket-oversell/unlocked");
    assert_eq!(report.cases[0].classname, "prove.scenario");
    assert_eq!(written["proven"], true);
    let attempts = written["twins"][0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(
        (&attempts[0]["seed"], &attempts[1]["seed"]),
        (&5.into(), &6.into())
    );
    assert!(attempts
        .iter()
        .all(|a| a["failure"].is_null() && a["cases"].as_u64() >= Some(1)));
}

/// The proof must fail when a twin is not caught: a safe variant run as if it were a
/// twin (the hidden test hook) holds, and prove exits 1 naming it, with a failing JUnit
/// case that carries the message and a rerun command.
#[test]
fn a_twin_that_is_not_caught_fails_the_proof_by_name() {
    let (out, report) = with_junit(&[
        "prove",
        "--as-twin",
        "ticket-oversell/flock",
        "--cases",
        "3",
        "--seed",
        "1",
    ]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("NOT PROVEN: ticket-oversell/flock: caught 0/1: not caught"),
        "{all}"
    );
    assert_eq!((report.tests, report.failures), (1, 1), "{report:?}");
    let case = &report.cases[0];
    assert!(
        case.failure
            .as_deref()
            .is_some_and(|m| m.starts_with("ticket-oversell/flock: caught 0/1: not caught")),
        "{case:?}"
    );
    assert!(
        case.text.as_deref().is_some_and(
            |t| t.contains("rerun: ipcbench prove --twin ticket-oversell/flock --seed 1")
        ),
        "{case:?}"
    );
}

#[test]
fn bad_input_exits_2_with_a_clear_message() {
    for (args, named) in [
        (&["prove", "--twin", "telepathy"][..], "telepathy"),
        (
            &["prove", "--twin", "ticket-oversell/flock"],
            "ticket-oversell/unlocked",
        ),
        (&["prove", "--repeat", "0"], "--repeat"),
        (&["prove", "--repeat", "many"], "many"),
        (&["prove", "--cases", "0"], "--cases"),
        (&["prove", "--stress-duration", "forever"], "forever"),
        (&["prove", "--junit", "/no/such/dir/p.xml"], "/no/such/dir"),
        (&["prove", "--json", "/no/such/dir/p.json"], "/no/such/dir"),
        (&["check", "--junit", "/no/such/dir/c.xml"], "/no/such/dir"),
    ] {
        let out = ipcbench(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(
            stderr.contains(named),
            "{args:?} should name {named}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn check_writes_one_junit_case_per_variant() {
    let (out, report) = with_junit(&[
        "check",
        "--scenario",
        "ticket-oversell",
        "--cases",
        "3",
        "--seed",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let mut names: Vec<&str> = report.cases.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["fcntl", "flock", "manager", "shm-mutex", "unlocked"]
    );
    assert_eq!(report.failures, 0, "{report:?}");
    assert!(report
        .cases
        .iter()
        .all(|c| c.classname == "check.ticket-oversell"));
}

/// The GitHub Actions example and `.ci/run` call only subcommands and flags the binary
/// has (each flag is in its subcommand's `--help`), and the workflow runs every step of
/// the gate.
#[test]
fn the_ci_scripts_use_only_flags_that_exist() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut seen = Vec::new();
    for file in ["examples/ci/github-actions.yml", ".ci/run"] {
        let text = std::fs::read_to_string(root.join(file))
            .unwrap()
            .replace("\\\n", " ");
        for line in text.lines() {
            let Some((_, call)) = line.split_once("target/release/ipcbench ") else {
                continue;
            };
            let mut words = call.split_whitespace();
            let sub = words.next().unwrap();
            let help = ipcbench(&[sub, "--help"]);
            let help_text = String::from_utf8_lossy(&help.stdout);
            assert_eq!(help.status.code(), Some(0), "{file}: {line}");
            for flag in words.filter(|w| w.starts_with("--")) {
                assert!(
                    help_text.contains(flag),
                    "{file}: `ipcbench {sub}` has no {flag}: {line}"
                );
            }
            seen.push((file, sub.to_string(), call.contains("--junit")));
        }
    }
    for sub in ["check", "prove", "run", "compare"] {
        for file in ["examples/ci/github-actions.yml", ".ci/run"] {
            assert!(
                seen.iter().any(|(f, s, _)| *f == file && s == sub),
                "{file} does not run ipcbench {sub}"
            );
        }
    }
    for sub in ["check", "prove", "compare"] {
        assert!(
            seen.iter().any(|(_, s, junit)| s == sub && *junit),
            "no --junit for {sub}"
        );
    }
}

/// semaphore-capacity's hand-written over-admitting schedule is a named regression case:
/// it runs first on both variants (catching the miscount at once, and holding the
/// bounded semaphore to that very interleaving), and the generated search, which no
/// longer starts from it, still catches the miscount on its own within the default
/// budget, for every seed tried.
#[test]
fn the_semaphore_prefix_is_a_regression_case_and_the_search_needs_it_not() {
    use ipcbench::scenario::check::{search, search_with, Plan, Search};
    use ipcbench::scenario::{find, find_variant};
    let scenario = find("semaphore-capacity").unwrap();
    let miscounted = find_variant(scenario, "miscounted").unwrap();
    let bounded = find_variant(scenario, "bounded").unwrap();
    let options = |seed| Search {
        seed,
        ..Search::default()
    };

    let first = search(scenario, miscounted, options(1));
    assert!(first.matches(), "{}", first.detail());
    assert_eq!(first.regression, Some("over-admitting-prefix"));
    assert_eq!((first.cases, first.first_catch), (1, None));
    assert!(first
        .detail()
        .ends_with("(regression case over-admitting-prefix)"));
    let repro = first.reproduction().unwrap();
    assert!(repro.schedule.starts_with("[0,0,0,0,1,1,0,0]"), "{repro:?}");

    let held = search(
        scenario,
        bounded,
        Search {
            cases: 4,
            ..options(1)
        },
    );
    assert!(held.matches(), "{}", held.detail());
    assert_eq!(
        (held.cases, held.regression),
        (5, None),
        "the regression case, then 4"
    );

    let generated_only = Plan {
        regressions: false,
        shrink: false,
    };
    for seed in 0..10 {
        let found = search_with(scenario, miscounted, options(seed), generated_only);
        assert!(found.matches(), "seed {seed}: {}", found.detail());
        assert_eq!(found.regression, None);
        let at = found.first_catch.expect("caught by a generated case");
        assert_eq!(
            found.cases, at,
            "seed {seed}: no shrinking, nothing after the catch"
        );
        assert!(at <= Search::default().cases, "seed {seed}: case {at}");
    }
}
