//! `cargo xtask bench`: the suite's numbers against their budgets (issue #2, `bench`).
//!
//! - the clean release build of every driver and `common` for x64, in its own target directory
//!   (`target/bench`, deleted first) so nothing cached helps: budget [`BUILD_BUDGET_SECS`];
//! - the size of each placed release x64 `.sys`: budget `size-budget` of `[package.metadata.driver]`;
//! - the instructions each callback invocation executes inside the image, counted by the harness
//!   (`--count-instructions`) on the release image: budget `callback-instruction-budget`;
//! - signing and packaging every driver for x64 and arm64 (release), once the images are built and
//!   the test certificate exists: budget [`PACKAGE_BUDGET_SECS`];
//! - the emulated kernel (`harness.py --bench`, `xtask/emu/emukernel/bench.py`) on the release
//!   wfp-callout image: kernel-call dispatch (a no-op routine called through an import address
//!   20,000 times), at least [`DISPATCH_BUDGET_CALLS_PER_SEC`], and its scenario run
//!   [`WFP_BENCH_RUN`] from load to audit, at most [`WFP_RUN_BUDGET_SECS`]. Both are judged on the
//!   harness process's CPU time, the emulator's own speed whatever else the machine runs (it is
//!   one thread); the wall time and the load average are shown beside it;
//! - a warm `cargo xtask deploy` (emulated kernel, every driver; run once untimed first), wall
//!   clock, which is what a developer waits for: budget [`DEPLOY_BUDGET_SECS`].
//!
//! Budgets are measured, not asserted: an overrun is printed as OVER BUDGET and the exit status
//! stays 0; only a measurement that could not be made fails the command.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Instant;

use serde_json::{Value, json};

use crate::base::error::{Context, Result, bail};
use crate::base::layout::{Arch, Profile};
use crate::base::process::{elapsed, run_teeing_stderr, tail};
use crate::base::workspace::{Driver, Workspace, cargo};
use crate::commands::build;
use crate::emulator::emulate::{self, Outcome};

mod report;

pub(crate) use report::BenchReport;
#[cfg(test)]
pub(crate) use report::Measurement;
use report::{Row, render};

/// Seconds a clean release build of the drivers and common may take on the 2-core machines.
pub const BUILD_BUDGET_SECS: f64 = 20.0;

/// Seconds signing and packaging every driver for both architectures may take, after the build.
pub const PACKAGE_BUDGET_SECS: f64 = 2.0;

/// Kernel calls per second the emulated kernel must dispatch (issue #14).
pub const DISPATCH_BUDGET_CALLS_PER_SEC: f64 = 20_000.0;

/// The wfp-callout scenario run timed by `bench`, and its budget in seconds.
pub const WFP_BENCH_RUN: &str = "unload with 1,000 live flows";
/// Seconds [`WFP_BENCH_RUN`] may take (load, DriverEntry, 1,000 flows, DriverUnload, audit).
pub const WFP_RUN_BUDGET_SECS: f64 = 1.0;

/// Seconds a warm `cargo xtask deploy` of every driver to the emulated kernel may take.
pub const DEPLOY_BUDGET_SECS: f64 = 6.0;

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

/// `cargo xtask bench`'s options.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Options {
    /// `--json`: the report ([`BenchReport`]) on stdout.
    pub json: bool,
}

/// The `bench` command.
pub(crate) fn run(ws: &Workspace, args: &Options) -> Result<()> {
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
            at_least: false,
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
            at_least: false,
            note: None,
            extra: json!({"kind": "sign_package_seconds", "drivers": drivers.len(), "architectures": 2}),
        }),
        Err(e) => errors.push(e.to_string()),
    }

    // (e) The emulated kernel, on the release wfp-callout image built in (b).
    if let Some(wfp) = placed.iter().find(|d| d.name == "wfp-callout") {
        match emulator_rows(ws, wfp) {
            Ok(r) => rows.extend(r),
            Err(e) => errors.push(e.to_string()),
        }
    } else {
        errors.push("the emulator measurements need the release wfp-callout image".to_owned());
    }
    // (f) A warm deploy to the emulated kernel.
    match deploy_secs(ws) {
        Ok(secs) => rows.push(Row {
            measure: format!(
                "warm `cargo xtask deploy`, {} driver(s), emulated kernel",
                drivers.len()
            ),
            value: secs,
            unit: "s",
            shown: Some(format!(
                "{secs:.1} s ({} CPU(s), load {})",
                crate::base::process::jobs(),
                load_average()
            )),
            budget: Some(DEPLOY_BUDGET_SECS),
            at_least: false,
            note: None,
            extra: json!({"kind": "deploy_seconds", "drivers": drivers.len()}),
        }),
        Err(e) => errors.push(e.to_string()),
    }

    if args.json {
        let doc = BenchReport {
            schema: 1,
            measurements: rows.iter().map(Row::measurement).collect(),
            over_budget: rows.iter().filter(|r| r.over()).count(),
            errors: errors.clone(),
        };
        println!("{}", super::to_json(&doc));
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
                    at_least: false,
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
    let opts = emulate::Options {
        count_instructions: true,
        ..emulate::Options::default()
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
                at_least: false,
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
            at_least: false,
            note: Some(format!("invoked by: {}", c.events.join("; "))),
            extra: json!({
                "kind": "callback_instructions", "driver": d.name, "callback": addr,
                "max": c.max(), "mean": c.mean(), "invocations": c.counts.len(), "events": c.events,
            }),
        })
        .collect()
}

/// `harness.py --bench` on the placed release image of `wfp`: the dispatch rate and the time of
/// [`WFP_BENCH_RUN`].
fn emulator_rows(ws: &Workspace, wfp: &Driver) -> Result<Vec<Row>> {
    let (image, scenario) = emulate::inputs(ws, wfp, Profile::Release)?;
    let harness = emulate::Harness::locate(ws)?;
    let out = ws.layout.emu_report(&wfp.name, "bench-emulator.json");
    crate::base::files::remove_if_exists(&out)?;
    eprintln!(
        "  measuring the emulated kernel on {} (release)...",
        wfp.name
    );
    let mut cmd = harness.command();
    cmd.arg("--image")
        .arg(&image)
        .arg("--scenario")
        .arg(&scenario)
        .arg("--report")
        .arg(&out)
        .args(["--bench", "--bench-run", WFP_BENCH_RUN]);
    let (status, stderr) = run_teeing_stderr(&mut cmd, |line| eprintln!("    {line}"))?;
    if !status.success() {
        bail!(
            "harness.py --bench failed ({status}):\n{}",
            tail(&stderr, 15)
        );
    }
    let doc: Value = serde_json::from_str(
        &std::fs::read_to_string(&out).with_context(|| format!("reading {}", out.display()))?,
    )
    .with_context(|| format!("reading {}", out.display()))?;
    emulator_rows_from(&doc, &load_average())
}

/// The rows of a `harness.py --bench` document.
fn emulator_rows_from(doc: &Value, load: &str) -> Result<Vec<Row>> {
    let num = |v: &Value, k: &str| -> Result<f64> {
        match v.get(k).and_then(Value::as_f64) {
            Some(n) => Ok(n),
            None => bail!("harness.py --bench: no number `{k}`"),
        }
    };
    let versions = doc.get("versions").cloned().unwrap_or(Value::Null);
    let Some(dispatch) = doc.get("dispatch") else {
        bail!("harness.py --bench: no `dispatch`");
    };
    let (calls, secs, cpu) = (
        num(dispatch, "calls")?,
        num(dispatch, "seconds")?,
        num(dispatch, "cpu_seconds")?,
    );
    let mut rows = vec![Row {
        measure: "emulated kernel-call dispatch (no-op routine, through an import address)".into(),
        value: calls / cpu,
        unit: "calls/s",
        shown: Some(format!(
            "{:.0} calls per CPU second ({:.0} per wall second, load {load})",
            calls / cpu,
            calls / secs
        )),
        budget: Some(DISPATCH_BUDGET_CALLS_PER_SEC),
        at_least: true,
        note: None,
        extra: json!({"kind": "dispatch_calls_per_second", "calls": calls, "seconds": secs,
                      "cpu_seconds": cpu, "versions": versions}),
    }];
    let runs = doc
        .get("runs")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let Some(run) = runs
        .iter()
        .find(|r| r.get("run").and_then(Value::as_str) == Some(WFP_BENCH_RUN))
    else {
        bail!("harness.py --bench did not time the run `{WFP_BENCH_RUN}`");
    };
    if run.get("passed").and_then(Value::as_bool) != Some(true) {
        bail!(
            "the run `{WFP_BENCH_RUN}` did not pass while being timed (see cargo xtask emulate wfp-callout --release)"
        );
    }
    let (secs, cpu, calls) = (
        num(run, "seconds")?,
        num(run, "cpu_seconds")?,
        num(run, "kernel_calls")?,
    );
    // The harness times the run three times and gives the best (noise only adds time).
    let repeats: Vec<f64> = run
        .get("repeats")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    let best_of = if repeats.len() > 1 {
        format!(
            ", best of {}: {}",
            repeats.len(),
            repeats
                .iter()
                .map(|c| format!("{c:.2}"))
                .collect::<Vec<_>>()
                .join("/")
        )
    } else {
        String::new()
    };
    rows.push(Row {
        measure: format!("wfp-callout run \"{WFP_BENCH_RUN}\" (load to audit)"),
        value: cpu,
        unit: "s",
        shown: Some(format!(
            "{cpu:.2} s CPU ({secs:.2} s wall, load {load}{best_of}), {calls:.0} kernel calls, {:.0} calls per CPU second",
            calls / cpu
        )),
        budget: Some(WFP_RUN_BUDGET_SECS),
        at_least: false,
        note: None,
        extra: json!({"kind": "wfp_run_seconds", "run": WFP_BENCH_RUN, "cpu_seconds": cpu,
                      "seconds": secs, "kernel_calls": calls, "repeats": repeats}),
    });
    Ok(rows)
}

/// Times `cargo xtask deploy` (this xtask's own `deploy`, emulated kernel, debug) after one untimed
/// run that builds, packages and warms whatever the first needs.
fn deploy_secs(ws: &Workspace) -> Result<f64> {
    let exe = std::env::current_exe().context("finding xtask's own executable")?;
    let run = || -> Result<std::time::Duration> {
        let start = Instant::now();
        let out = Command::new(&exe)
            .arg("deploy")
            .current_dir(&ws.root)
            .output()
            .with_context(|| format!("running {} deploy", exe.display()))?;
        let took = start.elapsed();
        if !out.status.success() {
            bail!(
                "cargo xtask deploy failed ({}):\n{}",
                out.status,
                tail(&String::from_utf8_lossy(&out.stderr), 15)
            );
        }
        Ok(took)
    };
    eprintln!("  cargo xtask deploy (warming up, not timed)...");
    run()?;
    eprintln!("  cargo xtask deploy (timed)...");
    let took = run()?;
    eprintln!("  deploy took {}", elapsed(took));
    Ok(took.as_secs_f64())
}

/// The 1-minute load average (`/proc/loadavg`), to read the wall times by; `?` elsewhere.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
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
    let signer = crate::commands::sign::signer(None)?;
    eprintln!("  signing and packaging...");
    let start = Instant::now();
    let made =
        crate::commands::package::package(ws, drivers, &Arch::ALL, Profile::Release, &signer)?;
    let took = start.elapsed();
    if let Some(p) = made.iter().find(|p| p.result.is_err()) {
        bail!("packaging {} ({}) failed (see above)", p.driver, p.arch);
    }
    eprintln!("  {} package(s) in {}", made.len(), elapsed(took));
    Ok(took.as_secs_f64())
}

/// Deletes `target/bench` and times a release build of the drivers and common into it.
fn clean_build_secs(ws: &Workspace, drivers: &[&Driver]) -> Result<f64> {
    // Whatever the rustup state (a toolchain without the Windows target), as `build` does; not
    // inside the timed part.
    crate::base::toolchain::ensure_targets(
        &ws.root,
        &[Arch::X64],
        &crate::base::toolchain::Env::default(),
    )?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A row as its `--json` measurement.
    fn json_of(r: &Row) -> Value {
        serde_json::to_value(r.measurement()).unwrap()
    }
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
        assert_eq!(json_of(&rows[0])["invocations"], 3);
        assert_eq!(json_of(&rows[0])["max"], 41);
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
        assert_eq!(json_of(&rows[1])["kernel_calls"], 6000);
    }

    #[test]
    fn emulator_rows_judge_cpu_time_against_their_budgets() {
        let doc = |calls_cpu: f64, run_cpu: f64, passed: bool| {
            json!({"schema": 1, "versions": {"speakeasy": "1.5.11"},
                   "dispatch": {"calls": 20000, "seconds": 2.0, "cpu_seconds": calls_cpu},
                   "runs": [{"run": WFP_BENCH_RUN, "seconds": 3.0, "cpu_seconds": run_cpu,
                             "kernel_calls": 12086, "passed": passed}]})
        };
        let rows = emulator_rows_from(&doc(0.5, 0.8, true), "0.5").unwrap();
        assert_eq!(rows.len(), 2);
        // 20,000 calls in 0.5 CPU seconds: 40,000/s, above the 20,000 floor.
        assert!((rows[0].value - 40_000.0).abs() < 1e-6);
        assert_eq!(rows[0].verdict(), "ok");
        assert_eq!(rows[1].verdict(), "ok");
        assert!(
            render(&rows).contains(">= 20000 calls/s"),
            "{}",
            render(&rows)
        );
        // Below the floor, above the ceiling.
        let slow = emulator_rows_from(&doc(2.0, 1.5, true), "0.5").unwrap();
        assert_eq!(slow[0].verdict(), "OVER BUDGET");
        assert_eq!(slow[1].verdict(), "OVER BUDGET");
        assert_eq!(json_of(&slow[0])["budget_is_minimum"], true);
        // A run that failed while timed is not a measurement.
        let e = emulator_rows_from(&doc(0.5, 0.8, false), "0.5")
            .unwrap_err()
            .to_string();
        assert!(e.contains("did not pass"), "{e}");
        let e = emulator_rows_from(&json!({"schema": 1}), "0.5")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no `dispatch`"), "{e}");
    }

    #[test]
    fn a_row_without_budget_is_never_over() {
        let r = Row {
            measure: "x".into(),
            value: 1e9,
            unit: "bytes",
            shown: None,
            budget: None,
            at_least: false,
            note: None,
            extra: json!({"kind": "image_bytes"}),
        };
        assert!(!r.over());
        assert_eq!(r.verdict(), "(no budget)");
        assert_eq!(json_of(&r)["over_budget"], false);
        assert_eq!(json_of(&r)["kind"], "image_bytes");
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
