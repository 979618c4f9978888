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
//! **What the family guarantees after unregistration.** `ExUnregisterCallback`'s page says only
//! that the routine is removed from the list of routines to call; it promises nothing about a call
//! already in progress on another processor. ReactOS's implementation (ntoskrnl/ex/callback.c, a
//! second source, not Windows) *does* wait: each registration counts the calls running through it
//! (`Busy`), and `ExUnregisterCallback` waits until that count is zero before it removes the
//! registration. That wait is what actually protects a context: a barrier inside the context
//! cannot protect a call that has been dispatched but has not reached the barrier yet (it would
//! read the context after the barrier drained and the context was freed). So the samples free the
//! context only after `ExUnregisterCallback` has returned, and keep a
//! [`CallbackBarrier`](crate::barrier::CallbackBarrier) in it as **defence in depth** for what the
//! documentation leaves open: a call that entered the barrier is waited for, one that arrives
//! after it closed touches nothing else.
//!
//! **References.** A registration holds a reference of its own on the object: "Using a
//! Driver-Defined Callback Object" says a driver calls `ExUnregisterCallback` "to delete the routine
//! from the list of registered callbacks and remove its reference to the callback object", and
//! ReactOS's `ExRegisterCallback` calls `ObReferenceObject` (its `ExUnregisterCallback`,
//! `ObDereferenceObject`). So the driver's own reference from `ExCreateCallback` may be released
//! before or after its registrations; the samples release it last only because they still use the
//! object (`ExNotifyCallback`) while unloading.
//!
//! **OBJ_PERMANENT.** `ExCreateCallback`'s page recommends it for a created object; the samples do
//! not set it, and say why at [`CallbackObject::create`].

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
        // Not OBJ_PERMANENT, although ExCreateCallback's page recommends it "to prevent the object
        // from being deleted before it is registered with the object manager": the reference
        // ExCreateCallback returns already keeps the object alive (and named) for as long as we
        // use it, and every registration holds one of its own. A permanent object outlives every
        // reference: it would have to be made temporary again (ObMakeTemporaryObject, then
        // ObDereferenceObject, as the ObDereferenceObject page describes) at unload, which is only
        // right for its creator, and ExCreateCallback does not say whether we created the object
        // or opened one another driver made. A temporary named object lives exactly as long as
        // someone holds a reference to it, and then goes, which is what an unloading sample wants.
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
    /// * `object` - the callback object; the registration takes a reference of its own, so
    ///   `object` may be dropped before or after it.
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
    /// registration has been dropped (`ExUnregisterCallback` returned; see the module docs for what
    /// that does and does not promise, and the barrier kept as defence in depth).
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
    /// `ExUnregisterCallback`: removes the routine and the registration's reference to the object.
    /// IRQL <= APC_LEVEL. After it returns no *new* call starts; its page promises nothing about a
    /// call already running (ReactOS waits for them; see the module documentation).
    fn drop(&mut self) {
        // SAFETY: the handle came from a successful ExRegisterCallback and is unregistered once.
        unsafe { ExUnregisterCallback(self.handle.as_ptr()) };
    }
}

// SAFETY: the registration handle is an opaque kernel pointer, usable from any thread.
unsafe impl Send for ExCallbackRegistration {}
// SAFETY: no method takes &self.
unsafe impl Sync for ExCallbackRegistration {}
