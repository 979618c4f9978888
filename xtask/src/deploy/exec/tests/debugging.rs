//! `--verifier`, `--kdnet` and `--fetch-dump` on the fake VM: volatile and persistent Verifier
//! with its counters and the restore (also after a failure), a VM without Verifier, settings
//! that cannot be restored, the bugcheck code and the dump (too large, or a VM that never comes
//! back), the kdnet key and WinDbg command.

use super::*;
use crate::deploy::verifier::{Flags, Mode, STANDARD};

fn with_verifier(flags: u32) -> Options {
    Options {
        verifier: Some(Flags(flags)),
        reboot_timeout: Duration::from_secs(5),
        ..Options::default()
    }
}

/// A fresh scratch folder for test `name`.
fn scratch(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("xtask-deploy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn ids(steps: &[StepReport]) -> Vec<&str> {
    steps.iter().map(|s| s.id.as_str()).collect()
}

#[test]
fn volatile_verifier_counts_each_driver_and_restores_the_settings() {
    let (r, t) = deploy(&with_verifier(0x20), FakeVm::new());
    let text = render(&r);
    assert!(r.ok(), "{text}");
    assert_eq!(
        statuses(&r.setup)[5..],
        [
            "verifier passed",
            "wait-verifier skipped",
            "trace-start passed"
        ]
    );
    for d in &r.drivers {
        let s = d.verifier.as_ref().unwrap_or_else(|| panic!("{text}"));
        assert_eq!(s.get("NonPagedPoolUsageInBytes"), Some(160));
        assert_eq!(d.steps[3].id, "verifier-stats", "{text}");
    }
    let v = r.verifier.as_ref().unwrap();
    assert_eq!((v.mode, v.restored), (Some(Mode::Volatile), Some(true)));
    assert_eq!(v.previous, "Verifier was off");
    assert_eq!(
        ids(&r.teardown),
        ["trace-stop", "verifier-restore", "remove-files"]
    );
    let vm = t.vm.lock().unwrap();
    assert!(vm.dbg.volatile.is_empty() && vm.dbg.saved.is_none());
    assert!(
        text.contains("Driver Verifier: flags 0x20, volatile; before: Verifier was off; restored"),
        "{text}"
    );
    assert!(
        text.contains("Driver Verifier: loads 1, unloads 0, non-paged allocations now 2"),
        "{text}"
    );
    let json = serde_json::to_value(to_json(&r)).unwrap();
    assert_eq!(json["verifier"]["mode"], "volatile");
    assert_eq!(
        json["drivers"][0]["verifier"]["counters"][5],
        serde_json::json!({"name": "NonPagedPoolUsageInBytes", "value": 160})
    );
}

#[test]
fn standard_flags_need_the_persistent_settings_and_a_restart() {
    let mut vm = FakeVm::new();
    vm.dbg.level = Some(0x8);
    vm.dbg.drivers = Some("ntfs.sys".to_owned());
    let (r, t) = deploy(&with_verifier(STANDARD), vm);
    let text = render(&r);
    assert!(r.ok(), "{text}");
    assert_eq!(
        statuses(&r.setup)[5..],
        [
            "verifier passed",
            "wait-verifier passed",
            "trace-start passed"
        ]
    );
    let v = r.verifier.as_ref().unwrap();
    assert_eq!(v.mode, Some(Mode::Persistent));
    assert_eq!(v.previous, "Verifier was on: flags 0x8, drivers [ntfs.sys]");
    let vm = t.vm.lock().unwrap();
    // The user's own settings are back.
    assert_eq!(
        (vm.dbg.level, vm.dbg.drivers.as_deref()),
        (Some(0x8), Some("ntfs.sys"))
    );
}

#[test]
fn a_vm_without_verifier_fails_cleanly_and_changes_nothing() {
    let mut vm = FakeVm::new();
    vm.dbg.verifier_missing = true;
    let (r, _) = deploy(&with_verifier(0x20), vm);
    let f = r.failure.as_ref().unwrap();
    assert_eq!(f.step, "verifier");
    assert!(
        f.message.contains("Driver Verifier is not on this VM"),
        "{}",
        f.message
    );
    assert_eq!(
        statuses(&r.teardown),
        [
            "trace-stop not run",
            "verifier-restore passed (cleanup)",
            "remove-files passed (cleanup)"
        ]
    );
    assert_eq!(r.verifier.as_ref().unwrap().mode, None);
}

#[test]
fn settings_that_cannot_be_restored_fail_the_deploy_naming_them() {
    let mut vm = FakeVm::new();
    vm.dbg.restore_fails = true;
    let (r, _) = deploy(&with_verifier(STANDARD), vm);
    assert!(!r.ok());
    let f = r.failure.as_ref().unwrap();
    assert_eq!(
        (f.scope.as_str(), f.step.as_str()),
        ("teardown", "verifier-restore")
    );
    assert!(f.message.contains("could not be restored"), "{}", f.message);
    assert_eq!(r.verifier.as_ref().unwrap().restored, Some(false));
    assert!(render(&r).contains("NOT RESTORED"));
}

#[test]
fn a_verifier_bugcheck_is_reported_with_its_code_and_the_dump_fetched() {
    let dir = scratch("fetch-dump");
    let mut vm = FakeVm::new();
    // preflight, leftovers, check-copy, trust, verifier, install, start; the probe is lost.
    vm.dies_after = Some(7);
    vm.silent_for = 3;
    vm.dbg.dumps.push((
        r"C:\Windows\Minidump\050126-01.dmp".to_owned(),
        1 << 20,
        true,
    ));
    let options = Options {
        fetch_dump: true,
        dump_dir: dir.as_path().join("testvm"),
        ..with_verifier(0x20)
    };
    let (r, t) = deploy(&options, vm);
    let text = render(&r);
    let c = r.crash.as_ref().unwrap_or_else(|| panic!("{text}"));
    let b = c.bugcheck.as_ref().unwrap();
    assert_eq!((b.code, b.parameters[0]), (0xC4, 0x62));
    assert!(
        r.drivers[0]
            .violation
            .as_deref()
            .is_some_and(|v| v.starts_with("0x000000C4 (0x62"))
    );
    assert!(r.drivers[1].violation.is_none());
    assert!(
        text.contains("Driver Verifier VIOLATION: 0x000000C4"),
        "{text}"
    );
    assert!(
        text.contains("DRIVER_VERIFIER_DETECTED_VIOLATION: a Driver Verifier violation"),
        "{text}"
    );
    let (remote, local, _) = c.dump.as_ref().unwrap();
    assert_eq!(remote, r"C:\Windows\Minidump\050126-01.dmp");
    assert!(
        local.is_file() && local.starts_with(dir.as_path().join("testvm")),
        "{text}"
    );
    assert!(!dir.as_path().join("testvm/050126-01.dmp.part").exists());
    assert_eq!(
        t.vm.lock()
            .unwrap()
            .dbg
            .downloaded
            .keys()
            .collect::<Vec<_>>(),
        [r"C:\Windows\Minidump\050126-01.dmp"]
    );
    // The plan's post-mortem step is the one that ran, once.
    let cm = ids(&r.drivers[0].steps);
    assert_eq!(
        cm.iter().filter(|i| **i == "post-mortem").count(),
        1,
        "{cm:?}"
    );
    // The VM came back: the settings are restored.
    assert_eq!(r.verifier.as_ref().unwrap().restored, Some(true), "{text}");
    let json = serde_json::to_value(to_json(&r)).unwrap();
    assert_eq!(json["crash"]["bugcheck"]["code"], "0x000000C4");
    assert_eq!(
        json["crash"]["bugcheck"]["verifier_violation"],
        "DRIVER_VERIFIER_DETECTED_VIOLATION"
    );
    // The other driver's post-mortem step says why it did not run.
    assert!(render(&r).contains("post-mortem"));
}

#[test]
fn a_memory_dump_over_the_limit_is_refused_and_nothing_copied() {
    let dir = scratch("dump-limit");
    let mut vm = FakeVm::new();
    vm.dies_after = Some(6);
    vm.silent_for = 3;
    let options = Options {
        fetch_dump: true,
        dump_limit: 1 << 20,
        dump_dir: dir.clone(),
        reboot_timeout: Duration::from_secs(5),
        ..Options::default()
    };
    let (r, t) = deploy(&options, vm);
    let c = r.crash.as_ref().unwrap();
    let e = c.dump_error.as_deref().unwrap();
    assert!(e.contains("more than --dump-limit 1048576"), "{e}");
    assert!(c.dump.is_none());
    assert!(t.vm.lock().unwrap().dbg.downloaded.is_empty());
    assert!(render(&r).contains("dump not copied: "));
    // Not a Verifier bugcheck without --verifier? The code is read all the same.
    assert_eq!(c.bugcheck.as_ref().unwrap().code, 0xC4);
}

#[test]
fn a_vm_that_never_comes_back_leaves_the_settings_unrestored_and_says_so() {
    let mut vm = FakeVm::new();
    vm.dies_after = Some(7);
    vm.silent_for = usize::MAX;
    let options = Options {
        fetch_dump: true,
        reboot_timeout: Duration::from_millis(200),
        ..with_verifier(0x20)
    };
    let (r, _) = deploy(&options, vm);
    assert!(r.crash.is_none());
    assert_eq!(
        statuses(&r.teardown),
        [
            "trace-stop not run",
            "verifier-restore not run",
            "remove-files not run"
        ]
    );
    assert_eq!(r.verifier.as_ref().unwrap().restored, None);
    assert!(render(&r).contains("not restored: the restore did not run"));
}

#[test]
fn kdnet_reports_the_key_and_the_windbg_command() {
    let options = Options {
        kdnet: Some(crate::deploy::kdnet::Kdnet::parse("192.168.1.10:50000").unwrap()),
        reboot_timeout: Duration::from_secs(5),
        ..Options::default()
    };
    let (r, t) = deploy(&options, FakeVm::new());
    let text = render(&r);
    assert!(r.ok(), "{text}");
    assert_eq!(
        statuses(&r.setup)[1..3],
        ["kdnet passed", "wait-kdnet passed"]
    );
    let k = r.kdnet.as_ref().unwrap();
    assert_eq!(
        k.windbg,
        "windbg -k net:port=50000,key=2steg4fzbj2sz.23418vzkd4ko3.1g34ou07z4pev.1sp3yo9yz874p"
    );
    assert!(text.contains(&k.windbg));
    assert_eq!(
        t.vm.lock().unwrap().dbg.debug,
        Some(("192.168.1.10".to_owned(), 50000))
    );
    // Secure Boot forbids it: a clear failure.
    let mut sb = FakeVm::new();
    sb.dbg.secure_boot = true;
    let (r, _) = deploy(&options, sb);
    let f = r.failure.unwrap();
    assert_eq!(f.step, "kdnet");
    assert!(f.message.contains("Secure Boot"), "{}", f.message);
}

#[test]
fn a_vm_that_never_comes_back_from_verifiers_restart_fails_the_wait() {
    let mut vm = FakeVm::new();
    // preflight, leftovers, check-copy, trust, verifier (restarts); then silence.
    vm.dies_after = Some(5);
    vm.silent_for = usize::MAX;
    let options = Options {
        reboot_timeout: Duration::from_millis(200),
        ..with_verifier(STANDARD)
    };
    let (r, _) = deploy(&options, vm);
    let f = r.failure.as_ref().unwrap();
    assert_eq!(f.step, "wait-verifier");
    assert!(
        f.message.contains("did not answer after restarting"),
        "{}",
        f.message
    );
    assert!(r.drivers.iter().all(|d| {
        d.steps
            .iter()
            .all(|s| matches!(s.status, Status::NotRun(_)))
    }));
    // The restore is attempted and fails: the settings are not claimed restored.
    assert_eq!(
        statuses(&r.teardown)[1],
        "verifier-restore failed (cleanup)"
    );
    assert_ne!(r.verifier.as_ref().unwrap().restored, Some(true));
}

#[test]
fn persistent_settings_that_did_not_take_fail_the_step() {
    let mut vm = FakeVm::new();
    vm.dbg.set_ignored = true;
    let (r, t) = deploy(&with_verifier(STANDARD), vm);
    let f = r.failure.as_ref().unwrap();
    assert_eq!(f.step, "verifier");
    assert!(f.message.contains("did not take"), "{}", f.message);
    // No restart was waited for, and nothing is left to restore.
    assert_eq!(statuses(&r.setup)[6], "wait-verifier not run");
    assert_eq!(
        statuses(&r.teardown)[1],
        "verifier-restore passed (cleanup)"
    );
    assert!(t.vm.lock().unwrap().dbg.saved.is_none());
}
