//! After a bugcheck: the code and its four parameters from the System log's event data (no
//! message text), and which dump `--fetch-dump` copies.
//!
//! Kernel-Power 41 (the system rebooted without cleanly shutting down) carries `BugcheckCode`
//! (decimal) and `BugcheckParameter1`-`4` (hex) when the restart was a bugcheck ("Advanced
//! troubleshooting for Event ID 41",
//! https://learn.microsoft.com/troubleshoot/windows-client/performance/event-id-41-restart);
//! WER-SystemErrorReporting 1001, written once the dump is saved, carries `param1`
//! (`0x000000c4 (0x..., 0x..., 0x..., 0x...)`) and `param2` (the dump's path). Event 41 is
//! preferred; 1001 fills in when 41 has no code (0: not a bugcheck, or the code was not saved).

use std::fmt::Write as _;

use serde_json::Value;

use super::verifier;
use crate::base::error::{Error, Result, bail};

/// A bugcheck: its code and parameters, where they were read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bugcheck {
    /// The code (0xC4).
    pub code: u32,
    /// Its four parameters.
    pub parameters: [u64; 4],
    /// The event it was read from (`Kernel-Power 41`, `WER-SystemErrorReporting 1001`).
    pub source: String,
}

impl Bugcheck {
    /// `0x000000C4 (0x62, 0xFFFF..., 0x..., 0x...)` and, for Verifier's, its name.
    pub fn text(&self) -> String {
        let p: Vec<String> = self.parameters.iter().map(|v| format!("0x{v:X}")).collect();
        let mut s = format!("0x{:08X} ({})", self.code, p.join(", "));
        if let Some(n) = verifier::violation(self.code) {
            let _ = write!(s, " {n}: a Driver Verifier violation");
        }
        s
    }
}

fn hex(s: &str) -> Option<u64> {
    let t = s.trim();
    let t = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X"))?;
    u64::from_str_radix(t, 16).ok()
}

/// WER 1001's `param1`: `0x000000c4 (0x..., 0x..., 0x..., 0x...)`.
fn wer_param1(s: &str) -> Option<(u32, [u64; 4])> {
    let (code, rest) = s.trim().split_once('(')?;
    let code = u32::try_from(hex(code)?).ok()?;
    let inner = rest.trim().strip_suffix(')')?;
    let v: Vec<u64> = inner.split(',').map(hex).collect::<Option<_>>()?;
    let p: [u64; 4] = v.try_into().ok()?;
    Some((code, p))
}

/// The bugcheck in section `bugcheck` (JSON list of `{Time, Id, Provider, Data}`), if any event
/// names one; an output that is not that list is an error.
pub fn bugcheck(json: &str) -> Result<Option<Bugcheck>> {
    let t = json.trim();
    if t.is_empty() {
        return Ok(None);
    }
    let v: Value =
        serde_json::from_str(t).map_err(|e| Error::new(format!("bugcheck: {e}: {t}")))?;
    let list = match v {
        Value::Array(a) => a,
        Value::Null => Vec::new(),
        o @ Value::Object(_) => vec![o],
        other => bail!("bugcheck: `{other}` is not a list of events"),
    };
    let field = |e: &Value, k: &str| e["Data"][k].as_str().map(str::to_owned);
    let mut wer = None;
    for e in &list {
        let provider = e["Provider"].as_str().unwrap_or_default();
        match e["Id"].as_u64() {
            Some(41) if provider.ends_with("Kernel-Power") => {
                let Some(code) = field(e, "BugcheckCode") else {
                    continue;
                };
                let code: u32 = code.trim().parse().map_err(|_| {
                    Error::new(format!(
                        "Kernel-Power 41: BugcheckCode `{code}` is not a number"
                    ))
                })?;
                if code == 0 {
                    continue;
                }
                let mut p = [0u64; 4];
                for (i, slot) in p.iter_mut().enumerate() {
                    let k = format!("BugcheckParameter{}", i + 1);
                    let raw = field(e, &k).unwrap_or_default();
                    *slot = hex(&raw).ok_or_else(|| {
                        Error::new(format!("Kernel-Power 41: {k} `{raw}` is not 0x-hex"))
                    })?;
                }
                return Ok(Some(Bugcheck {
                    code,
                    parameters: p,
                    source: "Kernel-Power 41".to_owned(),
                }));
            }
            Some(1001) if provider.ends_with("WER-SystemErrorReporting") => {
                if let Some(p1) = field(e, "param1") {
                    let (code, parameters) = wer_param1(&p1).ok_or_else(|| {
                        Error::new(format!(
                            "WER-SystemErrorReporting 1001: param1 `{p1}` is not `0xCODE (0xP1, 0xP2, 0xP3, 0xP4)`"
                        ))
                    })?;
                    wer.get_or_insert(Bugcheck {
                        code,
                        parameters,
                        source: "WER-SystemErrorReporting 1001".to_owned(),
                    });
                }
            }
            _ => {}
        }
    }
    Ok(wer)
}

/// A dump on the VM (section `dumps`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DumpFile {
    /// Its path on the VM.
    pub path: String,
    /// Its size.
    pub bytes: u64,
    /// A small memory dump (`Minidump\*.dmp`), not MEMORY.DMP.
    pub minidump: bool,
}

/// Section `dumps`: `PATH (N bytes)` per line, newest first (our own format, no words of
/// Windows').
pub fn dump_files(body: &str) -> Result<Vec<DumpFile>> {
    body.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let parsed = l
                .strip_suffix(" bytes)")
                .and_then(|x| x.rsplit_once(" ("))
                .and_then(|(path, n)| Some((path.to_owned(), n.parse::<u64>().ok()?)));
            let Some((path, bytes)) = parsed else {
                bail!("dumps: `{l}` is not `PATH (N bytes)`");
            };
            let minidump = path.to_ascii_lowercase().contains("\\minidump\\");
            Ok(DumpFile {
                path,
                bytes,
                minidump,
            })
        })
        .collect()
}

/// The dump `--fetch-dump` copies (`dumps` newest first): the newest minidump, else MEMORY.DMP when it is at most
/// `limit` bytes; the error says why none.
pub fn choose(dumps: &[DumpFile], limit: u64) -> std::result::Result<&DumpFile, String> {
    if let Some(m) = dumps.iter().find(|d| d.minidump) {
        return Ok(m);
    }
    let Some(full) = dumps.first() else {
        return Err(
            "no dump was written since the deploy began: configure one on the VM (System \
             Properties > Startup and Recovery, or `Set-ItemProperty HKLM:\\SYSTEM\\CurrentControlSet\\Control\\CrashControl CrashDumpEnabled 3` for small memory dumps)"
                .to_owned(),
        );
    };
    if full.bytes > limit {
        return Err(format!(
            "{} is {} bytes, more than --dump-limit {limit}: not copied. Raise --dump-limit, or \
             have the VM write small memory dumps (CrashControl CrashDumpEnabled 3) and deploy again",
            full.path, full.bytes
        ));
    }
    Ok(full)
}

/// The local file name of a dump: its file name with what cannot be in a file name replaced.
pub fn local_name(remote: &str) -> String {
    let base = remote.rsplit(['\\', '/']).next().unwrap_or(remote);
    let clean: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() || clean.starts_with('.') {
        format!("dump{clean}")
    } else {
        clean
    }
}

#[cfg(test)]
mod tests;
