//! Library: each placed x64 image run by the harness (`xtask/emu/harness.py`) in speakeasy, and
//! its report shown. The harness's contract is `xtask/emu/REPORT.md`; the `emulate` command is
//! `crate::commands::emulate`.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::base::error::{Result, bail};
use crate::base::layout::{Arch, Profile, display_path};
use crate::base::process::tail;
use crate::base::workspace::{Driver, Workspace};
use crate::emulator::batch;
use crate::emulator::report;
use crate::emulator::venv;

/// Overrides the harness script (for testing xtask with a stand-in harness).
pub const HARNESS_ENV: &str = "XTASK_EMU_HARNESS";
/// Overrides the harness's Python, skipping the venv (for testing xtask with a stand-in harness).
pub const PYTHON_ENV: &str = "XTASK_EMU_PYTHON";

/// How to start the harness.
#[derive(Clone, Debug)]
pub struct Harness {
    /// The interpreter: the venv's, with speakeasy.
    pub python: PathBuf,
    /// `xtask/emu/harness.py`.
    pub script: PathBuf,
}

impl Harness {
    /// The real harness, `xtask/emu/harness.py`, run by the venv's Python (installed on first use).
    /// `$XTASK_EMU_HARNESS` and `$XTASK_EMU_PYTHON` replace them, for testing xtask itself.
    pub fn locate(ws: &Workspace) -> Result<Self> {
        let script = std::env::var_os(HARNESS_ENV).map_or_else(
            || ws.root.join("xtask").join("emu").join("harness.py"),
            PathBuf::from,
        );
        if !script.is_file() {
            bail!(
                "the emulator harness {} is missing: restore it from git",
                script.display()
            );
        }
        let python = match std::env::var_os(PYTHON_ENV) {
            Some(p) => PathBuf::from(p),
            None => venv::ensure(&ws.layout.emu_venv(), &ws.root.join(venv::LOCK))?,
        };
        Ok(Self { python, script })
    }

    /// `python harness.py`. (The harness's package imports unicorn itself, without the
    /// pkg_resources and distutils unicorn 1.0.2 asks for: `xtask/emu/emukernel/quickstart.py`.)
    pub fn command(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(&self.python);
        cmd.arg(&self.script);
        cmd
    }
}

/// Which fallible calls the fault sweep fails (`--fault-phase`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FaultPhase {
    /// Those of DriverEntry and of DriverUnload.
    #[default]
    Both,
    /// Those of DriverEntry only.
    DriverEntry,
    /// Those of DriverUnload only.
    DriverUnload,
}

/// What to ask the harness for.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// `--faults`: the fault sweep.
    pub faults: bool,
    /// With `faults`: which phase's calls it fails.
    pub fault_phase: FaultPhase,
    /// `--count-instructions`: instructions per callback invocation.
    pub count_instructions: bool,
    /// `--no-variants`: the scenario run alone, not the scenario's variants.
    pub scenario_only: bool,
}

/// How one driver's emulation ended.
#[derive(Debug)]
pub enum Outcome {
    /// Every run passed; the report.
    Passed(Value),
    /// A run failed; the report says why.
    Failed(Value),
    /// The harness could not run or gave no usable report.
    Error(String),
}

impl Outcome {
    /// The report, if there is one.
    pub fn report(&self) -> Option<&Value> {
        match self {
            Outcome::Passed(r) | Outcome::Failed(r) => Some(r),
            Outcome::Error(_) => None,
        }
    }
}

/// One driver's emulation.
#[derive(Debug)]
pub struct DriverRun {
    /// The driver.
    pub driver: String,
    /// The harness's exit status (`None`: killed by a signal, or never started).
    pub exit: Option<i32>,
    /// How it ended.
    pub outcome: Outcome,
}

/// The report file name of an emulation of the `profile` image, in `target/emu/NAME/`.
pub fn report_name(profile: Profile) -> &'static str {
    match profile {
        Profile::Debug => "report.json",
        Profile::Release => "report-release.json",
    }
}

/// The inputs of one driver's emulation, checked before anything is installed or run.
pub fn inputs(ws: &Workspace, driver: &Driver, profile: Profile) -> Result<(PathBuf, PathBuf)> {
    let image = ws.layout.placed_sys(&driver.name, Arch::X64, profile);
    let release = if profile == Profile::Release {
        " --release"
    } else {
        ""
    };
    if !image.is_file() {
        bail!(
            "{name}: no built x64 image at {}: build it first: cargo xtask build -p {name}{release}",
            display_path(&image, &ws.root),
            name = driver.name
        );
    }
    Ok((image, scenario(ws, driver)?))
}

/// The driver's `scenario.toml`, which must exist.
pub fn scenario(ws: &Workspace, driver: &Driver) -> Result<PathBuf> {
    let scenario = driver.scenario();
    if !scenario.is_file() && driver.fixture {
        bail!(
            "{}: a test fixture has no scenario.toml; its scenario-*.toml files are run by `cargo xtask test`",
            driver.name
        );
    }
    if !scenario.is_file() {
        bail!(
            "{}: no emulation scenario at {}: a driver describes the kernel events that exercise its \
             callbacks there (see xtask/emu/REPORT.md and ex-callback/scenario.toml)",
            driver.name,
            display_path(&scenario, &ws.root)
        );
    }
    Ok(scenario)
}

/// Runs the harness on each of `drivers` (their x64 `profile` images), writing each report to
/// `target/emu/NAME/<report_name>`. With `print`, shows each report as text as it comes.
/// An `Err` means nothing was run (a missing image or scenario, no Python).
pub fn emulate(
    ws: &Workspace,
    drivers: &[&Driver],
    profile: Profile,
    opts: Options,
    report_name: &str,
    print: bool,
) -> Result<Vec<DriverRun>> {
    if drivers.is_empty() {
        bail!("no drivers to emulate");
    }
    let mut problems = Vec::new();
    let mut planned = Vec::new();
    for &d in drivers {
        match inputs(ws, d, profile) {
            Ok((image, scenario)) => planned.push((d, image, scenario)),
            Err(e) => problems.push(e.to_string()),
        }
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("\n"));
    }
    let harness = Harness::locate(ws)?;
    // One harness process for every driver (batch.rs): the drivers run side by side in it, each
    // with the processes left over for its own runs; reports and output in the drivers' order.
    let entries: Vec<batch::Entry> = planned
        .iter()
        .map(|(d, image, scenario)| batch::Entry {
            name: d.name.clone(),
            image,
            scenario,
            report: ws.layout.emu_report(&d.name, report_name),
            opts,
        })
        .collect();
    let plan = ws
        .layout
        .emu_report("batch", &format!("plan-{}.json", std::process::id()));
    let mut runs = Vec::new();
    batch::run(
        &harness,
        &plan,
        &entries,
        crate::base::process::jobs(),
        &mut |i, run, progress| {
            eprintln!(
                "  emulating {} ({profile}{})...",
                planned[i].0.name,
                if opts.faults {
                    ", with fault sweep"
                } else {
                    ""
                }
            );
            for line in progress {
                eprintln!("    {line}");
            }
            if print {
                print_run(&run);
            }
            runs.push(run);
        },
    )?;
    if print {
        println!("{}", summary(&runs));
    }
    Ok(runs)
}

/// What one harness run's exit status, report and stderr mean.
pub(crate) fn interpret(exit: Option<i32>, report_path: &Path, stderr: &str) -> Outcome {
    let said = || tail(stderr.trim_end(), 20);
    match exit {
        Some(0 | 1) if !report_path.is_file() => Outcome::Error(format!(
            "the harness exited with {} but wrote no report (it crashed?):\n{}",
            exit.unwrap_or_default(),
            said()
        )),
        Some(code @ (0 | 1)) => match report::read(report_path) {
            // The report is the verdict; an exit status that disagrees with it is a harness bug.
            Ok(r) if code == 0 && report_passed(&r) => Outcome::Passed(r),
            Ok(r) if code == 1 && !report_passed(&r) => Outcome::Failed(r),
            Ok(r) => Outcome::Error(format!(
                "the harness exited with {code} but its report says passed = {}",
                report_passed(&r)
            )),
            Err(e) => Outcome::Error(e.to_string()),
        },
        Some(2) => Outcome::Error(format!("the harness could not run:\n{}", said())),
        Some(code) => Outcome::Error(format!(
            "the harness failed with exit status {code}:\n{}",
            said()
        )),
        None => Outcome::Error(format!("the harness was killed by a signal:\n{}", said())),
    }
}

fn report_passed(r: &Value) -> bool {
    r.get("passed").and_then(Value::as_bool).unwrap_or(false)
}

fn print_run(run: &DriverRun) {
    match &run.outcome {
        Outcome::Passed(r) | Outcome::Failed(r) => print!("{}", report::render(r)),
        Outcome::Error(e) => println!("== {}\n  ERROR: {e}", run.driver),
    }
}

/// `emulate: 2 driver(s): 1 passed, 1 failed, 0 could not run; 12 run(s): 11 passed, 1 failed`.
pub fn summary(runs: &[DriverRun]) -> String {
    let count = |f: fn(&Outcome) -> bool| runs.iter().filter(|r| f(&r.outcome)).count();
    let passed = count(|o| matches!(o, Outcome::Passed(_)));
    let failed = count(|o| matches!(o, Outcome::Failed(_)));
    let errors = count(|o| matches!(o, Outcome::Error(_)));
    let (mut total, mut ok) = (0, 0);
    for t in runs
        .iter()
        .filter_map(|r| r.outcome.report())
        .map(report::tally)
    {
        total += t.runs;
        ok += t.passed;
    }
    format!(
        "emulate: {} driver(s): {passed} passed, {failed} failed, {errors} could not run; \
         {total} run(s): {ok} passed, {} failed",
        runs.len(),
        total - ok
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::fs;

    /// A stand-in harness: behaves as `$FAKE_MODE` says, checking its arguments as the real one
    /// would be called; `--batch` runs each entry as one such call.
    const FAKE_HARNESS: &str = r#"
import json, os, subprocess, sys
args = sys.argv[1:]
if "--batch" in args:  # each entry as one single-run process of this script, in the batch protocol
    plan = json.load(open(args[args.index("--batch") + 1]))
    for e in plan["entries"]:
        cmd = [sys.executable, __file__, "--image", e["image"], "--scenario", e["scenario"],
               "--report", e["report"]] + (["--faults"] if e["faults"] else [])
        p = subprocess.run(cmd, capture_output=True, text=True)
        print("@entry " + e["name"], file=sys.stderr)
        sys.stderr.write(p.stderr)
        print("@exit %d" % p.returncode, file=sys.stderr, flush=True)
    sys.exit(0)
def arg(name):
    return args[args.index(name) + 1]
mode = open(os.path.join(os.path.dirname(arg("--scenario")), "mode")).read().strip()
if mode == "unusable":
    print("harness: unknown scenario step `frobnicate`", file=sys.stderr); sys.exit(2)
if mode == "crash":
    raise RuntimeError("boom")
passed = mode == "pass"
runs = [{"name": "scenario", "kind": "scenario", "fault": None, "passed": passed,
         "driver_entry": {"status": 0, "expected": "success"}, "unloaded": True,
         "log": ["[fake] Info: DriverEntry " + os.path.basename(arg("--image"))],
         "steps": [], "audit": [{"check": "every registration undone", "ok": passed, "detail": ""}],
         "failures": [] if passed else ["1 registration left"], "error": None}]
if "--faults" in args:
    runs.append(dict(runs[0], name="fault x", kind="fault",
                     fault={"routine": "ntoskrnl.ExCreateCallback", "occurrence": 1, "injected": "STATUS_INSUFFICIENT_RESOURCES"}))
report = {"schema": 1, "driver": "fake", "image": arg("--image"), "passed": passed,
          "routines": {"speakeasy": [], "modelled": []}, "runs": runs}
print("progress on stdout must not reach ours")
tmp = arg("--report") + ".tmp"
json.dump(report, open(tmp, "w")); os.replace(tmp, arg("--report"))
print("harness: run scenario", file=sys.stderr)
sys.exit(0 if passed else 1)
"#;

    struct Fixture {
        dir: PathBuf,
        harness: Harness,
    }

    impl Fixture {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("xtask-emulate-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            let script = dir.join("harness.py");
            fs::write(&script, FAKE_HARNESS).unwrap();
            Self {
                harness: Harness {
                    python: "python3".into(),
                    script,
                },
                dir,
            }
        }

        fn run(&self, mode: &str, faults: bool) -> DriverRun {
            let scenario = self.dir.join("scenario.toml");
            fs::write(&scenario, "").unwrap();
            fs::write(self.dir.join("mode"), mode).unwrap();
            let report = self.dir.join("emu/fake/report.json");
            let opts = Options {
                faults,
                ..Options::default()
            };
            let image = self.dir.join("fake.sys");
            let entries = [batch::Entry {
                name: "fake".to_owned(),
                image: &image,
                scenario: &scenario,
                report,
                opts,
            }];
            let mut got = None;
            batch::run(
                &self.harness,
                &self.dir.join("plan.json"),
                &entries,
                1,
                &mut |_, run, _| got = Some(run),
            )
            .unwrap();
            got.expect("every entry gets a run")
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn the_harness_is_harness_py_run_by_the_venvs_python() {
        let h = Harness {
            python: "/venv/bin/python".into(),
            script: "/ws/xtask/emu/harness.py".into(),
        };
        let cmd = h.command();
        assert_eq!(cmd.get_program(), "/venv/bin/python");
        let args: Vec<_> = cmd.get_args().collect();
        assert_eq!(args, ["/ws/xtask/emu/harness.py"]);
    }

    #[test]
    fn passing_and_failing_runs_carry_their_report() {
        let f = Fixture::new("outcomes");
        let pass = f.run("pass", true);
        assert_eq!(pass.exit, Some(0));
        let Outcome::Passed(r) = &pass.outcome else {
            panic!("{:?}", pass.outcome)
        };
        assert_eq!(report::tally(r), report::Tally { runs: 2, passed: 2 });

        let fail = f.run("fail", false);
        assert!(
            matches!(fail.outcome, Outcome::Failed(_)),
            "{:?}",
            fail.outcome
        );
        let text = summary(&[pass, fail]);
        assert_eq!(
            text,
            "emulate: 2 driver(s): 1 passed, 1 failed, 0 could not run; 3 run(s): 2 passed, 1 failed"
        );
    }

    #[test]
    fn a_stale_report_is_never_read() {
        let f = Fixture::new("stale");
        assert!(matches!(f.run("pass", false).outcome, Outcome::Passed(_)));
        // The harness now crashes: the previous report must not stand in for this run's.
        let crash = f.run("crash", false);
        let Outcome::Error(e) = &crash.outcome else {
            panic!("{:?}", crash.outcome)
        };
        assert!(
            e.contains("wrote no report") && e.contains("RuntimeError: boom"),
            "{e}"
        );
    }

    #[test]
    fn exit_2_is_an_error_with_the_harness_message() {
        let f = Fixture::new("unusable");
        let run = f.run("unusable", false);
        assert_eq!(run.exit, Some(2));
        let Outcome::Error(e) = &run.outcome else {
            panic!("{:?}", run.outcome)
        };
        assert!(
            e.contains("could not run") && e.contains("unknown scenario step `frobnicate`"),
            "{e}"
        );
        assert!(run.outcome.report().is_none());
    }

    #[test]
    fn exit_status_and_report_must_agree() {
        let dir = std::env::temp_dir().join(format!("xtask-emulate-agree-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("report.json");
        let mut r = report::tests::sample(); // passed: false
        fs::write(&path, r.to_string()).unwrap();
        assert!(matches!(interpret(Some(1), &path, ""), Outcome::Failed(_)));
        assert!(matches!(interpret(Some(0), &path, ""), Outcome::Error(_)));
        r["passed"] = json!(true);
        fs::write(&path, r.to_string()).unwrap();
        assert!(matches!(interpret(Some(0), &path, ""), Outcome::Passed(_)));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_inputs_name_the_fix() {
        let dir = std::env::temp_dir().join(format!("xtask-emulate-inputs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let driver = Driver {
            name: "ex-callback".into(),
            version: "0.1.0".into(),
            dir: dir.join("ex-callback"),
            fixture: false,
            size_budget: None,
            callback_instruction_budget: None,
            variant: None,
        };
        let ws = Workspace {
            root: dir.clone(),
            layout: crate::base::layout::Layout::new(dir.join("target")),
            drivers: vec![driver.clone()],
        };
        let e = inputs(&ws, &driver, Profile::Release)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("target/drivers/x64/release/ex-callback/ex-callback.sys")
                && e.contains("cargo xtask build -p ex-callback --release"),
            "{e}"
        );
        crate::base::files::write_atomic(
            &ws.layout
                .placed_sys("ex-callback", Arch::X64, Profile::Release),
            b"MZ",
        )
        .unwrap();
        let e = inputs(&ws, &driver, Profile::Release)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no emulation scenario at ex-callback/scenario.toml"),
            "{e}"
        );
        crate::base::files::write_atomic(&driver.scenario(), b"").unwrap();
        inputs(&ws, &driver, Profile::Release).unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }
}
