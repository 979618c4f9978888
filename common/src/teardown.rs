//! Teardown by name: a driver's unload state is a struct of guards, and what a registration that
//! could not be undone still reaches is leaked, never freed.
//!
//! **The state struct.** Each guard undoes one registration when it is dropped (unregisters a
//! callback, dereferences an object, frees pool). A driver keeps its guards as the named fields
//! of one struct, **declared in teardown order**: Rust drops a struct's fields in declaration
//! order, so the first field is undone first. The order is written once, where the type is
//! declared, and every use names the guard it means (`state.context`), so a wrong count cannot
//! silently reach the wrong guard:
//!
//! ```text
//! struct State {
//!     registration: Registration, // undone 1st: no new calls
//!     context: PoolBox<Context>,  // 2nd: freed once nothing can call into it
//!     object: CallbackObject,     // 3rd: dereferenced last
//! }
//! ```
//!
//! **DriverEntry failing halfway.** Build the guards as locals in registration order with `?`,
//! then move them into the struct. When a step fails, `?` returns and Rust drops the locals that
//! exist in reverse order of declaration — the same order as the struct's fields. There is no
//! second, hand-written error path. The rule to keep: the struct's field order is the reverse of
//! the order DriverEntry declares the locals in (each driver's README shows both).
//!
//! **When an unregistration fails** (`CmUnRegisterCallback` returns an error,
//! `FwpsCalloutUnregisterById0` stays refused), the callback may still be called, and everything
//! it reaches must stay valid: freeing it would hand the next call freed pool. A [`Tether`] records
//! that: the guard whose unregistration failed [`snap`](Tether::snap)s it, and every
//! [`Tethered`] guard after it in the struct is then leaked (not dropped) with a log line naming
//! it, instead of being freed. Leaking is the documented lesser evil: the memory (and, with the
//! device object, the driver image) stays for as long as the system runs.

use core::mem::ManuallyDrop;
use core::ops::Deref;
use core::sync::atomic::{AtomicBool, Ordering};

/// Whether a registration of this driver could not be undone at unload, so that what it can reach
/// must be leaked. One per driver, in static memory (it must outlive everything tethered to it).
#[derive(Debug, Default)]
pub struct Tether {
    snapped: AtomicBool,
}

impl Tether {
    /// Intact: nothing has failed to unregister.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            snapped: AtomicBool::new(false),
        }
    }

    /// Records that a registration could not be undone: from now on every [`Tethered`] guard is
    /// leaked when dropped. Called by the guard whose unregistration failed, before the guards
    /// after it are dropped.
    pub fn snap(&self) {
        self.snapped.store(true, Ordering::Release);
    }

    /// Whether [`snap`](Self::snap) was called.
    #[must_use]
    pub fn is_snapped(&self) -> bool {
        self.snapped.load(Ordering::Acquire)
    }
}

/// A guard that a still-registered callback may reach (a context, the device object callouts were
/// registered with): dropped normally, or leaked with a log line if its [`Tether`] was snapped.
pub struct Tethered<T> {
    guard: ManuallyDrop<T>,
    tether: &'static Tether,
}

impl<T> Tethered<T> {
    /// Ties `guard` to `tether`.
    pub fn new(guard: T, tether: &'static Tether) -> Self {
        Self {
            guard: ManuallyDrop::new(guard),
            tether,
        }
    }
}

impl<T> Deref for Tethered<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> Drop for Tethered<T> {
    fn drop(&mut self) {
        if self.tether.is_snapped() {
            crate::klog!(
                Error,
                "teardown: leaking the guard at %p (%Iu bytes): a registration that could not be undone may still reach it",
                core::ptr::from_ref::<T>(&self.guard),
                size_of::<T>()
            );
            return;
        }
        // SAFETY: dropped once, here; the field is never used again.
        unsafe { ManuallyDrop::drop(&mut self.guard) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    type Log = Rc<RefCell<Vec<&'static str>>>;

    struct Guard(&'static str, Log);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.1.borrow_mut().push(self.0);
        }
    }

    /// A registration whose unregistration fails when told to, snapping the tether.
    struct Registration {
        log: Log,
        fails: bool,
        tether: &'static Tether,
    }
    impl Drop for Registration {
        fn drop(&mut self) {
            if self.fails {
                self.log.borrow_mut().push("unregistration failed");
                self.tether.snap();
            } else {
                self.log.borrow_mut().push("registration");
            }
        }
    }

    /// Fields in teardown order.
    #[allow(dead_code)] // guards, held for their Drop
    struct State {
        registration: Registration,
        context: Tethered<Guard>,
        object: Guard,
    }

    fn tether() -> &'static Tether {
        Box::leak(Box::new(Tether::new()))
    }

    /// A DriverEntry that fails at step `fail_at` (1-based) after building what came before.
    fn driver_entry(log: &Log, fail_at: usize, tether: &'static Tether) -> Result<State, ()> {
        let step = |n: usize, name: &'static str| {
            if n == fail_at {
                Err(())
            } else {
                Ok(Guard(name, log.clone()))
            }
        };
        let object = step(1, "object")?;
        let context = Tethered::new(step(2, "context")?, tether);
        step(3, "unused").map(core::mem::forget)?;
        let registration = Registration {
            log: log.clone(),
            fails: false,
            tether,
        };
        Ok(State {
            registration,
            context,
            object,
        })
    }

    #[test]
    fn fields_are_undone_in_declaration_order() {
        let log = Log::default();
        let state = driver_entry(&log, 0, tether()).unwrap();
        assert!(
            log.borrow().is_empty(),
            "nothing undone while the state lives"
        );
        drop(state);
        assert_eq!(*log.borrow(), ["registration", "context", "object"]);
    }

    #[test]
    fn failing_driver_entry_undoes_what_exists_in_the_same_order() {
        for (fail_at, expected) in [
            (1, vec![]),
            (2, vec!["object"]),
            (3, vec!["context", "object"]),
        ] {
            let log = Log::default();
            assert!(driver_entry(&log, fail_at, tether()).is_err());
            assert_eq!(*log.borrow(), expected, "failing at step {fail_at}");
        }
    }

    #[test]
    fn a_failed_unregistration_leaks_what_is_tethered_and_nothing_else() {
        let log = Log::default();
        let t = tether();
        let mut state = driver_entry(&log, 0, t).unwrap();
        state.registration.fails = true;
        drop(state);
        assert!(t.is_snapped());
        assert_eq!(
            *log.borrow(),
            ["unregistration failed", "object"],
            "the context was leaked (never dropped); the object was not tethered"
        );
    }
}
