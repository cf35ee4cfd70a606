//! Searching a variant's cases with proptest, and what the search found.
//!
//! Both kinds of variant run the same property, "the case holds". For a safe variant a
//! failure is a mismatch; for an unsafe one it is the expected catch. Either way proptest
//! shrinks the failing case to its smallest parameters and shortest schedule, which is
//! the reproduction printed with the exact command that reruns it.
//!
//! A scenario's named regression cases ([`Scenario::regressions`]) run first, as
//! proptest reruns its persisted failures; [`Plan`] can leave them out, to measure what
//! the generated search finds on its own.

use super::{
    find, find_variant, run_case, Case, CaseOutcome, Expectation, Scenario, ScenarioError, Variant,
    Verdict,
};
use crate::results::{BlockedAt, Reproduction, ScenarioOutcome, TimelineStep};
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How hard to search.
#[derive(Clone, Copy, Debug)]
pub struct Search {
    /// Generated cases per variant (shrinking runs more).
    pub cases: u32,
    /// Seeds the case generator, so a search (and a failure it found) can be rerun exactly.
    pub seed: u64,
    /// Bound on shrinking time per variant.
    pub max_shrink_time: Duration,
}

impl Default for Search {
    fn default() -> Search {
        Search {
            cases: 64,
            seed: 0,
            max_shrink_time: Duration::from_secs(20),
        }
    }
}

/// What a search runs besides its generated cases.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Run the scenario's regression cases ([`Scenario::regressions`]) first.
    pub regressions: bool,
    /// Shrink a failing case to its smallest form; off, the first failing case is the
    /// reproduction (what `prove --repeat` wants: the catch, not its minimal form).
    pub shrink: bool,
}

impl Default for Plan {
    fn default() -> Plan {
        Plan {
            regressions: true,
            shrink: true,
        }
    }
}

/// What the search of one variant found.
#[derive(Clone, Debug)]
pub struct VariantResult {
    /// The scenario's catalogue name.
    pub scenario: &'static str,
    /// The variant searched, with what it must give.
    pub variant: Variant,
    /// The verdict of the failing (shrunk) case, or Holds when every case held.
    pub outcome: Result<CaseOutcome, String>,
    /// The shrunk failing case, if any.
    pub failing: Option<Case>,
    /// Cases run, shrinking included.
    pub cases: u32,
    /// Wall time of the search, shrinking included.
    pub elapsed: Duration,
    /// The seed the search ran with (rerun with `--seed`).
    pub seed: u64,
    /// Which generated case (counting from 1, shrinking excluded) failed first: the
    /// search's own cases to the catch. None when no generated case failed.
    pub first_catch: Option<u32>,
    /// The regression case that failed, when one did (no case was generated then).
    pub regression: Option<&'static str>,
}

impl VariantResult {
    /// Whether the variant gave what it must: Holds for a safe variant, one of its expected
    /// kinds for an unsafe one. A search that errored never matches.
    pub fn matches(&self) -> bool {
        match &self.outcome {
            Ok(o) => o.verdict.matches(&self.variant),
            Err(_) => false,
        }
    }

    /// The verdict's label ("holds", "violated", …), or "error" when the search itself failed.
    pub fn verdict_label(&self) -> &'static str {
        match &self.outcome {
            Ok(o) => o.verdict.label(),
            Err(_) => "error",
        }
    }

    /// The verdict in full; after a mismatch, why it is one first ("caught for the wrong
    /// reason: expected violated, got crashed by signal 11: crashed: ...").
    pub fn detail(&self) -> String {
        let by = self
            .regression
            .map(|name| format!(" (regression case {name})"))
            .unwrap_or_default();
        let text = match &self.outcome {
            Ok(o) => match self.variant.mismatch(&o.verdict) {
                Some(why) if self.variant.expected == Expectation::Caught && !o.verdict.holds() => {
                    format!("{why}: {}", o.verdict)
                }
                _ => o.verdict.to_string(),
            },
            Err(e) => format!("could not run: {e}"),
        };
        format!("{text}{by}")
    }

    pub(crate) fn cases_per_second(&self) -> f64 {
        self.cases as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Everything needed to rerun the failing case.
    pub fn reproduction(&self) -> Option<Reproduction> {
        let case = self.failing.as_ref()?;
        let (timeline, blocked) = match &self.outcome {
            Ok(o) => (
                o.history
                    .iter()
                    .map(|e| TimelineStep {
                        worker: e.worker as u32,
                        operation: e.operation.clone(),
                        value: e.value,
                        at_ns: e.at_ns,
                    })
                    .collect(),
                match &o.verdict {
                    Verdict::Hung { blocked } => blocked
                        .iter()
                        .map(|b| BlockedAt {
                            name: b.name.clone(),
                            state: b.state.to_string(),
                            syscall: b.syscall.clone(),
                            wchan: b.wchan.clone(),
                        })
                        .collect(),
                    _ => Vec::new(),
                },
            ),
            Err(_) => (Vec::new(), Vec::new()),
        };
        Some(Reproduction {
            seed: self.seed,
            parameters: case.params.to_string(),
            schedule: self.schedule_text(case),
            command: replay_command(self.scenario, self.variant.name, case),
            timeline,
            blocked,
        })
    }

    /// The schedule and the order of steps it gave (worker per step, from the history).
    fn schedule_text(&self, case: &Case) -> String {
        let steps: Vec<String> = match &self.outcome {
            Ok(o) => o.history.iter().map(|e| e.worker.to_string()).collect(),
            Err(_) => Vec::new(),
        };
        if steps.is_empty() {
            return case.schedule.to_string();
        }
        // A forced deadlock can cycle for hundreds of steps: the start is what matters.
        let more = steps.len().saturating_sub(MAX_STEPS_SHOWN);
        let shown = steps[..steps.len() - more].join(",");
        if more > 0 {
            format!(
                "{} -> steps by worker {shown},... ({more} more)",
                case.schedule
            )
        } else {
            format!("{} -> steps by worker {shown}", case.schedule)
        }
    }

    /// The entry for the results JSON.
    pub fn to_model(&self) -> ScenarioOutcome {
        ScenarioOutcome {
            scenario: self.scenario.to_string(),
            variant: self.variant.name.to_string(),
            expected: self.variant.expected,
            expected_kind: self.variant.expected_kind(),
            verdict: self.verdict_label().to_string(),
            detail: self.detail(),
            matches: self.matches(),
            cases: self.cases,
            seconds: self.elapsed.as_secs_f64(),
            reproduction: self.reproduction(),
        }
    }
}

/// Most steps a reproduction's schedule text lists.
const MAX_STEPS_SHOWN: usize = 64;

/// The command that reruns exactly `case` (the JSON is quoted for a POSIX shell).
pub(crate) fn replay_command(scenario: &str, variant: &str, case: &Case) -> String {
    let json = serde_json::to_string(case).expect("a case serialises");
    format!(
        "ipcbench check --scenario {scenario} --variant {variant} --replay '{}'",
        json.replace('\'', r"'\''")
    )
}

fn case_key(case: &Case) -> String {
    serde_json::to_string(case).unwrap_or_default()
}

fn rng_for(seed: u64) -> TestRng {
    let mut bytes = [0u8; 32];
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(
            &(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_le_bytes(),
        );
    }
    TestRng::from_seed(RngAlgorithm::ChaCha, &bytes)
}

/// Searches `variant` of `scenario`: runs its regression cases, then generated cases
/// until one fails (then shrinks it) or `search.cases` have held.
pub fn search(scenario: &'static dyn Scenario, variant: Variant, search: Search) -> VariantResult {
    search_with(scenario, variant, search, Plan::default())
}

/// [`search`], with what it runs besides the generated cases given by `plan`.
pub fn search_with(
    scenario: &'static dyn Scenario,
    variant: Variant,
    search: Search,
    plan: Plan,
) -> VariantResult {
    let started = Instant::now();
    let mut regression_cases = 0;
    let regressions = if plan.regressions {
        scenario.regressions()
    } else {
        Vec::new()
    };
    for regression in regressions {
        regression_cases += 1;
        let outcome = run_case_reported(scenario, variant.name, &regression.case);
        if !matches!(&outcome, Ok(o) if o.verdict.holds()) {
            return VariantResult {
                scenario: scenario.name(),
                variant,
                outcome,
                failing: Some(regression.case),
                cases: regression_cases,
                elapsed: started.elapsed(),
                seed: search.seed,
                first_catch: None,
                regression: Some(regression.name),
            };
        }
    }
    let config = Config {
        cases: search.cases.max(1),
        failure_persistence: None,
        max_shrink_time: search.max_shrink_time.as_millis().min(u32::MAX as u128) as u32,
        max_shrink_iters: if plan.shrink { 256 } else { 0 },
        max_global_rejects: 16,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(config, rng_for(search.seed));
    let failed: RefCell<HashMap<String, Result<CaseOutcome, String>>> =
        RefCell::new(HashMap::new());
    let count = std::cell::Cell::new(0u32);
    let first_catch = std::cell::Cell::new(None);
    let result = runner.run(&scenario.cases(variant.name), |case| {
        count.set(count.get() + 1);
        let outcome = run_case_reported(scenario, variant.name, &case);
        let verdict = match &outcome {
            Ok(o) if o.verdict.holds() => None,
            Ok(o) => Some(o.verdict.to_string()),
            Err(e) => Some(format!("could not run: {e}")),
        };
        match verdict {
            None => Ok(()),
            Some(text) => {
                // Only failures are kept: a racy case that failed once and held when
                // shrinking ran it again is still the failure proptest reports.
                failed.borrow_mut().insert(case_key(&case), outcome);
                if first_catch.get().is_none() {
                    first_catch.set(Some(count.get()));
                }
                Err(TestCaseError::fail(text))
            }
        }
    });
    let (outcome, failing) = match result {
        Ok(()) => (
            Ok(CaseOutcome::new(super::Verdict::Holds, Vec::new())),
            None,
        ),
        Err(TestError::Fail(reason, case)) => {
            let outcome = failed
                .borrow_mut()
                .remove(&case_key(&case))
                .unwrap_or_else(|| Err(reason.to_string()));
            (outcome, Some(case))
        }
        Err(TestError::Abort(reason)) => (Err(format!("search aborted: {reason}")), None),
    };
    VariantResult {
        scenario: scenario.name(),
        variant,
        outcome,
        failing,
        cases: regression_cases + count.get(),
        elapsed: started.elapsed(),
        seed: search.seed,
        first_catch: first_catch.get(),
        regression: None,
    }
}

/// Runs one case; an error that kept it from running becomes its whole chain as text,
/// which is what the results and the report keep of it.
fn run_case_reported(
    scenario: &dyn Scenario,
    variant: &str,
    case: &Case,
) -> Result<CaseOutcome, String> {
    run_case(scenario, variant, case).map_err(|e| super::error::chain(&e))
}

/// Reruns one case given as JSON (from a reproduction's command).
pub(crate) fn replay(
    scenario: &str,
    variant: &str,
    case_json: &str,
) -> Result<VariantResult, ScenarioError> {
    let scenario = find(scenario)?;
    let variant = find_variant(scenario, variant)?;
    let case: Case = serde_json::from_str(case_json).map_err(|source| ScenarioError::Params {
        params: format!("--replay {case_json}"),
        source,
    })?;
    let started = Instant::now();
    let outcome = run_case_reported(scenario, variant.name, &case);
    let failing = match &outcome {
        Ok(o) if o.verdict.holds() => None,
        _ => Some(case),
    };
    Ok(VariantResult {
        scenario: scenario.name(),
        variant,
        outcome,
        failing,
        cases: 1,
        elapsed: started.elapsed(),
        seed: 0,
        first_catch: None,
        regression: None,
    })
}

/// Every runnable (scenario, variant) pair, filtered by name; unknown names are errors
/// listing the valid ones.
pub fn select(
    scenario: Option<&str>,
    variant: Option<&str>,
) -> Result<Vec<(&'static dyn Scenario, Variant)>, ScenarioError> {
    let scenarios: Vec<&'static dyn Scenario> = match scenario {
        Some(name) => vec![find(name)?],
        None => super::catalogue().to_vec(),
    };
    select_variants(scenarios, scenario.is_some(), variant)
}

/// [`select`] among a peer's scenarios (`cpython`: Python's own multiprocessing); a
/// scenario is named as in the catalogue (`ticket-oversell`) or with the peer's prefix.
pub fn select_peer(
    peer: &str,
    scenario: Option<&str>,
    variant: Option<&str>,
) -> Result<Vec<(&'static dyn Scenario, Variant)>, ScenarioError> {
    if peer != super::cpython::PEER {
        return Err(format!("no peer {peer:?}; the peers are: {}", super::cpython::PEER).into());
    }
    let scenarios: Vec<&'static dyn Scenario> = match scenario {
        Some(name) => vec![super::cpython::find(name).ok_or_else(|| {
            let names: Vec<&str> = super::cpython::catalogue()
                .iter()
                .map(|s| s.name())
                .collect();
            ScenarioError::Failed(format!(
                "the {peer} peer has no scenario {name:?}; its scenarios: {}",
                names.join(", ")
            ))
        })?],
        None => super::cpython::catalogue().to_vec(),
    };
    select_variants(scenarios, scenario.is_some(), variant)
}

fn select_variants(
    scenarios: Vec<&'static dyn Scenario>,
    named: bool,
    variant: Option<&str>,
) -> Result<Vec<(&'static dyn Scenario, Variant)>, ScenarioError> {
    let scenario = named.then_some(());
    let mut selected = Vec::new();
    for s in scenarios {
        match variant {
            Some(v) => {
                if scenario.is_none() {
                    return Err("--variant needs --scenario".into());
                }
                selected.push((s, find_variant(s, v)?));
            }
            None => selected.extend(s.variants().iter().map(|v| (s, *v))),
        }
    }
    Ok(selected)
}

/// Convenience for tests: the verdict a variant must give.
pub fn expected(scenario: &str, variant: &str) -> Result<Expectation, ScenarioError> {
    Ok(find_variant(find(scenario)?, variant)?.expected)
}
