//! The rules on each section: `no-write-execute`, `sections-not-pageable`, `reloc-discardable`
//! and `init-discardable`.

use super::Violation;
use crate::image::read::{
    IMAGE_SCN_MEM_DISCARDABLE, IMAGE_SCN_MEM_EXECUTE, IMAGE_SCN_MEM_NOT_PAGED, IMAGE_SCN_MEM_READ,
    IMAGE_SCN_MEM_WRITE, Section,
};

/// The `/SECTION` attribute letters that reproduce a section's current E/R/W/D bits.
fn section_flags(section: &Section) -> String {
    let mut letters = String::new();
    for (bit, letter) in [
        (IMAGE_SCN_MEM_EXECUTE, 'E'),
        (IMAGE_SCN_MEM_READ, 'R'),
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

pub(super) fn check_section(section: &Section, violations: &mut Vec<Violation>) {
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
