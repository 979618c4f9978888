//! `cargo xtask build`: cargo for the Windows targets, then the lint gate, then the placed image.
//!
//! Only an image that passes the lint is placed at `target/drivers/<arch>/<profile>/NAME/NAME.sys`;
//! when a build or a lint fails, a previously placed image of that driver is removed so that no
//! later stage can pick up an old one.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::base::error::{Error, Result, bail};
use crate::base::files;
use crate::base::layout::{Arch, Layout, Profile, display_path};
use crate::base::process::{elapsed, run_teeing_stderr};
use crate::base::toolchain;
use crate::base::workspace::{Driver, Workspace, cargo};
use crate::image::lint;

/// What happened to one driver for one architecture and profile.
#[derive(Debug)]
pub struct Built {
    /// The driver's package name.
    pub driver: String,
    /// The architecture.
    pub arch: Arch,
    /// The profile.
    pub profile: Profile,
    /// The placed image, or why there is none.
    pub result: Result<PathBuf>,
}

/// `cargo xtask build`'s options.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Options {
    /// `-p NAME`...; empty = every driver.
    pub packages: Vec<String>,
    /// `--arch`; default x64.
    pub arches: Vec<Arch>,
    /// `--release`.
    pub profile: Profile,
}

/// The `build` command; what it placed (or why not) is also written to
/// `target/reports/build.json` ([`BuildReport`]).
pub(crate) fn run(ws: &Workspace, opts: &Options) -> Result<()> {
    let drivers = ws.select(&opts.packages)?;
    let built = build(ws, &drivers, &opts.arches, opts.profile)?;
    let path = ws.layout.report("build.json");
    files::write_atomic(
        &path,
        format!("{}\n", super::to_json(&report(ws, &built))).as_bytes(),
    )?;
    let failed = built.iter().filter(|b| b.result.is_err()).count();
    if failed > 0 {
        bail!(
            "build: {failed} of {} images failed (see above); none of them was placed",
            built.len()
        );
    }
    Ok(())
}

/// `target/reports/build.json`, written by `cargo xtask build` (docs/reports/build.md).
#[derive(Debug, serde::Serialize)]
pub(crate) struct BuildReport {
    /// Version of this layout: 1.
    pub schema: u32,
    /// Every image placed.
    pub passed: bool,
    /// One entry per driver and architecture.
    pub images: Vec<BuiltImage>,
}

/// One driver for one architecture and profile.
#[derive(Debug, serde::Serialize)]
pub(crate) struct BuiltImage {
    /// The driver's name.
    pub driver: String,
    /// `x64` or `arm64`.
    pub arch: &'static str,
    /// `debug` or `release`.
    pub profile: String,
    /// The placed image, relative to the workspace; `null` when it failed.
    pub path: Option<String>,
    /// Its size in bytes; `null` when it failed.
    pub bytes: Option<u64>,
    /// Why it failed (build or lint); `null` when placed.
    pub error: Option<String>,
}

/// The report of `built`.
pub(crate) fn report(ws: &Workspace, built: &[Built]) -> BuildReport {
    BuildReport {
        schema: 1,
        passed: built.iter().all(|b| b.result.is_ok()),
        images: built
            .iter()
            .map(|b| {
                let (path, bytes, error) = match &b.result {
                    Ok(p) => (
                        Some(display_path(p, &ws.root).to_string()),
                        std::fs::metadata(p).ok().map(|m| m.len()),
                        None,
                    ),
                    Err(e) => (None, None, Some(e.to_string())),
                };
                BuiltImage {
                    driver: b.driver.clone(),
                    arch: b.arch.name(),
                    profile: b.profile.to_string(),
                    path,
                    bytes,
                    error,
                }
            })
            .collect(),
    }
}

/// Builds, lints and places each of `drivers` for each of `arches`, first installing the Windows
/// targets the toolchain lacks (`toolchain`). An `Err` means nothing could be built (a target
/// missing and not installable); one image failing is reported in its [`Built`].
pub fn build(
    ws: &Workspace,
    drivers: &[&Driver],
    arches: &[Arch],
    profile: Profile,
) -> Result<Vec<Built>> {
    if drivers.is_empty() {
        bail!("no drivers to build: no workspace package has a [package.metadata.driver] table");
    }
    toolchain::ensure_targets(&ws.root, arches, &toolchain::Env::default())?;
    // Each driver is compiled for every architecture in one cargo run: cargo builds the targets
    // side by side on its jobserver (the two architectures' dependencies compile at once on two
    // cores), and is started half as often. Each image is then linted and placed; the results keep
    // the order architecture, then driver.
    let mut built: Vec<(usize, usize, Built)> = Vec::new();
    for (d, driver) in drivers.iter().enumerate() {
        let start = Instant::now();
        let compiled: Vec<(Arch, Result<()>)> = match compile(ws, driver, arches, profile) {
            Ok(()) => arches.iter().map(|&a| (a, Ok(()))).collect(),
            Err(e) if arches.len() == 1 => vec![(arches[0], Err(e))],
            // Which architecture failed, and why: each compiled again on its own.
            Err(_) => arches
                .iter()
                .map(|&a| (a, compile(ws, driver, &[a], profile)))
                .collect(),
        };
        for (arch, result) in compiled {
            let result = result.and_then(|()| place(ws, driver, arch, profile, start));
            if let Err(e) = &result {
                eprintln!("  {} ({arch}, {profile}): FAILED: {e}", driver.name);
                if let Err(e) = unplace(&ws.layout, &driver.name, arch, profile) {
                    eprintln!("  warning: {e}");
                }
            }
            let a = arches.iter().position(|&x| x == arch).unwrap_or(0);
            built.push((
                a,
                d,
                Built {
                    driver: driver.name.clone(),
                    arch,
                    profile,
                    result,
                },
            ));
        }
    }
    built.sort_by_key(|(a, d, _)| (*a, *d));
    Ok(built.into_iter().map(|(_, _, b)| b).collect())
}

/// `cargo build` of `driver` for each of `arches` (one `--target` each) in one cargo run.
fn compile(ws: &Workspace, driver: &Driver, arches: &[Arch], profile: Profile) -> Result<()> {
    let name = &driver.name;
    let list: Vec<String> = arches.iter().map(ToString::to_string).collect();
    eprintln!("  building {name} ({}, {profile})...", list.join(" and "));
    let mut cmd = Command::new(cargo());
    cmd.current_dir(&ws.root)
        .args(["build", "-p", driver.package()]);
    for arch in arches {
        cmd.args(["--target", arch.triple()]);
    }
    if !driver.features().is_empty() {
        // A variant: the same crate with other features. Cargo writes the same output file for
        // every variant, so each is copied to its own placed folder right after it is built.
        cmd.args(["--features", &driver.features().join(",")]);
    }
    if profile == Profile::Release {
        cmd.arg("--release");
    }
    let (status, stderr) = run_teeing_stderr(&mut cmd, |line| eprintln!("    {line}"))?;
    if !status.success() {
        if let [arch] = arches
            && let Some(fix) = diagnose_cargo_failure(&stderr, *arch)
        {
            bail!("{fix}");
        }
        bail!("cargo build failed ({status})");
    }
    Ok(())
}

/// The image cargo built for `arch`, linted, then placed with its symbols.
fn place(
    ws: &Workspace,
    driver: &Driver,
    arch: Arch,
    profile: Profile,
    start: Instant,
) -> Result<PathBuf> {
    let name = &driver.name;
    let image = ws.layout.cargo_image(driver.package(), arch, profile);
    if !image.is_file() {
        bail!(
            "cargo built {name} but there is no {}: is it a `cdylib` (crate-type = [\"cdylib\"])?",
            image.display()
        );
    }
    eprintln!(
        "  {name} ({arch}, {profile}): built in {}",
        elapsed(start.elapsed())
    );
    lint_gate(&image, arch)?;
    eprintln!("  {name} ({arch}, {profile}): linted ok");

    let sys = ws.layout.placed_sys(name, arch, profile);
    files::copy_atomic(&image, &sys)?;
    let pdb = ws.layout.cargo_pdb(driver.package(), arch, profile);
    let placed_pdb = ws.layout.placed_pdb(name, arch, profile);
    if pdb.is_file() {
        files::copy_atomic(&pdb, &placed_pdb)?;
    } else {
        files::remove_if_exists(&placed_pdb)?;
    }
    eprintln!(
        "  {name} ({arch}, {profile}): placed at {} ({})",
        display_path(&sys, &ws.root),
        elapsed(start.elapsed())
    );
    Ok(sys)
}

/// Removes a placed image and its symbols: a failed build or lint must leave no image behind for
/// a later stage to pick up.
fn unplace(layout: &Layout, driver: &str, arch: Arch, profile: Profile) -> Result<()> {
    files::remove_if_exists(&layout.placed_sys(driver, arch, profile))?;
    files::remove_if_exists(&layout.placed_pdb(driver, arch, profile))
}

/// Lints `image` for `arch`; every violation is printed and the image is refused.
fn lint_gate(image: &Path, arch: Arch) -> Result<()> {
    let violations = lint::lint_file(image, &lint::LintOptions::for_machine(arch.machine()))
        .map_err(|e| Error::new(format!("linting {}: {e}", image.display())))?;
    if violations.is_empty() {
        return Ok(());
    }
    for v in &violations {
        eprintln!("    lint: {v}");
    }
    bail!(
        "{} lint violation(s) in {}: the image is not placed",
        violations.len(),
        image.display()
    )
}

fn missing_target(arch: Arch) -> String {
    format!(
        "the Rust target {triple} is not installed: run `rustup target add {triple}` in the \
         workspace (xtask adds it itself where rustup manages the toolchain)",
        triple = arch.triple()
    )
}

/// The fix for a cargo failure we recognise.
fn diagnose_cargo_failure(stderr: &str, arch: Arch) -> Option<String> {
    let target_missing = stderr.contains("can't find crate for `core`")
        || stderr.contains("can't find crate for `compiler_builtins`")
        || stderr.contains("target may not be installed");
    if target_missing {
        return Some(missing_target(arch));
    }
    if stderr.contains("linker `rust-lld` not found") {
        return Some(
            "rust-lld was not found: it ships with rustup's toolchains; reinstall with \
             `rustup toolchain install` in the workspace (rust-toolchain.toml)"
                .to_owned(),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_target_is_recognised_and_names_the_fix() {
        let stderr = "error[E0463]: can't find crate for `core`\n  |\n  = note: the \
                      `aarch64-pc-windows-msvc` target may not be installed\n  = help: consider \
                      downloading the target with `rustup target add aarch64-pc-windows-msvc`";
        let fix = diagnose_cargo_failure(stderr, Arch::Arm64).unwrap();
        assert!(
            fix.contains("rustup target add aarch64-pc-windows-msvc"),
            "{fix}"
        );
    }

    #[test]
    fn an_image_that_fails_the_lint_is_refused_and_a_stale_one_removed() {
        let dir = std::env::temp_dir().join(format!("xtask-build-gate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let layout = Layout::new(&dir);
        let bad = dir.join("bad.dll");
        files::write_atomic(&bad, b"MZ but nothing else").unwrap();
        let e = lint_gate(&bad, Arch::X64).unwrap_err().to_string();
        assert!(
            e.contains("lint violation") && e.contains("not placed"),
            "{e}"
        );

        let (sys, pdb) = (
            layout.placed_sys("d", Arch::X64, Profile::Debug),
            layout.placed_pdb("d", Arch::X64, Profile::Debug),
        );
        files::write_atomic(&sys, b"old").unwrap();
        files::write_atomic(&pdb, b"old").unwrap();
        unplace(&layout, "d", Arch::X64, Profile::Debug).unwrap();
        assert!(!sys.exists() && !pdb.exists());
        unplace(&layout, "d", Arch::X64, Profile::Debug).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn ordinary_compile_errors_are_left_to_cargo() {
        assert_eq!(
            diagnose_cargo_failure("error[E0308]: mismatched types", Arch::X64),
            None
        );
    }
}
