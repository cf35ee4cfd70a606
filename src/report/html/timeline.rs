//! A race drawn as a timeline: one lane per process, each step of the failing case's
//! history as a box in the order it ran (operation and the value read or written), a line
//! threading the steps in order, the step after which the verdict was reached marked, and
//! for a hung case, who was still blocked at the deadline and on what — as Jepsen's
//! `timeline.html` shows a history.

use super::format::esc;
use crate::results::{BlockedAt, Reproduction, TimelineStep};
use std::fmt::Write as _;

/// Most steps drawn; a longer history shows its last steps (where the race ends).
const MAX_DRAWN: usize = 80;
const LABEL_WIDTH: usize = 170;
const COLUMN: usize = 118;
const BOX_WIDTH: usize = 108;
const LANE: usize = 58;
const BOX_HEIGHT: usize = 42;
const TOP: usize = 30;

/// A lane: a worker of the history, or a blocked process the history does not name.
enum Lane<'a> {
    Worker(u32),
    Blocked(&'a BlockedAt),
}

/// The blocked process that is `worker`, when its name says so ("worker 1", "buyer 1 ...").
fn blocked_worker(blocked: &BlockedAt, workers: &[u32]) -> Option<u32> {
    let digits: String = blocked
        .name
        .split(|c: char| !c.is_ascii_digit())
        .find(|part| !part.is_empty())?
        .to_string();
    let n: u32 = digits.parse().ok()?;
    workers.contains(&n).then_some(n)
}

fn text(out: &mut String, x: usize, y: usize, class: &str, content: &str) {
    let _ = write!(
        out,
        "<text x=\"{x}\" y=\"{y}\" class=\"{class}\">{}</text>",
        esc(content)
    );
}

fn shorten(label: &str, chars: usize) -> String {
    if label.chars().count() <= chars {
        label.to_string()
    } else {
        let mut cut: String = label.chars().take(chars - 1).collect();
        cut.push('…');
        cut
    }
}

/// The timeline of `repro` as an inline SVG, or nothing when it recorded no history.
pub(crate) fn svg(id: &str, repro: &Reproduction, verdict: &str) -> String {
    if repro.timeline.is_empty() && repro.blocked.is_empty() {
        return String::new();
    }
    let skipped = repro.timeline.len().saturating_sub(MAX_DRAWN);
    let steps: &[TimelineStep] = &repro.timeline[skipped..];
    let mut workers: Vec<u32> = steps.iter().map(|s| s.worker).collect();
    workers.sort_unstable();
    workers.dedup();
    let mut lanes: Vec<Lane> = workers.iter().map(|w| Lane::Worker(*w)).collect();
    // A blocked process gets a box at the end of its own lane, or a lane of its own.
    let mut blocked_in_lane: Vec<(usize, &BlockedAt)> = Vec::new();
    for b in &repro.blocked {
        match blocked_worker(b, &workers) {
            Some(w) => blocked_in_lane.push((workers.iter().position(|x| *x == w).unwrap(), b)),
            None => {
                lanes.push(Lane::Blocked(b));
                blocked_in_lane.push((lanes.len() - 1, b));
            }
        }
    }
    let columns = steps.len() + usize::from(!repro.blocked.is_empty());
    // Wide enough for the legend line under the lanes, however few the steps.
    let width = (LABEL_WIDTH + columns.max(1) * COLUMN + 10).max(560);
    let height = TOP + lanes.len() * LANE + 34;
    let lane_of = |worker: u32| workers.iter().position(|w| *w == worker).unwrap_or(0);
    let box_x = |column: usize| LABEL_WIDTH + column * COLUMN;
    let box_y = |lane: usize| TOP + lane * LANE + (LANE - BOX_HEIGHT) / 2;

    let mut out = format!(
        "<figure class=\"timeline\" id=\"timeline-{}\"><svg xmlns=\"http://www.w3.org/2000/svg\" \
         width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\">\
         <title>{} timeline: {} steps, verdict {}</title>",
        esc(id),
        esc(id),
        repro.timeline.len(),
        esc(verdict)
    );
    out.push_str(
        "<style>.lane{font:13px sans-serif;fill:#333}.op{font:12px sans-serif;fill:#111}\
         .val{font:11px monospace;fill:#444}.head{font:12px sans-serif;fill:#666}\
         rect.step{fill:#e8f0fb;stroke:#0072b2}rect.last{fill:#fde8e0;stroke:#d55e00;stroke-width:2}\
         rect.blocked{fill:#fff6d6;stroke:#d55e00;stroke-dasharray:4 3;stroke-width:2}\
         .order{fill:none;stroke:#999;stroke-width:1}</style>",
    );
    if skipped > 0 {
        text(
            &mut out,
            LABEL_WIDTH,
            16,
            "head",
            &format!("the first {skipped} steps are not drawn; the last {MAX_DRAWN} are"),
        );
    } else {
        text(
            &mut out,
            LABEL_WIDTH,
            16,
            "head",
            "steps in the order they ran →",
        );
    }
    for (i, lane) in lanes.iter().enumerate() {
        let y = TOP + i * LANE;
        let _ = write!(
            out,
            "<line x1=\"0\" x2=\"{width}\" y1=\"{y}\" y2=\"{y}\" stroke=\"#ddd\"/>"
        );
        let label = match lane {
            Lane::Worker(w) => format!("worker {w}"),
            Lane::Blocked(b) => shorten(&b.name, 22),
        };
        text(&mut out, 6, y + LANE / 2 + 4, "lane", &label);
    }
    // The order of steps, threaded through the boxes' centres.
    let points: Vec<String> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            format!(
                "{},{}",
                box_x(i) + BOX_WIDTH / 2,
                box_y(lane_of(s.worker)) + BOX_HEIGHT / 2
            )
        })
        .collect();
    if points.len() > 1 {
        let _ = write!(
            out,
            "<polyline class=\"order\" points=\"{}\"/>",
            points.join(" ")
        );
    }
    for (i, step) in steps.iter().enumerate() {
        let (x, y) = (box_x(i), box_y(lane_of(step.worker)));
        let last = i + 1 == steps.len() && repro.blocked.is_empty();
        let _ = write!(
            out,
            "<rect class=\"{}\" x=\"{x}\" y=\"{y}\" width=\"{BOX_WIDTH}\" height=\"{BOX_HEIGHT}\" \
             rx=\"4\"><title>step {}: worker {} {} = {}{}</title></rect>",
            if last { "step last" } else { "step" },
            skipped + i + 1,
            step.worker,
            esc(&step.operation),
            step.value,
            if last {
                format!(" — the last step before the verdict: {}", esc(verdict))
            } else {
                String::new()
            }
        );
        text(&mut out, x + 5, y + 17, "op", &shorten(&step.operation, 16));
        text(&mut out, x + 5, y + 34, "val", &format!("= {}", step.value));
    }
    for (lane, b) in blocked_in_lane {
        let (x, y) = (box_x(steps.len()), box_y(lane));
        let _ = write!(
            out,
            "<rect class=\"blocked\" x=\"{x}\" y=\"{y}\" width=\"{BOX_WIDTH}\" \
             height=\"{BOX_HEIGHT}\" rx=\"4\"><title>{} blocked at the deadline: state {}, in \
             {}, kernel wait {}</title></rect>",
            esc(&b.name),
            esc(&b.state),
            esc(&b.syscall),
            esc(&b.wchan)
        );
        text(
            &mut out,
            x + 5,
            y + 17,
            "op",
            &format!("blocked: {}", shorten(&b.syscall, 8)),
        );
        text(&mut out, x + 5, y + 34, "val", &shorten(&b.wchan, 15));
    }
    let footer_y = height - 10;
    text(
        &mut out,
        6,
        footer_y,
        "head",
        &if repro.blocked.is_empty() {
            format!("red box: the last step before the verdict ({verdict})")
        } else {
            "dashed boxes: still blocked at the deadline (system call · kernel wait)".to_string()
        },
    );
    out.push_str("</svg></figure>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(worker: u32, operation: &str, value: i64) -> TimelineStep {
        TimelineStep {
            worker,
            operation: operation.into(),
            value,
            at_ns: 0,
        }
    }

    fn repro(timeline: Vec<TimelineStep>, blocked: Vec<BlockedAt>) -> Reproduction {
        Reproduction {
            seed: 1,
            parameters: String::new(),
            schedule: String::new(),
            command: String::new(),
            timeline,
            blocked,
        }
    }

    #[test]
    fn every_step_is_a_box_in_its_workers_lane_and_the_last_is_marked() {
        let r = repro(
            vec![
                step(0, "read-stock", 1),
                step(1, "read-stock", 1),
                step(0, "write-stock", 0),
                step(1, "write-stock", 0),
            ],
            Vec::new(),
        );
        let svg = svg("ticket-oversell/unlocked", &r, "violated");
        assert_eq!(svg.matches("<rect class=\"step").count(), 4);
        assert_eq!(svg.matches("class=\"step last\"").count(), 1);
        assert!(svg.contains(">worker 0<") && svg.contains(">worker 1<"));
        assert!(svg.contains("step 3: worker 0 write-stock = 0"));
        assert!(svg.contains("<polyline"));
    }

    #[test]
    fn a_hung_case_shows_who_waits_on_what() {
        let r = repro(
            vec![step(0, "put", 1)],
            vec![
                BlockedAt {
                    name: "worker 0".into(),
                    state: "S".into(),
                    syscall: "read".into(),
                    wchan: "pipe_read".into(),
                },
                BlockedAt {
                    name: "case leader".into(),
                    state: "S".into(),
                    syscall: "wait4".into(),
                    wchan: "do_wait".into(),
                },
            ],
        );
        let svg = svg("queue-end-signal/no-sentinel", &r, "hung");
        assert_eq!(svg.matches("<rect class=\"blocked\"").count(), 2);
        // Worker 0 waits in its own lane; the leader gets a lane of its own.
        assert!(svg.contains(">case leader<"));
        assert!(svg
            .contains("worker 0 blocked at the deadline: state S, in read, kernel wait pipe_read"));
        assert_eq!(svg.matches("class=\"step last\"").count(), 0);
    }

    #[test]
    fn a_long_history_draws_its_end() {
        let r = repro(
            (0..200).map(|i| step(i % 2, "op", i as i64)).collect(),
            Vec::new(),
        );
        let drawn = svg("x/y", &r, "violated");
        assert_eq!(drawn.matches("<rect class=\"step").count(), MAX_DRAWN);
        assert!(drawn.contains("the first 120 steps are not drawn"));
        assert!(drawn.contains("step 200:"));
        assert!(svg("x/z", &repro(Vec::new(), Vec::new()), "holds").is_empty());
    }
}
