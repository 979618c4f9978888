//! The options of the commands whose modules are being moved out (issue #15): `cert`, `sign`,
//! `package` (to `commands/{cert,sign,package}.rs`) and `deploy` (to `commands/deploy.rs`).
//! The command line itself is `crate::flags`, which fills these in.

use crate::base::layout::{Arch, Profile};

/// `cargo xtask build`'s options, under the name `deploy` still uses.
pub(crate) use crate::commands::build::Options as BuildArgs;

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

/// `cargo xtask deploy`: its options are the command's own.
pub(crate) use crate::commands::deploy::Options as DeployArgs;
