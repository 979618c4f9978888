//! The host crates' tests, compiled by clippy-driver: one compilation serves the gate's clippy of
//! the host crates and the host stage's `cargo test`.
//!
//! `cargo clippy` is `cargo check` with clippy-driver as the compiler of the workspace's members
//! (`RUSTC_WORKSPACE_WRAPPER`; clippy's `src/main.rs`). A check builds every dependency again, as
//! metadata of its own that no build reuses: for xtask's dependencies that was about 40 s of CPU
//! (measured, ARCHITECTURE.md "The host crates linted as their tests compile"). clippy-driver is
//! rustc with clippy's lints registered, and it compiles as rustc does when cargo asks for code
//! (Firefox lints its whole build this way, `build/cargo-clippy-wrapper`). So `cargo test
//! --profile host` runs with it as the members' compiler: it lints common, driver-package and
//! xtask while it compiles their tests, on the dependencies the first `cargo xtask` built in the
//! same profile. The gate builds that way ([`lint`]: any warning fails it, as `-D warnings` would),
//! the host stage runs the tests of the same build ([`run`]), and the deploy stage's loopback
//! tests too ([`cargo_test`]); whichever comes first compiles, the others find it done. Cargo keeps
//! what clippy-driver compiled apart from rustc's (the wrapper is part of the units' hash), so
//! `cargo xtask` itself is not rebuilt.
//!
//! One exception ([`Targets`]): a crate with a binary (xtask) keeps its integration tests, which
//! run that binary, on rustc. Cargo builds a crate's binaries for its integration tests, and built
//! by clippy-driver, xtask's binary would replace the `target/host/xtask` that is running this
//! very test (on Windows, where a running program cannot be replaced, the build would fail). So
//! `src/main.rs` (one call into the library) and `tests/cli.rs` are the only host code the gate
//! does not lint.
//!
//! Where the toolchain has no clippy (the toolchain stage installs it; the host stage then waits
//! for its turn instead of running beside), a host stage that finds none builds the tests with
//! plain rustc: the same tests, not linted, and it says so.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

use crate::base::error::{Error, Result, bail};
use crate::base::process::tail;
use crate::base::toolchain::{Env, Toolchain};
use crate::base::workspace::{cargo, metadata};

/// The host crates: tested on the host, and linted there.
pub const CRATES: [&str; 3] = ["common", "driver-package", "xtask"];

/// The toolchain's clippy-driver in `root` (rust-toolchain.toml applies there), if installed.
pub fn clippy_driver(root: &Path) -> Option<PathBuf> {
    let driver = Toolchain::of_workspace(root, &Env::default())
        .ok()?
        .program("clippy-driver");
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

/// The host crates' test targets, split by the compiler that builds them.
#[derive(Debug, PartialEq, Eq)]
pub struct Targets {
    /// The crates (`-p`).
    pub crates: Vec<String>,
    /// Compiled by clippy-driver: `--lib` and `--test NAME` for each integration test of a crate
    /// without a binary.
    pub linted: Vec<String>,
    /// Compiled by rustc: `(crate, test)` for each integration test of a crate with a binary.
    pub with_binary: Vec<(String, String)>,
}

impl Targets {
    /// The targets of `crates` as `cargo metadata` (`metadata`, the workspace's) lists them.
    ///
    /// # Errors
    /// A crate the metadata does not list.
    pub fn of(metadata: &serde_json::Value, crates: &[&str]) -> Result<Self> {
        let mut linted = vec!["--lib".to_owned()];
        let mut with_binary = Vec::new();
        let packages = metadata["packages"]
            .as_array()
            .map_or(&[][..], Vec::as_slice);
        for name in crates {
            let Some(package) = packages.iter().find(|p| p["name"] == *name) else {
                bail!("`cargo metadata` lists no package {name}");
            };
            let targets = package["targets"].as_array().map_or(&[][..], Vec::as_slice);
            let kind = |t: &serde_json::Value, k: &str| {
                t["kind"]
                    .as_array()
                    .is_some_and(|ks| ks.iter().any(|x| x == k))
            };
            let has_binary = targets.iter().any(|t| kind(t, "bin"));
            for t in targets.iter().filter(|t| kind(t, "test")) {
                let test = t["name"].as_str().unwrap_or_default().to_owned();
                if has_binary {
                    with_binary.push(((*name).to_owned(), test));
                } else {
                    linted.extend(["--test".to_owned(), test]);
                }
            }
        }
        Ok(Self {
            crates: crates.iter().map(|c| (*c).to_owned()).collect(),
            linted,
            with_binary,
        })
    }

    /// The host crates' targets in the workspace at `root`.
    ///
    /// # Errors
    /// `cargo metadata` fails.
    pub fn of_workspace(root: &Path) -> Result<Self> {
        Self::of(&metadata(root)?, &CRATES)
    }

    /// How the gate names what it lints.
    pub fn describe(&self) -> String {
        let mut s = format!("clippy -p {} (libraries", self.crates.join(" -p "));
        if self.linted.len() > 1 {
            s.push_str(", integration tests");
        }
        s.push_str(" and unit tests)");
        s
    }

    fn crate_refs(&self) -> Vec<&str> {
        self.crates.iter().map(String::as_str).collect()
    }

    fn linted_refs(&self) -> Vec<&str> {
        self.linted.iter().map(String::as_str).collect()
    }
}

/// The gate's clippy of the host crates' `targets` in `root`: compiled by clippy-driver (`cargo
/// test --no-run`, into `target_dir` when given). Fails on any warning or error, rustc's or
/// clippy's, with the compiler's own words: the rules of `cargo clippy -- -D warnings`. Cargo
/// replays the warnings of what it had already compiled, so a build the host stage made first is
/// judged the same.
///
/// # Errors
/// No clippy-driver; cargo could not run; the code has findings.
pub fn lint(root: &Path, targets: &Targets, target_dir: Option<&Path>) -> Result<()> {
    let Some(driver) = clippy_driver(root) else {
        bail!(
            "the toolchain has no clippy-driver: `rustup component add clippy` (the toolchain stage of \
             `cargo xtask test` adds it)"
        );
    };
    let mut args = targets.linted_refs();
    args.extend(["--no-run", "--message-format=json"]);
    let mut cmd = cargo_test(root, &targets.crate_refs(), Some(&driver), &args);
    if let Some(dir) = target_dir {
        cmd.env("CARGO_TARGET_DIR", dir);
    }
    let out = cmd
        .output()
        .map_err(|e| Error::new(format!("running cargo test --no-run: {e}")))?;
    judge(
        &out,
        &format!("{} -- -D warnings", targets.describe()),
        "fix them, or allow a lint where the code says why",
    )
}

/// The host tool as `cargo xtask` builds it (`--profile host`, rustc, the library without its
/// tests; driver-package with it): a warning or an error fails it, in the compiler's words.
///
/// [`lint`] compiles the host crates' tests, where what only a test uses is used; in the tool
/// itself it is dead code, a warning every first `cargo xtask` prints. Cargo replays the warnings
/// of a build it finds fresh, so after `cargo xtask` (which built this library) this compiles
/// nothing.
///
/// # Errors
/// Cargo could not run; the build has warnings or failed.
pub fn tool_build(root: &Path) -> Result<()> {
    let out = Command::new(cargo())
        .args(["build", "--profile", "host", "-p", "xtask", "--lib"])
        .arg("--message-format=json")
        .current_dir(root)
        .output()
        .map_err(|e| Error::new(format!("running cargo build: {e}")))?;
    judge(
        &out,
        "the host tool's own build (cargo build --profile host -p xtask --lib)",
        "code only tests use needs #[cfg(test)]",
    )
}

/// A build's verdict from its output (`--message-format=json`): `Ok` with no finding and
/// success, else an error naming `what`: the build failed (the end of its stderr), or its
/// findings in the compiler's words, with `advice`.
fn judge(out: &std::process::Output, what: &str, advice: &str) -> Result<()> {
    let findings = findings(&String::from_utf8_lossy(&out.stdout));
    if findings.is_empty() && out.status.success() {
        return Ok(());
    }
    if findings.is_empty() {
        bail!(
            "{what}: the build failed:\n{}",
            tail(String::from_utf8_lossy(&out.stderr).trim(), 30)
        );
    }
    bail!(
        "{what} found problems ({advice}):\n{}",
        tail(findings.join("\n").trim(), 60)
    )
}

/// The host stage's tests of `targets` in `root`: those the gate lints, compiled by `driver` when
/// given (the gate's build), then the integration tests of crates with a binary, by rustc.
/// `true` when every test ran and passed.
pub fn run(root: &Path, targets: &Targets, driver: Option<&Path>) -> bool {
    let linted = cargo_test(root, &targets.crate_refs(), driver, &targets.linted_refs()).status();
    let mut ok = linted.is_ok_and(|s| s.success());
    for (krate, test) in &targets.with_binary {
        let status = cargo_test(root, &[krate], None, &["--test", test]).status();
        ok &= status.is_ok_and(|s| s.success());
    }
    ok
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

    #[test]
    fn integration_tests_of_a_crate_with_a_binary_stay_on_rustc() {
        let metadata = serde_json::json!({"packages": [
            {"name": "common", "targets": [{"name": "common", "kind": ["lib"]}]},
            {"name": "driver-package", "targets": [
                {"name": "driver_package", "kind": ["lib"]},
                {"name": "public_api", "kind": ["test"]},
            ]},
            {"name": "xtask", "targets": [
                {"name": "xtask", "kind": ["lib"]},
                {"name": "xtask", "kind": ["bin"]},
                {"name": "cli", "kind": ["test"]},
            ]},
            {"name": "ex-callback", "targets": [{"name": "t", "kind": ["test"]}]},
        ]});
        let t = Targets::of(&metadata, &CRATES).unwrap();
        assert_eq!(t.linted, ["--lib", "--test", "public_api"]);
        assert_eq!(t.with_binary, [("xtask".to_owned(), "cli".to_owned())]);
        assert_eq!(
            t.describe(),
            "clippy -p common -p driver-package -p xtask (libraries, integration tests and unit tests)"
        );
        let e = Targets::of(&metadata, &["nope"]).unwrap_err();
        assert!(e.to_string().contains("no package nope"), "{e}");
    }

    #[test]
    fn this_workspace_lints_all_but_the_binary_and_its_cli_test() {
        let root = crate::base::workspace::project_root();
        let t = Targets::of_workspace(&root).unwrap();
        assert_eq!(t.with_binary, [("xtask".to_owned(), "cli".to_owned())]);
        assert!(t.linted.iter().any(|a| a == "public_api"), "{:?}", t.linted);
    }
}
