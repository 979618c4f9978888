//! `cargo xtask package` on a scratch workspace: every file made, and failures that leave the
//! previous package intact.

use super::*;
use crate::base::files;
use crate::base::layout::Layout;
use crate::commands::sign::tests::{scratch, test_signer};
use driver_package::{authenticode, catalog, cert};
use sha2::{Digest, Sha256};
use std::time::Duration;

fn scratch_ws(name: &str) -> (Workspace, Driver) {
    let root = scratch(name);
    let driver_dir = root.join("d");
    std::fs::create_dir_all(&driver_dir).unwrap();
    let ws = Workspace {
        root: root.clone(),
        layout: Layout::new(root.join("target")),
        drivers: vec![],
    };
    let inx = include_str!("../../../../driver-package/testdata/primitive.inx")
        .replace("ex-callback", "d");
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
    files::write_atomic(&sys, &crate::image::testimage::good()).unwrap();
    (ws, d)
}

#[test]
fn a_package_has_every_file_and_verifies() {
    let (ws, d) = scratch_ws("package");
    let signer = test_signer();
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_777_600_000); // 2026-05-01
    let (dir, manifest) = package_one(&ws, &d, Arch::X64, Profile::Debug, &signer, time).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [cert::CERT_FILE, "d.cat", "d.inf", "d.sys", pkg::MANIFEST]
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
    assert_eq!(manifest.driver_ver.as_deref(), Some("05/01/2026,1.2.3.0"));
    assert_eq!(manifest.service.as_deref(), Some("ExCallback"));
    assert_eq!(
        manifest.files["d.inf"].sha256,
        cert::hex(&Sha256::digest(inf.as_bytes()))
    );
    assert_eq!(
        manifest.signer.thumbprint_sha1,
        cert::describe(&signer.cert).unwrap().thumbprint_sha1
    );
    // The --json report: schema first, the manifest of each package made.
    let made = [Packaged {
        driver: "d".into(),
        arch: Arch::X64,
        profile: Profile::Debug,
        result: Ok((dir.clone(), manifest.clone())),
    }];
    let report = serde_json::to_value(PackageReport::new(&made)).unwrap();
    assert_eq!(report["schema"], 1);
    assert_eq!(report["packages"][0]["manifest"]["schema"], 1);
    assert!(report["packages"][0].get("error").is_none());
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
    let signer = test_signer();
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

/// Every object key in `v`, recursively; the keys of a `files` object are file names, not fields,
/// so only its values are walked.
pub(crate) fn field_names(v: &serde_json::Value, out: &mut std::collections::BTreeSet<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, child) in map {
                out.insert(k.clone());
                if k == "files"
                    && let Some(files) = child.as_object()
                {
                    files.values().for_each(|f| field_names(f, out));
                } else {
                    field_names(child, out);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| field_names(i, out)),
        _ => {}
    }
}

/// The fields `v` serializes that `doc` does not name in backticks.
pub(crate) fn undocumented(v: &serde_json::Value, doc: &str) -> Vec<String> {
    let mut names = std::collections::BTreeSet::new();
    field_names(v, &mut names);
    names
        .into_iter()
        .filter(|n| !doc.contains(&format!("`{n}`")))
        .collect()
}

#[test]
fn docs_reports_package_md_names_every_field_of_the_report_and_the_manifest() {
    let (ws, d) = scratch_ws("package-doc");
    let signer = test_signer();
    let (dir, manifest) = package_one(
        &ws,
        &d,
        Arch::X64,
        Profile::Debug,
        &signer,
        SystemTime::now(),
    )
    .unwrap();
    let made = [
        Packaged {
            driver: "d".into(),
            arch: Arch::X64,
            profile: Profile::Debug,
            result: Ok((dir, manifest)),
        },
        Packaged {
            driver: "e".into(),
            arch: Arch::Arm64,
            profile: Profile::Release,
            result: Err(Error::new("no built image")),
        },
    ];
    let mut report = PackageReport::new(&made);
    let for_cab = submission::made_for(&made, Arch::X64);
    assert_eq!(for_cab.len(), 1, "the failed arm64 package is not in a CAB");
    report.submissions.push(
        submission::write_cab(&ws, &for_cab, Arch::X64, Profile::Debug, SystemTime::now()).unwrap(),
    );
    let report = serde_json::to_value(report).unwrap();
    assert_eq!(
        report["submissions"][0]["files"][0]["name"], "d\\d.sys",
        "{report}"
    );
    let doc = include_str!("../../../../docs/reports/package.md");
    assert_eq!(undocumented(&report, doc), Vec::<String>::new());
    // The check itself: a field the document does not name is reported.
    let extra = serde_json::json!({"schema": 1, "packages": [{"undocumented_field": 1}]});
    assert_eq!(undocumented(&extra, doc), ["undocumented_field"]);
    std::fs::remove_dir_all(&ws.root).unwrap();
}
