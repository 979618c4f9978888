//! Files are never left half-written: everything is written to a temporary file beside its
//! destination and renamed over it. The mechanism is driver-package's (`driver_package::files`,
//! which also writes secrets and swaps package folders); this module gives it xtask's errors.

use std::fs;
use std::path::Path;

use crate::base::error::{Context, Result};

/// Writes `bytes` to `dest` through a temporary file and a rename, creating the parent folders.
pub fn write_atomic(dest: &Path, bytes: &[u8]) -> Result<()> {
    Ok(driver_package::files::write_atomic(dest, bytes)?)
}

/// Copies `src` to `dest` through a temporary file and a rename, creating the parent folders.
pub fn copy_atomic(src: &Path, dest: &Path) -> Result<()> {
    let bytes = fs::read(src)
        .with_context(|| format!("copying {} to {}", src.display(), dest.display()))?;
    write_atomic(dest, &bytes)
}

/// An exclusive lock on a file, held until dropped (`File::lock`: flock(2) on Unix, LockFileEx on
/// Windows). Two xtask processes that take the same one run what it guards one after the other.
#[derive(Debug)]
pub struct Lock {
    _file: fs::File,
}

/// Takes the exclusive lock on `path` (created, with its folder, if missing), waiting while another
/// process holds it.
///
/// # Errors
/// The file cannot be created or locked.
pub fn lock(path: &Path) -> Result<Lock> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening the lock file {}", path.display()))?;
    file.lock()
        .with_context(|| format!("locking {}", path.display()))?;
    Ok(Lock { _file: file })
}

/// Removes `path` if it exists.
pub fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

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

    #[test]
    fn a_lock_excludes_another_holder_until_dropped() {
        let d = scratch("lock");
        let path = d.join("sub/x.lock");
        let held = lock(&path).unwrap();
        let other = fs::OpenOptions::new().write(true).open(&path).unwrap();
        assert!(
            other.try_lock().is_err(),
            "a second holder got the lock while the first held it"
        );
        drop(held);
        // Free once dropped. A child another test is starting at this moment may still hold a
        // copy of the descriptor, between its fork and its exec (the descriptor is close-on-exec):
        // that copy shares the lock for a moment, so it is taken within a deadline, not at once.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while let Err(e) = other.try_lock() {
            assert!(
                std::time::Instant::now() < deadline,
                "the lock stayed held after its holder was dropped: {e}"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // A lock file that cannot be made (its folder is a file) is an error naming it.
        fs::write(d.join("blocker"), b"").unwrap();
        let e = lock(&d.join("blocker/x.lock")).unwrap_err().to_string();
        assert!(e.contains("blocker"), "{e}");
        fs::remove_dir_all(&d).unwrap();
    }
}
