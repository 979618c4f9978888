//! The steps' PowerShell: one `.ps1` file per step under `scripts/`, embedded here, each readable
//! and runnable by hand on a VM. A file starts with a header naming its step (`# xtask step:
//! NAME`, which the fake VM of the tests recognises a step by), says what it does and how to run
//! it by hand, and takes its parameters in a `param(...)` block.
//!
//! A step's script ([`Call::render`]) passes the parameters explicitly, by name: a hashtable
//! literal of quoted values, splatted into the file's text run as a script block:
//!
//! ```text
//! $xtaskArgs = @{ Service = 'CmFilter' }
//! & {
//! # xtask step: start
//! param([string]$Service)
//! ...
//! } @xtaskArgs
//! ```
//!
//! The text is sent without its comment lines, blank lines and indentation ([`compact`]): every
//! character counts 8/3 times against cmd.exe's command-line limit (`ps.rs`). No step uses a
//! here-string, where that would change the text (a test holds every file to it).

use std::fmt::Write as _;

use super::ps::quote;

/// The first line of every step file, before the step's name.
pub const HEADER: &str = "# xtask step: ";

/// The variable the parameters are given in.
const ARGS: &str = "$xtaskArgs";

/// One step file.
#[derive(Debug, PartialEq, Eq)]
pub struct Script {
    /// Its step's name (the file is `scripts/NAME.ps1`).
    pub name: &'static str,
    /// The file's text.
    pub text: &'static str,
}

macro_rules! script {
    ($name:literal) => {
        Script {
            name: $name,
            text: include_str!(concat!("scripts/", $name, ".ps1")),
        }
    };
}

/// The start of every guest script: `Say`, `Section`, `Note`, `Native`, `Run` (`prologue.ps1`).
pub const PROLOGUE_FILE: &str = include_str!("scripts/prologue.ps1");

/// Is the VM up (boot time, uptime).
pub const BOOT: Script = script!("boot");
/// Administrator, architecture, test signing, the remote folder.
pub const PREFLIGHT: Script = script!("preflight");
/// Test signing on, then a restart.
pub const ENABLE_TESTSIGNING: Script = script!("enable-testsigning");
/// What an earlier deploy left.
pub const LEFTOVERS: Script = script!("leftovers");
/// The SHA-256 of the copied files.
pub const CHECK_COPY: Script = script!("check-copy");
/// The test certificate trusted.
pub const TRUST: Script = script!("trust");
/// The copied folders removed.
pub const REMOVE_FILES: Script = script!("remove-files");
/// `sc.exe create` and the INF's service values.
pub const INSTALL_SC: Script = script!("install-sc");
/// `pnputil /add-driver`.
pub const INSTALL_INF: Script = script!("install-inf");
/// `sc.exe start`.
pub const START: Script = script!("start");
/// Running for a while; the checks while loaded.
pub const PROBE: Script = script!("probe");
/// `sc.exe stop`.
pub const STOP: Script = script!("stop");
/// Gone from the loaded modules; the checks after unload.
pub const UNLOADED: Script = script!("unloaded");
/// `sc.exe delete` (and the INF out of the driver store).
pub const REMOVE: Script = script!("remove");
/// Service Control Manager and Code Integrity events.
pub const EVENTS: Script = script!("events");
/// The deploy's trace session started (the drivers' ETW log).
pub const TRACE_START: Script = script!("trace-start");
/// The trace session stopped, its events decoded.
pub const TRACE_STOP: Script = script!("trace-stop");
/// Crash dumps and bugcheck events, once a VM that stopped answering is back.
pub const POST_MORTEM: Script = script!("post-mortem");
/// On the Hyper-V host: revert to a checkpoint.
pub const REVERT_HYPERV: Script = script!("revert-hyperv");
/// Driver Verifier on for our drivers (the previous settings saved).
pub const VERIFIER: Script = script!("verifier");
/// Driver Verifier's counters (`verifier /query`).
pub const VERIFIER_STATS: Script = script!("verifier-stats");
/// Driver Verifier's previous settings restored.
pub const VERIFIER_RESTORE: Script = script!("verifier-restore");
/// Network kernel debugging set up.
pub const KDNET: Script = script!("kdnet");

/// Every step file.
pub const ALL: [&Script; 23] = [
    &BOOT,
    &PREFLIGHT,
    &ENABLE_TESTSIGNING,
    &LEFTOVERS,
    &CHECK_COPY,
    &TRUST,
    &REMOVE_FILES,
    &INSTALL_SC,
    &INSTALL_INF,
    &START,
    &PROBE,
    &STOP,
    &UNLOADED,
    &REMOVE,
    &EVENTS,
    &TRACE_START,
    &TRACE_STOP,
    &POST_MORTEM,
    &REVERT_HYPERV,
    &VERIFIER,
    &VERIFIER_STATS,
    &VERIFIER_RESTORE,
    &KDNET,
];

/// A parameter's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arg {
    /// `'text'`.
    Str(String),
    /// `@('a', 'b')`.
    List(Vec<String>),
    /// `5`.
    Int(u64),
    /// `@(@{ K = V; ... }, ...)`: a list of tables (`[hashtable[]]`).
    Tables(Vec<Vec<(&'static str, Arg)>>),
}

impl Arg {
    /// `s` as a string.
    pub fn str(s: impl Into<String>) -> Self {
        Arg::Str(s.into())
    }

    /// `items` as a list of strings.
    pub fn list<S: AsRef<str>>(items: &[S]) -> Self {
        Arg::List(items.iter().map(|s| s.as_ref().to_owned()).collect())
    }

    fn render(&self) -> String {
        match self {
            Arg::Str(s) => quote(s),
            Arg::List(items) => super::ps::array(items),
            Arg::Int(n) => n.to_string(),
            Arg::Tables(tables) => {
                let t: Vec<String> = tables.iter().map(|t| table(t)).collect();
                format!("@({})", t.join(", "))
            }
        }
    }
}

/// `@{ K = V; ... }`.
fn table(entries: &[(&'static str, Arg)]) -> String {
    if entries.is_empty() {
        return "@{}".to_owned();
    }
    let e: Vec<String> = entries
        .iter()
        .map(|(k, v)| format!("{k} = {}", v.render()))
        .collect();
    format!("@{{ {} }}", e.join("; "))
}

/// A step file with its parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// The file.
    pub script: &'static Script,
    /// The parameters, by name, in the order written.
    pub args: Vec<(&'static str, Arg)>,
}

impl Call {
    /// `script` with no parameters yet.
    pub fn new(script: &'static Script) -> Self {
        Self {
            script,
            args: Vec::new(),
        }
    }

    /// With parameter `-name value`.
    #[must_use]
    pub fn arg(mut self, name: &'static str, value: Arg) -> Self {
        self.args.push((name, value));
        self
    }

    /// The lines that run the file with its parameters.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{ARGS} = {}", table(&self.args));
        let _ = writeln!(out, "& {{\n{}}} @xtaskArgs", compact(self.script.text));
        out
    }
}

/// `text` without its comment lines (but the step header), blank lines and indentation.
pub fn compact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let l = line.trim();
        if l.is_empty() || (l.starts_with('#') && !l.starts_with(HEADER)) {
            continue;
        }
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// The names of the steps `script` runs, in order (their header lines).
#[cfg(test)]
pub fn steps_in(script: &str) -> Vec<&str> {
    script
        .lines()
        .filter_map(|l| l.strip_prefix(HEADER))
        .map(str::trim)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_names_its_step_and_declares_its_parameters() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/deploy/scripts");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| {
                std::path::Path::new(n)
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("ps1"))
                    && n != "prologue.ps1"
                    && n != super::super::plan::HELPERS_FILE
            })
            .collect();
        files.sort();
        let mut known: Vec<String> = ALL.iter().map(|s| format!("{}.ps1", s.name)).collect();
        known.sort();
        assert_eq!(files, known, "every step file is embedded, and only those");
        for s in ALL {
            let first = s.text.lines().next().unwrap_or_default();
            assert_eq!(first, format!("{HEADER}{}", s.name), "{}.ps1", s.name);
            assert!(
                s.text.lines().any(|l| l.starts_with("param(")),
                "{}.ps1 has no param(...) block",
                s.name
            );
            assert!(
                s.text.lines().any(|l| l.starts_with("# By hand")),
                "{}.ps1 does not say how to run it by hand",
                s.name
            );
            // compact() would change a here-string's text.
            assert!(
                !s.text.contains("@'") && !s.text.contains("@\""),
                "{}.ps1 has a here-string",
                s.name
            );
            assert_eq!(steps_in(&compact(s.text)), [s.name]);
        }
    }

    #[test]
    fn a_call_passes_its_parameters_by_name() {
        let c = Call::new(&START)
            .arg("Service", Arg::str("It's"))
            .arg("Settle", Arg::Int(5))
            .arg("Names", Arg::list(&["a"]))
            .arg(
                "Checks",
                Arg::Tables(vec![vec![("Kind", Arg::str("registry"))], vec![]]),
            );
        let r = c.render();
        assert!(
            r.starts_with(
                "$xtaskArgs = @{ Service = 'It''s'; Settle = 5; Names = @('a'); Checks = @(@{ Kind = 'registry' }, @{}) }\n& {\n# xtask step: start\nparam(\n"
            ),
            "{r}"
        );
        assert!(r.ends_with("\n} @xtaskArgs\n"), "{r}");
        assert!(!r.contains("# By hand"), "comments are not sent: {r}");
        assert_eq!(steps_in(&r), ["start"]);
    }

    #[test]
    fn compact_drops_comments_blank_lines_and_indentation_only() {
        assert_eq!(
            compact("# xtask step: x\n# a comment\n\n    Say '#not a comment'\n  # indented\n}\n"),
            "# xtask step: x\nSay '#not a comment'\n}\n"
        );
    }
}
