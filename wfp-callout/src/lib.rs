//! # wfp-callout: WFP callouts, and how a callout driver lets go of them
//!
//! A Windows Filtering Platform callout driver, KMDF by default and WDM with the `wdm` feature. It
//! registers two callouts (`FwpsCalloutRegister1`) and, in one transaction of a dynamic session,
//! a sublayer, their management objects and one filter each (see [`callouts`]):
//!
//! - **connect** (`ALE_AUTH_CONNECT_V4`): counts outbound IPv4 connections and blocks TCP
//!   connections to one port, `BlockedPort` under the service's `Parameters` key (off by default);
//! - **flow** (`ALE_FLOW_ESTABLISHED_V4`): associates a small context with every established flow
//!   (`FwpsFlowAssociateContext0`); its flowDeleteFn frees it.
//!
//! ## The lesson: unload
//! The `FwpsCalloutUnregisterById0` page and "Unloading a Callout Driver": a callout driver must not
//! return from its unload routine until every callout is unregistered, and unregistration answers
//! **`STATUS_DEVICE_BUSY`** while a flow still carries one of the callout's contexts. So unload:
//!
//! 1. stops giving flows new contexts;
//! 2. closes the dynamic session, which deletes the filters (no new classify starts; a filter
//!    left naming an unregistered callout would act as *block* for a terminating callout);
//! 3. unregisters each callout by id; on `STATUS_DEVICE_BUSY` removes every remaining context
//!    (`FwpsFlowRemoveContext0`: flowDeleteFn runs before it returns, or — `STATUS_PENDING`, a
//!    classify is in progress — later, and unload waits for it), then unregisters again;
//! 4. frees the context the callouts used (after their barrier drains);
//! 5. deletes the device object, and only then lets the framework (KMDF) or the I/O manager (WDM)
//!    finish the unload.
//!
//! None of that is written here step by step: each step is a guard from `common`, a named field of
//! [`callouts::State`] declared in teardown order (Rust drops fields in declaration order), and
//! `callouts::set_up` declares the same guards as locals in the reverse order — so unload and a
//! DriverEntry that fails halfway undo them the same way. The drain in step 3 is the
//! `common::wfp::Callout` guard's, not this driver's; if a callout cannot be unregistered, the
//! context and the device are leaked (logged), never freed under it.
//!
//! ## KMDF and WDM, side by side
//! Only the device object and the way unload is reached differ; everything else is [`callouts`].
//!
//! | | KMDF (default) | WDM (`--features wdm`) |
//! |---|---|---|
//! | entry point | `common::kmdf_driver_entry!`: bind to KMDF 1.15, then `driver_entry` | `DriverEntry` |
//! | driver object | `WdfDriverCreate`, non-PnP, with `EvtDriverUnload` | — |
//! | device object | control device, SDDL `D:P` (kernel only), `FILE_DEVICE_SECURE_OPEN` | unnamed `IoCreateDevice` (no name: nothing in user mode can open it), `FILE_DEVICE_SECURE_OPEN` |
//! | unload routine | the framework's, which calls `EvtDriverUnload`; the stub unbinds after it | `DriverObject->DriverUnload` |
//! | device deleted by | `WdfObjectDelete` | `IoDeleteDevice` |
#![no_std]

pub mod callouts;

use common::klog;
use common::log::etw::Provider;
use common::slot::StateSlot;
use common::sys::{DRIVER_OBJECT, NTSTATUS, UNICODE_STRING, nt_success};

#[cfg(not(feature = "wdm"))]
use common::kmdf::{self, ControlDevice, SDDL_DEVOBJ_KERNEL_ONLY, WDFDRIVER};
#[cfg(not(feature = "wdm"))]
use common::sys::STATUS_INSUFFICIENT_RESOURCES;
use common::sys::STATUS_SUCCESS;

#[cfg(feature = "wdm")]
use common::device::DeviceObject;
use common::device::{FILE_DEVICE_NETWORK, FILE_DEVICE_SECURE_OPEN};

/// The device guard at the bottom of the state: deleted last.
#[cfg(not(feature = "wdm"))]
type Device = ControlDevice;
/// The device guard at the bottom of the state: deleted last.
#[cfg(feature = "wdm")]
type Device = DeviceObject;

/// The state between DriverEntry and unload.
static STATE: StateSlot<callouts::State<Device>> = StateSlot::new();

// ---- KMDF -------------------------------------------------------------------------------------

#[cfg(not(feature = "wdm"))]
common::kmdf_driver_entry!(driver_entry);

/// The driver's DriverEntry, called by the KMDF stub once bound: the WDFDRIVER, the control
/// device, then the callouts. PASSIVE_LEVEL.
///
/// # Arguments
/// * `driver`, `registry_path` - DriverEntry's arguments.
///
/// # Return value
/// `STATUS_SUCCESS`, or the first failure after everything before it was undone (the stub then
/// unbinds from the framework).
#[cfg(not(feature = "wdm"))]
fn driver_entry(driver: *mut DRIVER_OBJECT, registry_path: *const UNICODE_STRING) -> NTSTATUS {
    // The ETW provider first, so that it is dropped last: after DriverEntry's last line.
    let log = Provider::register(common::etw_provider!());
    klog!(Info, "DriverEntry (KMDF)");
    // SAFETY: DriverEntry's registry path.
    let config = unsafe { callouts::read_config(registry_path) };
    let set_up = || {
        // SAFETY: DriverEntry's arguments, called from DriverEntry (through the stub).
        let wdf_driver =
            unsafe { kmdf::create_non_pnp_driver(driver, registry_path, evt_driver_unload) }
                .inspect_err(|s| {
                    klog!(Error, "WdfDriverCreate failed: %08Ix", s.cast_unsigned());
                })?;
        // Kernel-only DACL: nothing in user mode opens this device; it exists for
        // FwpsCalloutRegister. SECURE_OPEN applies the DACL to names below the device too.
        let device = ControlDevice::create(
            wdf_driver,
            SDDL_DEVOBJ_KERNEL_ONLY,
            FILE_DEVICE_NETWORK,
            FILE_DEVICE_SECURE_OPEN,
        )?;
        let device_object = device.wdm_device_object();
        // SAFETY: the control device's own WDM device object.
        unsafe { callouts::set_up(device, device_object, config) }
    };
    let status = match set_up() {
        // The framework owns DriverObject->DriverUnload: it calls evt_driver_unload.
        Ok(state) => keep(state),
        Err(status) => failed(status),
    };
    if nt_success(status) {
        log.keep(); // registered until DriverUnload's last line
    }
    status
}

/// `EvtDriverUnload`: called by the framework's unload routine, before it deletes the WDFDRIVER
/// and before the stub unbinds. PASSIVE_LEVEL.
#[cfg(not(feature = "wdm"))]
unsafe extern "system" fn evt_driver_unload(_driver: WDFDRIVER) {
    unload();
}

/// Keeps the state for unload (KMDF: DriverUnload is the framework's business).
#[cfg(not(feature = "wdm"))]
fn keep(state: callouts::State<Device>) -> NTSTATUS {
    match STATE.install(state) {
        Ok(()) => {
            klog!(
                Info,
                "loaded (KMDF): 2 callouts registered, 2 filters added"
            );
            STATUS_SUCCESS
        }
        Err(state) => {
            drop(state);
            STATUS_INSUFFICIENT_RESOURCES
        }
    }
}

// ---- WDM --------------------------------------------------------------------------------------

/// The driver's entry point (WDM build): an unnamed device object, then the callouts.
///
/// # Arguments
/// * `driver` - our driver object; DriverEntry sets its `DriverUnload`.
/// * `registry_path` - the service key (for `Parameters\BlockedPort`).
///
/// # Return value
/// `STATUS_SUCCESS`, or the first failure after everything before it was undone.
///
/// IRQL: PASSIVE_LEVEL.
///
/// # Safety
/// Called by the I/O manager with a valid driver object.
#[cfg(feature = "wdm")]
#[unsafe(no_mangle)]
pub unsafe extern "system" fn DriverEntry(
    driver: *mut DRIVER_OBJECT,
    registry_path: *const UNICODE_STRING,
) -> NTSTATUS {
    // The ETW provider first, so that it is dropped last: after DriverEntry's last line.
    let log = Provider::register(common::etw_provider!("wfp-callout-wdm"));
    klog!(Info, "DriverEntry (WDM)");
    // SAFETY: DriverEntry's registry path.
    let config = unsafe { callouts::read_config(registry_path) };
    let set_up = || {
        // Unnamed: no name, no way in from user mode (and no DACL needed). SECURE_OPEN anyway.
        // SAFETY: our driver object; the device is dropped (deleted) before unload returns.
        let device = unsafe {
            DeviceObject::create_unnamed(driver, FILE_DEVICE_NETWORK, FILE_DEVICE_SECURE_OPEN)
        }
        .inspect_err(|s| klog!(Error, "IoCreateDevice failed: %08Ix", s.cast_unsigned()))?;
        let device_object = device.as_ptr();
        // SAFETY: the device object `device` owns.
        unsafe { callouts::set_up(device, device_object, config) }
    };
    let status = match set_up() {
        Ok(state) => {
            // Keep the state, then set DriverUnload (what makes a WDM driver unloadable).
            // SAFETY: DriverEntry's driver object.
            let status = unsafe { STATE.install_and_enable_unload(state, driver, driver_unload) };
            if status == STATUS_SUCCESS {
                klog!(Info, "loaded (WDM): 2 callouts registered, 2 filters added");
            }
            status
        }
        Err(status) => failed(status),
    };
    if nt_success(status) {
        log.keep(); // registered until DriverUnload's last line
    }
    status
}

/// `DriverUnload` (WDM build). PASSIVE_LEVEL.
#[cfg(feature = "wdm")]
unsafe extern "system" fn driver_unload(_driver: *const DRIVER_OBJECT) {
    unload();
}

// ---- both ---------------------------------------------------------------------------------------

/// DriverEntry failed: whatever was set up has been undone already (the guards were dropped).
fn failed(status: NTSTATUS) -> NTSTATUS {
    klog!(
        Error,
        "DriverEntry failed with %08Ix; nothing is left registered",
        status.cast_unsigned()
    );
    status
}

/// Unload: log what the callouts saw, then drop the state, which runs the unload sequence
/// ([`callouts::State`]). PASSIVE_LEVEL.
fn unload() {
    // The provider DriverEntry kept: the first local, so EtwUnregister comes after the last line.
    let _log = Provider::resume();
    let Some(state) = STATE.take() else {
        return;
    };
    klog!(
        Info,
        "unload: stop admitting flow contexts, delete the filters, unregister the callouts"
    );
    state.context.log_counters();
    drop(state);
    klog!(
        Info,
        "unloaded: every callout unregistered, every flow context freed, device deleted"
    );
}
