//! Writing a new driver ([`Generated`]) into a workspace, all or nothing (a standalone workspace
//! for it: [`standalone`](super::standalone)).

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

#[cfg(test)]
#[path = "write_tests.rs"]
mod tests;
