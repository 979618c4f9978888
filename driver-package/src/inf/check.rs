//! The checker: INF text against the primitive-driver form (the rules are listed in the parent
//! module's documentation), each problem with its line.

use super::{Entry, Inf, Problem, arch_decoration, parse, problem, replace_arch, strip_comment};
use crate::Arch;

/// What the checker needs to know.
#[derive(Clone, Copy, Debug)]
pub struct Expect<'a> {
    /// The driver's package name (`<name>.sys`, `<name>.cat`).
    pub name: &'a str,
    /// The architecture the INF is for.
    pub arch: Arch,
    /// `DriverVer` must be present and well-formed (a stamped `.inf`; an `.inx` may leave it to
    /// stamping).
    pub stamped: bool,
}

/// Checks INF text (with `$ARCH$` still in it, for an `.inx`: it is replaced first, keeping the
/// lines) against the primitive-driver form.
#[allow(clippy::too_many_lines)]
#[must_use]
pub fn check(text: &str, expect: &Expect<'_>) -> Vec<Problem> {
    let text = replace_arch(text, expect.arch);
    let (inf, mut problems) = parse(&text);
    let mut p = |line: usize, message: String| problems.push(problem(line, message));
    let sys = format!("{}.sys", expect.name);
    let decorated = format!("DefaultInstall.NT{}", arch_decoration(expect.arch));

    // [Version]
    match inf.section("Version") {
        None => p(
            1,
            "there is no [Version] section: every INF starts with one".into(),
        ),
        Some(v) => {
            let need = |key: &str, example: &str| -> Option<String> {
                match v.get(key) {
                    Some(e) if !e.value().is_empty() => None,
                    _ => Some(format!(
                        "[Version] has no {key}: add `{key} = {example}` (a primitive driver's \
                         [Version] must be complete)"
                    )),
                }
            };
            for (key, example) in [
                ("Signature", "\"$WINDOWS NT$\""),
                ("Class", "System"),
                ("ClassGuid", "{4d36e97d-e325-11ce-bfc1-08002be10318}"),
                ("Provider", "%ProviderName%"),
                ("CatalogFile", &format!("{}.cat", expect.name)),
                ("PnpLockdown", "1"),
            ] {
                if let Some(m) = need(key, example) {
                    p(v.line, m);
                }
            }
            if let Some(e) = v.get("Signature")
                && !e.value().is_empty()
                && !e.value().eq_ignore_ascii_case("$WINDOWS NT$")
            {
                p(
                    e.line,
                    format!("Signature is `{}`: use \"$WINDOWS NT$\"", e.value()),
                );
            }
            if let Some(e) = v.get("ClassGuid")
                && !e.value().is_empty()
                && !is_guid(e.value())
            {
                p(
                    e.line,
                    format!(
                        "ClassGuid `{}` is not a GUID in braces ({{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}})",
                        e.value()
                    ),
                );
            }
            if let Some(e) = v.get("CatalogFile")
                && !e.value().is_empty()
                && !e
                    .value()
                    .eq_ignore_ascii_case(&format!("{}.cat", expect.name))
            {
                p(
                    e.line,
                    format!(
                        "CatalogFile is `{}`, but the package's catalog is {}.cat",
                        e.value(),
                        expect.name
                    ),
                );
            }
            if let Some(e) = v.get("PnpLockdown")
                && !e.value().is_empty()
                && e.value() != "1"
            {
                p(
                    e.line,
                    "PnpLockdown must be 1 (the driver's files are protected)".into(),
                );
            }
            match v.get("DriverVer") {
                Some(e)
                    if !is_driver_ver(&e.fields) && (expect.stamped || !e.value().is_empty()) =>
                {
                    p(
                        e.line,
                        format!(
                            "DriverVer `{}` is not mm/dd/yyyy,w.x.y.z",
                            e.fields.join(",")
                        ),
                    );
                }
                None if expect.stamped => p(v.line, "[Version] has no DriverVer".into()),
                _ => {}
            }
        }
    }

    // Primitive driver form.
    for s in &inf.sections {
        let lower = s.name.to_ascii_lowercase();
        if lower == "manufacturer" {
            p(
                s.line,
                "[Manufacturer] makes this a device INF; a primitive (non-PnP) driver has \
                       none: install with [DefaultInstall.NT$ARCH$] instead (infverif 1297)"
                    .into(),
            );
        } else if lower == "defaultinstall" || lower == "defaultinstall.services" {
            p(
                s.line,
                format!(
                    "[{}] is not architecture-decorated: a primitive driver's install section is \
                 [DefaultInstall.NT$ARCH$] (infverif 1420/1421)",
                    s.name
                ),
            );
        } else if lower == "defaultinstall.nt" || lower.starts_with("defaultinstall.nt.") {
            p(
                s.line,
                format!(
                    "[{}] has no architecture: write [DefaultInstall.NT$ARCH$]",
                    s.name
                ),
            );
        } else if lower == "defaultuninstall" || lower.starts_with("defaultuninstall.") {
            let legacy = s.get("LegacyUninstall").is_some_and(|e| e.value() == "1");
            if lower == "defaultuninstall" || !legacy {
                p(
                    s.line,
                    format!(
                        "[{}]: a primitive driver has no uninstall section (Windows uninstalls the \
                     package); remove it, or keep only a decorated one with LegacyUninstall=1 \
                     for older Windows",
                        s.name
                    ),
                );
            }
        }
    }
    let install = inf.section(&decorated);
    if install.is_none() {
        p(
            1,
            format!(
                "there is no [{decorated}] section: a primitive driver installs with an \
             architecture-decorated [DefaultInstall.NT$ARCH$] (infverif 1423)"
            ),
        );
    }

    // Files: where they come from and where they go.
    let disks: Vec<&str> = inf
        .section("SourceDisksNames")
        .map(|s| s.entries.iter().filter_map(|e| e.key.as_deref()).collect())
        .unwrap_or_default();
    match inf.section("SourceDisksNames") {
        None => p(
            1,
            "there is no [SourceDisksNames] section: add `1 = %DiskName%,,,\"\"`".into(),
        ),
        Some(s) if disks.is_empty() => p(
            s.line,
            "[SourceDisksNames] lists no disk: add `1 = %DiskName%,,,\"\"`".into(),
        ),
        Some(_) => {}
    }
    let mut source_files: Vec<String> = Vec::new();
    match inf.section("SourceDisksFiles") {
        None => p(
            1,
            format!("there is no [SourceDisksFiles] section: add it with `{sys} = 1,,`"),
        ),
        Some(s) => {
            for e in &s.entries {
                let file = e.key.clone().unwrap_or_else(|| e.value().to_owned());
                let disk = if e.key.is_some() { e.value() } else { "" };
                if !disks.is_empty() && !disks.contains(&disk) {
                    p(
                        e.line,
                        format!(
                            "{file} is on disk `{disk}`, which [SourceDisksNames] does not list"
                        ),
                    );
                }
                source_files.push(file.to_ascii_lowercase());
            }
            if !source_files.contains(&sys.to_ascii_lowercase()) {
                p(
                    s.line,
                    format!("[SourceDisksFiles] does not list the driver image: add `{sys} = 1,,`"),
                );
            }
        }
    }
    match inf.section("DestinationDirs") {
        None => p(
            1,
            "there is no [DestinationDirs] section: add it with `DefaultDestDir = 13`".into(),
        ),
        Some(s) => {
            for e in &s.entries {
                if e.value() != "13" {
                    p(
                        e.line,
                        format!(
                            "DIRID {} in [DestinationDirs]: a primitive driver installs its files \
                         into the driver store, DIRID 13 (12 is System32\\drivers)",
                            if e.value().is_empty() {
                                "(none)"
                            } else {
                                e.value()
                            }
                        ),
                    );
                }
            }
        }
    }
    if let Some(install) = install {
        let mut copied: Vec<String> = Vec::new();
        let copy_files: Vec<&Entry> = install.all("CopyFiles").collect();
        if copy_files.is_empty() {
            p(
                install.line,
                format!(
                    "[{decorated}] has no CopyFiles: add `CopyFiles = <a section listing {sys}>`"
                ),
            );
        }
        for e in copy_files {
            for target in &e.fields {
                if let Some(file) = target.strip_prefix('@') {
                    copied.push(file.to_ascii_lowercase());
                } else if let Some(list) = inf.section(target) {
                    copied.extend(list.entries.iter().map(|f| {
                        f.key
                            .clone()
                            .unwrap_or_else(|| f.value().to_owned())
                            .to_ascii_lowercase()
                    }));
                } else {
                    p(
                        e.line,
                        format!("CopyFiles names [{target}], which does not exist"),
                    );
                }
            }
        }
        for file in &copied {
            if !source_files.is_empty() && !source_files.contains(file) {
                p(
                    install.line,
                    format!("{file} is copied but not listed in [SourceDisksFiles]"),
                );
            }
        }
        if !copied.contains(&sys.to_ascii_lowercase()) {
            p(
                install.line,
                format!("[{decorated}] does not copy the driver image {sys}"),
            );
        }
    }
    let services_name = format!("{decorated}.Services");
    match inf.section(&services_name) {
        None => p(
            1,
            format!(
                "there is no [{services_name}] section: a kernel-service driver adds its service \
             there (`AddService = Name,0,Name.Service`)"
            ),
        ),
        Some(s) => {
            let adds: Vec<&Entry> = s.all("AddService").collect();
            if adds.is_empty() {
                p(s.line, format!("[{services_name}] has no AddService"));
            }
            for e in adds {
                check_service(&inf, e, &sys, &mut p);
            }
        }
    }

    // %strings% and $tokens$.
    let strings: Vec<String> = inf
        .section("Strings")
        .map(|s| {
            s.entries
                .iter()
                .filter_map(|e| e.key.as_ref().map(|k| k.to_ascii_lowercase()))
                .collect()
        })
        .unwrap_or_default();
    for (index, raw) in text.lines().enumerate() {
        let Ok(content) = strip_comment(raw) else {
            continue;
        };
        for token in percent_tokens(content) {
            if token.is_empty() || token.chars().all(|c| c.is_ascii_digit()) {
                continue; // %% or a DIRID such as %13%
            }
            if !strings.contains(&token.to_ascii_lowercase()) {
                p(index + 1, format!("%{token}% is not defined in [Strings]"));
            }
        }
        for token in dollar_tokens(content) {
            if !token.eq_ignore_ascii_case("WINDOWS NT") {
                p(
                    index + 1,
                    format!(
                        "${token}$ is not replaced by stamping (only $ARCH$ is): write the value"
                    ),
                );
            }
        }
    }
    problems.sort_by_key(|p| p.line);
    problems
}

fn check_service(inf: &Inf, add: &Entry, sys: &str, p: &mut impl FnMut(usize, String)) {
    let (name, section) = (add.value(), add.fields.get(2).map_or("", String::as_str));
    if name.is_empty() || section.is_empty() {
        p(
            add.line,
            "AddService needs `ServiceName,flags,ServiceInstallSection`".into(),
        );
        return;
    }
    let Some(s) = inf.section(section) else {
        p(
            add.line,
            format!("AddService names [{section}], which does not exist"),
        );
        return;
    };
    let number = |key: &str| s.get(key).map(|e| (e.line, e.value().parse::<u32>().ok()));
    match number("ServiceType") {
        Some((_, Some(1))) => {}
        Some((line, _)) => p(line, "ServiceType must be 1 (SERVICE_KERNEL_DRIVER)".into()),
        None => p(
            s.line,
            format!("[{section}] has no ServiceType: add `ServiceType = 1`"),
        ),
    }
    match number("StartType") {
        Some((_, Some(0..=4))) => {}
        Some((line, _)) => p(
            line,
            "StartType must be 0-4 (3 = SERVICE_DEMAND_START)".into(),
        ),
        None => p(
            s.line,
            format!("[{section}] has no StartType: add `StartType = 3`"),
        ),
    }
    match number("ErrorControl") {
        Some((_, Some(0..=3))) => {}
        Some((line, _)) => p(
            line,
            "ErrorControl must be 0-3 (1 = SERVICE_ERROR_NORMAL)".into(),
        ),
        None => p(
            s.line,
            format!("[{section}] has no ErrorControl: add `ErrorControl = 1`"),
        ),
    }
    let want = format!("%13%\\{sys}");
    match s.get("ServiceBinary") {
        Some(e) if e.value().eq_ignore_ascii_case(&want) => {}
        Some(e) if !e.value().starts_with("%13%") => p(
            e.line,
            format!(
                "ServiceBinary `{}` is not in the driver store: use `{want}` (DIRID 13; %12% is \
             System32\\drivers)",
                e.value()
            ),
        ),
        Some(e) => p(
            e.line,
            format!(
                "ServiceBinary `{}` is not the driver image: use `{want}`",
                e.value()
            ),
        ),
        None => p(
            s.line,
            format!("[{section}] has no ServiceBinary: add `ServiceBinary = {want}`"),
        ),
    }
}

/// The names between `%` pairs (`%%` gives an empty one).
pub(super) fn percent_tokens(line: &str) -> Vec<&str> {
    delimited(line, '%')
}

/// The names between `$` pairs.
fn dollar_tokens(line: &str) -> Vec<&str> {
    delimited(line, '$')
}

/// The texts between pairs of `c`.
fn delimited(line: &str, c: char) -> Vec<&str> {
    let parts: Vec<&str> = line.split(c).collect();
    parts
        .iter()
        .skip(1)
        .step_by(2)
        .take((parts.len() - 1) / 2)
        .copied()
        .collect()
}

fn is_guid(s: &str) -> bool {
    let Some(inner) = s.strip_prefix('{').and_then(|r| r.strip_suffix('}')) else {
        return false;
    };
    let groups: Vec<&str> = inner.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

fn is_driver_ver(fields: &[String]) -> bool {
    let [date, version] = fields else {
        return false;
    };
    let d: Vec<&str> = date.split('/').collect();
    let v: Vec<&str> = version.split('.').collect();
    let num = |s: &str, len: usize| s.len() == len && s.chars().all(|c| c.is_ascii_digit());
    d.len() == 3
        && num(d[0], 2)
        && num(d[1], 2)
        && num(d[2], 4)
        && v.len() == 4
        && v.iter().all(|p| p.parse::<u16>().is_ok())
}
