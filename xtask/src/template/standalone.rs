//! A standalone workspace for a new driver (`cargo xtask new NAME --path DIR`): the new driver,
//! `common`, `driver-package`, `xtask` (its test fixtures included: the `fixtures` stage proves
//! the emulated kernel's audit on them) and the root files they need, and nothing of the samples.
//!
//! The files are chosen from the workspace's tracked files (`git ls-files`), so a build output or
//! an untracked scratch never travels; the samples' mutations (`xtask/mutations/`) stay behind,
//! the new driver's own are written with it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::generate::Generated;
use super::identity::Source;
use crate::base::error::{Context, Error, Result, bail};

/// The folders a standalone workspace holds besides the new driver.
pub const FOLDERS: [&str; 4] = ["common", "driver-package", "xtask", "docs"];

/// The root files it holds (its `Cargo.toml` and `README.md` are written for it).
pub const ROOT_FILES: [&str; 7] = [
    "Cargo.lock",
    "rust-toolchain.toml",
    ".cargo/config.toml",
    ".gitignore",
    ".ci/run",
    "Makefile.toml",
    "ARCHITECTURE.md",
];

/// What stays behind although it is under [`FOLDERS`]: the samples' mutations.
const LEFT_BEHIND: [&str; 1] = ["xtask/mutations/"];

/// Whether the tracked file `rel` (with `/`) goes into a standalone workspace.
pub fn travels(rel: &str) -> bool {
    let in_folder = FOLDERS
        .iter()
        .any(|f| rel.strip_prefix(f).is_some_and(|r| r.starts_with('/')));
    (in_folder || ROOT_FILES.contains(&rel)) && !LEFT_BEHIND.iter().any(|l| rel.starts_with(l))
}

/// The tracked files of the workspace at `root` (`git ls-files`), relative, with `/`.
pub fn tracked(root: &Path) -> Result<Vec<String>> {
    let listed = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root)
        .output()
        .context("running `git ls-files` (is git on PATH?)")?;
    if !listed.status.success() {
        bail!(
            "`git ls-files` failed in {}: --path copies the workspace's tracked files, so it \
             needs the git checkout of the workspace",
            root.display()
        );
    }
    let text = String::from_utf8(listed.stdout).context("a tracked file's name is not UTF-8")?;
    Ok(text
        .split('\0')
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .collect())
}

/// The root `Cargo.toml` of the standalone workspace: the members of `manifest` that travel
/// (`common`, `driver-package`, `xtask`, the fixtures) and `name`, in that order with `name` before
/// `xtask`.
pub fn manifest(manifest: &str, name: &str) -> Result<String> {
    let mut out = String::new();
    let mut done = false;
    for line in manifest.lines() {
        if let Some(list) = line.strip_prefix("members = [") {
            let list = list.trim_end().trim_end_matches(']');
            let mut members: Vec<String> = Vec::new();
            for m in list.split(',').map(|m| m.trim().trim_matches('"')) {
                if m == "xtask" {
                    members.push(name.to_owned());
                }
                if !m.is_empty() && travels(&format!("{m}/Cargo.toml")) {
                    members.push(m.to_owned());
                }
            }
            if !members.iter().any(|m| m == name) {
                members.push(name.to_owned());
            }
            let quoted: Vec<String> = members.iter().map(|m| format!("\"{m}\"")).collect();
            out.push_str("members = [");
            out.push_str(&quoted.join(", "));
            out.push_str("]\n");
            done = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !done {
        bail!("the workspace Cargo.toml has no `members = [...]` line to cut down");
    }
    Ok(out)
}

/// The standalone workspace's README: what it is, its two commands, where to read on. The
/// `## Commands` block is the workspace README's, as the command table makes it.
pub fn readme(workspace_readme: &str, generated: &Generated, template: &str) -> Result<String> {
    let name = &generated.choices.name;
    let commands = section(workspace_readme, "## Commands")
        .and_then(|s| {
            let start = s.find("```")?;
            let end = start + 3 + s[start + 3..].find("```")? + 3;
            Some(s[start..end].to_owned())
        })
        .ok_or_else(|| {
            Error::new("the workspace README has no ```-block under `## Commands` to copy")
        })?;
    let prerequisites = section(workspace_readme, "## Prerequisites").ok_or_else(|| {
        Error::new("the workspace README has no `## Prerequisites` section to copy")
    })?;
    Ok(format!(
        "# {name}\n\n\
         A Windows kernel driver in Rust, made from the `{template}` sample of windows-callback-drivers \
         by `cargo xtask new {name} --from {template} --path …`: [`{name}`]({name}/README.md) (its \
         README says what was made fresh and what to change first), the `common` support crate, \
         `driver-package` (test-signing and packaging) and `xtask`, the host tool that builds, \
         lints, signs, packages, emulates, deploys and tests it. How they fit: \
         [ARCHITECTURE.md](ARCHITECTURE.md).\n\n\
         {prerequisites}\n\
         ## First commands\n\
         ```\n\
         cargo xtask deploy\n\
         cargo xtask test\n\
         ```\n\
         `deploy` with no target builds the driver, lints the image, signs and packages it, and \
         runs it in the emulated kernel with its `scenario.toml`, printing its log and the audit. \
         `test` runs everything: the code's rules, host unit tests, builds for x64 and arm64, the \
         lint, the packages verified, the emulation with its fault sweep, the drivers broken on \
         purpose (`xtask/fixtures/`) that the audit must catch, and the lessons the driver's README \
         claims broken in a copy (`xtask/mutations/`). It ends with `N passed, M failed`.\n\n\
         ## Commands\n\
         {commands}\n\
         `cargo xtask help COMMAND` describes each; the reports `--json` prints are described in \
         [docs/reports/](docs/reports/README.md).\n\n\
         ## Deploy to a VM\n\
         `cargo xtask deploy --target ssh://user@host` (or `--target hyperv:VM`) installs the \
         signed package on a Windows test VM and runs the driver's `deploy.toml` probe; \
         `--dry-run` prints the plan. `cargo xtask help deploy` lists the VM's one-time setup.\n"
    ))
}

/// The text of the `heading` section of a Markdown document (heading line included), up to the
/// next heading of the same level.
fn section<'a>(text: &'a str, heading: &str) -> Option<&'a str> {
    let start = text.find(&format!("\n{heading}\n"))? + 1;
    let body = &text[start + heading.len() + 1..];
    let end = body
        .find("\n## ")
        .map_or(text.len(), |e| start + heading.len() + 1 + e + 1);
    Some(&text[start..end])
}

/// A standalone workspace at `dest` (which must not exist): the tracked files of the workspace
/// at `root` that [`travel`](travels), its `Cargo.toml` cut down ([`manifest`]), a README of its
/// own ([`readme`]), and `generated` written into it (checked against `sources`, the drivers that
/// travel: the fixtures); `Cargo.lock` pruned by `cargo update --workspace --offline`; a git repository
/// initialised with every file added, not committed. Assembled in a temporary folder beside
/// `dest` and renamed into place.
pub fn write(
    root: &Path,
    dest: &Path,
    generated: &Generated,
    template: &str,
    sources: &[Source],
) -> Result<()> {
    if dest.exists() {
        bail!(
            "{} exists: give --path a folder that does not exist yet (nothing was written)",
            dest.display()
        );
    }
    let files = tracked(root)?;
    let staged = driver_package::files::staging_dir_beside(dest)?;
    let result = (|| -> Result<()> {
        for rel in files.iter().filter(|r| travels(r)) {
            let from = root.join(rel);
            if !from.is_file() {
                continue; // deleted in the work tree
            }
            let to = staged.join(rel);
            if let Some(parent) = to.parent() {
                fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            fs::copy(&from, &to).with_context(|| format!("copying {}", from.display()))?;
        }
        let read = |f: &str| {
            fs::read_to_string(root.join(f))
                .with_context(|| format!("reading {}", root.join(f).display()))
        };
        let name = &generated.choices.name;
        let cut = manifest(&read("Cargo.toml")?, name)?;
        // `write` adds `name` to the members itself: give it the manifest without it.
        let without: String = cut.replace(&format!("\"{name}\", "), "");
        fs::write(staged.join("Cargo.toml"), without).context("writing Cargo.toml")?;
        fs::write(
            staged.join("README.md"),
            readme(&read("README.md")?, generated, template)?,
        )
        .context("writing README.md")?;
        fs::create_dir_all(staged.join("xtask/mutations")).context("creating xtask/mutations")?;
        let sources = copied_sources(root, &staged, sources);
        super::write::write(&staged, generated, &sources)?;
        let manifest_now =
            fs::read_to_string(staged.join("Cargo.toml")).context("reading Cargo.toml")?;
        if manifest_now != cut {
            bail!("the standalone Cargo.toml came out as\n{manifest_now}\nnot\n{cut}");
        }
        // Cargo.lock without the packages that stayed behind (what the first build would write),
        // every other version kept.
        cargo(&staged, &["update", "--workspace", "--offline", "--quiet"])?;
        let members = metadata_members(&staged)?;
        let mut expected = expected_members(&cut)?;
        expected.sort();
        if members != expected {
            bail!(
                "cargo metadata in the standalone workspace lists the members {members:?}, not {expected:?}"
            );
        }
        git(&staged, &["init", "-q"])?;
        git(&staged, &["add", "-A"])?;
        fs::rename(&staged, dest)
            .with_context(|| format!("renaming {} to {}", staged.display(), dest.display()))
    })();
    if result.is_err() && staged.exists() {
        let _ = fs::remove_dir_all(&staged);
    }
    result
}

/// The member folders a cut-down manifest lists.
fn expected_members(manifest: &str) -> Result<Vec<String>> {
    let line = manifest
        .lines()
        .find_map(|l| l.strip_prefix("members = ["))
        .ok_or_else(|| Error::new("the cut-down Cargo.toml has no members line"))?;
    Ok(line
        .trim_end_matches(']')
        .split(',')
        .map(|m| m.trim().trim_matches('"').to_owned())
        .filter(|m| !m.is_empty())
        .collect())
}

/// The workspace members `cargo metadata --offline` finds in `dir` (their folders relative to it,
/// sorted).
pub fn metadata_members(dir: &Path) -> Result<Vec<String>> {
    let doc = crate::base::workspace::metadata(dir)?;
    let root = PathBuf::from(doc["workspace_root"].as_str().unwrap_or_default());
    let mut members: Vec<String> = doc["packages"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|p| {
            let manifest = Path::new(p["manifest_path"].as_str()?);
            let dir = manifest.parent()?.strip_prefix(&root).ok()?;
            Some(dir.to_string_lossy().replace('\\', "/"))
        })
        .collect();
    members.sort();
    Ok(members)
}

fn cargo(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new(crate::base::workspace::cargo())
        .args(args)
        .current_dir(dir)
        .output()
        .with_context(|| format!("running `cargo {}`", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`cargo {}` failed in {}:\n{}",
            args.join(" "),
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    Ok(())
}

fn git(dir: &Path, args: &[&str]) -> Result<()> {
    let status = Command::new("git")
        .args(args)
        .current_dir(dir)
        .status()
        .with_context(|| format!("running `git {}`", args.join(" ")))?;
    if !status.success() {
        bail!("`git {}` failed in {}", args.join(" "), dir.display());
    }
    Ok(())
}

/// The drivers of `sources` (the workspace at `root`) that travel, as copied to `copy`.
fn copied_sources(root: &Path, copy: &Path, sources: &[Source]) -> Vec<Source> {
    sources
        .iter()
        .filter_map(|s| {
            let rel = s.dir.strip_prefix(root).ok()?;
            if !travels(&format!(
                "{}/Cargo.toml",
                rel.to_string_lossy().replace('\\', "/")
            )) {
                return None;
            }
            Some(Source {
                name: s.name.clone(),
                dir: copy.join(rel),
                inx: s
                    .inx
                    .iter()
                    .filter_map(|i| Some(copy.join(i.strip_prefix(root).ok()?)))
                    .collect(),
            })
        })
        .collect()
}

#[cfg(test)]
#[path = "standalone_tests.rs"]
mod tests;
