//! The plan as `--dry-run` prints it, as text and as JSON.

use std::fmt::Write as _;

use serde::Serialize;

use super::{Cleanup, Install, Plan, Run, Step, When, boot_script};
use crate::deploy::ps;
use crate::deploy::transport::Transport;

impl Step {
    /// Where the step runs, for printing.
    fn place(&self) -> &'static str {
        match self.run {
            Run::Guest(_) | Run::WaitForGuest { .. } => "VM",
            Run::Host { .. } => "this machine",
            Run::Upload(_) => "this machine -> VM",
        }
    }

    fn conditions(&self) -> Vec<String> {
        let mut c = Vec::new();
        match self.when {
            When::Always => {}
            When::TestSigningOff => c.push("only if test signing is off".to_owned()),
            When::Kept => c.push("skipped: --keep".to_owned()),
            When::AfterBugcheck => c.push(
                "only if the VM stopped answering during this driver's steps, once it is back"
                    .to_owned(),
            ),
            When::VerifierPersistent => c.push(
                "only if Verifier's flags need the persistent settings (a restart)".to_owned(),
            ),
        }
        match self.cleanup {
            Cleanup::No => {}
            Cleanup::After(id) => c.push(format!("also after a failure, once `{id}` ran")),
            Cleanup::Always => c.push("also after a failure".to_owned()),
            Cleanup::OnlyOnFailure => c.push("only after a failure".to_owned()),
        }
        c
    }
}

fn render_step(out: &mut String, n: usize, step: &Step, transport: &dyn Transport) {
    let mut conditions = step.conditions();
    conditions.push(format!("timeout {}s", step.timeout.as_secs()));
    let _ = writeln!(
        out,
        "  {n}. {} [{}] ({}; {})",
        step.title,
        step.id,
        step.place(),
        conditions.join("; ")
    );
    let indent = |text: &str, prefix: &str| -> String {
        let mut s = String::new();
        for l in text.trim_end().lines() {
            let _ = writeln!(s, "{prefix}{l}");
        }
        s
    };
    match &step.run {
        Run::Guest(script) => {
            let body = script
                .split_once(ps::prologue())
                .map_or(script.as_str(), |(_, b)| b);
            out.push_str(&indent(body, "       | "));
            out.push_str(&indent(&transport.show_guest(script, false), "       $ "));
        }
        Run::Host { shown, .. } => out.push_str(&indent(shown, "       $ ")),
        Run::Upload(items) => out.push_str(&indent(&transport.show_upload(items), "       $ ")),
        Run::WaitForGuest { new_boot } => {
            let _ = writeln!(
                out,
                "       polls every 5s until the VM answers{}, with:",
                if *new_boot {
                    " with a new boot time"
                } else {
                    ""
                }
            );
            let s = boot_script();
            let body = s.split_once(ps::prologue()).map_or(s.as_str(), |(_, b)| b);
            out.push_str(&indent(body, "       | "));
        }
    }
}

/// The plan as `--dry-run` prints it.
pub fn render(plan: &Plan, transport: &dyn Transport) -> String {
    let o = &plan.options;
    let mut out = format!(
        "plan for {} ({}, install with {}, folder on the VM: {}{})\n",
        plan.target,
        o.arch,
        match o.install {
            Install::Sc => "sc.exe",
            Install::Inf => "pnputil",
        },
        o.remote_dir,
        if o.keep { ", --keep" } else { "" }
    );
    out.push_str(
        "every VM script starts with this prologue (not repeated below), and runs as\n\
         `powershell -NoProfile -NonInteractive -EncodedCommand <the script, UTF-16LE, base64>`:\n",
    );
    for l in ps::prologue().lines() {
        let _ = writeln!(out, "  | {l}");
    }
    let mut n = 0;
    out.push_str("\nsetup\n");
    for s in &plan.setup {
        n += 1;
        render_step(&mut out, n, s, transport);
    }
    for d in &plan.drivers {
        let _ = writeln!(out, "\ndriver {} (service {})", d.driver, d.service);
        for s in &d.steps {
            n += 1;
            render_step(&mut out, n, s, transport);
        }
    }
    out.push_str("\nteardown\n");
    for s in &plan.teardown {
        n += 1;
        render_step(&mut out, n, s, transport);
    }
    out
}

/// A guest script and the command line that runs it.
#[derive(Clone, Debug, Serialize)]
pub struct GuestJson {
    /// The whole script (prologue, helpers, the step files with their parameters).
    pub script: String,
    /// The command line that runs it, in full.
    pub command: String,
}

/// A folder copied to the VM.
#[derive(Clone, Debug, Serialize)]
pub struct UploadJson {
    /// The folder here.
    pub local: std::path::PathBuf,
    /// Where it goes on the VM.
    pub remote: String,
}

/// The wait for the VM.
#[derive(Clone, Debug, Serialize)]
pub struct WaitJson {
    /// It must have restarted.
    pub new_boot: bool,
}

/// What a step runs: exactly one of `guest`, `host`, `upload` (with `command`) and
/// `wait_for_guest` is written.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunJson {
    /// A PowerShell script in the VM.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guest: Option<GuestJson>,
    /// A program on this machine: its words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<Vec<String>>,
    /// Folders copied to the VM.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload: Option<Vec<UploadJson>>,
    /// The copy's command (with `upload`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Waiting until the VM answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_for_guest: Option<WaitJson>,
}

/// One step of a plan, as `--dry-run --json` writes it.
#[derive(Clone, Debug, Serialize)]
pub struct PlanStepJson {
    /// The step's id.
    pub id: &'static str,
    /// What it does.
    pub title: String,
    /// When it runs, beyond the normal course; its time limit is `timeout_s`.
    pub conditions: Vec<String>,
    /// Its time limit.
    pub timeout_s: u64,
    /// What runs.
    pub run: RunJson,
}

/// One driver's steps, as `--dry-run --json` writes them.
#[derive(Clone, Debug, Serialize)]
pub struct PlanDriverJson {
    /// The driver.
    pub driver: String,
    /// Its service.
    pub service: String,
    /// Its steps.
    pub steps: Vec<PlanStepJson>,
}

/// One target's plan, as `--dry-run --json` writes it (an element of `plans`).
#[derive(Clone, Debug, Serialize)]
pub struct PlanJson {
    /// The target.
    pub target: String,
    /// The VM's architecture.
    pub arch: &'static str,
    /// The folder on the VM.
    pub remote_dir: String,
    /// Before the drivers.
    pub setup: Vec<PlanStepJson>,
    /// Each driver.
    pub drivers: Vec<PlanDriverJson>,
    /// After the drivers.
    pub teardown: Vec<PlanStepJson>,
}

fn step_json(step: &Step, transport: &dyn Transport) -> PlanStepJson {
    let run = match &step.run {
        Run::Guest(script) => RunJson {
            guest: Some(GuestJson {
                script: script.clone(),
                command: transport.show_guest(script, true),
            }),
            ..RunJson::default()
        },
        Run::Host { argv, .. } => RunJson {
            host: Some(argv.clone()),
            ..RunJson::default()
        },
        Run::Upload(items) => RunJson {
            upload: Some(
                items
                    .iter()
                    .map(|u| UploadJson {
                        local: u.local.clone(),
                        remote: u.remote.clone(),
                    })
                    .collect(),
            ),
            command: Some(transport.show_upload(items)),
            ..RunJson::default()
        },
        Run::WaitForGuest { new_boot } => RunJson {
            wait_for_guest: Some(WaitJson {
                new_boot: *new_boot,
            }),
            ..RunJson::default()
        },
    };
    PlanStepJson {
        id: step.id,
        title: step.title.clone(),
        conditions: step.conditions(),
        timeout_s: step.timeout.as_secs(),
        run,
    }
}

/// The plan as `--dry-run --json` writes it: every command in full.
pub fn to_json(plan: &Plan, transport: &dyn Transport) -> PlanJson {
    let steps = |s: &[Step]| s.iter().map(|s| step_json(s, transport)).collect();
    PlanJson {
        target: plan.target.clone(),
        arch: plan.options.arch.name(),
        remote_dir: plan.options.remote_dir.clone(),
        setup: steps(&plan.setup),
        drivers: plan
            .drivers
            .iter()
            .map(|d| PlanDriverJson {
                driver: d.driver.clone(),
                service: d.service.clone(),
                steps: steps(&d.steps),
            })
            .collect(),
        teardown: steps(&plan.teardown),
    }
}
