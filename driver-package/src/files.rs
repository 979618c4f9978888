//! Files are never left half-written: everything is written to a temporary file beside its
//! destination and renamed over it; a package folder is assembled beside its destination and
//! swapped in whole.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Context, Result};

/// Writes `bytes` to `dest` through a temporary file and a rename, creating the parent folders.
pub fn write_atomic(dest: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(dest, bytes, false)
}

/// Like [`write_atomic`], for a secret (a private key): on Unix the file is created with mode
/// 0600 before anything is written to it, so it is never readable by others, not even briefly.
pub fn write_atomic_private(dest: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(dest, bytes, true)
}

fn write_atomic_with(dest: &Path, bytes: &[u8], private: bool) -> Result<()> {
    let tmp = temp_beside(dest)?;
    let result = (|| {
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        #[cfg(not(unix))]
        let _ = private;
        let mut f = options
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.sync_all()
            .with_context(|| format!("writing {}", tmp.display()))?;
        rename(&tmp, dest)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A fresh, empty folder beside `dest` (same parent, so it can be renamed over `dest`), named
/// after it; a leftover of an earlier, interrupted run of ours is removed first.
pub fn staging_dir_beside(dest: &Path) -> Result<PathBuf> {
    let staged = temp_beside(dest)?;
    if staged.exists() {
        fs::remove_dir_all(&staged).with_context(|| format!("removing {}", staged.display()))?;
    }
    fs::create_dir(&staged).with_context(|| format!("creating {}", staged.display()))?;
    Ok(staged)
}

/// Puts the complete folder `staged` (from [`staging_dir_beside`]) in place of `dest`: the old
/// `dest` is renamed aside, `staged` renamed to `dest`, then the old one removed. Readers see the
/// old folder or the new one, never a mix; if the second rename fails the old one is put back.
pub fn replace_dir(staged: &Path, dest: &Path) -> Result<()> {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let aside = dest.with_file_name(format!(".{name}.{}.old", std::process::id()));
    if aside.exists() {
        fs::remove_dir_all(&aside).with_context(|| format!("removing {}", aside.display()))?;
    }
    let had_old = dest.exists();
    if had_old {
        rename(dest, &aside)?;
    }
    if let Err(e) = rename(staged, dest) {
        if had_old {
            let _ = fs::rename(&aside, dest);
        }
        return Err(e);
    }
    if had_old {
        fs::remove_dir_all(&aside).with_context(|| format!("removing {}", aside.display()))?;
    }
    Ok(())
}

fn rename(tmp: &Path, dest: &Path) -> Result<()> {
    fs::rename(tmp, dest)
        .with_context(|| format!("renaming {} to {}", tmp.display(), dest.display()))
}

/// `dest`'s folder (created) and a name in it that no other process of ours uses.
fn temp_beside(dest: &Path) -> Result<PathBuf> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(dir.join(format!(".{name}.{}.tmp", std::process::id())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "driver-package-files-{name}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn write_atomic_creates_folders_replaces_and_leaves_no_temp() {
        let d = scratch("write");
        let f = d.join("a/b/out.txt");
        write_atomic(&f, b"one").unwrap();
        write_atomic(&f, b"two").unwrap();
        assert_eq!(fs::read(&f).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(f.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("out.txt")]);
        fs::remove_dir_all(&d).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn private_files_are_owner_only_from_the_start() {
        use std::os::unix::fs::PermissionsExt;
        let d = scratch("private");
        let f = d.join("key.pem");
        write_atomic_private(&f, b"secret").unwrap();
        assert_eq!(
            fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn replace_dir_swaps_whole_folders() {
        let d = scratch("replace");
        let dest = d.join("pkg");
        for content in [&b"one"[..], b"two"] {
            let staged = staging_dir_beside(&dest).unwrap();
            write_atomic(&staged.join("a.sys"), content).unwrap();
            replace_dir(&staged, &dest).unwrap();
            assert_eq!(fs::read(dest.join("a.sys")).unwrap(), content);
        }
        let names: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("pkg")]);
        fs::remove_dir_all(&d).unwrap();
    }
}
