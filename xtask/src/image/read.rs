//! Reading a PE32+ image, on the `object` crate: the headers, the section table and the data
//! directories here, the import and export tables in `read/imports.rs` and `read/exports.rs`.
//!
//! `object` does the parsing and every bounds check; it never panics on malformed input (the
//! truncation and bit-flip tests of `lint/tests.rs` hold it to that). When it rejects the
//! headers, `read/headers.rs` finds which structure is missing or malformed and says so in a
//! [`FormatError`], with the values found and what the file probably is.
//!
//! What is ours on top of `object`'s reading (Microsoft PE format specification):
//! - every section's raw data (`PointerToRawData` + `SizeOfRawData`) must lie in the file: a
//!   signature covers it, and a cut-off file must be reported where it is cut;
//! - sections are in ascending order in memory and do not overlap (`check_section_order`);
//! - [`Section::contains_rva`]: the memory extent of a section is its `VirtualSize`, or its raw
//!   size when a linker left `VirtualSize` at 0 (the entry-point rule uses it);
//! - the numbers are copied into plain structs ([`FileHeader`], [`OptionalHeader`], [`Section`])
//!   so the rules do not depend on `object`'s types.

mod exports;
mod headers;
mod imports;

use std::fmt;

use object::LittleEndian as LE;
use object::pe::{self, ImageDosHeader, ImageNtHeaders64};
use object::read::pe::{DataDirectories, ImageNtHeaders, ImageOptionalHeader, SectionTable};

use driver_package::pe::pe_checksum;

pub use exports::Export;
pub use imports::ImportedModule;

/// `IMAGE_SCN_MEM_DISCARDABLE`: the section can be discarded after load (e.g. `INIT`).
pub const IMAGE_SCN_MEM_DISCARDABLE: u32 = pe::IMAGE_SCN_MEM_DISCARDABLE.0;
/// `IMAGE_SCN_MEM_NOT_PAGED`: the section must stay resident (`P` in `/SECTION`).
pub const IMAGE_SCN_MEM_NOT_PAGED: u32 = pe::IMAGE_SCN_MEM_NOT_PAGED.0;
/// `IMAGE_SCN_MEM_EXECUTE`: the section is executable.
pub const IMAGE_SCN_MEM_EXECUTE: u32 = pe::IMAGE_SCN_MEM_EXECUTE.0;
/// `IMAGE_SCN_MEM_READ`: the section is readable.
pub const IMAGE_SCN_MEM_READ: u32 = pe::IMAGE_SCN_MEM_READ.0;
/// `IMAGE_SCN_MEM_WRITE`: the section is writable.
pub const IMAGE_SCN_MEM_WRITE: u32 = pe::IMAGE_SCN_MEM_WRITE.0;

/// `IMAGE_FILE_RELOCS_STRIPPED` (COFF characteristics): the image has no base relocations and
/// must be loaded at its preferred base.
pub const IMAGE_FILE_RELOCS_STRIPPED: u16 = pe::IMAGE_FILE_RELOCS_STRIPPED.0;

/// `IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE` (`/DYNAMICBASE`): the image can be relocated (ASLR).
pub const IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE: u16 = pe::IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE.0;
/// `IMAGE_DLLCHARACTERISTICS_FORCE_INTEGRITY` (`/INTEGRITYCHECK`): the loader checks the signature.
pub const IMAGE_DLLCHARACTERISTICS_FORCE_INTEGRITY: u16 =
    pe::IMAGE_DLLCHARACTERISTICS_FORCE_INTEGRITY.0;
/// `IMAGE_DLLCHARACTERISTICS_NX_COMPAT` (`/NXCOMPAT`): the image is compatible with DEP/NX.
pub const IMAGE_DLLCHARACTERISTICS_NX_COMPAT: u16 = pe::IMAGE_DLLCHARACTERISTICS_NX_COMPAT.0;

/// `IMAGE_SUBSYSTEM_NATIVE`: kernel-mode drivers and native applications.
pub const IMAGE_SUBSYSTEM_NATIVE: u16 = pe::IMAGE_SUBSYSTEM_NATIVE.0;
/// Optional header magic of a PE32+ (64-bit) image.
pub const PE32_PLUS_MAGIC: u16 = pe::IMAGE_NT_OPTIONAL_HDR64_MAGIC;
/// Optional header magic of a PE32 (32-bit) image.
pub const PE32_MAGIC: u16 = pe::IMAGE_NT_OPTIONAL_HDR32_MAGIC;

/// Data directory index of the export table.
pub const DIR_EXPORT: usize = pe::IMAGE_DIRECTORY_ENTRY_EXPORT;
/// Data directory index of the import table.
pub const DIR_IMPORT: usize = pe::IMAGE_DIRECTORY_ENTRY_IMPORT;
/// Data directory index of the TLS directory.
pub const DIR_TLS: usize = pe::IMAGE_DIRECTORY_ENTRY_TLS;

/// Size of the COFF file header.
const FILE_HEADER_SIZE: usize = pe::IMAGE_SIZEOF_FILE_HEADER;
/// Offset of `CheckSum` inside the optional header (same for PE32 and PE32+).
const CHECKSUM_FIELD_OFFSET: usize = 64;
/// Longest name (module, function, export) accepted; real names are far shorter.
const MAX_NAME_LEN: usize = 4096;

/// Why a byte string is not a (usable) PE32+ image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError {
    /// The structure concerned, e.g. `DOS header`, `optional header`, `section .text`,
    /// `import directory`.
    pub subject: String,
    /// What is wrong with it.
    pub message: String,
}

impl FormatError {
    fn new(subject: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.subject, self.message)
    }
}

impl std::error::Error for FormatError {}

/// The fields of the COFF file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    /// Target CPU (`IMAGE_FILE_MACHINE_*`).
    pub machine: u16,
    /// Number of entries in the section table.
    pub number_of_sections: u16,
    /// Size of the optional header that follows.
    pub size_of_optional_header: u16,
    /// `IMAGE_FILE_*` flags.
    pub characteristics: u16,
}

/// The fields of the PE32+ optional header used by xtask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionalHeader {
    /// 0x20B for PE32+.
    pub magic: u16,
    /// RVA of the entry point (0 if none).
    pub address_of_entry_point: u32,
    /// Alignment of section raw data in the file.
    pub file_alignment: u32,
    /// Size of the image in memory.
    pub size_of_image: u32,
    /// The stored image checksum (see [`pe_checksum`]).
    pub checksum: u32,
    /// `IMAGE_SUBSYSTEM_*`.
    pub subsystem: u16,
    /// `IMAGE_DLLCHARACTERISTICS_*` flags.
    pub dll_characteristics: u16,
    /// The data directories actually present (`NumberOfRvaAndSizes` entries).
    pub data_directories: Vec<DataDirectory>,
}

/// One data directory entry: where a table lives (an RVA, except for the certificate table,
/// `DIR_SECURITY`, where it is a file offset) and how big it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DataDirectory {
    /// RVA of the table (file offset for the certificate table).
    pub virtual_address: u32,
    /// Size of the table in bytes.
    pub size: u32,
}

impl DataDirectory {
    /// True if the entry is not all zero (the table is declared).
    #[must_use]
    pub fn is_present(self) -> bool {
        self.virtual_address != 0 || self.size != 0
    }
}

/// One section header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The name with its NUL padding removed (lossily decoded as UTF-8).
    pub name: String,
    /// The raw 8 name bytes.
    pub raw_name: [u8; 8],
    /// Size of the section in memory.
    pub virtual_size: u32,
    /// RVA of the section.
    pub virtual_address: u32,
    /// Size of the section's data in the file.
    pub size_of_raw_data: u32,
    /// File offset of the section's data.
    pub pointer_to_raw_data: u32,
    /// `IMAGE_SCN_*` flags.
    pub characteristics: u32,
}

impl Section {
    /// Copies the numbers of `object`'s section header.
    fn of(header: &pe::ImageSectionHeader) -> Self {
        Self {
            name: String::from_utf8_lossy(header.raw_name()).into_owned(),
            raw_name: header.name,
            virtual_size: header.virtual_size.get(LE),
            virtual_address: header.virtual_address.get(LE),
            size_of_raw_data: header.size_of_raw_data.get(LE),
            pointer_to_raw_data: header.pointer_to_raw_data.get(LE),
            characteristics: header.characteristics.get(LE).0,
        }
    }

    /// True if all the bits of `flags` are set in the characteristics.
    #[must_use]
    pub fn has(&self, flags: u32) -> bool {
        self.characteristics & flags == flags
    }

    /// The size the section occupies in memory as declared (`VirtualSize`, or the raw size
    /// when `VirtualSize` is 0, as some linkers leave it).
    #[must_use]
    pub fn virtual_extent(&self) -> u32 {
        if self.virtual_size == 0 {
            self.size_of_raw_data
        } else {
            self.virtual_size
        }
    }

    /// True if `rva` falls inside the section in memory.
    #[must_use]
    pub fn contains_rva(&self, rva: u32) -> bool {
        rva.checked_sub(self.virtual_address)
            .is_some_and(|delta| delta < self.virtual_extent())
    }
}

/// A parsed PE32+ image borrowing the file's bytes.
#[derive(Debug, Clone)]
pub struct PeImage<'a> {
    bytes: &'a [u8],
    /// `object`'s section table, for reading data at an RVA.
    section_table: SectionTable<'a>,
    /// `object`'s data directories, for the import and export tables.
    directories: DataDirectories<'a>,
    /// File offset of the `PE\0\0` signature (`e_lfanew`).
    pub pe_offset: usize,
    /// The COFF file header.
    pub file_header: FileHeader,
    /// The PE32+ optional header.
    pub optional_header: OptionalHeader,
    /// The section table, in file order.
    pub sections: Vec<Section>,
}

/// Widens a `u32` file quantity to `usize` (lossless on every host xtask runs on).
fn to_usize(value: u32) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

/// Decodes a name read by `object` (lossily), refusing one longer than [`MAX_NAME_LEN`].
fn name_of(bytes: &[u8]) -> Option<String> {
    (bytes.len() < MAX_NAME_LEN).then(|| String::from_utf8_lossy(bytes).into_owned())
}

/// The PE format specification (Section Table): "In an image file, the VAs for sections must be
/// assigned by the linker so that they are in ascending order and adjacent". Sections out of
/// order or overlapping in memory make an RVA belong to two sections; the loader refuses such
/// an image, and a table found in one of them could be read from the wrong one. Adjacency
/// (the padding up to SectionAlignment) is not checked: a gap harms no reading.
fn check_section_order(sections: &[Section]) -> Result<(), FormatError> {
    for pair in sections.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        let end = u64::from(before.virtual_address) + u64::from(before.virtual_extent());
        if u64::from(after.virtual_address) < end {
            return Err(FormatError::new(
                format!("section {}", after.name),
                format!(
                    "starts at RVA 0x{:X}, inside or before section {} (RVA 0x{:X}, size 0x{:X}): \
                     sections must be in ascending order and must not overlap in memory \
                     (PE format, Section Table); corrupt image or a broken linker script",
                    after.virtual_address,
                    before.name,
                    before.virtual_address,
                    before.virtual_extent()
                ),
            ));
        }
    }
    Ok(())
}

impl<'a> PeImage<'a> {
    /// Parses the headers and section table of a PE32+ image.
    ///
    /// Checks the DOS and PE signatures, that the optional header is PE32+ and that the headers,
    /// the data directories and every section's raw data lie inside the file.
    ///
    /// # Errors
    /// A [`FormatError`] naming the first structure found missing or malformed.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FormatError> {
        let dos = ImageDosHeader::parse(bytes).map_err(|_| headers::dos_header_error(bytes))?;
        let e_lfanew = dos.nt_headers_offset();
        let mut offset = u64::from(e_lfanew);
        let (nt, directories) = ImageNtHeaders64::parse(bytes, &mut offset)
            .map_err(|error| headers::nt_headers_error(bytes, e_lfanew, &error))?;
        let section_table = nt
            .sections(bytes, offset)
            .map_err(|_| headers::section_table_error(bytes, offset, nt.file_header()))?;
        let sections: Vec<Section> = section_table.iter().map(Section::of).collect();
        for section in &sections {
            let (start, len) = (section.pointer_to_raw_data, section.size_of_raw_data);
            if len != 0 && object::ReadRef::read_bytes_at(bytes, start.into(), len.into()).is_err()
            {
                return Err(FormatError::new(
                    format!("section {}", section.name),
                    format!(
                        "raw data 0x{start:X}+0x{len:X} extends past the end of the file ({} bytes): truncated image",
                        bytes.len()
                    ),
                ));
            }
        }
        check_section_order(&sections)?;
        let file = nt.file_header();
        let optional = nt.optional_header();
        Ok(Self {
            bytes,
            section_table,
            pe_offset: to_usize(e_lfanew),
            file_header: FileHeader {
                machine: file.machine.get(LE).0,
                number_of_sections: file.number_of_sections.get(LE),
                size_of_optional_header: file.size_of_optional_header.get(LE),
                characteristics: file.characteristics.get(LE).0,
            },
            optional_header: OptionalHeader {
                magic: optional.magic(),
                address_of_entry_point: optional.address_of_entry_point(),
                file_alignment: optional.file_alignment(),
                size_of_image: optional.size_of_image(),
                checksum: optional.check_sum(),
                subsystem: optional.subsystem().0,
                dll_characteristics: optional.dll_characteristics().0,
                data_directories: directories
                    .iter()
                    .map(|entry| DataDirectory {
                        virtual_address: entry.virtual_address.get(LE),
                        size: entry.size.get(LE),
                    })
                    .collect(),
            },
            directories,
            sections,
        })
    }

    /// File offset of the optional header.
    #[must_use]
    pub fn optional_header_offset(&self) -> usize {
        self.pe_offset + 4 + FILE_HEADER_SIZE
    }

    /// File offset of the 4-byte `CheckSum` field (to pass to [`pe_checksum`], or to patch).
    #[must_use]
    pub fn checksum_offset(&self) -> usize {
        self.optional_header_offset() + CHECKSUM_FIELD_OFFSET
    }

    /// The checksum the file should carry, computed over its current bytes.
    #[must_use]
    pub fn computed_checksum(&self) -> u32 {
        pe_checksum(self.bytes, self.checksum_offset())
    }

    /// Data directory `index` (`DIR_*`), or `None` if the image declares fewer directories.
    #[must_use]
    pub fn data_directory(&self, index: usize) -> Option<DataDirectory> {
        self.optional_header.data_directories.get(index).copied()
    }

    /// The section whose memory range contains `rva` ([`Section::contains_rva`]).
    #[must_use]
    pub fn section_containing_rva(&self, rva: u32) -> Option<&Section> {
        self.sections
            .iter()
            .find(|section| section.contains_rva(rva))
    }

    /// The file range holding `len` bytes at `rva`, if they all come from the file: inside the
    /// file-backed part of one section (`object`'s mapping: the smaller of the raw and the
    /// virtual size). The import and export readers rely on this mapping; the tests check it.
    #[cfg(test)]
    #[must_use]
    pub fn rva_range(&self, rva: u32, len: usize) -> Option<std::ops::Range<usize>> {
        let (offset, available) = self.section_table.pe_file_range_at(rva)?;
        let start = to_usize(offset);
        let end = start.checked_add(len)?;
        (len <= to_usize(available) && end <= self.bytes.len()).then_some(start..end)
    }

    /// File offset of `rva` (see [`Self::rva_range`]).
    #[cfg(test)]
    #[must_use]
    pub fn rva_to_offset(&self, rva: u32) -> Option<usize> {
        self.rva_range(rva, 1).map(|range| range.start)
    }

    /// The `len` bytes at `rva`, if they come from the file.
    #[cfg(test)]
    #[must_use]
    pub fn bytes_at_rva(&self, rva: u32, len: usize) -> Option<&'a [u8]> {
        self.rva_range(rva, len)
            .and_then(|range| self.bytes.get(range))
    }
}

#[cfg(test)]
mod tests;
