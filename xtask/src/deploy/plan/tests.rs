//! The plan's tests: snapshots of whole plans, the command-line limit, quoting, the rules.

use super::*;
use std::fmt::Write as _;

use crate::deploy::transport::{Ssh, Transport};

/// The samples' files these tests read, copied into `testdata/` (and ex-callback's `.inx` as
/// driver-package's test data) so that a standalone workspace without the samples
/// (`cargo xtask new --path`) runs them too: (copy, sample's file).
const COPIES: [(&str, &str); 4] = [
    (
        "xtask/src/deploy/plan/testdata/cm-filter.inx",
        "cm-filter/cm-filter.inx",
    ),
    (
        "xtask/src/deploy/plan/testdata/cm-filter-deploy.toml",
        "cm-filter/deploy.toml",
    ),
    (
        "xtask/src/deploy/plan/testdata/ex-callback-deploy.toml",
        "ex-callback/deploy.toml",
    ),
    (
        "driver-package/testdata/primitive.inx",
        "ex-callback/ex-callback.inx",
    ),
];

/// The copies are the samples' files, wherever the samples are in the workspace: a sample changed
/// without its copy fails here (copy it again).
#[test]
fn the_test_data_are_the_samples_files() {
    let root = crate::base::workspace::project_root();
    for (copy, sample) in COPIES {
        let Ok(original) = std::fs::read(root.join(sample)) else {
            assert!(
                !root.join(sample.split('/').next().unwrap()).exists(),
                "{sample} is missing from its sample"
            );
            continue; // a workspace without this sample (`cargo xtask new --path`)
        };
        assert!(
            std::fs::read(root.join(copy)).unwrap() == original,
            "{copy} differs from {sample}: copy it again (cp {sample} {copy})"
        );
    }
}

/// A cm-filter package as `Package::read` makes it from a real package (fixed values).
pub fn cm_filter() -> Package {
    let inf = include_str!("testdata/cm-filter.inx").replace("$ARCH$", "amd64");
    let (service, display_name, service_values) = service_from_inf(&inf, Arch::X64).unwrap();
    Package {
        driver: "cm-filter".into(),
        service,
        display_name,
        dir: "/home/me/drivers/target/packages/x64/debug/cm-filter".into(),
        files: vec![
            (
                "callback-drivers-test.cer".into(),
                "7ACEAFBCB49B195893F421E327026A5BEA64E784AFF7540894387C44636FC1B7".into(),
            ),
            ("cm-filter.sys".into(), "AB".repeat(32)),
        ],
        thumbprint: "34AD27DCCAAC93ADCE84B84DB07823E8F1570848".into(),
        cert_file: driver_package::cert::CERT_FILE.into(),
        service_values,
        probe: probe::parse_probe(include_str!("testdata/cm-filter-deploy.toml")).unwrap(),
    }
}

/// An ex-callback package (no registry values, the default-style probe).
pub fn ex_callback() -> Package {
    let inf = include_str!("../../../../driver-package/testdata/primitive.inx")
        .replace("$ARCH$", "amd64");
    let (service, display_name, service_values) = service_from_inf(&inf, Arch::X64).unwrap();
    Package {
        driver: "ex-callback".into(),
        service,
        display_name,
        dir: "/home/me/drivers/target/packages/x64/debug/ex-callback".into(),
        files: vec![("ex-callback.sys".into(), "CD".repeat(32))],
        thumbprint: "34AD27DCCAAC93ADCE84B84DB07823E8F1570848".into(),
        cert_file: driver_package::cert::CERT_FILE.into(),
        service_values,
        probe: probe::parse_probe(include_str!("testdata/ex-callback-deploy.toml")).unwrap(),
    }
}

fn ssh() -> Ssh {
    Ssh::new(Some("admin".into()), "testvm".into(), Some(2222))
}

/// Compares `actual` with `snapshots/NAME`; `XTASK_BLESS=1` writes it instead.
fn snapshot(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/deploy/snapshots")
        .join(name);
    if std::env::var_os("XTASK_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} is missing: run with XTASK_BLESS=1", path.display()));
    if expected != actual {
        let diff = expected
            .lines()
            .zip(actual.lines())
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .map_or_else(
                || "lengths differ".to_owned(),
                |(i, (a, b))| format!("line {}:\n  expected: {a}\n  actual:   {b}", i + 1),
            );
        panic!(
            "{} differs from the plan ({diff}); if the change is intended, run the tests with XTASK_BLESS=1 and review the diff",
            path.display()
        );
    }
}

fn spaced_options() -> Options {
    Options {
        remote_dir: r"C:\Test Drivers\it's deploy".into(),
        ..Options::default()
    }
}

#[test]
fn the_ssh_plan_of_cm_filter_is_the_snapshot() {
    let plan = build(
        "ssh://admin@testvm:2222",
        &Via::Ssh,
        &[cm_filter()],
        &spaced_options(),
    )
    .unwrap();
    snapshot("ssh-cm-filter.txt", &render(&plan, &ssh()));
}

#[test]
fn the_hyperv_plan_with_snapshot_and_inf_install_is_the_snapshot() {
    let options = Options {
        install: Install::Inf,
        snapshot: Some("clean".into()),
        revert_after_failure: true,
        enable_testsigning: true,
        keep: true,
        ..Options::default()
    };
    let h = HyperV {
        vm: "Win11 Test".into(),
        credential: r"C:\Users\me\.config\windows-callback-drivers\hyperv-Win11 Test.xml".into(),
    };
    let plan = build(
        "hyperv:Win11 Test",
        &Via::HyperV {
            vm: "Win11 Test".into(),
        },
        &[ex_callback(), cm_filter()],
        &options,
    )
    .unwrap();
    snapshot("hyperv-inf-snapshot.txt", &render(&plan, &h));
}

#[test]
fn exact_command_lines_are_the_snapshot() {
    let plan = build(
        "ssh://admin@testvm:2222",
        &Via::Ssh,
        &[cm_filter()],
        &spaced_options(),
    )
    .unwrap();
    let t = ssh();
    let mut out = String::new();
    for s in plan.steps() {
        match &s.run {
            Run::Guest(script) if matches!(s.id, "preflight" | "install" | "stop") => {
                let _ = writeln!(out, "# {}\n{}\n", s.id, t.show_guest(script, true));
            }
            Run::Upload(items) => {
                let _ = writeln!(out, "# {}\n{}\n", s.id, t.show_upload(items));
            }
            _ => {}
        }
    }
    snapshot("ssh-cm-filter-command-lines.txt", &out);
}

#[test]
fn every_step_fits_cmd_exe_and_decodes_back() {
    let options = Options {
        install: Install::Inf,
        enable_testsigning: true,
        ..spaced_options()
    };
    for install in [Install::Sc, Install::Inf] {
        let plan = build(
            "ssh://a@b",
            &Via::Ssh,
            &[cm_filter(), ex_callback()],
            &Options {
                install,
                ..options.clone()
            },
        )
        .unwrap();
        let h = HyperV {
            vm: "vm".into(),
            credential: r"C:\c.xml".into(),
        };
        for s in plan.steps() {
            if let Run::Guest(script) = &s.run {
                let line = ps::command_line(script);
                assert!(
                    line.len() < ps::CMD_LIMIT,
                    "{}: {} characters, more than cmd.exe takes",
                    s.id,
                    line.len()
                );
                let b64 = line.rsplit(' ').next().unwrap();
                assert_eq!(ps::decode(b64).as_deref(), Some(script.as_str()));
                let host = HyperV::host_argv(&h.guest_wrapper(script)).join(" ");
                assert!(host.len() < ps::CREATE_PROCESS_LIMIT, "{}", s.id);
            }
        }
    }
    let pm = ps::command_line(&post_mortem_script(REMOTE_DIR));
    assert!(pm.len() < ps::CMD_LIMIT);
}

#[test]
fn paths_with_spaces_and_quotes_are_quoted_once() {
    let plan = build("ssh://a@b", &Via::Ssh, &[cm_filter()], &spaced_options()).unwrap();
    let install = &plan.drivers[0].steps[0];
    let Run::Guest(script) = &install.run else {
        panic!()
    };
    assert!(
        script.contains(
            "BinPath = 'C:\\Test Drivers\\it''s deploy\\cm-filter\\cm-filter.sys'; DisplayName = 'cm-filter sample driver'"
        ),
        "{script}"
    );
    // The INF's Parameters\Altitude, applied by the sc install.
    assert!(script.contains(
        "Values = @(@{ Key = 'HKLM:\\SYSTEM\\CurrentControlSet\\Services\\CmFilter\\Parameters'; Name = 'Altitude'; Kind = 'String'; Data = '385201.5' })"
    ), "{script}");
    let Run::Upload(items) = &plan.setup.iter().find(|s| s.id == "copy").unwrap().run else {
        panic!()
    };
    assert_eq!(items[0].remote, r"C:\Test Drivers\it's deploy\cm-filter");
    let e = build(
        "ssh://a@b",
        &Via::Ssh,
        &[cm_filter()],
        &Options {
            remote_dir: r#"C:\a"b"#.into(),
            ..Options::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("double quote"), "{e}");
    for bad in [
        "relative\\dir",
        "C:/fwd",
        "C:\\trailing\\",
        "\\\\server\\share",
    ] {
        let o = Options {
            remote_dir: bad.into(),
            ..Options::default()
        };
        assert!(
            build("ssh://a@b", &Via::Ssh, &[cm_filter()], &o).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn failure_and_keep_rules_are_in_the_data() {
    let plan = build("ssh://a@b", &Via::Ssh, &[cm_filter()], &Options::default()).unwrap();
    let ids: Vec<&str> = plan.steps().map(|s| s.id).collect();
    assert_eq!(
        ids,
        [
            "preflight",
            "leftovers",
            "copy",
            "check-copy",
            "trust",
            "trace-start",
            "install",
            "start",
            "probe",
            "stop",
            "unloaded",
            "remove",
            "events",
            "trace-stop",
            "remove-files"
        ]
    );
    let d = &plan.drivers[0].steps;
    let by = |id: &str| d.iter().find(|s| s.id == id).unwrap();
    assert_eq!(by("stop").cleanup, Cleanup::After("start"));
    assert_eq!(by("remove").cleanup, Cleanup::After("install"));
    assert_eq!(by("events").cleanup, Cleanup::Always);
    assert_eq!(by("probe").timeout, Duration::from_secs(122));
    let kept = build(
        "ssh://a@b",
        &Via::Ssh,
        &[cm_filter()],
        &Options {
            keep: true,
            ..Options::default()
        },
    )
    .unwrap();
    assert!(
        kept.steps()
            .filter(|s| s.when == When::Kept)
            .map(|s| s.id)
            .eq(["remove", "remove-files"])
    );
}

#[test]
fn snapshot_options_are_checked() {
    let err = |o: Options, via: &Via| build("t", via, &[cm_filter()], &o).unwrap_err().to_string();
    let snap = Options {
        snapshot: Some("clean".into()),
        ..Options::default()
    };
    assert!(err(snap.clone(), &Via::Ssh).contains("needs --libvirt DOMAIN"));
    let hv = Via::HyperV { vm: "v".into() };
    assert!(
        err(
            Options {
                libvirt: Some("d".into()),
                ..snap.clone()
            },
            &hv
        )
        .contains("--libvirt is for VMs reached over ssh")
    );
    assert!(
        err(
            Options {
                revert_after_failure: true,
                ..Options::default()
            },
            &Via::Ssh
        )
        .contains("needs --snapshot")
    );
    let plan = build(
        "ssh://a@b",
        &Via::Ssh,
        &[cm_filter()],
        &Options {
            libvirt: Some("win11".into()),
            revert_after_failure: true,
            ..snap
        },
    )
    .unwrap();
    let Run::Host { argv, .. } = &plan.setup[0].run else {
        panic!()
    };
    assert_eq!(
        argv,
        &[
            "virsh",
            "-c",
            "qemu:///system",
            "snapshot-revert",
            "win11",
            "clean",
            "--running"
        ]
    );
    assert_eq!(plan.setup[1].run, Run::WaitForGuest { new_boot: false });
    assert_eq!(plan.teardown[2].cleanup, Cleanup::OnlyOnFailure);
}

#[test]
fn service_values_come_from_the_inf() {
    let p = cm_filter();
    assert_eq!(
        (p.service.as_str(), p.display_name.as_str()),
        ("CmFilter", "cm-filter sample driver")
    );
    assert_eq!(
        p.service_values,
        [RegValue {
            subkey: "Parameters".into(),
            name: "Altitude".into(),
            kind: "String",
            data: "385201.5".into()
        }]
    );
    let inf = include_str!("testdata/cm-filter.inx")
        .replace("$ARCH$", "amd64")
        .replace("0x00000000,\"385201.5\"", "0x00020000,\"%SystemRoot%\"");
    let e = service_from_inf(&inf, Arch::X64).unwrap_err().to_string();
    assert!(e.contains("use --install inf"), "{e}");
}
