//! The drivers of the workspace, as `cargo metadata` describes them.
//!
//! A driver is a workspace package with a `[package.metadata.driver]` table:
//!
//! ```toml
//! [package.metadata.driver]
//! model = "wdm"                        # informative
//! size-budget = 8192                   # bytes of the release x64 .sys (`cargo xtask bench`)
//! callback-instruction-budget = 60     # instructions per callback invocation (`bench`)
//! fixture = true                       # a negative test: built and emulated by `test` only
//! # more images of the same crate, each built with its features and treated as a driver of its
//! # own name (placed, linted, packaged from `<name>.inx`, emulated with the folder's scenario)
//! variants = [{ name = "wfp-callout-wdm", features = ["wdm"] }]
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::base::error::{Context, Error, Result, bail};
use crate::base::layout::Layout;

/// One driver package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Driver {
    /// The package name; also the image name (`NAME.sys`).
    pub name: String,
    /// The package version (Cargo.toml), stamped into the INF's `DriverVer`.
    pub version: String,
    /// The folder holding its `Cargo.toml` (and `scenario.toml`).
    pub dir: PathBuf,
    /// A negative-test fixture: left out of the default driver lists.
    pub fixture: bool,
    /// Budget for the release x64 image size in bytes.
    pub size_budget: Option<u64>,
    /// Budget for the instructions one callback invocation executes.
    pub callback_instruction_budget: Option<u64>,
    /// For a variant: the package it is built from and the features it is built with.
    pub variant: Option<Variant>,
}

/// A variant of a driver package: the same crate built with other features, under its own name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variant {
    /// The cargo package the variant is built from.
    pub package: String,
    /// The cargo features it is built with.
    pub features: Vec<String>,
}

impl Driver {
    /// The cargo package to build (`-p`): the driver's own name, or a variant's package.
    pub fn package(&self) -> &str {
        self.variant.as_ref().map_or(&self.name, |v| &v.package)
    }

    /// The cargo features to build with (none for a plain driver).
    pub fn features(&self) -> &[String] {
        self.variant.as_ref().map_or(&[], |v| &v.features)
    }

    /// The emulation scenario: `<driver dir>/scenario.toml`.
    pub fn scenario(&self) -> PathBuf {
        self.dir.join("scenario.toml")
    }

    /// The INF template: `<driver dir>/<name>.inx`.
    pub fn inx(&self) -> PathBuf {
        self.dir.join(format!("{}.inx", self.name))
    }
}

/// The workspace: its root, its target directory and its drivers.
#[derive(Clone, Debug)]
pub struct Workspace {
    /// The folder of the workspace `Cargo.toml`.
    pub root: PathBuf,
    /// Where every path of [`Layout`] lives.
    pub layout: Layout,
    /// Every driver package, fixtures included, in `cargo metadata` order.
    pub drivers: Vec<Driver>,
}

/// `cargo metadata --offline --no-deps --format-version 1` of the workspace in `dir`: its
/// members, root and target directory, without resolving dependencies.
///
/// # Return value
///
/// The parsed output; an error with cargo's own message when it fails.
pub fn metadata(dir: &Path) -> Result<Value> {
    let out = Command::new(cargo())
        .args([
            "metadata",
            "--offline",
            "--no-deps",
            "--format-version",
            "1",
        ])
        .current_dir(dir)
        .output()
        .context("running `cargo metadata` (is cargo on PATH?)")?;
    if !out.status.success() {
        bail!(
            "`cargo metadata` failed in {}:\n{}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    serde_json::from_slice(&out.stdout).context("reading `cargo metadata` output")
}

impl Workspace {
    /// Reads the workspace that contains xtask with `cargo metadata`.
    pub fn load() -> Result<Self> {
        Self::from_metadata(&metadata(&project_root())?)
    }

    /// Builds the workspace from `cargo metadata --format-version 1` output.
    pub fn from_metadata(json: &Value) -> Result<Self> {
        let str_field = |v: &Value, key: &str| -> Result<String> {
            v.get(key)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| Error::new(format!("`cargo metadata` output has no `{key}`")))
        };
        let root = PathBuf::from(str_field(json, "workspace_root")?);
        let target_dir = PathBuf::from(str_field(json, "target_directory")?);
        let members: Vec<&str> = json
            .get("workspace_members")
            .and_then(Value::as_array)
            .map(|m| m.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut drivers = Vec::new();
        for package in json
            .get("packages")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(meta) = package.pointer("/metadata/driver") else {
                continue;
            };
            let id = package
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !members.is_empty() && !members.contains(&id) {
                continue;
            }
            let name = str_field(package, "name")?;
            let manifest = PathBuf::from(str_field(package, "manifest_path")?);
            let dir = manifest.parent().map(Path::to_path_buf).unwrap_or_default();
            let budget = |key: &str| -> Result<Option<u64>> {
                match meta.get(key) {
                    None => Ok(None),
                    Some(v) => match v.as_u64() {
                        Some(n) => Ok(Some(n)),
                        None => bail!(
                            "{}: [package.metadata.driver] {key} = {v} is not a whole number",
                            manifest.display()
                        ),
                    },
                }
            };
            let fixture = match meta.get("fixture") {
                None => false,
                Some(Value::Bool(b)) => *b,
                Some(v) => bail!(
                    "{}: [package.metadata.driver] fixture = {v} must be true or false",
                    manifest.display()
                ),
            };
            let driver = Driver {
                size_budget: budget("size-budget")?,
                callback_instruction_budget: budget("callback-instruction-budget")?,
                // Always present in real `cargo metadata` output.
                version: package
                    .get("version")
                    .and_then(Value::as_str)
                    .unwrap_or("0.0.0")
                    .to_owned(),
                name,
                dir,
                fixture,
                variant: None,
            };
            let variants = variants(meta, &driver, &manifest)?;
            drivers.push(driver);
            drivers.extend(variants);
        }
        Ok(Self {
            root,
            layout: Layout::new(target_dir),
            drivers,
        })
    }

    /// The drivers named in `names`, or every driver that is not a fixture when `names` is empty.
    /// A name that is not a driver is an error listing the drivers there are.
    pub fn select(&self, names: &[String]) -> Result<Vec<&Driver>> {
        if names.is_empty() {
            return Ok(self.drivers.iter().filter(|d| !d.fixture).collect());
        }
        let mut selected: Vec<&Driver> = Vec::new();
        for name in names {
            match self.drivers.iter().find(|d| d.name == *name) {
                Some(d) if !selected.contains(&d) => selected.push(d),
                Some(_) => {}
                None => bail!("unknown driver `{name}`: {}", self.known_drivers()),
            }
        }
        Ok(selected)
    }

    /// The fixture packages (negative tests).
    pub fn fixtures(&self) -> Vec<&Driver> {
        self.drivers.iter().filter(|d| d.fixture).collect()
    }

    /// "the drivers are a, b (fixtures: c)" for error messages.
    fn known_drivers(&self) -> String {
        let names = |fixture: bool| -> Vec<&str> {
            self.drivers
                .iter()
                .filter(|d| d.fixture == fixture)
                .map(|d| d.name.as_str())
                .collect()
        };
        let (drivers, fixtures) = (names(false), names(true));
        let mut s = if drivers.is_empty() {
            "the workspace has no driver packages (none has [package.metadata.driver])".to_owned()
        } else {
            format!("the drivers are {}", drivers.join(", "))
        };
        if !fixtures.is_empty() {
            s = format!("{s} (test fixtures: {})", fixtures.join(", "));
        }
        s
    }
}

/// The `variants` of a driver's metadata, each a driver of its own name built from `base`'s package.
fn variants(meta: &Value, base: &Driver, manifest: &Path) -> Result<Vec<Driver>> {
    let Some(list) = meta.get("variants") else {
        return Ok(Vec::new());
    };
    let bad = |what: &str| -> Error {
        Error::new(format!(
            "{}: [package.metadata.driver] variants: {what} (expected \
             variants = [{{ name = \"NAME\", features = [\"FEATURE\"] }}])",
            manifest.display()
        ))
    };
    let Some(list) = list.as_array() else {
        return Err(bad("not a list"));
    };
    let mut out = Vec::new();
    for v in list {
        let Some(name) = v.get("name").and_then(Value::as_str) else {
            return Err(bad("a variant without a name"));
        };
        let mut features = Vec::new();
        for f in v
            .get("features")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice)
        {
            let Some(f) = f.as_str() else {
                return Err(bad("features must be strings"));
            };
            features.push(f.to_owned());
        }
        let budget = |key: &str, inherited: Option<u64>| match v.get(key) {
            None => Ok(inherited),
            Some(b) => b
                .as_u64()
                .map(Some)
                .ok_or_else(|| bad(&format!("{key} = {b} is not a whole number"))),
        };
        out.push(Driver {
            name: name.to_owned(),
            size_budget: budget("size-budget", base.size_budget)?,
            callback_instruction_budget: budget(
                "callback-instruction-budget",
                base.callback_instruction_budget,
            )?,
            variant: Some(Variant {
                package: base.name.clone(),
                features,
            }),
            ..base.clone()
        });
    }
    Ok(out)
}

/// The workspace root: the parent of xtask's own folder.
pub fn project_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// The cargo that runs us (`$CARGO`), or `cargo` from PATH.
pub fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn metadata() -> Value {
        json!({
            "workspace_root": "/w",
            "target_directory": "/w/target",
            "workspace_members": ["path+file:///w/common#0.1.0", "path+file:///w/ex-callback#0.1.0",
                                  "path+file:///w/xtask/fixtures/leaky#0.1.0", "path+file:///w/cm-filter#0.1.0",
                                  "path+file:///w/wfp#0.1.0"],
            "packages": [
                {"id": "path+file:///w/common#0.1.0", "name": "common", "manifest_path": "/w/common/Cargo.toml", "metadata": null},
                {"id": "path+file:///w/ex-callback#0.1.0", "name": "ex-callback", "manifest_path": "/w/ex-callback/Cargo.toml",
                 "metadata": {"driver": {"model": "wdm", "size-budget": 8192, "callback-instruction-budget": 60}}},
                {"id": "path+file:///w/xtask/fixtures/leaky#0.1.0", "name": "leaky", "manifest_path": "/w/xtask/fixtures/leaky/Cargo.toml",
                 "metadata": {"driver": {"fixture": true}}},
                {"id": "path+file:///w/cm-filter#0.1.0", "name": "cm-filter", "manifest_path": "/w/cm-filter/Cargo.toml",
                 "metadata": {"driver": {"model": "wdm"}, "other": 1}},
                {"id": "path+file:///w/wfp#0.1.0", "name": "wfp", "manifest_path": "/w/wfp/Cargo.toml",
                 "metadata": {"driver": {"model": "kmdf", "size-budget": 24576,
                                         "variants": [{"name": "wfp-wdm", "features": ["wdm"], "size-budget": 20000}]}}}
            ]
        })
    }

    #[test]
    fn drivers_are_the_packages_with_driver_metadata() {
        let ws = Workspace::from_metadata(&metadata()).unwrap();
        assert_eq!(ws.root, Path::new("/w"));
        assert_eq!(ws.layout.target_dir, Path::new("/w/target"));
        let names: Vec<_> = ws.drivers.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(
            names,
            ["ex-callback", "leaky", "cm-filter", "wfp", "wfp-wdm"]
        );
        let ex = &ws.drivers[0];
        assert_eq!(ex.dir, Path::new("/w/ex-callback"));
        assert_eq!(ex.scenario(), Path::new("/w/ex-callback/scenario.toml"));
        assert_eq!(
            (ex.size_budget, ex.callback_instruction_budget),
            (Some(8192), Some(60))
        );
        assert!(!ex.fixture && ws.drivers[1].fixture);
        assert_eq!(ws.drivers[2].size_budget, None);
    }

    #[test]
    fn default_selection_leaves_out_fixtures_but_they_can_be_named() {
        let ws = Workspace::from_metadata(&metadata()).unwrap();
        let names = |v: Vec<&Driver>| v.iter().map(|d| d.name.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(ws.select(&[]).unwrap()),
            ["ex-callback", "cm-filter", "wfp", "wfp-wdm"]
        );
        let picked = ws
            .select(&["leaky".into(), "ex-callback".into(), "leaky".into()])
            .unwrap();
        assert_eq!(names(picked), ["leaky", "ex-callback"]);
        assert_eq!(names(ws.fixtures()), ["leaky"]);
    }

    #[test]
    fn unknown_driver_lists_the_known_ones() {
        let ws = Workspace::from_metadata(&metadata()).unwrap();
        let e = ws.select(&["pnp-notify".into()]).unwrap_err().to_string();
        assert_eq!(
            e,
            "unknown driver `pnp-notify`: the drivers are ex-callback, cm-filter, wfp, wfp-wdm (test fixtures: leaky)"
        );
    }

    #[test]
    fn bad_budget_names_the_manifest_and_key() {
        let mut m = metadata();
        m["packages"][1]["metadata"]["driver"]["size-budget"] = json!("8 KiB");
        let e = Workspace::from_metadata(&m).unwrap_err().to_string();
        assert!(
            e.contains("/w/ex-callback/Cargo.toml") && e.contains("size-budget"),
            "{e}"
        );
    }

    #[test]
    fn variants_are_drivers_built_from_their_package() {
        let ws = Workspace::from_metadata(&metadata()).unwrap();
        let base = ws.drivers.iter().find(|d| d.name == "wfp").unwrap();
        let wdm = ws.drivers.iter().find(|d| d.name == "wfp-wdm").unwrap();
        assert_eq!((base.package(), base.features()), ("wfp", &[][..]));
        assert_eq!(wdm.package(), "wfp");
        assert_eq!(wdm.features(), ["wdm"]);
        assert_eq!(wdm.dir, base.dir, "same folder, same scenario");
        assert_eq!(
            wdm.inx(),
            Path::new("/w/wfp/wfp-wdm.inx"),
            "its own INF template"
        );
        assert_eq!(
            (wdm.size_budget, wdm.callback_instruction_budget),
            (Some(20000), None)
        );
        let mut m = metadata();
        m["packages"][4]["metadata"]["driver"]["variants"] = json!([{"features": ["wdm"]}]);
        let e = Workspace::from_metadata(&m).unwrap_err().to_string();
        assert!(
            e.contains("/w/wfp/Cargo.toml") && e.contains("without a name"),
            "{e}"
        );
    }

    #[test]
    fn non_member_packages_are_not_drivers() {
        let mut m = metadata();
        m["workspace_members"] = json!(["path+file:///w/common#0.1.0"]);
        assert!(Workspace::from_metadata(&m).unwrap().drivers.is_empty());
    }
}
