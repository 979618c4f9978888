//! The rule `exports`: only the allowed names are exported, and nothing by ordinal only.

use super::{LintOptions, Violation};
use crate::image::read::Export;

pub(super) fn check_exports(
    exports: &[Export],
    options: &LintOptions,
    violations: &mut Vec<Violation>,
) {
    let allowed = options.allowed_exports.join(", ");
    for export in exports {
        match &export.name {
            Some(name) if options.allowed_exports.iter().any(|allowed| allowed == name) => {}
            Some(name) => violations.push(Violation::new(
                "exports",
                name.clone(),
                format!(
                    "stray export (ordinal {}): a driver should export only {allowed}; every #[no_mangle] pub item of a \
                     cdylib is exported, so make it non-public or drop #[no_mangle] (or allow it explicitly)",
                    export.ordinal
                ),
            )),
            None => violations.push(Violation::new(
                "exports",
                format!("ordinal {}", export.ordinal),
                format!(
                    "export by ordinal only (RVA 0x{:X}): a driver should export only {allowed}; remove the ordinal export \
                     from the link (/EXPORT or .def file)",
                    export.rva
                ),
            )),
        }
    }
}
