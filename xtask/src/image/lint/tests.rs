//! Every rule on synthetic images broken on purpose (`image/testimage.rs`), the real driver
//! images when built, and the robustness of the reader: truncation at every length, random byte
//! flips and extreme header values never panic and are always reported.

use super::{
    IMAGE_FILE_MACHINE_AMD64, IMAGE_FILE_MACHINE_ARM64, LintOptions, RULES, Violation, lint_file,
    lint_image,
};
use crate::image::read::{IMAGE_SCN_MEM_DISCARDABLE, IMAGE_SCN_MEM_NOT_PAGED, IMAGE_SCN_MEM_WRITE};
use crate::image::testimage::{
    self, CHECKSUM, DATA, DATA_RVA, DLL_CHARACTERISTICS, ENTRY_POINT, FILE_HEADER, INIT, PAGE,
    RDATA, RDATA_RVA, SUBSYSTEM, Spec, TEXT, fix_checksum, get_u32, section_characteristics,
    set_u16, set_u32,
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
        (
            b"\x7fELF and more bytes to make up a DOS header's worth of length, more or less...."
                .to_vec(),
            "DOS header",
        ),
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
    let violations = lint_mutated(|bytes| flip_section_bits(bytes, TEXT, IMAGE_SCN_MEM_WRITE, 0));
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
            let value =
                u16::from_le_bytes([bytes[DLL_CHARACTERISTICS], bytes[DLL_CHARACTERISTICS + 1]]);
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
