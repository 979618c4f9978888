//! The test-signing certificate: where it lives, how it is made, and the checks before it is used.
//!
//! - **Where**: outside the repository, in the user's configuration folder:
//!   `--cert-dir DIR`, else `$XTASK_CERT_DIR`, else `$XDG_CONFIG_HOME/windows-callback-drivers/`,
//!   else `%APPDATA%\windows-callback-drivers\` (Windows), else
//!   `~/.config/windows-callback-drivers/`. The folder holds [`KEY_FILE`] (the RSA private key,
//!   PKCS#8 PEM, mode 0600) and [`CERT_FILE`] (the certificate, DER; PEM is accepted too).
//! - **What**: RSA 2048, self-signed X.509 v3, SHA-256 with RSA, subject [`SUBJECT`], valid
//!   [`VALIDITY_DAYS`] days, the code-signing extended key usage (all Microsoft and
//!   windows-drivers-rs recipes use it), key usage digitalSignature, not a CA.
//! - **When**: created on first use by `sign`/`package` if neither file exists; replaced only by
//!   `cargo xtask cert --new`. Only the certificate (`.cer`) is ever copied into a package.
//! - **Checks** before each use, each refusing with the fix: the key file must not be readable by
//!   others (Unix), both files must read, the key must be the certificate's, the certificate must
//!   be valid now and, if it has an extended key usage, allow code signing.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use der::asn1::{OctetString, UtcTime};
use der::oid::AssociatedOid;
use der::{Decode, DecodePem, Encode, EncodePem};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde::Serialize;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use x509_cert::Certificate;
use x509_cert::certificate::{TbsCertificate, Version};
use x509_cert::ext::pkix::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages, SubjectKeyIdentifier,
};
use x509_cert::ext::{AsExtension, Extension};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::{Time, Validity};

use crate::error::{Context, Error, Result, bail};
use crate::files;
use crate::pkcs7::{self, Signer, algorithm, oid};

/// The command that replaces the pair, which every error that needs a new pair names: the driver
/// samples' tool. (In code: [`create`] replaces the pair in a folder.)
pub const RENEW: &str = "cargo xtask cert --new";
/// The certificate's subject.
pub const SUBJECT: &str = "CN=Windows Callback Driver Samples Test Signing \u{2014} not for production,O=Windows Callback Driver Samples";
/// The private key's file name in the certificate folder.
pub const KEY_FILE: &str = "callback-drivers-test.key";
/// The certificate's file name in the certificate folder, and in every package.
pub const CERT_FILE: &str = "callback-drivers-test.cer";
/// Overrides the certificate folder.
pub const CERT_DIR_ENV: &str = "XTASK_CERT_DIR";
/// The folder under the user's configuration folder.
const CONFIG_SUBDIR: &str = "windows-callback-drivers";
/// How long a new certificate is valid.
pub const VALIDITY_DAYS: u64 = 3 * 365;
/// RSA modulus size of a new key.
pub const KEY_BITS: usize = 2048;

/// The certificate folder: `--cert-dir`, `$XTASK_CERT_DIR`, or the user's configuration folder.
pub fn cert_dir(flag: Option<&Path>) -> Result<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = flag {
        return Ok(dir.to_path_buf());
    }
    if let Some(dir) = var(CERT_DIR_ENV) {
        return Ok(dir);
    }
    let config = var("XDG_CONFIG_HOME")
        .or_else(|| if cfg!(windows) { var("APPDATA") } else { None })
        .or_else(|| var("HOME").map(|h| h.join(".config")));
    match config {
        Some(c) => Ok(c.join(CONFIG_SUBDIR)),
        None => bail!(
            "no folder for the test certificate: neither XDG_CONFIG_HOME nor HOME is set; \
             give one with --cert-dir DIR or {CERT_DIR_ENV}=DIR"
        ),
    }
}

/// The two files of a certificate folder.
#[derive(Clone, Debug)]
pub struct CertFiles {
    /// The private key (PKCS#8 PEM).
    pub key: PathBuf,
    /// The certificate (DER).
    pub cert: PathBuf,
}

impl CertFiles {
    /// The files in `dir`.
    #[must_use]
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            key: dir.join(KEY_FILE),
            cert: dir.join(CERT_FILE),
        }
    }
}

/// The signer of `dir`, created first if the folder has neither file. The `bool` says whether it
/// was created now.
pub fn load_or_create(dir: &Path) -> Result<(Signer, bool)> {
    let files = CertFiles::in_dir(dir);
    if !files.key.exists() && !files.cert.exists() {
        eprintln!(
            "  no test certificate in {}: creating one (RSA {KEY_BITS}, code signing, valid {VALIDITY_DAYS} days)...",
            dir.display()
        );
        let signer = create(dir, SystemTime::now())?;
        eprintln!("  created {}", files.cert.display());
        return Ok((signer, true));
    }
    Ok((load(dir, SystemTime::now())?, false))
}

/// Creates a new key and certificate in `dir` (replacing any), valid from `now`.
pub fn create(dir: &Path, now: SystemTime) -> Result<Signer> {
    let signer = generate(now, Duration::from_hours(VALIDITY_DAYS * 24))?;
    store(dir, &signer.key, &signer.cert)?;
    Ok(signer)
}

/// A new key and certificate (subject [`SUBJECT`]) valid for `validity` from `now`, in memory
/// only (nothing is stored): for tests and one-off signing.
pub fn generate(now: SystemTime, validity: Duration) -> Result<Signer> {
    generate_as(SUBJECT, now, validity)
}

/// Like [`generate`], with the subject `subject` ([`self_signed_as`]); [`store`] writes the pair
/// into a folder that [`load`] reads.
pub fn generate_as(subject: &str, now: SystemTime, validity: Duration) -> Result<Signer> {
    let key =
        RsaPrivateKey::new(&mut rand_core::OsRng, KEY_BITS).context("generating an RSA key")?;
    let cert = self_signed_as(subject, &key, now, validity)?;
    Ok(Signer {
        key,
        cert,
        chain: Vec::new(),
    })
}

/// Writes `key` and `cert` into `dir` (created owner-only), each through a temporary file.
pub fn store(dir: &Path, key: &RsaPrivateKey, cert: &Certificate) -> Result<()> {
    let files = CertFiles::in_dir(dir);
    create_private_dir(dir)?;
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .context("encoding the private key")?;
    let der = cert.to_der().context("encoding the certificate")?;
    // The key first: a crash between the two leaves a key that does not match the old
    // certificate, which `load` reports with the fix, rather than a certificate without its key.
    files::write_atomic_private(&files.key, pem.as_bytes())?;
    files::write_atomic(&files.cert, &der)
}

fn create_private_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting {} to its owner", dir.display()))?;
    }
    Ok(())
}

/// A self-signed code-signing certificate of `key` with subject [`SUBJECT`], valid for
/// `validity` from `now` (backdated by an hour for clock skew).
pub fn self_signed(
    key: &RsaPrivateKey,
    now: SystemTime,
    validity: Duration,
) -> Result<Certificate> {
    self_signed_as(SUBJECT, key, now, validity)
}

/// Like [`self_signed`], with the subject `subject` (an RFC 4514 name, e.g.
/// `CN=Contoso Test Signing,O=Contoso`).
pub fn self_signed_as(
    subject: &str,
    key: &RsaPrivateKey,
    now: SystemTime,
    validity: Duration,
) -> Result<Certificate> {
    let spki_der = RsaPublicKey::from(key)
        .to_public_key_der()
        .context("encoding the public key")?;
    let spki = SubjectPublicKeyInfoOwned::from_der(spki_der.as_bytes())
        .context("encoding the public key")?;
    let key_id = Sha1::digest(spki.subject_public_key.raw_bytes()).to_vec();
    let mut serial = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut serial);
    serial[0] &= 0x7F; // positive
    serial[0] |= 0x40; // and 16 bytes long
    let subject = Name::from_str(subject)
        .with_context(|| format!("the subject `{subject}` is not an RFC 4514 name"))?;
    let time = |t: SystemTime| -> Result<Time> {
        Ok(Time::UtcTime(
            UtcTime::from_system_time(t).context("encoding a validity date")?,
        ))
    };
    let not_before = now.checked_sub(Duration::from_hours(1)).unwrap_or(now);
    let mut extensions: Vec<Extension> = Vec::new();
    let mut add = |e: der::Result<Extension>| -> Result<()> {
        extensions.push(e.context("encoding a certificate extension")?);
        Ok(())
    };
    let no_ca = BasicConstraints {
        ca: false,
        path_len_constraint: None,
    };
    add(no_ca.to_extension(&subject, &[]))?;
    add(KeyUsage(KeyUsages::DigitalSignature.into()).to_extension(&subject, &[]))?;
    add(ExtendedKeyUsage(vec![oid::EKU_CODE_SIGNING]).to_extension(&subject, &[]))?;
    let key_id_ext = SubjectKeyIdentifier(OctetString::new(key_id).context("encoding the key id")?);
    add(key_id_ext.to_extension(&subject, &[]))?;
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(&serial).context("encoding the serial number")?,
        signature: algorithm(oid::SHA256_WITH_RSA),
        issuer: subject.clone(),
        validity: Validity {
            not_before: time(not_before)?,
            not_after: time(now + validity)?,
        },
        subject,
        subject_public_key_info: spki,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(extensions),
    };
    let signature = pkcs7::rsa_sha256(key, &tbs.to_der().context("encoding the certificate")?)?;
    Ok(Certificate {
        tbs_certificate: tbs,
        signature_algorithm: algorithm(oid::SHA256_WITH_RSA),
        signature: der::asn1::BitString::from_bytes(&signature)
            .context("encoding the signature")?,
    })
}

/// Reads and checks the signer in `dir` (see the module documentation), as of `now`.
pub fn load(dir: &Path, now: SystemTime) -> Result<Signer> {
    let files = CertFiles::in_dir(dir);
    let new = RENEW;
    for (what, path) in [("private key", &files.key), ("certificate", &files.cert)] {
        if !path.exists() {
            bail!(
                "the test {what} {} is missing (the folder has only half of the pair): create a \
                 new pair with `{new}`, then import the new .cer on your test machines",
                path.display()
            );
        }
    }
    check_key_permissions(&files.key)?;
    let pem = std::fs::read_to_string(&files.key).map_err(|e| {
        Error::new(format!(
            "cannot read the test private key {}: {e}; fix its permissions or create a new pair with `{new}`",
            files.key.display()
        ))
    })?;
    let key = RsaPrivateKey::from_pkcs8_pem(&pem).map_err(|e| {
        Error::new(format!(
            "the test private key {} is not an RSA key in PKCS#8 PEM ({e}): create a new pair with `{new}`",
            files.key.display()
        ))
    })?;
    let cert = read_certificate(&files.cert)?;
    if !key_is_certificates(&key, &cert)? {
        bail!(
            "the test certificate {} is not the certificate of the private key {}: create a new pair with `{new}`",
            files.cert.display(),
            files.key.display()
        );
    }
    check_usable(&cert, now, &files.cert)?;
    Ok(Signer {
        key,
        cert,
        chain: Vec::new(),
    })
}

/// Reads a certificate file, DER or PEM.
pub fn read_certificate(path: &Path) -> Result<Certificate> {
    let bytes = std::fs::read(path).map_err(|e| {
        Error::new(format!(
            "cannot read the test certificate {}: {e}; create a new pair with `{RENEW}`",
            path.display()
        ))
    })?;
    let parsed = if bytes.starts_with(b"-----BEGIN") {
        Certificate::from_pem(&bytes)
    } else {
        Certificate::from_der(&bytes)
    };
    parsed.map_err(|e| {
        Error::new(format!(
            "the test certificate {} is not an X.509 certificate ({e}): create a new pair with \
             `{RENEW}`",
            path.display()
        ))
    })
}

#[cfg(unix)]
pub(crate) fn check_key_permissions(key: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(key)
        .with_context(|| format!("reading {}", key.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        bail!(
            "the private key {} is accessible to other users (mode {:04o}); refusing to use it. \
             Fix: chmod 600 {}",
            key.display(),
            mode & 0o7777,
            key.display()
        );
    }
    Ok(())
}

#[cfg(not(unix))]
pub(crate) fn check_key_permissions(_key: &Path) -> Result<()> {
    Ok(())
}

/// The certificate is valid at `now` and allows code signing.
pub fn check_usable(cert: &Certificate, now: SystemTime, path: &Path) -> Result<()> {
    let v = &cert.tbs_certificate.validity;
    if now > v.not_after.to_system_time() {
        bail!(
            "the test certificate {} expired on {}: create a new one with `{RENEW}` \
             (then import the new .cer on your test machines)",
            path.display(),
            v.not_after
        );
    }
    if now < v.not_before.to_system_time() {
        bail!(
            "the test certificate {} is not valid before {}: is this machine's clock right? \
             If it is, create a new one with `{RENEW}`",
            path.display(),
            v.not_before
        );
    }
    if let Some(eku) = extended_key_usage(cert)?
        && !eku.0.contains(&oid::EKU_CODE_SIGNING)
    {
        bail!(
            "the test certificate {} does not allow code signing (its extended key usage lacks \
             1.3.6.1.5.5.7.3.3): create a new one with `{RENEW}`",
            path.display()
        );
    }
    Ok(())
}

/// Whether `cert` is the certificate of `key`: its subject public key is the key's public half
/// (both DER-encoded and compared).
pub(crate) fn key_is_certificates(key: &RsaPrivateKey, cert: &Certificate) -> Result<bool> {
    let ours = RsaPublicKey::from(key)
        .to_public_key_der()
        .context("encoding the public key")?;
    let theirs = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .context("encoding the certificate's key")?;
    Ok(ours.as_bytes() == theirs.as_slice())
}

pub(crate) fn extended_key_usage(cert: &Certificate) -> Result<Option<ExtendedKeyUsage>> {
    let ext = cert
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id == ExtendedKeyUsage::OID);
    match ext {
        Some(e) => Ok(Some(
            ExtendedKeyUsage::from_der(e.extn_value.as_bytes())
                .context("reading the extended key usage")?,
        )),
        None => Ok(None),
    }
}

/// Uppercase hex, as Windows shows thumbprints.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02X}");
        s
    })
}

/// What `cert --show`, a package manifest and `--json` tell about a certificate: the values
/// Windows shows (`certutil -dump`, the certificate dialog), hex in uppercase.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CertInfo {
    /// The subject, as an RFC 4514 string.
    pub subject: String,
    /// The serial number, hex.
    pub serial: String,
    /// SHA-1 of the certificate's DER: the thumbprint `certutil` and the stores use.
    pub thumbprint_sha1: String,
    /// SHA-256 of the certificate's DER.
    pub thumbprint_sha256: String,
    /// Start of validity, UTC (`YYYY-MM-DDTHH:MM:SSZ`).
    pub not_before: String,
    /// End of validity, UTC.
    pub not_after: String,
}

/// What a person is told about `cert`.
pub fn describe(cert: &Certificate) -> Result<CertInfo> {
    let der = cert.to_der().context("encoding the certificate")?;
    let tbs = &cert.tbs_certificate;
    Ok(CertInfo {
        subject: tbs.subject.to_string(),
        serial: hex(tbs.serial_number.as_bytes()),
        thumbprint_sha1: hex(&Sha1::digest(&der)),
        thumbprint_sha256: hex(&Sha256::digest(&der)),
        not_before: tbs.validity.not_before.to_string(),
        not_after: tbs.validity.not_after.to_string(),
    })
}

/// The signer in `cert_dir` (or the default folder, [`cert_dir`]), created there on first use.
pub fn signer(cert_dir_flag: Option<&Path>) -> Result<Signer> {
    let dir = cert_dir(cert_dir_flag)?;
    Ok(load_or_create(&dir)?.0)
}

/// The certificate as PEM (for `osslsigncode -CAfile`).
pub fn to_pem(cert: &Certificate) -> Result<String> {
    cert.to_pem(LineEnding::LF)
        .context("encoding the certificate as PEM")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::OnceLock;

    /// The tests' key: a throwaway RSA-2048 key made by OpenSSL, paired with no certificate of
    /// the test data (driver-package/testdata/pfx/README.md). Generating one
    /// (`RsaPrivateKey::new`, as [`generate`] does; tests/public_api.rs runs that) is a prime
    /// search of 0.3 to 3 s of CPU; reading this takes microseconds.
    pub(crate) fn test_key() -> RsaPrivateKey {
        static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
        KEY.get_or_init(|| {
            RsaPrivateKey::from_pkcs8_pem(include_str!("../testdata/test-key.pem")).unwrap()
        })
        .clone()
    }

    /// A signer with a certificate valid now.
    pub(crate) fn test_signer() -> Signer {
        static CERT: OnceLock<Certificate> = OnceLock::new();
        let key = test_key();
        let cert = CERT
            .get_or_init(|| self_signed(&key, SystemTime::now(), Duration::from_hours(24)).unwrap())
            .clone();
        Signer {
            key,
            cert,
            chain: Vec::new(),
        }
    }

    pub(crate) fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("driver-package-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn a_stored_signer_loads_back_and_is_described() {
        let dir = scratch("roundtrip");
        let s = test_signer();
        store(&dir, &s.key, &s.cert).unwrap();
        let loaded = load(&dir, SystemTime::now()).unwrap();
        assert_eq!(loaded.cert, s.cert);
        let d = describe(&loaded.cert).unwrap();
        assert!(d.subject.contains("not for production"), "{d:?}");
        assert_eq!(d.thumbprint_sha1.len(), 40);
        assert_eq!(d.thumbprint_sha256.len(), 64);
        assert!(d.not_after > d.not_before, "{d:?}");
        let eku = extended_key_usage(&loaded.cert).unwrap().unwrap();
        assert_eq!(eku.0, [oid::EKU_CODE_SIGNING]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir.join(KEY_FILE)), 0o600);
            assert_eq!(mode(&dir), 0o700);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_key_readable_by_others_is_refused_with_the_chmod_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch("loose");
        let s = test_signer();
        store(&dir, &s.key, &s.cert).unwrap();
        let key = dir.join(KEY_FILE);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load(&dir, SystemTime::now()).err().unwrap().to_string();
        assert!(
            e.contains("mode 0644") && e.contains(&format!("chmod 600 {}", key.display())),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_expired_or_future_certificate_is_refused() {
        let dir = scratch("expired");
        let key = test_key();
        let long_ago = SystemTime::now() - Duration::from_hours(10 * 24);
        let old = self_signed(&key, long_ago, Duration::from_hours(24)).unwrap();
        store(&dir, &key, &old).unwrap();
        let e = load(&dir, SystemTime::now()).err().unwrap().to_string();
        assert!(
            e.contains("expired on") && e.contains("cargo xtask cert --new"),
            "{e}"
        );
        let e = load(&dir, long_ago - Duration::from_hours(24))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("not valid before"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unreadable_half_or_mismatched_pairs_are_refused() {
        let dir = scratch("broken");
        let s = test_signer();
        store(&dir, &s.key, &s.cert).unwrap();
        std::fs::write(dir.join(CERT_FILE), b"garbage").unwrap();
        let e = load(&dir, SystemTime::now()).err().unwrap().to_string();
        assert!(e.contains("is not an X.509 certificate"), "{e}");

        files::write_atomic(&dir.join(CERT_FILE), &s.cert.to_der().unwrap()).unwrap();
        files::write_atomic_private(&dir.join(KEY_FILE), b"-----BEGIN PRIVATE KEY-----\nAAAA\n")
            .unwrap();
        let e = load(&dir, SystemTime::now()).err().unwrap().to_string();
        assert!(e.contains("not an RSA key in PKCS#8 PEM"), "{e}");

        std::fs::remove_file(dir.join(KEY_FILE)).unwrap();
        let e = load(&dir, SystemTime::now()).err().unwrap().to_string();
        assert!(e.contains("is missing") && e.contains("cert --new"), "{e}");
        // With only the certificate there, nothing is created over it.
        assert!(load_or_create(&dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_certificate_can_have_its_own_subject_and_a_bad_one_is_refused() {
        let key = test_key();
        let now = SystemTime::now();
        let cert = self_signed_as(
            "CN=Contoso Test Signing,O=Contoso",
            &key,
            now,
            Duration::from_hours(1),
        )
        .unwrap();
        assert_eq!(
            describe(&cert).unwrap().subject,
            "CN=Contoso Test Signing,O=Contoso"
        );
        check_usable(&cert, now, Path::new("c.cer")).unwrap();
        let e = self_signed_as("not a name", &key, now, Duration::from_hours(1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an RFC 4514 name"), "{e}");
    }

    #[test]
    fn the_folder_comes_from_the_flag_first() {
        assert_eq!(cert_dir(Some(Path::new("/x"))).unwrap(), Path::new("/x"));
    }
}
