//! Registry filtering: `CmRegisterCallbackEx`, `CmUnRegisterCallback`, and the key-name helpers a
//! `RegistryCallback` uses.
//!
//! - [`CmRegistration`]: a registered `RegistryCallback`; dropping it calls `CmUnRegisterCallback`
//!   with the cookie — the only way out, so the guard keeps it.
//! - [`KeyName`]: the name of a registry key object passed to a callback, from
//!   `CmCallbackGetKeyObjectIDEx`; dropping it calls `CmCallbackReleaseKeyObjectIDEx`.
//!
//! **What the family guarantees.** A driver must call `CmUnRegisterCallback` before it unloads,
//! and must never call it — or `CmRegisterCallback(Ex)` — from inside its `RegistryCallback`: that
//! deadlocks. An unknown cookie gets `STATUS_INVALID_PARAMETER`. Keep the callback's context alive
//! until the unregistration has returned (declare it as a later field of the state than the
//! registration). If `CmUnRegisterCallback` fails, the callback may still be registered: the guard
//! snaps its [`Tether`](crate::teardown::Tether), and the context (a
//! [`Tethered`](crate::teardown::Tethered) guard) is leaked, not freed.
//!
//! **What the family does not promise.** `CmUnRegisterCallback`'s page does not say whether a
//! RegistryCallback can still be running once it has returned; a driver keeps its own drain (a
//! [`CallbackBarrier`](crate::barrier::CallbackBarrier) in the context) rather than assume it.

use core::ffi::c_void;

use crate::sys::NTSTATUS;

pub use windows_sys::Wdk::System::SystemServices::{
    REG_CREATE_KEY_INFORMATION_V1, REG_DELETE_KEY_INFORMATION, REG_POST_OPERATION_INFORMATION,
    REG_SET_VALUE_KEY_INFORMATION, RegNtPostCreateKeyEx, RegNtPostOpenKeyEx, RegNtPostSetValueKey,
    RegNtPreCreateKeyEx, RegNtPreDeleteKey, RegNtPreOpenKeyEx, RegNtPreSetValueKey,
};

/// A `RegistryCallback` (`EX_CALLBACK_FUNCTION`, wdm.h): `Argument1` is the `REG_NOTIFY_CLASS`,
/// `Argument2` the class's information structure. Runs at PASSIVE_LEVEL in the thread doing the
/// registry operation. windows-sys declares `PEX_CALLBACK_FUNCTION` with no parameters.
pub type RegistryCallback = unsafe extern "system" fn(
    context: *mut c_void,
    argument1: *mut c_void,
    argument2: *mut c_void,
) -> NTSTATUS;

#[cfg(target_os = "windows")]
pub use kernel::{CmRegistration, KeyName, upcase};

#[cfg(target_os = "windows")]
mod kernel {
    use super::{NTSTATUS, RegistryCallback, c_void};
    use crate::sys::{DRIVER_OBJECT, STATUS_SUCCESS, UNICODE_STRING, nt_success};
    use crate::teardown::Tether;
    pub use windows_sys::Wdk::System::SystemServices::{
        CmCallbackGetKeyObjectIDEx, CmCallbackReleaseKeyObjectIDEx, CmUnRegisterCallback,
    };

    #[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
    unsafe extern "system" {
        /// `CmRegisterCallbackEx` (wdm.h), re-declared with the documented callback prototype.
        /// IRQL <= APC_LEVEL.
        fn CmRegisterCallbackEx(
            function: RegistryCallback,
            altitude: *const UNICODE_STRING,
            driver: *const c_void,
            context: *const c_void,
            cookie: *mut i64,
            reserved: *const c_void,
        ) -> NTSTATUS;
    }

    /// A registered `RegistryCallback`. Dropping it calls `CmUnRegisterCallback(cookie)`.
    pub struct CmRegistration {
        cookie: i64,
        tether: &'static Tether,
    }

    impl CmRegistration {
        /// Registers `function` (`CmRegisterCallbackEx`). IRQL <= APC_LEVEL.
        ///
        /// # Arguments
        /// * `function` - the RegistryCallback.
        /// * `altitude` - the driver's altitude, a decimal string (Microsoft allocates them).
        /// * `driver` - our driver object.
        /// * `context` - passed to every call as `CallbackContext`.
        /// * `tether` - snapped if `CmUnRegisterCallback` fails, so that what the callback reaches
        ///   is leaked.
        ///
        /// # Return value
        /// The registration (holding the cookie), or `STATUS_FLT_INSTANCE_ALTITUDE_COLLISION` /
        /// `STATUS_INSUFFICIENT_RESOURCES` as documented.
        ///
        /// # Errors
        /// The status `CmRegisterCallbackEx` failed with.
        ///
        /// # Safety
        /// `context` (and everything the callback reaches through it) must stay valid until this
        /// registration has been dropped; `altitude` must point to a valid string.
        pub unsafe fn register(
            function: RegistryCallback,
            altitude: *const UNICODE_STRING,
            driver: *const DRIVER_OBJECT,
            context: *const c_void,
            tether: &'static Tether,
        ) -> Result<Self, NTSTATUS> {
            let mut cookie = 0i64;
            // SAFETY: valid pointers per the caller's contract; the cookie is a valid out pointer.
            let status = unsafe {
                CmRegisterCallbackEx(
                    function,
                    altitude,
                    driver.cast(),
                    context,
                    &raw mut cookie,
                    core::ptr::null(),
                )
            };
            if nt_success(status) {
                Ok(Self { cookie, tether })
            } else {
                Err(status)
            }
        }

        /// The cookie, which identifies this registration to `CmCallbackGetKeyObjectIDEx`.
        #[must_use]
        pub fn cookie(&self) -> &i64 {
            &self.cookie
        }
    }

    impl Drop for CmRegistration {
        /// `CmUnRegisterCallback(cookie)`. IRQL <= APC_LEVEL; never from inside the callback
        /// (deadlock). Its page lists no passing failure to retry; on any failure the callback may
        /// still be registered, so the tether is snapped (what it reaches is leaked) and the
        /// status logged.
        fn drop(&mut self) {
            // SAFETY: the cookie came from a successful CmRegisterCallbackEx; unregistered once.
            let status = unsafe { CmUnRegisterCallback(self.cookie) };
            if status != STATUS_SUCCESS {
                crate::klog!(
                    Error,
                    "CmUnRegisterCallback failed: %08Ix; the callback may still be registered: leaking what it reaches",
                    status.cast_unsigned()
                );
                self.tether.snap();
            }
        }
    }

    /// The name of a key object passed to a `RegistryCallback`, from `CmCallbackGetKeyObjectIDEx`
    /// (Windows 8 and later). Released with `CmCallbackReleaseKeyObjectIDEx` when dropped.
    pub struct KeyName {
        name: *const UNICODE_STRING,
    }

    impl KeyName {
        /// The name of `object`, a key object from the callback's information structure.
        /// IRQL == PASSIVE_LEVEL (inside the RegistryCallback).
        ///
        /// # Errors
        /// The status `CmCallbackGetKeyObjectIDEx` failed with.
        ///
        /// # Safety
        /// `object` must be the `Object` (or `RootObject`) of the information structure of the
        /// notification being processed, and `cookie` our registration's cookie.
        #[inline]
        pub unsafe fn of(cookie: &i64, object: *const c_void) -> Result<Self, NTSTATUS> {
            let mut name: *mut UNICODE_STRING = core::ptr::null_mut();
            // SAFETY: per the caller's contract; the object ID is optional (NULL).
            let status = unsafe {
                CmCallbackGetKeyObjectIDEx(cookie, object, core::ptr::null_mut(), &raw mut name, 0)
            };
            if !nt_success(status) || name.is_null() {
                return Err(status);
            }
            Ok(Self { name })
        }

        /// The name's code units (no terminating NUL).
        #[must_use]
        pub fn units(&self) -> &[u16] {
            // SAFETY: the kernel keeps the string valid until we release it in drop.
            unsafe { crate::unicode::units(self.name) }
        }

        /// The name as a counted string, for `klog!`'s `%wZ`.
        #[must_use]
        pub fn as_unicode_string(&self) -> &UNICODE_STRING {
            // SAFETY: non-NULL and valid until drop.
            unsafe { &*self.name }
        }
    }

    impl Drop for KeyName {
        fn drop(&mut self) {
            // SAFETY: the string came from CmCallbackGetKeyObjectIDEx and is released once.
            unsafe { CmCallbackReleaseKeyObjectIDEx(self.name) };
        }
    }

    /// `RtlUpcaseUnicodeChar` for code units outside ASCII: the table the registry itself uses
    /// to compare names. Pass to the comparisons in [`crate::unicode`].
    #[must_use]
    pub fn upcase(unit: u16) -> u16 {
        // SAFETY: a pure table lookup, callable at any IRQL <= DISPATCH_LEVEL.
        unsafe { crate::sys::RtlUpcaseUnicodeChar(unit) }
    }
}

#[cfg(test)]
mod tests {
    //! The windows-sys registry structures, against the documented x64 layouts (wdm.h).
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn set_value_information() {
        assert_eq!(offset_of!(REG_SET_VALUE_KEY_INFORMATION, Object), 0);
        assert_eq!(offset_of!(REG_SET_VALUE_KEY_INFORMATION, ValueName), 8);
        assert_eq!(offset_of!(REG_SET_VALUE_KEY_INFORMATION, Type), 20);
        assert_eq!(offset_of!(REG_SET_VALUE_KEY_INFORMATION, Data), 24);
        assert_eq!(offset_of!(REG_SET_VALUE_KEY_INFORMATION, DataSize), 32);
        assert_eq!(offset_of!(REG_SET_VALUE_KEY_INFORMATION, CallContext), 40);
        assert_eq!(size_of::<REG_SET_VALUE_KEY_INFORMATION>(), 64);
    }

    #[test]
    fn delete_key_information() {
        assert_eq!(offset_of!(REG_DELETE_KEY_INFORMATION, Object), 0);
        assert_eq!(offset_of!(REG_DELETE_KEY_INFORMATION, CallContext), 8);
        assert_eq!(size_of::<REG_DELETE_KEY_INFORMATION>(), 32);
    }

    #[test]
    fn create_key_information_v1() {
        assert_eq!(offset_of!(REG_CREATE_KEY_INFORMATION_V1, CompleteName), 0);
        assert_eq!(offset_of!(REG_CREATE_KEY_INFORMATION_V1, RootObject), 8);
        assert_eq!(offset_of!(REG_CREATE_KEY_INFORMATION_V1, CallContext), 80);
        assert_eq!(offset_of!(REG_CREATE_KEY_INFORMATION_V1, Version), 104);
        assert_eq!(
            offset_of!(REG_CREATE_KEY_INFORMATION_V1, RemainingName),
            112
        );
        assert_eq!(size_of::<REG_CREATE_KEY_INFORMATION_V1>(), 136);
    }

    #[test]
    fn post_operation_information() {
        assert_eq!(offset_of!(REG_POST_OPERATION_INFORMATION, Object), 0);
        assert_eq!(offset_of!(REG_POST_OPERATION_INFORMATION, Status), 8);
        assert_eq!(
            offset_of!(REG_POST_OPERATION_INFORMATION, PreInformation),
            16
        );
        assert_eq!(offset_of!(REG_POST_OPERATION_INFORMATION, ReturnStatus), 24);
        assert_eq!(offset_of!(REG_POST_OPERATION_INFORMATION, CallContext), 32);
        assert_eq!(size_of::<REG_POST_OPERATION_INFORMATION>(), 56);
    }

    #[test]
    fn notify_classes() {
        assert_eq!(RegNtPreDeleteKey, 0);
        assert_eq!(RegNtPreSetValueKey, 1);
        assert_eq!(RegNtPostSetValueKey, 16);
        assert_eq!(RegNtPreCreateKeyEx, 26);
        assert_eq!(RegNtPostCreateKeyEx, 27);
        assert_eq!(RegNtPreOpenKeyEx, 28);
        assert_eq!(RegNtPostOpenKeyEx, 29);
    }
}
