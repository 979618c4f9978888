//! PowerShell as the one language every step speaks on the VM, whatever the remote shell is.
//!
//! Windows' OpenSSH server runs a command through its default shell, cmd.exe unless
//! `HKLM\SOFTWARE\OpenSSH\DefaultShell` names another (PowerShell, often). Each step is therefore
//! sent as `powershell -NoProfile -NonInteractive -EncodedCommand <base64 of the UTF-16LE script>`:
//! base64 has no character either shell (or a POSIX shell) interprets, so the script arrives byte
//! for byte. The price is size: a script of n UTF-16 characters becomes 8n/3 characters, and cmd.exe
//! accepts command lines of at most [`CMD_LIMIT`] characters, which every plan step is tested
//! against.
//!
//! Every script starts with [`prologue`]: errors stop the script, no progress records (PowerShell
//! writes them as CLIXML on stderr when stderr is not a console), UTF-8 output, and the helpers the
//! steps use to write sections the host parses (`parse::Sections`).

use base64ct::{Base64, Encoding};

/// The longest command line cmd.exe runs (8191 characters, documented for cmd.exe). A step's
/// command line must fit, since cmd.exe is the default shell of Windows' OpenSSH server.
pub const CMD_LIMIT: usize = 8191;

/// The longest command line CreateProcess accepts (32767 characters): the Hyper-V host wrapper.
#[cfg(test)]
pub const CREATE_PROCESS_LIMIT: usize = 32767;

/// What the guest runs for `script`, as words: `powershell -NoProfile -NonInteractive
/// -EncodedCommand <base64>`.
pub fn argv(script: &str) -> [String; 5] {
    [
        "powershell".to_owned(),
        "-NoProfile".to_owned(),
        "-NonInteractive".to_owned(),
        "-EncodedCommand".to_owned(),
        encode(script),
    ]
}

/// [`argv`] as one command line (the words need no quoting).
pub fn command_line(script: &str) -> String {
    argv(script).join(" ")
}

/// PowerShell's `-EncodedCommand` form of `script`: base64 of its UTF-16LE code units.
///
/// Encoded here by table rather than with base64ct: its generic, constant-time encoder is compiled
/// into xtask unoptimized (the dev profile), where the deploy stage of `cargo xtask test` (thousands
/// of plan scripts, each Hyper-V one encoded twice) spent 5 s of CPU in it. Nothing here is
/// secret. `decode` (base64ct) reads it back, and a test holds the two to each other.
pub fn encode(script: &str) -> String {
    if script.is_ascii() {
        return encode_ascii(script.as_bytes());
    }
    let mut bytes = Vec::with_capacity(script.len() * 2);
    for unit in script.encode_utf16() {
        let [lo, hi] = unit.to_le_bytes();
        bytes.push(lo);
        bytes.push(hi);
    }
    // Written as bytes and checked once at the end (every byte is from ALPHABET or `=`): at
    // opt-level 0, `String::push` per character was most of this function's time.
    let sextet = |n: u32, shift: u32| ALPHABET[((n >> shift) & 63) as usize];
    let mut out = Vec::with_capacity(bytes.len().div_ceil(3) * 4);
    let whole = bytes.len() - bytes.len() % 3;
    let mut i = 0;
    while i < whole {
        let n = u32::from(bytes[i]) << 16 | u32::from(bytes[i + 1]) << 8 | u32::from(bytes[i + 2]);
        out.extend_from_slice(&[sextet(n, 18), sextet(n, 12), sextet(n, 6), sextet(n, 0)]);
        i += 3;
    }
    match bytes.len() - whole {
        1 => {
            let n = u32::from(bytes[whole]) << 16;
            out.extend_from_slice(&[sextet(n, 18), sextet(n, 12), b'=', b'=']);
        }
        2 => {
            let n = u32::from(bytes[whole]) << 16 | u32::from(bytes[whole + 1]) << 8;
            out.extend_from_slice(&[sextet(n, 18), sextet(n, 12), sextet(n, 6), b'=']);
        }
        _ => {}
    }
    String::from_utf8(out).expect("base64 is ASCII")
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// For an ASCII character `c`, the base64 digits it decides at each of the three places it can
/// take in a group of three UTF-16LE code units (`c 0 | d 0 | e 0`, six bytes, eight digits:
/// `FIRST[c]`, `SECOND[d]`, `A`, `THIRD[e]`, `A`; the zero bytes give the `A`s).
const FIRST: [[u8; 2]; 128] = ascii_digits(0);
const SECOND: [[u8; 2]; 128] = ascii_digits(1);
const THIRD: [[u8; 2]; 128] = ascii_digits(2);

/// The table of the `place`-th character of a group (0, 1 or 2).
const fn ascii_digits(place: u8) -> [[u8; 2]; 128] {
    let mut table = [[0; 2]; 128];
    let mut c = 0;
    while c < 128 {
        let [high, low] = match place {
            0 => [c >> 2, (c & 3) << 4],
            1 => [c >> 6, c & 63],
            _ => [c >> 4, (c & 15) << 2],
        };
        table[c] = [ALPHABET[high], ALPHABET[low]];
        c += 1;
    }
    table
}

/// [`encode`] of ASCII text: a UTF-16LE unit is the character and a zero byte, so three
/// characters are eight digits read from tables (`FIRST`, `SECOND`, `THIRD`), with no UTF-16
/// buffer. xtask is unoptimized, where encoding was most of the cost of making the deploy plans:
/// the deploy stage's own CPU went from 3.8 to 1.6 s.
fn encode_ascii(text: &[u8]) -> String {
    let mut out = Vec::with_capacity((text.len() * 2).div_ceil(3) * 4);
    let whole = text.len() - text.len() % 3;
    let mut i = 0;
    while i < whole {
        let first = FIRST[usize::from(text[i])];
        let second = SECOND[usize::from(text[i + 1])];
        let third = THIRD[usize::from(text[i + 2])];
        out.extend_from_slice(&[
            first[0], first[1], second[0], second[1], b'A', third[0], third[1], b'A',
        ]);
        i += 3;
    }
    match text.len() - whole {
        // `c 0`: two bytes, three digits and a pad.
        1 => {
            let first = FIRST[usize::from(text[whole])];
            out.extend_from_slice(&[first[0], first[1], b'A', b'=']);
        }
        // `c 0 d 0`: three bytes (four digits), then one zero byte (two digits, two pads).
        2 => {
            let first = FIRST[usize::from(text[whole])];
            let second = SECOND[usize::from(text[whole + 1])];
            out.extend_from_slice(&[
                first[0], first[1], second[0], second[1], b'A', b'A', b'=', b'=',
            ]);
        }
        _ => {}
    }
    String::from_utf8(out).expect("base64 is ASCII")
}

/// The script an `-EncodedCommand` argument carries (tests, and the stand-in guest of the
/// loopback test, the syntax check). `None` if it is not base64 of UTF-16LE.
pub fn decode(encoded: &str) -> Option<String> {
    let bytes = Base64::decode_vec(encoded).ok()?;
    if bytes.len() % 2 != 0 {
        return None;
    }
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16(&units).ok()
}

/// `s` as a PowerShell single-quoted string: nothing inside is expanded. PowerShell also takes
/// the typographic single quotes U+2018..U+201B as quote characters, so each of them is doubled
/// too, like `'`.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}') {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// `@('a', 'b c')`: a PowerShell array of quoted strings.
pub fn array<S: AsRef<str>>(items: &[S]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| quote(s.as_ref())).collect();
    format!("@({})", quoted.join(", "))
}

/// The start of every script (`scripts/prologue.ps1` without its comments): `Say`, `Section`,
/// `Note`, `Native`, `Run`.
pub fn prologue() -> &'static str {
    static PROLOGUE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PROLOGUE.get_or_init(|| super::script::compact(super::script::PROLOGUE_FILE))
}

/// A complete script: a comment naming the step, [`prologue`], `body`.
pub fn script(title: &str, body: &str) -> String {
    let title: String = title.chars().filter(|c| !c.is_control()).collect();
    format!("# xtask deploy: {title}\n{}{body}", prologue())
}

/// What a PowerShell error stream says, in plain text. When its stderr is not a console,
/// powershell.exe may write error records as CLIXML (`#< CLIXML` and `<Objs>` with `<S S="Error">`
/// strings escaped as `_xHHHH_`); that is decoded, anything else is returned as it is.
pub fn plain_stderr(stderr: &str) -> String {
    let Some(rest) = stderr.trim_start().strip_prefix("#< CLIXML") else {
        return stderr.to_owned();
    };
    let Ok(doc) = roxmltree::Document::parse(rest.trim()) else {
        return stderr.to_owned();
    };
    let mut out = String::new();
    for n in doc.descendants() {
        if n.has_tag_name("S") && n.attribute("S") == Some("Error") {
            out.push_str(&unescape_clixml(n.text().unwrap_or_default()));
        }
    }
    out
}

/// CLIXML escapes characters as `_xHHHH_` (UTF-16 code units).
fn unescape_clixml(s: &str) -> String {
    let mut units: Vec<u16> = Vec::with_capacity(s.len());
    let mut rest = s;
    while !rest.is_empty() {
        if let Some(hex) = rest
            .strip_prefix("_x")
            .and_then(|r| r.get(..5))
            .filter(|h| h.ends_with('_') && h[..4].chars().all(|c| c.is_ascii_hexdigit()))
        {
            units.push(u16::from_str_radix(&hex[..4], 16).unwrap_or(0xFFFD));
            rest = &rest[7..];
            continue;
        }
        let c = rest.chars().next().unwrap_or_default();
        let mut buf = [0u16; 2];
        units.extend_from_slice(c.encode_utf16(&mut buf));
        rest = &rest[c.len_utf8()..];
    }
    String::from_utf16_lossy(&units)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table encoder writes what base64ct writes, at every padding length and for text
    /// outside the BMP (surrogate pairs).
    #[test]
    fn encode_matches_base64ct() {
        let every_ascii: String = (0..128u8).map(char::from).collect();
        for script in [
            "",
            "a",
            "ab",
            "abc",
            "abcd",
            "abcde",
            "dir 'c:\\x' ; é€ 😀 $env:TEMP",
            &"xyz".repeat(1000),
            &every_ascii,
            &every_ascii[1..],
            &every_ascii[2..],
        ] {
            let units: Vec<u8> = script.encode_utf16().flat_map(u16::to_le_bytes).collect();
            assert_eq!(encode(script), Base64::encode_string(&units), "{script:?}");
            assert_eq!(decode(&encode(script)).as_deref(), Some(script));
        }
    }

    #[test]
    fn encoded_command_is_base64_of_utf16le() {
        // The documented example of powershell.exe -EncodedCommand (about_PowerShell_exe):
        // [Convert]::ToBase64String([Text.Encoding]::Unicode.GetBytes('dir "c:\program files" ')).
        assert_eq!(
            encode(r#"dir "c:\program files" "#),
            "ZABpAHIAIAAiAGMAOgBcAHAAcgBvAGcAcgBhAG0AIABmAGkAbABlAHMAIgAgAA=="
        );
        // Beyond ASCII and beyond the BMP: UTF-16 code units, little-endian.
        assert_eq!(encode("é"), "6QA=");
        assert_eq!(encode("😀"), "PdgA3g==");
        let s = "Say 'Test Signing — not for production' # ünïcödé 😀";
        assert_eq!(decode(&encode(s)).as_deref(), Some(s));
        assert_eq!(decode("not base64!"), None);
        assert_eq!(decode("QQ=="), None); // one byte: not UTF-16
    }

    #[test]
    fn command_line_has_only_shell_inert_characters() {
        let line = command_line("Say 'a & b | c > d' ; exit 3 # %PATH% $env:X `n \"q\"");
        assert!(line.starts_with("powershell -NoProfile -NonInteractive -EncodedCommand "));
        let b64 = line.rsplit(' ').next().unwrap();
        assert!(
            b64.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c))
        );
    }

    #[test]
    fn quoting_doubles_every_single_quote_kind() {
        assert_eq!(quote(r"C:\Test Drivers\x.sys"), r"'C:\Test Drivers\x.sys'");
        assert_eq!(quote("it's"), "'it''s'");
        assert_eq!(quote("a\u{2019}b"), "'a\u{2019}\u{2019}b'");
        assert_eq!(quote("$env:PATH `n"), "'$env:PATH `n'");
        assert_eq!(array(&["a", "b c"]), "@('a', 'b c')");
        assert_eq!(array::<&str>(&[]), "@()");
    }

    #[test]
    fn scripts_start_with_the_prologue_and_name_the_step() {
        let s = script("start\nCmFilter", "Say 1\n");
        assert!(s.starts_with("# xtask deploy: startCmFilter\n$ErrorActionPreference = 'Stop'"));
        assert!(s.ends_with("Say 1\n"));
    }

    #[test]
    fn clixml_error_streams_are_decoded() {
        // Recorded form of powershell.exe's stderr when it is redirected (the form Ansible and
        // others strip); the text is ours.
        let clixml = "#< CLIXML\r\n<Objs Version=\"1.1.0.1\" xmlns=\"http://schemas.microsoft.com/powershell/2004/04\"><S S=\"Error\">sc.exe : Access is denied._x000D__x000A_</S><S S=\"Error\">At line:1 char:1_x000D__x000A_</S></Objs>";
        assert_eq!(
            plain_stderr(clixml),
            "sc.exe : Access is denied.\r\nAt line:1 char:1\r\n"
        );
        assert_eq!(plain_stderr("plain text\n"), "plain text\n");
        assert_eq!(plain_stderr("#< CLIXML\n<broken"), "#< CLIXML\n<broken");
    }
}
