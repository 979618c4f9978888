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
        self.clear();
        let mut i = 0;
        let mut next = 0;
        let mut start = 0;
        while i < format.len() {
            if format[i] != b'%' {
                i += 1;
                continue;
            }
            self.push(&format[start..i]);
            i += 1;
            if format.get(i) == Some(&b'%') {
                self.push(b"%");
                i += 1;
                start = i;
                continue;
            }
            let zero = format.get(i) == Some(&b'0');
            let mut width = 0usize;
            while let Some(d) = format.get(i).filter(|d| d.is_ascii_digit()) {
                width = width * 10 + usize::from(d - b'0');
                i += 1;
            }
            let word = words.get(next).copied().unwrap_or(0);
            next += 1;
            let mut digits = [0u8; 20];
            let text: &[u8] = match format.get(i) {
                Some(b'p') => {
                    i += 1;
                    hex(word as u64, 16, true, &mut digits)
                }
                Some(b'w') => {
                    i += 2; // "wZ"
                    // SAFETY: the caller's contract: the word is a UNICODE_STRING's address.
                    unsafe { self.push_unicode_string(word, width) };
                    start = i;
                    continue;
                }
                _ => {
                    let conversion = format.get(i + 1).copied().unwrap_or(b'u');
                    i += 2; // "I" and the conversion
                    match conversion {
                        b'd' => decimal(word.cast_signed() as i64, &mut digits),
                        b'x' => hex(word as u64, 0, false, &mut digits),
                        b'X' => hex(word as u64, 0, true, &mut digits),
                        _ => unsigned(word as u64, &mut digits),
                    }
                }
            };
            self.pad(text, width, zero);
            start = i;
        }
        self.push(&format[start..]);
        self.terminate()
    }

    fn pad(&mut self, text: &[u8], width: usize, zero: bool) {
        let fill = width.saturating_sub(text.len());
        if zero && text.first() == Some(&b'-') {
            self.push(b"-");
            for _ in 0..fill {
                self.push(b"0");
            }
            self.push(&text[1..]);
            return;
        }
        for _ in 0..fill {
            self.push(if zero { b"0" } else { b" " });
        }
        self.push(text);
    }

    /// Appends a counted UTF-16 string as UTF-8 (an unpaired surrogate becomes U+FFFD), right-
    /// aligned in `width` characters as printf pads.
    unsafe fn push_unicode_string(&mut self, address: usize, width: usize) {
        if address == 0 {
            self.push(b"(null)");
            return;
        }
        // SAFETY: the caller's contract.
        let s = unsafe { &*(address as *const crate::sys::UNICODE_STRING) };
        let units = usize::from(s.Length / 2);
        if s.Buffer.is_null() || units == 0 {
            for _ in 0..width {
                self.push(b" ");
            }
            return;
        }
        // SAFETY: a valid UNICODE_STRING's Buffer holds Length bytes.
        let units = unsafe { core::slice::from_raw_parts(s.Buffer, units) };
        for _ in units.len()..width {
            self.push(b" ");
        }
        for c in char::decode_utf16(units.iter().copied()) {
            let mut utf8 = [0u8; 4];
            let c = c.unwrap_or(char::REPLACEMENT_CHARACTER);
            self.push(c.encode_utf8(&mut utf8).as_bytes());
        }
    }
}

fn unsigned(mut v: u64, out: &mut [u8; 20]) -> &[u8] {
    let mut at = out.len();
    loop {
        at -= 1;
        out[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return &out[at..];
        }
    }
}

fn decimal(v: i64, out: &mut [u8; 20]) -> &[u8] {
    if v >= 0 {
        return unsigned(v.cast_unsigned(), out);
    }
    // |i64::MIN| has 19 digits: the sign fits in the 20-byte buffer.
    let len = unsigned(v.unsigned_abs(), out).len();
    let at = out.len() - len - 1;
    out[at] = b'-';
    &out[at..]
}

fn hex(mut v: u64, min_digits: usize, upper: bool, out: &mut [u8; 20]) -> &[u8] {
    let digits: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let mut at = out.len();
    loop {
        at -= 1;
        out[at] = digits[(v & 0xF) as usize];
        v >>= 4;
        if v == 0 && out.len() - at >= min_digits {
            return &out[at..];
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
    fn long_output_is_truncated_like_log() {
        let out = fmt(&"%Iu".repeat(100), &[123_456_789; 100]);
        assert_eq!(out.len(), super::super::LINE_CAPACITY - 1);
        assert!(out.ends_with("...\n"));
    }
}
