//! Plug and Play notifications: `IoRegisterPlugPlayNotification`,
//! `IoUnregisterPlugPlayNotificationEx` (and the obsolete `IoUnregisterPlugPlayNotification`).
//!
//! One guard, [`PnpNotification`]: a callback registered for one event category, unregistered with
//! `IoUnregisterPlugPlayNotificationEx` when dropped.
//!
//! **What the family guarantees after unregistration.** The two unregister routines differ in
//! exactly the way that matters at unload:
//!
//! - `IoUnregisterPlugPlayNotificationEx` (Windows 7 and later): once it returns, the registration
//!   is cancelled and *no further callbacks can occur*; a call already running has finished. This is
//!   the routine [`PnpNotification`]'s `Drop` uses.
//! - `IoUnregisterPlugPlayNotification` (obsolete since Windows 7): the system does *not*
//!   synchronise it with a running notification, so the callback may run after it has returned. A
//!   driver that used it would need its own mechanism (a
//!   [`CallbackBarrier`](crate::barrier::CallbackBarrier) in memory that outlives every such call) to
//!   ignore those late calls, and even that cannot cover code of the callback that runs before the
//!   barrier is entered. It is declared here only so the test fixtures can show what goes wrong.
//!
//! Either way, **each registration holds a reference on the driver object**: a driver that forgets
//! one unregistration can never unload. And the order is the family's rule: unregister first, then
//! free the context the callback used.
//!
//! **The notification structures** are the kernel's memory, valid only during the callback (the
//! documentation says they are allocated from paged memory). A callback checks `Version` and `Size`
//! before reading anything else, then copies what it needs; see [`DEVICE_INTERFACE_CHANGE_NOTIFICATION`].
//!
//! Layouts and constants are plain data, compiled on every target and checked against the
//! documented x64 layouts by the host tests; the routines and the guard exist only for Windows.
//!
//! **Which declarations are windows-sys'.** windows-sys 0.61.2 (`Wdk_System_SystemServices`)
//! declares `IoRegisterPlugPlayNotification`, both unregister routines and the
//! `EventCategory*` values correctly, against `ntoskrnl.exe`; they are used as they are. It lacks
//! the notification structures and `PNPNOTIFY_DEVICE_INTERFACE_INCLUDE_EXISTING_INTERFACES`, which
//! are declared here; its event GUIDs live in two large Win32 modules (DeviceAndDriverInstallation,
//! Ioctl) that the drivers do not otherwise need, so the few used are declared here too and the
//! host tests check them against windows-sys' values.

#![allow(non_camel_case_types, non_snake_case, clippy::upper_case_acronyms)]

use core::ffi::c_void;

pub use windows_sys::Wdk::System::SystemServices::{
    EventCategoryDeviceInterfaceChange, EventCategoryHardwareProfileChange,
    EventCategoryTargetDeviceChange, IO_NOTIFICATION_EVENT_CATEGORY,
};
pub use windows_sys::core::GUID;

use crate::sys::{NTSTATUS, UNICODE_STRING};

// ---- registration flags (wdm.h) ---------------------------------------------------------------
/// `PNPNOTIFY_DEVICE_INTERFACE_INCLUDE_EXISTING_INTERFACES`: with `EventCategoryDeviceInterfaceChange`
/// only. The PnP manager calls the callback for every interface of the class that is already
/// active, *before* `IoRegisterPlugPlayNotification` returns, and then for future arrivals and
/// removals. The same interface may be reported twice around that moment: callbacks must accept a
/// repeated arrival.
pub const PNPNOTIFY_DEVICE_INTERFACE_INCLUDE_EXISTING_INTERFACES: u32 = 0x0000_0001;

/// `Version` of every notification structure the PnP manager sends today.
pub const PNP_NOTIFICATION_VERSION: u16 = 1;

// ---- event GUIDs (wdmguid.h) ------------------------------------------------------------------
/// `GUID_HWPROFILE_QUERY_CHANGE`: the hardware profile is about to change; a callback may veto
/// by returning a failure status.
pub const GUID_HWPROFILE_QUERY_CHANGE: GUID =
    GUID::from_u128(0xcb3a4001_46f0_11d0_b08f_00609713053f);
/// `GUID_HWPROFILE_CHANGE_CANCELLED`: a proposed hardware-profile change was cancelled.
pub const GUID_HWPROFILE_CHANGE_CANCELLED: GUID =
    GUID::from_u128(0xcb3a4002_46f0_11d0_b08f_00609713053f);
/// `GUID_HWPROFILE_CHANGE_COMPLETE`: the hardware profile changed.
pub const GUID_HWPROFILE_CHANGE_COMPLETE: GUID =
    GUID::from_u128(0xcb3a4003_46f0_11d0_b08f_00609713053f);
/// `GUID_DEVICE_INTERFACE_ARRIVAL`: an interface of the registered class was enabled.
pub const GUID_DEVICE_INTERFACE_ARRIVAL: GUID =
    GUID::from_u128(0xcb3a4004_46f0_11d0_b08f_00609713053f);
/// `GUID_DEVICE_INTERFACE_REMOVAL`: an interface of the registered class was disabled.
pub const GUID_DEVICE_INTERFACE_REMOVAL: GUID =
    GUID::from_u128(0xcb3a4005_46f0_11d0_b08f_00609713053f);
/// `GUID_TARGET_DEVICE_QUERY_REMOVE`: the target device's drivers received a query-remove IRP.
pub const GUID_TARGET_DEVICE_QUERY_REMOVE: GUID =
    GUID::from_u128(0xcb3a4006_46f0_11d0_b08f_00609713053f);
/// `GUID_TARGET_DEVICE_REMOVE_CANCELLED`: a proposed removal of the target device was cancelled.
pub const GUID_TARGET_DEVICE_REMOVE_CANCELLED: GUID =
    GUID::from_u128(0xcb3a4007_46f0_11d0_b08f_00609713053f);
/// `GUID_TARGET_DEVICE_REMOVE_COMPLETE`: the target device was removed.
pub const GUID_TARGET_DEVICE_REMOVE_COMPLETE: GUID =
    GUID::from_u128(0xcb3a4008_46f0_11d0_b08f_00609713053f);

// ---- interface classes (ntddstor.h) -----------------------------------------------------------
/// `GUID_DEVINTERFACE_VOLUME`: volumes. Every machine has some, and mounting a VHD or plugging a
/// USB stick adds one.
pub const GUID_DEVINTERFACE_VOLUME: GUID = GUID::from_u128(0x53f5630d_b6bf_11d0_94f2_00a0c91efb8b);

/// Whether two GUIDs are equal (windows-sys' `GUID` does not implement `PartialEq`).
#[must_use]
pub const fn guid_eq(a: &GUID, b: &GUID) -> bool {
    a.data1 == b.data1
        && a.data2 == b.data2
        && a.data3 == b.data3
        && u64::from_ne_bytes(a.data4) == u64::from_ne_bytes(b.data4)
}

/// The PnP event GUIDs of wdmguid.h (`GUID_HWPROFILE_*`, `GUID_DEVICE_INTERFACE_*`,
/// `GUID_TARGET_DEVICE_*` removal events) share everything but `data1` (`0xcb3a4001` to
/// `0xcb3a4008`). This returns that `data1` for one of them, `None` for any other GUID: one
/// comparison of the shared part, then a `match` on the code, which keeps a callback short.
#[must_use]
pub const fn pnp_event_code(event: &GUID) -> Option<u32> {
    const SHARED: GUID = GUID_HWPROFILE_QUERY_CHANGE;
    if event.data2 == SHARED.data2
        && event.data3 == SHARED.data3
        && u64::from_ne_bytes(event.data4) == u64::from_ne_bytes(SHARED.data4)
        && event.data1 >= GUID_HWPROFILE_QUERY_CHANGE.data1
        && event.data1 <= GUID_TARGET_DEVICE_REMOVE_COMPLETE.data1
    {
        Some(event.data1)
    } else {
        None
    }
}

// ---- notification structures (wdm.h) ----------------------------------------------------------
/// `PLUGPLAY_NOTIFICATION_HEADER`: the first three members every notification structure starts
/// with. `Size` counts the whole structure, event-specific data included.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PLUGPLAY_NOTIFICATION_HEADER {
    /// Version of the structure, currently [`PNP_NOTIFICATION_VERSION`].
    pub Version: u16,
    /// Size of the whole structure in bytes.
    pub Size: u16,
    /// The event (`GUID_*`).
    pub Event: GUID,
}

/// `DEVICE_INTERFACE_CHANGE_NOTIFICATION`: what an `EventCategoryDeviceInterfaceChange` callback
/// receives. 48 bytes on x64.
///
/// Valid only during the callback. `SymbolicLinkName` points to a counted string (no terminating
/// NUL guaranteed) owned by the PnP manager: copy it, never keep the pointer.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct DEVICE_INTERFACE_CHANGE_NOTIFICATION {
    /// Version of the structure, currently [`PNP_NOTIFICATION_VERSION`].
    pub Version: u16,
    /// Size of the structure in bytes.
    pub Size: u16,
    /// [`GUID_DEVICE_INTERFACE_ARRIVAL`] or [`GUID_DEVICE_INTERFACE_REMOVAL`].
    pub Event: GUID,
    /// The class of the interface that was enabled or disabled.
    pub InterfaceClassGuid: GUID,
    /// The interface's symbolic link name.
    pub SymbolicLinkName: *const UNICODE_STRING,
}

/// `HWPROFILE_CHANGE_NOTIFICATION`: what an `EventCategoryHardwareProfileChange` callback receives.
/// No event-specific data.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct HWPROFILE_CHANGE_NOTIFICATION {
    /// Version of the structure, currently [`PNP_NOTIFICATION_VERSION`].
    pub Version: u16,
    /// Size of the structure in bytes.
    pub Size: u16,
    /// [`GUID_HWPROFILE_QUERY_CHANGE`], [`GUID_HWPROFILE_CHANGE_COMPLETE`] or
    /// [`GUID_HWPROFILE_CHANGE_CANCELLED`].
    pub Event: GUID,
}

/// `TARGET_DEVICE_REMOVAL_NOTIFICATION`: what an `EventCategoryTargetDeviceChange` callback
/// receives for the three removal events.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TARGET_DEVICE_REMOVAL_NOTIFICATION {
    /// Version of the structure, currently [`PNP_NOTIFICATION_VERSION`].
    pub Version: u16,
    /// Size of the structure in bytes.
    pub Size: u16,
    /// One of the `GUID_TARGET_DEVICE_*` removal events.
    pub Event: GUID,
    /// The file object the callback was registered for.
    pub FileObject: *mut c_void,
}

/// The `Version` and `Size` every notification structure starts with: what a callback reads
/// first, before it trusts anything else in the structure.
///
/// # Safety
/// `notification` must be the `NotificationStructure` a PnP callback received, during the call.
#[must_use]
pub unsafe fn version_and_size(notification: *const c_void) -> (u16, u16) {
    // SAFETY: every PnP notification structure starts with two USHORTs, Version and Size, and the
    // caller passes one during its callback.
    let [version, size] = unsafe { notification.cast::<[u16; 2]>().read() };
    (version, size)
}

/// `DRIVER_NOTIFICATION_CALLBACK_ROUTINE` (wdm.h), as a plain function pointer:
/// `NTSTATUS Callback(PVOID NotificationStructure, PVOID Context)`.
///
/// Called at PASSIVE_LEVEL. It must not block on anything the PnP manager may be waiting for
/// (in particular on the thread that is unregistering it), and should return `STATUS_SUCCESS` for
/// every event it does not explicitly fail: failing a query event vetoes it.
pub type DriverNotificationCallback =
    unsafe extern "system" fn(notification: *const c_void, context: *mut c_void) -> NTSTATUS;

#[cfg(target_os = "windows")]
pub use kernel::PnpNotification;

#[cfg(target_os = "windows")]
mod kernel {
    use core::ffi::c_void;
    use core::ptr::NonNull;

    use super::{
        DriverNotificationCallback, EventCategoryDeviceInterfaceChange,
        EventCategoryHardwareProfileChange, GUID, IO_NOTIFICATION_EVENT_CATEGORY,
        PNPNOTIFY_DEVICE_INTERFACE_INCLUDE_EXISTING_INTERFACES,
    };
    use crate::sys::{DRIVER_OBJECT, NTSTATUS, STATUS_UNSUCCESSFUL, nt_success};
    use crate::teardown::Tether;
    use windows_sys::Wdk::System::SystemServices::{
        IoRegisterPlugPlayNotification, IoUnregisterPlugPlayNotification,
        IoUnregisterPlugPlayNotificationEx,
    };

    /// A PnP notification callback registered for one event category. Dropping it calls
    /// `IoUnregisterPlugPlayNotificationEx`: when the drop returns, the callback is not running and
    /// will never run again, and the registration's reference on the driver object is released.
    ///
    /// If `IoUnregisterPlugPlayNotificationEx` fails, the callback may still be registered: the
    /// drop snaps the registration's [`Tether`], so whatever the callback reaches (a
    /// [`Tethered`](crate::teardown::Tethered) context) is leaked, with a log line, never freed.
    pub struct PnpNotification {
        entry: NonNull<c_void>,
        tether: &'static Tether,
    }

    impl PnpNotification {
        /// Registers `callback` for the arrival and removal of device interfaces of `class`
        /// (`EventCategoryDeviceInterfaceChange`). IRQL == PASSIVE_LEVEL.
        ///
        /// # Arguments
        /// * `class` - the interface class, e.g. [`GUID_DEVINTERFACE_VOLUME`](super::GUID_DEVINTERFACE_VOLUME).
        /// * `include_existing` - also report every interface already present
        ///   (`PNPNOTIFY_DEVICE_INTERFACE_INCLUDE_EXISTING_INTERFACES`). Those calls happen *before*
        ///   this function returns, so `context` must be complete before calling it.
        /// * `driver` - the caller's driver object, which the registration references.
        /// * `callback`, `context` - the routine and what it receives as `Context`.
        /// * `tether` - snapped if the unregistration fails.
        ///
        /// # Return value
        /// The registration, or the status `IoRegisterPlugPlayNotification` failed with.
        ///
        /// # Errors
        /// Any failure status of `IoRegisterPlugPlayNotification` (for instance
        /// `STATUS_INSUFFICIENT_RESOURCES`).
        ///
        /// # Safety
        /// `driver` must be the caller's own driver object. `context`, and everything `callback`
        /// reaches through it, must stay valid until this registration has been dropped.
        pub unsafe fn device_interface(
            class: &'static GUID,
            include_existing: bool,
            driver: *mut DRIVER_OBJECT,
            callback: DriverNotificationCallback,
            context: *const c_void,
            tether: &'static Tether,
        ) -> Result<Self, NTSTATUS> {
            let flags = if include_existing {
                PNPNOTIFY_DEVICE_INTERFACE_INCLUDE_EXISTING_INTERFACES
            } else {
                0
            };
            // SAFETY: forwarded from the caller; the class GUID is static.
            unsafe {
                Self::register(
                    EventCategoryDeviceInterfaceChange,
                    flags,
                    core::ptr::from_ref(class).cast(),
                    driver,
                    callback,
                    context,
                    tether,
                )
            }
        }

        /// Registers `callback` for hardware-profile changes (`EventCategoryHardwareProfileChange`,
        /// no category data). IRQL == PASSIVE_LEVEL.
        ///
        /// # Errors
        /// Any failure status of `IoRegisterPlugPlayNotification`.
        ///
        /// # Safety
        /// As for [`device_interface`](Self::device_interface).
        pub unsafe fn hardware_profile(
            driver: *mut DRIVER_OBJECT,
            callback: DriverNotificationCallback,
            context: *const c_void,
            tether: &'static Tether,
        ) -> Result<Self, NTSTATUS> {
            // SAFETY: forwarded from the caller.
            unsafe {
                Self::register(
                    EventCategoryHardwareProfileChange,
                    0,
                    core::ptr::null(),
                    driver,
                    callback,
                    context,
                    tether,
                )
            }
        }

        /// `IoRegisterPlugPlayNotification`. IRQL == PASSIVE_LEVEL.
        unsafe fn register(
            category: IO_NOTIFICATION_EVENT_CATEGORY,
            flags: u32,
            category_data: *const c_void,
            driver: *mut DRIVER_OBJECT,
            callback: DriverNotificationCallback,
            context: *const c_void,
            tether: &'static Tether,
        ) -> Result<Self, NTSTATUS> {
            let mut entry: *mut c_void = core::ptr::null_mut();
            // SAFETY: the category data matches the category (a static GUID or NULL); the caller
            // guarantees the driver object and the context's lifetime; `entry` is a valid out
            // pointer; the callback has the documented prototype.
            let status = unsafe {
                IoRegisterPlugPlayNotification(
                    category,
                    flags,
                    category_data,
                    driver,
                    Some(callback),
                    context.cast_mut(),
                    &raw mut entry,
                )
            };
            if !nt_success(status) {
                return Err(status);
            }
            NonNull::new(entry)
                .map(|entry| Self { entry, tether })
                .ok_or(STATUS_UNSUCCESSFUL)
        }

        /// Unregisters with the **obsolete** `IoUnregisterPlugPlayNotification`, which does not wait
        /// for a notification in progress: the callback may still run after this returns, and the
        /// context it uses must outlive that. Never use it in a driver; it exists so the test
        /// fixtures can show the difference. IRQL == PASSIVE_LEVEL.
        #[must_use = "the status says whether the entry was valid"]
        pub fn unregister_without_waiting(self) -> NTSTATUS {
            let entry = self.entry.as_ptr();
            core::mem::forget(self);
            // SAFETY: the entry came from a successful registration and, `self` being forgotten,
            // is unregistered exactly once, here.
            unsafe { IoUnregisterPlugPlayNotification(entry) }
        }
    }

    impl Drop for PnpNotification {
        /// `IoUnregisterPlugPlayNotificationEx`. IRQL == PASSIVE_LEVEL. Returns only when no call of
        /// the callback is running and none can start. Must not be called from this registration's
        /// own callback while its `include_existing` registration is still in progress, nor while
        /// holding anything the callback waits for (the callback in flight would never finish).
        fn drop(&mut self) {
            // SAFETY: the entry came from a successful IoRegisterPlugPlayNotification and is
            // unregistered once.
            let status = unsafe { IoUnregisterPlugPlayNotificationEx(self.entry.as_ptr()) };
            if status != crate::sys::STATUS_SUCCESS {
                // Its page lists no failure to retry: the callback may still be registered, so
                // what it reaches must stay.
                crate::klog!(
                    Error,
                    "IoUnregisterPlugPlayNotificationEx failed: %08Ix; the callback may still be registered: leaking what it reaches",
                    status.cast_unsigned()
                );
                self.tether.snap();
            }
        }
    }

    // SAFETY: the notification entry is an opaque kernel pointer, usable from any thread.
    unsafe impl Send for PnpNotification {}
    // SAFETY: no method takes &self.
    unsafe impl Sync for PnpNotification {}
}

#[cfg(test)]
mod tests {
    //! The structures, checked against the documented x64 layouts (wdm.h), and the GUIDs against
    //! windows-sys' values.
    use super::*;
    use core::mem::{align_of, offset_of, size_of};

    #[test]
    fn device_interface_change_notification_layout() {
        assert_eq!(size_of::<DEVICE_INTERFACE_CHANGE_NOTIFICATION>(), 48);
        assert_eq!(offset_of!(DEVICE_INTERFACE_CHANGE_NOTIFICATION, Version), 0);
        assert_eq!(offset_of!(DEVICE_INTERFACE_CHANGE_NOTIFICATION, Size), 2);
        assert_eq!(offset_of!(DEVICE_INTERFACE_CHANGE_NOTIFICATION, Event), 4);
        assert_eq!(
            offset_of!(DEVICE_INTERFACE_CHANGE_NOTIFICATION, InterfaceClassGuid),
            20
        );
        assert_eq!(
            offset_of!(DEVICE_INTERFACE_CHANGE_NOTIFICATION, SymbolicLinkName),
            40
        );
    }

    #[test]
    fn header_and_hardware_profile_layouts() {
        assert_eq!(size_of::<GUID>(), 16);
        assert_eq!(align_of::<GUID>(), 4);
        assert_eq!(size_of::<PLUGPLAY_NOTIFICATION_HEADER>(), 20);
        assert_eq!(size_of::<HWPROFILE_CHANGE_NOTIFICATION>(), 20);
        assert_eq!(offset_of!(HWPROFILE_CHANGE_NOTIFICATION, Event), 4);
        assert_eq!(size_of::<TARGET_DEVICE_REMOVAL_NOTIFICATION>(), 32);
        assert_eq!(
            offset_of!(TARGET_DEVICE_REMOVAL_NOTIFICATION, FileObject),
            24
        );
    }

    #[test]
    fn category_values_match_the_enumeration() {
        // IO_NOTIFICATION_EVENT_CATEGORY: Reserved, HardwareProfileChange, DeviceInterfaceChange,
        // TargetDeviceChange, KernelSoftRestart.
        assert_eq!(EventCategoryHardwareProfileChange, 1);
        assert_eq!(EventCategoryDeviceInterfaceChange, 2);
        assert_eq!(EventCategoryTargetDeviceChange, 3);
    }

    #[test]
    fn guids_match_windows_sys() {
        use windows_sys::Win32::Devices::DeviceAndDriverInstallation as d;
        let pairs = [
            (GUID_HWPROFILE_QUERY_CHANGE, d::GUID_HWPROFILE_QUERY_CHANGE),
            (
                GUID_HWPROFILE_CHANGE_CANCELLED,
                d::GUID_HWPROFILE_CHANGE_CANCELLED,
            ),
            (
                GUID_HWPROFILE_CHANGE_COMPLETE,
                d::GUID_HWPROFILE_CHANGE_COMPLETE,
            ),
            (
                GUID_DEVICE_INTERFACE_ARRIVAL,
                d::GUID_DEVICE_INTERFACE_ARRIVAL,
            ),
            (
                GUID_DEVICE_INTERFACE_REMOVAL,
                d::GUID_DEVICE_INTERFACE_REMOVAL,
            ),
            (
                GUID_TARGET_DEVICE_QUERY_REMOVE,
                d::GUID_TARGET_DEVICE_QUERY_REMOVE,
            ),
            (
                GUID_TARGET_DEVICE_REMOVE_CANCELLED,
                d::GUID_TARGET_DEVICE_REMOVE_CANCELLED,
            ),
            (
                GUID_TARGET_DEVICE_REMOVE_COMPLETE,
                d::GUID_TARGET_DEVICE_REMOVE_COMPLETE,
            ),
            (
                GUID_DEVINTERFACE_VOLUME,
                windows_sys::Win32::System::Ioctl::GUID_DEVINTERFACE_VOLUME,
            ),
        ];
        for (i, (ours, theirs)) in pairs.iter().enumerate() {
            assert!(guid_eq(ours, theirs), "GUID #{i} differs from windows-sys");
        }
    }

    #[test]
    fn event_codes_are_data1_of_the_pnp_events_only() {
        assert_eq!(
            pnp_event_code(&GUID_DEVICE_INTERFACE_ARRIVAL),
            Some(GUID_DEVICE_INTERFACE_ARRIVAL.data1)
        );
        assert_eq!(
            pnp_event_code(&GUID_HWPROFILE_CHANGE_CANCELLED),
            Some(GUID_HWPROFILE_CHANGE_CANCELLED.data1)
        );
        assert_eq!(pnp_event_code(&GUID_DEVINTERFACE_VOLUME), None);
        let mut near = GUID_TARGET_DEVICE_REMOVE_COMPLETE;
        near.data1 += 1;
        assert_eq!(pnp_event_code(&near), None);
        near = GUID_DEVICE_INTERFACE_REMOVAL;
        near.data4[0] ^= 1;
        assert_eq!(pnp_event_code(&near), None);
    }

    #[test]
    fn guid_eq_compares_every_field() {
        let a = GUID_DEVICE_INTERFACE_ARRIVAL;
        assert!(guid_eq(&a, &a));
        assert!(!guid_eq(&a, &GUID_DEVICE_INTERFACE_REMOVAL)); // differs in data1 only
        let mut b = a;
        b.data4[7] ^= 1;
        assert!(!guid_eq(&a, &b));
    }
}
