//! Where a driver keeps its state between DriverEntry and DriverUnload.
//!
//! DriverUnload receives only the driver object, so a driver without a device extension keeps what
//! it registered in a static. [`StateSlot`] is that static: DriverEntry [`install`](StateSlot::install)s
//! the teardown stack once it is complete, DriverUnload [`take`](StateSlot::take)s it out and drops
//! it. The I/O manager never runs the two concurrently and calls DriverUnload at most once, but the
//! slot does not rely on that: a second install or take is refused, not undefined behaviour.

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU8, Ordering};

const EMPTY: u8 = 0;
const BUSY: u8 = 1;
const FULL: u8 = 2;

/// A once-filled, once-emptied home for a driver's state.
pub struct StateSlot<T> {
    state: AtomicU8,
    value: UnsafeCell<MaybeUninit<T>>,
}

// SAFETY: the value is only reached by the one caller that moved `state` EMPTY→BUSY (install) or
// FULL→BUSY (take), so no two threads ever touch it at once; `T: Send` because the value may be
// installed on one thread and taken (and dropped) on another.
unsafe impl<T: Send> Sync for StateSlot<T> {}

impl<T> StateSlot<T> {
    /// An empty slot, usable in a `static`.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            state: AtomicU8::new(EMPTY),
            value: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    /// Stores `value`. Returns it back if the slot is not empty.
    ///
    /// # Errors
    /// `Err(value)` when the slot already holds a state (or is being filled or emptied).
    pub fn install(&self, value: T) -> Result<(), T> {
        if self
            .state
            .compare_exchange(EMPTY, BUSY, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return Err(value);
        }
        // SAFETY: we won EMPTY→BUSY, so we are the only one touching `value`, and it holds nothing.
        unsafe { (*self.value.get()).write(value) };
        self.state.store(FULL, Ordering::Release);
        Ok(())
    }

    /// Moves the state out, leaving the slot empty. `None` if nothing was installed.
    pub fn take(&self) -> Option<T> {
        if self
            .state
            .compare_exchange(FULL, BUSY, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return None;
        }
        // SAFETY: we won FULL→BUSY, so nobody else touches the cell.
        let cell = unsafe { &mut *self.value.get() };
        // SAFETY: FULL means `install` initialised it; the state goes back to EMPTY below, so it is
        // read out exactly once.
        let value = unsafe { cell.assume_init_read() };
        self.state.store(EMPTY, Ordering::Release);
        Some(value)
    }

    /// The end of every DriverEntry here: keeps `state` for DriverUnload, *then* sets
    /// `DriverObject->DriverUnload` — in that order, so the unload routine can never run without
    /// the state it tears down. Setting DriverUnload is what makes a WDM driver unloadable.
    ///
    /// # Arguments
    /// * `state` - everything DriverEntry set up (a teardown stack).
    /// * `driver` - DriverEntry's driver object.
    /// * `unload` - the driver's unload routine; it should `take()` the state and drop it.
    ///
    /// # Return value
    /// `STATUS_SUCCESS`, or `STATUS_INSUFFICIENT_RESOURCES` if a state was already installed (a
    /// second DriverEntry, which the I/O manager never does); `state` is then dropped, undoing it,
    /// rather than leaked.
    ///
    /// # Safety
    /// `driver` is DriverEntry's driver object, and this is called from DriverEntry.
    #[cfg(target_os = "windows")]
    pub unsafe fn install_and_enable_unload(
        &self,
        state: T,
        driver: *mut crate::sys::DRIVER_OBJECT,
        unload: crate::sys::DriverUnload,
    ) -> crate::sys::NTSTATUS {
        if let Err(state) = self.install(state) {
            drop(state);
            return crate::sys::STATUS_INSUFFICIENT_RESOURCES;
        }
        // SAFETY: the I/O manager passes a valid driver object and nothing else writes it while
        // DriverEntry runs.
        unsafe { (*driver).DriverUnload = Some(unload) };
        crate::sys::STATUS_SUCCESS
    }

    /// Whether a state is installed.
    pub fn is_full(&self) -> bool {
        self.state.load(Ordering::Acquire) == FULL
    }
}

impl<T> Default for StateSlot<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::StateSlot;

    #[test]
    fn install_then_take_once() {
        let slot = StateSlot::new();
        assert!(!slot.is_full());
        assert!(slot.install(String::from("state")).is_ok());
        assert!(slot.is_full());
        assert_eq!(slot.install(String::from("again")).unwrap_err(), "again");
        assert_eq!(slot.take().as_deref(), Some("state"));
        assert!(
            slot.take().is_none(),
            "a second unload finds nothing to tear down"
        );
    }

    #[test]
    fn take_without_install_is_none() {
        let slot: StateSlot<u32> = StateSlot::new();
        assert!(slot.take().is_none());
    }
}
