//! What each driver is exercised with on a VM: its `deploy.toml`, beside its `scenario.toml`.
//!
//! ```toml
//! settle = 5                      # seconds the service must stay running (default 5)
//!
//! [[while-loaded]]                # checks run while the driver is loaded
//! name = "Blocked is refused"
//! registry = "set-value"          # create-key | set-value | delete-value | delete-key
//! key = 'HKLM\SOFTWARE\CmFilterSample'
//! value = "Blocked"
//! data = "no"                     # set-value writes a REG_SZ
//! expect = "denied"               # allowed | denied
//!
//! [[while-loaded]]
//! name = "our filter is registered"
//! wfp = "filters"                 # netsh wfp show filters
//! filter-names = ["..."]          # and/or callout-keys, provider-keys (GUIDs)
//! expect = "present"              # present | absent
//!
//! [[after-unload]]                # checks run once the driver is stopped (unloaded)
//! name = "anything"
//! command = "Get-Item C:\\x"      # PowerShell, run as a powershell.exe of its own; passes if
//!                                 # that process exits with expect-exit (0)
//! ```
//!
//! Every driver, with or without this file, is also checked to be Running and in the list of
//! loaded kernel modules after start and after `settle`, and Stopped with exit code 0 and gone
//! from that list after stop.

use std::path::Path;

use toml::{Table, Value};

use super::parse::{self, Outcome, Sections};
use super::ps;
use super::script::Arg;
use crate::base::error::{Context, Result, bail};

/// The file name, in the driver's folder.
pub const FILE: &str = "deploy.toml";

/// Seconds a driver must stay running when its `deploy.toml` does not say.
pub const DEFAULT_SETTLE: u32 = 5;

/// A driver's probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// Seconds the service must stay running before the checks.
    pub settle: u32,
    /// Checks while the driver is loaded.
    pub while_loaded: Vec<Check>,
    /// Checks once it is unloaded.
    pub after_unload: Vec<Check>,
}

impl Default for Probe {
    fn default() -> Self {
        Self {
            settle: DEFAULT_SETTLE,
            while_loaded: Vec::new(),
            after_unload: Vec::new(),
        }
    }
}

/// One check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// What it shows, for the report.
    pub name: String,
    /// What it does and expects.
    pub kind: Kind,
}

/// The kinds of check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A registry operation, which must be allowed or denied.
    Registry {
        /// The operation.
        op: RegOp,
        /// `LocalMachine` or `CurrentUser` (.NET's `Microsoft.Win32.Registry` fields).
        hive: &'static str,
        /// The path under the hive.
        path: String,
        /// The value name (set-value, delete-value).
        value: String,
        /// The REG_SZ data (set-value).
        data: String,
        /// Whether it must succeed.
        allowed: bool,
    },
    /// Filters in `netsh wfp show filters`, which must all be present or all absent.
    Wfp {
        /// Filter display names.
        filter_names: Vec<String>,
        /// Callout GUIDs (a filter's action/calloutKey).
        callout_keys: Vec<String>,
        /// Provider GUIDs.
        provider_keys: Vec<String>,
        /// Present (true) or absent.
        present: bool,
    },
    /// A PowerShell command that must exit with this code.
    Command {
        /// The script.
        script: String,
        /// Its expected exit code.
        exit: i32,
    },
}

/// A registry operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegOp {
    /// Create (or open for writing) a key.
    CreateKey,
    /// Write a REG_SZ value.
    SetValue,
    /// Delete a value.
    DeleteValue,
    /// Delete a key and its subkeys.
    DeleteKey,
}

/// The probe of the driver in `dir`: its `deploy.toml`, or the default when there is none.
pub fn load(dir: &Path) -> Result<Probe> {
    let path = dir.join(FILE);
    if !path.is_file() {
        return Ok(Probe::default());
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    parse_probe(&text)
        .map_err(|e| crate::base::error::Error::new(format!("{}: {e}", path.display())))
}

/// Parses a `deploy.toml`.
pub fn parse_probe(text: &str) -> Result<Probe> {
    let table: Table = text.parse().map_err(|e: toml::de::Error| {
        crate::base::error::Error::new(e.to_string().trim_end().to_owned())
    })?;
    let mut probe = Probe::default();
    for (key, value) in &table {
        match key.as_str() {
            "settle" => {
                let Some(s) = value
                    .as_integer()
                    .and_then(|s| u32::try_from(s).ok())
                    .filter(|&s| s <= 600)
                else {
                    bail!("settle must be a number of seconds from 0 to 600")
                };
                probe.settle = s;
            }
            "while-loaded" | "after-unload" => {
                let Some(items) = value.as_array() else {
                    bail!("`{key}` must be an array of tables ([[{key}]])")
                };
                for (i, item) in items.iter().enumerate() {
                    let Some(t) = item.as_table() else {
                        bail!("`{key}` must be an array of tables ([[{key}]])")
                    };
                    let check = parse_check(t).map_err(|e| {
                        crate::base::error::Error::new(format!("[[{key}]] number {}: {e}", i + 1))
                    })?;
                    if key == "while-loaded" {
                        probe.while_loaded.push(check);
                    } else {
                        probe.after_unload.push(check);
                    }
                }
            }
            other => bail!("unknown key `{other}` (settle, [[while-loaded]], [[after-unload]])"),
        }
    }
    Ok(probe)
}

#[allow(clippy::too_many_lines)] // one arm per kind of check
fn parse_check(t: &Table) -> Result<Check> {
    let string = |k: &str| -> Result<Option<String>> {
        match t.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => bail!("`{k}` must be a string"),
        }
    };
    let strings = |k: &str| -> Result<Vec<String>> {
        match t.get(k) {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_owned).ok_or_else(|| {
                        crate::base::error::Error::new(format!("`{k}` must list strings"))
                    })
                })
                .collect(),
            Some(_) => bail!("`{k}` must be an array of strings"),
        }
    };
    let Some(name) = string("name")? else {
        bail!("`name` is missing (what the check shows, for the report)")
    };
    let kinds: Vec<&str> = ["registry", "wfp", "command"]
        .into_iter()
        .filter(|k| t.contains_key(*k))
        .collect();
    let allowed_keys: &[&str] = match kinds.as_slice() {
        ["registry"] => &["name", "registry", "key", "value", "data", "expect"],
        ["wfp"] => &[
            "name",
            "wfp",
            "filter-names",
            "callout-keys",
            "provider-keys",
            "expect",
        ],
        ["command"] => &["name", "command", "expect-exit"],
        _ => bail!("give exactly one of `registry`, `wfp` or `command`"),
    };
    if let Some(k) = t.keys().find(|k| !allowed_keys.contains(&k.as_str())) {
        bail!(
            "unknown key `{k}` (allowed here: {})",
            allowed_keys.join(", ")
        );
    }
    let expect = string("expect")?;
    let kind = match kinds[0] {
        "registry" => {
            let op = match string("registry")?.as_deref() {
                Some("create-key") => RegOp::CreateKey,
                Some("set-value") => RegOp::SetValue,
                Some("delete-value") => RegOp::DeleteValue,
                Some("delete-key") => RegOp::DeleteKey,
                _ => bail!("`registry` must be create-key, set-value, delete-value or delete-key"),
            };
            let Some(key) = string("key")? else {
                bail!("`key` is missing (e.g. 'HKLM\\SOFTWARE\\CmFilterSample')")
            };
            let (hive, path) = split_hive(&key)?;
            let value = string("value")?.unwrap_or_default();
            if matches!(op, RegOp::SetValue | RegOp::DeleteValue) && value.is_empty() {
                bail!("`value` is missing (the value's name)");
            }
            let allowed = match expect.as_deref() {
                Some("allowed") => true,
                Some("denied") => false,
                _ => bail!("`expect` must be \"allowed\" or \"denied\""),
            };
            Kind::Registry {
                op,
                hive,
                path,
                value,
                data: string("data")?.unwrap_or_default(),
                allowed,
            }
        }
        "wfp" => {
            if string("wfp")?.as_deref() != Some("filters") {
                bail!("`wfp` must be \"filters\" (netsh wfp show filters)");
            }
            let present = match expect.as_deref() {
                Some("present") => true,
                Some("absent") => false,
                _ => bail!("`expect` must be \"present\" or \"absent\""),
            };
            let kind = Kind::Wfp {
                filter_names: strings("filter-names")?,
                callout_keys: strings("callout-keys")?,
                provider_keys: strings("provider-keys")?,
                present,
            };
            if let Kind::Wfp {
                filter_names,
                callout_keys,
                provider_keys,
                ..
            } = &kind
                && filter_names.is_empty()
                && callout_keys.is_empty()
                && provider_keys.is_empty()
            {
                bail!("name at least one of filter-names, callout-keys, provider-keys");
            }
            kind
        }
        _ => {
            let Some(script) = string("command")? else {
                bail!("`command` must be a string")
            };
            let exit = match t.get("expect-exit") {
                None => 0,
                Some(v) => v
                    .as_integer()
                    .and_then(|i| i32::try_from(i).ok())
                    .ok_or_else(|| {
                        crate::base::error::Error::new("`expect-exit` must be a number")
                    })?,
            };
            Kind::Command { script, exit }
        }
    };
    Ok(Check { name, kind })
}

/// `HKLM\SOFTWARE\X` into (`LocalMachine`, `SOFTWARE\X`).
fn split_hive(key: &str) -> Result<(&'static str, String)> {
    let (hive, path) = key.split_once('\\').unwrap_or((key, ""));
    let hive = match hive.to_ascii_uppercase().as_str() {
        "HKLM" | "HKEY_LOCAL_MACHINE" => "LocalMachine",
        "HKCU" | "HKEY_CURRENT_USER" => "CurrentUser",
        _ => bail!("`key` must start with HKLM\\ or HKCU\\, not `{key}`"),
    };
    if path.is_empty() {
        bail!("`key` names a hive, not a key: `{key}`");
    }
    Ok((hive, path.trim_end_matches('\\').to_owned()))
}

/// What a command check's own powershell.exe runs before the command: UTF-8 output (the step
/// decodes it as UTF-8, as the prologue sets), no progress records.
const COMMAND_PROLOGUE: &str = "try { [Console]::OutputEncoding = New-Object Text.UTF8Encoding $false } catch { }\n$ProgressPreference = 'SilentlyContinue'\n";

/// Check `check` as `Invoke-XtaskCheck` (xtask-helpers.ps1) takes it: its parameters but the
/// section. A command is sent in its -EncodedCommand form, run by a powershell.exe of its own.
pub fn args(check: &Check) -> Vec<(&'static str, Arg)> {
    match &check.kind {
        Kind::Registry {
            op,
            hive,
            path,
            value,
            data,
            ..
        } => {
            let mut a = vec![
                ("Kind", Arg::str("registry")),
                (
                    "Op",
                    Arg::str(match op {
                        RegOp::CreateKey => "create-key",
                        RegOp::SetValue => "set-value",
                        RegOp::DeleteValue => "delete-value",
                        RegOp::DeleteKey => "delete-key",
                    }),
                ),
                ("Hive", Arg::str(*hive)),
                ("Path", Arg::str(path)),
            ];
            if matches!(op, RegOp::SetValue | RegOp::DeleteValue) {
                a.push(("Value", Arg::str(value)));
            }
            if matches!(op, RegOp::SetValue) {
                a.push(("Data", Arg::str(data)));
            }
            a
        }
        Kind::Wfp {
            filter_names,
            callout_keys,
            provider_keys,
            ..
        } => {
            let keys: Vec<String> = callout_keys
                .iter()
                .chain(provider_keys)
                .map(|k| parse::guid(k))
                .collect();
            vec![
                ("Kind", Arg::str("wfp")),
                ("Names", Arg::list(filter_names)),
                ("Keys", Arg::List(keys)),
            ]
        }
        Kind::Command { script, .. } => vec![
            ("Kind", Arg::str("command")),
            (
                "Encoded",
                Arg::Str(ps::encode(&format!("{COMMAND_PROLOGUE}{script}\n"))),
            ),
        ],
    }
}

/// The result of one check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The check's name.
    pub name: String,
    /// What was expected.
    pub expected: String,
    /// What was observed.
    pub observed: String,
    /// Whether they agree.
    pub ok: bool,
}

/// Judges `check` from the output `sections`, where it wrote section `section`.
#[allow(clippy::too_many_lines)] // one arm per kind of check
pub fn judge(check: &Check, sections: &Sections, section: &str) -> Verdict {
    let verdict = |expected: String, observed: Result<(String, bool)>| match observed {
        Ok((observed, ok)) => Verdict {
            name: check.name.clone(),
            expected,
            observed,
            ok,
        },
        Err(e) => Verdict {
            name: check.name.clone(),
            expected,
            observed: format!("unreadable: {e}"),
            ok: false,
        },
    };
    match &check.kind {
        Kind::Registry { allowed, .. } => {
            let expected = if *allowed { "allowed" } else { "denied" };
            verdict(
                expected.to_owned(),
                sections
                    .need(section)
                    .and_then(|s| Outcome::parse(&s.body))
                    .map(|o| {
                        let ok = o
                            == if *allowed {
                                Outcome::Allowed
                            } else {
                                Outcome::Denied
                            };
                        let observed = match o {
                            Outcome::Allowed => "allowed".to_owned(),
                            Outcome::Denied => "denied".to_owned(),
                            Outcome::Error(e) => format!("failed otherwise: {e}"),
                        };
                        (observed, ok)
                    }),
            )
        }
        Kind::Wfp {
            filter_names,
            callout_keys,
            provider_keys,
            present,
        } => {
            let expected = if *present { "present" } else { "absent" };
            let observed = sections.need(section).and_then(|s| {
                if s.exit != Some(0) {
                    bail!(
                        "netsh wfp show filters failed (exit code {:?}): {}",
                        s.exit,
                        s.body
                    );
                }
                let filters = parse::wfp_filters(&s.body)?;
                let mut found = Vec::new();
                let mut missing = Vec::new();
                for n in filter_names {
                    let hit = filters.iter().any(|f| f.name == *n);
                    (if hit { &mut found } else { &mut missing }).push(format!("filter \"{n}\""));
                }
                for k in callout_keys {
                    let hit = filters
                        .iter()
                        .any(|f| parse::guid(&f.callout) == parse::guid(k));
                    (if hit { &mut found } else { &mut missing }).push(format!("callout {k}"));
                }
                for k in provider_keys {
                    let hit = filters
                        .iter()
                        .any(|f| parse::guid(&f.provider) == parse::guid(k));
                    (if hit { &mut found } else { &mut missing }).push(format!("provider {k}"));
                }
                let ok = if *present {
                    missing.is_empty()
                } else {
                    found.is_empty()
                };
                let mut parts = Vec::new();
                if !found.is_empty() {
                    parts.push(format!("present: {}", found.join(", ")));
                }
                if !missing.is_empty() {
                    parts.push(format!("absent: {}", missing.join(", ")));
                }
                Ok((parts.join("; "), ok))
            });
            verdict(expected.to_owned(), observed)
        }
        Kind::Command { exit, .. } => verdict(
            format!("exit code {exit}"),
            sections.need(section).map(|s| {
                let observed = match s.exit {
                    Some(c) => format!("exit code {c}"),
                    None => "no exit code".to_owned(),
                };
                let tail = crate::base::process::tail(s.body.trim(), 3);
                let observed = if tail.is_empty() {
                    observed
                } else {
                    format!("{observed}: {tail}")
                };
                (observed, s.exit == Some(*exit))
            }),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CM_FILTER: &str = include_str!("plan/testdata/cm-filter-deploy.toml");

    #[test]
    fn the_cm_filter_probe_reads() {
        let p = parse_probe(CM_FILTER).unwrap();
        assert!(p.while_loaded.len() >= 3);
        let blocked = p
            .while_loaded
            .iter()
            .find(|c| matches!(&c.kind, Kind::Registry { value, .. } if value == "Blocked"))
            .unwrap();
        assert!(matches!(
            &blocked.kind,
            Kind::Registry { op: RegOp::SetValue, hive: "LocalMachine", path, allowed: false, .. }
                if path == "SOFTWARE\\CmFilterSample"
        ));
        assert!(!p.after_unload.is_empty());
    }

    #[test]
    fn every_driver_probe_in_the_workspace_reads() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for d in std::fs::read_dir(&root).unwrap() {
            let dir = d.unwrap().path();
            if dir.join(FILE).is_file() {
                load(&dir).unwrap();
            }
        }
    }

    #[test]
    fn no_file_means_running_for_the_default_settle_time() {
        let p = load(Path::new("/nonexistent")).unwrap();
        assert_eq!(p, Probe::default());
        assert_eq!(p.settle, DEFAULT_SETTLE);
    }

    #[test]
    fn mistakes_are_named() {
        let err = |s: &str| parse_probe(s).unwrap_err().to_string();
        assert!(err("setle = 3").contains("unknown key `setle`"));
        assert!(err("settle = -1").contains("0 to 600"));
        assert!(err("[[while-loaded]]\nregistry = \"set-value\"").contains("`name` is missing"));
        assert!(
            err("[[while-loaded]]\nname = \"x\"\nregistry = \"set-value\"\nkey = 'HKLM\\A'\nvalue = \"v\"\nexpect = \"refused\"")
                .contains("\"allowed\" or \"denied\"")
        );
        assert!(
            err("[[while-loaded]]\nname = \"x\"\nregistry = \"create-key\"\nkey = 'HKCR\\A'\nexpect = \"allowed\"")
                .contains("HKLM\\ or HKCU\\")
        );
        assert!(
            err("[[after-unload]]\nname = \"x\"\ncommand = \"a\"\nwfp = \"filters\"")
                .contains("exactly one of")
        );
        assert!(
            err("[[after-unload]]\nname = \"x\"\nwfp = \"filters\"\nexpect = \"absent\"")
                .contains("at least one of")
        );
        let e = err("[[after-unload]]\nname = \"x\"\ncommand = \"a\"\nexpct = 1");
        assert!(
            e.contains("[[after-unload]] number 1: unknown key `expct`"),
            "{e}"
        );
        assert!(err("settle = ").contains("line 1"), "{}", err("settle = "));
    }

    fn sections(s: &str) -> Sections {
        Sections::parse(s)
    }

    #[test]
    fn registry_checks_are_judged_by_outcome() {
        let p = parse_probe(CM_FILTER).unwrap();
        let blocked = p
            .while_loaded
            .iter()
            .find(|c| matches!(&c.kind, Kind::Registry { allowed: false, .. }))
            .unwrap();
        assert_eq!(
            args(blocked),
            [
                ("Kind", Arg::str("registry")),
                ("Op", Arg::str("set-value")),
                ("Hive", Arg::str("LocalMachine")),
                ("Path", Arg::str("SOFTWARE\\CmFilterSample")),
                ("Value", Arg::str("Blocked")),
                ("Data", Arg::str("no")),
            ]
        );
        let v = judge(
            blocked,
            &sections("#xtask:section check-1\ndenied\n"),
            "check-1",
        );
        assert!(v.ok, "{v:?}");
        let v = judge(
            blocked,
            &sections("#xtask:section check-1\nallowed\n"),
            "check-1",
        );
        assert_eq!((v.ok, v.observed.as_str()), (false, "allowed"));
        let v = judge(
            blocked,
            &sections("#xtask:section check-1\nerror 0x80070002 not found\n"),
            "check-1",
        );
        assert_eq!(
            (v.ok, v.observed.as_str()),
            (false, "failed otherwise: 0x80070002 not found")
        );
        let v = judge(blocked, &sections(""), "check-1");
        assert!(!v.ok && v.observed.starts_with("unreadable"), "{v:?}");
    }

    #[test]
    fn wfp_checks_read_the_filter_list() {
        let p = parse_probe(
            "[[while-loaded]]\nname = \"ours\"\nwfp = \"filters\"\n\
             filter-names = [\"wfp-callout sample: inspect outbound IPv4 connections\"]\n\
             callout-keys = [\"{0a3f5b2e-9a41-4a4b-b2a5-6a7d1e0c0003}\"]\nexpect = \"present\"\n\
             [[after-unload]]\nname = \"gone\"\nwfp = \"filters\"\n\
             callout-keys = [\"0A3F5B2E-9A41-4A4B-B2A5-6A7D1E0C0003\"]\nexpect = \"absent\"\n",
        )
        .unwrap();
        let xml = include_str!("samples/netsh-wfp-filters.xml");
        let out = sections(&format!("#xtask:section c exit=0\n{xml}"));
        let v = judge(&p.while_loaded[0], &out, "c");
        assert!(v.ok, "{v:?}");
        let v = judge(&p.after_unload[0], &out, "c");
        assert!(!v.ok && v.observed.contains("present: callout"), "{v:?}");
        let empty =
            sections("#xtask:section c exit=0\n<wfpdiag><filters numItems=\"0\"/></wfpdiag>");
        assert!(judge(&p.after_unload[0], &empty, "c").ok);
        let v = judge(&p.while_loaded[0], &empty, "c");
        assert!(!v.ok && v.observed.starts_with("absent: filter"), "{v:?}");
        let failed = sections("#xtask:section c exit=1\nThe following command was not found");
        assert!(!judge(&p.after_unload[0], &failed, "c").ok);
        assert_eq!(
            args(&p.while_loaded[0])[2],
            ("Keys", Arg::list(&["0A3F5B2E-9A41-4A4B-B2A5-6A7D1E0C0003"]))
        );
    }

    #[test]
    fn command_checks_compare_the_exit_code() {
        let p =
            parse_probe("[[after-unload]]\nname = \"x\"\ncommand = \"exit 3\"\nexpect-exit = 3\n")
                .unwrap();
        let c = &p.after_unload[0];
        assert!(judge(c, &sections("#xtask:section k exit=3\n"), "k").ok);
        let v = judge(c, &sections("#xtask:section k exit=0\nout\n"), "k");
        assert_eq!((v.ok, v.observed.as_str()), (false, "exit code 0: out"));
        let Some(("Encoded", Arg::Str(b64))) = args(c).pop() else {
            panic!("a command check passes its command encoded")
        };
        let command = ps::decode(&b64).unwrap();
        assert!(command.ends_with("\nexit 3\n"), "{command}");
    }
}
