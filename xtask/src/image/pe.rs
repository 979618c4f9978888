//! A small, bounds-checked reader for PE32+ images: the subset of PE/COFF that the image lint
//! (`lint.rs`) and the signing step need.
//!
//! Every read goes through [`u16_at`]/[`u32_at`]/[`u64_at`]/[`slice_at`], which return `None`
//! instead of indexing out of bounds, and every offset computation is checked, so any byte string
//! (truncated, corrupted, not a PE at all) yields a [`FormatError`] rather than a panic.
//!
//! Layout facts used here (Microsoft PE format specification):
//! - DOS header: `MZ` at 0, `e_lfanew` (file offset of the PE signature) as a `u32` at 0x3C.
//! - `PE\0\0`, then the 20-byte COFF file header, then the optional header (PE32+: magic 0x20B,
//!   112 fixed bytes followed by `NumberOfRvaAndSizes` 8-byte data directories), then the section
//!   table (40 bytes per section).

use std::fmt;
use std::ops::Range;

/// `IMAGE_SCN_MEM_DISCARDABLE`: the section can be discarded after load (e.g. `INIT`).
pub const IMAGE_SCN_MEM_DISCARDABLE: u32 = 0x0200_0000;
/// `IMAGE_SCN_MEM_NOT_PAGED`: the section must stay resident (`P` in `/SECTION`).
pub const IMAGE_SCN_MEM_NOT_PAGED: u32 = 0x0800_0000;
/// `IMAGE_SCN_MEM_EXECUTE`: the section is executable.
pub const IMAGE_SCN_MEM_EXECUTE: u32 = 0x2000_0000;
/// `IMAGE_SCN_MEM_WRITE`: the section is writable.
pub const IMAGE_SCN_MEM_WRITE: u32 = 0x8000_0000;

/// `IMAGE_FILE_RELOCS_STRIPPED` (COFF characteristics): the image has no base relocations and
/// must be loaded at its preferred base.
pub const IMAGE_FILE_RELOCS_STRIPPED: u16 = 0x0001;

/// `IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE` (`/DYNAMICBASE`): the image can be relocated (ASLR).
pub const IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE: u16 = 0x0040;
/// `IMAGE_DLLCHARACTERISTICS_FORCE_INTEGRITY` (`/INTEGRITYCHECK`): the loader checks the signature.
pub const IMAGE_DLLCHARACTERISTICS_FORCE_INTEGRITY: u16 = 0x0080;
/// `IMAGE_DLLCHARACTERISTICS_NX_COMPAT` (`/NXCOMPAT`): the image is compatible with DEP/NX.
pub const IMAGE_DLLCHARACTERISTICS_NX_COMPAT: u16 = 0x0100;

/// `IMAGE_SUBSYSTEM_NATIVE`: kernel-mode drivers and native applications.
pub const IMAGE_SUBSYSTEM_NATIVE: u16 = 1;
/// Optional header magic of a PE32+ (64-bit) image.
pub const PE32_PLUS_MAGIC: u16 = 0x20B;
/// Optional header magic of a PE32 (32-bit) image.
pub const PE32_MAGIC: u16 = 0x10B;

/// Data directory index of the export table.
pub const DIR_EXPORT: usize = 0;
/// Data directory index of the import table.
pub const DIR_IMPORT: usize = 1;
/// Data directory index of the TLS directory.
pub const DIR_TLS: usize = 9;

/// Offset of `e_lfanew` in the DOS header.
const E_LFANEW_OFFSET: usize = 0x3C;
/// Size of the DOS header.
const DOS_HEADER_SIZE: usize = 0x40;
/// Size of the COFF file header.
const FILE_HEADER_SIZE: usize = 20;
/// Size of the fixed part of the PE32+ optional header (up to and including `NumberOfRvaAndSizes`).
const OPTIONAL_HEADER_FIXED_SIZE: usize = 112;
/// Offset of `CheckSum` inside the optional header (same for PE32 and PE32+).
const CHECKSUM_FIELD_OFFSET: usize = 64;
/// Size of one section header.
const SECTION_HEADER_SIZE: usize = 40;
/// Size of one data directory entry.
const DATA_DIRECTORY_SIZE: usize = 8;
/// Size of one import descriptor.
const IMPORT_DESCRIPTOR_SIZE: usize = 20;
/// Size of the export directory.
const EXPORT_DIRECTORY_SIZE: usize = 40;
/// Longest name (module, function, export) accepted; real names are far shorter.
const MAX_NAME_LEN: usize = 4096;
/// Upper bounds that keep a corrupted table from producing absurd amounts of work.
const MAX_IMPORTED_MODULES: usize = 4096;
const MAX_IMPORTS_PER_MODULE: usize = 65_536;
const MAX_EXPORTS: usize = 65_536;

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
    /// Link time (seconds since 1970), or a hash for reproducible builds.
    pub time_date_stamp: u32,
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
    /// Preferred load address.
    pub image_base: u64,
    /// Alignment of sections in memory.
    pub section_alignment: u32,
    /// Alignment of section raw data in the file.
    pub file_alignment: u32,
    /// Size of the image in memory.
    pub size_of_image: u32,
    /// Size of all headers rounded up to `file_alignment`.
    pub size_of_headers: u32,
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

    /// Number of bytes of the section that come from the file (the rest is zero-filled).
    fn file_backed_len(&self) -> u32 {
        if self.virtual_size == 0 {
            self.size_of_raw_data
        } else {
            self.size_of_raw_data.min(self.virtual_size)
        }
    }
}

/// A function imported from a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportedFunction {
    /// Imported by name (with the loader's lookup hint).
    ByName {
        /// Index hint into the exporter's name table.
        hint: u16,
        /// The function name.
        name: String,
    },
    /// Imported by ordinal.
    ByOrdinal(u16),
}

impl fmt::Display for ImportedFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ByName { name, .. } => f.write_str(name),
            Self::ByOrdinal(ordinal) => write!(f, "#{ordinal}"),
        }
    }
}

/// A module the image imports from, with its functions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedModule {
    /// The module name as written in the image (e.g. `ntoskrnl.exe`).
    pub name: String,
    /// The imported functions, in table order.
    pub functions: Vec<ImportedFunction>,
}

/// An exported function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// The exported name, or `None` for an export by ordinal only.
    pub name: Option<String>,
    /// The ordinal (`Base` + index in the address table).
    pub ordinal: u32,
    /// RVA of the function (or of a forwarder string).
    pub rva: u32,
}

/// A parsed PE32+ image borrowing the file's bytes.
#[derive(Debug, Clone)]
pub struct PeImage<'a> {
    bytes: &'a [u8],
    /// File offset of the `PE\0\0` signature (`e_lfanew`).
    pub pe_offset: usize,
    /// The COFF file header.
    pub file_header: FileHeader,
    /// The PE32+ optional header.
    pub optional_header: OptionalHeader,
    /// The section table, in file order.
    pub sections: Vec<Section>,
}

/// Reads `len` bytes at `offset`, or `None` if that range is not inside `bytes`.
#[must_use]
pub fn slice_at(bytes: &[u8], offset: usize, len: usize) -> Option<&[u8]> {
    bytes.get(offset..offset.checked_add(len)?)
}

/// Reads a little-endian `u16` at `offset`, or `None` if out of bounds.
#[must_use]
pub fn u16_at(bytes: &[u8], offset: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        slice_at(bytes, offset, 2)?.try_into().ok()?,
    ))
}

/// Reads a little-endian `u32` at `offset`, or `None` if out of bounds.
#[must_use]
pub fn u32_at(bytes: &[u8], offset: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        slice_at(bytes, offset, 4)?.try_into().ok()?,
    ))
}

/// Reads a little-endian `u64` at `offset`, or `None` if out of bounds.
#[must_use]
pub fn u64_at(bytes: &[u8], offset: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        slice_at(bytes, offset, 8)?.try_into().ok()?,
    ))
}

/// Widens a `u32` file quantity to `usize` (lossless on every host xtask runs on).
fn to_usize(value: u32) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

/// Computes the PE image checksum of `bytes` (the value the loader compares with
/// `OptionalHeader.CheckSum`, and that a signing tool must rewrite after changing the file).
///
/// The algorithm (as implemented by `CheckSumMappedFile`): add up the file as little-endian
/// 16-bit words (an odd final byte is padded with a zero byte), folding the carry out of bit 15
/// back into the sum after every addition; the four bytes of the checksum field itself, at
/// `checksum_offset`, count as zero. The result is that 16-bit sum plus the file length.
///
/// `checksum_offset` is the file offset of the `CheckSum` field, [`PeImage::checksum_offset`];
/// an offset outside the file simply skips nothing. Lengths are taken modulo 2^32 (PE files are
/// smaller than 4 GiB).
#[must_use]
pub fn pe_checksum(bytes: &[u8], checksum_offset: usize) -> u32 {
    let skipped = checksum_offset..checksum_offset.saturating_add(4);
    let byte_at = |index: usize| -> u32 {
        if skipped.contains(&index) {
            0
        } else {
            bytes.get(index).copied().map_or(0, u32::from)
        }
    };
    let mut sum: u32 = 0;
    for index in (0..bytes.len()).step_by(2) {
        let word = byte_at(index) | (byte_at(index + 1) << 8);
        sum += word;
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    #[allow(clippy::cast_possible_truncation)] // the algorithm is defined modulo 2^32
    let length = bytes.len() as u32;
    sum.wrapping_add(length)
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
        let pe_offset = find_pe_signature(bytes)?;
        let file_header_offset = pe_offset + 4;
        let file_header = parse_file_header(bytes, file_header_offset)?;
        let optional_header_offset = file_header_offset + FILE_HEADER_SIZE;
        let optional_header_size = usize::from(file_header.size_of_optional_header);
        let optional_header =
            parse_optional_header(bytes, optional_header_offset, optional_header_size)?;
        let sections = parse_section_table(
            bytes,
            optional_header_offset + optional_header_size,
            usize::from(file_header.number_of_sections),
        )?;
        Ok(Self {
            bytes,
            pe_offset,
            file_header,
            optional_header,
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

    /// The section whose memory range contains `rva`.
    #[must_use]
    pub fn section_containing_rva(&self, rva: u32) -> Option<&Section> {
        self.sections
            .iter()
            .find(|section| section.contains_rva(rva))
    }

    /// The file range holding `len` bytes at `rva`, if they all come from the file: inside the
    /// headers, or inside the file-backed part of one section.
    #[must_use]
    pub fn rva_range(&self, rva: u32, len: usize) -> Option<Range<usize>> {
        let (start, limit) = if rva < self.optional_header.size_of_headers
            && self
                .sections
                .iter()
                .all(|section| rva < section.virtual_address)
        {
            (
                to_usize(rva),
                to_usize(self.optional_header.size_of_headers),
            )
        } else {
            let section = self.section_containing_rva(rva)?;
            let delta = rva - section.virtual_address;
            if delta >= section.file_backed_len() {
                return None;
            }
            let start = to_usize(section.pointer_to_raw_data).checked_add(to_usize(delta))?;
            let limit = to_usize(section.pointer_to_raw_data)
                .checked_add(to_usize(section.file_backed_len()))?;
            (start, limit)
        };
        let end = start.checked_add(len)?;
        (end <= limit && end <= self.bytes.len()).then_some(start..end)
    }

    /// File offset of `rva` (see [`Self::rva_range`]).
    #[cfg(test)]
    #[must_use]
    pub fn rva_to_offset(&self, rva: u32) -> Option<usize> {
        self.rva_range(rva, 1).map(|range| range.start)
    }

    /// The `len` bytes at `rva`, if they come from the file.
    #[must_use]
    pub fn bytes_at_rva(&self, rva: u32, len: usize) -> Option<&'a [u8]> {
        self.rva_range(rva, len)
            .and_then(|range| self.bytes.get(range))
    }

    fn u16_at_rva(&self, rva: u32) -> Option<u16> {
        Some(u16::from_le_bytes(
            self.bytes_at_rva(rva, 2)?.try_into().ok()?,
        ))
    }

    fn u64_at_rva(&self, rva: u32) -> Option<u64> {
        Some(u64::from_le_bytes(
            self.bytes_at_rva(rva, 8)?.try_into().ok()?,
        ))
    }

    /// The NUL-terminated string at `rva` (lossily decoded), if it lies in the file within
    /// [`MAX_NAME_LEN`] bytes.
    #[must_use]
    pub fn string_at_rva(&self, rva: u32) -> Option<String> {
        let range = self.rva_range(rva, 1)?;
        // The string may run to the end of the section's file-backed data.
        let section_end = self.rva_range_end(rva)?;
        let window = self
            .bytes
            .get(range.start..section_end.min(range.start.saturating_add(MAX_NAME_LEN)))?;
        let len = window.iter().position(|&byte| byte == 0)?;
        Some(String::from_utf8_lossy(&window[..len]).into_owned())
    }

    /// The file offset where the file-backed region holding `rva` ends.
    fn rva_range_end(&self, rva: u32) -> Option<usize> {
        if rva < self.optional_header.size_of_headers
            && self
                .sections
                .iter()
                .all(|section| rva < section.virtual_address)
        {
            return Some(to_usize(self.optional_header.size_of_headers).min(self.bytes.len()));
        }
        let section = self.section_containing_rva(rva)?;
        let end = to_usize(section.pointer_to_raw_data)
            .checked_add(to_usize(section.file_backed_len()))?;
        Some(end.min(self.bytes.len()))
    }

    /// The import table: every imported module with its functions (empty if there is none).
    ///
    /// # Errors
    /// A [`FormatError`] (subject `import directory`) if a descriptor, thunk or name is not in
    /// the file.
    pub fn imports(&self) -> Result<Vec<ImportedModule>, FormatError> {
        let Some(directory) = self
            .data_directory(DIR_IMPORT)
            .filter(|dir| dir.virtual_address != 0)
        else {
            return Ok(Vec::new());
        };
        let error = |message: String| FormatError::new("import directory", message);
        let mut modules = Vec::new();
        for index in 0.. {
            if index >= MAX_IMPORTED_MODULES {
                return Err(error(format!(
                    "more than {MAX_IMPORTED_MODULES} import descriptors (no terminating entry): corrupt image"
                )));
            }
            let rva = u32::try_from(index * IMPORT_DESCRIPTOR_SIZE)
                .ok()
                .and_then(|offset| directory.virtual_address.checked_add(offset));
            let descriptor = rva.and_then(|rva| self.bytes_at_rva(rva, IMPORT_DESCRIPTOR_SIZE)).ok_or_else(|| {
                error(format!(
                    "import descriptor #{index} (table at RVA 0x{:X}) is not in the file: corrupt image",
                    directory.virtual_address
                ))
            })?;
            let field = |at: usize| u32_at(descriptor, at).unwrap_or(0);
            let (lookup_table, name_rva, address_table) = (field(0), field(12), field(16));
            if lookup_table == 0 && name_rva == 0 && address_table == 0 {
                break;
            }
            let name = self.string_at_rva(name_rva).ok_or_else(|| {
                error(format!("the module name of import descriptor #{index} (RVA 0x{name_rva:X}) is not in the file: corrupt image"))
            })?;
            let thunks = if lookup_table != 0 {
                lookup_table
            } else {
                address_table
            };
            let functions = self.imported_functions(&name, thunks)?;
            modules.push(ImportedModule { name, functions });
        }
        Ok(modules)
    }

    fn imported_functions(
        &self,
        module: &str,
        thunks: u32,
    ) -> Result<Vec<ImportedFunction>, FormatError> {
        let error = |message: String| FormatError::new("import directory", message);
        let mut functions = Vec::new();
        for index in 0.. {
            if index >= MAX_IMPORTS_PER_MODULE {
                return Err(error(format!(
                    "more than {MAX_IMPORTS_PER_MODULE} imports from {module} (no terminating entry): corrupt image"
                )));
            }
            let thunk = u32::try_from(index * 8)
                .ok()
                .and_then(|offset| thunks.checked_add(offset))
                .and_then(|rva| self.u64_at_rva(rva))
                .ok_or_else(|| {
                    error(format!("import lookup entry #{index} of {module} (table at RVA 0x{thunks:X}) is not in the file: corrupt image"))
                })?;
            if thunk == 0 {
                break;
            }
            if thunk & (1 << 63) != 0 {
                functions.push(ImportedFunction::ByOrdinal(
                    u16::try_from(thunk & 0xFFFF).unwrap_or_default(),
                ));
                continue;
            }
            let hint_name = u32::try_from(thunk).ok().filter(|rva| rva & 0x8000_0000 == 0).ok_or_else(|| {
                error(format!("import lookup entry #{index} of {module} is 0x{thunk:X}, not a hint/name RVA: corrupt image"))
            })?;
            let hint = self.u16_at_rva(hint_name);
            let name = hint_name
                .checked_add(2)
                .and_then(|rva| self.string_at_rva(rva));
            let (Some(hint), Some(name)) = (hint, name) else {
                return Err(error(format!(
                    "the name of import #{index} from {module} (RVA 0x{hint_name:X}) is not in the file: corrupt image"
                )));
            };
            functions.push(ImportedFunction::ByName { hint, name });
        }
        Ok(functions)
    }

    /// The export table: every exported function, named ones first in name-table order, then
    /// those exported by ordinal only (empty if there is no export directory).
    ///
    /// # Errors
    /// A [`FormatError`] (subject `export directory`) if the directory, its tables or a name are
    /// not in the file, or a name refers to a function that does not exist.
    pub fn exports(&self) -> Result<Vec<Export>, FormatError> {
        let Some(directory) = self
            .data_directory(DIR_EXPORT)
            .filter(|dir| dir.virtual_address != 0)
        else {
            return Ok(Vec::new());
        };
        let error = |message: String| FormatError::new("export directory", message);
        let header = self
            .bytes_at_rva(directory.virtual_address, EXPORT_DIRECTORY_SIZE)
            .ok_or_else(|| {
                error(format!(
                    "the export directory at RVA 0x{:X} is not in the file: corrupt image",
                    directory.virtual_address
                ))
            })?;
        let field = |at: usize| u32_at(header, at).unwrap_or(0);
        let (base, function_count, name_count) =
            (field(16), to_usize(field(20)), to_usize(field(24)));
        let (address_table_rva, name_table_rva, ordinal_table_rva) =
            (field(28), field(32), field(36));
        if function_count > MAX_EXPORTS || name_count > MAX_EXPORTS {
            return Err(error(format!(
                "{function_count} functions / {name_count} names exceed {MAX_EXPORTS}: corrupt image"
            )));
        }
        let table = |rva: u32, count: usize, width: usize, what: &str| {
            if count == 0 {
                return Ok(&[][..]);
            }
            self.bytes_at_rva(rva, count * width).ok_or_else(|| {
                error(format!("the export {what} table (RVA 0x{rva:X}, {count} entries) is not in the file: corrupt image"))
            })
        };
        let addresses: Vec<u32> = table(address_table_rva, function_count, 4, "address")?
            .chunks_exact(4)
            .map(|entry| u32_at(entry, 0).unwrap_or(0))
            .collect();
        let name_table = table(name_table_rva, name_count, 4, "name pointer")?;
        let ordinal_table = table(ordinal_table_rva, name_count, 2, "ordinal")?;

        let mut named = vec![false; function_count];
        let mut exports = Vec::new();
        for (index, (name_entry, ordinal_entry)) in name_table
            .chunks_exact(4)
            .zip(ordinal_table.chunks_exact(2))
            .enumerate()
        {
            let name_rva = u32_at(name_entry, 0).unwrap_or(0);
            let function = usize::from(u16_at(ordinal_entry, 0).unwrap_or(0));
            let name = self.string_at_rva(name_rva).ok_or_else(|| {
                error(format!(
                    "export name #{index} (RVA 0x{name_rva:X}) is not in the file: corrupt image"
                ))
            })?;
            let Some(&rva) = addresses.get(function) else {
                return Err(error(format!(
                    "export {name} refers to function #{function} but the address table has {function_count} entries: corrupt image"
                )));
            };
            named[function] = true;
            exports.push(Export {
                name: Some(name),
                ordinal: ordinal_of(base, function),
                rva,
            });
        }
        for (function, &rva) in addresses.iter().enumerate() {
            if rva != 0 && !named[function] {
                exports.push(Export {
                    name: None,
                    ordinal: ordinal_of(base, function),
                    rva,
                });
            }
        }
        Ok(exports)
    }
}

/// The ordinal of address-table entry `index` (wrapping, as the loader's arithmetic does).
fn ordinal_of(base: u32, index: usize) -> u32 {
    base.wrapping_add(u32::try_from(index).unwrap_or(u32::MAX))
}

/// Checks the DOS header and returns the file offset of the `PE\0\0` signature.
fn find_pe_signature(bytes: &[u8]) -> Result<usize, FormatError> {
    if bytes.len() < DOS_HEADER_SIZE {
        return Err(FormatError::new(
            "DOS header",
            format!(
                "file is {} bytes, shorter than a DOS header ({DOS_HEADER_SIZE} bytes): not a PE image",
                bytes.len()
            ),
        ));
    }
    if &bytes[..2] != b"MZ" {
        return Err(FormatError::new(
            "DOS header",
            format!(
                "missing 'MZ' signature (found {:02X} {:02X}): not a PE image; is this the driver's .sys/.dll?",
                bytes[0], bytes[1]
            ),
        ));
    }
    let e_lfanew = u32_at(bytes, E_LFANEW_OFFSET).unwrap_or(0);
    let pe_offset = to_usize(e_lfanew);
    match slice_at(bytes, pe_offset, 4) {
        Some(b"PE\0\0") => Ok(pe_offset),
        Some(found) => Err(FormatError::new(
            "PE signature",
            format!(
                "no 'PE\\0\\0' signature at e_lfanew 0x{e_lfanew:X} (found {found:02X?}): not a PE image (an MS-DOS program?)"
            ),
        )),
        None => Err(FormatError::new(
            "PE signature",
            format!(
                "e_lfanew 0x{e_lfanew:X} points past the end of the file ({} bytes): truncated or not a PE image",
                bytes.len()
            ),
        )),
    }
}

/// Decodes the COFF file header at `offset`.
fn parse_file_header(bytes: &[u8], offset: usize) -> Result<FileHeader, FormatError> {
    let header = slice_at(bytes, offset, FILE_HEADER_SIZE).ok_or_else(|| {
        FormatError::new(
            "file header",
            format!("the COFF file header at 0x{offset:X} is cut off by the end of the file: truncated image"),
        )
    })?;
    let rd16 = |at: usize| u16_at(header, at).unwrap_or(0);
    Ok(FileHeader {
        machine: rd16(0),
        number_of_sections: rd16(2),
        time_date_stamp: u32_at(header, 4).unwrap_or(0),
        size_of_optional_header: rd16(16),
        characteristics: rd16(18),
    })
}

/// Decodes the PE32+ optional header of `size` bytes at `offset`, with its data directories.
fn parse_optional_header(
    bytes: &[u8],
    offset: usize,
    size: usize,
) -> Result<OptionalHeader, FormatError> {
    let magic = u16_at(bytes, offset).ok_or_else(|| {
        FormatError::new(
            "optional header",
            "the optional header is missing (file ends after the file header): truncated image",
        )
    })?;
    if magic != PE32_PLUS_MAGIC {
        let kind = if magic == PE32_MAGIC {
            " (PE32, a 32-bit image)"
        } else {
            ""
        };
        return Err(FormatError::new(
            "optional header",
            format!(
                "magic is 0x{magic:X}{kind}, expected 0x{PE32_PLUS_MAGIC:X} (PE32+): drivers for x64/ARM64 are PE32+ images; \
                 build for a 64-bit Windows target"
            ),
        ));
    }
    if size < OPTIONAL_HEADER_FIXED_SIZE {
        return Err(FormatError::new(
            "optional header",
            format!(
                "SizeOfOptionalHeader is {size}, smaller than a PE32+ optional header ({OPTIONAL_HEADER_FIXED_SIZE} bytes \
                 without data directories): corrupt image"
            ),
        ));
    }
    let optional = slice_at(bytes, offset, size).ok_or_else(|| {
        FormatError::new(
            "optional header",
            format!(
                "the optional header (0x{offset:X}, {size} bytes) is cut off by the end of the file ({} bytes): truncated image",
                bytes.len()
            ),
        )
    })?;
    // `optional` holds at least the fixed part, so these reads are in bounds.
    let rd16 = |at: usize| u16_at(optional, at).unwrap_or(0);
    let rd32 = |at: usize| u32_at(optional, at).unwrap_or(0);
    let number_of_rva_and_sizes = rd32(108);
    let room = (size - OPTIONAL_HEADER_FIXED_SIZE) / DATA_DIRECTORY_SIZE;
    if to_usize(number_of_rva_and_sizes) > room {
        return Err(FormatError::new(
            "optional header",
            format!(
                "NumberOfRvaAndSizes is {number_of_rva_and_sizes} but SizeOfOptionalHeader ({size}) has room for {room} \
                 data directories: corrupt image"
            ),
        ));
    }
    let data_directories = (0..to_usize(number_of_rva_and_sizes))
        .map(|index| {
            let at = OPTIONAL_HEADER_FIXED_SIZE + index * DATA_DIRECTORY_SIZE;
            DataDirectory {
                virtual_address: rd32(at),
                size: rd32(at + 4),
            }
        })
        .collect();
    Ok(OptionalHeader {
        magic,
        address_of_entry_point: rd32(16),
        image_base: u64_at(optional, 24).unwrap_or(0),
        section_alignment: rd32(32),
        file_alignment: rd32(36),
        size_of_image: rd32(56),
        size_of_headers: rd32(60),
        checksum: rd32(CHECKSUM_FIELD_OFFSET),
        subsystem: rd16(68),
        dll_characteristics: rd16(70),
        data_directories,
    })
}

/// Decodes `count` section headers at `offset` and checks that each one's raw data is in the file.
fn parse_section_table(
    bytes: &[u8],
    offset: usize,
    count: usize,
) -> Result<Vec<Section>, FormatError> {
    let table = slice_at(bytes, offset, count * SECTION_HEADER_SIZE).ok_or_else(|| {
        FormatError::new(
            "section table",
            format!(
                "{count} section headers at 0x{offset:X} do not fit in the file ({} bytes): truncated or corrupt image",
                bytes.len()
            ),
        )
    })?;
    let mut sections = Vec::with_capacity(count);
    for header in table.chunks_exact(SECTION_HEADER_SIZE) {
        let section = parse_section_header(header);
        let start = to_usize(section.pointer_to_raw_data);
        let len = to_usize(section.size_of_raw_data);
        if len != 0 && slice_at(bytes, start, len).is_none() {
            return Err(FormatError::new(
                format!("section {}", section.name),
                format!(
                    "raw data 0x{start:X}+0x{len:X} extends past the end of the file ({} bytes): truncated image",
                    bytes.len()
                ),
            ));
        }
        sections.push(section);
    }
    Ok(sections)
}

/// Decodes one 40-byte section header (the caller guarantees the length).
fn parse_section_header(header: &[u8]) -> Section {
    let mut raw_name = [0u8; 8];
    raw_name.copy_from_slice(&header[..8]);
    let name_len = raw_name
        .iter()
        .position(|&byte| byte == 0)
        .unwrap_or(raw_name.len());
    let field = |at: usize| u32_at(header, at).unwrap_or(0);
    Section {
        name: String::from_utf8_lossy(&raw_name[..name_len]).into_owned(),
        raw_name,
        virtual_size: field(8),
        virtual_address: field(12),
        size_of_raw_data: field(16),
        pointer_to_raw_data: field(20),
        characteristics: field(36),
    }
}

/// A test-only builder of small, correct synthetic driver images, and helpers to break them.
#[cfg(test)]
pub(crate) mod testimage {
    use super::{
        IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE, IMAGE_DLLCHARACTERISTICS_FORCE_INTEGRITY,
        IMAGE_DLLCHARACTERISTICS_NX_COMPAT, IMAGE_SCN_MEM_DISCARDABLE, IMAGE_SCN_MEM_EXECUTE,
        IMAGE_SCN_MEM_NOT_PAGED, IMAGE_SCN_MEM_WRITE, IMAGE_SUBSYSTEM_NATIVE, PE32_PLUS_MAGIC,
        pe_checksum,
    };

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
}

#[cfg(test)]
mod tests {
    use super::testimage::{self, Spec};
    use super::{DIR_EXPORT, DIR_IMPORT, Export, ImportedFunction, PeImage, pe_checksum};

    #[test]
    fn checksum_of_a_hand_computed_vector() {
        // Words 0x0201 + 0x0403 + (checksum skipped) + 0xFFFF + 0x0005 (odd byte padded):
        // 0x0604 + 0xFFFF = 0x10603 -> folded 0x0604; + 5 = 0x0609; + length 11 = 0x0614.
        let bytes = [
            0x01, 0x02, 0x03, 0x04, 0xAA, 0xBB, 0xCC, 0xDD, 0xFF, 0xFF, 0x05,
        ];
        assert_eq!(pe_checksum(&bytes, 4), 0x0614);
        // The checksum field's contents never matter.
        let mut other = bytes;
        other[4..8].copy_from_slice(&[0; 4]);
        assert_eq!(pe_checksum(&other, 4), 0x0614);
        // An offset outside the file skips nothing.
        assert_eq!(pe_checksum(&[], usize::MAX), 0);
        assert_eq!(pe_checksum(&[0x01], usize::MAX), 2);
    }

    #[test]
    fn checksum_folds_carries() {
        // 0xFFFF + 0xFFFF = 0x1FFFE -> 0xFFFF; + length 4.
        assert_eq!(pe_checksum(&[0xFF; 4], 100), 0xFFFF + 4);
    }

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
}
