//! Logging through `DbgPrintEx`, with no heap.
//!
//! `log!(Level::Info, "registered {} callbacks", n)` formats into a fixed buffer on the stack
//! (truncating with `...` if the line is too long), prefixes the driver's crate name and the level,
//! and hands the finished, NUL-terminated line to `DbgPrintEx` as the argument of a constant `"%s"`
//! format, so nothing in a message can be taken for a conversion.
//!
//! IRQL: any. `core::fmt` touches only the stack and the (non-paged) image, and `DbgPrintEx` with a
//! plain `%s` of ASCII text is callable at any IRQL. Every line (of `klog!` too) is also written as
//! an ETW event when a trace session listens ([`etw`]): `cargo xtask deploy` collects those into its
//! report. To watch the debugger output live, enable the component (`ed nt!Kd_IHVDRIVER_Mask 0xf`
//! in WinDbg, or the `Debug Print Filter` registry key).

use core::fmt::{self, Write};

pub mod etw;
mod kfmt;
pub mod tlg;

/// Longest line, in bytes, including the prefix and the terminating NUL.
pub const LINE_CAPACITY: usize = 256;

/// Severity, mapped to the `DPFLTR_*_LEVEL` values `DbgPrintEx` filters on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Level {
    /// `DPFLTR_ERROR_LEVEL` (0): always shown.
    Error = 0,
    /// `DPFLTR_WARNING_LEVEL` (1).
    Warning = 1,
    /// `DPFLTR_TRACE_LEVEL` (2).
    Trace = 2,
    /// `DPFLTR_INFO_LEVEL` (3).
    Info = 3,
}

impl Level {
    const fn label(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warning => "WARN",
            Level::Trace => "TRACE",
            Level::Info => "INFO",
        }
    }
}

/// A fixed-size line buffer that truncates instead of failing.
pub struct LineBuffer {
    bytes: [u8; LINE_CAPACITY],
    len: usize,
    truncated: bool,
}

impl LineBuffer {
    const MARK: &'static [u8] = b"...";

    /// An empty line.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            bytes: [0; LINE_CAPACITY],
            len: 0,
            truncated: false,
        }
    }

    /// Formats `[driver] LEVEL: message` and NUL-terminates it.
    pub fn format(&mut self, driver: &str, level: Level, args: fmt::Arguments<'_>) -> &[u8] {
        self.clear();
        // Writing to a LineBuffer never fails; errors from a Display impl just end the message.
        let _ = write!(self, "[{driver}] {}: ", level.label());
        let _ = self.write_fmt(args);
        let _ = self.write_str("\n");
        self.terminate()
    }

    fn terminate(&mut self) -> &[u8] {
        // Room for the NUL is always kept back by push.
        if let Some(b) = self.bytes.get_mut(self.len) {
            *b = 0;
        }
        self.bytes.get(..=self.len).unwrap_or_default()
    }

    /// The line without its final newline (an ETW event's message), NUL-terminated.
    fn without_newline(&mut self) -> &[u8] {
        if self.len > 0 && self.bytes.get(self.len - 1) == Some(&b'\n') {
            self.len -= 1;
        }
        self.terminate()
    }

    /// Whether the last line did not fit.
    #[must_use]
    pub fn truncated(&self) -> bool {
        self.truncated
    }
}

impl Default for LineBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl LineBuffer {
    /// Empties the line.
    fn clear(&mut self) {
        self.len = 0;
        self.truncated = false;
    }

    /// Appends bytes, truncating with `...\n` when they do not fit (a NUL becomes `?`).
    fn push(&mut self, s: &[u8]) {
        if self.truncated {
            return;
        }
        // Keep one byte for the NUL; replace any NUL in the text so the line is not cut short.
        // No indexing: nothing here can panic (a bounds check would pull the panic machinery,
        // and with it `core::fmt`, into every image).
        let room = (LINE_CAPACITY - 1).saturating_sub(self.len);
        let fits = s.len() <= room;
        // Truncating: keep the end of the buffer for "...\n"; text already past that point is cut
        // back (a line ending in short pieces would otherwise write the mark beyond the buffer).
        let keep = LINE_CAPACITY - 1 - Self::MARK.len() - 1;
        if !fits {
            self.len = self.len.min(keep);
        }
        let take = if fits {
            s.len()
        } else {
            keep.saturating_sub(self.len).min(s.len())
        };
        for (dst, &b) in self
            .bytes
            .iter_mut()
            .skip(self.len)
            .zip(s.iter().take(take))
        {
            *dst = if b == 0 { b'?' } else { b };
        }
        self.len += take;
        if !fits {
            for (dst, &b) in self.bytes.iter_mut().skip(self.len).zip(b"...\n") {
                *dst = b;
            }
            self.len += Self::MARK.len() + 1;
            self.truncated = true;
        }
    }
}

impl Write for LineBuffer {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

/// Formats and prints one line. Use the [`log!`](crate::log!) macro rather than calling this.
#[cfg(target_os = "windows")]
pub fn write(driver: &str, level: Level, args: fmt::Arguments<'_>) {
    let mut line = LineBuffer::new();
    let text = line.format(driver, level, args);
    // SAFETY: both the format and the argument are NUL-terminated byte strings that live across the
    // call; "%s" consumes exactly the one variadic argument we pass.
    unsafe {
        crate::sys::DbgPrintEx(
            crate::sys::DPFLTR_IHVDRIVER_ID,
            level as u32,
            c"%s".as_ptr(),
            text.as_ptr(),
        );
    }
    if etw::enabled(level) {
        etw::write_line(level, text);
    }
}

/// Host builds have no kernel debugger: logging is a no-op there.
#[cfg(not(target_os = "windows"))]
pub fn write(_driver: &str, _level: Level, _args: fmt::Arguments<'_>) {}

/// Logs one line at a [`Level`], prefixed with the calling crate's name.
///
/// `log!(Level::Info, "callback {} fired", n)`
#[macro_export]
macro_rules! log {
    ($level:expr, $($arg:tt)+) => {
        $crate::log::write(env!("CARGO_PKG_NAME"), $level, format_args!($($arg)+))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(args: fmt::Arguments<'_>) -> (String, bool) {
        let mut b = LineBuffer::new();
        let bytes = b.format("ex-callback", Level::Info, args).to_vec();
        assert_eq!(*bytes.last().unwrap(), 0, "always NUL-terminated");
        assert!(!bytes[..bytes.len() - 1].contains(&0), "exactly one NUL");
        (
            String::from_utf8(bytes[..bytes.len() - 1].to_vec()).unwrap(),
            b.truncated(),
        )
    }

    #[test]
    fn prefix_level_and_newline() {
        let (text, truncated) = line(format_args!("registered {} callbacks", 3));
        assert_eq!(text, "[ex-callback] INFO: registered 3 callbacks\n");
        assert!(!truncated);
    }

    #[test]
    fn percent_signs_are_plain_text() {
        let (text, _) = line(format_args!("100% %s %wZ"));
        assert!(text.ends_with("100% %s %wZ\n"));
    }

    #[test]
    fn long_lines_are_truncated_not_overflowed() {
        let long = "x".repeat(1000);
        let (text, truncated) = line(format_args!("{long}"));
        assert!(truncated);
        assert_eq!(text.len(), LINE_CAPACITY - 1);
        assert!(text.ends_with("...\n"));
    }

    #[test]
    fn short_pieces_past_the_mark_are_truncated_not_overflowed() {
        let almost = "x".repeat(LINE_CAPACITY - 4);
        let (text, truncated) = line(format_args!("{almost}{}{}{}", "ab", "cd", "ef"));
        assert!(truncated);
        assert_eq!(text.len(), LINE_CAPACITY - 1);
        assert!(text.ends_with("...\n"));
    }

    #[test]
    fn embedded_nul_does_not_cut_the_line() {
        let (text, _) = line(format_args!("a{}b", '\0'));
        assert!(text.ends_with("a?b\n"));
    }

    #[test]
    fn exact_fit_is_not_truncated() {
        let prefix = "[ex-callback] INFO: ".len();
        let body = "y".repeat(LINE_CAPACITY - 1 - prefix - 1);
        let (text, truncated) = line(format_args!("{body}"));
        assert!(!truncated);
        assert_eq!(text.len(), LINE_CAPACITY - 1);
    }
}

// ---- klog!: formatting done by the kernel, for hot paths -------------------------------------

/// Argument kind of a [`klog!`](crate::klog!) conversion: one pointer-sized integer
/// (`%Iu %Id %Ix %IX %p`).
pub const WORD: u8 = 0;
/// Argument kind of a [`klog!`](crate::klog!) conversion: a counted string (`%wZ`), passed as a
/// `&UNICODE_STRING`.
pub const COUNTED_STRING: u8 = 1;

/// An argument of [`klog!`](crate::klog!) for a conversion of kind `KIND`. Every argument is
/// passed to `DbgPrintEx` as one pointer-sized word; the kind makes sure the word is what the
/// conversion at that position will read.
pub trait KernelArg<const KIND: u8> {
    /// The argument as the word `DbgPrintEx` will read.
    fn word(self) -> usize;
}

macro_rules! kernel_arg_unsigned {
    ($($t:ty),*) => {$(
        impl KernelArg<WORD> for $t {
            #[allow(clippy::cast_possible_truncation, clippy::cast_lossless)]
            fn word(self) -> usize { self as usize }
        }
    )*};
}
macro_rules! kernel_arg_signed {
    ($($t:ty),*) => {$(
        impl KernelArg<WORD> for $t {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_lossless)]
            fn word(self) -> usize { self as isize as usize }
        }
    )*};
}
kernel_arg_unsigned!(u8, u16, u32, u64, usize);
kernel_arg_signed!(i8, i16, i32, i64, isize);
impl KernelArg<WORD> for bool {
    fn word(self) -> usize {
        usize::from(self)
    }
}
impl<T> KernelArg<WORD> for *const T {
    fn word(self) -> usize {
        self as usize
    }
}
impl<T> KernelArg<WORD> for *mut T {
    fn word(self) -> usize {
        self as usize
    }
}
impl KernelArg<COUNTED_STRING> for &crate::sys::UNICODE_STRING {
    fn word(self) -> usize {
        core::ptr::from_ref(self) as usize
    }
}

/// The word for an argument whose conversion has kind `KIND` (used by [`klog!`](crate::klog!)).
#[doc(hidden)]
pub fn word<const KIND: u8, T: KernelArg<KIND>>(value: T) -> usize {
    value.word()
}

/// The kind of the `index`-th conversion of a [`klog!`](crate::klog!) format (checked by
/// [`check_kernel_format`] before this is used).
#[must_use]
pub const fn kind_of(format: &str, index: usize) -> u8 {
    let b = format.as_bytes();
    let mut i = 0;
    let mut n = 0;
    while i < b.len() {
        if b[i] == b'%' {
            i += 1;
            if b[i] == b'%' {
                i += 1;
                continue;
            }
            while b[i].is_ascii_digit() {
                i += 1;
            }
            let kind = if b[i] == b'w' { COUNTED_STRING } else { WORD };
            if n == index {
                return kind;
            }
            n += 1;
        }
        i += 1;
    }
    WORD
}

/// Checks a [`klog!`](crate::klog!) format at compile time: only `%%`, the pointer-sized integer
/// conversions `%Iu`, `%Id`, `%Ix`, `%IX`, `%p` (optionally with `0`/width flags, e.g. `%08Ix`) and
/// the counted-string conversion `%wZ`; exactly `args` of them; a single NUL at the end. With the
/// per-position [`KernelArg`] kinds this makes the variadic call type-checked.
///
/// # Panics
/// At compile time, on any other conversion or a count mismatch.
pub const fn check_kernel_format(format: &str, args: usize) {
    check_format(format, args, false);
}

/// [`check_kernel_format`] for [`klog_passive!`](crate::klog_passive!): `%wZ` allowed too.
///
/// # Panics
/// At compile time, on any other conversion or a count mismatch.
pub const fn check_passive_format(format: &str, args: usize) {
    check_format(format, args, true);
}

const fn check_format(format: &str, args: usize, unicode: bool) {
    let b = format.as_bytes();
    assert!(
        !b.is_empty() && b[b.len() - 1] == 0,
        "format must end with one NUL"
    );
    let mut i = 0;
    let mut conversions = 0;
    while i < b.len() - 1 {
        assert!(b[i] != 0, "embedded NUL in format");
        if b[i] == b'%' {
            i += 1;
            if b[i] == b'%' {
                i += 1;
                continue;
            }
            while b[i].is_ascii_digit() {
                i += 1;
            }
            if b[i] == b'p' {
                i += 1;
            } else if b[i] == b'w' {
                assert!(
                    unicode,
                    "klog! allows no Unicode conversion (%wZ is PASSIVE_LEVEL only): use klog_passive!"
                );
                assert!(
                    b[i + 1] == b'Z',
                    "klog! allows only %Iu %Id %Ix %IX %p (and klog_passive! %wZ)"
                );
                i += 2;
            } else {
                assert!(
                    b[i] == b'I',
                    "klog! allows only %Iu %Id %Ix %IX %p (and klog_passive! %wZ)"
                );
                i += 1;
                assert!(
                    b[i] == b'u' || b[i] == b'd' || b[i] == b'x' || b[i] == b'X',
                    "klog! allows only %Iu %Id %Ix %IX %p (and klog_passive! %wZ)"
                );
                i += 1;
            }
            conversions += 1;
        } else {
            i += 1;
        }
    }
    assert!(
        conversions == args,
        "klog!: number of conversions and arguments differ"
    );
}

/// Logs one line with the kernel doing the formatting: `klog!(Info, "event %Iu of %Iu", n, total)`.
///
/// For hot paths such as callbacks: the driver only passes the arguments, and `DbgPrintEx` discards
/// a filtered-out message before formatting anything. The format is checked at compile time
/// ([`check_kernel_format`]) and every argument must match the kind of its conversion
/// ([`KernelArg`]), which is what makes the variadic call sound.
///
/// IRQL: any. No Unicode conversion is accepted (a compile-time error): DbgPrintEx's remarks allow
/// `%C %S %lc %ls %wc %ws %wZ` only at PASSIVE_LEVEL, so a counted string is logged with
/// [`klog_passive!`](crate::klog_passive!), which asks for proof of PASSIVE_LEVEL.
#[macro_export]
macro_rules! klog {
    ($level:ident, $format:literal $(, $arg:expr)* $(,)?) => {{
        const FORMAT: &str = concat!(
            "[", env!("CARGO_PKG_NAME"), "] ", stringify!($level), ": ", $format, "\n\0"
        );
        const _: () = $crate::log::check_kernel_format(FORMAT, 0 $(+ { let _ = stringify!($arg); 1 })*);
        $crate::__klog_call!(
            FORMAT, $level, 0usize, [],
            [w0 w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 w11 w12 w13 w14 w15],
            $($arg,)*
        )
    }};
}

/// Proof that the code holding it runs at PASSIVE_LEVEL, which [`klog_passive!`](crate::klog_passive!)
/// asks for. Made only by [`Passive::new_unchecked`], whose caller states why (DriverEntry, a
/// RegistryCallback, a PnP notification callback: each documented to run at PASSIVE_LEVEL). It
/// cannot be stored in a static or sent to code running at another IRQL by accident: it is neither
/// `Copy` nor `Clone`, and only borrowed by the macro.
pub struct Passive(());

impl Passive {
    /// The proof.
    ///
    /// # Safety
    /// The caller runs at PASSIVE_LEVEL, and the value is used only while that stays true (do not
    /// keep it across a spin lock acquisition, or in a DISPATCH_LEVEL callback).
    #[must_use]
    pub const unsafe fn new_unchecked() -> Self {
        Self(())
    }
}

/// [`klog!`](crate::klog!) that also accepts `%wZ` (a `&UNICODE_STRING`), for code that proves it
/// runs at PASSIVE_LEVEL: `klog_passive!(&passive, Info, "key %wZ", &name)` with `passive` a
/// [`Passive`]. DbgPrintEx's remarks: Unicode conversions only at IRQL = PASSIVE_LEVEL (the
/// emulated kernel checks it).
#[macro_export]
macro_rules! klog_passive {
    ($passive:expr, $level:ident, $format:literal $(, $arg:expr)* $(,)?) => {{
        const FORMAT: &str = concat!(
            "[", env!("CARGO_PKG_NAME"), "] ", stringify!($level), ": ", $format, "\n\0"
        );
        const _: () = $crate::log::check_passive_format(FORMAT, 0 $(+ { let _ = stringify!($arg); 1 })*);
        let _: &$crate::log::Passive = $passive;
        $crate::__klog_call!(
            FORMAT, $level, 0usize, [],
            [w0 w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 w11 w12 w13 w14 w15],
            $($arg,)*
        )
    }};
}

/// The expansion of [`klog!`](crate::klog!): pairs each argument with the kind of its conversion.
#[doc(hidden)]
#[macro_export]
macro_rules! __klog_call {
    ($format:ident, $level:ident, $index:expr, [$($done:ident = $value:expr,)*],
     [$next:ident $($names:ident)*], $head:expr, $($tail:expr,)*) => {
        $crate::__klog_call!(
            $format, $level, $index + 1usize,
            [$($done = $value,)*
             $next = $crate::log::word::<{ $crate::log::kind_of($format, $index) }, _>($head),],
            [$($names)*],
            $($tail,)*
        )
    };
    ($format:ident, $level:ident, $index:expr, [$($done:ident = $value:expr,)*],
     [$($names:ident)*],) => {{
        // Each argument evaluated once, for DbgPrintEx and the ETW event alike (at most 16).
        $(let $done: usize = $value;)*
        // A session listening: one load, a compare and a branch when none is. Both calls are in
        // the cold function then, so the arguments need not survive DbgPrintEx here.
        if $crate::log::etw::enabled($crate::log::Level::$level) {
            // SAFETY: the format is NUL-terminated and, as checked at compile time, has exactly
            // one conversion per argument; each argument is one word of the kind its conversion
            // reads.
            unsafe {
                $crate::log::etw::print_and_write($crate::log::Level::$level, $format, &[$($done),*])
            };
        } else {
            #[cfg(target_os = "windows")]
            // SAFETY: as above.
            unsafe {
                $crate::sys::DbgPrintEx(
                    $crate::sys::DPFLTR_IHVDRIVER_ID,
                    $crate::log::Level::$level as u32,
                    $format.as_ptr().cast()
                    $(, $done)*
                );
            }
        }
    }};
}

#[cfg(test)]
mod kernel_format_tests {
    use super::check_kernel_format;

    #[test]
    fn accepted_formats() {
        check_kernel_format("plain\0", 0);
        check_kernel_format("100%% done\0", 0);
        check_kernel_format("%Iu %Id %Ix %IX %p %08Ix\0", 6);
    }

    #[test]
    #[should_panic(expected = "only %Iu")]
    fn string_conversions_are_refused() {
        check_kernel_format("%s\0", 1);
    }

    #[test]
    #[should_panic(expected = "klog")]
    fn nul_terminated_unicode_conversions_are_refused() {
        check_kernel_format("%ws\0", 1);
    }

    #[test]
    #[should_panic(expected = "only %Iu")]
    fn nul_terminated_unicode_conversions_are_refused_by_klog_passive_too() {
        super::check_passive_format("%ws\0", 1);
    }

    #[test]
    #[should_panic(expected = "differ")]
    fn count_mismatch_is_refused() {
        check_kernel_format("%Iu %Iu\0", 1);
    }

    #[test]
    #[should_panic(expected = "NUL")]
    fn missing_terminator_is_refused() {
        check_kernel_format("%Iu", 1);
    }

    #[test]
    #[should_panic(expected = "klog_passive!")]
    fn counted_strings_are_refused_by_klog() {
        check_kernel_format("key %wZ\0", 1);
    }

    #[test]
    fn counted_strings_are_allowed_and_typed_in_klog_passive() {
        super::check_passive_format("key %wZ value %Iu\0", 2);
        assert_eq!(
            super::kind_of("key %wZ value %Iu\0", 0),
            super::COUNTED_STRING
        );
        assert_eq!(super::kind_of("key %wZ value %Iu\0", 1), super::WORD);
        let name = crate::unicode!("\\Registry").as_unicode_string();
        // SAFETY: a host test: there is no IRQL.
        let passive = unsafe { super::Passive::new_unchecked() };
        crate::klog_passive!(&passive, Info, "key %wZ, %Iu", &name, 3usize);
    }

    #[test]
    fn the_macro_counts_arguments() {
        crate::klog!(Info, "a %Iu b %Ix", 1u32, 2usize);
        crate::klog!(Error, "no arguments");
    }
}
