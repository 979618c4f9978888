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

/// The code units of a counted string, as the documentation defines them: `Length` bytes from
/// `Buffer`, with no terminating NUL assumed. An odd `Length` (malformed, but possible in a
/// structure someone else filled) drops the stray byte; a NULL `Buffer` or zero `Length` is empty.
///
/// # Safety
/// `string` is NULL or points to a `UNICODE_STRING` whose `Buffer` holds `Length` readable bytes,
/// both valid for `'a`.
#[must_use]
pub unsafe fn units<'a>(string: *const UNICODE_STRING) -> &'a [u16] {
    // SAFETY: the caller guarantees a valid (or NULL) pointer.
    let Some(s) = (unsafe { string.as_ref() }) else {
        return &[];
    };
    if s.Buffer.is_null() || s.Length < 2 {
        return &[];
    }
    // SAFETY: the caller guarantees `Length` readable bytes at `Buffer`; u16 units need 2-byte
    // alignment, which every UNICODE_STRING buffer has.
    unsafe { core::slice::from_raw_parts(s.Buffer, usize::from(s.Length / 2)) }
}

/// Uppercases one UTF-16 code unit: ASCII here, anything else through `upcase_other` (in the
/// kernel, `RtlUpcaseUnicodeChar`, the table the registry itself compares names with).
#[inline]
pub fn upcase(unit: u16, upcase_other: impl Fn(u16) -> u16) -> u16 {
    if unit < 0x80 {
        if (u16::from(b'a')..=u16::from(b'z')).contains(&unit) {
            unit - 0x20
        } else {
            unit
        }
    } else {
        upcase_other(unit)
    }
}

/// Whether the text made of `parts` (for instance a root key's name, `\`, and a relative name)
/// names `key` or something below it: equal to `key`, or `key` followed by `\` and more, ignoring
/// case. `key` must be in upper case.
///
/// Compares from the end of `key` backwards: paths that share a long prefix with `key` (every
/// `\REGISTRY\MACHINE\SOFTWARE\...` path) almost always differ in its last characters, so the
/// common case costs a few instructions instead of one per character.
pub fn is_at_or_below(
    parts: &[&[u16]],
    key: &[u16],
    upcase_other: impl Fn(u16) -> u16 + Copy,
) -> bool {
    if let [path] = parts {
        return path_is_at_or_below(path, key, upcase_other);
    }
    let total: usize = parts.iter().map(|p| p.len()).sum();
    if total < key.len() {
        return false;
    }
    if total > key.len() && unit_at(parts, key.len()) != Some(u16::from(b'\\')) {
        return false;
    }
    (0..key.len())
        .rev()
        .all(|i| unit_at(parts, i).is_some_and(|u| upcase(u, upcase_other) == key[i]))
}

/// [`is_at_or_below`] for a path in one piece (the common case, kept cheap: the callbacks that
/// use it run on every registry operation in the system).
///
/// The inline part only rejects: wrong length, no `\\` after `key`, or a different last
/// character (ASCII compared in place). Everything else goes to an out-of-line comparison, so the
/// caller's fast path needs few registers.
#[inline]
pub fn path_is_at_or_below(
    path: &[u16],
    key: &[u16],
    upcase_other: impl Fn(u16) -> u16 + Copy,
) -> bool {
    let n = key.len();
    if path.len() < n || (path.len() > n && path[n] != u16::from(b'\\')) {
        return false;
    }
    if let (Some(&last), Some(&want)) = (path[..n].last(), key.last())
        && last < 0x80
        && upcase(last, upcase_other) != want
    {
        return false;
    }
    all_equal_ignoring_case(&path[..n], key, upcase_other)
}

#[inline(never)]
fn all_equal_ignoring_case(
    text: &[u16],
    upper: &[u16],
    upcase_other: impl Fn(u16) -> u16 + Copy,
) -> bool {
    text.iter()
        .rev()
        .zip(upper.iter().rev())
        .all(|(&t, &u)| upcase(t, upcase_other) == u)
}

/// Whether `text` equals `upper` (upper case) ignoring case.
pub fn equals_ignoring_case(
    text: &[u16],
    upper: &[u16],
    upcase_other: impl Fn(u16) -> u16 + Copy,
) -> bool {
    text.len() == upper.len()
        && text
            .iter()
            .zip(upper)
            .all(|(&t, &u)| upcase(t, upcase_other) == u)
}

fn unit_at(parts: &[&[u16]], mut index: usize) -> Option<u16> {
    for part in parts {
        if index < part.len() {
            return Some(part[index]);
        }
        index -= part.len();
    }
    None
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

    use super::{equals_ignoring_case, is_at_or_below, units};
    use crate::sys::UNICODE_STRING;

    fn w(text: &str) -> Vec<u16> {
        text.encode_utf16().collect()
    }

    /// The host's stand-in for RtlUpcaseUnicodeChar: simple (one-to-one) Unicode upper case.
    fn other(unit: u16) -> u16 {
        char::from_u32(u32::from(unit)).map_or(unit, |c| {
            let mut up = c.to_uppercase();
            match (up.next(), up.next()) {
                (Some(u), None) => u16::try_from(u32::from(u)).unwrap_or(unit),
                _ => unit,
            }
        })
    }

    const DEMO: &str = "\\REGISTRY\\MACHINE\\SOFTWARE\\CMFILTERSAMPLE";

    fn below(path: &str) -> bool {
        is_at_or_below(&[&w(path)], &w(DEMO), other)
    }

    #[test]
    fn the_key_itself_and_its_subkeys_match_in_any_case() {
        assert!(below("\\REGISTRY\\MACHINE\\SOFTWARE\\CmFilterSample"));
        assert!(below("\\registry\\machine\\software\\cmfiltersample"));
        assert!(below(
            "\\Registry\\Machine\\Software\\CmFilterSample\\Sub\\Deeper"
        ));
    }

    #[test]
    fn siblings_prefixes_and_strangers_do_not() {
        assert!(
            !below("\\REGISTRY\\MACHINE\\SOFTWARE\\CmFilterSampleX"),
            "a longer sibling name"
        );
        assert!(
            !below("\\REGISTRY\\MACHINE\\SOFTWARE\\CmFilterSampl"),
            "a shorter name"
        );
        assert!(!below("\\REGISTRY\\MACHINE\\SOFTWARE"), "the parent");
        assert!(!below(""), "empty");
        assert!(!below(
            "\\REGISTRY\\MACHINE\\SYSTEM\\CurrentControlSet\\Services\\Whatever\\Long"
        ));
    }

    #[test]
    fn a_name_split_across_parts_is_one_path() {
        let (root, sep, rel) = (
            w("\\REGISTRY\\MACHINE\\SOFTWARE"),
            w("\\"),
            w("cmFILTERsample\\x"),
        );
        assert!(is_at_or_below(&[&root, &sep, &rel], &w(DEMO), other));
        let rel = w("Other");
        assert!(!is_at_or_below(&[&root, &sep, &rel], &w(DEMO), other));
    }

    #[test]
    fn non_ascii_and_nul_never_match_by_accident() {
        // U+212A KELVIN SIGN uppercases to itself, not to 'K'.
        assert!(!below("\\REGISTRY\\MACHINE\\SOFTWARE\\CmFilterSample\u{0}"));
        assert!(!below(
            "\\REGISTRY\\MACHINE\\SOFTWARE\\CmFilterSamp\u{212A}e"
        ));
        assert!(!below(
            "\\REGISTRY\\MACHINE\\SOFTWARE\\CmFilterSample\u{0}\\x"
        ));
    }

    #[test]
    fn value_names_compare_without_case() {
        assert!(equals_ignoring_case(&w("blocked"), &w("BLOCKED"), other));
        assert!(equals_ignoring_case(&w("BlOcKeD"), &w("BLOCKED"), other));
        assert!(!equals_ignoring_case(&w("Blocked2"), &w("BLOCKED"), other));
        assert!(!equals_ignoring_case(&w(""), &w("BLOCKED"), other));
    }

    #[test]
    fn counted_strings_read_length_not_nul() {
        let mut buffer = w("AB\u{0}CD");
        let s = UNICODE_STRING {
            Length: 10,
            MaximumLength: 10,
            Buffer: buffer.as_mut_ptr(),
        };
        // SAFETY: the string describes `buffer`.
        let read = unsafe { units(&raw const s) };
        assert_eq!(read.len(), 5, "embedded NUL is part of the name");
        let odd = UNICODE_STRING {
            Length: 3,
            MaximumLength: 10,
            Buffer: buffer.as_mut_ptr(),
        };
        // SAFETY: as above.
        let read = unsafe { units(&raw const odd) };
        assert_eq!(read, &w("A")[..], "odd byte dropped");
        let null = UNICODE_STRING {
            Length: 8,
            MaximumLength: 8,
            Buffer: core::ptr::null_mut(),
        };
        // SAFETY: a NULL buffer is handled.
        assert!(unsafe { units(&raw const null) }.is_empty());
        // SAFETY: a NULL string is handled.
        assert!(unsafe { units(core::ptr::null()) }.is_empty());
    }

    #[test]
    fn empty_string_is_zero_length() {
        let us = crate::unicode!("").as_unicode_string();
        assert_eq!(us.Length, 0);
    }
}
