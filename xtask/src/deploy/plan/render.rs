//! The plan as `--dry-run` prints it, as text and as JSON.

use std::fmt::Write as _;

use serde_json::{Value, json};

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

fn step_json(step: &Step, transport: &dyn Transport) -> Value {
    let run = match &step.run {
        Run::Guest(script) => json!({
            "guest": {"script": script, "command": transport.show_guest(script, true)}
        }),
        Run::Host { argv, .. } => json!({"host": argv}),
        Run::Upload(items) => json!({
            "upload": items.iter().map(|u| json!({"local": u.local, "remote": u.remote})).collect::<Vec<_>>(),
            "command": transport.show_upload(items),
        }),
        Run::WaitForGuest { new_boot } => json!({"wait_for_guest": {"new_boot": new_boot}}),
    };
    json!({
        "id": step.id,
        "title": step.title,
        "conditions": step.conditions(),
        "timeout_s": step.timeout.as_secs(),
        "run": run,
    })
}

/// The plan as `--dry-run --json` prints it: every command in full.
pub fn to_json(plan: &Plan, transport: &dyn Transport) -> Value {
    json!({
        "target": plan.target,
        "arch": plan.options.arch.name(),
        "remote_dir": plan.options.remote_dir,
        "setup": plan.setup.iter().map(|s| step_json(s, transport)).collect::<Vec<_>>(),
        "drivers": plan.drivers.iter().map(|d| json!({
            "driver": d.driver,
            "service": d.service,
            "steps": d.steps.iter().map(|s| step_json(s, transport)).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "teardown": plan.teardown.iter().map(|s| step_json(s, transport)).collect::<Vec<_>>(),
    })
}
