//! The crate's modules import each other without a cycle: arithmetic below parameters
//! and context, below values, keys and operations. A `crate::` path in a module's code (its
//! tests and comments aside) is an edge; the test fails naming the modules of a cycle.

#![allow(clippy::expect_used, reason = "tests")]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module name (`math::ntt`, `evaluator`) → its source without tests and comment lines.
fn modules() -> BTreeMap<String, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    for (dir, prefix) in [(src.clone(), ""), (src.join("math"), "math::")] {
        for entry in std::fs::read_dir(&dir).expect("src is readable") {
            let path = entry.expect("a directory entry").path();
            let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            if path.extension().is_none_or(|e| e != "rs") || stem == "lib" || stem == "math" {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("a module is readable");
            let code = text
                .split("#[cfg(test)]\nmod tests")
                .next()
                .unwrap_or_default();
            let code: Vec<&str> = code
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect();
            out.insert(format!("{prefix}{stem}"), code.join("\n"));
        }
    }
    out
}

/// The modules `code` names through `crate::` (and, in `math`, through `super::`).
fn edges(name: &str, code: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut add = |path: &str| {
        let mut parts = path.split("::");
        let first = parts.next().unwrap_or_default();
        let module = match (first, parts.next()) {
            ("math", Some(second)) => format!("math::{second}"),
            _ => first.to_string(),
        };
        if module != name && known.contains(&module) {
            out.insert(module);
        }
    };
    for (marker, prefix) in [("crate::", ""), ("super::", "math::")] {
        if marker == "super::" && !name.starts_with("math::") {
            continue;
        }
        for piece in code.split(marker).skip(1) {
            let path: String = piece
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            add(&format!("{prefix}{path}"));
        }
    }
    out
}

#[test]
fn modules_import_each_other_without_a_cycle() {
    let modules = modules();
    let known: BTreeSet<String> = modules.keys().cloned().collect();
    let graph: BTreeMap<&str, BTreeSet<String>> = modules
        .iter()
        .map(|(name, code)| (name.as_str(), edges(name, code, &known)))
        .collect();
    assert!(
        graph.len() > 20,
        "the modules were found: {:?}",
        graph.keys()
    );
    // Kahn's algorithm: what cannot be ordered lies on or behind a cycle
    let mut remaining = graph.clone();
    loop {
        let free: Vec<&str> = remaining
            .iter()
            .filter(|(_, deps)| deps.iter().all(|d| !remaining.contains_key(d.as_str())))
            .map(|(name, _)| *name)
            .collect();
        if free.is_empty() {
            break;
        }
        for name in free {
            remaining.remove(name);
        }
    }
    assert!(
        remaining.is_empty(),
        "modules on or behind an import cycle: {:#?}",
        remaining
    );
}
