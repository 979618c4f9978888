//! The rules on the headers: `machine`, `subsystem`, `entry-point`, `dll-characteristics`,
//! `checksum` (our own computation, `image/checksum.rs`), `no-tls` and `relocations`.

use super::{IMAGE_FILE_MACHINE_AMD64, IMAGE_FILE_MACHINE_ARM64, LintOptions, Violation};
use crate::image::read::{
    DIR_TLS, IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE, IMAGE_DLLCHARACTERISTICS_FORCE_INTEGRITY,
    IMAGE_DLLCHARACTERISTICS_NX_COMPAT, IMAGE_FILE_RELOCS_STRIPPED, IMAGE_SCN_MEM_EXECUTE,
    IMAGE_SUBSYSTEM_NATIVE, PeImage,
};

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

pub(super) fn check_machine(
    image: &PeImage<'_>,
    options: &LintOptions,
    violations: &mut Vec<Violation>,
) {
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

pub(super) fn check_subsystem(image: &PeImage<'_>, violations: &mut Vec<Violation>) {
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

pub(super) fn check_entry_point(image: &PeImage<'_>, violations: &mut Vec<Violation>) {
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

pub(super) fn check_dll_characteristics(image: &PeImage<'_>, violations: &mut Vec<Violation>) {
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

pub(super) fn check_checksum(image: &PeImage<'_>, violations: &mut Vec<Violation>) {
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

pub(super) fn check_tls(image: &PeImage<'_>, violations: &mut Vec<Violation>) {
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
}

pub(super) fn check_relocations(image: &PeImage<'_>, violations: &mut Vec<Violation>) {
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
