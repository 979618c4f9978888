//! The host crates' tests, compiled by clippy-driver: one compilation serves the gate's clippy of
//! the host crates and the host stage's `cargo test`.
//!
//! `cargo clippy` is `cargo check` with clippy-driver as the compiler of the workspace's members
//! (`RUSTC_WORKSPACE_WRAPPER`; clippy's `src/main.rs`). A check builds every dependency again, as
//! metadata of its own that no build reuses: for xtask's dependencies that was about 40 s of CPU,
//! a sixth of `cargo xtask test`'s (measured, ARCHITECTURE.md "Build profiles"). clippy-driver is
//! rustc with clippy's lints registered, and it compiles as rustc does when cargo asks for code
//! (Firefox lints its whole build this way, `build/cargo-clippy-wrapper`). So `cargo test --profile
//! host` runs with it as the members' compiler: it lints common, driver-package and xtask (their
//! libraries, binaries and tests: what `cargo clippy --all-targets` checks) while it compiles
//! the tests, on the dependencies the first `cargo xtask` built in the same profile. The gate
//! builds that way ([`lint`]: any warning fails it, as `-D warnings` would), the host stage runs the
//! tests of the same build ([`cargo_test`]), and the deploy stage's loopback tests too; whichever
//! comes first compiles, the others find it done. Cargo keeps the artifacts clippy-driver made
//! apart from rustc's (the wrapper is part of their hash), so `cargo xtask` itself is not rebuilt.
//!
//! Where the toolchain has no clippy (the toolchain stage, beside which the host stage runs,
//! installs it), the host stage's tests build with plain rustc: the same tests, not linted.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

use crate::base::error::{Error, Result, bail};
use crate::base::process::tail;
use crate::base::toolchain::{Env, Toolchain};
use crate::base::workspace::cargo;

/// The host crates: tested on the host, and linted there.
pub const CRATES: [&str; 3] = ["common", "driver-package", "xtask"];

/// The toolchain's clippy-driver in `root` (rust-toolchain.toml applies there), if installed.
pub fn clippy_driver(root: &Path) -> Option<PathBuf> {
    let toolchain = Toolchain::of_workspace(root, &Env::default()).ok()?;
    let exe = if cfg!(windows) { ".exe" } else { "" };
    let driver = toolchain
        .sysroot
        .join("bin")
        .join(format!("clippy-driver{exe}"));
    driver.is_file().then_some(driver)
}

/// `cargo test --profile host -p CRATE...` in `root`, its members compiled by `driver` when given
/// (then it lints as it compiles; see the module's documentation). `args` follow (e.g. `--lib`,
/// `--no-run`, or `--` and the test binary's arguments).
pub fn cargo_test(root: &Path, crates: &[&str], driver: Option<&Path>, args: &[&str]) -> Command {
    let mut cmd = Command::new(cargo());
    cmd.args(["test", "--profile", "host"]);
    for c in crates {
        cmd.args(["-p", c]);
    }
    cmd.args(args).current_dir(root);
    if let Some(driver) = driver {
        cmd.env("RUSTC_WORKSPACE_WRAPPER", driver);
    }
    cmd
}

/// The gate's clippy of `crates` in `root`: their tests compiled by clippy-driver (`cargo test
/// --no-run`, into `target_dir` when given). Fails on any warning or error, rustc's or clippy's,
/// with the compiler's own words: the rules of `cargo clippy --all-targets -- -D warnings`. Cargo
/// replays the warnings of what it had already compiled, so a build the host stage made first is
/// judged the same.
///
/// # Errors
/// No clippy-driver; cargo could not run; the code has findings.
pub fn lint(root: &Path, crates: &[&str], target_dir: Option<&Path>) -> Result<()> {
    let Some(driver) = clippy_driver(root) else {
        bail!(
            "the toolchain has no clippy-driver: `rustup component add clippy` (the toolchain stage of \
             `cargo xtask test` adds it)"
        );
    };
    let mut cmd = cargo_test(
        root,
        crates,
        Some(&driver),
        &["--no-run", "--message-format=json"],
    );
    if let Some(dir) = target_dir {
        cmd.env("CARGO_TARGET_DIR", dir);
    }
    let out = cmd
        .output()
        .map_err(|e| Error::new(format!("running cargo test --no-run: {e}")))?;
    let findings = findings(&String::from_utf8_lossy(&out.stdout));
    if findings.is_empty() && out.status.success() {
        return Ok(());
    }
    let what = format!(
        "clippy -p {} --all-targets -- -D warnings",
        crates.join(" -p ")
    );
    if findings.is_empty() {
        bail!(
            "{what}: the build failed:\n{}",
            tail(String::from_utf8_lossy(&out.stderr).trim(), 30)
        );
    }
    bail!(
        "{what} found problems (fix them, or allow a lint where the code says why):\n{}",
        tail(findings.join("\n").trim(), 60)
    )
}

/// A line of cargo's `--message-format=json`, the fields read here.
#[derive(Deserialize)]
struct CargoMessage {
    reason: String,
    message: Option<Diagnostic>,
}

/// A compiler diagnostic (rustc's JSON output).
#[derive(Deserialize)]
struct Diagnostic {
    level: String,
    rendered: Option<String>,
    #[serde(default)]
    spans: Vec<serde_json::Value>,
}

/// The warnings and errors in cargo's JSON messages, as the compiler rendered them, each once (a
/// library's warning comes again from its test build). Summaries without a place in the code
/// ("2 warnings emitted", "aborting due to …") are not findings of their own.
fn findings(json_lines: &str) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for line in json_lines.lines().filter(|l| l.starts_with('{')) {
        let Ok(m) = serde_json::from_str::<CargoMessage>(line) else {
            continue;
        };
        let Some(d) = m.message.filter(|_| m.reason == "compiler-message") else {
            continue;
        };
        if !matches!(d.level.as_str(), "warning" | "error") || d.spans.is_empty() {
            continue;
        }
        if let Some(text) = d.rendered.filter(|r| !seen.contains(r)) {
            seen.push(text);
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(level: &str, rendered: &str, spans: bool) -> String {
        let spans = if spans {
            r#"[{"file_name":"src/lib.rs"}]"#
        } else {
            "[]"
        };
        serde_json::json!({
            "reason": "compiler-message",
            "package_id": "path+file:///ws/common#0.1.0",
            "message": {
                "level": level,
                "rendered": rendered,
                "spans": serde_json::from_str::<serde_json::Value>(spans).unwrap(),
            }
        })
        .to_string()
    }

    #[test]
    fn warnings_and_errors_are_findings_once_and_summaries_are_not() {
        let lines = [
            r#"{"reason":"compiler-artifact","package_id":"x"}"#.to_owned(),
            message("warning", "warning: unneeded `return` statement\n", true),
            message("warning", "warning: unneeded `return` statement\n", true),
            message("warning", "warning: 1 warning emitted\n", false),
            message(
                "error",
                "error: item in documentation is missing backticks\n",
                true,
            ),
            message("note", "note: a note\n", true),
            "   Compiling common v0.1.0".to_owned(),
            r#"{"reason":"build-finished","success":false}"#.to_owned(),
        ];
        let found = findings(&lines.join("\n"));
        assert_eq!(
            found,
            vec![
                "warning: unneeded `return` statement\n".to_owned(),
                "error: item in documentation is missing backticks\n".to_owned(),
            ]
        );
        assert!(findings(r#"{"reason":"build-finished","success":true}"#).is_empty());
    }

    #[test]
    fn the_command_is_cargo_test_in_the_host_profile_with_the_wrapper_when_given() {
        let root = Path::new("/ws");
        let plain = cargo_test(root, &CRATES, None, &["--no-run"]);
        let args: Vec<_> = plain
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "test",
                "--profile",
                "host",
                "-p",
                "common",
                "-p",
                "driver-package",
                "-p",
                "xtask",
                "--no-run"
            ]
        );
        assert!(
            plain
                .get_envs()
                .all(|(k, _)| k != "RUSTC_WORKSPACE_WRAPPER")
        );
        let linted = cargo_test(
            root,
            &["xtask"],
            Some(Path::new("/tc/bin/clippy-driver")),
            &[],
        );
        let wrapper = linted
            .get_envs()
            .find(|(k, _)| *k == "RUSTC_WORKSPACE_WRAPPER")
            .and_then(|(_, v)| v);
        assert_eq!(
            wrapper,
            Some(Path::new("/tc/bin/clippy-driver").as_os_str())
        );
    }
}
