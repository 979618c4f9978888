//! The diagrams a driver README embeds between markers, checked against the current driver's
//! runs (`cargo xtask test --stage emulate`, from the reports that stage writes anyway) and
//! refreshed by `cargo xtask emulate NAME --bless-diagrams`:
//!
//! ```text
//! <!-- diagram: DRIVER: RUN -->
//! ```mermaid
//! sequenceDiagram
//! ...
//! ```
//! <!-- /diagram -->
//! ```
//!
//! `RUN` is a run's stable key (`diagram::run_key`): `scenario`, `scenario: VARIANT`, or
//! `fault: ROUTINE call #N [in DriverUnload ]fails (STATUS)[ (scenario: VARIANT)]`.

use std::path::Path;

use serde_json::Value;

use crate::base::error::{Result, bail};
use crate::emulator::diagram;

const OPEN: &str = "<!-- diagram: ";
const OPEN_END: &str = " -->";
const CLOSE: &str = "<!-- /diagram -->";

/// One embedded diagram: whose run it is, and where its body lies in the README.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Embedded {
    /// The driver (or variant) whose run it draws.
    pub driver: String,
    /// The run's key.
    pub key: String,
    /// The text between the opening marker's line and the closing marker.
    pub body: String,
    start: usize,
    end: usize,
}

/// The README body for a diagram: a fenced `mermaid` block.
pub fn block(diagram: &str) -> String {
    format!("```mermaid\n{diagram}```\n")
}

/// Every embedded diagram of a README, in order.
///
/// # Errors
/// A marker that is malformed or never closed (named with its line).
pub fn find(readme: &str) -> Result<Vec<Embedded>> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = readme[from..].find(OPEN).map(|i| from + i) {
        let line = readme[..at].lines().count() + 1;
        let Some(end_of_line) = readme[at..].find('\n').map(|i| at + i) else {
            bail!("line {line}: a diagram marker at the end of the file, with no diagram");
        };
        let marker = &readme[at + OPEN.len()..end_of_line];
        let Some(inner) = marker.strip_suffix(OPEN_END) else {
            bail!("line {line}: `{marker}` does not end with ` -->`");
        };
        let Some((driver, key)) = inner.split_once(": ") else {
            bail!("line {line}: expected `<!-- diagram: DRIVER: RUN -->`, found `{inner}`");
        };
        let start = end_of_line + 1;
        let Some(end) = readme[start..].find(CLOSE).map(|i| start + i) else {
            bail!("line {line}: the diagram of {driver} `{key}` has no closing `{CLOSE}`");
        };
        out.push(Embedded {
            driver: driver.trim().to_owned(),
            key: key.trim().to_owned(),
            body: readme[start..end].to_owned(),
            start,
            end,
        });
        from = end + CLOSE.len();
    }
    Ok(out)
}

/// The run of `report` a marker names.
fn run_of<'r>(report: &'r Value, key: &str) -> Option<&'r Value> {
    report
        .get("runs")
        .and_then(Value::as_array)?
        .iter()
        .find(|r| diagram::run_key(r) == key)
}

/// Checks the diagrams `readme` embeds for `driver` against its report (which must come from a
/// run with the fault sweep): one result per embedded diagram, named, plus one that the README
/// has both a scenario diagram and a failure diagram of the driver.
pub fn check(path: &Path, readme: &str, driver: &str, report: &Value) -> Vec<(String, Result<()>)> {
    let shown = path.display();
    let fix = format!("run `cargo xtask emulate {driver} --bless-diagrams` and review the change");
    let embedded = match find(readme) {
        Ok(e) => e,
        Err(e) => return vec![(format!("{shown}: diagram markers"), Err(e))],
    };
    let mine: Vec<&Embedded> = embedded.iter().filter(|e| e.driver == driver).collect();
    let mut out = Vec::new();
    let scenario = mine.iter().any(|e| e.key.starts_with("scenario"));
    let failure = mine.iter().any(|e| !e.key.starts_with("scenario"));
    out.push((
        format!("{shown} embeds {driver}'s scenario and a failure as diagrams"),
        if scenario && failure {
            Ok(())
        } else {
            Err(crate::base::error::Error::new(format!(
                "missing {}: add `<!-- diagram: {driver}: RUN -->` and `<!-- /diagram -->` (RUN: \
                 `scenario` and a fault run's key, see `cargo xtask emulate {driver} --faults \
                 --diagram`), then {fix}",
                if scenario {
                    "a failure run"
                } else {
                    "the scenario run"
                }
            )))
        },
    ));
    for e in mine {
        let what = format!("{shown}: the diagram of {driver} `{}` is current", e.key);
        let result = match run_of(report, &e.key) {
            None => Err(crate::base::error::Error::new(format!(
                "{driver}'s report has no run `{}` (the driver or its scenario changed): pick \
                 another run (`cargo xtask emulate {driver} --faults --diagram` lists them), then {fix}",
                e.key
            ))),
            Some(run) if e.body != block(&diagram::render(run)) => {
                Err(crate::base::error::Error::new(format!(
                    "it differs from what the current {driver} produces: {fix}"
                )))
            }
            Some(_) => Ok(()),
        };
        out.push((what, result));
    }
    out
}

/// `readme` with each diagram of `driver` redrawn from `report`; the keys it could not find.
pub fn bless(readme: &str, driver: &str, report: &Value) -> Result<(String, Vec<String>)> {
    let mut out = String::new();
    let mut last = 0;
    let mut missing = Vec::new();
    for e in find(readme)? {
        if e.driver != driver {
            continue;
        }
        match run_of(report, &e.key) {
            Some(run) => {
                out.push_str(&readme[last..e.start]);
                out.push_str(&block(&diagram::render(run)));
                last = e.end;
            }
            None => missing.push(e.key.clone()),
        }
    }
    out.push_str(&readme[last..]);
    Ok((out, missing))
}

/// Every diagram body of a README (for Mermaid's parser): (name, diagram without the fence).
pub fn diagrams(path: &Path, readme: &str) -> Result<Vec<(String, String)>> {
    Ok(find(readme)?
        .into_iter()
        .map(|e| {
            let text = e
                .body
                .trim_start_matches("```mermaid\n")
                .trim_end_matches("```\n")
                .to_owned();
            (
                format!("{}: {} `{}`", path.display(), e.driver, e.key),
                text,
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report() -> Value {
        json!({"runs": [
            {"name": "scenario", "events": [{"kind": "audit", "checks": 3, "failed": [], "tolerated": []}]},
            {"name": "fault 2/5: ntoskrnl.ExRegisterCallback call #1 fails (NULL)", "events": []}
        ]})
    }

    const README: &str = "# x\n<!-- diagram: ex: scenario -->\nold\n<!-- /diagram -->\ntext\n\
        <!-- diagram: ex: fault: ntoskrnl.ExRegisterCallback call #1 fails (NULL) -->\n<!-- /diagram -->\n\
        <!-- diagram: other: scenario -->\nkept\n<!-- /diagram -->\n";

    #[test]
    fn a_stale_diagram_fails_naming_the_readme_and_run_and_bless_fixes_it() {
        let path = Path::new("ex/README.md");
        let results = check(path, README, "ex", &report());
        let failed: Vec<String> = results
            .iter()
            .filter_map(|(what, r)| r.as_ref().err().map(|e| format!("{what}: {e}")))
            .collect();
        assert_eq!(failed.len(), 2, "{failed:?}");
        assert!(failed[0].contains("ex/README.md: the diagram of ex `scenario` is current"));
        assert!(failed[0].contains("cargo xtask emulate ex --bless-diagrams"));
        let (fresh, missing) = bless(README, "ex", &report()).unwrap();
        assert!(missing.is_empty());
        assert!(
            fresh.contains("<!-- diagram: other: scenario -->\nkept\n"),
            "other drivers' diagrams untouched"
        );
        assert!(fresh.contains("\ntext\n"));
        assert!(
            check(path, &fresh, "ex", &report())
                .iter()
                .all(|(_, r)| r.is_ok())
        );
        assert_eq!(
            bless(&fresh, "ex", &report()).unwrap().0,
            fresh,
            "blessing twice changes nothing"
        );
    }

    #[test]
    fn a_readme_without_a_failure_diagram_or_with_a_vanished_run_fails() {
        let path = Path::new("r.md");
        let only = "<!-- diagram: ex: scenario -->\n<!-- /diagram -->\n";
        let results = check(path, only, "ex", &report());
        assert!(results[0].1.is_err(), "no failure diagram");
        let gone = "<!-- diagram: ex: scenario -->\n<!-- /diagram -->\n<!-- diagram: ex: fault: gone -->\n<!-- /diagram -->\n";
        let results = check(path, gone, "ex", &report());
        let err = results[2].1.as_ref().unwrap_err().to_string();
        assert!(err.contains("no run `fault: gone`"), "{err}");
        assert!(find("<!-- diagram: ex: scenario -->\nno end\n").is_err());
        assert!(find("<!-- diagram: nokey -->\n<!-- /diagram -->\n").is_err());
    }
}
