//! The one table of the command line: every command, its usage forms, its prose and its options.
//! The parser (`parse.rs`), `--help` (`help.rs`), the README's synopsis (a test) and the shell
//! completions (`complete.rs`) are all derived from [`COMMANDS`].

/// What an option's value (or a positional argument) may be: drives the completions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Values {
    /// A flag: no value.
    None,
    /// Free text (a target, a snapshot name, a number).
    Text,
    /// One of these words.
    Choices(&'static [&'static str]),
    /// A driver or fixture package name.
    Drivers,
    /// A stage of `cargo xtask test`.
    Stages,
    /// A command name.
    Commands,
    /// A file path.
    File,
    /// A folder path.
    Dir,
}

/// One option of a command.
#[derive(Debug)]
pub(crate) struct Opt {
    /// `--long`, the name the parser files the option under.
    pub long: &'static str,
    /// `-s`, if any.
    pub short: Option<&'static str>,
    /// The placeholder of its value in the help (`NAME`), `None` for a flag.
    pub placeholder: Option<&'static str>,
    /// What the value may be.
    pub values: Values,
    /// May be given more than once.
    pub repeat: bool,
    /// The value it has when given alone (`--verifier` = `standard`). Such an option takes its
    /// value as `--long=VALUE`, or as the next argument only when the command has no positional
    /// arguments, so it never swallows one (git's `--color[=WHEN]`).
    pub default: Option<&'static str>,
    /// Its help; lines after the first are continuation lines.
    pub help: &'static str,
}

/// The positional arguments of a command.
#[derive(Debug)]
pub(crate) struct Positional {
    /// What they are.
    pub values: Values,
}

/// One command.
#[derive(Debug)]
pub(crate) struct CommandSpec {
    /// Its name.
    pub name: &'static str,
    /// Its line in `cargo xtask --help`.
    pub summary: &'static str,
    /// The first line of its own help, after `cargo xtask NAME: `.
    pub title: &'static str,
    /// Its usage forms, each a line of the README's synopsis, without `cargo xtask `.
    pub usage: &'static [&'static str],
    /// The prose between USAGE and OPTIONS (may be empty).
    pub about: &'static str,
    /// Its options (`-h, --help` is implicit).
    pub options: &'static [Opt],
    /// Its positional arguments, if it takes any.
    pub positional: Option<Positional>,
}

impl CommandSpec {
    /// The option spelled `arg` (`--long` or `-s`), if it is one of this command's.
    pub(crate) fn option(&'static self, arg: &str) -> Option<&'static Opt> {
        self.options
            .iter()
            .find(|o| o.long == arg || o.short == Some(arg))
    }
}

/// The command called `name`.
pub(crate) fn command(name: &str) -> Option<&'static CommandSpec> {
    COMMANDS.iter().find(|c| c.name == name)
}

/// The architectures `--arch` takes.
pub(crate) const ARCH_SELECTION: &[&str] = &["x64", "arm64", "all"];
/// One architecture.
pub(crate) const ARCH_ONE: &[&str] = &["x64", "arm64"];
/// The shells `completions` writes for.
pub(crate) const SHELLS: &[&str] = &["bash", "zsh", "fish"];
/// The samples `new --from` copies.
pub(crate) const TEMPLATES: &[&str] = &[
    "ex-callback",
    "cm-filter",
    "pnp-notify",
    "wfp-callout",
    "wfp-callout-wdm",
];

const RELEASE: Opt = Opt {
    long: "--release",
    short: Some("-r"),
    placeholder: None,
    values: Values::None,
    repeat: false,
    default: None,
    help: "the release profile (default: debug)",
};
const RELEASE_IMAGES: Opt = Opt {
    help: "the release images (default: debug)",
    ..RELEASE
};
const PACKAGE: Opt = Opt {
    long: "--package",
    short: Some("-p"),
    placeholder: Some("NAME"),
    values: Values::Drivers,
    repeat: true,
    default: None,
    help: "this driver only (repeatable; default: every driver)",
};
const ARCH: Opt = Opt {
    long: "--arch",
    short: None,
    placeholder: Some("ARCH"),
    values: Values::Choices(ARCH_SELECTION),
    repeat: false,
    default: None,
    help: "x64 (default), arm64 or all",
};
const JSON: Opt = Opt {
    long: "--json",
    short: None,
    placeholder: None,
    values: Values::None,
    repeat: false,
    default: None,
    help: "print one JSON document instead of text",
};
const CERT_DIR: Opt = Opt {
    long: "--cert-dir",
    short: None,
    placeholder: Some("DIR"),
    values: Values::Dir,
    repeat: false,
    default: None,
    help: "the folder of the test key and certificate (see cert --help)",
};
const PFX: Opt = Opt {
    long: "--pfx",
    short: None,
    placeholder: Some("FILE"),
    values: Values::File,
    repeat: false,
    default: None,
    help: "sign with the certificate and key of this PKCS#12 file, not the test certificate\n\
           (password: XTASK_PFX_PASSWORD, else a prompt on the terminal)",
};
const KEY: Opt = Opt {
    long: "--key",
    short: None,
    placeholder: Some("KEY.pem"),
    values: Values::File,
    repeat: false,
    default: None,
    help: "sign with this RSA private key (PEM, not encrypted, chmod 600); with --cert",
};
const CERT: Opt = Opt {
    long: "--cert",
    short: None,
    placeholder: Some("CERT.pem"),
    values: Values::File,
    repeat: false,
    default: None,
    help: "the certificate of --key (PEM or DER)",
};
const fn flag(long: &'static str, help: &'static str) -> Opt {
    Opt {
        long,
        short: None,
        placeholder: None,
        values: Values::None,
        repeat: false,
        default: None,
        help,
    }
}
const fn valued(
    long: &'static str,
    placeholder: &'static str,
    values: Values,
    help: &'static str,
) -> Opt {
    Opt {
        long,
        short: None,
        placeholder: Some(placeholder),
        values,
        repeat: false,
        default: None,
        help,
    }
}

/// Every command, in the order `--help` and the README list them.
pub(crate) const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "build",
        summary: "cross-build the drivers, lint each image, place it under target/drivers/",
        title: "cross-build the drivers, lint each image, place it",
        usage: &["build [--release] [-p NAME]... [--arch x64|arm64|all]"],
        about: "\
Builds each driver with cargo for the Windows target, lints the image, and only if it passes places
it at target/drivers/<arch>/<profile>/NAME/NAME.sys (and NAME.pdb). An image that fails the lint is
not placed, and a previously placed one is removed. What was placed (or why not) is written as JSON
to target/reports/build.json (docs/reports/build.md).",
        options: &[RELEASE, PACKAGE, ARCH],
        positional: None,
    },
    CommandSpec {
        name: "lint",
        summary: "check placed (or given) images against the kernel loader's rules",
        title: "check images against what the kernel loader and memory integrity require",
        usage: &[
            "lint [--release] [-p NAME]... [--arch x64|arm64|all] [--json]",
            "lint [--arch x64|arm64] [--json] FILE...",
        ],
        about: "\
Without FILE, lints the placed images target/drivers/<arch>/<profile>/NAME/NAME.sys (build first).
Exits non-zero if any image breaks a rule.",
        options: &[
            RELEASE_IMAGES,
            PACKAGE,
            Opt {
                help: "x64 (default), arm64 or all; for FILEs, the machine they must be for",
                ..ARCH
            },
            JSON,
        ],
        positional: Some(Positional {
            values: Values::File,
        }),
    },
    CommandSpec {
        name: "cert",
        summary: "show or create the test-signing certificate (kept outside the repository)",
        title: "show or create the test-signing certificate",
        usage: &["cert [--show | --new] [--cert-dir DIR] [--export-pfx FILE] [--json]"],
        about: "\
The certificate (RSA 2048, code signing, self-signed, subject \"Windows Callback Driver Samples Test
Signing - not for production\") and its private key live outside the repository, in DIR:
--cert-dir, else $XTASK_CERT_DIR, else $XDG_CONFIG_HOME/windows-callback-drivers, else
~/.config/windows-callback-drivers. The key file must be readable by its owner only (chmod 600).
`sign` and `package` create the certificate on first use; packages carry only its .cer.
--export-pfx FILE writes the certificate and its key as a PKCS#12 file for Windows' tools
(certutil -importPFX, signtool /f): AES-256 and a SHA-256 MAC, the password from
XTASK_PFX_PASSWORD or typed twice on the terminal (never on the command line), the file mode 0600.",
        options: &[
            flag(
                "--show",
                "print the certificate's subject, thumbprints and validity (default)",
            ),
            flag(
                "--new",
                "create a new key and certificate, replacing the old pair",
            ),
            Opt {
                help: "the folder of the key and certificate",
                ..CERT_DIR
            },
            Opt {
                long: "--export-pfx",
                short: None,
                placeholder: Some("FILE"),
                values: Values::File,
                repeat: false,
                default: None,
                help: "also write the certificate and its key to FILE as PKCS#12 (.pfx)",
            },
            JSON,
        ],
        positional: None,
    },
    CommandSpec {
        name: "sign",
        summary: "embed an Authenticode signature by the test certificate in placed (or given) images",
        title: "embed a SHA-256 Authenticode signature by the test certificate",
        usage: &[
            "sign [--release] [-p NAME]... [--arch x64|arm64|all] [--cert-dir DIR | --pfx FILE | --key KEY.pem --cert CERT.pem]",
            "sign [--cert-dir DIR | --pfx FILE | --key KEY.pem --cert CERT.pem] FILE...",
        ],
        about: "\
Signs the placed images target/drivers/<arch>/<profile>/NAME/NAME.sys (build first), or the given
FILEs, in place. An existing signature is replaced. Only images that pass the lint are signed;
anything else is refused and left unchanged. The certificate is created on first use (see cert).
--pfx FILE, or --key and --cert, sign with your own code-signing certificate instead; it must be
valid now and carry the Code Signing extended key usage.",
        options: &[RELEASE_IMAGES, PACKAGE, ARCH, CERT_DIR, PFX, KEY, CERT],
        positional: Some(Positional {
            values: Values::File,
        }),
    },
    CommandSpec {
        name: "package",
        summary: "signed image + INF + signed catalog + certificate, under target/packages/",
        title: "driver packages for Windows: signed image, INF, signed catalog, certificate",
        usage: &[
            "package [--release] [-p NAME]... [--arch x64|arm64|all] [--cert-dir DIR | --pfx FILE | --key KEY.pem --cert CERT.pem] [--submission] [--json]",
        ],
        about: "\
For each driver and architecture, from the placed image (build first) and the driver's NAME.inx,
writes target/packages/<arch>/<profile>/NAME/ with NAME.sys (signed), NAME.inf (stamped: DriverVer
from the date and Cargo.toml's version, the architecture decoration), NAME.cat (the catalog of the
.sys and the .inf, signed), NAME.pdb, the test certificate's .cer and manifest.json (hashes,
versions, signer thumbprint). The .inx is checked first (each problem with its line); a package is
assembled aside and renamed into place, so a failure leaves the previous one intact.
SOURCE_DATE_EPOCH, when set, replaces the current time in DriverVer and the catalog.
--pfx FILE, or --key and --cert, sign with your own certificate (its .cer goes in the package).
--submission also writes, per architecture, target/submission/<arch>/<profile>/drivers.cab: the
CAB Microsoft's attestation signing takes (a folder per driver with its .sys, .inf, .cat and .pdb);
sign it with your EV certificate and upload it (README: Attestation signing).",
        options: &[
            RELEASE,
            PACKAGE,
            ARCH,
            CERT_DIR,
            PFX,
            KEY,
            CERT,
            flag(
                "--submission",
                "also write the attestation-signing CAB of the packages, per architecture",
            ),
            Opt {
                help: "print the manifests as one JSON document",
                ..JSON
            },
        ],
        positional: None,
    },
    CommandSpec {
        name: "emulate",
        summary: "run the x64 drivers in the emulated kernel (speakeasy) and audit their teardown",
        title: "run the x64 drivers in the emulated kernel and audit their teardown",
        usage: &[
            "emulate [NAME]... [--faults] [--diagram] [--bless-diagrams] [--release] [--json]",
        ],
        about: "\
For each driver (default: every driver), builds its x64 image (as `cargo xtask build` does: linted,
placed at target/drivers/x64/<profile>/NAME/NAME.sys), then runs it with the harness
xtask/emu/harness.py in speakeasy: DriverEntry, the driver's scenario.toml, DriverUnload, then the
audit. The report goes to target/emu/NAME/report.json. On first use, creates a Python venv at
target/emu-venv and installs xtask/emu/requirements.lock into it (hash-checked). With --diagram,
each run is also drawn as a Mermaid sequence diagram, target/emu/NAME/diagrams/NN-RUN.mmd (the
paths are printed); --bless-diagrams redraws the diagrams the driver's README embeds.",
        options: &[
            flag(
                "--faults",
                "also one run per fallible kernel call DriverEntry makes, with that call failing",
            ),
            flag(
                "--diagram",
                "also write each run as a Mermaid sequence diagram under target/emu/NAME/diagrams/",
            ),
            flag(
                "--bless-diagrams",
                "run with the fault sweep and redraw the diagrams the drivers' READMEs embed",
            ),
            RELEASE_IMAGES,
            Opt {
                help: "print one JSON document aggregating the reports instead of text",
                ..JSON
            },
            // `-p NAME` is accepted as well as a bare NAME.
            Opt {
                help: "this driver (as NAME; repeatable; default: every driver)",
                ..PACKAGE
            },
        ],
        positional: Some(Positional {
            values: Values::Drivers,
        }),
    },
    CommandSpec {
        name: "deploy",
        summary: "build -> lint -> sign and package -> run on a target (default: the emulator)",
        title: "build -> lint -> sign and package -> run the drivers on a target",
        usage: &[
            "deploy [--target TARGET]... [-p NAME]... [--release] [--arch x64|arm64] [--dry-run] [--json] [VM OPTIONS]",
        ],
        about: DEPLOY_ABOUT,
        options: &[
            Opt {
                long: "--target",
                short: None,
                placeholder: Some("TARGET"),
                values: Values::Choices(&["emu", "ssh://", "hyperv:"]),
                repeat: true,
                default: None,
                help: "emu (default), ssh://user@host[:port] or hyperv:VMNAME (repeatable)",
            },
            PACKAGE,
            RELEASE,
            Opt {
                values: Values::Choices(ARCH_ONE),
                help: "the VM's architecture: x64 (default) or arm64",
                ..ARCH
            },
            flag(
                "--dry-run",
                "print the plan (every script and command line), run nothing",
            ),
            Opt {
                help: "the plan (with --dry-run) or the reports as JSON on stdout",
                ..JSON
            },
            valued(
                "--install",
                "sc|inf",
                Values::Choices(&["sc", "inf"]),
                "create the service with sc.exe (default; the INF's service registry\n\
                 values are written too) or install the INF with pnputil",
            ),
            flag("--keep", "leave the service and the copied files on the VM"),
            flag(
                "--enable-testsigning",
                "if test signing is off: bcdedit /set testsigning on, restart, wait",
            ),
            valued(
                "--snapshot",
                "NAME",
                Values::Text,
                "revert the VM first: Hyper-V checkpoint NAME, or with --libvirt",
            ),
            valued(
                "--libvirt",
                "DOMAIN",
                Values::Text,
                "(ssh targets) the libvirt domain: virsh snapshot-revert DOMAIN NAME",
            ),
            valued(
                "--libvirt-uri",
                "URI",
                Values::Text,
                "the libvirt connection virsh uses (default qemu:///system)",
            ),
            flag(
                "--revert-after-failure",
                "revert to the snapshot again when the plan failed",
            ),
            valued(
                "--remote-dir",
                "DIR",
                Values::Text,
                "the folder on the VM (default C:\\ProgramData\\windows-callback-drivers\\deploy)",
            ),
            Opt {
                repeat: true,
                ..valued(
                    "--ssh-option",
                    "OPT",
                    Values::Text,
                    "passed to ssh and sftp as -o OPT (repeatable)",
                )
            },
            valued(
                "--hyperv-credential",
                "F",
                Values::File,
                "the guest credential saved with Get-Credential | Export-Clixml F\n\
                 (default: hyperv-VMNAME.xml in the certificate folder)",
            ),
            valued(
                "--timeout",
                "SECS",
                Values::Text,
                "the limit of one step (default 120)",
            ),
            valued(
                "--reboot-timeout",
                "SECS",
                Values::Text,
                "how long to wait for the VM after a revert or restart (default 600)",
            ),
            Opt {
                default: Some("standard"),
                ..valued(
                    "--verifier",
                    "FLAGS",
                    Values::Text,
                    "Driver Verifier on for the deployed drivers only: `standard` (also when\n\
                     given alone) or hex flags; its counters per driver, the previous settings\n\
                     restored at the end",
                )
            },
            flag(
                "--fetch-dump",
                "after a bugcheck: copy the newest minidump (or MEMORY.DMP) here",
            ),
            valued(
                "--dump-limit",
                "SIZE",
                Values::Text,
                "the largest MEMORY.DMP --fetch-dump copies (bytes, or K/M/G; default 2G)",
            ),
            valued(
                "--kdnet",
                "HOST:PORT",
                Values::Text,
                "set up network kernel debugging to HOST:PORT (restarts the VM);\n\
                 the report gives the key and the WinDbg command",
            ),
            PFX,
            KEY,
            CERT,
        ],
        positional: None,
    },
    CommandSpec {
        name: "test",
        summary: "everything: toolchain, gate, host tests, both architectures, lint, packages, emulation, fixtures, deploy",
        title: "run every test of the suite",
        usage: &["test [--stage NAME]... [-p NAME]..."],
        about: TEST_ABOUT,
        options: &[
            Opt {
                long: "--stage",
                short: None,
                placeholder: Some("NAME"),
                values: Values::Stages,
                repeat: true,
                default: None,
                help: "this stage only (repeatable; default: every stage)",
            },
            Opt {
                help: "these drivers or fixtures only (repeatable; default: all)",
                ..PACKAGE
            },
        ],
        positional: None,
    },
    CommandSpec {
        name: "bench",
        summary: "clean build time, image sizes, instructions per callback, packaging time, against budgets",
        title: "measure against the budgets",
        usage: &["bench [--json]"],
        about: "\
Measures the clean release build time of the drivers and common for x64 (in target/bench, deleted
first), the size of each release x64 .sys, the instructions each callback executes in the
emulator, and the time signing and packaging every driver for x64 and arm64 takes (budget 2 s).
Budgets come from [package.metadata.driver] size-budget and callback-instruction-budget.
Marks OVER BUDGET; exits non-zero only if a measurement could not be made.",
        options: &[Opt {
            help: "print the measurements as one JSON document",
            ..JSON
        }],
        positional: None,
    },
    CommandSpec {
        name: "new",
        summary: "a new driver copied from a sample, with fresh names, tags, GUIDs and altitude",
        title: "a new driver crate, copied from a sample, with fresh identities",
        usage: &[
            "new NAME --from ex-callback|cm-filter|pnp-notify|wfp-callout|wfp-callout-wdm [--path DIR] [--altitude N] [--dry-run]",
        ],
        about: "\
Copies the sample's crate (sources, NAME.inx, scenario.toml, deploy.toml, README) and its mutations
(xtask/mutations/) with every name Windows keeps one of made fresh, consistently in every file: the
crate, image and log prefix (NAME), the service (NAME in PascalCase), pool tags unused by any
workspace driver, the callback object and demo key, new random WFP GUIDs, and cm-filter's altitude
(--altitude, or the first free one of 385210..385298). Prints what it chose. The lessons, comments
and teardown stay; the new README says what to change first. wfp-callout makes NAME (KMDF) and its
WDM variant NAME-wdm; wfp-callout-wdm makes the WDM build alone.

NAME: lower-case letters, digits and single hyphens, starting with a letter, at most 32 characters,
not a workspace driver's name or folder. Bad input is refused with nothing written.",
        options: &[
            valued(
                "--from",
                "TEMPLATE",
                Values::Choices(TEMPLATES),
                "the sample to copy",
            ),
            valued(
                "--path",
                "DIR",
                Values::Dir,
                "a standalone workspace in DIR (which must not exist): the new driver, common, driver-package and xtask (its fixtures included) and the root files, none of the samples, with a git repository initialised (files added; commit them); its README's two commands, cargo xtask deploy and cargo xtask test, pass there",
            ),
            valued(
                "--altitude",
                "N",
                Values::Text,
                "the registry filter's altitude (cm-filter only); refused if a driver uses it",
            ),
            flag(
                "--dry-run",
                "print the choices and the files, write nothing",
            ),
        ],
        positional: Some(Positional {
            values: Values::Text,
        }),
    },
    CommandSpec {
        name: "clean",
        summary: "remove what xtask placed under target/ (never the test certificate)",
        title: "remove what xtask placed",
        usage: &["clean [--all]"],
        about: "\
Removes target/drivers (placed images), target/packages, target/emu (emulation reports) and the
other scratch folders xtask writes under target/ (with the builds of test's scratch copies), but
not the workspace's own cargo build output. Never touches the test certificate (see cert --help).",
        options: &[flag(
            "--all",
            "also the emulator's Python venv (target/emu-venv); the next emulation makes it again",
        )],
        positional: None,
    },
    CommandSpec {
        name: "completions",
        summary: "print the shell completions of these commands for bash, zsh or fish",
        title: "shell completions for bash, zsh or fish",
        usage: &["completions bash|zsh|fish"],
        about: "\
Prints a completion script for `cargo xtask` (commands, options, their values, and the driver names
of this workspace as they are now). bash: `source <(cargo xtask completions bash)`, or save it in
~/.local/share/bash-completion/completions/cargo; zsh: save it as _cargo_xtask in a folder of
$fpath, or `source <(cargo xtask completions zsh)` after compinit; fish:
`cargo xtask completions fish > ~/.config/fish/completions/cargo.fish`. The script hands any other
`cargo` command to the completion that was there before it.",
        options: &[],
        positional: Some(Positional {
            values: Values::Choices(SHELLS),
        }),
    },
    CommandSpec {
        name: "help",
        summary: "this text, or a command's (same as --help)",
        title: "the list of commands, or one command's help",
        usage: &["help [COMMAND]"],
        about: "",
        options: &[],
        positional: Some(Positional {
            values: Values::Commands,
        }),
    },
];

const DEPLOY_ABOUT: &str = "\
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
that stops answering after a driver started is reported as a probable bugcheck, and once it is
back with the bugcheck code and parameters (--fetch-dump: the dump copied to target/deploy/<vm>/).
--verifier turns Driver Verifier on for the drivers (volatile where Windows allows the flags, else
persistent with a restart), reports each driver's counters and restores the previous settings;
--kdnet sets up network kernel debugging and reports the key and the WinDbg command. Each step runs on
the VM as `powershell -NoProfile -NonInteractive -EncodedCommand <script>`, whatever its default
shell. ssh uses the system's ssh and sftp with BatchMode=yes and StrictHostKeyChecking=yes: your
keys, agent and ~/.ssh/config; never a password. The report is text, or JSON with --json; progress
goes to stderr. See README.md, \"Deploy to a VM\", for the one-time VM setup.
VM OPTIONS are the options below from --install on.";

const TEST_ABOUT: &str = "\
Stages, in order (--stage runs only the named ones, and the builds they need):
    toolchain  the Windows targets, clippy and rustfmt installed where missing; and proven on a
               copy of the toolchain that really lacks them (rustup downloads them)
    gate       cargo fmt --check; clippy with warnings denied (host crates, every driver and
               fixture on x64 and arm64); ruff on the harness; each also on code broken on purpose
    host       cargo test --profile host -p common -p driver-package -p xtask (compiled by
               clippy-driver: the gate's build), and the harness's unit tests (xtask/emu/tests)
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
Ends with a line `N passed, M failed`; exits non-zero if anything failed. The summary is also
written as JSON to target/reports/test.json (docs/reports/test.md).";
