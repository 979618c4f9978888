//! `cargo xtask package --submission`: per architecture, the CAB Microsoft's attestation signing
//! takes, from the packages just made (`driver_package::submission`):
//! `target/submission/<arch>/<profile>/drivers.cab`, a folder per driver with its signed `.sys`,
//! `.inf`, `.cat` and `.pdb`. The CAB is read back whole before it is reported.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use driver_package::submission::{self, DriverFiles, Listed};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::base::error::{Context, Result, bail};
use crate::base::files;
use crate::base::layout::{Arch, Profile, display_path};
use crate::base::workspace::Workspace;

use super::Packaged;

/// The CAB's file name in its folder.
pub const CAB_FILE: &str = "drivers.cab";

/// One submission CAB of a [`super::PackageReport`].
#[derive(Clone, Debug, Serialize)]
pub struct SubmissionEntry {
    /// `x64` or `arm64`.
    pub arch: String,
    /// `debug` or `release`.
    pub profile: String,
    /// The CAB, `target/submission/<arch>/<profile>/drivers.cab`.
    pub cab: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its SHA-256, uppercase hex.
    pub sha256: String,
    /// What it holds, `DRIVER\FILE`, as read back.
    pub files: Vec<Listed>,
}

/// Where the CAB of `arch` and `profile` goes.
pub fn cab_path(ws: &Workspace, arch: Arch, profile: Profile) -> PathBuf {
    ws.layout
        .submission_dir()
        .join(arch.name())
        .join(profile.dir())
        .join(CAB_FILE)
}

/// The packages of `arch` in `made` that were made: `(driver, package folder)`.
pub fn made_for(made: &[Packaged], arch: Arch) -> Vec<(String, PathBuf)> {
    made.iter()
        .filter(|p| p.arch == arch)
        .filter_map(|p| {
            p.result
                .as_ref()
                .ok()
                .map(|(dir, _)| (p.driver.clone(), dir.clone()))
        })
        .collect()
}

/// The CAB of `packages` (`(driver, package folder)`, all of `arch`), written to [`cab_path`].
pub fn write_cab(
    ws: &Workspace,
    packages: &[(String, PathBuf)],
    arch: Arch,
    profile: Profile,
    time: SystemTime,
) -> Result<SubmissionEntry> {
    let mut drivers = Vec::new();
    for (driver, dir) in packages {
        drivers.push(driver_files(driver, dir)?);
    }
    if drivers.is_empty() {
        bail!("no {arch} package was made: no submission CAB for {arch}");
    }
    let bytes = submission::write(&drivers, time)?;
    let listed = submission::list(&bytes)
        .context("the submission CAB just written does not read back (a bug in xtask)")?;
    let path = cab_path(ws, arch, profile);
    files::write_atomic(&path, &bytes)?;
    eprintln!(
        "  submission CAB ({arch}, {profile}) at {}: {} driver(s), {} files",
        display_path(&path, &ws.root),
        drivers.len(),
        listed.len()
    );
    Ok(SubmissionEntry {
        arch: arch.name().to_owned(),
        profile: profile.dir().to_owned(),
        cab: path,
        bytes: bytes.len() as u64,
        sha256: driver_package::cert::hex(&Sha256::digest(&bytes)),
        files: listed,
    })
}

/// The files of the package folder `dir` that the submission takes; a missing `.pdb` is said
/// (the page wants it for crash analysis) but does not stop the CAB.
fn driver_files(name: &str, dir: &Path) -> Result<DriverFiles> {
    let mut files = Vec::new();
    for ext in submission::EXTENSIONS {
        let file = format!("{name}.{ext}");
        let path = dir.join(&file);
        if ext == "pdb" && !path.is_file() {
            eprintln!(
                "  {name}: no {file} in {}: the CAB goes without it, but Microsoft's page asks for \
                 the .pdb (crash analysis); `cargo xtask build` places one beside the image",
                dir.display()
            );
            continue;
        }
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        files.push((file, bytes));
    }
    Ok(DriverFiles {
        name: name.to_owned(),
        files,
    })
}
