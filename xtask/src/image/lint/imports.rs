//! The rule `imports-kernel-only`: every imported module is a kernel module.

use super::Violation;
use crate::image::read::ImportedModule;

/// Kernel modules a driver may import from (compared case-insensitively).
pub const KERNEL_MODULES: &[&str] = &[
    "ntoskrnl.exe",
    "hal.dll",
    "fwpkclnt.sys",
    "netio.sys",
    "wdfldr.sys",
    "ndis.sys",
    "fltmgr.sys",
    "ksecdd.sys",
    "cng.sys",
    "tdi.sys",
    "wmilib.sys",
    "ci.dll",
];

/// True if `module` is on the kernel-module allow-list (case-insensitive).
#[must_use]
pub fn is_kernel_module(module: &str) -> bool {
    KERNEL_MODULES
        .iter()
        .any(|allowed| allowed.eq_ignore_ascii_case(module))
}

pub(super) fn check_imports(imports: &[ImportedModule], violations: &mut Vec<Violation>) {
    for module in imports
        .iter()
        .filter(|module| !is_kernel_module(&module.name))
    {
        let functions: Vec<String> = module
            .functions
            .iter()
            .take(4)
            .map(ToString::to_string)
            .collect();
        let more = if module.functions.len() > functions.len() {
            ", ..."
        } else {
            ""
        };
        violations.push(Violation::new(
            "imports-kernel-only",
            module.name.clone(),
            format!(
                "imports from a user-mode module ({}{more}): the kernel refuses to load a driver importing a user-mode DLL; \
                 declare these functions against the kernel module that exports them (e.g. \
                 #[link(name = \"ntoskrnl.exe\", kind = \"raw-dylib\", modifiers = \"+verbatim\")])",
                functions.join(", "),
            ),
        ));
    }
}
