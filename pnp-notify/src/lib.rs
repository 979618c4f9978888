//! # pnp-notify: PnP notifications, registered and torn down correctly
//!
//! A WDM driver that registers two Plug and Play notification callbacks:
//!
//! - **device-interface change** for the volume interface class (`GUID_DEVINTERFACE_VOLUME`), with
//!   `PNPNOTIFY_DEVICE_INTERFACE_INCLUDE_EXISTING_INTERFACES`: the PnP manager first reports every
//!   volume already present (before `IoRegisterPlugPlayNotification` returns), then each arrival and
//!   removal. The callback keeps a bounded table of the interfaces present.
//! - **hardware-profile change**, which it only logs, so the driver holds more than one
//!   registration at a time.
//!
//! ## The lesson: which unregister routine, and then what
//! `IoUnregisterPlugPlayNotificationEx` returns only when the callback is not running and can never
//! run again. The old `IoUnregisterPlugPlayNotification` (obsolete since Windows 7) does not wait: a
//! notification already dispatched may still run after it returned. So DriverUnload:
//!
//! 1. unregisters both callbacks with `IoUnregisterPlugPlayNotificationEx` (PASSIVE_LEVEL), which
//!    also releases the reference each registration holds on the driver object; a forgotten one
//!    would keep the driver from ever unloading;
//! 2. waits for callbacks in flight (the barrier in the context). After the Ex routine there are
//!    none, so the wait returns at once; **if only the old routine were used, this barrier alone
//!    would carry the guarantee** for the calls it can see;
//! 3. frees the context and the interface table in it.
//!
//! The driver does not write that sequence by hand: each step is a guard from `common`, a named
//! field of [`State`] declared in teardown order (registrations, then the context; Rust drops
//! fields in declaration order), and DriverEntry declares the same guards as locals in the reverse
//! order, so a halfway failure undoes them the same way.
//!
//! ## The callbacks
//! They run at PASSIVE_LEVEL. Each checks the notification's `Version` and `Size` before reading
//! anything else, copies what it needs (the structure is the PnP manager's and valid only during the
//! call), returns `STATUS_SUCCESS` for everything it does not mean to veto, and **never blocks**
//! (PnP notification callbacks must not): the interface table is behind a spin lock
//! (`common::mutex::SpinMutex`), held for a bounded update of at most eight slots and never across
//! a kernel call; the log line, which may convert the Unicode name and so needs PASSIVE_LEVEL,
//! comes after it is released.
#![no_std]

use core::ffi::c_void;
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use common::barrier::{CallbackBarrier, KernelRundown};
use common::log::Passive;
use common::log::etw::Provider;
use common::mutex::{Mutex, SpinMutex};
use common::pnp::{
    DEVICE_INTERFACE_CHANGE_NOTIFICATION, GUID_DEVICE_INTERFACE_ARRIVAL,
    GUID_DEVICE_INTERFACE_REMOVAL, GUID_DEVINTERFACE_VOLUME, GUID_HWPROFILE_CHANGE_CANCELLED,
    GUID_HWPROFILE_CHANGE_COMPLETE, GUID_HWPROFILE_QUERY_CHANGE, HWPROFILE_CHANGE_NOTIFICATION,
    PNP_NOTIFICATION_VERSION, PnpNotification, guid_eq, pnp_event_code, version_and_size,
};
use common::pool::{PoolBox, pool_tag};
use common::slot::StateSlot;
use common::sys::{
    DRIVER_OBJECT, NTSTATUS, STATUS_INSUFFICIENT_RESOURCES, STATUS_SUCCESS, UNICODE_STRING,
    nt_success,
};
use common::teardown::{Tether, Tethered};
use common::{klog, klog_passive};

/// Pool tag of the context allocation, as `!poolused` shows it.
const CONTEXT_TAG: u32 = pool_tag(b"PnpN");

/// How many interfaces the table tracks at once. More arrivals are logged, not tracked.
const TABLE_SLOTS: usize = 8;
/// Longest symbolic link the table stores, in UTF-16 units (volume links are about 50 to 160).
/// Longer names are logged with their length and not tracked.
const NAME_UNITS: usize = 200;

/// One tracked interface: its symbolic link name, copied out of the notification.
#[derive(Clone, Copy)]
struct Interface {
    /// Length in UTF-16 units; 0 marks a free slot (empty names are never stored).
    units: usize,
    name: [u16; NAME_UNITS],
}

impl Interface {
    fn is(&self, name: &[u16]) -> bool {
        self.units == name.len() && self.name[..self.units] == *name
    }
}

/// What happened to an arrival.
enum Arrival {
    /// Stored; the number of interfaces now present.
    Added(usize),
    /// Already in the table: with INCLUDE_EXISTING_INTERFACES the PnP manager may report an
    /// interface twice around registration.
    AlreadyPresent,
    /// No free slot.
    Full,
}

/// The interfaces currently present. Bounded: no allocation in a callback.
struct InterfaceTable {
    slots: [Interface; TABLE_SLOTS],
}

impl InterfaceTable {
    fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.units != 0).count()
    }

    /// Stores `name` (1..=NAME_UNITS units) unless it is present or the table is full.
    fn add(&mut self, name: &[u16]) -> Arrival {
        if self.slots.iter().any(|s| s.is(name)) {
            return Arrival::AlreadyPresent;
        }
        let Some(slot) = self.slots.iter_mut().find(|s| s.units == 0) else {
            return Arrival::Full;
        };
        slot.name[..name.len()].copy_from_slice(name);
        slot.units = name.len();
        Arrival::Added(self.len())
    }

    /// Forgets `name`; the number of interfaces still present, or `None` if it was not tracked.
    fn remove(&mut self, name: &[u16]) -> Option<usize> {
        let slot = self.slots.iter_mut().find(|s| s.is(name))?;
        slot.units = 0;
        Some(self.len())
    }
}

/// What the callbacks share.
///
/// Non-paged pool (the image and its data are non-pageable throughout). The barrier is the first
/// thing a callback touches in it and the last thing torn down. All-zero bytes are its initial
/// state (barrier and lock not yet initialised, counters 0, every table slot free), which is how it
/// is built: in place, because the table is too large for the kernel stack.
struct Context {
    barrier: CallbackBarrier<KernelRundown>,
    table: Mutex<SpinMutex, InterfaceTable>,
    arrivals: AtomicUsize,
    removals: AtomicUsize,
    profile_events: AtomicUsize,
}

/// Everything DriverEntry set up, **fields in teardown order** (Rust drops them in declaration
/// order; [`set_up`] declares them in the reverse order).
#[allow(dead_code)] // guards, held for what their Drop undoes
struct State {
    /// 1. IoUnregisterPlugPlayNotificationEx: hardware-profile change.
    on_profile: PnpNotification,
    /// 2. IoUnregisterPlugPlayNotificationEx: device-interface change, volume class.
    on_interfaces: PnpNotification,
    /// 3. The context both callbacks use, with the interface table: barrier drained, then freed
    ///    — or leaked, if an unregistration failed ([`TETHER`]).
    context: Tethered<PoolBox<Context>>,
}

/// Snapped when an IoUnregisterPlugPlayNotificationEx fails: the context is then leaked.
static TETHER: Tether = Tether::new();

/// The state between DriverEntry and DriverUnload.
static STATE: StateSlot<State> = StateSlot::new();

/// The driver's entry point: allocates the context and registers the two callbacks.
///
/// # Arguments
/// * `driver` - our driver object; each registration references it, and DriverEntry sets its
///   `DriverUnload`.
/// * `_registry_path` - the service key; unused.
///
/// # Return value
/// `STATUS_SUCCESS`, or the status of the first step that failed, after everything done before it
/// has been undone.
///
/// IRQL: PASSIVE_LEVEL.
///
/// # Safety
/// Called by the I/O manager with a valid driver object.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn DriverEntry(
    driver: *mut DRIVER_OBJECT,
    _registry_path: *const UNICODE_STRING,
) -> NTSTATUS {
    // The ETW provider first, so that it is dropped last: after DriverEntry's last line.
    let log = Provider::register(common::etw_provider!());
    klog!(Info, "DriverEntry");
    let state = match set_up(driver) {
        Ok(state) => state,
        Err(status) => {
            // Whatever set_up built was dropped as it returned, in reverse order.
            klog!(
                Error,
                "DriverEntry failed with %08Ix; nothing is left registered",
                status.cast_unsigned()
            );
            return status;
        }
    };
    let present = interfaces_present(&state);
    // Keep the state for DriverUnload, then set DriverUnload (which makes the driver unloadable).
    // SAFETY: DriverEntry's driver object.
    let status = unsafe { STATE.install_and_enable_unload(state, driver, driver_unload) };
    klog!(
        Info,
        "loaded: 2 notifications registered, %Iu volume interfaces present",
        present
    );
    if nt_success(status) {
        log.keep(); // registered until DriverUnload's last line
    }
    status
}

/// Allocates the context, then registers the two callbacks, in that order.
///
/// Every step is a guard held in a local. If a step fails, `?` returns and Rust drops the locals
/// that exist in reverse order: the registrations (IoUnregisterPlugPlayNotificationEx), then the
/// context, exactly the unload order.
fn set_up(driver: *mut DRIVER_OBJECT) -> Result<State, NTSTATUS> {
    // 1. The context, in non-paged pool, its barrier and lock initialised at their final address
    //    before any callback can see them: the first callbacks run *inside* the registration below.
    // SAFETY: all-zero bytes are a valid Context: integers, atomics, `false` flags, a zeroed
    // EX_RUNDOWN_REF and KSPIN_LOCK (both initialised just below), every table slot free.
    let context = unsafe { PoolBox::<Context>::try_new_zeroed(CONTEXT_TAG) }.ok_or_else(|| {
        klog!(Error, "context allocation failed");
        STATUS_INSUFFICIENT_RESOURCES
    })?;
    context.barrier.initialize();
    context.table.initialize();
    let context = Tethered::new(context, &TETHER);

    // 2. The registrations. Rule: the context must outlive every call of the callbacks. It does:
    //    it is declared (and pushed) before them, so it is dropped after IoUnregisterPlugPlay-
    //    NotificationEx has returned for both.
    // SAFETY: see the rule above; `driver` is our own driver object.
    let on_interfaces = unsafe {
        PnpNotification::device_interface(
            &GUID_DEVINTERFACE_VOLUME,
            true,
            driver,
            on_interface_change,
            context.as_context(),
            &TETHER,
        )
    }
    .inspect_err(|s| {
        klog!(
            Error,
            "IoRegisterPlugPlayNotification(volume interfaces) failed: %08Ix",
            s.cast_unsigned()
        );
    })?;
    // SAFETY: as above.
    let on_profile = unsafe {
        PnpNotification::hardware_profile(
            driver,
            on_hardware_profile_change,
            context.as_context(),
            &TETHER,
        )
    }
    .inspect_err(|s| {
        klog!(
            Error,
            "IoRegisterPlugPlayNotification(hardware profile) failed: %08Ix",
            s.cast_unsigned()
        );
    })?;

    Ok(State {
        on_profile,
        on_interfaces,
        context,
    })
}

/// How many interfaces the table holds. Takes and releases the lock.
fn interfaces_present(state: &State) -> usize {
    state.context.table.lock().map_or(0, |table| table.len())
}

/// Unloads the driver: logs what it saw, then drops the state, which undoes everything in reverse.
///
/// IRQL: PASSIVE_LEVEL (IoUnregisterPlugPlayNotificationEx requires it; the barrier's wait blocks).
///
/// # Safety
/// Called by the I/O manager once, after a successful DriverEntry.
unsafe extern "system" fn driver_unload(_driver: *const DRIVER_OBJECT) {
    // The provider DriverEntry kept: the first local, so EtwUnregister comes after the last line.
    let _log = Provider::resume();
    let Some(state) = STATE.take() else {
        return;
    };
    // The table lock is taken and released here, *before* unregistering: the Ex routine waits for a
    // callback in flight, and that callback may be waiting for this very lock.
    let present = interfaces_present(&state);
    let context = &state.context;
    klog!(
        Info,
        "unloading: %Iu interfaces present after %Iu arrivals, %Iu removals and %Iu hardware-profile events",
        present,
        context.arrivals.load(Relaxed),
        context.removals.load(Relaxed),
        context.profile_events.load(Relaxed)
    );
    // Dropping the state, field by field in declaration order:
    //   1. IoUnregisterPlugPlayNotificationEx x2 (hardware profile, volume interfaces): when each
    //      returns, its callback is not running and never will again; the driver-object references go;
    //   2. the context: its barrier closes and drains (nothing is inside), then ExFreePoolWithTag.
    drop(state);
    if TETHER.is_snapped() {
        klog!(
            Error,
            "unloaded with a notification possibly still registered: its context was leaked"
        );
    } else {
        klog!(Info, "unloaded: every registration undone");
    }
}

/// Resolves a callback's context. Touches nothing but the pointer.
///
/// # Safety
/// `context` must be the `PoolBox<Context>` address the callback was registered with.
unsafe fn context_of<'a>(context: *mut c_void) -> &'a Context {
    // SAFETY: per the contract, the pointer is our context, which outlives every call (it is freed
    // only after IoUnregisterPlugPlayNotificationEx returned and the barrier drained).
    unsafe { &*context.cast::<Context>() }
}

/// The symbolic link of a notification as UTF-16 units, if it is well formed and not empty.
///
/// # Safety
/// `link` must be the `SymbolicLinkName` of a notification whose Version and Size were checked, and
/// it is only used during the callback.
unsafe fn link_units<'a>(
    link: *const UNICODE_STRING,
) -> Result<(UNICODE_STRING, &'a [u16]), usize> {
    if link.is_null() {
        return Err(0);
    }
    // SAFETY: non-null, and the PnP manager's string lives for the duration of the callback.
    let copy = unsafe { link.read() };
    let bytes = usize::from(copy.Length);
    if bytes == 0 || bytes % 2 != 0 || copy.Buffer.is_null() || !copy.Buffer.is_aligned() {
        return Err(bytes);
    }
    // SAFETY: a counted string of `bytes` bytes at an aligned, non-null buffer owned by the PnP
    // manager for the duration of the callback; we only read it.
    let units = unsafe { core::slice::from_raw_parts(copy.Buffer.cast_const(), bytes / 2) };
    Ok((copy, units))
}

/// `EventCategoryDeviceInterfaceChange` callback for volumes: tracks arrivals and removals.
///
/// # Arguments
/// * `notification` - a `DEVICE_INTERFACE_CHANGE_NOTIFICATION`, the PnP manager's, valid only now.
/// * `context` - our context.
///
/// # Return value
/// `STATUS_SUCCESS`, always: these events cannot be vetoed, and failing an event we do not handle
/// is a bug.
///
/// IRQL: PASSIVE_LEVEL. Called for existing interfaces before `IoRegisterPlugPlayNotification`
/// returns, then for each arrival and removal.
unsafe extern "system" fn on_interface_change(
    notification: *const c_void,
    context: *mut c_void,
) -> NTSTATUS {
    // 1. Version and Size first: every PnP notification starts with them.
    // SAFETY: the PnP manager's notification structure, during the callback.
    let (version, size) = unsafe { version_and_size(notification) };
    if version != PNP_NOTIFICATION_VERSION
        || usize::from(size) < size_of::<DEVICE_INTERFACE_CHANGE_NOTIFICATION>()
    {
        klog!(
            Warning,
            "interface notification ignored: version %Iu, size %Iu",
            version,
            size
        );
        return STATUS_SUCCESS;
    }
    // 2. Copy what is needed, field by field: the structure is the PnP manager's.
    // SAFETY: Version and Size say the whole structure is there.
    let change = unsafe { &*notification.cast::<DEVICE_INTERFACE_CHANGE_NOTIFICATION>() };
    let event = change.Event;
    let arrival = match pnp_event_code(&event) {
        Some(code) if code == GUID_DEVICE_INTERFACE_ARRIVAL.data1 => true,
        Some(code) if code == GUID_DEVICE_INTERFACE_REMOVAL.data1 => false,
        _ => {
            klog!(
                Warning,
                "interface notification with unknown event %08Ix: ignored",
                event.data1
            );
            return STATUS_SUCCESS;
        }
    };
    let class = change.InterfaceClassGuid;
    if !guid_eq(&class, &GUID_DEVINTERFACE_VOLUME) {
        klog!(
            Warning,
            "interface notification for class %08Ix, not volumes: ignored",
            class.data1
        );
        return STATUS_SUCCESS;
    }
    let link = change.SymbolicLinkName;
    // SAFETY: the structure was checked; the string is used only during this call.
    let (link, name) = match unsafe { link_units(link) } {
        Ok(link) => link,
        Err(bytes) => {
            klog!(
                Warning,
                "interface notification with an empty or malformed symbolic link (%Iu bytes): ignored",
                bytes
            );
            return STATUS_SUCCESS;
        }
    };
    if name.len() > NAME_UNITS {
        klog!(
            Warning,
            "interface change with a %Iu-byte symbolic link: too long to track, ignored",
            usize::from(link.Length)
        );
        return STATUS_SUCCESS;
    }

    // 3. Only now the context, inside the barrier.
    // SAFETY: registered with our context pointer.
    let context = unsafe { context_of(context) };
    let Some(_inside) = context.barrier.enter() else {
        return STATUS_SUCCESS; // teardown has begun: touch nothing else
    };
    // SAFETY: PnP notification callbacks run at PASSIVE_LEVEL (IoRegisterPlugPlayNotification's
    // page); the proof is used only after the spin lock is released.
    let passive = unsafe { common::log::Passive::new_unchecked() };
    track(context, &passive, arrival, name, &link);
    STATUS_SUCCESS
}

/// Records an arrival or removal of `name` in the table, then logs it (`link` is the same name as
/// a counted string). The spin lock is held for the bounded table update only; the log line (a
/// Unicode conversion: PASSIVE_LEVEL) comes after it is released. Never blocks.
fn track(context: &Context, passive: &Passive, arrival: bool, name: &[u16], link: &UNICODE_STRING) {
    let Some(mut table) = context.table.lock() else {
        return;
    };
    if arrival {
        let outcome = table.add(name);
        drop(table);
        context.arrivals.fetch_add(1, Relaxed);
        match outcome {
            Arrival::Added(present) => {
                klog_passive!(
                    passive,
                    Info,
                    "volume arrived: %wZ (%Iu present)",
                    link,
                    present
                );
            }
            Arrival::AlreadyPresent => {
                klog_passive!(passive, Info, "volume reported again: %wZ", link);
            }
            Arrival::Full => klog_passive!(
                passive,
                Warning,
                "interface table full (%Iu): not tracking %wZ",
                TABLE_SLOTS,
                link
            ),
        }
    } else {
        let outcome = table.remove(name);
        drop(table);
        context.removals.fetch_add(1, Relaxed);
        if let Some(present) = outcome {
            klog_passive!(
                passive,
                Info,
                "volume removed: %wZ (%Iu present)",
                link,
                present
            );
        } else {
            klog_passive!(
                passive,
                Info,
                "volume removed, but it was not tracked: %wZ",
                link
            );
        }
    }
}

/// `EventCategoryHardwareProfileChange` callback: logs the event, vetoes nothing.
///
/// IRQL: PASSIVE_LEVEL. Returns `STATUS_SUCCESS` for every event: a failure status on
/// `GUID_HWPROFILE_QUERY_CHANGE` would veto the change, on anything else it would be a mistake.
unsafe extern "system" fn on_hardware_profile_change(
    notification: *const c_void,
    context: *mut c_void,
) -> NTSTATUS {
    // SAFETY: the PnP manager's notification structure, during the callback.
    let (version, size) = unsafe { version_and_size(notification) };
    if version != PNP_NOTIFICATION_VERSION
        || usize::from(size) < size_of::<HWPROFILE_CHANGE_NOTIFICATION>()
    {
        klog!(
            Warning,
            "hardware-profile notification ignored: version %Iu, size %Iu",
            version,
            size
        );
        return STATUS_SUCCESS;
    }
    // SAFETY: Version and Size say the structure is complete; copy the event.
    let event = unsafe { (*notification.cast::<HWPROFILE_CHANGE_NOTIFICATION>()).Event };
    // SAFETY: registered with our context pointer.
    let context = unsafe { context_of(context) };
    let Some(_inside) = context.barrier.enter() else {
        return STATUS_SUCCESS;
    };
    let n = context.profile_events.fetch_add(1, Relaxed) + 1;
    match pnp_event_code(&event) {
        Some(code) if code == GUID_HWPROFILE_QUERY_CHANGE.data1 => {
            klog!(Info, "hardware profile #%Iu: query change, not vetoed", n);
        }
        Some(code) if code == GUID_HWPROFILE_CHANGE_COMPLETE.data1 => {
            klog!(Info, "hardware profile #%Iu: change complete", n);
        }
        Some(code) if code == GUID_HWPROFILE_CHANGE_CANCELLED.data1 => {
            klog!(Info, "hardware profile #%Iu: change cancelled", n);
        }
        _ => klog!(
            Info,
            "hardware profile #%Iu: unknown event %08Ix, ignored",
            n,
            event.data1
        ),
    }
    STATUS_SUCCESS
}
