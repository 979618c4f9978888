//! `cargo xtask sign`: embeds a SHA-256 Authenticode signature by the test certificate
//! (`driver_package::cert`) into placed images, or given files, in place (through a temporary
//! file and a rename, so an image is never left half-signed). Only an image that passes the lint
//! for its machine is signed: whatever is not a driver image is refused before anything is
//! written.

use std::path::{Path, PathBuf};

use driver_package::authenticode;
use driver_package::cert;
use driver_package::pkcs7::Signer;

use crate::base::error::{Context, Error, Result, bail};
use crate::base::files;
use crate::base::layout::{Arch, Profile, display_path};
use crate::base::workspace::Workspace;
use crate::commands::lint as lint_images;
use crate::image::lint;
use crate::image::read::PeImage;

/// `cargo xtask sign`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Options {
    /// `-p NAME`...; empty = every driver.
    pub packages: Vec<String>,
    /// `--arch`; default x64.
    pub arches: Vec<Arch>,
    /// `--release`.
    pub profile: Profile,
    /// `--cert-dir`.
    pub cert_dir: Option<PathBuf>,
    /// Explicit images to sign instead of the placed ones.
    pub files: Vec<PathBuf>,
}

/// The test signer for `--cert-dir` (or its defaults), created on first use.
pub fn signer(cert_dir: Option<&Path>) -> Result<Signer> {
    Ok(cert::signer(cert_dir)?)
}

/// `bytes` (an image for `arch`) signed, after checking it is a driver image: it must pass the
/// lint, before and after.
pub fn sign_driver_image(bytes: &[u8], arch: Arch, signer: &Signer) -> Result<Vec<u8>> {
    lint_or_refuse(bytes, arch, "")?;
    let image = authenticode::sign_image(bytes, signer)?;
    lint_or_refuse(&image, arch, "after signing: ")?;
    Ok(image)
}

fn lint_or_refuse(bytes: &[u8], arch: Arch, when: &str) -> Result<()> {
    let violations = lint::lint_image(bytes, &lint::LintOptions::for_machine(arch.machine()));
    if violations.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = violations.iter().map(|v| format!("    {v}")).collect();
    bail!(
        "{when}not a {arch} driver image that passes the lint, so it is not signed:\n{}",
        list.join("\n")
    )
}

/// The architecture an image is for, from its `Machine`.
pub fn arch_of(bytes: &[u8]) -> Result<Arch> {
    let image = PeImage::parse(bytes).map_err(|e| Error::new(e.to_string()))?;
    Arch::of_machine(image.file_header.machine).ok_or_else(|| {
        Error::new(format!(
            "Machine 0x{:04X} is neither x64 nor arm64: not a driver image of this suite",
            image.file_header.machine
        ))
    })
}

/// Signs the file at `path` in place.
pub fn sign_file(path: &Path, arch: Option<Arch>, signer: &Signer) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let arch = match arch {
        Some(a) => a,
        None => arch_of(&bytes)?,
    };
    let image = sign_driver_image(&bytes, arch, signer)?;
    files::write_atomic(path, &image)
}

/// The `sign` command.
pub(crate) fn run(ws: &Workspace, opts: &Options) -> Result<()> {
    let targets: Vec<(PathBuf, Option<Arch>)> = if opts.files.is_empty() {
        let drivers = ws.select(&opts.packages)?;
        lint_images::placed_images(ws, &drivers, &opts.arches, &[opts.profile])?
            .into_iter()
            .map(|(p, a)| (p, Some(a)))
            .collect()
    } else {
        opts.files.iter().map(|f| (f.clone(), None)).collect()
    };
    let signer = signer(opts.cert_dir.as_deref())?;
    let mut failed = 0;
    for (path, arch) in &targets {
        let shown = display_path(path, &ws.root);
        match sign_file(path, *arch, &signer) {
            Ok(()) => eprintln!("  signed {shown}"),
            Err(e) => {
                failed += 1;
                eprintln!("  {shown}: {e}");
            }
        }
    }
    if failed > 0 {
        bail!(
            "sign: {failed} of {} image(s) not signed (see above); they were left unchanged",
            targets.len()
        );
    }
    eprintln!(
        "sign: {} image(s) signed by {}",
        targets.len(),
        cert::describe(&signer.cert)?.subject
    );
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::image::testimage::{Spec, build, good};
    use std::sync::OnceLock;
    use std::time::{Duration, SystemTime};

    /// One signer for the whole test binary (RSA key generation takes a while), valid now.
    pub(crate) fn test_signer() -> Signer {
        static SIGNER: OnceLock<Signer> = OnceLock::new();
        SIGNER
            .get_or_init(|| cert::generate(SystemTime::now(), Duration::from_hours(24)).unwrap())
            .clone()
    }

    /// A fresh scratch folder for test `name`.
    pub(crate) fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xtask-sign-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn images_that_are_not_drivers_are_refused_and_left_unchanged() {
        let signer = test_signer();
        let dir = scratch("sign-file");
        std::fs::create_dir_all(&dir).unwrap();
        let text = dir.join("notes.sys");
        std::fs::write(&text, b"not an image").unwrap();
        let e = sign_file(&text, None, &signer).unwrap_err().to_string();
        assert!(e.contains("not a PE image"), "{e}");
        // A PE image that is not a driver (a user-mode import) fails the lint and is not signed.
        let dll = dir.join("user.sys");
        let user = build(&Spec {
            imports: vec![("kernel32.dll".into(), vec!["Sleep".into()])],
            ..Spec::default()
        });
        std::fs::write(&dll, &user).unwrap();
        let e = sign_file(&dll, None, &signer).unwrap_err().to_string();
        assert!(
            e.contains("passes the lint") && e.contains("kernel32.dll"),
            "{e}"
        );
        assert_eq!(std::fs::read(&dll).unwrap(), user);
        // The right machine is required.
        let e = sign_file(&dll, Some(Arch::Arm64), &signer)
            .unwrap_err()
            .to_string();
        assert!(e.contains("arm64"), "{e}");
        // A driver image is signed in place and stays lint-clean.
        let sys = dir.join("good.sys");
        std::fs::write(&sys, good()).unwrap();
        sign_file(&sys, None, &signer).unwrap();
        let image = std::fs::read(&sys).unwrap();
        authenticode::verify_image(&image, &signer.cert).unwrap();
        assert!(
            lint::lint_image(&image, &lint::LintOptions::for_machine(Arch::X64.machine()))
                .is_empty()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_machine_names_the_architecture() {
        assert_eq!(arch_of(&good()).unwrap(), Arch::X64);
        let arm = build(&Spec {
            machine: 0xAA64,
            ..Spec::default()
        });
        assert_eq!(arch_of(&arm).unwrap(), Arch::Arm64);
        let i386 = build(&Spec {
            machine: 0x14C,
            ..Spec::default()
        });
        let e = arch_of(&i386).unwrap_err().to_string();
        assert!(e.contains("Machine 0x014C"), "{e}");
    }
}
