//! The steps of `--kdnet`, `--verifier` (and the restore after it): set up before the drivers,
//! each driver's Verifier counters while it is loaded, the settings put back at the end — also
//! after a failure, once the `verifier` step ran.
//!
//! ```text
//! setup     [kdnet, wait for the restart]  ...  trust  [verifier, (persistent: wait for the
//!           restart)]
//! per driver  install  start  probe  [verifier-stats]  stop ...
//! teardown  [verifier-restore]  remove the files ...
//! ```

use super::{Check, Cleanup, DriverSteps, Options, Package, Run, Step, When};
use crate::deploy::ps;
use crate::deploy::script::{self, Arg, Call};
use crate::deploy::verifier::{VOLATILE_WIN10, VOLATILE_WIN11};

fn images(packages: &[Package]) -> Vec<String> {
    packages.iter().map(Package::image).collect()
}

/// `--kdnet`: bcdedit's settings, the key read back, the restart, the wait.
pub(super) fn kdnet_steps(options: &Options) -> Vec<Step> {
    let Some(k) = &options.kdnet else {
        return Vec::new();
    };
    vec![
        Step {
            id: "kdnet",
            title: format!(
                "network kernel debugging to {}:{} (bcdedit /dbgsettings net, /debug on), read the key back, restart",
                k.host, k.port
            ),
            run: Run::Guest(ps::script(
                "kernel debugging",
                &Call::new(&script::KDNET)
                    .arg("HostIp", Arg::str(&k.host))
                    .arg("Port", Arg::Int(u64::from(k.port)))
                    .render(),
            )),
            check: Check::Kdnet(k.clone()),
            when: When::Always,
            cleanup: Cleanup::No,
            timeout: options.timeout,
        },
        Step {
            id: "wait-kdnet",
            title: "wait until the VM has restarted with kernel debugging on".to_owned(),
            run: Run::WaitForGuest { new_boot: true },
            check: Check::Answered,
            when: When::Always,
            cleanup: Cleanup::No,
            timeout: options.reboot_timeout,
        },
    ]
}

/// `--verifier`: on for our drivers (volatile, or persistent and a restart).
pub(super) fn verifier_steps(packages: &[Package], options: &Options) -> Vec<Step> {
    let Some(flags) = options.verifier else {
        return Vec::new();
    };
    let images = images(packages);
    vec![
        Step {
            id: "verifier",
            title: format!(
                "Driver Verifier on for {} (flags {}; volatile where Windows allows it, else persistent and a restart), the previous settings saved",
                images.join(" "),
                flags.hex()
            ),
            run: Run::Guest(ps::script(
                "driver verifier",
                &Call::new(&script::VERIFIER)
                    .arg("Dir", Arg::str(&options.remote_dir))
                    .arg("Flags", Arg::Int(u64::from(flags.0)))
                    .arg("Images", Arg::list(&images))
                    .arg("Win10", Arg::Int(u64::from(VOLATILE_WIN10)))
                    .arg("Win11", Arg::Int(u64::from(VOLATILE_WIN11)))
                    .render(),
            )),
            check: Check::Verifier(images.clone()),
            when: When::Always,
            cleanup: Cleanup::No,
            timeout: options.timeout,
        },
        Step {
            id: "wait-verifier",
            title: "wait until the VM has restarted with Driver Verifier's settings".to_owned(),
            run: Run::WaitForGuest { new_boot: true },
            check: Check::Answered,
            when: When::VerifierPersistent,
            cleanup: Cleanup::No,
            timeout: options.reboot_timeout,
        },
    ]
}

/// A driver's steps with `verifier-stats` after the probe (the driver still loaded).
pub(super) fn with_driver_steps(mut d: DriverSteps, p: &Package, options: &Options) -> DriverSteps {
    if options.fetch_dump {
        d.steps.push(Step {
            id: "post-mortem",
            title: format!(
                "after a bugcheck: wait for the VM, read the bugcheck code and parameters from the System log, copy the newest minidump (or MEMORY.DMP up to {} bytes) into {}",
                options.dump_limit,
                options.dump_dir.display()
            ),
            run: Run::Guest(super::post_mortem_script(&options.remote_dir)),
            check: Check::Events,
            when: When::AfterBugcheck,
            cleanup: Cleanup::No,
            timeout: options.reboot_timeout,
        });
    }
    if options.verifier.is_none() {
        return d;
    }
    let at = d
        .steps
        .iter()
        .position(|s| s.id == "probe")
        .map_or(d.steps.len(), |i| i + 1);
    d.steps.insert(
        at,
        Step {
            id: "verifier-stats",
            title: format!(
                "Driver Verifier's counters of {} while loaded (verifier /query)",
                p.image()
            ),
            run: Run::Guest(ps::script(
                &format!("{} verifier counters", p.driver),
                &Call::new(&script::VERIFIER_STATS).render(),
            )),
            check: Check::VerifierStats(p.image()),
            when: When::Always,
            cleanup: Cleanup::No,
            timeout: options.timeout,
        },
    );
    d
}

/// `verifier-restore`, also after a failure once `verifier` ran.
pub(super) fn teardown_steps(packages: &[Package], options: &Options) -> Vec<Step> {
    if options.verifier.is_none() {
        return Vec::new();
    }
    vec![Step {
        id: "verifier-restore",
        title: "Driver Verifier's previous settings restored, and checked in the registry"
            .to_owned(),
        run: Run::Guest(ps::script(
            "restore driver verifier",
            &Call::new(&script::VERIFIER_RESTORE)
                .arg("Dir", Arg::str(&options.remote_dir))
                .arg("Images", Arg::list(&images(packages)))
                .render(),
        )),
        check: Check::VerifierRestored,
        when: When::Always,
        cleanup: Cleanup::After("verifier"),
        timeout: options.timeout,
    }]
}

#[cfg(test)]
mod tests;
