//! Non-paged pool allocations that free themselves.
//!
//! [`PoolBox<T>`] is a `Box` for kernel pool: `ExAllocatePoolWithTag(NonPagedPoolNx)`, dropped with
//! `ExFreePoolWithTag`. Non-paged because callback contexts are read at DISPATCH_LEVEL, where a page
//! fault is a bugcheck; `Nx` because memory integrity (HVCI) forbids executable data.
//!
//! Why not `ExAllocatePool2`: it exists only from Windows 10 2004, and importing it stops a driver
//! from loading on anything older (windows-drivers-rs #149). `ExAllocatePoolWithTag` is deprecated
//! but present on every supported release; the pool memory is not zeroed, so `PoolBox` always
//! writes a complete value into it.

use core::ffi::c_void;
use core::mem::{align_of, size_of};
use core::ops::Deref;
use core::ptr::NonNull;

use crate::sys::{ExAllocatePoolWithTag, ExFreePoolWithTag, NON_PAGED_POOL_NX};

/// A pool tag from four ASCII characters, as it shows in `!poolused`: `pool_tag(b"ExCb")`.
#[must_use]
pub const fn pool_tag(tag: &[u8; 4]) -> u32 {
    u32::from_le_bytes(*tag)
}

/// A value in non-paged, non-executable pool, freed when dropped.
pub struct PoolBox<T> {
    ptr: NonNull<T>,
    tag: u32,
}

impl<T> PoolBox<T> {
    /// Allocates pool for `value` and moves it there. IRQL <= DISPATCH_LEVEL.
    ///
    /// # Errors
    /// `Err(value)` when the pool allocation fails (the kernel returns NULL; callers usually report
    /// `STATUS_INSUFFICIENT_RESOURCES`).
    pub fn try_new(value: T, tag: u32) -> Result<Self, T> {
        // Pool blocks are 16-byte aligned on 64-bit Windows; anything stricter is not supported.
        const { assert!(align_of::<T>() <= 16, "pool memory is only 16-byte aligned") };
        const { assert!(size_of::<T>() > 0, "zero-sized values need no pool") };
        // SAFETY: plain allocation call with a valid pool type and a non-zero size.
        let raw = unsafe { ExAllocatePoolWithTag(NON_PAGED_POOL_NX, size_of::<T>(), tag) };
        let Some(ptr) = NonNull::new(raw.cast::<T>()) else {
            return Err(value);
        };
        // SAFETY: `ptr` is a fresh allocation of the right size and alignment, owned by us.
        unsafe { ptr.as_ptr().write(value) };
        Ok(Self { ptr, tag })
    }

    /// Allocates pool for a `T` and zeroes it in place, for values too large to build on the kernel
    /// stack (a frame over a page would need `__chkstk`, which no kernel image links).
    /// IRQL <= DISPATCH_LEVEL.
    ///
    /// `None` when the pool allocation fails.
    ///
    /// # Safety
    /// All-zero bytes must be a valid `T` (integers, atomics, null pointers, `false`, and types made
    /// only of those).
    #[must_use = "dropping the box frees the allocation"]
    pub unsafe fn try_new_zeroed(tag: u32) -> Option<Self> {
        const { assert!(align_of::<T>() <= 16, "pool memory is only 16-byte aligned") };
        const { assert!(size_of::<T>() > 0, "zero-sized values need no pool") };
        // SAFETY: plain allocation call with a valid pool type and a non-zero size.
        let raw = unsafe { ExAllocatePoolWithTag(NON_PAGED_POOL_NX, size_of::<T>(), tag) };
        let ptr = NonNull::new(raw.cast::<T>())?;
        // SAFETY: a fresh allocation of size_of::<T>() bytes, owned by us; the caller guarantees
        // that the zeroed bytes are a valid T.
        unsafe { ptr.as_ptr().write_bytes(0, 1) };
        Some(Self { ptr, tag })
    }

    /// The address of the value, for passing as a callback context.
    #[must_use]
    pub fn as_context(&self) -> *const c_void {
        self.ptr.as_ptr().cast::<c_void>().cast_const()
    }
}

impl<T> Deref for PoolBox<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the allocation holds an initialised T until drop.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T> Drop for PoolBox<T> {
    fn drop(&mut self) {
        // SAFETY: we own the initialised value; it is dropped exactly once, here. Dropping it may
        // wait (a barrier drains), which is why the memory is only returned afterwards.
        unsafe { self.ptr.as_ptr().drop_in_place() };
        // SAFETY: the block came from ExAllocatePoolWithTag with this tag and is freed once.
        unsafe { ExFreePoolWithTag(self.ptr.as_ptr().cast::<c_void>(), self.tag) };
    }
}

// SAFETY: PoolBox owns its T like Box does.
unsafe impl<T: Send> Send for PoolBox<T> {}
// SAFETY: shared access only hands out &T.
unsafe impl<T: Sync> Sync for PoolBox<T> {}
