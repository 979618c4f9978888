//! Signing with your own certificate instead of the generated test certificate: from a PFX
//! (`--pfx FILE`, [`from_pfx`]) or from a PEM key and certificate (`--key KEY.pem --cert
//! CERT.pem`, [`from_pem`]).
//!
//! The same rules as for the test certificate ([`crate::cert`]) apply, each refusal naming the
//! cause and the fix: a key file readable by other users is refused (`chmod 600`; a PFX is not
//! held to it, its key being encrypted under its password, as Windows exports it); the key must
//! be the certificate's; the certificate must be valid now (this tool does not timestamp, so
//! Windows would not accept a signature by an expired certificate) and must carry the Code
//! Signing extended key usage, 1.3.6.1.5.5.7.3.3 (what signtool's `/kp` policy check and the
//! Hardware Dev Center's EV certificates have; a certificate made for TLS or e-mail lacks it).

use std::path::Path;
use std::time::SystemTime;

use der::{Decode, DecodePem};
use rsa::RsaPrivateKey;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use x509_cert::Certificate;

use crate::cert;
use crate::error::{Error, Result, bail};
use crate::pfx;
use crate::pkcs7::{Signer, oid};

/// anyExtendedKeyUsage (RFC 5280 4.2.1.12): any purpose, code signing included.
const EKU_ANY: der::oid::ObjectIdentifier = der::oid::ObjectIdentifier::new_unwrap("2.5.29.37.0");

/// The signer in the PFX at `path`, opened with `password`, checked as of `now`.
pub fn from_pfx(path: &Path, password: &str, now: SystemTime) -> Result<Signer> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| {
        Error::new(format!(
            "cannot read the PFX {shown}: {e}; check the path given to --pfx"
        ))
    })?;
    let contents = pfx::read(&bytes, password, &shown)?;
    check(&contents.signer.cert, now, &shown)?;
    Ok(contents.signer)
}

/// The signer of the PEM private key at `key` (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE
/// KEY`, not encrypted) and the certificate at `cert_path` (PEM or DER; a PEM bundle starts with
/// the signing certificate, and its issuers found in the rest become [`Signer::chain`]),
/// checked as of `now`.
pub fn from_pem(key: &Path, cert_path: &Path, now: SystemTime) -> Result<Signer> {
    cert::check_key_permissions(key)?;
    let shown_key = key.display();
    let pem = std::fs::read_to_string(key).map_err(|e| {
        Error::new(format!(
            "cannot read the private key {shown_key}: {e}; check the path given to --key"
        ))
    })?;
    let pem = zeroize::Zeroizing::new(pem);
    let key = if pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        bail!(
            "the private key {shown_key} is encrypted, which --key does not read: give the key \
             and certificate as a PFX with --pfx (its password from XTASK_PFX_PASSWORD or a \
             prompt), e.g. `openssl pkcs12 -export -inkey {shown_key} -in CERT.pem -out \
             signer.pfx`"
        );
    } else if pem.contains("-----BEGIN RSA PRIVATE KEY-----") {
        RsaPrivateKey::from_pkcs1_pem(&pem).map_err(|e| e.to_string())
    } else {
        RsaPrivateKey::from_pkcs8_pem(&pem).map_err(|e| e.to_string())
    }
    .map_err(|e| {
        Error::new(format!(
            "the private key {shown_key} is not an RSA key in PEM (PKCS#8 `PRIVATE KEY` or \
             PKCS#1 `RSA PRIVATE KEY`): {e}; this tool signs with RSA keys only"
        ))
    })?;
    let shown_cert = cert_path.display().to_string();
    let bytes = std::fs::read(cert_path).map_err(|e| {
        Error::new(format!(
            "cannot read the certificate {shown_cert}: {e}; check the path given to --cert"
        ))
    })?;
    let (certificate, rest) = if bytes.starts_with(b"-----BEGIN") {
        pem_certificates(&bytes).and_then(|mut all| {
            if all.is_empty() {
                return Err("no CERTIFICATE block".to_owned());
            }
            let first = all.remove(0);
            Ok((first, all))
        })
    } else {
        Certificate::from_der(&bytes)
            .map(|c| (c, Vec::new()))
            .map_err(|e| e.to_string())
    }
    .map_err(|e| {
        Error::new(format!(
            "{shown_cert} is not an X.509 certificate in PEM or DER ({e}); give the signing \
             certificate with --cert"
        ))
    })?;
    if !cert::key_is_certificates(&key, &certificate)? {
        bail!(
            "the certificate {shown_cert} is not the certificate of the private key {shown_key}: \
             give the key and the certificate issued for it (for a chain, the signing \
             certificate first)"
        );
    }
    check(&certificate, now, &shown_cert)?;
    let chain = pfx::chain_of(&certificate, &rest);
    Ok(Signer {
        key,
        cert: certificate,
        chain,
    })
}

/// Every `CERTIFICATE` block of a PEM file, in order.
fn pem_certificates(bytes: &[u8]) -> std::result::Result<Vec<Certificate>, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    let (begin, end) = ("-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----");
    let mut all = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(begin) {
        let stop = rest[start..]
            .find(end)
            .ok_or_else(|| "an unterminated CERTIFICATE block".to_owned())?;
        let block = &rest[start..start + stop + end.len()];
        all.push(Certificate::from_pem(block).map_err(|e| e.to_string())?);
        rest = &rest[start + stop + end.len()..];
    }
    Ok(all)
}

/// Your certificate `cert` (shown as `shown`) may sign now: valid at `now`, Code Signing EKU.
pub fn check(cert: &Certificate, now: SystemTime, shown: &str) -> Result<()> {
    let v = &cert.tbs_certificate.validity;
    if now > v.not_after.to_system_time() {
        bail!(
            "the certificate {shown} expired on {}: Windows does not accept a new signature by an \
             expired certificate (and this tool does not timestamp). Renew it with its \
             certificate authority, or leave out --pfx/--key to sign with the test certificate",
            v.not_after
        );
    }
    if now < v.not_before.to_system_time() {
        bail!(
            "the certificate {shown} is not valid before {}: is this machine's clock right? \
             Sign once it is valid",
            v.not_before
        );
    }
    let usages = cert::extended_key_usage(cert)?;
    let allows = usages.as_ref().is_some_and(|u| {
        u.0.iter()
            .any(|o| *o == oid::EKU_CODE_SIGNING || *o == EKU_ANY)
    });
    if !allows {
        let has = match &usages {
            None => "has no extended key usage".to_owned(),
            Some(u) => format!(
                "allows only {}",
                u.0.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        bail!(
            "the certificate {shown} {has}: Windows' kernel-mode code signing needs the Code \
             Signing extended key usage (1.3.6.1.5.5.7.3.3) in the signing certificate. Use a \
             code-signing certificate (a CA's code-signing or EV code-signing certificate; for \
             tests `New-SelfSignedCertificate -Type CodeSigningCert`, or this tool's test \
             certificate by leaving out --pfx/--key)"
        );
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests;
