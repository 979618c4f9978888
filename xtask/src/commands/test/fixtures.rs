//! The negative emulation fixtures: drivers broken on purpose, which the harness must catch.
//!
//! A fixture is a driver package with `fixture = true` in `[package.metadata.driver]`. Each
//! `scenario*.toml` beside its `Cargo.toml` selects one defect and says, in its `[expect]` table,
//! which failures the audit must report (`failures`, each a substring of a reported failure), which
//! audit rules must be among them, by name (`rules`, e.g. `"lock order"`: a run's audit check of
//! that name failed), which error a run must end with (`error`, e.g. `"deadlock"`), and whether the
//! fault sweep is needed to see it (`fault_sweep`: `true`, or `"DriverEntry"` / `"DriverUnload"`
//! for that phase's calls only). A fixture scenario passes only when the harness fails the run
//! (exit 1, with a report) *and* every expectation is met by the report.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::base::error::{Context, Result, bail};
use crate::base::workspace::Driver;
use crate::emulator::emulate::{FaultPhase, Outcome};

/// A fixture scenario's `[expect]` table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expect {
    /// Run with `--faults`.
    pub fault_sweep: bool,
    /// With `fault_sweep`: the phase whose calls are failed.
    pub fault_phase: FaultPhase,
    /// Substrings of failures the report must contain.
    pub failures: Vec<String>,
    /// Audit checks, by name, that must have failed in some run.
    pub rules: Vec<String>,
    /// The error kind some run must have ended with (`deadlock`, `bugcheck`, ...).
    pub error: Option<String>,
}

impl Expect {
    /// What a caught defect showed, for the test's output.
    #[must_use]
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self.rules.iter().map(|r| format!("rule `{r}`")).collect();
        parts.extend(self.error.iter().map(|e| format!("error {e}")));
        parts.extend(self.failures.iter().cloned());
        if parts.is_empty() {
            "a failing run".to_owned()
        } else {
            parts.join("; ")
        }
    }
}

/// The fixture's scenarios: every `scenario*.toml` in its folder, by name.
pub fn scenarios(fixture: &Driver) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(&fixture.dir)
        .with_context(|| format!("listing {}", fixture.dir.display()))?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let stem = p.file_stem().and_then(|n| n.to_str()).unwrap_or_default();
            stem.starts_with("scenario") && p.extension().is_some_and(|e| e == "toml")
        })
        .collect();
    found.sort();
    if found.is_empty() {
        bail!(
            "fixture {} has no scenario*.toml in {}",
            fixture.name,
            fixture.dir.display()
        );
    }
    Ok(found)
}

/// Reads `[expect]` with Python's own TOML reader (`tomllib`, the one the harness uses), run by the
/// harness's interpreter: xtask needs no TOML parser of its own for two keys.
pub fn read_expect(python: &Path, scenario: &Path) -> Result<Expect> {
    const READ: &str = "import json, sys, tomllib\n\
        with open(sys.argv[1], 'rb') as f:\n    e = tomllib.load(f).get('expect', {})\n\
        print(json.dumps({'fault_sweep': e.get('fault_sweep', False), 'failures': e.get('failures', []), \
        'rules': e.get('rules', []), 'error': e.get('error')}))";
    let out = Command::new(python)
        .args(["-c", READ])
        .arg(scenario)
        .output()
        .with_context(|| {
            format!(
                "running {} to read {}",
                python.display(),
                scenario.display()
            )
        })?;
    if !out.status.success() {
        bail!(
            "reading {}: {}",
            scenario.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let v: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("reading {}", scenario.display()))?;
    parse_expect(&v).with_context(|| format!("{}: [expect]", scenario.display()))
}

/// An `[expect]` table (as JSON): also the mutation files' (`mutations`).
pub fn parse_expect(v: &Value) -> Result<Expect> {
    let (fault_sweep, fault_phase) = match v.get("fault_sweep") {
        Some(Value::Bool(b)) => (*b, FaultPhase::Both),
        Some(Value::String(s)) if s == "DriverEntry" => (true, FaultPhase::DriverEntry),
        Some(Value::String(s)) if s == "DriverUnload" => (true, FaultPhase::DriverUnload),
        _ => bail!("fault_sweep must be true, false, \"DriverEntry\" or \"DriverUnload\""),
    };
    let error = match v.get("error") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => bail!("error must be an error kind, such as \"deadlock\""),
    };
    Ok(Expect {
        fault_sweep,
        fault_phase,
        failures: strings(v, "failures")?,
        rules: strings(v, "rules")?,
        error,
    })
}

fn strings(v: &Value, key: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for f in v
        .get(key)
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
    {
        let Some(s) = f.as_str() else {
            bail!("{key} must be a list of strings")
        };
        out.push(s.to_owned());
    }
    Ok(out)
}

fn runs(report: &Value) -> impl Iterator<Item = &Value> {
    report
        .get("runs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// The expected rules no run reported as a failed audit check.
fn missing_rules<'a>(report: &Value, expect: &'a Expect) -> Vec<&'a str> {
    let failed: Vec<&str> = runs(report)
        .flat_map(|r| {
            r.get("audit")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .filter(|c| c.get("ok").and_then(Value::as_bool) == Some(false))
        .filter_map(|c| c.get("check").and_then(Value::as_str))
        .collect();
    expect
        .rules
        .iter()
        .map(String::as_str)
        .filter(|want| !failed.contains(want))
        .collect()
}

/// Whether some run ended with the expected error kind (true when none is expected).
fn has_error(report: &Value, expect: &Expect) -> bool {
    expect.error.as_deref().is_none_or(|want| {
        runs(report).any(|r| {
            r.get("error")
                .and_then(|e| e.get("kind"))
                .and_then(Value::as_str)
                == Some(want)
        })
    })
}

/// The expected failures that no run of `report` reported.
fn missing_failures<'a>(report: &Value, expect: &'a Expect) -> Vec<&'a str> {
    let reported: Vec<&str> = report
        .get("runs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|r| {
            r.get("failures")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .filter_map(Value::as_str)
        .collect();
    expect
        .failures
        .iter()
        .map(String::as_str)
        .filter(|want| !reported.iter().any(|f| f.contains(want)))
        .collect()
}

/// Whether the harness caught the defect as the scenario expects.
pub fn verdict(outcome: &Outcome, expect: &Expect) -> Result<(), String> {
    match outcome {
        Outcome::Failed(report) => {
            let mut missing: Vec<String> = missing_failures(report, expect)
                .iter()
                .map(|m| format!("`{m}`"))
                .collect();
            missing.extend(
                missing_rules(report, expect)
                    .iter()
                    .map(|r| format!("rule `{r}` (no run failed that audit check)")),
            );
            if !has_error(report, expect) {
                missing.push(format!(
                    "error `{}` (no run ended with it)",
                    expect.error.as_deref().unwrap_or_default()
                ));
            }
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "a run failed, but not with the expected failure(s): {}",
                    missing.join(", ")
                ))
            }
        }
        Outcome::Passed(_) => {
            Err("NOT caught: every run passed, so the harness missed the defect".to_owned())
        }
        Outcome::Error(e) => Err(format!("the harness did not complete: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn expect(failures: &[&str]) -> Expect {
        Expect {
            failures: failures.iter().map(|s| (*s).to_owned()).collect(),
            ..Expect::default()
        }
    }

    #[test]
    fn caught_only_with_every_expected_failure() {
        // The sample's failing run reports "\Callback\ExCallbackSample left referenced".
        let report = crate::emulator::report::tests::sample();
        let failed = Outcome::Failed(report.clone());
        assert!(verdict(&failed, &expect(&["left referenced"])).is_ok());
        assert!(verdict(&failed, &expect(&[])).is_ok());
        let e = verdict(
            &failed,
            &expect(&["left referenced", "every pool allocation freed"]),
        )
        .unwrap_err();
        assert!(
            e.contains("`every pool allocation freed`") && !e.contains("`left referenced`"),
            "{e}"
        );
        assert!(
            verdict(&Outcome::Passed(report), &expect(&[]))
                .unwrap_err()
                .contains("NOT caught")
        );
        assert!(
            verdict(&Outcome::Error("exit 2".into()), &expect(&[]))
                .unwrap_err()
                .contains("exit 2")
        );
    }

    #[test]
    fn a_rule_or_an_error_kind_must_be_in_the_report() {
        let report = json!({"runs": [{"failures": ["lock order: a and b in both orders"],
            "audit": [{"check": "lock order", "ok": false, "detail": ""},
                      {"check": "IRQL of every call", "ok": true, "detail": ""}],
            "error": {"kind": "deadlock", "message": ""}}]});
        let failed = Outcome::Failed(report);
        let with = |rules: &[&str], error: Option<&str>| Expect {
            rules: rules.iter().map(|s| (*s).to_owned()).collect(),
            error: error.map(str::to_owned),
            ..Expect::default()
        };
        assert!(verdict(&failed, &with(&["lock order"], Some("deadlock"))).is_ok());
        let e = verdict(&failed, &with(&["IRQL of every call"], None)).unwrap_err();
        assert!(e.contains("rule `IRQL of every call`"), "{e}");
        let e = verdict(&failed, &with(&[], Some("timeout"))).unwrap_err();
        assert!(e.contains("error `timeout`"), "{e}");
    }

    #[test]
    fn expect_table_is_checked() {
        assert_eq!(
            parse_expect(&json!({"fault_sweep": true, "failures": ["a"]})).unwrap(),
            Expect {
                fault_sweep: true,
                failures: vec!["a".into()],
                ..Expect::default()
            }
        );
        assert_eq!(
            parse_expect(&json!({"fault_sweep": "DriverUnload", "failures": [],
                                 "rules": ["lock order"], "error": "deadlock"}))
            .unwrap(),
            Expect {
                fault_sweep: true,
                fault_phase: FaultPhase::DriverUnload,
                rules: vec!["lock order".into()],
                error: Some("deadlock".into()),
                ..Expect::default()
            }
        );
        assert!(parse_expect(&json!({"fault_sweep": "yes", "failures": []})).is_err());
        assert!(parse_expect(&json!({"fault_sweep": false, "failures": [1]})).is_err());
        assert!(parse_expect(&json!({"fault_sweep": false, "rules": [1]})).is_err());
        assert!(parse_expect(&json!({"fault_sweep": false, "error": 3})).is_err());
    }

    #[test]
    fn expect_is_read_with_tomllib_and_scenarios_are_found() {
        let dir = std::env::temp_dir().join(format!("xtask-fixtures-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("scenario-b.toml"),
            "[expect]\nfault_sweep = true\nfailures = [\"x\"]\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("scenario-a.toml"),
            "description = \"no expect table\"\n",
        )
        .unwrap();
        std::fs::write(dir.join("Cargo.toml"), "").unwrap();
        let d = Driver {
            name: "f".into(),
            version: "0.1.0".into(),
            dir: dir.clone(),
            fixture: true,
            size_budget: None,
            callback_instruction_budget: None,
            variant: None,
        };
        let found = scenarios(&d).unwrap();
        assert_eq!(
            found,
            [dir.join("scenario-a.toml"), dir.join("scenario-b.toml")]
        );
        let python = Path::new("python3");
        assert_eq!(read_expect(python, &found[0]).unwrap(), Expect::default());
        assert_eq!(
            read_expect(python, &found[1]).unwrap(),
            Expect {
                fault_sweep: true,
                failures: vec!["x".into()],
                ..Expect::default()
            }
        );
        std::fs::write(&found[0], "[expect\n").unwrap();
        assert!(
            read_expect(python, &found[0])
                .unwrap_err()
                .to_string()
                .contains("scenario-a.toml")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
