//! `cargo xtask test`, deploy stage: the VM plans of the real packages, their PowerShell syntax,
//! and the loopback tests (the ssh transport and whole plans against a real OpenSSH server on
//! 127.0.0.1), whose libtest output is read here.

use crate::base::host_tests;
use crate::base::layout::Arch;
use crate::base::workspace::Workspace;
use crate::deploy::{Install, plan, syntax};

/// One check of `cargo xtask test`'s deploy stage.
pub struct SuiteCheck {
    /// Passed.
    pub ok: bool,
    /// What was checked (and why it failed).
    pub what: String,
}

/// The OpenSSH programs the loopback tests need that are missing (sshd is looked for in
/// /usr/sbin too, where Debian puts it).
fn missing_openssh() -> Vec<&'static str> {
    ["sshd", "ssh", "sftp", "ssh-keygen"]
        .into_iter()
        .filter(|p| {
            crate::base::tools::find_on_path(p).is_none()
                && !std::path::Path::new("/usr/sbin").join(p).is_file()
        })
        .collect()
}

/// `cargo xtask test`, deploy stage, after [`plan_checks`] of the real packages: the loopback
/// tests (the ssh transport and whole plans against a real OpenSSH server on 127.0.0.1),
/// installing OpenSSH where it is missing and this machine lets us. Returns the checks, and why
/// the loopback tests were skipped if they were (only when OpenSSH cannot be installed). Its
/// tests give commands time limits of seconds, with room for a login on a busy machine:
/// `cargo xtask test` runs them beside its other stages.
pub fn loopback_suite(ws: &Workspace) -> (Vec<SuiteCheck>, Option<String>) {
    let mut checks = Vec::new();
    for (program, package) in [("sshd", "openssh-server"), ("ssh", "openssh-client")] {
        if missing_openssh().contains(&program)
            && let Err(e) = crate::base::tools::ensure(
                program,
                package,
                "the deploy tests run a real OpenSSH server on 127.0.0.1",
            )
        {
            return (checks, Some(e.to_string()));
        }
    }
    let missing = missing_openssh();
    if !missing.is_empty() {
        return (
            checks,
            Some(format!(
                "{} not found (Debian: apt-get install openssh-server openssh-client)",
                missing.join(", ")
            )),
        );
    }
    checks.extend(loopback_checks(ws));
    (checks, None)
}

/// The VM plans of the x64 debug packages of `drivers` (made already, under `ws`'s target) for
/// both transports and both install modes, and the PowerShell syntax of every script of them:
/// `deploy --dry-run`'s plan, checked (the `templates` stage runs it on the drivers `new` made).
pub fn plan_checks(ws: &Workspace, drivers: &[&crate::base::workspace::Driver]) -> Vec<SuiteCheck> {
    let mut checks = Vec::new();
    let mut packages = Vec::new();
    for d in drivers {
        let dir = ws
            .layout
            .package_dir(&d.name, Arch::X64, crate::base::layout::Profile::Debug);
        let what = format!(
            "deploy plans of {} (ssh and hyperv, sc and inf installs) from its package",
            d.name
        );
        if !dir.join(driver_package::package::MANIFEST).is_file() {
            println!(
                "  no package of {} to plan from (its packaging failure is counted above)",
                d.name
            );
            continue;
        }
        let result = plan::Package::read(&dir, &d.dir, Arch::X64).and_then(|p| {
            packages.push(p.clone());
            for install in [Install::Sc, Install::Inf] {
                let o = plan::Options {
                    install,
                    enable_testsigning: true,
                    ..plan::Options::default()
                };
                plan::build(
                    "ssh://admin@testvm",
                    &plan::Via::Ssh,
                    std::slice::from_ref(&p),
                    &o,
                )?;
                let vm = plan::Via::HyperV {
                    vm: "TestVM".into(),
                };
                plan::build("hyperv:TestVM", &vm, std::slice::from_ref(&p), &o)?;
            }
            Ok(())
        });
        match result {
            Ok(()) => {
                println!("  ✓ {what}");
                checks.push(SuiteCheck { ok: true, what });
            }
            Err(e) => checks.push(SuiteCheck {
                ok: false,
                what: format!("{what}: {e}"),
            }),
        }
    }
    if !packages.is_empty() {
        println!(
            "  PowerShell syntax of every script of every plan: python {}",
            syntax::CHECKER
        );
        match crate::emulator::venv::ensure(
            &ws.layout.emu_venv(),
            &ws.root.join(crate::emulator::venv::LOCK),
        ) {
            Ok(python) => {
                for (ok, what) in syntax::suite_checks(&python, &ws.root, &packages) {
                    if ok {
                        println!("  ✓ {what}");
                    }
                    checks.push(SuiteCheck { ok, what });
                }
            }
            Err(e) => checks.push(SuiteCheck {
                ok: false,
                what: format!("PowerShell syntax of the plans: the emulator venv: {e}"),
            }),
        }
    }
    checks
}

/// The loopback tests (`deploy/loopback.rs`, ignored in a plain `cargo test`), one check each.
fn loopback_checks(ws: &Workspace) -> Vec<SuiteCheck> {
    let mut checks = Vec::new();
    println!(
        "  the loopback tests: cargo test --profile host -p xtask --lib -- --ignored deploy::loopback::"
    );
    // Compiled as the host stage compiles the tests (clippy-driver where installed), so that
    // build is reused, not made again (`base::host_tests`).
    let driver = host_tests::clippy_driver(&ws.root);
    let out = crate::base::process::run(
        &mut host_tests::cargo_test(
            &ws.root,
            &["xtask"],
            driver.as_deref(),
            &["--lib", "--", "--ignored", "deploy::loopback::"],
        ),
        crate::base::process::Options::default(),
    );
    let Ok(out) = out else {
        return vec![SuiteCheck {
            ok: false,
            what: "the loopback tests: cargo could not be run".into(),
        }];
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut seen = 0;
    for line in stdout.lines() {
        let Some(rest) = line.strip_prefix("test deploy::loopback::") else {
            continue;
        };
        let Some((name, result)) = rest.split_once(" ... ") else {
            continue;
        };
        seen += 1;
        let ok = result.trim() == "ok";
        if ok {
            println!("  ✓ loopback {name}");
        }
        checks.push(SuiteCheck {
            ok,
            what: format!("deploy loopback test {name}"),
        });
    }
    if seen == 0 || !out.status.is_some_and(|s| s.success()) {
        let tail = crate::base::process::tail(
            &format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)),
            40,
        );
        println!("{tail}");
        if seen == 0 {
            checks.push(SuiteCheck {
                ok: false,
                what: "the loopback tests did not run".into(),
            });
        }
    }
    checks
}
