//! Synthetic PE32+ images for the tests: headers, one `.text` section, a valid checksum.

// `super::pe`: the crate's module in unit tests, a re-export in the integration tests.
use super::pe::pe_checksum;

const PE: usize = 0x80;
const OPTIONAL: usize = PE + 4 + 20;
/// File offset of `CheckSum`.
pub const CHECKSUM: usize = OPTIONAL + 64;
/// File offset of the certificate-table entry (data directory 4).
pub const SECURITY_ENTRY: usize = OPTIONAL + 112 + 4 * 8;
const SECTION_TABLE: usize = OPTIONAL + 240;
const HEADERS: usize = 0x400;

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// An image for `machine` whose `.text` holds `text_len` bytes (a multiple of 0x200) of a pattern.
pub fn image(machine: u16, text_len: usize) -> Vec<u8> {
    let mut b = vec![0u8; HEADERS + text_len];
    b[..2].copy_from_slice(b"MZ");
    put32(&mut b, 0x3C, u32::try_from(PE).unwrap());
    b[PE..PE + 4].copy_from_slice(b"PE\0\0");
    put16(&mut b, PE + 4, machine);
    put16(&mut b, PE + 4 + 2, 1); // NumberOfSections
    put16(&mut b, PE + 4 + 16, 240); // SizeOfOptionalHeader
    put16(&mut b, PE + 4 + 18, 0x2022); // EXECUTABLE_IMAGE | LARGE_ADDRESS_AWARE | DLL
    put16(&mut b, OPTIONAL, 0x20B);
    put32(&mut b, OPTIONAL + 16, 0x1000); // AddressOfEntryPoint
    b[OPTIONAL + 24..OPTIONAL + 32].copy_from_slice(&0x1_4000_0000u64.to_le_bytes());
    put32(&mut b, OPTIONAL + 32, 0x1000); // SectionAlignment
    put32(&mut b, OPTIONAL + 36, 0x200); // FileAlignment
    let size_of_image = 0x1000 + u32::try_from(text_len.next_multiple_of(0x1000)).unwrap();
    put32(&mut b, OPTIONAL + 56, size_of_image);
    put32(&mut b, OPTIONAL + 60, u32::try_from(HEADERS).unwrap());
    put16(&mut b, OPTIONAL + 68, 1); // Subsystem: native
    put32(&mut b, OPTIONAL + 108, 16); // NumberOfRvaAndSizes
    b[SECTION_TABLE..SECTION_TABLE + 8].copy_from_slice(b".text\0\0\0");
    let len = u32::try_from(text_len).unwrap();
    put32(&mut b, SECTION_TABLE + 8, len); // VirtualSize
    put32(&mut b, SECTION_TABLE + 12, 0x1000); // VirtualAddress
    put32(&mut b, SECTION_TABLE + 16, len); // SizeOfRawData
    put32(&mut b, SECTION_TABLE + 20, u32::try_from(HEADERS).unwrap());
    put32(&mut b, SECTION_TABLE + 36, 0x6000_0020); // code, execute, read
    for (i, byte) in b[HEADERS..].iter_mut().enumerate() {
        *byte = u8::try_from(i % 251).unwrap();
    }
    fix_checksum(&mut b);
    b
}

/// The default test image: x64, one 0x200-byte `.text`.
pub fn good() -> Vec<u8> {
    image(0x8664, 0x200)
}

/// Recomputes and stores the checksum (after a deliberate change).
pub fn fix_checksum(b: &mut [u8]) {
    let sum = pe_checksum(b, CHECKSUM);
    put32(b, CHECKSUM, sum);
}
