//! Cargo.lock, read as the TOML it is: each `[[package]]`'s name, version, source and
//! dependencies (the fields cargo writes, <https://doc.rust-lang.org/cargo/guide/cargo-toml-vs-cargo-lock.html>).

use serde::Deserialize;

use crate::base::error::{Context, Result};

/// The packages of a lockfile.
#[derive(Debug, Deserialize)]
pub struct Lockfile {
    /// Every `[[package]]`, in the file's order.
    #[serde(default)]
    pub package: Vec<Locked>,
}

/// One `[[package]]`.
#[derive(Debug, Deserialize)]
pub struct Locked {
    /// Its name.
    pub name: String,
    /// Its version.
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "read only by the lockfile's tidy test (tidy_deps.rs)"
        )
    )]
    pub version: String,
    /// Where it comes from (`registry+…`, `sparse+…`, `git+…`); none for the workspace's own
    /// crates and other path dependencies.
    pub source: Option<String>,
    /// What it depends on: `"name"`, `"name version"` or `"name version (source)"`.
    #[serde(default)]
    pub dependencies: Vec<String>,
}

impl Locked {
    /// Whether it comes from a registry (crates.io).
    pub fn is_from_registry(&self) -> bool {
        self.source
            .as_deref()
            .is_some_and(|s| s.starts_with("registry+") || s.starts_with("sparse+"))
    }

    /// The names of what it depends on.
    pub fn dependency_names(&self) -> impl Iterator<Item = &str> {
        self.dependencies.iter().filter_map(|d| d.split(' ').next())
    }
}

impl Lockfile {
    /// Reads the lockfile `text`.
    ///
    /// # Errors
    /// It is not a lockfile's TOML.
    pub fn parse(text: &str) -> Result<Self> {
        toml::from_str(text).context("reading Cargo.lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_sources_and_dependency_names_are_read() {
        let lock = Lockfile::parse(
            r#"
version = 4

[[package]]
name = "common"
version = "0.1.0"
dependencies = ["windows-sys", "serde 1.0.228 (registry+https://github.com/rust-lang/crates.io-index)"]

[[package]]
name = "windows-sys"
version = "0.61.2"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "00"
"#,
        )
        .unwrap();
        let [common, windows_sys] = &lock.package[..] else {
            panic!("{lock:?}")
        };
        assert_eq!(
            (common.name.as_str(), common.is_from_registry()),
            ("common", false)
        );
        assert_eq!(
            common.dependency_names().collect::<Vec<_>>(),
            ["windows-sys", "serde"]
        );
        assert!(windows_sys.is_from_registry() && windows_sys.version == "0.61.2");
        assert!(Lockfile::parse("[[package]]\nversion = 1").is_err());
    }
}
