//! A package made from the test image and the primitive `.inx` of `testdata/`.

use super::*;
use crate::testimage;

const INX: &str = include_str!("../../testdata/primitive.inx");

fn scratch(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("driver-package-pkg-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn inx() -> String {
    INX.replace("ex-callback", "d")
}

#[test]
fn a_package_has_every_file_and_verifies() {
    let signer = crate::cert::tests::test_signer();
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_777_600_000); // 2026-05-01
    let inf = make_inf("d", "1.2.3", Arch::X64, inx().as_bytes(), "d.inx", time).unwrap();
    let sys = authenticode::sign_image(&testimage::good(), &signer).unwrap();
    let input = Input {
        name: "d",
        version: "1.2.3",
        arch: Arch::X64,
        profile: "debug",
        sys: &sys,
        inf: &inf,
        pdb: None,
        time,
    };
    let package = assemble(&input, &signer).unwrap();
    let dir = scratch("package").join("d");
    write(&package, &dir).unwrap();
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
    let m = &package.manifest;
    assert_eq!(m.driver_ver.as_deref(), Some("05/01/2026,1.2.3.0"));
    assert_eq!(m.service.as_deref(), Some("ExCallback"));
    assert_eq!(
        m.files["d.inf"].sha256,
        cert::hex(&Sha256::digest(inf.as_bytes()))
    );
    assert_eq!(
        m.files["d.sys"].authenticode_sha256.as_deref(),
        Some(cert::hex(&authenticode::image_sha256(&sys).unwrap()).as_str())
    );
    assert_eq!(m.signer, cert::describe(&signer.cert).unwrap());
    // The manifest on disk is the typed one, schema first.
    let text = std::fs::read_to_string(dir.join(MANIFEST)).unwrap();
    assert!(text.starts_with("{\n  \"schema\": 1,"), "{text}");
    let on_disk: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(on_disk, serde_json::to_value(m).unwrap());
    assert!(
        on_disk["files"]["d.inf"]
            .get("authenticode_sha256")
            .is_none()
    );
    // The package holds the certificate, never the key.
    for n in &names {
        let bytes = std::fs::read(dir.join(n)).unwrap();
        assert!(!bytes.windows(11).any(|w| w == b"PRIVATE KEY"), "{n}");
    }
    std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
}

#[test]
fn a_broken_inx_is_refused_with_its_line() {
    let time = SystemTime::now();
    let good = inx();
    let bad = good.replace("DefaultDestDir = 13", "DefaultDestDir = 12");
    let e = make_inf("d", "1.2.3", Arch::X64, bad.as_bytes(), "d.inx", time)
        .unwrap_err()
        .to_string();
    let line = 1 + good
        .lines()
        .position(|l| l.contains("DefaultDestDir"))
        .unwrap();
    assert!(e.contains(&format!("d.inx:{line}: DIRID 12")), "{e}");
    let e = make_inf("d", "1.2.3-beta", Arch::X64, good.as_bytes(), "d.inx", time)
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot be a DriverVer version"), "{e}");
}

#[test]
fn a_failed_write_leaves_the_previous_package_intact() {
    let signer = crate::cert::tests::test_signer();
    let time = SystemTime::now();
    let inf = make_inf("d", "1.0.0", Arch::Arm64, inx().as_bytes(), "d.inx", time).unwrap();
    let sys = authenticode::sign_image(&testimage::image(0xAA64, 0x200), &signer).unwrap();
    let input = Input {
        name: "d",
        version: "1.0.0",
        arch: Arch::Arm64,
        profile: "release",
        sys: &sys,
        inf: &inf,
        pdb: Some(b"pdb"),
        time,
    };
    let package = assemble(&input, &signer).unwrap();
    assert_eq!(package.manifest.catalog.os, "_v100_ARM64_22H2");
    assert!(package.files.iter().any(|(n, _)| n == "d.pdb"));
    let root = scratch("package-fail");
    let dir = root.join("d");
    write(&package, &dir).unwrap();
    let before = std::fs::read(dir.join("d.cat")).unwrap();
    // A file name that cannot be written fails the write; the old folder stays.
    let mut broken = package.clone();
    broken.files.push(("no/such/folder/x".into(), vec![1]));
    assert!(write(&broken, &dir).is_err());
    assert_eq!(std::fs::read(dir.join("d.cat")).unwrap(), before);
    let leftovers: Vec<_> = std::fs::read_dir(&root).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "only the package folder");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn source_date_epoch_must_be_a_number() {
    assert_eq!(parse_source_date_epoch(None).unwrap(), None);
    assert_eq!(parse_source_date_epoch(Some(" ")).unwrap(), None);
    assert_eq!(
        parse_source_date_epoch(Some("1700000000")).unwrap(),
        Some(1_700_000_000)
    );
    let e = parse_source_date_epoch(Some("yesterday"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("SOURCE_DATE_EPOCH=`yesterday`"), "{e}");
}
