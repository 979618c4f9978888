//! Shared support for the callback-driver samples.
//!
//! Everything a driver in this suite needs that is not the lesson of the driver itself:
//!
//! - [`sys`]: the kernel FFI. Types come from windows-sys' `Wdk` bindings where they are right;
//!   what windows-sys lacks, links to a user-mode DLL, or declares wrongly is declared here against
//!   the kernel module (`ntoskrnl.exe`) with `raw-dylib`.
//! - [`log`]: `DbgPrintEx` logging, formatted into a bounded stack buffer (no heap), and each line
//!   also as a TraceLogging ETW event when a trace session listens ([`log::etw`]).
//! - [`panic`]: a panic is a bugcheck with a distinct code and the source location.
//! - Unload bookkeeping, as types ([`teardown`], [`barrier`], [`slot`], [`pool`], [`ex`]): every
//!   registration is a guard that undoes itself when dropped; a driver keeps its guards as the named
//!   fields of one state struct declared in teardown order ([`teardown`]: Rust drops fields in
//!   declaration order), leaks what a registration that could not be undone still reaches
//!   ([`teardown::Tether`]), and a [`barrier`] is defence in depth for families whose unregistration
//!   page does not promise "no more callbacks".
//! - Families and locks: [`ex`] (callback objects), [`pnp`] (PnP notifications), [`wfp`] (WFP
//!   callouts, flow contexts and the unload drain), [`mutex`] (a guarded mutex for data shared by
//!   PASSIVE_LEVEL callbacks), [`sync`] (a spin lock and an event, for DISPATCH_LEVEL callbacks).
//! - Device objects and KMDF: [`device`] (an unnamed WDM device object), [`kmdf`] (binding to the
//!   framework without the WDK: the `WdfDriverEntry.lib` stub's job, one macro to opt in).
//!
//! The kernel-facing parts compile only for Windows targets; the bookkeeping logic is plain Rust and
//! is unit-tested on the host.
#![cfg_attr(not(test), no_std)]

pub mod barrier;
pub mod cm;
pub mod device;
pub mod kmdf;
pub mod log;
pub mod mutex;
pub mod pnp;
pub mod slot;
pub mod sync;
pub mod teardown;
pub mod unicode;
pub mod wfp;

#[cfg(target_os = "windows")]
pub mod ex;
#[cfg(all(target_os = "windows", not(test)))]
pub mod panic;
#[cfg(target_os = "windows")]
pub mod pool;
#[cfg(target_os = "windows")]
pub mod registry;
#[cfg(target_os = "windows")]
pub mod rt;
pub mod sys;

pub use sys::NTSTATUS;
