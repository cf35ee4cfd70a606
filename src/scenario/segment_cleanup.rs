//! `segment-cleanup`: the harness judging a crate nobody here wrote. The design named the
//! `shared_memory` crate (0.12) for shared segments; trying it found three traps
//! (docs/dependencies.md), which are why `ipc::shm` has its own segments. Each trap is a
//! variant, run on both flavors of the segment family: caught on the crate, holding on
//! ipcbench's own segments.
//!
//! | trap | the crate | ipcbench's `Segment` |
//! |---|---|---|
//! | `creator-killed`: the creating process is SIGKILLed | its /dev/shm name (and flink file) stay | unlinked once mapped: nothing to leave |
//! | `fork-drop`: a forked child drops its inherited copy | the child unlinks the parent's name | only the creating pid unlinks |
//! | `leftover-flink`: create again after a SIGKILLed creator | fails: the old flink file is in the way | (no flink file) |
//!
//! Registered with `register_scenario!` from this one file, as a user's scenario would be.

use super::ScenarioError;
use super::{Case, CaseContext, CaseOutcome, Scenario, Variant, Verdict};
use crate::process::{self, hygiene, Options, StartMethod};
use crate::register_entry;
use crate::schedule::Schedule;
use crate::sys::shm::Segment;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub(crate) struct SegmentCleanup;

static SEGMENT_CLEANUP: SegmentCleanup = SegmentCleanup;
crate::register_scenario!(SEGMENT_CLEANUP);

const VARIANTS: &[Variant] = &[
    Variant::caught_violated(
        "shared-memory/creator-killed",
        "shared_memory 0.12: a SIGKILLed creator leaves its /dev/shm name and flink file",
    ),
    Variant::caught_violated(
        "shared-memory/fork-drop",
        "shared_memory 0.12: a forked child dropping its copy unlinks the parent's segment",
    ),
    Variant::caught_violated(
        "shared-memory/leftover-flink",
        "shared_memory 0.12: after a SIGKILLed creator, the next create fails on its flink",
    ),
    Variant::holds(
        "ipcbench/creator-killed",
        "ipcbench Segment, unlinked once mapped: a SIGKILLed creator leaves nothing",
    ),
    Variant::holds(
        "ipcbench/fork-drop",
        "ipcbench Segment: a forked child's drop never unlinks the creator's name",
    ),
];

/// The flavors of the segment family this scenario compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Flavor {
    /// The `shared_memory` crate.
    SharedMemory,
    /// `ipc::shm::Segment`.
    Ipcbench,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Trap {
    CreatorKilled,
    ForkDrop,
    LeftoverFlink,
}

fn variant_parts(variant: &str) -> Result<(Flavor, Trap), ScenarioError> {
    let (flavor, trap) = variant
        .split_once('/')
        .ok_or_else(|| format!("unknown variant {variant:?}"))?;
    let flavor = match flavor {
        "shared-memory" => Flavor::SharedMemory,
        "ipcbench" => Flavor::Ipcbench,
        _ => return Err(format!("unknown flavor in {variant:?}").into()),
    };
    let trap = match trap {
        "creator-killed" => Trap::CreatorKilled,
        "fork-drop" => Trap::ForkDrop,
        "leftover-flink" => Trap::LeftoverFlink,
        _ => return Err(format!("unknown trap in {variant:?}").into()),
    };
    Ok((flavor, trap))
}

/// What a case saw, for the oracle.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Observed {
    /// /dev/shm names of the case left after its creator died.
    pub(crate) leftover_names: Vec<String>,
    /// Whether the flink file was left.
    pub(crate) leftover_flink: bool,
    /// After a forked child dropped its copy: whether the creator could still open the
    /// segment by its name (None: not asked).
    pub(crate) reopened: Option<Result<(), String>>,
    /// Creating again after a SIGKILLed creator: the error, if it failed (None: not asked).
    pub(crate) recreated: Option<Result<(), String>>,
}

/// The oracle: a segment outlives no process that owned it, and lives as long as its
/// creator does — whoever else drops it. Pure, tested on hand-written observations.
pub(crate) fn oracle(observed: &Observed) -> Verdict {
    let invariant = "a segment's name goes with its creator, and only with its creator";
    if !observed.leftover_names.is_empty() || observed.leftover_flink {
        return Verdict::violated(
            invariant,
            format!(
                "after its creator was SIGKILLed, left: {}{}",
                observed.leftover_names.join(", "),
                if observed.leftover_flink {
                    " and its flink file"
                } else {
                    ""
                }
            ),
        );
    }
    if let Some(Err(e)) = &observed.reopened {
        return Verdict::violated(
            invariant,
            format!("a forked child dropped its copy; its creator cannot open it now: {e}"),
        );
    }
    if let Some(Err(e)) = &observed.recreated {
        return Verdict::violated(
            invariant,
            format!("creating it again after a SIGKILLed creator failed: {e}"),
        );
    }
    Verdict::Holds
}

#[derive(Serialize, Deserialize)]
struct CreatorArgs {
    flavor: Flavor,
    trap: Trap,
    /// The case's name for its segment (the crate's os_id; ipcbench's tag).
    name: String,
    flink: PathBuf,
    size: usize,
}

/// Creates a segment and writes to it; then, by trap: dies by SIGKILL, or forks a child
/// that drops its copy and reports whether the segment can still be opened.
fn creator(args: CreatorArgs) -> Result<Option<String>, ScenarioError> {
    match args.flavor {
        Flavor::SharedMemory => {
            let mut conf = shared_memory::ShmemConf::new()
                .size(args.size)
                .os_id(&args.name);
            if args.trap != Trap::ForkDrop {
                conf = conf.flink(&args.flink);
            }
            let shmem = conf.create().map_err(|e| e.to_string())?;
            // SAFETY: the mapping is `size` bytes and ours alone until another opens it.
            unsafe { shmem.as_ptr().write_bytes(0x5a, args.size) };
            after_create(args.trap, shmem, || {
                shared_memory::ShmemConf::new()
                    .os_id(&args.name)
                    .open()
                    .map(drop)
                    .map_err(|e| e.to_string())
            })
        }
        Flavor::Ipcbench => {
            let mut segment = Segment::create(&args.name, args.size)?;
            // SAFETY: as above.
            unsafe { segment.as_ptr().write_bytes(0x5a, args.size) };
            if args.trap == Trap::CreatorKilled {
                // The discipline: once every process has it mapped, the name goes.
                segment.unlink();
            }
            let name = segment.name().to_string();
            after_create(args.trap, segment, || {
                Segment::open(&name).map(drop).map_err(|e| e.to_string())
            })
        }
    }
}
register_entry!("scenario-segment-creator", creator);

fn after_create<S>(
    trap: Trap,
    segment: S,
    reopen: impl FnOnce() -> Result<(), String>,
) -> Result<Option<String>, ScenarioError> {
    if trap != Trap::ForkDrop {
        // SAFETY: kill(2) on our own pid with SIGKILL: the process ends here, as a
        // process killed mid-work does, running no destructor.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        unreachable!("SIGKILL did not end the process");
    }
    // SAFETY: this worker is single-threaded (a forked case worker); the child only drops
    // its copy of the segment and calls _exit.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => {
            drop(segment);
            // SAFETY: ends the forked child without running the parent's atexit work.
            unsafe { libc::_exit(0) };
        }
        nix::unistd::ForkResult::Parent { child } => {
            nix::sys::wait::waitpid(child, None)?;
            let reopened = reopen();
            drop(segment);
            Ok(reopened.err())
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Params {
    size: usize,
}

static CASES: AtomicU64 = AtomicU64::new(0);

impl Scenario for SegmentCleanup {
    fn name(&self) -> &'static str {
        "segment-cleanup"
    }
    fn about(&self) -> &'static str {
        "the shared_memory crate's cleanup traps against ipcbench's own segments"
    }
    fn variants(&self) -> &'static [Variant] {
        VARIANTS
    }
    fn cases(&self, _variant: &str) -> BoxedStrategy<Case> {
        (1usize..=16)
            .prop_map(|pages| Case::new(&Params { size: pages * 4096 }, Schedule::new(Vec::new())))
            .boxed()
    }
    fn run(
        &self,
        variant: &str,
        case: &Case,
        context: &CaseContext,
    ) -> Result<CaseOutcome, ScenarioError> {
        let (flavor, trap) = variant_parts(variant)?;
        let params: Params = case.params()?;
        let tag = format!(
            "segcase-{}-{}",
            std::process::id(),
            CASES.fetch_add(1, Ordering::Relaxed)
        );
        let args = CreatorArgs {
            flavor,
            trap,
            name: format!("{}{tag}", hygiene::run_prefix()),
            flink: context.temp_dir.join(format!("{tag}.flink")),
            size: params.size,
        };
        let args = CreatorArgs {
            // ipcbench names its own segments: give it the tag.
            name: if flavor == Flavor::Ipcbench {
                tag.clone()
            } else {
                args.name
            },
            ..args
        };
        let mut observed = Observed::default();
        let reply = run_creator(&args, context.deadline)?;
        if trap == Trap::ForkDrop {
            observed.reopened = Some(reply.map_or(Ok(()), Err));
        } else {
            observed.leftover_names = names_with(&tag);
            observed.leftover_flink = args.flink.exists();
            if trap == Trap::LeftoverFlink {
                // The same flink, a new name: only the flink is in the way.
                let recreated = shared_memory::ShmemConf::new()
                    .size(args.size)
                    .os_id(format!("{}{tag}-again", hygiene::run_prefix()))
                    .flink(&args.flink)
                    .create()
                    .map(drop)
                    .map_err(|e| e.to_string());
                observed.recreated = Some(recreated);
                // Judged: only the failed create, for this trap.
                observed.leftover_names.clear();
                observed.leftover_flink = false;
            }
            clean_up(&tag, &args.flink);
        }
        Ok(CaseOutcome::new(oracle(&observed), Vec::new()))
    }
}

/// Runs the creator; for the kill traps it must die by SIGKILL. Its reply: the error the
/// fork-drop creator met reopening its segment, if any.
fn run_creator(args: &CreatorArgs, deadline: Duration) -> Result<Option<String>, ScenarioError> {
    let mut child = process::start(
        "scenario-segment-creator",
        args,
        Options::new("segment creator").method(StartMethod::Fork),
    )?;
    if args.trap == Trap::ForkDrop {
        return Ok(child.result(Some(deadline))?);
    }
    match child.join(Some(deadline))? {
        Some(code) if code == -libc::SIGKILL => Ok(None),
        Some(code) => Err(format!("the creator ended with {code}, not by SIGKILL").into()),
        None => {
            child.kill_group();
            Err("the creator did not end".into())
        }
    }
}

/// The /dev/shm names of this case (the crate may add a leading '/').
fn names_with(tag: &str) -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(tag))
                .collect()
        })
        .unwrap_or_default()
}

/// Removes what a case left, after the oracle has seen it.
fn clean_up(tag: &str, flink: &Path) {
    for name in names_with(tag) {
        let _ = nix::sys::mman::shm_unlink(name.as_str());
    }
    let _ = std::fs::remove_file(flink);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_left_by_a_killed_creator_is_a_violation() {
        let observed = Observed {
            leftover_names: vec!["ipcbench-r1-segcase-1-0".into()],
            leftover_flink: true,
            ..Observed::default()
        };
        let verdict = oracle(&observed);
        let evidence = verdict.evidence().expect("violated");
        assert!(
            evidence.contains("ipcbench-r1-segcase-1-0 and its flink file"),
            "{evidence}"
        );
    }

    #[test]
    fn a_segment_gone_after_a_childs_drop_is_a_violation() {
        let observed = Observed {
            reopened: Some(Err("No such file or directory".into())),
            ..Observed::default()
        };
        assert!(oracle(&observed)
            .evidence()
            .is_some_and(|e| e.contains("cannot open it now")));
        let observed = Observed {
            recreated: Some(Err("flink exists".into())),
            ..Observed::default()
        };
        assert!(oracle(&observed)
            .evidence()
            .is_some_and(|e| e.contains("failed: flink exists")));
    }

    #[test]
    fn nothing_left_and_still_open_holds() {
        let observed = Observed {
            reopened: Some(Ok(())),
            recreated: Some(Ok(())),
            ..Observed::default()
        };
        assert_eq!(oracle(&observed), Verdict::Holds);
        assert_eq!(oracle(&Observed::default()), Verdict::Holds);
    }

    #[test]
    fn every_variant_names_a_flavor_and_a_trap() {
        for v in VARIANTS {
            assert!(variant_parts(v.name).is_ok(), "{}", v.name);
        }
    }
}
