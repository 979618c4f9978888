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

use std::fmt;
use std::path::Path;

use crate::image::pe::{
    DIR_TLS, FormatError, IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE,
    IMAGE_DLLCHARACTERISTICS_FORCE_INTEGRITY, IMAGE_DLLCHARACTERISTICS_NX_COMPAT,
    IMAGE_FILE_RELOCS_STRIPPED, IMAGE_SCN_MEM_DISCARDABLE, IMAGE_SCN_MEM_EXECUTE,
    IMAGE_SCN_MEM_NOT_PAGED, IMAGE_SCN_MEM_WRITE, IMAGE_SUBSYSTEM_NATIVE, PeImage, Section,
};

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

/// Kernel modules a driver may import from (compared case-insensitively).
pub const KERNEL_MODULES: &[&str] = &[
    "ntoskrnl.exe",
    "hal.dll",
    "fwpkclnt.sys",
    "netio.sys",
    "wdfldr.sys",
    "ndis.sys",
    "fltmgr.sys",
    "ksecdd.sys",
    "cng.sys",
    "tdi.sys",
    "wmilib.sys",
    "ci.dll",
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

    check_machine(&image, options, &mut violations);
    check_subsystem(&image, &mut violations);
    check_entry_point(&image, &mut violations);
    if let Ok(imports) = imports {
        for module in imports
            .iter()
            .filter(|module| !is_kernel_module(&module.name))
        {
            let functions: Vec<String> = module
                .functions
                .iter()
                .take(4)
                .map(ToString::to_string)
                .collect();
            let more = if module.functions.len() > functions.len() {
                ", ..."
            } else {
                ""
            };
            violations.push(Violation::new(
                "imports-kernel-only",
                module.name.clone(),
                format!(
                    "imports from a user-mode module ({}{more}): the kernel refuses to load a driver importing a user-mode DLL; \
                     declare these functions against the kernel module that exports them (e.g. \
                     #[link(name = \"ntoskrnl.exe\", kind = \"raw-dylib\", modifiers = \"+verbatim\")])",
                    functions.join(", "),
                ),
            ));
        }
    }
    for section in &image.sections {
        check_section(section, &mut violations);
    }
    check_dll_characteristics(&image, &mut violations);
    check_checksum(&image, &mut violations);
    if let Some(tls) = image
        .data_directory(DIR_TLS)
        .filter(|directory| directory.is_present())
    {
        violations.push(Violation::new(
            "no-tls",
            "TLS directory",
            format!(
                "the image has a TLS directory (RVA 0x{:X}, size 0x{:X}): TLS callbacks never run and thread-local storage \
                 does not work in drivers; remove thread_local!/#[thread_local] data (use per-CPU or explicitly allocated state)",
                tls.virtual_address, tls.size
            ),
        ));
    }
    if let Ok(exports) = exports {
        check_exports(&exports, options, &mut violations);
    }
    check_relocations(&image, &mut violations);
    violations
}

/// True if `module` is on the kernel-module allow-list (case-insensitive).
#[must_use]
pub fn is_kernel_module(module: &str) -> bool {
    KERNEL_MODULES
        .iter()
        .any(|allowed| allowed.eq_ignore_ascii_case(module))
}

fn machine_name(machine: u16) -> &'static str {
    match machine {
        IMAGE_FILE_MACHINE_AMD64 => "AMD64",
        IMAGE_FILE_MACHINE_ARM64 => "ARM64",
        0x014C => "i386",
        0x01C4 => "ARMNT",
        0xA641 => "ARM64EC",
        0xA64E => "ARM64X",
        0x0000 => "unknown",
        _ => "unrecognized",
    }
}

fn target_for(machine: u16) -> &'static str {
    match machine {
        IMAGE_FILE_MACHINE_ARM64 => "aarch64-pc-windows-msvc",
        _ => "x86_64-pc-windows-msvc",
    }
}

fn check_machine(image: &PeImage<'_>, options: &LintOptions, violations: &mut Vec<Violation>) {
    let machine = image.file_header.machine;
    if machine != options.expected_machine {
        violations.push(Violation::new(
            "machine",
            "Machine",
            format!(
                "the image is for machine 0x{machine:04X} ({}), expected 0x{:04X} ({}): build it with --target {}",
                machine_name(machine),
                options.expected_machine,
                machine_name(options.expected_machine),
                target_for(options.expected_machine),
            ),
        ));
    }
}

fn subsystem_name(subsystem: u16) -> &'static str {
    match subsystem {
        0 => "unknown",
        1 => "native",
        2 => "Windows GUI",
        3 => "Windows console",
        10 => "EFI application",
        11 => "EFI boot service driver",
        12 => "EFI runtime driver",
        16 => "Windows boot application",
        _ => "other",
    }
}

fn check_subsystem(image: &PeImage<'_>, violations: &mut Vec<Violation>) {
    let subsystem = image.optional_header.subsystem;
    if subsystem != IMAGE_SUBSYSTEM_NATIVE {
        violations.push(Violation::new(
            "subsystem",
            "Subsystem",
            format!(
                "the subsystem is {subsystem} ({}), expected {IMAGE_SUBSYSTEM_NATIVE} (native) for a kernel-mode driver: \
                 link with /DRIVER /SUBSYSTEM:NATIVE",
                subsystem_name(subsystem)
            ),
        ));
    }
}

fn check_entry_point(image: &PeImage<'_>, violations: &mut Vec<Violation>) {
    let entry = image.optional_header.address_of_entry_point;
    if entry == 0 {
        violations.push(Violation::new(
            "entry-point",
            "AddressOfEntryPoint",
            "the image has no entry point (AddressOfEntryPoint is 0): link with /ENTRY:DriverEntry",
        ));
        return;
    }
    match image.section_containing_rva(entry) {
        None => violations.push(Violation::new(
            "entry-point",
            "AddressOfEntryPoint",
            format!(
                "the entry point RVA 0x{entry:X} is not inside any section: the image is corrupt or was patched; \
                 relink with /ENTRY:DriverEntry"
            ),
        )),
        Some(section) if !section.has(IMAGE_SCN_MEM_EXECUTE) => violations.push(Violation::new(
            "entry-point",
            section.name.clone(),
            format!(
                "the entry point RVA 0x{entry:X} lies in {}, which is not executable (characteristics 0x{:08X}): \
                 /ENTRY must name a function (DriverEntry), not data",
                section.name, section.characteristics
            ),
        )),
        Some(_) => {}
    }
}

/// The `/SECTION` attribute letters that reproduce a section's current E/R/W/D bits.
fn section_flags(section: &Section) -> String {
    let mut letters = String::new();
    for (bit, letter) in [
        (IMAGE_SCN_MEM_EXECUTE, 'E'),
        (0x4000_0000, 'R'),
        (IMAGE_SCN_MEM_WRITE, 'W'),
    ] {
        if section.has(bit) {
            letters.push(letter);
        }
    }
    letters
}

fn is_pageable_by_design(section: &Section) -> bool {
    section.raw_name.starts_with(b"PAGE")
        || section.name == "INIT"
        || section.has(IMAGE_SCN_MEM_DISCARDABLE)
}

fn check_section(section: &Section, violations: &mut Vec<Violation>) {
    let name = &section.name;
    let characteristics = section.characteristics;
    if section.has(IMAGE_SCN_MEM_WRITE | IMAGE_SCN_MEM_EXECUTE) {
        violations.push(Violation::new(
            "no-write-execute",
            name.clone(),
            format!(
                "section is both writable and executable (characteristics 0x{characteristics:08X}): memory integrity (HVCI) \
                 refuses to load such a driver; keep code and writable data apart (e.g. /SECTION:{name},ERP for code, \
                 /SECTION:{name},RWP for data, and no /MERGE of .data into .text)"
            ),
        ));
    }
    if !section.has(IMAGE_SCN_MEM_NOT_PAGED) && !is_pageable_by_design(section) {
        let message = if characteristics == 0 {
            format!(
                "section has no attributes at all (characteristics 0x00000000): a driver with such a section fails to start \
                 (error 998); merge it into another section (e.g. /MERGE:{name}=.text)"
            )
        } else {
            let mut flags = section_flags(section);
            flags.push('P');
            format!(
                "section is pageable (characteristics 0x{characteristics:08X}): kernel code that can run at DISPATCH_LEVEL \
                 must be non-paged; link with /SECTION:{name},{flags}"
            )
        };
        violations.push(Violation::new(
            "sections-not-pageable",
            name.clone(),
            message,
        ));
    }
    if name == ".reloc" && !section.has(IMAGE_SCN_MEM_DISCARDABLE) {
        // /SECTION:.reloc,<flags> replaces the attributes: without D the relocations stay
        // resident, in non-paged memory, for as long as the driver is loaded.
        let mut flags = section_flags(section);
        flags.push('D');
        violations.push(Violation::new(
            "reloc-discardable",
            name.clone(),
            format!(
                ".reloc section is not discardable (characteristics 0x{characteristics:08X}): the base relocations are \
                 only needed while the loader relocates the image; keep the linker's DISCARDABLE (do not restate \
                 .reloc with /SECTION, or restate it with D: /SECTION:.reloc,{flags})"
            ),
        ));
    }
    if name == "INIT" && !section.has(IMAGE_SCN_MEM_DISCARDABLE) {
        let mut flags = section_flags(section);
        flags.push('D');
        violations.push(Violation::new(
            "init-discardable",
            name.clone(),
            format!(
                "INIT section is not discardable (characteristics 0x{characteristics:08X}): initialization-only code should \
                 be freed after DriverEntry; link with /SECTION:INIT,{flags}"
            ),
        ));
    }
}

fn check_dll_characteristics(image: &PeImage<'_>, violations: &mut Vec<Violation>) {
    let value = image.optional_header.dll_characteristics;
    let required = [
        (
            IMAGE_DLLCHARACTERISTICS_NX_COMPAT,
            "NX_COMPAT",
            "/NXCOMPAT",
            "memory integrity requires NX-compatible drivers",
        ),
        (
            IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE,
            "DYNAMIC_BASE",
            "/DYNAMICBASE",
            "the kernel relocates drivers (KASLR)",
        ),
        (
            IMAGE_DLLCHARACTERISTICS_FORCE_INTEGRITY,
            "FORCE_INTEGRITY",
            "/INTEGRITYCHECK",
            "the loader must verify the driver's signature",
        ),
    ];
    for (flag, flag_name, switch, why) in required {
        if value & flag == 0 {
            violations.push(Violation::new(
                "dll-characteristics",
                "DllCharacteristics",
                format!("{flag_name} (0x{flag:04X}) is not set (DllCharacteristics 0x{value:04X}): {why}; link with {switch}"),
            ));
        }
    }
}

fn check_checksum(image: &PeImage<'_>, violations: &mut Vec<Violation>) {
    let stored = image.optional_header.checksum;
    let computed = image.computed_checksum();
    if stored == 0 {
        violations.push(Violation::new(
            "checksum",
            "CheckSum",
            format!(
                "the image checksum is 0 (should be 0x{computed:08X}): the loader requires a valid checksum for drivers; \
                 link with /RELEASE"
            ),
        ));
    } else if stored != computed {
        violations.push(Violation::new(
            "checksum",
            "CheckSum",
            format!(
                "the image checksum is 0x{stored:08X} but the file's is 0x{computed:08X}: the file was modified or truncated \
                 after linking; relink (with /RELEASE) or recompute the checksum after patching"
            ),
        ));
    }
}

fn check_exports(
    exports: &[crate::image::pe::Export],
    options: &LintOptions,
    violations: &mut Vec<Violation>,
) {
    let allowed = options.allowed_exports.join(", ");
    for export in exports {
        match &export.name {
            Some(name) if options.allowed_exports.iter().any(|allowed| allowed == name) => {}
            Some(name) => violations.push(Violation::new(
                "exports",
                name.clone(),
                format!(
                    "stray export (ordinal {}): a driver should export only {allowed}; every #[no_mangle] pub item of a \
                     cdylib is exported, so make it non-public or drop #[no_mangle] (or allow it explicitly)",
                    export.ordinal
                ),
            )),
            None => violations.push(Violation::new(
                "exports",
                format!("ordinal {}", export.ordinal),
                format!(
                    "export by ordinal only (RVA 0x{:X}): a driver should export only {allowed}; remove the ordinal export \
                     from the link (/EXPORT or .def file)",
                    export.rva
                ),
            )),
        }
    }
}

fn check_relocations(image: &PeImage<'_>, violations: &mut Vec<Violation>) {
    let dynamic_base =
        image.optional_header.dll_characteristics & IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE != 0;
    let characteristics = image.file_header.characteristics;
    if dynamic_base && characteristics & IMAGE_FILE_RELOCS_STRIPPED != 0 {
        violations.push(Violation::new(
            "relocations",
            "Characteristics",
            format!(
                "the image is marked RELOCS_STRIPPED (Characteristics 0x{characteristics:04X}) but has DYNAMIC_BASE: the \
                 kernel loads drivers at a random base and cannot relocate this one; link without /FIXED"
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::{
        IMAGE_FILE_MACHINE_AMD64, IMAGE_FILE_MACHINE_ARM64, LintOptions, RULES, Violation,
        lint_file, lint_image,
    };
    use crate::image::pe::testimage::{
        self, CHECKSUM, DATA, DATA_RVA, DLL_CHARACTERISTICS, ENTRY_POINT, FILE_HEADER, INIT, PAGE,
        RDATA, RDATA_RVA, SUBSYSTEM, Spec, TEXT, fix_checksum, get_u32, section_characteristics,
        set_u16, set_u32,
    };
    use crate::image::pe::{
        IMAGE_SCN_MEM_DISCARDABLE, IMAGE_SCN_MEM_NOT_PAGED, IMAGE_SCN_MEM_WRITE,
    };
    use std::path::PathBuf;

    fn amd64() -> LintOptions {
        LintOptions::for_machine(IMAGE_FILE_MACHINE_AMD64)
    }

    /// Applies `mutate` to the good image, restores the checksum, and lints.
    fn lint_mutated(mutate: impl FnOnce(&mut Vec<u8>)) -> Vec<Violation> {
        let mut bytes = testimage::good();
        mutate(&mut bytes);
        fix_checksum(&mut bytes);
        lint_image(&bytes, &amd64())
    }

    /// Asserts that there is exactly one violation, of `rule`, about `subject`.
    #[track_caller]
    fn assert_only(violations: &[Violation], rule: &str, subject: &str) {
        assert_eq!(
            violations.len(),
            1,
            "expected exactly one [{rule}] {subject}, got {violations:#?}"
        );
        let violation = &violations[0];
        assert_eq!(
            (violation.rule, violation.subject.as_str()),
            (rule, subject),
            "{violation}"
        );
        assert!(RULES.iter().any(|(id, _)| *id == rule));
        assert!(!violation.message.is_empty());
    }

    fn flip_section_bits(bytes: &mut [u8], section: usize, set: u32, clear: u32) {
        let at = section_characteristics(section);
        let value = get_u32(bytes, at);
        set_u32(bytes, at, (value | set) & !clear);
    }

    #[test]
    fn the_synthetic_image_passes() {
        let violations = lint_image(&testimage::good(), &amd64());
        assert!(violations.is_empty(), "{violations:#?}");
    }

    #[test]
    fn kernel_module_names_are_case_insensitive() {
        let spec = Spec {
            imports: vec![
                ("NTOSKRNL.EXE".to_owned(), vec!["KeBugCheckEx".to_owned()]),
                (
                    "HAL.dll".to_owned(),
                    vec!["KeStallExecutionProcessor".to_owned()],
                ),
                ("NETIO.SYS".to_owned(), vec!["#3".to_owned()]),
                (
                    "fwpkclnt.sys".to_owned(),
                    vec!["FwpsCalloutRegister3".to_owned()],
                ),
            ],
            ..Spec::default()
        };
        let violations = lint_image(&testimage::build(&spec), &amd64());
        assert!(violations.is_empty(), "{violations:#?}");
    }

    #[test]
    fn the_real_driver_images_pass() {
        let root = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
            || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
            PathBuf::from,
        );
        for (target, machine) in [
            ("x86_64-pc-windows-msvc", IMAGE_FILE_MACHINE_AMD64),
            ("aarch64-pc-windows-msvc", IMAGE_FILE_MACHINE_ARM64),
        ] {
            let path = root.join(target).join("release/ex_callback.dll");
            if !path.exists() {
                println!(
                    "note: {} is absent (cargo build -p ex-callback --target {target} --release); skipped",
                    path.display()
                );
                continue;
            }
            let violations = lint_file(&path, &LintOptions::for_machine(machine)).unwrap();
            assert!(violations.is_empty(), "{}: {violations:#?}", path.display());
            // And it is rejected for the other architecture.
            let other = if machine == IMAGE_FILE_MACHINE_AMD64 {
                IMAGE_FILE_MACHINE_ARM64
            } else {
                IMAGE_FILE_MACHINE_AMD64
            };
            assert_only(
                &lint_file(&path, &LintOptions::for_machine(other)).unwrap(),
                "machine",
                "Machine",
            );
        }
    }

    #[test]
    fn lint_file_reports_io_errors() {
        assert!(lint_file(std::path::Path::new("/nonexistent/driver.sys"), &amd64()).is_err());
    }

    #[test]
    fn rule_pe_format() {
        for (bytes, subject) in [
            (Vec::new(), "DOS header"),
            (b"\x7fELF and more bytes to make up a DOS header's worth of length, more or less....".to_vec(), "DOS header"),
        ] {
            assert_only(&lint_image(&bytes, &amd64()), "pe-format", subject);
        }
        assert_only(
            &lint_mutated(|bytes| bytes[testimage::PE_OFFSET + 2] = b'X'),
            "pe-format",
            "PE signature",
        );
        assert_only(
            &lint_mutated(|bytes| set_u32(bytes, 0x3C, 0x7FFF_FFFF)),
            "pe-format",
            "PE signature",
        );
        let pe32 = lint_mutated(|bytes| set_u16(bytes, testimage::OPTIONAL_HEADER, 0x10B));
        assert_only(&pe32, "pe-format", "optional header");
        assert!(pe32[0].message.contains("PE32+"), "{}", pe32[0]);
        // Truncated in the middle of INIT's raw data.
        let mut bytes = testimage::good();
        bytes.truncate(bytes.len() - 0x100);
        let truncated = lint_image(&bytes, &amd64());
        assert_only(&truncated, "pe-format", "section INIT");
        // Import directory pointing nowhere: reported, and the other rules still run.
        let violations = lint_mutated(|bytes| set_u32(bytes, testimage::data_directory(1), 0x9000));
        assert_only(&violations, "pe-format", "import directory");
        let violations = lint_mutated(|bytes| {
            set_u32(bytes, testimage::data_directory(0), 0x9000);
            set_u16(bytes, SUBSYSTEM, 3);
        });
        assert_eq!(violations.len(), 2, "{violations:#?}");
        assert_eq!(
            (violations[0].rule, violations[0].subject.as_str()),
            ("pe-format", "export directory")
        );
        assert_eq!(violations[1].rule, "subsystem");
    }

    #[test]
    fn rule_machine() {
        assert_only(
            &lint_mutated(|bytes| set_u16(bytes, FILE_HEADER, 0x014C)),
            "machine",
            "Machine",
        );
        let arm64 = lint_image(
            &testimage::good(),
            &LintOptions::for_machine(IMAGE_FILE_MACHINE_ARM64),
        );
        assert_only(&arm64, "machine", "Machine");
        assert!(
            arm64[0].message.contains("aarch64-pc-windows-msvc"),
            "{}",
            arm64[0]
        );
        let spec = Spec {
            machine: IMAGE_FILE_MACHINE_ARM64,
            ..Spec::default()
        };
        assert!(
            lint_image(
                &testimage::build(&spec),
                &LintOptions::for_machine(IMAGE_FILE_MACHINE_ARM64)
            )
            .is_empty()
        );
    }

    #[test]
    fn rule_subsystem() {
        let violations = lint_mutated(|bytes| set_u16(bytes, SUBSYSTEM, 2));
        assert_only(&violations, "subsystem", "Subsystem");
        assert!(
            violations[0].message.contains("Windows GUI"),
            "{}",
            violations[0]
        );
    }

    #[test]
    fn rule_entry_point() {
        assert_only(
            &lint_mutated(|bytes| set_u32(bytes, ENTRY_POINT, 0)),
            "entry-point",
            "AddressOfEntryPoint",
        );
        assert_only(
            &lint_mutated(|bytes| set_u32(bytes, ENTRY_POINT, DATA_RVA + 8)),
            "entry-point",
            ".data",
        );
        assert_only(
            &lint_mutated(|bytes| set_u32(bytes, ENTRY_POINT, RDATA_RVA)),
            "entry-point",
            ".rdata",
        );
        assert_only(
            &lint_mutated(|bytes| set_u32(bytes, ENTRY_POINT, 0x9_0000)),
            "entry-point",
            "AddressOfEntryPoint",
        );
        // Past .text's virtual size, in the gap before .rdata.
        assert_only(
            &lint_mutated(|bytes| set_u32(bytes, ENTRY_POINT, 0x1F00)),
            "entry-point",
            "AddressOfEntryPoint",
        );
    }

    #[test]
    fn rule_imports_kernel_only() {
        for module in ["ntdll.dll", "kernel32.dll", "fwpuclnt.dll", "NTDLL.DLL"] {
            let mut spec = Spec::default();
            spec.imports.push((
                module.to_owned(),
                vec!["DbgPrintEx".to_owned(), "RtlInitUnicodeString".to_owned()],
            ));
            let violations = lint_image(&testimage::build(&spec), &amd64());
            assert_only(&violations, "imports-kernel-only", module);
            assert!(
                violations[0]
                    .message
                    .contains("DbgPrintEx, RtlInitUnicodeString"),
                "{}",
                violations[0]
            );
            assert!(
                violations[0].message.contains("refuses to load"),
                "{}",
                violations[0]
            );
        }
    }

    #[test]
    fn rule_no_write_execute() {
        let violations =
            lint_mutated(|bytes| flip_section_bits(bytes, TEXT, IMAGE_SCN_MEM_WRITE, 0));
        assert_only(&violations, "no-write-execute", ".text");
        assert!(violations[0].message.contains("HVCI"), "{}", violations[0]);
    }

    #[test]
    fn rule_sections_not_pageable() {
        let violations =
            lint_mutated(|bytes| flip_section_bits(bytes, TEXT, 0, IMAGE_SCN_MEM_NOT_PAGED));
        assert_only(&violations, "sections-not-pageable", ".text");
        assert_eq!(
            violations[0].to_string(),
            "[sections-not-pageable] .text: section is pageable (characteristics 0x60000020): kernel code that can run at \
             DISPATCH_LEVEL must be non-paged; link with /SECTION:.text,ERP"
        );
        let violations =
            lint_mutated(|bytes| flip_section_bits(bytes, DATA, 0, IMAGE_SCN_MEM_NOT_PAGED));
        assert_only(&violations, "sections-not-pageable", ".data");
        assert!(
            violations[0].message.contains("/SECTION:.data,RWP"),
            "{}",
            violations[0]
        );
        // An attribute-less section (lld's .retplne) gets its own hint.
        let violations = lint_mutated(|bytes| set_u32(bytes, section_characteristics(RDATA), 0));
        assert_only(&violations, "sections-not-pageable", ".rdata");
        assert!(
            violations[0].message.contains("/MERGE:.rdata=.text"),
            "{}",
            violations[0]
        );
        // Exempt: PAGE* (pageable in the good image already), INIT, and discardable sections.
        let violations = lint_mutated(|bytes| {
            bytes[testimage::section_name(PAGE)..][..8].copy_from_slice(b"PAGEwfp\0");
            flip_section_bits(bytes, INIT, 0, IMAGE_SCN_MEM_NOT_PAGED);
            flip_section_bits(
                bytes,
                RDATA,
                IMAGE_SCN_MEM_DISCARDABLE,
                IMAGE_SCN_MEM_NOT_PAGED,
            );
        });
        assert!(violations.is_empty(), "{violations:#?}");
    }

    #[test]
    fn rule_reloc_discardable() {
        // A section named .reloc without DISCARDABLE (what /SECTION:.reloc,RP produces) fails...
        let rename = |bytes: &mut [u8]| {
            bytes[testimage::section_name(RDATA)..][..8].copy_from_slice(b".reloc\0\0");
        };
        let violations = lint_mutated(|bytes| rename(bytes));
        assert_only(&violations, "reloc-discardable", ".reloc");
        assert!(
            violations[0].message.contains("/SECTION:.reloc,RD"),
            "{}",
            violations[0]
        );
        // ... a discardable one passes.
        let violations = lint_mutated(|bytes| {
            rename(bytes);
            flip_section_bits(bytes, RDATA, IMAGE_SCN_MEM_DISCARDABLE, 0);
        });
        assert!(violations.is_empty(), "{violations:#?}");
    }

    #[test]
    fn rule_init_discardable() {
        let violations =
            lint_mutated(|bytes| flip_section_bits(bytes, INIT, 0, IMAGE_SCN_MEM_DISCARDABLE));
        assert_only(&violations, "init-discardable", "INIT");
        assert!(
            violations[0].message.contains("/SECTION:INIT,ERD"),
            "{}",
            violations[0]
        );
    }

    #[test]
    fn rule_dll_characteristics() {
        for (flag, name) in [
            (0x100, "NX_COMPAT"),
            (0x40, "DYNAMIC_BASE"),
            (0x80, "FORCE_INTEGRITY"),
        ] {
            let violations = lint_mutated(|bytes| {
                let value = u16::from_le_bytes([
                    bytes[DLL_CHARACTERISTICS],
                    bytes[DLL_CHARACTERISTICS + 1],
                ]);
                set_u16(bytes, DLL_CHARACTERISTICS, value & !flag);
            });
            assert_only(&violations, "dll-characteristics", "DllCharacteristics");
            assert!(violations[0].message.starts_with(name), "{}", violations[0]);
        }
        let violations = lint_mutated(|bytes| set_u16(bytes, DLL_CHARACTERISTICS, 0));
        assert_eq!(violations.len(), 3, "{violations:#?}");
        assert!(
            violations
                .iter()
                .all(|violation| violation.rule == "dll-characteristics")
        );
    }

    #[test]
    fn rule_checksum() {
        let mut bytes = testimage::good();
        set_u32(&mut bytes, CHECKSUM, 0);
        let violations = lint_image(&bytes, &amd64());
        assert_only(&violations, "checksum", "CheckSum");
        assert!(
            violations[0].message.contains("/RELEASE"),
            "{}",
            violations[0]
        );

        let mut bytes = testimage::good();
        let stored = get_u32(&bytes, CHECKSUM);
        set_u32(&mut bytes, CHECKSUM, stored ^ 0x10);
        assert_only(&lint_image(&bytes, &amd64()), "checksum", "CheckSum");

        // A byte changed anywhere after linking (here: .text code) without a new checksum.
        let mut bytes = testimage::good();
        bytes[0x401] ^= 0x5A;
        assert_only(&lint_image(&bytes, &amd64()), "checksum", "CheckSum");
        // An appended byte also changes it.
        let mut bytes = testimage::good();
        bytes.push(0);
        assert_only(&lint_image(&bytes, &amd64()), "checksum", "CheckSum");
    }

    #[test]
    fn rule_no_tls() {
        let violations = lint_mutated(|bytes| {
            set_u32(bytes, testimage::data_directory(9), RDATA_RVA);
            set_u32(bytes, testimage::data_directory(9) + 4, 0x28);
        });
        assert_only(&violations, "no-tls", "TLS directory");
    }

    #[test]
    fn rule_exports() {
        let spec = Spec {
            exports: vec!["DriverEntry".to_owned(), "_fltused".to_owned()],
            ..Spec::default()
        };
        let bytes = testimage::build(&spec);
        assert_only(&lint_image(&bytes, &amd64()), "exports", "_fltused");
        // Allowed explicitly, it passes.
        let mut options = amd64();
        options.allowed_exports.push("_fltused".to_owned());
        assert!(lint_image(&bytes, &options).is_empty());
        // Names are case-sensitive, and an ordinal-only export is stray too.
        let spec = Spec {
            exports: vec!["driverentry".to_owned()],
            ordinal_only_exports: 1,
            ..Spec::default()
        };
        let violations = lint_image(&testimage::build(&spec), &amd64());
        assert_eq!(violations.len(), 2, "{violations:#?}");
        assert_eq!(
            (violations[0].rule, violations[0].subject.as_str()),
            ("exports", "driverentry")
        );
        assert_eq!(
            (violations[1].rule, violations[1].subject.as_str()),
            ("exports", "ordinal 2")
        );
    }

    #[test]
    fn rule_relocations() {
        let violations = lint_mutated(|bytes| {
            let at = FILE_HEADER + 18;
            let value = u16::from_le_bytes([bytes[at], bytes[at + 1]]);
            set_u16(bytes, at, value | 1);
        });
        assert_only(&violations, "relocations", "Characteristics");
    }

    #[test]
    fn every_rule_is_documented_once() {
        let mut ids: Vec<&str> = RULES.iter().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), RULES.len());
        assert!(
            RULES
                .iter()
                .all(|(id, description)| !id.is_empty() && !description.is_empty())
        );
    }

    #[test]
    fn truncation_at_every_length_is_rejected_without_panicking() {
        let bytes = testimage::good();
        for len in 0..bytes.len() {
            let violations = lint_image(&bytes[..len], &amd64());
            assert!(
                !violations.is_empty(),
                "truncated to {len} bytes and still passes"
            );
        }
    }

    /// A small deterministic linear congruential generator (Knuth's MMIX constants).
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u32 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            u32::try_from(self.0 >> 33).unwrap()
        }
        fn below(&mut self, bound: usize) -> usize {
            usize::try_from(self.next()).unwrap() % bound
        }
    }

    #[test]
    fn random_byte_flips_never_panic_and_are_detected() {
        let good = testimage::good();
        // Half of the flips hit the headers and .rdata (import/export tables), where they matter most.
        let interesting = 0x400 + 0x200;
        let mut rng = Lcg(0x5EED);
        for iteration in 0..2000 {
            let mut bytes = good.clone();
            let at = if iteration % 2 == 0 {
                rng.below(interesting).min(bytes.len() - 1)
            } else {
                rng.below(bytes.len())
            };
            let mask = u8::try_from(rng.below(255) + 1).unwrap();
            bytes[at] ^= mask;
            // A single changed byte always changes the checksum, so something must be reported.
            let violations = lint_image(&bytes, &amd64());
            assert!(
                !violations.is_empty(),
                "flip of byte 0x{at:X} with 0x{mask:02X} went unnoticed"
            );
            // With the checksum restored, it must still not panic.
            if bytes.len() > CHECKSUM + 4 {
                fix_checksum(&mut bytes);
                let _ = lint_image(&bytes, &amd64());
            }
        }
    }

    #[test]
    fn extreme_header_values_never_panic() {
        let good = testimage::good();
        let mut rng = Lcg(0x00C0_FFEE);
        let extremes = [
            0,
            1,
            0x7FFF_FFFF,
            0x8000_0000,
            0xFFFF_FFFF,
            0xFFFF,
            0x1_0000,
            0x2000,
        ];
        for _ in 0..2000 {
            let mut bytes = good.clone();
            // Aligned words in the headers and .rdata, plus a few in the first bytes of sections.
            for _ in 0..3 {
                let at = rng.below((0x600 + 0x200) / 4) * 4;
                let value = if rng.below(2) == 0 {
                    extremes[rng.below(extremes.len())]
                } else {
                    rng.next()
                };
                set_u32(&mut bytes, at, value);
            }
            fix_checksum(&mut bytes);
            let _ = lint_image(&bytes, &amd64());
        }
    }
}
