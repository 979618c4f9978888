//! The workspace identity check: no two drivers may share a name Windows keeps one of.
//!
//! Two drivers loaded on one machine collide when they share a **service name** (the Service
//! Control Manager has one key per name), a **pool tag** (`!poolused` and Driver Verifier's leak
//! report can no longer tell them apart), a **callback object** they create (the second
//! `ExCreateCallback(Create = TRUE)` opens the first one's object), a **device or symbolic-link
//! name** (`IoCreateDevice` fails with `STATUS_OBJECT_NAME_COLLISION`), a registry-filter
//! **altitude** (`CmRegisterCallbackEx` fails with `STATUS_FLT_INSTANCE_ALTITUDE_COLLISION`) or a
//! **WFP key** (a second `FwpsCalloutRegister` of the same callout key fails with
//! `STATUS_FWP_ALREADY_EXISTS`). A driver copied by hand keeps all of them; this check finds each,
//! naming both files and lines.
//!
//! What is read, per driver folder (a crate and its variants are one driver: they share their
//! sources): `src/**/*.rs` (`pool_tag(b"…")`, `CallbackObject::create(unicode!("…"))`, string
//! literals naming `\Device\`, `\DosDevices\`, `\??\` or `\GLOBAL??\` objects, a `const
//! …ALTITUDE…` string, `GUID::from_u128(0x…)`), every `<name>.inx` (`AddService = NAME,` and
//! `HKR,Parameters,Altitude,…,"…"`) and `scenario.toml` (`[service_parameters] Altitude`). Names
//! Windows compares without case are compared without case.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use crate::base::error::{Context, Result, bail};
use crate::base::layout::display_path;

/// What kind of name an [`Identity`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A service name (`AddService` of an `.inx`).
    Service,
    /// A four-character pool tag.
    PoolTag,
    /// The name of a callback object the driver creates.
    CallbackObject,
    /// A device or symbolic-link name.
    DeviceName,
    /// A registry-filter altitude.
    Altitude,
    /// A WFP key (provider, sublayer, callout or filter GUID).
    WfpGuid,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Service => "service name",
            Kind::PoolTag => "pool tag",
            Kind::CallbackObject => "callback object",
            Kind::DeviceName => "device name",
            Kind::Altitude => "altitude",
            Kind::WfpGuid => "WFP GUID",
        })
    }
}

impl Kind {
    /// Whether Windows compares names of this kind without case.
    fn case_insensitive(self) -> bool {
        matches!(
            self,
            Kind::Service | Kind::CallbackObject | Kind::DeviceName | Kind::WfpGuid
        )
    }
}

/// One name a driver holds, and where it is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// What it names.
    pub kind: Kind,
    /// The name as written (a GUID in its braced hyphenated form, lower case).
    pub value: String,
    /// The file it is written in.
    pub file: PathBuf,
    /// Its line (1-based).
    pub line: usize,
}

impl Identity {
    /// The value as compared: lower case where Windows ignores case.
    pub fn key(&self) -> (Kind, String) {
        let v = if self.kind.case_insensitive() {
            self.value.to_ascii_lowercase()
        } else {
            self.value.clone()
        };
        (self.kind, v)
    }
}

/// A driver folder to check: its name (for messages), its folder and its `.inx` files.
#[derive(Clone, Debug)]
pub struct Source {
    /// The package (and variants) it holds, e.g. `wfp-callout (+ wfp-callout-wdm)`.
    pub name: String,
    /// The folder of its `Cargo.toml`.
    pub dir: PathBuf,
    /// Its INF templates.
    pub inx: Vec<PathBuf>,
}

/// The folders of the workspace's drivers (a crate and its variants grouped as one), fixtures
/// included: they are loaded beside the drivers in the emulated kernel.
pub fn sources(drivers: &[crate::base::workspace::Driver]) -> Vec<Source> {
    let mut out: Vec<Source> = Vec::new();
    for d in drivers {
        let inx = d.inx();
        if let Some(s) = out.iter_mut().find(|s| s.dir == d.dir) {
            s.name = format!("{} (+ {})", s.name, d.name);
            if inx.is_file() {
                s.inx.push(inx);
            }
        } else {
            out.push(Source {
                name: d.name.clone(),
                dir: d.dir.clone(),
                inx: if inx.is_file() { vec![inx] } else { Vec::new() },
            });
        }
    }
    out
}

/// Every identity written in one driver folder.
pub fn collect(source: &Source) -> Result<Vec<Identity>> {
    let mut found = Vec::new();
    let mut rs = Vec::new();
    rust_files(&source.dir.join("src"), &mut rs)?;
    rs.sort();
    for file in &rs {
        let text = read(file)?;
        from_rust(&text, file, &mut found);
    }
    for file in &source.inx {
        let text = read(file)?;
        from_inx(&text, file, &mut found);
    }
    let scenario = source.dir.join("scenario.toml");
    if scenario.is_file() {
        let text = read(&scenario)?;
        from_scenario(&text, &scenario, &mut found)?;
    }
    Ok(found)
}

/// Checks that no identity is shared by two driver folders (paths shown relative to `root`); the
/// error lists every collision with both places, and how to fix it. Returns how many identities
/// were read.
pub fn check(root: &Path, sources: &[Source]) -> Result<usize> {
    let mut owners: BTreeMap<(Kind, String), Vec<(usize, Identity)>> = BTreeMap::new();
    let mut count = 0;
    for (i, s) in sources.iter().enumerate() {
        for id in collect(s)? {
            count += 1;
            let holders = owners.entry(id.key()).or_default();
            if !holders.iter().any(|(j, _)| *j == i) {
                holders.push((i, id));
            }
        }
    }
    let mut problems = Vec::new();
    for ((kind, _), holders) in &owners {
        if holders.len() < 2 {
            continue;
        }
        let places: Vec<String> = holders
            .iter()
            .map(|(i, id)| {
                format!(
                    "{} ({}:{})",
                    sources[*i].name,
                    display_path(&id.file, root),
                    id.line
                )
            })
            .collect();
        problems.push(format!(
            "{kind} `{}` is used by {}",
            holders[0].1.value,
            places.join(" and ")
        ));
    }
    if !problems.is_empty() {
        bail!(
            "workspace identities: {} collision(s) — two drivers loaded together would conflict:\n  {}\n\
             give each driver its own (a driver made with `cargo xtask new` gets fresh ones)",
            problems.len(),
            problems.join("\n  ")
        );
    }
    Ok(count)
}

fn read(file: &Path) -> Result<String> {
    fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let path = entry
            .with_context(|| format!("listing {}", dir.display()))?
            .path();
        if path.is_dir() {
            rust_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// The string literal starting right after `prefix` in `line` (to the next `"`), unescaped.
fn literal_after(line: &str, prefix: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = line[from..].find(prefix) {
        let start = from + at + prefix.len();
        let Some(len) = line[start..].find('"') else {
            break;
        };
        out.push((start, line[start..start + len].replace("\\\\", "\\")));
        from = start + len;
    }
    out
}

/// The identities of one Rust source file.
fn from_rust(text: &str, file: &Path, out: &mut Vec<Identity>) {
    let mut push = |kind, value: String, line: usize| {
        out.push(Identity {
            kind,
            value,
            file: file.to_path_buf(),
            line,
        });
    };
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        if line.starts_with("//") {
            continue;
        }
        for (_, tag) in literal_after(line, "pool_tag(b\"") {
            push(Kind::PoolTag, tag, n + 1);
        }
        for (_, name) in literal_after(line, "CallbackObject::create(unicode!(\"") {
            push(Kind::CallbackObject, name, n + 1);
        }
        for (_, lit) in literal_after(line, "\"") {
            let upper = lit.to_ascii_uppercase();
            if ["\\DEVICE\\", "\\DOSDEVICES\\", "\\??\\", "\\GLOBAL??\\"]
                .iter()
                .any(|p| upper.starts_with(p) && upper.len() > p.len())
            {
                push(Kind::DeviceName, lit, n + 1);
            }
        }
        if line.contains("ALTITUDE") && line.contains("const ") {
            for (_, lit) in literal_after(line, "(\"") {
                if is_altitude(&lit) {
                    push(Kind::Altitude, lit, n + 1);
                }
            }
        }
        let mut from = 0;
        while let Some(at) = line[from..].find("GUID::from_u128(0x") {
            let start = from + at + "GUID::from_u128(0x".len();
            let hex: String = line[start..]
                .chars()
                .take_while(|c| c.is_ascii_hexdigit() || *c == '_')
                .filter(char::is_ascii_hexdigit)
                .collect();
            if hex.len() == 32 {
                push(Kind::WfpGuid, braced_guid(&hex), n + 1);
            }
            from = start;
        }
    }
}

/// `{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}` from 32 hex digits.
pub fn braced_guid(hex: &str) -> String {
    let h = hex.to_ascii_lowercase();
    format!(
        "{{{}-{}-{}-{}-{}}}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Digits, optionally one dot and more digits: what `CmRegisterCallbackEx` accepts here.
pub fn is_altitude(s: &str) -> bool {
    let mut parts = s.split('.');
    let whole = parts.next().unwrap_or_default();
    let frac = parts.next();
    parts.next().is_none()
        && !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

/// The identities of one `.inx`: the service it adds and the altitude it writes.
fn from_inx(text: &str, file: &Path, out: &mut Vec<Identity>) {
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split(';').next().unwrap_or_default().trim();
        let Some((key, value)) = line.split_once('=') else {
            let altitude = line
                .to_ascii_lowercase()
                .starts_with("hkr,parameters,altitude,");
            if altitude && let Some(v) = line.rsplit(',').next() {
                out.push(Identity {
                    kind: Kind::Altitude,
                    value: v.trim().trim_matches('"').to_owned(),
                    file: file.to_path_buf(),
                    line: n + 1,
                });
            }
            continue;
        };
        if key.trim().eq_ignore_ascii_case("AddService") {
            let service = value.split(',').next().unwrap_or_default().trim();
            if !service.is_empty() {
                out.push(Identity {
                    kind: Kind::Service,
                    value: service.trim_matches('"').to_owned(),
                    file: file.to_path_buf(),
                    line: n + 1,
                });
            }
        }
    }
}

/// The altitude a `scenario.toml` configures (`[service_parameters] Altitude`).
fn from_scenario(text: &str, file: &Path, out: &mut Vec<Identity>) -> Result<()> {
    let doc: toml::Table =
        toml::from_str(text).with_context(|| format!("reading {}", file.display()))?;
    let Some(altitude) = doc
        .get("service_parameters")
        .and_then(|p| p.get("Altitude"))
        .and_then(toml::Value::as_str)
    else {
        return Ok(());
    };
    let line = text
        .lines()
        .position(|l| l.trim_start().starts_with("Altitude"))
        .map_or(0, |i| i + 1);
    out.push(Identity {
        kind: Kind::Altitude,
        value: altitude.to_owned(),
        file: file.to_path_buf(),
        line,
    });
    Ok(())
}

#[cfg(test)]
#[path = "identity_tests.rs"]
mod tests;
