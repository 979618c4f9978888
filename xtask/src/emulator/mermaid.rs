//! Mermaid's own parser for the diagrams (`diagram.rs`): the `mermaid` npm package pinned by
//! xtask/mermaid/package-lock.json, installed with `npm ci` into target/mermaid/ when Node and npm
//! are on PATH, run by xtask/mermaid/parse.mjs (mermaid.parse, headless: a sequence diagram parses
//! without a DOM). Without Node or npm the check cannot run: the caller counts it as skipped.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::base::error::{Context, Result, bail};
use crate::base::files;
use crate::base::process::{self, Options};
use crate::base::tools::find_on_path;
use crate::base::workspace::Workspace;

/// The files of the checker, as committed (xtask/mermaid/).
const FILES: [&str; 3] = ["package.json", "package-lock.json", "parse.mjs"];

/// A diagram Mermaid's parser must reject (the negative test): a message with no receiver.
const BROKEN: &str = "sequenceDiagram\n    participant D as Driver\n    D->>: no receiver\n";

/// Mermaid's parser, ready to run.
pub struct Parser {
    node: PathBuf,
    dir: PathBuf,
}

#[derive(Serialize)]
struct Input<'a> {
    name: &'a str,
    text: &'a str,
}

#[derive(Deserialize)]
struct Output {
    name: String,
    error: Option<String>,
}

/// Why the parser cannot run here (no Node or npm), or the parser, installed (`npm ci`, once per
/// lock file) in target/mermaid/.
///
/// # Errors
/// Node and npm are there but the install failed (the message shows npm's output).
pub fn prepare(ws: &Workspace) -> Result<std::result::Result<Parser, String>> {
    let (node, npm) = match programs(find_on_path("node"), find_on_path("npm")) {
        Ok(found) => found,
        Err(why) => return Ok(Err(why)),
    };
    let source = ws.root.join("xtask").join("mermaid");
    let dir = ws.layout.mermaid_dir();
    let lock = std::fs::read(source.join("package-lock.json"))
        .with_context(|| format!("reading {}", source.join("package-lock.json").display()))?;
    let stamp = dir.join("node_modules").join(".xtask-lock");
    for name in FILES {
        files::copy_atomic(&source.join(name), &dir.join(name))?;
    }
    if std::fs::read(&stamp).ok().as_deref() != Some(lock.as_slice()) {
        eprintln!(
            "  installing Mermaid's parser (npm ci) into {}...",
            dir.display()
        );
        let out = process::run(
            Command::new(&npm)
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&dir),
            Options {
                timeout: Some(Duration::from_mins(10)),
                ..Options::default()
            },
        )?;
        if !out.status.is_some_and(|s| s.success()) {
            bail!(
                "`npm ci` in {} failed (the registry unreachable?): {}",
                dir.display(),
                process::tail(&String::from_utf8_lossy(&out.stderr), 10)
            );
        }
        files::write_atomic(&stamp, &lock)?;
    }
    Ok(Ok(Parser { node, dir }))
}

/// Node and npm, or why the check is skipped.
fn programs(
    node: Option<PathBuf>,
    npm: Option<PathBuf>,
) -> std::result::Result<(PathBuf, PathBuf), String> {
    match (node, npm) {
        (Some(node), Some(npm)) => Ok((node, npm)),
        (node, _) => Err(format!(
            "{} not on PATH: install Node.js 18 or newer (with npm) to check the diagrams with \
             Mermaid's parser",
            if node.is_none() {
                "Node.js is"
            } else {
                "npm is"
            }
        )),
    }
}

impl Parser {
    /// Parses each `(name, diagram)`: the error message of each one that does not parse, in order.
    ///
    /// # Errors
    /// Node could not run the parser, or answered something else than one verdict per diagram.
    pub fn parse(&self, diagrams: &[(String, String)]) -> Result<Vec<(String, Option<String>)>> {
        let input: Vec<Input<'_>> = diagrams
            .iter()
            .map(|(name, text)| Input { name, text })
            .collect();
        let json = serde_json::to_vec(&input).context("writing the diagrams as JSON")?;
        let out = process::run(
            Command::new(&self.node)
                .arg("parse.mjs")
                .current_dir(&self.dir),
            Options {
                stdin: Some(&json),
                timeout: Some(Duration::from_mins(2)),
                ..Options::default()
            },
        )?;
        if !out.status.is_some_and(|s| s.success()) {
            bail!(
                "Mermaid's parser (node {}/parse.mjs) failed: {}",
                self.dir.display(),
                process::tail(&String::from_utf8_lossy(&out.stderr), 10)
            );
        }
        let verdicts: Vec<Output> = serde_json::from_slice(&out.stdout)
            .context("Mermaid's parser answered something that is not its JSON verdicts")?;
        if verdicts.len() != diagrams.len() {
            bail!(
                "Mermaid's parser answered {} verdicts for {} diagrams",
                verdicts.len(),
                diagrams.len()
            );
        }
        Ok(verdicts.into_iter().map(|v| (v.name, v.error)).collect())
    }

    /// The negative test: a broken diagram must be rejected, else the parser checks nothing.
    ///
    /// # Errors
    /// The parser accepted it (or could not run).
    pub fn rejects_a_broken_diagram(&self) -> Result<()> {
        let verdict = self.parse(&[("a broken diagram".to_owned(), BROKEN.to_owned())])?;
        match verdict.first() {
            Some((_, Some(_))) => Ok(()),
            _ => bail!("Mermaid's parser accepted a broken diagram: it would let any diagram pass"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_node_or_npm_the_check_says_why_it_is_skipped() {
        let why = programs(None, Some("npm".into())).unwrap_err();
        assert!(
            why.starts_with("Node.js is not on PATH: install Node.js"),
            "{why}"
        );
        let why = programs(Some("node".into()), None).unwrap_err();
        assert!(why.starts_with("npm is not on PATH"), "{why}");
        assert!(programs(Some("node".into()), Some("npm".into())).is_ok());
    }
}
