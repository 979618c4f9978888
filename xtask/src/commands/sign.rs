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
    /// `--pfx`, or `--key` and `--cert`: your own certificate instead of the test certificate.
    pub own: Option<OwnCert>,
    /// Explicit images to sign instead of the placed ones.
    pub files: Vec<PathBuf>,
}

/// The test signer for `--cert-dir` (or its defaults), created on first use.
pub fn signer(cert_dir: Option<&Path>) -> Result<Signer> {
    Ok(cert::signer(cert_dir)?)
}

/// Your own certificate: `--pfx FILE`, or `--key KEY.pem --cert CERT.pem`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnCert {
    /// A PKCS#12 file; its password from [`PASSWORD_ENV`] or the terminal.
    Pfx(PathBuf),
    /// A PEM private key and its certificate.
    Pem {
        /// `--key`.
        key: PathBuf,
        /// `--cert`.
        cert: PathBuf,
    },
}

/// The variable that holds a PFX's password (the command line never does).
pub const PASSWORD_ENV: &str = "XTASK_PFX_PASSWORD";

/// The signer: `own` when given (checked: valid now, code signing, key permissions), else the
/// test certificate of `cert_dir`.
pub fn load_signer(cert_dir: Option<&Path>, own: Option<&OwnCert>) -> Result<Signer> {
    let now = std::time::SystemTime::now();
    let signer = match own {
        None => return signer(cert_dir),
        Some(OwnCert::Pfx(file)) => {
            let password = pfx_password(file, false)?;
            driver_package::own::from_pfx(file, &password, now)?
        }
        Some(OwnCert::Pem { key, cert }) => driver_package::own::from_pem(key, cert, now)?,
    };
    let info = cert::describe(&signer.cert)?;
    eprintln!(
        "  signing with your certificate {} (SHA-1 {}, valid to {})",
        info.subject, info.thumbprint_sha1, info.not_after
    );
    Ok(signer)
}

/// The password of the PFX `file`: [`PASSWORD_ENV`], else typed on the terminal (twice with
/// `confirm`, for a file about to be written). No terminal and no variable is an error.
pub fn pfx_password(file: &Path, confirm: bool) -> Result<String> {
    use std::io::IsTerminal as _;
    password_from(
        std::env::var_os(PASSWORD_ENV),
        std::io::stdin().is_terminal(),
        file,
        confirm,
        |prompt| {
            rpassword::prompt_password(prompt)
                .map_err(|e| Error::new(format!("reading the password from the terminal: {e}")))
        },
    )
}

fn password_from(
    var: Option<std::ffi::OsString>,
    terminal: bool,
    file: &Path,
    confirm: bool,
    mut prompt: impl FnMut(&str) -> Result<String>,
) -> Result<String> {
    let shown = file.display();
    if let Some(v) = var {
        return v.into_string().map_err(|_| {
            Error::new(format!(
                "{PASSWORD_ENV} is not valid UTF-8: a PFX password is text; set it again"
            ))
        });
    }
    if !terminal {
        bail!(
            "no password for the PFX {shown}: set {PASSWORD_ENV} (e.g. from your CI's secret \
             store), or run on a terminal to type it; it is never taken on the command line"
        );
    }
    let password = prompt(&format!("password of {shown}: "))?;
    if confirm && prompt(&format!("password of {shown} again: "))? != password {
        bail!("the two passwords typed for {shown} differ: nothing was written; try again");
    }
    Ok(password)
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
    let signer = load_signer(opts.cert_dir.as_deref(), opts.own.as_ref())?;
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

    /// One signer for the whole test binary: the throwaway key and code-signing certificate
    /// (valid until 2125) of driver-package/testdata/pfx/aes.pfx, made by OpenSSL (its README).
    /// Generating a key, as `cert::generate` does for `cargo xtask cert`, is a prime search of 0.3
    /// to 3 s of CPU; reading this takes milliseconds.
    pub(crate) fn test_signer() -> Signer {
        static SIGNER: OnceLock<Signer> = OnceLock::new();
        SIGNER
            .get_or_init(|| {
                let pfx = include_bytes!("../../../driver-package/testdata/pfx/aes.pfx");
                driver_package::pfx::read(pfx, "Secret-1", "aes.pfx")
                    .unwrap()
                    .signer
            })
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
    fn the_password_comes_from_the_variable_else_the_terminal_never_from_nowhere() {
        let file = Path::new("me.pfx");
        let never = |_: &str| -> Result<String> { panic!("no prompt expected") };
        let got = password_from(Some("s3cret".into()), false, file, true, never).unwrap();
        assert_eq!(got, "s3cret");
        let e = password_from(None, false, file, false, never)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no password for the PFX me.pfx") && e.contains(PASSWORD_ENV),
            "{e}"
        );
        let mut typed = vec!["one".to_owned(), "two".to_owned()].into_iter();
        let e = password_from(None, true, file, true, |_| Ok(typed.next().unwrap()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("differ"), "{e}");
        let mut prompts = Vec::new();
        let got = password_from(None, true, file, true, |p| {
            prompts.push(p.to_owned());
            Ok("same".to_owned())
        })
        .unwrap();
        assert_eq!(got, "same");
        assert_eq!(
            prompts,
            ["password of me.pfx: ", "password of me.pfx again: "]
        );
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
