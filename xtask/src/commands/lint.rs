//! `cargo xtask lint`: the lint (`lint.rs`) run on the placed images, or on given files.

use std::path::PathBuf;

use serde::Serialize;

use crate::base::error::{Result, bail};
use crate::base::layout::{Arch, Profile, display_path};
use crate::base::workspace::{Driver, Workspace};
use crate::image::lint::{self, Violation};
use crate::template::identity;

/// One image to lint, and what the lint said.
#[derive(Debug)]
pub struct Linted {
    /// The image.
    pub path: PathBuf,
    /// The machine it must be for.
    pub arch: Arch,
    /// The violations, or why the file could not be read.
    pub result: Result<Vec<Violation>, String>,
}

impl Linted {
    /// Read, and broke no rule.
    pub fn passed(&self) -> bool {
        matches!(&self.result, Ok(v) if v.is_empty())
    }
}

/// `cargo xtask lint`'s options.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Options {
    /// `-p NAME`...; empty = every driver.
    pub packages: Vec<String>,
    /// `--arch`; default x64.
    pub arches: Vec<Arch>,
    /// `--release`.
    pub profile: Profile,
    /// `--json`: the report ([`LintReport`]) on stdout.
    pub json: bool,
    /// Explicit images to lint instead of the placed ones.
    pub files: Vec<std::path::PathBuf>,
}

/// The `lint` command.
pub(crate) fn run(ws: &Workspace, args: &Options) -> Result<()> {
    let targets: Vec<(PathBuf, Arch)> = if args.files.is_empty() {
        // The workspace's drivers first: no two may share a name Windows keeps one of.
        check_identities(ws)?;
        let drivers = ws.select(&args.packages)?;
        placed_images(ws, &drivers, &args.arches, &[args.profile])?
    } else {
        args.files
            .iter()
            .map(|f| (f.clone(), args.arches[0]))
            .collect()
    };
    let linted = lint_all(&targets);
    if args.json {
        println!("{}", super::to_json(&report(&linted)));
    } else {
        print!("{}", render(&linted, ws));
    }
    let failed = linted.iter().filter(|l| !l.passed()).count();
    if failed > 0 {
        bail!("lint: {failed} of {} image(s) failed", linted.len());
    }
    Ok(())
}

/// The workspace identity check (`template::identity`): prints how many names it read.
pub fn check_identities(ws: &Workspace) -> Result<()> {
    let sources = identity::sources(&ws.drivers);
    let n = identity::check(&ws.root, &sources)?;
    eprintln!(
        "identities: {n} names in {} driver folders, none shared",
        sources.len()
    );
    Ok(())
}

/// The placed images of `drivers`, which must all exist (else: the build command that makes them).
pub fn placed_images(
    ws: &Workspace,
    drivers: &[&Driver],
    arches: &[Arch],
    profiles: &[Profile],
) -> Result<Vec<(PathBuf, Arch)>> {
    let mut images = Vec::new();
    let mut missing = Vec::new();
    for &profile in profiles {
        for &arch in arches {
            for d in drivers {
                let sys = ws.layout.placed_sys(&d.name, arch, profile);
                if sys.is_file() {
                    images.push((sys, arch));
                } else {
                    let release = if profile == Profile::Release {
                        " --release"
                    } else {
                        ""
                    };
                    missing.push(format!(
                        "{}: not built: cargo xtask build -p {} --arch {arch}{release}",
                        display_path(&sys, &ws.root),
                        d.name
                    ));
                }
            }
        }
    }
    if !missing.is_empty() {
        bail!("no image to lint at\n  {}", missing.join("\n  "));
    }
    Ok(images)
}

/// Lints each image for its machine.
pub fn lint_all(targets: &[(PathBuf, Arch)]) -> Vec<Linted> {
    targets
        .iter()
        .map(|(path, arch)| Linted {
            path: path.clone(),
            arch: *arch,
            result: lint::lint_file(path, &lint::LintOptions::for_machine(arch.machine()))
                .map_err(|e| format!("cannot read {}: {e}", path.display())),
        })
        .collect()
}

/// One line per image, then one per violation.
pub fn render(linted: &[Linted], ws: &Workspace) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for l in linted {
        let path = display_path(&l.path, &ws.root);
        match &l.result {
            Ok(v) if v.is_empty() => {
                let _ = writeln!(out, "✓ {path} ({}): passes every rule", l.arch);
            }
            Ok(v) => {
                let _ = writeln!(out, "✗ {path} ({}): {} violation(s)", l.arch, v.len());
                for violation in v {
                    let _ = writeln!(out, "    {violation}");
                }
            }
            Err(e) => {
                let _ = writeln!(out, "✗ {path} ({}): {e}", l.arch);
            }
        }
    }
    let failed = linted.iter().filter(|l| !l.passed()).count();
    let _ = writeln!(
        out,
        "lint: {} image(s): {} passed, {failed} failed",
        linted.len(),
        linted.len() - failed
    );
    out
}

/// `cargo xtask lint --json` (docs/reports/lint.md).
#[derive(Debug, Serialize)]
pub(crate) struct LintReport {
    /// Version of this layout: 1.
    pub schema: u32,
    /// Every image read and broke no rule.
    pub passed: bool,
    /// One entry per image, in the order linted.
    pub images: Vec<LintedImage>,
}

/// One image and what the lint said.
#[derive(Debug, Serialize)]
pub(crate) struct LintedImage {
    /// The image's path, as given or as placed.
    pub path: String,
    /// The machine it must be for: `x64` or `arm64`.
    pub arch: &'static str,
    /// Read, and broke no rule.
    pub passed: bool,
    /// Why it could not be read; `null` when it was.
    pub error: Option<String>,
    /// The rules it breaks (empty when it passed or could not be read).
    pub violations: Vec<LintViolation>,
}

/// One broken rule.
#[derive(Debug, Serialize)]
pub(crate) struct LintViolation {
    /// The rule's id (`image::lint::RULES`).
    pub rule: &'static str,
    /// What it is about: a section, an imported module, an export, a header field.
    pub subject: String,
    /// What is wrong, and how to fix it.
    pub message: String,
}

/// The `--json` document.
pub(crate) fn report(linted: &[Linted]) -> LintReport {
    let images = linted
        .iter()
        .map(|l| {
            let (violations, error) = match &l.result {
                Ok(v) => (
                    v.iter()
                        .map(|v| LintViolation {
                            rule: v.rule,
                            subject: v.subject.clone(),
                            message: v.message.clone(),
                        })
                        .collect(),
                    None,
                ),
                Err(e) => (Vec::new(), Some(e.clone())),
            };
            LintedImage {
                path: l.path.display().to_string(),
                arch: l.arch.name(),
                passed: l.passed(),
                error,
                violations,
            }
        })
        .collect();
    LintReport {
        schema: 1,
        passed: linted.iter().all(Linted::passed),
        images,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws(dir: &std::path::Path) -> Workspace {
        Workspace {
            root: dir.to_path_buf(),
            layout: crate::base::layout::Layout::new(dir.join("target")),
            drivers: vec![],
        }
    }

    #[test]
    fn a_file_that_is_not_an_image_fails_with_its_rule() {
        let dir = std::env::temp_dir().join(format!("xtask-lint-images-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.sys");
        std::fs::write(&junk, b"not a PE image").unwrap();
        let linted = lint_all(&[
            (junk.clone(), Arch::X64),
            (dir.join("absent.sys"), Arch::Arm64),
        ]);
        assert!(!linted[0].passed() && !linted[1].passed());
        let doc = serde_json::to_value(report(&linted)).unwrap();
        assert_eq!(doc["schema"], 1);
        assert_eq!(doc["passed"], false);
        assert_eq!(doc["images"][0]["arch"], "x64");
        assert!(
            !doc["images"][0]["violations"]
                .as_array()
                .unwrap()
                .is_empty()
        );
        assert!(
            doc["images"][1]["error"]
                .as_str()
                .unwrap()
                .contains("absent.sys")
        );
        let text = render(&linted, &ws(&dir));
        assert!(text.contains("✗ junk.sys (x64):"), "{text}");
        assert!(
            text.ends_with("lint: 2 image(s): 0 passed, 2 failed\n"),
            "{text}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unbuilt_images_name_the_build_command() {
        let dir = std::env::temp_dir().join(format!("xtask-lint-unbuilt-{}", std::process::id()));
        let d = Driver {
            name: "ex-callback".into(),
            version: "0.1.0".into(),
            dir: dir.join("ex-callback"),
            fixture: false,
            size_budget: None,
            callback_instruction_budget: None,
            variant: None,
        };
        let e = placed_images(&ws(&dir), &[&d], &[Arch::Arm64], &[Profile::Release])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cargo xtask build -p ex-callback --arch arm64 --release"),
            "{e}"
        );
    }
}
