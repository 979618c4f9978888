//! A callback barrier: rundown protection for callbacks that may still run after unregistration.
//!
//! `IoUnregisterPlugPlayNotificationEx` promises that once it returns, the callback is neither
//! running nor will run again. Others do not say: the `ExUnregisterCallback`,
//! `CmUnRegisterCallback` and `FwpsCalloutUnregisterById0` pages promise nothing about a callback
//! already in progress, and the old `IoUnregisterPlugPlayNotification` explicitly does not wait.
//! For those, the samples keep a barrier. Under the strict reading of that silence (the emulated
//! kernel's: a call dispatched before the unregistration returned is suspended inside the barrier
//! and resumes only when teardown waits), the barrier's wait is what keeps the context alive for
//! that call; each driver has a mutation without it that the referee fails:
//!
//! 1. every callback body runs inside [`CallbackBarrier::enter`], which fails once teardown began;
//! 2. teardown first unregisters (no *new* calls are started), then
//!    [`close_and_wait`](CallbackBarrier::close_and_wait)s: no new entries, and return only when every
//!    call already inside has left;
//! 3. only then is the context freed.
//!
//! The kernel implementation is `EX_RUNDOWN_REF` (ExAcquire/Release/WaitForRundownProtectionRelease),
//! the same primitive the kernel uses for this purpose. The logic here is generic over [`Rundown`] so
//! its rules are unit-tested on the host.
//!
//! **What a barrier cannot do.** It protects the code *after* `enter` succeeds. A call that the
//! kernel has dispatched but that has not executed `enter` yet still reads the barrier itself, which
//! lives in the context it guards: once the barrier has drained and the context is freed, such a
//! call reads freed memory. Only the unregistration routine waiting for its calls in flight (as
//! ReactOS's `ExUnregisterCallback` does; the documentation is silent) protects that call. So the
//! order — unregister, then free — is the lesson; the barrier covers what is inside it, nothing
//! more, and the callback must touch nothing else of the context before entering.
//!
//! IRQL: `enter` and the guard's release run at any IRQL <= DISPATCH_LEVEL; `close_and_wait` blocks
//! and must run at IRQL <= APC_LEVEL (ExWaitForRundownProtectionRelease).

use core::sync::atomic::{AtomicU8, Ordering};

/// The rundown primitive behind a barrier.
///
/// # Safety
/// Implementations must follow `EX_RUNDOWN_REF` semantics: after `wait_for_release` starts,
/// `acquire` returns false; `wait_for_release` returns only when every successful `acquire` has been
/// matched by a `release`.
pub unsafe trait Rundown {
    /// Makes the primitive ready at its final address (ExInitializeRundownProtection).
    fn initialize(&self);
    /// Takes a reference unless rundown has begun (ExAcquireRundownProtection).
    fn acquire(&self) -> bool;
    /// Drops a reference taken by `acquire` (ExReleaseRundownProtection).
    fn release(&self);
    /// Begins rundown and waits for all references to be released (ExWaitForRundownProtectionRelease).
    fn wait_for_release(&self);
}

const UNINITIALIZED: u8 = 0;
const OPEN: u8 = 1;
const CLOSED: u8 = 2;

/// Rundown protection for the callbacks of one or more registrations sharing a context.
pub struct CallbackBarrier<R: Rundown> {
    rundown: R,
    state: AtomicU8,
}

impl<R: Rundown> CallbackBarrier<R> {
    /// A barrier that admits nothing until [`initialize`](Self::initialize)d.
    pub const fn new(rundown: R) -> Self {
        Self {
            rundown,
            state: AtomicU8::new(UNINITIALIZED),
        }
    }

    /// Opens the barrier. Call it once the barrier is at its final address (for instance inside the
    /// pool allocation of the context) and before registering the callbacks it guards.
    pub fn initialize(&self) {
        if self.state.load(Ordering::Acquire) == UNINITIALIZED {
            self.rundown.initialize();
            self.state.store(OPEN, Ordering::Release);
        }
    }

    /// Enters the barrier for the duration of one callback. `None` once teardown has begun (or
    /// before initialisation): the callback must then return without touching the context.
    #[must_use = "the callback is only protected while the guard lives"]
    pub fn enter(&self) -> Option<Entered<'_, R>> {
        if self.state.load(Ordering::Acquire) != OPEN {
            return None;
        }
        self.rundown.acquire().then_some(Entered { barrier: self })
    }

    /// Refuses new entries and waits until every callback inside has left. Idempotent; also run
    /// when the barrier is dropped. IRQL <= APC_LEVEL.
    pub fn close_and_wait(&self) {
        // Never opened, or already closed: nothing can be inside, nothing to wait for.
        if self.state.swap(CLOSED, Ordering::AcqRel) == OPEN {
            self.rundown.wait_for_release();
        }
    }

    /// Whether the barrier still admits callbacks.
    pub fn is_open(&self) -> bool {
        self.state.load(Ordering::Acquire) == OPEN
    }
}

impl<R: Rundown> Drop for CallbackBarrier<R> {
    fn drop(&mut self) {
        self.close_and_wait();
    }
}

/// Proof that a callback is inside the barrier; leaving the scope releases it.
pub struct Entered<'a, R: Rundown> {
    barrier: &'a CallbackBarrier<R>,
}

impl<R: Rundown> Drop for Entered<'_, R> {
    fn drop(&mut self) {
        self.barrier.rundown.release();
    }
}

#[cfg(target_os = "windows")]
pub use kernel::KernelRundown;

#[cfg(target_os = "windows")]
mod kernel {
    use super::Rundown;
    use crate::sys::{
        EX_RUNDOWN_REF, ExAcquireRundownProtection, ExInitializeRundownProtection,
        ExReleaseRundownProtection, ExWaitForRundownProtectionRelease,
    };
    use core::cell::UnsafeCell;

    /// An `EX_RUNDOWN_REF`. It must not move once initialised: keep it inside pool or static memory.
    pub struct KernelRundown(UnsafeCell<EX_RUNDOWN_REF>);

    impl KernelRundown {
        /// A rundown reference, not yet initialised.
        #[must_use]
        pub const fn new() -> Self {
            // SAFETY: EX_RUNDOWN_REF is a plain integer/pointer union; all-zero is a valid value.
            Self(UnsafeCell::new(unsafe { core::mem::zeroed() }))
        }
    }

    impl Default for KernelRundown {
        fn default() -> Self {
            Self::new()
        }
    }

    // SAFETY: the Ex*RundownProtection routines are the kernel's own implementation of exactly the
    // contract the trait states, and they synchronise internally (interlocked operations).
    unsafe impl Rundown for KernelRundown {
        fn initialize(&self) {
            // SAFETY: the pointer is to our own EX_RUNDOWN_REF; IRQL <= DISPATCH_LEVEL.
            unsafe { ExInitializeRundownProtection(self.0.get()) }
        }
        fn acquire(&self) -> bool {
            // SAFETY: initialised by `initialize` (the barrier admits nothing before); <= DISPATCH_LEVEL.
            unsafe { ExAcquireRundownProtection(self.0.get()) }
        }
        fn release(&self) {
            // SAFETY: matches a successful acquire (only `Entered::drop` calls it); <= DISPATCH_LEVEL.
            unsafe { ExReleaseRundownProtection(self.0.get()) }
        }
        fn wait_for_release(&self) {
            // SAFETY: initialised; the caller (close_and_wait) documents IRQL <= APC_LEVEL.
            unsafe { ExWaitForRundownProtectionRelease(self.0.get()) }
        }
    }

    // SAFETY: the rundown reference is only touched through the interlocked kernel routines.
    unsafe impl Sync for KernelRundown {}
    // SAFETY: no thread affinity; it is plain memory.
    unsafe impl Send for KernelRundown {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Condvar, Mutex};
    use std::thread;
    use std::time::Duration;

    /// A host model of EX_RUNDOWN_REF: a count and an "active" flag.
    #[derive(Default)]
    struct HostRundown {
        inner: Mutex<(u32, bool, bool)>, // (references, rundown active, initialised)
        released: Condvar,
    }

    // SAFETY: implements the EX_RUNDOWN_REF contract with a mutex and a condition variable.
    unsafe impl Rundown for HostRundown {
        fn initialize(&self) {
            *self.inner.lock().unwrap() = (0, false, true);
        }
        fn acquire(&self) -> bool {
            let mut g = self.inner.lock().unwrap();
            assert!(g.2, "acquire before initialize");
            if g.1 {
                return false;
            }
            g.0 += 1;
            true
        }
        fn release(&self) {
            let mut g = self.inner.lock().unwrap();
            assert!(g.0 > 0, "release without acquire");
            g.0 -= 1;
            self.released.notify_all();
        }
        fn wait_for_release(&self) {
            let mut g = self.inner.lock().unwrap();
            g.1 = true;
            while g.0 > 0 {
                g = self.released.wait(g).unwrap();
            }
        }
    }

    fn barrier() -> CallbackBarrier<HostRundown> {
        CallbackBarrier::new(HostRundown::default())
    }

    #[test]
    fn nothing_enters_before_initialize() {
        let b = barrier();
        assert!(b.enter().is_none());
        assert!(!b.is_open());
    }

    #[test]
    fn callbacks_enter_while_open_and_nest() {
        let b = barrier();
        b.initialize();
        let first = b.enter().expect("open barrier admits");
        let second = b.enter().expect("concurrent callbacks are fine");
        assert_eq!(b.rundown.inner.lock().unwrap().0, 2);
        drop(first);
        drop(second);
        assert_eq!(
            b.rundown.inner.lock().unwrap().0,
            0,
            "each guard releases its reference"
        );
    }

    #[test]
    fn nothing_enters_after_close() {
        let b = barrier();
        b.initialize();
        b.close_and_wait();
        assert!(b.enter().is_none());
        assert!(!b.is_open());
        b.close_and_wait(); // idempotent
    }

    #[test]
    fn close_waits_for_the_callback_inside() {
        let b = Arc::new(barrier());
        b.initialize();
        let (entered_tx, entered_rx) = std::sync::mpsc::channel();
        let (leave_tx, leave_rx) = std::sync::mpsc::channel::<()>();
        let inside = {
            let b = Arc::clone(&b);
            thread::spawn(move || {
                let _guard = b.enter().unwrap();
                entered_tx.send(()).unwrap();
                leave_rx.recv().unwrap(); // the callback is still running
            })
        };
        entered_rx.recv().unwrap();
        let closer = {
            let b = Arc::clone(&b);
            thread::spawn(move || b.close_and_wait())
        };
        thread::sleep(Duration::from_millis(50));
        assert!(
            !closer.is_finished(),
            "close must not return while a callback is inside"
        );
        assert!(b.enter().is_none(), "no new entries once close began");
        leave_tx.send(()).unwrap();
        inside.join().unwrap();
        closer.join().unwrap();
        assert_eq!(b.rundown.inner.lock().unwrap().0, 0);
    }

    #[test]
    fn drop_closes_and_waits() {
        let b = barrier();
        b.initialize();
        drop(b.enter());
        drop(b); // must not hang: nothing inside
    }

    #[test]
    fn closing_an_uninitialized_barrier_does_not_wait() {
        let b = barrier();
        b.close_and_wait();
        assert!(
            !b.rundown.inner.lock().unwrap().1,
            "rundown never started on an unused barrier"
        );
    }
}
