use super::*;
use crate::cert::tests::{scratch, test_key, test_signer};
use der::Encode;
use std::time::Duration;

const PASSWORD: &str = "Secret-1";

fn testdata(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/pfx")
        .join(name)
}

pub(crate) fn pem_cert(bytes: &[u8]) -> Certificate {
    pem_certificates(bytes).unwrap().remove(0)
}

/// A copy of the test data file `name` in `dir`, with `mode` (the key rules apply to copies).
fn copy(dir: &Path, name: &str, mode: u32) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let to = dir.join(name);
    std::fs::copy(testdata(name), &to).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    #[cfg(not(unix))]
    let _ = mode;
    to
}

#[test]
fn a_pfx_and_a_pem_pair_give_the_same_signer() {
    let now = SystemTime::now();
    let from_pfx = from_pfx(&testdata("aes.pfx"), PASSWORD, now).unwrap();
    let dir = scratch("own-pem");
    let key = copy(&dir, "key.pem", 0o600);
    let from_pem = from_pem(&key, &testdata("cert.pem"), now).unwrap();
    assert_eq!(from_pfx.cert, from_pem.cert);
    assert_eq!(from_pfx.key, from_pem.key);
    let e = super::from_pfx(&testdata("aes.pfx"), "nope", now)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("wrong password"), "{e}");
    let e = super::from_pfx(&dir.join("missing.pfx"), PASSWORD, now)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("cannot read the PFX") && e.contains("--pfx"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(unix)]
#[test]
fn a_key_readable_by_others_is_refused_like_the_test_key() {
    let dir = scratch("own-loose");
    let key = copy(&dir, "key.pem", 0o644);
    let e = from_pem(&key, &testdata("cert.pem"), SystemTime::now())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("mode 0644") && e.contains("chmod 600"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_key_that_is_not_the_certificates_or_not_rsa_or_encrypted_is_refused() {
    let dir = scratch("own-mismatch");
    let key = copy(&dir, "key.pem", 0o600);
    let signer = test_signer();
    let ours = dir.join("ours.cer");
    std::fs::write(&ours, signer.cert.to_der().unwrap()).unwrap();
    let e = from_pem(&key, &ours, SystemTime::now())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("is not the certificate of the private key"),
        "{e}"
    );
    let enc = dir.join("enc.pem");
    crate::files::write_atomic_private(
        &enc,
        b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAA==\n-----END ENCRYPTED PRIVATE KEY-----\n",
    )
    .unwrap();
    let e = from_pem(&enc, &ours, SystemTime::now())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("is encrypted") && e.contains("--pfx"), "{e}");
    let junk = dir.join("junk.pem");
    crate::files::write_atomic_private(&junk, b"hello").unwrap();
    let e = from_pem(&junk, &ours, SystemTime::now())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("is not an RSA key in PEM"), "{e}");
    let e = from_pem(&key, &key, SystemTime::now())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("is not an X.509 certificate"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn expired_not_yet_valid_and_non_code_signing_certificates_are_refused() {
    let dir = scratch("own-dates");
    std::fs::create_dir_all(&dir).unwrap();
    let key = test_key();
    let long_ago = SystemTime::now() - Duration::from_hours(10 * 24);
    let old = cert::self_signed(&key, long_ago, Duration::from_hours(24)).unwrap();
    let pfx = dir.join("old.pfx");
    std::fs::write(
        &pfx,
        pfx::write(
            &Signer {
                key,
                cert: old,
                chain: Vec::new(),
            },
            "x",
        )
        .unwrap(),
    )
    .unwrap();
    let e = from_pfx(&pfx, "x", SystemTime::now())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("expired on") && e.contains("Renew it"), "{e}");
    let e = from_pfx(&pfx, "x", long_ago - Duration::from_hours(24))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("is not valid before") && e.contains("clock"),
        "{e}"
    );
    let e = from_pfx(&testdata("tls.pfx"), PASSWORD, SystemTime::now())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("allows only 1.3.6.1.5.5.7.3.1")
            && e.contains("Code Signing extended key usage (1.3.6.1.5.5.7.3.3)"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_pem_bundle_gives_the_chain_after_the_signing_certificate() {
    let contents = pfx::read(
        &std::fs::read(testdata("chain.pfx")).unwrap(),
        PASSWORD,
        "chain.pfx",
    )
    .unwrap();
    let dir = scratch("own-bundle");
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("leaf.key");
    let pem = rsa::pkcs8::EncodePrivateKey::to_pkcs8_pem(
        &contents.signer.key,
        rsa::pkcs8::LineEnding::LF,
    )
    .unwrap();
    crate::files::write_atomic_private(&key, pem.as_bytes()).unwrap();
    let bundle = dir.join("bundle.pem");
    let mut text = String::new();
    for c in std::iter::once(&contents.signer.cert)
        .chain(&contents.signer.chain)
        .chain(&contents.others)
    {
        text.push_str(&cert::to_pem(c).unwrap());
    }
    std::fs::write(&bundle, text).unwrap();
    let signer = from_pem(&key, &bundle, SystemTime::now()).unwrap();
    assert_eq!(signer.cert, contents.signer.cert);
    assert_eq!(signer.chain, contents.signer.chain);
    std::fs::remove_dir_all(&dir).unwrap();
}
