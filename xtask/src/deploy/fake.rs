//! A stand-in Windows VM for the tests: answers each step's script the way the documented tools
//! answer (`samples/`), keeping the state a deployment changes (services, loaded images, the
//! trusted certificate, cm-filter's registry filter). It never runs PowerShell: it recognises
//! the steps by the lines the plan writes, so a change of the plan's scripts that it does not
//! know makes the tests fail loudly ("no answer").

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use super::transport::{Lost, Output, Transport, TransportError, Upload};

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
            log: Vec::new(),
            dies_after: None,
            silent_for: 0,
            calls: 0,
            files: BTreeMap::new(),
            filter_active: false,
        }
    }

    /// The quoted service name of ours that `script` mentions.
    fn service_in(script: &str, known: &[(String, String)]) -> Option<(String, String)> {
        known
            .iter()
            .find(|(svc, _)| script.contains(&format!("'{svc}'")))
            .cloned()
    }

    /// Answers one script; `known` lists (service, driver) pairs of the plan.
    #[allow(clippy::too_many_lines)]
    pub fn answer(&mut self, script: &str, known: &[(String, String)]) -> (i32, String) {
        let first = script.lines().next().unwrap_or_default().to_owned();
        self.log.push(first);
        let mut out = String::new();
        let svc = Self::service_in(script, known);
        let query = |vm: &FakeVm, svc: &str| -> (i32, String) {
            match vm.services.get(svc) {
                None => (
                    1060,
                    "[SC] EnumQueryServicesStatus:OpenService FAILED 1060:\n\nThe specified service does not exist as an installed service.".to_owned(),
                ),
                Some((_, state)) => {
                    let code = if *state == "RUNNING" { 4 } else { 1 };
                    (
                        0,
                        format!(
                            "SERVICE_NAME: {svc}\n        TYPE               : 1  KERNEL_DRIVER\n        STATE              : {code}  {state}\n        WIN32_EXIT_CODE    : 0  (0x0)\n        SERVICE_EXIT_CODE  : 0  (0x0)\n        CHECKPOINT         : 0x0\n        WAIT_HINT          : 0x0"
                        ),
                    )
                }
            }
        };
        let section = |out: &mut String, name: &str, code: Option<i32>, body: &str| {
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
        };
        let modules = |vm: &FakeVm, out: &mut String| {
            let list: Vec<&str> = vm.loaded.iter().map(String::as_str).collect();
            section(out, "modules", None, &list.join("\n"));
        };
        let checks = |vm: &FakeVm, out: &mut String| {
            let lines: Vec<&str> = script.lines().collect();
            for (i, l) in lines.iter().enumerate() {
                let Some(name) = l
                    .strip_prefix("Section '")
                    .and_then(|r| r.strip_suffix('\''))
                    .filter(|n| n.starts_with("check-"))
                else {
                    continue;
                };
                let op = lines.get(i + 1).copied().unwrap_or_default();
                let blocked = op.contains("SetValue('Blocked'") || op.contains("DeleteSubKeyTree(");
                let result = if vm.filter_active && blocked {
                    "denied"
                } else {
                    "allowed"
                };
                section(out, name, None, result);
            }
        };
        if script.contains("Section 'admin'") {
            let _ = writeln!(
                out,
                "#xtask:section admin\nTrue\n#xtask:section arch\nAMD64\n#xtask:section os\n10.0.22631.0"
            );
            section(&mut out, "boot", None, &self.boot);
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
            let bcd = include_str!("samples/bcdedit-testsigning-on.txt");
            let bcd = if self.testsigning {
                bcd.to_owned()
            } else {
                bcd.replace("testsigning             Yes", "testsigning             No")
            };
            section(&mut out, "bcdedit", Some(0), bcd.trim_end());
            section(&mut out, "remote-dir", None, "ok");
            return (0, out);
        }
        if script.contains("'testsigning', 'on'") {
            self.testsigning = true;
            self.boot = "2026-05-01T09:00:00.0000000Z".to_owned();
            section(
                &mut out,
                "bcdedit",
                Some(0),
                "The operation completed successfully.",
            );
            section(&mut out, "shutdown", Some(0), "");
            return (0, out);
        }
        if script.contains("Section 'dumps'") {
            section(
                &mut out,
                "dumps",
                None,
                "C:\\Windows\\MEMORY.DMP (1073741824 bytes)",
            );
            section(
                &mut out,
                "events",
                None,
                r#"[{"Time":"2026-05-01T08:05:00.0000000Z","Id":1001,"Level":2,"Message":"The computer has rebooted from a bugcheck.  The bugcheck was: 0x00000050"}]"#,
            );
            return (0, out);
        }
        if script.contains("Section 'boot'") {
            section(&mut out, "boot", None, &self.boot);
            return (0, out);
        }
        if script.contains("foreach ($d in @(") {
            return (0, out);
        }
        if script.contains("Get-FileHash") {
            for (driver, files) in &self.files {
                section(&mut out, &format!("files {driver}"), None, "");
                for (n, h) in files {
                    let _ = writeln!(out, "{h} {n}");
                }
            }
            return (0, out);
        }
        if script.contains("'-addstore'") {
            let thumb = script
                .split("$t = '")
                .nth(1)
                .and_then(|r| r.split('\'').next())
                .unwrap_or_default()
                .to_owned();
            for store in ["Root", "TrustedPublisher"] {
                if self.trusted.contains(&thumb) {
                    let _ = writeln!(out, "#xtask:note already in {store}");
                } else {
                    let _ = writeln!(out, "#xtask:note added to {store}");
                }
                let listing = include_str!("samples/certutil-root.txt").replace(
                    "34ad27dccaac93adce84b84db07823e8f1570848",
                    &thumb.to_lowercase(),
                );
                section(
                    &mut out,
                    &format!("store {store}"),
                    Some(0),
                    listing.trim_end(),
                );
            }
            self.trusted.insert(thumb);
            return (0, out);
        }
        if script.contains("Section 'modules'") && !script.contains("'sc.exe'") {
            modules(self, &mut out);
            checks(self, &mut out);
            return (0, out);
        }
        let Some((svc, driver)) = svc else {
            if script.contains("'deploy-start.txt'") {
                return (0, out); // remove the files
            }
            return (99, format!("fake VM: no answer for this script:\n{script}"));
        };
        let image = format!("{driver}.sys");
        if script.contains("'sc-create'") || script.contains("'pnputil'") {
            self.services.insert(svc.clone(), (image, "STOPPED"));
            section(&mut out, "sc-create", Some(0), "[SC] CreateService SUCCESS");
            let (c, q) = query(self, &svc);
            section(&mut out, "sc-query", Some(c), &q);
            return (0, out);
        }
        if script.contains("'sc-start'") {
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
                section(&mut out, "sc-start", Some(0), "SERVICE_NAME: started");
            }
            let (c, q) = query(self, &svc);
            section(&mut out, "sc-query", Some(c), &q);
            modules(self, &mut out);
            return (0, out);
        }
        if script.contains("'sc-query-settled'") {
            let (c, q) = query(self, &svc);
            section(&mut out, "sc-query", Some(c), &q);
            section(&mut out, "sc-query-settled", Some(c), &q);
            modules(self, &mut out);
            checks(self, &mut out);
            return (0, out);
        }
        if script.contains("'sc-stop'") {
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
            section(&mut out, "sc-query", Some(c), &q);
            return (0, out);
        }
        if script.contains("'sc-delete'") {
            self.services.remove(&svc);
            section(&mut out, "sc-delete", Some(0), "[SC] DeleteService SUCCESS");
            let (c, q) = query(self, &svc);
            section(&mut out, "sc-query", Some(c), &q);
            return (0, out);
        }
        if script.contains("Service Control Manager") {
            section(
                &mut out,
                "events",
                None,
                &format!(
                    r#"[{{"Time":"2026-05-01T08:01:00.0000000Z","Id":7045,"Level":4,"Message":"A service was installed in the system.\r\n\r\nService Name:  {svc}"}},{{"Time":"2026-05-01T08:01:02.0000000Z","Id":7036,"Level":4,"Message":"The {svc} service entered the running state."}}]"#
                ),
            );
            return (0, out);
        }
        (99, format!("fake VM: no answer for this script:\n{script}"))
    }
}

/// A [`Transport`] whose VM is a [`FakeVm`], in process.
pub struct FakeTransport {
    /// The VM.
    pub vm: std::sync::Mutex<FakeVm>,
    /// The plan's (service, driver) pairs.
    pub known: Vec<(String, String)>,
}

impl Transport for FakeTransport {
    fn guest(&self, script: &str, _timeout: Duration) -> Result<Output, TransportError> {
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
            vm.loaded
                .retain(|m| !m.ends_with("-filter.sys") && !m.contains("callback"));
            for s in vm.services.values_mut() {
                s.1 = "STOPPED";
            }
            vm.filter_active = false;
        }
        let (code, stdout) = vm.answer(script, &self.known);
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
