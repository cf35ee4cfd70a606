//! The README is the manual, so it must not drift from what it describes: its tables of
//! figures are the ones `scripts/readme_tables.py` writes from the committed baseline,
//! and every `ipcbench` command it shows names a real subcommand with real flags.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn readme() -> String {
    std::fs::read_to_string(root().join("README.md")).expect("README.md")
}

fn ipcbench_help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ipcbench"))
        .args(args)
        .output()
        .expect("run ipcbench");
    assert_eq!(out.status.code(), Some(0), "ipcbench {args:?} failed");
    String::from_utf8(out.stdout).expect("help is UTF-8")
}

/// The subcommands `ipcbench --help` lists (clap's `help` left out).
fn subcommands() -> BTreeSet<String> {
    let help = ipcbench_help(&["--help"]);
    let listing = help
        .split_once("Commands:")
        .expect("a Commands: section in --help")
        .1;
    listing
        .lines()
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// The code of a markdown text: the lines of fenced blocks and the `inline spans` of the
/// prose (a span may run over a line break). Commands live there; prose ("ipcbench
/// measures ...") does not.
fn code_snippets(markdown: &str) -> Vec<String> {
    fn spans(prose: &str, into: &mut Vec<String>) {
        let joined = prose.replace('\n', " ");
        into.extend(joined.split('`').skip(1).step_by(2).map(str::to_string));
    }
    let mut snippets = Vec::new();
    let mut prose = String::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            if !fenced {
                spans(&prose, &mut snippets);
                prose.clear();
            }
            fenced = !fenced;
        } else if fenced {
            snippets.push(line.to_string());
        } else {
            prose.push_str(line);
            prose.push('\n');
        }
    }
    spans(&prose, &mut snippets);
    snippets
}

/// One command a snippet shows: the subcommand and the flags given to it.
#[derive(Debug)]
struct Shown {
    subcommand: String,
    flags: Vec<String>,
    snippet: String,
}

/// Where a snippet runs the binary: `ipcbench SUB` (also `target/release/ipcbench SUB`)
/// or `cargo run ... -- SUB` (the example plug-in's binary is a full ipcbench too).
/// Placeholders in capitals (`ipcbench SUBCOMMAND`) are not commands.
fn commands_in(snippet: &str) -> Vec<Shown> {
    let words: Vec<&str> = snippet.split_whitespace().collect();
    let mut shown = Vec::new();
    for (i, word) in words.iter().enumerate() {
        let binary = *word == "ipcbench" || word.ends_with("/ipcbench");
        let cargo_run = *word == "--" && words[..i].windows(2).any(|pair| pair == ["cargo", "run"]);
        if !(binary || cargo_run) {
            continue;
        }
        let Some(sub) = words.get(i + 1) else {
            continue;
        };
        if !sub.starts_with(|c: char| c.is_ascii_lowercase()) {
            continue;
        }
        let sub = sub.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
        let flags = words[i + 2..]
            .iter()
            .take_while(|w| !["#", "|", "&&", ";", ">", "ipcbench", "cargo"].contains(w))
            .map(|w| w.trim_start_matches(['[', '(']))
            .filter(|w| w.starts_with("--") && w.len() > 2)
            .map(|w| {
                w.chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .collect::<String>()
            })
            .collect();
        shown.push(Shown {
            subcommand: sub.to_string(),
            flags,
            snippet: snippet.to_string(),
        });
    }
    shown
}

/// Whether `help` documents `flag` exactly (`--seed` is not `--seeds`).
fn documents(help: &str, flag: &str) -> bool {
    help.match_indices(flag).any(|(at, _)| {
        let after = help[at + flag.len()..].chars().next();
        let before = help[..at].chars().last();
        !matches!(after, Some(c) if c.is_ascii_alphanumeric() || c == '-')
            && !matches!(before, Some(c) if c.is_ascii_alphanumeric() || c == '-')
    })
}

#[test]
fn the_readme_tables_are_what_the_script_writes_from_the_baseline() {
    let out = Command::new("python3")
        .arg(root().join("scripts/readme_tables.py"))
        .arg("--check")
        .current_dir(root())
        .output()
        .expect("python3 (on every machine CI runs on) runs scripts/readme_tables.py");
    assert_eq!(
        out.status.code(),
        Some(0),
        "README.md's tables are stale: run `python3 scripts/readme_tables.py`\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_command_the_readme_shows_is_a_real_subcommand_with_real_flags() {
    let real = subcommands();
    assert!(
        real.contains("run") && real.contains("bench"),
        "subcommands read from --help: {real:?}"
    );
    let shown: Vec<Shown> = code_snippets(&readme())
        .iter()
        .flat_map(|s| commands_in(s))
        .collect();
    assert!(shown.len() > 20, "found only {shown:?}");

    let mut helps = BTreeMap::new();
    let mut named = BTreeSet::new();
    for command in &shown {
        assert!(
            real.contains(&command.subcommand),
            "README.md shows `ipcbench {}`, which is not a subcommand ({}): {}",
            command.subcommand,
            real.iter().cloned().collect::<Vec<_>>().join(", "),
            command.snippet
        );
        named.insert(command.subcommand.clone());
        let help = helps
            .entry(command.subcommand.clone())
            .or_insert_with(|| ipcbench_help(&[&command.subcommand, "--help"]));
        for flag in &command.flags {
            assert!(
                documents(help, flag),
                "README.md gives `ipcbench {}` the flag {flag}, which its --help does not have: {}",
                command.subcommand,
                command.snippet
            );
        }
    }
    let missing: Vec<_> = real.difference(&named).collect();
    assert!(
        missing.is_empty(),
        "README.md never shows these subcommands: {missing:?}"
    );
}

#[test]
fn the_command_finder_reads_what_it_should() {
    let found = commands_in("target/release/ipcbench check --cases 32 --json a.json # --nope");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].subcommand, "check");
    assert_eq!(found[0].flags, ["--cases", "--json"]);

    let found =
        commands_in("cargo run --release -p ipcbench-dgram-queue -- conform --flavor dgram");
    assert_eq!(found.len(), 1);
    assert_eq!(
        (found[0].subcommand.as_str(), found[0].flags.as_slice()),
        ("conform", ["--flavor".to_string()].as_slice())
    );

    let found =
        commands_in("ipcbench compare A B [--threshold PCT] [--format table|json|markdown]");
    assert_eq!(found[0].flags, ["--threshold", "--format"]);

    assert!(commands_in("cargo bench --bench queue -- --warm-up-time 1").is_empty());
    assert!(commands_in("ipcbench SUBCOMMAND --help").is_empty());
    assert!(commands_in("ipcbench::cli::main_with_args").is_empty());

    let snippets = code_snippets(
        "prose ipcbench measures\n`ipcbench list` and `ipcbench\ncheck`\n```\nipcbench run\n```\n",
    );
    assert_eq!(
        snippets,
        ["ipcbench list", "ipcbench check", "ipcbench run"]
    );

    assert!(documents("  --seed <SEED>  Seed", "--seed"));
    assert!(!documents("  --seeds <SEED>", "--seed"));
}
