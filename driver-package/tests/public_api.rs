//! The crate used the way its README shows, through its public API only: a certificate folder,
//! a signed image, an INF, a package folder written and read back.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use driver_package::{Arch, authenticode, catalog, cert, package};

/// What `testimage` reads as `super::pe`.
mod pe {
    pub use driver_package::pe::*;
}
#[path = "../src/testimage.rs"]
#[allow(dead_code)] // the unit tests use the rest
mod testimage;

const INX: &str = include_str!("../testdata/primitive.inx");

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("driver-package-api-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn a_driver_is_test_signed_and_packaged_with_the_public_api() {
    let root = scratch("readme");
    let certs = root.join("certs");
    let (signer, created) = cert::load_or_create(&certs).unwrap();
    assert!(created);
    let (again, created) = cert::load_or_create(&certs).unwrap();
    assert!(!created, "the folder's pair is reused");
    assert_eq!(again.cert, signer.cert);

    let image = testimage::image(Arch::X64.machine(), 0x400);
    let sys = authenticode::sign_image(&image, &signer).unwrap();
    authenticode::verify_image(&sys, &signer.cert).unwrap();
    assert!(authenticode::embedded_signature(&sys).unwrap().is_some());

    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_777_600_000);
    let inx = INX.replace("ex-callback", "my_driver");
    let inf = package::make_inf(
        "my_driver",
        "1.0.0",
        Arch::X64,
        inx.as_bytes(),
        "my_driver.inx",
        time,
    )
    .unwrap();
    let input = package::Input {
        name: "my_driver",
        version: "1.0.0",
        arch: Arch::X64,
        profile: "release",
        sys: &sys,
        inf: &inf,
        pdb: None,
        time,
    };
    let made = package::assemble(&input, &signer).unwrap();
    let dest = root.join("out").join("my_driver");
    package::write(&made, &dest).unwrap();

    let cat = std::fs::read(dest.join("my_driver.cat")).unwrap();
    let read = catalog::read(&cat, Some(&signer.cert)).unwrap();
    assert!(read.member("my_driver.sys").is_some());
    assert!(read.member("my_driver.inf").is_some());
    let cer = cert::read_certificate(&dest.join(cert::CERT_FILE)).unwrap();
    assert_eq!(cer, signer.cert);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dest.join(package::MANIFEST)).unwrap()).unwrap();
    assert_eq!(manifest["driver_ver"], "05/01/2026,1.0.0.0");
    assert_eq!(
        manifest["signer"]["thumbprint_sha1"],
        made.manifest.signer.thumbprint_sha1
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn errors_are_std_errors_that_name_the_cause() {
    let e: Box<dyn std::error::Error> =
        Box::new(authenticode::sign_image(b"not an image", &signer()).unwrap_err());
    assert!(e.to_string().contains("not a PE image"), "{e}");
    let e = cert::load(&scratch("none"), SystemTime::now())
        .unwrap_err()
        .to_string();
    assert!(e.contains("is missing"), "{e}");
}

/// One generated signer for the tests that need any (an RSA key takes seconds to generate
/// unoptimized; `cert::generate` is still exercised, once).
fn signer() -> driver_package::pkcs7::Signer {
    static SIGNER: std::sync::OnceLock<driver_package::pkcs7::Signer> = std::sync::OnceLock::new();
    SIGNER
        .get_or_init(|| cert::generate(SystemTime::now(), Duration::from_hours(1)).unwrap())
        .clone()
}

#[test]
fn a_signer_debug_shows_the_certificate_not_the_key() {
    let s = signer();
    let shown = format!("{s:?}");
    assert!(shown.contains("not for production"), "{shown}");
    assert!(shown.contains("<RSA private key>"), "{shown}");
    assert!(!shown.contains("RsaPrivateKey"), "{shown}");
}
