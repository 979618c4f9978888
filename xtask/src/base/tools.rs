//! System tools the test suite runs that rustup and Python do not bring (osslsigncode, sshd).
//!
//! The README's commands must work on a fresh machine with only Rust and Python: where a tool is
//! missing and this process may install packages (root, with apt-get), it installs the tool, saying
//! so; otherwise the error names the package and the command to install it.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Once;

use crate::base::error::{Error, Result};

/// A program found on PATH.
pub fn find_on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

/// `program` from PATH, installing Debian's `package` first if it is missing and we may.
///
/// # Errors
/// The tool is missing and could not be installed: the message says how to install it.
pub fn ensure(program: &str, package: &str, purpose: &str) -> Result<PathBuf> {
    if let Some(found) = find_on_path(program) {
        return Ok(found);
    }
    let fix = format!(
        "{program} was not found on PATH ({purpose}); install it (Debian/Ubuntu: `apt-get install {package}`; \
         macOS: `brew install {package}`)"
    );
    if !may_install() {
        return Err(Error::new(fix));
    }
    eprintln!("  {program} is missing: installing Debian's {package} (apt-get)...");
    apt_update_once();
    let status = Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends", package])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
    match status {
        Ok(s) if s.success() => {}
        _ => {
            return Err(Error::new(format!(
                "{fix}; `apt-get install -y {package}` failed"
            )));
        }
    }
    find_on_path(program).ok_or_else(|| {
        Error::new(format!(
            "{fix}; {package} installed but {program} is still not on PATH"
        ))
    })
}

/// Root with apt-get: the machines this project builds on (and CI).
fn may_install() -> bool {
    find_on_path("apt-get").is_some()
        && Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn apt_update_once() {
    static UPDATE: Once = Once::new();
    UPDATE.call_once(|| {
        let _ = Command::new("apt-get")
            .args(["update", "-qq"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_on_path_are_found_and_missing_ones_are_not() {
        assert!(find_on_path("sh").is_some());
        assert!(find_on_path("no-such-program-xtask-test").is_none());
    }
}
