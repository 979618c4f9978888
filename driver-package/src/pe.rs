//! The few PE headers Authenticode needs, read from a file's bytes: where `CheckSum` and the
//! certificate-table entry (data directory 4) are, `SizeOfHeaders`, each section's raw data, and
//! the PE checksum (the PE Format specification: "MS-DOS Stub", "Optional Header Windows-Specific
//! Fields", "Optional Header Data Directories", "Section Table").
//!
//! This reader implements [`authenticode::PeTrait`], so the image hash is computed by the
//! `authenticode` crate (`authenticode::authenticode_digest`) exactly as the Authenticode
//! specification orders it. It replaces that crate's `object` feature: the headers are 100 lines,
//! `object` would add a large dependency to every build of the tool that packages drivers.

use std::ops::Range;

use authenticode::{PeOffsetError, PeOffsets, PeTrait};

use crate::error::{Error, Result};

/// `IMAGE_DIRECTORY_ENTRY_SECURITY`: the certificate table's data-directory index.
pub const DIR_SECURITY: usize = 4;
/// `IMAGE_FILE_MACHINE_AMD64`.
pub const MACHINE_AMD64: u16 = 0x8664;
/// `IMAGE_FILE_MACHINE_ARM64`.
pub const MACHINE_ARM64: u16 = 0xAA64;

const E_LFANEW: usize = 0x3C;
const FILE_HEADER_SIZE: usize = 20;
const SECTION_HEADER_SIZE: usize = 40;
const PE32_MAGIC: u16 = 0x10B;
const PE32_PLUS_MAGIC: u16 = 0x20B;

/// A little-endian `u16` at `at`, if the bytes are there.
pub(crate) fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        bytes.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

/// A little-endian `u32` at `at`, if the bytes are there.
pub(crate) fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        bytes.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn to_usize(v: u32) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// The headers of a PE image (PE32 or PE32+), checked to lie inside the file.
#[derive(Clone, Debug)]
pub struct PeHeaders<'a> {
    bytes: &'a [u8],
    /// `FileHeader.Machine`.
    pub machine: u16,
    /// File offset of `OptionalHeader.CheckSum`.
    pub checksum_offset: usize,
    /// File offset of the certificate-table entry, if the image declares 5 data directories.
    pub security_entry_offset: Option<usize>,
    /// `OptionalHeader.SizeOfHeaders`.
    pub size_of_headers: usize,
    /// Each section's raw data (`PointerToRawData`, `SizeOfRawData`), in table order.
    pub sections: Vec<Range<usize>>,
}

fn not_pe(what: impl std::fmt::Display) -> Error {
    Error::new(format!("{what}: not a PE image"))
}

impl<'a> PeHeaders<'a> {
    /// Reads the headers of `bytes`.
    ///
    /// # Errors
    /// When `bytes` is not a PE image, or its headers or sections lie outside the file.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        if bytes.len() < 0x40 || &bytes[..2] != b"MZ" {
            return Err(not_pe(
                "no 'MZ' DOS header; is this the driver's .sys/.dll?",
            ));
        }
        let pe = to_usize(u32_at(bytes, E_LFANEW).unwrap_or(0));
        if bytes.get(pe..pe.saturating_add(4)) != Some(b"PE\0\0") {
            return Err(not_pe(format!("no 'PE\\0\\0' signature at 0x{pe:X}")));
        }
        let file_header = pe + 4;
        let field = |at: usize| u16_at(bytes, at).ok_or_else(|| not_pe("truncated headers"));
        let machine = field(file_header)?;
        let sections = usize::from(field(file_header + 2)?);
        let optional_size = usize::from(field(file_header + 16)?);
        let optional = file_header + FILE_HEADER_SIZE;
        let (dirs_at, count_at) = match field(optional)? {
            PE32_MAGIC => (96, 92),
            PE32_PLUS_MAGIC => (112, 108),
            m => return Err(not_pe(format!("optional header magic 0x{m:03X}"))),
        };
        if optional_size < dirs_at || bytes.len() < optional + optional_size {
            return Err(not_pe("the optional header is truncated"));
        }
        let dword = |at: usize| u32_at(bytes, at).ok_or_else(|| not_pe("truncated headers"));
        let directories = to_usize(dword(optional + count_at)?);
        let security_entry_offset = (directories > DIR_SECURITY
            && dirs_at + (DIR_SECURITY + 1) * 8 <= optional_size)
            .then_some(optional + dirs_at + DIR_SECURITY * 8);
        let table = optional + optional_size;
        let mut ranges = Vec::with_capacity(sections);
        for i in 0..sections {
            let entry = table + i * SECTION_HEADER_SIZE;
            let size = to_usize(dword(entry + 16)?);
            let start = to_usize(dword(entry + 20)?);
            let end = start
                .checked_add(size)
                .filter(|&e| size == 0 || e <= bytes.len());
            let Some(end) = end else {
                return Err(Error::new(format!(
                    "section {i}'s raw data (0x{start:X}, 0x{size:X} bytes) lies outside the \
                     {}-byte file: truncated or not a PE image",
                    bytes.len()
                )));
            };
            ranges.push(start..end);
        }
        Ok(Self {
            bytes,
            machine,
            checksum_offset: optional + 64,
            security_entry_offset,
            size_of_headers: to_usize(dword(optional + 60)?),
            sections: ranges,
        })
    }

    /// The certificate table's (file offset, size) from data directory 4, if it is present.
    #[must_use]
    pub fn certificate_table(&self) -> Option<(usize, usize)> {
        let at = self.security_entry_offset?;
        let (start, size) = (u32_at(self.bytes, at)?, u32_at(self.bytes, at + 4)?);
        (start != 0 && size != 0).then(|| (to_usize(start), to_usize(size)))
    }
}

impl PeTrait for PeHeaders<'_> {
    fn data(&self) -> &[u8] {
        self.bytes
    }

    fn num_sections(&self) -> usize {
        self.sections.len()
    }

    fn section_data_range(&self, index: usize) -> Result<Range<usize>, PeOffsetError> {
        index
            .checked_sub(1)
            .and_then(|i| self.sections.get(i))
            .cloned()
            .ok_or(PeOffsetError)
    }

    fn certificate_table_range(&self) -> Result<Option<Range<usize>>, PeOffsetError> {
        match self.certificate_table() {
            Some((start, size)) => Ok(Some(start..start.checked_add(size).ok_or(PeOffsetError)?)),
            None => Ok(None),
        }
    }

    fn offsets(&self) -> Result<PeOffsets, PeOffsetError> {
        let security = self.security_entry_offset.ok_or(PeOffsetError)?;
        Ok(PeOffsets {
            check_sum: self.checksum_offset,
            after_check_sum: self.checksum_offset + 4,
            security_data_dir: security,
            after_security_data_dir: security + 8,
            after_header: self.size_of_headers,
        })
    }
}

/// The PE image checksum of `bytes` (the value the loader compares with
/// `OptionalHeader.CheckSum`, and that a signing tool must rewrite after changing the file), as
/// `CheckSumMappedFile` computes it: the file as little-endian 16-bit words (an odd final byte
/// padded with zero) added with the carry folded back after every addition, the four bytes at
/// `checksum_offset` counting as zero; then the file length added.
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
        sum += byte_at(index) | (byte_at(index + 1) << 8);
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    #[allow(clippy::cast_possible_truncation)] // the algorithm is defined modulo 2^32
    let length = bytes.len() as u32;
    sum.wrapping_add(length)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testimage;

    #[test]
    fn the_headers_of_an_image_are_found() {
        let image = testimage::image(0x8664, 0x200);
        let h = PeHeaders::parse(&image).unwrap();
        assert_eq!(h.machine, MACHINE_AMD64);
        assert_eq!(h.checksum_offset, testimage::CHECKSUM);
        assert_eq!(h.security_entry_offset, Some(testimage::SECURITY_ENTRY));
        assert_eq!(h.size_of_headers, 0x400);
        assert_eq!(h.sections, vec![0x400..0x600]);
        assert_eq!(h.certificate_table(), None);
        assert_eq!(
            pe_checksum(&image, h.checksum_offset),
            u32_at(&image, h.checksum_offset).unwrap()
        );
    }

    #[test]
    fn what_is_not_a_pe_image_is_refused() {
        for bad in [&b"MZ nothing"[..], b"", &[0u8; 0x100]] {
            let e = PeHeaders::parse(bad).unwrap_err().to_string();
            assert!(e.contains("not a PE image"), "{e}");
        }
        let mut image = testimage::image(0x8664, 0x200);
        image.truncate(0x500);
        let e = PeHeaders::parse(&image).unwrap_err().to_string();
        assert!(e.contains("outside the"), "{e}");
    }

    #[test]
    fn the_checksum_ignores_its_own_field_and_counts_the_length() {
        assert_eq!(pe_checksum(&[], 0), 0);
        assert_eq!(pe_checksum(&[1, 0, 2, 0], 100), 3 + 4);
        assert_eq!(pe_checksum(&[1, 0, 2, 0], 2), 1 + 4);
        assert_eq!(pe_checksum(&[0xFF, 0xFF, 0x02, 0x00], 100), 2 + 4); // carry folded
        assert_eq!(pe_checksum(&[1], 100), 1 + 1); // odd length
    }

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
}
