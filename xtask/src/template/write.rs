//! Writing a new driver ([`Generated`]) into a workspace, all or nothing, or into a standalone
//! copy of the workspace (`cargo xtask new --path`).

use std::fs;
use std::path::Path;

use super::generate::{Generated, add_member};
use super::identity::{self, Source};
use crate::base::error::{Context, Result, bail};

/// Refuses a new driver whose folder or mutation files exist already under `root`.
pub fn check_free(root: &Path, generated: &Generated) -> Result<()> {
    let dir = root.join(&generated.choices.name);
    if dir.exists() {
        bail!(
            "{} exists: choose another name (nothing was written)",
            dir.display()
        );
    }
    for (rel, _) in &generated.files {
        if !rel.starts_with(&generated.choices.name) && root.join(rel).exists() {
            bail!(
                "{} exists: remove it or choose another name (nothing was written)",
                root.join(rel).display()
            );
        }
    }
    Ok(())
}

/// Writes `generated` into the workspace at `root`: the crate is written into a temporary folder
/// beside its destination, checked against the workspace's `sources` (identity check), then
/// renamed into place; then its mutation files and the root `Cargo.toml`'s members (each written
/// to a temporary file and renamed).
pub fn write(root: &Path, generated: &Generated, sources: &[Source]) -> Result<()> {
    check_free(root, generated)?;
    let name = &generated.choices.name;
    let dest = root.join(name);
    let staged = driver_package::files::staging_dir_beside(&dest)?;
    let result = (|| -> Result<()> {
        let mut inx = Vec::new();
        for (rel, bytes) in &generated.files {
            let Ok(in_crate) = rel.strip_prefix(name) else {
                continue;
            };
            let to = staged.join(in_crate);
            if let Some(parent) = to.parent() {
                fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            fs::write(&to, bytes).with_context(|| format!("writing {}", to.display()))?;
            if to.extension().is_some_and(|e| e == "inx") {
                inx.push(to);
            }
        }
        let mut all = sources.to_vec();
        all.push(Source {
            name: name.clone(),
            dir: staged.clone(),
            inx,
        });
        identity::check(root, &all)?;
        format_sources(root, &staged)?;
        let manifest = fs::read_to_string(root.join("Cargo.toml"))
            .with_context(|| format!("reading {}", root.join("Cargo.toml").display()))?;
        let manifest = add_member(&manifest, name)?;
        fs::rename(&staged, &dest)
            .with_context(|| format!("renaming {} to {}", staged.display(), dest.display()))?;
        for (rel, bytes) in &generated.files {
            if !rel.starts_with(name) {
                crate::base::files::write_atomic(&root.join(rel), bytes)?;
            }
        }
        crate::base::files::write_atomic(&root.join("Cargo.toml"), manifest.as_bytes())
    })();
    if result.is_err() && staged.exists() {
        let _ = fs::remove_dir_all(&staged);
    }
    result
}

/// Formats the new crate's sources with rustfmt (run in `root`, so its toolchain and settings
/// apply): a longer name can move a line past the width, and the gate runs `cargo fmt --check`.
fn format_sources(root: &Path, crate_dir: &Path) -> Result<()> {
    let lib = crate_dir.join("src/lib.rs");
    if !lib.is_file() {
        return Ok(());
    }
    let out = std::process::Command::new("rustfmt")
        .args(["--edition", "2024"])
        .arg(&lib)
        .current_dir(root)
        .output()
        .context("running rustfmt on the new crate (rustup component add rustfmt)")?;
    if !out.status.success() {
        bail!(
            "rustfmt failed on {}:\n{}",
            lib.display(),
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    Ok(())
}

/// A standalone workspace at `dest` (which must not exist): the tracked files of the workspace
/// at `root` (`git ls-files`: `common`, `xtask`, the samples its tests use, the docs they cite),
/// with `generated` added (checked against `sources`, the workspace's drivers, as copied) and a git repository initialised (files added, not committed), assembled
/// in a temporary folder beside `dest` and renamed into place.
pub fn write_standalone(
    root: &Path,
    dest: &Path,
    generated: &Generated,
    sources: &[Source],
) -> Result<()> {
    if dest.exists() {
        bail!(
            "{} exists: give --path a folder that does not exist yet (nothing was written)",
            dest.display()
        );
    }
    let listed = std::process::Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root)
        .output()
        .context("running `git ls-files` (is git on PATH?)")?;
    if !listed.status.success() {
        bail!(
            "`git ls-files` failed in {}: --path copies the workspace's tracked files, so it needs              the git checkout of the workspace",
            root.display()
        );
    }
    let staged = driver_package::files::staging_dir_beside(dest)?;
    let result = (|| -> Result<()> {
        for rel in listed.stdout.split(|b| *b == 0).filter(|r| !r.is_empty()) {
            let rel = Path::new(std::str::from_utf8(rel).context("a tracked file's name")?);
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
        // The new driver, checked against the copied workspace's drivers.
        let sources = copied_sources(root, &staged, sources);
        write(&staged, generated, &sources)?;
        let git = std::process::Command::new("git")
            .args(["init", "-q"])
            .current_dir(&staged)
            .status()
            .context("running `git init`")?;
        let add = std::process::Command::new("git")
            .args(["add", "-A"])
            .current_dir(&staged)
            .status()
            .context("running `git add`")?;
        if !git.success() || !add.success() {
            bail!("`git init` / `git add -A` failed in {}", staged.display());
        }
        fs::rename(&staged, dest)
            .with_context(|| format!("renaming {} to {}", staged.display(), dest.display()))
    })();
    if result.is_err() && staged.exists() {
        let _ = fs::remove_dir_all(&staged);
    }
    result
}

/// The driver folders `sources` of the workspace at `root`, as copied to `copy`.
fn copied_sources(root: &Path, copy: &Path, sources: &[Source]) -> Vec<Source> {
    sources
        .iter()
        .cloned()
        .filter_map(|s| {
            let rel = s.dir.strip_prefix(root).ok()?.to_path_buf();
            Some(Source {
                name: s.name,
                dir: copy.join(&rel),
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
#[path = "write_tests.rs"]
mod tests;
