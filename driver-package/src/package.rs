//! A driver package, what Windows installs, in one folder:
//!
//! ```text
//! NAME/
//!     NAME.sys                    the image, with an embedded Authenticode signature
//!     NAME.inf                    NAME.inx stamped for the architecture (inf.rs)
//!     NAME.cat                    the signed catalog of NAME.sys and NAME.inf (catalog.rs)
//!     NAME.pdb                    the symbols, when there are some
//!     <cert::CERT_FILE>           the test certificate (never its key)
//!     manifest.json               what is in the package: hashes, versions, signer ([`Manifest`])
//! ```
//!
//! [`make_inf`] checks the `.inx` (encoding, syntax, the primitive-driver form, each problem with
//! its line) before stamping it; [`assemble`] makes the catalog and the manifest in memory;
//! [`write()`] assembles the folder beside its destination and renames it into place whole
//! ([`files::replace_dir`]): a failure leaves the previous package as it was.
//!
//! The date in `DriverVer` and the catalog's thisUpdate come from [`build_time`]: the current UTC
//! time, or `$SOURCE_DATE_EPOCH` when set (reproducible packages).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::Arch;
use crate::authenticode;
use crate::catalog::{self, Kind, Member};
use crate::cert::{self, CertInfo};
use crate::error::{Context, Error, Result, bail};
use crate::files;
use crate::inf::{self, Expect};
use crate::pkcs7::Signer;

/// The manifest's file name in a package.
pub const MANIFEST: &str = "manifest.json";
/// The manifest's schema version ([`Manifest::schema`]).
pub const MANIFEST_SCHEMA: u32 = 1;

/// `$SOURCE_DATE_EPOCH`, when set: packages are then reproducible.
pub fn source_date_epoch() -> Result<Option<u64>> {
    parse_source_date_epoch(std::env::var("SOURCE_DATE_EPOCH").ok().as_deref())
}

/// The value of `$SOURCE_DATE_EPOCH` (`None` or empty: not set).
fn parse_source_date_epoch(value: Option<&str>) -> Result<Option<u64>> {
    match value {
        Some(v) if !v.trim().is_empty() => v.trim().parse().map(Some).map_err(|_| {
            Error::new(format!(
                "SOURCE_DATE_EPOCH=`{v}` is not a number of seconds since 1970: unset it, or \
                 set it to one (e.g. `git log -1 --format=%ct`)"
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

/// The INF of driver `name` (Cargo version `version`) for `arch`, from the bytes of its `.inx`
/// (shown as `shown` in errors, `shown:LINE: problem`): checked, stamped, and checked again.
pub fn make_inf(
    name: &str,
    version: &str,
    arch: Arch,
    inx: &[u8],
    shown: &str,
    time: SystemTime,
) -> Result<Vec<u8>> {
    let at = |p: &inf::Problem| format!("{shown}:{}: {}", p.line, p.message);
    let (text, encoding) = inf::decode(inx).map_err(|p| Error::new(at(&p)))?;
    let expect = Expect {
        name,
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
    let driver_ver = inf::driver_ver(date.year(), date.month(), date.day(), version)
        .map_err(|e| Error::new(format!("{name}: {e}")))?;
    let stamped = inf::stamp(&text, arch, &driver_ver);
    let problems = inf::check(
        &stamped,
        &Expect {
            stamped: true,
            ..expect
        },
    );
    if let Some(p) = problems.first() {
        bail!("the stamped INF of {name} is wrong (a bug in driver-package): {p}");
    }
    Ok(inf::encode(&stamped, encoding))
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

/// The catalog's listIdentifier: random, as makecat makes it; with `$SOURCE_DATE_EPOCH`, derived
/// from the members' hashes so that the same inputs give the same catalog.
pub fn list_id(members: &[Member]) -> Result<[u8; 16]> {
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

/// What goes into a package.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    /// The driver's name: the files are `NAME.sys`, `NAME.inf`, `NAME.cat`.
    pub name: &'a str,
    /// Its version (Cargo's `a.b.c`), for the manifest.
    pub version: &'a str,
    /// The architecture.
    pub arch: Arch,
    /// The build profile (`debug`, `release`), for the manifest.
    pub profile: &'a str,
    /// The image, already signed ([`authenticode::sign_image`]).
    pub sys: &'a [u8],
    /// The INF ([`make_inf`]).
    pub inf: &'a [u8],
    /// The symbols, if any.
    pub pdb: Option<&'a [u8]>,
    /// The catalog's thisUpdate ([`build_time`]).
    pub time: SystemTime,
}

/// A package in memory: its files (name, bytes; the manifest last) and its manifest.
#[derive(Clone, Debug)]
pub struct Package {
    /// Every file of the folder, `manifest.json` included.
    pub files: Vec<(String, Vec<u8>)>,
    /// What `manifest.json` holds.
    pub manifest: Manifest,
}

/// `manifest.json`: versions, service, signer, catalog members, every file's size and hash.
/// Documented field by field in `docs/reports/package.md`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Manifest {
    /// [`MANIFEST_SCHEMA`].
    pub schema: u32,
    /// The driver's name.
    pub driver: String,
    /// Its Cargo version.
    pub version: String,
    /// `x64` or `arm64`.
    pub arch: String,
    /// `debug` or `release`.
    pub profile: String,
    /// The service the INF installs (`AddService`), if it names one.
    pub service: Option<String>,
    /// The stamped `DriverVer` (`mm/dd/yyyy,w.x.y.z`).
    pub driver_ver: Option<String>,
    /// The catalog's thisUpdate, UTC.
    pub created: String,
    /// The certificate that signed the image and the catalog.
    pub signer: CertInfo,
    /// The catalog.
    pub catalog: CatalogSummary,
    /// Each file of the package but the manifest, by name.
    pub files: BTreeMap<String, FileSummary>,
}

/// The catalog, as the manifest tells it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CatalogSummary {
    /// The catalog version: 2 (members by SHA-256).
    pub version: u32,
    /// The `OS` attribute ([`catalog::os_attribute`]).
    pub os: String,
    /// Each member's `OSAttr` ([`catalog::OS_ATTR`]).
    pub os_attr: String,
    /// The listIdentifier, hex.
    pub list_identifier: String,
    /// The members.
    pub members: Vec<MemberSummary>,
}

/// A catalog member, as the manifest tells it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemberSummary {
    /// The file name.
    pub file: String,
    /// `pe` (Authenticode hashes) or `flat` (file hashes).
    pub kind: String,
    /// The SHA-256, hex.
    pub sha256: String,
    /// The SHA-1 (the compatibility member), hex.
    pub sha1: String,
}

/// A file of the package, as the manifest tells it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileSummary {
    /// Its size.
    pub bytes: u64,
    /// The SHA-256 of the file, hex.
    pub sha256: String,
    /// For the image: its Authenticode SHA-256 (what the signature and the catalog record).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authenticode_sha256: Option<String>,
}

/// The catalog, the certificate and the manifest of a package, made in memory.
pub fn assemble(input: &Input<'_>, signer: &Signer) -> Result<Package> {
    let name = input.name;
    let members = catalog_members(name, input.sys, input.inf)?;
    let spec = catalog::Spec {
        list_id: list_id(&members)?,
        members,
        os: catalog::os_attribute(input.arch).to_owned(),
        this_update: input.time,
    };
    let cat = catalog::build(&spec, signer)?;
    let cer = der::Encode::to_der(&signer.cert).context("encoding the certificate")?;
    let mut contents: Vec<(String, Vec<u8>)> = vec![
        (format!("{name}.sys"), input.sys.to_vec()),
        (format!("{name}.inf"), input.inf.to_vec()),
        (format!("{name}.cat"), cat),
        (cert::CERT_FILE.to_owned(), cer),
    ];
    if let Some(pdb) = input.pdb {
        contents.push((format!("{name}.pdb"), pdb.to_vec()));
    }
    let manifest = manifest(input, signer, &spec, &contents)?;
    let text = serde_json::to_string_pretty(&manifest).context("encoding the manifest")?;
    contents.push((MANIFEST.to_owned(), format!("{text}\n").into_bytes()));
    Ok(Package {
        files: contents,
        manifest,
    })
}

fn manifest(
    input: &Input<'_>,
    signer: &Signer,
    spec: &catalog::Spec,
    contents: &[(String, Vec<u8>)],
) -> Result<Manifest> {
    let text = inf::decode(input.inf).map(|t| t.0).unwrap_or_default();
    let (parsed_inf, _) = inf::parse(&text);
    let files = contents
        .iter()
        .map(|(file, bytes)| {
            let authenticode_sha256 = spec
                .members
                .iter()
                .find(|m| m.file == *file && m.kind == Kind::Pe)
                .map(|m| cert::hex(&m.sha256));
            let summary = FileSummary {
                bytes: bytes.len() as u64,
                sha256: cert::hex(&Sha256::digest(bytes)),
                authenticode_sha256,
            };
            (file.clone(), summary)
        })
        .collect();
    Ok(Manifest {
        schema: MANIFEST_SCHEMA,
        driver: input.name.to_owned(),
        version: input.version.to_owned(),
        arch: input.arch.name().to_owned(),
        profile: input.profile.to_owned(),
        service: inf::service_name(&parsed_inf, input.arch),
        driver_ver: parsed_inf
            .value("Version", "DriverVer")
            .map(|e| e.fields.join(",")),
        created: der::DateTime::from_system_time(spec.this_update)
            .map(|t| t.to_string())
            .unwrap_or_default(),
        signer: cert::describe(&signer.cert)?,
        catalog: CatalogSummary {
            version: 2,
            os: spec.os.clone(),
            os_attr: catalog::OS_ATTR.to_owned(),
            list_identifier: cert::hex(&spec.list_id),
            members: spec
                .members
                .iter()
                .map(|m| MemberSummary {
                    file: m.file.clone(),
                    kind: if m.kind == Kind::Pe { "pe" } else { "flat" }.to_owned(),
                    sha256: cert::hex(&m.sha256),
                    sha1: cert::hex(&m.sha1),
                })
                .collect(),
        },
        files,
    })
}

/// Writes `package` as the folder `dest`: assembled in a staging folder beside it, then swapped
/// in whole. On failure the previous `dest` is left as it was and the staging folder removed.
pub fn write(package: &Package, dest: &Path) -> Result<()> {
    let staged = files::staging_dir_beside(dest)?;
    let result = (|| {
        for (file, bytes) in &package.files {
            // The staging folder is the temporary: it is renamed whole into place.
            let path = staged.join(file);
            std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        }
        files::replace_dir(&staged, dest)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staged);
    }
    result
}

#[cfg(test)]
mod tests;
