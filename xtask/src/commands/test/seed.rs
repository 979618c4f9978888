//! A scratch copy's target directory started with the workspace's builds of the crates.io
//! dependencies (windows-sys, windows-link), so the copy does not compile them again: about 5 s of
//! CPU per target on a fresh clone (windows-sys), three times in a `cargo xtask test` (the
//! mutations stage's x64, the templates stage's x64 and arm64).
//!
//! Why a copy has a target directory of its own: cargo names the build of a crate of the workspace
//! after its path from the workspace's root, so a copy's `common` and the workspace's would be one
//! build, and the sources cargo watches for changes would be whichever copy built it last
//! (`templates::copy_target_dir`). A crates.io dependency's build is named after the registry,
//! its version, features, profile, target and compiler flags, all the same in a copy (its
//! manifest's profiles and its `.cargo/config.toml` are the workspace's, `scratch.rs`).
//!
//! How: cargo keeps each build under `TRIPLE/PROFILE/` as files named `NAME-HASH`: its fingerprint
//! (`.fingerprint/NAME-HASH/`) and its outputs (`deps/libCRATE-HASH.rlib`, `.rmeta`,
//! `CRATE-HASH.d`). Those of each registry package are copied where the copy has none, each
//! written whole (temporary file and rename), outputs first and fingerprint last, with their
//! modification times, which cargo compares, and under cargo's lock of each of the two folders
//! (`.cargo-lock`, which cargo holds for a whole build), so never from or into a build in progress. Cargo checks each build's fingerprint before it uses
//! it, so a copied build the copy would not have made is compiled again, as without the seed: the
//! seed saves time and never changes a build. The layout is cargo's own and may change (the Cargo
//! Book, "Build Cache": its structure is an internal detail); then nothing matches and the copy
//! compiles its dependencies itself.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use crate::base::error::{Context, Result};
use crate::base::files;
use crate::base::layout::{Arch, Profile};
use crate::base::lockfile::{Locked, Lockfile};
use crate::base::workspace::Workspace;

/// [`registry_builds`] from the workspace `ws` into the scratch target directory `to`. A seed that
/// fails is said and the copy goes on without it (it compiles those dependencies itself).
pub fn workspace_builds(ws: &Workspace, to: &Path, outs: &[(Arch, Profile)]) {
    let seeded = fs::read_to_string(ws.root.join("Cargo.lock"))
        .context("reading Cargo.lock")
        .and_then(|lock| registry_builds(&lock, &ws.layout.target_dir, to, outs));
    if let Err(e) = seeded {
        println!(
            "  note: {} starts without the workspace's builds of its dependencies: {e}",
            to.display()
        );
    }
}

/// Copies the workspace's builds (under `from`, its target directory) of the registry packages in
/// `lock` (Cargo.lock's text) for each of `outs` into the target directory `to`, where `to` has
/// no build of that name. Returns how many builds were copied.
///
/// # Errors
/// The lock is not TOML; a file cannot be read or written.
pub fn registry_builds(
    lock: &str,
    from: &Path,
    to: &Path,
    outs: &[(Arch, Profile)],
) -> Result<usize> {
    let registry = registry_packages(lock)?;
    let mut copied = 0;
    for (arch, profile) in outs {
        let rel = Path::new(arch.triple()).join(profile.dir());
        let (from, to) = (from.join(&rel), to.join(&rel));
        let Ok(entries) = fs::read_dir(from.join(".fingerprint")) else {
            continue;
        };
        // Under cargo's own locks of both folders (`.cargo-lock`, held for a whole build): never
        // a build in progress, never into one.
        let _from = files::lock(&from.join(".cargo-lock"))?;
        let _to = files::lock(&to.join(".cargo-lock"))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((package, hash)) = name.rsplit_once('-') else {
                continue;
            };
            if !registry.contains(package) || to.join(".fingerprint").join(&name).exists() {
                continue;
            }
            let outputs = |e: &fs::DirEntry| {
                let f = e.file_name().to_string_lossy().into_owned();
                f.contains(&format!("-{hash}."))
            };
            copy_files(&from.join("deps"), &to.join("deps"), &outputs)?;
            copy_files(&entry.path(), &to.join(".fingerprint").join(&name), &|_| {
                true
            })?;
            copied += 1;
        }
    }
    Ok(copied)
}

/// The packages `lock` takes from a registry (crates.io), by name.
fn registry_packages(lock: &str) -> Result<BTreeSet<String>> {
    Ok(Lockfile::parse(lock)?
        .package
        .into_iter()
        .filter(Locked::is_from_registry)
        .map(|p| p.name)
        .collect())
}

/// Copies the files of `from` that `pick` accepts into `to`, each whole and with its modification
/// time.
fn copy_files(from: &Path, to: &Path, pick: &dyn Fn(&fs::DirEntry) -> bool) -> Result<()> {
    let entries = fs::read_dir(from).with_context(|| format!("reading {}", from.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_file() || !pick(&entry) {
            continue;
        }
        let dest = to.join(entry.file_name());
        files::copy_atomic(&path, &dest)?;
        let modified = entry
            .metadata()
            .and_then(|m| m.modified())
            .with_context(|| format!("reading the time of {}", path.display()))?;
        fs::File::options()
            .write(true)
            .open(&dest)
            .and_then(|f| f.set_modified(modified))
            .with_context(|| format!("setting the time of {}", dest.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    const LOCK: &str = r#"
version = 4

[[package]]
name = "common"
version = "0.1.0"
dependencies = ["windows-sys"]

[[package]]
name = "windows-sys"
version = "0.61.2"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "00"

[[package]]
name = "windows-link"
version = "0.2.1"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "00"
"#;

    fn write(path: &Path, text: &str, time: SystemTime) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
        fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(time)
            .unwrap();
    }

    #[test]
    fn registry_builds_are_copied_with_their_times_and_the_workspaces_own_are_not() {
        let dir = std::env::temp_dir().join(format!("xtask-seed-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let (from, to) = (dir.join("from"), dir.join("to"));
        let out = Path::new("x86_64-pc-windows-msvc/debug");
        let (sys, link) = (
            "windows-sys-0123456789abcdef",
            "windows-link-aaaaaaaaaaaaaaaa",
        );
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for file in [
            format!(".fingerprint/{sys}/lib-windows_sys"),
            format!(".fingerprint/{sys}/dep-lib-windows_sys"),
            "deps/libwindows_sys-0123456789abcdef.rlib".to_owned(),
            "deps/libwindows_sys-0123456789abcdef.rmeta".to_owned(),
            "deps/windows_sys-0123456789abcdef.d".to_owned(),
            format!(".fingerprint/{link}/lib-windows_link"),
            "deps/libwindows_link-aaaaaaaaaaaaaaaa.rlib".to_owned(),
            ".fingerprint/common-fedcba9876543210/lib-common".to_owned(),
            "deps/libcommon-fedcba9876543210.rlib".to_owned(),
        ] {
            write(&from.join(out).join(&file), &file, old);
        }
        let copied = |file: &str| to.join(out).join(file);
        // A build the copy made itself stays as it is.
        let mine = copied(&format!(".fingerprint/{link}/lib-windows_link"));
        write(&mine, "mine", SystemTime::now());
        let outs = [
            (Arch::X64, Profile::Debug),
            (Arch::X64, Profile::Release), // nothing built there: nothing to copy
        ];

        assert_eq!(registry_builds(LOCK, &from, &to, &outs).unwrap(), 1);
        for file in [
            format!(".fingerprint/{sys}/dep-lib-windows_sys"),
            "deps/libwindows_sys-0123456789abcdef.rlib".to_owned(),
            "deps/windows_sys-0123456789abcdef.d".to_owned(),
        ] {
            assert_eq!(fs::read_to_string(copied(&file)).unwrap(), file);
            assert_eq!(
                fs::metadata(copied(&file)).unwrap().modified().unwrap(),
                old
            );
        }
        assert_eq!(fs::read_to_string(&mine).unwrap(), "mine");
        assert!(!copied("deps/libwindows_link-aaaaaaaaaaaaaaaa.rlib").exists());
        assert!(!copied(".fingerprint/common-fedcba9876543210").exists());
        assert!(!copied("deps/libcommon-fedcba9876543210.rlib").exists());
        // Seeded once: a second call finds the build there.
        assert_eq!(registry_builds(LOCK, &from, &to, &outs).unwrap(), 0);
        let _ = fs::remove_dir_all(&dir);
    }
}
