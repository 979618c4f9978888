//! The transports' tests: command lines, quoting, failures and their fixes, time limits.

use std::time::Instant;

use super::*;

fn target() -> Ssh {
    Ssh::new(Some("admin".into()), "testvm".into(), Some(2222))
}

#[test]
fn ssh_keeps_host_key_checking_on_and_never_prompts() {
    let argv = target().ssh_argv("whoami");
    assert_eq!(
        shell_words(&argv),
        "ssh -T -o BatchMode=yes -o StrictHostKeyChecking=yes -o ConnectTimeout=15 \
         -o ServerAliveInterval=5 -o ServerAliveCountMax=3 -p 2222 -- admin@testvm whoami"
    );
    let argv = target().sftp_argv();
    assert_eq!(
        shell_words(&argv),
        "sftp -b - -o BatchMode=yes -o StrictHostKeyChecking=yes -o ConnectTimeout=15 \
         -o ServerAliveInterval=5 -o ServerAliveCountMax=3 -P 2222 -- admin@testvm"
    );
    let v6 = Ssh::new(None, "fe80::1".into(), None);
    assert_eq!(v6.sftp_argv().last().unwrap(), "[fe80::1]");
    assert_eq!(v6.ssh_argv("x")[v6.ssh_argv("x").len() - 2], "fe80::1");
}

#[test]
fn sftp_paths_and_batches_quote_spaces() {
    let t = target();
    assert_eq!(
        t.sftp_path(r"C:\Test Drivers\cm-filter"),
        "/C:/Test Drivers/cm-filter"
    );
    let batch = t.sftp_batch(&[Upload {
        local: "/home/me/my \"drivers\"/[x]/cm-filter".into(),
        remote: r"C:\Test Drivers\cm-filter".into(),
    }]);
    assert_eq!(
        batch,
        "put -r \"/home/me/my \\\"drivers\\\"/\\[x\\]/cm-filter\" \"/C:/Test Drivers/cm-filter\"\n"
    );
    let mut mapped = t;
    mapped.sftp_root = Some("/tmp/vm/".into());
    assert_eq!(mapped.sftp_path(r"C:\A\b"), "/tmp/vm/C/A/b");
}

#[test]
fn the_printed_guest_command_abbreviates_the_payload() {
    let shown = target().show_guest("Say 1", false);
    assert!(
        shown.ends_with(
            "admin@testvm 'powershell -NoProfile -NonInteractive -EncodedCommand <16 characters: the script above, UTF-16LE, base64>'"
        ),
        "{shown}"
    );
    let full = target().show_guest("Say 1", true);
    assert!(full.ends_with(&format!("-EncodedCommand {}'", ps::encode("Say 1"))));
}

#[test]
fn shell_words_quote_what_a_shell_would_read() {
    let w = |a: &[&str]| shell_words(&a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
    assert_eq!(w(&["a", "b c", "it's", ""]), "a 'b c' 'it'\\''s' ''");
}

#[test]
fn ssh_failures_are_classified_with_their_fix() {
    let t = target();
    let lost = |stderr: &str| {
        t.classify(Output {
            code: Some(255),
            stderr: stderr.into(),
            ..Output::default()
        })
    };
    let e = lost("ssh: connect to host testvm port 2222: Connection refused\r\n");
    assert_eq!(e.kind, Lost::Refused);
    assert!(e.vm_gone());
    let e = lost(
        "@@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n\
         Host key verification failed.\n",
    );
    assert_eq!(e.kind, Lost::HostKeyChanged);
    assert!(
        e.message.contains("ssh-keygen -R '[testvm]:2222'"),
        "{}",
        e.message
    );
    assert!(!e.vm_gone());
    let e = lost(
        "No ED25519 host key is known for [testvm]:2222 and you have requested strict checking.\nHost key verification failed.\n",
    );
    assert_eq!(e.kind, Lost::HostKeyUnknown);
    let e = lost("admin@testvm: Permission denied (publickey,keyboard-interactive).\n");
    assert_eq!(e.kind, Lost::Auth);
    assert!(e.message.contains("administrators_authorized_keys"));
    let e = lost("Timeout, server testvm not responding.\n");
    assert_eq!(e.kind, Lost::Unreachable);
    assert!(e.vm_gone());
}

#[test]
fn local_commands_time_out_and_keep_their_streams() {
    let sh = |s: &str| vec!["sh".to_owned(), "-c".to_owned(), s.to_owned()];
    let out = run_local(
        &sh("echo out; echo err >&2; exit 4"),
        None,
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (Some(4), "out\n", "err\n")
    );
    let out = run_local(&sh("cat"), Some(b"in"), Duration::from_secs(10)).unwrap();
    assert_eq!(out.stdout, "in");
    let start = Instant::now();
    let e = run_local(
        &sh("echo started; sleep 30"),
        None,
        Duration::from_millis(300),
    )
    .unwrap_err();
    assert_eq!(e.kind, Lost::Timeout);
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(e.partial.stdout, "started\n");
    let e = run_local(
        &["/nonexistent/program".to_owned()],
        None,
        Duration::from_secs(1),
    )
    .unwrap_err();
    assert_eq!(e.kind, Lost::Spawn);
}

#[test]
fn hyperv_wrappers_use_powershell_direct() {
    let h = HyperV {
        vm: "Win 11 Test".into(),
        credential: r"C:\Users\me\.config\windows-callback-drivers\hyperv-Win 11 Test.xml".into(),
    };
    let w = h.guest_wrapper("Say 1");
    assert!(w.contains("New-PSSession -VMName 'Win 11 Test' -Credential $cred"));
    assert!(w.contains(&format!("-ArgumentList '{}'", ps::encode("Say 1"))));
    assert!(w.contains("Start-Process -FilePath powershell.exe"));
    let u = h.upload_wrapper(&[Upload {
        local: r"C:\src\target\packages\x64\debug\cm-filter".into(),
        remote: r"C:\ProgramData\windows-callback-drivers\deploy\cm-filter".into(),
    }]);
    assert!(u.contains("Copy-Item -ToSession $s -LiteralPath 'C:\\src\\target\\packages\\x64\\debug\\cm-filter' -Destination 'C:\\ProgramData\\windows-callback-drivers\\deploy\\cm-filter' -Recurse -Force"));
    let argv = HyperV::host_argv(&w);
    assert_eq!(argv[0], "powershell.exe");
    assert_eq!(ps::decode(&argv[4]).as_deref(), Some(w.as_str()));
    if !cfg!(windows) {
        let e = h.guest("Say 1", Duration::from_secs(1)).unwrap_err();
        assert_eq!(e.kind, Lost::Unsupported);
        assert!(e.message.contains("--dry-run"), "{}", e.message);
    }
}

#[test]
fn connection_reuse_comes_after_the_users_options() {
    let mut t = target();
    t.options = vec!["ControlMaster=no".into()];
    t.control_dir = Some("/tmp/xtask-ssh-1-0".into());
    let line = shell_words(&t.ssh_argv("whoami"));
    let user = line.find("ControlMaster=no").unwrap();
    let ours = line.find("ControlMaster=auto").unwrap();
    // ssh takes an option's first value: the user's choice wins.
    assert!(user < ours, "{line}");
    assert!(line.contains("-o ControlPath=/tmp/xtask-ssh-1-0/%C -o ControlPersist=60"));
    assert!(shell_words(&t.sftp_argv()).contains("ControlPath=/tmp/xtask-ssh-1-0/%C"));
    assert!(!shell_words(&target().ssh_argv("whoami")).contains("Control"));
}
