//! Running a plan on a transport: each step with its duration and status, the failure rules
//! (what still runs after a failure), the probable bugcheck of a VM that stops answering once a
//! driver was started, and the reboots. The steps' results are judged by `judge.rs`; the report
//! is `report.rs`.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use super::judge::{
    Judged, code_text, judge_copy, judge_preflight, judge_trust, loaded, notes_suffix, query,
    run_checks, win32_failure,
};
use super::parse::{self, Sections, ServiceStatus, State};
use super::plan::{self, Check, Cleanup, DUMP_PLACES, Plan, Run, Step, When};
use super::report::{DriverReport, Failure, Status, StepReport, TargetReport, Unload};
use super::transport::{Lost, Output, Transport, TransportError};
use crate::base::process::{elapsed, tail};

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
    /// The `verifier` step chose the persistent settings (a restart follows).
    verifier_persistent: bool,
    /// Driver Verifier, as the steps found and left it.
    verifier: Option<super::report::VerifierRun>,
    /// Kernel debugging, as set up.
    kdnet: Option<super::report::KdnetRun>,
    /// The drivers' log lines the trace-stop step decoded (`deploy/trace.rs`).
    trace: Vec<super::trace::Event>,
}

/// Seconds of slack between the VM's uptime and the time measured here.
const UPTIME_SLACK_S: u64 = 5;

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
        verifier: None,
        kdnet: None,
        crash: None,
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
            verifier: None,
            violation: None,
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
            // Run by the bugcheck handling below (`post_mortem`), not in turn.
            if step.when == When::AfterBugcheck {
                if !dr.steps.iter().any(|s| s.id == step.id) {
                    dr.steps.push(if failed_here {
                        not_run(step, "the VM did not stop answering")
                    } else {
                        skipped(step, "the VM did not stop answering")
                    });
                }
                continue;
            }
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
                    if let Some((pm, crash)) = r.post_mortem(&d.driver) {
                        vm_gone = false;
                        if plan.options.verifier.is_some()
                            && let Some(b) = &crash.bugcheck
                            && crate::deploy::verifier::violation(b.code).is_some()
                        {
                            dr.violation = Some(b.text());
                        }
                        report.crash = Some(crash);
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
    report.verifier = r.facts.verifier.take();
    report.kdnet = r.facts.kdnet.take();
    super::trace::place(&mut report, std::mem::take(&mut r.facts.trace));
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
    if j.verifier.is_some() {
        dr.verifier = j.verifier;
    }
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
        vm_clock: None,
        log: Vec::new(),
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
            When::VerifierPersistent if self.facts.verifier_persistent => None,
            When::VerifierPersistent => {
                Some("Driver Verifier's flags took effect without a restart (volatile)")
            }
            When::AfterBugcheck => Some("the VM did not stop answering"),
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
        let vm_clock = sections
            .get("clock")
            .and_then(|c| c.body.trim().parse().ok());
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
            vm_clock,
            log: Vec::new(),
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

    /// After a probable bugcheck: waits for the VM, then lists dumps and bugcheck events, reads
    /// the bugcheck code and (`--fetch-dump`) copies the dump.
    fn post_mortem(&mut self, driver: &str) -> Option<(StepReport, super::report::Crash)> {
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
        let crash = self.crash(driver, &s, &mut detail);
        Some((
            StepReport {
                id: "post-mortem".to_owned(),
                title: "after the VM came back: crash dumps and bugcheck events".to_owned(),
                status: Status::Passed,
                cleanup: true,
                duration: start.elapsed(),
                detail,
                notes: Vec::new(),
                output: String::new(),
                vm_clock: None,
                log: Vec::new(),
            },
            crash,
        ))
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
        if let Some(j) = self.judge_debugging(check, &s, out) {
            return j;
        }
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
            Check::Trace => {
                let stopped = s.get("logman-stop").and_then(|x| x.exit);
                match s.get("trace").map(|t| super::trace::events(&t.body)) {
                    Some(Ok(events)) => {
                        let n = events.len();
                        self.facts.trace = events;
                        let lines =
                            format!("{n} line(s) of the drivers' log, each shown beside its step");
                        if stopped == Some(0) {
                            Judged::pass(lines)
                        } else {
                            // Gone already (a VM that restarted loses its sessions), or stuck: the
                            // lines written so far still count, and the next deploy's trace-start
                            // stops a leftover session first.
                            Judged::pass(format!(
                                "{lines}; logman could not stop the trace session {} (exit code \
                                 {}): if it still runs, stop it on the VM with logman stop {} -ets",
                                super::trace::SESSION,
                                stopped.map_or_else(|| "none".to_owned(), |c| c.to_string()),
                                super::trace::SESSION
                            ))
                        }
                    }
                    Some(Err(e)) => Judged::fail(e),
                    None => Judged::fail(exit_note("no trace section")),
                }
            }
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
            Check::Verifier(_)
            | Check::VerifierStats(_)
            | Check::VerifierRestored
            | Check::Kdnet(_) => unreachable!("judged by judge_debugging"),
        }
    }
}

mod debugging;
#[cfg(test)]
mod tests;
