//! JUnit XML, the format GitLab, Jenkins and GitHub test reporters all read: one test
//! suite per command (`check`, `compare`, `prove`), one test case per scenario variant,
//! gated metric, stress target or broken twin, and each failure carrying its message and
//! the command that reproduces it.
//!
//! Written by hand (no XML crate): the schema used is small, and every text goes through
//! [`escape`], which also replaces the control characters XML 1.0 does not allow.

use std::fmt::Write as _;
use std::path::Path;

use crate::scenario::check::VariantResult;

/// How one test case ended.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Outcome {
    Passed,
    /// `message` is the one-line reason (the reporter's headline); `detail` the rest,
    /// with the reproduction command.
    Failed {
        message: String,
        detail: String,
    },
    /// Not run or not gated, and why.
    Skipped {
        message: String,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct TestCase {
    /// The group a reporter files the case under ("check.ticket-oversell").
    pub(crate) classname: String,
    pub(crate) name: String,
    pub(crate) seconds: f64,
    pub(crate) outcome: Outcome,
}

impl TestCase {
    pub(crate) fn new(
        classname: impl Into<String>,
        name: impl Into<String>,
        seconds: f64,
    ) -> TestCase {
        TestCase {
            classname: classname.into(),
            name: name.into(),
            seconds,
            outcome: Outcome::Passed,
        }
    }

    pub(crate) fn failed(
        mut self,
        message: impl Into<String>,
        detail: impl Into<String>,
    ) -> TestCase {
        self.outcome = Outcome::Failed {
            message: message.into(),
            detail: detail.into(),
        };
        self
    }

    pub(crate) fn skipped(mut self, message: impl Into<String>) -> TestCase {
        self.outcome = Outcome::Skipped {
            message: message.into(),
        };
        self
    }
}

/// One command's test cases.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Suite {
    /// "ipcbench check", "ipcbench compare", "ipcbench prove".
    pub(crate) name: String,
    pub(crate) cases: Vec<TestCase>,
}

impl Suite {
    pub(crate) fn new(name: impl Into<String>) -> Suite {
        Suite {
            name: name.into(),
            cases: Vec::new(),
        }
    }

    fn count(&self, what: fn(&Outcome) -> bool) -> usize {
        self.cases.iter().filter(|c| what(&c.outcome)).count()
    }

    pub(crate) fn failures(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Failed { .. }))
    }

    pub(crate) fn skipped(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Skipped { .. }))
    }

    /// The whole document: `<testsuites>` holding this one `<testsuite>`.
    pub(crate) fn to_xml(&self) -> String {
        let time: f64 = self.cases.iter().map(|c| c.seconds.max(0.0)).sum();
        let (tests, failures, skipped) = (self.cases.len(), self.failures(), self.skipped());
        let name = escape(&self.name);
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            out,
            "<testsuites name=\"{name}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{time:.3}\">"
        );
        let _ = writeln!(
            out,
            "  <testsuite name=\"{name}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{time:.3}\">"
        );
        for case in &self.cases {
            let _ = write!(
                out,
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
                escape(&case.classname),
                escape(&case.name),
                case.seconds.max(0.0)
            );
            match &case.outcome {
                Outcome::Passed => out.push_str("/>\n"),
                Outcome::Failed { message, detail } => {
                    let _ = writeln!(
                        out,
                        ">\n      <failure message=\"{}\" type=\"failure\">{}</failure>\n    </testcase>",
                        escape(message),
                        escape(detail)
                    );
                }
                Outcome::Skipped { message } => {
                    let _ = writeln!(
                        out,
                        ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                        escape(message)
                    );
                }
            }
        }
        out.push_str("  </testsuite>\n</testsuites>\n");
        out
    }

    pub(crate) fn write(&self, path: &Path) -> Result<(), String> {
        std::fs::write(path, self.to_xml())
            .map_err(|e| format!("cannot write JUnit XML to {}: {e}", path.display()))
    }
}

/// Text made safe for an XML attribute or element: the markup characters as entities
/// (as HTML's), line breaks and tabs as character references (so attribute values keep
/// them), and every character XML 1.0 does not allow (most C0 controls, U+FFFE, U+FFFF)
/// as a visible `\x{..}` escape, since no entity can carry them.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in super::html::esc(text).chars() {
        match c {
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {
                let _ = write!(out, "\\x{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// A scenario variant's search as a JUnit case (here, so `scenario` needs nothing of the
/// report).
impl VariantResult {
    /// The JUnit test case: failed on a mismatch, with the verdict and the reproduction.
    pub(crate) fn to_junit(&self) -> TestCase {
        let case = TestCase::new(
            format!("check.{}", self.scenario),
            self.variant.name,
            self.elapsed.as_secs_f64(),
        );
        if self.matches() {
            return case;
        }
        let message = match &self.outcome {
            Ok(o) => self
                .variant
                .mismatch(&o.verdict)
                .unwrap_or_else(|| o.verdict.summary()),
            Err(e) => format!("could not run: {e}"),
        };
        let mut detail = format!(
            "{}/{}: expected {}; {}",
            self.scenario,
            self.variant.name,
            self.variant.expected_text(),
            self.detail()
        );
        match self.reproduction() {
            Some(r) => detail.push_str(&format!(
                "\nseed: {}\nparameters: {}\nschedule: {}\nrerun: {}",
                r.seed, r.parameters, r.schedule, r.command
            )),
            None => detail.push_str(&format!(
                "\nrerun: ipcbench check --scenario {} --variant {} --seed {}",
                self.scenario, self.variant.name, self.seed
            )),
        }
        case.failed(message, detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_forbidden_characters_are_escaped() {
        assert_eq!(
            escape(r#"a<b>&"c"'d'"#),
            "a&lt;b&gt;&amp;&quot;c&quot;&#39;d&#39;"
        );
        assert_eq!(escape("x\u{0}y\u{1b}z"), "x\\x{0}y\\x{1b}z");
        assert_eq!(escape("line\nnext"), "line&#10;next");
        assert_eq!(escape("ünïcode ✓"), "ünïcode ✓");
    }

    #[test]
    fn counts_and_outcomes_are_written() {
        let mut suite = Suite::new("ipcbench test");
        suite.cases.push(TestCase::new("c", "ok", 1.5));
        suite
            .cases
            .push(TestCase::new("c", "bad", 0.25).failed("it <broke>", "rerun: x 'y'"));
        suite
            .cases
            .push(TestCase::new("c", "later", 0.0).skipped("not run"));
        let xml = suite.to_xml();
        assert!(xml.contains(
            r#"<testsuite name="ipcbench test" tests="3" failures="1" errors="0" skipped="1" time="1.750">"#
        ), "{xml}");
        assert!(xml.contains(r#"<testcase classname="c" name="ok" time="1.500"/>"#));
        assert!(xml.contains(
            r#"<failure message="it &lt;broke&gt;" type="failure">rerun: x &#39;y&#39;</failure>"#
        ), "{xml}");
        assert!(xml.contains(r#"<skipped message="not run"/>"#));
    }
}
