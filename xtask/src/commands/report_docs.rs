//! Doc honesty: each report's page in docs/reports/ names every field its type serializes, and no
//! field it does not (the pages' field tables are the documented schema).

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{Value, json};

use super::bench::{BenchReport, Measurement};
use super::build::{BuildReport, BuiltImage};
use super::emulate::{EmulateReport, EmulatedDriver};
use super::lint::{LintReport, LintViolation, LintedImage};
use super::test::{StageTime, TestReport};

/// Every field path of `v`: `a`, `a[].b`, ... (arrays contribute their elements' fields).
/// The harness's own report (`report`) is documented elsewhere and not descended into.
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
                if k != "report" && k != "versions" {
                    paths(child, &path, out);
                }
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

/// The field paths a page documents: the first cell of each row of its table, in backquotes.
fn documented(page: &str) -> BTreeSet<String> {
    page.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_owned)
        .collect()
}

/// The text of docs/reports/NAME.
pub(crate) fn page(name: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    std::fs::read_to_string(root.join("docs/reports").join(name))
        .unwrap_or_else(|e| panic!("docs/reports/{name}: {e}"))
}

/// The differences between what `sample` serializes and what the page documents: the fields it
/// writes that the page does not name, and those the page names that it does not write.
pub(crate) fn mismatch(
    sample: &impl serde::Serialize,
    page_text: &str,
) -> (Vec<String>, Vec<String>) {
    let v = serde_json::to_value(sample).unwrap();
    assert_eq!(v["schema"], 1, "the first field is the schema version");
    assert!(
        serde_json::to_string(sample)
            .unwrap()
            .starts_with("{\"schema\":1"),
        "`schema` must be the first field"
    );
    let mut serialized = BTreeSet::new();
    paths(&v, "", &mut serialized);
    let docs = documented(page_text);
    (
        serialized.difference(&docs).cloned().collect(),
        docs.difference(&serialized).cloned().collect(),
    )
}

fn assert_honest(name: &str, sample: &impl serde::Serialize) {
    let (undocumented, stale) = mismatch(sample, &page(name));
    assert!(
        undocumented.is_empty() && stale.is_empty(),
        "docs/reports/{name}: undocumented fields {undocumented:?}, documented fields the type does not write {stale:?}"
    );
    assert!(
        serde_json::to_string(sample)
            .unwrap()
            .starts_with("{\"schema\":1"),
        "{name}: `schema` must be the first field"
    );
}

#[test]
fn build_page_is_honest() {
    let r = BuildReport {
        schema: 1,
        passed: true,
        images: vec![BuiltImage {
            driver: "d".into(),
            arch: "x64",
            profile: "debug".into(),
            path: None,
            bytes: None,
            error: None,
        }],
    };
    assert_honest("build.md", &r);
}

#[test]
fn lint_page_is_honest() {
    let r = LintReport {
        schema: 1,
        passed: false,
        images: vec![LintedImage {
            path: "a.sys".into(),
            arch: "x64",
            passed: false,
            error: None,
            violations: vec![LintViolation {
                rule: "machine",
                subject: "s".into(),
                message: "m".into(),
            }],
        }],
    };
    assert_honest("lint.md", &r);
}

#[test]
fn emulate_page_is_honest() {
    let r = EmulateReport {
        schema: 1,
        passed: true,
        drivers: vec![EmulatedDriver {
            driver: "d".into(),
            status: "passed",
            harness_exit: Some(0),
            error: None,
            report: Some(json!({"schema": 1, "runs": []})),
        }],
    };
    assert_honest("emulate.md", &r);
}

/// Every key a bench row's details can hold: those in the `extra: json!({...})` literals of
/// bench/mod.rs, so that a new kind or key must be documented.
fn bench_detail_keys() -> BTreeSet<String> {
    let source = include_str!("bench/mod.rs");
    let mut keys = BTreeSet::new();
    for literal in source.split("extra: json!({").skip(1) {
        let body = literal.split("})").next().unwrap_or("");
        for piece in body.split('"').collect::<Vec<_>>().windows(2) {
            if piece[1].trim_start().starts_with(':') && !piece[0].contains(' ') {
                keys.insert(piece[0].to_owned());
            }
        }
    }
    keys
}

#[test]
fn bench_page_is_honest() {
    let keys = bench_detail_keys();
    for k in [
        "kind",
        "driver",
        "bytes",
        "callback",
        "versions",
        "cpu_seconds",
    ] {
        assert!(
            keys.contains(k),
            "bench/mod.rs's details should hold {k}: {keys:?}"
        );
    }
    let details: serde_json::Map<String, Value> =
        keys.iter().map(|k| (k.clone(), json!(0))).collect();
    let r = BenchReport {
        schema: 1,
        measurements: vec![Measurement {
            measure: "m".into(),
            value: 1.0,
            unit: "s",
            budget: None,
            budget_is_minimum: false,
            over_budget: false,
            details,
        }],
        over_budget: 0,
        errors: vec![],
    };
    assert_honest("bench.md", &r);
}

/// A stage of the test summary, every field set.
fn a_stage_time() -> StageTime {
    StageTime {
        stage: "gate".into(),
        passed: 1,
        failed: 0,
        seconds: 1.0,
        cpu_seconds: Some(1.5),
        xtask_cpu_seconds: Some(0.1),
    }
}

#[test]
fn test_page_is_honest() {
    let r = TestReport {
        schema: 1,
        stages: vec!["gate".into()],
        packages: vec![],
        passed: 1,
        failed: 0,
        failures: vec![],
        skipped: vec![],
        seconds: 1.0,
        stage_times: vec![a_stage_time()],
    };
    assert_honest("test.md", &r);
}

/// The checker itself: a page that misses a field, or names one the type does not write, fails.
#[test]
fn a_dishonest_page_is_caught() {
    let r = TestReport {
        schema: 1,
        stages: vec![],
        packages: vec![],
        passed: 0,
        failed: 0,
        failures: vec![],
        skipped: vec![],
        seconds: 0.0,
        stage_times: vec![a_stage_time()],
    };
    let honest = page("test.md");
    assert_eq!(mismatch(&r, &honest), (vec![], vec![]));
    let missing = honest.replace("| `seconds` |", "| seconds |");
    assert_eq!(mismatch(&r, &missing).0, ["seconds"]);
    let stale = format!("{honest}| `minutes` | number | gone |\n");
    assert_eq!(mismatch(&r, &stale).1, ["minutes"]);
    let mut nested = BTreeSet::new();
    paths(
        &json!({"a": [{"b": 1}], "report": {"x": 1}}),
        "",
        &mut nested,
    );
    assert_eq!(
        nested.into_iter().collect::<Vec<_>>(),
        ["a", "a[].b", "report"]
    );
}
