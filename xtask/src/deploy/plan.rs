//! The plan: every step of a deployment to a VM, as data, before anything runs. `--dry-run`
//! prints it; the snapshot tests hold its exact scripts and command lines; `exec.rs` runs it.
//!
//! ```text
//! setup     [revert the snapshot, wait for the VM]  preflight  [enable test signing, reboot,
//!           wait, preflight again]  [kdnet, wait]  leftovers  copy  check the copy  trust
//!           [verifier, (persistent) wait]
//! per driver  install  start  probe  [verifier-stats]  stop  unloaded  remove  events
//!             [post-mortem: only after a bugcheck]
//! teardown  [verifier-restore]  remove the files  [revert the snapshot after a failure]
//! ```
//!
//! A step that fails stops the plan; the steps marked to run "also after a failure" then run if
//! they apply: `stop` once `start` ran, `remove` once `install` ran, the file removal once `copy`
//! ran, `events` always. Every guest step is a PowerShell script (`ps.rs`) whose output sections
//! the step's [`Check`] reads with the parsers of `parse.rs`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::kdnet::Kdnet;
use super::probe;
use super::ps;
use super::transport::{HyperV, Upload};
use super::verifier;
use crate::base::error::{Context, Result, bail};
use crate::base::layout::Arch;

mod debugging;
mod package;
mod render;
mod scripts;
#[cfg(test)]
pub mod tests;

pub use package::Package;
#[cfg(test)]
pub use package::{RegValue, service_from_inf};
pub use render::{PlanJson, render, to_json};
pub use scripts::{DUMP_PLACES, boot_script, post_mortem_script};
use scripts::{
    driver_steps, enable_testsigning_body, hashes_body, leftovers_body, preflight_body,
    remove_files_body, revert_hyperv, trust_body,
};

/// How the service is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Install {
    /// `sc.exe create NAME type= kernel start= demand binPath= ...` and the INF's service
    /// registry values (AddReg HKR), written by the script.
    Sc,
    /// `pnputil /add-driver NAME.inf /install` (the primitive INF's DefaultInstall).
    Inf,
}

/// The deployment options that shape the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(clippy::struct_excessive_bools)] // one per flag of the command line
pub struct Options {
    /// The VM's architecture.
    pub arch: Arch,
    /// How to install.
    pub install: Install,
    /// `--keep`: leave the service and the files on the VM.
    pub keep: bool,
    /// `--enable-testsigning`.
    pub enable_testsigning: bool,
    /// `--snapshot NAME`.
    pub snapshot: Option<String>,
    /// `--libvirt DOMAIN` (ssh targets).
    pub libvirt: Option<String>,
    /// `--revert-after-failure`.
    pub revert_after_failure: bool,
    /// `--remote-dir`: the folder on the VM.
    pub remote_dir: String,
    /// `--timeout`: the limit of one step.
    pub timeout: Duration,
    /// `--reboot-timeout`: how long to wait for the VM to answer after a revert or a reboot.
    pub reboot_timeout: Duration,
    /// `--libvirt-uri`: the libvirt connection of `virsh` (`-c`).
    pub libvirt_uri: String,
    /// The folder here holding [`HELPERS_FILE`] ([`write_helpers`]), copied with the packages.
    pub helpers_dir: PathBuf,
    /// `--verifier`: Driver Verifier on for the deployed drivers, with these flags.
    pub verifier: Option<verifier::Flags>,
    /// `--fetch-dump`: after a bugcheck, copy the dump into [`Options::dump_dir`].
    pub fetch_dump: bool,
    /// `--dump-limit`: the largest MEMORY.DMP copied, in bytes.
    pub dump_limit: u64,
    /// Where fetched dumps go (`target/deploy/<vm>/`).
    pub dump_dir: PathBuf,
    /// `--kdnet HOST:PORT`: network kernel debugging set up.
    pub kdnet: Option<Kdnet>,
}

/// The helpers of the driver steps, shipped with the packages (`scripts/xtask-helpers.ps1`).
pub const HELPERS: &str = include_str!("scripts/xtask-helpers.ps1");

/// The helpers' file name.
pub const HELPERS_FILE: &str = "xtask-helpers.ps1";

/// The folder of the helpers on the VM, beside the packages' folders (no driver may have this
/// name).
pub const HELPERS_FOLDER: &str = "xtask";

/// The libvirt connection `virsh` uses unless `--libvirt-uri` says another: the system instance
/// (without `-c`, a user who is not root gets `qemu:///session`, which does not see the system's
/// VMs; https://libvirt.org/uri.html).
pub const LIBVIRT_URI: &str = "qemu:///system";

/// Writes [`HELPERS`] into `dir` (made if missing), for the copy step.
pub fn write_helpers(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    crate::base::files::write_atomic(&dir.join(HELPERS_FILE), HELPERS.as_bytes())
}

/// The helpers' SHA-256, upper-case hex, as the copy check compares it.
pub fn helpers_sha256() -> String {
    use sha2::{Digest, Sha256};
    driver_package::cert::hex(&Sha256::digest(HELPERS.as_bytes())).to_ascii_uppercase()
}

/// The default `--dump-limit`: 2 GiB.
pub const DUMP_LIMIT: u64 = 2 << 30;

/// The default `--remote-dir`.
pub const REMOTE_DIR: &str = r"C:\ProgramData\windows-callback-drivers\deploy";

impl Default for Options {
    fn default() -> Self {
        Self {
            arch: Arch::X64,
            install: Install::Sc,
            keep: false,
            enable_testsigning: false,
            snapshot: None,
            libvirt: None,
            revert_after_failure: false,
            remote_dir: REMOTE_DIR.to_owned(),
            timeout: Duration::from_mins(2),
            reboot_timeout: Duration::from_mins(10),
            libvirt_uri: LIBVIRT_URI.to_owned(),
            helpers_dir: PathBuf::from("target/deploy/xtask"),
            verifier: None,
            fetch_dump: false,
            dump_limit: DUMP_LIMIT,
            dump_dir: PathBuf::from("target/deploy/vm"),
            kdnet: None,
        }
    }
}

/// When a step runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// Always (in the normal course).
    Always,
    /// Only if the preflight found test signing off (and `--enable-testsigning` was given).
    TestSigningOff,
    /// Never: `--keep` leaves this on the VM.
    Kept,
    /// Only if the `verifier` step chose the persistent settings (a restart follows).
    VerifierPersistent,
    /// Only once the VM, having stopped answering during this driver's steps, is back.
    AfterBugcheck,
}

/// Whether a step also runs after a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cleanup {
    /// Only in the normal course.
    No,
    /// Also after a failure, once the step with this id (of the same driver, or of the setup)
    /// has started.
    After(&'static str),
    /// Also after any failure.
    Always,
    /// Only after a failure.
    OnlyOnFailure,
}

/// What a step runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Run {
    /// A PowerShell script in the guest.
    Guest(String),
    /// A program on this machine; `shown` is what `--dry-run` prints.
    Host {
        /// The words.
        argv: Vec<String>,
        /// Their readable form.
        shown: String,
    },
    /// Folders copied to the guest.
    Upload(Vec<Upload>),
    /// Wait until the guest answers (with a boot time other than the one seen, after a
    /// reboot).
    WaitForGuest {
        /// Require a new boot.
        new_boot: bool,
    },
}

/// How a step's result is judged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// Exit code 0.
    Exit0,
    /// Administrator, architecture, test signing, the remote folder.
    Preflight {
        /// The VM must be this.
        arch: Arch,
        /// Test signing off is not a failure yet (it will be turned on).
        may_enable: bool,
    },
    /// The guest answered (after a revert or reboot).
    Answered,
    /// Every file's SHA-256 on the VM is the manifest's.
    Copy(Vec<(String, Vec<(String, String)>)>),
    /// The thumbprint is in LocalMachine Root and TrustedPublisher.
    Trust(String),
    /// The service exists, stopped.
    Installed,
    /// The service runs and its image (`NAME.sys`) is loaded.
    Started(String),
    /// It still runs after the settle time, its image is loaded, and the while-loaded checks
    /// pass.
    Probe(String, Vec<probe::Check>),
    /// The service stopped with exit code 0.
    Stopped,
    /// The image is no longer loaded, and the after-unload checks pass.
    Unloaded(String, Vec<probe::Check>),
    /// The service no longer exists.
    Removed,
    /// Service Control Manager events (informative).
    Events,
    /// Driver Verifier on for these images, the previous settings saved.
    Verifier(Vec<String>),
    /// Driver Verifier's counters of this image.
    VerifierStats(String),
    /// Driver Verifier's previous settings back.
    VerifierRestored,
    /// Kernel debugging on, the key read back.
    Kdnet(Kdnet),
    /// The trace session stopped; its events (section `trace`) go beside their steps
    /// (`deploy/trace.rs`).
    Trace,
}

/// One step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// A short stable name (reports, `Cleanup::After`).
    pub id: &'static str,
    /// What it does.
    pub title: String,
    /// What runs.
    pub run: Run,
    /// How it is judged.
    pub check: Check,
    /// When it runs.
    pub when: When,
    /// Whether it also runs after a failure.
    pub cleanup: Cleanup,
    /// Its time limit.
    pub timeout: Duration,
}

/// The steps of one driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriverSteps {
    /// The driver.
    pub driver: String,
    /// Its service.
    pub service: String,
    /// Its image's file name (`NAME.sys`), as the loaded-module list shows it.
    pub image: String,
    /// The steps.
    pub steps: Vec<Step>,
}

/// The plan for one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The target, as given.
    pub target: String,
    /// The options.
    pub options: Options,
    /// Before the drivers.
    pub setup: Vec<Step>,
    /// Each driver, in turn.
    pub drivers: Vec<DriverSteps>,
    /// After the drivers.
    pub teardown: Vec<Step>,
}

/// How the VM is reached, for the snapshot steps (which run on this machine).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Via {
    /// Over ssh; snapshots through libvirt.
    Ssh,
    /// A Hyper-V VM of this host.
    HyperV {
        /// The VM's name.
        vm: String,
    },
}

/// Checks a name or path that goes into a command line: no `"` (Windows PowerShell 5.1 mangles
/// native arguments that contain one) and no control characters.
fn plain(what: &str, s: &str) -> Result<()> {
    if s.contains('"') || s.chars().any(char::is_control) {
        bail!(
            "{what} `{s}` contains a double quote or a control character, which cannot be passed safely to Windows programs"
        );
    }
    Ok(())
}

/// `C:\...`: an absolute Windows path with a drive.
fn check_remote_dir(dir: &str) -> Result<()> {
    plain("--remote-dir", dir)?;
    let b = dir.as_bytes();
    if b.len() < 4 || !b[0].is_ascii_alphabetic() || b[1] != b':' || b[2] != b'\\' {
        bail!("--remote-dir must be an absolute Windows path like {REMOTE_DIR}, not `{dir}`");
    }
    if dir.contains('/') || dir.ends_with('\\') {
        bail!("--remote-dir: write the path with backslashes and no trailing one: `{dir}`");
    }
    Ok(())
}

/// Builds the plan for `target` (as shown) reached `via`, deploying `packages`.
#[allow(clippy::too_many_lines)] // the plan, step by step, in the order it runs
pub fn build(target: &str, via: &Via, packages: &[Package], options: &Options) -> Result<Plan> {
    check_remote_dir(&options.remote_dir)?;
    if packages.is_empty() {
        bail!("no driver to deploy");
    }
    for p in packages {
        if p.driver.eq_ignore_ascii_case(HELPERS_FOLDER) {
            bail!(
                "a driver cannot be called `{HELPERS_FOLDER}`: the deploy's helpers use that folder on the VM"
            );
        }
        plain("the service name", &p.service)?;
        plain("the display name", &p.display_name)?;
        plain("the driver name", &p.driver)?;
    }
    let dir = options.remote_dir.as_str();
    let t = options.timeout;
    let mut setup = Vec::new();

    let revert = match (&options.snapshot, via, &options.libvirt) {
        (None, _, None) => None,
        (None, _, Some(_)) => {
            bail!("--libvirt DOMAIN goes with --snapshot NAME (the snapshot to revert to)")
        }
        (Some(_), Via::HyperV { .. }, Some(_)) => {
            bail!(
                "--libvirt is for VMs reached over ssh; a hyperv: target reverts its own checkpoint"
            )
        }
        (Some(snap), Via::HyperV { vm }, None) => {
            let script = revert_hyperv(vm, snap);
            Some((
                format!("revert the VM to checkpoint {snap} (Hyper-V)"),
                HyperV::host_argv(&script),
                format!("powershell.exe (this host):\n{script}"),
            ))
        }
        (Some(snap), Via::Ssh, Some(domain)) => {
            plain("--libvirt-uri", &options.libvirt_uri)?;
            let argv: Vec<String> = [
                "virsh",
                "-c",
                &options.libvirt_uri,
                "snapshot-revert",
                domain,
                snap,
                "--running",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
            let shown = super::transport::shell_words(&argv);
            Some((
                format!("revert the VM to snapshot {snap} (libvirt)"),
                argv,
                shown,
            ))
        }
        (Some(_), Via::Ssh, None) => bail!(
            "--snapshot with an ssh target needs --libvirt DOMAIN (the VM's libvirt domain, \
             reverted with virsh snapshot-revert on this machine); a Hyper-V VM is reverted with \
             --target hyperv:VMNAME on its Windows host"
        ),
    };
    if let Some((title, argv, shown)) = &revert {
        setup.push(Step {
            id: "revert",
            title: title.clone(),
            run: Run::Host {
                argv: argv.clone(),
                shown: shown.clone(),
            },
            check: Check::Exit0,
            when: When::Always,
            cleanup: Cleanup::No,
            timeout: t,
        });
        setup.push(Step {
            id: "wait",
            title: "wait until the VM answers".to_owned(),
            run: Run::WaitForGuest { new_boot: false },
            check: Check::Answered,
            when: When::Always,
            cleanup: Cleanup::No,
            timeout: options.reboot_timeout,
        });
    }
    setup.push(Step {
        id: "preflight",
        title: "preflight: administrator, architecture, test signing, the remote folder".to_owned(),
        run: Run::Guest(ps::script("preflight", &preflight_body(dir))),
        check: Check::Preflight {
            arch: options.arch,
            may_enable: options.enable_testsigning,
        },
        when: When::Always,
        cleanup: Cleanup::No,
        timeout: t,
    });
    if options.enable_testsigning {
        setup.push(Step {
            id: "enable-testsigning",
            title: "turn test signing on (bcdedit) and restart the VM".to_owned(),
            run: Run::Guest(ps::script(
                "enable test signing",
                &enable_testsigning_body(),
            )),
            check: Check::Exit0,
            when: When::TestSigningOff,
            cleanup: Cleanup::No,
            timeout: t,
        });
        setup.push(Step {
            id: "wait-reboot",
            title: "wait until the VM has restarted".to_owned(),
            run: Run::WaitForGuest { new_boot: true },
            check: Check::Answered,
            when: When::TestSigningOff,
            cleanup: Cleanup::No,
            timeout: options.reboot_timeout,
        });
        setup.push(Step {
            id: "preflight-again",
            title: "preflight again: test signing on in this boot".to_owned(),
            run: Run::Guest(ps::script("preflight", &preflight_body(dir))),
            check: Check::Preflight {
                arch: options.arch,
                may_enable: false,
            },
            when: When::TestSigningOff,
            cleanup: Cleanup::No,
            timeout: t,
        });
    }
    setup.extend(debugging::kdnet_steps(options));
    setup.push(Step {
        id: "leftovers",
        title: "remove what an earlier deploy left (our services, our folders)".to_owned(),
        run: Run::Guest(ps::script("leftovers", &leftovers_body(dir, packages))),
        check: Check::Exit0,
        when: When::Always,
        cleanup: Cleanup::No,
        timeout: t,
    });
    setup.push(Step {
        id: "copy",
        title: format!("copy the package(s) to {dir}"),
        run: Run::Upload(
            packages
                .iter()
                .map(|p| Upload {
                    local: p.dir.clone(),
                    remote: format!("{dir}\\{}", p.driver),
                })
                .chain(std::iter::once(Upload {
                    local: options.helpers_dir.clone(),
                    remote: format!("{dir}\\{HELPERS_FOLDER}"),
                }))
                .collect(),
        ),
        check: Check::Exit0,
        when: When::Always,
        cleanup: Cleanup::No,
        timeout: t,
    });
    setup.push(Step {
        id: "check-copy",
        title: "check the copy: SHA-256 of every file against the manifest".to_owned(),
        run: Run::Guest(ps::script("check the copy", &hashes_body(dir, packages))),
        check: Check::Copy(
            packages
                .iter()
                .map(|p| (p.driver.clone(), p.files.clone()))
                .chain(std::iter::once((
                    HELPERS_FOLDER.to_owned(),
                    vec![(HELPERS_FILE.to_owned(), helpers_sha256())],
                )))
                .collect(),
        ),
        when: When::Always,
        cleanup: Cleanup::No,
        timeout: t,
    });
    let mut thumbprints: Vec<(&str, &str)> = Vec::new();
    for p in packages {
        if !thumbprints.iter().any(|(t, _)| *t == p.thumbprint) {
            thumbprints.push((&p.thumbprint, &p.driver));
        }
    }
    for (thumb, driver) in thumbprints {
        let cer = format!("{dir}\\{driver}\\{}", packages[0].cert_file);
        setup.push(Step {
            id: "trust",
            title: format!(
                "trust the test certificate {thumb} (LocalMachine Root and TrustedPublisher)"
            ),
            run: Run::Guest(ps::script("trust", &trust_body(&cer, thumb))),
            check: Check::Trust(thumb.to_owned()),
            when: When::Always,
            cleanup: Cleanup::No,
            timeout: t,
        });
    }

    setup.extend(debugging::verifier_steps(packages, options));
    // The drivers' own log: a trace session from before the first load to after the last unload.
    setup.push(super::trace::start_step(packages, options));

    let drivers = packages
        .iter()
        .map(|p| debugging::with_driver_steps(driver_steps(p, options), p, options))
        .collect();

    // The trace session stops first, right after the last unload; then Verifier's settings.
    let mut teardown = vec![super::trace::stop_step(options)];
    teardown.extend(debugging::teardown_steps(packages, options));
    teardown.push(Step {
        id: "remove-files",
        title: format!("remove the copied packages from {dir}"),
        run: Run::Guest(ps::script(
            "remove the files",
            &remove_files_body(dir, packages),
        )),
        check: Check::Exit0,
        when: if options.keep {
            When::Kept
        } else {
            When::Always
        },
        cleanup: Cleanup::After("copy"),
        timeout: t,
    });
    if options.revert_after_failure
        && let Some((title, argv, shown)) = revert
    {
        teardown.push(Step {
            id: "revert-after-failure",
            title: format!("after a failure: {title}"),
            run: Run::Host { argv, shown },
            check: Check::Exit0,
            when: When::Always,
            cleanup: Cleanup::OnlyOnFailure,
            timeout: t,
        });
    } else if options.revert_after_failure {
        bail!("--revert-after-failure needs --snapshot NAME");
    }
    let plan = Plan {
        target: target.to_owned(),
        options: options.clone(),
        setup,
        drivers,
        teardown,
    };
    for s in plan.steps() {
        if let Run::Guest(script) = &s.run {
            let n = ps::command_line(script).len();
            if n >= ps::CMD_LIMIT {
                bail!(
                    "step `{}` ({}) is {n} characters as a command line, more than cmd.exe's \
                     {}: shorten the checks of the driver's deploy.toml",
                    s.id,
                    s.title,
                    ps::CMD_LIMIT
                );
            }
        }
    }
    Ok(plan)
}

impl Plan {
    /// Every step, in order.
    pub fn steps(&self) -> impl Iterator<Item = &Step> {
        self.setup
            .iter()
            .chain(self.drivers.iter().flat_map(|d| d.steps.iter()))
            .chain(self.teardown.iter())
    }
}
