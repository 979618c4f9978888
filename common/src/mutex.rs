//! A lock for data shared by callbacks that run at IRQL <= APC_LEVEL: a guarded mutex.
//!
//! [`Mutex<R, T>`] owns a `T` and hands out access through [`MutexGuard`], which releases the lock
//! when dropped, so an early `return` can never leave it held. The kernel implementation
//! ([`KernelGuardedMutex`]) is a `KGUARDED_MUTEX`: `KeInitializeGuardedMutex`,
//! `KeAcquireGuardedMutex`, `KeReleaseGuardedMutex`.
//!
//! **Why a guarded mutex.** PnP notification callbacks run at PASSIVE_LEVEL, so a lock that waits
//! (rather than spins at DISPATCH_LEVEL) is the right one; a guarded mutex also disables every APC
//! while held, so the holder cannot be suspended inside it. A spin lock would work too but raises
//! IRQL for no reason; an ERESOURCE adds shared access nobody needs here.
//!
//! **Rules** (documented for `KeAcquireGuardedMutex`):
//! - IRQL <= APC_LEVEL to acquire and release; the structure must be non-paged and initialised
//!   once, at its final address, before first use (hence [`Mutex::initialize`], as for the barrier);
//! - not recursive: a thread that acquires a guarded mutex it already holds deadlocks;
//! - hold it briefly and **never call anything that waits for a callback while holding it**: an
//!   unregistration that waits for a callback in flight, while that callback waits for this mutex,
//!   never returns.
//!
//! The logic is generic over [`RawMutex`] so it is unit-tested on the host.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, Ordering};

/// The lock primitive behind a [`Mutex`].
///
/// # Safety
/// Implementations must provide mutual exclusion: between a `lock` that returned and the matching
/// `unlock`, no other `lock` returns.
pub unsafe trait RawMutex {
    /// Makes the lock ready at its final address (KeInitializeGuardedMutex).
    fn initialize(&self);
    /// Waits until the lock is free and takes it (KeAcquireGuardedMutex).
    fn lock(&self);
    /// Releases a lock taken by `lock` (KeReleaseGuardedMutex).
    fn unlock(&self);
}

/// A value protected by a lock.
pub struct Mutex<R: RawMutex, T> {
    raw: R,
    ready: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: access to `value` is serialised by the raw lock (a MutexGuard exists only between lock
// and unlock); T: Send because the value is reached from whichever thread holds the lock.
unsafe impl<R: RawMutex + Sync, T: Send> Sync for Mutex<R, T> {}
// SAFETY: owning the mutex owns the value.
unsafe impl<R: RawMutex + Send, T: Send> Send for Mutex<R, T> {}

impl<R: RawMutex, T> Mutex<R, T> {
    /// A mutex that refuses access until [`initialize`](Self::initialize)d.
    pub const fn new(raw: R, value: T) -> Self {
        Self {
            raw,
            ready: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Initialises the lock. Call it once the mutex is at its final address (inside the pool
    /// allocation of a context) and before anything can call [`lock`](Self::lock).
    pub fn initialize(&self) {
        if !self.ready.load(Ordering::Acquire) {
            self.raw.initialize();
            self.ready.store(true, Ordering::Release);
        }
    }

    /// Takes the lock, waiting if another thread holds it. `None` if the mutex was never
    /// initialised. IRQL <= APC_LEVEL; never while this thread already holds it.
    #[must_use = "the lock is released when the guard is dropped"]
    pub fn lock(&self) -> Option<MutexGuard<'_, R, T>> {
        if !self.ready.load(Ordering::Acquire) {
            return None;
        }
        self.raw.lock();
        Some(MutexGuard { mutex: self })
    }
}

/// Access to the value while the lock is held; dropping it releases the lock.
pub struct MutexGuard<'a, R: RawMutex, T> {
    mutex: &'a Mutex<R, T>,
}

impl<R: RawMutex, T> Deref for MutexGuard<'_, R, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while the lock is held, so no one else has access.
        unsafe { &*self.mutex.value.get() }
    }
}

impl<R: RawMutex, T> DerefMut for MutexGuard<'_, R, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as for deref; `&mut self` makes the access unique within this thread too.
        unsafe { &mut *self.mutex.value.get() }
    }
}

impl<R: RawMutex, T> Drop for MutexGuard<'_, R, T> {
    fn drop(&mut self) {
        self.mutex.raw.unlock();
    }
}

#[cfg(target_os = "windows")]
pub use kernel::{KernelGuardedMutex, SpinMutex};

#[cfg(target_os = "windows")]
mod kernel {
    use super::RawMutex;
    use core::cell::UnsafeCell;
    use windows_sys::Wdk::Foundation::FAST_MUTEX;
    use windows_sys::Wdk::System::SystemServices::{
        KeAcquireGuardedMutex, KeInitializeGuardedMutex, KeReleaseGuardedMutex,
    };

    /// A `KGUARDED_MUTEX` (wdm.h declares it as the same structure as `FAST_MUTEX`, which is how
    /// windows-sys types the routines). It must not move once initialised: keep it in pool.
    pub struct KernelGuardedMutex(UnsafeCell<FAST_MUTEX>);

    impl KernelGuardedMutex {
        /// A guarded mutex, not yet initialised.
        #[must_use]
        pub const fn new() -> Self {
            // SAFETY: FAST_MUTEX is plain integers and pointers; all-zero is a valid (if unusable
            // until initialised) value.
            Self(UnsafeCell::new(unsafe { core::mem::zeroed() }))
        }
    }

    impl Default for KernelGuardedMutex {
        fn default() -> Self {
            Self::new()
        }
    }

    // SAFETY: the Ke*GuardedMutex routines are the kernel's mutual-exclusion primitive.
    unsafe impl RawMutex for KernelGuardedMutex {
        fn initialize(&self) {
            // SAFETY: our own structure, at its final address; IRQL <= DISPATCH_LEVEL.
            unsafe { KeInitializeGuardedMutex(self.0.get()) }
        }
        fn lock(&self) {
            // SAFETY: initialised (Mutex::lock checks); the caller is at IRQL <= APC_LEVEL and does
            // not hold it (Mutex::lock documents both).
            unsafe { KeAcquireGuardedMutex(self.0.get()) }
        }
        fn unlock(&self) {
            // SAFETY: held by this thread (only MutexGuard::drop calls it); IRQL <= APC_LEVEL.
            unsafe { KeReleaseGuardedMutex(self.0.get()) }
        }
    }

    /// A spin lock (`KeAcquireSpinLockRaiseToDpc` / `KeReleaseSpinLock`) behind the [`Mutex`]
    /// interface, for data a callback that **must not block** shares: the holder spins (at
    /// DISPATCH_LEVEL) instead of waiting, for the few instructions of a bounded update. Nothing
    /// pageable and no kernel routine that waits or calls back may run while it is held.
    pub struct SpinMutex {
        lock: crate::sync::KernelSpinLock,
        /// The IRQL `lock` raised from; written and read only by the holder.
        previous: core::cell::Cell<u8>,
    }

    impl SpinMutex {
        /// A free spin lock.
        #[must_use]
        pub const fn new() -> Self {
            Self {
                lock: crate::sync::KernelSpinLock::new(),
                previous: core::cell::Cell::new(0),
            }
        }
    }

    impl Default for SpinMutex {
        fn default() -> Self {
            Self::new()
        }
    }

    // SAFETY: the kernel spin lock gives mutual exclusion; `previous` is touched only by the
    // holder, between lock and unlock.
    unsafe impl RawMutex for SpinMutex {
        fn initialize(&self) {
            crate::sync::RawSpinLock::initialize(&self.lock);
        }
        fn lock(&self) {
            let previous = crate::sync::RawSpinLock::lock(&self.lock);
            self.previous.set(previous);
        }
        fn unlock(&self) {
            crate::sync::RawSpinLock::unlock(&self.lock, self.previous.get());
        }
    }

    // SAFETY: `previous` is only used under the lock; the lock synchronises.
    unsafe impl Sync for SpinMutex {}
    // SAFETY: plain memory with no thread affinity.
    unsafe impl Send for SpinMutex {}

    // SAFETY: the structure is only touched through the kernel routines, which synchronise.
    unsafe impl Sync for KernelGuardedMutex {}
    // SAFETY: plain memory with no thread affinity while not held.
    unsafe impl Send for KernelGuardedMutex {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use std::thread;

    /// A host model of the raw lock: a spin flag, with counters to check balance.
    #[derive(Default)]
    struct SpinLock {
        held: AtomicBool,
        initialised: AtomicUsize,
        acquisitions: AtomicUsize,
    }

    // SAFETY: compare-exchange on one flag gives mutual exclusion.
    unsafe impl RawMutex for SpinLock {
        fn initialize(&self) {
            self.initialised.fetch_add(1, Ordering::SeqCst);
        }
        fn lock(&self) {
            while self
                .held
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                std::hint::spin_loop();
            }
            self.acquisitions.fetch_add(1, Ordering::SeqCst);
        }
        fn unlock(&self) {
            assert!(
                self.held.swap(false, Ordering::Release),
                "unlock of a free lock"
            );
        }
    }

    #[test]
    fn nothing_is_handed_out_before_initialize() {
        let m = Mutex::new(SpinLock::default(), 0u32);
        assert!(m.lock().is_none());
        m.initialize();
        m.initialize(); // once only
        assert_eq!(m.raw.initialised.load(Ordering::SeqCst), 1);
        assert!(m.lock().is_some());
    }

    #[test]
    fn the_guard_releases_on_every_path() {
        let m = Mutex::new(SpinLock::default(), 0u32);
        m.initialize();
        let bump = |early: bool| -> Option<()> {
            let mut value = m.lock()?;
            *value += 1;
            if early {
                return None; // an early return still releases
            }
            Some(())
        };
        assert!(bump(true).is_none());
        assert!(bump(false).is_some());
        assert!(!m.raw.held.load(Ordering::SeqCst));
        assert_eq!(*m.lock().unwrap(), 2);
    }

    #[test]
    fn concurrent_updates_are_serialised() {
        let m = Arc::new(Mutex::new(SpinLock::default(), 0usize));
        m.initialize();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let m = Arc::clone(&m);
                thread::spawn(move || {
                    for _ in 0..1000 {
                        let mut v = m.lock().unwrap();
                        let read = *v;
                        std::hint::black_box(&read);
                        *v = read + 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*m.lock().unwrap(), 4000);
        assert_eq!(m.raw.acquisitions.load(Ordering::SeqCst), 4001);
    }
}
