//! Mermaid's own parser for the diagrams (`diagram.rs`): one npm package, `mermaid`, pinned by
//! the SHA-512 of its tarball in xtask/mermaid/pin.toml. When Node, npm and tar are on PATH,
//! [`prepare`] downloads it with `npm pack`, checks it against the pin, and unpacks only its
//! self-contained ES module build (every dependency bundled in) into target/mermaid/package/;
//! xtask/mermaid/parse.mjs runs it (mermaid.parse, headless: a sequence diagram parses without a
//! DOM). Without one of those programs the check cannot run: the caller counts it as skipped.
//!
//! The package's own dependencies are never installed: `npm ci` of mermaid put 125 packages
//! (128 MB) in node_modules, 8.7 s of CPU in every fresh `cargo xtask test`, for a parse the
//! bundle does alike (the same verdicts; the bundle is what a browser loads from a CDN). The pin's
//! check and the unpacking of three paths take about 1 s.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64ct::{Base64, Encoding};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha512};

use crate::base::error::{Context, Result, bail};
use crate::base::files;
use crate::base::process::{self, Options};
use crate::base::tools::find_on_path;
use crate::base::workspace::Workspace;

/// The pin, in xtask/mermaid/.
const PIN: &str = "pin.toml";

/// The parser's script, in xtask/mermaid/, copied beside the package.
const SCRIPT: &str = "parse.mjs";

/// The folder of target/mermaid/ the package is unpacked into.
const PACKAGE: &str = "package";

/// The file, in [`PACKAGE`], holding the pin it was unpacked from: written last, so a folder
/// without it (an interrupted install) is installed again.
const STAMP: &str = ".xtask-pin";

/// A diagram Mermaid's parser must reject (the negative test): a message with no receiver.
const BROKEN: &str = "sequenceDiagram\n    participant D as Driver\n    D->>: no receiver\n";

/// xtask/mermaid/pin.toml: which tarball, and what of it is unpacked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Pin {
    /// The npm package.
    package: String,
    /// Its version.
    version: String,
    /// The registry's `dist.integrity` of the tarball: `sha512-` and the base64 of its SHA-512.
    integrity: String,
    /// The module parse.mjs imports, a path in the package.
    entry: String,
    /// What is unpacked: paths in the package (a folder with all it holds).
    files: Vec<String>,
}

impl Pin {
    /// `package@version`, as npm names it.
    fn spec(&self) -> String {
        format!("{}@{}", self.package, self.version)
    }
}

/// Mermaid's parser, ready to run.
pub struct Parser {
    node: PathBuf,
    dir: PathBuf,
    /// The module parse.mjs imports, relative to `dir`.
    entry: PathBuf,
}

#[derive(Serialize)]
struct Input<'a> {
    name: &'a str,
    text: &'a str,
}

#[derive(Deserialize)]
struct Output {
    name: String,
    error: Option<String>,
}

/// Why the parser cannot run here (no Node, npm or tar), or the parser, installed in
/// target/mermaid/ (once per pin).
///
/// # Errors
/// The pin cannot be read; the download failed, or is not the pinned tarball; tar failed.
pub fn prepare(ws: &Workspace) -> Result<std::result::Result<Parser, String>> {
    let (node, npm, tar) = match programs(
        find_on_path("node"),
        find_on_path("npm"),
        find_on_path("tar"),
    ) {
        Ok(found) => found,
        Err(why) => return Ok(Err(why)),
    };
    let source = ws.root.join("xtask").join("mermaid");
    let pin_bytes = fs::read(source.join(PIN))
        .with_context(|| format!("reading {}", source.join(PIN).display()))?;
    let pin = parse_pin(&String::from_utf8_lossy(&pin_bytes))
        .with_context(|| format!("reading {}", source.join(PIN).display()))?;
    let dir = ws.layout.mermaid_dir();
    files::copy_atomic(&source.join(SCRIPT), &dir.join(SCRIPT))?;
    // Two runs of xtask (the emulate stage and a user's command) install one after the other.
    let _lock = files::lock(&dir.join(".install.lock"))?;
    let stamp = dir.join(PACKAGE).join(STAMP);
    if fs::read(&stamp).ok().as_deref() != Some(pin_bytes.as_slice()) {
        eprintln!(
            "  installing Mermaid's parser ({}, its self-contained build) into {}...",
            pin.spec(),
            dir.join(PACKAGE).display()
        );
        install(&npm, &tar, &pin, &dir)?;
        files::write_atomic(&stamp, &pin_bytes)?;
    }
    Ok(Ok(Parser {
        node,
        entry: Path::new(PACKAGE).join(&pin.entry),
        dir,
    }))
}

/// The pin's TOML, read and checked: an entry among what is unpacked, paths inside the package.
fn parse_pin(text: &str) -> Result<Pin> {
    let pin: Pin = toml::from_str(text).context("not the pin's TOML")?;
    for path in pin.files.iter().chain([&pin.entry]) {
        if path.is_empty()
            || Path::new(path).is_absolute()
            || path.split(['/', '\\']).any(|part| part == "..")
        {
            bail!("`{path}` is not a path inside the package");
        }
    }
    if !pin
        .files
        .iter()
        .any(|f| pin.entry == *f || pin.entry.starts_with(&format!("{f}/")))
    {
        bail!("the entry `{}` is not among the files unpacked", pin.entry);
    }
    Ok(pin)
}

/// npm's integrity string of `bytes`: `sha512-` and the base64 of their SHA-512 (the registry's
/// `dist.integrity`, <https://docs.npmjs.com/cli/v11/configuring-npm/package-lock-json>).
fn integrity(bytes: &[u8]) -> String {
    format!("sha512-{}", Base64::encode_string(&Sha512::digest(bytes)))
}

/// `Ok` when `tarball` is the pinned one, else an error naming both integrities.
fn check_tarball(pin: &Pin, tarball: &[u8]) -> Result<()> {
    let got = integrity(tarball);
    if got == pin.integrity {
        return Ok(());
    }
    bail!(
        "the tarball npm downloaded for {} is not the pinned one: its integrity is {got}, \
         xtask/mermaid/pin.toml says {}. The registry (or your npm configuration's) serves other \
         bytes under that version; nothing was unpacked",
        pin.spec(),
        pin.integrity
    )
}

/// Downloads the pinned tarball into a staging folder of `dir`, checks it, unpacks the pin's files
/// and puts them in place of `dir`/package (without its stamp: the caller writes it). The staging
/// folder is removed whatever happens.
fn install(npm: &Path, tar: &Path, pin: &Pin, dir: &Path) -> Result<()> {
    // What the former install (`npm ci` of the whole dependency tree) left.
    for old in ["package.json", "package-lock.json"] {
        files::remove_if_exists(&dir.join(old))?;
    }
    if dir.join("node_modules").exists() {
        fs::remove_dir_all(dir.join("node_modules"))
            .with_context(|| format!("removing {}", dir.join("node_modules").display()))?;
    }
    let staging = dir.join(format!(".staging-{}", std::process::id()));
    if staging.exists() {
        fs::remove_dir_all(&staging).with_context(|| format!("removing {}", staging.display()))?;
    }
    let unpacked = staging.join("unpacked");
    fs::create_dir_all(&unpacked).with_context(|| format!("creating {}", unpacked.display()))?;
    let result = download_and_unpack(npm, tar, pin, &staging, &unpacked).and_then(|()| {
        let installed = dir.join(PACKAGE);
        if installed.exists() {
            fs::remove_dir_all(&installed)
                .with_context(|| format!("removing {}", installed.display()))?;
        }
        fs::rename(unpacked.join("package"), &installed)
            .with_context(|| format!("moving the unpacked package to {}", installed.display()))
    });
    let _ = fs::remove_dir_all(&staging);
    result
}

/// `npm pack` of the pin into `staging`, the tarball checked, then its files unpacked into
/// `unpacked` (as `package/…`, the tarball's own layout).
fn download_and_unpack(
    npm: &Path,
    tar: &Path,
    pin: &Pin,
    staging: &Path,
    unpacked: &Path,
) -> Result<()> {
    run_ok(
        Command::new(npm)
            .arg("pack")
            .arg(pin.spec())
            .arg("--pack-destination")
            .arg(staging)
            .args(["--ignore-scripts", "--loglevel=error"])
            .current_dir(staging),
        Options {
            timeout: Some(Duration::from_mins(10)),
            ..Options::default()
        },
        &format!(
            "`npm pack {}` failed (the registry unreachable?)",
            pin.spec()
        ),
    )?;
    let tarball = tarball_in(staging)?;
    let bytes = fs::read(&tarball).with_context(|| format!("reading {}", tarball.display()))?;
    check_tarball(pin, &bytes)?;
    run_ok(
        Command::new(tar)
            .arg("-xzf")
            .arg(&tarball)
            .arg("-C")
            .arg(unpacked)
            .args(pin.files.iter().map(|f| format!("package/{f}"))),
        Options {
            timeout: Some(Duration::from_mins(2)),
            ..Options::default()
        },
        &format!(
            "unpacking {} with tar failed (is every file of xtask/mermaid/pin.toml in {}?)",
            tarball.display(),
            pin.spec()
        ),
    )?;
    let entry = unpacked.join("package").join(&pin.entry);
    if !entry.is_file() {
        bail!("{} has no {}", pin.spec(), pin.entry);
    }
    Ok(())
}

/// `cmd` run as `opts` says, to a successful end: what it printed, or `failed` and the last lines
/// of its stderr.
fn run_ok(cmd: &mut Command, opts: Options<'_>, failed: &str) -> Result<process::Captured> {
    let out = process::run(cmd, opts)?;
    if !out.status.is_some_and(|s| s.success()) {
        bail!(
            "{failed}: {}",
            process::tail(&String::from_utf8_lossy(&out.stderr), 10)
        );
    }
    Ok(out)
}

/// The one tarball `npm pack` left in `staging`.
fn tarball_in(staging: &Path) -> Result<PathBuf> {
    let mut found = Vec::new();
    for entry in fs::read_dir(staging).with_context(|| format!("reading {}", staging.display()))? {
        let path = entry
            .with_context(|| format!("reading {}", staging.display()))?
            .path();
        if path.extension().is_some_and(|e| e == "tgz") {
            found.push(path);
        }
    }
    match <[PathBuf; 1]>::try_from(found) {
        Ok([one]) => Ok(one),
        Err(found) => bail!(
            "`npm pack` left {} tarballs in {}, not one",
            found.len(),
            staging.display()
        ),
    }
}

/// Node, npm and tar, or why the check is skipped.
fn programs(
    node: Option<PathBuf>,
    npm: Option<PathBuf>,
    tar: Option<PathBuf>,
) -> std::result::Result<(PathBuf, PathBuf, PathBuf), String> {
    match (node, npm, tar) {
        (Some(node), Some(npm), Some(tar)) => Ok((node, npm, tar)),
        (None, _, _) => Err(
            "Node.js is not on PATH: install Node.js 18 or newer (with npm) to \
             check the diagrams with Mermaid's parser"
                .to_owned(),
        ),
        (_, None, _) => Err(
            "npm is not on PATH: install Node.js 18 or newer (with npm) to check \
             the diagrams with Mermaid's parser"
                .to_owned(),
        ),
        (_, _, None) => Err(
            "tar is not on PATH: Mermaid's parser is unpacked with it (GNU tar or \
             bsdtar; Windows 10 and later have tar.exe)"
                .to_owned(),
        ),
    }
}

impl Parser {
    /// Parses each `(name, diagram)`: the error message of each one that does not parse, in order.
    ///
    /// # Errors
    /// Node could not run the parser, or answered something else than one verdict per diagram.
    pub fn parse(&self, diagrams: &[(String, String)]) -> Result<Vec<(String, Option<String>)>> {
        let input: Vec<Input<'_>> = diagrams
            .iter()
            .map(|(name, text)| Input { name, text })
            .collect();
        let json = serde_json::to_vec(&input).context("writing the diagrams as JSON")?;
        let out = run_ok(
            Command::new(&self.node)
                .arg(SCRIPT)
                .arg(&self.entry)
                .current_dir(&self.dir),
            Options {
                stdin: Some(&json),
                timeout: Some(Duration::from_mins(2)),
                ..Options::default()
            },
            &format!(
                "Mermaid's parser (node {}/{SCRIPT}) failed",
                self.dir.display()
            ),
        )?;
        let verdicts: Vec<Output> = serde_json::from_slice(&out.stdout)
            .context("Mermaid's parser answered something that is not its JSON verdicts")?;
        if verdicts.len() != diagrams.len() {
            bail!(
                "Mermaid's parser answered {} verdicts for {} diagrams",
                verdicts.len(),
                diagrams.len()
            );
        }
        Ok(verdicts.into_iter().map(|v| (v.name, v.error)).collect())
    }

    /// The negative test: a broken diagram must be rejected, else the parser checks nothing.
    ///
    /// # Errors
    /// The parser accepted it (or could not run).
    pub fn rejects_a_broken_diagram(&self) -> Result<()> {
        let verdict = self.parse(&[("a broken diagram".to_owned(), BROKEN.to_owned())])?;
        match verdict.first() {
            Some((_, Some(_))) => Ok(()),
            _ => bail!("Mermaid's parser accepted a broken diagram: it would let any diagram pass"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_node_npm_or_tar_the_check_says_why_it_is_skipped() {
        let p = |n: &str| Some(PathBuf::from(n));
        let why = programs(None, p("npm"), p("tar")).unwrap_err();
        assert!(
            why.starts_with("Node.js is not on PATH: install Node.js"),
            "{why}"
        );
        let why = programs(p("node"), None, p("tar")).unwrap_err();
        assert!(why.starts_with("npm is not on PATH"), "{why}");
        let why = programs(p("node"), p("npm"), None).unwrap_err();
        assert!(why.starts_with("tar is not on PATH"), "{why}");
        assert!(programs(p("node"), p("npm"), p("tar")).is_ok());
    }

    fn committed_pin() -> Pin {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("mermaid")
            .join(PIN);
        parse_pin(&fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn the_committed_pin_names_a_sha512_and_an_entry_it_unpacks() {
        let pin = committed_pin();
        assert_eq!(pin.spec(), format!("mermaid@{}", pin.version));
        let digest = pin.integrity.strip_prefix("sha512-").unwrap();
        assert_eq!(Base64::decode_vec(digest).unwrap().len(), 64);
        assert!(pin.files.contains(&pin.entry));
    }

    #[test]
    fn integrity_is_npms_sha512_in_base64() {
        // SHA-512 of "abc" (FIPS 180-2, appendix C.1), in base64.
        assert_eq!(
            integrity(b"abc"),
            "sha512-3a81oZNherrMQXNJriBBMRLm+k6JqX6iCp7u5ktV05ohkpkqJ0/BqDa6PCOj/uu9RU1EI2Q86A4qmslPpUyknw=="
        );
    }

    #[test]
    fn a_tarball_other_than_the_pinned_one_is_refused_naming_both() {
        let pin = Pin {
            integrity: integrity(b"the pinned bytes"),
            ..committed_pin()
        };
        assert!(check_tarball(&pin, b"the pinned bytes").is_ok());
        let err = check_tarball(&pin, b"other bytes").unwrap_err().to_string();
        assert!(err.contains(&integrity(b"other bytes")), "{err}");
        assert!(err.contains(&pin.integrity), "{err}");
        assert!(err.contains("nothing was unpacked"), "{err}");
    }

    #[test]
    fn a_pin_reaching_out_of_the_package_or_missing_its_entry_is_refused() {
        let pin = |entry: &str, files: &str| {
            parse_pin(&format!(
                "package = \"mermaid\"\nversion = \"1\"\nintegrity = \"sha512-\"\n\
                 entry = \"{entry}\"\nfiles = [{files}]\n"
            ))
        };
        assert!(pin("dist/m.mjs", "\"dist\"").is_ok());
        assert!(pin("dist/m.mjs", "\"dist/m.mjs\", \"LICENSE\"").is_ok());
        let err = pin("dist/m.mjs", "\"LICENSE\"").unwrap_err().to_string();
        assert!(err.contains("is not among the files unpacked"), "{err}");
        let err = pin("dist/m.mjs", "\"dist\", \"../../x\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not a path inside the package"), "{err}");
        let err = pin("/etc/m.mjs", "\"/etc\"").unwrap_err().to_string();
        assert!(err.contains("is not a path inside the package"), "{err}");
        assert!(pin("dist/m.mjs", "\"dist\"").is_ok());
        assert!(
            parse_pin("package = \"m\"\nversion = \"1\"\nintegrity = \"x\"\nentry = \"a\"\nfiles = [\"a\"]\nextra = 1\n")
                .is_err()
        );
    }
}
