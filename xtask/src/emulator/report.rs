//! The harness's report (`xtask/emu/REPORT.md`, schema 1): reading it and showing it to a person.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

use crate::base::error::{Context, Result, bail};

/// The report schema this xtask reads.
pub const SCHEMA: u64 = 1;

/// Reads and checks a report file.
pub fn read(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the report {}", path.display()))?;
    let report: Value = serde_json::from_str(&text)
        .with_context(|| format!("the report {} is not JSON", path.display()))?;
    check_schema(&report).with_context(|| format!("the report {}", path.display()))?;
    Ok(report)
}

fn check_schema(report: &Value) -> Result<()> {
    match report.get("schema").and_then(Value::as_u64) {
        Some(SCHEMA) => {}
        Some(other) => bail!(
            "schema {other}, but this xtask reads schema {SCHEMA}: update xtask or the harness"
        ),
        None => bail!("no `schema` field: not a harness report"),
    }
    if !report.get("runs").is_some_and(Value::is_array) {
        bail!("no `runs` list");
    }
    Ok(())
}

/// How many runs a report has, and how many passed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Runs in the report.
    pub runs: usize,
    /// Runs with `passed: true`.
    pub passed: usize,
}

impl Tally {
    /// Runs that did not pass.
    pub fn failed(self) -> usize {
        self.runs - self.passed
    }
}

/// Counts the runs of `report`.
pub fn tally(report: &Value) -> Tally {
    let runs = runs(report);
    Tally {
        runs: runs.len(),
        passed: runs.iter().filter(|r| passed(r)).count(),
    }
}

fn runs(report: &Value) -> &[Value] {
    report
        .get("runs")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn passed(v: &Value) -> bool {
    v.get("passed").and_then(Value::as_bool).unwrap_or(false)
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn mark(ok: bool) -> char {
    if ok { '✓' } else { '✗' }
}

/// The run's title: `scenario`, or `fault ROUTINE #N [in DriverUnload] -> STATUS`.
pub fn run_title(run: &Value) -> String {
    let name = str_of(run, "name");
    match run.get("fault").filter(|f| f.is_object()) {
        Some(f) => {
            let mut t = format!("fault: {}", str_of(f, "routine"));
            if let Some(n) = f.get("occurrence").and_then(Value::as_u64) {
                let _ = write!(t, " #{n}");
            }
            if str_of(f, "phase") == "DriverUnload" {
                t.push_str(" in DriverUnload");
            }
            let injected = str_of(f, "injected");
            if !injected.is_empty() {
                let _ = write!(t, " -> {injected}");
            }
            t
        }
        None if name.is_empty() => str_of(run, "kind").to_owned(),
        None => name.to_owned(),
    }
}

/// The report as text: the driver's log, each run's steps and audit (✓/✗ with detail), what went
/// wrong, which routines were speakeasy's and which were modelled, and a summary line.
pub fn render(report: &Value) -> String {
    let mut out = String::new();
    let driver = str_of(report, "driver");
    let _ = writeln!(out, "== {driver} ({})", str_of(report, "image"));
    for run in runs(report) {
        render_run(&mut out, run);
    }
    let routines = report.get("routines").unwrap_or(&Value::Null);
    for (who, key) in [("speakeasy's", "speakeasy"), ("modelled", "modelled")] {
        let names: Vec<&str> = list(routines, key)
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let _ = writeln!(
            out,
            "  routines, {who} ({}): {}",
            names.len(),
            if names.is_empty() {
                "-".to_owned()
            } else {
                names.join(", ")
            }
        );
    }
    let t = tally(report);
    let verdict = if passed(report) { "passed" } else { "FAILED" };
    let _ = writeln!(
        out,
        "  {driver}: {verdict}, {} run(s): {} passed, {} failed",
        t.runs,
        t.passed,
        t.failed()
    );
    out
}

fn render_run(out: &mut String, run: &Value) {
    let ok = passed(run);
    let scenario = str_of(run, "kind") != "fault";
    let _ = writeln!(
        out,
        "  {} {}: {}",
        mark(ok),
        run_title(run),
        if ok { "passed" } else { "FAILED" }
    );
    // The log and every step are the story of the scenario; of a fault run, shown only when it failed.
    let verbose = scenario || !ok;
    let log = list(run, "log");
    if verbose && !log.is_empty() {
        let _ = writeln!(out, "    log:");
        for line in log {
            let _ = writeln!(out, "      {}", line.as_str().unwrap_or_default());
        }
    }
    let etw = list(run, "etw");
    if verbose && !etw.is_empty() {
        let mut providers: Vec<&str> = etw.iter().map(|e| str_of(e, "provider")).collect();
        providers.dedup();
        let _ = writeln!(
            out,
            "    ETW: {} event(s) from {}: the lines a trace session on a VM records",
            etw.len(),
            providers.join(", ")
        );
    }
    for step in list(run, "steps") {
        let step_ok = passed_key(step, "ok");
        if verbose || !step_ok {
            let _ = writeln!(
                out,
                "    {} step {}{}",
                mark(step_ok),
                str_of(step, "step"),
                detail(step)
            );
        }
    }
    if let Some(entry) = run.get("driver_entry").filter(|e| e.is_object()) {
        let status = match entry.get("status").and_then(Value::as_u64) {
            Some(s) => format!("{s:#010X}").replace("0X", "0x"),
            None => "never returned".to_owned(),
        };
        let _ = writeln!(
            out,
            "    DriverEntry: {status} (expected {})",
            str_of(entry, "expected")
        );
    }
    if let Some(unloaded) = run.get("unloaded").and_then(Value::as_bool) {
        let _ = writeln!(
            out,
            "    DriverUnload ran: {}",
            if unloaded { "yes" } else { "no" }
        );
    }
    for check in list(run, "audit") {
        let _ = writeln!(
            out,
            "    {} {}{}",
            mark(passed_key(check, "ok")),
            str_of(check, "check"),
            detail(check)
        );
    }
    for failure in list(run, "failures") {
        let _ = writeln!(out, "    failure: {}", failure.as_str().unwrap_or_default());
    }
    if let Some(err) = run.get("error").filter(|e| e.is_object()) {
        let _ = writeln!(
            out,
            "    error: {} at pc {}: {}",
            str_of(err, "kind"),
            if str_of(err, "pc").is_empty() {
                "?"
            } else {
                str_of(err, "pc")
            },
            str_of(err, "message")
        );
        let calls = list(err, "last_calls");
        if !calls.is_empty() {
            let _ = writeln!(out, "    last calls:");
            for c in calls {
                let _ = writeln!(
                    out,
                    "      {}",
                    c.as_str().map_or_else(|| c.to_string(), str::to_owned)
                );
            }
        }
    }
}

fn passed_key(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn detail(v: &Value) -> String {
    match str_of(v, "detail") {
        "" => String::new(),
        d => format!(": {d}"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A report as REPORT.md describes it: a passing scenario and a failing fault run.
    pub(crate) fn sample() -> Value {
        json!({
            "schema": 1,
            "driver": "ex-callback",
            "image": "/w/target/drivers/x64/debug/ex-callback/ex-callback.sys",
            "passed": false,
            "routines": {
                "speakeasy": ["ntoskrnl.ExAllocatePoolWithTag"],
                "modelled": ["ntoskrnl.ExCreateCallback", "ntoskrnl.ExUnregisterCallback"]
            },
            "runs": [
                {
                    "name": "scenario", "kind": "scenario", "fault": null, "passed": true,
                    "driver_entry": {"status": 0, "expected": "success"},
                    "unloaded": true,
                    "log": ["[ex-callback] Info: DriverEntry"],
                    "steps": [{"step": "notify \\Callback\\PowerState (1, 1)", "ok": true, "detail": ""}],
                    "audit": [{"check": "every registration undone", "ok": true, "detail": "3 registered, 3 unregistered"}],
                    "failures": [], "error": null,
                    "callbacks": [{"callback": "0x140001230", "event": "notify", "instructions": 37}]
                },
                {
                    "name": "fault ntoskrnl.ExCreateCallback#2", "kind": "fault",
                    "fault": {"routine": "ntoskrnl.ExCreateCallback", "occurrence": 2, "injected": "STATUS_INSUFFICIENT_RESOURCES"},
                    "passed": false,
                    "driver_entry": {"status": 3_221_225_626_u64, "expected": "failure"},
                    "unloaded": false,
                    "log": ["[ex-callback] Error: ExCreateCallback failed"],
                    "steps": [],
                    "audit": [{"check": "every referenced object dereferenced", "ok": false, "detail": "1 object left referenced"}],
                    "failures": ["\\Callback\\ExCallbackSample left referenced"],
                    "error": {"kind": "invalid_memory", "message": "read of 0x0", "pc": "0x140001010",
                              "last_calls": ["ntoskrnl.ExCreateCallback(...) -> 0xC000009A"]}
                },
                {
                    "name": "fault ntoskrnl.ExAllocatePoolWithTag#1", "kind": "fault",
                    "fault": {"routine": "ntoskrnl.ExAllocatePoolWithTag", "occurrence": 1, "injected": "NULL", "phase": "DriverUnload"},
                    "passed": true,
                    "driver_entry": {"status": 3_221_225_626_u64, "expected": "failure"},
                    "unloaded": false,
                    "log": ["[ex-callback] Error: allocation failed"],
                    "steps": [],
                    "audit": [{"check": "every pool allocation freed", "ok": true, "detail": ""}],
                    "failures": [], "error": null
                }
            ]
        })
    }

    #[test]
    fn tally_counts_runs() {
        assert_eq!(tally(&sample()), Tally { runs: 3, passed: 2 });
        assert_eq!(tally(&sample()).failed(), 1);
    }

    #[test]
    fn render_shows_log_audit_failures_error_and_routines() {
        let text = render(&sample());
        let expect = [
            "== ex-callback (/w/target/drivers/x64/debug/ex-callback/ex-callback.sys)",
            "  ✓ scenario: passed",
            "      [ex-callback] Info: DriverEntry",
            "    ✓ step notify \\Callback\\PowerState (1, 1)",
            "    DriverEntry: 0x00000000 (expected success)",
            "    ✓ every registration undone: 3 registered, 3 unregistered",
            "  ✗ fault: ntoskrnl.ExCreateCallback #2 -> STATUS_INSUFFICIENT_RESOURCES: FAILED",
            "      [ex-callback] Error: ExCreateCallback failed",
            "    DriverEntry: 0xC000009A (expected failure)",
            "    ✗ every referenced object dereferenced: 1 object left referenced",
            "    failure: \\Callback\\ExCallbackSample left referenced",
            "    error: invalid_memory at pc 0x140001010: read of 0x0",
            "      ntoskrnl.ExCreateCallback(...) -> 0xC000009A",
            "  ✓ fault: ntoskrnl.ExAllocatePoolWithTag #1 in DriverUnload -> NULL: passed",
            "    ✓ every pool allocation freed",
            "  routines, speakeasy's (1): ntoskrnl.ExAllocatePoolWithTag",
            "  routines, modelled (2): ntoskrnl.ExCreateCallback, ntoskrnl.ExUnregisterCallback",
            "  ex-callback: FAILED, 3 run(s): 2 passed, 1 failed",
        ];
        let lines: Vec<&str> = text.lines().collect();
        for e in expect {
            assert!(lines.contains(&e), "missing line {e:?} in\n{text}");
        }
        // A passing fault run's log is not repeated.
        assert!(!text.contains("allocation failed"), "{text}");
    }

    #[test]
    fn schema_is_checked() {
        check_schema(&sample()).unwrap();
        let e = check_schema(&json!({"schema": 2, "runs": []}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("schema 2") && e.contains("schema 1"), "{e}");
        assert!(check_schema(&json!({"runs": []})).is_err());
        assert!(
            check_schema(&json!({"schema": 1}))
                .unwrap_err()
                .to_string()
                .contains("runs")
        );
    }
}
