//! Mermaid sequence diagrams of emulated runs, drawn from each run's ordered event list
//! (`events` in the harness report, xtask/emu/REPORT.md): `cargo xtask emulate --diagram` and the
//! diagrams the driver READMEs embed (`readme.rs`).
//!
//! Written in Rust rather than in the harness: it is a pure function of the report (testable
//! without emulating anything), and the README check and `--bless-diagrams` that compare its
//! output live in xtask. Everything drawn is deterministic (names, statuses, IRQLs; the harness
//! leaves addresses and timings out of the events), so a diagram can be embedded and compared.

use std::fmt::Write as _;

use serde_json::Value;

/// The participants, in the order they are declared when used: (id, name).
const DRIVER: (&str, &str) = ("D", "Driver");
const CALLBACKS: (&str, &str) = ("C", "Driver callbacks");
const ANOTHER: (&str, &str) = ("A", "Driver on another CPU");

/// The participant of a kernel component (events.py `_FAMILIES`).
fn component(name: &str) -> (&'static str, String) {
    let id = match name {
        "I/O manager" => "IO",
        "callback objects" => "CBO",
        "configuration manager" => "CM",
        "PnP manager" => "PNP",
        "filter engine" => "FWP",
        "KMDF" => "WDF",
        "object manager" => "OB",
        "ETW" => "ETW",
        _ => "K",
    };
    let title = if id == "K" { "Kernel" } else { name };
    (id, title.to_owned())
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Text safe inside a Mermaid message or note: no statement separator, comment, entity or HTML.
fn clean(text: &str) -> String {
    text.replace([';', '#', '<', '>', '\n'], " ")
        .replace("%%", "%")
}

/// `1,000`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Where driver code ran: DriverEntry/DriverUnload, a callback on this CPU, or another CPU.
fn driver_side(routine: &str, cpu: &str) -> (&'static str, &'static str) {
    if cpu == "another" {
        ANOTHER
    } else if matches!(routine, "DriverEntry" | "DriverUnload" | "the driver") {
        DRIVER
    } else {
        CALLBACKS
    }
}

fn irql_suffix(irql: &str, always: bool) -> String {
    if irql.is_empty() || (!always && irql == "PASSIVE_LEVEL") {
        String::new()
    } else {
        format!(" at {irql}")
    }
}

struct Drawing {
    participants: Vec<(String, String)>,
    lines: Vec<String>,
}

impl Drawing {
    fn uses(&mut self, id: &str, title: &str) -> String {
        if !self.participants.iter().any(|(i, _)| i == id) {
            self.participants.push((id.to_owned(), title.to_owned()));
        }
        id.to_owned()
    }

    fn side(&mut self, (id, title): (&str, &str)) -> String {
        self.uses(id, title)
    }

    fn comp(&mut self, name: &str) -> String {
        let (id, title) = component(name);
        self.uses(id, &title)
    }

    fn line(&mut self, depth: usize, text: &str) {
        self.lines
            .push(format!("{}{text}", "    ".repeat(depth + 1)));
    }

    fn events(&mut self, events: &[Value], depth: usize) {
        for e in events {
            self.event(e, depth);
        }
    }

    fn event(&mut self, e: &Value, depth: usize) {
        match s(e, "kind") {
            "stage" => {
                match s(e, "stage") {
                    "steps" => {
                        let d = self.side(DRIVER);
                        self.line(depth, &format!("Note over {d}: the scenario's events"));
                    }
                    "probe" => {
                        let d = self.side(DRIVER);
                        self.line(depth, &format!("Note over {d}: after the run: callbacks still registered are called"),
                    );
                    }
                    _ => {}
                }
            }
            "call" => {
                let from = self.side(driver_side(s(e, "in"), s(e, "cpu")));
                let to = self.comp(s(e, "component"));
                let mut text = format!("{}{}", s(e, "routine"), irql_suffix(s(e, "irql"), false));
                if let Some(status) = e.get("status").and_then(Value::as_str) {
                    if e.get("injected").and_then(Value::as_bool) == Some(true) {
                        let _ = write!(text, " ✗ fails: {status} (injected)");
                    } else {
                        let _ = write!(text, " → {status}");
                    }
                }
                if let Some(stop) = e.get("stopped").and_then(Value::as_str) {
                    let _ = write!(text, " (stopped: {stop})");
                }
                self.line(depth, &format!("{from}->>{to}: {}", clean(&text)));
            }
            "callback" => {
                let name = s(e, "callback");
                let from = self.comp(s(e, "component"));
                let to = self.side(driver_side(name, s(e, "cpu")));
                let racing = if s(e, "cpu") == "another" {
                    " (racing the unregistration)"
                } else {
                    ""
                };
                let text = format!("{name}{}{racing}", irql_suffix(s(e, "irql"), true));
                self.line(depth, &format!("{from}->>{to}: {}", clean(&text)));
            }
            "returned" => {
                let d = self.side(DRIVER);
                let io = self.comp("I/O manager");
                let text = format!("{} returns {}", s(e, "callback"), s(e, "status"));
                self.line(depth, &format!("{d}-->>{io}: {}", clean(&text)));
            }
            "suspend" | "resume" => {
                let a = self.side(ANOTHER);
                let text = if s(e, "kind") == "suspend" {
                    format!("{} paused {}", s(e, "callback"), s(e, "where"))
                } else {
                    format!("{} resumes {}", s(e, "callback"), s(e, "when"))
                };
                self.line(depth, &format!("Note over {a}: {}", clean(&text)));
            }
            "stop" => {
                let d = self.side(DRIVER);
                self.line(
                    depth,
                    &format!(
                        "Note over {d}: ✗ the kernel stopped the run: {}",
                        clean(s(e, "error"))
                    ),
                );
            }
            "audit" => self.audit(e, depth),
            "repeat" => {
                let count = e.get("count").and_then(Value::as_u64).unwrap_or(0);
                self.line(depth, &format!("loop {} ×", thousands(count)));
                let inner = e
                    .get("events")
                    .and_then(Value::as_array)
                    .map_or(&[][..], Vec::as_slice);
                self.events(inner, depth + 1);
                self.line(depth, "end");
            }
            _ => {}
        }
    }

    fn audit(&mut self, e: &Value, depth: usize) {
        let d = self.side(DRIVER);
        let names = |key: &str| -> Vec<String> {
            e.get(key)
                .and_then(Value::as_array)
                .map_or(&[][..], Vec::as_slice)
                .iter()
                .filter_map(Value::as_str)
                .map(clean)
                .collect()
        };
        let checks = e.get("checks").and_then(Value::as_u64).unwrap_or(0);
        let failed = names("failed");
        let tolerated = names("tolerated");
        let passed = checks.saturating_sub(failed.len() as u64);
        self.line(
            depth,
            &format!("Note over {d}: audit: {passed} of {checks} checks passed"),
        );
        for f in failed {
            self.line(depth, &format!("Note over {d}: ✗ {f}"));
        }
        for f in tolerated {
            self.line(depth, &format!("Note over {d}: tolerated, logged: {f}"));
        }
    }
}

/// The Mermaid `sequenceDiagram` of one run of a harness report (its `events`), ending in a
/// newline. A run without events (an older report) gives a diagram that says so.
pub fn render(run: &Value) -> String {
    let mut d = Drawing {
        participants: Vec::new(),
        lines: Vec::new(),
    };
    // The kernel first, then the driver: the driver's calls go left to right.
    d.comp("I/O manager");
    d.side(DRIVER);
    let events = run
        .get("events")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    if events.is_empty() {
        d.line(0, "Note over D: no events in this report");
    }
    d.events(events, 0);
    let dropped = run
        .get("events_dropped")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    if dropped > 0 {
        d.line(
            0,
            &format!("Note over D: {} more events left out", thousands(dropped)),
        );
    }
    let mut out = String::from("sequenceDiagram\n");
    for (id, title) in &d.participants {
        let _ = writeln!(out, "    participant {id} as {}", clean(title));
    }
    for line in &d.lines {
        let _ = writeln!(out, "{line}");
    }
    out
}

/// The stable key of a run, as the README markers name it: `scenario`, `scenario: VARIANT`, or a
/// fault run's name without its `fault N/M: ` number (which moves when the sweep changes).
pub fn run_key(run: &Value) -> String {
    let name = s(run, "name");
    match (name.strip_prefix("fault "), name.find(": ")) {
        (Some(_), Some(at)) => format!("fault: {}", &name[at + 2..]),
        _ => name.to_owned(),
    }
}

/// A file name for a run's diagram: `NN-KEY.mmd`, the key lower-cased to letters, digits and `-`.
pub fn file_name(index: usize, run: &Value) -> String {
    let mut slug = String::new();
    for c in run_key(run).chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug: String = slug.trim_matches('-').chars().take(90).collect();
    format!("{index:02}-{}.mmd", slug.trim_end_matches('-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The event kinds `Drawing::event` draws (REPORT.md, "The event list", must list exactly these).
    const KINDS: [&str; 9] = [
        "stage", "call", "callback", "returned", "suspend", "resume", "stop", "audit", "repeat",
    ];

    fn run() -> Value {
        json!({"name": "scenario", "events": [
            {"kind": "stage", "stage": "DriverEntry"},
            {"kind": "callback", "callback": "DriverEntry", "component": "I/O manager", "cpu": "this", "irql": "PASSIVE_LEVEL"},
            {"kind": "call", "category": "register", "routine": "FwpsCalloutRegister1", "component": "filter engine",
             "in": "DriverEntry", "cpu": "this", "irql": "PASSIVE_LEVEL", "status": "STATUS_SUCCESS"},
            {"kind": "returned", "callback": "DriverEntry", "status": "STATUS_SUCCESS"},
            {"kind": "repeat", "count": 1000, "events": [
                {"kind": "call", "category": "register", "routine": "FwpsFlowAssociateContext0", "component": "filter engine",
                 "in": "classifyFn", "cpu": "this", "irql": "DISPATCH_LEVEL", "status": "STATUS_SUCCESS"},
                {"kind": "callback", "callback": "flowDeleteFn", "component": "filter engine", "cpu": "this", "irql": "DISPATCH_LEVEL"}]},
            {"kind": "callback", "callback": "classifyFn", "component": "filter engine", "cpu": "another", "irql": "DISPATCH_LEVEL"},
            {"kind": "suspend", "callback": "classifyFn", "cpu": "another"},
            {"kind": "call", "category": "unregister", "routine": "FwpsCalloutUnregisterById0", "component": "filter engine",
             "in": "DriverUnload", "cpu": "this", "irql": "PASSIVE_LEVEL", "status": "STATUS_DEVICE_BUSY", "injected": true},
            {"kind": "audit", "checks": 12, "failed": ["no memory freed; under a callback"], "tolerated": []}
        ], "events_dropped": 2})
    }

    #[test]
    fn a_run_is_drawn_with_its_participants_loops_and_verdicts() {
        let d = render(&run());
        assert!(d.starts_with(
            "sequenceDiagram\n    participant IO as I/O manager\n    participant D as Driver\n"
        ));
        assert!(d.contains("participant FWP as filter engine"));
        assert!(d.contains("participant A as Driver on another CPU"));
        assert!(d.contains("    loop 1,000 ×\n        C->>FWP: FwpsFlowAssociateContext0 at DISPATCH_LEVEL → STATUS_SUCCESS\n        FWP->>C: flowDeleteFn at DISPATCH_LEVEL\n    end\n"), "{d}");
        assert!(d.contains("FWP->>A: classifyFn at DISPATCH_LEVEL (racing the unregistration)"));
        assert!(d.contains(
            "D->>FWP: FwpsCalloutUnregisterById0 ✗ fails: STATUS_DEVICE_BUSY (injected)"
        ));
        assert!(d.contains("Note over D: audit: 11 of 12 checks passed\n    Note over D: ✗ no memory freed  under a callback\n"), "no `;` survives: {d}");
        assert!(d.contains("Note over D: 2 more events left out"));
        assert_eq!(d, render(&run()), "deterministic");
    }

    #[test]
    fn every_documented_event_kind_is_drawn() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let page = std::fs::read_to_string(root.join("emu/REPORT.md")).unwrap();
        let table = page.split("## The event list").nth(1).unwrap();
        let table = table.split("\n## ").next().unwrap();
        let documented: Vec<&str> = table
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .collect();
        assert_eq!(
            documented, KINDS,
            "REPORT.md's event kinds and the ones drawn differ"
        );
        for kind in KINDS {
            let sample = json!({"events": [{"kind": kind, "stage": "steps", "events": [{"kind": "stop"}], "count": 2}]});
            let lines = render(&sample).lines().count();
            assert!(lines > 3, "the kind `{kind}` draws nothing");
        }
    }

    #[test]
    fn keys_drop_the_fault_number_and_files_are_slugs() {
        let r = json!({"name": "fault 3/12: ntoskrnl.ExUnregisterCallback call #1 in DriverUnload fails (X) (scenario: v)"});
        assert_eq!(
            run_key(&r),
            "fault: ntoskrnl.ExUnregisterCallback call #1 in DriverUnload fails (X) (scenario: v)"
        );
        assert_eq!(
            file_name(3, &r),
            "03-fault-ntoskrnl-exunregistercallback-call-1-in-driverunload-fails-x-scenario-v.mmd"
        );
        assert_eq!(
            run_key(&json!({"name": "scenario: many"})),
            "scenario: many"
        );
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
