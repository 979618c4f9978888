//! KMDF without the WDK: binding to the framework, calling it, and the control device.
//!
//! A KMDF driver built with the WDK links `WdfDriverEntry.lib`, whose `FxDriverEntry` is the image's
//! real entry point: it binds to the framework, calls the driver's `DriverEntry`, and arranges for
//! the framework to be unbound after the driver unloads. That library is not available here, so this
//! module does the same from the documented and published facts
//! (`docs/notes/kmdf-binding.md` §2–§6):
//!
//! 1. **Bind.** `WdfVersionBind(DriverObject, RegistryPath, &BindInfo, &Globals)` with a
//!    `WDF_BIND_INFO` asking for **KMDF 1.15** (`FuncCount` 444, the table size of 1.15, accepted by
//!    every Windows 10 and 11 framework). For 1.15 and later `FuncTable` points to a *pointer
//!    variable*: the framework stores the address of its own function table there. Every WDF call
//!    then goes through that table, with the driver globals as the first argument.
//! 2. **The driver's DriverEntry** runs with the original arguments. If it fails, the stub unbinds
//!    (`WdfVersionUnbind`) and returns the failure.
//! 3. **Unload.** `WdfDriverCreate` installs the framework's own unload routine in
//!    `DriverObject->DriverUnload` (for a non-PnP driver only when `EvtDriverUnload` is set) and
//!    sets `DisplaceDriverUnload` in the globals. The stub then *displaces* that routine: it keeps it
//!    and puts its own routine in its place, which calls the framework's (which calls
//!    `EvtDriverUnload` and deletes the WDFDRIVER) and only then `WdfVersionUnbind`, so unbinding is
//!    always the last thing the image does.
//!
//! **Opting in** is one line in the driver, which defines the image's `DriverEntry` symbol:
//! `common::kmdf_driver_entry!(driver_entry);` — the driver's own `driver_entry` then creates its
//! WDFDRIVER with [`create_non_pnp_driver`]. A WDM driver never mentions this module, so none of it
//! (code, statics, or the `wdfldr.sys` import) reaches its image.
//!
//! **What is covered.** A non-PnP driver without class extensions: no `WdfVersionBindClass`, no
//! `.kmdftypeinit` walk (context types are not used), no miniport unload override. The table
//! functions used are listed in [`index`]; their indices are the same in every KMDF header from 1.15
//! to 1.33 (append-only table).
//!
//! **Requirements.** KMDF 1.15 is part of Windows 10 1507 and later (and Windows 11); the
//! framework is inbox there, so no co-installer is needed.
//!
//! The structure layouts are plain data, compiled on every target and checked against the x64
//! layouts of `docs/notes/kmdf-binding.md` §6 by the host tests; the binding itself exists only for
//! Windows.

#![allow(non_camel_case_types, non_snake_case, clippy::upper_case_acronyms)]

use core::ffi::c_void;

use crate::unicode::StaticUnicode;

/// The framework's handle for the driver (an opaque pointer).
pub type WDFDRIVER = *mut c_void;
/// The framework's handle for a device.
pub type WDFDEVICE = *mut c_void;
/// Any framework object handle.
pub type WDFOBJECT = *mut c_void;
/// The opaque `WDFDEVICE_INIT` structure the framework allocates for a device being created.
pub type PWDFDEVICE_INIT = *mut c_void;

/// `PFN_WDF_DRIVER_UNLOAD`: `VOID EvtDriverUnload(WDFDRIVER Driver)`, at PASSIVE_LEVEL.
pub type EvtDriverUnload = unsafe extern "system" fn(driver: WDFDRIVER);
/// `PFN_WDF_DRIVER_DEVICE_ADD`; a non-PnP driver must leave it NULL.
pub type EvtDriverDeviceAdd =
    unsafe extern "system" fn(driver: WDFDRIVER, init: PWDFDEVICE_INIT) -> crate::sys::NTSTATUS;

// ---- the version asked for (docs/notes/kmdf-binding.md §5) ------------------------------------
/// `WDF_MAJOR_VERSION` of every KMDF.
pub const KMDF_MAJOR: u32 = 1;
/// The minor version bound to: 1.15, Windows 10 1507 and later.
pub const KMDF_MINOR: u32 = 15;
/// `WdfFunctionTableNumEntries` of KMDF 1.15 (and 1.17): the table entries the driver may use.
pub const KMDF_1_15_FUNCTION_COUNT: u32 = 444;

/// `WDF_DRIVER_INIT_FLAGS`: `WdfDriverInitNonPnpDriver`, the driver has no EvtDriverDeviceAdd and
/// is not loaded for a device.
pub const WDF_DRIVER_INIT_NON_PNP_DRIVER: u32 = 0x1;
/// `WDF_DRIVER_INIT_FLAGS`: `WdfDriverInitNoDispatchOverride`.
pub const WDF_DRIVER_INIT_NO_DISPATCH_OVERRIDE: u32 = 0x2;

/// `WDF_EXECUTION_LEVEL`: `WdfExecutionLevelInheritFromParent`.
pub const WDF_EXECUTION_LEVEL_INHERIT_FROM_PARENT: i32 = 1;
/// `WDF_SYNCHRONIZATION_SCOPE`: `WdfSynchronizationScopeInheritFromParent`.
pub const WDF_SYNCHRONIZATION_SCOPE_INHERIT_FROM_PARENT: i32 = 1;

/// Indices into the function table (`WDFFUNCENUM`, 0-based; `docs/notes/kmdf-binding.md` §4). The
/// same in every KMDF header from 1.15 to 1.33.
pub mod index {
    /// `WdfControlDeviceInitAllocate`.
    pub const CONTROL_DEVICE_INIT_ALLOCATE: usize = 25;
    /// `WdfControlFinishInitializing`.
    pub const CONTROL_FINISH_INITIALIZING: usize = 27;
    /// `WdfDeviceWdmGetDeviceObject`.
    pub const DEVICE_WDM_GET_DEVICE_OBJECT: usize = 31;
    /// `WdfDeviceInitFree`.
    pub const DEVICE_INIT_FREE: usize = 54;
    /// `WdfDeviceInitSetDeviceType`.
    pub const DEVICE_INIT_SET_DEVICE_TYPE: usize = 66;
    /// `WdfDeviceInitSetCharacteristics`.
    pub const DEVICE_INIT_SET_CHARACTERISTICS: usize = 70;
    /// `WdfDeviceCreate`.
    pub const DEVICE_CREATE: usize = 75;
    /// `WdfDriverCreate`.
    pub const DRIVER_CREATE: usize = 116;
    /// `WdfObjectDelete`.
    pub const OBJECT_DELETE: usize = 208;
}

// ---- SDDL strings (wdmsec.h; defined in wdmsec.lib, so a WDK-free build defines its own) -------
/// `SDDL_DEVOBJ_KERNEL_ONLY`: a protected DACL with no entries: no user-mode caller, not even an
/// administrator, can open the device. What the WFP samples use for their control device.
pub const SDDL_DEVOBJ_KERNEL_ONLY: StaticUnicode = crate::unicode!("D:P");
/// `SDDL_DEVOBJ_SYS_ALL_ADM_ALL`: SYSTEM and Administrators have all access, nobody else any.
pub const SDDL_DEVOBJ_SYS_ALL_ADM_ALL: StaticUnicode =
    crate::unicode!("D:P(A;;GA;;;SY)(A;;GA;;;BA)");

// ---- structures (docs/notes/kmdf-binding.md §2, §6; x64 layouts checked by the tests) ---------
/// `WDF_VERSION`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct WDF_VERSION {
    /// Major version (1).
    pub Major: u32,
    /// Minor version.
    pub Minor: u32,
    /// Build number; informational.
    pub Build: u32,
}

/// `WDF_BIND_INFO` (version 1, 48 bytes on x64): what the client asks `WdfVersionBind` for.
///
/// The framework keeps the pointer to it until `WdfVersionUnbind`, so it lives in a static.
#[repr(C)]
#[derive(Debug)]
pub struct WDF_BIND_INFO {
    /// `sizeof(WDF_BIND_INFO)`: 48.
    pub Size: u32,
    /// The library component, `L"KmdfLibrary"`.
    pub Component: *const u16,
    /// The version asked for.
    pub Version: WDF_VERSION,
    /// Table entries the client uses (a released table size).
    pub FuncCount: u32,
    /// For `FuncCount` > 438: the address of a pointer variable the framework fills with the
    /// address of its table.
    pub FuncTable: *mut *const usize,
    /// Filled by the loader; diagnostics only.
    pub Module: *mut c_void,
}

/// `WDF_DRIVER_GLOBALS`: the five public fields of what `WdfVersionBind` returns (56 bytes on x64).
#[repr(C)]
#[derive(Debug)]
pub struct WDF_DRIVER_GLOBALS {
    /// The WDFDRIVER, once created.
    pub Driver: WDFDRIVER,
    /// `WDF_DRIVER_INIT_FLAGS` given to `WdfDriverCreate`.
    pub DriverFlags: u32,
    /// The pool tag the framework uses for the driver.
    pub DriverTag: u32,
    /// The driver's name, ASCII.
    pub DriverName: [u8; 32],
    /// Set by `WdfDriverCreate` when the stub must displace `DriverObject->DriverUnload`.
    pub DisplaceDriverUnload: u8,
}

/// `WDF_DRIVER_CONFIG` (32 bytes on x64).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WDF_DRIVER_CONFIG {
    /// `sizeof(WDF_DRIVER_CONFIG)`: 32.
    pub Size: u32,
    /// NULL for a non-PnP driver.
    pub EvtDriverDeviceAdd: Option<EvtDriverDeviceAdd>,
    /// Called by the framework's unload routine; a non-PnP driver must set it to be unloadable.
    pub EvtDriverUnload: Option<EvtDriverUnload>,
    /// `WDF_DRIVER_INIT_FLAGS`.
    pub DriverInitFlags: u32,
    /// Pool tag for the framework's allocations on the driver's behalf; 0 for the default.
    pub DriverPoolTag: u32,
}

impl WDF_DRIVER_CONFIG {
    /// `WDF_DRIVER_CONFIG_INIT` for a non-PnP driver: no EvtDriverDeviceAdd,
    /// `WdfDriverInitNonPnpDriver`, and the unload callback.
    #[must_use]
    #[allow(clippy::cast_possible_truncation)] // 32
    pub const fn non_pnp(unload: EvtDriverUnload) -> Self {
        Self {
            Size: size_of::<Self>() as u32,
            EvtDriverDeviceAdd: None,
            EvtDriverUnload: Some(unload),
            DriverInitFlags: WDF_DRIVER_INIT_NON_PNP_DRIVER,
            DriverPoolTag: 0,
        }
    }
}

/// `WDF_OBJECT_ATTRIBUTES` (56 bytes on x64). The samples here pass none
/// (`WDF_NO_OBJECT_ATTRIBUTES`); declared for its layout test and for drivers that copy this one.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WDF_OBJECT_ATTRIBUTES {
    /// `sizeof(WDF_OBJECT_ATTRIBUTES)`: 56.
    pub Size: u32,
    /// `PFN_WDF_OBJECT_CONTEXT_CLEANUP`.
    pub EvtCleanupCallback: *const c_void,
    /// `PFN_WDF_OBJECT_CONTEXT_DESTROY`.
    pub EvtDestroyCallback: *const c_void,
    /// `WDF_EXECUTION_LEVEL`.
    pub ExecutionLevel: i32,
    /// `WDF_SYNCHRONIZATION_SCOPE`.
    pub SynchronizationScope: i32,
    /// The parent object, or NULL.
    pub ParentObject: WDFOBJECT,
    /// Overrides the context size of the type info.
    pub ContextSizeOverride: usize,
    /// `PCWDF_OBJECT_CONTEXT_TYPE_INFO`.
    pub ContextTypeInfo: *const WDF_OBJECT_CONTEXT_TYPE_INFO,
}

impl WDF_OBJECT_ATTRIBUTES {
    /// `WDF_OBJECT_ATTRIBUTES_INIT`: zero, Size, both levels "inherit from parent".
    #[must_use]
    #[allow(clippy::cast_possible_truncation)] // 56
    pub const fn new() -> Self {
        Self {
            Size: size_of::<Self>() as u32,
            EvtCleanupCallback: core::ptr::null(),
            EvtDestroyCallback: core::ptr::null(),
            ExecutionLevel: WDF_EXECUTION_LEVEL_INHERIT_FROM_PARENT,
            SynchronizationScope: WDF_SYNCHRONIZATION_SCOPE_INHERIT_FROM_PARENT,
            ParentObject: core::ptr::null_mut(),
            ContextSizeOverride: 0,
            ContextTypeInfo: core::ptr::null(),
        }
    }
}

impl Default for WDF_OBJECT_ATTRIBUTES {
    fn default() -> Self {
        Self::new()
    }
}

/// `WDF_OBJECT_CONTEXT_TYPE_INFO` (40 bytes on x64).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WDF_OBJECT_CONTEXT_TYPE_INFO {
    /// `sizeof(WDF_OBJECT_CONTEXT_TYPE_INFO)`: 40.
    pub Size: u32,
    /// The context type's name, ASCII, NUL-terminated.
    pub ContextName: *const u8,
    /// The context's size in bytes.
    pub ContextSize: usize,
    /// Points to the record itself for a type declared with `WDF_DECLARE_CONTEXT_TYPE`.
    pub UniqueType: *const WDF_OBJECT_CONTEXT_TYPE_INFO,
    /// `PFN_GET_UNIQUE_CONTEXT_TYPE`, NULL here.
    pub EvtDriverGetUniqueContextType: *const c_void,
}

#[cfg(target_os = "windows")]
pub use kernel::*;

#[cfg(target_os = "windows")]
mod kernel {
    use super::{
        EvtDriverUnload, KMDF_1_15_FUNCTION_COUNT, KMDF_MAJOR, KMDF_MINOR, PWDFDEVICE_INIT,
        WDF_BIND_INFO, WDF_DRIVER_CONFIG, WDF_DRIVER_GLOBALS, WDF_OBJECT_ATTRIBUTES, WDF_VERSION,
        WDFDEVICE, WDFDRIVER, WDFOBJECT, index,
    };
    use crate::device::{DEVICE_OBJECT, FILE_AUTOGENERATED_DEVICE_NAME};
    use crate::klog;
    use crate::sys::{
        DRIVER_OBJECT, DriverUnload, NTSTATUS, STATUS_INSUFFICIENT_RESOURCES, STATUS_SUCCESS,
        STATUS_UNSUCCESSFUL, UNICODE_STRING, nt_success,
    };
    use crate::unicode::StaticUnicode;
    use core::cell::UnsafeCell;
    use core::ffi::c_void;
    use core::ptr::{NonNull, null_mut};
    use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

    #[link(name = "wdfldr.sys", kind = "raw-dylib", modifiers = "+verbatim")]
    unsafe extern "system" {
        /// `WdfVersionBind` (wdfldr.sys): binds the client to the framework library its bind info
        /// names, fills the function table pointer and returns the driver globals. PASSIVE_LEVEL.
        fn WdfVersionBind(
            driver_object: *mut DRIVER_OBJECT,
            registry_path: *mut UNICODE_STRING,
            bind_info: *mut WDF_BIND_INFO,
            globals: *mut *mut WDF_DRIVER_GLOBALS,
        ) -> NTSTATUS;

        /// `WdfVersionUnbind` (wdfldr.sys): the last call of a KMDF client. PASSIVE_LEVEL.
        fn WdfVersionUnbind(
            registry_path: *mut UNICODE_STRING,
            bind_info: *mut WDF_BIND_INFO,
            globals: *mut WDF_DRIVER_GLOBALS,
        ) -> NTSTATUS;
    }

    /// A static the framework (or the stub, before and after) writes through raw pointers.
    struct Shared<T>(UnsafeCell<T>);
    // SAFETY: written only by the stub while DriverEntry or the unload routine runs (the I/O manager
    // never runs them concurrently) and by the framework during WdfVersionBind, which they call.
    unsafe impl<T> Sync for Shared<T> {}

    /// `L"KmdfLibrary"`, NUL-terminated: the component the loader looks up.
    static COMPONENT: [u16; 12] = crate::unicode::ascii_to_utf16::<12>("KmdfLibrary\0");

    /// `WdfFunctions_01015`: the pointer variable the framework fills with its table's address.
    static FUNCTIONS: AtomicPtr<usize> = AtomicPtr::new(null_mut());

    /// `WdfBindInfo`: KMDF 1.15, 444 functions, the table pointer variable above.
    #[allow(clippy::cast_possible_truncation)] // 48
    static BIND_INFO: Shared<WDF_BIND_INFO> = Shared(UnsafeCell::new(WDF_BIND_INFO {
        Size: size_of::<WDF_BIND_INFO>() as u32,
        Component: COMPONENT.as_ptr(),
        Version: WDF_VERSION {
            Major: KMDF_MAJOR,
            Minor: KMDF_MINOR,
            Build: 0, // informational; the WDK stamps its own build number here
        },
        FuncCount: KMDF_1_15_FUNCTION_COUNT,
        FuncTable: FUNCTIONS.as_ptr().cast::<*const usize>(),
        Module: null_mut(),
    }));

    /// `WdfDriverGlobals`, as WdfVersionBind returned them.
    static GLOBALS: AtomicPtr<WDF_DRIVER_GLOBALS> = AtomicPtr::new(null_mut());

    /// `WdfDriverStubDisplacedDriverUnload`: the framework's unload routine, displaced by the stub's.
    static DISPLACED_UNLOAD: AtomicUsize = AtomicUsize::new(0);

    /// Longest registry path kept, in UTF-16 units (as the WDK stub: 260; longer paths truncate).
    const PATH_UNITS: usize = 260;

    /// `WdfDriverStubRegistryPath` and its buffer: the framework needs the path again at unbind,
    /// when DriverEntry's argument is long gone.
    struct StubPath {
        string: UNICODE_STRING,
        buffer: [u16; PATH_UNITS],
    }

    static REGISTRY_PATH: Shared<StubPath> = Shared(UnsafeCell::new(StubPath {
        string: UNICODE_STRING {
            Length: 0,
            MaximumLength: 0,
            Buffer: null_mut(),
        },
        buffer: [0; PATH_UNITS],
    }));

    /// The signature of the driver's own DriverEntry, which the stub calls once bound.
    pub type DriverEntryFn =
        unsafe fn(driver: *mut DRIVER_OBJECT, registry_path: *const UNICODE_STRING) -> NTSTATUS;

    /// Defines the image's `DriverEntry` for a KMDF driver: binds to KMDF 1.15, runs `$entry`
    /// (the driver's own DriverEntry), unbinds if it fails, and arranges for the framework to be
    /// unbound after the driver unloads. See the [module documentation](crate::kmdf).
    ///
    /// `$entry` is a `fn(*mut DRIVER_OBJECT, *const UNICODE_STRING) -> NTSTATUS` (or an `unsafe fn`).
    #[macro_export]
    macro_rules! kmdf_driver_entry {
        ($entry:path) => {
            /// The image's entry point: binds to the KMDF framework, then runs the driver's own
            /// DriverEntry (`common::kmdf`, the WdfDriverEntry.lib stub's job).
            ///
            /// # Safety
            /// Called by the I/O manager, at PASSIVE_LEVEL, with its own arguments.
            #[unsafe(no_mangle)]
            pub unsafe extern "system" fn DriverEntry(
                driver: *mut $crate::sys::DRIVER_OBJECT,
                registry_path: *const $crate::sys::UNICODE_STRING,
            ) -> $crate::sys::NTSTATUS {
                // SAFETY: the I/O manager's arguments, passed on unchanged.
                unsafe { $crate::kmdf::stub_driver_entry(driver, registry_path, $entry) }
            }
        };
    }

    /// What `FxDriverEntry` does (`docs/notes/kmdf-binding.md` §3). Use [`kmdf_driver_entry!`]
    /// rather than calling it.
    ///
    /// # Arguments
    /// * `driver`, `registry_path` - DriverEntry's arguments.
    /// * `entry` - the driver's own DriverEntry.
    ///
    /// # Return value
    /// The failure of WdfVersionBind or of `entry` (after unbinding), or `STATUS_SUCCESS`.
    ///
    /// # Safety
    /// Called once, from the image's DriverEntry, with the I/O manager's arguments.
    pub unsafe fn stub_driver_entry(
        driver: *mut DRIVER_OBJECT,
        registry_path: *const UNICODE_STRING,
        entry: DriverEntryFn,
    ) -> NTSTATUS {
        if driver.is_null() {
            // Not loaded by the I/O manager (as FxDriverEntry: no binding).
            // SAFETY: the caller's arguments, passed on.
            return unsafe { entry(driver, registry_path) };
        }
        // SAFETY: single-threaded (DriverEntry); the I/O manager's valid registry path.
        let path = unsafe { keep_registry_path(registry_path) };
        let mut globals: *mut WDF_DRIVER_GLOBALS = null_mut();
        // SAFETY: the bind info and the path are statics that live until unbind; `globals` is a
        // valid out pointer. PASSIVE_LEVEL (DriverEntry).
        let status = unsafe { WdfVersionBind(driver, path, BIND_INFO.0.get(), &raw mut globals) };
        if !nt_success(status) {
            klog!(
                Error,
                "kmdf: WdfVersionBind(KMDF %Iu.%Iu) failed: %08Ix",
                KMDF_MAJOR,
                KMDF_MINOR,
                status.cast_unsigned()
            );
            return status;
        }
        if globals.is_null() || FUNCTIONS.load(Ordering::Acquire).is_null() {
            // Bound, but unusable: the bind succeeded, so it is undone (WdfVersionUnbind) before
            // failing, as any other failure after a successful bind is.
            klog!(
                Error,
                "kmdf: WdfVersionBind(KMDF %Iu.%Iu) succeeded without globals (%p) or a function table: unbinding",
                KMDF_MAJOR,
                KMDF_MINOR,
                globals
            );
            GLOBALS.store(globals, Ordering::Release);
            // SAFETY: the bind above succeeded; nothing of ours runs in the framework yet.
            unsafe { unbind() };
            return STATUS_UNSUCCESSFUL;
        }
        GLOBALS.store(globals, Ordering::Release);
        klog!(Info, "kmdf: bound to KMDF %Iu.%Iu", KMDF_MAJOR, KMDF_MINOR);

        // SAFETY: the I/O manager's arguments, passed on unchanged.
        let status = unsafe { entry(driver, registry_path) };
        if !nt_success(status) {
            klog!(
                Error,
                "kmdf: DriverEntry failed with %08Ix: unbinding from KMDF",
                status.cast_unsigned()
            );
            // SAFETY: bound above; the framework has no unload of ours to run.
            unsafe { unbind() };
            return status;
        }

        // SAFETY: WdfVersionBind returned these globals; DisplaceDriverUnload is one of their
        // public fields.
        let displace = unsafe { (*globals).DisplaceDriverUnload } != 0;
        // SAFETY: the I/O manager's driver object; nothing else writes it during DriverEntry.
        let framework_unload = unsafe { (*driver).DriverUnload };
        match framework_unload {
            Some(unload) if displace => {
                DISPLACED_UNLOAD.store(unload as usize, Ordering::Release);
                let stub: DriverUnload = stub_driver_unload;
                // SAFETY: as above.
                unsafe { (*driver).DriverUnload = Some(stub) };
            }
            _ => klog!(
                Warning,
                "kmdf: the framework did not ask to displace DriverUnload: the driver cannot \
                 unbind at unload (a non-PnP driver must set EvtDriverUnload)"
            ),
        }
        // FxDriverEntry returns a literal success, not DriverEntry's informational value.
        STATUS_SUCCESS
    }

    /// `FxStubDriverUnload`: the framework's unload routine first (it calls `EvtDriverUnload` and
    /// deletes the WDFDRIVER and what it owns), then `WdfVersionUnbind`, always last.
    /// PASSIVE_LEVEL.
    unsafe extern "system" fn stub_driver_unload(driver: *const DRIVER_OBJECT) {
        let displaced = DISPLACED_UNLOAD.swap(0, Ordering::AcqRel);
        let stub: DriverUnload = stub_driver_unload;
        if displaced != 0 && displaced != stub as usize {
            // SAFETY: the value is the framework's DRIVER_UNLOAD routine the stub displaced.
            let framework_unload: DriverUnload = unsafe { core::mem::transmute(displaced) };
            // SAFETY: the I/O manager's driver object, as it passed it to us.
            unsafe { framework_unload(driver) };
        }
        // SAFETY: bound since DriverEntry succeeded; nothing of ours runs after this.
        unsafe { unbind() };
    }

    /// `FxStubDriverUnloadCommon`: `WdfVersionUnbind`, then forget the table and the globals.
    unsafe fn unbind() {
        let globals = GLOBALS.swap(null_mut(), Ordering::AcqRel);
        // SAFETY: only the stub touches the static path, and no one else runs now.
        let path = unsafe { &raw mut (*REGISTRY_PATH.0.get()).string };
        // SAFETY: the static bind info and path given to WdfVersionBind, and its globals.
        // PASSIVE_LEVEL (DriverEntry or the unload routine).
        let status = unsafe { WdfVersionUnbind(path, BIND_INFO.0.get(), globals) };
        FUNCTIONS.store(null_mut(), Ordering::Release);
        klog!(
            Info,
            "kmdf: WdfVersionUnbind = %08Ix",
            status.cast_unsigned()
        );
    }

    /// Copies the registry path into the static buffer (truncating past 260 units, as the WDK
    /// stub does) and returns the static UNICODE_STRING describing it.
    unsafe fn keep_registry_path(registry_path: *const UNICODE_STRING) -> *mut UNICODE_STRING {
        // SAFETY: only the stub touches the static, and only from DriverEntry here.
        let kept = unsafe { &mut *REGISTRY_PATH.0.get() };
        // SAFETY: the I/O manager's valid (or NULL) registry path.
        let units = unsafe { crate::unicode::units(registry_path) };
        let n = units.len().min(PATH_UNITS);
        kept.buffer[..n].copy_from_slice(&units[..n]);
        #[allow(clippy::cast_possible_truncation)] // n <= 260
        {
            kept.string.Length = (n * 2) as u16;
            kept.string.MaximumLength = (PATH_UNITS * 2) as u16;
        }
        kept.string.Buffer = kept.buffer.as_mut_ptr();
        &raw mut kept.string
    }

    /// The table entry `index`, or `None` when not bound (or the entry is empty).
    fn function(index: usize) -> Option<usize> {
        let table = FUNCTIONS.load(Ordering::Acquire);
        if table.is_null() || index >= KMDF_1_15_FUNCTION_COUNT as usize {
            return None;
        }
        // SAFETY: the framework's table has at least FuncCount entries while bound.
        let slot = unsafe { table.add(index) };
        // SAFETY: as above: a readable, aligned entry.
        let entry = unsafe { slot.read() };
        (entry != 0).then_some(entry)
    }

    /// Table entry `index` as the function pointer type `F`.
    ///
    /// # Safety
    /// `F` must be the documented prototype of that entry (`docs/notes/kmdf-binding.md` §4).
    unsafe fn table_entry<F: Copy>(index: usize) -> Option<F> {
        const {
            assert!(
                size_of::<F>() == size_of::<usize>(),
                "F must be a function pointer"
            );
        };
        let entry = function(index)?;
        // SAFETY: per the contract, F is the function pointer type of this entry.
        Some(unsafe { core::mem::transmute_copy::<usize, F>(&entry) })
    }

    fn globals() -> *mut WDF_DRIVER_GLOBALS {
        GLOBALS.load(Ordering::Acquire)
    }

    /// Calls table entry `$index` with the driver globals first; `$none` if unbound.
    macro_rules! wdf_call {
        ($index:expr, $none:expr, fn($($arg:ty),* $(,)?) $(-> $ret:ty)?, $($value:expr),* $(,)?) => {{
            type Entry = unsafe extern "system" fn(*mut WDF_DRIVER_GLOBALS $(, $arg)*) $(-> $ret)?;
            // SAFETY: entry `$index` has this documented prototype (docs/notes/kmdf-binding.md
            // §4): the driver globals, then the arguments.
            match unsafe { table_entry::<Entry>($index) } {
                None => $none,
                // SAFETY: the caller's arguments satisfy the routine's documented contract.
                Some(f) => unsafe { f(globals() $(, $value)*) },
            }
        }};
    }

    /// The WDFDRIVER. Not a guard: the framework deletes it when the driver unloads.
    #[derive(Clone, Copy, Debug)]
    pub struct WdfDriver(WDFDRIVER);

    impl WdfDriver {
        /// The raw handle.
        #[must_use]
        pub fn as_raw(self) -> WDFDRIVER {
            self.0
        }
    }

    /// `WdfDriverCreate` for a **non-PnP** driver: `WdfDriverInitNonPnpDriver`, no
    /// EvtDriverDeviceAdd, and `unload` as EvtDriverUnload, which is what makes a non-PnP KMDF
    /// driver unloadable (the framework installs its unload routine only then). PASSIVE_LEVEL.
    ///
    /// # Arguments
    /// * `driver`, `registry_path` - DriverEntry's arguments.
    /// * `unload` - EvtDriverUnload: called by the framework's unload routine, before the
    ///   WDFDRIVER is deleted and before the stub unbinds.
    ///
    /// # Return value
    /// The WDFDRIVER, or the status WdfDriverCreate failed with.
    ///
    /// # Errors
    /// Any failure of WdfDriverCreate; `STATUS_UNSUCCESSFUL` if not bound ([`kmdf_driver_entry!`]
    /// was not used).
    ///
    /// # Safety
    /// Called from the driver's DriverEntry (run by [`kmdf_driver_entry!`]) with its arguments.
    pub unsafe fn create_non_pnp_driver(
        driver: *mut DRIVER_OBJECT,
        registry_path: *const UNICODE_STRING,
        unload: EvtDriverUnload,
    ) -> Result<WdfDriver, NTSTATUS> {
        let config = WDF_DRIVER_CONFIG::non_pnp(unload);
        let mut handle: WDFDRIVER = null_mut();
        let status = wdf_call!(
            index::DRIVER_CREATE,
            STATUS_UNSUCCESSFUL,
            fn(
                *mut DRIVER_OBJECT,
                *const UNICODE_STRING,
                *const WDF_OBJECT_ATTRIBUTES,
                *const WDF_DRIVER_CONFIG,
                *mut WDFDRIVER,
            ) -> NTSTATUS,
            driver,
            registry_path,
            core::ptr::null(),
            &raw const config,
            &raw mut handle
        );
        if !nt_success(status) {
            return Err(status);
        }
        Ok(WdfDriver(handle))
    }

    /// A `WDFDEVICE_INIT` from `WdfControlDeviceInitAllocate`, freed with `WdfDeviceInitFree`
    /// unless `WdfDeviceCreate` consumed it (the InitFreeDeviceCreate rule).
    struct ControlDeviceInit(PWDFDEVICE_INIT);

    impl Drop for ControlDeviceInit {
        fn drop(&mut self) {
            if !self.0.is_null() {
                wdf_call!(index::DEVICE_INIT_FREE, (), fn(PWDFDEVICE_INIT), self.0);
            }
        }
    }

    /// A control device object (`WdfControlDeviceInitAllocate` … `WdfDeviceCreate` …
    /// `WdfControlFinishInitializing`), deleted with `WdfObjectDelete` when dropped.
    ///
    /// A control device is how a non-PnP KMDF driver gets a device object: it is not part of any
    /// device stack. Its name is generated (`FILE_AUTOGENERATED_DEVICE_NAME`) and its DACL is the
    /// SDDL given, which `WdfControlDeviceInitAllocate` requires.
    pub struct ControlDevice {
        device: NonNull<c_void>,
        wdm: NonNull<DEVICE_OBJECT>,
    }

    impl ControlDevice {
        /// Creates a control device the way the WFP samples do: the SDDL, the device type,
        /// `characteristics` replacing the defaults, `FILE_AUTOGENERATED_DEVICE_NAME` added back,
        /// then `WdfDeviceCreate` and `WdfControlFinishInitializing`. PASSIVE_LEVEL.
        ///
        /// # Arguments
        /// * `driver` - the WDFDRIVER (the device's parent).
        /// * `sddl` - its DACL, for instance [`SDDL_DEVOBJ_KERNEL_ONLY`](super::SDDL_DEVOBJ_KERNEL_ONLY).
        /// * `device_type` - `FILE_DEVICE_*`.
        /// * `characteristics` - `FILE_DEVICE_SECURE_OPEN` and the like.
        ///
        /// # Return value
        /// The device, or the first failure, with everything before it undone
        /// (`STATUS_INSUFFICIENT_RESOURCES` when the init structure could not be allocated).
        ///
        /// # Errors
        /// As above.
        pub fn create(
            driver: WdfDriver,
            sddl: StaticUnicode,
            device_type: u32,
            characteristics: u32,
        ) -> Result<Self, NTSTATUS> {
            let sddl = sddl.as_unicode_string();
            let init = ControlDeviceInit(wdf_call!(
                index::CONTROL_DEVICE_INIT_ALLOCATE,
                null_mut(),
                fn(WDFDRIVER, *const UNICODE_STRING) -> PWDFDEVICE_INIT,
                driver.0,
                &raw const sddl
            ));
            if init.0.is_null() {
                klog!(Error, "kmdf: WdfControlDeviceInitAllocate returned NULL");
                return Err(STATUS_INSUFFICIENT_RESOURCES);
            }
            let mut init = init;
            wdf_call!(
                index::DEVICE_INIT_SET_DEVICE_TYPE,
                (),
                fn(PWDFDEVICE_INIT, u32),
                init.0,
                device_type
            );
            wdf_call!(
                index::DEVICE_INIT_SET_CHARACTERISTICS,
                (),
                fn(PWDFDEVICE_INIT, u32, u8),
                init.0,
                characteristics,
                0
            );
            wdf_call!(
                index::DEVICE_INIT_SET_CHARACTERISTICS,
                (),
                fn(PWDFDEVICE_INIT, u32, u8),
                init.0,
                FILE_AUTOGENERATED_DEVICE_NAME,
                1
            );
            let mut device: WDFDEVICE = null_mut();
            let status = wdf_call!(
                index::DEVICE_CREATE,
                STATUS_UNSUCCESSFUL,
                fn(*mut PWDFDEVICE_INIT, *const WDF_OBJECT_ATTRIBUTES, *mut WDFDEVICE) -> NTSTATUS,
                &raw mut init.0,
                core::ptr::null(),
                &raw mut device
            );
            // On success WdfDeviceCreate set init.0 to NULL (consumed); on failure dropping `init`
            // frees it, as the driver must for a control device.
            let Some(device) = NonNull::new(device).filter(|_| nt_success(status)) else {
                klog!(
                    Error,
                    "kmdf: WdfDeviceCreate(control device) failed: %08Ix",
                    status.cast_unsigned()
                );
                return Err(if nt_success(status) {
                    STATUS_UNSUCCESSFUL
                } else {
                    status
                });
            };
            drop(init);
            wdf_call!(
                index::CONTROL_FINISH_INITIALIZING,
                (),
                fn(WDFDEVICE),
                device.as_ptr()
            );
            let wdm = wdf_call!(
                index::DEVICE_WDM_GET_DEVICE_OBJECT,
                null_mut(),
                fn(WDFDEVICE) -> *mut DEVICE_OBJECT,
                device.as_ptr()
            );
            let Some(wdm) = NonNull::new(wdm) else {
                wdf_call!(index::OBJECT_DELETE, (), fn(WDFOBJECT), device.as_ptr());
                return Err(STATUS_UNSUCCESSFUL);
            };
            Ok(Self { device, wdm })
        }

        /// The WDM device object behind the framework device (`WdfDeviceWdmGetDeviceObject`),
        /// which is what WDM-level routines such as `FwpsCalloutRegister` take.
        #[must_use]
        pub fn wdm_device_object(&self) -> *mut DEVICE_OBJECT {
            self.wdm.as_ptr()
        }
    }

    impl Drop for ControlDevice {
        /// `WdfObjectDelete`: a driver deletes the control devices it created (the one framework
        /// device it may delete). PASSIVE_LEVEL.
        fn drop(&mut self) {
            wdf_call!(
                index::OBJECT_DELETE,
                (),
                fn(WDFOBJECT),
                self.device.as_ptr()
            );
            klog!(Info, "kmdf: WdfObjectDelete(control device): deleted");
        }
    }

    // SAFETY: framework handles may be used from any thread; deletion happens once, in drop.
    unsafe impl Send for ControlDevice {}
    // SAFETY: no method mutates through &self.
    unsafe impl Sync for ControlDevice {}
}

#[cfg(test)]
mod tests {
    //! The layouts of docs/notes/kmdf-binding.md §2 and §6 (x64).
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn bind_info_layout() {
        assert_eq!(size_of::<WDF_VERSION>(), 12);
        assert_eq!(size_of::<WDF_BIND_INFO>(), 48);
        assert_eq!(offset_of!(WDF_BIND_INFO, Size), 0);
        assert_eq!(offset_of!(WDF_BIND_INFO, Component), 8);
        assert_eq!(offset_of!(WDF_BIND_INFO, Version), 16);
        assert_eq!(
            offset_of!(WDF_BIND_INFO, Version) + offset_of!(WDF_VERSION, Minor),
            20
        );
        assert_eq!(
            offset_of!(WDF_BIND_INFO, Version) + offset_of!(WDF_VERSION, Build),
            24
        );
        assert_eq!(offset_of!(WDF_BIND_INFO, FuncCount), 28);
        assert_eq!(offset_of!(WDF_BIND_INFO, FuncTable), 32);
        assert_eq!(offset_of!(WDF_BIND_INFO, Module), 40);
    }

    #[test]
    fn driver_globals_layout() {
        assert_eq!(size_of::<WDF_DRIVER_GLOBALS>(), 56);
        assert_eq!(offset_of!(WDF_DRIVER_GLOBALS, Driver), 0);
        assert_eq!(offset_of!(WDF_DRIVER_GLOBALS, DriverFlags), 8);
        assert_eq!(offset_of!(WDF_DRIVER_GLOBALS, DriverTag), 12);
        assert_eq!(offset_of!(WDF_DRIVER_GLOBALS, DriverName), 16);
        assert_eq!(offset_of!(WDF_DRIVER_GLOBALS, DisplaceDriverUnload), 0x30);
    }

    #[test]
    fn driver_config_layout_and_init() {
        unsafe extern "system" fn unload(_: WDFDRIVER) {}
        assert_eq!(size_of::<WDF_DRIVER_CONFIG>(), 32);
        assert_eq!(offset_of!(WDF_DRIVER_CONFIG, Size), 0);
        assert_eq!(offset_of!(WDF_DRIVER_CONFIG, EvtDriverDeviceAdd), 8);
        assert_eq!(offset_of!(WDF_DRIVER_CONFIG, EvtDriverUnload), 16);
        assert_eq!(offset_of!(WDF_DRIVER_CONFIG, DriverInitFlags), 24);
        assert_eq!(offset_of!(WDF_DRIVER_CONFIG, DriverPoolTag), 28);
        let config = WDF_DRIVER_CONFIG::non_pnp(unload);
        assert_eq!(config.Size, 32);
        assert!(
            config.EvtDriverDeviceAdd.is_none(),
            "non-PnP: no device add"
        );
        assert!(
            config.EvtDriverUnload.is_some(),
            "non-PnP: unloadable only with it"
        );
        assert_eq!(config.DriverInitFlags, WDF_DRIVER_INIT_NON_PNP_DRIVER);
    }

    #[test]
    fn object_attributes_layout_and_init() {
        assert_eq!(size_of::<WDF_OBJECT_ATTRIBUTES>(), 56);
        assert_eq!(offset_of!(WDF_OBJECT_ATTRIBUTES, EvtCleanupCallback), 8);
        assert_eq!(offset_of!(WDF_OBJECT_ATTRIBUTES, EvtDestroyCallback), 16);
        assert_eq!(offset_of!(WDF_OBJECT_ATTRIBUTES, ExecutionLevel), 24);
        assert_eq!(offset_of!(WDF_OBJECT_ATTRIBUTES, SynchronizationScope), 28);
        assert_eq!(offset_of!(WDF_OBJECT_ATTRIBUTES, ParentObject), 32);
        assert_eq!(offset_of!(WDF_OBJECT_ATTRIBUTES, ContextSizeOverride), 40);
        assert_eq!(offset_of!(WDF_OBJECT_ATTRIBUTES, ContextTypeInfo), 48);
        let a = WDF_OBJECT_ATTRIBUTES::new();
        assert_eq!(
            (a.Size, a.ExecutionLevel, a.SynchronizationScope),
            (56, 1, 1)
        );
    }

    #[test]
    fn context_type_info_layout() {
        assert_eq!(size_of::<WDF_OBJECT_CONTEXT_TYPE_INFO>(), 40);
        assert_eq!(offset_of!(WDF_OBJECT_CONTEXT_TYPE_INFO, ContextName), 8);
        assert_eq!(offset_of!(WDF_OBJECT_CONTEXT_TYPE_INFO, ContextSize), 16);
        assert_eq!(offset_of!(WDF_OBJECT_CONTEXT_TYPE_INFO, UniqueType), 24);
        assert_eq!(
            offset_of!(WDF_OBJECT_CONTEXT_TYPE_INFO, EvtDriverGetUniqueContextType),
            32
        );
    }

    #[test]
    fn version_and_table_indices() {
        // 444 is on the framework's list of released table sizes, and above 438: the pointer
        // semantics of FuncTable (docs/notes/kmdf-binding.md §2, §5).
        assert_eq!(
            (KMDF_MAJOR, KMDF_MINOR, KMDF_1_15_FUNCTION_COUNT),
            (1, 15, 444)
        );
        let used = [
            index::CONTROL_DEVICE_INIT_ALLOCATE,
            index::CONTROL_FINISH_INITIALIZING,
            index::DEVICE_WDM_GET_DEVICE_OBJECT,
            index::DEVICE_INIT_FREE,
            index::DEVICE_INIT_SET_DEVICE_TYPE,
            index::DEVICE_INIT_SET_CHARACTERISTICS,
            index::DEVICE_CREATE,
            index::DRIVER_CREATE,
            index::OBJECT_DELETE,
        ];
        assert_eq!(used, [25, 27, 31, 54, 66, 70, 75, 116, 208]);
        assert!(used.iter().all(|&i| i < KMDF_1_15_FUNCTION_COUNT as usize));
    }

    #[test]
    fn sddl_strings() {
        let text = |s: StaticUnicode| String::from_utf16(s.units()).unwrap();
        assert_eq!(text(SDDL_DEVOBJ_KERNEL_ONLY), "D:P");
        assert_eq!(
            text(SDDL_DEVOBJ_SYS_ALL_ADM_ALL),
            "D:P(A;;GA;;;SY)(A;;GA;;;BA)"
        );
    }
}
