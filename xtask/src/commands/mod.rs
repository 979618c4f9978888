//! One module per `cargo xtask` command: each has its `Options` (what the command line asked,
//! filled in by `crate::flags`) and `run`. Commands use the libraries (`base`, `image`,
//! `emulator`, `packaging`, `deploy`); nothing below this layer knows the command line.
//! Every `--json` output is a serde type documented in docs/reports/.

pub(crate) mod bench;
pub(crate) mod build;
pub(crate) mod cert;
pub(crate) mod clean;
pub(crate) mod completions;
pub(crate) mod deploy;
pub(crate) mod emulate;
pub(crate) mod lint;
pub(crate) mod new;
pub(crate) mod package;
#[cfg(test)]
mod report_docs;
pub(crate) mod sign;
pub(crate) mod test;

/// A report as pretty JSON (a serde type of plain fields cannot fail to serialize).
pub(crate) fn to_json<T: serde::Serialize>(report: &T) -> String {
    serde_json::to_string_pretty(report).unwrap_or_default()
}
