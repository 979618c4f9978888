//! The tally of `cargo xtask test`'s checks, its closing line and its summary on disk
//! (`target/reports/test.json`, docs/reports/test.md).

use std::time::Instant;

use crate::base::error::Result;
use crate::base::files;
use crate::base::process::{CpuSeconds, cpu_seconds, elapsed};

/// The tally of checks.
#[derive(Debug, Default)]
pub(super) struct Tally {
    pub(super) passed: usize,
    pub(super) failed: Vec<String>,
    pub(super) skipped: Vec<String>,
    /// What each stage cost, in the order they ran.
    pub(super) stages: Vec<StageTime>,
}

/// What one stage cost: its checks, wall seconds and CPU seconds.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct StageTime {
    /// The stage's name (`gate`, `build`, ...).
    pub stage: String,
    /// How many of its checks passed.
    pub passed: usize,
    /// How many of its checks failed.
    pub failed: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// CPU seconds (user + system) of the children it waited for: cargo, rustc, the emulator...
    /// `None` where the system does not report it.
    pub cpu_seconds: Option<f64>,
    /// CPU seconds (user + system) of xtask itself during the stage.
    pub xtask_cpu_seconds: Option<f64>,
}

/// A stage's start, from [`Tally::begin`] to [`Tally::end`].
#[derive(Clone, Copy)]
pub(super) struct StageClock {
    name: &'static str,
    start: Instant,
    cpu: Option<CpuSeconds>,
    passed: usize,
    failed: usize,
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

    /// Starts timing stage `name`.
    pub(super) fn begin(&self, name: &'static str) -> StageClock {
        StageClock {
            name,
            start: Instant::now(),
            cpu: cpu_seconds(),
            passed: self.passed,
            failed: self.failed.len(),
        }
    }

    /// Ends the stage `clock` started: its closing line (checks, wall and CPU seconds) printed,
    /// its [`StageTime`] kept for the summary.
    pub(super) fn end(&mut self, clock: StageClock) {
        let wall = clock.start.elapsed();
        let cpu = clock.cpu.zip(cpu_seconds()).map(|(a, b)| b.since(a));
        let time = StageTime {
            stage: clock.name.to_owned(),
            passed: self.passed - clock.passed,
            failed: self.failed.len() - clock.failed,
            seconds: wall.as_secs_f64(),
            cpu_seconds: cpu.map(|c| c.children),
            xtask_cpu_seconds: cpu.map(|c| c.own),
        };
        println!("{}", stage_line(&time));
        self.stages.push(time);
    }

    /// Runs stage `name` (`f`) between [`Tally::begin`] and [`Tally::end`].
    pub(super) fn timed<R>(&mut self, name: &'static str, f: impl FnOnce(&mut Tally) -> R) -> R {
        let clock = self.begin(name);
        let r = f(self);
        self.end(clock);
        r
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
/// (docs/reports/test.md); a stage run beside the others (`beside.rs`) writes one too, read back.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
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
    /// What each stage cost, in the order they ran.
    pub stage_times: Vec<StageTime>,
}

/// Writes the run's [`TestReport`] to `path` (`target/reports/test.json`, or a part's report); a
/// failure to write it is a warning (the run's verdict is the closing line).
pub(super) fn write_summary(
    path: &std::path::Path,
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
        stage_times: t.stages.clone(),
    };
    let text = format!("{}\n", crate::commands::to_json(&report));
    if let Err(e) = files::write_atomic(path, text.as_bytes()) {
        eprintln!(
            "  warning: the summary was not written to {}: {e}",
            path.display()
        );
    }
}

/// A stage's closing line: `  -- gate: 40 passed, 0 failed in 35.2s (CPU: 61.0s children, 1.2s
/// xtask)`.
fn stage_line(t: &StageTime) -> String {
    let secs = |s: f64| elapsed(std::time::Duration::from_secs_f64(s));
    let cpu = match (t.cpu_seconds, t.xtask_cpu_seconds) {
        (Some(c), Some(x)) => format!(" (CPU: {} children, {} xtask)", secs(c), secs(x)),
        _ => String::new(),
    };
    format!(
        "  -- {}: {} passed, {} failed in {}{cpu}",
        t.stage,
        t.passed,
        t.failed,
        secs(t.seconds)
    )
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

    #[test]
    fn a_stage_counts_its_own_checks_and_time() {
        let mut t = Tally::default();
        t.record(true, "before");
        let clock = t.begin("gate");
        t.record(true, "a");
        t.record(false, "b");
        t.end(clock);
        let s = &t.stages[0];
        assert_eq!((s.stage.as_str(), s.passed, s.failed), ("gate", 1, 1));
        assert!(s.seconds >= 0.0);
        #[cfg(unix)]
        assert!(s.cpu_seconds.is_some() && s.xtask_cpu_seconds.is_some());
    }

    #[test]
    fn the_stage_line_shows_wall_and_cpu() {
        let mut s = StageTime {
            stage: "build".into(),
            passed: 8,
            failed: 0,
            seconds: 75.0,
            cpu_seconds: Some(130.25),
            xtask_cpu_seconds: Some(0.5),
        };
        assert_eq!(
            stage_line(&s),
            "  -- build: 8 passed, 0 failed in 1m15s (CPU: 2m10s children, 0.5s xtask)"
        );
        s.cpu_seconds = None;
        assert_eq!(stage_line(&s), "  -- build: 8 passed, 0 failed in 1m15s");
    }
}
