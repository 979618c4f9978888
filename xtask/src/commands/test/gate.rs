//! The gate: the code's own rules, enforced (stage `gate` of `cargo xtask test`).
//!
//! The workspace's Cargo.toml asks for clippy pedantic and `undocumented_unsafe_blocks = "deny"`;
//! this is what runs them, with warnings denied:
//! - `cargo fmt --all --check`;
//! - clippy for the host crates (all targets, tests included), as their tests compile with
//!   clippy-driver (`base::host_tests::lint`), and `cargo clippy` for every driver and fixture on
//!   both Windows targets (each variant with its features);
//! - the host tool as `cargo xtask` builds it (not its tests) without a warning
//!   (`base::host_tests::tool_build`: what only tests use is dead code there);
//! - `ruff check xtask/emu` (the harness), with the ruff pinned in the emulator venv's lock and the
//!   rules of `xtask/emu/ruff.toml`.
//!
//! Each check is also run on a scratch copy broken on purpose ([`negatives`]): a driver whose
//! unsafe blocks lost their `// SAFETY:` comments, a file formatted by hand, a harness module with
//! an unused import, a host crate with a needless `return`. Each must fail, or the gate is not
//! proven to catch anything.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::base::error::{Error, Result, bail};
use crate::base::host_tests;
use crate::base::layout::Arch;
use crate::base::process::tail;
use crate::base::workspace::metadata;
use crate::base::workspace::{Driver, cargo};

/// One check of the gate and how it ended.
#[derive(Debug)]
pub struct Check {
    /// What was checked, for the tally.
    pub what: String,
    /// `Ok` or why it failed (the tool's own words).
    pub result: Result<()>,
}

/// `cargo fmt --all --check` in `root`.
pub fn fmt(root: &Path) -> Result<()> {
    let out = Command::new(cargo())
        .args(["fmt", "--all", "--check"])
        .current_dir(root)
        .output()
        .map_err(|e| Error::new(format!("running cargo fmt: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    bail!(
        "cargo fmt --check found code not formatted by rustfmt (run `cargo fmt --all`):\n{}",
        tail(said.trim(), 20)
    )
}

/// One `cargo clippy` invocation of drivers: packages, a Windows target and features.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClippyRun {
    /// `-p` each.
    pub packages: Vec<String>,
    /// `--target`.
    pub target: Arch,
    /// `--features` (a variant's).
    pub features: Vec<String>,
}

impl ClippyRun {
    /// How the tally names it.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "clippy -p {} --target {}",
            self.packages.join(" -p "),
            self.target.triple()
        );
        if !self.features.is_empty() {
            s = format!("{s} --features {}", self.features.join(","));
        }
        s
    }
}

/// The clippy invocations that cover every driver and fixture (each variant with its features) on
/// both Windows targets. The host crates are linted as their tests compile
/// (`base::host_tests::lint`).
pub fn clippy_runs(drivers: &[&Driver]) -> Vec<ClippyRun> {
    let mut runs = Vec::new();
    // Drivers without features share one run per target; each variant gets its own (cargo
    // unifies features across the packages of one run).
    let mut plain: Vec<String> = Vec::new();
    let mut variants: Vec<(String, Vec<String>)> = Vec::new();
    for d in drivers {
        if d.features().is_empty() {
            if !plain.iter().any(|p| p == d.package()) {
                plain.push(d.package().to_owned());
            }
        } else {
            variants.push((d.package().to_owned(), d.features().to_vec()));
        }
    }
    for arch in Arch::ALL {
        if !plain.is_empty() {
            runs.push(ClippyRun {
                packages: plain.clone(),
                target: arch,
                features: Vec::new(),
            });
        }
        for (package, features) in &variants {
            runs.push(ClippyRun {
                packages: vec![package.clone()],
                target: arch,
                features: features.clone(),
            });
        }
    }
    runs
}

/// Runs `run` in `root` with warnings denied; `target_dir` overrides cargo's.
pub fn clippy(root: &Path, run: &ClippyRun, target_dir: Option<&Path>) -> Result<()> {
    let mut cmd = Command::new(cargo());
    cmd.arg("clippy").arg("--quiet").current_dir(root);
    for p in &run.packages {
        cmd.args(["-p", p]);
    }
    cmd.args(["--target", run.target.triple()]);
    if !run.features.is_empty() {
        cmd.args(["--features", &run.features.join(",")]);
    }
    if let Some(dir) = target_dir {
        cmd.env("CARGO_TARGET_DIR", dir);
    }
    cmd.args(["--", "-D", "warnings"]);
    let out = cmd
        .output()
        .map_err(|e| Error::new(format!("running cargo clippy: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    bail!(
        "{} found problems (fix them, or allow a lint where the code says why):\n{}",
        run.describe(),
        tail(String::from_utf8_lossy(&out.stderr).trim(), 30)
    )
}

/// The harness's Python linted by `ruff` (the venv's), with `xtask/emu/ruff.toml`.
pub fn ruff(ruff: &Path, emu_dir: &Path) -> Result<()> {
    let out = Command::new(ruff)
        .args(["check", "--no-cache", "--output-format", "concise"])
        .arg(emu_dir)
        .current_dir(emu_dir)
        .output()
        .map_err(|e| Error::new(format!("running {}: {e}", ruff.display())))?;
    if out.status.success() {
        return Ok(());
    }
    bail!(
        "ruff found problems in {} (`ruff check --fix` fixes some):\n{}",
        emu_dir.display(),
        tail(String::from_utf8_lossy(&out.stdout).trim(), 30)
    )
}

/// The venv's `ruff`, next to its Python.
pub fn ruff_in_venv(python: &Path) -> PathBuf {
    let exe = if cfg!(windows) { "ruff.exe" } else { "ruff" };
    python.with_file_name(exe)
}

/// The negative checks: each part of the gate run on a scratch copy of the workspace broken on
/// purpose, which must fail for the reason given. `scratch` is emptied first; cargo builds there.
///
/// The driver broken on purpose is `driver` (a package in the folder of the same name under
/// `root`: ex-callback in this workspace, the new driver in one `cargo xtask new --path` made).
///
/// Every check is returned with `Ok` when the gate caught the breakage.
pub fn negatives(root: &Path, scratch: &Path, driver: &str, ruff_bin: Option<&Path>) -> Vec<Check> {
    let mut checks = Vec::new();
    let ws = scratch.join("ws");
    let target = scratch.join("target");
    if let Err(e) =
        crate::commands::test::scratch::workspace(root, &ws, &["common", driver], &|_, _, b| Ok(b))
    {
        checks.push(Check {
            what: "gate negatives: a scratch copy of the workspace".to_owned(),
            result: Err(e),
        });
        return checks;
    }
    let lib = ws.join(driver).join("src").join("lib.rs");
    let original = std::fs::read_to_string(&lib).unwrap_or_default();

    // 1. A driver's unsafe blocks without their `// SAFETY:` comments.
    let unsafe_what =
        format!("gate negative: {driver} with its `// SAFETY:` comments removed fails clippy");
    let stripped = original.replace("// SAFETY:", "// Note:");
    let result = if stripped == original {
        Err(Error::new(format!(
            "{driver}/src/lib.rs has no `// SAFETY:` comment to remove"
        )))
    } else {
        write(&lib, &stripped).and_then(|()| {
            let run = ClippyRun {
                packages: vec![driver.to_owned()],
                target: Arch::X64,
                features: Vec::new(),
            };
            expect_failure(
                clippy(&ws, &run, Some(&target)),
                "undocumented_unsafe_blocks",
            )
        })
    };
    checks.push(Check {
        what: unsafe_what,
        result,
    });

    // 2. A formatting change.
    let fmt_what = "gate negative: a line formatted by hand fails cargo fmt --check".to_owned();
    let reformatted =
        format!("{original}\n#[allow(dead_code)]\nfn   gate_probe( )  ->u32{{ 1 }}\n");
    let result = write(&lib, &reformatted)
        .and_then(|()| expect_failure(fmt(&ws), &format!("{driver}/src/lib.rs")));
    checks.push(Check {
        what: fmt_what,
        result,
    });
    let _ = write(&lib, &original);

    // 3. A Python lint finding.
    let py_what = "gate negative: an unused import in the harness fails ruff".to_owned();
    let result = match ruff_bin {
        None => Err(Error::new("no ruff: the emulator venv could not be made")),
        Some(ruff_bin) => {
            let emu = ws.join("xtask").join("emu");
            crate::commands::test::scratch::mirror(
                &root.join("xtask").join("emu"),
                &emu,
                &|_, b| Ok(b),
            )
            .and_then(|()| {
                let module = emu.join("emukernel").join("irql.py");
                let text = std::fs::read_to_string(&module)
                    .map_err(|e| Error::new(format!("{}: {e}", module.display())))?;
                write(&module, &format!("import os\n{text}"))?;
                expect_failure(ruff(ruff_bin, &emu), "F401")
            })
        }
    };
    checks.push(Check {
        what: py_what,
        result,
    });

    // 4. A clippy finding in a host crate, linted as its tests compile: a crate of its own with no
    // dependency (a copy of `common` would compile windows-sys for the host, ~11 s of CPU).
    let host_what =
        "gate negative: a needless `return` in a host crate fails the host crates' clippy"
            .to_owned();
    let probe = scratch.join("host-probe");
    let result = write_probe(&probe).and_then(|()| {
        let targets = host_tests::Targets::of(&metadata(&probe)?, &[PROBE])?;
        expect_failure(
            host_tests::lint(&probe, &targets, Some(&target)),
            "needless_return",
        )
    });
    checks.push(Check {
        what: host_what,
        result,
    });
    checks
}

/// The host crate of negative 4: its package name.
const PROBE: &str = "gate-probe";

/// A workspace of its own in `dir` (the `host` profile of the suite's host tests, clippy's
/// default lints) whose one crate returns with a needless `return`.
fn write_probe(dir: &Path) -> Result<()> {
    let manifest = format!(
        "[package]\nname = \"{PROBE}\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
         [workspace]\n\n[profile.host]\ninherits = \"dev\"\n"
    );
    std::fs::create_dir_all(dir.join("src"))
        .map_err(|e| Error::new(format!("creating {}: {e}", dir.display())))?;
    write(&dir.join("Cargo.toml"), &manifest)?;
    write(
        &dir.join("src").join("lib.rs"),
        "//! Probe of the gate.\n\n/// One.\n#[must_use]\npub fn gate_probe() -> u32 {\n    return 1;\n}\n",
    )
}

/// `Ok` when `result` is the failure expected, naming `needle`.
fn expect_failure(result: Result<()>, needle: &str) -> Result<()> {
    match result {
        Ok(()) => bail!("the gate passed code broken on purpose"),
        Err(e) if e.to_string().contains(needle) => Ok(()),
        Err(e) => bail!("the gate failed, but not for `{needle}`: {e}"),
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::new(format!("writing {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_counts_only_for_its_own_reason() {
        assert!(expect_failure(Err(Error::new("error: F401 unused")), "F401").is_ok());
        assert!(expect_failure(Ok(()), "F401").is_err());
        let e = expect_failure(Err(Error::new("could not compile")), "F401").unwrap_err();
        assert!(e.to_string().contains("not for `F401`"), "{e}");
    }
}
