//! Counted UTF-16 strings built at compile time.
//!
//! Kernel names (`\Callback\PowerState`, registry paths) are `UNICODE_STRING`s: a byte length, a
//! capacity and a pointer, with no terminating NUL required. Building them from literals at compile
//! time needs no `RtlInitUnicodeString` call and no allocation.

use crate::sys::UNICODE_STRING;

/// Encodes an ASCII literal as UTF-16 at compile time. `N` must be the literal's length.
///
/// # Panics
/// At compile time, if the text is not ASCII or `N` does not match its length.
#[must_use]
pub const fn ascii_to_utf16<const N: usize>(text: &str) -> [u16; N] {
    let bytes = text.as_bytes();
    assert!(bytes.len() == N, "length mismatch");
    assert!(
        N * 2 <= u16::MAX as usize,
        "a UNICODE_STRING holds at most 65535 bytes"
    );
    let mut out = [0u16; N];
    let mut i = 0;
    while i < N {
        assert!(bytes[i].is_ascii(), "only ASCII names are supported");
        out[i] = bytes[i] as u16;
        i += 1;
    }
    out
}

/// A UTF-16 string with static storage, from which `UNICODE_STRING`s are made.
#[derive(Clone, Copy)]
pub struct StaticUnicode(&'static [u16]);

impl StaticUnicode {
    /// Wraps UTF-16 code units with static storage (see [`unicode!`](crate::unicode!)).
    #[must_use]
    pub const fn new(units: &'static [u16]) -> Self {
        Self(units)
    }

    /// The code units.
    #[must_use]
    pub const fn units(&self) -> &'static [u16] {
        self.0
    }

    /// A `UNICODE_STRING` describing this text. The kernel never writes through it when it is used
    /// as an object name, so pointing `Buffer` at read-only data is sound.
    #[must_use]
    #[allow(clippy::cast_possible_truncation)] // bounded by ascii_to_utf16's assertion
    pub const fn as_unicode_string(&self) -> UNICODE_STRING {
        let bytes = (self.0.len() * 2) as u16;
        UNICODE_STRING {
            Length: bytes,
            MaximumLength: bytes,
            Buffer: self.0.as_ptr().cast_mut(),
        }
    }
}

/// A [`StaticUnicode`] from an ASCII literal, encoded at compile time:
/// `unicode!("\\Callback\\PowerState")`.
#[macro_export]
macro_rules! unicode {
    ($text:literal) => {{
        const UNITS: [u16; $text.len()] = $crate::unicode::ascii_to_utf16::<{ $text.len() }>($text);
        $crate::unicode::StaticUnicode::new(&UNITS)
    }};
}

#[cfg(test)]
mod tests {
    #[test]
    fn counted_string_has_byte_length_and_no_nul() {
        let name = crate::unicode!("\\Callback\\PowerState");
        let us = name.as_unicode_string();
        assert_eq!(us.Length, 40);
        assert_eq!(us.MaximumLength, 40);
        let units = name.units();
        assert_eq!(String::from_utf16(units).unwrap(), "\\Callback\\PowerState");
        assert_ne!(*units.last().unwrap(), 0);
    }

    #[test]
    fn empty_string_is_zero_length() {
        let us = crate::unicode!("").as_unicode_string();
        assert_eq!(us.Length, 0);
    }
}
