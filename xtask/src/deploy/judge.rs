//! Judging a step from its output sections: the preflight, the copy, the trust, the loaded
//! modules, the probe's checks.

use std::fmt::Write as _;

use super::parse::{self, Event, Sections, ServiceStatus, TestSigning};
use super::probe::{self, Verdict};
use super::report::Unload;
use super::transport::Output;
use crate::base::process::tail;

/// A step's judged result.
#[derive(Default)]
pub(super) struct Judged {
    pub(super) ok: bool,
    pub(super) detail: String,
    pub(super) probes: Vec<Verdict>,
    pub(super) events: Vec<Event>,
    pub(super) unload: Option<Unload>,
    /// Driver Verifier's counters (`verifier-stats`).
    pub(super) verifier: Option<super::verifier::Stats>,
}

impl Judged {
    pub(super) fn pass(detail: impl Into<String>) -> Self {
        Self {
            ok: true,
            detail: detail.into(),
            ..Self::default()
        }
    }
    pub(super) fn fail(detail: impl Into<String>) -> Self {
        Self {
            ok: false,
            detail: detail.into(),
            ..Self::default()
        }
    }
}

/// Whether `image` is (`want`) or is no longer in the loaded-module list of section `modules`.
pub(super) fn loaded(s: &Sections, image: &str, want: bool, ok_text: &str) -> Judged {
    if let Err(e) = s
        .need("modules-check")
        .and_then(|c| parse::modules_check(&c.body))
    {
        return Judged::fail(e.to_string());
    }
    let modules = match s.need("modules").and_then(|m| parse::modules(&m.body)) {
        Ok(m) => m,
        Err(e) => return Judged::fail(e.to_string()),
    };
    let is = modules.contains(&image.to_lowercase());
    match (is, want) {
        (true, true) | (false, false) => Judged::pass(ok_text),
        (false, true) => Judged::fail(format!(
            "{image} is not in the loaded kernel modules although the service says RUNNING"
        )),
        (true, false) => Judged::fail(format!(
            "{image} is still in the loaded kernel modules after the service stopped"
        )),
    }
}

/// Judges `checks` (sections `check-1`...) into `j`.
pub(super) fn run_checks(j: &mut Judged, checks: &[probe::Check], s: &Sections) {
    let mut failed = Vec::new();
    for (i, c) in checks.iter().enumerate() {
        let v = probe::judge(c, s, &format!("check-{}", i + 1));
        if !v.ok {
            failed.push(format!(
                "{}: expected {}, observed {}",
                v.name, v.expected, v.observed
            ));
        }
        j.probes.push(v);
    }
    if !checks.is_empty() {
        if failed.is_empty() {
            let _ = write!(j.detail, "; {} check(s) passed", checks.len());
        } else {
            j.ok = false;
            j.detail = format!(
                "{} of {} check(s) failed: {}",
                failed.len(),
                checks.len(),
                failed.join("; ")
            );
        }
    }
}

pub(super) fn code_text(code: Option<i32>) -> String {
    code.map_or_else(|| "none: killed".to_owned(), |c| c.to_string())
}

pub(super) fn notes_suffix(s: &Sections) -> String {
    if s.notes.is_empty() {
        String::new()
    } else {
        format!(" ({})", s.notes.join("; "))
    }
}

pub(super) fn query(s: &Sections, name: &str) -> Result<ServiceStatus, String> {
    let q = s.need(name).map_err(|e| e.to_string())?;
    parse::service(&q.body).map_err(|e| e.to_string())
}

/// `sc start failed: exit code 577 (ERROR_INVALID_IMAGE_HASH: ...)` and the program's words.
pub(super) fn win32_failure(what: &str, sec: &parse::Section) -> String {
    let code = sec.exit.unwrap_or(-1);
    let hint = parse::win32_hint(code).map_or(String::new(), |h| format!(" ({h})"));
    let said = tail(sec.body.trim(), 3).replace('\n', " ");
    format!("{what} failed: exit code {code}{hint}: {said}")
}

/// Preflight: (detail, test signing off and to be enabled, boot time) or why it fails.
pub(super) fn judge_preflight(
    s: &Sections,
    arch: crate::base::layout::Arch,
    may_enable: bool,
) -> Result<(String, bool, String), String> {
    let v = |n: &str| s.value(n).map_err(|e| e.to_string());
    if v("admin")? != "True" {
        return Err(
            "the account is not an administrator, or its token is filtered: deploy with an \
             administrator account (its key in C:\\ProgramData\\ssh\\administrators_authorized_keys)"
                .to_owned(),
        );
    }
    let vm_arch = match v("arch")?.to_ascii_uppercase().as_str() {
        "AMD64" => crate::base::layout::Arch::X64,
        "ARM64" => crate::base::layout::Arch::Arm64,
        other => {
            return Err(format!(
                "the VM's architecture is {other}: the drivers are built for x64 and arm64"
            ));
        }
    };
    if vm_arch != arch {
        return Err(format!(
            "the VM is {vm_arch}, the packages are {arch}: deploy with --arch {vm_arch}"
        ));
    }
    let boot = v("boot")?.to_owned();
    // This boot's options, from the registry (SystemStartOptions: the loader's options, upper
    // case, not localised): the one that says whether test-signed drivers load now. An ASCII
    // comparison, so that no culture's case rules (Turkish dotless i) apply.
    let effective = v("start-options")?
        .split_whitespace()
        .any(|o| o.eq_ignore_ascii_case("TESTSIGNING"));
    let secure_boot = v("secure-boot")?.eq_ignore_ascii_case("true");
    let dir = v("remote-dir")?;
    if dir != "ok" {
        return Err(format!("cannot prepare the folder on the VM: {dir}"));
    }
    let os = v("os")?.to_owned();
    let dbg = match v("debug-print-filter")? {
        "" => {
            "DbgPrint output filtered (no Debug Print Filter\\DEFAULT: see README, Deploy to a VM)"
                .to_owned()
        }
        m => format!("Debug Print Filter DEFAULT = {m}"),
    };
    let base = format!("administrator; {vm_arch}; Windows {os}; {dbg}");
    if effective {
        return Ok((format!("{base}; test signing on"), false, boot));
    }
    // Only now is the boot configuration needed: on in it (a restart pending), or off.
    let configured = parse::bcd_testsigning(v("bcd-testsigning")?).map_err(|e| e.to_string())?;
    let state = match configured {
        TestSigning::On => "on in the boot configuration but not in this boot (restart pending)",
        TestSigning::Off => "off",
    };
    if !may_enable {
        return Err(format!(
            "test signing is {state}: deploy with --enable-testsigning, or on the VM run \
             `bcdedit /set testsigning on` and restart it"
        ));
    }
    if secure_boot && configured == TestSigning::Off {
        return Err(
            "test signing is off and Secure Boot is on, which forbids turning it on: turn Secure \
             Boot off in the VM's firmware settings (Hyper-V: Set-VMFirmware VMNAME \
             -EnableSecureBoot Off), then deploy again"
                .to_owned(),
        );
    }
    let bitlocker = match v("bitlocker")? {
        "0" | "none" => String::new(),
        "1" => "; BitLocker protects the system volume: suspended for the one restart".to_owned(),
        other => format!(
            "; BitLocker state `{other}`: if the VM starts in BitLocker recovery, suspend \
             BitLocker (Suspend-BitLocker -RebootCount 1) and deploy again"
        ),
    };
    Ok((
        format!("{base}; test signing {state}: turning it on (--enable-testsigning){bitlocker}"),
        true,
        boot,
    ))
}

pub(super) fn judge_copy(
    s: &Sections,
    out: &Output,
    expected: &[(String, Vec<(String, String)>)],
) -> Judged {
    if out.code != Some(0) {
        return Judged::fail(format!(
            "hashing the copied files failed (exit code {})",
            code_text(out.code)
        ));
    }
    let mut bad = Vec::new();
    let mut count = 0;
    for (driver, files) in expected {
        let got = match s
            .need(&format!("files {driver}"))
            .and_then(|sec| parse::hashes(&sec.body))
        {
            Ok(h) => h,
            Err(e) => return Judged::fail(e.to_string()),
        };
        for (name, sha) in files {
            count += 1;
            match got.iter().find(|(n, _)| n == name) {
                Some((_, h)) if h == sha => {}
                Some(_) => bad.push(format!("{driver}\\{name} differs")),
                None => bad.push(format!("{driver}\\{name} is missing")),
            }
        }
    }
    if bad.is_empty() {
        Judged::pass(format!("{count} file(s), each with the manifest's SHA-256"))
    } else {
        Judged::fail(bad.join("; "))
    }
}

pub(super) fn judge_trust(s: &Sections, out: &Output, thumb: &str) -> Judged {
    if let Some(add) = s.list.iter().find(|x| x.name.starts_with("addstore")) {
        return Judged::fail(format!(
            "certutil -{} failed (exit code {}): {}",
            add.name,
            code_text(add.exit),
            add.body.trim()
        ));
    }
    if out.code != Some(0) {
        return Judged::fail(format!("failed (exit code {})", code_text(out.code)));
    }
    for store in ["Root", "TrustedPublisher"] {
        let listing = match s.need(&format!("store {store}")) {
            Ok(l) => l,
            Err(e) => return Judged::fail(e.to_string()),
        };
        // Test-Path on the Cert: drive: the certificate, by thumbprint, without reading
        // certutil's localised listing.
        match listing.body.trim() {
            "present" => {}
            "absent" => {
                return Judged::fail(format!(
                    "{thumb} is not in LocalMachine\\{store} after adding it"
                ));
            }
            other => {
                return Judged::fail(format!(
                    "LocalMachine\\{store}: `{other}` is not present/absent"
                ));
            }
        }
    }
    Judged::pass(format!("in Root and TrustedPublisher{}", notes_suffix(s)))
}
