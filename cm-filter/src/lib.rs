//! # cm-filter: a registry filter, registered and unregistered correctly
//!
//! A WDM driver that registers a `RegistryCallback` with **CmRegisterCallbackEx** and filters one
//! demo key, `\REGISTRY\MACHINE\SOFTWARE\CmFilterSample`:
//!
//! - setting a value named `Blocked` under it is refused with `STATUS_ACCESS_DENIED`;
//! - deleting the key itself is refused;
//! - other value writes and key creations/opens under it are logged, before and after (with the
//!   operation's final status);
//! - everything outside the key passes untouched, and cheaply.
//!
//! ## The lesson: the cookie is the only way out
//! CmRegisterCallbackEx hands back a cookie; **CmUnRegisterCallback(cookie)** is the only way to
//! remove the callback, and a driver must call it before it unloads. The documentation adds two
//! rules this driver follows where they apply:
//!
//! - never call CmRegisterCallback(Ex) or CmUnRegisterCallback from inside the RegistryCallback —
//!   that deadlocks (the callback below registers and unregisters nothing);
//! - an unknown cookie gets `STATUS_INVALID_PARAMETER` (the guard keeps the one right cookie).
//!
//! The context the callback uses is released only after CmUnRegisterCallback has returned **with
//! success**: it is a later field of [`State`] than the registration, so it is dropped after it.
//! Whether a RegistryCallback can still be running once CmUnRegisterCallback has returned, its page
//! does not say; so, as ex-callback does with the same silence, the driver keeps its own drain (a
//! callback barrier in the context, closed and waited for before the context is freed) instead of
//! assuming a promise the documentation does not make. And if CmUnRegisterCallback fails, the
//! callback may still be registered: the context is then leaked, with a log line, never freed
//! (`common::teardown::Tethered`).
#![no_std]

use core::ffi::c_void;
use core::sync::atomic::{AtomicI64, AtomicUsize, Ordering::Relaxed};

use common::barrier::{CallbackBarrier, KernelRundown};
use common::cm::{
    CmRegistration, KeyName, REG_CREATE_KEY_INFORMATION_V1, REG_DELETE_KEY_INFORMATION,
    REG_POST_OPERATION_INFORMATION, REG_SET_VALUE_KEY_INFORMATION, RegNtPostCreateKeyEx,
    RegNtPostOpenKeyEx, RegNtPostSetValueKey, RegNtPreCreateKeyEx, RegNtPreDeleteKey,
    RegNtPreOpenKeyEx, RegNtPreSetValueKey, upcase,
};
use common::log::etw::Provider;
use common::pool::{PoolBox, pool_tag};
use common::slot::StateSlot;
use common::sys::{
    DRIVER_OBJECT, NTSTATUS, STATUS_ACCESS_DENIED, STATUS_INSUFFICIENT_RESOURCES, STATUS_SUCCESS,
    UNICODE_STRING, nt_success,
};
use common::teardown::{Tether, Tethered};
use common::unicode::{
    ascii_to_utf16, equals_ignoring_case, is_at_or_below, path_is_at_or_below, units,
};
use common::{klog, unicode};

/// The demo key, in upper case (names are compared without case, as the registry does).
const DEMO_KEY: [u16; 41] = ascii_to_utf16("\\REGISTRY\\MACHINE\\SOFTWARE\\CMFILTERSAMPLE");
/// The value name whose writes are refused, in upper case.
const BLOCKED_VALUE: [u16; 7] = ascii_to_utf16("BLOCKED");
/// The altitude used when the service's `Parameters\Altitude` value does not say otherwise.
///
/// Altitudes are allocated by Microsoft ("Load order groups and altitudes for minifilter
/// drivers"); a product must request one. This value, in the FSFilter Activity Monitor range
/// (360000-389999) with a fractional part, is for test machines only.
const DEFAULT_ALTITUDE: [u16; 8] = ascii_to_utf16("385201.5");
/// Longest altitude accepted from the registry.
const ALTITUDE_CAPACITY: usize = 32;

/// Pool tag of the context, as `!poolused` shows it.
const CONTEXT_TAG: u32 = pool_tag(b"CmFl");

/// What the callback uses. Non-paged: the callback runs at PASSIVE_LEVEL, but the pool type keeps
/// the context usable from any IRQL the sample may grow into.
struct Context {
    /// Every RegistryCallback runs inside it. CmUnRegisterCallback's page does not promise that no
    /// call is running once it returns, so the context's drop closes the barrier and waits for
    /// the calls inside it before the pool is freed (the driver's own drain).
    barrier: CallbackBarrier<KernelRundown>,
    /// The registration's cookie, for CmCallbackGetKeyObjectIDEx. Zero until CmRegisterCallbackEx
    /// has returned: a call that arrives before that cannot resolve names and lets the operation
    /// through.
    cookie: AtomicI64,
    altitude: [u16; ALTITUDE_CAPACITY],
    altitude_units: usize,
    refused: AtomicUsize,
    logged: AtomicUsize,
}

impl Context {
    fn altitude(&self) -> UNICODE_STRING {
        #[allow(clippy::cast_possible_truncation)] // at most 32 units
        let bytes = (self.altitude_units * 2) as u16;
        UNICODE_STRING {
            Length: bytes,
            MaximumLength: bytes,
            Buffer: self.altitude.as_ptr().cast_mut(),
        }
    }

    /// The CallContext this driver leaves in a pre-notification it wants to see again in the
    /// post-notification: the context's own address, which no other driver will use.
    fn marker(&self) -> *mut c_void {
        core::ptr::from_ref(self).cast_mut().cast()
    }
}

/// Everything DriverEntry set up, **fields in teardown order** (Rust drops them in declaration
/// order; [`set_up`] declares them in the reverse order).
#[allow(dead_code)] // guards, held for what their Drop undoes
struct State {
    /// 1. CmUnRegisterCallback(cookie). If it fails, it snaps [`TETHER`].
    registration: CmRegistration,
    /// 2. The context: barrier closed and drained, then freed — or leaked if the unregistration
    ///    failed.
    context: Tethered<PoolBox<Context>>,
}

/// The state between DriverEntry and DriverUnload.
static STATE: StateSlot<State> = StateSlot::new();

/// Snapped when CmUnRegisterCallback fails: the context is then leaked, not freed.
static TETHER: Tether = Tether::new();

/// The driver's entry point: reads the altitude, allocates the context, registers the callback.
///
/// # Arguments
/// * `driver` - our driver object; DriverEntry sets its `DriverUnload`.
/// * `registry_path` - the service key; `Parameters\Altitude` (REG_SZ) overrides the altitude.
///
/// # Return value
/// `STATUS_SUCCESS`, or the status of the step that failed, with nothing left registered.
///
/// IRQL: PASSIVE_LEVEL.
///
/// # Safety
/// Called by the I/O manager with a valid driver object and registry path.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn DriverEntry(
    driver: *mut DRIVER_OBJECT,
    registry_path: *const UNICODE_STRING,
) -> NTSTATUS {
    // The ETW provider first, so that it is dropped last: after DriverEntry's last line.
    let log = Provider::register(common::etw_provider!());
    // SAFETY: the I/O manager's arguments are valid for the whole of DriverEntry.
    let state = match unsafe { set_up(driver, registry_path) } {
        Ok(state) => state,
        Err(status) => {
            klog!(
                Error,
                "DriverEntry failed with %08Ix; nothing is left registered",
                status.cast_unsigned()
            );
            return status;
        }
    };
    // Keep the state for DriverUnload, then set DriverUnload (which makes the driver unloadable).
    // SAFETY: DriverEntry's driver object.
    let status = unsafe { STATE.install_and_enable_unload(state, driver, driver_unload) };
    if nt_success(status) {
        log.keep(); // registered until DriverUnload's last line
    }
    status
}

/// Allocates the context and registers the callback. On failure, what exists is dropped in
/// reverse order as `?` returns.
///
/// # Safety
/// DriverEntry's arguments.
unsafe fn set_up(
    driver: *mut DRIVER_OBJECT,
    registry_path: *const UNICODE_STRING,
) -> Result<State, NTSTATUS> {
    let mut altitude = [0u16; ALTITUDE_CAPACITY];
    // SAFETY: DriverEntry's registry path.
    let altitude_units = match unsafe {
        common::registry::read_parameter_string(registry_path, unicode!("Altitude"), &mut altitude)
    } {
        Ok(n)
            if n > 0
                && altitude[..n]
                    .iter()
                    .all(|&u| u == u16::from(b'.') || (0x30..=0x39).contains(&u)) =>
        {
            klog!(Info, "altitude from Parameters\\Altitude");
            n
        }
        Ok(_) => {
            klog!(
                Warning,
                "Parameters\\Altitude is not a decimal number; using the default"
            );
            use_default(&mut altitude)
        }
        Err(_) => use_default(&mut altitude), // not configured: the usual case
    };

    let context = PoolBox::try_new(
        Context {
            barrier: CallbackBarrier::new(KernelRundown::new()),
            cookie: AtomicI64::new(0),
            altitude,
            altitude_units,
            refused: AtomicUsize::new(0),
            logged: AtomicUsize::new(0),
        },
        CONTEXT_TAG,
    )
    .map_err(|_| {
        klog!(Error, "context allocation failed");
        STATUS_INSUFFICIENT_RESOURCES
    })?;
    // The barrier opens at its final address, before any callback can see it.
    context.barrier.initialize();
    let context = Tethered::new(context, &TETHER);

    let altitude = context.altitude();
    // Rule (CmUnRegisterCallback): the context must outlive the registration. It does: it is
    // declared before the registration (a later field of State), so the registration is dropped
    // (unregistered) first, and a failed unregistration leaks it (TETHER).
    // SAFETY: see above; the altitude string lives in the context; IRQL PASSIVE_LEVEL.
    let registration = unsafe {
        CmRegistration::register(
            registry_callback,
            &raw const altitude,
            driver,
            context.as_context(),
            &TETHER,
        )
    }
    .inspect_err(|s| {
        klog!(
            Error,
            "CmRegisterCallbackEx failed: %08Ix",
            s.cast_unsigned()
        );
    })?;
    context.cookie.store(*registration.cookie(), Relaxed);
    // SAFETY: DriverEntry runs at PASSIVE_LEVEL.
    let passive = unsafe { common::log::Passive::new_unchecked() };
    common::klog_passive!(&passive, Info, "registered at altitude %wZ", &altitude);
    Ok(State {
        registration,
        context,
    })
}

fn use_default(altitude: &mut [u16; ALTITUDE_CAPACITY]) -> usize {
    altitude[..DEFAULT_ALTITUDE.len()].copy_from_slice(&DEFAULT_ALTITUDE);
    DEFAULT_ALTITUDE.len()
}

/// Unloads the driver: unregisters the callback (CmUnRegisterCallback), then frees the context.
///
/// IRQL: PASSIVE_LEVEL (CmUnRegisterCallback needs <= APC_LEVEL).
///
/// # Safety
/// Called by the I/O manager once, after a successful DriverEntry.
unsafe extern "system" fn driver_unload(_driver: *const DRIVER_OBJECT) {
    // The provider DriverEntry kept: the first local, so EtwUnregister comes after the last line.
    let _log = Provider::resume();
    let Some(state) = STATE.take() else {
        return;
    };
    klog!(
        Info,
        "unloading after refusing %Iu and logging %Iu operations",
        state.context.refused.load(Relaxed),
        state.context.logged.load(Relaxed)
    );
    // Field by field: CmUnRegisterCallback(cookie), then the context (its barrier drained, then
    // freed). Never the other way round: the callback may run until unregistration returns. If
    // CmUnRegisterCallback failed, the context is leaked and both are logged.
    drop(state);
    if TETHER.is_snapped() {
        klog!(
            Error,
            "unloaded with the callback possibly still registered: its context was leaked"
        );
    } else {
        klog!(Info, "unloaded: callback unregistered, context released");
    }
}

/// The RegistryCallback. Runs at PASSIVE_LEVEL, in the thread doing the registry operation.
///
/// `Argument1` is the REG_NOTIFY_CLASS; `Argument2` the information structure *that class
/// defines*. Only the classes filtered here read `Argument2`, each through its own structure; every
/// other class, known or not, is not read and passes with `STATUS_SUCCESS`.
///
/// Rule (RegistryCallback, CmUnRegisterCallback): this routine never calls CmRegisterCallback(Ex)
/// or CmUnRegisterCallback — that would deadlock.
unsafe extern "system" fn registry_callback(
    context: *mut c_void,
    argument1: *mut c_void,
    argument2: *mut c_void,
) -> NTSTATUS {
    // SAFETY: registered with our context, which outlives the registration.
    let context = unsafe { &*context.cast::<Context>() };
    let Some(_inside) = context.barrier.enter() else {
        return STATUS_SUCCESS; // unload has begun: touch nothing else, let the operation through
    };
    let class = argument1 as usize;
    match class {
        c if c == RegNtPreSetValueKey as usize => {
            // SAFETY: for this class Argument2 is a REG_SET_VALUE_KEY_INFORMATION.
            unsafe { pre_set_value(context, argument2.cast()) }
        }
        c if c == RegNtPreDeleteKey as usize => {
            // SAFETY: for this class Argument2 is a REG_DELETE_KEY_INFORMATION.
            unsafe { pre_delete_key(context, argument2.cast()) }
        }
        c if c == RegNtPreCreateKeyEx as usize || c == RegNtPreOpenKeyEx as usize => {
            // SAFETY: for these classes Argument2 is a REG_CREATE_KEY_INFORMATION_V1 or a
            // REG_OPEN_KEY_INFORMATION_V1, which have the same layout.
            unsafe { pre_create_or_open(context, argument2.cast()) }
        }
        c if c == RegNtPostSetValueKey as usize
            || c == RegNtPostCreateKeyEx as usize
            || c == RegNtPostOpenKeyEx as usize =>
        {
            // SAFETY: for post-notifications Argument2 is a REG_POST_OPERATION_INFORMATION.
            unsafe { post_operation(context, class, argument2.cast()) }
        }
        _ => STATUS_SUCCESS,
    }
}

/// The name of a key object of this notification, or `None` (logged) if it cannot be had.
///
/// # Safety
/// `object` comes from the information structure being processed.
#[allow(clippy::inline_always)] // measured: inlining keeps the path of every other registry operation short
#[inline(always)]
unsafe fn key_name(context: &Context, object: *const c_void) -> Option<KeyName> {
    let cookie = context.cookie.load(Relaxed);
    if cookie == 0 {
        return None; // still inside CmRegisterCallbackEx: let it through
    }
    // SAFETY: per the contract; the cookie is ours.
    match unsafe { KeyName::of(&cookie, object) } {
        Ok(name) => Some(name),
        Err(status) => {
            klog!(
                Warning,
                "CmCallbackGetKeyObjectIDEx failed: %08Ix; operation not filtered",
                status.cast_unsigned()
            );
            None
        }
    }
}

/// `RegNtPreSetValueKey`: refuse `Blocked` under the demo key, log other values there.
///
/// Split in two so the path every other registry write in the system takes (resolve the name,
/// see it is elsewhere, release it) stays short; the demo-key work is out of line.
///
/// # Safety
/// `info` is the notification's REG_SET_VALUE_KEY_INFORMATION.
#[inline(never)]
unsafe fn pre_set_value(context: &Context, info: *mut REG_SET_VALUE_KEY_INFORMATION) -> NTSTATUS {
    // SAFETY: per the contract.
    let info = unsafe { &mut *info };
    // SAFETY: the key object of this notification.
    let Some(key) = (unsafe { key_name(context, info.Object) }) else {
        return STATUS_SUCCESS;
    };
    if !path_is_at_or_below(key.units(), &DEMO_KEY, upcase) {
        return STATUS_SUCCESS;
    }
    // SAFETY: as above.
    unsafe { set_value_in_demo_key(context, info, &key) }
}

/// A value written under the demo key: refuse `Blocked`, log the rest.
///
/// # Safety
/// `info` is the notification's REG_SET_VALUE_KEY_INFORMATION.
#[cold]
#[inline(never)]
unsafe fn set_value_in_demo_key(
    context: &Context,
    info: &mut REG_SET_VALUE_KEY_INFORMATION,
    key: &KeyName,
) -> NTSTATUS {
    // SAFETY: a RegistryCallback runs at PASSIVE_LEVEL ("RegistryCallback routine" page), and
    // this runs inside it.
    let passive = unsafe { common::log::Passive::new_unchecked() };
    // SAFETY: ValueName is a counted string (possibly NULL for some callers; `units` allows it).
    let value = unsafe { units(info.ValueName) };
    let empty = UNICODE_STRING {
        Length: 0,
        MaximumLength: 0,
        Buffer: core::ptr::null_mut(),
    };
    // SAFETY: non-NULL ValueName points to a valid string for the duration of the callback.
    let value_name = unsafe { info.ValueName.as_ref() }.unwrap_or(&empty);
    if equals_ignoring_case(value, &BLOCKED_VALUE, upcase) {
        context.refused.fetch_add(1, Relaxed);
        common::klog_passive!(
            &passive,
            Info,
            "refused: set value %wZ under %wZ",
            value_name,
            key.as_unicode_string()
        );
        return STATUS_ACCESS_DENIED;
    }
    // Ask for the post-notification to be recognised as ours.
    info.CallContext = context.marker();
    context.logged.fetch_add(1, Relaxed);
    common::klog_passive!(
        &passive,
        Info,
        "set value %wZ under %wZ",
        value_name,
        key.as_unicode_string()
    );
    STATUS_SUCCESS
}

/// `RegNtPreDeleteKey`: refuse deleting the demo key itself; log deleting its subkeys.
///
/// # Safety
/// `info` is the notification's REG_DELETE_KEY_INFORMATION.
#[inline(never)]
unsafe fn pre_delete_key(context: &Context, info: *mut REG_DELETE_KEY_INFORMATION) -> NTSTATUS {
    // SAFETY: per the contract.
    let info = unsafe { &*info };
    // SAFETY: the key object of this notification.
    let Some(key) = (unsafe { key_name(context, info.Object) }) else {
        return STATUS_SUCCESS;
    };
    if !path_is_at_or_below(key.units(), &DEMO_KEY, upcase) {
        return STATUS_SUCCESS;
    }
    delete_in_demo_key(context, &key)
}

/// A key under (or being) the demo key is about to be deleted.
#[cold]
#[inline(never)]
fn delete_in_demo_key(context: &Context, key: &KeyName) -> NTSTATUS {
    // SAFETY: a RegistryCallback runs at PASSIVE_LEVEL ("RegistryCallback routine" page), and
    // this runs inside it.
    let passive = unsafe { common::log::Passive::new_unchecked() };
    if key.units().len() == DEMO_KEY.len() {
        context.refused.fetch_add(1, Relaxed);
        common::klog_passive!(
            &passive,
            Info,
            "refused: delete key %wZ",
            key.as_unicode_string()
        );
        return STATUS_ACCESS_DENIED;
    }
    context.logged.fetch_add(1, Relaxed);
    common::klog_passive!(&passive, Info, "delete key %wZ", key.as_unicode_string());
    STATUS_SUCCESS
}

/// `RegNtPreCreateKeyEx` / `RegNtPreOpenKeyEx`: log creations and opens under the demo key.
///
/// `CompleteName` is absolute when it starts with `\`; otherwise it is relative to `RootObject`,
/// whose name the documentation says to obtain with CmCallbackGetKeyObjectIDEx.
///
/// # Safety
/// `info` is the notification's REG_CREATE_KEY_INFORMATION_V1 / REG_OPEN_KEY_INFORMATION_V1.
#[inline(never)] // keeps the dispatcher small: the common case pays for one handler only
unsafe fn pre_create_or_open(
    context: &Context,
    info: *mut REG_CREATE_KEY_INFORMATION_V1,
) -> NTSTATUS {
    // SAFETY: per the contract.
    let info = unsafe { &mut *info };
    // SAFETY: CompleteName is a counted string of this notification.
    let complete = unsafe { units(info.CompleteName) };
    let inside = if complete.first() == Some(&u16::from(b'\\')) {
        path_is_at_or_below(complete, &DEMO_KEY, upcase)
    } else {
        // SAFETY: RootObject is a key object of this notification.
        let Some(root) = (unsafe { key_name(context, info.RootObject) }) else {
            return STATUS_SUCCESS;
        };
        is_at_or_below(
            &[root.units(), &[u16::from(b'\\')], complete],
            &DEMO_KEY,
            upcase,
        )
    };
    if inside {
        create_or_open_in_demo_key(context, info);
    }
    STATUS_SUCCESS
}

/// A key under the demo key is about to be created or opened: mark it for the post-notification.
#[cold]
#[inline(never)]
fn create_or_open_in_demo_key(context: &Context, info: &mut REG_CREATE_KEY_INFORMATION_V1) {
    // SAFETY: a RegistryCallback runs at PASSIVE_LEVEL ("RegistryCallback routine" page), and
    // this runs inside it.
    let passive = unsafe { common::log::Passive::new_unchecked() };
    info.CallContext = context.marker();
    context.logged.fetch_add(1, Relaxed);
    // SAFETY: a non-NULL CompleteName is valid for the duration of the callback.
    if let Some(name) = unsafe { info.CompleteName.as_ref() } {
        common::klog_passive!(&passive, Info, "create/open key %wZ", name);
    }
}

/// Post-notifications: report the final status of operations our pre-notification marked.
///
/// # Safety
/// `info` is the notification's REG_POST_OPERATION_INFORMATION.
#[inline(never)] // keeps the dispatcher small: the common case pays for one handler only
unsafe fn post_operation(
    context: &Context,
    class: usize,
    info: *mut REG_POST_OPERATION_INFORMATION,
) -> NTSTATUS {
    // SAFETY: per the contract.
    let info = unsafe { &*info };
    if info.CallContext != context.marker() {
        return STATUS_SUCCESS; // not one of ours: the cheap, common case
    }
    post_operation_in_demo_key(class, info);
    STATUS_SUCCESS
}

/// The final status of an operation under the demo key.
#[cold]
#[inline(never)]
fn post_operation_in_demo_key(class: usize, info: &REG_POST_OPERATION_INFORMATION) {
    klog!(
        Info,
        "post-operation (class %Iu) completed with %08Ix",
        class,
        info.Status.cast_unsigned()
    );
}
