//! The `templates` stage: `cargo xtask new` proven on every template. In a scratch copy of the
//! workspace (`target/templates/ws/`, made by `scratch.rs`), one driver is made from each of the
//! five templates, plus a second from ex-callback; the copy must pass the identity check (two
//! drivers from the same template share nothing), each new crate must build for x64 offline, and
//! each new driver (and wfp-callout's new WDM variant) must pass its scenario in the emulated
//! kernel.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::Tally;
use crate::base::error::{Context, Result, bail};
use crate::base::layout::Arch;
use crate::base::workspace::{Workspace, cargo};
use crate::emulator::batch;
use crate::emulator::emulate::{Harness, Options, Outcome};
use crate::template::generate::{self, Template};
use crate::template::identity::{self, Source};
use crate::template::write;

/// The drivers the stage makes: name, template.
const MADE: [(&str, Template); 6] = [
    ("made-ex", Template::ExCallback),
    ("made-ex-again", Template::ExCallback),
    ("made-cm", Template::CmFilter),
    ("made-pnp", Template::PnpNotify),
    ("made-wfp", Template::WfpCallout),
    ("made-wdm", Template::WfpCalloutWdm),
];

/// The samples the copy holds (templates, and the identities the new drivers must avoid).
const SAMPLES: [&str; 4] = ["ex-callback", "cm-filter", "pnp-notify", "wfp-callout"];

/// Runs the stage, recording each check in `t`; skipped with `-p` (`packages`): it makes drivers
/// of its own.
pub(super) fn check(ws: &Workspace, packages: &[String], t: &mut Tally) {
    if !packages.is_empty() {
        println!("  skipped: the templates stage runs without -p (it makes drivers of its own)");
        return;
    }
    let base = ws.layout.target_dir.join("templates");
    let copy = base.join("ws");
    let sources = match make(ws, &copy) {
        Ok(s) => s,
        Err(e) => return t.record(false, format!("templates: making the drivers: {e}")),
    };
    t.result(
        format!(
            "templates: {} drivers made from the 5 templates, no identity shared with the samples or each other",
            MADE.len()
        ),
        identity::check(&copy, &sources).map(|_| ()),
    );
    let harness = match Harness::locate(ws) {
        Ok(h) => h,
        Err(e) => return t.record(false, format!("templates: {e}")),
    };
    let target = base.join("target");
    let mut images: Vec<(String, PathBuf, Template, &str)> = Vec::new();
    for (name, template) in MADE {
        match build(&copy, &target, name, None) {
            Ok(image) => images.push((name.to_owned(), image, template, name)),
            Err(e) => t.record(false, format!("templates: {name} builds for x64: {e}")),
        }
        if template == Template::WfpCallout {
            let variant = format!("{name}-wdm");
            match build(&copy, &target, name, Some(&variant)) {
                Ok(image) => images.push((variant, image, template, name)),
                Err(e) => t.record(false, format!("templates: {variant} builds for x64: {e}")),
            }
        }
    }
    // Every made driver in one harness batch (as the other emulation stages run).
    let scenarios: Vec<PathBuf> = images
        .iter()
        .map(|(_, _, _, dir)| copy.join(dir).join("scenario.toml"))
        .collect();
    let entries: Vec<batch::Entry> = images
        .iter()
        .zip(&scenarios)
        .map(|((name, image, _, _), scenario)| batch::Entry {
            name: name.clone(),
            image,
            scenario,
            report: ws.layout.emu_report(name, "template.json"),
            opts: Options::default(),
        })
        .collect();
    let plan = ws.layout.emu_report("batch", "plan-templates.json");
    let result = batch::run(
        &harness,
        &plan,
        &entries,
        crate::base::process::jobs(),
        &mut |i, run, _progress| {
            let (name, _, template, _) = &images[i];
            let what = format!(
                "templates: {name} (from {}) builds and passes its scenario in the emulated kernel",
                template.name()
            );
            match &run.outcome {
                Outcome::Passed(_) => t.result(what, Ok(())),
                Outcome::Failed(r) => {
                    print!("{}", crate::emulator::report::render(r));
                    t.record(false, format!("{what}: a run failed (report above)"));
                }
                Outcome::Error(e) => t.record(false, format!("{what}: {e}")),
            }
        },
    );
    if let Err(e) = result {
        t.record(false, format!("templates: the emulator batch: {e}"));
    }
}

/// The scratch copy with the drivers of [`MADE`] written into it by `cargo xtask new`'s library;
/// returns every driver folder of the copy.
fn make(ws: &Workspace, copy: &Path) -> Result<Vec<Source>> {
    // Drivers an earlier run made: `new` refuses an existing folder.
    for (name, _) in MADE {
        let dir = copy.join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
    }
    let mutations = copy.join("xtask/mutations");
    if mutations.exists() {
        std::fs::remove_dir_all(&mutations)
            .with_context(|| format!("removing {}", mutations.display()))?;
    }
    let mut members = vec!["common"];
    members.extend(SAMPLES);
    crate::commands::test::scratch::workspace(&ws.root, copy, &members, &|_, _, bytes| Ok(bytes))?;
    crate::commands::test::scratch::mirror(
        &ws.root.join("xtask/mutations"),
        &mutations,
        &|_, bytes| Ok(bytes),
    )?;
    let mut sources: Vec<Source> = identity::sources(&ws.drivers)
        .into_iter()
        .filter(|s| SAMPLES.iter().any(|d| s.dir == ws.root.join(d)))
        .map(|s| Source {
            dir: copy.join(s.dir.strip_prefix(&ws.root).unwrap_or(&s.dir)),
            inx: s
                .inx
                .iter()
                .map(|i| copy.join(i.strip_prefix(&ws.root).unwrap_or(i)))
                .collect(),
            name: s.name,
        })
        .collect();
    for (name, template) in MADE {
        let g = generate::generate(copy, &sources, template, name, None, &mut rand_core::OsRng)?;
        write::write(copy, &g, &sources)?;
        let dir = copy.join(name);
        let inx = g
            .files
            .iter()
            .filter(|(p, _)| p.starts_with(name) && p.extension().is_some_and(|e| e == "inx"))
            .map(|(p, _)| copy.join(p))
            .collect();
        sources.push(Source {
            name: name.to_owned(),
            dir,
            inx,
        });
    }
    Ok(sources)
}

/// Builds `package` (or its `-wdm` variant, with the `wdm` feature) for x64, offline, and returns
/// a copy of the image named after the driver.
fn build(copy: &Path, target: &Path, package: &str, variant: Option<&str>) -> Result<PathBuf> {
    let triple = Arch::X64.triple();
    let mut cmd = Command::new(cargo());
    cmd.current_dir(copy).env("CARGO_TARGET_DIR", target).args([
        "build",
        "--offline",
        "-p",
        package,
        "--target",
        triple,
    ]);
    if variant.is_some() {
        cmd.args(["--features", "wdm"]);
    }
    let (status, _) =
        crate::base::process::run_teeing_stderr(&mut cmd, |line| eprintln!("    {line}"))?;
    if !status.success() {
        bail!("cargo build failed ({status})");
    }
    let built = target
        .join(triple)
        .join("debug")
        .join(format!("{}.dll", package.replace('-', "_")));
    let name = variant.unwrap_or(package);
    let image = target.join("images").join(format!("{name}.sys"));
    crate::base::files::copy_atomic(&built, &image)?;
    Ok(image)
}
