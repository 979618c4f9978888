//! `cargo xtask cert`: shows the test-signing certificate, or creates a new one (`--new`), with
//! `driver_package::cert`. `--json` prints a [`CertReport`] (`docs/reports/cert.md`).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use driver_package::cert::{self, CERT_FILE, CertFiles, CertInfo, KEY_BITS, VALIDITY_DAYS};
use serde::Serialize;

use crate::base::error::{Context, Result, bail};

/// `cargo xtask cert`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Options {
    /// `--new` (else `--show`, the default).
    pub new: bool,
    /// `--json`.
    pub json: bool,
    /// `--cert-dir`.
    pub cert_dir: Option<PathBuf>,
    /// `--export-pfx FILE`.
    pub export_pfx: Option<PathBuf>,
}

/// `cargo xtask cert --json`: the certificate and where its files are.
#[derive(Debug, Serialize)]
pub struct CertReport {
    /// The report's schema version: 1.
    pub schema: u32,
    /// What the certificate says.
    #[serde(flatten)]
    pub info: CertInfo,
    /// The certificate file (DER), the one packages carry.
    pub certificate: PathBuf,
    /// The private key file (PKCS#8 PEM, owner only).
    pub private_key: PathBuf,
    /// With `--export-pfx`: the PKCS#12 file written (owner only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exported_pfx: Option<PathBuf>,
}

impl CertReport {
    /// The report of the certificate in `files`.
    pub fn new(info: CertInfo, files: &CertFiles) -> Self {
        Self {
            schema: 1,
            info,
            certificate: files.cert.clone(),
            private_key: files.key.clone(),
            exported_pfx: None,
        }
    }
}

/// The `cert` command.
pub(crate) fn run(opts: &Options) -> Result<()> {
    let dir = cert::cert_dir(opts.cert_dir.as_deref())?;
    let files = CertFiles::in_dir(&dir);
    let signer = if opts.new {
        eprintln!(
            "  creating a new test certificate in {} (RSA {KEY_BITS}, code signing, valid {VALIDITY_DAYS} days)...",
            dir.display()
        );
        let signer = cert::create(&dir, SystemTime::now())?;
        eprintln!(
            "  created; packages made from now on carry it: import the new {CERT_FILE} on your test machines"
        );
        signer
    } else {
        refuse_if_absent(&dir, &files)?;
        cert::load(&dir, SystemTime::now())?
    };
    let mut report = CertReport::new(cert::describe(&signer.cert)?, &files);
    if let Some(file) = &opts.export_pfx {
        export_pfx(&signer, file)?;
        report.exported_pfx = Some(file.clone());
    }
    if opts.json {
        let text = serde_json::to_string_pretty(&report).context("encoding the report")?;
        println!("{text}");
        return Ok(());
    }
    let info = &report.info;
    println!("test certificate  {}", files.cert.display());
    println!("private key       {} (owner only)", files.key.display());
    println!("subject           {}", info.subject);
    println!("serial            {}", info.serial);
    println!("thumbprint SHA-1  {}", info.thumbprint_sha1);
    println!("thumbprint SHA256 {}", info.thumbprint_sha256);
    println!(
        "valid             {} to {}",
        info.not_before, info.not_after
    );
    println!(
        "on the test machine (admin): certutil -addstore Root {CERT_FILE} && certutil -addstore TrustedPublisher {CERT_FILE}"
    );
    if let Some(file) = &report.exported_pfx {
        println!(
            "exported          {} (PKCS#12, owner only): on Windows `certutil -importPFX {}` \
             or `signtool sign /f {} /p <password> /fd sha256 ...`",
            file.display(),
            file.display(),
            file.display()
        );
    }
    Ok(())
}

/// Writes the PFX of `signer` to `file` (mode 0600, through a temporary file), its password
/// from XTASK_PFX_PASSWORD or typed twice.
fn export_pfx(signer: &driver_package::pkcs7::Signer, file: &Path) -> Result<()> {
    let password = crate::commands::sign::pfx_password(file, true)?;
    write_pfx(signer, file, &password)?;
    eprintln!(
        "  exported the test certificate and its key to {}",
        file.display()
    );
    Ok(())
}

/// The PFX of `signer` under `password` (not empty) written to `file`, owner only.
fn write_pfx(signer: &driver_package::pkcs7::Signer, file: &Path, password: &str) -> Result<()> {
    if password.is_empty() {
        bail!(
            "refusing to export the private key to {} without a password: set {} or type one",
            file.display(),
            crate::commands::sign::PASSWORD_ENV
        );
    }
    let der = driver_package::pfx::write(signer, password)?;
    driver_package::files::write_atomic_private(file, &der)?;
    Ok(())
}

fn refuse_if_absent(dir: &Path, files: &CertFiles) -> Result<()> {
    if !files.key.exists() && !files.cert.exists() {
        bail!(
            "no test certificate in {}: `cargo xtask cert --new` creates one (so do `sign` and \
             `package`, on first use)",
            dir.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_report_starts_with_its_schema_and_names_the_files() {
        let signer = crate::commands::sign::tests::test_signer();
        let files = CertFiles::in_dir(Path::new("/certs"));
        let report = CertReport::new(cert::describe(&signer.cert).unwrap(), &files);
        let text = serde_json::to_string_pretty(&report).unwrap();
        assert!(
            text.starts_with("{\n  \"schema\": 1,\n  \"subject\": "),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["certificate"], format!("/certs/{CERT_FILE}"));
        assert_eq!(v["thumbprint_sha1"].as_str().unwrap().len(), 40);
    }

    #[test]
    fn docs_reports_cert_md_names_every_field_of_the_report() {
        let signer = crate::commands::sign::tests::test_signer();
        let files = CertFiles::in_dir(Path::new("/certs"));
        let mut report = CertReport::new(cert::describe(&signer.cert).unwrap(), &files);
        let v = serde_json::to_value(&report).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 9, "{v}");
        report.exported_pfx = Some("/tmp/me.pfx".into());
        let v = serde_json::to_value(&report).unwrap();
        let doc = include_str!("../../../docs/reports/cert.md");
        let missing = crate::commands::package::tests::undocumented(&v, doc);
        assert_eq!(missing, Vec::<String>::new());
        assert_eq!(v.as_object().unwrap().len(), 10, "{v}");
    }

    #[test]
    fn the_exported_pfx_is_owner_only_and_reads_back_with_its_password() {
        let signer = crate::commands::sign::tests::test_signer();
        let dir = crate::commands::sign::tests::scratch("export-pfx");
        let file = dir.join("me.pfx");
        write_pfx(&signer, &file, "pw").unwrap();
        let back =
            driver_package::pfx::read(&std::fs::read(&file).unwrap(), "pw", "me.pfx").unwrap();
        assert_eq!(back.signer.cert, signer.cert);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let e = write_pfx(&signer, &dir.join("none.pfx"), "")
            .unwrap_err()
            .to_string();
        assert!(e.contains("without a password"), "{e}");
        assert!(!dir.join("none.pfx").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn showing_a_missing_certificate_names_the_command_that_creates_one() {
        let dir = std::env::temp_dir().join(format!("xtask-cert-none-{}", std::process::id()));
        let e = run(&Options {
            new: false,
            json: false,
            cert_dir: Some(dir.clone()),
            export_pfx: None,
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("cargo xtask cert --new"), "{e}");
        assert!(!dir.exists(), "nothing is created by --show");
    }
}
