//! Reading what the VM answered: the sections our scripts write, and the outputs of the Windows
//! tools the steps run (`sc query`, `bcdedit /enum`, `certutil -store`, `netsh wfp show filters`).
//!
//! The rule for every parser: an output it does not recognise is an error that quotes it, never a
//! guess. A guess that test signing is on, or that a service stopped, would make the report lie.
//! Where Windows localises an output, the parsers read what is not localised (numbers, element
//! names, hashes) and the recorded samples in `samples/` say which parts are assumptions.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::error::{Error, Result, bail};

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

/// A service state, as `sc query` numbers it (SERVICE_STOPPED = 1 ... SERVICE_PAUSED = 7).
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
    fn from_code(code: u32) -> Option<Self> {
        Some(match code {
            1 => State::Stopped,
            2 => State::StartPending,
            3 => State::StopPending,
            4 => State::Running,
            5 => State::ContinuePending,
            6 => State::PausePending,
            7 => State::Paused,
            _ => return None,
        })
    }

    /// The name `sc query` prints.
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

/// What `sc query NAME` said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScQuery {
    /// The service does not exist (error 1060, ERROR_SERVICE_DOES_NOT_EXIST).
    Missing,
    /// The service and its status.
    Service {
        /// `TYPE` (1 = SERVICE_KERNEL_DRIVER).
        kind: u32,
        /// `STATE`.
        state: State,
        /// `WIN32_EXIT_CODE`.
        win32_exit: u32,
        /// `SERVICE_EXIT_CODE`.
        service_exit: u32,
    },
}

/// ERROR_SERVICE_DOES_NOT_EXIST.
pub const ERROR_SERVICE_DOES_NOT_EXIST: i32 = 1060;

/// ERROR_SERVICE_NOT_ACTIVE (`sc stop` of a stopped service).
pub const ERROR_SERVICE_NOT_ACTIVE: i32 = 1062;

/// Reads `sc query NAME` (`exit` is sc.exe's exit code). The field names (`TYPE`, `STATE`,
/// `WIN32_EXIT_CODE`, `SERVICE_EXIT_CODE`) and the numbers before the symbolic names are what
/// is read; the words after the numbers and the error texts may be localised.
pub fn sc_query(text: &str, exit: Option<i32>) -> Result<ScQuery> {
    if exit == Some(ERROR_SERVICE_DOES_NOT_EXIST) || text.contains("FAILED 1060") {
        return Ok(ScQuery::Missing);
    }
    let field = |name: &str| -> Option<&str> {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name).then(|| v.trim())
        })
    };
    let number = |name: &str| -> Result<u32> {
        let Some(v) = field(name) else {
            bail!("`sc query` output has no {name} line:\n{}", text.trim_end())
        };
        let digits: String = v.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().map_err(|_| {
            Error::new(format!(
                "`sc query`: {name} is `{v}`, not a number:\n{}",
                text.trim_end()
            ))
        })
    };
    if exit.is_some_and(|e| e != 0) {
        bail!(
            "`sc query` failed with exit code {}:\n{}",
            exit.unwrap_or_default(),
            text.trim_end()
        );
    }
    let code = number("STATE")?;
    let Some(state) = State::from_code(code) else {
        bail!(
            "`sc query`: STATE {code} is not a service state:\n{}",
            text.trim_end()
        )
    };
    Ok(ScQuery::Service {
        kind: number("TYPE")?,
        state,
        win32_exit: number("WIN32_EXIT_CODE")?,
        service_exit: number("SERVICE_EXIT_CODE")?,
    })
}

/// `testsigning` in the `{current}` boot entry, as `bcdedit /enum {current}` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestSigning {
    /// `testsigning Yes`.
    On,
    /// `testsigning No`, or no such line (the element is absent: off).
    Off,
}

/// Words bcdedit prints for booleans, by display language. English is documented; the others
/// are assumptions (bcdedit localises the values; the element names stay English). A word not
/// in this table is an error, not a guess.
const YES_NO: &[(&str, bool)] = &[
    ("yes", true),
    ("no", false),
    ("ja", true),
    ("nein", false),
    ("oui", true),
    ("non", false),
    ("sí", true),
    ("si", true),
    ("sim", true),
    ("não", false),
    ("nee", false),
    ("nej", false),
    ("nei", false),
    ("да", true),
    ("нет", false),
    ("tak", true),
    ("nie", false),
];

/// Reads `bcdedit /enum {current}`: the entry must be there (a line of dashes under its title
/// and an identifier line with `{current}`), then `testsigning` is On, Off, or an error.
pub fn bcdedit_testsigning(text: &str, exit: Option<i32>) -> Result<TestSigning> {
    if exit.is_some_and(|e| e != 0) {
        bail!(
            "`bcdedit /enum {{current}}` failed (exit code {}): {}",
            exit.unwrap_or_default(),
            text.trim()
        );
    }
    let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
    let has_title = lines
        .iter()
        .any(|l| l.len() >= 3 && l.chars().all(|c| c == '-'));
    let has_current = lines.iter().any(|l| {
        let mut words = l.split_whitespace();
        words.next().is_some() && words.next() == Some("{current}") && words.next().is_none()
    });
    if !has_title || !has_current {
        bail!(
            "`bcdedit /enum {{current}}` printed no boot entry I can read:\n{}",
            text.trim_end()
        );
    }
    for l in &lines {
        let mut words = l.split_whitespace();
        if words
            .next()
            .is_some_and(|k| k.eq_ignore_ascii_case("testsigning"))
        {
            let value: Vec<&str> = words.collect();
            let word = value.join(" ").to_lowercase();
            return match YES_NO.iter().find(|(w, _)| *w == word) {
                Some((_, true)) => Ok(TestSigning::On),
                Some((_, false)) => Ok(TestSigning::Off),
                None => bail!(
                    "`bcdedit`: testsigning is `{}`, a word I do not know for yes or no; check \
                     with `bcdedit /enum {{current}}` on the VM",
                    value.join(" ")
                ),
            };
        }
    }
    Ok(TestSigning::Off)
}

/// One certificate in a `certutil -store` listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCert {
    /// Its SHA-1 thumbprint, upper-case hex.
    pub sha1: String,
    /// The `Subject:` line, when there is one (English only; informative).
    pub subject: Option<String>,
}

/// Reads `certutil -store STORE`: one block per certificate, each opened by a line of `=` around
/// its title (`================ Certificate 0 ================`, localised) and holding a line
/// `...(sha1): <hex>` (hex with or without spaces; the label before `(sha1)` is localised). A
/// block without such a line is an error. No block at all is an empty store: if that were a
/// misread, the thumbprint we look for would be missing, which fails the step, never passes it.
pub fn certutil_store(text: &str, exit: Option<i32>) -> Result<Vec<StoredCert>> {
    if exit.is_some_and(|e| e != 0) {
        bail!(
            "`certutil -store` failed (exit code {}):\n{}",
            exit.unwrap_or_default(),
            text.trim_end()
        );
    }
    let mut certs: Vec<StoredCert> = Vec::new();
    let mut in_block = false;
    let mut current: Option<StoredCert> = None;
    let finish = |cur: &mut Option<StoredCert>, in_block: bool, out: &mut Vec<StoredCert>| {
        if !in_block {
            return Ok(());
        }
        match cur.take() {
            Some(c) => {
                out.push(c);
                Ok(())
            }
            None => Err(Error::new(format!(
                "`certutil -store`: certificate {} has no `Cert Hash(sha1)` line:\n{}",
                out.len(),
                text.trim_end()
            ))),
        }
    };
    for line in text.lines().map(|l| l.trim_end_matches('\r').trim()) {
        if line.starts_with("====") && line.ends_with("====") && line.len() > 8 {
            finish(&mut current, in_block, &mut certs)?;
            in_block = true;
            continue;
        }
        if !in_block {
            continue;
        }
        if let Some(subject) = line.strip_prefix("Subject:") {
            if let Some(c) = current.as_mut() {
                c.subject.get_or_insert_with(|| subject.trim().to_owned());
            } else {
                current = Some(StoredCert {
                    sha1: String::new(),
                    subject: Some(subject.trim().to_owned()),
                });
            }
        } else if let Some((label, value)) = line.split_once(':')
            && label.to_ascii_lowercase().ends_with("(sha1)")
        {
            let hex: String = value.chars().filter(|c| !c.is_whitespace()).collect();
            if hex.len() != 40 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                bail!("`certutil -store`: `{line}` does not hold a SHA-1 hash");
            }
            let c = current.get_or_insert_with(|| StoredCert {
                sha1: String::new(),
                subject: None,
            });
            c.sha1 = hex.to_ascii_uppercase();
        }
    }
    if current.as_ref().is_some_and(|c| c.sha1.is_empty()) {
        current = None;
    }
    finish(&mut current, in_block, &mut certs)?;
    Ok(certs)
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

/// One Service Control Manager event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// When (UTC, ISO 8601, the VM's clock).
    pub time: String,
    /// The event ID (7036 state change, 7045 installed, 7000/7026 failed to load, ...).
    pub id: u64,
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

    // sc.exe's output format: learn.microsoft.com windows-commands/sc-query shows the field
    // layout. Assumption: the field names stay English on localised Windows (the sample with
    // translated names must be refused, not read).
    #[test]
    fn sc_query_reads_the_numbers() {
        assert_eq!(
            sc_query(sample!("sc-query-running.txt"), Some(0)).unwrap(),
            ScQuery::Service {
                kind: 1,
                state: State::Running,
                win32_exit: 0,
                service_exit: 0
            }
        );
        assert_eq!(
            sc_query(sample!("sc-query-stopped-never-started.txt"), Some(0)).unwrap(),
            ScQuery::Service {
                kind: 1,
                state: State::Stopped,
                win32_exit: 1077,
                service_exit: 0
            }
        );
        assert_eq!(
            sc_query(sample!("sc-query-missing.txt"), Some(1060)).unwrap(),
            ScQuery::Missing
        );
        // The exit code alone says it (the message is localised).
        assert_eq!(
            sc_query("[SC] OpenService FEHLER 1060:", Some(1060)).unwrap(),
            ScQuery::Missing
        );
    }

    #[test]
    fn sc_query_refuses_what_it_cannot_read() {
        let e = sc_query(sample!("sc-query-localised-keys.txt"), Some(0))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no STATE line"), "{e}");
        let e = sc_query("STATE : 9 WEIRD\nTYPE : 1", Some(0))
            .unwrap_err()
            .to_string();
        assert!(e.contains("STATE 9 is not a service state"), "{e}");
        let e = sc_query("STATE : RUNNING", Some(0))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a number"), "{e}");
        let e = sc_query("[SC] OpenSCManager FAILED 5:\n\nAccess is denied.", Some(5))
            .unwrap_err()
            .to_string();
        assert!(e.contains("exit code 5"), "{e}");
    }

    // bcdedit's layout: learn.microsoft.com bcdedit /enum. Assumptions: element names
    // (`testsigning`) stay English when the display language is not, the values are localised
    // words (German `Ja`, from user reports), and an absent element means off (its default).
    #[test]
    fn bcdedit_reads_testsigning() {
        let on = bcdedit_testsigning(sample!("bcdedit-testsigning-on.txt"), Some(0));
        assert_eq!(on.unwrap(), TestSigning::On);
        let absent = bcdedit_testsigning(sample!("bcdedit-testsigning-absent.txt"), Some(0));
        assert_eq!(absent.unwrap(), TestSigning::Off);
        let german = bcdedit_testsigning(sample!("bcdedit-german.txt"), Some(0));
        assert_eq!(german.unwrap(), TestSigning::On);
        let off = sample!("bcdedit-testsigning-on.txt")
            .replace("testsigning             Yes", "testsigning             No");
        assert_eq!(
            bcdedit_testsigning(&off, Some(0)).unwrap(),
            TestSigning::Off
        );
    }

    #[test]
    fn bcdedit_refuses_to_guess() {
        let e = bcdedit_testsigning(sample!("bcdedit-unknown-word.txt"), Some(0))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`Peut-être`, a word I do not know"), "{e}");
        let e = bcdedit_testsigning(sample!("bcdedit-access-denied.txt"), Some(1))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("exit code 1") && e.contains("Access is denied"),
            "{e}"
        );
        // Exit code 0 but not an entry: not "off".
        let e = bcdedit_testsigning("something else entirely", Some(0))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no boot entry"), "{e}");
    }

    // certutil -store's layout: learn.microsoft.com windows-commands/certutil and its usual
    // output. Assumptions: the `(sha1)` label survives localisation (German sample), Windows 7
    // era output spaces the hex.
    #[test]
    fn certutil_lists_thumbprints() {
        let root = certutil_store(sample!("certutil-root.txt"), Some(0)).unwrap();
        let thumbs: Vec<&str> = root.iter().map(|c| c.sha1.as_str()).collect();
        assert_eq!(
            thumbs,
            [
                "CDD4EEAE6000AC7F40C3802C171E30148030C072",
                "34AD27DCCAAC93ADCE84B84DB07823E8F1570848"
            ]
        );
        assert!(
            root[1]
                .subject
                .as_deref()
                .unwrap()
                .contains("Test Signing — not for production")
        );
        let old = certutil_store(sample!("certutil-old-spaced-hash.txt"), Some(0)).unwrap();
        assert_eq!(old[0].sha1, "34AD27DCCAAC93ADCE84B84DB07823E8F1570848");
        let german = certutil_store(sample!("certutil-german.txt"), Some(0)).unwrap();
        assert_eq!(german[0].sha1, "34AD27DCCAAC93ADCE84B84DB07823E8F1570848");
        assert!(
            certutil_store(sample!("certutil-empty.txt"), Some(0))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn certutil_refuses_to_guess() {
        let e = certutil_store(sample!("certutil-block-without-hash.txt"), Some(0))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("certificate 0 has no `Cert Hash(sha1)` line"),
            "{e}"
        );
        let e = certutil_store(
            "CertUtil: -store command FAILED: 0x80070005 (WIN32: 5 ERROR_ACCESS_DENIED)",
            Some(-2_147_024_891),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("ERROR_ACCESS_DENIED"), "{e}");
        let e = certutil_store("==== Certificate 0 ====\nCert Hash(sha1): 12 34", Some(0))
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not hold a SHA-1 hash"), "{e}");
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
