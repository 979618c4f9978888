//! What the plan needs of a driver package: its manifest, its INF's service, its probe.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::probe::{self, Probe};
use crate::base::error::{Context, Result, bail};
use crate::base::layout::Arch;
use driver_package::inf;

/// A registry value the INF's service section writes (`AddReg`, `HKR` lines).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegValue {
    /// The subkey under the service key (`Parameters`), or "".
    pub subkey: String,
    /// The value name.
    pub name: String,
    /// `String` or `DWord` (New-ItemProperty's -PropertyType).
    pub kind: &'static str,
    /// The data as written in the INF.
    pub data: String,
}

/// What the plan needs of one driver package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Package {
    /// The driver (package name, image `NAME.sys`).
    pub driver: String,
    /// The service name (the INF's AddService).
    pub service: String,
    /// The service's display name (the INF's DisplayName), which Service Control Manager events
    /// use.
    pub display_name: String,
    /// The package folder here.
    pub dir: PathBuf,
    /// Each file of the package and its SHA-256 (upper-case hex), from the manifest.
    pub files: Vec<(String, String)>,
    /// The signer's SHA-1 thumbprint.
    pub thumbprint: String,
    /// The certificate file in the package.
    pub cert_file: String,
    /// The registry values of the service (for `sc` installs).
    pub service_values: Vec<RegValue>,
    /// The probe (`deploy.toml`).
    pub probe: Probe,
}

impl Package {
    /// Reads the package in `dir` (its manifest and INF) and the driver's probe in `driver_dir`.
    pub fn read(dir: &Path, driver_dir: &Path, arch: Arch) -> Result<Self> {
        let manifest_path = dir.join(driver_package::package::MANIFEST);
        let manifest: Value = serde_json::from_slice(
            &std::fs::read(&manifest_path)
                .with_context(|| format!("reading {}", manifest_path.display()))?,
        )
        .with_context(|| format!("reading {}", manifest_path.display()))?;
        let s = |p: &str| {
            manifest
                .pointer(p)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let (Some(driver), Some(thumbprint)) = (s("/driver"), s("/signer/thumbprint_sha1")) else {
            bail!(
                "{}: no driver or signer thumbprint",
                manifest_path.display()
            );
        };
        if s("/arch").as_deref() != Some(arch.name()) {
            bail!(
                "{} is a package for {}, not {arch}",
                dir.display(),
                s("/arch").unwrap_or_default()
            );
        }
        let mut files: Vec<(String, String)> = manifest
            .pointer("/files")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| {
                        Some((k.clone(), v.get("sha256")?.as_str()?.to_ascii_uppercase()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        let inf_path = dir.join(format!("{driver}.inf"));
        let bytes =
            std::fs::read(&inf_path).with_context(|| format!("reading {}", inf_path.display()))?;
        let text = inf::decode(&bytes).map(|t| t.0).map_err(|p| {
            crate::base::error::Error::new(format!("{}: {}", inf_path.display(), p.message))
        })?;
        let (service, display_name, service_values) = service_from_inf(&text, arch)
            .map_err(|e| crate::base::error::Error::new(format!("{}: {e}", inf_path.display())))?;
        Ok(Self {
            driver,
            service,
            display_name,
            dir: dir.to_path_buf(),
            files,
            thumbprint: thumbprint.to_ascii_uppercase(),
            cert_file: driver_package::cert::CERT_FILE.to_owned(),
            service_values,
            probe: probe::load(driver_dir)?,
        })
    }

    pub(crate) fn image(&self) -> String {
        format!("{}.sys", self.driver)
    }
}

/// The service name, display name and registry values of the INF's service section.
pub fn service_from_inf(text: &str, arch: Arch) -> Result<(String, String, Vec<RegValue>)> {
    let (inf, _) = inf::parse(text);
    let services = format!("DefaultInstall.NT{}.Services", inf::arch_decoration(arch));
    let Some(add) = inf.value(&services, "AddService") else {
        bail!("no AddService in [{services}]");
    };
    let service = add.value().to_owned();
    let Some(section) = add.fields.get(2) else {
        bail!("AddService = {service} names no service section");
    };
    let string = |v: &str| -> String {
        match v.strip_prefix('%').and_then(|v| v.strip_suffix('%')) {
            Some(key) => inf
                .value("Strings", key)
                .map_or_else(|| v.to_owned(), |e| e.value().to_owned()),
            None => v.to_owned(),
        }
    };
    let display_name = inf
        .value(section, "DisplayName")
        .map_or_else(|| service.clone(), |e| string(e.value()));
    let mut values = Vec::new();
    for addreg in inf
        .sections
        .iter()
        .filter(|s| s.name.eq_ignore_ascii_case(section))
    {
        for entry in addreg.all("AddReg") {
            for name in &entry.fields {
                let Some(reg) = inf.section(name) else {
                    bail!("[{section}] AddReg names [{name}], which is missing");
                };
                for line in reg.entries.iter().filter(|e| e.key.is_none()) {
                    let f = &line.fields;
                    if !f.first().is_some_and(|r| r.eq_ignore_ascii_case("HKR")) || f.len() < 5 {
                        bail!(
                            "line {}: only `HKR,subkey,name,flags,value` lines are applied by an \
                             sc.exe install; use --install inf",
                            line.line
                        );
                    }
                    let flags = u32::from_str_radix(
                        f[3].trim_start_matches("0x").trim_start_matches("0X"),
                        16,
                    )
                    .unwrap_or(u32::MAX);
                    let kind = match flags {
                        0 => "String",
                        0x0001_0001 => "DWord",
                        _ => bail!(
                            "line {}: AddReg flags {} are not applied by an sc.exe install (only \
                             0x00000000 REG_SZ and 0x00010001 REG_DWORD); use --install inf",
                            line.line,
                            f[3]
                        ),
                    };
                    values.push(RegValue {
                        subkey: f[1].clone(),
                        name: f[2].clone(),
                        kind,
                        data: string(&f[4]),
                    });
                }
            }
        }
    }
    Ok((service, display_name, values))
}
