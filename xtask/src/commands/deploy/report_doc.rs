//! Doc honesty for `deploy --json`: each table of docs/reports/deploy.md names every field its
//! type serializes, and no field it does not. The samples are real: a whole plan on the fake VM
//! (a failure, a skipped step, events and probes) and the plans of both transports with a
//! snapshot (guest, host, upload and wait steps).

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use super::{DeployReport, DryRunReport};
use crate::deploy::plan::tests::cm_filter;
use crate::deploy::plan::{self, Options, Via};
use crate::deploy::transport::{HyperV, Ssh};
use crate::deploy::{exec, report};

/// Every field path of `v`: `a`, `a[].b`, ... (arrays contribute their elements' fields).
fn paths(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.insert(path.clone());
                paths(child, &path, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                paths(item, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

/// The field paths a page documents: the first cell of each row of its tables, in backquotes.
fn documented(page: &str) -> BTreeSet<String> {
    page.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_owned)
        .collect()
}

/// The part of docs/reports/deploy.md under the heading that starts with `heading`, up to the
/// next heading of the same level.
fn section(heading: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let page = std::fs::read_to_string(root.join("docs/reports/deploy.md"))
        .expect("docs/reports/deploy.md");
    let start = page
        .find(&format!("\n## {heading}"))
        .unwrap_or_else(|| panic!("docs/reports/deploy.md has no `## {heading}`"));
    let rest = &page[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    rest[..end].to_owned()
}

/// The fields `sample` writes that `page` does not name, and those it names that are not written.
fn mismatch(sample: &impl serde::Serialize, page: &str) -> (Vec<String>, Vec<String>) {
    let v = serde_json::to_value(sample).unwrap();
    assert_eq!(v["schema"], 1, "the first field is the schema version");
    assert!(
        serde_json::to_string(sample)
            .unwrap()
            .starts_with("{\"schema\":1"),
        "`schema` must be the first field"
    );
    let mut written = BTreeSet::new();
    paths(&v, "", &mut written);
    let docs = documented(page);
    (
        written.difference(&docs).cloned().collect(),
        docs.difference(&written).cloned().collect(),
    )
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
    let run = |vm: FakeVm| {
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
        report::to_json(&exec::execute(&plan, &t, &|_| {}, pace))
    };
    let good = run(FakeVm::new());
    let mut failing = FakeVm::new();
    failing.start_error = Some(577);
    let bad = run(failing);
    assert!(good.ok && !bad.ok);
    DeployReport {
        schema: 1,
        targets: vec![good, bad],
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
