//! `cargo xtask deploy`: build, lint, sign and package, then run the drivers on a target.
//!
//! - `emu` (the default): each image in the emulated kernel (`emulate.rs`).
//! - `ssh://user@host[:port]` and `hyperv:VMNAME`: a Windows test VM. One plan of steps, as data
//!   (`plan.rs`), the same for both; only the transport differs (`transport.rs`). Each step is a
//!   PowerShell script (`ps.rs`) whose output the host reads with the parsers of `parse.rs`; each
//!   driver's probe is its `deploy.toml` (`probe.rs`); `exec.rs` runs the plan and reports.
//!   Several targets deploy in parallel, one report each.

mod exec;
mod parse;
mod plan;
mod probe;
mod ps;
mod syntax;
mod transport;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod loopback;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

pub use plan::{Install, REMOTE_DIR};

use crate::base::error::{Error, Result, bail};
use crate::base::layout::Arch;
use crate::base::workspace::Workspace;
use crate::cli::{BuildArgs, DeployArgs, PackageArgs};
use crate::emulator::emulate::{self, Options};

/// Where `deploy` puts the drivers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The emulated kernel (speakeasy and the harness), on this machine.
    Emu,
    /// A Windows VM reached over SSH.
    Ssh {
        /// The account, if given.
        user: Option<String>,
        /// Host name or address.
        host: String,
        /// Port, if not 22.
        port: Option<u16>,
    },
    /// A Hyper-V VM reached over PowerShell Direct (Windows hosts).
    HyperV {
        /// The VM's name.
        vm: String,
    },
}

impl FromStr for Target {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        const FORMS: &str = "emu, ssh://user@host[:port] or hyperv:VMNAME";
        if s == "emu" {
            return Ok(Target::Emu);
        }
        if let Some(rest) = s.strip_prefix("ssh://") {
            let rest = rest.trim_end_matches('/');
            let (user, host_port) = match rest.rsplit_once('@') {
                Some((u, h)) if !u.is_empty() => (Some(u.to_owned()), h),
                Some(_) => bail!("--target {s}: empty user name; use {FORMS}"),
                None => (None, rest),
            };
            let (host, port) = match host_port.rsplit_once(':') {
                _ if host_port.starts_with('[') => match host_port[1..].split_once(']') {
                    Some((h, "")) => (h, None),
                    Some((h, p)) => match p.strip_prefix(':').and_then(|p| p.parse::<u16>().ok()) {
                        Some(port) if port != 0 => (h, Some(port)),
                        _ => bail!("--target {s}: `{p}` is not `:port`"),
                    },
                    None => bail!("--target {s}: no `]` after the IPv6 address"),
                },
                Some((h, p)) => {
                    let port = p.parse::<u16>().ok().filter(|&p| p != 0);
                    let Some(port) = port else {
                        bail!("--target {s}: `{p}` is not a port number")
                    };
                    (h, Some(port))
                }
                None => (host_port, None),
            };
            if host.is_empty() {
                bail!("--target {s}: no host; use {FORMS}");
            }
            return Ok(Target::Ssh {
                user,
                host: host.to_owned(),
                port,
            });
        }
        if let Some(vm) = s.strip_prefix("hyperv:") {
            if vm.is_empty() {
                bail!("--target {s}: no VM name; use {FORMS}");
            }
            return Ok(Target::HyperV { vm: vm.to_owned() });
        }
        bail!("unknown deploy target `{s}`: use {FORMS}")
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Emu => f.write_str("emu"),
            Target::Ssh { user, host, port } => {
                f.write_str("ssh://")?;
                if let Some(u) = user {
                    write!(f, "{u}@")?;
                }
                if host.contains(':') {
                    write!(f, "[{host}]")?;
                } else {
                    f.write_str(host)?;
                }
                if let Some(p) = port {
                    write!(f, ":{p}")?;
                }
                Ok(())
            }
            Target::HyperV { vm } => write!(f, "hyperv:{vm}"),
        }
    }
}

/// One step of a deployment to the emulated kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Cross-build for x64; every image passes the lint before it is placed.
    BuildAndLint,
    /// Sign the images and make the driver packages (`target/packages/x64/<profile>/`).
    Package,
    /// Run each image in the emulated kernel and audit its teardown.
    Emulate,
}

/// The steps that deploy to the emulated kernel (a VM target's plan is `plan::build`).
pub fn emu_plan() -> Vec<Step> {
    vec![Step::BuildAndLint, Step::Package, Step::Emulate]
}

/// The `deploy` command.
pub fn run(ws: &Workspace, args: &DeployArgs) -> Result<()> {
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

fn run_emu(ws: &Workspace, args: &DeployArgs) -> Result<()> {
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
                    Options::default(),
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

/// One check of `cargo xtask test`'s deploy stage.
pub struct SuiteCheck {
    /// Passed.
    pub ok: bool,
    /// What was checked (and why it failed).
    pub what: String,
}

/// The OpenSSH programs the loopback tests need that are missing (sshd is looked for in
/// /usr/sbin too, where Debian puts it).
fn missing_openssh() -> Vec<&'static str> {
    ["sshd", "ssh", "sftp", "ssh-keygen"]
        .into_iter()
        .filter(|p| {
            crate::base::tools::find_on_path(p).is_none()
                && !std::path::Path::new("/usr/sbin").join(p).is_file()
        })
        .collect()
}

/// `cargo xtask test`, deploy stage: the VM plans of the real x64 debug packages (made by the
/// packaging stage) for both transports and both install modes, then the loopback tests (the ssh
/// transport and whole plans against a real OpenSSH server on 127.0.0.1), installing OpenSSH
/// where it is missing and this machine lets us. Returns the checks, and why the loopback tests
/// were skipped if they were (only when OpenSSH cannot be installed).
pub fn suite_checks(
    ws: &Workspace,
    drivers: &[&crate::base::workspace::Driver],
) -> (Vec<SuiteCheck>, Option<String>) {
    let mut checks = Vec::new();
    let mut packages = Vec::new();
    for d in drivers {
        let dir = ws
            .layout
            .package_dir(&d.name, Arch::X64, crate::base::layout::Profile::Debug);
        let what = format!(
            "deploy plans of {} (ssh and hyperv, sc and inf installs) from its package",
            d.name
        );
        if !dir.join(driver_package::package::MANIFEST).is_file() {
            println!(
                "  no package of {} to plan from (its packaging failure is counted above)",
                d.name
            );
            continue;
        }
        let result = plan::Package::read(&dir, &d.dir, Arch::X64).and_then(|p| {
            packages.push(p.clone());
            for install in [Install::Sc, Install::Inf] {
                let o = plan::Options {
                    install,
                    enable_testsigning: true,
                    ..plan::Options::default()
                };
                plan::build(
                    "ssh://admin@testvm",
                    &plan::Via::Ssh,
                    std::slice::from_ref(&p),
                    &o,
                )?;
                let vm = plan::Via::HyperV {
                    vm: "TestVM".into(),
                };
                plan::build("hyperv:TestVM", &vm, std::slice::from_ref(&p), &o)?;
            }
            Ok(())
        });
        match result {
            Ok(()) => {
                println!("  ✓ {what}");
                checks.push(SuiteCheck { ok: true, what });
            }
            Err(e) => checks.push(SuiteCheck {
                ok: false,
                what: format!("{what}: {e}"),
            }),
        }
    }
    if !packages.is_empty() {
        println!(
            "  PowerShell syntax of every script of every plan: python {}",
            syntax::CHECKER
        );
        match crate::emulator::venv::ensure(
            &ws.layout.emu_venv(),
            &ws.root.join(crate::emulator::venv::LOCK),
        ) {
            Ok(python) => {
                for (ok, what) in syntax::suite_checks(&python, &ws.root, &packages) {
                    if ok {
                        println!("  ✓ {what}");
                    }
                    checks.push(SuiteCheck { ok, what });
                }
            }
            Err(e) => checks.push(SuiteCheck {
                ok: false,
                what: format!("PowerShell syntax of the plans: the emulator venv: {e}"),
            }),
        }
    }
    for (program, package) in [("sshd", "openssh-server"), ("ssh", "openssh-client")] {
        if missing_openssh().contains(&program)
            && let Err(e) = crate::base::tools::ensure(
                program,
                package,
                "the deploy tests run a real OpenSSH server on 127.0.0.1",
            )
        {
            return (checks, Some(e.to_string()));
        }
    }
    let missing = missing_openssh();
    if !missing.is_empty() {
        return (
            checks,
            Some(format!(
                "{} not found (Debian: apt-get install openssh-server openssh-client)",
                missing.join(", ")
            )),
        );
    }
    checks.extend(loopback_checks(ws));
    (checks, None)
}

/// The loopback tests (`deploy/loopback.rs`, ignored in a plain `cargo test`), one check each.
fn loopback_checks(ws: &Workspace) -> Vec<SuiteCheck> {
    let mut checks = Vec::new();
    println!(
        "  the loopback tests: cargo test -p xtask --bin xtask -- --ignored deploy::loopback::"
    );
    let out = std::process::Command::new(crate::base::workspace::cargo())
        .args([
            "test",
            "-p",
            "xtask",
            "--bin",
            "xtask",
            "--",
            "--ignored",
            "deploy::loopback::",
        ])
        .current_dir(&ws.root)
        .output();
    let Ok(out) = out else {
        return vec![SuiteCheck {
            ok: false,
            what: "the loopback tests: cargo could not be run".into(),
        }];
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut seen = 0;
    for line in stdout.lines() {
        let Some(rest) = line.strip_prefix("test deploy::loopback::") else {
            continue;
        };
        let Some((name, result)) = rest.split_once(" ... ") else {
            continue;
        };
        seen += 1;
        let ok = result.trim() == "ok";
        if ok {
            println!("  ✓ loopback {name}");
        }
        checks.push(SuiteCheck {
            ok,
            what: format!("deploy loopback test {name}"),
        });
    }
    if seen == 0 || !out.status.success() {
        let tail = crate::base::process::tail(
            &format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)),
            40,
        );
        println!("{tail}");
        if seen == 0 {
            checks.push(SuiteCheck {
                ok: false,
                what: "the loopback tests did not run".into(),
            });
        }
    }
    checks
}

/// Runs each plan on its transport, all at once (one thread per target); `progress` gets the
/// target and a line. One report per target, in the order given.
fn deploy_all(
    pairs: &[(&plan::Plan, &dyn transport::Transport)],
    progress: &(dyn Fn(&str, &str) + Sync),
    pace: exec::Pace,
) -> Vec<exec::TargetReport> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = pairs
            .iter()
            .map(|(p, t)| {
                scope.spawn(move || {
                    let line = |l: &str| progress(&p.target, l);
                    exec::execute(p, *t, &line, pace)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a deploy thread panicked"))
            .collect()
    })
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
fn hyperv_credential(args: &DeployArgs, vm: &str) -> String {
    if let Some(c) = &args.hyperv_credential {
        return c.to_string_lossy().into_owned();
    }
    let dir = driver_package::cert::cert_dir(None).unwrap_or_else(|_| PathBuf::from("."));
    dir.join(format!("hyperv-{vm}.xml"))
        .to_string_lossy()
        .into_owned()
}

fn way(args: &DeployArgs, target: &Target) -> Way {
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
fn helpers_dir(ws: &Workspace) -> PathBuf {
    ws.layout
        .target_dir
        .join("deploy")
        .join(plan::HELPERS_FOLDER)
}

/// The plan options of `args`.
fn options(ws: &Workspace, args: &DeployArgs) -> plan::Options {
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
    }
}

#[allow(clippy::too_many_lines)] // check, build, package, plan, run, report
fn run_vms(ws: &Workspace, args: &DeployArgs, targets: &[&Target]) -> Result<()> {
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
        .map(|(name, w)| plan::build(name, &w.via(), &packages, &opts))
        .collect::<Result<Vec<_>>>()?;

    if args.dry_run {
        if args.json {
            let doc: Vec<serde_json::Value> = plans
                .iter()
                .zip(&ways)
                .map(|(p, (_, w))| plan::to_json(p, w.transport()))
                .collect();
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        } else {
            for (p, (_, w)) in plans.iter().zip(&ways) {
                println!("{}", plan::render(p, w.transport()));
            }
        }
        return Ok(());
    }

    plan::write_helpers(&opts.helpers_dir)?;
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
    let reports = deploy_all(
        &pairs,
        &|target, line| {
            let _g = stderr.lock();
            eprintln!("  [{target}] {line}");
        },
        exec::Pace::default(),
    );
    if args.json {
        let doc: Vec<serde_json::Value> = reports.iter().map(exec::to_json).collect();
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        for r in &reports {
            println!("{}", exec::render(r));
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
    fn targets_parse_and_print_back() {
        for s in [
            "emu",
            "ssh://me@vm",
            "ssh://me@10.0.0.5:2222",
            "ssh://vm",
            "hyperv:Win11 Test",
        ] {
            assert_eq!(s.parse::<Target>().unwrap().to_string(), s);
        }
        assert_eq!(
            "ssh://admin@host:22".parse::<Target>().unwrap(),
            Target::Ssh {
                user: Some("admin".into()),
                host: "host".into(),
                port: Some(22)
            }
        );
    }

    #[test]
    fn bad_targets_say_what_is_wrong() {
        let err = |s: &str| s.parse::<Target>().unwrap_err().to_string();
        assert!(err("ssh://me@vm:http").contains("`http` is not a port number"));
        assert!(err("ssh://me@").contains("no host"));
        assert!(err("hyperv:").contains("no VM name"));
        assert!(err("vm").starts_with("unknown deploy target `vm`"));
    }

    #[test]
    fn the_emulator_plan_is_unchanged() {
        assert_eq!(
            emu_plan(),
            [Step::BuildAndLint, Step::Package, Step::Emulate]
        );
    }

    #[test]
    fn ipv6_targets_take_brackets() {
        let t: Target = "ssh://admin@[fe80::1]:2222".parse().unwrap();
        assert_eq!(
            t,
            Target::Ssh {
                user: Some("admin".into()),
                host: "fe80::1".into(),
                port: Some(2222)
            }
        );
        assert_eq!(t.to_string(), "ssh://admin@[fe80::1]:2222");
        assert!("ssh://[::1".parse::<Target>().is_err());
        assert!("ssh://[::1]x".parse::<Target>().is_err());
    }
}
