//! The reader on synthetic images (`testimage.rs`); the rules' tests (`lint/tests.rs`) cover the
//! malformed ones.

use super::imports::ImportedFunction;
use super::{DIR_EXPORT, DIR_IMPORT, Export, PeImage};
use crate::image::testimage::{self, Spec};

#[test]
fn parses_the_synthetic_image() {
    let bytes = testimage::good();
    let image = PeImage::parse(&bytes).expect("synthetic image parses");
    assert_eq!(image.file_header.machine, 0x8664);
    let names: Vec<&str> = image
        .sections
        .iter()
        .map(|section| section.name.as_str())
        .collect();
    assert_eq!(names, [".text", ".rdata", ".data", "PAGE", "INIT"]);
    assert_eq!(image.checksum_offset(), testimage::CHECKSUM);
    assert_eq!(image.optional_header.checksum, image.computed_checksum());
    assert!(image.data_directory(DIR_IMPORT).unwrap().is_present());

    let imports = image.imports().unwrap();
    assert_eq!(imports.len(), 1);
    assert_eq!(imports[0].name, "ntoskrnl.exe");
    let functions: Vec<String> = imports[0]
        .functions
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        functions,
        ["DbgPrintEx", "ExAllocatePool2", "ExFreePoolWithTag"]
    );

    let exports = image.exports().unwrap();
    assert_eq!(
        exports,
        [Export {
            name: Some("DriverEntry".to_owned()),
            ordinal: 1,
            rva: 0x1000
        }]
    );
    assert!(image.data_directory(DIR_EXPORT).unwrap().is_present());
}

#[test]
fn parses_ordinal_imports_and_exports() {
    let spec = Spec {
        imports: vec![(
            "hal.dll".to_owned(),
            vec!["#7".to_owned(), "KeStallExecutionProcessor".to_owned()],
        )],
        exports: vec!["Zeta".to_owned(), "Alpha".to_owned()],
        ordinal_only_exports: 1,
        ..Spec::default()
    };
    let bytes = testimage::build(&spec);
    let image = PeImage::parse(&bytes).unwrap();
    let imports = image.imports().unwrap();
    assert_eq!(imports[0].functions[0], ImportedFunction::ByOrdinal(7));
    assert_eq!(
        imports[0].functions[1].to_string(),
        "KeStallExecutionProcessor"
    );
    let exports = image.exports().unwrap();
    let summary: Vec<(Option<&str>, u32)> = exports
        .iter()
        .map(|export| (export.name.as_deref(), export.ordinal))
        .collect();
    assert_eq!(summary, [(Some("Alpha"), 2), (Some("Zeta"), 1), (None, 3)]);
}

#[test]
fn rejects_non_pe_input() {
    assert_eq!(PeImage::parse(b"").unwrap_err().subject, "DOS header");
    assert_eq!(
        PeImage::parse(&[0u8; 0x100]).unwrap_err().subject,
        "DOS header"
    );
    let mut bytes = testimage::good();
    bytes[testimage::PE_OFFSET] = b'N';
    assert_eq!(PeImage::parse(&bytes).unwrap_err().subject, "PE signature");
    testimage::set_u32(&mut bytes, 0x3C, 0xFFFF_FFF0);
    assert!(
        PeImage::parse(&bytes)
            .unwrap_err()
            .message
            .contains("past the end")
    );
}

#[test]
fn rva_ranges_stay_inside_the_file_backed_data() {
    let bytes = testimage::good();
    let image = PeImage::parse(&bytes).unwrap();
    assert_eq!(image.rva_to_offset(testimage::TEXT_RVA), Some(0x400));
    // .data is zero-fill: nothing of it is in the file.
    assert_eq!(image.rva_to_offset(testimage::DATA_RVA), None);
    // Past the end of .text's virtual size.
    assert_eq!(image.rva_to_offset(testimage::TEXT_RVA + 0xFFF), None);
    assert_eq!(image.bytes_at_rva(u32::MAX, 8), None);
    assert_eq!(image.rva_range(testimage::TEXT_RVA, usize::MAX), None);
}

/// The section table's `VirtualSize` of section `index` (file offset).
fn virtual_size(index: usize) -> usize {
    testimage::section_name(index) + 8
}

#[test]
fn overlapping_or_unordered_sections_are_refused() {
    let good = testimage::good();
    let image = PeImage::parse(&good).unwrap();
    let (text, rdata) = (&image.sections[0], &image.sections[1]);
    // .text grown over .rdata: the next section starts inside it.
    let mut grown = good.clone();
    let size = rdata.virtual_address - text.virtual_address + 0x10;
    testimage::set_u32(&mut grown, virtual_size(0), size);
    testimage::fix_checksum(&mut grown);
    let error = PeImage::parse(&grown).unwrap_err().to_string();
    assert!(error.contains("section .rdata"), "{error}");
    assert!(error.contains("must not overlap"), "{error}");
    // .rdata moved below .text: out of order.
    let mut swapped = good.clone();
    testimage::set_u32(&mut swapped, virtual_size(1) + 4, text.virtual_address);
    testimage::fix_checksum(&mut swapped);
    let error = PeImage::parse(&swapped).unwrap_err().to_string();
    assert!(error.contains("ascending order"), "{error}");
    // A gap between sections is no error (adjacency is not required here).
    let mut gap = good.clone();
    let size = rdata.virtual_address - text.virtual_address - 0x10;
    testimage::set_u32(&mut gap, virtual_size(0), size);
    testimage::fix_checksum(&mut gap);
    assert!(PeImage::parse(&gap).is_ok());
}
