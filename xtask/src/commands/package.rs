//! `cargo xtask package`: a driver package per driver and architecture, made by
//! `driver_package::package` from the workspace's files:
//!
//! ```text
//! target/packages/<arch>/<profile>/NAME/
//!     NAME.sys                    the placed image, with an embedded Authenticode signature
//!     NAME.inf                    NAME.inx stamped for the architecture
//!     NAME.cat                    the signed catalog of NAME.sys and NAME.inf
//!     NAME.pdb                    the symbols, when the linker wrote them
//!     callback-drivers-test.cer   the test certificate (never its key)
//!     manifest.json               what is in the package: hashes, versions, signer
//! ```
//!
//! Inputs are checked before anything is written: the `.inx` (encoding, syntax, the
//! primitive-driver form, each problem with its line) and the placed image (it must pass the
//! lint, `sign.rs`). A failure leaves the previous package as it was. `--json` prints a
//! [`PackageReport`] (`docs/reports/package.md`).

use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use driver_package::package::{self as pkg, Manifest};
use driver_package::pkcs7::Signer;
use serde::Serialize;

use crate::base::error::{Context, Error, Result, bail};
use crate::base::layout::{Arch, Profile, display_path};
use crate::base::process::elapsed;
use crate::base::workspace::{Driver, Workspace};
use crate::commands::sign::{self, OwnCert};
use submission::SubmissionEntry;

/// `cargo xtask package`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Options {
    /// `-p NAME`...; empty = every driver.
    pub packages: Vec<String>,
    /// `--arch`; default x64.
    pub arches: Vec<Arch>,
    /// `--release`.
    pub profile: Profile,
    /// `--cert-dir`.
    pub cert_dir: Option<PathBuf>,
    /// `--pfx`, or `--key` and `--cert`.
    pub own: Option<OwnCert>,
    /// `--submission`: also the attestation-signing CAB per architecture.
    pub submission: bool,
    /// `--json`.
    pub json: bool,
}

/// One package made (or not).
#[derive(Debug)]
pub struct Packaged {
    /// The driver.
    pub driver: String,
    /// The architecture.
    pub arch: Arch,
    /// The profile.
    pub profile: Profile,
    /// The package folder and its manifest, or why there is none.
    pub result: Result<(PathBuf, Manifest)>,
}

/// `cargo xtask package --json`.
#[derive(Debug, Serialize)]
pub struct PackageReport {
    /// The report's schema version: 1.
    pub schema: u32,
    /// One entry per driver and architecture, in the order they were made.
    pub packages: Vec<PackageEntry>,
    /// With `--submission`: one CAB per architecture.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub submissions: Vec<SubmissionEntry>,
}

/// One package of a [`PackageReport`].
#[derive(Debug, Serialize)]
pub struct PackageEntry {
    /// The driver.
    pub driver: String,
    /// `x64` or `arm64`.
    pub arch: String,
    /// `debug` or `release`.
    pub profile: String,
    /// The package folder, when it was made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<PathBuf>,
    /// Its `manifest.json`, when it was made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<Manifest>,
    /// Why it was not made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl PackageReport {
    /// The report of `made`.
    pub fn new(made: &[Packaged]) -> Self {
        let packages = made
            .iter()
            .map(|p| {
                let (package, manifest, error) = match &p.result {
                    Ok((dir, m)) => (Some(dir.clone()), Some(m.clone()), None),
                    Err(e) => (None, None, Some(e.to_string())),
                };
                PackageEntry {
                    driver: p.driver.clone(),
                    arch: p.arch.name().to_owned(),
                    profile: p.profile.dir().to_owned(),
                    package,
                    manifest,
                    error,
                }
            })
            .collect();
        Self {
            schema: 1,
            packages,
            submissions: Vec::new(),
        }
    }
}

/// The `package` command.
pub(crate) fn run(ws: &Workspace, opts: &Options) -> Result<()> {
    let drivers = ws.select(&opts.packages)?;
    let signer = sign::load_signer(opts.cert_dir.as_deref(), opts.own.as_ref())?;
    let made = package(ws, &drivers, &opts.arches, opts.profile, &signer)?;
    let failed = made.iter().filter(|p| p.result.is_err()).count();
    let mut report = PackageReport::new(&made);
    if opts.submission && failed == 0 {
        let time = pkg::build_time()?;
        for &arch in &opts.arches {
            report.submissions.push(submission::write_cab(
                ws,
                &submission::made_for(&made, arch),
                arch,
                opts.profile,
                time,
            )?);
        }
    }
    if opts.json {
        let text = serde_json::to_string_pretty(&report).context("encoding the report")?;
        println!("{text}");
    }
    if failed > 0 {
        bail!(
            "package: {failed} of {} package(s) failed (see above); previous packages were left as \
             they were{}",
            made.len(),
            if opts.submission {
                ", and no submission CAB was written"
            } else {
                ""
            }
        );
    }
    Ok(())
}

/// Packages each of `drivers` for each of `arches`. An `Err` means nothing could be tried; one
/// package failing is reported in its [`Packaged`].
pub fn package(
    ws: &Workspace,
    drivers: &[&Driver],
    arches: &[Arch],
    profile: Profile,
    signer: &Signer,
) -> Result<Vec<Packaged>> {
    if drivers.is_empty() {
        bail!("no drivers to package");
    }
    let time = pkg::build_time()?;
    let mut made = Vec::new();
    for &arch in arches {
        for d in drivers {
            let start = Instant::now();
            let result = package_one(ws, d, arch, profile, signer, time);
            match &result {
                Ok((dir, _)) => eprintln!(
                    "  packaged {} ({arch}, {profile}) at {} ({})",
                    d.name,
                    display_path(dir, &ws.root),
                    elapsed(start.elapsed())
                ),
                Err(e) => eprintln!("  {} ({arch}, {profile}): package FAILED: {e}", d.name),
            }
            made.push(Packaged {
                driver: d.name.clone(),
                arch,
                profile,
                result,
            });
        }
    }
    Ok(made)
}

/// The INF of `driver` for `arch`: its `.inx` checked, stamped, and the result checked again.
pub fn make_inf(driver: &Driver, arch: Arch, time: SystemTime) -> Result<Vec<u8>> {
    let inx = driver.inx();
    let shown = inx.display().to_string();
    if !inx.is_file() {
        bail!(
            "{}: no INF template at {shown}: every driver package is made from one; copy \
             ex-callback/ex-callback.inx to {shown} and adapt it (its header says how)",
            driver.name
        );
    }
    let bytes = std::fs::read(&inx).with_context(|| format!("reading {shown}"))?;
    Ok(pkg::make_inf(
        &driver.name,
        &driver.version,
        arch,
        &bytes,
        &shown,
        time,
    )?)
}

/// Makes one package; returns its folder and manifest.
fn package_one(
    ws: &Workspace,
    driver: &Driver,
    arch: Arch,
    profile: Profile,
    signer: &Signer,
    time: SystemTime,
) -> Result<(PathBuf, Manifest)> {
    let name = &driver.name;
    let inf = make_inf(driver, arch, time)?;
    let placed = ws.layout.placed_sys(name, arch, profile);
    if !placed.is_file() {
        let release = if profile == Profile::Release {
            " --release"
        } else {
            ""
        };
        bail!(
            "no built image at {}: build it first: cargo xtask build -p {name} --arch {arch}{release}",
            display_path(&placed, &ws.root)
        );
    }
    let image = std::fs::read(&placed).with_context(|| format!("reading {}", placed.display()))?;
    let sys = sign::sign_driver_image(&image, arch, signer)
        .map_err(|e| Error::new(format!("{}: {e}", display_path(&placed, &ws.root))))?;
    let pdb = std::fs::read(ws.layout.placed_pdb(name, arch, profile)).ok();
    let input = pkg::Input {
        name,
        version: &driver.version,
        arch,
        profile: profile.dir(),
        sys: &sys,
        inf: &inf,
        pdb: pdb.as_deref(),
        time,
    };
    let package = pkg::assemble(&input, signer)?;
    let dest = ws.layout.package_dir(name, arch, profile);
    pkg::write(&package, &dest)?;
    Ok((dest, package.manifest))
}

pub mod submission;
#[cfg(test)]
pub(crate) mod tests;
