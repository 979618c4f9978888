//! The guest scripts of the plan's steps: each a call of its `.ps1` file (`deploy/script.rs`)
//! with its parameters, after the prologue (and, for a driver's steps, the helpers).

use std::time::Duration;

use super::{
    Check, Cleanup, DriverSteps, HELPERS_FILE, HELPERS_FOLDER, Install, Options, Package, Run,
    Step, When,
};
use crate::deploy::probe;
use crate::deploy::ps::{self, quote};
use crate::deploy::script::{self, Arg, Call};
use driver_package::inf;

/// The preflight: the boot time, then the checks.
pub(super) fn preflight_body(dir: &str) -> String {
    Call::new(&script::BOOT).render()
        + &Call::new(&script::PREFLIGHT)
            .arg("Dir", Arg::str(dir))
            .render()
}

/// Test signing on, then a restart.
pub(super) fn enable_testsigning_body() -> String {
    Call::new(&script::ENABLE_TESTSIGNING).render()
}

/// The script [`Run::WaitForGuest`] polls with.
pub fn boot_script() -> String {
    ps::script("is the VM up?", &Call::new(&script::BOOT).render())
}

/// The leftovers step (`leftovers.ps1`).
pub(super) fn leftovers_body(dir: &str, packages: &[Package]) -> String {
    let services: Vec<&str> = packages.iter().map(|p| p.service.as_str()).collect();
    let drivers: Vec<&str> = packages.iter().map(|p| p.driver.as_str()).collect();
    let images: Vec<String> = packages.iter().map(Package::image).collect();
    Call::new(&script::LEFTOVERS)
        .arg("Dir", Arg::str(dir))
        .arg("Images", Arg::list(&images))
        .arg("Services", Arg::list(&services))
        .arg("Drivers", Arg::list(&drivers))
        .arg("HelpersFolder", Arg::str(HELPERS_FOLDER))
        .render()
}

/// The copied folders: each package's and the helpers'.
fn folders(packages: &[Package]) -> Vec<&str> {
    packages
        .iter()
        .map(|p| p.driver.as_str())
        .chain([HELPERS_FOLDER])
        .collect()
}

/// The copy check (`check-copy.ps1`).
pub(super) fn hashes_body(dir: &str, packages: &[Package]) -> String {
    Call::new(&script::CHECK_COPY)
        .arg("Dir", Arg::str(dir))
        .arg("Folders", Arg::list(&folders(packages)))
        .render()
}

/// The trust step (`trust.ps1`).
pub(super) fn trust_body(cer: &str, thumbprint: &str) -> String {
    Call::new(&script::TRUST)
        .arg("Cer", Arg::str(cer))
        .arg("Thumbprint", Arg::str(thumbprint))
        .render()
}

/// The copied folders removed (`remove-files.ps1`).
pub(super) fn remove_files_body(dir: &str, packages: &[Package]) -> String {
    Call::new(&script::REMOVE_FILES)
        .arg("Dir", Arg::str(dir))
        .arg("Folders", Arg::list(&folders(packages)))
        .render()
}

/// The host script that reverts a Hyper-V VM to checkpoint `snapshot` (`revert-hyperv.ps1`).
pub(super) fn revert_hyperv(vm: &str, snapshot: &str) -> String {
    Call::new(&script::REVERT_HYPERV)
        .arg("VM", Arg::str(vm))
        .arg("Snapshot", Arg::str(snapshot))
        .render()
}

/// The line that loads the helpers ([`super::HELPERS`]) in a driver step: the file's text as a
/// script block, dot-sourced (execution policies apply to script files, not to script blocks).
fn load_helpers(dir: &str) -> String {
    format!(
        ". ([scriptblock]::Create([IO.File]::ReadAllText((Join-Path {} {}))))\n",
        quote(dir),
        quote(&format!("{HELPERS_FOLDER}\\{HELPERS_FILE}"))
    )
}

/// The checks of a probe, as `Invoke-XtaskChecks` (xtask-helpers.ps1) takes them.
fn checks(checks: &[probe::Check]) -> Arg {
    Arg::Tables(checks.iter().map(probe::args).collect())
}

#[allow(clippy::too_many_lines)] // one driver's steps, in the order they run
pub(super) fn driver_steps(p: &Package, options: &Options) -> DriverSteps {
    let dir = options.remote_dir.as_str();
    let t = options.timeout;
    let pkg = format!("{dir}\\{}", p.driver);
    let helpers = load_helpers(dir);
    let service = || Arg::str(&p.service);
    let install = match options.install {
        Install::Sc => {
            let values = p
                .service_values
                .iter()
                .map(|v| {
                    let key = if v.subkey.is_empty() {
                        format!("HKLM:\\SYSTEM\\CurrentControlSet\\Services\\{}", p.service)
                    } else {
                        format!(
                            "HKLM:\\SYSTEM\\CurrentControlSet\\Services\\{}\\{}",
                            p.service, v.subkey
                        )
                    };
                    vec![
                        ("Key", Arg::Str(key)),
                        ("Name", Arg::str(&v.name)),
                        ("Kind", Arg::str(v.kind)),
                        ("Data", Arg::str(&v.data)),
                    ]
                })
                .collect();
            (
                format!(
                    "install: sc.exe create {} type= kernel{}",
                    p.service,
                    if p.service_values.is_empty() {
                        ""
                    } else {
                        ", and the INF's service registry values"
                    }
                ),
                Call::new(&script::INSTALL_SC)
                    .arg("Service", service())
                    .arg("BinPath", Arg::Str(format!("{pkg}\\{}", p.image())))
                    .arg("DisplayName", Arg::str(&p.display_name))
                    .arg("Values", Arg::Tables(values))
                    .render(),
            )
        }
        Install::Inf => (
            format!("install: pnputil /add-driver {}.inf /install", p.driver),
            Call::new(&script::INSTALL_INF)
                .arg("Service", service())
                .arg("Inf", Arg::Str(format!("{pkg}\\{}.inf", p.driver)))
                .arg(
                    "Section",
                    Arg::Str(format!(
                        "DefaultInstall.NT{}",
                        inf::arch_decoration(options.arch)
                    )),
                )
                .render(),
        ),
    };
    let remove_body = Call::new(&script::REMOVE)
        .arg("Service", service())
        .arg(
            "Inf",
            Arg::Str(match options.install {
                Install::Sc => String::new(),
                Install::Inf => format!("{}.inf", p.driver),
            }),
        )
        .render();
    let probe_body = Call::new(&script::PROBE)
        .arg("Service", service())
        .arg("Settle", Arg::Int(u64::from(p.probe.settle)))
        .arg("Checks", checks(&p.probe.while_loaded))
        .render();
    let unloaded_body = Call::new(&script::UNLOADED)
        .arg("Checks", checks(&p.probe.after_unload))
        .render();
    let events_body = Call::new(&script::EVENTS)
        .arg("Dir", Arg::str(dir))
        .arg("Names", Arg::list(&[&p.service, &p.display_name]))
        .arg("Image", Arg::Str(p.image()))
        .render();
    let start_body = Call::new(&script::START).arg("Service", service()).render();
    let stop_body = Call::new(&script::STOP).arg("Service", service()).render();
    let step = |id, title: String, body: String, check, cleanup, timeout| Step {
        id,
        title: title.clone(),
        run: Run::Guest(ps::script(
            &format!("{} {title}", p.driver),
            &if id == "events" {
                body
            } else {
                format!("{helpers}{body}")
            },
        )),
        check,
        when: When::Always,
        cleanup,
        timeout,
    };
    let mut steps = vec![
        step(
            "install",
            install.0,
            install.1,
            Check::Installed,
            Cleanup::No,
            t,
        ),
        step(
            "start",
            format!("start: sc.exe start {}, running and loaded", p.service),
            start_body,
            Check::Started(p.image()),
            Cleanup::No,
            t,
        ),
        step(
            "probe",
            format!(
                "probe: running for {}s{}",
                p.probe.settle,
                match p.probe.while_loaded.len() {
                    0 => String::new(),
                    n => format!(", {n} check(s) while loaded"),
                }
            ),
            probe_body,
            Check::Probe(p.image(), p.probe.while_loaded.clone()),
            Cleanup::No,
            t + Duration::from_secs(u64::from(p.probe.settle)),
        ),
        step(
            "stop",
            format!(
                "stop (unload): sc.exe stop {}, stopped with exit code 0",
                p.service
            ),
            stop_body,
            Check::Stopped,
            Cleanup::After("start"),
            t,
        ),
        step(
            "unloaded",
            format!(
                "unloaded: {} gone from the loaded modules{}",
                p.image(),
                match p.probe.after_unload.len() {
                    0 => String::new(),
                    n => format!(", {n} check(s) after unload"),
                }
            ),
            unloaded_body,
            Check::Unloaded(p.image(), p.probe.after_unload.clone()),
            Cleanup::No,
            t,
        ),
    ];
    let mut remove = step(
        "remove",
        format!("remove the service {}", p.service),
        remove_body,
        Check::Removed,
        Cleanup::After("install"),
        t,
    );
    if options.keep {
        remove.when = When::Kept;
    }
    steps.push(remove);
    steps.push(step(
        "events",
        format!(
            "collect the Service Control Manager events of {} since the deploy began",
            p.service
        ),
        events_body,
        Check::Events,
        Cleanup::Always,
        t,
    ));
    DriverSteps {
        driver: p.driver.clone(),
        service: p.service.clone(),
        image: p.image(),
        steps,
    }
}

/// The script that lists crash dumps and bugcheck events since the deploy began (run once a VM
/// that stopped answering is back).
pub fn post_mortem_script(remote_dir: &str) -> String {
    ps::script(
        "post-mortem",
        &Call::new(&script::POST_MORTEM)
            .arg("Dir", Arg::str(remote_dir))
            .render(),
    )
}

/// Where a crashed VM's dump will be, for the report.
pub const DUMP_PLACES: &str = r"C:\Windows\MEMORY.DMP (kernel or complete memory dump, the default: automatic) or C:\Windows\Minidump\*.dmp (small memory dump), written when the VM restarts after the bugcheck";
