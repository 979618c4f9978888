//! Callback objects: `ExCreateCallback`, `ExRegisterCallback`, `ExNotifyCallback`,
//! `ExUnregisterCallback`, `ObDereferenceObject`.
//!
//! Two guards, one per thing to undo:
//!
//! - [`CallbackObject`]: a referenced callback object (created or opened by `ExCreateCallback`);
//!   dropping it dereferences the object (`ObfDereferenceObject`).
//! - [`ExCallbackRegistration`]: a callback registered on an object; dropping it calls
//!   `ExUnregisterCallback`.
//!
//! **What the family guarantees after unregistration.** The documentation of `ExUnregisterCallback`
//! says only that the routine is removed from the list of routines to call. It promises nothing
//! about a call already in progress on another processor. So a driver must not free what its
//! callback uses just because `ExUnregisterCallback` returned: guard the callback with a
//! [`CallbackBarrier`](crate::barrier::CallbackBarrier) in the context, and free the context only
//! after the barrier has been closed and drained (the [`teardown`](crate::teardown) stack does this
//! when the context is pushed before the registrations that use it).
//!
//! The registration keeps the object pointer without a reference of its own: push the
//! [`CallbackObject`] on the teardown stack before the registrations made on it, so it is
//! dereferenced after them.

use core::ffi::c_void;
use core::ptr::NonNull;

use crate::sys::{
    CallbackFunction, ExCreateCallback, ExNotifyCallback, ExRegisterCallback, ExUnregisterCallback,
    NTSTATUS, OBJ_CASE_INSENSITIVE, OBJECT_ATTRIBUTES, ObfDereferenceObject, STATUS_UNSUCCESSFUL,
    nt_success,
};
use crate::unicode::StaticUnicode;

/// A referenced callback object. Dropping it dereferences the object.
pub struct CallbackObject {
    object: NonNull<c_void>,
}

impl CallbackObject {
    /// Opens the callback object `name`, creating it if it does not exist
    /// (`ExCreateCallback(Create = TRUE)`). IRQL == PASSIVE_LEVEL.
    ///
    /// # Arguments
    /// * `name` - the object's full name, e.g. `\Callback\ExCallbackSample`. Unnamed callback objects
    ///   are not allowed (the routine fails with `STATUS_UNSUCCESSFUL`).
    /// * `allow_multiple` - whether a newly created object accepts more than one registration
    ///   (ignored when the object already exists).
    ///
    /// # Return value
    /// The referenced object, or the status `ExCreateCallback` failed with.
    ///
    /// # Errors
    /// Any failure status of `ExCreateCallback`.
    pub fn create(name: StaticUnicode, allow_multiple: bool) -> Result<Self, NTSTATUS> {
        Self::create_or_open(name, true, allow_multiple)
    }

    /// Opens an existing callback object such as `\Callback\PowerState` without creating it
    /// (`ExCreateCallback(Create = FALSE)`). IRQL == PASSIVE_LEVEL.
    ///
    /// # Errors
    /// `STATUS_OBJECT_NAME_NOT_FOUND` (or another failure status) when there is no such object.
    pub fn open(name: StaticUnicode) -> Result<Self, NTSTATUS> {
        Self::create_or_open(name, false, false)
    }

    fn create_or_open(
        name: StaticUnicode,
        create: bool,
        allow_multiple: bool,
    ) -> Result<Self, NTSTATUS> {
        let object_name = name.as_unicode_string();
        // Not OBJ_PERMANENT: a permanent object outlives every reference and would have to be made
        // temporary again (ObMakeTemporaryObject) before unload, which is only right for its
        // creator, and ExCreateCallback does not say whether we created or opened it. A temporary
        // named object lives exactly as long as someone holds a reference to it.
        #[allow(clippy::cast_possible_truncation)]
        let attributes = OBJECT_ATTRIBUTES {
            Length: size_of::<OBJECT_ATTRIBUTES>() as u32,
            RootDirectory: core::ptr::null_mut(),
            ObjectName: &raw const object_name,
            Attributes: OBJ_CASE_INSENSITIVE,
            SecurityDescriptor: core::ptr::null(),
            SecurityQualityOfService: core::ptr::null(),
        };
        let mut object: crate::sys::PCALLBACK_OBJECT = 0;
        // SAFETY: `attributes` and the name it points to live across the call; `object` is a valid
        // out pointer. PASSIVE_LEVEL is the caller's documented requirement.
        let status = unsafe {
            ExCreateCallback(
                &raw mut object,
                &raw const attributes,
                create,
                allow_multiple,
            )
        };
        if !nt_success(status) {
            return Err(status);
        }
        NonNull::new(object as *mut c_void)
            .map(|object| Self { object })
            .ok_or(STATUS_UNSUCCESSFUL)
    }

    /// Calls every routine registered on this object with the two arguments (`ExNotifyCallback`),
    /// in registration order. The routines run synchronously, on this thread, at the caller's IRQL
    /// (<= DISPATCH_LEVEL). Drivers must not notify the system-defined objects
    /// (`\Callback\PowerState`, `\Callback\SetSystemTime`).
    ///
    /// The arguments are opaque values whose meaning the object's creator defines; this wrapper
    /// passes integers, so nothing is dereferenced on the caller's behalf.
    pub fn notify(&self, argument1: usize, argument2: usize) {
        // SAFETY: the object is referenced for as long as `self` lives; the arguments are passed
        // through to the callbacks as values.
        unsafe {
            ExNotifyCallback(
                self.object.as_ptr(),
                argument1 as *const c_void,
                argument2 as *const c_void,
            );
        }
    }

    fn as_raw(&self) -> crate::sys::PCALLBACK_OBJECT {
        self.object.as_ptr() as crate::sys::PCALLBACK_OBJECT
    }
}

impl Drop for CallbackObject {
    /// `ObDereferenceObject`: releases the reference `ExCreateCallback` returned. IRQL <= DISPATCH_LEVEL.
    fn drop(&mut self) {
        // SAFETY: we own exactly one reference, taken by ExCreateCallback, and release it once.
        unsafe { ObfDereferenceObject(self.object.as_ptr()) };
    }
}

// SAFETY: a referenced kernel object pointer may be used and released from any thread.
unsafe impl Send for CallbackObject {}
// SAFETY: ExNotifyCallback may be called concurrently.
unsafe impl Sync for CallbackObject {}

/// A callback routine registered on a [`CallbackObject`]. Dropping it calls `ExUnregisterCallback`.
pub struct ExCallbackRegistration {
    handle: NonNull<c_void>,
}

impl ExCallbackRegistration {
    /// Registers `function` on `object` with `context` (`ExRegisterCallback`).
    ///
    /// # Arguments
    /// * `object` - the callback object; it must be dropped after this registration.
    /// * `function` - the callback, non-pageable: it runs at the notifier's IRQL, up to DISPATCH_LEVEL.
    /// * `context` - passed to every call as `CallbackContext`.
    ///
    /// # Return value
    /// The registration, or `STATUS_UNSUCCESSFUL` when `ExRegisterCallback` returned NULL (for
    /// instance because the object allows a single registration and already has one).
    ///
    /// # Errors
    /// `STATUS_UNSUCCESSFUL`, as above.
    ///
    /// # Safety
    /// `context`, and everything `function` reaches through it, must stay valid until this
    /// registration has been dropped **and** no call can still be running (see the module docs:
    /// use a barrier). `object` must outlive the registration.
    pub unsafe fn register(
        object: &CallbackObject,
        function: CallbackFunction,
        context: *const c_void,
    ) -> Result<Self, NTSTATUS> {
        // SAFETY: `object` is a referenced callback object; the caller guarantees the context's
        // lifetime; the function pointer has the documented prototype.
        let handle = unsafe { ExRegisterCallback(object.as_raw(), function, context) };
        NonNull::new(handle)
            .map(|handle| Self { handle })
            .ok_or(STATUS_UNSUCCESSFUL)
    }
}

impl Drop for ExCallbackRegistration {
    /// `ExUnregisterCallback`. IRQL <= APC_LEVEL. After it returns no *new* call starts; one already
    /// running may still be in progress (the documentation promises nothing more).
    fn drop(&mut self) {
        // SAFETY: the handle came from a successful ExRegisterCallback and is unregistered once.
        unsafe { ExUnregisterCallback(self.handle.as_ptr()) };
    }
}

// SAFETY: the registration handle is an opaque kernel pointer, usable from any thread.
unsafe impl Send for ExCallbackRegistration {}
// SAFETY: no method takes &self.
unsafe impl Sync for ExCallbackRegistration {}
