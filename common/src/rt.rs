//! The few runtime symbols a `no_std` kernel image needs and no CRT provides.
//!
//! A driver links no C runtime (`/NODEFAULTLIB`), so what rustc and the precompiled `core` expect
//! from one is supplied here:
//!
//! - `memcpy`, `memmove`, `memset`, `memcmp`: rustc lowers copies and fills to calls of these.
//!   `ntoskrnl.exe` exports all four, so they are imported from the kernel like every other
//!   routine; callable at any IRQL on non-paged memory.
//! - `_fltused`: a marker symbol MSVC-targeting code references when floating point appears
//!   anywhere (core's float formatting does). Its value is never read; drivers here use no floats.
//! - `__CxxFrameHandler3`: the language-specific exception handler named in the unwind tables of
//!   the precompiled `core`. With `panic = "abort"` nothing ever unwinds through Rust frames; if a
//!   structured exception passes through one, the answer "this frame does not handle it"
//!   (`ExceptionContinueSearch`) is the correct one.

#[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
unsafe extern "C" {
    /// `memcpy`.
    pub fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8;
    /// `memmove`.
    pub fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8;
    /// `memset`.
    pub fn memset(dest: *mut u8, c: i32, n: usize) -> *mut u8;
    /// `memcmp`.
    pub fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32;
}

// Both symbols are defined in assembly rather than as `#[no_mangle]` Rust items: rustc exports every
// `#[no_mangle]` item of a cdylib, and a driver must export nothing but what it means to (the lint
// checks this). Symbols defined by `global_asm!` are visible to the linker but never exported.
//
// `_fltused`: a 4-byte zero in read-only data.
// `__CxxFrameHandler3`: returns 1, `ExceptionContinueSearch`.
macro_rules! runtime_symbols {
    ($return_one:literal) => {
        core::arch::global_asm!(
            ".section .rdata,\"dr\"",
            ".globl _fltused",
            "_fltused:",
            ".long 0",
            ".text",
            ".globl __CxxFrameHandler3",
            "__CxxFrameHandler3:",
            $return_one,
            "ret",
        );
    };
}

#[cfg(all(not(test), target_arch = "x86_64"))]
runtime_symbols!("mov eax, 1");
#[cfg(all(not(test), target_arch = "aarch64"))]
runtime_symbols!("mov w0, #1");
