//! The module graph points down only: read from the `crate::` paths in every source file
//! (comments left out), each top-level module may use only the layers below it. A cycle,
//! or an arrow from `process` up into `ipc`, fails here with the file that made it.

use std::collections::BTreeMap;
use std::path::Path;

/// Layers, bottom first; a module may use modules of a lower rank only.
const RANKS: [(&str, u32); 12] = [
    ("process", 0),
    ("results", 0),
    ("sys", 1),
    ("schedule", 2),
    ("ipc", 3),
    ("programs", 4),
    ("conformance", 5),
    ("measure", 5),
    ("scenario", 5),
    ("stress", 5),
    ("report", 6),
    ("cli", 7),
];

fn rank(module: &str) -> Option<u32> {
    RANKS.iter().find(|(m, _)| *m == module).map(|(_, r)| *r)
}

/// Every `crate::MODULE` a file's code (not its comments) names.
fn uses(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines().map(str::trim_start) {
        if line.starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            let before = rest[..at].chars().last();
            rest = &rest[at + "crate::".len()..];
            // `$crate::` is a macro's own path, resolved where it expands.
            if before == Some('$') {
                continue;
            }
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            found.push(name);
        }
    }
    found
}

fn visit(dir: &Path, module: &str, edges: &mut BTreeMap<(String, String), String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            visit(&path, module, edges);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            for used in uses(&text) {
                if used != module && rank(&used).is_some() {
                    edges
                        .entry((module.to_string(), used))
                        .or_insert_with(|| path.display().to_string());
                }
            }
        }
    }
}

#[test]
fn every_module_uses_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut edges = BTreeMap::new();
    for (module, _) in RANKS {
        let dir = src.join(module);
        if dir.is_dir() {
            visit(&dir, module, &mut edges);
        } else {
            let file = src.join(format!("{module}.rs"));
            let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{module}: {e}"));
            for used in uses(&text) {
                if used != module && rank(&used).is_some() {
                    edges.insert((module.to_string(), used), file.display().to_string());
                }
            }
        }
    }
    assert!(!edges.is_empty(), "no edge read: the reader is broken");
    let upward: Vec<String> = edges
        .iter()
        .filter(|((from, to), _)| rank(to) >= rank(from))
        .map(|((from, to), file)| format!("{from} -> {to} ({file})"))
        .collect();
    assert!(upward.is_empty(), "arrows up or sideways: {upward:#?}");
}

#[test]
fn the_reader_sees_an_arrow_and_skips_comments_and_macro_paths() {
    let text = "use crate::ipc::pipe;\n// crate::cli is only named here\nlet x = $crate::report::x;\n    f(crate::sys::shm::Segment::open(n));";
    assert_eq!(uses(text), ["ipc", "sys"]);
}
