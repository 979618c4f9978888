//! `cargo xtask bench`: the suite's numbers against their budgets (issue #2, `bench`).
//!
//! - the clean release build of every driver and `common` for x64, in its own target directory
//!   (`target/bench`, deleted first) so nothing cached helps: budget [`BUILD_BUDGET_SECS`];
//! - the size of each placed release x64 `.sys`: budget `size-budget` of `[package.metadata.driver]`;
//! - the instructions each callback invocation executes inside the image, counted by the harness
//!   (`--count-instructions`) on the release image: budget `callback-instruction-budget`;
//! - signing and packaging every driver for x64 and arm64 (release), once the images are built and
//!   the test certificate exists: budget [`PACKAGE_BUDGET_SECS`].
//!
//! Budgets are measured, not asserted: an overrun is printed as OVER BUDGET and the exit status
//! stays 0; only a measurement that could not be made fails the command.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::Command;
use std::time::Instant;

use serde_json::{Value, json};

use crate::build;
use crate::cli::BenchArgs;
use crate::emulate::{self, Options, Outcome};
use crate::error::{Context, Result, bail};
use crate::layout::{Arch, Profile};
use crate::process::{elapsed, run_teeing_stderr, tail};
use crate::workspace::{Driver, Workspace, cargo};

/// Seconds a clean release build of the drivers and common may take on the 2-core machines.
pub const BUILD_BUDGET_SECS: f64 = 20.0;

/// Seconds signing and packaging every driver for both architectures may take, after the build.
pub const PACKAGE_BUDGET_SECS: f64 = 2.0;

/// One measurement against its budget.
#[derive(Clone, Debug, PartialEq)]
struct Row {
    measure: String,
    value: f64,
    unit: &'static str,
    /// Shown instead of `value unit` when set (e.g. `max 37, mean 30.5 over 4 calls`).
    shown: Option<String>,
    budget: Option<f64>,
    /// A line shown under the row (which events invoked a callback).
    note: Option<String>,
    /// More fields for `--json` (`kind`, `driver`, ...).
    extra: Value,
}

impl Row {
    fn over(&self) -> bool {
        self.budget.is_some_and(|b| self.value > b)
    }

    fn verdict(&self) -> &'static str {
        match self.budget {
            None => "(no budget)",
            Some(_) if self.over() => "OVER BUDGET",
            Some(_) => "ok",
        }
    }

    fn to_json(&self) -> Value {
        let mut v = json!({
            "measure": self.measure, "value": self.value, "unit": self.unit,
            "budget": self.budget, "over_budget": self.over(),
        });
        if let (Some(map), Some(extra)) = (v.as_object_mut(), self.extra.as_object()) {
            map.extend(extra.clone());
        }
        v
    }
}

/// Per callback, every counted invocation across the report's runs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CallbackCounts {
    /// The events that invoked it.
    pub events: Vec<String>,
    /// Instructions of each invocation.
    pub counts: Vec<u64>,
}

impl CallbackCounts {
    fn max(&self) -> u64 {
        self.counts.iter().copied().max().unwrap_or(0)
    }

    fn mean(&self) -> f64 {
        if self.counts.is_empty() {
            0.0
        } else {
            as_f64(self.counts.iter().sum::<u64>()) / as_f64(self.counts.len() as u64)
        }
    }
}

/// Sizes, counts and budgets as table values; they are all far below 2^52.
#[allow(clippy::cast_precision_loss)]
fn as_f64(n: u64) -> f64 {
    n as f64
}

/// Groups `runs[].callbacks[]` of a report by callback address, keeping the invocations the budget
/// applies to (`"budgeted": false` marks the others; absent means budgeted).
pub fn callback_counts(report: &Value) -> BTreeMap<String, CallbackCounts> {
    let mut by_callback: BTreeMap<String, CallbackCounts> = BTreeMap::new();
    let runs = report
        .get("runs")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    for cb in runs.iter().flat_map(|r| {
        r.get("callbacks")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice)
    }) {
        let (Some(addr), Some(n)) = (
            cb.get("callback").and_then(Value::as_str),
            cb.get("instructions").and_then(Value::as_u64),
        ) else {
            continue;
        };
        if cb.get("budgeted").and_then(Value::as_bool) == Some(false) {
            continue;
        }
        let entry = by_callback.entry(addr.to_owned()).or_default();
        entry.counts.push(n);
        if let Some(ev) = cb.get("event").and_then(Value::as_str)
            && !entry.events.iter().any(|e| e == ev)
        {
            entry.events.push(ev.to_owned());
        }
    }
    by_callback
}

/// The `bench` command.
pub fn run(ws: &Workspace, args: &BenchArgs) -> Result<()> {
    let drivers = ws.select(&[])?;
    let mut rows: Vec<Row> = Vec::new();
    let mut errors: Vec<String> = Vec::new();

    // (a) Clean build.
    match clean_build_secs(ws, &drivers) {
        Ok(secs) => rows.push(Row {
            measure: "clean release build, drivers + common (x64)".into(),
            value: secs,
            unit: "s",
            shown: Some(format!("{secs:.1} s")),
            budget: Some(BUILD_BUDGET_SECS),
            note: None,
            extra: json!({"kind": "clean_build_seconds"}),
        }),
        Err(e) => errors.push(e.to_string()),
    }

    // (b) Sizes of the placed release images (built, linted and placed now, so they are current).
    let placed = measure_sizes(ws, &drivers, &mut rows, &mut errors);
    // (c) Instructions per callback invocation, in those images.
    if !placed.is_empty() {
        measure_callbacks(ws, &placed, &mut rows, &mut errors);
    }
    // (d) Signing and packaging, both architectures.
    match package_secs(ws, &drivers) {
        Ok(secs) => rows.push(Row {
            measure: format!(
                "sign + package {} driver(s), x64 and arm64 (release)",
                drivers.len()
            ),
            value: secs,
            unit: "s",
            shown: Some(format!("{secs:.2} s")),
            budget: Some(PACKAGE_BUDGET_SECS),
            note: None,
            extra: json!({"kind": "sign_package_seconds", "drivers": drivers.len(), "architectures": 2}),
        }),
        Err(e) => errors.push(e.to_string()),
    }

    if args.json {
        let doc = json!({
            "measurements": rows.iter().map(Row::to_json).collect::<Vec<_>>(),
            "over_budget": rows.iter().filter(|r| r.over()).count(),
            "errors": errors,
        });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        print!("{}", render(&rows));
        for e in &errors {
            println!("could not measure: {e}");
        }
    }
    if !errors.is_empty() {
        bail!(
            "bench: {} measurement(s) could not be made (see above)",
            errors.len()
        );
    }
    Ok(())
}

/// Builds the release x64 images and measures each; returns the drivers placed.
fn measure_sizes<'a>(
    ws: &Workspace,
    drivers: &[&'a Driver],
    rows: &mut Vec<Row>,
    errors: &mut Vec<String>,
) -> Vec<&'a Driver> {
    eprintln!("  building the release x64 images...");
    let built = match build::build(ws, drivers, &[Arch::X64], Profile::Release) {
        Ok(built) => built,
        Err(e) => {
            errors.push(e.to_string());
            return Vec::new();
        }
    };
    let mut placed = Vec::new();
    for (b, d) in built.iter().zip(drivers) {
        let size = match &b.result {
            Ok(sys) => std::fs::metadata(sys)
                .map(|m| m.len())
                .map_err(|e| format!("{}: {e}", sys.display())),
            Err(e) => Err(format!("building {}: {e}", d.name)),
        };
        match size {
            Ok(bytes) => {
                rows.push(Row {
                    measure: format!("{}.sys size (release x64)", d.name),
                    value: as_f64(bytes),
                    unit: "bytes",
                    shown: Some(format!("{bytes} B")),
                    budget: d.size_budget.map(as_f64),
                    note: None,
                    extra: json!({"kind": "image_bytes", "driver": d.name, "bytes": bytes}),
                });
                placed.push(*d);
            }
            Err(e) => errors.push(e),
        }
    }
    placed
}

/// Runs the harness with `--count-instructions` on each placed release image.
fn measure_callbacks(
    ws: &Workspace,
    drivers: &[&Driver],
    rows: &mut Vec<Row>,
    errors: &mut Vec<String>,
) {
    let opts = Options {
        faults: false,
        count_instructions: true,
        ..Options::default()
    };
    let runs = match emulate::emulate(
        ws,
        drivers,
        Profile::Release,
        opts,
        "bench-report.json",
        false,
    ) {
        Ok(runs) => runs,
        Err(e) => return errors.push(e.to_string()),
    };
    for (run, d) in runs.iter().zip(drivers) {
        let report = match &run.outcome {
            Outcome::Passed(r) => r,
            Outcome::Failed(r) => {
                errors.push(format!(
                    "{}: a run failed while counting instructions (see cargo xtask emulate {} --release)",
                    d.name, d.name
                ));
                r
            }
            Outcome::Error(e) => {
                errors.push(format!("emulating {}: {e}", d.name));
                continue;
            }
        };
        let counts = callback_counts(report);
        if counts.is_empty() {
            errors.push(format!(
                "{}: the harness counted no callback invocation",
                d.name
            ));
        }
        rows.extend(callback_rows(d, &counts));
        rows.extend(unload_rows(d, report));
    }
}

/// One row per scenario run whose report measured DriverUnload (`runs[].measurements`): the
/// instructions it executed in the image, reported without a budget.
fn unload_rows(d: &Driver, report: &Value) -> Vec<Row> {
    let runs = report
        .get("runs")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let mut rows = Vec::new();
    for run in runs {
        let name = run
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("scenario");
        for m in run
            .get("measurements")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice)
        {
            let (Some(measure), Some(n)) = (
                m.get("measure").and_then(Value::as_str),
                m.get("instructions").and_then(Value::as_u64),
            ) else {
                continue;
            };
            let calls = m.get("kernel_calls").and_then(Value::as_u64).unwrap_or(0);
            rows.push(Row {
                measure: format!("{} {measure} ({name})", d.name),
                value: as_f64(n),
                unit: "instructions",
                shown: Some(format!("{n} instructions, {calls} kernel calls")),
                budget: None,
                note: None,
                extra: json!({
                    "kind": "unload_instructions", "driver": d.name, "run": name,
                    "instructions": n, "kernel_calls": calls,
                }),
            });
        }
    }
    rows
}

fn callback_rows(d: &Driver, counts: &BTreeMap<String, CallbackCounts>) -> Vec<Row> {
    counts
        .iter()
        .map(|(addr, c)| Row {
            measure: format!("{} callback {addr}", d.name),
            value: as_f64(c.max()),
            unit: "instructions (max)",
            shown: Some(format!(
                "max {}, mean {:.1} over {} call(s)",
                c.max(),
                c.mean(),
                c.counts.len()
            )),
            budget: d.callback_instruction_budget.map(as_f64),
            note: Some(format!("invoked by: {}", c.events.join("; "))),
            extra: json!({
                "kind": "callback_instructions", "driver": d.name, "callback": addr,
                "max": c.max(), "mean": c.mean(), "invocations": c.counts.len(), "events": c.events,
            }),
        })
        .collect()
}

/// Builds the release images for both architectures (not timed), then times signing and packaging
/// them all.
fn package_secs(ws: &Workspace, drivers: &[&Driver]) -> Result<f64> {
    eprintln!("  building the release images for x64 and arm64 (not timed)...");
    let built = build::build(ws, drivers, &Arch::ALL, Profile::Release)?;
    if let Some(b) = built.iter().find(|b| b.result.is_err()) {
        bail!(
            "building {} ({}) for the packaging measurement failed",
            b.driver,
            b.arch
        );
    }
    let signer = crate::sign::signer(None)?;
    eprintln!("  signing and packaging...");
    let start = Instant::now();
    let made = crate::package::package(ws, drivers, &Arch::ALL, Profile::Release, &signer)?;
    let took = start.elapsed();
    if let Some(p) = made.iter().find(|p| p.result.is_err()) {
        bail!("packaging {} ({}) failed (see above)", p.driver, p.arch);
    }
    eprintln!("  {} package(s) in {}", made.len(), elapsed(took));
    Ok(took.as_secs_f64())
}

/// Deletes `target/bench` and times a release build of the drivers and common into it.
fn clean_build_secs(ws: &Workspace, drivers: &[&Driver]) -> Result<f64> {
    let dir = ws.layout.bench_target_dir();
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let mut cmd = Command::new(cargo());
    cmd.current_dir(&ws.root)
        .env("CARGO_TARGET_DIR", &dir)
        .args([
            "build",
            "--release",
            "--target",
            Arch::X64.triple(),
            "-p",
            "common",
        ]);
    // Variants share their package's crate: it is built once (with its default features).
    let mut packages: Vec<&str> = drivers.iter().map(|d| d.package()).collect();
    packages.dedup();
    for p in packages {
        cmd.args(["-p", p]);
    }
    eprintln!("  clean release build into {} ...", dir.display());
    let start = Instant::now();
    let (status, stderr) = run_teeing_stderr(&mut cmd, |line| eprintln!("    {line}"))?;
    let took = start.elapsed();
    if !status.success() {
        bail!("the clean build failed ({status}):\n{}", tail(&stderr, 15));
    }
    eprintln!("  clean build took {}", elapsed(took));
    Ok(took.as_secs_f64())
}

/// The table.
fn render(rows: &[Row]) -> String {
    let budget = |r: &Row| match r.budget {
        // Budgets are whole numbers in their units.
        Some(b) => format!("{b} {}", r.unit.split(' ').next().unwrap_or_default()),
        None => "-".to_owned(),
    };
    let shown = |r: &Row| {
        r.shown
            .clone()
            .unwrap_or_else(|| format!("{} {}", r.value, r.unit))
    };
    let w0 = rows
        .iter()
        .map(|r| r.measure.chars().count())
        .chain([7])
        .max()
        .unwrap_or(7);
    let w1 = rows
        .iter()
        .map(|r| shown(r).chars().count())
        .chain([5])
        .max()
        .unwrap_or(5);
    let w2 = rows
        .iter()
        .map(|r| budget(r).chars().count())
        .chain([6])
        .max()
        .unwrap_or(6);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:w0$}  {:w1$}  {:w2$}  verdict",
        "measure", "value", "budget"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:w0$}  {:w1$}  {:w2$}  {}",
            r.measure,
            shown(r),
            budget(r),
            r.verdict()
        );
        if let Some(note) = &r.note {
            let _ = writeln!(out, "    {note}");
        }
    }
    let over = rows.iter().filter(|r| r.over()).count();
    let _ = writeln!(
        out,
        "bench: {} measurement(s), {over} OVER BUDGET",
        rows.len()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn callbacks_are_grouped_with_max_and_mean() {
        let report = json!({"schema": 1, "runs": [
            {"callbacks": [
                {"callback": "0x140001230", "event": "notify PowerState", "instructions": 30},
                {"callback": "0x140001300", "event": "notify SetSystemTime", "instructions": 80},
                {"callback": "0x140001230", "event": "notify PowerState", "instructions": 41},
                {"callback": "0x140001230", "event": "a step off the hot path", "instructions": 900, "budgeted": false}
            ]},
            {"callbacks": [{"callback": "0x140001230", "event": "notify own", "instructions": 37}]},
            {"name": "no counts"}
        ]});
        let counts = callback_counts(&report);
        let a = &counts["0x140001230"];
        assert_eq!((a.max(), a.counts.len()), (41, 3));
        assert!((a.mean() - 36.0).abs() < 1e-9);
        assert_eq!(a.events, ["notify PowerState", "notify own"]);

        let d = Driver {
            name: "ex-callback".into(),
            version: "0.1.0".into(),
            dir: "/w/ex-callback".into(),
            fixture: false,
            size_budget: Some(8192),
            callback_instruction_budget: Some(60),
            variant: None,
        };
        let rows = callback_rows(&d, &counts);
        assert_eq!(
            rows.iter().map(Row::verdict).collect::<Vec<_>>(),
            ["ok", "OVER BUDGET"]
        );
        assert_eq!(rows[0].to_json()["invocations"], 3);
        assert_eq!(rows[0].to_json()["max"], 41);
        let text = render(&rows);
        assert!(
            text.contains("    invoked by: notify PowerState; notify own\n"),
            "{text}"
        );
        assert!(text.contains("max 41, mean 36.0 over 3 call(s)"), "{text}");
        assert!(
            text.contains("OVER BUDGET")
                && text.ends_with("bench: 2 measurement(s), 1 OVER BUDGET\n"),
            "{text}"
        );
    }

    #[test]
    fn unload_measurements_become_rows_without_budget() {
        let report = json!({"runs": [
            {"name": "scenario", "measurements": [{"measure": "DriverUnload", "instructions": 900, "kernel_calls": 50}]},
            {"name": "scenario: unload with 1,000 live flows",
             "measurements": [{"measure": "DriverUnload", "instructions": 96000, "kernel_calls": 6000}]},
            {"name": "fault 1/2"}
        ]});
        let d = Driver {
            name: "wfp-callout".into(),
            version: "0.1.0".into(),
            dir: "/w/wfp-callout".into(),
            fixture: false,
            size_budget: None,
            callback_instruction_budget: Some(120),
            variant: None,
        };
        let rows = unload_rows(&d, &report);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[1].measure,
            "wfp-callout DriverUnload (scenario: unload with 1,000 live flows)"
        );
        assert_eq!(rows[1].verdict(), "(no budget)");
        assert_eq!(rows[1].to_json()["kernel_calls"], 6000);
    }

    #[test]
    fn a_row_without_budget_is_never_over() {
        let r = Row {
            measure: "x".into(),
            value: 1e9,
            unit: "bytes",
            shown: None,
            budget: None,
            note: None,
            extra: json!({"kind": "image_bytes"}),
        };
        assert!(!r.over());
        assert_eq!(r.verdict(), "(no budget)");
        assert_eq!(r.to_json()["over_budget"], false);
        assert_eq!(r.to_json()["kind"], "image_bytes");
        let at = Row {
            budget: Some(1e9),
            ..r
        };
        assert_eq!(
            at.verdict(),
            "ok",
            "a value equal to its budget is within it"
        );
    }
}
