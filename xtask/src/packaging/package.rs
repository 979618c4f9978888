//! `cargo xtask package`: a driver package per driver and architecture, what Windows installs:
//!
//! ```text
//! target/packages/<arch>/<profile>/NAME/
//!     NAME.sys                    the placed image, with an embedded Authenticode signature
//!     NAME.inf                    NAME.inx stamped for the architecture (inf.rs)
//!     NAME.cat                    the signed catalog of NAME.sys and NAME.inf (catalog.rs)
//!     NAME.pdb                    the symbols, when the linker wrote them
//!     callback-drivers-test.cer   the test certificate (never its key)
//!     manifest.json               what is in the package: hashes, versions, signer
//! ```
//!
//! Inputs are checked before anything is written: the `.inx` (encoding, syntax, the
//! primitive-driver form, each problem with its line) and the placed image (it must pass the
//! lint). The package is assembled in a staging folder beside its destination and renamed into
//! place whole ([`files::replace_dir`]): a failure leaves the previous package as it was.
//!
//! The date in `DriverVer` and the catalog's thisUpdate are the current UTC time, or
//! `$SOURCE_DATE_EPOCH` when set (reproducible packages).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::base::error::{Context, Error, Result, bail};
use crate::base::files;
use crate::base::layout::{Arch, Profile, display_path};
use crate::base::process::elapsed;
use crate::base::workspace::{Driver, Workspace};
use crate::cli::PackageArgs;
use crate::packaging::authenticode;
use crate::packaging::catalog::{self, Kind, Member};
use crate::packaging::cert;
use crate::packaging::inf::{self, Expect};
use crate::packaging::pkcs7::Signer;
use crate::packaging::sign;

/// The manifest's file name in a package.
pub const MANIFEST: &str = "manifest.json";

/// One package made (or not).
#[derive(Debug)]
pub struct Packaged {
    /// The driver.
    pub driver: String,
    /// The architecture.
    pub arch: Arch,
    /// The profile.
    pub profile: Profile,
    /// The package folder and its manifest, or why there is none.
    pub result: Result<(PathBuf, Value)>,
}

/// `$SOURCE_DATE_EPOCH`, when set: packages are then reproducible.
fn source_date_epoch() -> Result<Option<u64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().map(Some).map_err(|_| {
            Error::new(format!(
                "SOURCE_DATE_EPOCH=`{v}` is not a number of seconds since 1970"
            ))
        }),
        _ => Ok(None),
    }
}

/// The time stamped into INFs and catalogs: `$SOURCE_DATE_EPOCH`, or now.
pub fn build_time() -> Result<SystemTime> {
    Ok(match source_date_epoch()? {
        Some(secs) => SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
        None => SystemTime::now(),
    })
}

/// The `package` command.
pub fn run(ws: &Workspace, args: &PackageArgs) -> Result<()> {
    let drivers = ws.select(&args.packages)?;
    let signer = sign::signer(args.cert_dir.as_deref())?;
    let made = package(ws, &drivers, &args.arches, args.profile, &signer)?;
    let failed = made.iter().filter(|p| p.result.is_err()).count();
    if args.json {
        let doc: Vec<Value> = made
            .iter()
            .map(|p| match &p.result {
                Ok((dir, manifest)) => json!({"driver": p.driver, "arch": p.arch.name(),
                    "profile": p.profile.dir(), "package": dir, "manifest": manifest}),
                Err(e) => json!({"driver": p.driver, "arch": p.arch.name(),
                    "profile": p.profile.dir(), "error": e.to_string()}),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    }
    if failed > 0 {
        bail!(
            "package: {failed} of {} package(s) failed (see above); previous packages were left as they were",
            made.len()
        );
    }
    Ok(())
}

/// Packages each of `drivers` for each of `arches`. An `Err` means nothing could be tried; one
/// package failing is reported in its [`Packaged`].
pub fn package(
    ws: &Workspace,
    drivers: &[&Driver],
    arches: &[Arch],
    profile: Profile,
    signer: &Signer,
) -> Result<Vec<Packaged>> {
    if drivers.is_empty() {
        bail!("no drivers to package");
    }
    let time = build_time()?;
    let mut made = Vec::new();
    for &arch in arches {
        for d in drivers {
            let start = Instant::now();
            let result = package_one(ws, d, arch, profile, signer, time);
            match &result {
                Ok((dir, _)) => eprintln!(
                    "  packaged {} ({arch}, {profile}) at {} ({})",
                    d.name,
                    display_path(dir, &ws.root),
                    elapsed(start.elapsed())
                ),
                Err(e) => eprintln!("  {} ({arch}, {profile}): package FAILED: {e}", d.name),
            }
            made.push(Packaged {
                driver: d.name.clone(),
                arch,
                profile,
                result,
            });
        }
    }
    Ok(made)
}

/// The INF of `driver` for `arch`: its `.inx` checked, stamped, and the result checked again.
pub fn make_inf(driver: &Driver, arch: Arch, time: SystemTime) -> Result<Vec<u8>> {
    let inx = driver.inx();
    let shown = inx.display();
    if !inx.is_file() {
        bail!(
            "{}: no INF template at {shown}: every driver package is made from one; copy \
             ex-callback/ex-callback.inx to {shown} and adapt it (its header says how)",
            driver.name
        );
    }
    let bytes = std::fs::read(&inx).with_context(|| format!("reading {shown}"))?;
    let at = |p: &inf::Problem| format!("{shown}:{}: {}", p.line, p.message);
    let (text, encoding) = inf::decode(&bytes).map_err(|p| Error::new(at(&p)))?;
    let expect = Expect {
        name: &driver.name,
        arch,
        stamped: false,
    };
    let problems = inf::check(&text, &expect);
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(|p| format!("  {}", at(p))).collect();
        bail!(
            "{} problem(s) in the INF template:\n{}",
            problems.len(),
            list.join("\n")
        );
    }
    let date = der::DateTime::from_system_time(time).context("the build date")?;
    let driver_ver = inf::driver_ver(date.year(), date.month(), date.day(), &driver.version)
        .map_err(|e| Error::new(format!("{}: {e}", driver.name)))?;
    let stamped = inf::stamp(&text, arch, &driver_ver);
    let problems = inf::check(
        &stamped,
        &Expect {
            stamped: true,
            ..expect
        },
    );
    if let Some(p) = problems.first() {
        bail!(
            "the stamped INF of {} is wrong (an xtask bug): {p}",
            driver.name
        );
    }
    Ok(inf::encode(&stamped, encoding))
}

fn hex_sha256(bytes: &[u8]) -> String {
    cert::hex(&Sha256::digest(bytes))
}

/// Makes one package; returns its folder and manifest.
fn package_one(
    ws: &Workspace,
    driver: &Driver,
    arch: Arch,
    profile: Profile,
    signer: &Signer,
    time: SystemTime,
) -> Result<(PathBuf, Value)> {
    let name = &driver.name;
    let inf_bytes = make_inf(driver, arch, time)?;
    let placed = ws.layout.placed_sys(name, arch, profile);
    if !placed.is_file() {
        let release = if profile == Profile::Release {
            " --release"
        } else {
            ""
        };
        bail!(
            "no built image at {}: build it first: cargo xtask build -p {name} --arch {arch}{release}",
            display_path(&placed, &ws.root)
        );
    }
    let image = std::fs::read(&placed).with_context(|| format!("reading {}", placed.display()))?;
    let sys = sign::sign_driver_image(&image, arch, signer)
        .map_err(|e| Error::new(format!("{}: {e}", display_path(&placed, &ws.root))))?;
    let members = catalog_members(name, &sys, &inf_bytes)?;
    let spec = catalog::Spec {
        list_id: list_id(&members)?,
        members,
        os: catalog::os_attribute(arch).to_owned(),
        this_update: time,
    };
    let cat = catalog::build(&spec, signer)?;
    let cer = der::Encode::to_der(&signer.cert).context("encoding the certificate")?;
    let pdb = std::fs::read(ws.layout.placed_pdb(name, arch, profile)).ok();

    let mut contents: Vec<(String, &[u8])> = vec![
        (format!("{name}.sys"), &sys),
        (format!("{name}.inf"), &inf_bytes),
        (format!("{name}.cat"), &cat),
        (cert::CERT_FILE.to_owned(), &cer),
    ];
    if let Some(pdb) = &pdb {
        contents.push((format!("{name}.pdb"), pdb));
    }
    let manifest = manifest(driver, arch, profile, signer, &spec, &inf_bytes, &contents)?;
    let manifest_text = serde_json::to_string_pretty(&manifest).context("encoding the manifest")?;

    // Assemble beside the destination, then swap the whole folder in.
    let dest = ws.layout.package_dir(name, arch, profile);
    let staged = files::staging_dir_beside(&dest)?;
    let result = (|| {
        for (file, bytes) in &contents {
            write_plain(&staged.join(file), bytes)?;
        }
        write_plain(
            &staged.join(MANIFEST),
            format!("{manifest_text}\n").as_bytes(),
        )?;
        files::replace_dir(&staged, &dest)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staged);
    }
    result?;
    Ok((dest, manifest))
}

/// What the catalog of a package lists: the signed image (Authenticode hashes) and the INF (file
/// hashes).
pub fn catalog_members(name: &str, sys: &[u8], inf_bytes: &[u8]) -> Result<Vec<Member>> {
    Ok(vec![
        Member {
            file: format!("{name}.sys"),
            kind: Kind::Pe,
            sha256: authenticode::image_sha256(sys)?,
            sha1: authenticode::image_sha1(sys)?,
        },
        Member {
            file: format!("{name}.inf"),
            kind: Kind::Flat,
            sha256: Sha256::digest(inf_bytes).to_vec(),
            sha1: Sha1::digest(inf_bytes).to_vec(),
        },
    ])
}

/// The manifest: versions, service, signer, catalog members, every file's size and hash.
fn manifest(
    driver: &Driver,
    arch: Arch,
    profile: Profile,
    signer: &Signer,
    spec: &catalog::Spec,
    inf_bytes: &[u8],
    contents: &[(String, &[u8])],
) -> Result<Value> {
    let (parsed_inf, _) = inf::parse(&inf::decode(inf_bytes).map(|t| t.0).unwrap_or_default());
    let mut manifest = json!({
        "schema": 1,
        "driver": driver.name,
        "version": driver.version,
        "arch": arch.name(),
        "profile": profile.dir(),
        "service": inf::service_name(&parsed_inf, arch),
        "driver_ver": parsed_inf.value("Version", "DriverVer").map(|e| e.fields.join(",")),
        "created": der::DateTime::from_system_time(spec.this_update).map(|t| t.to_string()).unwrap_or_default(),
        "signer": cert::describe(&signer.cert)?,
        "catalog": {
            "version": 2,
            "os": spec.os,
            "os_attr": catalog::OS_ATTR,
            "list_identifier": cert::hex(&spec.list_id),
            "members": spec.members.iter().map(|m| json!({
                "file": m.file,
                "kind": if m.kind == Kind::Pe { "pe" } else { "flat" },
                "sha256": cert::hex(&m.sha256),
                "sha1": cert::hex(&m.sha1),
            })).collect::<Vec<_>>(),
        },
        "files": {},
    });
    for (file, bytes) in contents {
        let mut entry = json!({"bytes": bytes.len(), "sha256": hex_sha256(bytes)});
        if let Some(m) = spec
            .members
            .iter()
            .find(|m| m.file == *file && m.kind == Kind::Pe)
        {
            entry["authenticode_sha256"] = json!(cert::hex(&m.sha256));
        }
        manifest["files"][file] = entry;
    }
    Ok(manifest)
}

/// A file in the staging folder: the folder is the temporary, renamed whole into place.
fn write_plain(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// The catalog's listIdentifier: random, as makecat makes it; with `$SOURCE_DATE_EPOCH`, derived
/// from the members' hashes so that the same inputs give the same catalog.
fn list_id(members: &[Member]) -> Result<[u8; 16]> {
    let mut id = [0u8; 16];
    if source_date_epoch()?.is_some() {
        let mut h = Sha256::new();
        for m in members {
            h.update(&m.sha256);
        }
        id.copy_from_slice(&h.finalize()[..16]);
    } else {
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut id);
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::layout::Layout;

    fn scratch_ws(name: &str) -> (Workspace, Driver) {
        let root = crate::packaging::cert::tests::scratch(name);
        let driver_dir = root.join("d");
        std::fs::create_dir_all(&driver_dir).unwrap();
        let ws = Workspace {
            root: root.clone(),
            layout: Layout::new(root.join("target")),
            drivers: vec![],
        };
        let inx = include_str!("../../../ex-callback/ex-callback.inx").replace("ex-callback", "d");
        std::fs::write(driver_dir.join("d.inx"), inx).unwrap();
        let d = Driver {
            name: "d".into(),
            version: "1.2.3".into(),
            dir: driver_dir,
            fixture: false,
            size_budget: None,
            callback_instruction_budget: None,
            variant: None,
        };
        let sys = ws.layout.placed_sys("d", Arch::X64, Profile::Debug);
        files::write_atomic(&sys, &crate::image::pe::testimage::good()).unwrap();
        (ws, d)
    }

    #[test]
    fn a_package_has_every_file_and_verifies() {
        let (ws, d) = scratch_ws("package");
        let signer = crate::packaging::cert::tests::test_signer();
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_777_600_000); // 2026-05-01
        let (dir, manifest) =
            package_one(&ws, &d, Arch::X64, Profile::Debug, &signer, time).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [cert::CERT_FILE, "d.cat", "d.inf", "d.sys", MANIFEST]
        );
        let sys = std::fs::read(dir.join("d.sys")).unwrap();
        authenticode::verify_image(&sys, &signer.cert).unwrap();
        let inf = std::fs::read_to_string(dir.join("d.inf")).unwrap();
        assert!(
            inf.contains("DriverVer   = 05/01/2026,1.2.3.0\r\n"),
            "{inf}"
        );
        assert!(inf.contains("[DefaultInstall.NTamd64]"));
        let cat = catalog::read(
            &std::fs::read(dir.join("d.cat")).unwrap(),
            Some(&signer.cert),
        )
        .unwrap();
        let member = cat.member("d.inf").unwrap();
        assert_eq!(member.identifier, Sha256::digest(inf.as_bytes()).to_vec());
        assert_eq!(manifest["driver_ver"], "05/01/2026,1.2.3.0");
        assert_eq!(manifest["service"], "ExCallback");
        assert_eq!(
            manifest["files"]["d.inf"]["sha256"],
            hex_sha256(inf.as_bytes())
        );
        assert_eq!(
            manifest["signer"]["thumbprint_sha1"],
            cert::describe(&signer.cert).unwrap()["thumbprint_sha1"]
        );
        // The package holds the certificate, never the key.
        for n in &names {
            let bytes = std::fs::read(dir.join(n)).unwrap();
            assert!(!bytes.windows(11).any(|w| w == b"PRIVATE KEY"), "{n}");
        }
        std::fs::remove_dir_all(&ws.root).unwrap();
    }

    #[test]
    fn a_failure_leaves_the_previous_package_intact() {
        let (ws, d) = scratch_ws("package-fail");
        let signer = crate::packaging::cert::tests::test_signer();
        let time = SystemTime::now();
        let (dir, _) = package_one(&ws, &d, Arch::X64, Profile::Debug, &signer, time).unwrap();
        let before = std::fs::read(dir.join("d.cat")).unwrap();

        // A broken .inx: refused with its line, nothing written.
        let good_inx = std::fs::read_to_string(d.inx()).unwrap();
        std::fs::write(
            d.inx(),
            good_inx.replace("DefaultDestDir = 13", "DefaultDestDir = 12"),
        )
        .unwrap();
        let e = package_one(&ws, &d, Arch::X64, Profile::Debug, &signer, time)
            .unwrap_err()
            .to_string();
        let line = 1 + good_inx
            .lines()
            .position(|l| l.contains("DefaultDestDir"))
            .unwrap();
        assert!(e.contains(&format!("d.inx:{line}: DIRID 12")), "{e}");
        assert_eq!(std::fs::read(dir.join("d.cat")).unwrap(), before);

        // An image that is not a driver: refused, nothing written.
        std::fs::write(d.inx(), &good_inx).unwrap();
        files::write_atomic(
            &ws.layout.placed_sys("d", Arch::X64, Profile::Debug),
            b"MZ?",
        )
        .unwrap();
        let e = package_one(&ws, &d, Arch::X64, Profile::Debug, &signer, time)
            .unwrap_err()
            .to_string();
        assert!(e.contains("passes the lint"), "{e}");
        assert_eq!(std::fs::read(dir.join("d.cat")).unwrap(), before);

        // No .inx at all: the error names the file to create.
        std::fs::remove_file(d.inx()).unwrap();
        let e = package_one(&ws, &d, Arch::X64, Profile::Debug, &signer, time)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no INF template at") && e.contains("d.inx"),
            "{e}"
        );
        assert_eq!(std::fs::read(dir.join("d.cat")).unwrap(), before);
        let leftovers: Vec<_> = std::fs::read_dir(dir.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "only the package folder");
        std::fs::remove_dir_all(&ws.root).unwrap();
    }
}
