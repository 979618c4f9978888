//! The xtask binary's exit status and messages for bad input, run as a user runs it.

use std::process::{Command, Output};

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .expect("run xtask")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn help_succeeds_and_lists_the_commands() {
    let o = xtask(&["--help"]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    for c in ["build", "lint", "emulate", "deploy", "test", "bench"] {
        assert!(
            text.contains(&format!("    {c} ")),
            "{c} missing from\n{text}"
        );
    }
    let o = xtask(&["emulate", "--help"]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("--faults"));
}

#[test]
fn bad_arguments_fail_with_a_message() {
    let o = xtask(&["build", "--arch", "x86"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("xtask: error: unknown architecture `x86`"),
        "{}",
        stderr(&o)
    );
    let o = xtask(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("unknown command `frobnicate`"));
}

#[test]
fn unknown_driver_lists_the_drivers() {
    let o = xtask(&["emulate", "no-such-driver", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("unknown driver `no-such-driver`: the drivers are ")
            && e.contains("(test fixtures: faulty-"),
        "{e}"
    );
    assert!(
        o.stdout.is_empty(),
        "nothing on stdout when --json failed before running"
    );
}

#[test]
fn vm_target_mistakes_are_named_before_anything_is_built() {
    // A Hyper-V target needs a Windows host (its plan is still printable with --dry-run).
    if !cfg!(windows) {
        let o = xtask(&["deploy", "--target", "hyperv:Win11"]);
        assert_eq!(o.status.code(), Some(1));
        let e = stderr(&o);
        assert!(
            e.contains("hyperv:Win11 runs PowerShell Direct on the Windows host")
                && e.contains("--dry-run"),
            "{e}"
        );
        assert!(!e.contains("==> build"), "{e}");
    }
    let o = xtask(&[
        "deploy",
        "--target",
        "ssh://admin@testvm",
        "--snapshot",
        "clean",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("needs --libvirt DOMAIN"),
        "{}",
        stderr(&o)
    );
    let o = xtask(&[
        "deploy",
        "--target",
        "emu",
        "--target",
        "ssh://admin@testvm",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot be combined"), "{}", stderr(&o));
    let o = xtask(&[
        "deploy",
        "--target",
        "ssh://a@b",
        "--remote-dir",
        "relative",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("absolute Windows path"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn completions_are_written_for_each_shell() {
    let o = xtask(&["completions", "bash"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let script = String::from_utf8_lossy(&o.stdout);
    assert!(
        script.contains("complete -o bashdefault -F _cargo_xtask cargo")
            && script.contains("faulty-wfp"),
        "{script}"
    );
    let o = xtask(&["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("give bash, zsh or fish"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_pfx_without_a_password_variable_or_a_terminal_is_refused_before_anything_is_signed() {
    let pfx = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../driver-package/testdata/pfx/aes.pfx"
    );
    let image = std::env::temp_dir().join(format!("xtask-cli-pfx-{}.sys", std::process::id()));
    std::fs::write(&image, b"left as it is").unwrap();
    let run = |password: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
        cmd.args(["sign", "--pfx", pfx])
            .arg(&image)
            .env_remove("XTASK_PFX_PASSWORD")
            .stdin(std::process::Stdio::null());
        if let Some(p) = password {
            cmd.env("XTASK_PFX_PASSWORD", p);
        }
        cmd.output().expect("run xtask")
    };
    let o = run(None);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("no password for the PFX") && e.contains("XTASK_PFX_PASSWORD"),
        "{e}"
    );
    let e = stderr(&run(Some("wrong")));
    assert!(e.contains("wrong password"), "{e}");
    // The right password opens it; the file is then refused as no driver image, unchanged.
    let o = run(Some("Secret-1"));
    let e = stderr(&o);
    assert!(
        o.status.code() == Some(1)
            && e.contains("signing with your certificate")
            && e.contains("not a PE image"),
        "{e}"
    );
    assert_eq!(std::fs::read(&image).unwrap(), b"left as it is");
    std::fs::remove_file(&image).unwrap();
}
