//! The report of a deployment to a VM: each step with its duration and status, the probe
//! results, the unload verdict, the Service Control Manager events; a failure names its step and
//! quotes the VM's output; a VM that stops answering once a driver was started is reported as a
//! probable bugcheck, with where its dump will be.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::parse::Event;
use super::probe::Verdict;
use super::trace::LogLine;
use crate::base::process::elapsed;

mod debugging;
pub use debugging::{Crash, KdnetRun, VerifierRun};

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
    /// The VM's clock when the step started (a UTC FILETIME; driver steps: section `clock`).
    pub vm_clock: Option<u64>,
    /// The driver's log lines written while this step ran (`deploy/trace.rs`).
    pub log: Vec<LogLine>,
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
    /// Driver Verifier's counters while it was loaded (`--verifier`).
    pub verifier: Option<super::verifier::Stats>,
    /// The Driver Verifier violation (its bugcheck) during this driver's steps.
    pub violation: Option<String>,
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
    /// Driver Verifier (`--verifier`).
    pub verifier: Option<VerifierRun>,
    /// Kernel debugging (`--kdnet`).
    pub kdnet: Option<KdnetRun>,
    /// The bugcheck's code and dump, once the VM was back.
    pub crash: Option<Crash>,
}

impl TargetReport {
    /// Whether everything passed and every driver unloaded cleanly.
    pub fn ok(&self) -> bool {
        self.failure.is_none() && self.drivers.iter().all(|d| d.unload == Unload::Clean)
    }
}

/// The report as text.
#[allow(clippy::too_many_lines)] // the report, part by part, in its order
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
            super::trace::render(out, &s.log);
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
        if let Some(v) = &d.verifier {
            debugging::render_stats(&mut out, v);
        }
        if let Some(v) = &d.violation {
            let _ = writeln!(out, "    Driver Verifier VIOLATION: {v}");
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
    debugging::render_target(
        &mut out,
        r.verifier.as_ref(),
        r.kdnet.as_ref(),
        r.crash.as_ref(),
    );
    if let Some(f) = &r.failure {
        let _ = writeln!(
            out,
            "  failed step: {} / {}: {}",
            f.scope, f.step, f.message
        );
    }
    out
}

/// A step's result, as `--json` writes it (docs/reports/deploy.md).
#[derive(Clone, Debug, Serialize)]
pub struct StepJson {
    /// The step's id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// `passed`, `failed`, `skipped` or `not run`.
    pub status: &'static str,
    /// Why it was skipped or not run.
    pub reason: Option<String>,
    /// It ran as cleanup after a failure.
    pub after_failure: bool,
    /// How long it took.
    pub duration_s: f64,
    /// The verdict.
    pub detail: String,
    /// The VM's notes.
    pub notes: Vec<String>,
    /// For a failure: what the VM printed.
    pub output: String,
    /// The driver's log lines written while the step ran (its ETW events, by the VM's clock).
    pub log: Vec<LogJson>,
}

/// A line of a driver's log, as `--json` writes it.
#[derive(Clone, Debug, Serialize)]
pub struct LogJson {
    /// When, on the VM (ISO 8601, UTC, as the trace wrote it).
    pub time: String,
    /// The ETW provider (`WindowsCallbackDrivers.<driver>`).
    pub provider: String,
    /// The ETW level: 2 error, 3 warning, 4 information, 5 verbose.
    pub level: u64,
    /// The line.
    pub message: String,
}

/// A probe check's verdict, as `--json` writes it.
#[derive(Clone, Debug, Serialize)]
pub struct ProbeJson {
    /// The check's name.
    pub name: String,
    /// What was expected.
    pub expected: String,
    /// What was observed.
    pub observed: String,
    /// Whether they agree.
    pub ok: bool,
}

/// The unload verdict, as `--json` writes it.
#[derive(Clone, Debug, Serialize)]
pub struct UnloadJson {
    /// `clean`, `unclean`, `not-unloaded`, `unknown` or `not-reached`.
    pub verdict: &'static str,
    /// In words.
    pub detail: String,
}

/// A Service Control Manager event, as `--json` writes it.
#[derive(Clone, Debug, Serialize)]
pub struct EventJson {
    /// When (ISO 8601, UTC).
    pub time: String,
    /// The event id.
    pub id: u64,
    /// Its level (1 critical, 2 error, 3 warning, 4 information).
    pub level: u64,
    /// Its message.
    pub message: String,
}

/// One driver's results, as `--json` writes them.
#[derive(Clone, Debug, Serialize)]
pub struct DriverJson {
    /// The driver.
    pub driver: String,
    /// Its service.
    pub service: String,
    /// Its steps.
    pub steps: Vec<StepJson>,
    /// The probe's checks.
    pub probes: Vec<ProbeJson>,
    /// The unload verdict.
    pub unload: UnloadJson,
    /// Service Control Manager events since the deploy began.
    pub events: Vec<EventJson>,
    /// Driver Verifier's counters while loaded (`--verifier`), else null.
    pub verifier: Option<debugging::StatsJson>,
    /// The Driver Verifier violation (bugcheck) during its steps, else null.
    pub violation: Option<String>,
}

/// The failure that stopped a plan, as `--json` writes it.
#[derive(Clone, Debug, Serialize)]
pub struct FailureJson {
    /// `setup`, `teardown` or the driver.
    pub scope: String,
    /// The step.
    pub step: String,
    /// Why.
    pub message: String,
    /// What the VM printed.
    pub output: String,
}

/// One target's report, as `--json` writes it (an element of `targets`).
#[derive(Clone, Debug, Serialize)]
pub struct TargetJson {
    /// The target.
    pub target: String,
    /// Everything passed and every driver unloaded cleanly.
    pub ok: bool,
    /// How long it all took.
    pub duration_s: f64,
    /// The setup steps.
    pub setup: Vec<StepJson>,
    /// Each driver.
    pub drivers: Vec<DriverJson>,
    /// The teardown steps.
    pub teardown: Vec<StepJson>,
    /// The failure, if any.
    pub failure: Option<FailureJson>,
    /// A probable bugcheck: when, and where the dump will be.
    pub bugcheck: Option<String>,
    /// Driver Verifier (`--verifier`), else null.
    pub verifier: Option<debugging::VerifierJson>,
    /// Kernel debugging (`--kdnet`), else null.
    pub kdnet: Option<debugging::KdnetJson>,
    /// The bugcheck's code and dump once the VM was back, else null.
    pub crash: Option<debugging::CrashJson>,
}

fn step_json(s: &StepReport) -> StepJson {
    let reason = match &s.status {
        Status::Skipped(w) | Status::NotRun(w) => Some(w.clone()),
        _ => None,
    };
    StepJson {
        id: s.id.clone(),
        title: s.title.clone(),
        status: s.status.word(),
        reason,
        after_failure: s.cleanup,
        duration_s: s.duration.as_secs_f64(),
        detail: s.detail.clone(),
        notes: s.notes.clone(),
        output: s.output.clone(),
        log: s
            .log
            .iter()
            .map(|l| LogJson {
                time: l.time.clone(),
                provider: l.provider.clone(),
                level: l.level,
                message: l.message.clone(),
            })
            .collect(),
    }
}

/// The report as `--json` writes it.
pub fn to_json(r: &TargetReport) -> TargetJson {
    TargetJson {
        target: r.target.clone(),
        ok: r.ok(),
        duration_s: r.duration.as_secs_f64(),
        setup: r.setup.iter().map(step_json).collect(),
        drivers: r
            .drivers
            .iter()
            .map(|d| DriverJson {
                driver: d.driver.clone(),
                service: d.service.clone(),
                steps: d.steps.iter().map(step_json).collect(),
                probes: d
                    .probes
                    .iter()
                    .map(|p| ProbeJson {
                        name: p.name.clone(),
                        expected: p.expected.clone(),
                        observed: p.observed.clone(),
                        ok: p.ok,
                    })
                    .collect(),
                unload: UnloadJson {
                    verdict: d.unload.key(),
                    detail: d.unload.text(),
                },
                events: d
                    .events
                    .iter()
                    .map(|e| EventJson {
                        time: e.time.clone(),
                        id: e.id,
                        level: e.level,
                        message: e.message.clone(),
                    })
                    .collect(),
                verifier: d.verifier.as_ref().map(debugging::stats_json),
                violation: d.violation.clone(),
            })
            .collect(),
        teardown: r.teardown.iter().map(step_json).collect(),
        failure: r.failure.as_ref().map(|f| FailureJson {
            scope: f.scope.clone(),
            step: f.step.clone(),
            message: f.message.clone(),
            output: f.output.clone(),
        }),
        bugcheck: r.bugcheck.clone(),
        verifier: r.verifier.as_ref().map(debugging::verifier_json),
        kdnet: r.kdnet.as_ref().map(debugging::kdnet_json),
        crash: r.crash.as_ref().map(debugging::crash_json),
    }
}
