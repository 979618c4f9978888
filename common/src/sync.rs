//! A spin lock and an event, for data touched at DISPATCH_LEVEL and for waiting on it at PASSIVE.
//!
//! - [`RawSpinLock`] / [`KernelSpinLock`]: a `KSPIN_LOCK` (`KeAcquireSpinLockRaiseToDpc`,
//!   `KeReleaseSpinLock`). Callbacks that run at up to DISPATCH_LEVEL (a WFP classifyFn, a
//!   flowDeleteFn) cannot wait, so data they share is protected by a spin lock: held for a few
//!   instructions, never across a call that may call back into the holder (it is not recursive: a
//!   holder that asks for it again spins forever).
//! - [`RawEvent`] / [`KernelEvent`]: a notification `KEVENT`, initially not signalled, set once
//!   (`KeSetEvent` at <= DISPATCH_LEVEL) and waited for (`KeWaitForSingleObject` at PASSIVE_LEVEL).
//!
//! Both are traits so the logic built on them (`wfp::FlowTable`) is unit-tested on the host with a
//! mutex and a condition variable. Both must be initialised at their final address (pool or
//! static memory) before first use.

/// The lock behind a spin-locked structure.
///
/// # Safety
/// Implementations must provide mutual exclusion between a `lock` and the matching `unlock`.
pub unsafe trait RawSpinLock {
    /// What `lock` returns and `unlock` needs back (the previous IRQL in the kernel).
    type Token: Copy;
    /// Makes the lock ready (KeInitializeSpinLock).
    fn initialize(&self);
    /// Spins until the lock is free and takes it, raising to DISPATCH_LEVEL.
    fn lock(&self) -> Self::Token;
    /// Releases it and returns to the IRQL `token` records.
    fn unlock(&self, token: Self::Token);
}

/// A notification event that something waits for.
///
/// # Safety
/// `wait` must return only after `set` was called (once set, the event stays set).
pub unsafe trait RawEvent {
    /// Not signalled (KeInitializeEvent(NotificationEvent, FALSE)).
    fn initialize(&self);
    /// Signals it and wakes every waiter (KeSetEvent). IRQL <= DISPATCH_LEVEL.
    fn set(&self);
    /// Waits until it is signalled (KeWaitForSingleObject). PASSIVE_LEVEL.
    fn wait(&self);
}

#[cfg(target_os = "windows")]
pub use kernel::{KernelEvent, KernelSpinLock};

#[cfg(target_os = "windows")]
mod kernel {
    use super::{RawEvent, RawSpinLock};
    use core::cell::UnsafeCell;
    use core::sync::atomic::{AtomicUsize, Ordering};
    use windows_sys::Wdk::Foundation::KEVENT;
    use windows_sys::Wdk::System::SystemServices::{
        KeInitializeEvent, KeSetEvent, KeWaitForSingleObject,
    };

    #[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
    unsafe extern "system" {
        /// `KeAcquireSpinLockRaiseToDpc` (wdm.h; what `KeAcquireSpinLock` expands to on x64 and
        /// ARM64): raises to DISPATCH_LEVEL, takes the lock, returns the previous IRQL.
        /// IRQL <= DISPATCH_LEVEL. Not in windows-sys.
        fn KeAcquireSpinLockRaiseToDpc(spin_lock: *mut usize) -> u8;
        /// `KeReleaseSpinLock` (wdm.h): releases the lock and returns to `new_irql`. Not in
        /// windows-sys.
        fn KeReleaseSpinLock(spin_lock: *mut usize, new_irql: u8);
    }

    /// A `KSPIN_LOCK`. It must not move once initialised.
    pub struct KernelSpinLock(AtomicUsize);

    impl KernelSpinLock {
        /// A free lock.
        #[must_use]
        pub const fn new() -> Self {
            Self(AtomicUsize::new(0))
        }
    }

    impl Default for KernelSpinLock {
        fn default() -> Self {
            Self::new()
        }
    }

    // SAFETY: the kernel's spin lock routines provide mutual exclusion.
    unsafe impl RawSpinLock for KernelSpinLock {
        type Token = u8;
        fn initialize(&self) {
            // KeInitializeSpinLock is an inline function on x64 and ARM64: the lock is a zero.
            self.0.store(0, Ordering::Release);
        }
        fn lock(&self) -> u8 {
            // SAFETY: our own initialised KSPIN_LOCK; callers are at IRQL <= DISPATCH_LEVEL.
            unsafe { KeAcquireSpinLockRaiseToDpc(self.0.as_ptr()) }
        }
        fn unlock(&self, previous: u8) {
            // SAFETY: held by this processor (only after `lock`), released to the IRQL it came from.
            unsafe { KeReleaseSpinLock(self.0.as_ptr(), previous) }
        }
    }

    /// A notification `KEVENT`. It must not move once initialised.
    pub struct KernelEvent(UnsafeCell<KEVENT>);

    impl KernelEvent {
        /// An event, not yet initialised.
        #[must_use]
        pub const fn new() -> Self {
            // SAFETY: KEVENT is integers and list links; all-zero is valid storage.
            Self(UnsafeCell::new(unsafe { core::mem::zeroed() }))
        }
    }

    impl Default for KernelEvent {
        fn default() -> Self {
            Self::new()
        }
    }

    /// `NotificationEvent` (EVENT_TYPE).
    const NOTIFICATION_EVENT: i32 = 0;
    /// `Executive` (KWAIT_REASON).
    const EXECUTIVE: i32 = 0;
    /// `KernelMode` (KPROCESSOR_MODE).
    const KERNEL_MODE: i8 = 0;

    // SAFETY: the kernel's event routines: once KeSetEvent ran, KeWaitForSingleObject returns.
    unsafe impl RawEvent for KernelEvent {
        fn initialize(&self) {
            // SAFETY: our own non-paged KEVENT at its final address.
            unsafe { KeInitializeEvent(self.0.get(), NOTIFICATION_EVENT, false) }
        }
        fn set(&self) {
            // SAFETY: initialised; IRQL <= DISPATCH_LEVEL; Wait = FALSE.
            unsafe { KeSetEvent(self.0.get(), 0, false) };
        }
        fn wait(&self) {
            // SAFETY: initialised; PASSIVE_LEVEL (the caller's contract); no timeout, so the only
            // return is STATUS_SUCCESS once the event is set.
            unsafe {
                KeWaitForSingleObject(
                    self.0.get().cast_const().cast(),
                    EXECUTIVE,
                    KERNEL_MODE,
                    false,
                    core::ptr::null(),
                );
            }
        }
    }

    // SAFETY: both are only touched through the kernel routines (or atomics), which synchronise.
    unsafe impl Sync for KernelEvent {}
    // SAFETY: plain memory with no thread affinity.
    unsafe impl Send for KernelEvent {}
}
