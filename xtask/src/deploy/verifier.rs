//! Driver Verifier in a deployment (`deploy --verifier [standard|FLAGS]`): the flags, which of
//! them Windows can turn on without a restart, the counters `verifier /query` prints for a
//! driver, the saved and restored settings, and the bugchecks that are Verifier's violations.
//!
//! Sources: "Driver Verifier command syntax"
//! (https://learn.microsoft.com/windows-hardware/drivers/devtest/verifier-command-line), "Using
//! Volatile Settings" (https://learn.microsoft.com/windows-hardware/drivers/devtest/using-volatile-settings),
//! "Monitoring Individual Counters"
//! (https://learn.microsoft.com/windows-hardware/drivers/devtest/monitoring-individual-counters),
//! the Bug Check Code Reference (https://learn.microsoft.com/windows-hardware/drivers/debugger/bug-check-code-reference2).
//!
//! **What is read.** The settings before and after come from the registry values verifier.exe
//! keeps (VerifyDriverLevel, VerifyDrivers): numbers and image names. The counters have no
//! locale-free source that is documented (the kernel's SystemVerifierInformation class is not),
//! so they come from `verifier /query`, of which only the non-localised parts are read: the
//! `Name: IMAGE, loads: N, unloads: N` line of the driver and the `Counter: number` lines under
//! it, whose names are the counters' identifiers. A driver that is not in the list, or a list
//! with none of the known counters, is an error (the step fails): never a guess.

use std::fmt::Write as _;

use serde_json::Value;

use crate::base::error::{Result, bail};

/// `/standard`'s flags: special pool, force IRQL checking, pool tracking, I/O verification,
/// deadlock detection, DMA checking, security checks, miscellaneous checks, DDI compliance
/// checking (0x209BB, "Driver Verifier options and rule classes").
pub const STANDARD: u32 = 0x0002_09BB;

/// The flags Windows 10 can change without a restart ("Using Volatile Settings": 0x1, 0x2, 0x4,
/// 0x8, 0x10, 0x20, 0x80, 0x100, 0x200, 0x400, 0x800, 0x2000, 0x4000).
pub const VOLATILE_WIN10: u32 = 0x6FBF;

/// The flags Windows 11 can change without a restart ("Using Volatile Settings": 0x4, 0x20,
/// 0x80, 0x200, 0x400).
pub const VOLATILE_WIN11: u32 = 0x06A4;

/// `--verifier`'s value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flags(pub u32);

impl Flags {
    /// `standard` (or nothing), or the flags in hex (`0x209BB` or `209BB`), as verifier's
    /// `/flags` takes them.
    pub fn parse(s: &str) -> Result<Self> {
        let t = s.trim();
        if t.is_empty() || t.eq_ignore_ascii_case("standard") {
            return Ok(Self(STANDARD));
        }
        let hex = t
            .strip_prefix("0x")
            .or_else(|| t.strip_prefix("0X"))
            .unwrap_or(t);
        match u32::from_str_radix(hex, 16) {
            Ok(0) => bail!(
                "--verifier 0 turns nothing on: give `standard` or the flags in hex (0x209BB), \
                 as `verifier /flags` takes them"
            ),
            Ok(v) => Ok(Self(v)),
            Err(_) => bail!(
                "--verifier takes `standard` or the flags in hex (like 0x209BB, as `verifier \
                 /flags` takes them), not `{s}`"
            ),
        }
    }

    /// `0x209BB`.
    pub fn hex(self) -> String {
        format!("0x{:X}", self.0)
    }
}

/// The counters of one verified driver, as `verifier /query` lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stats {
    /// The image.
    pub image: String,
    /// How often it was loaded and unloaded since the boot.
    pub loads: u64,
    /// See `loads`.
    pub unloads: u64,
    /// The counters by name, in the order listed.
    pub counters: Vec<(String, u64)>,
}

/// The counters `verifier /query` writes for a driver (the pool-tracking counters of "Monitoring
/// Individual Counters", by their identifiers): at least one must be there.
const KNOWN: [&str; 8] = [
    "CurrentPagedPoolAllocations",
    "CurrentNonPagedPoolAllocations",
    "PeakPagedPoolAllocations",
    "PeakNonPagedPoolAllocations",
    "PagedPoolUsageInBytes",
    "NonPagedPoolUsageInBytes",
    "PeakPagedPoolUsageInBytes",
    "PeakNonPagedPoolUsageInBytes",
];

/// `Name: IMAGE, loads: N, unloads: N`: the image and the two numbers.
fn name_line(line: &str) -> Option<(String, u64, u64)> {
    let rest = line.trim().strip_prefix("Name:")?;
    let mut parts = rest.split(',').map(str::trim);
    let image = parts.next()?.to_owned();
    let num = |p: Option<&str>, key: &str| -> Option<u64> {
        p?.strip_prefix(key)?
            .trim()
            .strip_prefix(':')?
            .trim()
            .parse()
            .ok()
    };
    let loads = num(parts.next(), "loads")?;
    let unloads = num(parts.next(), "unloads")?;
    parts.next().is_none().then_some((image, loads, unloads))
}

/// `Counter: number`, the counter's name an identifier.
fn counter_line(line: &str) -> Option<(String, u64)> {
    let (k, v) = line.trim().split_once(':')?;
    let k = k.trim();
    if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    Some((k.to_owned(), v.trim().parse().ok()?))
}

/// The counters of `image` in `verifier /query`'s output, or why they cannot be read.
pub fn stats(query: &str, image: &str) -> Result<Stats> {
    let lines: Vec<&str> = query.lines().map(|l| l.trim_end_matches('\r')).collect();
    let Some(at) = lines
        .iter()
        .position(|l| name_line(l).is_some_and(|(n, _, _)| n.eq_ignore_ascii_case(image)))
    else {
        bail!(
            "verifier /query does not list {image} as a verified driver (no `Name: {image}, \
             loads: N, unloads: N` line): Driver Verifier is not verifying it. Its output: {}",
            crate::base::process::tail(query.trim(), 6).replace('\n', " | ")
        );
    };
    let (name, loads, unloads) = name_line(lines[at]).unwrap_or_default();
    let mut counters = Vec::new();
    for l in &lines[at + 1..] {
        if l.trim().is_empty() || name_line(l).is_some() {
            break;
        }
        if let Some(c) = counter_line(l) {
            counters.push(c);
        }
    }
    if !counters.iter().any(|(k, _)| KNOWN.contains(&k.as_str())) {
        bail!(
            "verifier /query lists {image} without any of the counters {} under it: an output \
             this version does not know, not read",
            KNOWN.join(", ")
        );
    }
    Ok(Stats {
        image: name,
        loads,
        unloads,
        counters,
    })
}

impl Stats {
    /// One counter.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.counters
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
    }

    /// A line for the report.
    pub fn summary(&self) -> String {
        let mut s = format!("loads {}, unloads {}", self.loads, self.unloads);
        for (k, label) in [
            (
                "CurrentNonPagedPoolAllocations",
                "non-paged allocations now",
            ),
            ("NonPagedPoolUsageInBytes", "non-paged bytes now"),
            ("CurrentPagedPoolAllocations", "paged allocations now"),
            ("PagedPoolUsageInBytes", "paged bytes now"),
        ] {
            if let Some(v) = self.get(k) {
                let _ = write!(s, ", {label} {v}");
            }
        }
        s
    }
}

/// The settings the `verifier` step found and saved: level and drivers (`None`: the value is
/// absent, Verifier off) and how ours were turned on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Previous {
    /// VerifyDriverLevel.
    pub level: Option<u64>,
    /// VerifyDrivers (`*`: every driver).
    pub drivers: Option<String>,
    /// `volatile` or `persistent`.
    pub mode: Mode,
}

/// How Verifier was turned on for our drivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// At once, until the next boot.
    Volatile,
    /// In the registry, from the next boot (a restart follows).
    Persistent,
}

impl Mode {
    /// `volatile` or `persistent`.
    pub fn word(self) -> &'static str {
        match self {
            Mode::Volatile => "volatile",
            Mode::Persistent => "persistent",
        }
    }

    /// From the step's section `verifier-mode`.
    pub fn parse(s: &str) -> Result<Self> {
        match s.trim() {
            "volatile" => Ok(Mode::Volatile),
            "persistent" => Ok(Mode::Persistent),
            other => bail!("verifier-mode `{other}` is neither volatile nor persistent"),
        }
    }
}

/// Section `verifier-previous` (JSON `{"Level":N|null,"Drivers":"..."|null,"Mode":"..."}`).
pub fn previous(json: &str) -> Result<Previous> {
    let v: Value = serde_json::from_str(json.trim())
        .map_err(|e| crate::base::error::Error::new(format!("verifier-previous: {e}: {json}")))?;
    let level = match &v["Level"] {
        Value::Null => None,
        Value::Number(n) => Some(n.as_u64().ok_or_else(|| {
            crate::base::error::Error::new(format!("verifier-previous: Level {n} is not a level"))
        })?),
        other => bail!("verifier-previous: Level `{other}` is not a number"),
    };
    let drivers = match &v["Drivers"] {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => bail!("verifier-previous: Drivers `{other}` is not a string"),
    };
    let mode = Mode::parse(v["Mode"].as_str().unwrap_or_default())?;
    Ok(Previous {
        level,
        drivers,
        mode,
    })
}

impl Previous {
    /// In words, for the report.
    pub fn text(&self) -> String {
        match (&self.level, &self.drivers) {
            (None, _) => "Verifier was off".to_owned(),
            (Some(l), d) => format!(
                "Verifier was on: flags 0x{l:X}, drivers [{}]",
                d.as_deref().unwrap_or_default()
            ),
        }
    }
}

/// Section `verifier-restored`: `unchanged` (the `verifier` step changed nothing), or JSON whose
/// `Same` says whether the registry holds the saved settings again.
pub fn restored(body: &str) -> Result<bool> {
    let b = body.trim();
    if b == "unchanged" {
        return Ok(true);
    }
    let v: Value = serde_json::from_str(b)
        .map_err(|e| crate::base::error::Error::new(format!("verifier-restored: {e}: {b}")))?;
    match v["Same"] {
        Value::Bool(same) => Ok(same),
        _ => bail!("verifier-restored: no `Same` in {b}"),
    }
}

/// The bugchecks Driver Verifier raises when it catches a driver (the Bug Check Code Reference):
/// code and name.
pub const VIOLATIONS: [(u32, &str); 7] = [
    (0xC1, "SPECIAL_POOL_DETECTED_MEMORY_CORRUPTION"),
    (0xC4, "DRIVER_VERIFIER_DETECTED_VIOLATION"),
    (0xC6, "DRIVER_CAUGHT_MODIFYING_FREED_POOL"),
    (0xC9, "DRIVER_VERIFIER_IOMANAGER_VIOLATION"),
    (0xD6, "DRIVER_PAGE_FAULT_BEYOND_END_OF_ALLOCATION"),
    (0xE6, "DRIVER_VERIFIER_DMA_VIOLATION"),
    (0x1C4, "DRIVER_VERIFIER_DETECTED_VIOLATION_LIVEDUMP"),
];

/// Whether bugcheck `code` is one of Verifier's, with its name.
pub fn violation(code: u32) -> Option<&'static str> {
    VIOLATIONS.iter().find(|(c, _)| *c == code).map(|(_, n)| *n)
}

#[cfg(test)]
mod tests;
