//! The tally of `cargo xtask test`'s checks, its closing line and its summary on disk
//! (`target/reports/test.json`, docs/reports/test.md).

use std::time::Instant;

use crate::base::error::Result;
use crate::base::files;
use crate::base::workspace::Workspace;

/// The tally of checks.
#[derive(Debug, Default)]
pub(super) struct Tally {
    pub(super) passed: usize,
    pub(super) failed: Vec<String>,
    pub(super) skipped: Vec<String>,
}

impl Tally {
    pub(super) fn record(&mut self, ok: bool, what: impl Into<String>) {
        if ok {
            self.passed += 1;
        } else {
            let what = what.into();
            println!("    FAILED: {what}");
            self.failed.push(what);
        }
    }

    pub(super) fn result(&mut self, what: impl Into<String>, result: Result<()>) {
        let what = what.into();
        match result {
            Ok(()) => {
                println!("  ✓ {what}");
                self.record(true, what);
            }
            Err(e) => self.record(false, format!("{what}: {e}")),
        }
    }
}

/// The summary of a `cargo xtask test` run, written to `target/reports/test.json`
/// (docs/reports/test.md).
#[derive(Debug, serde::Serialize)]
pub(crate) struct TestReport {
    /// Version of this layout: 1.
    pub schema: u32,
    /// The stages that ran, in order.
    pub stages: Vec<String>,
    /// The `-p` names the run was limited to; empty = every driver and fixture.
    pub packages: Vec<String>,
    /// How many checks passed.
    pub passed: usize,
    /// How many checks failed.
    pub failed: usize,
    /// Each failed check, with its cause.
    pub failures: Vec<String>,
    /// Each check that could not run here, with why (e.g. no OpenSSH server).
    pub skipped: Vec<String>,
    /// Wall-clock seconds the run took.
    pub seconds: f64,
}

/// Writes the run's [`TestReport`] to `target/reports/test.json`; a failure to write it is a
/// warning (the run's verdict is the closing line).
pub(super) fn write_summary(
    ws: &Workspace,
    stages: &[&str],
    packages: &[String],
    t: &Tally,
    start: Instant,
) {
    let report = TestReport {
        schema: 1,
        stages: stages.iter().map(|s| (*s).to_owned()).collect(),
        packages: packages.to_vec(),
        passed: t.passed,
        failed: t.failed.len(),
        failures: t.failed.clone(),
        skipped: t.skipped.clone(),
        seconds: start.elapsed().as_secs_f64(),
    };
    let path = ws.layout.report("test.json");
    let text = format!("{}\n", crate::commands::to_json(&report));
    if let Err(e) = files::write_atomic(&path, text.as_bytes()) {
        eprintln!(
            "  warning: the summary was not written to {}: {e}",
            path.display()
        );
    }
}

/// The last line of `cargo xtask test`, which `.ci/run`'s readers parse.
pub(super) fn final_line(passed: usize, failed: usize) -> String {
    format!("{passed} passed, {failed} failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_line_is_what_ci_parses() {
        assert_eq!(final_line(12, 0), "12 passed, 0 failed");
    }
}
