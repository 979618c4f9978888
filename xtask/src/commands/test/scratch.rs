//! Scratch workspaces: a copy of the workspace cut down to a few members, for code that must be
//! built or checked changed on purpose (the gate's negatives, the mutation check).
//!
//! Files are written only when their content differs, so cargo's fingerprints survive between
//! runs and a second build of the same copy is incremental.

use std::path::Path;

use crate::base::error::{Context, Result, bail};

/// What a member's file becomes in the copy: `(member, path in the member, bytes) -> bytes`.
pub type MemberTransform<'a> = &'a dyn Fn(&str, &str, Vec<u8>) -> Result<Vec<u8>>;

/// What a file becomes in a mirrored folder: `(path in the folder, bytes) -> bytes`.
pub type FileTransform<'a> = &'a dyn Fn(&str, Vec<u8>) -> Result<Vec<u8>>;

/// A scratch copy of the workspace at `root` in `to`: the root manifest with its members cut down
/// to `members` (folders relative to `root`), the lock, the toolchain file, `.cargo/config.toml`
/// (unless `to` is inside `root`, where cargo reads the workspace's own), and each member's
/// files, each passed through `transform(member, path in member, bytes)`.
///
/// # Errors
/// A file that cannot be read or written, or a manifest without a `members = [...]` line.
pub fn workspace(
    root: &Path,
    to: &Path,
    members: &[&str],
    transform: MemberTransform<'_>,
) -> Result<()> {
    let manifest =
        std::fs::read_to_string(root.join("Cargo.toml")).context("reading Cargo.toml")?;
    sync(
        &to.join("Cargo.toml"),
        manifest_of(&manifest, members)?.as_bytes(),
    )?;
    for file in ["Cargo.lock", "rust-toolchain.toml"] {
        let bytes = std::fs::read(root.join(file)).with_context(|| format!("reading {file}"))?;
        sync(&to.join(file), &bytes)?;
    }
    // Cargo reads the `.cargo/config.toml` of every folder above the one it runs in and joins
    // their arrays: a copy inside the workspace (under its target directory) already gets the
    // workspace's, and a second one would give every build its rustflags twice (link arguments
    // repeated, and every unit, windows-sys included, a different one from the real build's).
    let config = Path::new(".cargo").join("config.toml");
    if to.starts_with(root) {
        crate::base::files::remove_if_exists(&to.join(&config))?;
    } else {
        let bytes = std::fs::read(root.join(&config)).context("reading .cargo/config.toml")?;
        sync(&to.join(&config), &bytes)?;
    }
    for member in members {
        mirror(&root.join(member), &to.join(member), &|path, bytes| {
            transform(member, path, bytes)
        })?;
    }
    Ok(())
}

/// The root `Cargo.toml` with its members cut down to `members` (`common` first if present) and
/// `common` as the only default member.
pub fn manifest_of(manifest: &str, members: &[&str]) -> Result<String> {
    let list = members
        .iter()
        .map(|m| format!("\"{m}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = String::new();
    let mut replaced = false;
    for line in manifest.lines() {
        if line.starts_with("members = ") {
            out.push_str("members = [");
            out.push_str(&list);
            out.push_str("]\n");
            replaced = true;
        } else if line.starts_with("default-members = ") {
            out.push_str("default-members = [\"common\"]\n");
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !replaced {
        bail!("the workspace Cargo.toml has no `members = [...]` line to cut down");
    }
    Ok(out)
}

/// Copies the files under `from` to `to` (skipping `target` and `__pycache__`), each through
/// `transform(path relative to from, with '/', bytes)`.
///
/// # Errors
/// A file that cannot be read, transformed or written.
pub fn mirror(from: &Path, to: &Path, transform: FileTransform<'_>) -> Result<()> {
    mirror_under(from, to, Path::new(""), transform)
}

fn mirror_under(from: &Path, to: &Path, rel: &Path, transform: FileTransform<'_>) -> Result<()> {
    for entry in std::fs::read_dir(from).with_context(|| format!("listing {}", from.display()))? {
        let entry = entry.with_context(|| format!("listing {}", from.display()))?;
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name == "__pycache__" {
            continue;
        }
        let rel = rel.join(&name);
        if path.is_dir() {
            mirror_under(&path, &to.join(&name), &rel, transform)?;
        } else {
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let key = rel.to_string_lossy().replace('\\', "/");
            sync(&to.join(&name), &transform(&key, bytes)?)?;
        }
    }
    Ok(())
}

/// Writes `content` to `path` unless it already holds exactly that (keeps cargo's fingerprints).
///
/// # Errors
/// The folder or the file cannot be written.
pub fn sync(path: &Path, content: &[u8]) -> Result<()> {
    if std::fs::read(path).ok().as_deref() == Some(content) {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    crate::base::files::write_atomic(path, content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_inside_the_workspace_reads_its_cargo_config_and_has_none_of_its_own() {
        let base =
            std::env::temp_dir().join(format!("xtask-scratch-config-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let root = base.join("root");
        for (file, text) in [
            ("Cargo.toml", "[workspace]\nmembers = [\"common\"]\n"),
            ("Cargo.lock", "# lock\n"),
            ("rust-toolchain.toml", "[toolchain]\n"),
            (".cargo/config.toml", "[build]\nrustflags = [\"-Cx\"]\n"),
            ("common/src/lib.rs", "//! c\n"),
        ] {
            std::fs::create_dir_all(root.join(file).parent().unwrap()).unwrap();
            std::fs::write(root.join(file), text).unwrap();
        }
        let inside = root.join("target").join("copy");
        // A copy an older xtask made with the config, then made again.
        std::fs::create_dir_all(inside.join(".cargo")).unwrap();
        std::fs::write(inside.join(".cargo/config.toml"), "stale").unwrap();
        workspace(&root, &inside, &["common"], &|_, _, b| Ok(b)).unwrap();
        assert!(!inside.join(".cargo/config.toml").exists());
        assert!(inside.join("common/src/lib.rs").is_file());
        let outside = base.join("elsewhere");
        workspace(&root, &outside, &["common"], &|_, _, b| Ok(b)).unwrap();
        assert_eq!(
            std::fs::read_to_string(outside.join(".cargo/config.toml")).unwrap(),
            "[build]\nrustflags = [\"-Cx\"]\n"
        );
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn the_scratch_workspace_has_only_its_members() {
        let manifest = "[workspace]\nresolver = \"2\"\nmembers = [\"common\", \"a\", \"b\"]\ndefault-members = [\"common\", \"xtask\"]\n";
        let out = manifest_of(manifest, &["common", "b"]).unwrap();
        assert!(out.contains("members = [\"common\", \"b\"]\n"));
        assert!(out.contains("default-members = [\"common\"]\n"));
        assert!(!out.contains("\"a\""));
        assert!(manifest_of("[workspace]\n", &["common", "b"]).is_err());
    }
}
