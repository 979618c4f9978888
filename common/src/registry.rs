//! Reading a driver's configuration from its service key: `<RegistryPath>\Parameters`.
//!
//! DriverEntry receives the service key's path (`\REGISTRY\MACHINE\SYSTEM\...\Services\<name>`).
//! A value under its `Parameters` subkey is how a non-PnP driver is configured, and the INF or
//! `reg add` on the test machine is how the value gets there.

use core::ffi::c_void;

use crate::sys::{
    HANDLE, NTSTATUS, OBJ_CASE_INSENSITIVE, OBJ_KERNEL_HANDLE, OBJECT_ATTRIBUTES,
    STATUS_BUFFER_OVERFLOW, STATUS_NAME_TOO_LONG, STATUS_OBJECT_TYPE_MISMATCH, UNICODE_STRING,
    ZwClose, ZwOpenKey, ZwQueryValueKey, nt_success,
};
use crate::unicode::StaticUnicode;

/// `KEY_QUERY_VALUE`: the only right needed to read a value.
const KEY_QUERY_VALUE: u32 = 0x0001;
/// `KeyValuePartialInformation`.
const KEY_VALUE_PARTIAL_INFORMATION: i32 = 2;
/// `REG_SZ`.
const REG_SZ: u32 = 1;
/// `REG_DWORD`.
const REG_DWORD: u32 = 4;
/// `KEY_VALUE_PARTIAL_INFORMATION` header: TitleIndex, Type, DataLength (3 x ULONG).
const PARTIAL_HEADER: usize = 12;

/// A `KEY_VALUE_PARTIAL_INFORMATION` buffer with room for a short value, ULONG-aligned.
#[repr(C, align(8))]
struct Partial([u8; 256]);

impl Partial {
    /// The little-endian ULONG at byte `at` (TitleIndex 0, Type 4, DataLength 8, data 12...).
    fn u32_at(&self, at: usize) -> u32 {
        u32::from_le_bytes([self.0[at], self.0[at + 1], self.0[at + 2], self.0[at + 3]])
    }
}

/// An open registry key; closed with `ZwClose` when dropped.
struct KeyHandle(HANDLE);

impl Drop for KeyHandle {
    fn drop(&mut self) {
        // SAFETY: the handle came from a successful ZwOpenKey and is closed once. PASSIVE_LEVEL.
        unsafe { ZwClose(self.0) };
    }
}

/// Reads the `REG_SZ` value `value` under `<registry_path>\Parameters` into `out` and returns the
/// number of UTF-16 units written (any terminating NUL removed). IRQL == PASSIVE_LEVEL.
///
/// # Arguments
/// * `registry_path` - DriverEntry's `RegistryPath`.
/// * `value` - the value's name.
/// * `out` - where the text goes; a longer value is refused, not truncated.
///
/// # Return value
/// The length, or the failure: `STATUS_OBJECT_NAME_NOT_FOUND` (no key or no value, the usual
/// "not configured" answer), `STATUS_OBJECT_TYPE_MISMATCH` (not a `REG_SZ`),
/// `STATUS_BUFFER_OVERFLOW` (too long for `out`), `STATUS_NAME_TOO_LONG` (the key path itself).
///
/// # Errors
/// As above; callers normally fall back to a default.
///
/// # Safety
/// `registry_path` must point to a valid `UNICODE_STRING`.
pub unsafe fn read_parameter_string(
    registry_path: *const UNICODE_STRING,
    value: StaticUnicode,
    out: &mut [u16],
) -> Result<usize, NTSTATUS> {
    // SAFETY: the caller's contract.
    let buffer = unsafe { query_parameter(registry_path, value) }?;
    let field = |at: usize| buffer.u32_at(at);
    if field(4) != REG_SZ {
        return Err(STATUS_OBJECT_TYPE_MISMATCH);
    }
    let data = &buffer.0[PARTIAL_HEADER..];
    let data = &data[..(field(8) as usize).min(data.len())];
    let units = data
        .chunks_exact(2)
        .map(|pair| u16::from_le_bytes([pair[0], pair[1]]));
    let mut written = 0;
    for unit in units.take_while(|&u| u != 0) {
        let Some(slot) = out.get_mut(written) else {
            return Err(STATUS_BUFFER_OVERFLOW);
        };
        *slot = unit;
        written += 1;
    }
    Ok(written)
}

/// Reads the `REG_DWORD` value `value` under `<registry_path>\Parameters`. IRQL == PASSIVE_LEVEL.
///
/// # Arguments
/// * `registry_path` - DriverEntry's `RegistryPath`.
/// * `value` - the value's name.
///
/// # Return value
/// The number, or the failure: `STATUS_OBJECT_NAME_NOT_FOUND` (not configured),
/// `STATUS_OBJECT_TYPE_MISMATCH` (not a 4-byte `REG_DWORD`), `STATUS_NAME_TOO_LONG`.
///
/// # Errors
/// As above; callers normally fall back to a default.
///
/// # Safety
/// `registry_path` must point to a valid `UNICODE_STRING`.
pub unsafe fn read_parameter_u32(
    registry_path: *const UNICODE_STRING,
    value: StaticUnicode,
) -> Result<u32, NTSTATUS> {
    // SAFETY: the caller's contract.
    let buffer = unsafe { query_parameter(registry_path, value) }?;
    let field = |at: usize| buffer.u32_at(at);
    if field(4) != REG_DWORD || field(8) != 4 {
        return Err(STATUS_OBJECT_TYPE_MISMATCH);
    }
    Ok(field(PARTIAL_HEADER))
}

/// `ZwOpenKey(<registry_path>\Parameters)` and `ZwQueryValueKey(value,
/// KeyValuePartialInformation)`: the `KEY_VALUE_PARTIAL_INFORMATION` (TitleIndex, Type,
/// DataLength, then the data) in a ULONG-aligned buffer.
///
/// # Safety
/// `registry_path` must point to a valid `UNICODE_STRING`.
unsafe fn query_parameter(
    registry_path: *const UNICODE_STRING,
    value: StaticUnicode,
) -> Result<Partial, NTSTATUS> {
    const SUFFIX: &[u16] = &crate::unicode::ascii_to_utf16::<11>("\\Parameters");
    // The full path in a bounded stack buffer: service paths are short; a longer one is refused.
    let mut path = [0u16; 256];
    // SAFETY: the caller passes DriverEntry's valid RegistryPath.
    let base = unsafe { crate::unicode::units(registry_path) };
    let length = base.len() + SUFFIX.len();
    if length > path.len() {
        return Err(STATUS_NAME_TOO_LONG);
    }
    path[..base.len()].copy_from_slice(base);
    path[base.len()..length].copy_from_slice(SUFFIX);
    #[allow(clippy::cast_possible_truncation)] // length <= 256 units
    let name = UNICODE_STRING {
        Length: (length * 2) as u16,
        MaximumLength: (length * 2) as u16,
        Buffer: path.as_mut_ptr(),
    };
    #[allow(clippy::cast_possible_truncation)]
    let attributes = OBJECT_ATTRIBUTES {
        Length: size_of::<OBJECT_ATTRIBUTES>() as u32,
        RootDirectory: core::ptr::null_mut(),
        ObjectName: &raw const name,
        // A kernel handle: user mode cannot use (or close) it, whatever process we run in.
        Attributes: OBJ_CASE_INSENSITIVE | OBJ_KERNEL_HANDLE,
        SecurityDescriptor: core::ptr::null(),
        SecurityQualityOfService: core::ptr::null(),
    };
    let mut handle: HANDLE = core::ptr::null_mut();
    // SAFETY: valid out pointer and attributes (with the name) that live across the call.
    let status = unsafe { ZwOpenKey(&raw mut handle, KEY_QUERY_VALUE, &raw const attributes) };
    if !nt_success(status) {
        return Err(status);
    }
    let key = KeyHandle(handle);

    let mut buffer = Partial([0; 256]);
    let value_name = value.as_unicode_string();
    let mut returned = 0u32;
    // SAFETY: the buffer is writable for its full size, which is what Length says.
    let status = unsafe {
        ZwQueryValueKey(
            key.0,
            &raw const value_name,
            KEY_VALUE_PARTIAL_INFORMATION,
            buffer.0.as_mut_ptr().cast::<c_void>(),
            256,
            &raw mut returned,
        )
    };
    drop(key);
    if !nt_success(status) {
        return Err(status);
    }
    Ok(buffer)
}
