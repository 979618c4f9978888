//! The `templates` stage: `cargo xtask new` proven on every template. In a scratch copy of the
//! workspace (`target/templates/ws/`, made by `scratch.rs`, its cargo output in
//! `target/templates/target/`), one driver is made from each of the five templates, plus a second
//! from ex-callback; the copy must pass the identity check (two drivers from the same template
//! share nothing). Then one driver per template goes through what the other stages do to the samples,
//! by their own functions: built for x64 and arm64 (debug), the images linted, signed, packaged
//! and verified, emulated with the fault sweep, and its VM plans made and their scripts parsed
//! (`deploy --dry-run`). The second ex-callback copy and wfp-callout's copy's WDM variant are built
//! for x64 and pass their scenario. Last, `new --path`'s standalone workspace is made (one
//! driver): its files and its `cargo metadata` members are checked.
//!
//! A workspace without the samples (one `new --path` made) has nothing to make drivers from: the
//! stage says so and is skipped.

use std::path::Path;

use super::Tally;
use crate::base::error::{Context, Result};
use crate::base::layout::{Arch, Profile};
use crate::base::workspace::{Driver, Workspace};
use crate::commands::build;
use crate::emulator::emulate::{self, Options, Outcome};
use crate::template::generate::{self, Template};
use crate::template::identity::{self, Source};
use crate::template::{standalone, write};

/// The drivers the stage makes: name, template, whether it gets every stage (one per template).
const MADE: [(&str, Template, bool); 6] = [
    ("made-ex", Template::ExCallback, true),
    ("made-ex-again", Template::ExCallback, false),
    ("made-cm", Template::CmFilter, true),
    ("made-pnp", Template::PnpNotify, true),
    ("made-wfp", Template::WfpCallout, true),
    ("made-wdm", Template::WfpCalloutWdm, true),
];

/// The samples the copy holds (templates, and the identities the new drivers must avoid).
const SAMPLES: [&str; 4] = ["ex-callback", "cm-filter", "pnp-notify", "wfp-callout"];

/// The driver the standalone workspace is made for.
const STANDALONE: (&str, Template) = ("made-alone", Template::ExCallback);

/// Runs the stage, recording each check in `t`; skipped with `-p` (`packages`): it makes drivers
/// of its own.
pub(super) fn check(ws: &Workspace, packages: &[String], t: &mut Tally) {
    if !packages.is_empty() {
        println!("  skipped: the templates stage runs without -p (it makes drivers of its own)");
        return;
    }
    if !SAMPLES
        .iter()
        .all(|s| ws.root.join(s).join("Cargo.toml").is_file())
    {
        let what = "the templates stage: this workspace has no sample to make drivers from \
                    (a standalone one `cargo xtask new --path` made)"
            .to_owned();
        println!("  SKIPPED: {what}");
        t.skipped.push(what);
        return;
    }
    let base = ws.layout.templates_dir();
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
    let debug = [(Arch::X64, Profile::Debug), (Arch::Arm64, Profile::Debug)];
    super::seed::workspace_builds(ws, &copy_target_dir(ws), &debug);
    match load_copy(ws, &copy) {
        Ok(copy_ws) => prove(&copy_ws, t),
        Err(e) => t.record(
            false,
            format!("templates: the scratch copy as a workspace: {e}"),
        ),
    }
    t.result(
        format!(
            "templates: new {} --path makes a standalone workspace of {}, common, driver-package and xtask only, its members as cargo metadata reads them",
            STANDALONE.0, STANDALONE.0
        ),
        standalone_check(ws, &base.join("standalone")),
    );
}

/// The made drivers through the stages' own functions (see the module's documentation).
fn prove(copy: &Workspace, t: &mut Tally) {
    let pick = |full: bool| -> Vec<&Driver> {
        copy.drivers
            .iter()
            .filter(|d| {
                MADE.iter().any(|(name, _, f)| {
                    let is_variant = d.variant.as_ref().is_some_and(|v| v.package == *name);
                    (d.name == *name && *f == full) || (is_variant && !full)
                })
            })
            .collect()
    };
    let (full, rest) = (pick(true), pick(false));
    println!(
        "  every stage for {} (one per template); x64 and the scenario for {}",
        names(&full),
        names(&rest)
    );
    let built = super::build_stage(copy, &full, &[Profile::Debug], t);
    super::lint_stage(copy, &built, t);
    super::package_stage(copy, &full, &built, t);
    super::emulated::emulate_stage(copy, &full, &built, t);
    for c in crate::commands::deploy::suite::plan_checks(copy, &full) {
        t.record(c.ok, c.what);
    }
    // The others: built for x64, their scenario passed.
    let built = match build::build(copy, &rest, &[Arch::X64], Profile::Debug) {
        Ok(b) => b,
        Err(e) => return t.record(false, format!("templates: build {}: {e}", names(&rest))),
    };
    let ready: Vec<&Driver> = rest
        .iter()
        .copied()
        .filter(|d| {
            let b = built.iter().find(|b| b.driver == d.name);
            if let Some(Err(e)) = b.map(|b| &b.result) {
                t.record(false, format!("build {} (x64, debug): {e}", d.name));
            }
            b.is_some_and(|b| b.result.is_ok())
        })
        .collect();
    if ready.is_empty() {
        return;
    }
    match emulate::emulate(
        copy,
        &ready,
        Profile::Debug,
        Options::default(),
        "template.json",
        false,
    ) {
        Ok(runs) => {
            for r in runs {
                let what = format!("emulate {} (debug, its scenario)", r.driver);
                match &r.outcome {
                    Outcome::Passed(_) => t.record(true, what),
                    Outcome::Failed(rep) => {
                        print!("{}", crate::emulator::report::render(rep));
                        t.record(false, format!("{what}: a run failed (report above)"));
                    }
                    Outcome::Error(e) => t.record(false, format!("{what}: {e}")),
                }
            }
        }
        Err(e) => t.record(false, format!("templates: emulate {}: {e}", names(&ready))),
    }
}

fn names(drivers: &[&Driver]) -> String {
    drivers
        .iter()
        .map(|d| d.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The scratch copy with the drivers of [`MADE`] written into it by `cargo xtask new`'s library;
/// returns every driver folder of the copy.
fn make(ws: &Workspace, copy: &Path) -> Result<Vec<Source>> {
    // Drivers an earlier run made: `new` refuses an existing folder.
    for (name, _, _) in MADE {
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
    // The harness (and its venv's lock) the emulation and the plans' syntax check run from;
    // Mermaid's pinned parser (the README diagrams' check); the certificates the package stage
    // signs with (your-own-certificate checks).
    for folder in ["xtask/emu", "xtask/mermaid", "driver-package/testdata"] {
        crate::commands::test::scratch::mirror(
            &ws.root.join(folder),
            &copy.join(folder),
            &|_, bytes| Ok(bytes),
        )?;
    }
    // Cargo's output in a target directory of the copy's own (`copy_target_dir`). The rest of the
    // configuration only where the copy needs its own (`scratch::own_cargo_config`).
    let target = copy_target_dir(ws).to_string_lossy().replace('\\', "/");
    let config = crate::commands::test::scratch::own_cargo_config(&ws.root, copy)?
        .map(|c| c + "\n")
        .unwrap_or_default();
    crate::commands::test::scratch::sync(
        &copy.join(".cargo/config.toml"),
        format!("{config}[build]\ntarget-dir = \"{target}\"\n").as_bytes(),
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
    for (name, template, _) in MADE {
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

/// The copy's cargo target directory, `target/templates/target/`: not the workspace's. Cargo
/// names a path crate's build by its path relative to the workspace's root, so the copy's
/// `common` and the workspace's would be the same build: whichever built last would be the one
/// cargo checks for changes, and after this stage an edit to the workspace's `common` went
/// unseen (found on 2026-12-03: `cargo xtask build` kept an image of the old code).
fn copy_target_dir(ws: &Workspace) -> std::path::PathBuf {
    ws.layout.templates_dir().join("target")
}

/// The scratch copy read as a workspace (`cargo metadata --offline`): its drivers, its own target
/// directory (`copy_target_dir`), the workspace's tools (the emulator's venv).
fn load_copy(ws: &Workspace, copy: &Path) -> Result<Workspace> {
    let json = crate::base::workspace::metadata(copy)?;
    let mut copy_ws = Workspace::from_metadata(&json)?;
    if copy_ws.layout.target_dir != copy_target_dir(ws) {
        crate::base::error::bail!(
            "the scratch copy builds into {}, not {}",
            copy_ws.layout.target_dir.display(),
            copy_target_dir(ws).display()
        );
    }
    copy_ws.layout = copy_ws.layout.with_tools_of(&ws.layout);
    Ok(copy_ws)
}

/// `new --path` into `dest` (emptied first): only the new driver and the shared crates, and
/// `cargo metadata` there lists exactly the members its Cargo.toml names (checked by
/// `standalone::write` itself).
fn standalone_check(ws: &Workspace, dest: &Path) -> Result<()> {
    if dest.exists() {
        std::fs::remove_dir_all(dest).with_context(|| format!("removing {}", dest.display()))?;
    }
    let (name, template) = STANDALONE;
    let sources = identity::sources(&ws.drivers);
    let g = generate::generate(
        &ws.root,
        &sources,
        template,
        name,
        None,
        &mut rand_core::OsRng,
    )?;
    standalone::write(&ws.root, dest, &g, template.name(), &sources)?;
    let mut top: Vec<String> = std::fs::read_dir(dest)
        .with_context(|| format!("listing {}", dest.display()))?
        .filter_map(std::result::Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".git")
        .collect();
    top.sort();
    let mut expected: Vec<String> = [
        name,
        "Cargo.toml",
        "Cargo.lock",
        "README.md",
        "rust-toolchain.toml",
        ".cargo",
        ".ci",
        ".gitignore",
        "Makefile.toml",
        "ARCHITECTURE.md",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain(standalone::FOLDERS.iter().map(|s| (*s).to_owned()))
    .collect();
    expected.sort();
    if top != expected {
        crate::base::error::bail!("the standalone workspace holds {top:?}, not {expected:?}");
    }
    let mutations: Vec<String> = std::fs::read_dir(dest.join("xtask/mutations"))
        .context("listing the standalone workspace's xtask/mutations")?
        .filter_map(std::result::Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(&format!("{name}-")))
        .collect();
    if !mutations.is_empty() {
        crate::base::error::bail!(
            "the standalone workspace has other drivers' mutations: {mutations:?}"
        );
    }
    let lock =
        std::fs::read_to_string(dest.join("Cargo.lock")).context("reading its Cargo.lock")?;
    if let Some(sample) = SAMPLES
        .iter()
        .find(|s| lock.contains(&format!("name = \"{s}\"")))
    {
        crate::base::error::bail!("the standalone workspace's Cargo.lock still lists {sample}");
    }
    let _ = std::fs::remove_dir_all(dest);
    Ok(())
}
