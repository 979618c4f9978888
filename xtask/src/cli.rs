//! The options of the commands whose modules are being moved out (issue #15): `cert`, `sign`,
//! `package` (to `commands/{cert,sign,package}.rs`) and `deploy` (to `commands/deploy.rs`).
//! The command line itself is `crate::flags`, which fills these in.

use crate::base::layout::{Arch, Profile};
use crate::deploy::{Install, Target};

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

/// `cargo xtask deploy`.
#[derive(Debug, PartialEq, Eq)]
#[allow(clippy::struct_excessive_bools)] // one per flag of the command line
pub struct DeployArgs {
    /// `--target`... (several deploy in parallel); default the emulator.
    pub targets: Vec<Target>,
    /// `-p NAME`...; empty = every driver.
    pub packages: Vec<String>,
    /// `--release`.
    pub profile: Profile,
    /// `--arch`: the VM's architecture (x64 default; the emulator is x64 only).
    pub arch: Arch,
    /// `--dry-run`: print the plan, run nothing on a target.
    pub dry_run: bool,
    /// `--json`: the plan or the reports as JSON.
    pub json: bool,
    /// `--install sc|inf`.
    pub install: Install,
    /// `--keep`: leave the service and the files on the VM.
    pub keep: bool,
    /// `--enable-testsigning`.
    pub enable_testsigning: bool,
    /// `--snapshot NAME`.
    pub snapshot: Option<String>,
    /// `--libvirt DOMAIN`.
    pub libvirt: Option<String>,
    /// `--libvirt-uri URI` (virsh -c).
    pub libvirt_uri: Option<String>,
    /// `--revert-after-failure`.
    pub revert_after_failure: bool,
    /// `--remote-dir DIR`.
    pub remote_dir: Option<String>,
    /// `--ssh-option OPT`...
    pub ssh_options: Vec<String>,
    /// `--hyperv-credential FILE`.
    pub hyperv_credential: Option<std::path::PathBuf>,
    /// `--timeout SECS` (one step).
    pub timeout_s: u64,
    /// `--reboot-timeout SECS`.
    pub reboot_timeout_s: u64,
}
