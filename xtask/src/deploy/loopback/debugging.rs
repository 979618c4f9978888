//! `--verifier`, `--kdnet` and `--fetch-dump` over a real OpenSSH server: the whole plan with
//! Verifier's steps, the kernel debugging restart and the wait for it, and a dump copied back
//! with sftp (a path with a space; a missing file fails and leaves nothing).

use super::*;
use crate::deploy::kdnet::Kdnet;
use crate::deploy::verifier::Flags;

/// Records the answer to the script the runner polls with while it waits for a restart: a VM
/// that has just booted.
fn record_boot(sshd: &Sshd) {
    let script = plan::boot_script();
    let sum = driver_package::cert::hex(&Sha256::digest(script.as_bytes())).to_lowercase();
    let base = sshd.dir.join("answers").join(sum);
    std::fs::write(
        base.with_extension("out"),
        "#xtask:section boot\n2026-05-01T08:03:00.0000000Z\n#xtask:section uptime\n0\n",
    )
    .unwrap();
    std::fs::write(base.with_extension("code"), "0").unwrap();
}

#[test]
#[ignore = "runs a real OpenSSH server on 127.0.0.1: cargo xtask test runs it"]
fn loopback_verifier_and_kdnet_steps_run_over_ssh() {
    let sshd = Sshd::start();
    let packages = [
        package_folder(&sshd.dir, plan::tests::cm_filter()),
        package_folder(&sshd.dir, plan::tests::ex_callback()),
    ];
    let helpers = sshd.dir.join("helpers").join(plan::HELPERS_FOLDER);
    plan::write_helpers(&helpers).unwrap();
    let options = Options {
        remote_dir: r"C:\Test Drivers\deploy".into(),
        helpers_dir: helpers,
        verifier: Some(Flags(0x20)),
        kdnet: Some(Kdnet::parse("127.0.0.1:50000").unwrap()),
        fetch_dump: true,
        reboot_timeout: secs(60),
        ..Options::default()
    };
    let name = format!("ssh://{}@127.0.0.1:{}", sshd.user, sshd.port);
    let p = plan::build(&name, &Via::Ssh, &packages, &options).unwrap();
    record_answers(&sshd, &p, &packages);
    record_boot(&sshd);
    let client = sshd.client();
    let pace = Pace {
        poll: Duration::from_millis(100),
        attempt: secs(30),
    };
    let r = exec::execute(&p, &client, &|_| {}, pace);
    let text = report::render(&r);
    assert!(
        r.ok(),
        "{text}\nseen by the VM:\n{}",
        std::fs::read_to_string(sshd.dir.join("seen")).unwrap_or_default()
    );
    let ran: Vec<String> = r
        .setup
        .iter()
        .chain(r.drivers.iter().flat_map(|d| d.steps.iter()))
        .chain(r.teardown.iter())
        .filter(|s| s.status == Status::Passed)
        .map(|s| s.id.clone())
        .collect();
    for id in ["kdnet", "wait-kdnet", "verifier", "verifier-restore"] {
        assert!(ran.iter().any(|r| r == id), "{id} did not pass: {text}");
    }
    assert_eq!(
        ran.iter().filter(|r| *r == "verifier-stats").count(),
        2,
        "{text}"
    );
    assert!(r.drivers.iter().all(|d| d.verifier.is_some()), "{text}");
    assert!(
        r.kdnet
            .as_ref()
            .unwrap()
            .windbg
            .starts_with("windbg -k net:port=50000,key=")
    );
    assert_eq!(r.verifier.as_ref().unwrap().restored, Some(true));
    // The dump steps ran only if the VM had stopped answering: skipped.
    for d in &r.drivers {
        let pm = d.steps.iter().find(|s| s.id == "post-mortem").unwrap();
        assert!(matches!(pm.status, Status::Skipped(_)), "{text}");
    }
}

#[test]
#[ignore = "runs a real OpenSSH server on 127.0.0.1: cargo xtask test runs it"]
fn loopback_a_dump_is_copied_back_with_sftp() {
    let sshd = Sshd::start();
    let dumps = sshd.dir.join("vm/C/Windows/Mini dump");
    std::fs::create_dir_all(&dumps).unwrap();
    let bytes = vec![0x50u8; 300_000];
    std::fs::write(dumps.join("050126-01.dmp"), &bytes).unwrap();
    let client = sshd.client();
    let local = sshd.dir.join("here/testvm/050126-01.dmp");
    let out = client
        .download(r"C:\Windows\Mini dump\050126-01.dmp", &local, secs(30))
        .unwrap();
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(std::fs::read(&local).unwrap(), bytes);
    assert!(!sshd.dir.join("here/testvm/050126-01.dmp.part").exists());
    // A file that is not there: sftp's failure, and no file left behind.
    let missing = sshd.dir.join("here/testvm/missing.dmp");
    let out = client
        .download(r"C:\Windows\Minidump\missing.dmp", &missing, secs(30))
        .unwrap();
    assert_ne!(out.code, Some(0));
    assert!(!missing.exists());
    assert!(!sshd.dir.join("here/testvm/missing.dmp.part").exists());
}
