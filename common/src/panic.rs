//! A panic in a driver is a bugcheck, never a hang.
//!
//! There is no unwinding in a kernel image (`panic = "abort"`), and spinning forever at an unknown
//! IRQL would freeze the machine without a trace. So the handler logs the message and location, then
//! calls `KeBugCheckEx` with [`RUST_PANIC_BUGCHECK`] and the location as parameters, which leaves a
//! crash dump that names the line.

use core::panic::PanicInfo;

/// The bugcheck code for a Rust panic: ASCII "RUST". Parameters: 1 = address of the source file
/// name (UTF-8, not NUL-terminated), 2 = its length, 3 = line, 4 = column.
pub const RUST_PANIC_BUGCHECK: u32 = u32::from_be_bytes(*b"RUST");

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    let (file, line, column) = info
        .location()
        .map_or(("<unknown>", 0, 0), |l| (l.file(), l.line(), l.column()));
    // SAFETY: "%.*s" reads an int length and a pointer to that many bytes: the file name.
    unsafe {
        crate::sys::DbgPrintEx(
            crate::sys::DPFLTR_IHVDRIVER_ID,
            crate::log::Level::Error as u32,
            c"[panic] at %.*s:%u:%u\n".as_ptr(),
            i32::try_from(file.len()).unwrap_or(0),
            file.as_ptr(),
            line,
            column,
        );
    }
    // SAFETY: KeBugCheckEx may be called at any IRQL and never returns; the parameters are plain
    // integers (the file name is only read by whoever analyses the dump).
    unsafe {
        crate::sys::KeBugCheckEx(
            RUST_PANIC_BUGCHECK,
            file.as_ptr() as usize,
            file.len(),
            line as usize,
            column as usize,
        )
    }
}
