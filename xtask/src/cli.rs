//! The command line: a small hand-written parser (no dependency to compile) and the help texts.
//!
//! Each command's help is written once, in [`COMMANDS`]; `cargo xtask --help` is generated from
//! their summaries, and the README's command synopsis must equal [`synopsis`] (a test checks it).

use crate::base::error::{Result, bail};
use crate::base::layout::{Arch, Profile};
use crate::deploy::{Install, Target};

/// What `cargo xtask ...` asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Print this help text and exit successfully.
    Help(String),
    /// `build`
    Build(BuildArgs),
    /// `lint`
    Lint(LintArgs),
    /// `emulate`
    Emulate(EmulateArgs),
    /// `cert`
    Cert(CertArgs),
    /// `sign`
    Sign(SignArgs),
    /// `package`
    Package(PackageArgs),
    /// `deploy`
    Deploy(DeployArgs),
    /// `test`
    Test(TestArgs),
    /// `clean`
    Clean(CleanArgs),
    /// `bench`
    Bench(BenchArgs),
}

/// `cargo xtask build`.
#[derive(Debug, PartialEq, Eq)]
pub struct BuildArgs {
    /// `-p NAME`...; empty = every driver.
    pub packages: Vec<String>,
    /// `--arch`; default x64.
    pub arches: Vec<Arch>,
    /// `--release`.
    pub profile: Profile,
}

/// `cargo xtask lint`.
#[derive(Debug, PartialEq, Eq)]
pub struct LintArgs {
    /// `-p NAME`...; empty = every driver.
    pub packages: Vec<String>,
    /// `--arch`; default x64.
    pub arches: Vec<Arch>,
    /// `--release`.
    pub profile: Profile,
    /// `--json`.
    pub json: bool,
    /// Explicit images to lint instead of the placed ones.
    pub files: Vec<std::path::PathBuf>,
}

/// `cargo xtask emulate`.
#[derive(Debug, PartialEq, Eq)]
pub struct EmulateArgs {
    /// Drivers to run; empty = every driver.
    pub drivers: Vec<String>,
    /// `--json`.
    pub json: bool,
    /// `--faults`.
    pub faults: bool,
    /// `--release`.
    pub profile: Profile,
}

/// `cargo xtask cert`.
pub(crate) use crate::commands::cert::Options as CertArgs;

/// `cargo xtask sign`.
pub(crate) use crate::commands::sign::Options as SignArgs;

/// `cargo xtask package`.
pub(crate) use crate::commands::package::Options as PackageArgs;

/// `cargo xtask deploy`.
#[derive(Debug, PartialEq, Eq)]
#[allow(clippy::struct_excessive_bools)] // one per flag of the command line
pub struct DeployArgs {
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
}

/// `cargo xtask test`.
#[derive(Debug, PartialEq, Eq, Default)]
pub struct TestArgs {
    /// `--stage NAME`...; empty = every stage.
    pub stages: Vec<String>,
    /// `-p NAME`...: these drivers and fixtures only; empty = all.
    pub packages: Vec<String>,
}

/// `cargo xtask clean`.
#[derive(Debug, PartialEq, Eq)]
pub struct CleanArgs {
    /// `--all`: the emulator's venv too.
    pub all: bool,
}

/// `cargo xtask bench`.
#[derive(Debug, PartialEq, Eq)]
pub struct BenchArgs {
    /// `--json`.
    pub json: bool,
}

/// Parses the arguments after `cargo xtask`.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command> {
    let mut args: Vec<String> = args.into_iter().collect();
    if args.is_empty() {
        return Ok(Command::Help(help()));
    }
    let command = args.remove(0);
    let mut p = Parser { args };
    if matches!(command.as_str(), "-h" | "--help" | "help") {
        return Ok(Command::Help(match p.args.first().map(String::as_str) {
            None => help(),
            Some(c) => help_for(c).ok_or_else(|| unknown_command(c))?.to_owned(),
        }));
    }
    // `--help` wins over anything else on the line.
    let help = help_for(&command).ok_or_else(|| unknown_command(&command))?;
    if p.flag(&["-h", "--help"]) {
        return Ok(Command::Help(help.to_owned()));
    }
    Ok(match command.as_str() {
        "build" => {
            let args = BuildArgs {
                profile: p.profile(),
                packages: p.packages()?,
                arches: p.arches()?,
            };
            p.finish()?;
            Command::Build(args)
        }
        "lint" => {
            let profile = p.profile();
            let json = p.flag(&["--json"]);
            let packages = p.packages()?;
            let arches = p.arches()?;
            let files: Vec<std::path::PathBuf> =
                p.positional()?.into_iter().map(Into::into).collect();
            if !files.is_empty() {
                if !packages.is_empty() {
                    bail!("lint: give either files or -p NAME, not both");
                }
                if arches.len() > 1 {
                    bail!(
                        "lint: explicit files are checked for one machine: use --arch x64 or --arch arm64"
                    );
                }
            }
            Command::Lint(LintArgs {
                packages,
                arches,
                profile,
                json,
                files,
            })
        }
        "emulate" => {
            let profile = p.profile();
            let json = p.flag(&["--json"]);
            let faults = p.flag(&["--faults"]);
            let mut drivers = p.packages()?;
            drivers.extend(p.positional()?);
            Command::Emulate(EmulateArgs {
                drivers,
                json,
                faults,
                profile,
            })
        }
        "cert" => Command::Cert(parse_cert(p)?),
        "sign" => Command::Sign(parse_sign(p)?),
        "package" => Command::Package(parse_package(p)?),
        "deploy" => Command::Deploy(parse_deploy(p)?),
        "test" => {
            let args = TestArgs {
                stages: p.values(&["--stage"])?,
                packages: p.packages()?,
            };
            p.finish()?;
            Command::Test(args)
        }
        "clean" => {
            let args = CleanArgs {
                all: p.flag(&["--all"]),
            };
            p.finish()?;
            Command::Clean(args)
        }
        "bench" => {
            let json = p.flag(&["--json"]);
            p.finish()?;
            Command::Bench(BenchArgs { json })
        }
        other => return Err(unknown_command(other)),
    })
}

fn parse_deploy(mut p: Parser) -> Result<DeployArgs> {
    let seconds = |p: &mut Parser, name: &str, default: u64| -> Result<u64> {
        match p.value(&[name])? {
            None => Ok(default),
            Some(v) => match v.parse::<u64>() {
                Ok(s) if s > 0 => Ok(s),
                _ => bail!("{name} takes a number of seconds, not `{v}`"),
            },
        }
    };
    let mut targets = p
        .values(&["--target"])?
        .iter()
        .map(|t| t.parse())
        .collect::<Result<Vec<Target>>>()?;
    if targets.is_empty() {
        targets.push(Target::Emu);
    }
    let arch = match p.value(&["--arch"])? {
        None => Arch::X64,
        Some(v) => match Arch::parse_selection(&v)?.as_slice() {
            [one] => *one,
            _ => bail!("deploy: --arch is the VM's architecture: x64 or arm64"),
        },
    };
    let install = match p.value(&["--install"])?.as_deref() {
        None | Some("sc") => Install::Sc,
        Some("inf") => Install::Inf,
        Some(other) => bail!("--install takes sc or inf, not `{other}`"),
    };
    let args = DeployArgs {
        profile: p.profile(),
        dry_run: p.flag(&["--dry-run"]),
        json: p.flag(&["--json"]),
        keep: p.flag(&["--keep"]),
        enable_testsigning: p.flag(&["--enable-testsigning"]),
        revert_after_failure: p.flag(&["--revert-after-failure"]),
        snapshot: p.value(&["--snapshot"])?,
        libvirt: p.value(&["--libvirt"])?,
        libvirt_uri: p.value(&["--libvirt-uri"])?,
        remote_dir: p.value(&["--remote-dir"])?,
        ssh_options: p.values(&["--ssh-option"])?,
        hyperv_credential: p.value(&["--hyperv-credential"])?.map(Into::into),
        timeout_s: seconds(&mut p, "--timeout", 120)?,
        reboot_timeout_s: seconds(&mut p, "--reboot-timeout", 600)?,
        packages: p.packages()?,
        targets,
        arch,
        install,
    };
    p.finish()?;
    let vm = args.targets.iter().any(|t| *t != Target::Emu);
    if !vm && args.arch != Arch::X64 {
        bail!("deploy: the emulated kernel runs x64 images only; --arch is for VM targets");
    }
    Ok(args)
}

fn parse_cert(mut p: Parser) -> Result<CertArgs> {
    let show = p.flag(&["--show"]);
    let new = p.flag(&["--new"]);
    if show && new {
        bail!("cert: give --show or --new, not both");
    }
    let args = CertArgs {
        new,
        json: p.flag(&["--json"]),
        cert_dir: p.value(&["--cert-dir"])?.map(Into::into),
    };
    p.finish()?;
    Ok(args)
}

fn parse_sign(mut p: Parser) -> Result<SignArgs> {
    let profile = p.profile();
    let cert_dir = p.value(&["--cert-dir"])?.map(Into::into);
    let packages = p.packages()?;
    let arches = p.arches()?;
    let files: Vec<std::path::PathBuf> = p.positional()?.into_iter().map(Into::into).collect();
    if !files.is_empty() && !packages.is_empty() {
        bail!("sign: give either files or -p NAME, not both");
    }
    Ok(SignArgs {
        packages,
        arches,
        profile,
        cert_dir,
        files,
    })
}

fn parse_package(mut p: Parser) -> Result<PackageArgs> {
    let args = PackageArgs {
        profile: p.profile(),
        json: p.flag(&["--json"]),
        cert_dir: p.value(&["--cert-dir"])?.map(Into::into),
        packages: p.packages()?,
        arches: p.arches()?,
    };
    p.finish()?;
    Ok(args)
}

fn unknown_command(c: &str) -> crate::base::error::Error {
    let names: Vec<&str> = COMMANDS.iter().map(|d| d.name).collect();
    crate::base::error::Error::new(format!(
        "unknown command `{c}`: the commands are {} (cargo xtask --help)",
        names.join(", ")
    ))
}

fn help_for(command: &str) -> Option<&'static str> {
    COMMANDS.iter().find(|d| d.name == command).map(|d| d.help)
}

/// One command's documentation: the one place its help is written.
pub struct CommandDoc {
    /// The command's name.
    pub name: &'static str,
    /// Its line in `cargo xtask --help`.
    pub summary: &'static str,
    /// `cargo xtask NAME --help`; its `USAGE:` lines are the synopsis.
    pub help: &'static str,
}

/// Every command, in the order `--help` and the README list them.
pub const COMMANDS: &[CommandDoc] = &[
    CommandDoc {
        name: "build",
        summary: "cross-build the drivers, lint each image, place it under target/drivers/",
        help: BUILD_HELP,
    },
    CommandDoc {
        name: "lint",
        summary: "check placed (or given) images against the kernel loader's rules",
        help: LINT_HELP,
    },
    CommandDoc {
        name: "cert",
        summary: "show or create the test-signing certificate (kept outside the repository)",
        help: CERT_HELP,
    },
    CommandDoc {
        name: "sign",
        summary: "embed an Authenticode signature by the test certificate in placed (or given) images",
        help: SIGN_HELP,
    },
    CommandDoc {
        name: "package",
        summary: "signed image + INF + signed catalog + certificate, under target/packages/",
        help: PACKAGE_HELP,
    },
    CommandDoc {
        name: "emulate",
        summary: "run the x64 drivers in the emulated kernel (speakeasy) and audit their teardown",
        help: EMULATE_HELP,
    },
    CommandDoc {
        name: "deploy",
        summary: "build -> lint -> sign and package -> run on a target (default: the emulator)",
        help: DEPLOY_HELP,
    },
    CommandDoc {
        name: "test",
        summary: "everything: toolchain, gate, host tests, both architectures, lint, packages, emulation, fixtures, deploy",
        help: TEST_HELP,
    },
    CommandDoc {
        name: "bench",
        summary: "clean build time, image sizes, instructions per callback, packaging time, against budgets",
        help: BENCH_HELP,
    },
    CommandDoc {
        name: "clean",
        summary: "remove what xtask placed under target/ (never the test certificate)",
        help: CLEAN_HELP,
    },
    CommandDoc {
        name: "help",
        summary: "this text, or a command's (same as --help)",
        help: HELP_HELP,
    },
];

/// `cargo xtask --help`, from [`COMMANDS`].
pub fn help() -> String {
    use std::fmt::Write;
    let width = COMMANDS.iter().map(|d| d.name.len()).max().unwrap_or(0);
    let mut s = String::from(
        "cargo xtask: build, check and run the driver samples\n\nUSAGE: cargo xtask <COMMAND> [OPTIONS]\n\nCOMMANDS:\n",
    );
    for d in COMMANDS {
        let _ = writeln!(s, "    {:width$}  {}", d.name, d.summary);
    }
    s.push_str("\n`cargo xtask <COMMAND> --help` tells more.\n");
    s
}

/// The synopsis of every command: each `USAGE:` form of its help, continuation lines joined. The
/// README's `## Commands` block must be exactly this (`readme_synopsis_is_the_help`).
#[cfg(test)]
fn synopsis() -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for d in COMMANDS {
        let mut in_usage = false;
        for line in d.help.lines() {
            if let Some(rest) = line.strip_prefix("USAGE: ") {
                in_usage = true;
                lines.push(rest.trim().to_owned());
            } else if in_usage && line.trim_start().starts_with("cargo xtask ") {
                lines.push(line.trim().to_owned());
            } else if in_usage && line.starts_with("  ") && !line.trim().is_empty() {
                let last = lines
                    .last_mut()
                    .expect("a usage line before its continuation");
                last.push(' ');
                last.push_str(line.trim());
            } else {
                in_usage = false;
            }
        }
    }
    lines
}

/// The arguments not yet consumed; each method takes what it recognises.
struct Parser {
    args: Vec<String>,
}

impl Parser {
    /// Whether any of `names` is present (every occurrence is consumed).
    fn flag(&mut self, names: &[&str]) -> bool {
        let before = self.args.len();
        self.args.retain(|a| !names.contains(&a.as_str()));
        self.args.len() != before
    }

    /// Every value of an option given as `NAME VALUE` or `NAME=VALUE`, in order.
    fn values(&mut self, names: &[&str]) -> Result<Vec<String>> {
        let mut values = Vec::new();
        let mut i = 0;
        while i < self.args.len() {
            let arg = &self.args[i];
            if names.contains(&arg.as_str()) {
                if i + 1 >= self.args.len() || self.args[i + 1].starts_with('-') {
                    bail!("{arg} needs a value");
                }
                values.push(self.args.remove(i + 1));
                self.args.remove(i);
            } else if let Some(v) = names
                .iter()
                .find_map(|n| arg.strip_prefix(n).and_then(|r| r.strip_prefix('=')))
            {
                if v.is_empty() {
                    bail!("{arg} needs a value");
                }
                values.push(v.to_owned());
                self.args.remove(i);
            } else {
                i += 1;
            }
        }
        Ok(values)
    }

    /// The value of an option given at most once.
    fn value(&mut self, names: &[&str]) -> Result<Option<String>> {
        let mut values = self.values(names)?;
        if values.len() > 1 {
            bail!("{} given more than once", names[0]);
        }
        Ok(values.pop())
    }

    fn packages(&mut self) -> Result<Vec<String>> {
        self.values(&["-p", "--package"])
    }

    fn profile(&mut self) -> Profile {
        Profile::from_release_flag(self.flag(&["--release", "-r"]))
    }

    fn arches(&mut self) -> Result<Vec<Arch>> {
        match self.value(&["--arch"])? {
            Some(v) => Ok(Arch::parse_selection(&v)?),
            None => Ok(vec![Arch::X64]),
        }
    }

    /// What is left, which must not contain options.
    fn positional(self) -> Result<Vec<String>> {
        if let Some(opt) = self.args.iter().find(|a| a.starts_with('-')) {
            bail!("unknown option `{opt}` (see --help)");
        }
        Ok(self.args)
    }

    /// Nothing may be left.
    fn finish(self) -> Result<()> {
        if let Some(arg) = self.args.first() {
            if arg.starts_with('-') {
                bail!("unknown option `{arg}` (see --help)");
            }
            bail!("unexpected argument `{arg}` (see --help)");
        }
        Ok(())
    }
}

const BUILD_HELP: &str = "\
cargo xtask build: cross-build the drivers, lint each image, place it

USAGE: cargo xtask build [--release] [-p NAME]... [--arch x64|arm64|all]

Builds each driver with cargo for the Windows target, lints the image, and only if it passes places
it at target/drivers/<arch>/<profile>/NAME/NAME.sys (and NAME.pdb). An image that fails the lint is
not placed, and a previously placed one is removed.

OPTIONS:
    --release            the release profile (default: debug)
    -p, --package NAME   this driver only (repeatable; default: every driver)
    --arch ARCH          x64 (default), arm64 or all
";

const LINT_HELP: &str = "\
cargo xtask lint: check images against what the kernel loader and memory integrity require

USAGE: cargo xtask lint [--release] [-p NAME]... [--arch x64|arm64|all] [--json]
       cargo xtask lint [--arch x64|arm64] [--json] FILE...

Without FILE, lints the placed images target/drivers/<arch>/<profile>/NAME/NAME.sys (build first).
Exits non-zero if any image breaks a rule.

OPTIONS:
    --release            the release images (default: debug)
    -p, --package NAME   this driver only (repeatable; default: every driver)
    --arch ARCH          x64 (default), arm64 or all; for FILEs, the machine they must be for
    --json               print one JSON document instead of text
";

const CERT_HELP: &str = "\
cargo xtask cert: show or create the test-signing certificate

USAGE: cargo xtask cert [--show | --new] [--cert-dir DIR] [--json]

The certificate (RSA 2048, code signing, self-signed, subject \"Windows Callback Driver Samples Test
Signing - not for production\") and its private key live outside the repository, in DIR:
--cert-dir, else $XTASK_CERT_DIR, else $XDG_CONFIG_HOME/windows-callback-drivers, else
~/.config/windows-callback-drivers. The key file must be readable by its owner only (chmod 600).
`sign` and `package` create the certificate on first use; packages carry only its .cer.

OPTIONS:
    --show           print the certificate's subject, thumbprints and validity (default)
    --new            create a new key and certificate, replacing the old pair
    --cert-dir DIR   the folder of the key and certificate
    --json           print one JSON document instead of text
";

const SIGN_HELP: &str = "\
cargo xtask sign: embed a SHA-256 Authenticode signature by the test certificate

USAGE: cargo xtask sign [--release] [-p NAME]... [--arch x64|arm64|all] [--cert-dir DIR]
       cargo xtask sign [--cert-dir DIR] FILE...

Signs the placed images target/drivers/<arch>/<profile>/NAME/NAME.sys (build first), or the given
FILEs, in place. An existing signature is replaced. Only images that pass the lint are signed;
anything else is refused and left unchanged. The certificate is created on first use (see cert).

OPTIONS:
    --release            the release images (default: debug)
    -p, --package NAME   this driver only (repeatable; default: every driver)
    --arch ARCH          x64 (default), arm64 or all
    --cert-dir DIR       the folder of the test key and certificate (see cert --help)
";

const PACKAGE_HELP: &str = "\
cargo xtask package: driver packages for Windows: signed image, INF, signed catalog, certificate

USAGE: cargo xtask package [--release] [-p NAME]... [--arch x64|arm64|all] [--cert-dir DIR] [--json]

For each driver and architecture, from the placed image (build first) and the driver's NAME.inx,
writes target/packages/<arch>/<profile>/NAME/ with NAME.sys (signed), NAME.inf (stamped: DriverVer
from the date and Cargo.toml's version, the architecture decoration), NAME.cat (the catalog of the
.sys and the .inf, signed), NAME.pdb, the test certificate's .cer and manifest.json (hashes,
versions, signer thumbprint). The .inx is checked first (each problem with its line); a package is
assembled aside and renamed into place, so a failure leaves the previous one intact.
SOURCE_DATE_EPOCH, when set, replaces the current time in DriverVer and the catalog.

OPTIONS:
    --release            the release profile (default: debug)
    -p, --package NAME   this driver only (repeatable; default: every driver)
    --arch ARCH          x64 (default), arm64 or all
    --cert-dir DIR       the folder of the test key and certificate (see cert --help)
    --json               print the manifests as one JSON document
";

const EMULATE_HELP: &str = "\
cargo xtask emulate: run the x64 drivers in the emulated kernel and audit their teardown

USAGE: cargo xtask emulate [NAME]... [--faults] [--release] [--json]

For each driver (default: every driver), builds its x64 image (as `cargo xtask build` does: linted,
placed at target/drivers/x64/<profile>/NAME/NAME.sys), then runs it with the harness
xtask/emu/harness.py in speakeasy: DriverEntry, the driver's scenario.toml, DriverUnload, then the
audit. The report goes to target/emu/NAME/report.json. On first use, creates a Python venv at
target/emu-venv and installs xtask/emu/requirements.lock into it (hash-checked).

OPTIONS:
    --faults     also one run per fallible kernel call DriverEntry makes, with that call failing
    --release    the release image (default: debug)
    --json       print one JSON document aggregating the reports instead of text
";

const DEPLOY_HELP: &str = "\
cargo xtask deploy: build -> lint -> sign and package -> run the drivers on a target

USAGE: cargo xtask deploy [--target TARGET]... [-p NAME]... [--release] [--arch x64|arm64]
                          [--dry-run] [--json] [VM OPTIONS]

emu (the default): the x64 packages are made under target/packages/x64/<profile>/ and each driver
runs in the emulated kernel, printing its log and audit.

A Windows test VM (ssh://user@host[:port], or hyperv:VMNAME from its Windows Hyper-V host): the
packages are made, then one plan runs per VM (several --target deploy in parallel, one report
each): [revert the snapshot] preflight (administrator, architecture, test signing) [turn test
signing on, restart] remove leftovers of an earlier deploy, copy the packages, check their hashes,
trust the test certificate (Root, TrustedPublisher); per driver: install, start (running and
loaded), probe (deploy.toml beside the driver: running for `settle` seconds, checks while loaded),
stop = unload (stopped, exit code 0), unloaded (gone from the loaded modules, checks after
unload), remove, collect the Service Control Manager events; remove the copied files. A failing
step stops the plan, runs the removal steps that apply, and is reported with the VM's output; a VM
that stops answering after a driver started is reported as a probable bugcheck. Each step runs on
the VM as `powershell -NoProfile -NonInteractive -EncodedCommand <script>`, whatever its default
shell. ssh uses the system's ssh and sftp with BatchMode=yes and StrictHostKeyChecking=yes: your
keys, agent and ~/.ssh/config; never a password. The report is text, or JSON with --json; progress
goes to stderr. See README.md, \"Deploy to a VM\", for the one-time VM setup.

OPTIONS:
    --target TARGET         emu (default), ssh://user@host[:port] or hyperv:VMNAME (repeatable)
    -p, --package NAME      this driver only (repeatable; default: every driver)
    --release               the release profile (default: debug)
    --arch ARCH             the VM's architecture: x64 (default) or arm64
    --dry-run               print the plan (every script and command line), run nothing
    --json                  the plan (with --dry-run) or the reports as JSON on stdout
    --install sc|inf        create the service with sc.exe (default; the INF's service registry
                            values are written too) or install the INF with pnputil
    --keep                  leave the service and the copied files on the VM
    --enable-testsigning    if test signing is off: bcdedit /set testsigning on, restart, wait
    --snapshot NAME         revert the VM first: Hyper-V checkpoint NAME, or with --libvirt
    --libvirt DOMAIN        (ssh targets) the libvirt domain: virsh snapshot-revert DOMAIN NAME
    --libvirt-uri URI       the libvirt connection virsh uses (default qemu:///system)
    --revert-after-failure  revert to the snapshot again when the plan failed
    --remote-dir DIR        the folder on the VM (default C:\\ProgramData\\windows-callback-drivers\\deploy)
    --ssh-option OPT        passed to ssh and sftp as -o OPT (repeatable)
    --hyperv-credential F   the guest credential saved with Get-Credential | Export-Clixml F
                            (default: hyperv-VMNAME.xml in the certificate folder)
    --timeout SECS          the limit of one step (default 120)
    --reboot-timeout SECS   how long to wait for the VM after a revert or restart (default 600)
";

const TEST_HELP: &str = "\
cargo xtask test: run every test of the suite

USAGE: cargo xtask test [--stage NAME]... [-p NAME]...

Stages, in order (--stage runs only the named ones, and the builds they need):
    toolchain  the Windows targets, clippy and rustfmt installed where missing; and proven on a
               copy of the toolchain that really lacks them (rustup downloads them)
    gate       cargo fmt --check; clippy with warnings denied (host crates, every driver and
               fixture on x64 and arm64); ruff on the harness; each also on code broken on purpose
    host       cargo test -p common -p driver-package -p xtask, and the harness's unit tests
               (xtask/emu/tests)
    build      every driver for x64 and arm64, debug and release (each image linted)
    lint       the placed images linted again
    package    every driver signed and packaged, verified by osslsigncode (signatures, catalog
               membership), by a round trip of the catalog and the INF, and by tampered copies
               that must fail; the signed x64 images run in the emulator
    emulate    every driver with the fault sweep (debug and release)
    fixtures   drivers broken on purpose: each defect must be caught
    mutations  every lesson a driver README claims, broken in a copy of the driver
               (xtask/mutations/*.toml), must be failed by the rule that names it
    deploy     the VM plans of the real packages; the ssh transport and whole plans against a
               real OpenSSH server on 127.0.0.1
osslsigncode and OpenSSH are installed where missing (root with apt-get), or the error says how.
Ends with a line `N passed, M failed`; exits non-zero if anything failed.

OPTIONS:
    --stage NAME         this stage only (repeatable; default: every stage)
    -p, --package NAME   these drivers or fixtures only (repeatable; default: all)
";

const CLEAN_HELP: &str = "\
cargo xtask clean: remove what xtask placed

USAGE: cargo xtask clean [--all]

Removes target/drivers (placed images), target/packages, target/emu (emulation reports) and the
other scratch folders xtask writes under target/, but not cargo's own build output. Never touches
the test certificate (see cert --help).

OPTIONS:
    --all    also the emulator's Python venv (target/emu-venv); the next emulation makes it again
";

const HELP_HELP: &str = "\
cargo xtask help: the list of commands, or one command's help

USAGE: cargo xtask help [COMMAND]
";

const BENCH_HELP: &str = "\
cargo xtask bench: measure against the budgets

USAGE: cargo xtask bench [--json]

Measures the clean release build time of the drivers and common for x64 (in target/bench, deleted
first), the size of each release x64 .sys, the instructions each callback executes in the
emulator, and the time signing and packaging every driver for x64 and arm64 takes (budget 2 s). Budgets come from [package.metadata.driver] size-budget and callback-instruction-budget.
Marks OVER BUDGET; exits non-zero only if a measurement could not be made.
";

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> Result<Command> {
        parse(s.split_whitespace().map(str::to_owned))
    }

    #[test]
    fn build_defaults_to_every_driver_debug_x64() {
        assert_eq!(
            parse_str("build").unwrap(),
            Command::Build(BuildArgs {
                packages: vec![],
                arches: vec![Arch::X64],
                profile: Profile::Debug
            })
        );
    }

    #[test]
    fn build_takes_packages_in_every_spelling() {
        let Command::Build(b) =
            parse_str("build -p a --package b --package=c --release --arch all").unwrap()
        else {
            panic!()
        };
        assert_eq!(b.packages, ["a", "b", "c"]);
        assert_eq!(b.arches, Arch::ALL);
        assert_eq!(b.profile, Profile::Release);
    }

    #[test]
    fn mistakes_are_named() {
        let err = |s: &str| parse_str(s).unwrap_err().to_string();
        assert_eq!(err("build -p"), "-p needs a value");
        assert_eq!(err("build -p --release"), "-p needs a value");
        assert_eq!(
            err("build --arch x64 --arch arm64"),
            "--arch given more than once"
        );
        assert_eq!(err("build --fast"), "unknown option `--fast` (see --help)");
        assert_eq!(
            err("build ex-callback"),
            "unexpected argument `ex-callback` (see --help)"
        );
        assert!(err("buidl").starts_with("unknown command `buidl`"));
        assert!(err("emulate --fault").contains("`--fault`"));
        assert!(err("lint -p a x.sys").contains("not both"));
        assert!(err("lint --arch all x.sys").contains("one machine"));
    }

    #[test]
    fn emulate_takes_names_positionally_or_with_p() {
        let Command::Emulate(e) = parse_str("emulate a --faults -p b --json").unwrap() else {
            panic!()
        };
        assert_eq!(e.drivers, ["b", "a"]);
        assert!(e.faults && e.json);
        assert_eq!(e.profile, Profile::Debug);
    }

    #[test]
    fn lint_files_and_arch() {
        let Command::Lint(l) = parse_str("lint --arch arm64 --json a.sys b.dll").unwrap() else {
            panic!()
        };
        assert_eq!(l.files, [std::path::PathBuf::from("a.sys"), "b.dll".into()]);
        assert_eq!(l.arches, [Arch::Arm64]);
        assert!(l.json);
    }

    #[test]
    fn help_everywhere() {
        assert_eq!(parse_str("").unwrap(), Command::Help(help()));
        assert_eq!(parse_str("--help").unwrap(), Command::Help(help()));
        assert_eq!(
            parse_str("help emulate").unwrap(),
            Command::Help(EMULATE_HELP.to_owned())
        );
        assert_eq!(
            parse_str("bench -h").unwrap(),
            Command::Help(BENCH_HELP.to_owned())
        );
        // --help wins over otherwise bad arguments.
        assert_eq!(
            parse_str("build --bogus --help").unwrap(),
            Command::Help(BUILD_HELP.to_owned())
        );
        // Every command is in the list, and each help starts with its own name.
        let listed = help();
        for d in COMMANDS {
            assert!(listed.contains(&format!("    {}", d.name)), "{}", d.name);
            assert!(
                d.help.starts_with(&format!("cargo xtask {}:", d.name)),
                "{}",
                d.name
            );
            assert!(d.help.contains(&format!("USAGE: cargo xtask {}", d.name)));
        }
    }

    #[test]
    fn test_and_clean_arguments() {
        assert_eq!(
            parse_str("test").unwrap(),
            Command::Test(TestArgs::default())
        );
        let Command::Test(t) = parse_str("test --stage gate --stage=build -p cm-filter").unwrap()
        else {
            panic!()
        };
        assert_eq!(t.stages, ["gate", "build"]);
        assert_eq!(t.packages, ["cm-filter"]);
        assert_eq!(
            parse_str("clean --all").unwrap(),
            Command::Clean(CleanArgs { all: true })
        );
        assert!(parse_str("clean x").is_err());
    }

    /// The README's command list is the synopsis of this file's help texts, line for line.
    #[test]
    fn readme_synopsis_is_the_help() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap();
        let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
        let block = readme
            .split("## Commands\n```\n")
            .nth(1)
            .and_then(|rest| rest.split("\n```").next())
            .expect("README.md has a ```-block right under `## Commands`");
        let readme_lines: Vec<&str> = block.lines().collect();
        let expected = synopsis();
        assert_eq!(
            readme_lines,
            expected,
            "README.md's `## Commands` block must be, line for line:\n{}",
            expected.join("\n")
        );
    }

    #[test]
    fn signing_commands() {
        let Command::Cert(c) = parse_str("cert").unwrap() else {
            panic!()
        };
        assert!(!c.new && !c.json && c.cert_dir.is_none());
        let Command::Cert(c) = parse_str("cert --new --cert-dir /k --json").unwrap() else {
            panic!()
        };
        assert!(c.new && c.json);
        assert_eq!(c.cert_dir, Some("/k".into()));
        assert!(parse_str("cert --show --new").is_err());
        let Command::Sign(s) = parse_str("sign --release a.sys").unwrap() else {
            panic!()
        };
        assert_eq!(
            (s.profile, s.files),
            (Profile::Release, vec!["a.sys".into()])
        );
        assert!(parse_str("sign -p a b.sys").is_err());
        let Command::Package(p) = parse_str("package --arch all -p ex-callback --json").unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (p.arches, p.packages, p.json),
            (Arch::ALL.to_vec(), vec!["ex-callback".to_owned()], true)
        );
        assert!(parse_str("package x").is_err());
        assert_eq!(
            parse_str("help package").unwrap(),
            Command::Help(PACKAGE_HELP.to_owned())
        );
    }

    #[test]
    fn deploy_targets() {
        let Command::Deploy(d) = parse_str("deploy").unwrap() else {
            panic!()
        };
        assert_eq!(d.targets, [Target::Emu]);
        assert!(!d.dry_run && !d.keep && d.install == Install::Sc && d.timeout_s == 120);
        let Command::Deploy(d) = parse_str("deploy --target=emu -p x").unwrap() else {
            panic!()
        };
        assert_eq!(
            (d.targets, d.packages),
            (vec![Target::Emu], vec!["x".to_owned()])
        );
        let Command::Deploy(d) = parse_str(
            "deploy --target ssh://me@vm:2222 --target hyperv:Win11 --dry-run --json --keep \
             --install inf --snapshot clean --arch arm64 --ssh-option Port=22 --timeout 30",
        )
        .unwrap() else {
            panic!()
        };
        assert!(matches!(d.targets[0], Target::Ssh { .. }));
        assert!(matches!(d.targets[1], Target::HyperV { .. }));
        assert!(d.dry_run && d.json && d.keep && d.install == Install::Inf);
        assert_eq!(
            (d.snapshot.as_deref(), d.arch, d.ssh_options, d.timeout_s),
            (Some("clean"), Arch::Arm64, vec!["Port=22".to_owned()], 30)
        );
        let err = |s: &str| parse_str(s).unwrap_err().to_string();
        assert!(err("deploy --install msi").contains("sc or inf"));
        assert!(err("deploy --arch all --target ssh://a@b").contains("x64 or arm64"));
        assert!(err("deploy --arch arm64").contains("x64 images only"));
        assert!(err("deploy --target ssh://a@b --timeout soon").contains("number of seconds"));
        assert!(
            parse_str("deploy --target ftp://x")
                .unwrap_err()
                .to_string()
                .contains("ftp://x")
        );
    }
}
