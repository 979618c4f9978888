//! The report's parts for `--verifier`, `--kdnet` and a bugcheck (`--fetch-dump`): the facts,
//! their text lines and their `--json` form (docs/reports/deploy.md).

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use crate::deploy::crash::Bugcheck;
use crate::deploy::verifier::{self, Stats};

/// Driver Verifier in this deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierRun {
    /// The flags asked for.
    pub flags: verifier::Flags,
    /// How they were turned on (`None`: the step did not get that far).
    pub mode: Option<verifier::Mode>,
    /// The settings before, in words.
    pub previous: String,
    /// Whether they are back (`None`: the restore did not run).
    pub restored: Option<bool>,
}

/// Network kernel debugging, as set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KdnetRun {
    /// The debugger host.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The key, read back from the VM.
    pub key: String,
    /// The command that attaches WinDbg.
    pub windbg: String,
}

/// What is known of a bugcheck once the VM is back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Crash {
    /// The driver whose step lost the VM.
    pub driver: String,
    /// The code and parameters, when an event gave them.
    pub bugcheck: Option<Bugcheck>,
    /// Why they are not known, when not.
    pub bugcheck_error: Option<String>,
    /// The dump copied here: (on the VM, here, bytes).
    pub dump: Option<(String, PathBuf, u64)>,
    /// Why no dump was copied (with `--fetch-dump`).
    pub dump_error: Option<String>,
}

/// `verifier` in `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct VerifierJson {
    /// The flags asked for (`0x209BB`).
    pub flags: String,
    /// `volatile`, `persistent`, or null when the step did not get that far.
    pub mode: Option<&'static str>,
    /// The settings before, in words.
    pub previous: String,
    /// Whether they are back; null when the restore did not run.
    pub restored: Option<bool>,
}

/// A driver's Verifier counters in `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct StatsJson {
    /// Loads since the boot.
    pub loads: u64,
    /// Unloads since the boot.
    pub unloads: u64,
    /// The counters, in the order listed.
    pub counters: Vec<CounterJson>,
}

/// One Verifier counter in `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct CounterJson {
    /// Its identifier, as `verifier /query` writes it.
    pub name: String,
    /// Its value.
    pub value: u64,
}

/// `kdnet` in `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct KdnetJson {
    /// The debugger host.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The key.
    pub key: String,
    /// The WinDbg command line.
    pub windbg: String,
}

/// `crash.bugcheck` in `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct BugcheckJson {
    /// The code, `0x000000C4`.
    pub code: String,
    /// The four parameters, `0x...`.
    pub parameters: Vec<String>,
    /// The event read.
    pub source: String,
    /// A Driver Verifier violation's name, else null.
    pub verifier_violation: Option<&'static str>,
}

/// `crash.dump` in `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct DumpJson {
    /// The path on the VM.
    pub remote: String,
    /// The copy here.
    pub local: String,
    /// Its size.
    pub bytes: u64,
}

/// `crash` in `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct CrashJson {
    /// The driver whose step lost the VM.
    pub driver: String,
    /// The code and parameters, or null.
    pub bugcheck: Option<BugcheckJson>,
    /// Why they are not known.
    pub bugcheck_error: Option<String>,
    /// The dump copied, or null.
    pub dump: Option<DumpJson>,
    /// Why none was copied.
    pub dump_error: Option<String>,
}

pub(super) fn verifier_json(v: &VerifierRun) -> VerifierJson {
    VerifierJson {
        flags: v.flags.hex(),
        mode: v.mode.map(verifier::Mode::word),
        previous: v.previous.clone(),
        restored: v.restored,
    }
}

pub(super) fn stats_json(s: &Stats) -> StatsJson {
    StatsJson {
        loads: s.loads,
        unloads: s.unloads,
        counters: s
            .counters
            .iter()
            .map(|(name, value)| CounterJson {
                name: name.clone(),
                value: *value,
            })
            .collect(),
    }
}

pub(super) fn kdnet_json(k: &KdnetRun) -> KdnetJson {
    KdnetJson {
        host: k.host.clone(),
        port: k.port,
        key: k.key.clone(),
        windbg: k.windbg.clone(),
    }
}

pub(super) fn crash_json(c: &Crash) -> CrashJson {
    CrashJson {
        driver: c.driver.clone(),
        bugcheck: c.bugcheck.as_ref().map(|b| BugcheckJson {
            code: format!("0x{:08X}", b.code),
            parameters: b.parameters.iter().map(|p| format!("0x{p:X}")).collect(),
            source: b.source.clone(),
            verifier_violation: verifier::violation(b.code),
        }),
        bugcheck_error: c.bugcheck_error.clone(),
        dump: c.dump.as_ref().map(|(remote, local, bytes)| DumpJson {
            remote: remote.clone(),
            local: local.display().to_string(),
            bytes: *bytes,
        }),
        dump_error: c.dump_error.clone(),
    }
}

/// The text lines of the target's parts.
pub(super) fn render_target(
    out: &mut String,
    verifier: Option<&VerifierRun>,
    kdnet: Option<&KdnetRun>,
    crash: Option<&Crash>,
) {
    if let Some(v) = verifier {
        let _ = writeln!(
            out,
            "  Driver Verifier: flags {}, {}; before: {}; {}",
            v.flags.hex(),
            v.mode.map_or("not turned on", verifier::Mode::word),
            v.previous,
            match v.restored {
                Some(true) => "restored",
                Some(false) => "NOT RESTORED (see the verifier-restore step)",
                None => "not restored: the restore did not run",
            }
        );
    }
    if let Some(k) = kdnet {
        let _ = writeln!(
            out,
            "  kernel debugging: {}:{} key {}; attach with: {}",
            k.host, k.port, k.key, k.windbg
        );
    }
    if let Some(c) = crash {
        match (&c.bugcheck, &c.bugcheck_error) {
            (Some(b), _) => {
                let _ = writeln!(
                    out,
                    "  BUGCHECK during {}: {} (from {})",
                    c.driver,
                    b.text(),
                    b.source
                );
            }
            (None, Some(e)) => {
                let _ = writeln!(out, "  bugcheck code not read: {e}");
            }
            (None, None) => {
                let _ = writeln!(out, "  no bugcheck event since the deploy began");
            }
        }
        if let Some((remote, local, bytes)) = &c.dump {
            let _ = writeln!(
                out,
                "  dump: {remote} ({bytes} bytes) copied to {}",
                local.display()
            );
        }
        if let Some(e) = &c.dump_error {
            let _ = writeln!(out, "  dump not copied: {e}");
        }
    }
}

/// A driver's line of Verifier counters.
pub(super) fn render_stats(out: &mut String, s: &Stats) {
    let _ = writeln!(out, "    Driver Verifier: {}", s.summary());
}
