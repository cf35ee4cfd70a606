//! Reads a JUnit XML file with Python's standard XML parser (a strict, independent
//! reader: a malformed document fails the test) and checks that the counts the suite
//! declares are those of its test cases.

use std::path::Path;
use std::process::Command;

/// One `<testcase>`.
#[derive(Debug, serde::Deserialize)]
pub struct Case {
    pub classname: String,
    pub name: String,
    /// The `<failure message=...>`, when failed.
    pub failure: Option<String>,
    /// The failure's text (its detail), when failed.
    pub text: Option<String>,
    pub skipped: bool,
}

#[derive(Debug, serde::Deserialize)]
pub struct Report {
    pub tests: usize,
    pub failures: usize,
    pub skipped: usize,
    pub cases: Vec<Case>,
}

const READER: &str = r#"
import json, sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == "testsuites", root.tag
out = {"tests": 0, "failures": 0, "skipped": 0, "cases": []}
for suite in root.findall("testsuite"):
    for key in ("tests", "failures", "skipped"):
        out[key] += int(suite.get(key))
    for case in suite.findall("testcase"):
        failure = case.find("failure")
        out["cases"].append({
            "classname": case.get("classname"),
            "name": case.get("name"),
            "failure": None if failure is None else failure.get("message"),
            "text": None if failure is None else failure.text,
            "skipped": case.find("skipped") is not None,
        })
print(json.dumps(out))
"#;

pub fn read(path: &Path) -> Report {
    let out = Command::new("python3")
        .args(["-c", READER])
        .arg(path)
        .output()
        .expect("python3 runs (CI machines have it)");
    assert!(
        out.status.success(),
        "{} is not well-formed JUnit XML: {}\n{}",
        path.display(),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(path).unwrap_or_default()
    );
    let report: Report = serde_json::from_slice(&out.stdout).expect("the reader's JSON");
    assert_eq!(report.tests, report.cases.len(), "{report:?}");
    assert_eq!(
        report.failures,
        report.cases.iter().filter(|c| c.failure.is_some()).count(),
        "{report:?}"
    );
    assert_eq!(
        report.skipped,
        report.cases.iter().filter(|c| c.skipped).count(),
        "{report:?}"
    );
    report
}
