//! Doc honesty for `deploy --json`: each table of docs/reports/deploy.md names every field its
//! type serializes, and no field it does not. The samples are real: a whole plan on the fake VM
//! (a failure, a skipped step, events and probes) and the plans of both transports with a
//! snapshot (guest, host, upload and wait steps).

use super::{DeployReport, DryRunReport};
use crate::commands::report_docs::{mismatch, page};
use crate::deploy::plan::tests::cm_filter;
use crate::deploy::plan::{self, Options, Via};
use crate::deploy::transport::{HyperV, Ssh};
use crate::deploy::{exec, report};

/// The part of docs/reports/deploy.md under the heading that starts with `heading`, up to the
/// next heading of the same level.
fn section(heading: &str) -> String {
    let page = page("deploy.md");
    let start = page
        .find(&format!("\n## {heading}"))
        .unwrap_or_else(|| panic!("docs/reports/deploy.md has no `## {heading}`"));
    let rest = &page[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    rest[..end].to_owned()
}

fn report_sample() -> DeployReport {
    use crate::deploy::fake::{FakeTransport, FakeVm};
    let packages = [cm_filter()];
    let plan = plan::build(
        "ssh://admin@testvm",
        &Via::Ssh,
        &packages,
        &Options::default(),
    )
    .unwrap();
    let run = |vm: FakeVm, plan: &plan::Plan| {
        let mut vm = vm;
        for p in &packages {
            vm.files.insert(p.driver.clone(), p.files.clone());
        }
        let t = FakeTransport {
            vm: std::sync::Mutex::new(vm),
            known: packages
                .iter()
                .map(|p| (p.service.clone(), p.driver.clone()))
                .collect(),
        };
        let pace = exec::Pace {
            poll: std::time::Duration::from_millis(1),
            attempt: std::time::Duration::from_millis(50),
        };
        report::to_json(&exec::execute(plan, &t, &|_| {}, pace))
    };
    let good = run(FakeVm::new(), &plan);
    let mut failing = FakeVm::new();
    failing.start_error = Some(577);
    let bad = run(failing, &plan);
    assert!(good.ok && !bad.ok);
    // --verifier, --kdnet and --fetch-dump, with a bugcheck during the probe and its dump
    // copied: every field of theirs written.
    let debugging = plan::build(
        "ssh://admin@testvm",
        &Via::Ssh,
        &packages,
        &Options {
            verifier: Some(crate::deploy::verifier::Flags(0x20)),
            kdnet: Some(crate::deploy::kdnet::Kdnet::parse("192.168.1.10:50000").unwrap()),
            fetch_dump: true,
            dump_dir: std::env::temp_dir().join(format!("xtask-report-doc-{}", std::process::id())),
            reboot_timeout: std::time::Duration::from_secs(5),
            ..Options::default()
        },
    )
    .unwrap();
    let mut crashing = FakeVm::new();
    // preflight, kdnet, the wait, leftovers, check-copy, trust, verifier, trace-start, install,
    // start, probe, verifier-stats; stop is lost.
    crashing.dies_after = Some(12);
    crashing.silent_for = 3;
    let crashed = run(crashing, &debugging);
    assert!(
        crashed
            .crash
            .as_ref()
            .is_some_and(|c| c.dump.is_some() && c.bugcheck.is_some())
    );
    assert!(crashed.drivers[0].verifier.is_some() && crashed.kdnet.is_some());
    DeployReport {
        schema: 1,
        targets: vec![good, bad, crashed],
    }
}

fn dry_run_sample() -> DryRunReport {
    let packages = [cm_filter()];
    let snap = Options {
        snapshot: Some("clean".into()),
        libvirt: Some("win11".into()),
        revert_after_failure: true,
        ..Options::default()
    };
    let ssh = Ssh::new(Some("admin".into()), "testvm".into(), None);
    let hyperv = HyperV {
        vm: "Test".into(),
        credential: "c.xml".into(),
    };
    let a = plan::build("ssh://admin@testvm", &Via::Ssh, &packages, &snap).unwrap();
    let hv = Options {
        libvirt: None,
        ..snap
    };
    let b = plan::build(
        "hyperv:Test",
        &Via::HyperV { vm: "Test".into() },
        &packages,
        &hv,
    )
    .unwrap();
    DryRunReport {
        schema: 1,
        plans: vec![plan::to_json(&a, &ssh), plan::to_json(&b, &hyperv)],
    }
}

#[test]
fn the_report_table_names_every_field_and_no_other() {
    let (undocumented, stale) = mismatch(&report_sample(), &section("Report"));
    assert!(
        undocumented.is_empty() && stale.is_empty(),
        "docs/reports/deploy.md, Report: undocumented fields {undocumented:?}, documented fields the type does not write {stale:?}"
    );
}

#[test]
fn the_plan_table_names_every_field_and_no_other() {
    let (undocumented, stale) = mismatch(&dry_run_sample(), &section("Plan"));
    assert!(
        undocumented.is_empty() && stale.is_empty(),
        "docs/reports/deploy.md, Plan: undocumented fields {undocumented:?}, documented fields the type does not write {stale:?}"
    );
}

/// The checker itself: a table that misses a field, or names one the type does not write, fails.
#[test]
fn a_dishonest_table_is_caught() {
    let sample = dry_run_sample();
    let honest = section("Plan");
    assert_eq!(mismatch(&sample, &honest), (vec![], vec![]));
    let missing = honest.replace("| `plans[].arch` |", "| plans[].arch |");
    assert_eq!(mismatch(&sample, &missing).0, ["plans[].arch"]);
    let stale = format!("{honest}| `plans[].os` | string | gone |\n");
    assert_eq!(mismatch(&sample, &stale).1, ["plans[].os"]);
    // The other document's fields are not this one's.
    assert!(!mismatch(&sample, &section("Report")).0.is_empty());
}
