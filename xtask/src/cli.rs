//! The options of the commands whose modules are being moved out (issue #15): `cert`, `sign` and
//! `package` (to `commands/{cert,sign,package}.rs`, with the packaging library's crate).
//! The command line itself is `crate::flags`, which fills these in.

use crate::base::layout::{Arch, Profile};

/// `cargo xtask cert`.
#[derive(Debug, PartialEq, Eq)]
pub struct CertArgs {
    /// `--new` (else `--show`, the default).
    pub new: bool,
    /// `--json`.
    pub json: bool,
    /// `--cert-dir`.
    pub cert_dir: Option<std::path::PathBuf>,
}

/// `cargo xtask sign`.
#[derive(Debug, PartialEq, Eq)]
pub struct SignArgs {
    /// `-p NAME`...; empty = every driver.
    pub packages: Vec<String>,
    /// `--arch`; default x64.
    pub arches: Vec<Arch>,
    /// `--release`.
    pub profile: Profile,
    /// `--cert-dir`.
    pub cert_dir: Option<std::path::PathBuf>,
    /// Explicit images to sign instead of the placed ones.
    pub files: Vec<std::path::PathBuf>,
}

/// `cargo xtask package`.
#[derive(Debug, PartialEq, Eq)]
pub struct PackageArgs {
    /// `-p NAME`...; empty = every driver.
    pub packages: Vec<String>,
    /// `--arch`; default x64.
    pub arches: Vec<Arch>,
    /// `--release`.
    pub profile: Profile,
    /// `--cert-dir`.
    pub cert_dir: Option<std::path::PathBuf>,
    /// `--json`.
    pub json: bool,
}
