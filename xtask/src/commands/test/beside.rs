//! A stage run beside the others: a child `xtask test --stage NAME` started as soon as the stage's
//! inputs exist, while the stages before it in the usual order still run, so the second core
//! works where one stage alone leaves it idle. The child's output (stdout and stderr, in the order
//! written) goes to a file and its tally to a part report; both are taken in when the stage's turn
//! comes, so the output is printed in the usual order and the checks, the closing line and
//! `stage_times` are those of a run in sequence.
//!
//! The child knows it is a part by [`PART_ENV`], which names where its report goes: it prints no
//! header of its own (the parent does, at the stage's turn), no closing lines, and writes the
//! [`TestReport`] there instead of `target/reports/test.json`.
//!
//! Which stage runs beside which is decided in `mod.rs`: the host stage beside the toolchain
//! stage and the gate (`host_beside`), the deploy stage beside the stages after the package stage
//! (`deploy_beside`), the mutations and templates stages beside the emulate and fixtures stages
//! (`mutations_beside`, `templates_beside`); each says why the stage needs nothing the stages it
//! overlaps write, and writes nothing they read. The emulator's venv, which both sides use, is made under a lock
//! (`emulator_venv`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::summary::{Tally, TestReport};
use crate::base::error::{Context, Error, Result};
use crate::base::files;
use crate::base::workspace::Workspace;

/// Set in a child run as a part of a parent's run: the path its [`TestReport`] is written to.
pub(super) const PART_ENV: &str = "XTASK_TEST_PART";

/// The part report's path if this run is a part of another (`PART_ENV`).
pub(super) fn part_report() -> Option<PathBuf> {
    std::env::var_os(PART_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// A stage running in a child process.
pub(super) struct Beside {
    stage: &'static str,
    child: Result<Child>,
    log: PathBuf,
    report: PathBuf,
}

/// Starts `stage` (for the drivers `packages` names; all when empty) in a child
/// `xtask test --stage STAGE`, its output to `target/reports/test-part-STAGE.log`.
pub(super) fn spawn(ws: &Workspace, stage: &'static str, packages: &[String]) -> Beside {
    let log = ws.layout.report(&format!("test-part-{stage}.log"));
    let report = ws.layout.report(&format!("test-part-{stage}.json"));
    let child = (|| -> Result<Child> {
        // A report left by an earlier run must not be taken for this one's.
        files::remove_if_exists(&report)?;
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let out =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out
            .try_clone()
            .with_context(|| format!("opening {} twice", log.display()))?;
        let exe = std::env::current_exe().context("finding xtask's own executable")?;
        let mut cmd = Command::new(exe);
        cmd.args(["test", "--stage", stage]);
        for p in packages {
            cmd.args(["-p", p]);
        }
        cmd.env(PART_ENV, &report)
            .current_dir(&ws.root)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        cmd.spawn()
            .with_context(|| format!("starting `xtask test --stage {stage}`"))
    })();
    Beside {
        stage,
        child,
        log,
        report,
    }
}

impl Beside {
    /// Waits for the child, prints its output, and counts its checks and its stage's times in
    /// `t`. A child that did not report is one failed check, naming why.
    pub(super) fn finish(self, t: &mut Tally) {
        let waited = self.child.and_then(|mut c| {
            c.wait()
                .with_context(|| format!("waiting for the {} stage's process", self.stage))
        });
        if let Ok(text) = std::fs::read(&self.log) {
            print!("{}", shown(&String::from_utf8_lossy(&text)));
        }
        let report = waited.and_then(|status| {
            read_report(&self.report).map_err(|e| {
                Error::new(format!(
                    "{e} (the process ended with {status}; its output, {}, is above)",
                    self.log.display()
                ))
            })
        });
        match report {
            Ok(r) => merge(t, r),
            Err(e) => t.record(
                false,
                format!("the {} stage, run beside the others: {e}", self.stage),
            ),
        }
    }
}

/// A part's output as printed: without cargo's notes that it waited for a lock (on the target
/// directory the stages beside each other share): whether one appears depends on timing only,
/// and the output must not.
fn shown(log: &str) -> String {
    let mut out = String::with_capacity(log.len() + 1);
    for l in log
        .lines()
        .filter(|l| !l.trim_start().starts_with("Blocking waiting for file lock"))
    {
        out.push_str(l);
        out.push('\n');
    }
    out
}

fn read_report(path: &Path) -> Result<TestReport> {
    let text =
        std::fs::read(path).with_context(|| format!("reading its report {}", path.display()))?;
    let r: TestReport = serde_json::from_slice(&text)
        .with_context(|| format!("reading its report {}", path.display()))?;
    if r.schema != 1 {
        return Err(Error::new(format!(
            "its report {} has schema {}, not 1",
            path.display(),
            r.schema
        )));
    }
    Ok(r)
}

/// A part's checks counted in `t` as if they had run here (their lines were printed by it).
fn merge(t: &mut Tally, r: TestReport) {
    t.passed += r.passed;
    t.failed.extend(r.failures);
    t.skipped.extend(r.skipped);
    t.stages.extend(r.stage_times);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::test::summary::StageTime;

    fn report(passed: usize, failures: &[&str]) -> TestReport {
        TestReport {
            schema: 1,
            stages: vec!["deploy".into()],
            packages: Vec::new(),
            passed,
            failed: failures.len(),
            failures: failures.iter().map(|s| (*s).to_owned()).collect(),
            skipped: vec!["no sshd".into()],
            seconds: 2.0,
            stage_times: vec![StageTime {
                stage: "deploy".into(),
                passed,
                failed: failures.len(),
                seconds: 2.0,
                cpu_seconds: Some(1.5),
                xtask_cpu_seconds: Some(0.1),
            }],
        }
    }

    #[test]
    fn cargo_waiting_for_a_lock_is_not_shown() {
        let log = "   Compiling x v0.1.0\n    Blocking waiting for file lock on artifact directory\n  ✓ done\n";
        assert_eq!(shown(log), "   Compiling x v0.1.0\n  ✓ done\n");
        assert_eq!(shown("a\nb"), "a\nb\n");
    }

    #[test]
    fn a_part_counts_as_if_it_ran_in_sequence() {
        let mut t = Tally::default();
        t.record(true, "before");
        merge(&mut t, report(3, &["loopback x: refused"]));
        assert_eq!(t.passed, 4);
        assert_eq!(t.failed, vec!["loopback x: refused".to_owned()]);
        assert_eq!(t.skipped, vec!["no sshd".to_owned()]);
        assert_eq!(t.stages.len(), 1);
        assert_eq!(t.stages[0].stage, "deploy");
    }

    #[test]
    fn a_part_report_round_trips_and_a_missing_one_is_an_error() {
        let dir = std::env::temp_dir().join(format!("xtask-beside-{}", std::process::id()));
        let path = dir.join("part.json");
        let r = report(2, &[]);
        files::write_atomic(&path, crate::commands::to_json(&r).as_bytes()).unwrap();
        let back = read_report(&path).unwrap();
        assert_eq!((back.passed, back.failed), (2, 0));
        assert_eq!(back.stage_times[0].cpu_seconds, Some(1.5));
        let missing = read_report(&dir.join("none.json")).unwrap_err();
        assert!(missing.to_string().contains("none.json"), "{missing}");
        std::fs::write(&path, "{\"schema\": 2}").unwrap();
        assert!(read_report(&path).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[cfg(unix)]
    #[test]
    fn a_child_that_does_not_report_is_a_failed_check() {
        let dir = std::env::temp_dir().join(format!("xtask-beside-child-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("part.log");
        std::fs::write(&log, "  some output\n").unwrap();
        let b = Beside {
            stage: "deploy",
            child: Command::new("true").spawn().context("running true"),
            log,
            report: dir.join("part.json"),
        };
        let mut t = Tally::default();
        b.finish(&mut t);
        assert_eq!(t.passed, 0);
        assert_eq!(t.failed.len(), 1);
        assert!(
            t.failed[0].contains("the deploy stage, run beside the others")
                && t.failed[0].contains("part.json"),
            "{:?}",
            t.failed
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
