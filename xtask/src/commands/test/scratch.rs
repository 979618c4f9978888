//! Scratch workspaces: a copy of the workspace cut down to a few members, for code that must be
//! built or checked changed on purpose (the gate's negatives, the mutation check).
//!
//! Files are written only when their content differs, so cargo's fingerprints survive between
//! runs and a second build of the same copy is incremental.

use std::path::Path;

use crate::base::error::{Context, Result, bail};
use crate::base::lockfile::Lockfile;

/// What a member's file becomes in the copy: `(member, path in the member, bytes) -> bytes`.
pub type MemberTransform<'a> = &'a dyn Fn(&str, &str, Vec<u8>) -> Result<Vec<u8>>;

/// What a file becomes in a mirrored folder: `(path in the folder, bytes) -> bytes`.
pub type FileTransform<'a> = &'a dyn Fn(&str, Vec<u8>) -> Result<Vec<u8>>;

/// A scratch copy of the workspace at `root` in `to`: the root manifest with its members cut down
/// to `members` (folders relative to `root`) and without the profile overrides of packages the
/// copy does not build (cargo would warn of each at every build), the lock, the toolchain file,
/// `.cargo/config.toml` where the copy needs its own ([`own_cargo_config`]), and each member's
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
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).context("reading Cargo.lock")?;
    let reached = packages_reached(root, members, &Lockfile::parse(&lock)?)?;
    let manifest = without_other_overrides(&manifest_of(&manifest, members)?, &reached);
    sync(&to.join("Cargo.toml"), manifest.as_bytes())?;
    for file in ["Cargo.lock", "rust-toolchain.toml"] {
        let bytes = std::fs::read(root.join(file)).with_context(|| format!("reading {file}"))?;
        sync(&to.join(file), &bytes)?;
    }
    let config = to.join(".cargo").join("config.toml");
    match own_cargo_config(root, to)? {
        Some(text) => sync(&config, text.as_bytes())?,
        None => crate::base::files::remove_if_exists(&config)?,
    }
    for member in members {
        mirror(&root.join(member), &to.join(member), &|path, bytes| {
            transform(member, path, bytes)
        })?;
    }
    Ok(())
}

/// What a copy of the workspace at `root` made in `to` needs of the workspace's
/// `.cargo/config.toml` (the kernel link configuration) in a file of its own: nothing when `to` is
/// inside `root`, else its text. Cargo reads the `.cargo/config.toml` of every folder above the
/// one it runs in and joins their arrays: a copy inside the workspace (under its target directory)
/// already gets the workspace's, and a second one would give every build its rustflags twice (link
/// arguments repeated, and every unit, windows-sys included, a different one from the real
/// build's).
///
/// # Errors
/// The workspace's `.cargo/config.toml` cannot be read.
pub fn own_cargo_config(root: &Path, to: &Path) -> Result<Option<String>> {
    if to.starts_with(root) {
        return Ok(None);
    }
    std::fs::read_to_string(root.join(".cargo").join("config.toml"))
        .context("reading .cargo/config.toml")
        .map(Some)
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

/// The packages a copy with `members` (folders under `root`) builds: the members, by the names
/// their manifests give, and every package their dependencies reach in `lock` (Cargo.lock).
///
/// # Errors
/// A member manifest that cannot be read as TOML.
fn packages_reached(
    root: &Path,
    members: &[&str],
    lock: &Lockfile,
) -> Result<std::collections::BTreeSet<String>> {
    use toml::Value;
    let graph: std::collections::BTreeMap<&str, Vec<&str>> = lock
        .package
        .iter()
        .map(|p| (p.name.as_str(), p.dependency_names().collect()))
        .collect();
    let mut todo = Vec::new();
    for member in members {
        let path = root.join(member).join("Cargo.toml");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let manifest: Value =
            toml::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
        let name = manifest.get("package").and_then(|p| p.get("name"));
        todo.extend(name.and_then(Value::as_str).map(str::to_owned));
        // Dependencies also come from the lock; the members' own cover one the lock lacks.
        for table in ["dependencies", "dev-dependencies", "build-dependencies"] {
            if let Some(deps) = manifest.get(table).and_then(Value::as_table) {
                todo.extend(deps.iter().map(|(key, spec)| {
                    spec.get("package")
                        .and_then(Value::as_str)
                        .unwrap_or(key)
                        .to_owned()
                }));
            }
        }
    }
    let mut reached = std::collections::BTreeSet::new();
    while let Some(name) = todo.pop() {
        if reached.insert(name.clone()) {
            let deps = graph.get(name.as_str()).into_iter().flatten();
            todo.extend(deps.map(|d| (*d).to_owned()));
        }
    }
    Ok(reached)
}

/// `manifest` without its `[profile.PROFILE.package.NAME]` tables for a NAME not in `reached`
/// (`"*"` stays): overrides that match nothing the copy builds.
fn without_other_overrides(manifest: &str, reached: &std::collections::BTreeSet<String>) -> String {
    let mut out = String::with_capacity(manifest.len());
    let mut skipping = false;
    for line in manifest.lines() {
        if line.starts_with('[') {
            skipping = override_name(line).is_some_and(|n| n != "*" && !reached.contains(n));
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// NAME of a `[profile.PROFILE.package.NAME]` header (quotes removed), else `None`.
fn override_name(header: &str) -> Option<&str> {
    let inner = header.trim().strip_prefix("[profile.")?.strip_suffix(']')?;
    let (_profile, name) = inner.split_once(".package.")?;
    Some(name.trim_matches('"'))
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
            ("common/Cargo.toml", "[package]\nname = \"common\"\n"),
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
    fn a_copy_keeps_the_profile_overrides_of_what_it_builds_only() {
        let root = crate::base::workspace::project_root();
        let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap();
        let lock = Lockfile::parse(&lock).unwrap();
        let reached = packages_reached(&root, &["common", "cm-filter"], &lock).unwrap();
        for p in ["common", "cm-filter", "windows-sys", "windows-link"] {
            assert!(reached.contains(p), "{p} missing from {reached:?}");
        }
        for p in [
            "xtask",
            "driver-package",
            "num-bigint-dig",
            "sha2",
            "ex-callback",
        ] {
            assert!(!reached.contains(p), "{p} in {reached:?}");
        }
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        let out = without_other_overrides(&manifest, &reached);
        assert!(
            out.contains("[profile.dev.package.\"*\"]\nopt-level = 0\n"),
            "{out}"
        );
        assert!(
            out.contains("[profile.dev.package.windows-sys]\nopt-level = 1\n"),
            "{out}"
        );
        assert!(!out.contains("[profile.dev.package.xtask]"), "{out}");
        assert!(!out.contains("[profile.dev.package.sha1]"), "{out}");
        // What follows a dropped table is kept.
        assert!(out.contains("[profile.host]\ninherits = \"dev\""), "{out}");
        assert!(out.contains("[profile.release]"), "{out}");
        assert_eq!(override_name("[profile.dev.package.\"*\"]"), Some("*"));
        assert_eq!(override_name("[profile.release]"), None);
        assert_eq!(override_name("[workspace.package]"), None);
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
