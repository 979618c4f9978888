//! Files are never left half-written: everything is written to a temporary file beside its
//! destination and renamed over it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::base::error::{Context, Result};

/// Writes `bytes` to `dest` through a temporary file and a rename, creating the parent folders.
/// (A secret, a package folder: `driver_package::files`.)
pub fn write_atomic(dest: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_beside(dest)?;
    let result = (|| {
        let mut f =
            fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
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

/// Copies `src` to `dest` through a temporary file and a rename, creating the parent folders.
pub fn copy_atomic(src: &Path, dest: &Path) -> Result<()> {
    let tmp = temp_beside(dest)?;
    let result = fs::copy(src, &tmp)
        .with_context(|| format!("copying {} to {}", src.display(), tmp.display()))
        .and_then(|_| rename(&tmp, dest));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes `path` if it exists.
pub fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
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
        let d = std::env::temp_dir().join(format!("xtask-files-{name}-{}", std::process::id()));
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

    #[test]
    fn copy_atomic_of_a_missing_source_fails_and_leaves_the_old_destination() {
        let d = scratch("copy");
        let dest = d.join("x.sys");
        write_atomic(&dest, b"old").unwrap();
        let e = copy_atomic(&d.join("missing.dll"), &dest)
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.dll"), "{e}");
        assert_eq!(fs::read(&dest).unwrap(), b"old");
        assert_eq!(fs::read_dir(&d).unwrap().count(), 1);
        remove_if_exists(&dest).unwrap();
        remove_if_exists(&dest).unwrap();
        fs::remove_dir_all(&d).unwrap();
    }
}
