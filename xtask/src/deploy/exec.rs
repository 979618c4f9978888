//! Running a plan on a transport, and the report: each step with its duration and status, the
//! probe results, the unload verdict, the Service Control Manager events; a failure names its
//! step and quotes the VM's output; a VM that stops answering once a driver was started is
//! reported as a probable bugcheck, with where its dump will be.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::parse::{self, Event, Sections, ServiceStatus, State, TestSigning};
use super::plan::{self, Check, Cleanup, DUMP_PLACES, Plan, Run, Step, When};
use super::probe::{self, Verdict};
use super::transport::{Lost, Output, Transport, TransportError};
use crate::base::process::{elapsed, tail};

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
    fn word(&self) -> &'static str {
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

/// What the steps learned about the VM.
#[derive(Clone, Debug, Default)]
struct Facts {
    /// Test signing is off in this boot (and will be turned on).
    testsigning_off: bool,
    /// The last boot time, as the VM said it.
    boot: Option<String>,
    /// When the last step that ran on the VM began (the one that asked for a restart, or lost
    /// the VM): a boot newer than this is a new boot.
    step_start: Option<Instant>,
}

/// Seconds of slack between the VM's uptime and the time measured here.
const UPTIME_SLACK_S: u64 = 5;

/// A step's judged result.
#[derive(Default)]
struct Judged {
    ok: bool,
    detail: String,
    probes: Vec<Verdict>,
    events: Vec<Event>,
    unload: Option<Unload>,
}

impl Judged {
    fn pass(detail: impl Into<String>) -> Self {
        Self {
            ok: true,
            detail: detail.into(),
            ..Self::default()
        }
    }
    fn fail(detail: impl Into<String>) -> Self {
        Self {
            ok: false,
            detail: detail.into(),
            ..Self::default()
        }
    }
}

/// Times used while running (shortened by tests).
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    /// Between two attempts to reach a VM that is coming back.
    pub poll: Duration,
    /// The limit of one such attempt.
    pub attempt: Duration,
}

impl Default for Pace {
    fn default() -> Self {
        Self {
            poll: Duration::from_secs(5),
            attempt: Duration::from_secs(30),
        }
    }
}

struct Runner<'a> {
    plan: &'a Plan,
    t: &'a dyn Transport,
    progress: &'a (dyn Fn(&str) + Sync),
    pace: Pace,
    facts: Facts,
}

/// Runs `plan` on `t`, reporting progress lines through `progress`.
#[allow(clippy::too_many_lines)] // setup, drivers, teardown: the failure rules in one place
pub fn execute(
    plan: &Plan,
    t: &dyn Transport,
    progress: &(dyn Fn(&str) + Sync),
    pace: Pace,
) -> TargetReport {
    let start = Instant::now();
    let mut r = Runner {
        plan,
        t,
        progress,
        pace,
        facts: Facts::default(),
    };
    let mut report = TargetReport {
        target: plan.target.clone(),
        duration: Duration::ZERO,
        setup: Vec::new(),
        drivers: Vec::new(),
        teardown: Vec::new(),
        failure: None,
        bugcheck: None,
    };
    let mut started: BTreeSet<&'static str> = BTreeSet::new();
    let mut vm_gone = false;

    for step in &plan.setup {
        if report.failure.is_some() {
            report.setup.push(not_run(step, "an earlier step failed"));
            continue;
        }
        let (sr, j, lost) = r.run(step, "setup", false, &mut started);
        if !j.ok {
            report.failure = Some(failure("setup", &sr));
            vm_gone = lost.as_ref().is_some_and(TransportError::vm_gone);
        }
        report.setup.push(sr);
    }

    for d in &plan.drivers {
        let mut dr = DriverReport {
            driver: d.driver.clone(),
            service: d.service.clone(),
            steps: Vec::new(),
            probes: Vec::new(),
            unload: Unload::NotReached,
            events: Vec::new(),
        };
        if report.failure.is_some() {
            for s in &d.steps {
                dr.steps.push(not_run(s, "an earlier step failed"));
            }
            report.drivers.push(dr);
            continue;
        }
        let mut mine: BTreeSet<&'static str> = BTreeSet::new();
        let mut failed_here = false;
        for step in &d.steps {
            if failed_here {
                let applies = match step.cleanup {
                    Cleanup::After(id) => mine.contains(id),
                    Cleanup::Always => true,
                    Cleanup::No | Cleanup::OnlyOnFailure => false,
                };
                if !applies {
                    dr.steps.push(not_run(step, "an earlier step failed"));
                    continue;
                }
                if vm_gone {
                    dr.steps.push(not_run(step, "the VM is not answering"));
                    continue;
                }
                let (sr, mut j, _) = r.run(step, &d.driver, true, &mut mine);
                // A stop after a failure says nothing of the unload the plan did not reach.
                j.unload = None;
                absorb(&mut dr, j);
                dr.steps.push(sr);
                continue;
            }
            let (sr, j, lost) = r.run(step, &d.driver, false, &mut mine);
            let ok = j.ok;
            absorb(&mut dr, j);
            if !ok {
                failed_here = true;
                report.failure = Some(failure(&d.driver, &sr));
                let driver_loaded = mine.contains("start");
                if let Some(lost) = lost.filter(TransportError::vm_gone)
                    && driver_loaded
                {
                    // A step that ran past its time limit on a VM still up in the same boot
                    // hangs (a DriverUnload that never returns, a check that blocks): reported as
                    // such at once, not waited on as a crash.
                    if lost.kind == Lost::Timeout && r.same_boot() == Some(true) {
                        let msg = format!(
                            "`{}` of {} did not finish within {}s, but the VM still answers in the \
                             same boot: a hang, not a bugcheck ({}). A driver stuck in STOP_PENDING \
                             stays loaded until the VM restarts: restart it or revert it to a \
                             snapshot before the next deploy",
                            step.id,
                            d.driver,
                            step.timeout.as_secs(),
                            if step.id == "stop" {
                                "DriverUnload does not return"
                            } else {
                                "the driver or a check blocks"
                            }
                        );
                        let mut sr = sr;
                        sr.detail.clone_from(&msg);
                        if let Some(f) = report.failure.as_mut() {
                            f.message.clone_from(&msg);
                        }
                        dr.unload = if step.id == "stop" {
                            Unload::NotUnloaded(msg)
                        } else {
                            Unload::Unknown("a step hung".to_owned())
                        };
                        dr.steps.push(sr);
                        continue;
                    }
                    vm_gone = true;
                    let msg = format!(
                        "the VM stopped answering during `{}` of {} ({}): probable bugcheck \
                         (a crash in the driver, or a hang). The dump will be at {DUMP_PLACES}. \
                         Revert the VM to a clean snapshot afterwards (--snapshot).",
                        step.id, d.driver, lost.message
                    );
                    report.bugcheck = Some(msg);
                    dr.unload = Unload::Unknown("the VM stopped answering".to_owned());
                    (r.progress)(&format!(
                        "{}: the VM stopped answering: probable bugcheck; waiting up to {}s for it to come back",
                        d.driver,
                        plan.options.reboot_timeout.as_secs()
                    ));
                    if let Some(pm) = r.post_mortem() {
                        vm_gone = false;
                        if let Some(b) = report.bugcheck.as_mut() {
                            let _ = write!(b, "\n  after it came back: {}", pm.detail);
                        }
                        dr.steps.push(sr);
                        dr.steps.push(pm);
                        continue;
                    }
                }
            }
            dr.steps.push(sr);
        }
        report.drivers.push(dr);
    }

    let failed = report.failure.is_some();
    for step in &plan.teardown {
        let runs = if failed {
            match step.cleanup {
                Cleanup::After(id) => started.contains(id),
                Cleanup::Always | Cleanup::OnlyOnFailure => true,
                Cleanup::No => false,
            }
        } else {
            step.cleanup != Cleanup::OnlyOnFailure
        };
        if !runs {
            let why = if failed {
                "an earlier step failed"
            } else {
                "nothing failed"
            };
            report.teardown.push(if failed {
                not_run(step, why)
            } else {
                skipped(step, why)
            });
            continue;
        }
        let host_step = matches!(step.run, Run::Host { .. });
        if vm_gone && !host_step {
            report
                .teardown
                .push(not_run(step, "the VM is not answering"));
            continue;
        }
        let (sr, j, _) = r.run(step, "teardown", failed, &mut started);
        if !j.ok && report.failure.is_none() {
            report.failure = Some(failure("teardown", &sr));
        }
        report.teardown.push(sr);
    }
    report.duration = start.elapsed();
    report
}

/// The boot time and the seconds since, from the sections `boot` and `uptime`.
fn boot_and_uptime(out: &Output) -> Option<(String, u64)> {
    let s = Sections::parse(&out.stdout);
    let boot = s.value("boot").ok().filter(|b| !b.is_empty())?.to_owned();
    let uptime = s.value("uptime").ok()?.parse().ok()?;
    Some((boot, uptime))
}

fn absorb(dr: &mut DriverReport, j: Judged) {
    dr.probes.extend(j.probes);
    dr.events.extend(j.events);
    if let Some(u) = j.unload {
        // The first verdict that is not clean wins; `unloaded` confirms a clean stop.
        let keep =
            matches!(dr.unload, Unload::NotUnloaded(_) | Unload::Unclean(_)) && u == Unload::Clean;
        if !keep {
            dr.unload = u;
        }
    }
}

fn failure(scope: &str, sr: &StepReport) -> Failure {
    Failure {
        scope: scope.to_owned(),
        step: sr.id.clone(),
        message: sr.detail.clone(),
        output: sr.output.clone(),
    }
}

fn not_run(step: &Step, why: &str) -> StepReport {
    StepReport {
        id: step.id.to_owned(),
        title: step.title.clone(),
        status: Status::NotRun(why.to_owned()),
        cleanup: false,
        duration: Duration::ZERO,
        detail: String::new(),
        notes: Vec::new(),
        output: String::new(),
    }
}

fn skipped(step: &Step, why: &str) -> StepReport {
    StepReport {
        status: Status::Skipped(why.to_owned()),
        ..not_run(step, why)
    }
}

/// What a failed step shows: the VM's stdout and stderr, the last lines of each.
fn shown_output(out: &Output) -> String {
    let mut s = String::new();
    let stdout = tail(out.stdout.trim_end(), 30);
    let stderr = tail(out.stderr.trim_end(), 15);
    if !stdout.is_empty() {
        let _ = write!(s, "stdout:\n{stdout}");
    }
    if !stderr.is_empty() {
        if !s.is_empty() {
            s.push('\n');
        }
        let _ = write!(s, "stderr:\n{stderr}");
    }
    s
}

impl Runner<'_> {
    fn run(
        &mut self,
        step: &Step,
        scope: &str,
        cleanup: bool,
        started: &mut BTreeSet<&'static str>,
    ) -> (StepReport, Judged, Option<TransportError>) {
        let skip = match step.when {
            When::Always => None,
            When::TestSigningOff if self.facts.testsigning_off => None,
            When::TestSigningOff => Some("test signing is on"),
            When::Kept => Some("--keep: left on the VM"),
        };
        if let Some(why) = skip {
            return (skipped(step, why), Judged::pass(""), None);
        }
        started.insert(step.id);
        (self.progress)(&format!(
            "{scope}: {}{} ...",
            step.id,
            if cleanup { " (after the failure)" } else { "" }
        ));
        let start = Instant::now();
        let (judged, output, lost) = match self.perform(step) {
            Ok((out, j)) => (j, out, None),
            Err(e) => (Judged::fail(e.message.clone()), e.partial.clone(), Some(e)),
        };
        let duration = start.elapsed();
        let sections = Sections::parse(&output.stdout);
        let sr = StepReport {
            id: step.id.to_owned(),
            title: step.title.clone(),
            status: if judged.ok {
                Status::Passed
            } else {
                Status::Failed
            },
            cleanup,
            duration,
            detail: judged.detail.clone(),
            notes: sections.notes,
            output: if judged.ok {
                String::new()
            } else {
                shown_output(&output)
            },
        };
        (self.progress)(&format!(
            "{scope}: {} {} ({}){}",
            step.id,
            sr.status.word(),
            elapsed(duration),
            if sr.detail.is_empty() {
                String::new()
            } else {
                format!(": {}", sr.detail.lines().next().unwrap_or_default())
            }
        ));
        (sr, judged, lost)
    }

    fn perform(&mut self, step: &Step) -> Result<(Output, Judged), TransportError> {
        if !matches!(step.run, Run::WaitForGuest { .. }) {
            self.facts.step_start = Some(Instant::now());
        }
        let out = match &step.run {
            Run::Guest(script) => self.t.guest(script, step.timeout)?,
            Run::Host { argv, .. } => self.t.host(argv, step.timeout)?,
            Run::Upload(items) => self.t.upload(items, step.timeout)?,
            Run::WaitForGuest { new_boot } => {
                let since = if *new_boot {
                    self.facts.step_start
                } else {
                    None
                };
                return match self.wait_for_guest(since, step.timeout) {
                    Some((out, boot)) => {
                        self.facts.boot = Some(boot.clone());
                        Ok((out, Judged::pass(format!("the VM answers (booted {boot})"))))
                    }
                    None => Ok((
                        Output::default(),
                        Judged::fail(format!(
                            "the VM did not answer{} within {}s",
                            if *new_boot { " after restarting" } else { "" },
                            step.timeout.as_secs()
                        )),
                    )),
                };
            }
        };
        let judged = self.judge(&step.check, &out);
        Ok((out, judged))
    }

    /// Polls the VM until it answers (booted after `since`: its uptime is shorter than the time
    /// since then), up to `limit`.
    fn wait_for_guest(&self, since: Option<Instant>, limit: Duration) -> Option<(Output, String)> {
        let start = Instant::now();
        let script = plan::boot_script();
        loop {
            let left = limit.saturating_sub(start.elapsed());
            if left.is_zero() {
                return None;
            }
            if let Ok(out) = self.t.guest(&script, self.pace.attempt.min(left))
                && out.code == Some(0)
                && let Some((boot, uptime)) = boot_and_uptime(&out)
                && since.is_none_or(|t| uptime <= t.elapsed().as_secs() + UPTIME_SLACK_S)
            {
                return Some((out, boot));
            }
            std::thread::sleep(self.pace.poll.min(limit.saturating_sub(start.elapsed())));
        }
    }

    /// After a probable bugcheck: waits for the VM, then lists dumps and bugcheck events.
    fn post_mortem(&mut self) -> Option<StepReport> {
        let limit = self.plan.options.reboot_timeout;
        let start = Instant::now();
        self.wait_for_guest(self.facts.step_start, limit)?;
        let script = plan::post_mortem_script(&self.plan.options.remote_dir);
        let out = self.t.guest(&script, self.plan.options.timeout).ok()?;
        let s = Sections::parse(&out.stdout);
        let dumps = s.value("dumps").unwrap_or_default().to_owned();
        let events = s
            .get("events")
            .and_then(|e| parse::events(&e.body).ok())
            .unwrap_or_default();
        let mut detail = if dumps.is_empty() {
            "the VM restarted; no dump written since the deploy began (is a dump configured? System Properties > Startup and Recovery)".to_owned()
        } else {
            format!("the VM restarted; dump(s): {}", dumps.replace('\n', "; "))
        };
        for e in &events {
            let _ = write!(detail, "\n  event {} at {}: {}", e.id, e.time, e.message);
        }
        Some(StepReport {
            id: "post-mortem".to_owned(),
            title: "after the VM came back: crash dumps and bugcheck events".to_owned(),
            status: Status::Passed,
            cleanup: true,
            duration: start.elapsed(),
            detail,
            notes: Vec::new(),
            output: String::new(),
        })
    }

    /// Whether the VM answers now in the boot it was in when the last step began (a step that
    /// timed out on a VM that did not restart hangs; it did not crash). `None`: no answer.
    fn same_boot(&self) -> Option<bool> {
        let start = self.facts.step_start?;
        let out = self.t.guest(&plan::boot_script(), self.pace.attempt).ok()?;
        let (_, uptime) = boot_and_uptime(&out)?;
        Some(uptime > start.elapsed().as_secs() + UPTIME_SLACK_S)
    }

    #[allow(clippy::too_many_lines)] // one arm per kind of check
    fn judge(&mut self, check: &Check, out: &Output) -> Judged {
        let s = Sections::parse(&out.stdout);
        let exit_note = |what: &str| {
            let mut m = format!("{what} (exit code {})", code_text(out.code));
            if let Some(n) = s.notes.last() {
                let _ = write!(m, ": {n}");
            }
            m
        };
        match check {
            Check::Exit0 | Check::Answered => {
                if out.code == Some(0) {
                    Judged::pass(s.notes.join("; "))
                } else {
                    Judged::fail(exit_note("failed"))
                }
            }
            Check::Preflight { arch, may_enable } => {
                let r = judge_preflight(&s, *arch, *may_enable);
                match r {
                    Ok((detail, facts_off, boot)) => {
                        self.facts.testsigning_off = facts_off;
                        self.facts.boot = Some(boot);
                        Judged::pass(detail)
                    }
                    Err(e) => Judged::fail(e),
                }
            }
            Check::Copy(expected) => judge_copy(&s, out, expected),
            Check::Trust(thumb) => judge_trust(&s, out, thumb),
            Check::Installed => {
                if let Some(sec) = s.get("sc-create").or_else(|| s.get("pnputil")).filter(|c| {
                    out.code != Some(0) || c.exit.is_some_and(|e| e != 0 && e != 259 && e != 3010)
                }) {
                    return Judged::fail(win32_failure(&sec.name, sec));
                }
                match query(&s, "service") {
                    Ok(ServiceStatus::Present {
                        state: State::Stopped,
                        ..
                    }) => Judged::pass(format!("installed, stopped{}", notes_suffix(&s))),
                    Ok(ServiceStatus::Missing) => {
                        Judged::fail(format!("no service after the install{}", notes_suffix(&s)))
                    }
                    Ok(ServiceStatus::Present { state, .. }) => {
                        Judged::fail(format!("installed, but {} already", state.name()))
                    }
                    Err(e) => Judged::fail(e),
                }
            }
            Check::Started(image) => {
                if let Some(sec) = s.get("sc-start").filter(|c| c.exit != Some(0)) {
                    return Judged::fail(win32_failure("sc start", sec));
                }
                let state = match query(&s, "service") {
                    Ok(ServiceStatus::Present { state, .. }) => state,
                    Ok(ServiceStatus::Missing) => return Judged::fail("the service is gone"),
                    Err(e) => return Judged::fail(e),
                };
                if state != State::Running {
                    return Judged::fail(format!("{} after sc start, not RUNNING", state.name()));
                }
                loaded(&s, image, true, "running, and loaded")
            }
            Check::Probe(image, checks) => {
                for q in ["service", "service-settled"] {
                    match query(&s, q) {
                        Ok(ServiceStatus::Present {
                            state: State::Running,
                            ..
                        }) => {}
                        Ok(other) => {
                            return Judged::fail(format!(
                                "not running {}: {other:?}",
                                if q == "service" {
                                    "when the probe began"
                                } else {
                                    "after the settle time"
                                }
                            ));
                        }
                        Err(e) => return Judged::fail(e),
                    }
                }
                let mut j = loaded(
                    &s,
                    image,
                    true,
                    "still running and loaded after the settle time",
                );
                if !j.ok {
                    return j;
                }
                run_checks(&mut j, checks, &s);
                j
            }
            Check::Stopped => {
                let not_active = s
                    .get("sc-stop")
                    .is_some_and(|c| c.exit == Some(parse::ERROR_SERVICE_NOT_ACTIVE));
                if not_active
                    && let Ok(ServiceStatus::Present {
                        state: State::Stopped,
                        ..
                    }) = query(&s, "service")
                {
                    return Judged::pass("was not running (error 1062)");
                }
                if let Some(sec) = s.get("sc-stop").filter(|c| c.exit != Some(0)) {
                    let mut j = Judged::fail(win32_failure("sc stop", sec));
                    j.unload = Some(Unload::NotUnloaded(j.detail.clone()));
                    return j;
                }
                match query(&s, "service") {
                    Ok(ServiceStatus::Present {
                        state: State::Stopped,
                        win32_exit: 0,
                        ..
                    }) => {
                        let mut j = Judged::pass("stopped, exit code 0");
                        j.unload = Some(Unload::Clean);
                        j
                    }
                    Ok(ServiceStatus::Present {
                        state: State::Stopped,
                        win32_exit,
                        ..
                    }) => {
                        let m = format!("stopped with WIN32_EXIT_CODE {win32_exit}, not 0");
                        let mut j = Judged::fail(m.clone());
                        j.unload = Some(Unload::Unclean(m));
                        j
                    }
                    Ok(ServiceStatus::Present { state, .. }) => {
                        let m = format!("{} 30s after sc stop (DriverUnload hangs?)", state.name());
                        let mut j = Judged::fail(m.clone());
                        j.unload = Some(Unload::NotUnloaded(m));
                        j
                    }
                    Ok(ServiceStatus::Missing) => Judged::fail("the service is gone"),
                    Err(e) => Judged::fail(e),
                }
            }
            Check::Unloaded(image, checks) => {
                let mut j = loaded(&s, image, false, "gone from the loaded modules");
                if !j.ok {
                    j.unload = Some(Unload::Unclean(j.detail.clone()));
                    return j;
                }
                run_checks(&mut j, checks, &s);
                j.unload = Some(if j.ok {
                    Unload::Clean
                } else {
                    Unload::Unclean(j.detail.clone())
                });
                j
            }
            Check::Removed => match query(&s, "service") {
                Ok(ServiceStatus::Missing) => Judged::pass("the service is gone"),
                Ok(ServiceStatus::Present { state, .. }) => Judged::fail(format!(
                    "the service still exists ({}){}",
                    state.name(),
                    s.get("sc-delete")
                        .map(|d| format!(": sc delete said {}", d.body.trim()))
                        .unwrap_or_default()
                )),
                Err(e) => Judged::fail(e),
            },
            Check::Events => match s.get("events").map(|e| parse::events(&e.body)) {
                Some(Ok(mut events)) => {
                    // Code Integrity's events about the image (why a start was refused).
                    let ci = s
                        .get("code-integrity")
                        .and_then(|c| parse::events(&c.body).ok())
                        .unwrap_or_default();
                    let mut j = Judged::pass(format!(
                        "{} event(s){}",
                        events.len(),
                        if ci.is_empty() {
                            String::new()
                        } else {
                            format!(", {} Code Integrity event(s) about the image", ci.len())
                        }
                    ));
                    events.extend(ci);
                    j.events = events;
                    j
                }
                Some(Err(e)) => Judged::pass(format!("events not read: {e}")),
                None => Judged::pass(format!(
                    "no events section (exit code {})",
                    code_text(out.code)
                )),
            },
        }
    }
}

/// Whether `image` is (`want`) or is no longer in the loaded-module list of section `modules`.
fn loaded(s: &Sections, image: &str, want: bool, ok_text: &str) -> Judged {
    if let Err(e) = s
        .need("modules-check")
        .and_then(|c| parse::modules_check(&c.body))
    {
        return Judged::fail(e.to_string());
    }
    let modules = match s.need("modules").and_then(|m| parse::modules(&m.body)) {
        Ok(m) => m,
        Err(e) => return Judged::fail(e.to_string()),
    };
    let is = modules.contains(&image.to_lowercase());
    match (is, want) {
        (true, true) | (false, false) => Judged::pass(ok_text),
        (false, true) => Judged::fail(format!(
            "{image} is not in the loaded kernel modules although the service says RUNNING"
        )),
        (true, false) => Judged::fail(format!(
            "{image} is still in the loaded kernel modules after the service stopped"
        )),
    }
}

/// Judges `checks` (sections `check-1`...) into `j`.
fn run_checks(j: &mut Judged, checks: &[probe::Check], s: &Sections) {
    let mut failed = Vec::new();
    for (i, c) in checks.iter().enumerate() {
        let v = probe::judge(c, s, &format!("check-{}", i + 1));
        if !v.ok {
            failed.push(format!(
                "{}: expected {}, observed {}",
                v.name, v.expected, v.observed
            ));
        }
        j.probes.push(v);
    }
    if !checks.is_empty() {
        if failed.is_empty() {
            let _ = write!(j.detail, "; {} check(s) passed", checks.len());
        } else {
            j.ok = false;
            j.detail = format!(
                "{} of {} check(s) failed: {}",
                failed.len(),
                checks.len(),
                failed.join("; ")
            );
        }
    }
}

fn code_text(code: Option<i32>) -> String {
    code.map_or_else(|| "none: killed".to_owned(), |c| c.to_string())
}

fn notes_suffix(s: &Sections) -> String {
    if s.notes.is_empty() {
        String::new()
    } else {
        format!(" ({})", s.notes.join("; "))
    }
}

fn query(s: &Sections, name: &str) -> Result<ServiceStatus, String> {
    let q = s.need(name).map_err(|e| e.to_string())?;
    parse::service(&q.body).map_err(|e| e.to_string())
}

/// `sc start failed: exit code 577 (ERROR_INVALID_IMAGE_HASH: ...)` and the program's words.
fn win32_failure(what: &str, sec: &parse::Section) -> String {
    let code = sec.exit.unwrap_or(-1);
    let hint = parse::win32_hint(code).map_or(String::new(), |h| format!(" ({h})"));
    let said = tail(sec.body.trim(), 3).replace('\n', " ");
    format!("{what} failed: exit code {code}{hint}: {said}")
}

/// Preflight: (detail, test signing off and to be enabled, boot time) or why it fails.
fn judge_preflight(
    s: &Sections,
    arch: crate::base::layout::Arch,
    may_enable: bool,
) -> Result<(String, bool, String), String> {
    let v = |n: &str| s.value(n).map_err(|e| e.to_string());
    if v("admin")? != "True" {
        return Err(
            "the account is not an administrator, or its token is filtered: deploy with an \
             administrator account (its key in C:\\ProgramData\\ssh\\administrators_authorized_keys)"
                .to_owned(),
        );
    }
    let vm_arch = match v("arch")?.to_ascii_uppercase().as_str() {
        "AMD64" => crate::base::layout::Arch::X64,
        "ARM64" => crate::base::layout::Arch::Arm64,
        other => {
            return Err(format!(
                "the VM's architecture is {other}: the drivers are built for x64 and arm64"
            ));
        }
    };
    if vm_arch != arch {
        return Err(format!(
            "the VM is {vm_arch}, the packages are {arch}: deploy with --arch {vm_arch}"
        ));
    }
    let boot = v("boot")?.to_owned();
    // This boot's options, from the registry (SystemStartOptions: the loader's options, upper
    // case, not localised): the one that says whether test-signed drivers load now. An ASCII
    // comparison, so that no culture's case rules (Turkish dotless i) apply.
    let effective = v("start-options")?
        .split_whitespace()
        .any(|o| o.eq_ignore_ascii_case("TESTSIGNING"));
    let secure_boot = v("secure-boot")?.eq_ignore_ascii_case("true");
    let dir = v("remote-dir")?;
    if dir != "ok" {
        return Err(format!("cannot prepare the folder on the VM: {dir}"));
    }
    let os = v("os")?.to_owned();
    let dbg = match v("debug-print-filter")? {
        "" => {
            "DbgPrint output filtered (no Debug Print Filter\\DEFAULT: see README, Deploy to a VM)"
                .to_owned()
        }
        m => format!("Debug Print Filter DEFAULT = {m}"),
    };
    let base = format!("administrator; {vm_arch}; Windows {os}; {dbg}");
    if effective {
        return Ok((format!("{base}; test signing on"), false, boot));
    }
    // Only now is the boot configuration needed: on in it (a restart pending), or off.
    let configured = parse::bcd_testsigning(v("bcd-testsigning")?).map_err(|e| e.to_string())?;
    let state = match configured {
        TestSigning::On => "on in the boot configuration but not in this boot (restart pending)",
        TestSigning::Off => "off",
    };
    if !may_enable {
        return Err(format!(
            "test signing is {state}: deploy with --enable-testsigning, or on the VM run \
             `bcdedit /set testsigning on` and restart it"
        ));
    }
    if secure_boot && configured == TestSigning::Off {
        return Err(
            "test signing is off and Secure Boot is on, which forbids turning it on: turn Secure \
             Boot off in the VM's firmware settings (Hyper-V: Set-VMFirmware VMNAME \
             -EnableSecureBoot Off), then deploy again"
                .to_owned(),
        );
    }
    let bitlocker = match v("bitlocker")? {
        "0" | "none" => String::new(),
        "1" => "; BitLocker protects the system volume: suspended for the one restart".to_owned(),
        other => format!(
            "; BitLocker state `{other}`: if the VM starts in BitLocker recovery, suspend \
             BitLocker (Suspend-BitLocker -RebootCount 1) and deploy again"
        ),
    };
    Ok((
        format!("{base}; test signing {state}: turning it on (--enable-testsigning){bitlocker}"),
        true,
        boot,
    ))
}

fn judge_copy(s: &Sections, out: &Output, expected: &[(String, Vec<(String, String)>)]) -> Judged {
    if out.code != Some(0) {
        return Judged::fail(format!(
            "hashing the copied files failed (exit code {})",
            code_text(out.code)
        ));
    }
    let mut bad = Vec::new();
    let mut count = 0;
    for (driver, files) in expected {
        let got = match s
            .need(&format!("files {driver}"))
            .and_then(|sec| parse::hashes(&sec.body))
        {
            Ok(h) => h,
            Err(e) => return Judged::fail(e.to_string()),
        };
        for (name, sha) in files {
            count += 1;
            match got.iter().find(|(n, _)| n == name) {
                Some((_, h)) if h == sha => {}
                Some(_) => bad.push(format!("{driver}\\{name} differs")),
                None => bad.push(format!("{driver}\\{name} is missing")),
            }
        }
    }
    if bad.is_empty() {
        Judged::pass(format!("{count} file(s), each with the manifest's SHA-256"))
    } else {
        Judged::fail(bad.join("; "))
    }
}

fn judge_trust(s: &Sections, out: &Output, thumb: &str) -> Judged {
    if let Some(add) = s.list.iter().find(|x| x.name.starts_with("addstore")) {
        return Judged::fail(format!(
            "certutil -{} failed (exit code {}): {}",
            add.name,
            code_text(add.exit),
            add.body.trim()
        ));
    }
    if out.code != Some(0) {
        return Judged::fail(format!("failed (exit code {})", code_text(out.code)));
    }
    for store in ["Root", "TrustedPublisher"] {
        let listing = match s.need(&format!("store {store}")) {
            Ok(l) => l,
            Err(e) => return Judged::fail(e.to_string()),
        };
        // Test-Path on the Cert: drive: the certificate, by thumbprint, without reading
        // certutil's localised listing.
        match listing.body.trim() {
            "present" => {}
            "absent" => {
                return Judged::fail(format!(
                    "{thumb} is not in LocalMachine\\{store} after adding it"
                ));
            }
            other => {
                return Judged::fail(format!(
                    "LocalMachine\\{store}: `{other}` is not present/absent"
                ));
            }
        }
    }
    Judged::pass(format!("in Root and TrustedPublisher{}", notes_suffix(s)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::fake::{FakeTransport, FakeVm};
    use crate::deploy::plan::tests::{cm_filter, ex_callback};
    use crate::deploy::plan::{Options, Package, Via, build};

    fn transport(packages: &[Package], vm: FakeVm) -> FakeTransport {
        let mut vm = vm;
        for p in packages {
            vm.files.insert(p.driver.clone(), p.files.clone());
        }
        FakeTransport {
            vm: std::sync::Mutex::new(vm),
            known: packages
                .iter()
                .map(|p| (p.service.clone(), p.driver.clone()))
                .collect(),
        }
    }

    fn fast() -> Pace {
        Pace {
            poll: Duration::from_millis(1),
            attempt: Duration::from_millis(50),
        }
    }

    fn deploy(options: &Options, vm: FakeVm) -> (TargetReport, FakeTransport) {
        let packages = [cm_filter(), ex_callback()];
        let plan = build("ssh://admin@testvm", &Via::Ssh, &packages, options).unwrap();
        let t = transport(&packages, vm);
        let lines = std::sync::Mutex::new(Vec::new());
        let progress = |l: &str| lines.lock().unwrap().push(l.to_owned());
        let r = execute(&plan, &t, &progress, fast());
        assert!(
            lines
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains("cm-filter: start passed"))
                || !r.ok()
        );
        (r, t)
    }

    fn statuses(steps: &[StepReport]) -> Vec<String> {
        steps
            .iter()
            .map(|s| {
                format!(
                    "{} {}{}",
                    s.id,
                    s.status.word(),
                    if s.cleanup { " (cleanup)" } else { "" }
                )
            })
            .collect()
    }

    #[test]
    fn a_good_driver_is_loaded_exercised_and_unloaded() {
        let (r, t) = deploy(&Options::default(), FakeVm::new());
        let text = render(&r);
        assert!(r.ok(), "{text}");
        let cm = &r.drivers[0];
        assert_eq!(cm.unload, Unload::Clean);
        assert_eq!(cm.probes.len(), 6, "{text}");
        assert!(cm.probes.iter().all(|p| p.ok));
        let blocked = cm
            .probes
            .iter()
            .find(|p| p.name.starts_with("writing Blocked"))
            .unwrap();
        assert_eq!(
            (blocked.expected.as_str(), blocked.observed.as_str()),
            ("denied", "denied")
        );
        assert_eq!(
            cm.events.iter().map(|e| e.id).collect::<Vec<_>>(),
            [7045, 7036]
        );
        assert_eq!(r.drivers[1].unload, Unload::Clean);
        assert!(
            text.starts_with("deploy to ssh://admin@testvm: ok"),
            "{text}"
        );
        assert!(
            text.contains(
                "✓ writing Blocked is refused (access denied): expected denied, observed denied"
            ),
            "{text}"
        );
        assert!(text.contains("note: added to Root"), "{text}");
        let vm = t.vm.lock().unwrap();
        assert!(vm.services.is_empty(), "every service removed");
        assert!(!vm.loaded.contains("cm-filter.sys"));
        let j = to_json(&r);
        assert_eq!(j["ok"], true);
        assert_eq!(j["drivers"][0]["unload"]["verdict"], "clean");
        assert_eq!(j["drivers"][0]["steps"][1]["id"], "start");
        assert!(j["drivers"][0]["steps"][1]["duration_s"].is_number());
    }

    #[test]
    fn what_an_earlier_deploy_of_one_package_left_is_removed() {
        // The leftovers list of a one-package plan must still be a list of pairs: an earlier
        // deploy left CmFilter installed; unless the step removes it, `sc create` fails (1073).
        let mut vm = FakeVm::new();
        vm.services
            .insert("CmFilter".into(), ("cm-filter.sys".into(), "STOPPED"));
        let packages = [cm_filter()];
        let plan = build(
            "ssh://admin@testvm",
            &Via::Ssh,
            &packages,
            &Options::default(),
        )
        .unwrap();
        let t = transport(&packages, vm);
        let r = execute(&plan, &t, &|_| {}, fast());
        assert!(r.ok(), "{}", render(&r));
        let leftovers = r.setup.iter().find(|s| s.id == "leftovers").unwrap();
        assert!(
            leftovers
                .notes
                .iter()
                .any(|n| n.starts_with("removing the service CmFilter")),
            "{:?}",
            leftovers.notes
        );
    }

    #[test]
    fn a_command_check_that_exits_leaves_the_other_checks_running() {
        // `exit 3` in a command check is that command's exit code, not the end of the probe.
        let mut p = ex_callback();
        p.probe = crate::deploy::probe::parse_probe(
            "[[while-loaded]]\nname = \"exits 3\"\ncommand = \"Write-Output 'x'\\nexit 3\"\nexpect-exit = 3\n\
             [[while-loaded]]\nname = \"exits 0\"\ncommand = \"exit\"\n\
             [[after-unload]]\nname = \"exits 4\"\ncommand = \"exit 4\"\nexpect-exit = 4\n",
        )
        .unwrap();
        let packages = [p];
        let plan = build(
            "ssh://admin@testvm",
            &Via::Ssh,
            &packages,
            &Options::default(),
        )
        .unwrap();
        let t = transport(&packages, FakeVm::new());
        let r = execute(&plan, &t, &|_| {}, fast());
        assert!(r.ok(), "{}", render(&r));
        let seen: Vec<(&str, bool)> = r.drivers[0]
            .probes
            .iter()
            .map(|v| (v.name.as_str(), v.ok))
            .collect();
        assert_eq!(
            seen,
            [("exits 3", true), ("exits 0", true), ("exits 4", true)]
        );
    }

    #[test]
    fn a_failing_start_stops_the_plan_and_removes_what_applies() {
        let mut vm = FakeVm::new();
        vm.start_error = Some(577);
        let (r, t) = deploy(&Options::default(), vm);
        assert!(!r.ok());
        let f = r.failure.as_ref().unwrap();
        assert_eq!((f.scope.as_str(), f.step.as_str()), ("cm-filter", "start"));
        assert!(
            f.message.contains("exit code 577") && f.message.contains("test signing"),
            "{}",
            f.message
        );
        assert!(f.output.contains("StartService FAILED 577"), "{}", f.output);
        assert_eq!(
            statuses(&r.drivers[0].steps),
            [
                "install passed",
                "start failed",
                "probe not run",
                "stop passed (cleanup)",
                "unloaded not run",
                "remove passed (cleanup)",
                "events passed (cleanup)"
            ]
        );
        assert_eq!(r.drivers[0].unload, Unload::NotReached);
        assert!(
            r.drivers[1]
                .steps
                .iter()
                .all(|s| matches!(s.status, Status::NotRun(_)))
        );
        assert_eq!(statuses(&r.teardown), ["remove-files passed (cleanup)"]);
        assert!(t.vm.lock().unwrap().services.is_empty());
        assert!(
            render(&r).contains("failed step: cm-filter / start: sc start failed: exit code 577")
        );
    }

    #[test]
    fn an_unload_that_leaves_the_filter_is_unclean() {
        let mut vm = FakeVm::new();
        vm.filter_stays = true;
        let (r, _) = deploy(&Options::default(), vm);
        let cm = &r.drivers[0];
        assert!(
            matches!(&cm.unload, Unload::Unclean(w) if w.contains("Blocked can be written: expected allowed, observed denied")),
            "{:?}",
            cm.unload
        );
        assert_eq!(r.failure.as_ref().unwrap().step, "unloaded");
        assert!(statuses(&cm.steps).contains(&"remove passed (cleanup)".to_owned()));
    }

    #[test]
    fn an_image_still_loaded_after_stop_is_not_clean() {
        let mut vm = FakeVm::new();
        vm.image_stays = true;
        let (r, _) = deploy(&Options::default(), vm);
        let f = r.failure.unwrap();
        assert_eq!(f.step, "unloaded");
        assert!(
            f.message
                .contains("cm-filter.sys is still in the loaded kernel modules"),
            "{}",
            f.message
        );
    }

    #[test]
    fn a_vm_that_stops_answering_after_start_is_a_probable_bugcheck() {
        let mut vm = FakeVm::new();
        // preflight, leftovers, check-copy, trust, install, start answer; the probe does not.
        vm.dies_after = Some(6);
        vm.silent_for = 3;
        let options = Options {
            reboot_timeout: Duration::from_secs(5),
            ..Options::default()
        };
        let (r, _) = deploy(&options, vm);
        let b = r.bugcheck.as_deref().unwrap();
        assert!(
            b.contains("during `probe` of cm-filter") && b.contains("probable bugcheck"),
            "{b}"
        );
        assert!(b.contains(r"C:\Windows\MEMORY.DMP"), "{b}");
        assert!(b.contains("0x00000050"), "{b}");
        let ids = statuses(&r.drivers[0].steps);
        assert_eq!(
            ids,
            [
                "install passed",
                "start passed",
                "probe failed",
                "post-mortem passed (cleanup)",
                "stop passed (cleanup)",
                "unloaded not run",
                "remove passed (cleanup)",
                "events passed (cleanup)"
            ]
        );
        assert!(matches!(r.drivers[0].unload, Unload::Unknown(_)));
        assert!(render(&r).contains("PROBABLE BUGCHECK"));
    }

    #[test]
    fn a_vm_that_never_comes_back_skips_the_cleanup_on_it() {
        let mut vm = FakeVm::new();
        vm.dies_after = Some(6);
        vm.silent_for = usize::MAX;
        let options = Options {
            reboot_timeout: Duration::from_millis(200),
            ..Options::default()
        };
        let (r, _) = deploy(&options, vm);
        assert!(r.bugcheck.is_some());
        let cm = statuses(&r.drivers[0].steps);
        assert_eq!(cm[3], "stop not run");
        assert!(
            matches!(&r.drivers[0].steps[3].status, Status::NotRun(w) if w == "the VM is not answering")
        );
        assert_eq!(statuses(&r.teardown), ["remove-files not run"]);
    }

    #[test]
    fn test_signing_off_fails_the_preflight_unless_asked_to_enable_it() {
        let mut vm = FakeVm::new();
        vm.testsigning = false;
        let (r, _) = deploy(&Options::default(), vm.clone());
        let f = r.failure.unwrap();
        assert_eq!(f.step, "preflight");
        assert!(
            f.message
                .contains("test signing is off: deploy with --enable-testsigning"),
            "{}",
            f.message
        );
        assert_eq!(statuses(&r.teardown), ["remove-files not run"]);

        let (r, t) = deploy(
            &Options {
                enable_testsigning: true,
                ..Options::default()
            },
            vm,
        );
        assert!(r.ok(), "{}", render(&r));
        assert_eq!(
            statuses(&r.setup)[..4],
            [
                "preflight passed",
                "enable-testsigning passed",
                "wait-reboot passed",
                "preflight-again passed"
            ]
        );
        assert!(t.vm.lock().unwrap().testsigning);
        // With test signing on already, the three steps are skipped.
        let (r, _) = deploy(
            &Options {
                enable_testsigning: true,
                ..Options::default()
            },
            FakeVm::new(),
        );
        assert_eq!(statuses(&r.setup)[1], "enable-testsigning skipped");
    }

    #[test]
    fn hidden_module_addresses_fail_the_start_with_the_cause() {
        let mut vm = FakeVm::new();
        vm.hides_addresses = true;
        let (r, _) = deploy(&Options::default(), vm);
        let f = r.failure.unwrap();
        assert_eq!((f.scope.as_str(), f.step.as_str()), ("cm-filter", "start"));
        assert!(
            f.message.contains("hid the loaded modules' addresses")
                && f.message.contains("SeDebugPrivilege"),
            "{}",
            f.message
        );
    }

    #[test]
    fn a_stop_that_hangs_in_the_same_boot_is_a_hang_not_a_bugcheck() {
        let mut vm = FakeVm::new();
        vm.stop_hangs = true;
        let start = std::time::Instant::now();
        let (r, _) = deploy(&Options::default(), vm);
        assert!(r.bugcheck.is_none(), "{}", render(&r));
        let f = r.failure.as_ref().unwrap();
        assert_eq!(f.step, "stop");
        assert!(
            f.message.contains("a hang, not a bugcheck")
                && f.message.contains("DriverUnload does not return"),
            "{}",
            f.message
        );
        assert!(matches!(r.drivers[0].unload, Unload::NotUnloaded(_)));
        // Not waited on as a crash (the reboot timeout is 600 s).
        assert!(start.elapsed() < Duration::from_secs(30));
        assert!(statuses(&r.drivers[0].steps).contains(&"remove passed (cleanup)".to_owned()));
    }

    #[test]
    fn bitlocker_is_suspended_for_the_test_signing_restart() {
        let mut vm = FakeVm::new();
        vm.testsigning = false;
        vm.bitlocker = "1";
        let (r, t) = deploy(
            &Options {
                enable_testsigning: true,
                ..Options::default()
            },
            vm,
        );
        assert!(r.ok(), "{}", render(&r));
        assert!(
            r.setup[0]
                .detail
                .contains("BitLocker protects the system volume"),
            "{}",
            r.setup[0].detail
        );
        assert!(
            r.setup[1]
                .notes
                .iter()
                .any(|n| n.contains("BitLocker suspended")),
            "{:?}",
            r.setup[1].notes
        );
        assert_eq!(t.vm.lock().unwrap().bitlocker, "0");
    }

    #[test]
    fn keep_leaves_the_service_and_snapshots_revert_first() {
        let (r, t) = deploy(
            &Options {
                keep: true,
                snapshot: Some("clean".into()),
                libvirt: Some("win11".into()),
                revert_after_failure: true,
                ..Options::default()
            },
            FakeVm::new(),
        );
        assert!(r.ok(), "{}", render(&r));
        assert_eq!(statuses(&r.setup)[..2], ["revert passed", "wait passed"]);
        assert!(
            matches!(&r.drivers[0].steps[5].status, Status::Skipped(w) if w.contains("--keep"))
        );
        assert_eq!(
            statuses(&r.teardown),
            ["remove-files skipped", "revert-after-failure skipped"]
        );
        let vm = t.vm.lock().unwrap();
        assert_eq!(vm.services.len(), 2, "kept");
        assert_eq!(
            vm.log[0],
            "host: virsh -c qemu:///system snapshot-revert win11 clean --running"
        );
    }
}
