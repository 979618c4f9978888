//! Where things are: the architectures, the profiles, and the paths every stage reads and writes.
//!
//! ```text
//! target/<triple>/<profile>/<name_with_underscores>.dll   cargo's output (not yet linted)
//! target/drivers/<arch>/<profile>/NAME/NAME.sys           a linted image, the input of later stages
//! target/drivers/<arch>/<profile>/NAME/NAME.pdb           its symbols, when the linker wrote them
//! target/packages/<arch>/<profile>/NAME/                  the signed driver package (`package`)
//! target/sign-check/                                      scratch files of the signing checks (`test`)
//! target/emu/NAME/report.json                             the harness's report (`emulate`)
//! target/emu-venv/                                        the Python venv with speakeasy
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

/// A Windows architecture the drivers are built for: `x64` or `arm64`, with the rustc triple,
/// the PE `Machine` and `--arch` parsing (`Arch::parse_selection`). Defined by the packaging
/// crate, whose INFs and catalogs are per architecture.
pub use driver_package::Arch;

/// The PE `Machine` of an x64 image (Microsoft's "PE Format" page, "Machine Types"). Defined
/// here, below the image library, which re-exports it: `base` imports no other layer.
pub const IMAGE_FILE_MACHINE_AMD64: u16 = 0x8664;
/// The PE `Machine` of an ARM64 image.
pub const IMAGE_FILE_MACHINE_ARM64: u16 = 0xAA64;

/// A cargo profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// `dev`, output in `debug/`.
    Debug,
    /// `release`.
    Release,
}

impl Profile {
    /// From a `--release` flag.
    pub fn from_release_flag(release: bool) -> Self {
        if release {
            Profile::Release
        } else {
            Profile::Debug
        }
    }

    /// The directory name cargo uses (and `target/drivers/<arch>/<profile>/`).
    pub fn dir(self) -> &'static str {
        match self {
            Profile::Debug => "debug",
            Profile::Release => "release",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dir())
    }
}

/// The paths under one target directory (cargo's `target_directory`).
#[derive(Clone, Debug)]
pub struct Layout {
    /// The cargo target directory.
    pub target_dir: PathBuf,
    /// Where the tools xtask installs live (the emulator's venv, Mermaid's parser): the target
    /// directory, except in a scratch copy of the workspace with a target directory of its own,
    /// which uses its workspace's ([`Layout::with_tools_of`]).
    pub tools_dir: PathBuf,
}

impl Layout {
    /// The layout under `target_dir`.
    pub fn new(target_dir: impl Into<PathBuf>) -> Self {
        let target_dir = target_dir.into();
        Self {
            tools_dir: target_dir.clone(),
            target_dir,
        }
    }

    /// This layout, with the tools of `other` (a scratch copy using its workspace's venv).
    #[must_use]
    pub fn with_tools_of(mut self, other: &Layout) -> Self {
        self.tools_dir.clone_from(&other.tools_dir);
        self
    }

    /// The image cargo links for `driver`: a `.dll` named after the crate.
    pub fn cargo_image(&self, driver: &str, arch: Arch, profile: Profile) -> PathBuf {
        self.cargo_out(arch, profile)
            .join(format!("{}.dll", crate_file_stem(driver)))
    }

    /// The symbols cargo's linker writes beside [`Layout::cargo_image`].
    pub fn cargo_pdb(&self, driver: &str, arch: Arch, profile: Profile) -> PathBuf {
        self.cargo_out(arch, profile)
            .join(format!("{}.pdb", crate_file_stem(driver)))
    }

    fn cargo_out(&self, arch: Arch, profile: Profile) -> PathBuf {
        self.target_dir.join(arch.triple()).join(profile.dir())
    }

    /// The folder a linted image of `driver` is placed in.
    pub fn placed_dir(&self, driver: &str, arch: Arch, profile: Profile) -> PathBuf {
        self.target_dir
            .join("drivers")
            .join(arch.name())
            .join(profile.dir())
            .join(driver)
    }

    /// The linted image: `target/drivers/<arch>/<profile>/NAME/NAME.sys`.
    pub fn placed_sys(&self, driver: &str, arch: Arch, profile: Profile) -> PathBuf {
        self.placed_dir(driver, arch, profile)
            .join(format!("{driver}.sys"))
    }

    /// Its symbols: `target/drivers/<arch>/<profile>/NAME/NAME.pdb`.
    pub fn placed_pdb(&self, driver: &str, arch: Arch, profile: Profile) -> PathBuf {
        self.placed_dir(driver, arch, profile)
            .join(format!("{driver}.pdb"))
    }

    /// The driver package folder: `target/packages/<arch>/<profile>/NAME/`.
    pub fn package_dir(&self, driver: &str, arch: Arch, profile: Profile) -> PathBuf {
        self.target_dir
            .join("packages")
            .join(arch.name())
            .join(profile.dir())
            .join(driver)
    }

    /// Scratch space of the signing and packaging checks of `cargo xtask test`.
    pub fn sign_check_dir(&self) -> PathBuf {
        self.target_dir.join("sign-check")
    }

    /// Where the harness writes `driver`'s report; `name` is `report.json` or `bench-report.json`.
    pub fn emu_report(&self, driver: &str, name: &str) -> PathBuf {
        self.target_dir.join("emu").join(driver).join(name)
    }

    /// The Python venv of the emulator (and of the gate's ruff, the deploy tests' PowerShell parser).
    pub fn emu_venv(&self) -> PathBuf {
        self.tools_dir.join("emu-venv")
    }

    /// The lock taken while the emulator's venv is made (two processes of one run never make it
    /// at once).
    pub fn emu_venv_lock(&self) -> PathBuf {
        self.tools_dir.join("emu-venv.lock")
    }

    /// Mermaid's pinned parser (`emulator::mermaid`): parse.mjs and the unpacked package.
    pub fn mermaid_dir(&self) -> PathBuf {
        self.tools_dir.join("mermaid")
    }

    /// The separate target directory of the clean-build benchmark.
    pub fn bench_target_dir(&self) -> PathBuf {
        self.target_dir.join("bench")
    }

    /// Scratch for the gate's negative checks (a workspace copy broken on purpose, its builds).
    pub fn gate_dir(&self) -> PathBuf {
        self.target_dir.join("gate")
    }

    /// Scratch for the proof that a bare toolchain gets its targets (`toolchain::prove_on_bare_copy`).
    pub fn toolchain_check_dir(&self) -> PathBuf {
        self.target_dir.join("toolchain-check")
    }

    /// The mutation check's scratch (its copy of the workspace, its builds, the mutants' images).
    pub fn mutants_dir(&self) -> PathBuf {
        self.target_dir.join("mutants")
    }

    /// The templates stage's scratch (its copy of the workspace, with its own target directory).
    pub fn templates_dir(&self) -> PathBuf {
        self.target_dir.join("templates")
    }

    /// The driver-submission CABs (`package --submission`).
    pub fn submission_dir(&self) -> PathBuf {
        self.target_dir.join("submission")
    }

    /// `target/reports/NAME`: a command's report kept on disk (`test.json`).
    pub fn report(&self, name: &str) -> PathBuf {
        self.target_dir.join("reports").join(name)
    }

    /// Every folder xtask writes under the target directory except its tools (the emulator's venv,
    /// Mermaid's parser) and cargo's own output: what `cargo xtask clean` removes. The scratch
    /// copies of `cargo xtask test` (`mutants`, `templates`) go with their cargo output.
    pub fn xtask_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = ["drivers", "packages", "emu", "reports"]
            .iter()
            .map(|d| self.target_dir.join(d))
            .collect();
        dirs.extend([
            self.sign_check_dir(),
            self.bench_target_dir(),
            self.gate_dir(),
            self.toolchain_check_dir(),
            self.mutants_dir(),
            self.templates_dir(),
            self.submission_dir(),
        ]);
        dirs
    }
}

/// The file stem cargo gives a cdylib: the package name with `-` replaced by `_`.
fn crate_file_stem(package: &str) -> String {
    package.replace('-', "_")
}

/// `path` relative to `base` when it is under it (for shorter progress lines), else unchanged.
pub fn display_path<'a>(path: &'a Path, base: &Path) -> std::path::Display<'a> {
    path.strip_prefix(base).unwrap_or(path).display()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_output_uses_the_crate_file_stem_and_the_triple() {
        let l = Layout::new("/w/target");
        assert_eq!(
            l.cargo_image("ex-callback", Arch::X64, Profile::Release),
            Path::new("/w/target/x86_64-pc-windows-msvc/release/ex_callback.dll")
        );
        assert_eq!(
            l.cargo_pdb("ex-callback", Arch::Arm64, Profile::Debug),
            Path::new("/w/target/aarch64-pc-windows-msvc/debug/ex_callback.pdb")
        );
    }

    #[test]
    fn a_copy_builds_into_its_own_target_directory_with_its_workspaces_tools() {
        let ws = Layout::new("/w/target");
        assert_eq!(ws.emu_venv(), Path::new("/w/target/emu-venv"));
        let copy = Layout::new("/w/target/templates/target").with_tools_of(&ws);
        assert_eq!(
            copy.placed_sys("made-ex", Arch::X64, Profile::Debug),
            Path::new("/w/target/templates/target/drivers/x64/debug/made-ex/made-ex.sys")
        );
        assert_eq!(copy.emu_venv(), ws.emu_venv());
        assert_eq!(copy.emu_venv_lock(), Path::new("/w/target/emu-venv.lock"));
        assert_eq!(copy.mermaid_dir(), Path::new("/w/target/mermaid"));
    }

    #[test]
    fn placed_images_keep_the_package_name() {
        let l = Layout::new("/w/target");
        assert_eq!(
            l.placed_sys("ex-callback", Arch::Arm64, Profile::Release),
            Path::new("/w/target/drivers/arm64/release/ex-callback/ex-callback.sys")
        );
        assert_eq!(
            l.placed_pdb("cm-filter", Arch::X64, Profile::Debug),
            Path::new("/w/target/drivers/x64/debug/cm-filter/cm-filter.pdb")
        );
        assert_eq!(
            l.package_dir("ex-callback", Arch::Arm64, Profile::Debug),
            Path::new("/w/target/packages/arm64/debug/ex-callback")
        );
        assert_eq!(
            l.emu_report("ex-callback", "report.json"),
            Path::new("/w/target/emu/ex-callback/report.json")
        );
    }

    #[test]
    fn arch_selection() {
        assert_eq!(Arch::parse_selection("x64").unwrap(), vec![Arch::X64]);
        assert_eq!(Arch::parse_selection("arm64").unwrap(), vec![Arch::Arm64]);
        assert_eq!(
            Arch::parse_selection("all").unwrap(),
            vec![Arch::X64, Arch::Arm64]
        );
        let e = Arch::parse_selection("x86").unwrap_err().to_string();
        assert!(
            e.contains("`x86`") && e.contains("x64, arm64 or all"),
            "{e}"
        );
    }

    #[test]
    fn machines_differ_per_arch() {
        assert_eq!(Arch::X64.machine(), 0x8664);
        assert_eq!(Arch::Arm64.machine(), 0xAA64);
    }
}
