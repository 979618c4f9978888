//! The runner's tests: whole plans on the fake VM, failures, bugchecks, hangs, reboots.

use super::*;
use crate::deploy::fake::{FakeTransport, FakeVm};
use crate::deploy::plan::tests::{cm_filter, ex_callback};
use crate::deploy::plan::{Options, Package, Via, build};
use crate::deploy::report::{render, to_json};

fn transport(packages: &[Package], vm: FakeVm) -> FakeTransport {
    let mut vm = vm;
    for p in packages {
        vm.files.insert(p.driver.clone(), p.files.clone());
    }
    FakeTransport {
        vm: std::sync::Mutex::new(vm),
        known: packages
            .iter()
            .map(|p| (p.service.clone(), p.driver.clone()))
            .collect(),
    }
}

fn fast() -> Pace {
    Pace {
        poll: Duration::from_millis(1),
        attempt: Duration::from_millis(50),
    }
}

fn deploy(options: &Options, vm: FakeVm) -> (TargetReport, FakeTransport) {
    let packages = [cm_filter(), ex_callback()];
    let plan = build("ssh://admin@testvm", &Via::Ssh, &packages, options).unwrap();
    let t = transport(&packages, vm);
    let lines = std::sync::Mutex::new(Vec::new());
    let progress = |l: &str| lines.lock().unwrap().push(l.to_owned());
    let r = execute(&plan, &t, &progress, fast());
    assert!(
        lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("cm-filter: start passed"))
            || !r.ok()
    );
    (r, t)
}

fn statuses(steps: &[StepReport]) -> Vec<String> {
    steps
        .iter()
        .map(|s| {
            format!(
                "{} {}{}",
                s.id,
                s.status.word(),
                if s.cleanup { " (cleanup)" } else { "" }
            )
        })
        .collect()
}

#[test]
fn a_good_driver_is_loaded_exercised_and_unloaded() {
    let (r, t) = deploy(&Options::default(), FakeVm::new());
    let text = render(&r);
    assert!(r.ok(), "{text}");
    let cm = &r.drivers[0];
    assert_eq!(cm.unload, Unload::Clean);
    assert_eq!(cm.probes.len(), 6, "{text}");
    assert!(cm.probes.iter().all(|p| p.ok));
    let blocked = cm
        .probes
        .iter()
        .find(|p| p.name.starts_with("writing Blocked"))
        .unwrap();
    assert_eq!(
        (blocked.expected.as_str(), blocked.observed.as_str()),
        ("denied", "denied")
    );
    assert_eq!(
        cm.events.iter().map(|e| e.id).collect::<Vec<_>>(),
        [7045, 7036]
    );
    assert_eq!(r.drivers[1].unload, Unload::Clean);
    assert!(
        text.starts_with("deploy to ssh://admin@testvm: ok"),
        "{text}"
    );
    assert!(
        text.contains(
            "✓ writing Blocked is refused (access denied): expected denied, observed denied"
        ),
        "{text}"
    );
    assert!(text.contains("note: added to Root"), "{text}");
    let vm = t.vm.lock().unwrap();
    assert!(vm.services.is_empty(), "every service removed");
    assert!(!vm.loaded.contains("cm-filter.sys"));
    let j = serde_json::to_value(to_json(&r)).unwrap();
    assert_eq!(j["ok"], true);
    assert_eq!(j["drivers"][0]["unload"]["verdict"], "clean");
    assert_eq!(j["drivers"][0]["steps"][1]["id"], "start");
    assert!(j["drivers"][0]["steps"][1]["duration_s"].is_number());
}

#[test]
fn each_driver_line_is_shown_beside_the_step_that_logged_it() {
    let (r, t) = deploy(&Options::default(), FakeVm::new());
    let text = render(&r);
    assert!(r.ok(), "{text}");
    let lines = |driver: usize, id: &str| -> Vec<String> {
        let step = r.drivers[driver].steps.iter().find(|s| s.id == id).unwrap();
        step.log.iter().map(|l| l.message.clone()).collect()
    };
    assert_eq!(lines(0, "start"), ["[cm-filter] Info: DriverEntry"]);
    assert_eq!(lines(0, "stop"), ["[cm-filter] Info: unloaded"]);
    assert!(lines(0, "probe").is_empty());
    assert_eq!(lines(1, "start"), ["[ex-callback] Info: DriverEntry"]);
    assert_eq!(lines(1, "stop"), ["[ex-callback] Info: unloaded"]);
    assert!(
        text.contains("✓ start") && text.contains("log: [ex-callback] Info: DriverEntry"),
        "{text}"
    );
    let stop = r.teardown.iter().find(|s| s.id == "trace-stop").unwrap();
    assert!(stop.detail.starts_with("4 line(s)"), "{}", stop.detail);
    assert!(!t.vm.lock().unwrap().tracing, "the session was stopped");
    let j = serde_json::to_value(to_json(&r)).unwrap();
    assert_eq!(
        j["drivers"][1]["steps"][1]["log"][0]["provider"],
        "WindowsCallbackDrivers.ex-callback"
    );
}

#[test]
fn lines_without_a_time_stay_with_the_trace_step_and_a_stuck_session_is_said() {
    use crate::deploy::trace::{Event, place};
    let (mut r, _) = deploy(&Options::default(), FakeVm::new());
    let e = |time| Event {
        time,
        system_time: None,
        provider: Some("p".into()),
        level: Some(4),
        message: Some("m".into()),
    };
    // Before every driver step's clock, or without a time: beside trace-stop.
    place(&mut r, vec![e(None), e(Some(1))]);
    let stop = r.teardown.iter().find(|s| s.id == "trace-stop").unwrap();
    assert_eq!(stop.log.len(), 2);
    // A session logman could not stop (gone after a restart, or stuck) is said, with the fix; the
    // lines still count.
    let mut runner_out = Output {
        code: Some(0),
        stdout: "#xtask:section logman-stop exit=87\n#xtask:section trace\n[]".into(),
        stderr: String::new(),
        duration: Duration::ZERO,
    };
    let plan = build(
        "ssh://admin@testvm",
        &Via::Ssh,
        &[cm_filter()],
        &Options::default(),
    )
    .unwrap();
    let t = transport(&[cm_filter()], FakeVm::new());
    let progress = |_: &str| {};
    let mut runner = Runner {
        plan: &plan,
        t: &t,
        progress: &progress,
        pace: fast(),
        facts: Facts::default(),
    };
    let j = runner.judge(&Check::Trace, &runner_out);
    assert!(
        j.ok && j.detail.contains("logman stop xtask-deploy -ets"),
        "{}",
        j.detail
    );
    runner_out.stdout = "#xtask:section logman-stop exit=0\n#xtask:section trace\nnot json".into();
    let j = runner.judge(&Check::Trace, &runner_out);
    assert!(
        !j.ok && j.detail.contains("not JSON events"),
        "{}",
        j.detail
    );
}

#[test]
fn what_an_earlier_deploy_of_one_package_left_is_removed() {
    // The leftovers list of a one-package plan must still be a list of pairs: an earlier
    // deploy left CmFilter installed; unless the step removes it, `sc create` fails (1073).
    let mut vm = FakeVm::new();
    vm.services
        .insert("CmFilter".into(), ("cm-filter.sys".into(), "STOPPED"));
    let packages = [cm_filter()];
    let plan = build(
        "ssh://admin@testvm",
        &Via::Ssh,
        &packages,
        &Options::default(),
    )
    .unwrap();
    let t = transport(&packages, vm);
    let r = execute(&plan, &t, &|_| {}, fast());
    assert!(r.ok(), "{}", render(&r));
    let leftovers = r.setup.iter().find(|s| s.id == "leftovers").unwrap();
    assert!(
        leftovers
            .notes
            .iter()
            .any(|n| n.starts_with("removing the service CmFilter")),
        "{:?}",
        leftovers.notes
    );
}

#[test]
fn a_command_check_that_exits_leaves_the_other_checks_running() {
    // `exit 3` in a command check is that command's exit code, not the end of the probe.
    let mut p = ex_callback();
    p.probe = crate::deploy::probe::parse_probe(
        "[[while-loaded]]\nname = \"exits 3\"\ncommand = \"Write-Output 'x'\\nexit 3\"\nexpect-exit = 3\n\
         [[while-loaded]]\nname = \"exits 0\"\ncommand = \"exit\"\n\
         [[after-unload]]\nname = \"exits 4\"\ncommand = \"exit 4\"\nexpect-exit = 4\n",
    )
    .unwrap();
    let packages = [p];
    let plan = build(
        "ssh://admin@testvm",
        &Via::Ssh,
        &packages,
        &Options::default(),
    )
    .unwrap();
    let t = transport(&packages, FakeVm::new());
    let r = execute(&plan, &t, &|_| {}, fast());
    assert!(r.ok(), "{}", render(&r));
    let seen: Vec<(&str, bool)> = r.drivers[0]
        .probes
        .iter()
        .map(|v| (v.name.as_str(), v.ok))
        .collect();
    assert_eq!(
        seen,
        [("exits 3", true), ("exits 0", true), ("exits 4", true)]
    );
}

#[test]
fn a_failing_start_stops_the_plan_and_removes_what_applies() {
    let mut vm = FakeVm::new();
    vm.start_error = Some(577);
    let (r, t) = deploy(&Options::default(), vm);
    assert!(!r.ok());
    let f = r.failure.as_ref().unwrap();
    assert_eq!((f.scope.as_str(), f.step.as_str()), ("cm-filter", "start"));
    assert!(
        f.message.contains("exit code 577") && f.message.contains("test signing"),
        "{}",
        f.message
    );
    assert!(f.output.contains("StartService FAILED 577"), "{}", f.output);
    assert_eq!(
        statuses(&r.drivers[0].steps),
        [
            "install passed",
            "start failed",
            "probe not run",
            "stop passed (cleanup)",
            "unloaded not run",
            "remove passed (cleanup)",
            "events passed (cleanup)"
        ]
    );
    assert_eq!(r.drivers[0].unload, Unload::NotReached);
    assert!(
        r.drivers[1]
            .steps
            .iter()
            .all(|s| matches!(s.status, Status::NotRun(_)))
    );
    assert_eq!(
        statuses(&r.teardown),
        [
            "trace-stop passed (cleanup)",
            "remove-files passed (cleanup)"
        ]
    );
    assert!(t.vm.lock().unwrap().services.is_empty());
    assert!(render(&r).contains("failed step: cm-filter / start: sc start failed: exit code 577"));
}

#[test]
fn an_unload_that_leaves_the_filter_is_unclean() {
    let mut vm = FakeVm::new();
    vm.filter_stays = true;
    let (r, _) = deploy(&Options::default(), vm);
    let cm = &r.drivers[0];
    assert!(
        matches!(&cm.unload, Unload::Unclean(w) if w.contains("Blocked can be written: expected allowed, observed denied")),
        "{:?}",
        cm.unload
    );
    assert_eq!(r.failure.as_ref().unwrap().step, "unloaded");
    assert!(statuses(&cm.steps).contains(&"remove passed (cleanup)".to_owned()));
}

#[test]
fn an_image_still_loaded_after_stop_is_not_clean() {
    let mut vm = FakeVm::new();
    vm.image_stays = true;
    let (r, _) = deploy(&Options::default(), vm);
    let f = r.failure.unwrap();
    assert_eq!(f.step, "unloaded");
    assert!(
        f.message
            .contains("cm-filter.sys is still in the loaded kernel modules"),
        "{}",
        f.message
    );
}

#[test]
fn a_vm_that_stops_answering_after_start_is_a_probable_bugcheck() {
    let mut vm = FakeVm::new();
    // preflight, leftovers, check-copy, trust, trace-start, install, start answer; the probe
    // does not.
    vm.dies_after = Some(7);
    vm.silent_for = 3;
    let options = Options {
        reboot_timeout: Duration::from_secs(5),
        ..Options::default()
    };
    let (r, _) = deploy(&options, vm);
    let b = r.bugcheck.as_deref().unwrap();
    assert!(
        b.contains("during `probe` of cm-filter") && b.contains("probable bugcheck"),
        "{b}"
    );
    assert!(b.contains(r"C:\Windows\MEMORY.DMP"), "{b}");
    assert!(b.contains("0x00000050"), "{b}");
    let ids = statuses(&r.drivers[0].steps);
    assert_eq!(
        ids,
        [
            "install passed",
            "start passed",
            "probe failed",
            "post-mortem passed (cleanup)",
            "stop passed (cleanup)",
            "unloaded not run",
            "remove passed (cleanup)",
            "events passed (cleanup)"
        ]
    );
    assert!(matches!(r.drivers[0].unload, Unload::Unknown(_)));
    assert!(render(&r).contains("PROBABLE BUGCHECK"));
}

#[test]
fn a_vm_that_never_comes_back_skips_the_cleanup_on_it() {
    let mut vm = FakeVm::new();
    vm.dies_after = Some(6);
    vm.silent_for = usize::MAX;
    let options = Options {
        reboot_timeout: Duration::from_millis(200),
        ..Options::default()
    };
    let (r, _) = deploy(&options, vm);
    assert!(r.bugcheck.is_some());
    let cm = statuses(&r.drivers[0].steps);
    assert_eq!(cm[3], "stop not run");
    assert!(
        matches!(&r.drivers[0].steps[3].status, Status::NotRun(w) if w == "the VM is not answering")
    );
    assert_eq!(
        statuses(&r.teardown),
        ["trace-stop not run", "remove-files not run"]
    );
}

#[test]
fn test_signing_off_fails_the_preflight_unless_asked_to_enable_it() {
    let mut vm = FakeVm::new();
    vm.testsigning = false;
    let (r, _) = deploy(&Options::default(), vm.clone());
    let f = r.failure.unwrap();
    assert_eq!(f.step, "preflight");
    assert!(
        f.message
            .contains("test signing is off: deploy with --enable-testsigning"),
        "{}",
        f.message
    );
    assert_eq!(
        statuses(&r.teardown),
        ["trace-stop not run", "remove-files not run"]
    );

    let (r, t) = deploy(
        &Options {
            enable_testsigning: true,
            ..Options::default()
        },
        vm,
    );
    assert!(r.ok(), "{}", render(&r));
    assert_eq!(
        statuses(&r.setup)[..4],
        [
            "preflight passed",
            "enable-testsigning passed",
            "wait-reboot passed",
            "preflight-again passed"
        ]
    );
    assert!(t.vm.lock().unwrap().testsigning);
    // With test signing on already, the three steps are skipped.
    let (r, _) = deploy(
        &Options {
            enable_testsigning: true,
            ..Options::default()
        },
        FakeVm::new(),
    );
    assert_eq!(statuses(&r.setup)[1], "enable-testsigning skipped");
}

#[test]
fn hidden_module_addresses_fail_the_start_with_the_cause() {
    let mut vm = FakeVm::new();
    vm.hides_addresses = true;
    let (r, _) = deploy(&Options::default(), vm);
    let f = r.failure.unwrap();
    assert_eq!((f.scope.as_str(), f.step.as_str()), ("cm-filter", "start"));
    assert!(
        f.message.contains("hid the loaded modules' addresses")
            && f.message.contains("SeDebugPrivilege"),
        "{}",
        f.message
    );
}

#[test]
fn a_stop_that_hangs_in_the_same_boot_is_a_hang_not_a_bugcheck() {
    let mut vm = FakeVm::new();
    vm.stop_hangs = true;
    let start = std::time::Instant::now();
    let (r, _) = deploy(&Options::default(), vm);
    assert!(r.bugcheck.is_none(), "{}", render(&r));
    let f = r.failure.as_ref().unwrap();
    assert_eq!(f.step, "stop");
    assert!(
        f.message.contains("a hang, not a bugcheck")
            && f.message.contains("DriverUnload does not return"),
        "{}",
        f.message
    );
    assert!(matches!(r.drivers[0].unload, Unload::NotUnloaded(_)));
    // Not waited on as a crash (the reboot timeout is 600 s).
    assert!(start.elapsed() < Duration::from_secs(30));
    assert!(statuses(&r.drivers[0].steps).contains(&"remove passed (cleanup)".to_owned()));
}

#[test]
fn bitlocker_is_suspended_for_the_test_signing_restart() {
    let mut vm = FakeVm::new();
    vm.testsigning = false;
    vm.bitlocker = "1";
    let (r, t) = deploy(
        &Options {
            enable_testsigning: true,
            ..Options::default()
        },
        vm,
    );
    assert!(r.ok(), "{}", render(&r));
    assert!(
        r.setup[0]
            .detail
            .contains("BitLocker protects the system volume"),
        "{}",
        r.setup[0].detail
    );
    assert!(
        r.setup[1]
            .notes
            .iter()
            .any(|n| n.contains("BitLocker suspended")),
        "{:?}",
        r.setup[1].notes
    );
    assert_eq!(t.vm.lock().unwrap().bitlocker, "0");
}

#[test]
fn keep_leaves_the_service_and_snapshots_revert_first() {
    let (r, t) = deploy(
        &Options {
            keep: true,
            snapshot: Some("clean".into()),
            libvirt: Some("win11".into()),
            revert_after_failure: true,
            ..Options::default()
        },
        FakeVm::new(),
    );
    assert!(r.ok(), "{}", render(&r));
    assert_eq!(statuses(&r.setup)[..2], ["revert passed", "wait passed"]);
    assert!(matches!(&r.drivers[0].steps[5].status, Status::Skipped(w) if w.contains("--keep")));
    assert_eq!(
        statuses(&r.teardown),
        [
            "trace-stop passed",
            "remove-files skipped",
            "revert-after-failure skipped"
        ]
    );
    let vm = t.vm.lock().unwrap();
    assert_eq!(vm.services.len(), 2, "kept");
    assert_eq!(
        vm.log[0],
        "host: virsh -c qemu:///system snapshot-revert win11 clean --running"
    );
}

mod debugging;
