//! The drivers' own log lines in the deploy report: a trace session per deploy (ETW), started
//! before the first driver loads and stopped after the last one unloaded, each line put next to
//! the step during which it was logged.
//!
//! The drivers write every log line also as a TraceLogging event (`common::log::etw`), from a
//! provider named `WindowsCallbackDrivers.<driver>` whose GUID is TraceLogging's hash of that
//! name. `trace-start.ps1` starts one session (`logman start ... -ets`) enabling every deployed
//! provider at every level; `trace-stop.ps1` stops it and decodes the `.etl` with `tracerpt` into
//! JSON. Every driver step says the VM's clock when it starts (section `clock`, a FILETIME, written
//! by the helpers), so each line goes to the last step that started before it, by the VM's own
//! clock. Why this mechanism: docs/notes/etw-log.md.

use serde::Deserialize;
use sha1::{Digest, Sha1};

use super::plan::{Check, Cleanup, Options, Package, Run, Step, When};
use super::ps;
use super::report::TargetReport;
use super::script::{self, Arg, Call};

/// The trace session's name on the VM.
pub const SESSION: &str = "xtask-deploy";

/// The prefix of every driver's provider name (`common::etw_provider!`).
pub const PROVIDER_PREFIX: &str = "WindowsCallbackDrivers.";

/// The provider a driver's log comes from.
pub fn provider_name(driver: &str) -> String {
    format!("{PROVIDER_PREFIX}{driver}")
}

/// TraceLogging's provider GUID for `name`, in braces, lower case: SHA-1 over the namespace
/// `482C2DB2-C390-47C8-87F8-1A15BFC130FB` (big-endian bytes) and the upper-cased name in UTF-16BE,
/// the first 16 bytes with the version nibble set to 5, read as a GUID's in-memory bytes
/// (docs/notes/etw-log.md §2; `common::log::tlg::guid_from_name` computes the same at compile time).
pub fn provider_guid(name: &str) -> String {
    const NAMESPACE: [u8; 16] = [
        0x48, 0x2C, 0x2D, 0xB2, 0xC3, 0x90, 0x47, 0xC8, 0x87, 0xF8, 0x1A, 0x15, 0xBF, 0xC1, 0x30,
        0xFB,
    ];
    let mut hasher = Sha1::new();
    hasher.update(NAMESPACE);
    for unit in name.to_uppercase().encode_utf16() {
        hasher.update(unit.to_be_bytes());
    }
    let h = hasher.finalize();
    let d1 = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    let d2 = u16::from_le_bytes([h[4], h[5]]);
    let d3 = u16::from_le_bytes([h[6], (h[7] & 0x0F) | 0x50]);
    format!(
        "{{{d1:08x}-{d2:04x}-{d3:04x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}}}",
        h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]
    )
}

fn guids(packages: &[Package]) -> Vec<String> {
    packages
        .iter()
        .map(|p| provider_guid(&provider_name(&p.driver)))
        .collect()
}

/// The setup step that starts the session (after the trust, before the first driver loads).
pub fn start_step(packages: &[Package], options: &Options) -> Step {
    let body = Call::new(&script::TRACE_START)
        .arg("Dir", Arg::str(&options.remote_dir))
        .arg("Session", Arg::str(SESSION))
        .arg("Providers", Arg::list(&guids(packages)))
        .render();
    Step {
        id: "trace-start",
        title: format!("start the trace session {SESSION} (logman): the drivers' log, every level"),
        run: Run::Guest(ps::script("start the trace session", &body)),
        check: Check::Exit0,
        when: When::Always,
        cleanup: Cleanup::No,
        timeout: options.timeout,
    }
}

/// The teardown step that stops the session and decodes the drivers' lines (also after a
/// failure, once the session was started: a session left running keeps writing).
pub fn stop_step(options: &Options) -> Step {
    // The providers come from the list trace-start wrote on the VM: the command line stays the
    // same length whatever the number of drivers.
    let body = Call::new(&script::TRACE_STOP)
        .arg("Dir", Arg::str(&options.remote_dir))
        .arg("Session", Arg::str(SESSION))
        .render();
    Step {
        id: "trace-stop",
        title: format!("stop the trace session {SESSION}; decode the drivers' log (tracerpt)"),
        run: Run::Guest(ps::script("stop the trace session", &body)),
        check: Check::Trace,
        when: When::Always,
        cleanup: Cleanup::After("trace-start"),
        timeout: options.timeout,
    }
}

/// One event of the `trace` section (`trace-stop.ps1`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Event {
    /// When, as a UTC FILETIME (null if the XML's time could not be read).
    pub time: Option<u64>,
    /// The XML's time, as written (null or missing: none).
    #[serde(default)]
    pub system_time: Option<String>,
    /// The provider's name.
    #[serde(default)]
    pub provider: Option<String>,
    /// The ETW level (2 error, 3 warning, 4 information, 5 verbose).
    #[serde(default)]
    pub level: Option<u64>,
    /// The `Message` field.
    #[serde(default)]
    pub message: Option<String>,
}

/// A line of the driver's log, as the report keeps it beside its step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// The VM's time (ISO 8601 as the trace wrote it).
    pub time: String,
    /// The provider.
    pub provider: String,
    /// The ETW level.
    pub level: u64,
    /// The text.
    pub message: String,
}

/// Reads the `trace` section: a JSON array of [`Event`] (PowerShell writes a lone object for a
/// one-element array only when not told `-InputObject @(...)`, which the script does; both read).
pub fn events(body: &str) -> Result<Vec<Event>, String> {
    let body = body.trim();
    if body.is_empty() {
        return Ok(Vec::new());
    }
    if body.starts_with('{') {
        return serde_json::from_str::<Event>(body)
            .map(|e| vec![e])
            .map_err(|e| format!("the trace section is not an event: {e}"));
    }
    serde_json::from_str(body).map_err(|e| format!("the trace section is not JSON events: {e}"))
}

/// Puts each event next to the step that was running when it was logged: the last step, in plan
/// order, whose VM clock (`clock` section) is not after the event. An event with no time, or
/// before every such step, goes to the `trace-stop` step itself.
pub fn place(report: &mut TargetReport, events: Vec<Event>) {
    for e in events {
        let line = LogLine {
            time: e.system_time.clone().unwrap_or_default(),
            provider: e.provider.clone().unwrap_or_default(),
            level: e.level.unwrap_or_default(),
            message: e.message.clone().unwrap_or_default(),
        };
        let mut target = None;
        if let Some(t) = e.time {
            for (di, d) in report.drivers.iter().enumerate() {
                for (si, s) in d.steps.iter().enumerate() {
                    if s.vm_clock.is_some_and(|c| c <= t) {
                        target = Some((di, si));
                    }
                }
            }
        }
        match target {
            Some((di, si)) => report.drivers[di].steps[si].log.push(line),
            None => {
                if let Some(s) = report.teardown.iter_mut().find(|s| s.id == "trace-stop") {
                    s.log.push(line);
                }
            }
        }
    }
}

/// A step's lines in the text report, under the step.
pub fn render(out: &mut String, lines: &[LogLine]) {
    use std::fmt::Write as _;
    for l in lines {
        let _ = writeln!(out, "        log: {}", l.message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Published name/GUID pairs (docs/notes/etw-log.md §2), as the common crate's test has them.
    #[test]
    fn provider_guids_are_the_tracelogging_name_hash() {
        assert_eq!(
            provider_guid("MyCompany.MyComponent"),
            "{ce5fa4ea-ab00-5402-8b76-9f76ac858fb5}"
        );
        assert_eq!(
            provider_guid("billti-example"),
            "{c212d3ce-dfb9-5469-08f5-f477b0d92305}"
        );
        assert_eq!(
            provider_name("ex-callback"),
            "WindowsCallbackDrivers.ex-callback"
        );
    }

    #[test]
    fn trace_sections_read_arrays_lone_objects_and_nothing() {
        let one = r#"{"Time":133800000000000000,"SystemTime":"2025-01-01T00:00:00.0000000Z","Provider":"WindowsCallbackDrivers.ex-callback","Level":4,"Message":"[ex-callback] Info: DriverEntry"}"#;
        assert_eq!(events(one).unwrap().len(), 1);
        assert_eq!(events(&format!("[{one},{one}]")).unwrap().len(), 2);
        assert!(events("").unwrap().is_empty());
        assert!(events("[]").unwrap().is_empty());
        let no_time =
            r#"[{"Time":null,"SystemTime":"yesterday","Provider":"p","Level":4,"Message":"m"}]"#;
        assert_eq!(events(no_time).unwrap()[0].time, None);
        assert!(events("Get-WinEvent : error").is_err());
        let nulls = r#"[{"Time":5,"SystemTime":null,"Provider":null,"Level":null,"Message":null}]"#;
        assert_eq!(events(nulls).unwrap()[0].message, None);
    }
}
