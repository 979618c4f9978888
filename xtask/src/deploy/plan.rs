//! The plan: every step of a deployment to a VM, as data, before anything runs. `--dry-run`
//! prints it; the snapshot tests hold its exact scripts and command lines; `exec.rs` runs it.
//!
//! ```text
//! setup     [revert the snapshot, wait for the VM]  preflight  [enable test signing, reboot,
//!           wait, preflight again]  leftovers  copy  check the copy  trust
//! per driver  install  start  probe  stop  unloaded  remove  events
//! teardown  remove the files  [revert the snapshot after a failure]
//! ```
//!
//! A step that fails stops the plan; the steps marked to run "also after a failure" then run if
//! they apply: `stop` once `start` ran, `remove` once `install` ran, the file removal once `copy`
//! ran, `events` always. Every guest step is a PowerShell script (`ps.rs`) whose output sections
//! the step's [`Check`] reads with the parsers of `parse.rs`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use super::probe::{self, Probe};
use super::ps::{self, quote};
use super::transport::{HyperV, Transport, Upload};
use crate::base::error::{Context, Result, bail};
use crate::base::layout::Arch;
use driver_package::inf;

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
        }
    }
}

/// A registry value the INF's service section writes (`AddReg`, `HKR` lines).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegValue {
    /// The subkey under the service key (`Parameters`), or "".
    pub subkey: String,
    /// The value name.
    pub name: String,
    /// `String` or `DWord` (New-ItemProperty's -PropertyType).
    pub kind: &'static str,
    /// The data as written in the INF.
    pub data: String,
}

/// What the plan needs of one driver package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Package {
    /// The driver (package name, image `NAME.sys`).
    pub driver: String,
    /// The service name (the INF's AddService).
    pub service: String,
    /// The service's display name (the INF's DisplayName), which Service Control Manager events
    /// use.
    pub display_name: String,
    /// The package folder here.
    pub dir: PathBuf,
    /// Each file of the package and its SHA-256 (upper-case hex), from the manifest.
    pub files: Vec<(String, String)>,
    /// The signer's SHA-1 thumbprint.
    pub thumbprint: String,
    /// The certificate file in the package.
    pub cert_file: String,
    /// The registry values of the service (for `sc` installs).
    pub service_values: Vec<RegValue>,
    /// The probe (`deploy.toml`).
    pub probe: Probe,
}

impl Package {
    /// Reads the package in `dir` (its manifest and INF) and the driver's probe in `driver_dir`.
    pub fn read(dir: &Path, driver_dir: &Path, arch: Arch) -> Result<Self> {
        let manifest_path = dir.join(driver_package::package::MANIFEST);
        let manifest: Value = serde_json::from_slice(
            &std::fs::read(&manifest_path)
                .with_context(|| format!("reading {}", manifest_path.display()))?,
        )
        .with_context(|| format!("reading {}", manifest_path.display()))?;
        let s = |p: &str| {
            manifest
                .pointer(p)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let (Some(driver), Some(thumbprint)) = (s("/driver"), s("/signer/thumbprint_sha1")) else {
            bail!(
                "{}: no driver or signer thumbprint",
                manifest_path.display()
            );
        };
        if s("/arch").as_deref() != Some(arch.name()) {
            bail!(
                "{} is a package for {}, not {arch}",
                dir.display(),
                s("/arch").unwrap_or_default()
            );
        }
        let mut files: Vec<(String, String)> = manifest
            .pointer("/files")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| {
                        Some((k.clone(), v.get("sha256")?.as_str()?.to_ascii_uppercase()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        let inf_path = dir.join(format!("{driver}.inf"));
        let bytes =
            std::fs::read(&inf_path).with_context(|| format!("reading {}", inf_path.display()))?;
        let text = inf::decode(&bytes).map(|t| t.0).map_err(|p| {
            crate::base::error::Error::new(format!("{}: {}", inf_path.display(), p.message))
        })?;
        let (service, display_name, service_values) = service_from_inf(&text, arch)
            .map_err(|e| crate::base::error::Error::new(format!("{}: {e}", inf_path.display())))?;
        Ok(Self {
            driver,
            service,
            display_name,
            dir: dir.to_path_buf(),
            files,
            thumbprint: thumbprint.to_ascii_uppercase(),
            cert_file: driver_package::cert::CERT_FILE.to_owned(),
            service_values,
            probe: probe::load(driver_dir)?,
        })
    }

    fn image(&self) -> String {
        format!("{}.sys", self.driver)
    }
}

/// The service name, display name and registry values of the INF's service section.
pub fn service_from_inf(text: &str, arch: Arch) -> Result<(String, String, Vec<RegValue>)> {
    let (inf, _) = inf::parse(text);
    let services = format!("DefaultInstall.NT{}.Services", inf::arch_decoration(arch));
    let Some(add) = inf.value(&services, "AddService") else {
        bail!("no AddService in [{services}]");
    };
    let service = add.value().to_owned();
    let Some(section) = add.fields.get(2) else {
        bail!("AddService = {service} names no service section");
    };
    let string = |v: &str| -> String {
        match v.strip_prefix('%').and_then(|v| v.strip_suffix('%')) {
            Some(key) => inf
                .value("Strings", key)
                .map_or_else(|| v.to_owned(), |e| e.value().to_owned()),
            None => v.to_owned(),
        }
    };
    let display_name = inf
        .value(section, "DisplayName")
        .map_or_else(|| service.clone(), |e| string(e.value()));
    let mut values = Vec::new();
    for addreg in inf
        .sections
        .iter()
        .filter(|s| s.name.eq_ignore_ascii_case(section))
    {
        for entry in addreg.all("AddReg") {
            for name in &entry.fields {
                let Some(reg) = inf.section(name) else {
                    bail!("[{section}] AddReg names [{name}], which is missing");
                };
                for line in reg.entries.iter().filter(|e| e.key.is_none()) {
                    let f = &line.fields;
                    if !f.first().is_some_and(|r| r.eq_ignore_ascii_case("HKR")) || f.len() < 5 {
                        bail!(
                            "line {}: only `HKR,subkey,name,flags,value` lines are applied by an \
                             sc.exe install; use --install inf",
                            line.line
                        );
                    }
                    let flags = u32::from_str_radix(
                        f[3].trim_start_matches("0x").trim_start_matches("0X"),
                        16,
                    )
                    .unwrap_or(u32::MAX);
                    let kind = match flags {
                        0 => "String",
                        0x0001_0001 => "DWord",
                        _ => bail!(
                            "line {}: AddReg flags {} are not applied by an sc.exe install (only \
                             0x00000000 REG_SZ and 0x00010001 REG_DWORD); use --install inf",
                            line.line,
                            f[3]
                        ),
                    };
                    values.push(RegValue {
                        subkey: f[1].clone(),
                        name: f[2].clone(),
                        kind,
                        data: string(&f[4]),
                    });
                }
            }
        }
    }
    Ok((service, display_name, values))
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
            let script = format!(
                "$ErrorActionPreference = 'Stop'\n\
                 Restore-VMSnapshot -VMName {vm} -Name {snap} -Confirm:$false\n\
                 if ((Get-VM -Name {vm}).State -ne 'Running') {{ Start-VM -Name {vm} }}\n",
                vm = quote(vm),
                snap = quote(snap)
            );
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
            run: Run::Guest(ps::script("enable test signing", ENABLE_TESTSIGNING)),
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

    let drivers = packages.iter().map(|p| driver_steps(p, options)).collect();

    let mut teardown = vec![Step {
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
    }];
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

/// Section `bcd-testsigning`: the `testsigning` element of the `{current}` boot entry, read from
/// the BCD WMI provider, which no display language changes (bcdedit's output is localised):
/// BcdStore.OpenStore('') opens the system store, `{fa926493-6f1c-4193-a414-58f0b2456d1e}` is
/// the well-known identifier of `{current}`, and 0x16000049 is
/// BcdLibraryBoolean_AllowPrereleaseSignatures (BcdLibraryElementTypes,
/// https://learn.microsoft.com/previous-versions/windows/desktop/bcd/bcdlibraryelementtypes;
/// GetElement, https://learn.microsoft.com/previous-versions/windows/desktop/bcd/getelement-bcdobject).
/// `True`, `False`, `absent` (off, its default) or `error ...`.
const BCD: &str = "Section 'bcd-testsigning'; try { $st = ([wmiclass]'root\\wmi:BcdStore').OpenStore('').Store; $o = $st.OpenObject('{fa926493-6f1c-4193-a414-58f0b2456d1e}').Object; $e = $o.GetElement(0x16000049); if ($e.ReturnValue) { Say ([string]$e.Element.Boolean) } else { Say 'absent' } } catch { Say \"error $_\" }\n";

/// Section `bitlocker`: the system volume's BitLocker protection (Win32_EncryptableVolume's
/// ProtectionStatus: 0 off, 1 on, 2 unknown;
/// https://learn.microsoft.com/windows/win32/secprov/getprotectionstatus-win32-encryptablevolume),
/// `none` without an encryptable volume, `unknown ...` when the class cannot be read.
const BITLOCKER: &str = "Section 'bitlocker'; try { $v = Get-CimInstance -Namespace 'root\\cimv2\\Security\\MicrosoftVolumeEncryption' -ClassName Win32_EncryptableVolume -Filter \"DriveLetter = '$env:SystemDrive'\"; if ($null -eq $v) { Say 'none' } else { Say ([string]$v.ProtectionStatus) } } catch { Say \"unknown $_\" }\n";

/// The test-signing step. With BitLocker protecting the system volume (device encryption with a
/// vTPM), a changed boot configuration would start the VM in BitLocker recovery: the key
/// protectors are suspended for one restart first (DisableKeyProtectors with DisableCount 1,
/// https://learn.microsoft.com/windows/win32/secprov/disablekeyprotectors-win32-encryptablevolume),
/// and the step fails, naming the fix, if that is refused. bcdedit and shutdown are judged by their
/// exit codes only.
const ENABLE_TESTSIGNING: &str = "$v = $null\n\
try { $v = Get-CimInstance -Namespace 'root\\cimv2\\Security\\MicrosoftVolumeEncryption' -ClassName Win32_EncryptableVolume -Filter \"DriveLetter = '$env:SystemDrive'\" } catch { }\n\
if ($null -ne $v -and $v.ProtectionStatus -ne 0) {\n\
$r = Invoke-CimMethod -InputObject $v -MethodName DisableKeyProtectors -Arguments @{ DisableCount = [uint32]1 }\n\
Section 'bitlocker-suspend' $r.ReturnValue\n\
if ($r.ReturnValue -ne 0) { Note ('BitLocker protects the system volume and could not be suspended (0x{0:X8}): suspend it for one restart (Suspend-BitLocker -MountPoint $env:SystemDrive -RebootCount 1) or turn test signing on by hand, then deploy again' -f $r.ReturnValue); exit 2 }\n\
Note 'BitLocker suspended for one restart, so that the changed boot configuration does not start recovery'\n\
}\n\
Run 'bcdedit' 'bcdedit.exe' @('/set', '{current}', 'testsigning', 'on')\n\
if ($script:rc -ne 0) { exit 1 }\n\
Run 'shutdown' 'shutdown.exe' @('/r', '/t', '5', '/c', 'xtask deploy: test signing on')\n\
exit $script:rc\n";

fn preflight_body(dir: &str) -> String {
    format!(
        "$dir = {dir}\n\
         Section 'admin'; Say ([Security.Principal.WindowsPrincipal][Security.Principal.WindowsIdentity]::GetCurrent()).IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)\n\
         Section 'arch'; Say $env:PROCESSOR_ARCHITECTURE\n\
         Section 'os'; Say ([Environment]::OSVersion.Version.ToString())\n\
         {BOOT}\
         Section 'start-options'; Say ((Get-ItemProperty -LiteralPath 'HKLM:\\SYSTEM\\CurrentControlSet\\Control').SystemStartOptions)\n\
         Section 'secure-boot'; try {{ Say (Confirm-SecureBootUEFI) }} catch {{ Say 'unsupported' }}\n\
         Section 'debug-print-filter'; try {{ Say ((Get-ItemProperty -LiteralPath 'HKLM:\\SYSTEM\\CurrentControlSet\\Control\\Session Manager\\Debug Print Filter').DEFAULT) }} catch {{ Say '' }}\n\
         {BCD}{BITLOCKER}\
         Section 'remote-dir'; try {{ New-Item -ItemType Directory -Force -Path $dir | Out-Null; [IO.File]::WriteAllText((Join-Path $dir 'deploy-start.txt'), [DateTime]::UtcNow.ToString('o')); Say 'ok' }} catch {{ Say \"error $_\" }}\n",
        dir = quote(dir),
    )
}

/// The lines that print the last boot time (section `boot`, for the report) and the seconds since
/// that boot (section `uptime`): a new boot is recognised by its uptime, since Windows moves
/// LastBootUpTime when it corrects its clock (after a snapshot revert, often), while the time
/// since the boot, LocalDateTime minus LastBootUpTime of the same instance, stays
/// (https://learn.microsoft.com/windows/win32/cimwin32prov/win32-operatingsystem).
const BOOT: &str = "$os = Get-CimInstance -ClassName Win32_OperatingSystem\n\
Section 'boot'; Say ($os.LastBootUpTime.ToUniversalTime().ToString('o'))\n\
Section 'uptime'; Say ([int64]($os.LocalDateTime - $os.LastBootUpTime).TotalSeconds)\n";

/// The script [`Run::WaitForGuest`] polls with.
pub fn boot_script() -> String {
    ps::script("is the VM up?", BOOT)
}

/// The leftovers step. The services and the drivers are two flat lists walked by index: a list
/// of pairs written `@(@('a', 'b'))` would not be one pair with one package, since `@()` enumerates
/// the single array inside it (the array subexpression operator,
/// https://learn.microsoft.com/powershell/module/microsoft.powershell.core/about/about_operators).
fn leftovers_body(dir: &str, packages: &[Package]) -> String {
    let services: Vec<&str> = packages.iter().map(|p| p.service.as_str()).collect();
    let drivers: Vec<&str> = packages.iter().map(|p| p.driver.as_str()).collect();
    format!(
        "$dir = {dir}\n\
         $images = {images}\n\
         $services = {services}\n\
         $drivers = {drivers}\n\
         for ($i = 0; $i -lt $services.Count; $i++) {{\n\
         $svc = $services[$i]; $name = $drivers[$i]; $key = \"HKLM:\\SYSTEM\\CurrentControlSet\\Services\\$svc\"\n\
         if (Test-Path -LiteralPath $key) {{\n\
         $ip = [string](Get-ItemProperty -LiteralPath $key).ImagePath\n\
         if (-not ($images | Where-Object {{ $ip.EndsWith(\"\\$_\", [StringComparison]::OrdinalIgnoreCase) }})) {{ Note \"a service $svc exists with image $ip, not one of ours: left alone\"; exit 3 }}\n\
         Note \"removing the service $svc left by an earlier deploy ($ip)\"\n\
         Native 'sc.exe' @('stop', $svc) | Out-Null\n\
         $o = Native 'sc.exe' @('delete', $svc)\n\
         $deadline = (Get-Date).AddSeconds(30); while ((Test-Path -LiteralPath $key) -and (Get-Date) -lt $deadline) {{ Start-Sleep -Milliseconds 500 }}\n\
         if (Test-Path -LiteralPath $key) {{ Note \"$svc is marked for deletion but its driver is still loaded ($o): restart the VM or revert it to a snapshot\"; exit 4 }}\n\
         }}\n\
         $p = Join-Path $dir $name\n\
         if (Test-Path -LiteralPath $p) {{ Remove-Item -LiteralPath $p -Recurse -Force; Note \"removed $p, left by an earlier deploy\" }}\n\
         try {{ $store = @(Get-WindowsDriver -Online) }} catch {{ $store = @(); Note \"the driver store could not be listed ($_): an INF of $name left there by an --install inf deploy stays\" }}\n\
         $store | Where-Object {{ (Split-Path -Leaf $_.OriginalFileName) -eq \"$name.inf\" }} | ForEach-Object {{ $o = Native 'pnputil.exe' @('/delete-driver', $_.Driver, '/uninstall', '/force'); Note \"removed $($_.Driver) ($name.inf) from the driver store (pnputil exit code $script:rc)\" }}\n\
         }}\n\
         $p = Join-Path $dir {helpers}\n\
         if (Test-Path -LiteralPath $p) {{ Remove-Item -LiteralPath $p -Recurse -Force }}\n\
         exit 0\n",
        helpers = quote(HELPERS_FOLDER),
        dir = quote(dir),
        services = ps::array(&services),
        drivers = ps::array(&drivers),
        images = ps::array(&packages.iter().map(Package::image).collect::<Vec<_>>()),
    )
}

fn hashes_body(dir: &str, packages: &[Package]) -> String {
    let names: Vec<&str> = packages
        .iter()
        .map(|p| p.driver.as_str())
        .chain([HELPERS_FOLDER])
        .collect();
    format!(
        "$dir = {}\n\
         foreach ($name in {}) {{\n\
         Section \"files $name\"\n\
         Get-ChildItem -LiteralPath (Join-Path $dir $name) -File | ForEach-Object {{ Say ('{{0}} {{1}}' -f (Get-FileHash -Algorithm SHA256 -LiteralPath $_.FullName).Hash, $_.Name) }}\n\
         }}\n",
        quote(dir),
        ps::array(&names)
    )
}

fn trust_body(cer: &str, thumbprint: &str) -> String {
    format!(
        "$cer = {}; $t = {}\n\
         foreach ($store in @('Root', 'TrustedPublisher')) {{\n\
         if (Test-Path -LiteralPath \"Cert:\\LocalMachine\\$store\\$t\") {{ Note \"already in $store\" }} else {{\n\
         $o = Native 'certutil.exe' @('-f', '-addstore', $store, $cer)\n\
         if ($script:rc -ne 0) {{ Section \"addstore $store\" $script:rc; Say $o; exit 1 }}\n\
         Note \"added to $store\"\n\
         }}\n\
         Section \"store $store\"; if (Test-Path -LiteralPath \"Cert:\\LocalMachine\\$store\\$t\") {{ Say 'present' }} else {{ Say 'absent' }}\n\
         }}\n",
        quote(cer),
        quote(thumbprint)
    )
}

fn remove_files_body(dir: &str, packages: &[Package]) -> String {
    let names: Vec<&str> = packages
        .iter()
        .map(|p| p.driver.as_str())
        .chain([HELPERS_FOLDER])
        .collect();
    format!(
        "$dir = {}\n\
         foreach ($name in {}) {{ $p = Join-Path $dir $name; if (Test-Path -LiteralPath $p) {{ Remove-Item -LiteralPath $p -Recurse -Force }} }}\n\
         Remove-Item -LiteralPath (Join-Path $dir 'deploy-start.txt') -Force -ErrorAction SilentlyContinue\n",
        quote(dir),
        ps::array(&names)
    )
}

/// The line that loads the helpers ([`HELPERS`]) in a driver step: the file's text as a script
/// block, dot-sourced (execution policies apply to script files, not to script blocks).
fn load_helpers(dir: &str) -> String {
    format!(
        ". ([scriptblock]::Create([IO.File]::ReadAllText((Join-Path {} {}))))\n",
        quote(dir),
        quote(&format!("{HELPERS_FOLDER}\\{HELPERS_FILE}"))
    )
}

#[allow(clippy::too_many_lines)] // one driver's steps, in the order they run
fn driver_steps(p: &Package, options: &Options) -> DriverSteps {
    let dir = options.remote_dir.as_str();
    let t = options.timeout;
    let svc = quote(&p.service);
    let pkg = format!("{dir}\\{}", p.driver);
    let query = format!("Write-Service 'service' {svc}\n");
    let helpers = load_helpers(dir);
    let install = match options.install {
        Install::Sc => {
            let sys = format!("{pkg}\\{}", p.image());
            let mut body = format!(
                "Run 'sc-create' 'sc.exe' {}\nif ($script:rc -ne 0) {{ exit 1 }}\n",
                ps::array(&[
                    "create",
                    &p.service,
                    "type=",
                    "kernel",
                    "start=",
                    "demand",
                    "error=",
                    "normal",
                    "binPath=",
                    &sys,
                    "DisplayName=",
                    &p.display_name,
                ])
            );
            for v in &p.service_values {
                let key = if v.subkey.is_empty() {
                    format!("HKLM:\\SYSTEM\\CurrentControlSet\\Services\\{}", p.service)
                } else {
                    format!(
                        "HKLM:\\SYSTEM\\CurrentControlSet\\Services\\{}\\{}",
                        p.service, v.subkey
                    )
                };
                let _ = write!(
                    body,
                    "if (-not (Test-Path -LiteralPath {k})) {{ New-Item -Path {k} | Out-Null }}\n\
                     New-ItemProperty -Force -LiteralPath {k} -Name {n} -PropertyType {kind} -Value {d} | Out-Null\n",
                    k = quote(&key),
                    n = quote(&v.name),
                    kind = v.kind,
                    d = quote(&v.data),
                );
            }
            body.push_str(&query);
            (
                format!(
                    "install: sc.exe create {} type= kernel{}",
                    p.service,
                    if p.service_values.is_empty() {
                        ""
                    } else {
                        ", and the INF's service registry values"
                    }
                ),
                body,
            )
        }
        Install::Inf => {
            let inf_path = format!("{pkg}\\{}.inf", p.driver);
            let section = format!("DefaultInstall.NT{}", inf::arch_decoration(options.arch));
            (
                format!("install: pnputil /add-driver {}.inf /install", p.driver),
                format!(
                    "$inf = {inf}\n\
                     Run 'pnputil' 'pnputil.exe' @('/add-driver', $inf, '/install')\n\
                     if (@(0, 259, 3010) -notcontains $script:rc) {{ exit 1 }}\n\
                     if (-not (Test-Path -LiteralPath {key})) {{ Note 'pnputil created no service: it does not run the {section} section of a primitive driver on this Windows; deploy with --install sc' }}\n\
                     {query}",
                    inf = quote(&inf_path),
                    key = quote(&format!(
                        "HKLM:\\SYSTEM\\CurrentControlSet\\Services\\{}",
                        p.service
                    )),
                ),
            )
        }
    };
    let remove_body = match options.install {
        Install::Sc => format!(
            "Run 'sc-delete' 'sc.exe' @('delete', {svc})\n[void](Wait-Service -Name {svc} -State 'missing' -Seconds 30)\n{query}"
        ),
        Install::Inf => format!(
            "Run 'sc-delete' 'sc.exe' @('delete', {svc})\n[void](Wait-Service -Name {svc} -State 'missing' -Seconds 30)\n\
             Get-WindowsDriver -Online | Where-Object {{ (Split-Path -Leaf $_.OriginalFileName) -eq {inf} }} | ForEach-Object {{ Run \"pnputil-delete $($_.Driver)\" 'pnputil.exe' @('/delete-driver', $_.Driver, '/uninstall', '/force') }}\n\
             {query}",
            inf = quote(&format!("{}.inf", p.driver))
        ),
    };
    let mut probe_body = format!(
        "{query}Start-Sleep -Seconds {settle}\nWrite-Service 'service-settled' {svc}\nWrite-Modules\n",
        settle = p.probe.settle
    );
    for (i, c) in p.probe.while_loaded.iter().enumerate() {
        probe_body.push_str(&probe::script(c, &format!("check-{}", i + 1)));
    }
    let mut unloaded_body = "Write-Modules\n".to_owned();
    for (i, c) in p.probe.after_unload.iter().enumerate() {
        unloaded_body.push_str(&probe::script(c, &format!("check-{}", i + 1)));
    }
    let names: Vec<&str> = vec![&p.service, &p.display_name];
    let events_body = format!(
        "$since = [DateTime]::Parse([IO.File]::ReadAllText({start}), $null, [Globalization.DateTimeStyles]::RoundtripKind)\n\
         $names = {names}\n\
         $ev = @(Get-WinEvent -FilterHashtable @{{ LogName = 'System'; ProviderName = 'Service Control Manager'; StartTime = $since }} -ErrorAction SilentlyContinue | Where-Object {{ $m = $_.Message; $v = @($_.Properties | ForEach-Object {{ [string]$_.Value }}); @($names | Where-Object {{ ($v -contains $_) -or ($m -like \"*$_*\") }}).Count -gt 0 }})\n\
         Section 'events'\n\
         Say (ConvertTo-Json -Compress -InputObject @($ev | ForEach-Object {{ [pscustomobject]@{{ Time = $_.TimeCreated.ToUniversalTime().ToString('o'); Id = $_.Id; Level = [int]$_.Level; Provider = $_.ProviderName; Message = $_.Message }} }}))\n\
         $ci = @(Get-WinEvent -FilterHashtable @{{ LogName = 'Microsoft-Windows-CodeIntegrity/Operational'; StartTime = $since; Level = 1, 2, 3 }} -MaxEvents 50 -ErrorAction SilentlyContinue | Where-Object {{ $m = [string]$_.Message; $v = @($_.Properties | ForEach-Object {{ [string]$_.Value }}); ($m -like {like}) -or @($v | Where-Object {{ $_ -like {like} }}).Count -gt 0 }})\n\
         Section 'code-integrity'\n\
         Say (ConvertTo-Json -Compress -InputObject @($ci | ForEach-Object {{ [pscustomobject]@{{ Time = $_.TimeCreated.ToUniversalTime().ToString('o'); Id = $_.Id; Level = [int]$_.Level; Provider = $_.ProviderName; Message = $_.Message }} }}))\n",
        start = quote(&format!("{dir}\\deploy-start.txt")),
        names = ps::array(&names),
        like = quote(&format!("*{}*", p.image())),
    );
    let step = |id, title: String, body: String, check, cleanup, timeout| Step {
        id,
        title: title.clone(),
        run: Run::Guest(ps::script(
            &format!("{} {title}", p.driver),
            &if id == "events" {
                body
            } else {
                format!("{helpers}{body}")
            },
        )),
        check,
        when: When::Always,
        cleanup,
        timeout,
    };
    let mut steps = vec![
        step(
            "install",
            install.0,
            install.1,
            Check::Installed,
            Cleanup::No,
            t,
        ),
        step(
            "start",
            format!("start: sc.exe start {}, running and loaded", p.service),
            format!("Run 'sc-start' 'sc.exe' @('start', {svc})\n{query}Write-Modules\n"),
            Check::Started(p.image()),
            Cleanup::No,
            t,
        ),
        step(
            "probe",
            format!(
                "probe: running for {}s{}",
                p.probe.settle,
                match p.probe.while_loaded.len() {
                    0 => String::new(),
                    n => format!(", {n} check(s) while loaded"),
                }
            ),
            probe_body,
            Check::Probe(p.image(), p.probe.while_loaded.clone()),
            Cleanup::No,
            t + Duration::from_secs(u64::from(p.probe.settle)),
        ),
        step(
            "stop",
            format!(
                "stop (unload): sc.exe stop {}, stopped with exit code 0",
                p.service
            ),
            format!(
                "Run 'sc-stop' 'sc.exe' @('stop', {svc})\n\
                 [void](Wait-Service -Name {svc} -State 'Stopped' -Seconds 30)\n\
                 {query}"
            ),
            Check::Stopped,
            Cleanup::After("start"),
            t,
        ),
        step(
            "unloaded",
            format!(
                "unloaded: {} gone from the loaded modules{}",
                p.image(),
                match p.probe.after_unload.len() {
                    0 => String::new(),
                    n => format!(", {n} check(s) after unload"),
                }
            ),
            unloaded_body,
            Check::Unloaded(p.image(), p.probe.after_unload.clone()),
            Cleanup::No,
            t,
        ),
    ];
    let mut remove = step(
        "remove",
        format!("remove the service {}", p.service),
        remove_body,
        Check::Removed,
        Cleanup::After("install"),
        t,
    );
    if options.keep {
        remove.when = When::Kept;
    }
    steps.push(remove);
    steps.push(step(
        "events",
        format!(
            "collect the Service Control Manager events of {} since the deploy began",
            p.service
        ),
        events_body,
        Check::Events,
        Cleanup::Always,
        t,
    ));
    DriverSteps {
        driver: p.driver.clone(),
        service: p.service.clone(),
        image: p.image(),
        steps,
    }
}

/// The script that lists crash dumps and bugcheck events since the deploy began (run once a VM
/// that stopped answering is back).
pub fn post_mortem_script(remote_dir: &str) -> String {
    ps::script(
        "post-mortem",
        &format!(
            "$since = [DateTime]::Parse([IO.File]::ReadAllText({start}), $null, [Globalization.DateTimeStyles]::RoundtripKind)\n\
             $deadline = (Get-Date).AddSeconds(90)\n\
             do {{\n\
             $ev = @(Get-WinEvent -FilterHashtable @{{ LogName = 'System'; StartTime = $since; ProviderName = 'Microsoft-Windows-WER-SystemErrorReporting', 'Microsoft-Windows-Kernel-Power', 'EventLog' }} -ErrorAction SilentlyContinue | Where-Object {{ ($_.ProviderName -eq 'Microsoft-Windows-WER-SystemErrorReporting' -and $_.Id -eq 1001) -or ($_.ProviderName -eq 'Microsoft-Windows-Kernel-Power' -and $_.Id -eq 41) -or ($_.ProviderName -eq 'EventLog' -and $_.Id -eq 6008) }})\n\
             $crashed = @($ev | Where-Object {{ $_.Id -ne 1001 }}).Count -gt 0\n\
             $saved = @($ev | Where-Object {{ $_.Id -eq 1001 }}).Count -gt 0\n\
             if ($saved -or -not $crashed) {{ break }}\n\
             Start-Sleep -Seconds 5\n\
             }} while ((Get-Date) -lt $deadline)\n\
             if ($crashed -and -not $saved) {{ Note 'the VM restarted unexpectedly but no bugcheck event 1001 (dump saved) appeared within 90s: the dump may still be being written, or none is configured' }}\n\
             Section 'dumps'\n\
             $files = @(Join-Path $env:SystemRoot 'MEMORY.DMP') + @(Get-ChildItem -LiteralPath (Join-Path $env:SystemRoot 'Minidump') -Filter '*.dmp' -ErrorAction SilentlyContinue | ForEach-Object {{ $_.FullName }})\n\
             foreach ($f in $files) {{ if (Test-Path -LiteralPath $f) {{ $i = Get-Item -LiteralPath $f; if ($i.LastWriteTimeUtc -ge $since) {{ Say ('{{0}} ({{1}} bytes)' -f $i.FullName, $i.Length) }} }} }}\n\
             Section 'events'\n\
             Say (ConvertTo-Json -Compress -InputObject @($ev | ForEach-Object {{ [pscustomobject]@{{ Time = $_.TimeCreated.ToUniversalTime().ToString('o'); Id = $_.Id; Level = [int]$_.Level; Provider = $_.ProviderName; Message = $_.Message }} }}))\n",
            start = quote(&format!("{remote_dir}\\deploy-start.txt")),
        ),
    )
}

/// Where a crashed VM's dump will be, for the report.
pub const DUMP_PLACES: &str = r"C:\Windows\MEMORY.DMP (kernel or complete memory dump, the default: automatic) or C:\Windows\Minidump\*.dmp (small memory dump), written when the VM restarts after the bugcheck";

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
                .split_once(ps::PROLOGUE)
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
            let body = s.split_once(ps::PROLOGUE).map_or(s.as_str(), |(_, b)| b);
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
    for l in ps::PROLOGUE.lines() {
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

impl Plan {
    /// Every step, in order.
    pub fn steps(&self) -> impl Iterator<Item = &Step> {
        self.setup
            .iter()
            .chain(self.drivers.iter().flat_map(|d| d.steps.iter()))
            .chain(self.teardown.iter())
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::deploy::transport::Ssh;

    /// A cm-filter package as `Package::read` makes it from a real package (fixed values).
    pub fn cm_filter() -> Package {
        let inf = include_str!("../../../cm-filter/cm-filter.inx").replace("$ARCH$", "amd64");
        let (service, display_name, service_values) = service_from_inf(&inf, Arch::X64).unwrap();
        Package {
            driver: "cm-filter".into(),
            service,
            display_name,
            dir: "/home/me/drivers/target/packages/x64/debug/cm-filter".into(),
            files: vec![
                (
                    "callback-drivers-test.cer".into(),
                    "7ACEAFBCB49B195893F421E327026A5BEA64E784AFF7540894387C44636FC1B7".into(),
                ),
                ("cm-filter.sys".into(), "AB".repeat(32)),
            ],
            thumbprint: "34AD27DCCAAC93ADCE84B84DB07823E8F1570848".into(),
            cert_file: driver_package::cert::CERT_FILE.into(),
            service_values,
            probe: probe::parse_probe(include_str!("../../../cm-filter/deploy.toml")).unwrap(),
        }
    }

    /// An ex-callback package (no registry values, the default-style probe).
    pub fn ex_callback() -> Package {
        let inf = include_str!("../../../ex-callback/ex-callback.inx").replace("$ARCH$", "amd64");
        let (service, display_name, service_values) = service_from_inf(&inf, Arch::X64).unwrap();
        Package {
            driver: "ex-callback".into(),
            service,
            display_name,
            dir: "/home/me/drivers/target/packages/x64/debug/ex-callback".into(),
            files: vec![("ex-callback.sys".into(), "CD".repeat(32))],
            thumbprint: "34AD27DCCAAC93ADCE84B84DB07823E8F1570848".into(),
            cert_file: driver_package::cert::CERT_FILE.into(),
            service_values,
            probe: probe::parse_probe(include_str!("../../../ex-callback/deploy.toml")).unwrap(),
        }
    }

    fn ssh() -> Ssh {
        Ssh::new(Some("admin".into()), "testvm".into(), Some(2222))
    }

    /// Compares `actual` with `snapshots/NAME`; `XTASK_BLESS=1` writes it instead.
    fn snapshot(name: &str, actual: &str) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/deploy/snapshots")
            .join(name);
        if std::env::var_os("XTASK_BLESS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, actual).unwrap();
            return;
        }
        let expected = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("{} is missing: run with XTASK_BLESS=1", path.display()));
        if expected != actual {
            let diff = expected
                .lines()
                .zip(actual.lines())
                .enumerate()
                .find(|(_, (a, b))| a != b)
                .map_or_else(
                    || "lengths differ".to_owned(),
                    |(i, (a, b))| format!("line {}:\n  expected: {a}\n  actual:   {b}", i + 1),
                );
            panic!(
                "{} differs from the plan ({diff}); if the change is intended, run the tests with XTASK_BLESS=1 and review the diff",
                path.display()
            );
        }
    }

    fn spaced_options() -> Options {
        Options {
            remote_dir: r"C:\Test Drivers\it's deploy".into(),
            ..Options::default()
        }
    }

    #[test]
    fn the_ssh_plan_of_cm_filter_is_the_snapshot() {
        let plan = build(
            "ssh://admin@testvm:2222",
            &Via::Ssh,
            &[cm_filter()],
            &spaced_options(),
        )
        .unwrap();
        snapshot("ssh-cm-filter.txt", &render(&plan, &ssh()));
    }

    #[test]
    fn the_hyperv_plan_with_snapshot_and_inf_install_is_the_snapshot() {
        let options = Options {
            install: Install::Inf,
            snapshot: Some("clean".into()),
            revert_after_failure: true,
            enable_testsigning: true,
            keep: true,
            ..Options::default()
        };
        let h = HyperV {
            vm: "Win11 Test".into(),
            credential: r"C:\Users\me\.config\windows-callback-drivers\hyperv-Win11 Test.xml"
                .into(),
        };
        let plan = build(
            "hyperv:Win11 Test",
            &Via::HyperV {
                vm: "Win11 Test".into(),
            },
            &[ex_callback(), cm_filter()],
            &options,
        )
        .unwrap();
        snapshot("hyperv-inf-snapshot.txt", &render(&plan, &h));
    }

    #[test]
    fn exact_command_lines_are_the_snapshot() {
        let plan = build(
            "ssh://admin@testvm:2222",
            &Via::Ssh,
            &[cm_filter()],
            &spaced_options(),
        )
        .unwrap();
        let t = ssh();
        let mut out = String::new();
        for s in plan.steps() {
            match &s.run {
                Run::Guest(script) if matches!(s.id, "preflight" | "install" | "stop") => {
                    let _ = writeln!(out, "# {}\n{}\n", s.id, t.show_guest(script, true));
                }
                Run::Upload(items) => {
                    let _ = writeln!(out, "# {}\n{}\n", s.id, t.show_upload(items));
                }
                _ => {}
            }
        }
        snapshot("ssh-cm-filter-command-lines.txt", &out);
    }

    #[test]
    fn every_step_fits_cmd_exe_and_decodes_back() {
        let options = Options {
            install: Install::Inf,
            enable_testsigning: true,
            ..spaced_options()
        };
        for install in [Install::Sc, Install::Inf] {
            let plan = build(
                "ssh://a@b",
                &Via::Ssh,
                &[cm_filter(), ex_callback()],
                &Options {
                    install,
                    ..options.clone()
                },
            )
            .unwrap();
            let h = HyperV {
                vm: "vm".into(),
                credential: r"C:\c.xml".into(),
            };
            for s in plan.steps() {
                if let Run::Guest(script) = &s.run {
                    let line = ps::command_line(script);
                    assert!(
                        line.len() < ps::CMD_LIMIT,
                        "{}: {} characters, more than cmd.exe takes",
                        s.id,
                        line.len()
                    );
                    let b64 = line.rsplit(' ').next().unwrap();
                    assert_eq!(ps::decode(b64).as_deref(), Some(script.as_str()));
                    let host = HyperV::host_argv(&h.guest_wrapper(script)).join(" ");
                    assert!(host.len() < ps::CREATE_PROCESS_LIMIT, "{}", s.id);
                }
            }
        }
        let pm = ps::command_line(&post_mortem_script(REMOTE_DIR));
        assert!(pm.len() < ps::CMD_LIMIT);
    }

    #[test]
    fn paths_with_spaces_and_quotes_are_quoted_once() {
        let plan = build("ssh://a@b", &Via::Ssh, &[cm_filter()], &spaced_options()).unwrap();
        let install = &plan.drivers[0].steps[0];
        let Run::Guest(script) = &install.run else {
            panic!()
        };
        assert!(
            script.contains(
                "'binPath=', 'C:\\Test Drivers\\it''s deploy\\cm-filter\\cm-filter.sys', 'DisplayName=', 'cm-filter sample driver'"
            ),
            "{script}"
        );
        // The INF's Parameters\Altitude, applied by the sc install.
        assert!(script.contains(
            "New-ItemProperty -Force -LiteralPath 'HKLM:\\SYSTEM\\CurrentControlSet\\Services\\CmFilter\\Parameters' -Name 'Altitude' -PropertyType String -Value '385201.5'"
        ), "{script}");
        let Run::Upload(items) = &plan.setup.iter().find(|s| s.id == "copy").unwrap().run else {
            panic!()
        };
        assert_eq!(items[0].remote, r"C:\Test Drivers\it's deploy\cm-filter");
        let e = build(
            "ssh://a@b",
            &Via::Ssh,
            &[cm_filter()],
            &Options {
                remote_dir: r#"C:\a"b"#.into(),
                ..Options::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("double quote"), "{e}");
        for bad in [
            "relative\\dir",
            "C:/fwd",
            "C:\\trailing\\",
            "\\\\server\\share",
        ] {
            let o = Options {
                remote_dir: bad.into(),
                ..Options::default()
            };
            assert!(
                build("ssh://a@b", &Via::Ssh, &[cm_filter()], &o).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn failure_and_keep_rules_are_in_the_data() {
        let plan = build("ssh://a@b", &Via::Ssh, &[cm_filter()], &Options::default()).unwrap();
        let ids: Vec<&str> = plan.steps().map(|s| s.id).collect();
        assert_eq!(
            ids,
            [
                "preflight",
                "leftovers",
                "copy",
                "check-copy",
                "trust",
                "install",
                "start",
                "probe",
                "stop",
                "unloaded",
                "remove",
                "events",
                "remove-files"
            ]
        );
        let d = &plan.drivers[0].steps;
        let by = |id: &str| d.iter().find(|s| s.id == id).unwrap();
        assert_eq!(by("stop").cleanup, Cleanup::After("start"));
        assert_eq!(by("remove").cleanup, Cleanup::After("install"));
        assert_eq!(by("events").cleanup, Cleanup::Always);
        assert_eq!(by("probe").timeout, Duration::from_secs(122));
        let kept = build(
            "ssh://a@b",
            &Via::Ssh,
            &[cm_filter()],
            &Options {
                keep: true,
                ..Options::default()
            },
        )
        .unwrap();
        assert!(
            kept.steps()
                .filter(|s| s.when == When::Kept)
                .map(|s| s.id)
                .eq(["remove", "remove-files"])
        );
    }

    #[test]
    fn snapshot_options_are_checked() {
        let err =
            |o: Options, via: &Via| build("t", via, &[cm_filter()], &o).unwrap_err().to_string();
        let snap = Options {
            snapshot: Some("clean".into()),
            ..Options::default()
        };
        assert!(err(snap.clone(), &Via::Ssh).contains("needs --libvirt DOMAIN"));
        let hv = Via::HyperV { vm: "v".into() };
        assert!(
            err(
                Options {
                    libvirt: Some("d".into()),
                    ..snap.clone()
                },
                &hv
            )
            .contains("--libvirt is for VMs reached over ssh")
        );
        assert!(
            err(
                Options {
                    revert_after_failure: true,
                    ..Options::default()
                },
                &Via::Ssh
            )
            .contains("needs --snapshot")
        );
        let plan = build(
            "ssh://a@b",
            &Via::Ssh,
            &[cm_filter()],
            &Options {
                libvirt: Some("win11".into()),
                revert_after_failure: true,
                ..snap
            },
        )
        .unwrap();
        let Run::Host { argv, .. } = &plan.setup[0].run else {
            panic!()
        };
        assert_eq!(
            argv,
            &[
                "virsh",
                "-c",
                "qemu:///system",
                "snapshot-revert",
                "win11",
                "clean",
                "--running"
            ]
        );
        assert_eq!(plan.setup[1].run, Run::WaitForGuest { new_boot: false });
        assert_eq!(plan.teardown[1].cleanup, Cleanup::OnlyOnFailure);
    }

    #[test]
    fn service_values_come_from_the_inf() {
        let p = cm_filter();
        assert_eq!(
            (p.service.as_str(), p.display_name.as_str()),
            ("CmFilter", "cm-filter sample driver")
        );
        assert_eq!(
            p.service_values,
            [RegValue {
                subkey: "Parameters".into(),
                name: "Altitude".into(),
                kind: "String",
                data: "385201.5".into()
            }]
        );
        let inf = include_str!("../../../cm-filter/cm-filter.inx")
            .replace("$ARCH$", "amd64")
            .replace("0x00000000,\"385201.5\"", "0x00020000,\"%SystemRoot%\"");
        let e = service_from_inf(&inf, Arch::X64).unwrap_err().to_string();
        assert!(e.contains("use --install inf"), "{e}");
    }
}
