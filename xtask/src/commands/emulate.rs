//! `cargo xtask emulate`: builds the x64 images it runs (as `cargo run` would), runs each in the
//! emulated kernel (`crate::emulator`), and shows the reports, or prints them as one JSON document
//! ([`EmulateReport`], docs/reports/emulate.md).

use serde::Serialize;
use serde_json::Value;

use crate::base::error::{Context, Result, bail};
use crate::base::files;
use crate::base::layout::{Arch, Profile};
use crate::base::workspace::{Driver, Workspace};
use crate::commands::build;
use crate::emulator::emulate::{self as emulator, DriverRun, Outcome};
use crate::emulator::{diagram, readme};

/// `cargo xtask emulate`'s options.
#[allow(clippy::struct_excessive_bools)] // one per flag of the command line
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Options {
    /// Drivers to run; empty = every driver.
    pub drivers: Vec<String>,
    /// `--json`.
    pub json: bool,
    /// `--faults`.
    pub faults: bool,
    /// `--diagram`: each run drawn as a Mermaid sequence diagram under target/emu/NAME/diagrams/.
    pub diagram: bool,
    /// `--bless-diagrams`: the diagrams the READMEs embed redrawn (implies the fault sweep).
    pub bless_diagrams: bool,
    /// `--release`.
    pub profile: Profile,
}

/// The `emulate` command.
pub(crate) fn run(ws: &Workspace, opts: &Options) -> Result<()> {
    let drivers = ws.select(&opts.drivers)?;
    // Scenarios first: no build for a driver that could not be run anyway.
    let problems: Vec<String> = drivers
        .iter()
        .filter_map(|d| emulator::scenario(ws, d).err().map(|e| e.to_string()))
        .collect();
    if !problems.is_empty() {
        bail!("{}", problems.join("\n"));
    }
    let built = build::build(ws, &drivers, &[Arch::X64], opts.profile)?;
    let failed: Vec<&str> = built
        .iter()
        .filter(|b| b.result.is_err())
        .map(|b| b.driver.as_str())
        .collect();
    if !failed.is_empty() {
        bail!(
            "emulate: {} did not build (see above); nothing was emulated",
            failed.join(", ")
        );
    }
    let harness = emulator::Options {
        faults: opts.faults || opts.bless_diagrams,
        ..emulator::Options::default()
    };
    let runs = emulator::emulate(
        ws,
        &drivers,
        opts.profile,
        harness,
        emulator::report_name(opts.profile),
        !opts.json,
    )?;
    if opts.json {
        println!("{}", super::to_json(&report(&runs)));
    }
    if opts.diagram {
        write_diagrams(ws, &runs, opts.json)?;
    }
    if opts.bless_diagrams {
        bless_diagrams(&drivers, &runs)?;
    }
    let bad = runs
        .iter()
        .filter(|r| !matches!(r.outcome, Outcome::Passed(_)))
        .count();
    if bad > 0 {
        bail!("emulate: {bad} of {} driver(s) did not pass", runs.len());
    }
    Ok(())
}

/// `--diagram`: every run of each report as `target/emu/NAME/diagrams/NN-RUN.mmd` (the folder
/// emptied first, so it holds this emulation's runs only), each path printed (on stderr with
/// `--json`, whose stdout is the document).
fn write_diagrams(ws: &Workspace, runs: &[DriverRun], json: bool) -> Result<()> {
    for r in runs {
        let Some(report) = r.outcome.report() else {
            continue;
        };
        let dir = ws.layout.emu_report(&r.driver, "diagrams");
        if dir.is_dir() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("emptying {}", dir.display()))?;
        }
        let all = report
            .get("runs")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        for (i, run) in all.iter().enumerate() {
            let path = dir.join(diagram::file_name(i, run));
            files::write_atomic(&path, diagram::render(run).as_bytes())?;
            let line = format!("  diagram: {} ({})", path.display(), diagram::run_key(run));
            if json {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
        }
    }
    Ok(())
}

/// `--bless-diagrams`: each selected driver's README diagrams redrawn from its fresh report.
fn bless_diagrams(drivers: &[&Driver], runs: &[DriverRun]) -> Result<()> {
    let mut problems = Vec::new();
    for (driver, r) in drivers.iter().zip(runs) {
        let Some(report) = r.outcome.report() else {
            problems.push(format!("{}: no report to draw from", r.driver));
            continue;
        };
        let path = driver.dir.join("README.md");
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let (fresh, missing) = readme::bless(&text, &r.driver, report)
            .with_context(|| format!("{}", path.display()))?;
        for key in missing {
            problems.push(format!(
                "{}: {} has no run `{key}` any more: pick another (`cargo xtask emulate {} --faults --diagram` lists them)",
                path.display(),
                r.driver,
                r.driver
            ));
        }
        if fresh == text {
            println!(
                "  the diagrams of {} in {} are current",
                r.driver,
                path.display()
            );
        } else {
            files::write_atomic(&path, fresh.as_bytes())?;
            println!(
                "  redrew the diagrams of {} in {}",
                r.driver,
                path.display()
            );
        }
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("\n"));
    }
    Ok(())
}

/// `cargo xtask emulate --json` (docs/reports/emulate.md).
#[derive(Debug, Serialize)]
pub(crate) struct EmulateReport {
    /// Version of this layout: 1.
    pub schema: u32,
    /// Every driver passed.
    pub passed: bool,
    /// One entry per driver, in the order asked.
    pub drivers: Vec<EmulatedDriver>,
}

/// One driver's emulation.
#[derive(Debug, Serialize)]
pub(crate) struct EmulatedDriver {
    /// The driver's name.
    pub driver: String,
    /// `passed`, `failed` (the audit or a run failed) or `error` (could not run).
    pub status: &'static str,
    /// The harness's exit status; `null` if it was killed or never started.
    pub harness_exit: Option<i32>,
    /// Why it could not run; `null` otherwise.
    pub error: Option<String>,
    /// The harness's own report (xtask/emu/REPORT.md); `null` when there is none.
    pub report: Option<Value>,
}

/// The `--json` document: every report, with each driver's outcome.
pub(crate) fn report(runs: &[DriverRun]) -> EmulateReport {
    EmulateReport {
        schema: 1,
        passed: runs.iter().all(|r| matches!(r.outcome, Outcome::Passed(_))),
        drivers: runs
            .iter()
            .map(|r| {
                let (status, error) = match &r.outcome {
                    Outcome::Passed(_) => ("passed", None),
                    Outcome::Failed(_) => ("failed", None),
                    Outcome::Error(e) => ("error", Some(e.clone())),
                };
                EmulatedDriver {
                    driver: r.driver.clone(),
                    status,
                    harness_exit: r.exit,
                    error,
                    report: r.outcome.report().cloned(),
                }
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_gives_each_outcome() {
        let runs = [
            DriverRun {
                driver: "a".into(),
                exit: Some(2),
                outcome: Outcome::Error("could not run: unknown scenario step".into()),
            },
            DriverRun {
                driver: "b".into(),
                exit: Some(0),
                outcome: Outcome::Passed(serde_json::json!({"schema": 1, "passed": true})),
            },
        ];
        let doc = serde_json::to_value(report(&runs)).unwrap();
        assert_eq!(doc["schema"], 1);
        assert_eq!(doc["passed"], false);
        assert_eq!(doc["drivers"][0]["status"], "error");
        assert_eq!(doc["drivers"][0]["harness_exit"], 2);
        assert!(doc["drivers"][0]["report"].is_null());
        assert_eq!(doc["drivers"][1]["status"], "passed");
        assert_eq!(doc["drivers"][1]["report"]["passed"], true);
        assert!(doc["drivers"][1]["error"].is_null());
        let all_passed = report(&runs[1..]);
        assert!(all_passed.passed);
    }
}
