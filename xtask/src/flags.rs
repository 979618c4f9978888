//! The command line, declared once: the table in `flags/table.rs` lists every command, its usage
//! forms, its prose and its options (with what their values may be). From that one table come
//! the parser (`flags/parse.rs`), `--help` (`flags/help.rs`), the README's `## Commands` synopsis
//! (a test holds the README to it) and the shell completions (`flags/complete.rs`).
//!
//! Why a table and not the `xflags` crate: xflags is light (its proc macro needs no syn), but it
//! writes its own help from doc comments, exposes no description of the grammar from which
//! completions could be written (they would be a second definition), and has its own error
//! messages. A data table gives all four views from one definition at no compile cost.
//!
//! This module turns a parsed line into the `Options` of a command (`crate::commands::*`); the
//! commands and the libraries never see the command line.

#[cfg(test)]
mod cargo_make;
mod complete;
mod help;
mod parse;
mod table;

use crate::base::error::{Error, Result, bail};
use crate::base::layout::{Arch, Profile};
use crate::commands::cert::Options as CertArgs;
use crate::commands::deploy::Options as DeployArgs;
use crate::commands::package::Options as PackageArgs;
use crate::commands::sign::{Options as SignArgs, OwnCert};
use crate::commands::{bench, build, clean, completions, emulate, lint, new, test};
use crate::deploy::{Install, Target};

use complete::{Shell, script as completion_script};
use parse::Matches;
use table::COMMANDS;

/// What `cargo xtask ...` asked for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Command {
    /// Print this help text and exit successfully.
    Help(String),
    /// `build`
    Build(build::Options),
    /// `lint`
    Lint(lint::Options),
    /// `emulate`
    Emulate(emulate::Options),
    /// `cert`
    Cert(CertArgs),
    /// `sign`
    Sign(SignArgs),
    /// `package`
    Package(PackageArgs),
    /// `deploy`
    Deploy(DeployArgs),
    /// `test`
    Test(test::Options),
    /// `clean`
    Clean(clean::Options),
    /// `bench`
    Bench(bench::Options),
    /// `completions`
    Completions(completions::Options),
    /// `new`
    New(new::Options),
}

/// Parses the arguments after `cargo xtask`.
pub(crate) fn parse(args: impl IntoIterator<Item = String>) -> Result<Command> {
    let mut args: Vec<String> = args.into_iter().collect();
    if args.is_empty() {
        return Ok(Command::Help(help::overview()));
    }
    let name = args.remove(0);
    if matches!(name.as_str(), "-h" | "--help") {
        return Ok(Command::Help(help::overview()));
    }
    let spec = table::command(&name).ok_or_else(|| unknown_command(&name))?;
    // `--help` wins over anything else on the line.
    if parse::wants_help(&args) {
        return Ok(Command::Help(help::command(spec)));
    }
    let m = parse::parse(spec, args)?;
    Ok(match spec.name {
        "help" => Command::Help(match m.positional.as_slice() {
            [] => help::overview(),
            [c] => help::command(table::command(c).ok_or_else(|| unknown_command(c))?),
            [_, extra, ..] => bail!("unexpected argument `{extra}` (see --help)"),
        }),
        "build" => Command::Build(build::Options {
            packages: m.values("--package"),
            arches: arches(&m)?,
            profile: profile(&m),
        }),
        "lint" => Command::Lint(to_lint(m)?),
        "emulate" => {
            let mut drivers = m.values("--package");
            drivers.extend(m.positional.iter().cloned());
            Command::Emulate(emulate::Options {
                drivers,
                json: m.flag("--json"),
                faults: m.flag("--faults"),
                diagram: m.flag("--diagram"),
                bless_diagrams: m.flag("--bless-diagrams"),
                profile: profile(&m),
            })
        }
        "cert" => Command::Cert(to_cert(&m)?),
        "sign" => Command::Sign(to_sign(m)?),
        "package" => Command::Package(PackageArgs {
            packages: m.values("--package"),
            arches: arches(&m)?,
            profile: profile(&m),
            cert_dir: m.value("--cert-dir").map(Into::into),
            own: own_cert(&m, true)?,
            submission: m.flag("--submission"),
            json: m.flag("--json"),
        }),
        "deploy" => Command::Deploy(to_deploy(&m)?),
        "test" => Command::Test(test::Options {
            stages: m.values("--stage"),
            packages: m.values("--package"),
        }),
        "clean" => Command::Clean(clean::Options {
            all: m.flag("--all"),
        }),
        "bench" => Command::Bench(bench::Options {
            json: m.flag("--json"),
        }),
        "completions" => Command::Completions(completions::Options {
            script: completion_script,
            shell: match m.positional.as_slice() {
                [one] => Shell::parse(one).ok_or_else(|| {
                    Error::new(format!(
                        "completions: no completions for `{one}`: give bash, zsh or fish"
                    ))
                })?,
                [] => bail!("completions: name the shell: bash, zsh or fish"),
                [_, extra, ..] => bail!("unexpected argument `{extra}` (see --help)"),
            },
        }),
        "new" => Command::New(new::Options {
            name: match m.positional.as_slice() {
                [one] => one.clone(),
                _ => bail!(
                    "new: give exactly one NAME (e.g. cargo xtask new my-filter --from cm-filter)"
                ),
            },
            from: m.value("--from").ok_or_else(|| {
                Error::new(
                    "new: --from TEMPLATE is required \
                     (ex-callback|cm-filter|pnp-notify|wfp-callout|wfp-callout-wdm)"
                        .to_owned(),
                )
            })?,
            path: m.value("--path").map(Into::into),
            altitude: m.value("--altitude"),
            dry_run: m.flag("--dry-run"),
        }),
        other => unreachable!("`{other}` is in the table but has no Options"),
    })
}

fn profile(m: &Matches) -> Profile {
    Profile::from_release_flag(m.flag("--release"))
}

fn arches(m: &Matches) -> Result<Vec<Arch>> {
    match m.value("--arch") {
        Some(v) => Ok(Arch::parse_selection(&v)?),
        None => Ok(vec![Arch::X64]),
    }
}

fn to_lint(m: Matches) -> Result<lint::Options> {
    let packages = m.values("--package");
    let arches = arches(&m)?;
    if !m.positional.is_empty() {
        if !packages.is_empty() {
            bail!("lint: give either files or -p NAME, not both");
        }
        if arches.len() > 1 {
            bail!(
                "lint: explicit files are checked for one machine: use --arch x64 or --arch arm64"
            );
        }
    }
    Ok(lint::Options {
        packages,
        arches,
        profile: profile(&m),
        json: m.flag("--json"),
        files: m.positional.into_iter().map(Into::into).collect(),
    })
}

fn to_cert(m: &Matches) -> Result<CertArgs> {
    let new = m.flag("--new");
    if new && m.flag("--show") {
        bail!("cert: give --show or --new, not both");
    }
    Ok(CertArgs {
        new,
        json: m.flag("--json"),
        cert_dir: m.value("--cert-dir").map(Into::into),
        export_pfx: m.value("--export-pfx").map(Into::into),
    })
}

fn to_sign(m: Matches) -> Result<SignArgs> {
    let packages = m.values("--package");
    if !m.positional.is_empty() && !packages.is_empty() {
        bail!("sign: give either files or -p NAME, not both");
    }
    Ok(SignArgs {
        packages,
        arches: arches(&m)?,
        profile: profile(&m),
        cert_dir: m.value("--cert-dir").map(Into::into),
        own: own_cert(&m, true)?,
        files: m.positional.into_iter().map(Into::into).collect(),
    })
}

/// `--pfx FILE`, or `--key KEY.pem --cert CERT.pem` (both), instead of the test certificate.
fn own_cert(m: &Matches, has_cert_dir: bool) -> Result<Option<OwnCert>> {
    let (pfx, key, cert) = (m.value("--pfx"), m.value("--key"), m.value("--cert"));
    if (pfx.is_some() || key.is_some() || cert.is_some())
        && has_cert_dir
        && m.value("--cert-dir").is_some()
    {
        bail!(
            "--cert-dir is the test certificate's folder: give it, or your own certificate \
             (--pfx, or --key and --cert), not both"
        );
    }
    Ok(match (pfx, key, cert) {
        (None, None, None) => None,
        (Some(pfx), None, None) => Some(OwnCert::Pfx(pfx.into())),
        (None, Some(key), Some(cert)) => Some(OwnCert::Pem {
            key: key.into(),
            cert: cert.into(),
        }),
        (Some(_), _, _) => bail!(
            "--pfx holds the key and the certificate: give --pfx FILE or --key and --cert, not both"
        ),
        (None, Some(_), None) => {
            bail!("--key needs --cert CERT.pem, the certificate of the key")
        }
        (None, None, Some(_)) => {
            bail!("--cert needs --key KEY.pem, the private key of the certificate")
        }
    })
}

fn seconds(m: &Matches, name: &str, default: u64) -> Result<u64> {
    match m.value(name) {
        None => Ok(default),
        Some(v) => match v.parse::<u64>() {
            Ok(s) if s > 0 => Ok(s),
            _ => bail!("{name} takes a number of seconds, not `{v}`"),
        },
    }
}

/// `--dump-limit`: bytes, or a number with K, M or G (binary multiples).
fn size(v: &str) -> Result<u64> {
    let t = v.trim();
    let (num, mul) = match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&t[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&t[..i], 1 << 30),
        _ => (t, 1),
    };
    match num.parse::<u64>().ok().and_then(|n| n.checked_mul(mul)) {
        Some(n) if n > 0 => Ok(n),
        _ => bail!("--dump-limit takes a size in bytes, or with K, M or G (like 4G), not `{v}`"),
    }
}

fn to_deploy(m: &Matches) -> Result<DeployArgs> {
    let mut targets = m
        .values("--target")
        .iter()
        .map(|t| t.parse())
        .collect::<Result<Vec<Target>>>()?;
    if targets.is_empty() {
        targets.push(Target::Emu);
    }
    let arch = match m.value("--arch") {
        None => Arch::X64,
        Some(v) => match Arch::parse_selection(&v)?.as_slice() {
            [one] => *one,
            _ => bail!("deploy: --arch is the VM's architecture: x64 or arm64"),
        },
    };
    let install = match m.value("--install").as_deref() {
        None | Some("sc") => Install::Sc,
        Some("inf") => Install::Inf,
        Some(other) => bail!("--install takes sc or inf, not `{other}`"),
    };
    let vm = targets.iter().any(|t| *t != Target::Emu);
    if !vm && arch != Arch::X64 {
        bail!("deploy: the emulated kernel runs x64 images only; --arch is for VM targets");
    }
    for vm_only in ["--verifier", "--fetch-dump", "--dump-limit", "--kdnet"] {
        if !vm && m.flag(vm_only) {
            bail!(
                "deploy: {vm_only} is for VM targets (--target ssh://... or hyperv:...); the \
                 emulated kernel has its own Verifier-like checks (see `cargo xtask emulate`)"
            );
        }
    }
    Ok(DeployArgs {
        targets,
        packages: m.values("--package"),
        profile: profile(m),
        arch,
        dry_run: m.flag("--dry-run"),
        json: m.flag("--json"),
        install,
        keep: m.flag("--keep"),
        enable_testsigning: m.flag("--enable-testsigning"),
        snapshot: m.value("--snapshot"),
        libvirt: m.value("--libvirt"),
        libvirt_uri: m.value("--libvirt-uri"),
        revert_after_failure: m.flag("--revert-after-failure"),
        remote_dir: m.value("--remote-dir"),
        ssh_options: m.values("--ssh-option"),
        hyperv_credential: m.value("--hyperv-credential").map(Into::into),
        timeout_s: seconds(m, "--timeout", 120)?,
        reboot_timeout_s: seconds(m, "--reboot-timeout", 600)?,
        verifier: m
            .value("--verifier")
            .map(|v| crate::deploy::verifier::Flags::parse(&v))
            .transpose()?,
        fetch_dump: m.flag("--fetch-dump"),
        dump_limit: m
            .value("--dump-limit")
            .map_or(Ok(crate::deploy::plan::DUMP_LIMIT), |v| size(&v))?,
        kdnet: m
            .value("--kdnet")
            .map(|v| crate::deploy::kdnet::Kdnet::parse(&v))
            .transpose()?,
        own: own_cert(m, false)?,
    })
}

fn unknown_command(c: &str) -> Error {
    let names: Vec<&str> = COMMANDS.iter().map(|d| d.name).collect();
    Error::new(format!(
        "unknown command `{c}`: the commands are {} (cargo xtask --help)",
        names.join(", ")
    ))
}

#[cfg(test)]
mod tests;
