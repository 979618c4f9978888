//! Tidy tests: the documentation points at things that exist.
//!
//! - every relative Markdown link (`[text](path)`, `path#anchor`) in a tracked `.md` file resolves
//!   to a file or folder of the repository;
//! - every repository path cited in a tracked source or document (`xtask/emu/REPORT.md`,
//!   `common/src/wfp.rs`, ...) exists;
//! - nothing cites a document that is not part of the repository (a `DIR/NAME.md` that does
//!   not exist in it, or a `../` path that climbs out of it):
//!   a reader who clones the repository must be able to follow every citation.
//!
//! The files are those `git ls-files` lists (so `target/` and untracked scratch never count).

#![cfg(test)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository's root (the workspace root, one level above xtask).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The tracked text files: `.md`, `.rs`, `.py`, `.toml`, `.inx`, `.ps1`, `.run`-like scripts.
fn tracked_text_files(root: &Path) -> Vec<PathBuf> {
    let out = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root)
        .output()
        .expect("git ls-files runs (the tidy tests read the tracked files)");
    assert!(out.status.success(), "git ls-files failed");
    String::from_utf8_lossy(&out.stdout)
        .split('\0')
        .filter(|p| !p.is_empty())
        .filter(|p| {
            let ext = Path::new(p).extension().and_then(|e| e.to_str());
            matches!(
                ext,
                Some("md" | "rs" | "py" | "toml" | "inx" | "ps1" | "in")
            ) || p.starts_with(".ci/")
        })
        .map(|p| root.join(p))
        .filter(|p| p.is_file())
        .collect()
}

/// The relative link targets of Markdown `[text](target)` links in `text`.
fn markdown_links(text: &str) -> Vec<String> {
    let mut links = Vec::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            let target = after[..end].trim();
            // `[text](target "title")`
            let target = target.split_whitespace().next().unwrap_or("");
            let external = target.contains("://")
                || target.starts_with("mailto:")
                || target.starts_with('#')
                || target.is_empty();
            if !external {
                links.push(target.split('#').next().unwrap_or("").to_owned());
            }
            rest = &after[end..];
        }
    }
    links
}

/// The top-level folders whose paths, when cited, must exist.
const CITABLE_ROOTS: [&str; 9] = [
    "common/",
    "xtask/",
    "ex-callback/",
    "cm-filter/",
    "pnp-notify/",
    "wfp-callout/",
    ".cargo/",
    ".ci/",
    "docs/",
];

/// The part of a file that cites: for Rust, its comments (string literals in code and tests are
/// data, not citations); for everything else, all of it.
fn citing_text(file: &Path, text: &str) -> String {
    if file.extension().and_then(|e| e.to_str()) != Some("rs") {
        return text.to_owned();
    }
    text.lines()
        .filter_map(|l| l.find("//").map(|i| &l[i..]))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Repository paths cited in `text`: a token that starts with one of [`CITABLE_ROOTS`] (not right
/// after `/`, `\` or a name character, so `target/…/ex-callback/…` is not one) and ends with a file
/// extension, without placeholders.
fn cited_paths(text: &str) -> Vec<String> {
    let mut cited = Vec::new();
    let bytes = text.as_bytes();
    for root in CITABLE_ROOTS {
        let mut from = 0;
        while let Some(i) = text[from..].find(root) {
            let start = from + i;
            from = start + root.len();
            if start > 0 {
                let before = bytes[start - 1];
                if before.is_ascii_alphanumeric()
                    || matches!(before, b'/' | b'\\' | b'-' | b'_' | b'.')
                {
                    continue;
                }
            }
            let token: String = text[start..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-'))
                .collect();
            let token = token.trim_end_matches(['.', '/']).to_owned();
            let file = Path::new(&token);
            // `xtask/mutations/NAME.toml`: a placeholder, not a file.
            let placeholder = file.components().any(|c| {
                let c = c.as_os_str().to_string_lossy();
                let stem = c.split('.').next().unwrap_or("");
                matches!(
                    stem,
                    "NAME" | "DRIVER" | "FILE" | "DIR" | "ARCH" | "PROFILE" | "VARIANT"
                )
            });
            let has_extension = !placeholder
                && file.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                    matches!(
                        e,
                        "rs" | "py" | "md" | "toml" | "inx" | "ps1" | "json" | "lock" | "in"
                    )
                });
            if has_extension {
                cited.push(token);
            }
        }
    }
    cited
}

/// Whether a path names a placeholder (`xtask/mutations/NAME.toml`) rather than a file.
fn has_placeholder(path: &Path) -> bool {
    path.components().any(|c| {
        let c = c.as_os_str().to_string_lossy();
        let stem = c.split('.').next().unwrap_or("");
        matches!(
            stem,
            "NAME" | "DRIVER" | "FILE" | "DIR" | "ARCH" | "PROFILE" | "VARIANT"
        )
    })
}

/// Citations of documents a reader of the repository cannot open, in the file `file` (at
/// `root`): every `DIR/NAME.md` (outside URLs) must exist relative to the root or to the
/// citing file, and every `../` path must stay inside the repository. Placeholders
/// (`DIR/NAME.md`) and absolute or URL paths are not citations of repository files.
fn outside_citations(root: &Path, file: &Path, text: &str) -> Vec<String> {
    let dir = file.parent().unwrap_or(root);
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        for (start, token) in path_tokens(line) {
            // Part of a URL (`https://host/a/b.md`) or of another repository's path shown as such.
            let before = &line[..start];
            if token.starts_with('/')
                || before.ends_with([':', '@'])
                || has_placeholder(Path::new(&token))
            {
                continue;
            }
            let climbs = token.starts_with("../");
            let is_md = Path::new(&token)
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("md"));
            if !(climbs || is_md && token.contains('/')) {
                continue;
            }
            let inside = |base: &Path| {
                let joined = normalize(&base.join(&token));
                joined.starts_with(root) && joined.exists()
            };
            if !inside(root) && !inside(dir) {
                found.push(format!("line {}: {token}", n + 1));
            }
        }
    }
    found
}

/// The path-like tokens of `line` (runs of name characters and `/`), with their byte offsets.
fn path_tokens(line: &str) -> Vec<(usize, String)> {
    let mut tokens = Vec::new();
    let mut start = None;
    for (i, c) in line.char_indices().chain([(line.len(), ' ')]) {
        let part = c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-');
        match (part, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                let token = line[s..i].trim_end_matches(['.', '/']);
                if token.contains('/') {
                    tokens.push((s, token.to_owned()));
                }
                start = None;
            }
            _ => {}
        }
    }
    tokens
}

/// `path` with `.` and `..` resolved textually.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[test]
fn markdown_links_resolve() {
    let root = root();
    let mut broken = Vec::new();
    for file in tracked_text_files(&root) {
        if file.extension().and_then(|e| e.to_str()) != Some("md") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let dir = file.parent().unwrap();
        for link in markdown_links(&text) {
            if !dir.join(&link).exists() {
                broken.push(format!(
                    "{}: ({link})",
                    file.strip_prefix(&root).unwrap().display()
                ));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "relative Markdown links to nothing:\n{}",
        broken.join("\n")
    );
}

#[test]
fn cited_repository_files_exist() {
    let root = root();
    let mut missing = Vec::new();
    for file in tracked_text_files(&root) {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for path in cited_paths(&citing_text(&file, &text)) {
            if !root.join(&path).exists() {
                missing.push(format!(
                    "{}: {path}",
                    file.strip_prefix(&root).unwrap().display()
                ));
            }
        }
    }
    missing.sort();
    missing.dedup();
    assert!(
        missing.is_empty(),
        "cited repository files that do not exist:\n{}",
        missing.join("\n")
    );
}

#[test]
fn nothing_cites_material_outside_the_repository() {
    let root = root();
    let mut found = Vec::new();
    for file in tracked_text_files(&root) {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for hit in outside_citations(&root, &file, &citing_text(&file, &text)) {
            found.push(format!(
                "{}: {hit}",
                file.strip_prefix(&root).unwrap().display()
            ));
        }
    }
    assert!(
        found.is_empty(),
        "citations a reader of the repository cannot follow (cite the public source, or keep \
         the fact as a note in the repository):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_checks_themselves_catch_what_they_look_for() {
    assert_eq!(
        markdown_links("see [a](ex-callback/README.md#try-it), [b](https://x/y), [c](#top)"),
        ["ex-callback/README.md"]
    );
    assert!(markdown_links("```\n[a](nowhere.md)\n```\n").is_empty());
    assert_eq!(
        cited_paths(
            "the schema is `xtask/emu/REPORT.md`; images in target/drivers/x64/ex-callback/x.rs"
        ),
        ["xtask/emu/REPORT.md"]
    );
    assert!(cited_paths("folder common/src/ and <common/src/NAME>").is_empty());
    assert!(cited_paths("one file per lesson, xtask/mutations/NAME.toml").is_empty());
    assert_eq!(
        citing_text(
            Path::new("a.rs"),
            "let p = \"xtask/x.toml\"; // see xtask/emu/REPORT.md\nfn f() {}"
        ),
        "// see xtask/emu/REPORT.md"
    );
    let root = root();
    let readme = root.join("README.md");
    let cites = |text: &str| outside_citations(&root, &readme, text).len();
    assert_eq!(cites("(`facts-elsewhere/kmdf.md` §2)"), 1);
    assert_eq!(cites("see ../beside-the-clone/design.md"), 1);
    assert_eq!(cites("see ../../etc/hosts"), 1);
    assert_eq!(cites("see `xtask/emu/REPORT.md` and docs/notes/wfp.md"), 0);
    assert_eq!(
        cites("https://github.com/o/r/blob/main/doc/x.md, a folder/ of x.md"),
        0
    );
}
