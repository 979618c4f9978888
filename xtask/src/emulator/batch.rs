//! Several harness runs in one harness process: `harness.py --batch PLAN`
//! (`xtask/emu/emukernel/batch.py`). Starting the harness costs about half a second of imports
//! before anything runs; a batch pays it once for every driver (or fixture scenario), runs the
//! entries side by side in forked processes and reports each in the plan's order.
//!
//! On stderr the harness prints one block per entry, in order: `@entry NAME`, the entry's progress
//! lines, then `@exit N` (the exit status `harness.py` alone would have had for it). Each block is
//! interpreted as one harness process's exit status, report and stderr would be
//! ([`super::emulate::interpret`]).

use std::fmt::Write as _;
use std::path::Path;

use serde_json::json;

use crate::base::error::{Context, Result};
use crate::base::files;
use crate::base::process::{run_teeing_stderr, tail};
use crate::emulator::emulate::{DriverRun, FaultPhase, Harness, Options, Outcome, interpret};

/// One run of the harness in a batch.
#[derive(Clone, Debug)]
pub struct Entry<'a> {
    /// The name its block carries (a driver, or `fixture scenario`).
    pub name: String,
    /// The x64 image.
    pub image: &'a Path,
    /// Its scenario file.
    pub scenario: &'a Path,
    /// Where the harness writes its report.
    pub report: std::path::PathBuf,
    /// What to ask for (`jobs` is the batch's, not the entry's).
    pub opts: Options,
}

/// The plan `harness.py --batch` reads (schema of `xtask/emu/emukernel/batch.py`).
fn plan(entries: &[Entry]) -> serde_json::Value {
    let entries: Vec<_> = entries
        .iter()
        .map(|e| {
            json!({
                "name": e.name,
                "image": e.image,
                "scenario": e.scenario,
                "report": e.report,
                "faults": e.opts.faults,
                "fault_phase": match (e.opts.faults, e.opts.fault_phase) {
                    (false, _) | (true, FaultPhase::Both) => None,
                    (true, FaultPhase::DriverEntry) => Some("DriverEntry"),
                    (true, FaultPhase::DriverUnload) => Some("DriverUnload"),
                },
                "count_instructions": e.opts.count_instructions,
                "variants": !e.opts.scenario_only,
            })
        })
        .collect();
    json!({ "schema": 1, "entries": entries })
}

/// What the batch's stderr said so far.
#[derive(Default)]
struct Blocks {
    /// Entries whose block is complete.
    done: usize,
    /// The open block: its progress lines and everything it printed.
    open: Option<(Vec<String>, String)>,
    /// Lines outside any block (the batch's own errors).
    outside: String,
}

/// Runs `entries` in one harness process, `jobs` at a time. `done(i, run, progress lines)` is
/// called for each entry in order as soon as its block has arrived. An `Err` means no plan could
/// be written; a harness that could not start or ended early gives each entry without a block an
/// [`Outcome::Error`] naming what it said.
pub fn run(
    harness: &Harness,
    plan_path: &Path,
    entries: &[Entry],
    jobs: usize,
    done: &mut dyn FnMut(usize, DriverRun, Vec<String>),
) -> Result<()> {
    for e in entries {
        // A report left by an earlier run must not be taken for this run's.
        files::remove_if_exists(&e.report)?;
        if let Some(dir) = e.report.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
    }
    let text = serde_json::to_string_pretty(&plan(entries)).unwrap_or_default();
    files::write_atomic(plan_path, text.as_bytes())?;
    let mut cmd = harness.command();
    cmd.arg("--batch")
        .arg(plan_path)
        .arg("--jobs")
        .arg(jobs.max(1).to_string());
    let mut b = Blocks::default();
    let result = run_teeing_stderr(&mut cmd, |line| take(&mut b, entries, line, done));
    let _ = files::remove_if_exists(plan_path);
    let (exit, why) = match result {
        Ok((status, _)) => (status.code(), tail(b.outside.trim_end(), 20)),
        Err(e) => (
            None,
            format!("{e} (the harness's Python is {})", harness.python.display()),
        ),
    };
    for (i, e) in entries.iter().enumerate().skip(b.done) {
        let what = match exit {
            Some(code) => format!("the batch harness ended (exit status {code}) before this run"),
            None => "the batch harness could not run or was killed".to_owned(),
        };
        let outcome = Outcome::Error(format!("{what}:\n{why}"));
        let run = DriverRun {
            driver: driver_of(&e.name),
            exit: None,
            outcome,
        };
        done(i, run, Vec::new());
    }
    Ok(())
}

/// One line of the batch's stderr.
fn take(
    b: &mut Blocks,
    entries: &[Entry],
    line: &str,
    done: &mut dyn FnMut(usize, DriverRun, Vec<String>),
) {
    if let Some(name) = line.strip_prefix("@entry ") {
        if entries.get(b.done).is_some_and(|e| e.name == name) && b.open.is_none() {
            b.open = Some((Vec::new(), String::new()));
        } else {
            let _ = writeln!(b.outside, "unexpected block {name}");
        }
        return;
    }
    let exit = line
        .strip_prefix("@exit ")
        .and_then(|c| c.trim().parse::<i32>().ok());
    match (exit, b.open.take()) {
        (Some(code), Some((lines, text))) => {
            let e = &entries[b.done];
            let run = DriverRun {
                driver: driver_of(&e.name),
                exit: Some(code),
                outcome: interpret(Some(code), &e.report, &text),
            };
            done(b.done, run, lines);
            b.done += 1;
        }
        (None, Some((mut lines, mut text))) => {
            if !line.starts_with("harness: error:") && !line.starts_with("internal error") {
                lines.push(line.to_owned());
            }
            text.push_str(line);
            text.push('\n');
            b.open = Some((lines, text));
        }
        (_, None) => {
            b.outside.push_str(line);
            b.outside.push('\n');
        }
    }
}

/// The driver an entry name is about (`faulty-wfp scenario-x` -> `faulty-wfp`).
fn driver_of(name: &str) -> String {
    name.split(' ').next().unwrap_or(name).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, report: &Path) -> Entry<'static> {
        Entry {
            name: name.to_owned(),
            image: Path::new("/x.sys"),
            scenario: Path::new("/s.toml"),
            report: report.to_path_buf(),
            opts: Options::default(),
        }
    }

    #[test]
    fn blocks_become_runs_in_order_and_a_missing_block_is_an_error() {
        let dir = std::env::temp_dir().join(format!("xtask-batch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let report = dir.join("a.json");
        std::fs::write(&report, r#"{"schema": 1, "passed": true, "runs": []}"#).unwrap();
        let entries = [
            entry("a", &report),
            entry("b", &dir.join("none.json")),
            entry("c", &dir.join("c.json")),
        ];
        let mut b = Blocks::default();
        let mut got = Vec::new();
        let mut done = |i: usize, r: DriverRun, lines: Vec<String>| got.push((i, r, lines));
        for line in [
            "@entry a",
            "a: scenario run",
            "@exit 0",
            "@entry b",
            "harness: error: no image at /x.sys",
            "@exit 2",
            "@entry c",
        ] {
            take(&mut b, &entries, line, &mut done);
        }
        assert_eq!(b.done, 2);
        assert_eq!(got[0].2, vec!["a: scenario run".to_owned()]);
        assert!(matches!(got[0].1.outcome, Outcome::Passed(_)));
        let Outcome::Error(e) = &got[1].1.outcome else {
            panic!("{:?}", got[1].1.outcome)
        };
        assert!(e.contains("no image at /x.sys"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_block_out_of_order_is_not_taken_for_another_entry() {
        let entries = [entry("a", Path::new("/nonexistent/a.json"))];
        let mut b = Blocks::default();
        let mut count = 0;
        let mut done = |_: usize, _: DriverRun, _: Vec<String>| count += 1;
        take(&mut b, &entries, "@entry z", &mut done);
        take(&mut b, &entries, "@exit 0", &mut done);
        assert_eq!(count, 0);
        assert!(b.outside.contains("unexpected block z"));
    }

    #[test]
    fn the_plan_names_every_option() {
        let mut e = entry("a", Path::new("/r.json"));
        e.opts.faults = true;
        e.opts.fault_phase = FaultPhase::DriverUnload;
        let p = plan(&[e]);
        assert_eq!(p["schema"], 1);
        assert_eq!(p["entries"][0]["fault_phase"], "DriverUnload");
        assert_eq!(p["entries"][0]["faults"], true);
        assert_eq!(p["entries"][0]["count_instructions"], false);
        assert_eq!(p["entries"][0]["variants"], true);
        let mut alone = entry("b", Path::new("/r.json"));
        alone.opts.scenario_only = true;
        assert_eq!(plan(&[alone])["entries"][0]["variants"], false);
    }
}
