//! A spin lock and an event, for data touched at DISPATCH_LEVEL and for waiting on it at PASSIVE.
//!
//! - [`RawSpinLock`] / [`KernelSpinLock`]: a `KSPIN_LOCK` (`KeAcquireSpinLockRaiseToDpc`,
//!   `KeReleaseSpinLock`). Callbacks that run at up to DISPATCH_LEVEL (a WFP classifyFn, a
//!   flowDeleteFn) cannot wait, so data they share is protected by a spin lock: held for a few
//!   instructions, never across a call that may call back into the holder (it is not recursive: a
//!   holder that asks for it again spins forever).
//! - [`RawEvent`] / [`KernelEvent`]: a notification `KEVENT`, initially not signalled, set once
//!   (`KeSetEvent` at <= DISPATCH_LEVEL) and waited for (`KeWaitForSingleObject` at PASSIVE_LEVEL)
//!   **with a timeout**: a teardown never waits for something without a bound, because the thing
//!   it waits for may never come (a status the documentation does not list, a lost callback), and
//!   an unload that hangs is worse than one that logs and leaks.
//! - [`delay`]: `KeDelayExecutionThread`, the back-off between retries of a transient failure.
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
    /// Waits until it is signalled, at most `milliseconds` (KeWaitForSingleObject with a relative
    /// timeout). Returns whether it was signalled. PASSIVE_LEVEL.
    fn wait_for(&self, milliseconds: u32) -> bool;
}

/// A relative timeout in the kernel's unit (100 ns, negative = relative), as `KeWaitForSingleObject`
/// and `KeDelayExecutionThread` take it.
#[must_use]
pub const fn relative_timeout(milliseconds: u32) -> i64 {
    -(milliseconds as i64) * 10_000
}

/// Sleeps `milliseconds` (`KeDelayExecutionThread(KernelMode, FALSE, relative)`): the back-off
/// between two tries of something the documentation calls transient. IRQL <= APC_LEVEL.
pub fn delay(milliseconds: u32) {
    #[cfg(target_os = "windows")]
    kernel::delay(milliseconds);
    #[cfg(not(target_os = "windows"))]
    let _ = milliseconds; // host builds have no kernel to sleep in; the tests model the delay
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
        /// `KeDelayExecutionThread` (wdm.h): puts the thread into an alertable or nonalertable
        /// wait for the interval. IRQL <= APC_LEVEL.
        fn KeDelayExecutionThread(wait_mode: i8, alertable: u8, interval: *const i64) -> i32;
    }

    /// [`super::delay`] in the kernel.
    pub(super) fn delay(milliseconds: u32) {
        let interval = super::relative_timeout(milliseconds);
        // SAFETY: a valid interval; KernelMode, not alertable; the caller is at <= APC_LEVEL.
        unsafe { KeDelayExecutionThread(KERNEL_MODE, 0, &raw const interval) };
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
        fn wait_for(&self, milliseconds: u32) -> bool {
            let timeout = super::relative_timeout(milliseconds);
            // SAFETY: initialised; PASSIVE_LEVEL (the caller's contract); a valid relative
            // timeout: STATUS_SUCCESS once set, STATUS_TIMEOUT when the interval ran out.
            let status = unsafe {
                KeWaitForSingleObject(
                    self.0.get().cast_const().cast(),
                    EXECUTIVE,
                    KERNEL_MODE,
                    false,
                    &raw const timeout,
                )
            };
            status == 0
        }
    }

    // SAFETY: both are only touched through the kernel routines (or atomics), which synchronise.
    unsafe impl Sync for KernelEvent {}
    // SAFETY: plain memory with no thread affinity.
    unsafe impl Send for KernelEvent {}
}
