//! What `object` rejected in the headers, said in our words: the structure concerned, the values
//! found, and what the file probably is.
//!
//! `object` checks in one step what the PE format specification lays out one after the other:
//! the DOS header (`MZ`, `e_lfanew` at 0x3C), the `PE\0\0` signature, the 20-byte COFF file
//! header, the PE32+ optional header (magic 0x20B, 112 fixed bytes, then `NumberOfRvaAndSizes`
//! 8-byte data directories) and the section table (40 bytes per section). Called only once it has
//! failed, these functions walk that order with `object`'s typed reads and report the first
//! structure that is not there; `object`'s own message is the fallback.

use object::pe::{ImageFileHeader, ImageOptionalHeader64};
use object::{LittleEndian as LE, ReadRef, U16};

use super::{FILE_HEADER_SIZE, FormatError, PE32_MAGIC, PE32_PLUS_MAGIC, to_usize};

/// Size of the DOS header.
const DOS_HEADER_SIZE: usize = 0x40;
/// Size of the fixed part of the PE32+ optional header (up to and including `NumberOfRvaAndSizes`).
const OPTIONAL_HEADER_FIXED_SIZE: usize = size_of::<ImageOptionalHeader64>();
/// Size of one data directory entry.
const DATA_DIRECTORY_SIZE: usize = 8;

/// Why `object` found no DOS header: too short, or no `MZ`.
pub(super) fn dos_header_error(bytes: &[u8]) -> FormatError {
    match bytes {
        [first, second, ..] if bytes.len() >= DOS_HEADER_SIZE => FormatError::new(
            "DOS header",
            format!(
                "missing 'MZ' signature (found {first:02X} {second:02X}): not a PE image; is this the driver's .sys/.dll?"
            ),
        ),
        _ => FormatError::new(
            "DOS header",
            format!(
                "file is {} bytes, shorter than a DOS header ({DOS_HEADER_SIZE} bytes): not a PE image",
                bytes.len()
            ),
        ),
    }
}

/// Why `object` could not read the NT headers at `e_lfanew`: the first of the signature, the file
/// header and the optional header (with its data directories) that is missing or malformed.
pub(super) fn nt_headers_error(
    bytes: &[u8],
    e_lfanew: u32,
    error: &object::read::Error,
) -> FormatError {
    let at = u64::from(e_lfanew);
    match bytes.read_bytes_at(at, 4) {
        Ok(b"PE\0\0") => {}
        Ok(found) => {
            return FormatError::new(
                "PE signature",
                format!(
                    "no 'PE\\0\\0' signature at e_lfanew 0x{e_lfanew:X} (found {found:02X?}): not a PE image (an MS-DOS program?)"
                ),
            );
        }
        Err(()) => {
            return FormatError::new(
                "PE signature",
                format!(
                    "e_lfanew 0x{e_lfanew:X} points past the end of the file ({} bytes): truncated or not a PE image",
                    bytes.len()
                ),
            );
        }
    }
    let file_header_offset = at + 4;
    let Ok(file_header) = bytes.read_at::<ImageFileHeader>(file_header_offset) else {
        return FormatError::new(
            "file header",
            format!(
                "the COFF file header at 0x{file_header_offset:X} is cut off by the end of the file: truncated image"
            ),
        );
    };
    let offset = file_header_offset + FILE_HEADER_SIZE as u64;
    optional_header_error(bytes, offset, file_header, error)
}

/// Why the optional header at `offset`, declared by `file_header`, is unusable.
fn optional_header_error(
    bytes: &[u8],
    offset: u64,
    file_header: &ImageFileHeader,
    error: &object::read::Error,
) -> FormatError {
    let subject = "optional header";
    let Ok(magic) = bytes.read_at::<U16<LE>>(offset).map(|magic| magic.get(LE)) else {
        return FormatError::new(
            subject,
            "the optional header is missing (file ends after the file header): truncated image",
        );
    };
    if magic != PE32_PLUS_MAGIC {
        let kind = if magic == PE32_MAGIC {
            " (PE32, a 32-bit image)"
        } else {
            ""
        };
        return FormatError::new(
            subject,
            format!(
                "magic is 0x{magic:X}{kind}, expected 0x{PE32_PLUS_MAGIC:X} (PE32+): drivers for x64/ARM64 are PE32+ images; \
                 build for a 64-bit Windows target"
            ),
        );
    }
    let size = usize::from(file_header.size_of_optional_header.get(LE));
    if size < OPTIONAL_HEADER_FIXED_SIZE {
        return FormatError::new(
            subject,
            format!(
                "SizeOfOptionalHeader is {size}, smaller than a PE32+ optional header ({OPTIONAL_HEADER_FIXED_SIZE} bytes \
                 without data directories): corrupt image"
            ),
        );
    }
    let Ok(optional) = bytes
        .read_bytes_at(offset, size as u64)
        .and_then(|_| bytes.read_at::<ImageOptionalHeader64>(offset))
    else {
        return FormatError::new(
            subject,
            format!(
                "the optional header (0x{offset:X}, {size} bytes) is cut off by the end of the file ({} bytes): truncated image",
                bytes.len()
            ),
        );
    };
    let number_of_rva_and_sizes = optional.number_of_rva_and_sizes.get(LE);
    let room = (size - OPTIONAL_HEADER_FIXED_SIZE) / DATA_DIRECTORY_SIZE;
    if to_usize(number_of_rva_and_sizes) > room {
        return FormatError::new(
            subject,
            format!(
                "NumberOfRvaAndSizes is {number_of_rva_and_sizes} but SizeOfOptionalHeader ({size}) has room for {room} \
                 data directories: corrupt image"
            ),
        );
    }
    FormatError::new(subject, format!("{error}: corrupt image"))
}

/// Why `object` could not read the section table at `offset`: it does not fit in the file.
pub(super) fn section_table_error(
    bytes: &[u8],
    offset: u64,
    file_header: &ImageFileHeader,
) -> FormatError {
    let count = file_header.number_of_sections.get(LE);
    FormatError::new(
        "section table",
        format!(
            "{count} section headers at 0x{offset:X} do not fit in the file ({} bytes): truncated or corrupt image",
            bytes.len()
        ),
    )
}
