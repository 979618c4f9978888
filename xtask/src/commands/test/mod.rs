//! `cargo xtask test`: every layer of tests, in order, and one line CI can read:
//! `N passed, M failed`. `--stage NAME` runs some stages only (and the builds they need), `-p NAME`
//! some drivers or fixtures only; the closing line stays.
//!
//! 1. `toolchain`: the Windows targets, clippy and rustfmt installed where the pinned toolchain
//!    lacks them, and the proof on a copy of the toolchain that really lacks those this run did
//!    not install (`toolchain::prove_on_bare_copy`);
//! 2. `gate`: the code's own rules (`gate`): rustfmt, clippy with warnings denied for the host
//!    crates (as their tests compile, `base::host_tests`) and every driver and fixture on both
//!    Windows targets, ruff on the harness; and each on code broken on purpose, which must fail;
//! 3. `host`: host unit tests (`cargo test --profile host -p common -p driver-package -p xtask`,
//!    compiled by clippy-driver as the gate compiles them, and the harness's `xtask/emu/tests`);
//! 4. `build`: every driver built for x64 and arm64, debug and release (each image through the
//!    lint gate);
//! 5. `lint`: the placed images linted again, as `cargo xtask lint` reads them;
//! 6. `package`: every driver signed and packaged for x64 and arm64, debug and release, and each
//!    package verified (`verify`): osslsigncode on the signatures and the catalog, our round trip
//!    of the catalog and the INF, tampered copies that must fail, the lint on the signed image;
//!    the signed x64 images run in the emulator;
//! 7. `emulate`: every driver emulated with the fault sweep, debug and release images;
//! 8. `fixtures`: the negative fixtures (`fixtures`): each defect of a driver broken on purpose
//!    must be caught;
//! 9. `mutations`: every lesson a driver README claims, broken in a copy of the driver
//!    (`xtask/mutations/*.toml`, `mutations`), must be failed by the rule that names it;
//! 10. `templates`: `cargo xtask new` on every template in a scratch copy (`templates`): fresh
//!     identities; one new driver per template through the build (x64 and arm64), lint, package,
//!     emulate (fault sweep) and deploy-plan stages' own functions; the standalone workspace of
//!     `new --path` checked (not with `-p`);
//! 11. `deploy`: the VM plans of the real packages, and the ssh transport and whole plans
//!     against a real OpenSSH server on 127.0.0.1 (`deploy::suite`; skipped, loudly, only
//!     where OpenSSH cannot be installed).
//!
//! Four stages run beside others, in a child process (`beside.rs`), where one stage alone leaves a
//! core idle: `host` beside `toolchain` and the `gate`; `deploy`, `mutations` and `templates`
//! beside `emulate`, `fixtures` and each other, from the end of `package`. Their output is
//! printed, and their checks counted, at their turn: as in a run in sequence.

mod beside;
mod diagrams;
mod emulated;
pub(crate) mod fixtures;
pub(crate) mod gate;
pub(crate) mod mutations;
mod own_cert;
pub(crate) mod scratch;
mod seed;
mod summary;
mod templates;
mod tidy;
mod tidy_deps;
mod tidy_layers;
pub(crate) mod verify;

use std::process::Command;
use std::time::Instant;

use crate::base::error::{Result, bail};
use crate::base::files;
use crate::base::host_tests;
use crate::base::layout::{Arch, Profile};
use crate::base::process::elapsed;
use crate::base::toolchain::{self, Component};
use crate::base::workspace::{Driver, Workspace};
use crate::commands::build::{self, Built};
use crate::commands::lint as lint_images;
use crate::commands::package;
use crate::commands::sign;
use crate::emulator::emulate::Harness;
use crate::emulator::venv;
use driver_package::cert;

#[cfg(test)]
pub(crate) use summary::{StageTime, TestReport};
use summary::{Tally, final_line, write_summary};

/// The stages, in the order they run: name and title.
pub const STAGES: [(&str, &str); 11] = [
    (
        "toolchain",
        "the pinned toolchain: Windows targets, clippy, rustfmt (installed where missing)",
    ),
    (
        "gate",
        "the code's own rules: rustfmt, clippy (warnings denied), ruff; and code broken on purpose",
    ),
    (
        "host",
        "host unit tests: cargo test --profile host -p common -p driver-package -p xtask",
    ),
    (
        "build",
        "build every driver: x64 and arm64, debug and release (each image linted)",
    ),
    ("lint", "lint the placed images"),
    (
        "package",
        "sign and package every driver, verify with osslsigncode and our own checks",
    ),
    (
        "emulate",
        "emulate every driver with the fault sweep (debug and release)",
    ),
    (
        "fixtures",
        "negative fixtures: each defect of a driver broken on purpose must be caught",
    ),
    (
        "mutations",
        "mutations: each README lesson broken in a copy of its driver must be caught by its rule",
    ),
    (
        "templates",
        "cargo xtask new: a driver made from each template, in a scratch copy: fresh identities; built for x64 and arm64, linted, packaged and verified, emulated with faults, VM plans; new --path's workspace",
    ),
    (
        "deploy",
        "deploy: VM plans of the real packages; the ssh transport and whole plans against a real OpenSSH server on 127.0.0.1",
    ),
];
const PROFILES: [Profile; 2] = [Profile::Debug, Profile::Release];

/// Which stages run: the named ones (checked), or all.
fn selected_stages(names: &[String]) -> Result<Vec<&'static str>> {
    for n in names {
        if !STAGES.iter().any(|(s, _)| s == n) {
            let all: Vec<&str> = STAGES.iter().map(|(s, _)| *s).collect();
            bail!("unknown stage `{n}`: the stages are {}", all.join(", "));
        }
    }
    Ok(STAGES
        .iter()
        .map(|(s, _)| *s)
        .filter(|s| names.is_empty() || names.iter().any(|n| n == s))
        .collect())
}

/// The drivers and fixtures `-p` names (all when empty): unknown names are an error.
fn selected_packages<'w>(
    ws: &'w Workspace,
    names: &[String],
) -> Result<(Vec<&'w Driver>, Vec<&'w Driver>)> {
    if names.is_empty() {
        return Ok((ws.select(&[])?, ws.fixtures()));
    }
    let fixtures: Vec<&Driver> = ws
        .fixtures()
        .into_iter()
        .filter(|f| names.contains(&f.name))
        .collect();
    let others: Vec<String> = names
        .iter()
        .filter(|n| !fixtures.iter().any(|f| f.name == **n))
        .cloned()
        .collect();
    let drivers = if others.is_empty() {
        Vec::new()
    } else {
        ws.select(&others)?
    };
    Ok((drivers, fixtures))
}

/// `cargo xtask test`'s options.
#[derive(Debug, PartialEq, Eq, Default)]
pub(crate) struct Options {
    /// `--stage NAME`...; empty = every stage.
    pub stages: Vec<String>,
    /// `-p NAME`...: these drivers and fixtures only; empty = all.
    pub packages: Vec<String>,
}

/// The `test` command: the stages asked (empty: all) for the packages asked (empty: every driver
/// and fixture).
pub(crate) fn run(ws: &Workspace, opts: &Options) -> Result<()> {
    let (stages, packages) = (&opts.stages, &opts.packages);
    let start = Instant::now();
    let mut t = Tally::default();
    let stages = selected_stages(stages)?;
    let (drivers, fixtures) = selected_packages(ws, packages)?;
    // Run as a part of another run (`beside.rs`): that run prints the header and the closing lines.
    let part = beside::part_report();
    let total = stages.len();
    let mut n = 0;
    let mut header = |name: &str| {
        if part.is_some() {
            return;
        }
        n += 1;
        let title = STAGES
            .iter()
            .find(|(s, _)| *s == name)
            .map_or("", |(_, t)| t);
        println!("\n==> [{n}/{total}] {name}: {title}");
    };
    let wants = |s: &str| stages.contains(&s);

    let host_beside = host_beside(ws, &stages, packages, part.is_none());
    if wants("toolchain") {
        header("toolchain");
        t.timed("toolchain", |t| toolchain_stage(ws, t));
    }
    gate_and_host(ws, &stages, packages, host_beside, &mut header, &mut t);
    let needs_build = ["build", "lint", "package", "emulate"]
        .iter()
        .any(|s| wants(s));
    let built = if needs_build && !drivers.is_empty() {
        if wants("build") {
            header("build");
        } else {
            println!("\n==> the builds the selected stages need");
        }
        t.timed("build", |t| build_stage(ws, &drivers, &PROFILES, t))
    } else {
        Vec::new()
    };
    if wants("lint") && !drivers.is_empty() {
        header("lint");
        t.timed("lint", |t| lint_stage(ws, &built, t));
    }
    if wants("package") && !drivers.is_empty() {
        header("package");
        t.timed("package", |t| package_stage(ws, &drivers, &built, t));
    }
    let deploy_beside = deploy_beside(ws, &stages, &drivers, part.is_some(), packages);
    let mutations_beside = mutations_beside(ws, &stages, &drivers, part.is_some(), packages);
    let templates_beside = templates_beside(ws, &stages, part.is_some(), packages);
    emulation_stages(
        ws,
        &stages,
        (&drivers, &fixtures),
        &built,
        mutations_beside,
        &mut header,
        &mut t,
    );
    if wants("templates") {
        header("templates");
        match templates_beside {
            Some(b) => b.finish(&mut t),
            None => t.timed("templates", |t| templates::check(ws, packages, t)),
        }
    }
    if wants("deploy") && !drivers.is_empty() {
        header("deploy");
        match deploy_beside {
            Some(b) => b.finish(&mut t),
            None => t.timed("deploy", |t| deploy_stage(ws, &drivers, t)),
        }
    }

    if let Some(path) = &part {
        write_summary(path, &stages, packages, &t, start);
        return Ok(());
    }
    println!("\ntest: finished in {}", elapsed(start.elapsed()));
    for s in &t.skipped {
        println!("  SKIPPED: {s}");
    }
    for f in &t.failed {
        println!("  failed: {f}");
    }
    println!("{}", final_line(t.passed, t.failed.len()));
    write_summary(&ws.layout.report("test.json"), &stages, packages, &t, start);
    if !t.failed.is_empty() {
        bail!("test: {} check(s) failed", t.failed.len());
    }
    Ok(())
}

/// The stages that run the drivers and their broken copies in the emulator, those of `stages`:
/// emulate, fixtures, mutations (taken in from `mutations_beside` when it runs beside the other
/// two).
fn emulation_stages(
    ws: &Workspace,
    stages: &[&str],
    (drivers, fixtures): (&[&Driver], &[&Driver]),
    built: &[Built],
    mutations_beside: Option<beside::Beside>,
    header: &mut dyn FnMut(&str),
    t: &mut Tally,
) {
    let wants = |s: &str| stages.contains(&s);
    if wants("emulate") && !drivers.is_empty() {
        header("emulate");
        t.timed("emulate", |t| {
            emulated::emulate_stage(ws, drivers, built, t);
        });
    }
    if wants("fixtures") {
        header("fixtures");
        if fixtures.is_empty() {
            println!(
                "  skipped: no fixture package ([package.metadata.driver] fixture = true) selected"
            );
        }
        t.timed("fixtures", |t| {
            if !fixtures.is_empty() {
                emulated::check_fixtures(ws, fixtures, t);
            }
        });
    }
    if wants("mutations") && !drivers.is_empty() {
        header("mutations");
        match mutations_beside {
            Some(b) => b.finish(t),
            None => t.timed("mutations", |t| emulated::check_mutations(ws, drivers, t)),
        }
    }
}

/// The host stage started beside the toolchain stage and the gate (`beside.rs`), when both the
/// gate and the host stage run, this run is not itself a part of another, and the toolchain
/// already has clippy-driver. Then it needs nothing the toolchain stage installs (the Windows
/// targets are not for the host; clippy-driver, which compiles the host tests, is there: where it
/// is missing the toolchain stage installs it, so the host stage waits for its turn), and the
/// emulator venv its harness tests use is made by the gate: the venv's lock is taken here, before
/// the host stage starts, and held until the gate has made it, so the host stage waits for it and
/// finds it ready (never makes it itself).
///
/// Why the host stage may run beside the gate: it reads the sources and the venv and writes only
/// cargo's output, which cargo's own lock on the target directory guards (the gate's clippy of
/// the host crates and the host stage's `cargo test` are one build, `base::host_tests`: whichever
/// takes the lock first compiles, the other finds it done); the gate's negatives build in their
/// own target directory (`target/gate`), and neither stage reads what the other writes.
fn host_beside(
    ws: &Workspace,
    stages: &[&str],
    packages: &[String],
    may_part: bool,
) -> Option<(files::Lock, beside::Beside)> {
    if !may_part || !stages.contains(&"gate") || !stages.contains(&"host") {
        return None;
    }
    host_tests::clippy_driver(&ws.root)?;
    // Where the lock cannot be taken, the host stage runs in its turn.
    let lock = files::lock(&ws.layout.emu_venv_lock()).ok()?;
    Some((lock, beside::spawn(ws, "host", packages)))
}

/// The gate and the host stages, those of `stages`; the host stage's output and checks taken in
/// from `host_beside` when it runs beside the gate.
fn gate_and_host(
    ws: &Workspace,
    stages: &[&str],
    packages: &[String],
    host_beside: Option<(files::Lock, beside::Beside)>,
    header: &mut dyn FnMut(&str),
    t: &mut Tally,
) {
    let wants = |s: &str| stages.contains(&s);
    let (venv_lock, host_beside) = host_beside.unzip();
    if wants("gate") {
        header("gate");
        t.timed("gate", |t| gate_stage(ws, packages, t, venv_lock));
    }
    if wants("host") {
        header("host");
        match host_beside {
            Some(b) => b.finish(t),
            None => t.timed("host", |t| host_tests(ws, t)),
        }
    }
}

/// The deploy stage started beside the stages after the package stage (`beside.rs`), when this run
/// makes the packages (package stage) and has stages after it to overlap, and is not itself a
/// part of another run. Its loopback tests wait for its turn (`deploy_stage`); until then it
/// makes and checks the VM plans. The deploy stage reads only the x64 debug packages of the real drivers
/// (complete once the package stage has ended), the harness's venv (made here first, so that no
/// two processes make it) and its own temporary folders and ports; the stages it overlaps write
/// none of these (the templates stage packages its own drivers, under their own names), and read
/// nothing it writes. Every tool they install (`tools::ensure`) the package stage has installed
/// already, so no two apt-get runs meet; the deploy stage's own, OpenSSH, is installed only by
/// it. Its `cargo test` of the loopback tests may wait for a cargo of the stages beside on the
/// target directory's lock: the wait costs time, never a verdict.
fn deploy_beside(
    ws: &Workspace,
    stages: &[&str],
    drivers: &[&Driver],
    is_part: bool,
    packages: &[String],
) -> Option<beside::Beside> {
    let runnable = !drivers.is_empty() && stages.contains(&"package");
    let overlaps = ["emulate", "fixtures", "mutations", "templates"];
    spawn_beside(ws, stages, "deploy", &overlaps, runnable, is_part, packages)
}

/// The mutations stage started beside the emulate and fixtures stages (`beside.rs`), when both it
/// and one of them run and this run is not itself a part of another: the harness batches of those
/// stages leave a core idle between drivers, and the mutants' builds use one. The mutations stage
/// reads the drivers' sources and the harness's venv (made here first, so that no two processes
/// make it); it builds its mutants in its own scratch workspace and target directory
/// (`target/mutants/`) and writes its reports under names no other stage uses
/// (`target/emu/DRIVER/mutant-NAME.json`, the batch plan with its process id). The emulate and
/// fixtures stages read and write neither, and write nothing it reads; neither does the templates
/// stage beside it (`templates_beside`).
fn mutations_beside(
    ws: &Workspace,
    stages: &[&str],
    drivers: &[&Driver],
    is_part: bool,
    packages: &[String],
) -> Option<beside::Beside> {
    let overlaps = ["emulate", "fixtures"];
    spawn_beside(
        ws,
        stages,
        "mutations",
        &overlaps,
        !drivers.is_empty(),
        is_part,
        packages,
    )
}

/// The templates stage started beside the emulate, fixtures and mutations stages (`beside.rs`),
/// when one of them runs too, without `-p` (with it the stage is skipped), and this run is not
/// itself a part of another. It makes its drivers in its own scratch copy of the workspace
/// (`target/templates/`), builds them into its own target directory (`target/templates/target/`)
/// under names of their own (`made-*`), so what it builds, places, packages and emulates is
/// nothing the stages it overlaps read or write, and it reads only the sources and the harness's
/// venv (made here first, so that no two processes make it); the tools its packages' verification
/// needs the package stage has installed.
fn templates_beside(
    ws: &Workspace,
    stages: &[&str],
    is_part: bool,
    packages: &[String],
) -> Option<beside::Beside> {
    let overlaps = ["emulate", "fixtures", "mutations"];
    spawn_beside(
        ws,
        stages,
        "templates",
        &overlaps,
        packages.is_empty(),
        is_part,
        packages,
    )
}

/// `stage` started in a child process (`beside::spawn`) when it runs (`runnable`, and it is in
/// `stages`), one of `overlaps` runs too, and this run is not itself a part of another. The
/// emulator venv, which every such stage uses, is made first, so that no two processes make it;
/// where it cannot be made, the stage runs in its turn and says why.
fn spawn_beside(
    ws: &Workspace,
    stages: &[&str],
    stage: &'static str,
    overlaps: &[&str],
    runnable: bool,
    is_part: bool,
    packages: &[String],
) -> Option<beside::Beside> {
    let wants = |s: &str| stages.contains(&s);
    if is_part || !runnable || !wants(stage) || !overlaps.iter().any(|s| wants(s)) {
        return None;
    }
    emulator_venv(ws).ok()?;
    Some(beside::spawn(ws, stage, packages))
}

/// The VM plans of the real packages, then the loopback deploy tests (`deploy::suite`), run
/// beside the other stages (`deploy_beside`). The loopback tests' time limits leave a login on a
/// machine busy with the other stages several seconds (they passed beside a `-j4` build).
fn deploy_stage(ws: &Workspace, drivers: &[&Driver], t: &mut Tally) {
    for c in crate::commands::deploy::suite::plan_checks(ws, drivers) {
        t.record(c.ok, c.what);
    }
    let (checks, skipped) = crate::commands::deploy::suite::loopback_suite(ws);
    for c in checks {
        t.record(c.ok, c.what);
    }
    if let Some(why) = skipped {
        let what = format!("the deploy loopback tests (a real OpenSSH server on 127.0.0.1): {why}");
        println!("  SKIPPED: {what}");
        t.skipped.push(what);
    }
}

/// The toolchain's parts installed where missing, then the proof on a copy that lacks them.
fn toolchain_stage(ws: &Workspace, t: &mut Tally) {
    let env = toolchain::Env::default();
    // What the toolchain lacks now and xtask installs next is proven by that install itself.
    let lacked = toolchain::Toolchain::of_workspace(&ws.root, &env)
        .map(|tc| toolchain::Lacked::in_toolchain(&tc))
        .unwrap_or_default();
    let targets = toolchain::ensure_targets(&ws.root, &Arch::ALL, &env);
    let targets_installed = targets.is_ok();
    t.result(
        "the Windows targets x86_64/aarch64-pc-windows-msvc are installed",
        targets,
    );
    let components =
        toolchain::ensure_components(&ws.root, &[Component::Clippy, Component::Rustfmt], &env);
    let clippy_installed = components.is_ok();
    t.result("clippy and rustfmt are installed", components);
    let installed_here = toolchain::Lacked {
        targets: if targets_installed {
            lacked.targets
        } else {
            Vec::new()
        },
        clippy: lacked.clippy && clippy_installed,
    };
    println!(
        "  and on a copy of the toolchain without what this run did not install (rustup downloads it)..."
    );
    let scratch = ws.layout.toolchain_check_dir();
    match toolchain::prove_on_bare_copy(&ws.root, &scratch, &installed_here) {
        Ok(Some(what)) => t.result(what, Ok(())),
        Ok(None) => {
            let what = "the install on a bare toolchain: rustup does not manage this toolchain, \
                        so there is nothing it could install"
                .to_owned();
            println!("  SKIPPED: {what}");
            t.skipped.push(what);
        }
        Err(e) => t.record(
            false,
            format!("a toolchain without the Windows targets gets them from xtask: {e}"),
        ),
    }
}

/// The emulator's venv made if missing (`venv::ensure`) under `target/emu-venv.lock`, so that two
/// processes of one run (a stage run beside the others, `beside.rs`) never make it at once: the
/// second waits, then finds it ready.
fn emulator_venv(ws: &Workspace) -> crate::base::error::Result<std::path::PathBuf> {
    let _lock = files::lock(&ws.layout.emu_venv_lock())?;
    venv::ensure(&ws.layout.emu_venv(), &ws.root.join(venv::LOCK))
}

/// rustfmt, clippy and ruff on the workspace, then on code broken on purpose. The emulator's venv
/// (ruff's) is made first: under `venv_lock` when given (held since the host stage started beside,
/// `host_beside`), else under its own (`emulator_venv`).
fn gate_stage(ws: &Workspace, packages: &[String], t: &mut Tally, venv_lock: Option<files::Lock>) {
    // Clippy checks the drivers for both Windows targets: their standard libraries too, where the
    // gate runs without the toolchain stage (`--stage gate` in any rustup state).
    let env = toolchain::Env::default();
    let tools =
        toolchain::ensure_components(&ws.root, &[Component::Clippy, Component::Rustfmt], &env)
            .and_then(|()| toolchain::ensure_targets(&ws.root, &Arch::ALL, &env));
    if let Err(e) = tools {
        return t.record(false, format!("the gate's tools: {e}"));
    }
    let python = match venv_lock {
        Some(_held) => venv::ensure(&ws.layout.emu_venv(), &ws.root.join(venv::LOCK)),
        None => emulator_venv(ws),
    };
    let ruff = python.map(|python| gate::ruff_in_venv(&python));
    // The first driver in a folder of its name (the new driver in a `new --path` workspace).
    let driver = ws
        .drivers
        .iter()
        .find(|d| !d.fixture && d.variant.is_none() && d.dir == ws.root.join(&d.name));
    // The negatives build in their own scratch copy and target directory (`target/gate`), so they
    // run beside the checks of the workspace itself, which use the workspace's own (clippy's
    // crate checks and ruff leave a core idle); their results are counted after them, in order.
    std::thread::scope(|scope| {
        let negatives = driver.map(|d| {
            let ruff = ruff.as_ref().ok().map(std::path::PathBuf::as_path);
            let gate_dir = ws.layout.gate_dir();
            scope.spawn(move || gate::negatives(&ws.root, &gate_dir, &d.name, ruff))
        });
        t.result("cargo fmt --all --check", gate::fmt(&ws.root));
        // Every driver and fixture, unless -p narrows it.
        let all: Vec<&Driver> = ws
            .drivers
            .iter()
            .filter(|d| packages.is_empty() || packages.contains(&d.name))
            .collect();
        for run in gate::clippy_runs(&all) {
            eprintln!("  {}...", run.describe());
            t.result(
                format!("{} -- -D warnings", run.describe()),
                gate::clippy(&ws.root, &run, None),
            );
        }
        // After the drivers: the host stage, started beside, has usually compiled them by then
        // (one build for both, `base::host_tests`), and this finds its warnings replayed.
        match host_tests::Targets::of_workspace(&ws.root) {
            Ok(targets) => {
                eprintln!("  {}, compiled by clippy-driver...", targets.describe());
                t.result(
                    format!("{} -- -D warnings", targets.describe()),
                    host_tests::lint(&ws.root, &targets, None),
                );
            }
            Err(e) => t.record(false, format!("clippy of the host crates: {e}")),
        }
        t.result(
            "the host tool as `cargo xtask` builds it (not its tests) has no warnings",
            host_tests::tool_build(&ws.root),
        );
        match &ruff {
            Ok(r) => t.result(
                "ruff check xtask/emu",
                gate::ruff(r, &ws.root.join("xtask").join("emu")),
            ),
            Err(e) => t.record(false, format!("ruff check xtask/emu: {e}")),
        }
        println!("  the gate on code broken on purpose (a scratch copy in target/gate)...");
        let Some(negatives) = negatives else {
            return t.record(
                false,
                "the gate negatives: no driver in a folder of its name to break on purpose",
            );
        };
        match negatives.join() {
            Ok(checks) => {
                for c in checks {
                    t.result(c.what, c.result);
                }
            }
            Err(_) => t.record(false, "the gate negatives: their thread panicked"),
        }
    });
}

/// `cargo test --profile host -p common -p driver-package -p xtask` (the profile `cargo xtask`
/// itself was built with, so its dependencies are not compiled again), compiled by clippy-driver
/// as the gate's clippy compiles it (`base::host_tests`: one build for both); and beside it the
/// harness's own unit tests (its models' documented rules) with the venv's Python.
fn host_tests(ws: &Workspace, t: &mut Tally) {
    // The harness's tests need the emulator venv, which the gate may still be making when this
    // stage runs beside it: they run in a thread beside `cargo test`, and their output, captured,
    // is printed after cargo's, as in a run in sequence.
    let harness_tests = ws.root.join("xtask").join("emu").join("tests");
    std::thread::scope(|scope| {
        let harness = harness_tests
            .is_dir()
            .then(|| scope.spawn(|| harness_unit_tests(ws, &harness_tests)));
        let driver = host_tests::clippy_driver(&ws.root);
        if driver.is_none() {
            println!(
                "  (no clippy-driver in the toolchain yet: the tests compile with rustc, unlinted)"
            );
        }
        let ok = match host_tests::Targets::of_workspace(&ws.root) {
            Ok(targets) => host_tests::run(&ws.root, &targets, driver.as_deref()),
            Err(e) => {
                println!("  {e}");
                false
            }
        };
        t.record(
            ok,
            "host unit tests (cargo test --profile host -p common -p driver-package -p xtask)",
        );
        let Some(harness) = harness else { return };
        println!("  and the harness's unit tests: python -m unittest discover -s xtask/emu/tests");
        let (ok, said) = harness.join().unwrap_or_else(|_| {
            (
                false,
                "  the thread of the harness's tests panicked\n".into(),
            )
        });
        print!("{said}");
        t.record(
            ok,
            "harness unit tests (python -m unittest discover -s xtask/emu/tests)",
        );
    });
}

/// The harness's unit tests (`python -m unittest discover -s DIR` with the venv's Python, the venv
/// made first if missing): whether they passed, and what they printed.
fn harness_unit_tests(ws: &Workspace, dir: &std::path::Path) -> (bool, String) {
    let harness = match emulator_venv(ws).and_then(|_| Harness::locate(ws)) {
        Ok(h) => h,
        Err(e) => return (false, format!("  {e}\n")),
    };
    match Command::new(&harness.python)
        .args(["-m", "unittest", "discover", "-s"])
        .arg(dir)
        .current_dir(&ws.root)
        .stdin(std::process::Stdio::null())
        .output()
    {
        Ok(out) => (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ),
        Err(e) => (
            false,
            format!("  running {}: {e}\n", harness.python.display()),
        ),
    }
}

/// Every driver for both architectures and each of `profiles`; each image is linted before it is
/// placed.
fn build_stage(
    ws: &Workspace,
    drivers: &[&Driver],
    profiles: &[Profile],
    t: &mut Tally,
) -> Vec<Built> {
    let mut built: Vec<Built> = Vec::new();
    for &profile in profiles {
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
    match lint_images::check_identities(ws) {
        Ok(()) => t.record(true, "workspace identities: none shared"),
        Err(e) => t.record(false, e.to_string()),
    }
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
    if let Err(e) = cert::to_pem(&signer.cert)
        .map_err(crate::base::error::Error::from)
        .and_then(|p| files::write_atomic(&pem, p.as_bytes()))
    {
        return t.record(false, format!("writing {}: {e}", pem.display()));
    }
    let osslsigncode = verify::osslsigncode();
    match &osslsigncode {
        Ok(p) => println!("  independent verifier: {}", p.display()),
        Err(e) => println!("  {e}"),
    }
    let harness = Harness::locate(ws);
    let mut to_emulate = Vec::new();
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
            let for_cab = package::submission::made_for(&made, arch);
            if !for_cab.is_empty() {
                own_cert::submission_cab(ws, &for_cab, arch, profile, &scratch, t);
            }
            if let (Ok(program), Some((driver, dir))) = (&osslsigncode, for_cab.first())
                && arch == Arch::X64
                && profile == Profile::Debug
            {
                own_cert::user_certificate(ws, (driver, dir), arch, program, &pem, &scratch, t);
            }
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
                    to_emulate.push((p.driver.clone(), dir, profile));
                }
            }
        }
    }
    own_cert::exported_pfx(&signer, &scratch, t);
    emulated::emulate_signed(ws, &harness, &to_emulate, t);
}
