//! The emulator's Python: a venv under `target/emu-venv` holding `xtask/emu/requirements.lock`.
//!
//! The harness's dependencies are declared once, in `xtask/emu/requirements.in`; the lock pins
//! every file by its SHA-256 and is installed with `pip install --require-hashes`, so what runs is
//! exactly what the repository names. After a successful install, a marker file in the venv
//! records the lock's SHA-256; a venv whose marker is absent (a failed or interrupted install) or
//! names another lock is rebuilt.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::base::error::{Context, Error, Result, bail};
use crate::base::files;
use crate::base::process::{Stdout, elapsed, run_teeing, tail};

/// The lock, relative to the workspace root: every Python package of the venv with its hashes.
pub const LOCK: &str = "xtask/emu/requirements.lock";

/// The marker file, in the venv, written after a successful install.
const MARKER: &str = "xtask-installed.txt";

/// What to do with the venv.
#[derive(Debug, PartialEq, Eq)]
enum State {
    /// Installed with the pinned version.
    Ready,
    /// Nothing there: create it.
    Create,
    /// Something there, but not a complete install of the pinned version: remove and create.
    Rebuild,
}

fn state(venv_exists: bool, marker: Option<&str>, lock_id: &str, python_exists: bool) -> State {
    match (venv_exists, marker.map(str::trim)) {
        (false, _) => State::Create,
        (true, Some(m)) if m == lock_id && python_exists => State::Ready,
        (true, _) => State::Rebuild,
    }
}

/// What the marker records for `lock`: `sha256:<hex>` of its bytes.
fn lock_id(lock: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    use std::fmt::Write;
    let digest = Sha256::digest(lock);
    digest.iter().fold(String::from("sha256:"), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The venv's interpreter.
pub fn python_in(venv: &Path) -> PathBuf {
    if cfg!(windows) {
        venv.join("Scripts").join("python.exe")
    } else {
        venv.join("bin").join("python")
    }
}

/// Makes sure `venv` holds exactly the packages of `lock` (the workspace's [`LOCK`]),
/// installing them if needed; returns its Python.
pub fn ensure(venv: &Path, lock: &Path) -> Result<PathBuf> {
    let python = python_in(venv);
    let lock_bytes = fs::read(lock).with_context(|| format!("reading {}", lock.display()))?;
    let id = lock_id(&lock_bytes);
    let marker = fs::read_to_string(venv.join(MARKER)).ok();
    match state(venv.exists(), marker.as_deref(), &id, python.is_file()) {
        State::Ready => return Ok(python),
        State::Rebuild => {
            eprintln!(
                "  emulator venv {} is incomplete or not from the current {}: rebuilding it",
                venv.display(),
                lock.display()
            );
            fs::remove_dir_all(venv).with_context(|| format!("removing {}", venv.display()))?;
        }
        State::Create => {}
    }
    let start = Instant::now();
    eprintln!("  creating the emulator venv at {}...", venv.display());
    let host = host_python()?;
    let out = Command::new(&host)
        .args(["-m", "venv"])
        .arg(venv)
        .output()
        .with_context(|| format!("running `{host} -m venv`"))?;
    if !out.status.success() {
        let _ = fs::remove_dir_all(venv);
        return Err(venv_failure(
            &String::from_utf8_lossy(&out.stdout),
            &String::from_utf8_lossy(&out.stderr),
        ));
    }
    eprintln!(
        "  installing {} into it (hash-checked; a minute or two)...",
        lock.display()
    );
    let mut pip = Command::new(&python);
    pip.args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "--require-hashes",
        "--no-deps",
        "-r",
    ])
    .arg(lock);
    // pip reports on stdout: merge it, to show its milestones and keep all of it for a failure.
    let (status, output) = run_teeing(pip.env("PYTHONUNBUFFERED", "1"), Stdout::Merge, |line| {
        if is_pip_progress(line) {
            eprintln!("    pip: {}", line.trim());
        }
    })?;
    if !status.success() {
        // No marker: the next run starts over.
        bail!(
            "installing {} with pip failed ({status}). Is PyPI reachable? A hash mismatch means \
             a download differs from the lock. pip said:\n{}",
            lock.display(),
            tail(&output, 15)
        );
    }
    files::write_atomic(&venv.join(MARKER), format!("{id}\n").as_bytes())?;
    eprintln!("  emulator venv ready ({})", elapsed(start.elapsed()));
    Ok(python)
}

/// `python3` from PATH (or `$XTASK_PYTHON3`), checked to run.
fn host_python() -> Result<String> {
    let python = std::env::var("XTASK_PYTHON3").unwrap_or_else(|_| "python3".to_owned());
    check_python(&python)?;
    Ok(python)
}

/// Whether `python` runs.
fn check_python(python: &str) -> Result<()> {
    match Command::new(python).arg("--version").output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => bail!(
            "`{python} --version` failed: {}. Install Python 3 (https://www.python.org, or \
             Debian/Ubuntu: `apt install python3 python3-venv`)",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::new(format!(
            "no `{python}` on PATH: the emulator needs Python 3. Install it (Debian/Ubuntu: \
             `apt install python3 python3-venv`; macOS: `brew install python`; Windows: python.org)"
        ))),
        Err(e) => bail!("running `{python} --version`: {e}"),
    }
}

/// The error for a failed `python3 -m venv`, naming the fix when it is the usual one.
fn venv_failure(stdout: &str, stderr: &str) -> Error {
    let said = format!("{stdout}{stderr}");
    if said.contains("ensurepip is not")
        || said.contains("No module named venv")
        || said.contains("No module named ensurepip")
    {
        return Error::new(format!(
            "Python's venv module is missing: on Debian/Ubuntu run `apt install python3-venv` \
             (python3 -m venv said: {})",
            tail(said.trim(), 3)
        ));
    }
    Error::new(format!(
        "`python3 -m venv` failed:\n{}",
        tail(said.trim(), 15)
    ))
}

fn is_pip_progress(line: &str) -> bool {
    let line = line.trim_start();
    [
        "Collecting ",
        "Installing collected",
        "Successfully installed",
        "Building wheel",
        "ERROR",
    ]
    .iter()
    .any(|p| line.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn venv_state_follows_the_marker() {
        let id = lock_id(b"speakeasy-emulator==1.5.11 --hash=sha256:00\n");
        assert_eq!(state(false, None, &id, false), State::Create);
        assert_eq!(
            state(true, Some(&format!("{id}\n")), &id, true),
            State::Ready
        );
        // A pip install that failed or was interrupted wrote no marker.
        assert_eq!(state(true, None, &id, true), State::Rebuild);
        // The lock changed since the venv was made.
        let other = lock_id(b"speakeasy-emulator==1.5.9 --hash=sha256:00\n");
        assert_ne!(other, id);
        assert_eq!(state(true, Some(&other), &id, true), State::Rebuild);
        // A venv whose interpreter vanished (Python upgraded underneath it).
        assert_eq!(state(true, Some(&id), &id, false), State::Rebuild);
    }

    #[test]
    fn the_lock_pins_every_package_by_hash() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let lock = fs::read_to_string(root.join(LOCK)).unwrap();
        let mut packages = 0;
        for entry in lock
            .split('\n')
            .filter(|l| !l.starts_with([' ', '#']) && !l.is_empty())
        {
            assert!(entry.contains("=="), "not pinned to one version: {entry}");
            packages += 1;
        }
        assert!(packages > 0);
        // Each requirement is followed by at least one `--hash=sha256:` line.
        let hashed = lock.matches("\\\n    --hash=sha256:").count();
        assert!(
            hashed >= packages,
            "{hashed} hashes for {packages} packages"
        );
        assert!(lock.contains("speakeasy-emulator=="));
    }

    #[test]
    fn debian_without_python3_venv_gets_the_apt_fix() {
        let stdout = "The virtual environment was not created successfully because ensurepip is not\n\
                      available.  On Debian/Ubuntu systems, you need to install the python3-venv\n\
                      package using the following command.\n";
        let e = venv_failure(stdout, "").to_string();
        assert!(e.contains("apt install python3-venv"), "{e}");
        let other = venv_failure("", "Error: [Errno 13] Permission denied: '/x'").to_string();
        assert!(
            other.contains("Permission denied") && !other.contains("apt"),
            "{other}"
        );
    }

    #[test]
    fn pip_progress_lines_are_the_milestones() {
        assert!(is_pip_progress("Collecting speakeasy-emulator==1.5.11"));
        assert!(is_pip_progress("Successfully installed unicorn-2.0.1"));
        assert!(!is_pip_progress(
            "  Downloading unicorn-2.0.1.whl (16.4 MB)"
        ));
    }

    #[test]
    fn ensure_with_a_ready_marker_does_not_touch_python() {
        let venv = std::env::temp_dir().join(format!("xtask-venv-ready-{}", std::process::id()));
        let python = python_in(&venv);
        fs::create_dir_all(python.parent().unwrap()).unwrap();
        fs::write(&python, "").unwrap();
        let lock = venv.join("requirements.lock");
        fs::write(&lock, "x==1\n").unwrap();
        fs::write(venv.join(MARKER), lock_id(b"x==1\n")).unwrap();
        assert_eq!(ensure(&venv, &lock).unwrap(), python);
        fs::remove_dir_all(&venv).unwrap();
    }

    #[test]
    fn missing_python_names_the_install() {
        let e = check_python("/nonexistent/python3-xtask")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no `/nonexistent/python3-xtask` on PATH") && e.contains("Install it"),
            "{e}"
        );
        check_python("python3").unwrap();
    }
}
