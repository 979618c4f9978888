//! The [`klog!`](crate::klog!) formats, formatted by the driver itself for the ETW event (the
//! kernel formats the same format for `DbgPrintEx`; the text must be the same, so this follows the
//! kernel's printf for the conversions `klog!` allows: `%%`, `%Iu %Id %Ix %IX %p` with an
//! optional `0` flag and width, and `%wZ`). No `core::fmt`: a few hundred bytes of code.

use super::LineBuffer;

impl LineBuffer {
    /// Formats a checked `klog!` format (without its NUL) with its argument words, replacing the
    /// line. `%p` is 16 upper-case hex digits (a 64-bit pointer), as the kernel prints it.
    ///
    /// # Safety
    /// Every word for a `%wZ` conversion is the address of a valid `UNICODE_STRING` (what
    /// [`KernelArg`](super::KernelArg) guarantees for `klog_passive!`).
    pub unsafe fn format_kernel(&mut self, format: &[u8], words: &[usize]) -> &[u8] {
        // No indexing or slicing that could panic: a bounds check would pull the panic machinery
        // (and `core::fmt`) into every image.
        self.clear();
        let mut i = 0;
        let mut next = 0;
        let mut start = 0;
        let at = |i: usize| format.get(i).copied().unwrap_or(0);
        while i < format.len() {
            if at(i) != b'%' {
                i += 1;
                continue;
            }
            self.push(format.get(start..i).unwrap_or_default());
            i += 1;
            if at(i) == b'%' {
                self.push(b"%");
                i += 1;
                start = i;
                continue;
            }
            let zero = at(i) == b'0';
            let mut width = 0usize;
            while at(i).is_ascii_digit() {
                width = width * 10 + usize::from(at(i) - b'0');
                i += 1;
            }
            let word = words.get(next).copied().unwrap_or(0);
            next += 1;
            let mut digits = Digits::new();
            match at(i) {
                b'p' => {
                    i += 1;
                    digits.hex(word as u64, 16, true);
                }
                b'w' => {
                    i += 2; // "wZ"
                    // SAFETY: the caller's contract: the word is a UNICODE_STRING's address.
                    unsafe { self.push_unicode_string(word, width) };
                    start = i;
                    continue;
                }
                _ => {
                    let conversion = at(i + 1);
                    i += 2; // "I" and the conversion
                    match conversion {
                        b'd' => digits.signed(word.cast_signed() as i64),
                        b'x' => digits.hex(word as u64, 0, false),
                        b'X' => digits.hex(word as u64, 0, true),
                        _ => digits.unsigned(word as u64),
                    }
                }
            }
            self.pad(digits.text(), width, zero);
            start = i;
        }
        self.push(format.get(start..).unwrap_or_default());
        self.terminate()
    }

    fn pad(&mut self, text: &[u8], width: usize, zero: bool) {
        let fill = width.saturating_sub(text.len());
        let (sign, digits) = match text.split_first() {
            Some((b'-', rest)) if zero => (&b"-"[..], rest),
            _ => (&b""[..], text),
        };
        self.push(sign);
        for _ in 0..fill {
            self.push(if zero { b"0" } else { b" " });
        }
        self.push(digits);
    }

    /// Appends a counted UTF-16 string as UTF-8 ([`Self::push_utf16`]), right-aligned in `width`
    /// characters as printf pads.
    unsafe fn push_unicode_string(&mut self, address: usize, width: usize) {
        if address == 0 {
            self.push(b"(null)");
            return;
        }
        // SAFETY: the caller's contract.
        let s = unsafe { &*(address as *const crate::sys::UNICODE_STRING) };
        let units = usize::from(s.Length / 2);
        let units: &[u16] = if s.Buffer.is_null() {
            &[]
        } else {
            // SAFETY: a valid UNICODE_STRING's Buffer holds Length bytes.
            unsafe { core::slice::from_raw_parts(s.Buffer, units) }
        };
        for _ in units.len()..width {
            self.push(b" ");
        }
        self.push_utf16(units.iter().copied());
    }

    /// Appends UTF-16 code units as UTF-8 (an unpaired surrogate becomes U+FFFD), reading no
    /// further once the line is full: a name can be 32,767 characters long (a `UNICODE_STRING`'s
    /// `Length` is a `USHORT` of bytes) and the line holds a few hundred bytes, so a callback that
    /// logs a name does work bounded by the line, not by the name.
    #[allow(clippy::cast_possible_truncation)] // each UTF-8 byte is masked or shifted into range
    fn push_utf16(&mut self, units: impl Iterator<Item = u16>) {
        let mut chars = char::decode_utf16(units);
        while !self.truncated() {
            let Some(c) = chars.next() else { break };
            let c = u32::from(c.unwrap_or(char::REPLACEMENT_CHARACTER));
            // UTF-8 by hand: char::encode_utf8 can panic (with a formatted message).
            let bytes = [
                0xF0 | (c >> 18) as u8,
                0x80 | ((c >> 12) & 0x3F) as u8,
                0x80 | ((c >> 6) & 0x3F) as u8,
                0x80 | (c & 0x3F) as u8,
            ];
            match c {
                0..=0x7F => self.push(&[c as u8]),
                0x80..=0x7FF => self.push(&[0xC0 | (c >> 6) as u8, bytes[3]]),
                0x800..=0xFFFF => self.push(&[0xE0 | (c >> 12) as u8, bytes[2], bytes[3]]),
                _ => self.push(&bytes),
            }
        }
    }
}

/// Up to 20 digits (and a sign), written from the right.
struct Digits {
    buf: [u8; 21],
    at: usize,
}

impl Digits {
    const fn new() -> Self {
        Self {
            buf: [0; 21],
            at: 21,
        }
    }

    fn put(&mut self, b: u8) {
        if let Some(at) = self.at.checked_sub(1)
            && let Some(slot) = self.buf.get_mut(at)
        {
            *slot = b;
            self.at = at;
        }
    }

    fn text(&self) -> &[u8] {
        self.buf.get(self.at..).unwrap_or_default()
    }

    #[allow(clippy::cast_possible_truncation)] // a digit
    fn unsigned(&mut self, mut v: u64) {
        loop {
            self.put(b'0' + (v % 10) as u8);
            v /= 10;
            if v == 0 {
                return;
            }
        }
    }

    fn signed(&mut self, v: i64) {
        self.unsigned(v.unsigned_abs());
        if v < 0 {
            self.put(b'-');
        }
    }

    fn hex(&mut self, mut v: u64, min_digits: usize, upper: bool) {
        let digits: &[u8; 16] = if upper {
            b"0123456789ABCDEF"
        } else {
            b"0123456789abcdef"
        };
        let mut n = 0;
        loop {
            self.put(digits[(v & 0xF) as usize]);
            n += 1;
            v >>= 4;
            if v == 0 && n >= min_digits {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::LineBuffer;

    fn fmt(format: &str, words: &[usize]) -> String {
        let mut b = LineBuffer::new();
        // SAFETY: no %wZ word here is anything but a real UNICODE_STRING (see the %wZ test).
        let bytes = unsafe { b.format_kernel(format.as_bytes(), words) }.to_vec();
        assert_eq!(bytes.last(), Some(&0));
        String::from_utf8(bytes[..bytes.len() - 1].to_vec()).unwrap()
    }

    /// The expectations are what the kernel's printf prints (and the emulated kernel's
    /// printf.py, which the emulate stage compares against the ETW lines).
    #[test]
    fn integer_conversions() {
        assert_eq!(fmt("a %Iu b", &[42]), "a 42 b");
        assert_eq!(fmt("%Id", &[(-7isize).cast_unsigned()]), "-7");
        assert_eq!(fmt("%Ix %IX", &[0xbeef, 0xbeef]), "beef BEEF");
        assert_eq!(fmt("%08Ix", &[0xC000_0001]), "c0000001");
        assert_eq!(fmt("%08Ix", &[0x1f]), "0000001f");
        assert_eq!(fmt("%5Iu|", &[42]), "   42|");
        assert_eq!(fmt("%05Id", &[(-42isize).cast_unsigned()]), "-0042");
        assert_eq!(fmt("%p", &[0x1234]), "0000000000001234");
        assert_eq!(fmt("%Iu", &[usize::MAX]), "18446744073709551615");
        assert_eq!(
            fmt("%Id", &[isize::MIN.cast_unsigned()]),
            "-9223372036854775808"
        );
        assert_eq!(fmt("100%% done", &[]), "100% done");
    }

    #[test]
    fn counted_strings_become_utf8() {
        let mut units: Vec<u16> = "\\Registry\\Ma\u{e9}\u{1F600}".encode_utf16().collect();
        let name = crate::sys::UNICODE_STRING {
            Length: u16::try_from(2 * units.len()).unwrap(),
            MaximumLength: u16::try_from(2 * units.len()).unwrap(),
            Buffer: units.as_mut_ptr(),
        };
        let address = core::ptr::from_ref(&name) as usize;
        assert_eq!(
            fmt("key %wZ.", &[address]),
            "key \\Registry\\Ma\u{e9}\u{1F600}."
        );
        units[0] = 0xD800; // an unpaired surrogate
        assert!(fmt("%wZ", &[address]).starts_with('\u{FFFD}'));
        assert_eq!(fmt("%wZ", &[0]), "(null)");
    }

    #[test]
    fn a_long_name_is_read_only_as_far_as_the_line_holds() {
        let mut read = 0usize;
        let units = core::iter::repeat_n(u16::from(b'k'), 32_767).inspect(|_| read += 1);
        let mut b = LineBuffer::new();
        b.push_utf16(units);
        assert!(b.truncated());
        // The units that fit, and the one that did not: nothing after it.
        assert!(
            read <= super::super::LINE_CAPACITY,
            "read {read} of 32,767 code units for a {}-byte line",
            super::super::LINE_CAPACITY
        );
    }

    #[test]
    fn long_output_is_truncated_like_log() {
        let out = fmt(&"%Iu".repeat(100), &[123_456_789; 100]);
        assert_eq!(out.len(), super::super::LINE_CAPACITY - 1);
        assert!(out.ends_with("...\n"));
    }
}
