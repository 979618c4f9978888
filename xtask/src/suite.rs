//! `cargo xtask test`: every layer of tests, in order, and one line CI can read:
//! `N passed, M failed`.
//!
//! 1. host unit tests (`cargo test -p common -p xtask`);
//! 2. every driver built for x64 and arm64, debug and release (each image through the lint gate);
//! 3. the placed images linted again, as `cargo xtask lint` reads them;
//! 4. every driver emulated with the fault sweep, debug and release images;
//! 5. the negative fixtures: a driver that leaks on purpose must be caught (harness exit 1).

use std::process::Command;
use std::time::Instant;

use crate::build::{self, Built};
use crate::emulate::{self, Options, Outcome};
use crate::error::{Result, bail};
use crate::layout::{Arch, Profile};
use crate::lint_images;
use crate::process::elapsed;
use crate::workspace::{Workspace, cargo};

/// The tally of checks.
#[derive(Debug, Default)]
struct Tally {
    passed: usize,
    failed: Vec<String>,
}

impl Tally {
    fn record(&mut self, ok: bool, what: impl Into<String>) {
        if ok {
            self.passed += 1;
        } else {
            let what = what.into();
            println!("    FAILED: {what}");
            self.failed.push(what);
        }
    }
}

const STAGES: usize = 5;

fn header(n: usize, title: &str) {
    println!("\n==> [{n}/{STAGES}] {title}");
}

/// The `test` command.
pub fn run(ws: &Workspace) -> Result<()> {
    let start = Instant::now();
    let mut t = Tally::default();
    let profiles = [Profile::Debug, Profile::Release];
    let drivers = ws.select(&[])?;

    header(1, "host unit tests: cargo test -p common -p xtask");
    let status = Command::new(cargo()).args(["test", "-p", "common", "-p", "xtask"]).current_dir(&ws.root).status();
    t.record(status.is_ok_and(|s| s.success()), "host unit tests (cargo test -p common -p xtask)");

    header(2, "build every driver: x64 and arm64, debug and release (each image linted)");
    let mut built: Vec<Built> = Vec::new();
    for profile in profiles {
        match build::build(ws, &drivers, &Arch::ALL, profile) {
            Ok(b) => built.extend(b),
            Err(e) => t.record(false, format!("build ({profile}): {e}")),
        }
    }
    for b in &built {
        let what = format!("build {} ({}, {})", b.driver, b.arch, b.profile);
        if let Err(e) = &b.result {
            t.record(false, format!("{what}: {e}"));
        } else {
            t.record(true, what);
        }
    }

    header(3, "lint the placed images");
    let images: Vec<_> =
        built.iter().filter_map(|b| b.result.as_ref().ok().map(|p| (p.clone(), b.arch))).collect();
    let linted = lint_images::lint_all(&images);
    print!("{}", lint_images::render(&linted, ws));
    for l in &linted {
        t.record(l.passed(), format!("lint {}", l.path.display()));
    }

    header(4, "emulate every driver with the fault sweep (debug and release)");
    for profile in profiles {
        let ready: Vec<_> = drivers
            .iter()
            .copied()
            .filter(|d| {
                built.iter().any(|b| b.driver == d.name && b.arch == Arch::X64 && b.profile == profile && b.result.is_ok())
            })
            .collect();
        if ready.is_empty() {
            continue; // their build failures are counted already
        }
        let opts = Options { faults: true, count_instructions: false };
        match emulate::emulate(ws, &ready, profile, opts, emulate::report_name(profile), true) {
            Ok(runs) => {
                for r in runs {
                    let ok = matches!(r.outcome, Outcome::Passed(_));
                    t.record(ok, format!("emulate {} ({profile}, with faults)", r.driver));
                }
            }
            Err(e) => t.record(false, format!("emulate ({profile}): {e}")),
        }
    }

    header(5, "negative fixtures: a leaking driver must be caught");
    let fixtures = ws.fixtures();
    if fixtures.is_empty() {
        println!("  skipped: no fixture package ([package.metadata.driver] fixture = true) in the workspace");
    }
    for fixture in fixtures {
        let what = format!("fixture {} is caught", fixture.name);
        let built = match build::build(ws, &[fixture], &[Arch::X64], Profile::Debug) {
            Ok(b) => b.into_iter().all(|b| b.result.is_ok()),
            Err(e) => {
                t.record(false, format!("{what}: {e}"));
                continue;
            }
        };
        if !built {
            t.record(false, format!("{what}: it did not build"));
            continue;
        }
        let opts = Options { faults: true, count_instructions: false };
        match emulate::emulate(ws, &[fixture], Profile::Debug, opts, "report.json", true) {
            Ok(runs) => {
                for r in runs {
                    let verdict = fixture_verdict(&r.outcome);
                    println!("  {}: {}", r.driver, verdict.as_ref().map_or_else(Clone::clone, |()| "caught, as expected".to_owned()));
                    match verdict {
                        Ok(()) => t.record(true, what.clone()),
                        Err(e) => t.record(false, format!("{what}: {e}")),
                    }
                }
            }
            Err(e) => t.record(false, format!("{what}: {e}")),
        }
    }

    println!("\ntest: finished in {}", elapsed(start.elapsed()));
    for f in &t.failed {
        println!("  failed: {f}");
    }
    println!("{}", final_line(t.passed, t.failed.len()));
    if !t.failed.is_empty() {
        bail!("test: {} check(s) failed", t.failed.len());
    }
    Ok(())
}

/// A fixture must make the harness fail a run (exit 1, with a report): that is the leak caught.
fn fixture_verdict(outcome: &Outcome) -> Result<(), String> {
    match outcome {
        Outcome::Failed(_) => Ok(()),
        Outcome::Passed(_) => Err("NOT caught: every run passed, so the harness missed the leak it contains".to_owned()),
        Outcome::Error(e) => Err(format!("the harness did not complete: {e}")),
    }
}

/// The last line of `cargo xtask test`, which `.ci/run`'s readers parse.
fn final_line(passed: usize, failed: usize) -> String {
    format!("{passed} passed, {failed} failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixture_passes_only_when_caught() {
        let report = crate::report::tests::sample();
        assert!(fixture_verdict(&Outcome::Failed(report.clone())).is_ok());
        assert!(fixture_verdict(&Outcome::Passed(report)).unwrap_err().contains("NOT caught"));
        assert!(fixture_verdict(&Outcome::Error("exit 2".into())).unwrap_err().contains("exit 2"));
    }

    #[test]
    fn final_line_is_what_ci_parses() {
        assert_eq!(final_line(12, 0), "12 passed, 0 failed");
    }
}
