//! Test-sign and package Windows drivers from any host (Linux, macOS, Windows), without the WDK:
//!
//! - [`cert`]: a self-signed code-signing test certificate (RSA 2048, SHA-256), created, stored
//!   owner-only and checked before each use;
//! - [`authenticode`]: the PE image hash (computed by the `authenticode` crate) and an embedded
//!   SHA-256 Authenticode signature, as signtool writes it;
//! - [`inf`]: `.inx` to `.inf` (what stampinf does) and a checker for the primitive-driver form;
//! - [`catalog`]: the driver catalog (`.cat`, what inf2cat and makecat make), signed, and read
//!   back for checks;
//! - [`package`]: the package folder (`.sys`, `.inf`, `.cat`, `.cer`, `manifest.json`),
//!   assembled beside its destination and swapped in whole;
//! - [`pkcs7`]: the PKCS#7 `SignedData` both signatures are, and the Microsoft ASN.1 structures.
//!
//! The formats and the choices made are described in `docs/notes/packaging.md` of the repository
//! this crate lives in. Every error is an [`Error`] whose message names the cause and the fix.
//!
//! ```no_run
//! use std::path::Path;
//! use driver_package::{Arch, authenticode, cert};
//!
//! # fn main() -> Result<(), driver_package::Error> {
//! // The test certificate in ./certs, created on first use.
//! let (signer, _created) = cert::load_or_create(Path::new("certs"))?;
//! let image = std::fs::read("target/my_driver.sys").expect("a built driver");
//! let signed = authenticode::sign_image(&image, &signer)?;
//! authenticode::verify_image(&signed, &signer.cert)?;
//! assert_eq!(Arch::of_machine(0x8664), Some(Arch::X64));
//! # Ok(())
//! # }
//! ```

// Each fallible function fails with an `Error` whose message is the documentation of the failure;
// a `# Errors` section on each would repeat "when the input is not what the function reads".
#![allow(clippy::missing_errors_doc)]

pub mod authenticode;
pub mod catalog;
pub mod cert;
mod error;
pub mod files;
pub mod inf;
pub mod own;
pub mod package;
pub mod pe;
pub mod pfx;
pub mod pkcs7;
pub mod submission;
#[cfg(test)]
mod testimage;

use std::fmt;

pub use error::{Error, Result};

/// A Windows architecture a driver is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    /// x86-64 (`x86_64-pc-windows-msvc`, INF decoration `amd64`).
    X64,
    /// ARM64 (`aarch64-pc-windows-msvc`, INF decoration `arm64`).
    Arm64,
}

impl Arch {
    /// Both, in build order.
    pub const ALL: [Arch; 2] = [Arch::X64, Arch::Arm64];

    /// The rustc target triple.
    #[must_use]
    pub fn triple(self) -> &'static str {
        match self {
            Arch::X64 => "x86_64-pc-windows-msvc",
            Arch::Arm64 => "aarch64-pc-windows-msvc",
        }
    }

    /// The short name: `x64` or `arm64`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Arch::X64 => "x64",
            Arch::Arm64 => "arm64",
        }
    }

    /// The PE `Machine` an image for this architecture declares.
    #[must_use]
    pub fn machine(self) -> u16 {
        match self {
            Arch::X64 => pe::MACHINE_AMD64,
            Arch::Arm64 => pe::MACHINE_ARM64,
        }
    }

    /// The architecture of a PE `Machine`, if it is one of these.
    #[must_use]
    pub fn of_machine(machine: u16) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.machine() == machine)
    }

    /// Parses a selection: `x64` (or `amd64`, `x86_64`), `arm64` (or `aarch64`), or `all`.
    pub fn parse_selection(value: &str) -> Result<Vec<Arch>> {
        Ok(match value {
            "x64" | "amd64" | "x86_64" => vec![Arch::X64],
            "arm64" | "aarch64" => vec![Arch::Arm64],
            "all" => Arch::ALL.to_vec(),
            other => {
                return Err(Error::new(format!(
                    "unknown architecture `{other}`: use --arch x64, arm64 or all"
                )));
            }
        })
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The README, whose example is compiled as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn architectures_parse_and_map_to_their_machine() {
        let parse = Arch::parse_selection;
        assert_eq!(parse("amd64").unwrap(), [Arch::X64]);
        assert_eq!(parse("aarch64").unwrap(), [Arch::Arm64]);
        assert_eq!(parse("all").unwrap(), Arch::ALL);
        let e = parse("x86").unwrap_err().to_string();
        assert!(e.contains("unknown architecture `x86`"), "{e}");
        assert_eq!(Arch::of_machine(0xAA64), Some(Arch::Arm64));
        assert_eq!(Arch::of_machine(0x14C), None);
        assert_eq!(Arch::X64.to_string(), "x64");
    }
}
