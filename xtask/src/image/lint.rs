//! The kernel image lint: checks a linked driver image for the properties the Windows kernel
//! loader, memory integrity (HVCI) and driver signing require, and that lld-link does not
//! guarantee by itself (see `docs/notes/kernel-image.md` and the link flags in
//! `.cargo/config.toml`).
//!
//! Every [`Violation`] names a rule id from [`RULES`], the subject concerned (a section, an
//! imported module, an export, a header field) and how to fix it.
//!
//! Decisions:
//! - `sections-not-pageable` exempts `PAGE*` and `INIT` sections (pageable by design, as MSVC's
//!   `/DRIVER` does) and every discardable section (`IMAGE_SCN_MEM_DISCARDABLE`, e.g. a
//!   discardable `.reloc`): the loader frees those after load, so their pageability is moot.
//!   A section with no attributes at all (lld's `.retplne`) is reported with a specific hint.
//! - `entry-point` reports a zero or out-of-section entry point against the subject
//!   `AddressOfEntryPoint`, and an entry point in a non-executable section against that section.
//! - `exports` also rejects exports by ordinal only (subject `ordinal N`): they can never be in
//!   the allowed list of names.
//! - A broken import or export table is a `pe-format` violation; the other rules still run.
//!
//! The rules live by what they read: `lint/headers.rs` (machine, subsystem, entry point,
//! DllCharacteristics, checksum, TLS, relocations), `lint/sections.rs`, `lint/imports.rs`,
//! `lint/exports.rs`; this file runs them in the order of [`RULES`].

mod exports;
mod headers;
mod imports;
mod sections;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::Path;

use crate::image::read::{FormatError, PeImage};

/// `IMAGE_FILE_MACHINE_AMD64` (x64) and `IMAGE_FILE_MACHINE_ARM64`, defined in `base::layout`
/// (the foundation layer, which must not import this library).
pub use crate::base::layout::{IMAGE_FILE_MACHINE_AMD64, IMAGE_FILE_MACHINE_ARM64};

/// The rules, as `(rule id, one-line description)`, in the order violations are reported.
pub const RULES: &[(&str, &str)] = &[
    (
        "pe-format",
        "the file is a well-formed PE32+ image (DOS/PE headers, section table, import and export tables in bounds)",
    ),
    (
        "machine",
        "FileHeader.Machine is the architecture the driver was built for",
    ),
    (
        "subsystem",
        "the subsystem is native (1), as for every kernel-mode driver",
    ),
    (
        "entry-point",
        "AddressOfEntryPoint is non-zero and inside an executable section",
    ),
    (
        "imports-kernel-only",
        "every imported module is a kernel module (ntoskrnl.exe, hal.dll, ...); the kernel refuses user-mode DLL imports",
    ),
    (
        "no-write-execute",
        "no section is both writable and executable (memory integrity / HVCI)",
    ),
    (
        "sections-not-pageable",
        "every section but PAGE*, INIT and discardable ones is non-pageable (code may run at DISPATCH_LEVEL)",
    ),
    ("init-discardable", "a section named INIT is discardable"),
    (
        "reloc-discardable",
        "a section named .reloc is discardable (the loader frees it once it has relocated the image)",
    ),
    (
        "dll-characteristics",
        "DllCharacteristics has NX_COMPAT, DYNAMIC_BASE and FORCE_INTEGRITY",
    ),
    (
        "checksum",
        "OptionalHeader.CheckSum is non-zero and matches the file (the loader checks it for drivers)",
    ),
    (
        "no-tls",
        "there is no TLS directory (TLS callbacks never run for drivers)",
    ),
    (
        "exports",
        "only the allowed names (by default DriverEntry) are exported",
    ),
    (
        "relocations",
        "an image with DYNAMIC_BASE is not marked RELOCS_STRIPPED",
    ),
];

/// What the image is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LintOptions {
    /// The `IMAGE_FILE_MACHINE_*` the image must be built for.
    pub expected_machine: u16,
    /// The names the image may export (exact, case-sensitive match).
    pub allowed_exports: Vec<String>,
}

impl LintOptions {
    /// Options for an image of `machine` ([`IMAGE_FILE_MACHINE_AMD64`] or
    /// [`IMAGE_FILE_MACHINE_ARM64`]) that exports only `DriverEntry`.
    #[must_use]
    pub fn for_machine(machine: u16) -> Self {
        Self {
            expected_machine: machine,
            allowed_exports: vec!["DriverEntry".to_owned()],
        }
    }
}

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The rule id (first element of an entry of [`RULES`]).
    pub rule: &'static str,
    /// What the violation is about: a section, an imported module, an export, a header field.
    pub subject: String,
    /// What is wrong, and how to fix it.
    pub message: String,
}

impl Violation {
    fn new(rule: &'static str, subject: impl Into<String>, message: impl Into<String>) -> Self {
        debug_assert!(
            RULES.iter().any(|(id, _)| *id == rule),
            "unknown rule {rule}"
        );
        Self {
            rule,
            subject: subject.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}: {}", self.rule, self.subject, self.message)
    }
}

/// Reads the image at `path` and lints it (see [`lint_image`]).
///
/// # Errors
/// Any error reading the file.
pub fn lint_file(path: &Path, options: &LintOptions) -> std::io::Result<Vec<Violation>> {
    let bytes = std::fs::read(path)?;
    Ok(lint_image(&bytes, options))
}

/// Lints a driver image; an empty result means it passes every rule.
///
/// Input that is not a PE32+ image yields a single `pe-format` violation naming what is wrong.
#[must_use]
pub fn lint_image(bytes: &[u8], options: &LintOptions) -> Vec<Violation> {
    let format_violation =
        |error: FormatError| Violation::new("pe-format", error.subject, error.message);
    let image = match PeImage::parse(bytes) {
        Ok(image) => image,
        Err(error) => return vec![format_violation(error)],
    };
    let mut violations = Vec::new();
    // A broken import or export table is reported, and the rules that do not need it still run.
    let imports = image.imports().map_err(format_violation);
    let exports = image.exports().map_err(format_violation);
    violations.extend(imports.as_ref().err().cloned());
    violations.extend(exports.as_ref().err().cloned());

    headers::check_machine(&image, options, &mut violations);
    headers::check_subsystem(&image, &mut violations);
    headers::check_entry_point(&image, &mut violations);
    if let Ok(imports) = imports {
        imports::check_imports(&imports, &mut violations);
    }
    for section in &image.sections {
        sections::check_section(section, &mut violations);
    }
    headers::check_dll_characteristics(&image, &mut violations);
    headers::check_checksum(&image, &mut violations);
    headers::check_tls(&image, &mut violations);
    if let Ok(exports) = exports {
        exports::check_exports(&exports, options, &mut violations);
    }
    headers::check_relocations(&image, &mut violations);
    violations
}
