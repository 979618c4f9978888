//! `cargo xtask test`: every layer of tests, in order, and one line CI can read:
//! `N passed, M failed`.
//!
//! 1. host unit tests (`cargo test -p common -p xtask`, and the harness's `xtask/emu/tests`);
//! 2. every driver built for x64 and arm64, debug and release (each image through the lint gate);
//! 3. the placed images linted again, as `cargo xtask lint` reads them;
//! 4. every driver signed and packaged for x64 and arm64, debug and release, and each package
//!    verified (`verify`): osslsigncode on the signatures and the catalog, our round trip of the
//!    catalog and the INF, tampered copies that must fail, the lint on the signed image; the
//!    signed x64 images run in the emulator;
//! 5. every driver emulated with the fault sweep, debug and release images;
//! 6. the negative fixtures (`fixtures`): each defect of a driver broken on purpose must be caught;
//!    then the mutation check (`mutations`): every lesson a driver README claims, broken in a copy
//!    of the driver, must be caught by the rule that names it;
//! 7. deploy: the VM plans of the real packages, and the ssh transport and whole plans against a
//!    real OpenSSH server on 127.0.0.1 (`deploy::suite_checks`; skipped, loudly, only where
//!    OpenSSH cannot be installed).

use std::process::Command;
use std::time::Instant;

use crate::build::{self, Built};
use crate::emulate::{self, FaultPhase, Harness, Options, Outcome};
use crate::error::{Result, bail};
use crate::layout::{Arch, Profile};
use crate::process::elapsed;
use crate::workspace::{Driver, Workspace, cargo};
use crate::{cert, files, fixtures, lint_images, package, sign, verify};

/// The tally of checks.
#[derive(Debug, Default)]
struct Tally {
    passed: usize,
    failed: Vec<String>,
    skipped: Vec<String>,
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

const STAGES: usize = 7;
const PROFILES: [Profile; 2] = [Profile::Debug, Profile::Release];

fn header(n: usize, title: &str) {
    println!("\n==> [{n}/{STAGES}] {title}");
}

/// The `test` command.
pub fn run(ws: &Workspace, only_mutations: bool) -> Result<()> {
    let start = Instant::now();
    let mut t = Tally::default();
    if only_mutations {
        header(
            6,
            "mutations: each README lesson broken in a copy of its driver must be caught",
        );
        check_mutations(ws, &mut t);
        return finish(start, &t);
    }
    let drivers = ws.select(&[])?;

    header(1, "host unit tests: cargo test -p common -p xtask");
    host_tests(ws, &mut t);
    header(
        2,
        "build every driver: x64 and arm64, debug and release (each image linted)",
    );
    let built = build_stage(ws, &drivers, &mut t);
    header(3, "lint the placed images");
    lint_stage(ws, &built, &mut t);
    header(
        4,
        "sign and package every driver, verify with osslsigncode and our own checks",
    );
    package_stage(ws, &drivers, &built, &mut t);
    header(
        5,
        "emulate every driver with the fault sweep (debug and release)",
    );
    emulate_stage(ws, &drivers, &built, &mut t);
    header(
        6,
        "negative fixtures and mutations: each defect of a driver broken on purpose, and each README lesson broken in a copy, must be caught",
    );
    let fixtures = ws.fixtures();
    if fixtures.is_empty() {
        println!(
            "  skipped: no fixture package ([package.metadata.driver] fixture = true) in the workspace"
        );
    }
    for fixture in fixtures {
        check_fixture(ws, fixture, &mut t);
    }
    check_mutations(ws, &mut t);

    header(
        7,
        "deploy: VM plans of the real packages; the ssh transport and whole plans against a real OpenSSH server on 127.0.0.1",
    );
    let (checks, skipped) = crate::deploy::suite_checks(ws, &drivers);
    for c in checks {
        t.record(c.ok, c.what);
    }
    if let Some(why) = skipped {
        let what = format!("the deploy loopback tests (a real OpenSSH server on 127.0.0.1): {why}");
        println!("  SKIPPED: {what}");
        t.skipped.push(what);
    }

    finish(start, &t)
}

/// The summary and the final line.
fn finish(start: Instant, t: &Tally) -> Result<()> {
    println!("\ntest: finished in {}", elapsed(start.elapsed()));
    for s in &t.skipped {
        println!("  SKIPPED: {s}");
    }
    for f in &t.failed {
        println!("  failed: {f}");
    }
    println!("{}", final_line(t.passed, t.failed.len()));
    if !t.failed.is_empty() {
        bail!("test: {} check(s) failed", t.failed.len());
    }
    Ok(())
}

/// `cargo test -p common -p xtask`, then the harness's own unit tests (its models' documented
/// rules) with the venv's Python.
fn host_tests(ws: &Workspace, t: &mut Tally) {
    let status = Command::new(cargo())
        .args(["test", "-p", "common", "-p", "xtask"])
        .current_dir(&ws.root)
        .status();
    t.record(
        status.is_ok_and(|s| s.success()),
        "host unit tests (cargo test -p common -p xtask)",
    );
    let harness_tests = ws.root.join("xtask").join("emu").join("tests");
    if !harness_tests.is_dir() {
        return;
    }
    println!("  and the harness's unit tests: python -m unittest discover -s xtask/emu/tests");
    let ok = match Harness::locate(ws) {
        Ok(h) => Command::new(&h.python)
            .args(["-m", "unittest", "discover", "-s"])
            .arg(&harness_tests)
            .current_dir(&ws.root)
            .status()
            .is_ok_and(|s| s.success()),
        Err(e) => {
            println!("  {e}");
            false
        }
    };
    t.record(
        ok,
        "harness unit tests (python -m unittest discover -s xtask/emu/tests)",
    );
}

/// Every driver for both architectures and both profiles; each image is linted before it is placed.
fn build_stage(ws: &Workspace, drivers: &[&Driver], t: &mut Tally) -> Vec<Built> {
    let mut built: Vec<Built> = Vec::new();
    for profile in PROFILES {
        match build::build(ws, drivers, &Arch::ALL, profile) {
            Ok(b) => built.extend(b),
            Err(e) => t.record(false, format!("build ({profile}): {e}")),
        }
    }
    for b in &built {
        let what = format!("build {} ({}, {})", b.driver, b.arch, b.profile);
        match &b.result {
            Ok(_) => t.record(true, what),
            Err(e) => t.record(false, format!("{what}: {e}")),
        }
    }
    built
}

/// The placed images, read again as `cargo xtask lint` reads them.
fn lint_stage(ws: &Workspace, built: &[Built], t: &mut Tally) {
    let images: Vec<_> = built
        .iter()
        .filter_map(|b| b.result.as_ref().ok().map(|p| (p.clone(), b.arch)))
        .collect();
    let linted = lint_images::lint_all(&images);
    print!("{}", lint_images::render(&linted, ws));
    for l in &linted {
        t.record(l.passed(), format!("lint {}", l.path.display()));
    }
}

/// Every placed image signed and packaged, each package verified (`verify.rs`), and each signed
/// x64 image run once in the emulator.
fn package_stage(ws: &Workspace, drivers: &[&Driver], built: &[Built], t: &mut Tally) {
    let signer = match sign::signer(None) {
        Ok(s) => s,
        Err(e) => return t.record(false, format!("the test certificate: {e}")),
    };
    let scratch = ws.layout.sign_check_dir();
    let pem = scratch.join("test-certificate.pem");
    if let Err(e) = cert::to_pem(&signer.cert).and_then(|p| files::write_atomic(&pem, p.as_bytes()))
    {
        return t.record(false, format!("writing {}: {e}", pem.display()));
    }
    let osslsigncode = verify::osslsigncode();
    match &osslsigncode {
        Ok(p) => println!("  independent verifier: {}", p.display()),
        Err(e) => println!("  {e}"),
    }
    let harness = Harness::locate(ws);
    for profile in PROFILES {
        for arch in Arch::ALL {
            let ready: Vec<&Driver> = drivers
                .iter()
                .copied()
                .filter(|d| {
                    built.iter().any(|b| {
                        b.driver == d.name
                            && b.arch == arch
                            && b.profile == profile
                            && b.result.is_ok()
                    })
                })
                .collect();
            if ready.is_empty() {
                continue; // their build failures are counted already
            }
            let made = match package::package(ws, &ready, &[arch], profile, &signer) {
                Ok(m) => m,
                Err(e) => {
                    t.record(false, format!("package ({arch}, {profile}): {e}"));
                    continue;
                }
            };
            for p in made {
                let what = format!("package {} ({arch}, {profile})", p.driver);
                let dir = match p.result {
                    Ok((dir, _)) => dir,
                    Err(e) => {
                        t.record(false, format!("{what}: {e}"));
                        continue;
                    }
                };
                t.record(true, what);
                let subject = verify::Subject {
                    name: &p.driver,
                    arch,
                    profile,
                    dir: &dir,
                    cert: &signer.cert,
                    pem: &pem,
                    scratch: &scratch
                        .join(arch.name())
                        .join(profile.dir())
                        .join(&p.driver),
                };
                for c in verify::check_package(&subject, osslsigncode.as_deref().ok()) {
                    if c.ok {
                        println!("  ✓ {}", c.what);
                    }
                    t.record(c.ok, c.what);
                }
                if arch == Arch::X64 {
                    emulate_signed(ws, &harness, &p.driver, &dir, profile, t);
                }
            }
        }
    }
}

/// The signed x64 image of a package, run once in the emulator (no fault sweep).
fn emulate_signed(
    ws: &Workspace,
    harness: &Result<Harness>,
    name: &str,
    dir: &std::path::Path,
    profile: Profile,
    t: &mut Tally,
) {
    let what = format!("the signed {name}.sys ({profile}) runs in the emulated kernel");
    let (Ok(harness), Some(driver)) = (harness, ws.drivers.iter().find(|d| d.name == name)) else {
        let why = harness
            .as_ref()
            .err()
            .map(ToString::to_string)
            .unwrap_or_default();
        return t.record(false, format!("{what}: {why}"));
    };
    let report = ws
        .layout
        .emu_report(name, &format!("signed-{}", emulate::report_name(profile)));
    let image = dir.join(format!("{name}.sys"));
    let run = emulate::run_harness(
        harness,
        name,
        &image,
        &driver.scenario(),
        &report,
        Options::default(),
    );
    match run.outcome {
        Outcome::Passed(_) => {
            println!("  ✓ {what}");
            t.record(true, what);
        }
        Outcome::Failed(r) => {
            print!("{}", crate::report::render(&r));
            t.record(false, what);
        }
        Outcome::Error(e) => t.record(false, format!("{what}: {e}")),
    }
}

/// Every driver whose x64 image was placed, with the fault sweep, debug and release.
fn emulate_stage(ws: &Workspace, drivers: &[&Driver], built: &[Built], t: &mut Tally) {
    for profile in PROFILES {
        let placed = |d: &&Driver| {
            built.iter().any(|b| {
                b.driver == d.name
                    && b.arch == Arch::X64
                    && b.profile == profile
                    && b.result.is_ok()
            })
        };
        let ready: Vec<&Driver> = drivers.iter().copied().filter(placed).collect();
        if ready.is_empty() {
            continue; // their build failures are counted already
        }
        let opts = Options {
            faults: true,
            count_instructions: false,
            ..Options::default()
        };
        match emulate::emulate(
            ws,
            &ready,
            profile,
            opts,
            emulate::report_name(profile),
            true,
        ) {
            Ok(runs) => {
                for r in runs {
                    let ok = matches!(r.outcome, Outcome::Passed(_));
                    t.record(ok, format!("emulate {} ({profile}, with faults)", r.driver));
                }
            }
            Err(e) => t.record(false, format!("emulate ({profile}): {e}")),
        }
    }
}

/// Builds a fixture and runs each of its scenarios, which must each be caught as it expects.
fn check_fixture(ws: &Workspace, fixture: &Driver, t: &mut Tally) {
    let name = &fixture.name;
    let built = match build::build(ws, &[fixture], &[Arch::X64], Profile::Debug) {
        Ok(b) => b.into_iter().next().map(|b| b.result),
        Err(e) => Some(Err(e)),
    };
    let image = match built {
        Some(Ok(image)) => image,
        Some(Err(e)) => return t.record(false, format!("fixture {name}: build: {e}")),
        None => return t.record(false, format!("fixture {name}: nothing built")),
    };
    let (scenarios, harness) = match (fixtures::scenarios(fixture), Harness::locate(ws)) {
        (Ok(s), Ok(h)) => (s, h),
        (Err(e), _) | (_, Err(e)) => return t.record(false, format!("fixture {name}: {e}")),
    };
    for scenario in scenarios {
        let stem = scenario
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let what = format!("fixture {name} {stem} is caught");
        let expect = match fixtures::read_expect(&harness.python, &scenario) {
            Ok(e) => e,
            Err(e) => {
                t.record(false, format!("{what}: {e}"));
                continue;
            }
        };
        let report = ws.layout.emu_report(name, &format!("{stem}.json"));
        let opts = Options {
            faults: expect.fault_sweep,
            fault_phase: expect.fault_phase,
            count_instructions: false,
        };
        eprintln!(
            "  emulating {name} with {stem}.toml{}...",
            match (opts.faults, opts.fault_phase) {
                (false, _) => "",
                (true, FaultPhase::Both) => ", with fault sweep",
                (true, FaultPhase::DriverEntry) => ", with DriverEntry's fault sweep",
                (true, FaultPhase::DriverUnload) => ", with DriverUnload's fault sweep",
            }
        );
        let run = emulate::run_harness(&harness, name, &image, &scenario, &report, opts);
        match fixtures::verdict(&run.outcome, &expect) {
            Ok(()) => {
                let wanted = expect.describe();
                println!("  ✓ {name} {stem}: caught, as expected ({wanted})");
                t.record(true, what);
            }
            Err(e) => {
                if let Some(r) = run.outcome.report() {
                    print!("{}", crate::report::render(r));
                }
                println!("  ✗ {name} {stem}: {e}");
                t.record(false, format!("{what}: {e}"));
            }
        }
    }
}

/// The mutation check: every `xtask/mutations/*.toml` is named by its driver's README, and each
/// mutant builds and fails in the harness with the rule that names its lesson.
fn check_mutations(ws: &Workspace, t: &mut Tally) {
    let harness = match Harness::locate(ws) {
        Ok(h) => h,
        Err(e) => return t.record(false, format!("mutations: {e}")),
    };
    let mutations = match crate::mutations::load_all(ws, &harness.python) {
        Ok(m) => m,
        Err(e) => return t.record(false, format!("mutations: {e}")),
    };
    let problems = crate::mutations::readme_problems(ws, &mutations);
    for p in &problems {
        println!("  ✗ {p}");
    }
    t.record(
        problems.is_empty() && !mutations.is_empty(),
        format!(
            "every README lesson has its mutation, and every mutation its README line ({} mutation(s))",
            mutations.len()
        ),
    );
    let drivers = ws.select(&[]).unwrap_or_default();
    for m in &mutations {
        let what = format!("mutation {} ({}: {}) is caught", m.name, m.driver, m.lesson);
        let Some(driver) = drivers.iter().find(|d| d.name == m.driver) else {
            t.record(false, format!("{what}: no driver {}", m.driver));
            continue;
        };
        eprintln!("  building mutant {}...", m.name);
        let image = match crate::mutations::build(ws, driver, m) {
            Ok(image) => image,
            Err(e) => {
                t.record(false, format!("{what}: {e}"));
                continue;
            }
        };
        let report = ws
            .layout
            .emu_report(&m.driver, &format!("mutant-{}.json", m.name));
        let opts = Options {
            faults: m.expect.fault_sweep,
            fault_phase: m.expect.fault_phase,
            count_instructions: false,
        };
        let run = emulate::run_harness(
            &harness,
            &m.driver,
            &image,
            &driver.scenario(),
            &report,
            opts,
        );
        match fixtures::verdict(&run.outcome, &m.expect) {
            Ok(()) => {
                println!("  ✓ mutant {}: caught ({})", m.name, m.expect.describe());
                t.record(true, what);
            }
            Err(e) => {
                if let Some(r) = run.outcome.report() {
                    print!("{}", crate::report::render(r));
                }
                println!("  ✗ mutant {}: {e}", m.name);
                t.record(false, format!("{what}: {e}"));
            }
        }
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
    fn final_line_is_what_ci_parses() {
        assert_eq!(final_line(12, 0), "12 passed, 0 failed");
    }
}
