//! System tools the test suite runs that rustup and Python do not bring (osslsigncode, sshd).
//!
//! The README's commands must work on a fresh machine with only Rust and Python: where a tool is
//! missing and this process may install packages (root, with apt-get), it installs the tool, saying
//! so; otherwise the error names the package and the command to install it.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Once;

use crate::base::error::{Error, Result};

/// A program found on PATH. On Windows a name without an extension is looked for with each of
/// PATHEXT's extensions in turn (`ssh` is `ssh.exe`), as cmd.exe does
/// (https://learn.microsoft.com/windows-server/administration/windows-commands/path).
pub fn find_on_path(program: &str) -> Option<PathBuf> {
    let pathext = if cfg!(windows) {
        Some(std::env::var("PATHEXT").unwrap_or_else(|_| DEFAULT_PATHEXT.to_owned()))
    } else {
        None
    };
    find_in(
        std::env::var_os("PATH")?.as_os_str(),
        pathext.as_deref(),
        program,
    )
}

/// PATHEXT's value when it is unset (Windows' default, shortened to the executables).
const DEFAULT_PATHEXT: &str = ".COM;.EXE;.BAT;.CMD";

/// `program` in the folders of `path`: as it is, then (with `pathext`, `.EXE;.CMD`) with each of
/// those extensions when it has none of them.
fn find_in(path: &std::ffi::OsStr, pathext: Option<&str>, program: &str) -> Option<PathBuf> {
    let exts: Vec<&str> = pathext
        .map(|p| p.split(';').filter(|e| e.starts_with('.')).collect())
        .unwrap_or_default();
    let has_ext = exts.iter().any(|e| {
        program.len() > e.len()
            && program.is_char_boundary(program.len() - e.len())
            && program[program.len() - e.len()..].eq_ignore_ascii_case(e)
    });
    std::env::split_paths(path).find_map(|d| {
        if pathext.is_none() || has_ext {
            let p = d.join(program);
            return p.is_file().then_some(p);
        }
        exts.iter()
            .map(|e| d.join(format!("{program}{}", e.to_ascii_lowercase())))
            .chain(exts.iter().map(|e| d.join(format!("{program}{e}"))))
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

    #[test]
    fn pathext_extensions_are_tried_in_order() {
        let dir = std::env::temp_dir().join(format!("xtask-pathext-{}", std::process::id()));
        let (a, b) = (dir.join("a"), dir.join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(a.join("tool.cmd"), "").unwrap();
        std::fs::write(b.join("tool.exe"), "").unwrap();
        std::fs::write(b.join("plain"), "").unwrap();
        let path = std::env::join_paths([&a, &b]).unwrap();
        let found = |ext: Option<&str>, name: &str| find_in(&path, ext, name);
        // The first folder wins, with any of PATHEXT's extensions.
        assert_eq!(found(Some(".EXE;.CMD"), "tool"), Some(a.join("tool.cmd")));
        assert_eq!(found(Some(".EXE"), "tool"), Some(b.join("tool.exe")));
        // A name that carries an extension of PATHEXT is taken as it is.
        assert_eq!(
            found(Some(".EXE;.CMD"), "tool.exe"),
            Some(b.join("tool.exe"))
        );
        // Without PATHEXT (Unix) only the exact name is found; with it, not the bare name.
        assert_eq!(found(None, "tool"), None);
        assert_eq!(found(None, "plain"), Some(b.join("plain")));
        assert_eq!(found(Some(".EXE;.CMD"), "plain"), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
