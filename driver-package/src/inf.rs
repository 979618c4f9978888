//! INF files: a driver's `<name>.inx` template stamped into `<name>.inf` the way stampinf does,
//! and a checker for the form of a primitive (non-PnP) kernel-service driver
//! (`docs/notes/packaging.md` §6; Microsoft's "Creating a primitive driver").
//!
//! **Stamping** (stampinf `-a ARCH -d DATE -v VERSION`): `$ARCH$` becomes `amd64` or `arm64`
//! everywhere (so `[DefaultInstall.NT$ARCH$]` becomes `[DefaultInstall.NTamd64]`), and `DriverVer`
//! in `[Version]` is set to `mm/dd/yyyy,w.x.y.z` (the build date in UTC, which is how Inf2Cat reads
//! it, and the version of the driver's Cargo.toml), appended to `[Version]` if absent. Lines end
//! in CRLF. The encoding is kept (ASCII, or UTF-16LE with its BOM).
//!
//! **Checks** (each names the line), what infverif would reject for this form:
//! - encoding: ANSI or UTF-16LE only (infverif 1003); here ASCII or UTF-16LE with a BOM, since
//!   an 8-bit file would be read in the machine's code page;
//! - syntax: unterminated section names and quotes, lines outside any section;
//! - `[Version]`: `Signature="$WINDOWS NT$"`, Class, a ClassGuid, Provider (a primitive driver's
//!   `[Version]` must be complete), `CatalogFile=<name>.cat`, `PnpLockdown=1`, and a well-formed
//!   `DriverVer` once stamped;
//! - no `[Manufacturer]` (it makes a device INF; a primitive driver has none, 1297);
//! - `[DefaultInstall]` only architecture-decorated, `[DefaultInstall.NT<arch>]` present
//!   (1420/1421/1423), no `[DefaultUninstall]` unless decorated with `LegacyUninstall=1`;
//! - DIRID 13 (the driver store) in `[DestinationDirs]` and in `ServiceBinary`: primitive drivers
//!   install into the driver store, not System32\drivers (12);
//! - the image `<name>.sys` listed in `[SourceDisksFiles]` (on a disk of `[SourceDisksNames]`),
//!   copied by the install section's `CopyFiles`, and the binary of the service its `.Services`
//!   section adds: `ServiceType=1` (kernel driver), `StartType` 0-4, `ErrorControl` 0-3;
//! - every `%token%` defined in `[Strings]`; no `$TOKEN$` left that nothing replaces.

use std::fmt;

use crate::Arch;

/// One problem in an INF, at a line (1-based).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The line it is on (1-based).
    pub line: usize,
    /// What is wrong, and the fix.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

fn problem(line: usize, message: impl Into<String>) -> Problem {
    Problem {
        line,
        message: message.into(),
    }
}

/// How the file was encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// ASCII (a subset of every ANSI code page).
    Ascii,
    /// UTF-16LE with a byte-order mark.
    Utf16Le,
}

/// The INF's text and encoding, or the encoding problem.
pub fn decode(bytes: &[u8]) -> Result<(String, Encoding), Problem> {
    const FIX: &str = "INF files must be ANSI or UTF-16LE (infverif 1003): write it in ASCII, or \
                       save it as UTF-16LE with a byte-order mark";
    if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE]) {
        if rest.len() % 2 != 0 {
            return Err(problem(
                1,
                format!("UTF-16LE with an odd number of bytes: the file is truncated; {FIX}"),
            ));
        }
        let units: Vec<u16> = rest
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        return match String::from_utf16(&units) {
            Ok(text) => Ok((text, Encoding::Utf16Le)),
            Err(_) => Err(problem(
                1,
                format!("invalid UTF-16LE (an unpaired surrogate); {FIX}"),
            )),
        };
    }
    if bytes.starts_with(&[0xFE, 0xFF]) {
        return Err(problem(1, format!("the file is UTF-16 big-endian; {FIX}")));
    }
    if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
        return Err(problem(
            1,
            format!("the file starts with a UTF-8 byte-order mark; {FIX}"),
        ));
    }
    if let Some(at) = bytes.iter().position(|&b| !b.is_ascii() || b == 0) {
        let line = bytes[..at].split(|&b| b == b'\n').count();
        return Err(problem(
            line,
            format!("byte 0x{:02X} is not ASCII (UTF-8 text?); {FIX}", bytes[at]),
        ));
    }
    Ok((String::from_utf8_lossy(bytes).into_owned(), Encoding::Ascii))
}

/// `text` encoded as `encoding` (with the BOM for UTF-16LE).
#[must_use]
pub fn encode(text: &str, encoding: Encoding) -> Vec<u8> {
    match encoding {
        Encoding::Ascii => text.as_bytes().to_vec(),
        Encoding::Utf16Le => {
            let mut out = vec![0xFF, 0xFE];
            for unit in text.encode_utf16() {
                out.extend_from_slice(&unit.to_le_bytes());
            }
            out
        }
    }
}

/// One entry: `key = v1, v2` or a bare `v1, v2` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its line.
    pub line: usize,
    /// The key, if the line has `=`.
    pub key: Option<String>,
    /// The comma-separated fields, trimmed, quotes removed.
    pub fields: Vec<String>,
}

impl Entry {
    /// The first field, or "".
    pub fn value(&self) -> &str {
        self.fields.first().map_or("", String::as_str)
    }

    fn key_is(&self, key: &str) -> bool {
        self.key
            .as_deref()
            .is_some_and(|k| k.eq_ignore_ascii_case(key))
    }
}

/// One `[section]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    /// The name, as written.
    pub name: String,
    /// The line of its header.
    pub line: usize,
    /// Its entries.
    pub entries: Vec<Entry>,
}

impl Section {
    /// The entries with `key` (case-insensitive).
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries.iter().filter(move |e| e.key_is(key))
    }

    /// The first entry with `key`.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key_is(key))
    }
}

/// A parsed INF.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inf {
    /// The sections in file order (a name may repeat; INF merges them).
    pub sections: Vec<Section>,
}

impl Inf {
    /// The first section named `name` (case-insensitive).
    #[must_use]
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(name))
    }

    /// The first entry `key` of section `name`.
    #[must_use]
    pub fn value(&self, section: &str, key: &str) -> Option<&Entry> {
        self.sections
            .iter()
            .filter(|s| s.name.eq_ignore_ascii_case(section))
            .find_map(|s| s.get(key))
    }
}

/// Splits a line at its comment (`;` outside quotes); `Err` if a quote is not closed.
fn strip_comment(line: &str) -> Result<&str, ()> {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ';' if !quoted => return Ok(&line[..i]),
            _ => {}
        }
    }
    if quoted { Err(()) } else { Ok(line) }
}

/// Splits at `sep` outside quotes.
fn split_unquoted(text: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut quoted, mut start) = (false, 0);
    for (i, c) in text.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(&text[start..i]);
            start = i + c.len_utf8();
        }
    }
    parts.push(&text[start..]);
    parts
}

/// A field trimmed, with its quotes removed (`""` inside quotes is one quote).
fn unquote(field: &str) -> String {
    let field = field.trim();
    let mut out = String::new();
    let mut chars = field.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if c == '"' {
            if quoted && chars.peek() == Some(&'"') {
                out.push('"');
                chars.next();
            } else {
                quoted = !quoted;
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses INF text; syntax problems are returned with what could be parsed.
pub fn parse(text: &str) -> (Inf, Vec<Problem>) {
    let mut inf = Inf::default();
    let mut problems = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let Ok(content) = strip_comment(raw) else {
            problems.push(problem(number, "a quote (\") is not closed on this line"));
            continue;
        };
        let content = content.trim();
        // A trailing backslash continues the entry on the next line.
        let (start, mut joined) = pending.take().unwrap_or((number, String::new()));
        if let Some(head) = content.strip_suffix('\\') {
            joined.push_str(head);
            pending = Some((start, joined));
            continue;
        }
        joined.push_str(content);
        let content = joined.trim();
        if content.is_empty() {
            continue;
        }
        if let Some(rest) = content.strip_prefix('[') {
            match rest.find(']') {
                Some(end) if rest[end + 1..].trim().is_empty() => inf.sections.push(Section {
                    name: rest[..end].trim().to_owned(),
                    line: start,
                    entries: Vec::new(),
                }),
                Some(_) => problems.push(problem(start, "text after the section name's `]`")),
                None => problems.push(problem(start, "a section name without its closing `]`")),
            }
            continue;
        }
        let Some(section) = inf.sections.last_mut() else {
            problems.push(problem(
                start,
                format!("`{content}` is outside any section: put it under a [section] header"),
            ));
            continue;
        };
        let halves = split_unquoted(content, '=');
        let (key, values) = if halves.len() > 1 {
            (
                Some(unquote(halves[0])),
                content[halves[0].len() + 1..].to_owned(),
            )
        } else {
            (None, content.to_owned())
        };
        section.entries.push(Entry {
            line: start,
            key,
            fields: split_unquoted(&values, ',')
                .into_iter()
                .map(unquote)
                .collect(),
        });
    }
    if let Some((line, _)) = pending {
        problems.push(problem(line, "the file ends in a line continuation (`\\`)"));
    }
    (inf, problems)
}

/// The architecture decoration stampinf writes: `amd64`, `arm64`.
#[must_use]
pub fn arch_decoration(arch: Arch) -> &'static str {
    match arch {
        Arch::X64 => "amd64",
        Arch::Arm64 => "arm64",
    }
}

/// `mm/dd/yyyy,w.x.y.z` from a date and a Cargo version `a.b.c`.
pub fn driver_ver(year: u16, month: u8, day: u8, cargo_version: &str) -> Result<String, String> {
    let parts: Vec<&str> = cargo_version.split('.').collect();
    let numbers: Option<Vec<u16>> = parts.iter().map(|p| p.parse::<u16>().ok()).collect();
    match numbers {
        Some(n) if (1..=4).contains(&n.len()) => {
            let mut n = n;
            n.resize(4, 0);
            Ok(format!(
                "{month:02}/{day:02}/{year:04},{}.{}.{}.{}",
                n[0], n[1], n[2], n[3]
            ))
        }
        _ => Err(format!(
            "the version `{cargo_version}` cannot be a DriverVer version (w.x.y.z, each 0-65535, \
             no pre-release or build suffix): change `version` in the driver's Cargo.toml"
        )),
    }
}

/// The `.inf` text from the `.inx` text: `$ARCH$` replaced, `DriverVer` set, CRLF line ends.
#[must_use]
pub fn stamp(inx: &str, arch: Arch, driver_ver: &str) -> String {
    let inx = replace_arch(inx, arch);
    let mut out: Vec<String> = Vec::new();
    let mut in_version = false;
    let mut stamped = false;
    let mut last_version_entry: Option<usize> = None;
    let stamp_line = format!("DriverVer   = {driver_ver}");
    for raw in inx.lines() {
        let content = strip_comment(raw).unwrap_or(raw).trim();
        if content.starts_with('[') {
            in_version = content
                .trim_start_matches('[')
                .split(']')
                .next()
                .is_some_and(|n| n.trim().eq_ignore_ascii_case("Version"));
        } else if in_version && !content.is_empty() {
            let key = split_unquoted(content, '=');
            if key.len() > 1 && key[0].trim().eq_ignore_ascii_case("DriverVer") {
                out.push(stamp_line.clone());
                stamped = true;
                last_version_entry = Some(out.len() - 1);
                continue;
            }
            last_version_entry = Some(out.len());
        }
        out.push(raw.to_owned());
    }
    if !stamped && let Some(at) = last_version_entry {
        out.insert(at + 1, stamp_line);
    }
    let mut text = out.join("\r\n");
    text.push_str("\r\n");
    text
}

mod check;
pub use check::{Expect, check};

/// `text` with `$ARCH$` replaced outside comments, line by line (so line numbers stay).
fn replace_arch(text: &str, arch: Arch) -> String {
    let mut out = String::with_capacity(text.len());
    for raw in text.split_inclusive('\n') {
        let content_len = strip_comment(raw).map_or(raw.len(), str::len);
        out.push_str(&raw[..content_len].replace("$ARCH$", arch_decoration(arch)));
        out.push_str(&raw[content_len..]);
    }
    out
}

/// The service the INF installs (`AddService`'s first field), for the manifest.
#[must_use]
pub fn service_name(inf: &Inf, arch: Arch) -> Option<String> {
    let section = format!("DefaultInstall.NT{}.Services", arch_decoration(arch));
    inf.value(&section, "AddService")
        .map(|e| e.value().to_owned())
}

#[cfg(test)]
mod tests;
