//! A test-only builder of small, correct synthetic driver images, and helpers to break them.
//!
//! The images are written byte by byte from the PE format specification, independently of the
//! reader (`read.rs`, on the `object` crate) that the tests then run on them.

use super::read::{
    IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE, IMAGE_DLLCHARACTERISTICS_FORCE_INTEGRITY,
    IMAGE_DLLCHARACTERISTICS_NX_COMPAT, IMAGE_SCN_MEM_DISCARDABLE, IMAGE_SCN_MEM_EXECUTE,
    IMAGE_SCN_MEM_NOT_PAGED, IMAGE_SCN_MEM_WRITE, IMAGE_SUBSYSTEM_NATIVE, PE32_PLUS_MAGIC,
};
use driver_package::pe::pe_checksum;

/// `IMAGE_SCN_CNT_CODE`: the section contains executable code.
const IMAGE_SCN_CNT_CODE: u32 = 0x0000_0020;
/// `IMAGE_SCN_CNT_INITIALIZED_DATA`: the section contains initialized data.
const IMAGE_SCN_CNT_INITIALIZED_DATA: u32 = 0x0000_0040;
/// `IMAGE_SCN_MEM_READ`: the section is readable.
const IMAGE_SCN_MEM_READ: u32 = 0x4000_0000;
/// `IMAGE_FILE_EXECUTABLE_IMAGE` (COFF characteristics).
const IMAGE_FILE_EXECUTABLE_IMAGE: u16 = 0x0002;
/// `IMAGE_FILE_LARGE_ADDRESS_AWARE` (COFF characteristics).
const IMAGE_FILE_LARGE_ADDRESS_AWARE: u16 = 0x0020;
/// `IMAGE_FILE_DLL` (COFF characteristics).
const IMAGE_FILE_DLL: u16 = 0x2000;
/// `IMAGE_DLLCHARACTERISTICS_HIGH_ENTROPY_VA`.
const IMAGE_DLLCHARACTERISTICS_HIGH_ENTROPY_VA: u16 = 0x0020;

/// File offset of the PE signature in built images.
pub const PE_OFFSET: usize = 0x80;
/// File offset of the COFF file header.
pub const FILE_HEADER: usize = PE_OFFSET + 4;
/// File offset of the optional header.
pub const OPTIONAL_HEADER: usize = FILE_HEADER + 20;
/// File offset of `CheckSum`.
pub const CHECKSUM: usize = OPTIONAL_HEADER + 64;
/// File offset of `AddressOfEntryPoint`.
pub const ENTRY_POINT: usize = OPTIONAL_HEADER + 16;
/// File offset of `Subsystem`.
pub const SUBSYSTEM: usize = OPTIONAL_HEADER + 68;
/// File offset of `DllCharacteristics`.
pub const DLL_CHARACTERISTICS: usize = OPTIONAL_HEADER + 70;
/// File offset of the section table.
pub const SECTION_TABLE: usize = OPTIONAL_HEADER + 240;
/// `SizeOfHeaders`, also the file offset of the first section's data.
pub const HEADERS_SIZE: u32 = 0x400;
const FILE_ALIGNMENT: u32 = 0x200;
const SECTION_ALIGNMENT: u32 = 0x1000;

/// Section indices in built images.
pub const TEXT: usize = 0;
pub const RDATA: usize = 1;
pub const DATA: usize = 2;
pub const PAGE: usize = 3;
pub const INIT: usize = 4;
/// RVAs of the sections.
pub const TEXT_RVA: u32 = 0x1000;
pub const RDATA_RVA: u32 = 0x2000;
pub const DATA_RVA: u32 = 0x3000;

/// What to put into a synthetic image.
pub struct Spec {
    /// `FileHeader.Machine`.
    pub machine: u16,
    /// `(module, functions)`; a function named `#N` is imported by ordinal N.
    pub imports: Vec<(String, Vec<String>)>,
    /// Exported names (each gets its own small function in `.text`; `DriverEntry`'s is the
    /// entry point when listed first).
    pub exports: Vec<String>,
    /// Extra exports by ordinal only (count).
    pub ordinal_only_exports: u32,
}

impl Default for Spec {
    fn default() -> Self {
        Self {
            machine: 0x8664,
            imports: vec![(
                "ntoskrnl.exe".to_owned(),
                vec![
                    "DbgPrintEx".to_owned(),
                    "ExAllocatePool2".to_owned(),
                    "ExFreePoolWithTag".to_owned(),
                ],
            )],
            exports: vec!["DriverEntry".to_owned()],
            ordinal_only_exports: 0,
        }
    }
}

/// A section to lay out: (name, RVA, contents, virtual size, characteristics).
type SectionSpec = (&'static [u8; 8], u32, Vec<u8>, usize, u32);

/// A growing section body that knows the RVA of each byte it holds.
struct Blob {
    base: u32,
    data: Vec<u8>,
}

impl Blob {
    fn rva(&self) -> u32 {
        self.base + u32::try_from(self.data.len()).unwrap()
    }
    fn align(&mut self, alignment: usize) {
        while !self.data.len().is_multiple_of(alignment) {
            self.data.push(0);
        }
    }
    fn push(&mut self, bytes: &[u8]) -> u32 {
        let rva = self.rva();
        self.data.extend_from_slice(bytes);
        rva
    }
    fn reserve(&mut self, len: usize) -> u32 {
        self.push(&vec![0; len])
    }
    fn push_str(&mut self, text: &str) -> u32 {
        let rva = self.push(text.as_bytes());
        self.data.push(0);
        rva
    }
    fn patch_u32(&mut self, rva: u32, value: u32) {
        let at = usize::try_from(rva - self.base).unwrap();
        self.data[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }
    fn patch_u64(&mut self, rva: u32, value: u64) {
        let at = usize::try_from(rva - self.base).unwrap();
        self.data[at..at + 8].copy_from_slice(&value.to_le_bytes());
    }
    fn patch_u16(&mut self, rva: u32, value: u16) {
        let at = usize::try_from(rva - self.base).unwrap();
        self.data[at..at + 2].copy_from_slice(&value.to_le_bytes());
    }
}

/// Writes a little-endian `u16` at `at`.
pub fn set_u16(bytes: &mut [u8], at: usize, value: u16) {
    bytes[at..at + 2].copy_from_slice(&value.to_le_bytes());
}

/// Writes a little-endian `u32` at `at`.
pub fn set_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

/// Reads a little-endian `u32` at `at`.
pub fn get_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

/// File offset of the `Characteristics` of section `index`.
pub fn section_characteristics(index: usize) -> usize {
    SECTION_TABLE + index * 40 + 36
}

/// File offset of the name of section `index`.
pub fn section_name(index: usize) -> usize {
    SECTION_TABLE + index * 40
}

/// File offset of data directory `index`.
pub fn data_directory(index: usize) -> usize {
    OPTIONAL_HEADER + 112 + index * 8
}

/// Recomputes and stores the checksum (after a deliberate mutation).
pub fn fix_checksum(bytes: &mut [u8]) {
    let sum = pe_checksum(bytes, CHECKSUM);
    set_u32(bytes, CHECKSUM, sum);
}

fn align_up(value: u32, alignment: u32) -> u32 {
    value.div_ceil(alignment) * alignment
}

/// The default, correct image.
pub fn good() -> Vec<u8> {
    build(&Spec::default())
}

/// Builds a correct native PE32+ driver image from `spec`: sections `.text` (ERP), `.rdata`
/// (RP: imports and exports), `.data` (RWP, zero-fill), `PAGE` (ER, pageable) and `INIT`
/// (ER, discardable), with a valid checksum.
#[allow(clippy::too_many_lines)]
pub fn build(spec: &Spec) -> Vec<u8> {
    // .text: one 16-byte `ret` stub per export.
    let export_count = spec.exports.len() + usize::try_from(spec.ordinal_only_exports).unwrap();
    let mut text = vec![0xCC; (16 * export_count.max(1)).max(0x40)];
    for stub in text.chunks_mut(16) {
        stub[0] = 0xC3;
    }

    // .rdata: import descriptors, IATs, lookup tables, names; then the export directory.
    let mut rdata = Blob {
        base: RDATA_RVA,
        data: Vec::new(),
    };
    let descriptors = rdata.reserve(20 * (spec.imports.len() + 1));
    rdata.align(8);
    let iat_start = rdata.rva();
    let iats: Vec<u32> = spec
        .imports
        .iter()
        .map(|(_, functions)| rdata.reserve(8 * (functions.len() + 1)))
        .collect();
    let iat_size = rdata.rva() - iat_start;
    let lookups: Vec<u32> = spec
        .imports
        .iter()
        .map(|(_, functions)| rdata.reserve(8 * (functions.len() + 1)))
        .collect();
    for (module_index, (module, functions)) in spec.imports.iter().enumerate() {
        for (function_index, function) in functions.iter().enumerate() {
            let thunk = if let Some(ordinal) = function.strip_prefix('#') {
                (1u64 << 63) | ordinal.parse::<u64>().unwrap()
            } else {
                rdata.align(2);
                let hint_name = rdata.push(&0u16.to_le_bytes());
                rdata.push_str(function);
                u64::from(hint_name)
            };
            let slot = u32::try_from(function_index * 8).unwrap();
            rdata.patch_u64(iats[module_index] + slot, thunk);
            rdata.patch_u64(lookups[module_index] + slot, thunk);
        }
        let name = rdata.push_str(module);
        let descriptor = descriptors + u32::try_from(module_index * 20).unwrap();
        rdata.patch_u32(descriptor, lookups[module_index]);
        rdata.patch_u32(descriptor + 12, name);
        rdata.patch_u32(descriptor + 16, iats[module_index]);
    }
    let import_size = u32::try_from(20 * (spec.imports.len() + 1)).unwrap();

    let export_directory = if export_count == 0 {
        None
    } else {
        rdata.align(4);
        let directory = rdata.reserve(40);
        let dll_name = rdata.push_str("synthetic.sys");
        rdata.align(4);
        let functions = rdata.reserve(4 * export_count);
        for index in 0..export_count {
            let slot = u32::try_from(index).unwrap();
            rdata.patch_u32(functions + 4 * slot, TEXT_RVA + 16 * slot);
        }
        // The name table is sorted (the loader binary-searches it).
        let mut names: Vec<(usize, &String)> = spec.exports.iter().enumerate().collect();
        names.sort_by(|left, right| left.1.cmp(right.1));
        let name_pointers = rdata.reserve(4 * names.len());
        let ordinals = rdata.reserve(2 * names.len());
        for (slot, (function, name)) in names.iter().enumerate() {
            let name_rva = rdata.push_str(name);
            let slot = u32::try_from(slot).unwrap();
            rdata.patch_u32(name_pointers + 4 * slot, name_rva);
            rdata.patch_u16(ordinals + 2 * slot, u16::try_from(*function).unwrap());
        }
        rdata.patch_u32(directory + 12, dll_name);
        rdata.patch_u32(directory + 16, 1);
        rdata.patch_u32(directory + 20, u32::try_from(export_count).unwrap());
        rdata.patch_u32(directory + 24, u32::try_from(names.len()).unwrap());
        rdata.patch_u32(directory + 28, functions);
        rdata.patch_u32(directory + 32, name_pointers);
        rdata.patch_u32(directory + 36, ordinals);
        Some((directory, rdata.rva() - directory))
    };
    assert!(
        rdata.rva() < DATA_RVA,
        "synthetic .rdata overflows its 4 KiB"
    );

    let page = vec![0xC3; 0x10];
    let init = vec![0xC3; 0x10];
    let code = IMAGE_SCN_CNT_CODE | IMAGE_SCN_MEM_EXECUTE | IMAGE_SCN_MEM_READ;
    let rdata_len = rdata.data.len();
    let sections: [SectionSpec; 5] = [
        (
            b".text\0\0\0",
            TEXT_RVA,
            text.clone(),
            text.len(),
            code | IMAGE_SCN_MEM_NOT_PAGED,
        ),
        (
            b".rdata\0\0",
            RDATA_RVA,
            rdata.data,
            rdata_len,
            IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_MEM_READ | IMAGE_SCN_MEM_NOT_PAGED,
        ),
        (
            b".data\0\0\0",
            DATA_RVA,
            Vec::new(),
            0x48,
            IMAGE_SCN_CNT_INITIALIZED_DATA
                | IMAGE_SCN_MEM_READ
                | IMAGE_SCN_MEM_WRITE
                | IMAGE_SCN_MEM_NOT_PAGED,
        ),
        (b"PAGE\0\0\0\0", 0x4000, page, 0x10, code),
        (
            b"INIT\0\0\0\0",
            0x5000,
            init,
            0x10,
            code | IMAGE_SCN_MEM_DISCARDABLE,
        ),
    ];

    let mut file = vec![0u8; usize::try_from(HEADERS_SIZE).unwrap()];
    let mut headers = Vec::new();
    let mut size_of_image = 0;
    for (name, rva, contents, virtual_size, characteristics) in &sections {
        let raw_size = align_up(u32::try_from(contents.len()).unwrap(), FILE_ALIGNMENT);
        let raw_pointer = if raw_size == 0 {
            0
        } else {
            u32::try_from(file.len()).unwrap()
        };
        file.extend_from_slice(contents);
        file.resize(
            usize::try_from(raw_pointer + raw_size)
                .unwrap()
                .max(file.len()),
            0,
        );
        headers.push((
            *name,
            u32::try_from(*virtual_size).unwrap(),
            *rva,
            raw_size,
            raw_pointer,
            *characteristics,
        ));
        size_of_image = align_up(
            rva + u32::try_from(*virtual_size).unwrap(),
            SECTION_ALIGNMENT,
        );
    }

    // DOS header (and an empty stub).
    file[0..2].copy_from_slice(b"MZ");
    set_u32(&mut file, 0x3C, u32::try_from(PE_OFFSET).unwrap());
    file[PE_OFFSET..PE_OFFSET + 4].copy_from_slice(b"PE\0\0");
    // COFF file header.
    set_u16(&mut file, FILE_HEADER, spec.machine);
    set_u16(
        &mut file,
        FILE_HEADER + 2,
        u16::try_from(sections.len()).unwrap(),
    );
    set_u32(&mut file, FILE_HEADER + 4, 0x6B01_F41A);
    set_u16(&mut file, FILE_HEADER + 16, 240);
    set_u16(
        &mut file,
        FILE_HEADER + 18,
        IMAGE_FILE_DLL | IMAGE_FILE_EXECUTABLE_IMAGE | IMAGE_FILE_LARGE_ADDRESS_AWARE,
    );
    // PE32+ optional header.
    let oh = OPTIONAL_HEADER;
    set_u16(&mut file, oh, PE32_PLUS_MAGIC);
    file[oh + 2] = 14;
    set_u32(&mut file, oh + 4, headers[TEXT].3);
    set_u32(&mut file, oh + 16, TEXT_RVA);
    set_u32(&mut file, oh + 20, TEXT_RVA);
    file[oh + 24..oh + 32].copy_from_slice(&0x1_4000_0000u64.to_le_bytes());
    set_u32(&mut file, oh + 32, SECTION_ALIGNMENT);
    set_u32(&mut file, oh + 36, FILE_ALIGNMENT);
    set_u16(&mut file, oh + 40, 10);
    set_u16(&mut file, oh + 48, 10);
    set_u32(&mut file, oh + 56, size_of_image);
    set_u32(&mut file, oh + 60, HEADERS_SIZE);
    set_u16(&mut file, SUBSYSTEM, IMAGE_SUBSYSTEM_NATIVE);
    set_u16(
        &mut file,
        DLL_CHARACTERISTICS,
        IMAGE_DLLCHARACTERISTICS_HIGH_ENTROPY_VA
            | IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE
            | IMAGE_DLLCHARACTERISTICS_FORCE_INTEGRITY
            | IMAGE_DLLCHARACTERISTICS_NX_COMPAT,
    );
    file[oh + 72..oh + 80].copy_from_slice(&0x10_0000u64.to_le_bytes());
    file[oh + 80..oh + 88].copy_from_slice(&0x1000u64.to_le_bytes());
    set_u32(&mut file, oh + 108, 16);
    if let Some((rva, size)) = export_directory {
        set_u32(&mut file, data_directory(0), rva);
        set_u32(&mut file, data_directory(0) + 4, size);
    }
    if !spec.imports.is_empty() {
        set_u32(&mut file, data_directory(1), descriptors);
        set_u32(&mut file, data_directory(1) + 4, import_size);
        set_u32(&mut file, data_directory(12), iat_start);
        set_u32(&mut file, data_directory(12) + 4, iat_size);
    }
    // Section table.
    for (index, (name, virtual_size, rva, raw_size, raw_pointer, characteristics)) in
        headers.iter().enumerate()
    {
        let at = SECTION_TABLE + index * 40;
        file[at..at + 8].copy_from_slice(*name);
        set_u32(&mut file, at + 8, *virtual_size);
        set_u32(&mut file, at + 12, *rva);
        set_u32(&mut file, at + 16, *raw_size);
        set_u32(&mut file, at + 20, *raw_pointer);
        set_u32(&mut file, at + 36, *characteristics);
    }
    fix_checksum(&mut file);
    file
}
