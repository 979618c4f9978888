//! The driver's log as ETW events: a TraceLogging (manifest-free) provider beside `DbgPrintEx`.
//!
//! Every line [`log!`](crate::log!), [`klog!`](crate::klog!) and
//! [`klog_passive!`](crate::klog_passive!) print is also written, when a trace session listens at
//! that level, as one self-describing event `Log` with a UTF-8 field `Message` (the same text as the
//! debugger line, without the newline). A session collects it with no debugger and no Debug Print
//! Filter: `cargo xtask deploy` starts one per deploy and puts each line next to the plan step that
//! produced it. Why ETW and TraceLogging, and the facts below: docs/notes/etw-log.md.
//!
//! - **Registration** ([`Provider::register`], DriverEntry, PASSIVE_LEVEL): `EtwRegister` with the
//!   GUID TraceLogging derives from the provider name (so tools can name it `*Name`), then
//!   `EtwSetInformation(EventProviderSetTraits)` with the provider metadata. Failing is not fatal:
//!   logging is optional, the driver goes on with `DbgPrintEx` only (one line says so).
//! - **Enable callback**: ETW calls it when a session enables or disables the provider; it stores
//!   the enabled level in a static, so a line nobody listens to costs one load and one branch.
//! - **Writing** (any IRQL; `EtwWriteTransfer` reads only the stack and the non-paged image).
//! - **Unregistration**: the [`Provider`] guard's drop (`EtwUnregister`, PASSIVE_LEVEL). DriverEntry
//!   registers it first, as its first local, so on failure it is dropped last; on success
//!   [`Provider::keep`] leaves it registered and DriverUnload takes it back with
//!   [`Provider::resume`] as its first local, dropped last: after the last line, by construction.
//!   A provider left registered after unload would have ETW call an enable callback in freed code.

use super::tlg::{self, Guid};
use super::{Level, LineBuffer};
use core::sync::atomic::{AtomicPtr, AtomicU8, AtomicU64, Ordering::Relaxed};

/// A provider's identity, built at compile time by [`etw_provider!`](crate::etw_provider!).
#[derive(Debug)]
pub struct ProviderInfo {
    /// The name (for the log line that reports a failed registration).
    pub name: &'static str,
    /// `guid_from_name(name)`.
    pub guid: Guid,
    /// The provider metadata blob (size, name, NUL).
    pub metadata: &'static [u8],
}

/// The provider of this driver, named `WindowsCallbackDrivers.<crate name>` (or
/// `WindowsCallbackDrivers.<name>` with a literal argument, for a variant of a crate), with its GUID
/// and metadata computed at compile time. Evaluates to a `&'static ProviderInfo`.
#[macro_export]
macro_rules! etw_provider {
    () => {
        $crate::etw_provider!(@ concat!("WindowsCallbackDrivers.", env!("CARGO_PKG_NAME")))
    };
    ($name:literal) => {
        $crate::etw_provider!(@ concat!("WindowsCallbackDrivers.", $name))
    };
    (@ $full:expr) => {{
        const NAME: &str = $full;
        static METADATA: [u8; NAME.len() + 3] = $crate::log::tlg::provider_metadata(NAME);
        static INFO: $crate::log::etw::ProviderInfo = $crate::log::etw::ProviderInfo {
            name: NAME,
            guid: $crate::log::tlg::guid_from_name(NAME),
            metadata: &METADATA,
        };
        &INFO
    }};
}

/// The registration handle (`REGHANDLE`), 0 when not registered.
static HANDLE: AtomicU64 = AtomicU64::new(0);
/// The most verbose ETW level a session enabled (0: no session listens).
static ENABLED_LEVEL: AtomicU8 = AtomicU8::new(0);
/// The registered provider's identity (its metadata goes with every event).
static INFO: AtomicPtr<ProviderInfo> = AtomicPtr::new(core::ptr::null_mut());

impl Level {
    /// The ETW level (`TRACE_LEVEL_*`, evntrace.h): error 2, warning 3, information 4, verbose 5.
    #[must_use]
    pub const fn etw(self) -> u8 {
        match self {
            Level::Error => 2,
            Level::Warning => 3,
            Level::Info => 4,
            Level::Trace => 5,
        }
    }
}

/// Whether a session listens at `level`: one load and a compare.
#[inline]
#[must_use]
pub fn enabled(level: Level) -> bool {
    ENABLED_LEVEL.load(Relaxed) >= level.etw()
}

/// `ControlCode` of the enable callback (evntprov.h).
const EVENT_CONTROL_CODE_DISABLE_PROVIDER: u32 = 0;
const EVENT_CONTROL_CODE_ENABLE_PROVIDER: u32 = 1;

/// What the enable callback records: level 0 from a session means "every level", as TraceLogging
/// reads it; disabling (by the last session) stores 0. Keywords are not filtered: the one event
/// has keyword 0, which every session's keywords accept.
#[cfg_attr(not(any(test, target_os = "windows")), allow(dead_code))]
fn on_enable(control_code: u32, level: u8) {
    match control_code {
        EVENT_CONTROL_CODE_ENABLE_PROVIDER => {
            ENABLED_LEVEL.store(if level == 0 { u8::MAX } else { level }, Relaxed);
        }
        EVENT_CONTROL_CODE_DISABLE_PROVIDER => ENABLED_LEVEL.store(0, Relaxed),
        _ => {} // EVENT_CONTROL_CODE_CAPTURE_STATE: we have no state to log
    }
}

/// The registered provider: dropping it unregisters (`EtwUnregister`, PASSIVE_LEVEL). See the
/// module documentation for where a driver keeps it.
#[derive(Debug)]
pub struct Provider(());

impl Provider {
    /// Registers the provider (`EtwRegister`, then the traits with `EtwSetInformation`). Never
    /// fails: if ETW refuses, the driver logs through `DbgPrintEx` only, and says so.
    ///
    /// IRQL: PASSIVE_LEVEL, in a system thread (DriverEntry).
    #[must_use]
    pub fn register(info: &'static ProviderInfo) -> Self {
        #[cfg(target_os = "windows")]
        {
            let mut handle = 0u64;
            // SAFETY: the GUID and the handle outlive the call; the callback is a static function
            // of this image, which stays loaded until the provider is unregistered (this guard).
            let status = unsafe {
                sys::EtwRegister(
                    &raw const info.guid,
                    Some(enable_callback),
                    core::ptr::null_mut(),
                    &raw mut handle,
                )
            };
            if status < 0 {
                crate::klog!(
                    Warning,
                    "EtwRegister failed with %08Ix: logging through DbgPrintEx only",
                    status.cast_unsigned()
                );
                return Self(());
            }
            INFO.store(core::ptr::from_ref(info).cast_mut(), Relaxed);
            HANDLE.store(handle, Relaxed);
            // SAFETY: a registered handle; the metadata is static.
            let status = unsafe {
                sys::EtwSetInformation(
                    handle,
                    EVENT_PROVIDER_SET_TRAITS,
                    info.metadata.as_ptr().cast(),
                    // At most MAX_NAME + 3 bytes (tlg::provider_metadata).
                    u32::try_from(info.metadata.len()).unwrap_or(0),
                )
            };
            if status < 0 {
                // The events still carry the provider metadata: decoders find the name there.
                crate::klog!(
                    Warning,
                    "EtwSetInformation(provider traits) failed with %08Ix",
                    status.cast_unsigned()
                );
            }
        }
        #[cfg(not(target_os = "windows"))]
        INFO.store(core::ptr::from_ref(info).cast_mut(), Relaxed);
        Self(())
    }

    /// Leaves the provider registered when DriverEntry succeeds; DriverUnload takes it back with
    /// [`resume`](Self::resume).
    pub fn keep(self) {
        core::mem::forget(self);
    }

    /// The provider [`keep`](Self::keep) left registered, as a guard again (DriverUnload's first
    /// local, so that it is dropped after the last line).
    #[must_use]
    pub fn resume() -> Self {
        Self(())
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        ENABLED_LEVEL.store(0, Relaxed);
        let handle = HANDLE.swap(0, Relaxed);
        INFO.store(core::ptr::null_mut(), Relaxed);
        #[cfg(target_os = "windows")]
        if handle != 0 {
            // SAFETY: the handle EtwRegister returned, unregistered once (swapped out above).
            // EtwUnregister waits for enable callbacks in progress before it returns.
            let status = unsafe { sys::EtwUnregister(handle) };
            if status < 0 {
                crate::klog!(
                    Error,
                    "EtwUnregister failed with %08Ix",
                    status.cast_unsigned()
                );
            }
        }
        #[cfg(not(target_os = "windows"))]
        let _ = handle;
    }
}

/// `EVENT_INFO_CLASS::EventProviderSetTraits` (evntprov.h).
#[cfg(target_os = "windows")]
const EVENT_PROVIDER_SET_TRAITS: i32 = 2;

/// The `ETWENABLECALLBACK` ETW calls when a session enables or disables the provider.
///
/// IRQL: PASSIVE_LEVEL (a control request, in the controlling thread).
#[cfg(target_os = "windows")]
unsafe extern "system" fn enable_callback(
    _source_id: *const Guid,
    control_code: u32,
    level: u8,
    _match_any_keyword: u64,
    _match_all_keyword: u64,
    _filter_data: *const core::ffi::c_void,
    _callback_context: *mut core::ffi::c_void,
) {
    on_enable(control_code, level);
}

/// Writes a line `log!` formatted (NUL-terminated, ending in a newline, which the event omits).
#[cold]
#[inline(never)]
pub fn write_line(level: Level, line: &[u8]) {
    let text = line.strip_suffix(b"\0").unwrap_or(line);
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    let mut message = LineBuffer::new();
    message.push(text);
    write_event(level, message.without_newline());
}

/// Formats a `klog!` line (the format NUL-terminated, as the macro makes it) and writes it.
///
/// # Safety
/// As [`LineBuffer::format_kernel`]: each `%wZ` word is a valid `UNICODE_STRING`'s address.
#[cold]
#[inline(never)]
pub unsafe fn write_kernel(level: Level, format: &str, words: &[usize]) {
    let format = format.as_bytes();
    let format = format.strip_suffix(b"\0").unwrap_or(format);
    let mut message = LineBuffer::new();
    // SAFETY: the caller's contract.
    unsafe { message.format_kernel(format, words) };
    write_event(level, message.without_newline());
}

/// [`klog!`](crate::klog!) when a session listens: the line to `DbgPrintEx` (the words padded to
/// 16; the kernel reads only as many as the format converts), then as an event.
///
/// # Safety
/// `format` is NUL-terminated with one conversion per word, each word of the kind its conversion
/// reads (what `klog!` checks at compile time).
#[cold]
#[inline(never)]
pub unsafe fn print_and_write(level: Level, format: &str, words: &[usize]) {
    #[cfg(target_os = "windows")]
    {
        let w = |i: usize| words.get(i).copied().unwrap_or(0);
        // SAFETY: the caller's contract; surplus variadic words are never read.
        unsafe {
            crate::sys::DbgPrintEx(
                crate::sys::DPFLTR_IHVDRIVER_ID,
                level as u32,
                format.as_ptr().cast(),
                w(0),
                w(1),
                w(2),
                w(3),
                w(4),
                w(5),
                w(6),
                w(7),
                w(8),
                w(9),
                w(10),
                w(11),
                w(12),
                w(13),
                w(14),
                w(15),
            );
        }
    }
    // SAFETY: the caller's contract.
    unsafe { write_kernel(level, format, words) };
}

/// The `EVENT_DESCRIPTOR` of the `Log` event at `level`: id 0, the TraceLogging channel, no
/// keyword (evntprov.h; TraceLoggingProvider.h's defaults).
#[must_use]
pub fn descriptor(level: Level) -> sys::EventDescriptor {
    sys::EventDescriptor {
        id: 0,
        version: 0,
        channel: tlg::CHANNEL_TRACELOGGING,
        level: level.etw(),
        opcode: 0,
        task: 0,
        keyword: 0,
    }
}

/// The three data descriptors of an event: provider metadata, event metadata, the message.
#[must_use]
pub fn data(info: &ProviderInfo, message: &[u8]) -> [sys::EventDataDescriptor; 3] {
    let entry = |bytes: &[u8], kind: u8| sys::EventDataDescriptor {
        ptr: bytes.as_ptr() as u64,
        // Metadata and messages are a few hundred bytes at most (LINE_CAPACITY, MAX_NAME).
        size: u32::try_from(bytes.len()).unwrap_or(0),
        kind,
        reserved1: 0,
        reserved2: 0,
    };
    [
        entry(
            info.metadata,
            sys::EVENT_DATA_DESCRIPTOR_TYPE_PROVIDER_METADATA,
        ),
        entry(
            &tlg::LOG_EVENT_METADATA,
            sys::EVENT_DATA_DESCRIPTOR_TYPE_EVENT_METADATA,
        ),
        entry(message, 0),
    ]
}

/// `message` is NUL-terminated UTF-8.
fn write_event(level: Level, message: &[u8]) {
    let info = INFO.load(Relaxed);
    let handle = HANDLE.load(Relaxed);
    if info.is_null() || handle == 0 {
        return;
    }
    // SAFETY: INFO holds a `&'static ProviderInfo` (set by register).
    let info = unsafe { &*info };
    let data = data(info, message);
    let descriptor = descriptor(level);
    #[cfg(target_os = "windows")]
    // SAFETY: every pointer is to the stack or the non-paged image and outlives the call; the count
    // is the array's. Callable at any IRQL with non-paged data (EtwWriteTransfer, Remarks). A lost
    // event is not an error worth a line (it would be lost the same way).
    unsafe {
        sys::EtwWriteTransfer(
            handle,
            &raw const descriptor,
            core::ptr::null(),
            core::ptr::null(),
            3,
            data.as_ptr(),
        );
    }
    #[cfg(not(target_os = "windows"))]
    let _ = (data, descriptor);
}

/// The ETW declarations (wdm.h, evntprov.h): own `repr(C)` types, layout-tested below.
pub mod sys {
    /// `EVENT_DESCRIPTOR`.
    #[derive(Clone, Copy, Debug)]
    #[repr(C)]
    pub struct EventDescriptor {
        /// `Id`.
        pub id: u16,
        /// `Version`.
        pub version: u8,
        /// `Channel`.
        pub channel: u8,
        /// `Level`.
        pub level: u8,
        /// `Opcode`.
        pub opcode: u8,
        /// `Task`.
        pub task: u16,
        /// `Keyword`.
        pub keyword: u64,
    }

    /// `EVENT_DATA_DESCRIPTOR`.
    #[derive(Clone, Copy, Debug)]
    #[repr(C)]
    pub struct EventDataDescriptor {
        /// `Ptr`.
        pub ptr: u64,
        /// `Size`.
        pub size: u32,
        /// `Type` (in the union with `Reserved`).
        pub kind: u8,
        /// `Reserved1`.
        pub reserved1: u8,
        /// `Reserved2`.
        pub reserved2: u16,
    }

    /// `EVENT_DATA_DESCRIPTOR_TYPE_EVENT_METADATA`.
    pub const EVENT_DATA_DESCRIPTOR_TYPE_EVENT_METADATA: u8 = 1;
    /// `EVENT_DATA_DESCRIPTOR_TYPE_PROVIDER_METADATA`.
    pub const EVENT_DATA_DESCRIPTOR_TYPE_PROVIDER_METADATA: u8 = 2;

    #[cfg(target_os = "windows")]
    pub use kernel::*;

    #[cfg(target_os = "windows")]
    mod kernel {
        use super::super::Guid;
        use super::{EventDataDescriptor, EventDescriptor};
        use crate::NTSTATUS;
        use core::ffi::c_void;

        /// `ETWENABLECALLBACK` (wdm.h).
        pub type EnableCallback = unsafe extern "system" fn(
            source_id: *const Guid,
            control_code: u32,
            level: u8,
            match_any_keyword: u64,
            match_all_keyword: u64,
            filter_data: *const c_void,
            callback_context: *mut c_void,
        );

        #[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
        unsafe extern "system" {
            /// `EtwRegister` (wdm.h). IRQL == PASSIVE_LEVEL, system thread.
            pub fn EtwRegister(
                provider_id: *const Guid,
                enable_callback: Option<EnableCallback>,
                callback_context: *mut c_void,
                reg_handle: *mut u64,
            ) -> NTSTATUS;
            /// `EtwSetInformation` (wdm.h). IRQL == PASSIVE_LEVEL; Windows 10 and later.
            pub fn EtwSetInformation(
                reg_handle: u64,
                information_class: i32,
                information: *const c_void,
                length: u32,
            ) -> NTSTATUS;
            /// `EtwWriteTransfer` (wdm.h). Any IRQL; above APC_LEVEL the data must not be paged.
            pub fn EtwWriteTransfer(
                reg_handle: u64,
                descriptor: *const EventDescriptor,
                activity_id: *const Guid,
                related_activity_id: *const Guid,
                count: u32,
                data: *const EventDataDescriptor,
            ) -> NTSTATUS;
            /// `EtwUnregister` (wdm.h). IRQL == PASSIVE_LEVEL.
            pub fn EtwUnregister(reg_handle: u64) -> NTSTATUS;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn layouts_match_the_headers() {
        assert_eq!(size_of::<sys::EventDescriptor>(), 16);
        assert_eq!(offset_of!(sys::EventDescriptor, level), 4);
        assert_eq!(offset_of!(sys::EventDescriptor, task), 6);
        assert_eq!(offset_of!(sys::EventDescriptor, keyword), 8);
        assert_eq!(size_of::<sys::EventDataDescriptor>(), 16);
        assert_eq!(offset_of!(sys::EventDataDescriptor, size), 8);
        assert_eq!(offset_of!(sys::EventDataDescriptor, kind), 12);
        assert_eq!(size_of::<Guid>(), 16);
    }

    #[test]
    fn the_macro_names_the_provider_after_the_crate() {
        let info = crate::etw_provider!();
        assert_eq!(info.name, "WindowsCallbackDrivers.common");
        assert_eq!(info.metadata.len(), info.name.len() + 3);
        assert_eq!(info.guid, tlg::guid_from_name(info.name));
        let variant = crate::etw_provider!("wfp-callout-wdm");
        assert_eq!(variant.name, "WindowsCallbackDrivers.wfp-callout-wdm");
    }

    /// One test for the process-wide statics (tests run in parallel).
    #[test]
    fn enable_levels_and_unregistration() {
        assert!(!enabled(Level::Error), "nothing listens before a session");
        on_enable(EVENT_CONTROL_CODE_ENABLE_PROVIDER, 4);
        assert!(enabled(Level::Error) && enabled(Level::Info));
        assert!(!enabled(Level::Trace), "verbose is above level 4");
        on_enable(2, 0); // capture state changes nothing
        assert!(enabled(Level::Info));
        on_enable(EVENT_CONTROL_CODE_ENABLE_PROVIDER, 0);
        assert!(enabled(Level::Trace), "level 0 enables every level");
        on_enable(EVENT_CONTROL_CODE_DISABLE_PROVIDER, 0);
        assert!(!enabled(Level::Error));

        let provider = Provider::register(crate::etw_provider!());
        assert!(!INFO.load(Relaxed).is_null());
        on_enable(EVENT_CONTROL_CODE_ENABLE_PROVIDER, 5);
        provider.keep();
        assert!(
            enabled(Level::Info),
            "kept registered across DriverEntry's end"
        );
        drop(Provider::resume());
        assert!(!enabled(Level::Error), "unregistering stops the writes");
        assert!(INFO.load(Relaxed).is_null());
    }

    #[test]
    fn messages_have_no_newline_even_when_truncated() {
        let mut b = LineBuffer::new();
        // SAFETY: no %wZ.
        unsafe { b.format_kernel(b"a %Iu\n", &[7]) };
        assert_eq!(b.without_newline(), b"a 7\0");
        let long = "x".repeat(400);
        // SAFETY: no %wZ.
        unsafe { b.format_kernel(long.as_bytes(), &[]) };
        let text = b.without_newline();
        assert!(
            text.ends_with(b"...\0"),
            "truncated: the mark stays, the newline goes"
        );
    }

    #[test]
    fn events_carry_both_metadata_blobs_and_the_message() {
        let info = crate::etw_provider!();
        let d = data(info, b"hello\0");
        assert_eq!(d[0].kind, sys::EVENT_DATA_DESCRIPTOR_TYPE_PROVIDER_METADATA);
        assert_eq!(d[0].size as usize, info.metadata.len());
        assert_eq!(d[1].kind, sys::EVENT_DATA_DESCRIPTOR_TYPE_EVENT_METADATA);
        assert_eq!((d[2].kind, d[2].size), (0, 6));
        let e = descriptor(Level::Warning);
        assert_eq!((e.channel, e.level, e.keyword), (11, 3, 0));
    }
}
