//! The report of a deployment to a VM: each step with its duration and status, the probe
//! results, the unload verdict, the Service Control Manager events; a failure names its step and
//! quotes the VM's output; a VM that stops answering once a driver was started is reported as a
//! probable bugcheck, with where its dump will be.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

use super::parse::Event;
use super::probe::Verdict;
use crate::base::process::elapsed;

/// How a step ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// It ran and its check passed.
    Passed,
    /// It ran and failed, or could not run.
    Failed,
    /// Its condition did not hold (why).
    Skipped(String),
    /// It did not run because an earlier step failed (why).
    NotRun(String),
}

impl Status {
    pub(crate) fn word(&self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Failed => "failed",
            Status::Skipped(_) => "skipped",
            Status::NotRun(_) => "not run",
        }
    }
}

/// One step's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepReport {
    /// The step's id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// How it ended.
    pub status: Status,
    /// Whether it ran as cleanup after a failure.
    pub cleanup: bool,
    /// How long it took.
    pub duration: Duration,
    /// The verdict in a line or a few.
    pub detail: String,
    /// The VM's notes.
    pub notes: Vec<String>,
    /// For a failure: what the VM printed (stdout and stderr tails).
    pub output: String,
}

/// The unload verdict of a driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unload {
    /// Stopped with exit code 0, gone from the loaded modules, after-unload checks passed.
    Clean,
    /// Stopped, but something remains or an after-unload check failed.
    Unclean(String),
    /// `sc stop` did not stop it.
    NotUnloaded(String),
    /// The VM stopped answering.
    Unknown(String),
    /// The plan did not get that far.
    NotReached,
}

impl Unload {
    fn text(&self) -> String {
        match self {
            Unload::Clean => {
                "clean: stopped with exit code 0, gone from the loaded modules, every after-unload check passed".to_owned()
            }
            Unload::Unclean(w) => format!("UNCLEAN: {w}"),
            Unload::NotUnloaded(w) => format!("NOT UNLOADED: {w}"),
            Unload::Unknown(w) => format!("unknown: {w}"),
            Unload::NotReached => "not reached".to_owned(),
        }
    }

    fn key(&self) -> &'static str {
        match self {
            Unload::Clean => "clean",
            Unload::Unclean(_) => "unclean",
            Unload::NotUnloaded(_) => "not-unloaded",
            Unload::Unknown(_) => "unknown",
            Unload::NotReached => "not-reached",
        }
    }
}

/// One driver's results on one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriverReport {
    /// The driver.
    pub driver: String,
    /// Its service.
    pub service: String,
    /// Its steps.
    pub steps: Vec<StepReport>,
    /// The probe's checks (while loaded, then after unload).
    pub probes: Vec<Verdict>,
    /// The unload verdict.
    pub unload: Unload,
    /// Service Control Manager events since the deploy began.
    pub events: Vec<Event>,
}

/// The failure that stopped a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// `setup`, `teardown` or the driver.
    pub scope: String,
    /// The step.
    pub step: String,
    /// Why.
    pub message: String,
    /// What the VM printed.
    pub output: String,
}

/// The report of one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetReport {
    /// The target.
    pub target: String,
    /// How long it all took.
    pub duration: Duration,
    /// The setup steps.
    pub setup: Vec<StepReport>,
    /// Each driver.
    pub drivers: Vec<DriverReport>,
    /// The teardown steps.
    pub teardown: Vec<StepReport>,
    /// The failure, if any.
    pub failure: Option<Failure>,
    /// A probable bugcheck: when, and where the dump will be.
    pub bugcheck: Option<String>,
}

impl TargetReport {
    /// Whether everything passed and every driver unloaded cleanly.
    pub fn ok(&self) -> bool {
        self.failure.is_none() && self.drivers.iter().all(|d| d.unload == Unload::Clean)
    }
}

/// The report as text.
pub fn render(r: &TargetReport) -> String {
    let mut out = String::new();
    let verdict = if r.ok() {
        "ok".to_owned()
    } else if let Some(f) = &r.failure {
        format!("FAILED at {} / {}", f.scope, f.step)
    } else {
        "FAILED: an unload was not clean".to_owned()
    };
    let _ = writeln!(
        out,
        "deploy to {}: {verdict} ({})",
        r.target,
        elapsed(r.duration)
    );
    let steps = |out: &mut String, list: &[StepReport]| {
        for s in list {
            let mark = match s.status {
                Status::Passed => "✓",
                Status::Failed => "✗",
                Status::Skipped(_) => "-",
                Status::NotRun(_) => "·",
            };
            let mut line = format!("    {mark} {:<18}", s.id);
            match &s.status {
                Status::Passed | Status::Failed => {
                    let _ = write!(line, " {:>6}", elapsed(s.duration));
                    if s.cleanup {
                        line.push_str("  (after the failure)");
                    }
                    if !s.detail.is_empty() {
                        let _ = write!(line, "  {}", s.detail.replace('\n', "\n        "));
                    }
                }
                Status::Skipped(why) => {
                    let _ = write!(line, "         skipped: {why}");
                }
                Status::NotRun(why) => {
                    let _ = write!(line, "         not run: {why}");
                }
            }
            let _ = writeln!(out, "{line}");
            for n in &s.notes {
                let _ = writeln!(out, "        note: {n}");
            }
            if !s.output.is_empty() {
                for l in s.output.lines() {
                    let _ = writeln!(out, "        | {l}");
                }
            }
        }
    };
    out.push_str("  setup\n");
    steps(&mut out, &r.setup);
    for d in &r.drivers {
        let _ = writeln!(out, "  {} (service {})", d.driver, d.service);
        steps(&mut out, &d.steps);
        if !d.probes.is_empty() {
            out.push_str("    probe:\n");
            for p in &d.probes {
                let _ = writeln!(
                    out,
                    "      {} {}: expected {}, observed {}",
                    if p.ok { "✓" } else { "✗" },
                    p.name,
                    p.expected,
                    p.observed
                );
            }
        }
        let _ = writeln!(out, "    unload: {}", d.unload.text());
        if !d.events.is_empty() {
            out.push_str("    Service Control Manager events:\n");
            for e in &d.events {
                let _ = writeln!(
                    out,
                    "      {} {} {}",
                    e.time,
                    e.id,
                    e.message.replace('\n', " ")
                );
            }
        }
    }
    if !r.teardown.is_empty() {
        out.push_str("  teardown\n");
        steps(&mut out, &r.teardown);
    }
    if let Some(b) = &r.bugcheck {
        let _ = writeln!(out, "  PROBABLE BUGCHECK: {b}");
    }
    if let Some(f) = &r.failure {
        let _ = writeln!(
            out,
            "  failed step: {} / {}: {}",
            f.scope, f.step, f.message
        );
    }
    out
}

fn step_json(s: &StepReport) -> Value {
    let (status, why) = match &s.status {
        Status::Skipped(w) | Status::NotRun(w) => (s.status.word(), Some(w.clone())),
        _ => (s.status.word(), None),
    };
    json!({
        "id": s.id,
        "title": s.title,
        "status": status,
        "reason": why,
        "after_failure": s.cleanup,
        "duration_s": s.duration.as_secs_f64(),
        "detail": s.detail,
        "notes": s.notes,
        "output": s.output,
    })
}

/// The report as JSON (`--json`).
pub fn to_json(r: &TargetReport) -> Value {
    json!({
        "target": r.target,
        "ok": r.ok(),
        "duration_s": r.duration.as_secs_f64(),
        "setup": r.setup.iter().map(step_json).collect::<Vec<_>>(),
        "drivers": r.drivers.iter().map(|d| json!({
            "driver": d.driver,
            "service": d.service,
            "steps": d.steps.iter().map(step_json).collect::<Vec<_>>(),
            "probes": d.probes.iter().map(|p| json!({
                "name": p.name, "expected": p.expected, "observed": p.observed, "ok": p.ok,
            })).collect::<Vec<_>>(),
            "unload": {"verdict": d.unload.key(), "detail": d.unload.text()},
            "events": d.events.iter().map(|e| json!({
                "time": e.time, "id": e.id, "level": e.level, "message": e.message,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "teardown": r.teardown.iter().map(step_json).collect::<Vec<_>>(),
        "failure": r.failure.as_ref().map(|f| json!({
            "scope": f.scope, "step": f.step, "message": f.message, "output": f.output,
        })),
        "bugcheck": r.bugcheck,
    })
}
