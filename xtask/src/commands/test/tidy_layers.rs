//! Tidy test: xtask's layers, read from its sources. Each `crate::NAME` path in a file of
//! `xtask/src/` (comments left out; `use crate::{a, b}` groups read too) is an edge from the file's
//! top-level module to `NAME`. Then:
//!
//! - every top-level module has a layer in [`LAYERS`];
//! - no edge goes up a layer: the libraries (`base`, `image`, `emulator`, `packaging`, `deploy`)
//!   never import the command line (`flags`, `cli`) or the commands;
//! - no cycle between top-level modules;
//! - except the edges in [`ALLOWED`], which are being removed (issue #15) and must each still occur:
//!   a stale entry fails, so the list shrinks as the code does.

#![cfg(test)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each top-level module and its layer: a module may import its own layer's and lower ones.
const LAYERS: &[(&str, u8)] = &[
    ("base", 0),
    ("image", 1),
    ("emulator", 1),
    ("deploy", 1),
    ("template", 1),
    ("commands", 2),
    ("flags", 3),
];

/// Edges that break the rules today and are being removed by the rest of issue #15: the
/// command runs still in the libraries take the command line's options (`cli`) and call commands.
const ALLOWED: &[(&str, &str)] = &[];

/// The top-level modules a source refers to with `crate::NAME` (comments excluded).
fn references(source: &str) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    for line in source.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            // `$crate::` in macros is the crate itself; `crate::` must start a path.
            let before = rest[..i].chars().last();
            if before.is_none_or(|c| !c.is_alphanumeric() && c != '_' && c != '$') {
                if let Some(group) = after.strip_prefix('{') {
                    let body = group.split('}').next().unwrap_or("");
                    for item in body.split(',') {
                        if let Some(name) = item.trim().split("::").next()
                            && !name.is_empty()
                        {
                            refs.insert(name.to_owned());
                        }
                    }
                } else {
                    let name: String = after
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        refs.insert(name);
                    }
                }
            }
            rest = after;
        }
    }
    refs
}

/// The edges between top-level modules of `sources` (path relative to `src/`, text). `lib.rs`
/// (the crate root, which declares the layers) and `main.rs` (which only calls it) are above
/// every layer and have none.
fn edges(sources: &[(String, String)]) -> BTreeMap<(String, String), String> {
    let mut edges = BTreeMap::new();
    for (path, text) in sources {
        let top = path
            .split('/')
            .next()
            .unwrap_or("")
            .trim_end_matches(".rs")
            .to_owned();
        if top == "lib" || top == "main" {
            continue;
        }
        for to in references(text) {
            if to != top {
                edges
                    .entry((top.clone(), to))
                    .or_insert_with(|| path.clone());
            }
        }
    }
    edges
}

/// Every rule broken by `sources`, each naming the file and the fix.
fn violations(
    sources: &[(String, String)],
    layers: &[(&str, u8)],
    allowed: &[(&str, &str)],
) -> Vec<String> {
    let layer = |m: &str| layers.iter().find(|(n, _)| *n == m).map(|(_, l)| *l);
    let edges = edges(sources);
    let mut problems = Vec::new();
    let is_allowed = |a: &str, b: &str| allowed.iter().any(|(x, y)| *x == a && *y == b);
    for ((from, to), file) in &edges {
        let (Some(lf), Some(lt)) = (layer(from), layer(to)) else {
            let unknown = if layer(from).is_none() { from } else { to };
            problems.push(format!(
                "{file}: module `{unknown}` has no layer: add it to LAYERS in tidy_layers.rs"
            ));
            continue;
        };
        if lt > lf && !is_allowed(from, to) {
            problems.push(format!(
                "{file}: `{from}` (layer {lf}) imports `{to}` (layer {lt}): a layer imports only \
                 its own and lower ones; move what both need down, or pass it in"
            ));
        }
    }
    for (a, b) in allowed {
        if !edges.contains_key(&((*a).to_owned(), (*b).to_owned())) {
            problems.push(format!(
                "ALLOWED lists `{a}` -> `{b}`, which no longer occurs: remove the entry"
            ));
        }
    }
    // Cycles, over the edges that are not allow-listed.
    let graph: BTreeMap<&str, Vec<&str>> =
        edges
            .keys()
            .filter(|(a, b)| !is_allowed(a, b))
            .fold(BTreeMap::new(), |mut g, (a, b)| {
                g.entry(a.as_str()).or_default().push(b.as_str());
                g
            });
    if let Some(cycle) = find_cycle(&graph) {
        problems.push(format!(
            "an import cycle between top-level modules: {}",
            cycle.join(" -> ")
        ));
    }
    problems
}

/// A cycle of `graph`, as the modules along it (first repeated at the end), if there is one.
fn find_cycle<'a>(graph: &BTreeMap<&'a str, Vec<&'a str>>) -> Option<Vec<&'a str>> {
    fn visit<'a>(
        node: &'a str,
        graph: &BTreeMap<&'a str, Vec<&'a str>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<&'a str>> {
        if let Some(i) = path.iter().position(|n| *n == node) {
            let mut cycle = path[i..].to_vec();
            cycle.push(node);
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node);
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node);
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

/// Every `.rs` file under `dir`, with its path relative to `base`.
fn read_sources(dir: &Path, base: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            read_sources(&p, base, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let rel = p
                .strip_prefix(base)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            out.push((rel, std::fs::read_to_string(&p).unwrap()));
        }
    }
}

#[test]
fn xtask_layers_hold() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut sources = Vec::new();
    read_sources(&src, &src, &mut sources);
    // This file's own samples are string literals, not imports.
    sources.retain(|(path, _)| path != "commands/test/tidy_layers.rs");
    assert!(sources.len() > 40, "read {} sources", sources.len());
    let problems = violations(&sources, LAYERS, ALLOWED);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The edges the command line needs are seen (the reader is not blind).
    let e = edges(&sources);
    for (a, b) in [
        ("flags", "commands"),
        ("commands", "base"),
        ("image", "base"),
    ] {
        assert!(e.contains_key(&(a.to_owned(), b.to_owned())), "{a} -> {b}");
    }
}

#[test]
fn references_are_read_from_code_only() {
    let refs = references(
        "use crate::base::error::Result;\n\
         use crate::{image::pe, emulator};\n\
         // crate::cli in a comment\n\
         /// and `crate::flags` in a doc comment\n\
         let x = $crate::base::error::Error::new(s); let y = foo_crate::z;\n\
         crate::commands::build::run(ws, &o)?;",
    );
    assert_eq!(
        refs.into_iter().collect::<Vec<_>>(),
        ["base", "commands", "emulator", "image"]
    );
}

/// The negatives: a synthetic source set with each kind of violation is caught.
#[test]
fn violations_are_caught() {
    let src = |files: &[(&str, &str)]| -> Vec<(String, String)> {
        files
            .iter()
            .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
            .collect()
    };
    let layers = &[("base", 0), ("image", 1), ("commands", 2), ("flags", 3)];
    let clean = src(&[
        ("base/files.rs", "use std::fs;"),
        ("image/pe.rs", "use crate::base::files;"),
        ("commands/lint.rs", "use crate::image::pe;"),
        ("flags.rs", "use crate::commands::lint;"),
        ("lib.rs", "use crate::flags; mod x;"),
        ("main.rs", "fn main() { xtask::main(); }"),
    ]);
    assert_eq!(violations(&clean, layers, &[]), Vec::<String>::new());

    // A library importing the command line.
    let mut up = clean.clone();
    up.push(("image/lint.rs".into(), "use crate::flags::Command;".into()));
    let p = violations(&up, layers, &[]);
    assert!(
        p.len() == 2
            && p[0].starts_with("image/lint.rs: `image` (layer 1) imports `flags` (layer 3)")
            && p[1].contains("cycle"),
        "{p:?}"
    );
    // ... allowed while listed.
    assert_eq!(
        violations(&up, layers, &[("image", "flags")]),
        Vec::<String>::new()
    );
    // A stale allow-list entry.
    let p = violations(&clean, layers, &[("image", "flags")]);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].contains("no longer occurs"), "{p:?}");
    // A cycle within a layer.
    let mut cycle = clean.clone();
    cycle.push(("base/layout.rs".into(), "use crate::image::pe;".into()));
    let p = violations(
        &cycle,
        &[("base", 1), ("image", 1), ("commands", 2), ("flags", 3)],
        &[],
    );
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].contains("cycle") && p[0].contains("base -> image -> base"),
        "{p:?}"
    );
    // A module without a layer.
    let mut unknown = clean;
    unknown.push(("report.rs".into(), "use crate::base::files;".into()));
    let p = violations(&unknown, layers, &[]);
    assert!(
        p.len() == 1 && p[0].contains("`report` has no layer"),
        "{p:?}"
    );
}
