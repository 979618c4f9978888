//! The mutation check: every lesson a driver's README claims is proven by a mutant — a copy of the
//! driver with exactly that lesson broken — which the emulated kernel must fail with the rule that
//! names the lesson.
//!
//! A mutation is a file `xtask/mutations/NAME.toml`:
//!
//! ```toml
//! driver = "ex-callback"                 # the driver (or variant) it breaks
//! lesson = "the context is freed only after its callbacks are unregistered"
//! [[edit]]                               # one or more: `find` must occur exactly once in `file`
//! file = "src/lib.rs"
//! find = "..."
//! replace = "..."
//! [expect]                               # as a fixture scenario's; `rules` names the rule(s)
//! fault_sweep = false                    # whose audit check must fail: the lesson's
//! rules = ["callback racing unregistration"]
//! ```
//!
//! The check copies the workspace's `Cargo.toml` (members cut down to `common` and the driver),
//! `Cargo.lock`, `rust-toolchain.toml`, `common/` and the driver's folder to `target/mutants/ws/`
//! (where cargo reads the workspace's own `.cargo/config.toml`, `scratch::workspace`), applies the edits there (an edit whose `find` is not in the file exactly
//! once is an error: the mutation no longer matches the driver and must be updated), builds the
//! mutant offline into `target/mutants/target/` (shared, so the dependencies build once), and runs
//! the harness on it with the driver's own scenario. Files are rewritten only when their content
//! changes, so only the mutated crate recompiles between mutations. The real driver is never
//! touched.
//!
//! Each driver README names its mutations (`xtask/mutations/NAME.toml`); [`readme_problems`] checks
//! that every mutation is named in its driver's README and every name there exists.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::base::error::{Context, Result, bail};
use crate::base::layout::{Arch, Profile};
use crate::base::workspace::{Driver, Workspace, cargo};
use crate::commands::test::fixtures::Expect;

/// One textual edit of a driver file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edit {
    /// Relative to the driver's folder.
    pub file: String,
    /// Text that must occur exactly once.
    pub find: String,
    /// What replaces it.
    pub replace: String,
}

/// A mutation file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mutation {
    /// The file's stem.
    pub name: String,
    /// The driver (or variant) it breaks.
    pub driver: String,
    /// The README lesson it breaks.
    pub lesson: String,
    /// The edits.
    pub edits: Vec<Edit>,
    /// What the harness must report.
    pub expect: Expect,
}

/// The folder of the mutation files.
pub fn dir(ws: &Workspace) -> PathBuf {
    ws.root.join("xtask").join("mutations")
}

/// Every `xtask/mutations/*.toml`, read with the harness's Python (`tomllib`), sorted by name.
pub fn load_all(ws: &Workspace, python: &Path) -> Result<Vec<Mutation>> {
    let dir = dir(ws);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files.iter().map(|f| read(python, f)).collect()
}

fn read(python: &Path, file: &Path) -> Result<Mutation> {
    const READ: &str = "import json, sys, tomllib\n\
        with open(sys.argv[1], 'rb') as f:\n    print(json.dumps(tomllib.load(f)))";
    let out = Command::new(python)
        .args(["-c", READ])
        .arg(file)
        .output()
        .with_context(|| format!("running {} to read {}", python.display(), file.display()))?;
    if !out.status.success() {
        bail!(
            "reading {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let v: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("reading {}", file.display()))?;
    let name = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    parse(&name, &v).with_context(|| format!("{}", file.display()))
}

fn text(v: &Value, key: &str) -> Result<String> {
    match v.get(key).and_then(Value::as_str) {
        Some(s) if !s.is_empty() => Ok(s.to_owned()),
        _ => bail!("`{key}` must be a non-empty string"),
    }
}

/// A mutation from its TOML (as JSON).
pub fn parse(name: &str, v: &Value) -> Result<Mutation> {
    let driver = text(v, "driver")?;
    let lesson = text(v, "lesson")?;
    let mut edits = Vec::new();
    for e in v
        .get("edit")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
    {
        edits.push(Edit {
            file: text(e, "file")?,
            find: text(e, "find")?,
            replace: match e.get("replace").and_then(Value::as_str) {
                Some(r) => r.to_owned(),
                None => bail!("`replace` must be a string"),
            },
        });
    }
    if edits.is_empty() {
        bail!("no [[edit]]: a mutation must change the driver");
    }
    let Some(expect) = v.get("expect") else {
        bail!("no [expect] table")
    };
    let expect = crate::commands::test::fixtures::parse_expect(expect).context("[expect]")?;
    if expect.rules.is_empty() {
        bail!("[expect] rules is empty: name the rule that must catch the broken lesson");
    }
    Ok(Mutation {
        name: name.to_owned(),
        driver,
        lesson,
        edits,
        expect,
    })
}

/// `text` with every edit for `file` applied. Each `find` must occur exactly once.
pub fn apply(text: &str, file: &str, edits: &[Edit]) -> Result<String> {
    let mut out = text.to_owned();
    for e in edits.iter().filter(|e| e.file == file) {
        let n = out.matches(&e.find).count();
        if n != 1 {
            bail!(
                "the text to replace occurs {n} time(s) in {file}, not once: the mutation no longer matches the driver; update its `find`:\n{}",
                e.find
            );
        }
        out = out.replacen(&e.find, &e.replace, 1);
    }
    Ok(out)
}

/// Builds the mutant of `driver` (x64, debug) and returns its image.
pub fn build(ws: &Workspace, driver: &Driver, mutation: &Mutation) -> Result<PathBuf> {
    let mutants = ws.layout.mutants_dir();
    let copy = mutants.join("ws");
    let dir_name = driver
        .dir
        .strip_prefix(&ws.root)
        .with_context(|| format!("{} is outside the workspace", driver.dir.display()))?
        .to_string_lossy()
        .replace('\\', "/");
    for e in &mutation.edits {
        if !driver.dir.join(&e.file).is_file() {
            bail!(
                "{}: no file {} in {}",
                mutation.name,
                e.file,
                driver.dir.display()
            );
        }
    }
    crate::commands::test::scratch::workspace(
        &ws.root,
        &copy,
        &["common", &dir_name],
        &|member, path, bytes| {
            if member != dir_name || !mutation.edits.iter().any(|e| e.file == path) {
                return Ok(bytes);
            }
            let text = String::from_utf8(bytes).with_context(|| format!("{path} is not UTF-8"))?;
            Ok(apply(&text, path, &mutation.edits)?.into_bytes())
        },
    )?;
    let target = mutants.join("target");
    super::seed::workspace_builds(ws, &target, &[(Arch::X64, Profile::Debug)]);
    let triple = Arch::X64.triple();
    let mut cmd = Command::new(cargo());
    cmd.current_dir(&copy)
        .env("CARGO_TARGET_DIR", &target)
        .args([
            "build",
            "--offline",
            "-p",
            driver.package(),
            "--target",
            triple,
        ]);
    if !driver.features().is_empty() {
        cmd.args(["--features", &driver.features().join(",")]);
    }
    let (status, _) =
        crate::base::process::run_teeing_stderr(&mut cmd, |line| eprintln!("    {line}"))?;
    if !status.success() {
        bail!("cargo build of the mutant failed ({status})");
    }
    let image = target
        .join(triple)
        .join("debug")
        .join(format!("{}.dll", driver.package().replace('-', "_")));
    if !image.is_file() {
        bail!("the mutant built, but there is no {}", image.display());
    }
    Ok(image)
}

/// Problems with the README ↔ mutation links: a mutation its driver's README does not name, or a
/// `xtask/mutations/NAME.toml` a README names that does not exist.
pub fn readme_problems(ws: &Workspace, mutations: &[Mutation]) -> Vec<String> {
    let mut problems = Vec::new();
    let drivers = ws.select(&[]).unwrap_or_default();
    for d in &drivers {
        let readme = d.dir.join("README.md");
        let Ok(text) = std::fs::read_to_string(&readme) else {
            continue;
        };
        for named in names_in(&text) {
            if !mutations.iter().any(|m| m.name == named) {
                problems.push(format!(
                    "{} names xtask/mutations/{named}.toml, which does not exist",
                    readme.display()
                ));
            }
        }
        for m in mutations.iter().filter(|m| m.driver == d.name) {
            if !names_in(&text).contains(&m.name) {
                problems.push(format!(
                    "{} does not name xtask/mutations/{}.toml (the lesson it proves: {})",
                    readme.display(),
                    m.name,
                    m.lesson
                ));
            }
        }
    }
    for m in mutations {
        if !drivers.iter().any(|d| d.name == m.driver) {
            problems.push(format!("mutation {}: no driver named {}", m.name, m.driver));
        }
    }
    problems
}

/// The mutation names a README mentions as `xtask/mutations/NAME.toml`.
fn names_in(text: &str) -> Vec<String> {
    const PREFIX: &str = "xtask/mutations/";
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(PREFIX) {
        rest = &rest[at + PREFIX.len()..];
        if let Some(end) = rest.find(".toml") {
            let name = &rest[..end];
            if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                names.push(name.to_owned());
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn edit(find: &str, replace: &str) -> Edit {
        Edit {
            file: "src/lib.rs".into(),
            find: find.into(),
            replace: replace.into(),
        }
    }

    #[test]
    fn an_edit_applies_exactly_once_or_not_at_all() {
        let text = "a barrier; b; c";
        assert_eq!(
            apply(text, "src/lib.rs", &[edit("barrier", "nothing")]).unwrap(),
            "a nothing; b; c"
        );
        assert_eq!(
            apply(text, "other.rs", &[edit("barrier", "nothing")]).unwrap(),
            text,
            "edits of another file do not apply"
        );
        let e = apply(text, "src/lib.rs", &[edit("gone", "x")]).unwrap_err();
        assert!(e.to_string().contains("0 time(s)"), "{e}");
        let e = apply("b b", "src/lib.rs", &[edit("b", "x")]).unwrap_err();
        assert!(e.to_string().contains("2 time(s)"), "{e}");
    }

    #[test]
    fn a_mutation_needs_an_edit_and_an_expected_failure() {
        let good = json!({
            "driver": "ex-callback", "lesson": "l",
            "edit": [{"file": "src/lib.rs", "find": "a", "replace": ""}],
            "expect": {"fault_sweep": false, "rules": ["rule"]}
        });
        let m = parse("m", &good).unwrap();
        assert_eq!(
            (m.driver.as_str(), m.edits.len(), m.expect.fault_sweep),
            ("ex-callback", 1, false)
        );
        let mut no_edit = good.clone();
        no_edit["edit"] = json!([]);
        assert!(parse("m", &no_edit).is_err());
        let mut no_rule = good.clone();
        no_rule["expect"] = json!({"fault_sweep": false, "failures": ["x"]});
        assert!(
            parse("m", &no_rule)
                .unwrap_err()
                .to_string()
                .contains("name the rule")
        );
        let mut no_lesson = good;
        no_lesson["lesson"] = json!("");
        assert!(parse("m", &no_lesson).is_err());
    }

    #[test]
    fn readme_names_are_found() {
        let text = "proven by `xtask/mutations/ex-no-barrier.toml` and xtask/mutations/x.toml; not xtask/mutations/.toml";
        assert_eq!(names_in(text), ["ex-no-barrier", "x"]);
    }
}
