//! The fake VM's Driver Verifier, kernel debugging settings and crash dumps: the `verifier`,
//! `verifier-stats`, `verifier-restore` and `kdnet` steps, and the bugcheck sections of
//! `post-mortem`, answered as verifier.exe, bcdedit and the System log would.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::{PsValue, section};
use crate::deploy::transport::{Lost, Output, TransportError};

/// The state the debugging steps change.
#[derive(Clone, Debug)]
#[allow(clippy::struct_excessive_bools)] // one per behaviour a test selects
pub struct DebugVm {
    /// verifier.exe is missing (a Windows edition without it).
    pub verifier_missing: bool,
    /// The Windows build (22000 and later: Windows 11's volatile flags).
    pub build: u32,
    /// VerifyDriverLevel.
    pub level: Option<u64>,
    /// VerifyDrivers.
    pub drivers: Option<String>,
    /// The persistent settings in effect in this boot (level, drivers).
    pub booted: Option<(u64, String)>,
    /// Images verified through volatile settings.
    pub volatile: BTreeSet<String>,
    /// verifier-previous.json: (level, drivers, mode).
    pub saved: Option<(Option<u64>, Option<String>, String)>,
    /// verifier.exe ignores the restore (the settings stay ours).
    pub restore_fails: bool,
    /// verifier.exe ignores `/flags ... /driver ...` (the registry keeps the settings before).
    pub set_ignored: bool,
    /// Secure Boot is on.
    pub secure_boot: bool,
    /// The kdnet key in the boot configuration.
    pub key: Option<String>,
    /// Kernel debugging on (after a restart).
    pub debug: Option<(String, u64)>,
    /// The bugcheck after a crash: code (decimal in event 41) and parameters.
    pub bugcheck: (u32, [u64; 4]),
    /// The dumps written at the crash, oldest first: (path, bytes, minidump).
    pub dumps: Vec<(String, u64, bool)>,
    /// Files copied from the VM: remote path -> bytes written.
    pub downloaded: BTreeMap<String, u64>,
}

impl Default for DebugVm {
    fn default() -> Self {
        Self {
            verifier_missing: false,
            build: 22631,
            level: None,
            drivers: None,
            booted: None,
            volatile: BTreeSet::new(),
            saved: None,
            restore_fails: false,
            set_ignored: false,
            secure_boot: false,
            key: None,
            debug: None,
            bugcheck: (
                0xC4,
                [0x62, 0xffff_a50f_1a2b_3c40, 0xffff_a50f_1a2b_3d00, 1],
            ),
            dumps: vec![(r"C:\Windows\MEMORY.DMP".to_owned(), 1 << 30, false)],
            downloaded: BTreeMap::new(),
        }
    }
}

fn json_u(v: Option<u64>) -> String {
    v.map_or("null".to_owned(), |n| n.to_string())
}

fn json_s(v: Option<&str>) -> String {
    v.map_or("null".to_owned(), |s| format!("\"{s}\""))
}

/// The steps answered here.
pub const STEPS: [&str; 4] = ["verifier", "verifier-stats", "verifier-restore", "kdnet"];

impl DebugVm {
    /// Answers step `step` with its parameters; `loaded` is the loaded-module list. The second
    /// value says the VM restarts.
    #[allow(clippy::too_many_lines)] // one arm per step, as the tools would answer
    pub fn answer(
        &mut self,
        step: &str,
        args: &BTreeMap<String, PsValue>,
        loaded: &BTreeSet<String>,
    ) -> (i32, String, bool) {
        let mut out = String::new();
        let num = |k: &str| -> u64 {
            args.get(k)
                .map(PsValue::text)
                .and_then(|t| t.parse().ok())
                .unwrap_or_default()
        };
        let images: Vec<String> = args
            .get("Images")
            .cloned()
            .map(PsValue::items)
            .unwrap_or_default()
            .iter()
            .map(PsValue::text)
            .collect();
        match step {
            "verifier" => {
                if self.verifier_missing {
                    let _ = writeln!(
                        out,
                        "#xtask:note Driver Verifier is not on this VM (C:\\Windows\\System32\\verifier.exe is missing)"
                    );
                    return (3, out, false);
                }
                let flags = num("Flags");
                let mask = if self.build >= 22000 {
                    num("Win11")
                } else {
                    num("Win10")
                };
                let mut mode = if flags & mask == flags {
                    "volatile"
                } else {
                    "persistent"
                };
                let (level, drivers) = match &self.saved {
                    Some((l, d, m)) => {
                        if m == "persistent" {
                            mode = "persistent";
                        }
                        (*l, d.clone())
                    }
                    None => (self.level, self.drivers.clone()),
                };
                self.saved = Some((level, drivers.clone(), mode.to_owned()));
                section(
                    &mut out,
                    "verifier-previous",
                    None,
                    &format!(
                        r#"{{"Level":{},"Drivers":{},"Mode":"{mode}"}}"#,
                        json_u(level),
                        json_s(drivers.as_deref())
                    ),
                );
                section(&mut out, "verifier-mode", None, mode);
                if mode == "volatile" {
                    section(&mut out, "verifier-flags", Some(0), "");
                    self.volatile.extend(images);
                    section(&mut out, "verifier-adddriver", Some(0), "");
                    return (0, out, false);
                }
                if !self.set_ignored {
                    self.level = Some(flags);
                    self.drivers = Some(images.join(" "));
                }
                // verifier.exe asks for a restart; its exit code is not read.
                section(&mut out, "verifier-set", Some(2), "");
                section(
                    &mut out,
                    "verifier-settings",
                    None,
                    &format!(
                        r#"{{"Level":{},"Drivers":{}}}"#,
                        json_u(self.level),
                        json_s(self.drivers.as_deref())
                    ),
                );
                if self.set_ignored {
                    let _ = writeln!(
                        out,
                        "#xtask:note verifier /flags 0x{flags:X} /driver did not take (VerifyDriverLevel is {}): no restart",
                        json_u(self.level)
                    );
                    return (1, out, false);
                }
                section(&mut out, "shutdown", Some(0), "");
                self.booted = Some((flags, images.join(" ")));
                (0, out, true)
            }
            "verifier-stats" => {
                let mut q = String::from(
                    "12/03/2026, 11:45:00\nLevel: 000209BB\nRaiseIrqls: 0\n\nVerified drivers:\n\n",
                );
                let persistent: Vec<String> = self
                    .booted
                    .as_ref()
                    .map(|(_, d)| d.split(' ').map(str::to_owned).collect())
                    .unwrap_or_default();
                for image in loaded {
                    if self.volatile.contains(image) || persistent.contains(image) {
                        let _ = write!(
                            q,
                            "Name: {image}, loads: 1, unloads: 0\nCurrentPagedPoolAllocations: 0\nCurrentNonPagedPoolAllocations: 2\nPeakPagedPoolAllocations: 0\nPeakNonPagedPoolAllocations: 2\nPagedPoolUsageInBytes: 0\nNonPagedPoolUsageInBytes: 160\nPeakPagedPoolUsageInBytes: 0\nPeakNonPagedPoolUsageInBytes: 160\n\n"
                        );
                    }
                }
                section(&mut out, "verifier-query", Some(0), q.trim_end());
                (0, out, false)
            }
            "verifier-restore" => {
                let Some((level, drivers, mode)) = self.saved.clone() else {
                    section(&mut out, "verifier-restored", None, "unchanged");
                    return (0, out, false);
                };
                if !self.restore_fails {
                    if mode == "volatile" {
                        for i in &images {
                            self.volatile.remove(i);
                        }
                    } else {
                        self.level = level;
                        self.drivers.clone_from(&drivers);
                    }
                }
                let same = self.level == level && self.drivers == drivers;
                section(
                    &mut out,
                    "verifier-restored",
                    None,
                    &format!(
                        r#"{{"Level":{},"Drivers":{},"Same":{same}}}"#,
                        json_u(self.level),
                        json_s(self.drivers.as_deref())
                    ),
                );
                if !same {
                    let _ = writeln!(
                        out,
                        "#xtask:note the Verifier settings are not the ones saved: restore them by hand"
                    );
                    return (4, out, false);
                }
                self.saved = None;
                (0, out, false)
            }
            "kdnet" => {
                if self.secure_boot {
                    let _ = writeln!(
                        out,
                        "#xtask:note Secure Boot is on, which forbids kernel debugging"
                    );
                    return (2, out, false);
                }
                let key = self.key.clone().unwrap_or_else(|| {
                    "2steg4fzbj2sz.23418vzkd4ko3.1g34ou07z4pev.1sp3yo9yz874p".to_owned()
                });
                section(&mut out, "dbgsettings", Some(0), &format!("Key={key}"));
                section(
                    &mut out,
                    "debug-on",
                    Some(0),
                    "The operation completed successfully.",
                );
                section(&mut out, "kdnet-key", None, &key);
                section(&mut out, "shutdown", Some(0), "");
                self.key = Some(key);
                self.debug = Some((
                    args.get("HostIp").map(PsValue::text).unwrap_or_default(),
                    num("Port"),
                ));
                (0, out, true)
            }
            _ => (
                99,
                format!("fake VM: no debugging answer for {step}"),
                false,
            ),
        }
    }

    /// The `bugcheck` section of `post-mortem`.
    pub fn post_mortem(&self, out: &mut String) {
        let (code, p) = self.bugcheck;
        section(
            out,
            "bugcheck",
            None,
            &format!(
                r#"[{{"Time":"2026-05-01T08:06:10.0000000Z","Id":41,"Provider":"Microsoft-Windows-Kernel-Power","Data":{{"BugcheckCode":"{code}","BugcheckParameter1":"0x{:x}","BugcheckParameter2":"0x{:x}","BugcheckParameter3":"0x{:x}","BugcheckParameter4":"0x{:x}","SleepInProgress":"0"}}}}]"#,
                p[0], p[1], p[2], p[3]
            ),
        );
    }

    /// The `dumps` section of `post-mortem`: newest first.
    pub fn dumps_section(&self, out: &mut String) {
        let lines: Vec<String> = self
            .dumps
            .iter()
            .rev()
            .map(|(path, bytes, _)| format!("{path} ({bytes} bytes)"))
            .collect();
        section(out, "dumps", None, &lines.join("\n"));
    }
}

/// [`super::FakeTransport`]'s copy of a dump: a few bytes written through the `.part` file, as
/// the real transports do; a path the VM has no dump at fails as sftp would.
pub fn download(
    vm: &std::sync::Mutex<super::FakeVm>,
    remote: &str,
    local: &std::path::Path,
) -> Result<Output, TransportError> {
    let mut vm = vm.lock().unwrap();
    vm.log.push(format!("download: {remote}"));
    let Some((_, bytes, _)) = vm.dbg.dumps.iter().find(|d| d.0 == remote).cloned() else {
        return Ok(Output {
            code: Some(1),
            stderr: format!("{remote}: no such file"),
            ..Output::default()
        });
    };
    vm.dbg.downloaded.insert(remote.to_owned(), bytes);
    crate::deploy::transport::download_via(local, |part| {
        std::fs::write(part, b"PAGEDU64 (a dump's first bytes, shortened)").map_err(|e| {
            TransportError {
                kind: Lost::Spawn,
                message: e.to_string(),
                partial: Output::default(),
            }
        })?;
        Ok(Output {
            code: Some(0),
            ..Output::default()
        })
    })
}
