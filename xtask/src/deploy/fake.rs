//! A stand-in Windows VM for the tests: answers each step's script the way the documented classes
//! and tools answer, keeping the state a deployment changes (services, loaded images, the
//! trusted certificate, cm-filter's registry filter). It never runs PowerShell: it recognises
//! a step by the name in its header (`# xtask step: NAME`, `script.rs`) and reads the parameters
//! the plan passes it, so a step it does not know makes the tests fail loudly ("no answer").

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use super::transport::{Lost, Output, Transport, TransportError, Upload};

mod debugging;
mod psvalue;
pub use debugging::DebugVm;
pub use psvalue::PsValue;

/// The VM's state.
#[derive(Clone, Debug)]
#[allow(clippy::struct_excessive_bools)] // one per behaviour a test selects
pub struct FakeVm {
    /// The services our drivers install: name -> (image, state).
    pub services: BTreeMap<String, (String, &'static str)>,
    /// Images in the loaded-module list.
    pub loaded: BTreeSet<String>,
    /// Certificates trusted (SHA-1).
    pub trusted: BTreeSet<String>,
    /// `sc start` fails with this Win32 error.
    pub start_error: Option<i32>,
    /// The driver stays loaded after `sc stop` (stop reports STOPPED, the image remains).
    pub image_stays: bool,
    /// The registry filter stays active after the stop (an unload that did not unregister).
    pub filter_stays: bool,
    /// Test signing in this boot.
    pub testsigning: bool,
    /// Boot time.
    pub boot: String,
    /// Seconds since that boot.
    pub uptime: u64,
    /// The kernel hides the loaded modules' addresses (24H2 without SeDebugPrivilege).
    pub hides_addresses: bool,
    /// BitLocker's protection status of the system volume (Win32_EncryptableVolume).
    pub bitlocker: &'static str,
    /// `sc stop` never returns (a DriverUnload that hangs): the stop step times out.
    pub stop_hangs: bool,
    /// Every script's first line, in order.
    pub log: Vec<String>,
    /// From this many guest calls on, the VM answers nothing (a bugcheck); `None`: never.
    pub dies_after: Option<usize>,
    /// After dying, the number of calls it stays silent before it answers again (rebooted).
    pub silent_for: usize,
    calls: usize,
    /// The files hashed by the copy check: driver -> (name, sha256).
    pub files: BTreeMap<String, Vec<(String, String)>>,
    filter_active: bool,
    /// Driver Verifier, kernel debugging and crash dumps (`fake/debugging.rs`).
    pub dbg: DebugVm,
    /// The VM's clock (a FILETIME), one second further at every script.
    pub clock: u64,
    /// The deploy's trace session runs (trace-start.ps1 until trace-stop.ps1).
    pub tracing: bool,
    /// The drivers' ETW events the session recorded: (FILETIME, provider, level, message).
    pub etw: Vec<(u64, String, u64, String)>,
}

impl FakeVm {
    /// A VM with test signing on and nothing installed.
    pub fn new() -> Self {
        Self {
            services: BTreeMap::new(),
            loaded: ["ntoskrnl.exe", "hal.dll", "ACPI.sys"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            trusted: BTreeSet::new(),
            start_error: None,
            image_stays: false,
            filter_stays: false,
            testsigning: true,
            boot: "2026-05-01T08:00:00.0000000Z".to_owned(),
            uptime: 86_400,
            hides_addresses: false,
            bitlocker: "0",
            stop_hangs: false,
            log: Vec::new(),
            dies_after: None,
            silent_for: 0,
            calls: 0,
            files: BTreeMap::new(),
            filter_active: false,
            dbg: DebugVm::default(),
            // 2026-05-01T08:00:00Z
            clock: 134_220_672_000_000_000,
            tracing: false,
            etw: Vec::new(),
        }
    }

    /// Answers one script; `known` lists (service, driver) pairs of the plan. The steps are
    /// recognised by their header lines (`# xtask step: NAME`), their parameters read from the
    /// `$xtaskArgs` table before each.
    #[allow(clippy::too_many_lines)]
    pub fn answer(&mut self, script: &str, known: &[(String, String)]) -> (i32, String) {
        let first = script.lines().next().unwrap_or_default().to_owned();
        self.log.push(first);
        let mut out = String::new();
        let calls = calls(script);
        let Some((step, args)) = calls.last() else {
            return (99, format!("fake VM: no step in this script:\n{script}"));
        };
        let arg = |name: &str| args.get(name).map(PsValue::text).unwrap_or_default();
        let svc = arg("Service");
        let svc = known
            .iter()
            .find(|(s, _)| *s == svc)
            .or_else(|| {
                // The events step names the service first.
                let names = args.get("Names").cloned().map(PsValue::items)?;
                let first = names.first()?.text();
                known.iter().find(|(s, _)| *s == first)
            })
            .cloned();
        // Section `service` as Write-Service (xtask-helpers.ps1) prints Win32_SystemDriver.
        let query = |vm: &FakeVm, svc: &str| -> (Option<i32>, String) {
            match vm.services.get(svc) {
                None => (None, "missing".to_owned()),
                Some((_, state)) => {
                    let state = if *state == "RUNNING" {
                        "Running"
                    } else {
                        "Stopped"
                    };
                    (
                        None,
                        format!(
                            r#"{{"State":"{state}","ExitCode":0,"ServiceSpecificExitCode":0}}"#
                        ),
                    )
                }
            }
        };
        let modules = |vm: &FakeVm, out: &mut String| {
            let list: Vec<&str> = if vm.hides_addresses {
                // Every base zero: every name the kernel's.
                vm.loaded.iter().map(|_| "ntoskrnl.exe").collect()
            } else {
                vm.loaded.iter().map(String::as_str).collect()
            };
            let (distinct, privilege) = if vm.hides_addresses {
                (1, 1300)
            } else {
                (list.len(), 0)
            };
            section(
                out,
                "modules-check",
                None,
                &format!(
                    "entries={} distinct={distinct} debug-privilege={privilege}",
                    list.len()
                ),
            );
            section(out, "modules", None, &list.join("\n"));
        };
        // The checks (Invoke-XtaskChecks): a registry check is answered from the filter's state;
        // a command check runs as its own powershell.exe, whose exit code is its `exit N`.
        let checks = |vm: &FakeVm, out: &mut String| {
            let list = args.get("Checks").cloned().map(PsValue::items);
            for (i, c) in list.unwrap_or_default().iter().enumerate() {
                let name = format!("check-{}", i + 1);
                let get = |k: &str| c.get(k).map(PsValue::text).unwrap_or_default();
                match get("Kind").as_str() {
                    "registry" => {
                        let op = get("Op");
                        let blocked =
                            (op == "set-value" && get("Value") == "Blocked") || op == "delete-key";
                        let result = if vm.filter_active && blocked {
                            "denied"
                        } else {
                            "allowed"
                        };
                        section(out, &name, None, result);
                    }
                    "command" => {
                        let command = super::ps::decode(&get("Encoded")).unwrap_or_default();
                        let code = command.lines().find_map(command_exit).unwrap_or(0);
                        section(out, &name, Some(code), "");
                    }
                    _ => section(out, &name, None, ""),
                }
            }
        };
        match step.as_str() {
            "preflight" => {
                let _ = writeln!(
                    out,
                    "#xtask:section admin\nTrue\n#xtask:section arch\nAMD64\n#xtask:section os\n10.0.22631.0"
                );
                section(&mut out, "boot", None, &self.boot);
                section(&mut out, "uptime", None, &self.uptime.to_string());
                section(
                    &mut out,
                    "start-options",
                    None,
                    if self.testsigning {
                        " NOEXECUTE=OPTIN  TESTSIGNING"
                    } else {
                        " NOEXECUTE=OPTIN"
                    },
                );
                section(&mut out, "secure-boot", None, "False");
                section(&mut out, "debug-print-filter", None, "15");
                section(
                    &mut out,
                    "bcd-testsigning",
                    None,
                    if self.testsigning { "True" } else { "absent" },
                );
                section(&mut out, "bitlocker", None, self.bitlocker);
                section(&mut out, "remote-dir", None, "ok");
                return (0, out);
            }
            "enable-testsigning" => {
                if self.bitlocker == "1" {
                    // DisableKeyProtectors(1): suspended for the restart.
                    section(&mut out, "bitlocker-suspend", Some(0), "");
                    let _ = writeln!(out, "#xtask:note BitLocker suspended for one restart");
                    self.bitlocker = "0";
                }
                self.testsigning = true;
                // The clock is corrected at the restart: the boot time moves back, the uptime is
                // what tells the new boot.
                self.boot = "2026-05-01T07:59:59.0000000Z".to_owned();
                self.uptime = 0;
                section(
                    &mut out,
                    "bcdedit",
                    Some(0),
                    "The operation completed successfully.",
                );
                section(&mut out, "shutdown", Some(0), "");
                return (0, out);
            }
            "post-mortem" => {
                self.dbg.dumps_section(&mut out);
                section(
                    &mut out,
                    "events",
                    None,
                    r#"[{"Time":"2026-05-01T08:05:00.0000000Z","Id":1001,"Level":2,"Provider":"Microsoft-Windows-WER-SystemErrorReporting","Message":"The computer has rebooted from a bugcheck.  The bugcheck was: 0x00000050"}]"#,
                );
                self.dbg.post_mortem(&mut out);
                return (0, out);
            }
            "boot" => {
                section(&mut out, "boot", None, &self.boot);
                section(&mut out, "uptime", None, &self.uptime.to_string());
                return (0, out);
            }
            "leftovers" => return self.leftovers(args, out),
            "check-copy" => {
                for (driver, files) in &self.files {
                    section(&mut out, &format!("files {driver}"), None, "");
                    for (n, h) in files {
                        let _ = writeln!(out, "{h} {n}");
                    }
                }
                section(
                    &mut out,
                    &format!("files {}", super::plan::HELPERS_FOLDER),
                    None,
                    &format!(
                        "{} {}",
                        super::plan::helpers_sha256(),
                        super::plan::HELPERS_FILE
                    ),
                );
                return (0, out);
            }
            "trust" => {
                let thumb = arg("Thumbprint");
                for store in ["Root", "TrustedPublisher"] {
                    if self.trusted.contains(&thumb) {
                        let _ = writeln!(out, "#xtask:note already in {store}");
                    } else {
                        let _ = writeln!(out, "#xtask:note added to {store}");
                    }
                    section(&mut out, &format!("store {store}"), None, "present");
                }
                self.trusted.insert(thumb);
                return (0, out);
            }
            "unloaded" => {
                modules(self, &mut out);
                checks(self, &mut out);
                return (0, out);
            }
            "remove-files" => return (0, out),
            s if debugging::STEPS.contains(&s) => {
                let (code, text, restarts) = self.dbg.answer(s, args, &self.loaded);
                if restarts {
                    self.boot = "2026-05-01T08:03:00.0000000Z".to_owned();
                    self.uptime = 0;
                }
                return (code, text);
            }
            "trace-start" => {
                self.tracing = true;
                section(
                    &mut out,
                    "logman-start",
                    Some(0),
                    "The command completed successfully.",
                );
                return (0, out);
            }
            "trace-stop" => return self.trace_stop(out),
            _ => {}
        }
        let Some((svc, driver)) = svc else {
            return (99, format!("fake VM: no answer for this script:\n{script}"));
        };
        let image = format!("{driver}.sys");
        // A driver step dot-sources the helpers, which say the VM's clock first.
        self.clock += 10_000_000;
        section(&mut out, "clock", None, &self.clock.to_string());
        let provider = super::trace::provider_name(&driver);
        match step.as_str() {
            "install-sc" | "install-inf" => {
                if self.services.contains_key(&svc) {
                    section(
                        &mut out,
                        "sc-create",
                        Some(1073),
                        "[SC] CreateService FAILED 1073:\n\nThe specified service already exists.",
                    );
                    let (c, q) = query(self, &svc);
                    section(&mut out, "service", c, &q);
                    return (1, out);
                }
                self.services.insert(svc.clone(), (image, "STOPPED"));
                section(&mut out, "sc-create", Some(0), "[SC] CreateService SUCCESS");
                let (c, q) = query(self, &svc);
                section(&mut out, "service", c, &q);
                (0, out)
            }
            "start" => {
                if let Some(code) = self.start_error {
                    section(
                        &mut out,
                        "sc-start",
                        Some(code),
                        &format!(
                            "[SC] StartService FAILED {code}:\n\nWindows cannot verify the digital signature for this file."
                        ),
                    );
                } else {
                    if let Some(s) = self.services.get_mut(&svc) {
                        s.1 = "RUNNING";
                    }
                    self.loaded.insert(image);
                    self.filter_active = svc == "CmFilter";
                    self.log_line(&provider, &format!("[{driver}] Info: DriverEntry"));
                    section(&mut out, "sc-start", Some(0), "SERVICE_NAME: started");
                }
                let (c, q) = query(self, &svc);
                section(&mut out, "service", c, &q);
                modules(self, &mut out);
                (0, out)
            }
            "probe" => {
                let (c, q) = query(self, &svc);
                section(&mut out, "service", c, &q);
                section(&mut out, "service-settled", c, &q);
                modules(self, &mut out);
                checks(self, &mut out);
                (0, out)
            }
            "stop" => {
                if self.stop_hangs {
                    return (-1, "#xtask:hang".to_owned());
                }
                let running = self.services.get(&svc).is_some_and(|s| s.1 == "RUNNING");
                if running {
                    if let Some(s) = self.services.get_mut(&svc) {
                        s.1 = "STOPPED";
                    }
                    if !self.image_stays {
                        self.loaded.remove(&image);
                    }
                    if !self.filter_stays {
                        self.filter_active = false;
                    }
                    self.log_line(&provider, &format!("[{driver}] Info: unloaded"));
                    section(&mut out, "sc-stop", Some(0), "SERVICE_NAME: stopping");
                } else {
                    section(
                        &mut out,
                        "sc-stop",
                        Some(1062),
                        "[SC] ControlService FAILED 1062:\n\nThe service has not been started.",
                    );
                }
                let (c, q) = query(self, &svc);
                section(&mut out, "service", c, &q);
                (0, out)
            }
            "remove" => {
                self.services.remove(&svc);
                section(&mut out, "sc-delete", Some(0), "[SC] DeleteService SUCCESS");
                let (c, q) = query(self, &svc);
                section(&mut out, "service", c, &q);
                (0, out)
            }
            "events" => {
                section(
                    &mut out,
                    "events",
                    None,
                    &format!(
                        r#"[{{"Time":"2026-05-01T08:01:00.0000000Z","Id":7045,"Level":4,"Message":"A service was installed in the system.\r\n\r\nService Name:  {svc}"}},{{"Time":"2026-05-01T08:01:02.0000000Z","Id":7036,"Level":4,"Message":"The {svc} service entered the running state."}}]"#
                    ),
                );
                section(&mut out, "code-integrity", None, "[]");
                (0, out)
            }
            _ => (99, format!("fake VM: no answer for this script:\n{script}")),
        }
    }
}

impl FakeVm {
    /// A line the driver logs now, recorded if the trace session runs (half a second into the
    /// step, after its clock).
    fn log_line(&mut self, provider: &str, message: &str) {
        if self.tracing {
            self.etw.push((
                self.clock + 5_000_000,
                provider.to_owned(),
                4,
                message.to_owned(),
            ));
        }
    }

    /// trace-stop.ps1: the session stopped, its events as the script writes them.
    fn trace_stop(&mut self, mut out: String) -> (i32, String) {
        self.tracing = false;
        let _ = writeln!(
            out,
            "#xtask:section logman-stop exit=0\nThe command completed successfully."
        );
        let _ = writeln!(out, "#xtask:section tracerpt exit=0");
        let events: Vec<String> = self
            .etw
            .drain(..)
            .map(|(t, p, l, m)| {
                format!(
                    r#"{{"Time":{t},"SystemTime":"FILETIME {t}","Provider":"{p}","Level":{l},"Message":"{m}"}}"#
                )
            })
            .collect();
        let _ = writeln!(out, "#xtask:section trace\n[{}]", events.join(","));
        (0, out)
    }
}

/// The steps a script runs, in order, each with its parameters: the `$xtaskArgs = @{ ... }`
/// line before each step's header (`script.rs`).
pub fn calls(script: &str) -> Vec<(String, BTreeMap<String, PsValue>)> {
    let mut out = Vec::new();
    let mut pending = BTreeMap::new();
    for line in script.lines() {
        if let Some(table) = line.strip_prefix("$xtaskArgs = ") {
            pending = match PsValue::eval(table) {
                Some(PsValue::Table(entries)) => entries.into_iter().collect(),
                _ => BTreeMap::new(),
            };
        } else if let Some(name) = line.strip_prefix(super::script::HEADER) {
            out.push((name.trim().to_owned(), std::mem::take(&mut pending)));
        }
    }
    out
}

impl FakeVm {
    /// The leftovers step: walks its two lists of services and drivers by index the way
    /// PowerShell binds them to `[string[]]` parameters, and removes each service of ours that is
    /// there.
    fn leftovers(&mut self, args: &BTreeMap<String, PsValue>, mut out: String) -> (i32, String) {
        let list = |name: &str| {
            args.get(name)
                .cloned()
                .map(PsValue::items)
                .unwrap_or_default()
        };
        let images: Vec<String> = list("Images").iter().map(PsValue::text).collect();
        let pairs: Vec<(String, String)> = list("Services")
            .iter()
            .zip(&list("Drivers"))
            .map(|(s, d)| (s.text(), d.text()))
            .collect();
        for (svc, _driver) in pairs {
            let Some((image, _)) = self.services.get(&svc) else {
                continue;
            };
            if !images.iter().any(|i| image.eq_ignore_ascii_case(i)) {
                let _ = writeln!(
                    out,
                    "#xtask:note a service {svc} exists with image {image}, not one of ours: left alone"
                );
                return (3, out);
            }
            let _ = writeln!(
                out,
                "#xtask:note removing the service {svc} left by an earlier deploy ({image})"
            );
            self.loaded.remove(image.as_str());
            self.services.remove(&svc);
        }
        (0, out)
    }
}

/// Appends to `out` what a step's script prints for one of its output sections: the
/// `#xtask:section NAME [exit=CODE]` line, then `body` (if any).
fn section(out: &mut String, name: &str, code: Option<i32>, body: &str) {
    match code {
        Some(c) => {
            let _ = writeln!(out, "#xtask:section {name} exit={c}");
        }
        None => {
            let _ = writeln!(out, "#xtask:section {name}");
        }
    }
    if !body.is_empty() {
        let _ = writeln!(out, "{body}");
    }
}

/// The exit code of a user command's line `exit N` (`exit` alone: 0).
fn command_exit(line: &str) -> Option<i32> {
    let rest = line.trim().strip_prefix("exit")?;
    if rest.is_empty() {
        return Some(0);
    }
    rest.trim().parse().ok()
}

/// A [`Transport`] whose VM is a [`FakeVm`], in process.
pub struct FakeTransport {
    /// The VM.
    pub vm: std::sync::Mutex<FakeVm>,
    /// The plan's (service, driver) pairs.
    pub known: Vec<(String, String)>,
}

impl Transport for FakeTransport {
    fn guest(&self, script: &str, timeout: Duration) -> Result<Output, TransportError> {
        let mut vm = self.vm.lock().unwrap();
        vm.calls += 1;
        if let Some(n) = vm.dies_after
            && vm.calls > n
        {
            if vm.silent_for > 0 {
                vm.silent_for -= 1;
                return Err(TransportError {
                    kind: Lost::Unreachable,
                    message: "Timeout, server testvm not responding.".to_owned(),
                    partial: Output::default(),
                });
            }
            // Back after the reboot the bugcheck caused: a new boot, the driver not loaded.
            vm.dies_after = None;
            vm.boot = "2026-05-01T08:06:00.0000000Z".to_owned();
            vm.uptime = 0;
            vm.loaded
                .retain(|m| !m.ends_with("-filter.sys") && !m.contains("callback"));
            for s in vm.services.values_mut() {
                s.1 = "STOPPED";
            }
            vm.filter_active = false;
        }
        let (code, stdout) = vm.answer(script, &self.known);
        if stdout == "#xtask:hang" {
            return Err(TransportError {
                kind: Lost::Timeout,
                message: format!("no answer within {}s", timeout.as_secs()),
                partial: Output::default(),
            });
        }
        Ok(Output {
            code: Some(code),
            stdout,
            stderr: String::new(),
            duration: Duration::from_millis(1),
        })
    }

    fn upload(&self, _items: &[Upload], _timeout: Duration) -> Result<Output, TransportError> {
        Ok(Output {
            code: Some(0),
            ..Output::default()
        })
    }

    fn download(
        &self,
        remote: &str,
        local: &std::path::Path,
        _timeout: Duration,
    ) -> Result<Output, TransportError> {
        debugging::download(&self.vm, remote, local)
    }

    fn host(&self, argv: &[String], _timeout: Duration) -> Result<Output, TransportError> {
        self.vm
            .lock()
            .unwrap()
            .log
            .push(format!("host: {}", argv.join(" ")));
        Ok(Output {
            code: Some(0),
            ..Output::default()
        })
    }

    fn show_guest(&self, _script: &str, _full: bool) -> String {
        String::new()
    }

    fn show_upload(&self, _items: &[Upload]) -> String {
        String::new()
    }
}
