//! The pinned toolchain's parts that xtask needs, installed where they are missing.
//!
//! `rust-toolchain.toml` pins the toolchain and lists the Windows targets and the components the
//! gate runs (clippy, rustfmt), but rustup installs a toolchain file's `targets` and `components`
//! only when it installs the toolchain itself: a machine that already had the pinned version (for
//! another project, or from a CI image) lacks them. So before building, xtask asks the toolchain
//! that builds (`rustc --print sysroot` in the workspace, which follows rust-toolchain.toml) for
//! each target's standard library and each component's program, and has rustup add what is
//! missing: `rustup target add --toolchain <active> <triple>...`, `rustup component add
//! --toolchain <active> <component>...`. Without rustup (a distribution's rustc) the error says
//! what to install.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::base::error::{Error, Result, bail};
use crate::base::layout::Arch;
use crate::base::process::run_teeing_stderr;
use crate::base::tools::find_on_path;

/// A component of the toolchain that the gate runs, and the program that shows it is installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    /// `cargo clippy`.
    Clippy,
    /// `cargo fmt`.
    Rustfmt,
}

impl Component {
    /// rustup's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Component::Clippy => "clippy",
            Component::Rustfmt => "rustfmt",
        }
    }

    /// The program in the toolchain's `bin/` that the component installs.
    fn program(self) -> &'static str {
        match self {
            Component::Clippy => "cargo-clippy",
            Component::Rustfmt => "rustfmt",
        }
    }
}

/// Where rustup keeps its toolchains: inherited, or another `RUSTUP_HOME` (the suite's proof on a
/// toolchain that really lacks the targets).
#[derive(Clone, Debug, Default)]
pub struct Env {
    /// `RUSTUP_HOME` for every rustc/rustup this module runs; `None` inherits ours.
    pub rustup_home: Option<PathBuf>,
}

impl Env {
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        if let Some(home) = &self.rustup_home {
            cmd.env("RUSTUP_HOME", home);
        }
        cmd
    }
}

/// The toolchain the workspace builds with.
#[derive(Debug)]
pub struct Toolchain {
    /// Its sysroot.
    pub sysroot: PathBuf,
    /// rustup's name for it (e.g. `1.95.0-x86_64-unknown-linux-gnu`), if rustup manages it.
    pub rustup_name: Option<String>,
}

impl Toolchain {
    /// The toolchain `rustc` resolves to in `root` (rust-toolchain.toml applies there).
    ///
    /// # Errors
    /// rustc does not run.
    pub fn of_workspace(root: &Path, env: &Env) -> Result<Self> {
        let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
        let out = env
            .command(&rustc)
            .args(["--print", "sysroot"])
            .current_dir(root)
            .output()
            .map_err(|e| {
                Error::new(format!(
                    "running `{} --print sysroot`: {e}; install Rust with rustup (https://rustup.rs)",
                    rustc.to_string_lossy()
                ))
            })?;
        if !out.status.success() {
            bail!(
                "`rustc --print sysroot` failed in {}: {}",
                root.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        // rustup's proxies tell the programs they run which toolchain they chose; otherwise ask.
        let rustup_name = std::env::var("RUSTUP_TOOLCHAIN")
            .ok()
            .filter(|t| !t.is_empty())
            .or_else(|| rustup().and_then(|r| active_toolchain(&r, root, env)));
        Ok(Self {
            sysroot,
            rustup_name,
        })
    }

    /// Whether the standard library for `arch` is installed.
    pub fn has_target(&self, arch: Arch) -> bool {
        self.sysroot
            .join("lib")
            .join("rustlib")
            .join(arch.triple())
            .join("lib")
            .is_dir()
    }

    /// Whether `component` is installed.
    pub fn has_component(&self, component: Component) -> bool {
        self.program(component.program()).is_file()
    }

    /// Where the toolchain keeps the program `name` (`bin/NAME`, `.exe` on Windows).
    pub fn program(&self, name: &str) -> PathBuf {
        let exe = if cfg!(windows) { ".exe" } else { "" };
        self.sysroot.join("bin").join(format!("{name}{exe}"))
    }
}

/// Makes sure the workspace's toolchain has the standard library of each of `arches`, installing
/// the missing ones with rustup (with a progress line).
///
/// # Errors
/// A target is missing and cannot be installed: the message names the fix.
pub fn ensure_targets(root: &Path, arches: &[Arch], env: &Env) -> Result<()> {
    let wanted: Vec<(&str, String)> = arches
        .iter()
        .map(|a| (a.triple(), format!("lib/rustlib/{}/lib", a.triple())))
        .collect();
    ensure(root, env, "target", &wanted, |tc, i| {
        tc.has_target(arches[i])
    })
}

/// Makes sure the workspace's toolchain has each of `components`, installing the missing ones with
/// rustup (with a progress line).
///
/// # Errors
/// A component is missing and cannot be installed: the message names the fix.
pub fn ensure_components(root: &Path, components: &[Component], env: &Env) -> Result<()> {
    let wanted: Vec<(&str, String)> = components
        .iter()
        .map(|c| (c.name(), format!("bin/{}", c.program())))
        .collect();
    ensure(root, env, "component", &wanted, |tc, i| {
        tc.has_component(components[i])
    })
}

/// The common part: `wanted[i]` is (rustup's name, what shows it in the sysroot), `has(tc, i)`
/// whether the toolchain has it; `what` is `target` or `component`.
fn ensure(
    root: &Path,
    env: &Env,
    what: &str,
    wanted: &[(&str, String)],
    has: impl Fn(&Toolchain, usize) -> bool,
) -> Result<()> {
    let tc = Toolchain::of_workspace(root, env)?;
    let missing: Vec<&str> = (0..wanted.len())
        .filter(|&i| !has(&tc, i))
        .map(|i| wanted[i].0)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    rustup_add(root, &tc, what, &missing, env)?;
    let tc = Toolchain::of_workspace(root, env)?;
    if let Some(i) = (0..wanted.len()).find(|&i| !has(&tc, i)) {
        let (name, evidence) = &wanted[i];
        bail!(
            "rustup added {name} but {} still has no {evidence}: run `rustup {what} add {name}` \
             in {} and check what it says",
            tc.sysroot.display(),
            root.display()
        );
    }
    Ok(())
}

/// `rustup <what> add --toolchain <active> <names>...`, its output indented on stderr.
fn rustup_add(root: &Path, tc: &Toolchain, what: &str, names: &[&str], env: &Env) -> Result<()> {
    let plural = if names.len() == 1 { "" } else { "s" };
    let (Some(rustup), Some(toolchain)) = (rustup(), tc.rustup_name.as_deref()) else {
        bail!(
            "the Rust {what}{plural} {} {} missing from the toolchain at {}, which rustup does \
             not manage, so xtask cannot add {}: install rustup (https://rustup.rs) and run the \
             command again (rust-toolchain.toml pins the version), or install the {what}{plural} \
             with the tool that installed this Rust",
            names.join(", "),
            if names.len() == 1 { "is" } else { "are" },
            tc.sysroot.display(),
            if names.len() == 1 { "it" } else { "them" },
        );
    };
    eprintln!(
        "  the toolchain {toolchain} lacks the {what}{plural} {}: installing with `rustup {what} \
         add --toolchain {toolchain} {}`...",
        names.join(", "),
        names.join(" ")
    );
    let mut cmd = env.command(&rustup);
    cmd.args([what, "add", "--toolchain", toolchain])
        .args(names)
        .current_dir(root);
    let (status, stderr) = run_teeing_stderr(&mut cmd, |line| eprintln!("    rustup: {line}"))?;
    if !status.success() {
        bail!(
            "`rustup {what} add --toolchain {toolchain} {}` failed ({status}); rustup said: {}. \
             Check the network (rustup downloads from its distribution server) and run it by hand",
            names.join(" "),
            crate::base::process::tail(&stderr, 5)
        );
    }
    Ok(())
}

/// rustup: on PATH, else in `$CARGO_HOME/bin` (default `~/.cargo/bin`).
fn rustup() -> Option<PathBuf> {
    let exe = if cfg!(windows) {
        "rustup.exe"
    } else {
        "rustup"
    };
    find_on_path(exe).or_else(|| {
        let home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
        let p = home.join("bin").join(exe);
        p.is_file().then_some(p)
    })
}

/// The toolchain rustup uses in `root`: the first word of `rustup show active-toolchain`.
fn active_toolchain(rustup: &Path, root: &Path, env: &Env) -> Option<String> {
    let out = env
        .command(rustup)
        .args(["show", "active-toolchain"])
        .current_dir(root)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    parse_active_toolchain(&String::from_utf8_lossy(&out.stdout))
}

fn parse_active_toolchain(said: &str) -> Option<String> {
    said.split_whitespace().next().map(str::to_owned)
}

/// What the workspace's toolchain lacked, of what [`prove_on_bare_copy`] withholds, when a run
/// began: when xtask then installed it into the real toolchain, that install is the proof for it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Lacked {
    /// The Windows targets it lacked.
    pub targets: Vec<Arch>,
    /// Whether it lacked clippy.
    pub clippy: bool,
}

impl Lacked {
    /// What `tc` lacks.
    pub fn in_toolchain(tc: &Toolchain) -> Self {
        Self {
            targets: Arch::ALL
                .iter()
                .copied()
                .filter(|a| !tc.has_target(*a))
                .collect(),
            clippy: !tc.has_component(Component::Clippy),
        }
    }

    /// rustup's names of the components.
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .targets
            .iter()
            .map(|a| format!("rust-std-{}", a.triple()))
            .collect();
        if self.clippy {
            names.push("clippy-preview".to_owned());
        }
        names
    }
}

/// The proof, for `cargo xtask test`, that a toolchain which really lacks the Windows targets and
/// clippy gets them from xtask. What `installed_here` names, the workspace's toolchain lacked when
/// this run began and xtask installed it (the toolchain stage, just before): that install was the
/// proof for it. The rest is withheld: the workspace's toolchain is mirrored into a scratch
/// `RUSTUP_HOME` without it (files hard-linked, rustup's own records copied and edited, the
/// documentation left out), checked to lack it, then [`ensure_targets`] and [`ensure_components`]
/// run against the copy (rustup downloads for real). Either way a `no_std` crate is then compiled
/// for each target. On a fresh CI machine the run installs the targets itself, and the copy only
/// needs clippy downloaded again, not the two standard libraries (about 4 s of CPU).
///
/// # Return value
/// What was shown, for the suite's report.
///
/// # Errors
/// Any step that did not do what a user needs; `Ok(None)` when rustup does not manage the
/// workspace's toolchain (nothing to prove: the error path is what such a user sees).
pub fn prove_on_bare_copy(
    root: &Path,
    scratch: &Path,
    installed_here: &Lacked,
) -> Result<Option<String>> {
    let tc = Toolchain::of_workspace(root, &Env::default())?;
    let Some(name) = tc.rustup_name.clone() else {
        return Ok(None);
    };
    let home = scratch.join("rustup-home");
    if home.exists() {
        std::fs::remove_dir_all(&home)
            .map_err(|e| Error::new(format!("removing {}: {e}", home.display())))?;
    }
    let to_withhold = Lacked {
        targets: Arch::ALL
            .iter()
            .copied()
            .filter(|a| !installed_here.targets.contains(a))
            .collect(),
        clippy: !installed_here.clippy,
    };
    let withheld = to_withhold.names();
    let mut shown = Vec::new();
    let env = if withheld.is_empty() {
        Env::default()
    } else {
        let sysroot = std::fs::canonicalize(&tc.sysroot)
            .map_err(|e| Error::new(format!("{}: {e}", tc.sysroot.display())))?;
        let copy = home.join("toolchains").join(&name);
        mirror(&sysroot, &copy, &sysroot, &withheld)?;
        let env = Env {
            rustup_home: Some(home.clone()),
        };
        let bare = Toolchain::of_workspace(root, &env)?;
        if bare.sysroot != copy && std::fs::canonicalize(&bare.sysroot).ok() != Some(copy.clone()) {
            bail!(
                "with RUSTUP_HOME={} rustc's sysroot is {}, not the bare copy {}",
                home.display(),
                bare.sysroot.display(),
                copy.display()
            );
        }
        if Lacked::in_toolchain(&bare) != to_withhold {
            bail!(
                "the bare copy {} does not lack exactly {}",
                copy.display(),
                withheld.join(", ")
            );
        }
        ensure_targets(root, &Arch::ALL, &env)?;
        ensure_components(root, &[Component::Clippy, Component::Rustfmt], &env)?;
        shown.push(format!(
            "{name} without {} got {} from xtask",
            withheld.join(", "),
            them(withheld.len())
        ));
        env
    };
    let here = installed_here.names();
    if !here.is_empty() {
        shown.push(format!(
            "{name} lacked {} when this run began and got {} from xtask",
            here.join(", "),
            them(here.len())
        ));
    }
    compiles_for_both(root, scratch, &env)?;
    if home.exists() {
        std::fs::remove_dir_all(&home)
            .map_err(|e| Error::new(format!("removing {}: {e}", home.display())))?;
    }
    Ok(Some(format!(
        "{}, and compiles for both targets",
        shown.join("; ")
    )))
}

fn them(n: usize) -> &'static str {
    if n == 1 { "it" } else { "them" }
}

/// A `no_std` crate compiled for each Windows target by the toolchain `env` selects.
fn compiles_for_both(root: &Path, scratch: &Path, env: &Env) -> Result<()> {
    std::fs::create_dir_all(scratch)
        .map_err(|e| Error::new(format!("creating {}: {e}", scratch.display())))?;
    let src = scratch.join("probe.rs");
    std::fs::write(&src, "#![no_std]\npub fn probe() -> u32 { 1 }\n")
        .map_err(|e| Error::new(format!("writing {}: {e}", src.display())))?;
    for arch in Arch::ALL {
        let out = env
            .command("rustc")
            .args(["--crate-type", "rlib", "--emit", "metadata", "--target"])
            .arg(arch.triple())
            .arg("--out-dir")
            .arg(scratch)
            .arg(&src)
            .current_dir(root)
            .output()
            .map_err(|e| Error::new(format!("running rustc: {e}")))?;
        if !out.status.success() {
            bail!(
                "after the install, rustc cannot compile for {}: {}",
                arch.triple(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    Ok(())
}

/// Copies the toolchain tree `from` to `to` as hard links, leaving out the documentation and the
/// `withheld` components (their files and rustup's records of them). rustup's records in
/// `lib/rustlib/` are real copies, since rustup rewrites them.
fn mirror(from: &Path, to: &Path, sysroot: &Path, withheld: &[String]) -> Result<()> {
    let io = |e: std::io::Error, p: &Path| Error::new(format!("{}: {e}", p.display()));
    std::fs::create_dir_all(to).map_err(|e| io(e, to))?;
    let rustlib = sysroot.join("lib").join("rustlib");
    for entry in std::fs::read_dir(from).map_err(|e| io(e, from))? {
        let entry = entry.map_err(|e| io(e, from))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let dest = to.join(&name);
        if path == sysroot.join("share").join("doc") {
            continue;
        }
        if from == rustlib {
            let is_withheld = |n: &str| {
                withheld.iter().any(|w| {
                    n.strip_prefix(w.as_str()).is_some()
                        || n.strip_prefix("manifest-")
                            .is_some_and(|m| m.starts_with(w.as_str()))
                })
            };
            // A target's folder is named by its triple; its records by the component.
            let triple_withheld = withheld
                .iter()
                .any(|w| w.strip_prefix("rust-std-") == Some(name.as_str()));
            if is_withheld(&name) || triple_withheld {
                continue;
            }
            if name == "components" {
                let list = std::fs::read_to_string(&path).map_err(|e| io(e, &path))?;
                let mut kept: Vec<&str> = list
                    .lines()
                    .filter(|l| !withheld.iter().any(|w| l.starts_with(w.as_str())))
                    .collect();
                kept.push("");
                let kept = kept.join("\n");
                std::fs::write(&dest, kept).map_err(|e| io(e, &dest))?;
                continue;
            }
            if name == "multirust-config.toml" {
                let config = std::fs::read_to_string(&path).map_err(|e| io(e, &path))?;
                let kept = without_components(&config, withheld);
                std::fs::write(&dest, kept).map_err(|e| io(e, &dest))?;
                continue;
            }
        }
        let kind = entry.file_type().map_err(|e| io(e, &path))?;
        if kind.is_dir() {
            mirror(&path, &dest, sysroot, withheld)?;
        } else if kind.is_symlink() {
            let target = std::fs::read_link(&path).map_err(|e| io(e, &path))?;
            #[cfg(unix)]
            std::os::unix::fs::symlink(&target, &dest).map_err(|e| io(e, &dest))?;
            #[cfg(not(unix))]
            std::fs::copy(&path, &dest).map_err(|e| io(e, &dest))?;
            let _ = target;
        } else if from == rustlib {
            std::fs::copy(&path, &dest).map_err(|e| io(e, &dest))?;
        } else if std::fs::hard_link(&path, &dest).is_err() {
            std::fs::copy(&path, &dest).map_err(|e| io(e, &dest))?;
        }
    }
    // The withheld components' programs.
    if from == sysroot.join("bin") && withheld.iter().any(|w| w == "clippy-preview") {
        for p in ["cargo-clippy", "clippy-driver"] {
            for exe in [p.to_owned(), format!("{p}.exe")] {
                let _ = std::fs::remove_file(to.join(exe));
            }
        }
    }
    Ok(())
}

/// rustup's `multirust-config.toml` without the `[[components]]` entries of `withheld`
/// (`pkg = "rust-std"` + `target = "…"` is the component `rust-std-…`).
fn without_components(config: &str, withheld: &[String]) -> String {
    let mut blocks = config.split("[[components]]");
    let mut out = blocks.next().unwrap_or_default().to_owned();
    for block in blocks {
        let field = |key: &str| {
            block.lines().find_map(|l| {
                l.trim()
                    .strip_prefix(key)
                    .and_then(|r| r.trim().strip_prefix('='))
                    .map(|v| v.trim().trim_matches('"').to_owned())
            })
        };
        let name = format!(
            "{}-{}",
            field("pkg").unwrap_or_default(),
            field("target").unwrap_or_default()
        );
        if !withheld.iter().any(|w| name.starts_with(w.as_str())) {
            out.push_str("[[components]]");
            out.push_str(block);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustup_records_lose_only_the_withheld_components() {
        let config = "config_version = \"1\"\n\n[[components]]\npkg = \"rust-std\"\n\
                      target = \"x86_64-pc-windows-msvc\"\nis_extension = false\n\n\
                      [[components]]\npkg = \"cargo\"\ntarget = \"x86_64-unknown-linux-gnu\"\n\
                      is_extension = false\n";
        let kept = without_components(config, &["rust-std-x86_64-pc-windows-msvc".to_owned()]);
        assert!(kept.starts_with("config_version"), "{kept}");
        assert!(!kept.contains("windows"), "{kept}");
        assert_eq!(kept.matches("[[components]]").count(), 1, "{kept}");
        assert!(kept.contains("pkg = \"cargo\""));
    }

    #[test]
    fn the_active_toolchain_is_the_first_word() {
        assert_eq!(
            parse_active_toolchain(
                "1.95.0-x86_64-unknown-linux-gnu (overridden by '/w/rust-toolchain.toml')\n"
            )
            .as_deref(),
            Some("1.95.0-x86_64-unknown-linux-gnu")
        );
        assert_eq!(parse_active_toolchain(""), None);
    }

    #[test]
    fn targets_and_components_are_read_from_the_sysroot() {
        let sysroot = std::env::temp_dir().join(format!("xtask-sysroot-{}", std::process::id()));
        std::fs::create_dir_all(sysroot.join("lib/rustlib/x86_64-pc-windows-msvc/lib")).unwrap();
        std::fs::create_dir_all(sysroot.join("bin")).unwrap();
        let exe = if cfg!(windows) { ".exe" } else { "" };
        std::fs::write(sysroot.join(format!("bin/rustfmt{exe}")), "").unwrap();
        let tc = Toolchain {
            sysroot: sysroot.clone(),
            rustup_name: None,
        };
        assert!(tc.has_target(Arch::X64));
        assert!(!tc.has_target(Arch::Arm64));
        assert!(tc.has_component(Component::Rustfmt));
        assert!(!tc.has_component(Component::Clippy));
        // What the proof on a bare copy would withhold, and rustup's names for it.
        let lacked = Lacked::in_toolchain(&tc);
        assert_eq!(
            lacked,
            Lacked {
                targets: vec![Arch::Arm64],
                clippy: true
            }
        );
        assert_eq!(
            lacked.names(),
            ["rust-std-aarch64-pc-windows-msvc", "clippy-preview"]
        );
        std::fs::write(sysroot.join(format!("bin/cargo-clippy{exe}")), "").unwrap();
        assert!(Lacked::in_toolchain(&tc).names() == ["rust-std-aarch64-pc-windows-msvc"]);
        std::fs::remove_dir_all(&sysroot).unwrap();
    }

    #[test]
    fn without_rustup_the_error_names_the_fix() {
        let tc = Toolchain {
            sysroot: PathBuf::from("/usr/lib/rust"),
            rustup_name: None,
        };
        let e = rustup_add(
            Path::new("."),
            &tc,
            "target",
            &["x86_64-pc-windows-msvc"],
            &Env::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("x86_64-pc-windows-msvc is missing")
                && e.contains("rustup does not manage")
                && e.contains("https://rustup.rs"),
            "{e}"
        );
    }
}
