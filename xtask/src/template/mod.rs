//! Driver templates: the workspace identity check (`identity`) and `cargo xtask new`'s copy of a
//! driver with fresh identities. A library: it never reads the command line.

pub(crate) mod generate;
pub(crate) mod identity;
pub(crate) mod readme;
pub(crate) mod standalone;
pub(crate) mod write;

/// Whether the samples the templates are made from are in this workspace: a standalone workspace
/// made by `cargo xtask new --path` has none, and the tests that copy them say so and stop.
#[cfg(test)]
pub(crate) fn samples_present() -> bool {
    let root = crate::base::workspace::project_root();
    let missing: Vec<&str> = generate::TEMPLATES
        .iter()
        .map(|(_, t)| t.crate_dir())
        .filter(|d| !root.join(d).join("Cargo.toml").is_file())
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        missing.len() == generate::TEMPLATES.len(),
        "some samples are missing ({missing:?}): the workspace holds all of them or none"
    );
    eprintln!(
        "skipped: no sample in this workspace to copy (a `cargo xtask new --path` workspace)"
    );
    false
}
