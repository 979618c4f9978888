//! `cargo xtask deploy`: one plan of steps for every target; only the transport differs.
//!
//! Today the only target is the emulated kernel: build (each image linted on the way), sign and
//! package (what a VM would receive; `package.rs`), and run the image in the emulator. A VM target
//! (issue #7) will add steps to the plan: copy the package over the transport, install, start,
//! collect the log, stop, uninstall.

use std::fmt;
use std::str::FromStr;

use crate::cli::{BuildArgs, DeployArgs, PackageArgs};
use crate::emulate::{self, Options};
use crate::error::{Error, Result, bail};
use crate::layout::Arch;
use crate::workspace::Workspace;

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
                f.write_str(host)?;
                if let Some(p) = port {
                    write!(f, ":{p}")?;
                }
                Ok(())
            }
            Target::HyperV { vm } => write!(f, "hyperv:{vm}"),
        }
    }
}

/// One step of a deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Cross-build for x64; every image passes the lint before it is placed.
    BuildAndLint,
    /// Sign the images and make the driver packages (`target/packages/x64/<profile>/`).
    Package,
    /// Run each image in the emulated kernel and audit its teardown.
    Emulate,
}

/// The steps that deploy to `target`.
pub fn plan(target: &Target) -> Result<Vec<Step>> {
    match target {
        Target::Emu => Ok(vec![Step::BuildAndLint, Step::Package, Step::Emulate]),
        Target::Ssh { .. } | Target::HyperV { .. } => bail!(
            "deploy --target {target}: not implemented yet (issue #7); `cargo xtask deploy` \
             (the emulated kernel) works today"
        ),
    }
}

/// The `deploy` command.
pub fn run(ws: &Workspace, args: &DeployArgs) -> Result<()> {
    let steps = plan(&args.target)?;
    let drivers = ws.select(&args.packages)?;
    let names: Vec<String> = drivers.iter().map(|d| d.name.clone()).collect();
    for (i, step) in steps.iter().enumerate() {
        let n = i + 1;
        let total = steps.len();
        match step {
            Step::BuildAndLint => {
                eprintln!("==> [{n}/{total}] build and lint ({}, x64)", args.profile);
                crate::build::run(
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
                crate::package::run(
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
    fn only_the_emulator_has_a_plan_today() {
        assert_eq!(
            plan(&Target::Emu).unwrap(),
            [Step::BuildAndLint, Step::Package, Step::Emulate]
        );
        let e = plan(&"hyperv:test".parse().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("not implemented yet (issue #7)"), "{e}");
        assert!(plan(&"ssh://a@b".parse().unwrap()).is_err());
    }
}
