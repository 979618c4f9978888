//! Reading what the VM answered: the sections our scripts write, and the one tool output the
//! steps read (`netsh wfp show filters`, an XML document).
//!
//! The rule for every parser: an output it does not recognise is an error that quotes it, never a
//! guess. A guess that test signing is on, or that a service stopped, would make the report lie.
//! Nothing the display language changes is read: service state and exit codes come from
//! Win32_SystemDriver (fixed state names and numbers), test signing from the registry's
//! SystemStartOptions and the BCD WMI provider, the trusted certificate from the `Cert:` drive,
//! programs' results from their exit codes. Localised text (event messages, a program's error
//! message) is only quoted in the report. The tests feed the parsers what German, French,
//! Japanese and Turkish systems print, and localised words where a fixed value belongs, which
//! must be refused.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::base::error::{Error, Result, bail};

/// One section of a script's output: `#xtask:section NAME [exit=N]` and the lines up to the next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    /// Its name.
    pub name: String,
    /// The exit code of the program the section shows, when it ran one.
    pub exit: Option<i32>,
    /// The lines, joined with `\n` (CRs removed).
    pub body: String,
}

/// A script's stdout, split into sections; `#xtask:note` lines are collected apart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sections {
    /// The sections, in order.
    pub list: Vec<Section>,
    /// The notes, in order.
    pub notes: Vec<String>,
    /// What came before the first section.
    pub preamble: String,
}

impl Sections {
    /// Splits `stdout`.
    pub fn parse(stdout: &str) -> Self {
        let mut out = Sections::default();
        for line in stdout.lines() {
            let line = line.trim_end_matches('\r');
            if let Some(note) = line.strip_prefix("#xtask:note ") {
                out.notes.push(note.to_owned());
            } else if let Some(head) = line.strip_prefix("#xtask:section ") {
                let (name, exit) = match head.rsplit_once(" exit=") {
                    Some((n, e)) => (n, e.trim().parse().ok()),
                    None => (head, None),
                };
                out.list.push(Section {
                    name: name.trim().to_owned(),
                    exit,
                    body: String::new(),
                });
            } else {
                let body = match out.list.last_mut() {
                    Some(s) => &mut s.body,
                    None => &mut out.preamble,
                };
                if !body.is_empty() {
                    body.push('\n');
                }
                body.push_str(line);
            }
        }
        for s in &mut out.list {
            let trimmed = s.body.trim_end_matches('\n').len();
            s.body.truncate(trimmed);
        }
        out
    }

    /// The first section called `name`.
    pub fn get(&self, name: &str) -> Option<&Section> {
        self.list.iter().find(|s| s.name == name)
    }

    /// The first section called `name`, or an error saying it is missing.
    pub fn need(&self, name: &str) -> Result<&Section> {
        self.get(name).ok_or_else(|| {
            Error::new(format!(
                "the VM's answer has no `{name}` section (the script stopped early?)"
            ))
        })
    }

    /// The trimmed body of section `name`.
    pub fn value(&self, name: &str) -> Result<&str> {
        Ok(self.need(name)?.body.trim())
    }
}

/// A service state (SERVICE_STOPPED ... SERVICE_PAUSED).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// 1
    Stopped,
    /// 2
    StartPending,
    /// 3
    StopPending,
    /// 4
    Running,
    /// 5
    ContinuePending,
    /// 6
    PausePending,
    /// 7
    Paused,
}

impl State {
    /// The name, as `sc query` prints it.
    pub fn name(self) -> &'static str {
        match self {
            State::Stopped => "STOPPED",
            State::StartPending => "START_PENDING",
            State::StopPending => "STOP_PENDING",
            State::Running => "RUNNING",
            State::ContinuePending => "CONTINUE_PENDING",
            State::PausePending => "PAUSE_PENDING",
            State::Paused => "PAUSED",
        }
    }
}

/// A kernel service's status, as section `service` of [`HELPERS`](super::plan::HELPERS) writes
/// it from Win32_SystemDriver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceStatus {
    /// There is no such service.
    Missing,
    /// The service and its status.
    Present {
        /// `State`.
        state: State,
        /// `ExitCode` (the service's Win32 exit code).
        win32_exit: u32,
        /// `ServiceSpecificExitCode`.
        service_exit: u32,
    },
}

/// ERROR_SERVICE_NOT_ACTIVE (`sc stop` of a stopped service).
pub const ERROR_SERVICE_NOT_ACTIVE: i32 = 1062;

/// Reads section `service`: `missing`, or `{"State":"Running","ExitCode":0,
/// "ServiceSpecificExitCode":0}`. State is one of Win32_SystemDriver's fixed values
/// (https://learn.microsoft.com/windows/win32/cimwin32prov/win32-systemdriver), the same in every
/// display language; anything else, `Unknown` included, is an error.
pub fn service(body: &str) -> Result<ServiceStatus> {
    let body = body.trim();
    if body == "missing" {
        return Ok(ServiceStatus::Missing);
    }
    let v: Value = serde_json::from_str(body).map_err(|e| {
        Error::new(format!(
            "the service status is not `missing` or JSON ({e}): {body}"
        ))
    })?;
    let number = |k: &str| -> Result<u32> {
        v.get(k)
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| Error::new(format!("the service status has no number {k}: {body}")))
    };
    let name = v.get("State").and_then(Value::as_str).unwrap_or_default();
    let state = match name {
        "Stopped" => State::Stopped,
        "Start Pending" => State::StartPending,
        "Stop Pending" => State::StopPending,
        "Running" => State::Running,
        "Continue Pending" => State::ContinuePending,
        "Pause Pending" => State::PausePending,
        "Paused" => State::Paused,
        _ => bail!(
            "the service's State is `{name}`, not one of Win32_SystemDriver's values (Stopped, \
             Running, ...): {body}"
        ),
    };
    Ok(ServiceStatus::Present {
        state,
        win32_exit: number("ExitCode")?,
        service_exit: number("ServiceSpecificExitCode")?,
    })
}

/// `testsigning` in the `{current}` boot entry, as the BCD WMI provider reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestSigning {
    /// The element is true.
    On,
    /// The element is false, or absent (its default: off).
    Off,
}

/// Reads section `bcd-testsigning`: `True`, `False` (PowerShell's culture-invariant text of a
/// boolean), `absent`, or `error ...` (the provider could not be read), which is an error.
pub fn bcd_testsigning(body: &str) -> Result<TestSigning> {
    match body.trim() {
        "True" => Ok(TestSigning::On),
        "False" | "absent" => Ok(TestSigning::Off),
        other => bail!(
            "the boot configuration could not be read through the BCD WMI provider ({other}); \
             check it on the VM with `bcdedit /enum {{current}}`"
        ),
    }
}

/// What section `modules-check` says of the loaded-module list: entries, distinct addresses, and
/// the result of enabling SeDebugPrivilege (0, or a Win32 error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModulesCheck {
    /// Entries.
    pub entries: usize,
    /// Distinct base addresses.
    pub distinct: usize,
    /// AdjustTokenPrivileges' result (1300: ERROR_NOT_ALL_ASSIGNED, the token lacks it).
    pub privilege: i64,
}

/// Reads `entries=N distinct=D debug-privilege=P`, and refuses a list whose addresses repeat:
/// the kernel zeroes them for a caller without SeDebugPrivilege enabled (Windows 11 24H2, Server
/// 2025), and every name would then be the kernel's.
pub fn modules_check(body: &str) -> Result<ModulesCheck> {
    let field = |k: &str| -> Option<i64> {
        body.split_whitespace()
            .find_map(|w| w.strip_prefix(k)?.strip_prefix('=')?.parse().ok())
    };
    let (Some(entries), Some(distinct), Some(privilege)) = (
        field("entries"),
        field("distinct"),
        field("debug-privilege"),
    ) else {
        bail!("the loaded-module check is unreadable: `{}`", body.trim());
    };
    let c = ModulesCheck {
        entries: usize::try_from(entries).unwrap_or(0),
        distinct: usize::try_from(distinct).unwrap_or(0),
        privilege,
    };
    if c.entries == 0 || c.distinct < c.entries {
        bail!(
            "the kernel hid the loaded modules' addresses ({} entries, {} distinct addresses; \
             enabling SeDebugPrivilege gave {}): from Windows 11 24H2 and Server 2025 it gives \
             them only to a token with SeDebugPrivilege enabled. Deploy with an account of the \
             Administrators group, elevated, whose token holds SeDebugPrivilege (the default; \
             `whoami /priv` lists it)",
            c.entries,
            c.distinct,
            c.privilege
        );
    }
    Ok(c)
}

/// One filter of `netsh wfp show filters`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WfpFilter {
    /// `filterKey`.
    pub key: String,
    /// `displayData/name`.
    pub name: String,
    /// `providerKey` (a GUID or a symbolic name).
    pub provider: String,
    /// `layerKey`.
    pub layer: String,
    /// `action/type`.
    pub action: String,
    /// `action/calloutKey`, for callout actions.
    pub callout: String,
    /// `filterId`.
    pub id: Option<u64>,
}

/// Reads the XML `netsh wfp show filters` writes: `<wfpdiag><filters><item>...`, each item a
/// FWPM_FILTER0 with element names of the structure's fields. The element names are the
/// documented field names; the exact nesting is an assumption recorded in
/// `samples/netsh-wfp-filters.xml`. GUIDs are compared upper-case without braces.
pub fn wfp_filters(xml: &str) -> Result<Vec<WfpFilter>> {
    let start = xml.find('<').unwrap_or(0);
    let doc = roxmltree::Document::parse(&xml[start..])
        .map_err(|e| Error::new(format!("`netsh wfp show filters` output is not XML: {e}")))?;
    let Some(filters) = doc.descendants().find(|n| n.has_tag_name("filters")) else {
        bail!("`netsh wfp show filters` output has no <filters> element");
    };
    let text = |n: roxmltree::Node<'_, '_>, path: &[&str]| -> String {
        let mut node = Some(n);
        for p in path {
            node = node.and_then(|n| n.children().find(|c| c.has_tag_name(*p)));
        }
        node.and_then(|n| n.text())
            .map(|t| t.trim().to_owned())
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for item in filters.children().filter(|c| c.has_tag_name("item")) {
        let f = WfpFilter {
            key: text(item, &["filterKey"]),
            name: text(item, &["displayData", "name"]),
            provider: text(item, &["providerKey"]),
            layer: text(item, &["layerKey"]),
            action: text(item, &["action", "type"]),
            callout: text(item, &["action", "calloutKey"]),
            id: text(item, &["filterId"]).parse().ok(),
        };
        if f.key.is_empty() {
            bail!("`netsh wfp show filters`: a filter item without a filterKey");
        }
        out.push(f);
    }
    if let Some(n) = filters
        .attribute("numItems")
        .and_then(|n| n.parse::<usize>().ok())
        && n != out.len()
    {
        bail!(
            "`netsh wfp show filters`: numItems says {n} filters, the document has {}",
            out.len()
        );
    }
    Ok(out)
}

/// A GUID as compared: upper-case, without braces.
pub fn guid(s: &str) -> String {
    s.trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .to_ascii_uppercase()
}

/// The loaded kernel modules a script listed (one base name per line), lower-case.
pub fn modules(body: &str) -> Result<BTreeSet<String>> {
    let set: BTreeSet<String> = body
        .lines()
        .map(|l| l.trim().to_lowercase())
        .filter(|l| !l.is_empty())
        .collect();
    // Every Windows system has the kernel in its list: an empty or foreign list is a failed read.
    if !set
        .iter()
        .any(|m| m.starts_with("ntoskrnl") || m.starts_with("ntkrnl"))
    {
        bail!("the list of loaded kernel modules has no ntoskrnl.exe: it was not read");
    }
    Ok(set)
}

/// `SHA256HASH NAME` lines (Get-FileHash) into (name, upper-case hash) pairs.
pub fn hashes(body: &str) -> Result<Vec<(String, String)>> {
    body.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| match l.split_once(' ') {
            Some((h, n)) if h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()) => {
                Ok((n.trim().to_owned(), h.to_ascii_uppercase()))
            }
            _ => Err(Error::new(format!("`{l}` is not `SHA256 NAME`"))),
        })
        .collect()
}

/// What an operation probe observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It succeeded.
    Allowed,
    /// It failed with access denied (ERROR_ACCESS_DENIED / UnauthorizedAccessException).
    Denied,
    /// It failed otherwise: HRESULT and message.
    Error(String),
}

impl Outcome {
    /// Reads `allowed`, `denied` or `error 0xHHHHHHHH message`.
    pub fn parse(body: &str) -> Result<Self> {
        let body = body.trim();
        Ok(match body {
            "allowed" => Outcome::Allowed,
            "denied" => Outcome::Denied,
            _ => match body.strip_prefix("error ") {
                Some(e) => Outcome::Error(e.to_owned()),
                None => bail!("a probe answered `{body}`, not allowed/denied/error"),
            },
        })
    }
}

/// One event (Service Control Manager, Code Integrity, a bugcheck's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// When (UTC, ISO 8601, the VM's clock).
    pub time: String,
    /// The event ID (7036 state change, 7045 installed, 7000/7026 failed to load, ...).
    pub id: u64,
    /// The provider (Service Control Manager, Microsoft-Windows-CodeIntegrity, ...), if given.
    pub provider: String,
    /// 1 critical, 2 error, 3 warning, 4 information.
    pub level: u64,
    /// The message (localised).
    pub message: String,
}

/// Reads the events a script wrote with `ConvertTo-Json` (nothing, one object, or an array).
pub fn events(body: &str) -> Result<Vec<Event>> {
    let body = body.trim();
    if body.is_empty() {
        return Ok(Vec::new());
    }
    let v: Value = serde_json::from_str(body)
        .map_err(|e| Error::new(format!("the events are not JSON ({e}): {body}")))?;
    let items = match v {
        Value::Array(a) => a,
        o @ Value::Object(_) => vec![o],
        _ => bail!("the events are not a JSON object or array: {body}"),
    };
    items
        .iter()
        .map(|e| {
            let id = e.get("Id").and_then(Value::as_u64);
            let Some(id) = id else {
                bail!("an event without an Id: {e}")
            };
            Ok(Event {
                time: e
                    .get("Time")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                id,
                provider: e
                    .get("Provider")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                level: e.get("Level").and_then(Value::as_u64).unwrap_or(0),
                message: e
                    .get("Message")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .trim()
                    .to_owned(),
            })
        })
        .collect()
}

/// What a Win32 error code from `sc start`/`sc stop`/`sc create` most likely means for a test
/// driver, and what to do.
pub fn win32_hint(code: i32) -> Option<&'static str> {
    Some(match code {
        2 => "ERROR_FILE_NOT_FOUND: the image is not where the service points (the copy failed?)",
        5 => "ERROR_ACCESS_DENIED: the account is not an administrator, or its token is filtered",
        31 => "ERROR_GEN_FAILURE: DriverEntry returned an error (see the driver's DbgPrint output)",
        87 => "ERROR_INVALID_PARAMETER: for a KMDF driver, often a KMDF version newer than the OS",
        577 => {
            "ERROR_INVALID_IMAGE_HASH: Windows cannot verify the signature: test signing off \
             (bcdedit /set testsigning on, reboot), the test certificate not trusted, or memory \
             integrity refusing the image"
        }
        1052 => {
            "ERROR_INVALID_SERVICE_CONTROL: the driver cannot be stopped: it set no DriverUnload"
        }
        1056 => "ERROR_SERVICE_ALREADY_RUNNING: an earlier deploy left it loaded",
        1058 => "ERROR_SERVICE_DISABLED: the service is disabled",
        1060 => "ERROR_SERVICE_DOES_NOT_EXIST: the service is not installed",
        1061 => "ERROR_SERVICE_CANNOT_ACCEPT_CTRL: the service is starting or stopping",
        1062 => "ERROR_SERVICE_NOT_ACTIVE: the service is not running",
        1072 => {
            "ERROR_SERVICE_MARKED_FOR_DELETE: an earlier service of this name is still loaded; \
             reboot the VM or revert it to a snapshot"
        }
        1073 => "ERROR_SERVICE_EXISTS: a service of this name exists already",
        1275 => "ERROR_DRIVER_BLOCKED: the driver is blocked (vulnerable driver blocklist, HVCI)",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! sample {
        ($f:literal) => {
            include_str!(concat!("samples/", $f))
        };
    }

    #[test]
    fn sections_split_the_output_and_keep_notes_apart() {
        let out = "hello\r\n#xtask:section admin\r\nTrue\r\n#xtask:note added to Root\r\n\
                   #xtask:section sc-query exit=1060\r\n[SC] FAILED 1060:\r\n\r\n#xtask:section empty\r\n";
        let s = Sections::parse(out);
        assert_eq!(s.preamble, "hello");
        assert_eq!(s.notes, ["added to Root"]);
        assert_eq!(s.value("admin").unwrap(), "True");
        let q = s.need("sc-query").unwrap();
        assert_eq!((q.exit, q.body.as_str()), (Some(1060), "[SC] FAILED 1060:"));
        assert_eq!(s.value("empty").unwrap(), "");
        assert!(
            s.need("arch")
                .unwrap_err()
                .to_string()
                .contains("no `arch` section")
        );
    }

    // The service status as Win32_SystemDriver gives it. Its State values are the class's fixed
    // strings in every display language; the samples below are what German, French, Japanese
    // and Turkish VMs print for our section (the localised DisplayName and Description are not
    // in it). A localised word where the fixed value belongs is refused, never guessed.
    #[test]
    fn service_status_reads_the_fixed_values_in_every_language() {
        for sample in [
            // German, French, Japanese, Turkish systems: the same fixed values.
            r#"{"State":"Running","ExitCode":0,"ServiceSpecificExitCode":0}"#,
            r#"{"State":"Running","ExitCode":0,"ServiceSpecificExitCode":0,"Caption":"Überwachung"}"#,
            r#"{"State":"Running","ExitCode":0,"ServiceSpecificExitCode":0,"Caption":"Pilote d'exemple"}"#,
            r#"{"State":"Running","ExitCode":0,"ServiceSpecificExitCode":0,"Caption":"サンプル ドライバー"}"#,
            r#"{"State":"Running","ExitCode":0,"ServiceSpecificExitCode":0,"Caption":"Örnek sürücü"}"#,
        ] {
            assert_eq!(
                service(sample).unwrap(),
                ServiceStatus::Present {
                    state: State::Running,
                    win32_exit: 0,
                    service_exit: 0
                },
                "{sample}"
            );
        }
        assert_eq!(
            service(r#"{"State":"Stopped","ExitCode":1077,"ServiceSpecificExitCode":0}"#).unwrap(),
            ServiceStatus::Present {
                state: State::Stopped,
                win32_exit: 1077,
                service_exit: 0
            }
        );
        assert_eq!(
            service(r#"{"State":"Stop Pending","ExitCode":0,"ServiceSpecificExitCode":0}"#)
                .unwrap(),
            ServiceStatus::Present {
                state: State::StopPending,
                win32_exit: 0,
                service_exit: 0
            }
        );
        assert_eq!(service("missing\r\n").unwrap(), ServiceStatus::Missing);
    }

    #[test]
    fn service_status_refuses_localised_or_unknown_states() {
        // What sc.exe or Get-Service's display would say in German, French, Japanese, Turkish.
        for word in [
            "Wird ausgeführt",
            "En cours d'exécution",
            "実行中",
            "Çalışıyor",
            "Unknown",
            "RUNNING",
        ] {
            let body = format!(r#"{{"State":"{word}","ExitCode":0,"ServiceSpecificExitCode":0}}"#);
            let e = service(&body).unwrap_err().to_string();
            assert!(e.contains("not one of Win32_SystemDriver's values"), "{e}");
        }
        assert!(service("SERVICE_NAME: CmFilter\n STATE : 4 RUNNING").is_err());
        assert!(service(r#"{"State":"Running"}"#).is_err());
        assert!(service("").is_err());
    }

    // The BCD WMI provider's boolean, printed with PowerShell's [string] of a bool (invariant).
    #[test]
    fn bcd_testsigning_reads_the_provider_and_refuses_errors() {
        assert_eq!(bcd_testsigning("True").unwrap(), TestSigning::On);
        assert_eq!(bcd_testsigning("False\r\n").unwrap(), TestSigning::Off);
        assert_eq!(bcd_testsigning("absent").unwrap(), TestSigning::Off);
        // bcdedit's localised words are not read any more: German `Ja`, French `Oui`, Japanese
        // `はい`, Turkish `Evet` would be refused, as is a provider error.
        for other in ["Ja", "Oui", "はい", "Evet", "Yes", "error Access denied"] {
            let e = bcd_testsigning(other).unwrap_err().to_string();
            assert!(e.contains("bcdedit /enum {current}"), "{e}");
        }
    }

    #[test]
    fn hidden_module_addresses_are_refused() {
        let c = modules_check("entries=180 distinct=180 debug-privilege=0").unwrap();
        assert_eq!((c.entries, c.distinct, c.privilege), (180, 180, 0));
        // 24H2 without SeDebugPrivilege: every base zero, every name the kernel's.
        let e = modules_check("entries=180 distinct=1 debug-privilege=1300")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("hid the loaded modules' addresses") && e.contains("1300"),
            "{e}"
        );
        assert!(modules_check("").is_err());
        assert!(modules_check("entries=0 distinct=0 debug-privilege=0").is_err());
    }

    // `netsh wfp show filters` writes filters.xml; the sample's nesting (wfpdiag/filters/item,
    // field elements named after FWPM_FILTER0's members, displayData/name, action/type and
    // action/calloutKey) is an assumption from the documented structure and third-party dumps.
    #[test]
    fn wfp_filters_are_read_from_the_xml() {
        let f = wfp_filters(sample!("netsh-wfp-filters.xml")).unwrap();
        assert_eq!(f.len(), 3);
        assert_eq!(
            f[1].name,
            "wfp-callout sample: inspect outbound IPv4 connections"
        );
        assert_eq!(guid(&f[1].callout), "0A3F5B2E-9A41-4A4B-B2A5-6A7D1E0C0003");
        assert_eq!(guid(&f[1].provider), "0A3F5B2E-9A41-4A4B-B2A5-6A7D1E0C0000");
        assert_eq!(f[1].id, Some(71234));
        assert_eq!(f[2].name, "Block & log <test>");
        assert_eq!(f[0].provider, "FWPM_PROVIDER_MPSSVC_WF");
    }

    #[test]
    fn wfp_refuses_what_is_not_a_filter_list() {
        assert!(
            wfp_filters("<wfpdiag><filters numItems=\"0\"/></wfpdiag>")
                .unwrap()
                .is_empty()
        );
        let e = wfp_filters("The following command was not found: wfp show filters.")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not XML"), "{e}");
        let e = wfp_filters("<wfpdiag><callouts/></wfpdiag>")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no <filters>"), "{e}");
        let e = wfp_filters("<wfpdiag><filters numItems=\"2\"><item><filterKey>{a}</filterKey></item></filters></wfpdiag>")
            .unwrap_err()
            .to_string();
        assert!(e.contains("numItems says 2"), "{e}");
    }

    #[test]
    fn modules_hashes_outcomes_and_events() {
        let m = modules("ntoskrnl.exe\r\nhal.dll\r\nCM-FILTER.SYS\r\n").unwrap();
        assert!(m.contains("cm-filter.sys"));
        assert!(modules("").is_err());
        let h = hashes(&format!("{} cm filter.sys\n", "ab".repeat(32))).unwrap();
        assert_eq!(h, [("cm filter.sys".to_owned(), "AB".repeat(32))]);
        assert!(hashes("nothing").is_err());
        assert_eq!(Outcome::parse("denied\n").unwrap(), Outcome::Denied);
        assert_eq!(
            Outcome::parse("error 0x80070002 The system cannot find the file").unwrap(),
            Outcome::Error("0x80070002 The system cannot find the file".into())
        );
        assert!(Outcome::parse("maybe").is_err());
        assert!(events("").unwrap().is_empty());
        let one = events(r#"{"Time":"2026-05-01T10:00:00.0000000Z","Id":7045,"Level":4,"Message":"A service was installed in the system."}"#).unwrap();
        assert_eq!((one[0].id, one[0].level), (7045, 4));
        let two = events(r#"[{"Time":"t","Id":7036,"Level":4,"Message":"m"},{"Time":"t","Id":7000,"Level":2,"Message":"failed"}]"#).unwrap();
        assert_eq!(two.len(), 2);
        assert!(events("[1]").is_err());
        assert!(events("<xml/>").is_err());
        assert!(win32_hint(577).unwrap().contains("test signing"));
    }
}
