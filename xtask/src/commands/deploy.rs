//! `cargo xtask deploy`: build, lint, sign and package, then run the drivers on a target.
//!
//! - `emu` (the default): each image in the emulated kernel (`emulator/emulate.rs`).
//! - `ssh://user@host[:port]` and `hyperv:VMNAME`: a Windows test VM, through the deploy library
//!   (`deploy.rs`): one plan per target, run in parallel, one report each.
//!
//! `suite.rs` is the deploy stage of `cargo xtask test`.

#[cfg(test)]
mod report_doc;
pub(crate) mod suite;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

use crate::base::error::{Error, Result, bail};
use crate::base::layout::{Arch, Profile};
use crate::base::workspace::Workspace;
use crate::commands::build::Options as BuildArgs;
use crate::commands::package::Options as PackageArgs;
use crate::deploy::{self, Install, REMOTE_DIR, Target, exec, plan, probe, report, transport};
use crate::emulator::emulate;

/// `deploy --json` (VM targets): one report per target, in the order given
/// (docs/reports/deploy.md).
#[derive(Debug, Serialize)]
pub(crate) struct DeployReport {
    /// The version of this document's shape: 1.
    pub schema: u32,
    /// Each target's report.
    pub targets: Vec<report::TargetJson>,
}

/// `deploy --dry-run --json` (VM targets): one plan per target, every command in full
/// (docs/reports/deploy.md).
#[derive(Debug, Serialize)]
pub(crate) struct DryRunReport {
    /// The version of this document's shape: 1.
    pub schema: u32,
    /// Each target's plan.
    pub plans: Vec<plan::PlanJson>,
}

/// Prints `doc` on stdout as indented JSON.
fn print_json(doc: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(doc)
        .map_err(|e| Error::new(format!("deploy: the JSON report could not be written: {e}")))?;
    println!("{text}");
    Ok(())
}

/// `cargo xtask deploy`'s options.
#[derive(Debug, PartialEq, Eq)]
#[allow(clippy::struct_excessive_bools)] // one per flag of the command line
#[allow(clippy::struct_field_names)] // `ssh_options`: the flag's name, `--ssh-option`
pub(crate) struct Options {
    /// `--target`... (several deploy in parallel); default the emulator.
    pub targets: Vec<Target>,
    /// `-p NAME`...; empty = every driver.
    pub packages: Vec<String>,
    /// `--release`.
    pub profile: Profile,
    /// `--arch`: the VM's architecture (x64 default; the emulator is x64 only).
    pub arch: Arch,
    /// `--dry-run`: print the plan, run nothing on a target.
    pub dry_run: bool,
    /// `--json`: the plan or the reports as JSON.
    pub json: bool,
    /// `--install sc|inf`.
    pub install: Install,
    /// `--keep`: leave the service and the files on the VM.
    pub keep: bool,
    /// `--enable-testsigning`.
    pub enable_testsigning: bool,
    /// `--snapshot NAME`.
    pub snapshot: Option<String>,
    /// `--libvirt DOMAIN`.
    pub libvirt: Option<String>,
    /// `--libvirt-uri URI` (virsh -c).
    pub libvirt_uri: Option<String>,
    /// `--revert-after-failure`.
    pub revert_after_failure: bool,
    /// `--remote-dir DIR`.
    pub remote_dir: Option<String>,
    /// `--ssh-option OPT`...
    pub ssh_options: Vec<String>,
    /// `--hyperv-credential FILE`.
    pub hyperv_credential: Option<std::path::PathBuf>,
    /// `--timeout SECS` (one step).
    pub timeout_s: u64,
    /// `--reboot-timeout SECS`.
    pub reboot_timeout_s: u64,
    /// `--verifier FLAGS`.
    pub verifier: Option<crate::deploy::verifier::Flags>,
    /// `--fetch-dump`.
    pub fetch_dump: bool,
    /// `--dump-limit SIZE`, in bytes.
    pub dump_limit: u64,
    /// `--kdnet HOST:PORT`.
    pub kdnet: Option<crate::deploy::kdnet::Kdnet>,
    /// `--pfx`, or `--key` and `--cert`: the packages signed with your own certificate (the
    /// plan trusts the package's certificate as it trusts the test one).
    pub own: Option<crate::commands::sign::OwnCert>,
}

/// One step of a deployment to the emulated kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Cross-build for x64; every image passes the lint before it is placed.
    BuildAndLint,
    /// Sign the images and make the driver packages (`target/packages/x64/<profile>/`).
    Package,
    /// Run each image in the emulated kernel and audit its teardown.
    Emulate,
}

/// The steps that deploy to the emulated kernel (a VM target's plan is `plan::build`).
fn emu_plan() -> Vec<Step> {
    vec![Step::BuildAndLint, Step::Package, Step::Emulate]
}

/// The `deploy` command.
pub(crate) fn run(ws: &Workspace, args: &Options) -> Result<()> {
    let vm: Vec<&Target> = args.targets.iter().filter(|t| **t != Target::Emu).collect();
    if vm.is_empty() {
        return run_emu(ws, args);
    }
    if vm.len() != args.targets.len() {
        bail!(
            "deploy: --target emu cannot be combined with VM targets; run `cargo xtask deploy` \
             (the emulated kernel) on its own"
        );
    }
    run_vms(ws, args, &vm)
}

fn run_emu(ws: &Workspace, args: &Options) -> Result<()> {
    let steps = emu_plan();
    if args.dry_run {
        println!(
            "plan for emu: 1. build and lint ({p}, x64)  2. sign and package ({p}, x64)  \
             3. run each driver in the emulated kernel (scenario.toml) and audit its teardown",
            p = args.profile
        );
        return Ok(());
    }
    let drivers = ws.select(&args.packages)?;
    let names: Vec<String> = drivers.iter().map(|d| d.name.clone()).collect();
    for (i, step) in steps.iter().enumerate() {
        let n = i + 1;
        let total = steps.len();
        match step {
            Step::BuildAndLint => {
                eprintln!("==> [{n}/{total}] build and lint ({}, x64)", args.profile);
                crate::commands::build::run(
                    ws,
                    &BuildArgs {
                        packages: names.clone(),
                        arches: vec![Arch::X64],
                        profile: args.profile,
                    },
                )?;
            }
            Step::Package => {
                eprintln!("==> [{n}/{total}] sign and package ({}, x64)", args.profile);
                crate::commands::package::run(
                    ws,
                    &PackageArgs {
                        packages: names.clone(),
                        arches: vec![Arch::X64],
                        profile: args.profile,
                        cert_dir: None,
                        own: args.own.clone(),
                        submission: false,
                        json: false,
                    },
                )?;
            }
            Step::Emulate => {
                eprintln!("==> [{n}/{total}] run in the emulated kernel");
                let runs = emulate::emulate(
                    ws,
                    &drivers,
                    args.profile,
                    emulate::Options::default(),
                    emulate::report_name(args.profile),
                    true,
                )?;
                let bad = runs
                    .iter()
                    .filter(|r| !matches!(r.outcome, emulate::Outcome::Passed(_)))
                    .count();
                if bad > 0 {
                    bail!(
                        "deploy: {bad} of {} driver(s) failed in the emulated kernel",
                        runs.len()
                    );
                }
            }
        }
    }
    Ok(())
}

/// A VM target with its transport.
enum Way {
    Ssh(transport::Ssh),
    HyperV(transport::HyperV),
}

impl Way {
    fn transport(&self) -> &dyn transport::Transport {
        match self {
            Way::Ssh(s) => s,
            Way::HyperV(h) => h,
        }
    }

    fn via(&self) -> plan::Via {
        match self {
            Way::Ssh(_) => plan::Via::Ssh,
            Way::HyperV(h) => plan::Via::HyperV { vm: h.vm.clone() },
        }
    }
}

/// The Hyper-V guest credential file for `vm`: `--hyperv-credential`, else
/// `<config dir>/hyperv-VMNAME.xml` beside the test certificate.
fn hyperv_credential(args: &Options, vm: &str) -> String {
    if let Some(c) = &args.hyperv_credential {
        return c.to_string_lossy().into_owned();
    }
    let dir = driver_package::cert::cert_dir(None).unwrap_or_else(|_| PathBuf::from("."));
    dir.join(format!("hyperv-{vm}.xml"))
        .to_string_lossy()
        .into_owned()
}

fn way(args: &Options, target: &Target) -> Way {
    match target {
        Target::Ssh { user, host, port } => {
            let mut s = transport::Ssh::new(user.clone(), host.clone(), *port);
            s.options.clone_from(&args.ssh_options);
            Way::Ssh(s)
        }
        Target::HyperV { vm } => Way::HyperV(transport::HyperV {
            vm: vm.clone(),
            credential: hyperv_credential(args, vm),
        }),
        Target::Emu => unreachable!("emu has no transport"),
    }
}

/// Where the helpers are written here before the copy step ships them.
/// Where `--fetch-dump` puts a target's dumps: `target/deploy/<the target without its scheme>/`,
/// with what cannot be in a folder name replaced.
fn dump_dir(ws: &Workspace, target: &str) -> PathBuf {
    let bare = target.split_once(':').map_or(target, |(_, rest)| rest);
    let name: String = bare
        .trim_start_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    ws.layout.target_dir.join("deploy").join(name)
}

fn helpers_dir(ws: &Workspace) -> PathBuf {
    ws.layout
        .target_dir
        .join("deploy")
        .join(plan::HELPERS_FOLDER)
}

/// The folder of the `i`th ssh target's control socket: under /tmp, short, since a socket's
/// path is limited to about 100 bytes (macOS's temporary folder alone takes half of that).
fn control_dir(i: usize) -> PathBuf {
    PathBuf::from("/tmp").join(format!("xtask-ssh-{}-{i}", std::process::id()))
}

/// The plan options of `args`.
fn options(ws: &Workspace, args: &Options) -> plan::Options {
    plan::Options {
        arch: args.arch,
        install: args.install,
        keep: args.keep,
        enable_testsigning: args.enable_testsigning,
        snapshot: args.snapshot.clone(),
        libvirt: args.libvirt.clone(),
        revert_after_failure: args.revert_after_failure,
        remote_dir: args
            .remote_dir
            .clone()
            .unwrap_or_else(|| REMOTE_DIR.to_owned()),
        timeout: Duration::from_secs(args.timeout_s),
        reboot_timeout: Duration::from_secs(args.reboot_timeout_s),
        libvirt_uri: args
            .libvirt_uri
            .clone()
            .unwrap_or_else(|| plan::LIBVIRT_URI.to_owned()),
        helpers_dir: helpers_dir(ws),
        verifier: args.verifier,
        fetch_dump: args.fetch_dump,
        dump_limit: args.dump_limit,
        dump_dir: ws.layout.target_dir.join("deploy"),
        kdnet: args.kdnet.clone(),
    }
}

#[allow(clippy::too_many_lines)] // check, build, package, plan, run, report
fn run_vms(ws: &Workspace, args: &Options, targets: &[&Target]) -> Result<()> {
    let ways: Vec<(String, Way)> = targets
        .iter()
        .map(|t| (t.to_string(), way(args, t)))
        .collect();
    let opts = options(ws, args);
    // Mistakes in the options are named before anything is built.
    let drivers = ws.select(&args.packages)?;
    for (name, w) in &ways {
        let dummy = plan::Package {
            driver: "check".into(),
            service: "Check".into(),
            display_name: "check".into(),
            dir: PathBuf::new(),
            files: Vec::new(),
            thumbprint: String::new(),
            cert_file: String::new(),
            service_values: Vec::new(),
            probe: probe::Probe::default(),
        };
        plan::build(name, &w.via(), &[dummy], &opts)?;
        if let Way::HyperV(h) = w
            && !args.dry_run
            && !cfg!(windows)
        {
            bail!("{}", transport::unsupported(&h.vm));
        }
    }
    let names: Vec<String> = drivers.iter().map(|d| d.name.clone()).collect();
    eprintln!("==> build and lint ({}, {})", args.profile, args.arch);
    crate::commands::build::run(
        ws,
        &BuildArgs {
            packages: names.clone(),
            arches: vec![args.arch],
            profile: args.profile,
        },
    )?;
    eprintln!("==> sign and package ({}, {})", args.profile, args.arch);
    crate::commands::package::run(
        ws,
        &PackageArgs {
            packages: names,
            arches: vec![args.arch],
            profile: args.profile,
            cert_dir: None,
            own: args.own.clone(),
            submission: false,
            json: false,
        },
    )?;
    let packages = drivers
        .iter()
        .map(|d| {
            plan::Package::read(
                &ws.layout.package_dir(&d.name, args.arch, args.profile),
                &d.dir,
                args.arch,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let plans = ways
        .iter()
        .map(|(name, w)| {
            let o = plan::Options {
                dump_dir: dump_dir(ws, name),
                ..opts.clone()
            };
            plan::build(name, &w.via(), &packages, &o)
        })
        .collect::<Result<Vec<_>>>()?;

    if args.dry_run {
        if args.json {
            print_json(&DryRunReport {
                schema: 1,
                plans: plans
                    .iter()
                    .zip(&ways)
                    .map(|(p, (_, w))| plan::to_json(p, w.transport()))
                    .collect(),
            })?;
        } else {
            for (p, (_, w)) in plans.iter().zip(&ways) {
                println!("{}", plan::render(p, w.transport()));
            }
        }
        return Ok(());
    }

    plan::write_helpers(&opts.helpers_dir)?;
    // One connection per ssh target for the whole plan, where the client can share one.
    let mut ways = ways;
    for (i, (name, w)) in ways.iter_mut().enumerate() {
        if let Way::Ssh(s) = w
            && let Err(e) = s.reuse_connections(control_dir(i))
        {
            eprintln!(
                "  [{name}] each command connects anew: no folder for ssh's control socket ({e})"
            );
        }
    }
    eprintln!(
        "==> deploy to {}",
        ways.iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let pairs: Vec<(&plan::Plan, &dyn transport::Transport)> = plans
        .iter()
        .zip(&ways)
        .map(|(p, (_, w))| (p, w.transport()))
        .collect();
    let stderr = Mutex::new(());
    let reports = deploy::execute_all(
        &pairs,
        &|target, line| {
            let _g = stderr.lock();
            eprintln!("  [{target}] {line}");
        },
        exec::Pace::default(),
    );
    for (_, w) in &ways {
        if let Way::Ssh(s) = w {
            s.close();
        }
    }
    if args.json {
        print_json(&DeployReport {
            schema: 1,
            targets: reports.iter().map(report::to_json).collect(),
        })?;
    } else {
        for r in &reports {
            println!("{}", report::render(r));
        }
    }
    let failed = reports.iter().filter(|r| !r.ok()).count();
    if failed > 0 {
        bail!(
            "deploy: {failed} of {} target(s) failed (see the report)",
            reports.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_emulator_plan_is_unchanged() {
        assert_eq!(
            emu_plan(),
            [Step::BuildAndLint, Step::Package, Step::Emulate]
        );
    }
}
