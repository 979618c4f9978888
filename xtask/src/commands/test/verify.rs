//! The checks `cargo xtask test` runs on each driver package: an independent tool, osslsigncode,
//! verifies the signatures; our own reader checks what osslsigncode cannot (the catalog's members
//! and attributes, the INF's flat hash); and tampered copies must fail.
//!
//! osslsigncode (`docs/notes/packaging.md` §5):
//! - `verify -in NAME.sys -CAfile CERT.pem`: the embedded Authenticode signature;
//! - `verify -catalog NAME.cat -in NAME.sys -CAfile CERT.pem`: the image's Authenticode hash is
//!   a member of the catalog, and the catalog's signature chains to the test certificate;
//! - `verify -in NAME.cat -CAfile CERT.pem`: the catalog's signature.
//!
//! It matches catalog members by digest only and cannot read an `.inf`, so the round trip is
//! ours: the catalog parsed back must list exactly the image (Authenticode SHA-256 and SHA-1) and
//! the INF (SHA-256 and SHA-1 of the file) with the attributes meant, and the signature must
//! verify with the test certificate.
//!
//! Negative cases, on copies under `target/sign-check/`: one byte changed in the image's code
//! (both osslsigncode checks must fail), in the catalog's signed content (the catalog check must
//! fail), in the INF (the round trip must fail).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sha2::{Digest, Sha256};
use x509_cert::Certificate;

use crate::base::error::{Context, Error, Result, bail};
use crate::base::files;
use crate::base::layout::{Arch, Profile};
use crate::base::process;
use crate::base::tools;
use crate::image::lint;
use crate::image::read::PeImage;
use driver_package::authenticode;
use driver_package::catalog;
use driver_package::cert;
use driver_package::inf::{self, Expect};
use driver_package::package;

/// Overrides the osslsigncode program.
pub const OSSLSIGNCODE_ENV: &str = "XTASK_OSSLSIGNCODE";

/// One check's verdict.
#[derive(Debug)]
pub struct Check {
    /// Passed.
    pub ok: bool,
    /// What was checked (and, when it failed, why).
    pub what: String,
}

/// The osslsigncode to run: `$XTASK_OSSLSIGNCODE`, or `osslsigncode` from PATH (installed first
/// where it is missing and this machine lets us: see [`tools::ensure`]).
pub fn osslsigncode() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(OSSLSIGNCODE_ENV) {
        return Ok(PathBuf::from(p));
    }
    tools::ensure(
        "osslsigncode",
        "osslsigncode",
        "it verifies the signatures independently; or point XTASK_OSSLSIGNCODE at it",
    )
}

/// `osslsigncode verify` with `args` (option, file); a [`Check`] that passes if osslsigncode
/// accepted (`accept`) or refused (`!accept`), with the tail of its output when it did not.
fn osslsigncode_check(program: &Path, args: &[(&str, &Path)], accept: bool, what: &str) -> Check {
    let mut cmd = Command::new(program);
    cmd.arg("verify");
    for (option, file) in args {
        cmd.arg(option).arg(file);
    }
    let result = cmd.output();
    let ok = matches!(&result, Ok(out) if out.status.success() == accept);
    let why = match &result {
        _ if ok => String::new(),
        Ok(out) => {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let verdict = if accept { "refused" } else { "accepted" };
            format!(
                ": osslsigncode {verdict}:\n{}",
                process::tail(text.trim_end(), 8)
            )
        }
        Err(e) => format!(": running {}: {e}", program.display()),
    };
    Check {
        ok,
        what: format!("{what}{why}"),
    }
}

/// What one package is checked against.
pub struct Subject<'a> {
    /// The driver's name.
    pub name: &'a str,
    /// The architecture.
    pub arch: Arch,
    /// The profile.
    pub profile: Profile,
    /// The package folder.
    pub dir: &'a Path,
    /// The test certificate.
    pub cert: &'a Certificate,
    /// It as PEM, for `-CAfile`.
    pub pem: &'a Path,
    /// Scratch space for tampered copies.
    pub scratch: &'a Path,
}

/// Every check of one package.
pub fn check_package(s: &Subject<'_>, osslsigncode_program: Option<&Path>) -> Vec<Check> {
    let label = format!("{} ({}, {})", s.name, s.arch, s.profile);
    let files = PackageFiles {
        sys: s.dir.join(format!("{}.sys", s.name)),
        cat: s.dir.join(format!("{}.cat", s.name)),
        inf: s.dir.join(format!("{}.inf", s.name)),
    };
    let tampered = tampered_copies(s, &files);
    let mut checks = own_checks(s, &label, &files, tampered.as_ref().ok());

    // osslsigncode, on the package and on the tampered copies.
    let Some(program) = osslsigncode_program else {
        let why = osslsigncode()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        checks.push(Check {
            ok: false,
            what: format!("{label}: osslsigncode checks: {why}"),
        });
        return checks;
    };
    let ca = ("-CAfile", s.pem);
    let (sys, cat) = (files.sys.as_path(), files.cat.as_path());
    let run = |args: &[(&str, &Path)], accept: bool, what: &str| {
        osslsigncode_check(program, args, accept, &format!("{label}: {what}"))
    };
    checks.push(run(
        &[("-in", sys), ca],
        true,
        "osslsigncode verifies the image's signature against the test certificate",
    ));
    checks.push(run(
        &[("-catalog", cat), ("-in", sys), ca],
        true,
        "osslsigncode verifies the image as a member of its signed catalog",
    ));
    checks.push(run(
        &[("-in", cat), ca],
        true,
        "osslsigncode verifies the catalog's signature",
    ));
    match &tampered {
        Ok(t) => {
            checks.push(run(
                &[("-in", &t.sys), ca],
                false,
                "a changed byte in the image fails its signature (osslsigncode)",
            ));
            checks.push(run(
                &[("-catalog", cat), ("-in", &t.sys), ca],
                false,
                "a changed byte in the image is not in the catalog (osslsigncode)",
            ));
            checks.push(run(
                &[("-catalog", &t.cat), ("-in", sys), ca],
                false,
                "a changed byte in the catalog fails its signature (osslsigncode)",
            ));
        }
        Err(e) => checks.push(Check {
            ok: false,
            what: format!("{label}: making tampered copies: {e}"),
        }),
    }
    checks
}

/// Our own checks: the round trip, the lint of the signed image, the INF changed by one byte.
fn own_checks(
    s: &Subject<'_>,
    label: &str,
    files: &PackageFiles,
    tampered: Option<&Tampered>,
) -> Vec<Check> {
    let mut checks = Vec::new();
    let own = round_trip(s, files);
    checks.push(Check {
        ok: own.is_ok(),
        what: format!(
            "{label}: round trip: the catalog's members and attributes, the INF and image hashes, \
             the signatures{}",
            err_suffix(own.as_ref().err())
        ),
    });
    let lint = std::fs::read(&files.sys)
        .map(|b| lint::lint_image(&b, &lint::LintOptions::for_machine(s.arch.machine())));
    checks.push(Check {
        ok: matches!(&lint, Ok(v) if v.is_empty()),
        what: format!(
            "{label}: the signed image passes the lint{}",
            match &lint {
                Ok(v) if !v.is_empty() => format!(": {}", v[0]),
                Err(e) => format!(": {e}"),
                _ => String::new(),
            }
        ),
    });
    if let Some(t) = tampered {
        let check = round_trip(
            s,
            &PackageFiles {
                inf: t.inf.clone(),
                ..files.clone()
            },
        );
        let caught = check.as_ref().is_err_and(|e| e.to_string().contains("INF"));
        checks.push(Check {
            ok: caught,
            what: format!(
                "{label}: a changed byte in the INF fails the round trip (its hash in the catalog){}",
                match &check {
                    Ok(()) => ": it passed".to_owned(),
                    Err(e) if !caught => format!(": {e}"),
                    Err(_) => String::new(),
                }
            ),
        });
    }
    checks
}

/// The files of a package that are checked (or tampered copies of them).
#[derive(Clone)]
struct PackageFiles {
    sys: PathBuf,
    cat: PathBuf,
    inf: PathBuf,
}

fn err_suffix(e: Option<&Error>) -> String {
    e.map(|e| format!(": {e}")).unwrap_or_default()
}

/// The catalog read back and compared with what the package's files say it must list; the
/// embedded signature and the manifest checked too.
fn round_trip(s: &Subject<'_>, files: &PackageFiles) -> Result<()> {
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let (sys_path, cat_path) = (files.sys.as_path(), files.cat.as_path());
    let (sys, inf_bytes, cat) = (read(sys_path)?, read(&files.inf)?, read(cat_path)?);
    authenticode::verify_image(&sys, s.cert).context("the image's embedded signature")?;
    let got = catalog::read(&cat, Some(s.cert)).context("the catalog")?;
    let (text, _) = inf::decode(&inf_bytes).map_err(|p| Error::new(format!("the INF: {p}")))?;
    let problems = inf::check(
        &text,
        &Expect {
            name: s.name,
            arch: s.arch,
            stamped: true,
        },
    );
    if let Some(p) = problems.first() {
        bail!("the INF: {p}");
    }
    let want_inf = Sha256::digest(&inf_bytes).to_vec();
    if got
        .member(&format!("{}.inf", s.name))
        .map(|m| &m.identifier)
        != Some(&want_inf)
    {
        bail!(
            "the INF's SHA-256 is not the one its catalog lists: the INF was changed after packaging"
        );
    }
    let spec = catalog::Spec {
        members: package::catalog_members(s.name, &sys, &inf_bytes)?,
        os: catalog::os_attribute(s.arch).to_owned(),
        list_id: got.list_id.clone().try_into().unwrap_or([0; 16]),
        this_update: std::time::SystemTime::UNIX_EPOCH,
    };
    let diff = catalog::differences(&got, &catalog::expected(&spec));
    if !diff.is_empty() {
        bail!(
            "the catalog differs from what was meant: {}",
            diff.join("; ")
        );
    }
    // The manifest names the same files and hashes.
    let manifest: Value = serde_json::from_slice(&read(&s.dir.join(package::MANIFEST))?)
        .context("reading the manifest")?;
    for (file, bytes) in [(sys_path, &sys), (cat_path, &cat)] {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if manifest["files"][&name]["sha256"] != cert::hex(&Sha256::digest(bytes)) {
            bail!("the manifest's hash of {name} is not the file's");
        }
    }
    if manifest["signer"]["thumbprint_sha1"] != cert::describe(s.cert)?.thumbprint_sha1 {
        bail!("the manifest's signer is not the test certificate");
    }
    Ok(())
}

struct Tampered {
    sys: PathBuf,
    cat: PathBuf,
    inf: PathBuf,
}

/// Copies of the package's image, catalog and INF with one byte changed each.
fn tampered_copies(s: &Subject<'_>, files: &PackageFiles) -> Result<Tampered> {
    let (sys, cat, inf_path) = (&files.sys, &files.cat, &files.inf);
    let dir = s.scratch;
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));

    // The image: a byte in the middle of the first section's data (code), checksum untouched.
    let mut image = read(sys)?;
    let at = {
        let pe = PeImage::parse(&image).map_err(|e| Error::new(e.to_string()))?;
        let first = pe
            .sections
            .iter()
            .find(|x| x.size_of_raw_data > 0)
            .ok_or_else(|| Error::new("the image has no section data"))?;
        first.pointer_to_raw_data as usize + first.size_of_raw_data as usize / 2
    };
    image[at] ^= 0x01;

    // The catalog: a byte of the INF member's hash (inside the signed content); the image's hash
    // stays listed, so only the signature can catch it.
    let mut catalog_bytes = read(cat)?;
    let inf_bytes = read(inf_path)?;
    let inf_hash = Sha256::digest(&inf_bytes);
    let at = catalog_bytes
        .windows(inf_hash.len())
        .position(|w| w == inf_hash.as_slice())
        .ok_or_else(|| Error::new("the INF's hash is not in the catalog"))?;
    catalog_bytes[at + 5] ^= 0x01;

    // The INF: a byte of a value (the provider string's first letter).
    let mut inf_changed = inf_bytes;
    let at = inf_changed
        .windows(b"Provider".len())
        .position(|w| w == b"Provider")
        .unwrap_or(0);
    inf_changed[at] ^= 0x20;

    let t = Tampered {
        sys: dir.join(format!("{}.sys", s.name)),
        cat: dir.join(format!("{}.cat", s.name)),
        inf: dir.join(format!("{}.inf", s.name)),
    };
    files::write_atomic(&t.sys, &image)?;
    files::write_atomic(&t.cat, &catalog_bytes)?;
    files::write_atomic(&t.inf, &inf_changed)?;
    Ok(t)
}
