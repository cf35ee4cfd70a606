//! Scenario verdicts, and for each failing case what reruns it: the unexpected ones
//! first, each with its timeline when one was recorded.

use super::format::{esc, num};
use super::{open_section, timeline, Page, Section};
use crate::results::ScenarioOutcome;
use std::fmt::Write as _;

fn scenario_row_class(s: &ScenarioOutcome) -> &'static str {
    if s.matches {
        ""
    } else {
        "bad"
    }
}

pub(super) fn section(page: &Page) -> String {
    let r = page.results;
    let mut out = open_section(
        page,
        Section::Scenarios,
        r.scenarios.is_empty(),
        "Each race scenario in its variants. <i>Unsafe</i> variants are expected to be \
         <b>caught</b> (violated, hung or crashed); <i>safe</i> variants are expected to \
         <b>hold</b>. The last column says whether the verdict is what was expected — in \
         words, not only by colour.",
    );
    if r.scenarios.is_empty() {
        out.push_str("</section>");
        return out;
    }
    let unexpected: Vec<&ScenarioOutcome> = r.scenarios.iter().filter(|s| !s.matches).collect();
    if unexpected.is_empty() {
        let _ = write!(
            out,
            "<p id=\"scenario-summary\">All {} verdicts are as expected.</p>",
            r.scenarios.len()
        );
    } else {
        let _ = write!(
            out,
            "<p id=\"scenario-summary\" class=\"note\"><b>✘ {} of {} verdicts are NOT as expected:</b> {}</p>",
            unexpected.len(),
            r.scenarios.len(),
            unexpected
                .iter()
                .map(|s| format!("<a href=\"#repro-{0}\">{0}</a>", esc(&scenario_key(s))))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut table = String::from(
        "<table id=\"table-scenarios\"><thead><tr><th>scenario</th><th>variant</th>\
         <th>expected</th><th>verdict</th><th>as expected?</th><th>cases</th><th>seconds</th>\
         <th>detail</th></tr></thead><tbody>",
    );
    for s in &r.scenarios {
        let expected = match s.expected {
            crate::results::Expectation::Holds => "holds",
            crate::results::Expectation::Caught => "caught",
        };
        let _ = write!(
            table,
            "<tr data-key=\"{key}\" class=\"{class}\"><td data-field=\"scenario\">{}</td>\
             <td data-field=\"variant\">{}</td><td data-field=\"expected\">{expected}</td>\
             <td data-field=\"verdict\">{}</td><td data-field=\"matches\">{}</td>\
             <td data-field=\"cases\" class=\"n\">{}</td><td data-field=\"seconds\" class=\"n\">{}</td>\
             <td data-field=\"detail\">{}</td></tr>",
            esc(&s.scenario),
            esc(&s.variant),
            esc(&s.verdict),
            if s.matches {
                "✔ yes"
            } else {
                "✘ NO — unexpected"
            },
            s.cases,
            num(s.seconds),
            esc(&s.detail),
            key = esc(&scenario_key(s)),
            class = scenario_row_class(s),
        );
    }
    table.push_str("</tbody></table>");
    out.push_str(&table);
    // Reproductions: the unexpected verdicts first, then the caught unsafe variants.
    let mut with_repro: Vec<&ScenarioOutcome> = r
        .scenarios
        .iter()
        .filter(|s| s.reproduction.is_some())
        .collect();
    with_repro.sort_by_key(|s| s.matches);
    if !with_repro.is_empty() {
        out.push_str(
            "<h3>Reproductions</h3><p>Every failing case with what reruns it: seed, shrunk \
             parameters, forced schedule and the exact command.</p>",
        );
    }
    for s in with_repro {
        let Some(repro) = &s.reproduction else {
            continue;
        };
        let _ = write!(
            out,
            "<div class=\"repro\" id=\"repro-{key}\"><b>{key}</b> — {} ({})<br>seed <code>{}</code> \
             · parameters <code>{}</code>{}<pre class=\"command\"><code>{}</code></pre>{}</div>",
            esc(&s.verdict),
            if s.matches {
                "expected: the unsafe variant was caught"
            } else {
                "✘ NOT as expected"
            },
            repro.seed,
            esc(&repro.parameters),
            if repro.schedule.is_empty() {
                " · free-running (no forced schedule)".to_string()
            } else {
                format!(" · schedule <code>{}</code>", esc(&repro.schedule))
            },
            esc(&repro.command),
            timeline::svg(&scenario_key(s), repro, &s.verdict),
            key = esc(&scenario_key(s)),
        );
    }
    out.push_str("</section>");
    out
}

fn scenario_key(s: &ScenarioOutcome) -> String {
    format!("{}/{}", s.scenario, s.variant)
}
