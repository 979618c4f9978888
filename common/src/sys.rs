//! Kernel FFI used by the drivers.
//!
//! Where windows-sys (`Wdk_*` features) is right, its types and functions are re-exported here so
//! drivers have one place to import from. Three kinds of declaration are written by hand, each for a
//! reason named at the item:
//!
//! 1. routines windows-sys links to a **user-mode DLL** (`DbgPrintEx` → `ntdll.dll`): a driver that
//!    imports `ntdll.dll` is refused by the kernel loader, so they are re-declared against
//!    `ntoskrnl.exe`;
//! 2. routines windows-sys declares **wrongly** (`ExRegisterCallback` takes a `PCALLBACK_FUNCTION`
//!    that windows-sys declares with no parameters; `KeBugCheckEx` does not return);
//! 3. constants windows-sys does not have.
//!
//! Every import goes through `raw-dylib`, so no import library (and no WDK) is needed.

#![allow(non_camel_case_types, non_snake_case, clippy::upper_case_acronyms)]

use core::ffi::c_void;

pub use windows_sys::Wdk::Foundation::{DRIVER_OBJECT, OBJECT_ATTRIBUTES, PCALLBACK_OBJECT};
pub use windows_sys::Wdk::System::SystemServices::EX_RUNDOWN_REF;
pub use windows_sys::Win32::Foundation::{NTSTATUS, UNICODE_STRING};

// ---- status values (ntstatus.h) ---------------------------------------------------------------
pub use windows_sys::Win32::Foundation::{
    HANDLE, STATUS_ACCESS_DENIED, STATUS_BUFFER_OVERFLOW, STATUS_BUFFER_TOO_SMALL,
    STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_PARAMETER, STATUS_NAME_TOO_LONG,
    STATUS_OBJECT_NAME_NOT_FOUND, STATUS_OBJECT_TYPE_MISMATCH, STATUS_SUCCESS, STATUS_UNSUCCESSFUL,
};

/// `NT_SUCCESS()`: success and informational values are non-negative.
#[must_use]
pub const fn nt_success(status: NTSTATUS) -> bool {
    status >= 0
}

// ---- object attributes (ntdef.h) --------------------------------------------------------------
/// `OBJ_CASE_INSENSITIVE`: name lookups ignore case.
pub const OBJ_CASE_INSENSITIVE: u32 = 0x0000_0040;
/// `OBJ_KERNEL_HANDLE`: any handle is a kernel handle.
pub const OBJ_KERNEL_HANDLE: u32 = 0x0000_0200;

// ---- pool (wdm.h) -----------------------------------------------------------------------------
/// `NonPagedPoolNx`: non-paged, non-executable pool (Windows 8 and later). Memory integrity (HVCI)
/// requires data allocations to be non-executable.
pub const NON_PAGED_POOL_NX: i32 = 512;

// ---- debug print (dpfilter.h) -----------------------------------------------------------------
/// `DPFLTR_IHVDRIVER_ID`: the component id for third-party drivers.
pub const DPFLTR_IHVDRIVER_ID: u32 = 77;

// ---- power-state callback arguments (wdm.h, PO_CB_*) ------------------------------------------
/// `Argument1` of `\Callback\PowerState`: the system power policy changed.
pub const PO_CB_SYSTEM_POWER_POLICY: usize = 0;
/// `Argument1` of `\Callback\PowerState`: AC/DC power source changed; `Argument2` is TRUE on AC.
pub const PO_CB_AC_STATUS: usize = 1;
/// `Argument1` of `\Callback\PowerState`: a power button collision.
pub const PO_CB_BUTTON_COLLISION: usize = 2;
/// `Argument1` of `\Callback\PowerState`: the system power state is about to change
/// (`Argument2` FALSE) or has changed back (`Argument2` TRUE).
pub const PO_CB_SYSTEM_STATE_LOCK: usize = 3;
/// `Argument1` of `\Callback\PowerState`: the lid switch changed state.
pub const PO_CB_LID_SWITCH_STATE: usize = 4;
/// `Argument1` of `\Callback\PowerState`: the processor power policy changed.
pub const PO_CB_PROCESSOR_POWER_POLICY: usize = 5;

/// The routine a callback object calls (`CALLBACK_FUNCTION`, wdm.h):
/// `VOID Callback(PVOID CallbackContext, PVOID Argument1, PVOID Argument2)`.
///
/// windows-sys declares `PCALLBACK_FUNCTION` with no parameters; this is the documented prototype.
/// The routine must be non-pageable: it runs at the IRQL of whoever calls `ExNotifyCallback`,
/// up to `DISPATCH_LEVEL`.
pub type CallbackFunction =
    unsafe extern "system" fn(context: *mut c_void, argument1: *mut c_void, argument2: *mut c_void);

/// `DRIVER_UNLOAD`, as a plain function pointer type.
pub type DriverUnload = unsafe extern "system" fn(driver: *const DRIVER_OBJECT);

#[cfg(target_os = "windows")]
pub use kernel::*;

#[cfg(target_os = "windows")]
mod kernel {
    use super::{CallbackFunction, PCALLBACK_OBJECT};
    use core::ffi::{c_char, c_void};

    // Straight from windows-sys: these are linked to ntoskrnl.exe and declared correctly.
    pub use windows_sys::Wdk::System::SystemServices::{
        ExAcquireRundownProtection, ExAllocatePoolWithTag, ExCreateCallback, ExFreePoolWithTag,
        ExInitializeRundownProtection, ExNotifyCallback, ExReleaseRundownProtection,
        ExUnregisterCallback, ExWaitForRundownProtectionRelease, ObfDereferenceObject,
    };

    #[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
    unsafe extern "system" {
        /// `ExRegisterCallback` (wdm.h), re-declared with the documented callback prototype
        /// (windows-sys' `PCALLBACK_FUNCTION` has no parameters). Returns NULL on failure,
        /// including when the object allows one registration and already has it. The
        /// drivers here call it from DriverEntry, at PASSIVE_LEVEL.
        pub fn ExRegisterCallback(
            callback_object: PCALLBACK_OBJECT,
            callback_function: CallbackFunction,
            callback_context: *const c_void,
        ) -> *mut c_void;

        /// `KeBugCheckEx` (wdm.h). windows-sys declares it as returning; it never does.
        pub fn KeBugCheckEx(code: u32, p1: usize, p2: usize, p3: usize, p4: usize) -> !;
    }

    // windows-sys links these to ntdll.dll (they exist in both); a driver must import the kernel's.
    #[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
    unsafe extern "system" {
        /// `ZwOpenKey` (wdm.h). IRQL == PASSIVE_LEVEL.
        pub fn ZwOpenKey(
            key_handle: *mut super::HANDLE,
            desired_access: u32,
            object_attributes: *const super::OBJECT_ATTRIBUTES,
        ) -> super::NTSTATUS;

        /// `ZwQueryValueKey` (wdm.h). IRQL == PASSIVE_LEVEL.
        pub fn ZwQueryValueKey(
            key_handle: super::HANDLE,
            value_name: *const super::UNICODE_STRING,
            information_class: i32,
            information: *mut c_void,
            length: u32,
            result_length: *mut u32,
        ) -> super::NTSTATUS;

        /// `ZwClose` (wdm.h). IRQL == PASSIVE_LEVEL.
        pub fn ZwClose(handle: super::HANDLE) -> super::NTSTATUS;

        /// `RtlUpcaseUnicodeChar` (wdm.h): the upper-case table the kernel (and the registry)
        /// compares names with. IRQL <= DISPATCH_LEVEL.
        pub fn RtlUpcaseUnicodeChar(source: u16) -> u16;
    }

    #[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
    unsafe extern "C" {
        /// `DbgPrintEx` (wdm.h). windows-sys links it to `ntdll.dll`, which a driver must never
        /// import; the kernel exports the same routine. Callable at any IRQL as long as the format
        /// has no Unicode conversions (`%wZ`, `%ws`, `%S`, `%C`), which need PASSIVE_LEVEL.
        pub fn DbgPrintEx(component_id: u32, level: u32, format: *const c_char, ...) -> u32;
    }
}

#[cfg(test)]
mod tests {
    //! The windows-sys types we rely on, checked against the documented x64 layouts.
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn unicode_string_layout() {
        assert_eq!(size_of::<UNICODE_STRING>(), 16);
        assert_eq!(offset_of!(UNICODE_STRING, Length), 0);
        assert_eq!(offset_of!(UNICODE_STRING, MaximumLength), 2);
        assert_eq!(offset_of!(UNICODE_STRING, Buffer), 8);
    }

    #[test]
    fn object_attributes_layout() {
        assert_eq!(size_of::<OBJECT_ATTRIBUTES>(), 48);
        assert_eq!(offset_of!(OBJECT_ATTRIBUTES, Length), 0);
        assert_eq!(offset_of!(OBJECT_ATTRIBUTES, RootDirectory), 8);
        assert_eq!(offset_of!(OBJECT_ATTRIBUTES, ObjectName), 16);
        assert_eq!(offset_of!(OBJECT_ATTRIBUTES, Attributes), 24);
        assert_eq!(offset_of!(OBJECT_ATTRIBUTES, SecurityDescriptor), 32);
        assert_eq!(offset_of!(OBJECT_ATTRIBUTES, SecurityQualityOfService), 40);
    }

    #[test]
    fn rundown_ref_is_one_pointer() {
        assert_eq!(size_of::<EX_RUNDOWN_REF>(), 8);
    }

    #[test]
    fn driver_object_unload_offset() {
        // DRIVER_OBJECT.DriverUnload is at 0x68 on x64 (docs/notes/kmdf-binding.md §3; wdm.h).
        assert_eq!(offset_of!(DRIVER_OBJECT, DriverUnload), 0x68);
        assert_eq!(size_of::<DRIVER_OBJECT>(), 0x150);
    }

    #[test]
    fn nt_success_matches_the_macro() {
        assert!(nt_success(STATUS_SUCCESS));
        assert!(nt_success(0x0000_0103)); // STATUS_PENDING is a success value
        assert!(!nt_success(STATUS_UNSUCCESSFUL));
        assert!(!nt_success(STATUS_INSUFFICIENT_RESOURCES));
    }
}
