use super::*;
use crate::cert::tests::{test_key, test_signer};

const PASSWORD: &str = "Secret-1";

fn testdata(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/pfx")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

use std::path::Path;

fn openssl_cert() -> Certificate {
    crate::own::tests::pem_cert(&testdata("cert.pem"))
}

#[test]
fn what_we_write_reads_back_with_the_password_only() {
    let signer = test_signer();
    let der = write(&signer, "pässwörd").unwrap();
    let back = read(&der, "pässwörd", "t.pfx").unwrap();
    assert_eq!(back.signer.cert, signer.cert);
    assert_eq!(back.signer.key, signer.key);
    assert!(back.others.is_empty());
    let e = read(&der, "password", "t.pfx").err().unwrap().to_string();
    assert!(
        e.contains("t.pfx: wrong password") && e.contains("XTASK_PFX_PASSWORD"),
        "{e}"
    );
    // Both bags carry the localKeyId that pairs them on import (the certificate's SHA-1).
    let pfx = Pfx::from_der(&der).unwrap();
    let safes =
        Vec::<ContentInfo>::from_der(&octets(&pfx.auth_safe.content, "t").unwrap()).unwrap();
    assert_eq!(safes.len(), 2);
    assert_eq!(
        safes[0].content_type, ID_ENCRYPTED_DATA,
        "the certificate is encrypted too"
    );
    let key_bags = SafeContents::from_der(&octets(&safes[1].content, "t").unwrap()).unwrap();
    let attrs = key_bags[0].bag_attributes.as_ref().unwrap();
    let id = attrs.iter().find(|a| a.oid == LOCAL_KEY_ID).unwrap();
    let want = Sha1::digest(signer.cert.to_der().unwrap()).to_vec();
    let got: OctetString = id.values.iter().next().unwrap().decode_as().unwrap();
    assert_eq!(got.as_bytes(), want.as_slice());
}

#[test]
fn openssl_files_are_read_modern_and_legacy() {
    let cert = openssl_cert();
    // OpenSSL 3's default: PBES2 AES-256, SHA-256 MAC; exported with a second (CA) certificate,
    // listed first: the signer is the certificate of the key, not the first one.
    let aes = read(&testdata("aes.pfx"), PASSWORD, "aes.pfx").unwrap();
    assert_eq!(aes.signer.cert, cert);
    assert_eq!(aes.others.len(), 1);
    assert!(
        aes.others[0]
            .tbs_certificate
            .subject
            .to_string()
            .contains("Contoso Test CA")
    );
    // -legacy: key in 3DES, certificate in RC2-40, SHA-1 MAC.
    let legacy = read(&testdata("legacy.pfx"), PASSWORD, "legacy.pfx").unwrap();
    assert_eq!(legacy.signer.cert, cert);
    assert_eq!(legacy.signer.key, aes.signer.key);
    for name in ["aes.pfx", "legacy.pfx"] {
        let e = read(&testdata(name), "Secret-2", name)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("wrong password"), "{name}: {e}");
    }
}

#[test]
fn a_pfx_without_a_key_or_with_someone_elses_certificate_is_refused() {
    let e = read(&testdata("nokey.pfx"), PASSWORD, "nokey.pfx")
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("nokey.pfx holds no private key (only 1 certificate(s))")
            && e.contains("--key KEY.pem --cert CERT.pem"),
        "{e}"
    );
    // A key paired with the certificate of another key.
    let other = Signer {
        key: test_key(),
        cert: openssl_cert(),
        chain: Vec::new(),
    };
    let der = write(&other, "x").unwrap();
    let e = read(&der, "x", "mixed.pfx").err().unwrap().to_string();
    assert!(e.contains("is the certificate of its private key"), "{e}");
}

#[test]
fn what_is_not_a_pfx_is_refused_and_ber_is_named() {
    let e = read(b"not a pfx", "x", "a.pfx").err().unwrap().to_string();
    assert!(e.contains("a.pfx is not a PKCS#12"), "{e}");
    let e = read(&[0x30, 0x80, 0x02, 0x01, 0x03, 0, 0], "x", "b.pfx")
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("BER (indefinite lengths)") && e.contains("openssl pkcs12"),
        "{e}"
    );
    // A changed byte in the protected data fails the MAC.
    let mut der = write(&test_signer(), "x").unwrap();
    let n = der.len();
    der[n - 80] ^= 1;
    assert!(read(&der, "x", "c.pfx").is_err());
}

#[test]
fn a_ca_issued_certificate_brings_its_intermediate_and_signatures_embed_it() {
    // Root → "Contoso Test Code Signing CA" → the signing certificate; the file lists both CAs.
    let read_back = read(&testdata("chain.pfx"), PASSWORD, "chain.pfx").unwrap();
    let name = |c: &Certificate| c.tbs_certificate.subject.to_string();
    assert!(name(&read_back.signer.cert).contains("Contoso Driver Signing"));
    let chain: Vec<String> = read_back.signer.chain.iter().map(name).collect();
    assert_eq!(chain, ["CN=Contoso Test Code Signing CA"]);
    let others: Vec<String> = read_back.others.iter().map(name).collect();
    assert_eq!(
        others,
        ["CN=Contoso Test Root"],
        "the root stays out of signatures"
    );
    // A signature carries the signer and the intermediate, and verifies with the signer found by
    // its issuer and serial (whatever the order of the certificate set).
    let signed = crate::pkcs7::sign(&read_back.signer, crate::pkcs7::oid::CTL, &[0x30, 0]).unwrap();
    crate::pkcs7::verify(&signed, Some(&read_back.signer.cert)).unwrap();
    let info = ContentInfo::from_der(&signed).unwrap();
    let sd: cms::signed_data::SignedData = info.content.decode_as().unwrap();
    assert_eq!(sd.certificates.unwrap().0.len(), 2);
}
