//! The test stages that run the emulated kernel: every driver with its fault sweep (`emulate`),
//! the signed images of the `package` stage, the fixtures' scenarios (`fixtures`) and the mutants
//! (`mutations`). Each runs its harness work as one batch (`emulator/batch.rs`): one harness
//! process, entries side by side, results in order.

use crate::base::error::Result;
use crate::base::files;
use crate::base::layout::{Arch, Profile};
use crate::base::toolchain;
use crate::base::workspace::{Driver, Workspace};
use crate::commands::build::{self, Built};
use crate::commands::test::{PROFILES, Tally, diagrams, fixtures};
use crate::emulator::batch;
use crate::emulator::emulate::{self, FaultPhase, Harness, Options, Outcome};

/// The signed x64 image of each package (driver, package folder, profile), run once in the
/// emulator (its scenario run: no variants, no fault sweep; the emulate stage runs those on the
/// image before signing), all in one harness batch.
pub(super) fn emulate_signed(
    ws: &Workspace,
    harness: &Result<Harness>,
    signed: &[(String, std::path::PathBuf, Profile)],
    t: &mut Tally,
) {
    let what = |name: &str, profile: Profile| {
        format!("the signed {name}.sys ({profile}) runs in the emulated kernel")
    };
    let harness = match harness {
        Ok(h) => h,
        Err(e) => {
            for (name, _, profile) in signed {
                t.record(false, format!("{}: {e}", what(name, *profile)));
            }
            return;
        }
    };
    let mut planned = Vec::new();
    for (name, dir, profile) in signed {
        match ws.drivers.iter().find(|d| d.name == *name) {
            Some(driver) => planned.push((
                name,
                dir.join(format!("{name}.sys")),
                driver.scenario(),
                *profile,
            )),
            None => t.record(false, format!("{}: no such driver", what(name, *profile))),
        }
    }
    if planned.is_empty() {
        return;
    }
    let entries: Vec<batch::Entry> = planned
        .iter()
        .map(|(name, image, scenario, profile)| batch::Entry {
            name: format!("{name} signed-{profile}"),
            image,
            scenario,
            report: ws
                .layout
                .emu_report(name, &format!("signed-{}", emulate::report_name(*profile))),
            opts: Options {
                scenario_only: true,
                ..Options::default()
            },
        })
        .collect();
    let plan = ws
        .layout
        .emu_report("signed", &format!("plan-{}.json", std::process::id()));
    let ran = batch::run(
        harness,
        &plan,
        &entries,
        crate::base::process::jobs(),
        &mut |i, run, _progress| {
            let (name, _, _, profile) = &planned[i];
            let what = what(name, *profile);
            match run.outcome {
                Outcome::Passed(_) => {
                    println!("  ✓ {what}");
                    t.record(true, what);
                }
                Outcome::Failed(r) => {
                    print!("{}", crate::emulator::report::render(&r));
                    t.record(false, what);
                }
                Outcome::Error(e) => t.record(false, format!("{what}: {e}")),
            }
        },
    );
    if let Err(e) = ran {
        t.record(false, format!("emulating the signed images: {e}"));
    }
}

/// Every driver whose x64 image was placed, with the fault sweep, debug and release.
pub(super) fn emulate_stage(ws: &Workspace, drivers: &[&Driver], built: &[Built], t: &mut Tally) {
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
                for r in &runs {
                    let ok = matches!(r.outcome, Outcome::Passed(_));
                    t.record(ok, format!("emulate {} ({profile}, with faults)", r.driver));
                }
                if profile == Profile::Debug {
                    diagrams::check(ws, &ready, &runs, t);
                }
            }
            Err(e) => t.record(false, format!("emulate ({profile}): {e}")),
        }
    }
}

/// Each fixture built (debug, x64) with its scenario files; a failure is recorded, not returned.
fn fixture_images<'d>(
    ws: &Workspace,
    fixtures: &[&'d Driver],
    t: &mut Tally,
) -> Vec<(&'d String, std::path::PathBuf, Vec<std::path::PathBuf>)> {
    let mut images = Vec::new();
    for &fixture in fixtures {
        let name = &fixture.name;
        let built = match build::build(ws, &[fixture], &[Arch::X64], Profile::Debug) {
            Ok(b) => b.into_iter().next().map(|b| b.result),
            Err(e) => Some(Err(e)),
        };
        let (image, scenarios) = match (built, fixtures::scenarios(fixture)) {
            (Some(Ok(image)), Ok(s)) => (image, s),
            (Some(Err(e)), _) => {
                t.record(false, format!("fixture {name}: build: {e}"));
                continue;
            }
            (None, _) => {
                t.record(false, format!("fixture {name}: nothing built"));
                continue;
            }
            (_, Err(e)) => {
                t.record(false, format!("fixture {name}: {e}"));
                continue;
            }
        };
        images.push((name, image, scenarios));
    }
    images
}

/// Builds the fixtures and runs each of their scenarios, which must each be caught as it expects.
pub(super) fn check_fixtures(ws: &Workspace, fixtures: &[&Driver], t: &mut Tally) {
    let harness = match Harness::locate(ws) {
        Ok(h) => h,
        Err(e) => return t.record(false, format!("fixtures: {e}")),
    };
    let images = fixture_images(ws, fixtures, t);
    // What each scenario expects; one that cannot say is a failure of its own, not run.
    let mut planned = Vec::new();
    for (name, image, scenarios) in &images {
        for scenario in scenarios {
            let stem = scenario
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let what = format!("fixture {name} {stem} is caught");
            match fixtures::read_expect(&harness.python, scenario) {
                Ok(expect) => planned.push((*name, image, scenario, stem, what, expect)),
                Err(e) => t.record(false, format!("{what}: {e}")),
            }
        }
    }
    // The scenarios are independent runs: side by side in one harness process (batch.rs),
    // reported in their order.
    let entries: Vec<batch::Entry> = planned
        .iter()
        .map(|(name, image, scenario, stem, _, expect)| batch::Entry {
            name: format!("{name} {stem}"),
            image,
            scenario,
            report: ws.layout.emu_report(name, &format!("{stem}.json")),
            opts: Options {
                faults: expect.fault_sweep,
                fault_phase: expect.fault_phase,
                ..Options::default()
            },
        })
        .collect();
    if entries.is_empty() {
        return;
    }
    let plan = ws
        .layout
        .emu_report("fixtures", &format!("plan-{}.json", std::process::id()));
    let ran = batch::run(
        &harness,
        &plan,
        &entries,
        crate::base::process::jobs(),
        &mut |i, run, progress| {
            let (name, _, _, stem, what, expect) = &planned[i];
            let opts = entries[i].opts;
            eprintln!(
                "  emulating {name} with {stem}.toml{}...",
                match (opts.faults, opts.fault_phase) {
                    (false, _) => "",
                    (true, FaultPhase::Both) => ", with fault sweep",
                    (true, FaultPhase::DriverEntry) => ", with DriverEntry's fault sweep",
                    (true, FaultPhase::DriverUnload) => ", with DriverUnload's fault sweep",
                }
            );
            for line in progress {
                eprintln!("    {line}");
            }
            match fixtures::verdict(&run.outcome, expect) {
                Ok(()) => {
                    let wanted = expect.describe();
                    println!("  ✓ {name} {stem}: caught, as expected ({wanted})");
                    t.record(true, what.clone());
                }
                Err(e) => {
                    if let Some(r) = run.outcome.report() {
                        print!("{}", crate::emulator::report::render(r));
                    }
                    println!("  ✗ {name} {stem}: {e}");
                    t.record(false, format!("{what}: {e}"));
                }
            }
        },
    );
    if let Err(e) = ran {
        t.record(false, format!("fixtures: {e}"));
    }
}

/// Each mutant built (one shared scratch workspace, so one at a time), its image kept under its
/// mutation's folder: (mutation, driver, image, the check's name). Failures are recorded.
fn build_mutants<'m, 'd>(
    ws: &Workspace,
    drivers: &[&'d Driver],
    mutations: &'m [crate::commands::test::mutations::Mutation],
    all_drivers: bool,
    t: &mut Tally,
) -> Vec<(
    &'m crate::commands::test::mutations::Mutation,
    &'d Driver,
    std::path::PathBuf,
    String,
)> {
    // Each mutant is built (one shared scratch workspace, so one at a time) and its image kept
    // under its own name; then all of them run in one harness batch (batch.rs).
    let mut built = Vec::new();
    for m in mutations {
        let Some(driver) = drivers.iter().find(|d| d.name == m.driver) else {
            if all_drivers {
                t.record(
                    false,
                    format!("mutation {}: no driver {}", m.name, m.driver),
                );
            }
            continue;
        };
        let what = format!("mutation {} ({}: {}) is caught", m.name, m.driver, m.lesson);
        eprintln!("  building mutant {}...", m.name);
        // Kept under the mutation's folder with the built file's name (the report names it).
        let image = crate::commands::test::mutations::build(ws, driver, m).and_then(|image| {
            let kept = ws
                .layout
                .mutants_dir()
                .join("images")
                .join(&m.name)
                .join(image.file_name().unwrap_or_default());
            files::copy_atomic(&image, &kept).map(|()| kept)
        });
        match image {
            Ok(kept) => built.push((m, *driver, kept, what)),
            Err(e) => t.record(false, format!("{what}: {e}")),
        }
    }
    built
}

/// The mutation check: every `xtask/mutations/*.toml` is named by its driver's README, and each
/// mutant builds and fails in the harness with the rule that names its lesson. With `-p`, only
/// the mutations of the selected drivers run (the README check then covers those drivers only).
pub(super) fn check_mutations(ws: &Workspace, drivers: &[&Driver], t: &mut Tally) {
    let harness = match Harness::locate(ws) {
        Ok(h) => h,
        Err(e) => return t.record(false, format!("mutations: {e}")),
    };
    let mutations = match crate::commands::test::mutations::load_all(ws, &harness.python) {
        Ok(m) => m,
        Err(e) => return t.record(false, format!("mutations: {e}")),
    };
    let all_drivers = ws.select(&[]).map_or(0, |d| d.len()) == drivers.len();
    if all_drivers {
        let problems = crate::commands::test::mutations::readme_problems(ws, &mutations);
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
    }
    // The mutants are built for x64: its standard library too, where the stage runs without the
    // toolchain stage (`--stage mutations` in any rustup state).
    let x64 = [Arch::X64];
    if let Err(e) = toolchain::ensure_targets(&ws.root, &x64, &toolchain::Env::default()) {
        return t.record(false, format!("mutations: {e}"));
    }
    let built = build_mutants(ws, drivers, &mutations, all_drivers, t);
    if built.is_empty() {
        return;
    }
    let scenarios: Vec<std::path::PathBuf> =
        built.iter().map(|(_, d, _, _)| d.scenario()).collect();
    let entries: Vec<batch::Entry> = built
        .iter()
        .zip(&scenarios)
        .map(|((m, _, image, _), scenario)| batch::Entry {
            name: format!("{} mutant-{}", m.driver, m.name),
            image,
            scenario,
            report: ws
                .layout
                .emu_report(&m.driver, &format!("mutant-{}.json", m.name)),
            opts: Options {
                faults: m.expect.fault_sweep,
                fault_phase: m.expect.fault_phase,
                ..Options::default()
            },
        })
        .collect();
    let plan = ws
        .layout
        .emu_report("mutants", &format!("plan-{}.json", std::process::id()));
    let ran = batch::run(
        &harness,
        &plan,
        &entries,
        crate::base::process::jobs(),
        &mut |i, run, progress| {
            let (m, _, _, what) = &built[i];
            for line in progress {
                eprintln!("    {line}");
            }
            match fixtures::verdict(&run.outcome, &m.expect) {
                Ok(()) => {
                    println!("  ✓ mutant {}: caught ({})", m.name, m.expect.describe());
                    t.record(true, what.clone());
                }
                Err(e) => {
                    if let Some(r) = run.outcome.report() {
                        print!("{}", crate::emulator::report::render(r));
                    }
                    println!("  ✗ mutant {}: {e}", m.name);
                    t.record(false, format!("{what}: {e}"));
                }
            }
        },
    );
    if let Err(e) = ran {
        t.record(false, format!("mutations: {e}"));
    }
}
