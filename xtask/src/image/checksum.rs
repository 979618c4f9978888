//! The PE image checksum, our own: the value the loader compares with `OptionalHeader.CheckSum`
//! for a driver, and that signing must rewrite after changing the file. The `object` crate reads
//! the stored value; it does not compute one.

/// Computes the PE image checksum of `bytes`.
///
/// The algorithm (as implemented by `CheckSumMappedFile`): add up the file as little-endian
/// 16-bit words (an odd final byte is padded with a zero byte), folding the carry out of bit 15
/// back into the sum after every addition; the four bytes of the checksum field itself, at
/// `checksum_offset`, count as zero. The result is that 16-bit sum plus the file length.
///
/// `checksum_offset` is the file offset of the `CheckSum` field
/// ([`PeImage::checksum_offset`](super::read::PeImage::checksum_offset)); an offset outside the
/// file simply skips nothing. Lengths are taken modulo 2^32 (PE files are smaller than 4 GiB).
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

#[cfg(test)]
mod tests {
    use super::pe_checksum;

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
