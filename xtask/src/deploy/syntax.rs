//! The PowerShell syntax check of every script the VM plans can produce.
//!
//! No Windows runs here, so a script the plan writes is only ever run by the fake VM, which does
//! not parse PowerShell. This check parses each one with tree-sitter's PowerShell grammar
//! (`xtask/emu/ps_syntax.py`, in the emulator's venv): every guest script, every host script (the
//! Hyper-V wrappers and checkpoint revert), and the ssh command line itself (which a VM whose
//! OpenSSH default shell is PowerShell reads as PowerShell), for every combination of the options
//! that shape a plan, each driver alone and all together. `cargo xtask test` runs it in its deploy
//! stage with the real packages, and with samples that must be refused.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use super::plan::{self, Install, Options, Package, Run, Via};
use super::ps;
use super::script;
use super::transport::HyperV;
use crate::base::error::{Context, Result, bail};
use crate::base::process;

/// The checker, relative to the workspace root.
pub const CHECKER: &str = "xtask/emu/ps_syntax.py";

/// Scripts with a syntax error each, which the checker must refuse (its negative tests).
pub const BROKEN: [(&str, &str); 5] = [
    ("unclosed-brace", "if ($x) { Say 1\n"),
    ("unclosed-paren", "$a = @('a', 'b'\nSay $a\n"),
    (
        "unterminated-here-string",
        "$t = @'\nusing System;\nSay $t\n",
    ),
    ("unclosed-string", "Say 'it's\n"),
    ("bad-parameter-list", "function F([string]$a,, $b) { }\n"),
];

/// Every distinct script the plans of `packages` can produce, by a readable unique name: each
/// driver alone and all together, ssh and hyperv, sc and inf installs, with and without
/// `--enable-testsigning`, `--keep`, `--snapshot` (and `--revert-after-failure`), with and
/// without `--verifier`, `--kdnet` and `--fetch-dump`, with the default `--remote-dir` and one
/// with a space and a quote.
#[allow(clippy::too_many_lines)] // one loop per option, the scripts of each plan
pub fn plan_scripts(packages: &[Package]) -> Result<BTreeMap<String, String>> {
    let mut sets: Vec<Vec<Package>> = packages.iter().map(|p| vec![p.clone()]).collect();
    if packages.len() > 1 {
        sets.push(packages.to_vec());
    }
    let hyperv = HyperV {
        vm: "Win11 Test".into(),
        credential: r"C:\Users\me\AppData\Roaming\windows-callback-drivers\hyperv-Win11 Test.xml"
            .into(),
    };
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut distinct: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut add = |name: String, script: String| {
        if distinct.insert(script.clone()) {
            let n = seen.len() + 1;
            seen.insert(format!("{n:04}-{name}"), script);
        }
    };
    // A wrapper is a function of its script (and the transport), and a host script of its
    // argument vector: each is made once. Made again, it would be the same text, which `add`
    // skips, so the scripts and their names are the same; only the encoding work is not
    // repeated (`ps::encode`/`decode` for each of the ~1,000 plans' steps was most of this
    // function's time: 5 s of xtask's CPU in the deploy stage, and again in the templates stage).
    let mut wrapped: std::collections::HashSet<(bool, String)> = std::collections::HashSet::new();
    let mut host_argvs: std::collections::HashSet<Vec<String>> = std::collections::HashSet::new();
    add("helpers".into(), plan::HELPERS.to_owned());
    // Each step file as it is on disk (with its comments), as one would run it by hand.
    add("file-prologue".into(), script::PROLOGUE_FILE.to_owned());
    for s in script::ALL {
        add(format!("file-{}", s.name), s.text.to_owned());
    }
    add("wait-for-boot".into(), plan::boot_script());
    // The Hyper-V host script of --fetch-dump's copy.
    add(
        "hyperv-download-host".into(),
        hyperv.download_wrapper(
            r"C:\Windows\Minidump\050126-01.dmp",
            Path::new("target/deploy/Win11 Test/it's.dmp"),
        ),
    );
    for dir in [plan::REMOTE_DIR, r"C:\Test Drivers\it's deploy"] {
        add("post-mortem".into(), plan::post_mortem_script(dir));
    }
    for set in &sets {
        let drivers: Vec<&str> = set.iter().map(|p| p.driver.as_str()).collect();
        for hv in [false, true] {
            let via = if hv {
                Via::HyperV {
                    vm: hyperv.vm.clone(),
                }
            } else {
                Via::Ssh
            };
            for install in [Install::Sc, Install::Inf] {
                for enable_testsigning in [false, true] {
                    for keep in [false, true] {
                        for (snapshot, revert_after_failure) in
                            [(false, false), (true, false), (true, true)]
                        {
                            // --verifier, --kdnet and --fetch-dump off and on.
                            for (remote_dir, debug) in
                                [plan::REMOTE_DIR, r"C:\Test Drivers\it's deploy"]
                                    .into_iter()
                                    .flat_map(|d| [(d, false), (d, true)])
                            {
                                let o = Options {
                                    install,
                                    enable_testsigning,
                                    keep,
                                    snapshot: snapshot.then(|| "clean".to_owned()),
                                    libvirt: (snapshot && !hv).then(|| "win11".to_owned()),
                                    revert_after_failure,
                                    remote_dir: remote_dir.to_owned(),
                                    verifier: debug.then_some(crate::deploy::verifier::Flags(
                                        crate::deploy::verifier::STANDARD,
                                    )),
                                    fetch_dump: debug,
                                    kdnet: debug.then(|| crate::deploy::kdnet::Kdnet {
                                        host: "192.168.1.10".to_owned(),
                                        port: 50000,
                                    }),
                                    ..Options::default()
                                };
                                let p = plan::build("target", &via, set, &o)?;
                                let tag = format!(
                                    "{}-{}",
                                    if hv { "hyperv" } else { "ssh" },
                                    drivers.join("+")
                                );
                                for step in p.steps() {
                                    let name = format!("{tag}-{}", step.id);
                                    match &step.run {
                                        Run::Guest(script) => {
                                            add(name.clone(), script.clone());
                                            let fresh = wrapped.insert((hv, script.clone()));
                                            if fresh && hv {
                                                add(
                                                    format!("{name}-host"),
                                                    hyperv.guest_wrapper(script),
                                                );
                                            } else if fresh {
                                                add(
                                                    format!("{name}-command-line"),
                                                    ps::command_line(script),
                                                );
                                            }
                                        }
                                        Run::Host { argv, .. } => {
                                            if host_argvs.insert(argv.clone())
                                                && let Some(script) = host_script(argv)
                                            {
                                                add(format!("{name}-host"), script);
                                            }
                                        }
                                        Run::Upload(items) if hv => {
                                            add(
                                                format!("{name}-host"),
                                                hyperv.upload_wrapper(items),
                                            );
                                        }
                                        Run::Upload(_) | Run::WaitForGuest { .. } => {}
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(seen)
}

/// The PowerShell script a host command runs (`powershell.exe ... -EncodedCommand B64`), if it
/// is one (virsh is not).
fn host_script(argv: &[String]) -> Option<String> {
    if !argv.first()?.starts_with("powershell") {
        return None;
    }
    let i = argv.iter().position(|a| a == "-EncodedCommand")?;
    ps::decode(argv.get(i + 1)?)
}

/// Parses `scripts` with the checker run by `python` (the emulator venv's); returns each script's
/// name with its first syntax error, or `None` if it parses. An error if the checker cannot run or
/// does not answer for every script.
pub fn check(
    python: &Path,
    root: &Path,
    scripts: &BTreeMap<String, String>,
) -> Result<Vec<(String, Option<String>)>> {
    let dir = std::env::temp_dir().join(format!(
        "xtask-ps-syntax-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, script) in scripts {
        // UTF-8 with a BOM, as Windows PowerShell 5.1 needs to read a .ps1 file as UTF-8.
        let mut bytes = b"\xEF\xBB\xBF".to_vec();
        bytes.extend_from_slice(script.as_bytes());
        std::fs::write(dir.join(format!("{name}.ps1")), bytes)
            .with_context(|| format!("writing {name}.ps1 in {}", dir.display()))?;
    }
    let out = process::run(
        Command::new(python).arg(root.join(CHECKER)).arg(&dir),
        process::Options::default(),
    )
    .with_context(|| format!("running {} {CHECKER}", python.display()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = out?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !matches!(out.status.and_then(|s| s.code()), Some(0 | 1)) {
        bail!(
            "{CHECKER} failed ({:?}): {}{}",
            out.status,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let mut answers: BTreeMap<&str, Option<String>> = BTreeMap::new();
    for line in stdout.lines() {
        if let Some(name) = line.strip_prefix("ok ") {
            answers.insert(name.trim_end_matches(".ps1"), None);
        } else if let Some(rest) = line.strip_prefix("error ")
            && let Some((name, what)) = rest.split_once(' ')
        {
            answers.insert(name.trim_end_matches(".ps1"), Some(what.to_owned()));
        }
    }
    scripts
        .keys()
        .map(|name| match answers.get(name.as_str()) {
            Some(a) => Ok((name.clone(), a.clone())),
            None => bail!("{CHECKER} gave no answer for {name}:\n{}", stdout.trim()),
        })
        .collect()
}

/// The check of `cargo xtask test`: (passed, what) for the plans of `packages` and for each
/// broken sample.
pub fn suite_checks(python: &Path, root: &Path, packages: &[Package]) -> Vec<(bool, String)> {
    match plan_scripts(packages) {
        Ok(scripts) => script_checks(python, root, &scripts),
        Err(e) => vec![(false, format!("PowerShell syntax of the plans: {e}"))],
    }
}

/// [`suite_checks`] of plan scripts already made (`plan_scripts`).
fn script_checks(
    python: &Path,
    root: &Path,
    scripts: &BTreeMap<String, String>,
) -> Vec<(bool, String)> {
    let mut checks = Vec::new();
    let mut all = scripts.clone();
    for (name, script) in BROKEN {
        all.insert(format!("broken-{name}"), script.to_owned());
    }
    match check(python, root, &all) {
        Err(e) => checks.push((false, format!("PowerShell syntax of the plans: {e}"))),
        Ok(results) => {
            let bad: Vec<String> = results
                .iter()
                .filter(|(n, _)| !n.starts_with("broken-"))
                .filter_map(|(n, e)| e.as_ref().map(|e| format!("{n}: {e}")))
                .collect();
            let what = format!(
                "PowerShell syntax (tree-sitter): the {} distinct scripts of every plan option combination parse",
                scripts.len()
            );
            if bad.is_empty() {
                checks.push((true, what));
            } else {
                checks.push((false, format!("{what}: {}", bad.join("; "))));
            }
            for (name, _) in BROKEN {
                let refused = results
                    .iter()
                    .any(|(n, e)| *n == format!("broken-{name}") && e.is_some());
                checks.push((
                    refused,
                    format!(
                        "PowerShell syntax check refuses a script with a syntax error ({name})"
                    ),
                ));
            }
        }
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::workspace::Workspace;
    use crate::deploy::plan::tests::{cm_filter, ex_callback};

    fn python(ws: &Workspace) -> std::path::PathBuf {
        crate::emulator::venv::ensure(
            &ws.layout.emu_venv(),
            &ws.root.join(crate::emulator::venv::LOCK),
        )
        .expect("the emulator venv (tree-sitter is in its lock)")
    }

    #[test]
    fn every_plan_script_parses_and_broken_ones_are_refused() {
        let ws = Workspace::load().unwrap();
        let py = python(&ws);
        let packages = [cm_filter(), ex_callback()];
        let scripts = plan_scripts(&packages).unwrap();
        // Both transports, both installs, both drivers alone and together.
        for part in [
            "ssh-cm-filter-probe",
            "hyperv-cm-filter-revert-host",
            "ssh-cm-filter+ex-callback-leftovers",
            "hyperv-cm-filter-copy-host",
            "ssh-cm-filter-install-command-line",
            "post-mortem",
            "ssh-cm-filter-verifier-command-line",
            "ssh-cm-filter-verifier-stats",
            "hyperv-cm-filter+ex-callback-verifier-restore-host",
            "ssh-cm-filter-kdnet",
            "ssh-cm-filter-post-mortem",
            "wait-for-boot",
            "hyperv-download-host",
            "helpers",
        ] {
            assert!(scripts.keys().any(|k| k.contains(part)), "no {part}");
        }
        // One parse of them all, with the broken scripts (as the deploy stage's `suite_checks`
        // runs it): the scripts' check first, naming each that does not parse.
        let checks = script_checks(&py, &ws.root, &scripts);
        assert!(
            checks[0]
                .1
                .contains(&format!("the {} distinct scripts", scripts.len())),
            "{checks:#?}"
        );
        assert!(checks.iter().all(|(ok, _)| *ok), "{checks:#?}");
        assert_eq!(checks.len(), 1 + BROKEN.len());
    }

    #[test]
    fn the_checker_names_the_first_error() {
        let ws = Workspace::load().unwrap();
        let py = python(&ws);
        let mut scripts = BTreeMap::new();
        scripts.insert("good".to_owned(), ps::script("t", "Say 1\n"));
        scripts.insert(
            "bad".to_owned(),
            ps::script("t", "Say 1\nforeach ($d in @(@('a', 'b')) {\n"),
        );
        let r = check(&py, &ws.root, &scripts).unwrap();
        assert_eq!(r[1], ("good".to_owned(), None));
        let e = r[0].1.as_deref().unwrap();
        assert!(e.contains(':'), "{e}");
    }
}
