//! The `package` stage's checks of issue #17's signing options, each by an independent tool:
//!
//! - **Your own certificate**: a package (the placed image and its catalog) signed with the key
//!   and the CA-issued certificate of a PFX made by OpenSSL (`driver-package/testdata/pfx/chain.pfx`,
//!   root → intermediate → signer; not made by us) must be accepted by `osslsigncode verify`
//!   trusting the root only (image, image as a catalog member, catalog): the intermediate must be
//!   in the signatures. The image must be refused against the test certificate.
//! - **`cert --export-pfx`**: the PFX we write for the test certificate must be opened by the
//!   `openssl pkcs12` command with its password and give back the certificate; a wrong password
//!   must be refused by it.
//! - **`package --submission`**: the CAB of the packages just made must be listed by
//!   `cabextract` (Debian's, installed by [`tools::ensure`]) with every driver's `.sys`, `.inf`,
//!   `.cat` and `.pdb` in the driver's folder and must pass its test (`cabextract -t`, the data
//!   checksums); a copy with one byte changed in the compressed data must fail it.

use std::path::{Path, PathBuf};
use std::process::Command;

use driver_package::pkcs7::Signer;

use super::summary::Tally;
use crate::base::error::{Context, Error, Result};
use crate::base::files;
use crate::base::layout::{Arch, Profile};
use crate::base::process;
use crate::base::tools;
use crate::base::workspace::Workspace;
use crate::commands::package::submission;
use crate::commands::sign;

/// The password of the OpenSSL-made test PFX files (driver-package/testdata/pfx/README.md).
const TESTDATA_PASSWORD: &str = "Secret-1";

fn testdata(ws: &Workspace, name: &str) -> PathBuf {
    ws.root.join("driver-package/testdata/pfx").join(name)
}

/// Runs `program args`; `Ok(output)` when it ran (whatever its exit code).
fn run(program: &Path, args: &[&std::ffi::OsStr]) -> Result<std::process::Output> {
    Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {}", program.display()))
}

fn said(out: &std::process::Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    process::tail(text.trim_end(), 6)
}

/// osslsigncode accepts a package (image and catalog) signed with a user certificate from a PFX,
/// against that certificate only. `driver` has a placed debug image of `arch` and its test
/// package at `package`.
pub(super) fn user_certificate(
    ws: &Workspace,
    (driver, package): (&str, &Path),
    arch: Arch,
    osslsigncode: &Path,
    test_pem: &Path,
    scratch: &Path,
    t: &mut Tally,
) {
    let what = "a package signed with your own CA-issued certificate (an OpenSSL-made PFX) verifies from its root: image, catalog member, catalog";
    let result = (|| -> Result<()> {
        let signer = driver_package::own::from_pfx(
            &testdata(ws, "chain.pfx"),
            TESTDATA_PASSWORD,
            std::time::SystemTime::now(),
        )?;
        let image = ws.layout.placed_sys(driver, arch, Profile::Debug);
        let bytes =
            std::fs::read(&image).with_context(|| format!("reading {}", image.display()))?;
        let image_signed = sign::sign_driver_image(&bytes, arch, &signer)?;
        // The whole package with that signer: the catalog of the image and the test package's INF.
        let inf_path = package.join(format!("{driver}.inf"));
        let inf =
            std::fs::read(&inf_path).with_context(|| format!("reading {}", inf_path.display()))?;
        let made = driver_package::package::assemble(
            &driver_package::package::Input {
                name: driver,
                version: "0.0.0",
                arch,
                profile: Profile::Debug.dir(),
                sys: &image_signed,
                inf: &inf,
                pdb: None,
                time: driver_package::package::build_time()?,
            },
            &signer,
        )?;
        let dir = scratch.join("own-certificate").join(driver);
        driver_package::package::write(&made, &dir)?;
        let sys = dir.join(format!("{driver}.sys"));
        let cat = dir.join(format!("{driver}.cat"));
        let verify = |ca: &Path, catalog: Option<&Path>, file: &Path| {
            let mut all: Vec<&std::ffi::OsStr> =
                vec!["verify".as_ref(), "-CAfile".as_ref(), ca.as_os_str()];
            if let Some(c) = catalog {
                all.extend(["-catalog".as_ref(), c.as_os_str()]);
            }
            all.extend(["-in".as_ref(), file.as_os_str()]);
            run(osslsigncode, &all)
        };
        // Only the root is trusted: the intermediate must come from the signatures themselves.
        let theirs = testdata(ws, "root.pem");
        for (what, catalog, file) in [
            ("the image", None, sys.as_path()),
            (
                "the image as a catalog member",
                Some(cat.as_path()),
                sys.as_path(),
            ),
            ("the catalog", None, cat.as_path()),
        ] {
            let ok = verify(&theirs, catalog, file)?;
            if !ok.status.success() {
                return Err(Error::new(format!(
                    "osslsigncode refused {what}:\n{}",
                    said(&ok)
                )));
            }
        }
        if verify(test_pem, None, &sys)?.status.success() {
            return Err(Error::new(
                "osslsigncode accepted the image against the test certificate, which did not sign it",
            ));
        }
        Ok(())
    })();
    record(t, what, result);
}

/// `openssl pkcs12` opens the PFX we export, and refuses a wrong password.
pub(super) fn exported_pfx(signer: &Signer, scratch: &Path, t: &mut Tally) {
    let what =
        "the PFX of cert --export-pfx opens with openssl pkcs12 (and not with a wrong password)";
    let result = (|| -> Result<()> {
        let openssl = tools::ensure(
            "openssl",
            "openssl",
            "it reads the exported PFX independently",
        )?;
        let pfx = scratch.join("exported.pfx");
        driver_package::files::write_atomic_private(
            &pfx,
            &driver_package::pfx::write(signer, "Pa55-wörd")?,
        )?;
        let open = |password: &str| {
            run(
                &openssl,
                &[
                    "pkcs12".as_ref(),
                    "-in".as_ref(),
                    pfx.as_os_str(),
                    "-nokeys".as_ref(),
                    "-clcerts".as_ref(),
                    "-passin".as_ref(),
                    format!("pass:{password}").as_ref(),
                ],
            )
        };
        let out = open("Pa55-wörd")?;
        let pem = driver_package::cert::to_pem(&signer.cert)?;
        let body = |s: &str| -> String {
            s.lines()
                .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        if !out.status.success()
            || body(&String::from_utf8_lossy(&out.stdout)) != body(&pem).trim_end()
        {
            return Err(Error::new(format!(
                "openssl did not give back the certificate:\n{}",
                said(&out)
            )));
        }
        if open("wrong")?.status.success() {
            return Err(Error::new("openssl opened it with a wrong password"));
        }
        Ok(())
    })();
    record(t, what, result);
}

/// The submission CAB of `packages` (all of `arch`, `profile`), read by cabextract.
pub(super) fn submission_cab(
    ws: &Workspace,
    packages: &[(String, PathBuf)],
    arch: Arch,
    profile: Profile,
    scratch: &Path,
    t: &mut Tally,
) {
    let what = format!(
        "submission CAB ({arch}, {profile}): cabextract lists every driver's .sys, .inf, .cat, .pdb \
         and a changed byte fails its test"
    );
    let result = (|| -> Result<()> {
        let cabextract = tools::ensure(
            "cabextract",
            "cabextract",
            "it reads the submission CABs independently",
        )?;
        let time = driver_package::package::build_time()?;
        let entry = submission::write_cab(ws, packages, arch, profile, time)?;
        let list = run(&cabextract, &["-l".as_ref(), entry.cab.as_os_str()])?;
        let listing = String::from_utf8_lossy(&list.stdout);
        for (driver, _) in packages {
            for ext in driver_package::submission::EXTENSIONS {
                // cabextract shows the CAB's `\` as `/`.
                let name = format!("{driver}/{driver}.{ext}");
                if !listing
                    .lines()
                    .any(|l| l.trim_end().ends_with(&format!("| {name}")))
                {
                    return Err(Error::new(format!(
                        "cabextract -l does not list {name}:\n{}",
                        said(&list)
                    )));
                }
            }
        }
        let test = run(&cabextract, &["-t".as_ref(), entry.cab.as_os_str()])?;
        if !list.status.success() || !test.status.success() {
            return Err(Error::new(format!(
                "cabextract refused it:\n{}",
                said(&test)
            )));
        }
        let mut broken = std::fs::read(&entry.cab)
            .with_context(|| format!("reading {}", entry.cab.display()))?;
        let middle = broken.len() / 2;
        broken[middle] ^= 0xFF;
        let copy = scratch.join(format!("broken-{arch}-{profile}.cab"));
        files::write_atomic(&copy, &broken)?;
        let refused = run(&cabextract, &["-t".as_ref(), copy.as_os_str()])?;
        if refused.status.success() {
            return Err(Error::new(format!(
                "cabextract -t accepted a copy with a changed byte ({}):\n{}",
                copy.display(),
                said(&refused)
            )));
        }
        Ok(())
    })();
    record(t, &what, result);
}

fn record(t: &mut Tally, what: &str, result: Result<()>) {
    match result {
        Ok(()) => {
            println!("  ✓ {what}");
            t.record(true, what);
        }
        Err(e) => t.record(false, format!("{what}: {e}")),
    }
}
