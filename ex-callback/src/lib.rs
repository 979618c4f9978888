//! # ex-callback: callback objects, registered and torn down correctly
//!
//! A WDM driver that uses the four callback-object routines:
//!
//! - **ExCreateCallback** creates the driver's own named callback object,
//!   `\Callback\ExCallbackSample` (any driver may open it and listen), and opens two objects the
//!   system creates, `\Callback\PowerState` and `\Callback\SetSystemTime`, *without* creating them.
//! - **ExRegisterCallback** registers one routine on each of the three objects.
//! - **ExNotifyCallback** announces the driver on its own object when it has loaded and when it is
//!   about to unload.
//! - **ExUnregisterCallback** and **ObDereferenceObject** undo it all at unload.
//!
//! ## The lesson: the teardown order
//! `ExUnregisterCallback` removes a routine from the object's list (and the registration's
//! reference to the object). Its page does not say whether it waits for a call already running on
//! another processor; ReactOS's implementation does. So DriverUnload:
//!
//! 1. unregisters every callback (`ExUnregisterCallback`, IRQL <= APC_LEVEL): no new calls start,
//!    and a call in flight has finished when it returns (ReactOS; the documentation is silent);
//! 2. closes the callback barrier in the context and waits for calls inside it — defence in depth
//!    for the documentation's silence, not what protects a call that has not reached the barrier;
//! 3. frees the context the callbacks used;
//! 4. dereferences each callback object (`ObDereferenceObject`) — last only because unload still
//!    notifies our own object; each registration held a reference of its own.
//!
//! The driver does not write that sequence by hand. Each step is a guard from `common`, a named
//! field of [`State`] whose fields are declared in teardown order (Rust drops fields in declaration
//! order). When DriverEntry fails halfway, the same guards, as locals declared in registration
//! order, are dropped in reverse — the same order.
#![no_std]

use core::ffi::c_void;
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use common::barrier::{CallbackBarrier, KernelRundown};
use common::ex::{CallbackObject, ExCallbackRegistration};
use common::log::etw::Provider;
use common::pool::{PoolBox, pool_tag};
use common::slot::StateSlot;
use common::sys::{
    DRIVER_OBJECT, NTSTATUS, PO_CB_AC_STATUS, PO_CB_LID_SWITCH_STATE, PO_CB_PROCESSOR_POWER_POLICY,
    PO_CB_SYSTEM_POWER_POLICY, PO_CB_SYSTEM_STATE_LOCK, STATUS_INSUFFICIENT_RESOURCES,
    UNICODE_STRING, nt_success,
};
use common::{klog, unicode};

/// Pool tag of the context allocation, as `!poolused` shows it.
const CONTEXT_TAG: u32 = pool_tag(b"ExCb");

/// `Argument1` values this driver sends on its own callback object. `Argument2` is the number of
/// notifications the driver has sent so far. Listeners on `\Callback\ExCallbackSample` must treat
/// unknown values as "ignore".
const SAMPLE_EVENT_LOADED: usize = 1;
/// See [`SAMPLE_EVENT_LOADED`].
const SAMPLE_EVENT_UNLOADING: usize = 2;

/// What the callbacks share.
///
/// It lives in non-paged pool because callbacks on `\Callback\PowerState` and on our own object may
/// run at DISPATCH_LEVEL, where touching paged memory is a bugcheck. The barrier is the first thing a
/// callback touches and the last thing freed.
struct Context {
    barrier: CallbackBarrier<KernelRundown>,
    sample_calls: AtomicUsize,
    power_calls: AtomicUsize,
    time_calls: AtomicUsize,
    notifications_sent: AtomicUsize,
}

impl Context {
    const fn new() -> Self {
        Self {
            barrier: CallbackBarrier::new(KernelRundown::new()),
            sample_calls: AtomicUsize::new(0),
            power_calls: AtomicUsize::new(0),
            time_calls: AtomicUsize::new(0),
            notifications_sent: AtomicUsize::new(0),
        }
    }
}

/// Everything DriverEntry set up, **fields in teardown order**: dropping it drops `on_time`
/// first and `sample` last (the reverse of the order [`set_up`] declares them in).
#[allow(dead_code)] // guards, held for what their Drop undoes
struct State {
    /// 1. ExUnregisterCallback on \Callback\SetSystemTime.
    on_time: ExCallbackRegistration,
    /// 2. ExUnregisterCallback on \Callback\PowerState.
    on_power: ExCallbackRegistration,
    /// 3. ExUnregisterCallback on \Callback\ExCallbackSample.
    on_sample: ExCallbackRegistration,
    /// 4. The context all three callbacks use: barrier closed and drained, then freed.
    context: PoolBox<Context>,
    /// 5. ObDereferenceObject(\Callback\SetSystemTime), opened.
    time: CallbackObject,
    /// 6. ObDereferenceObject(\Callback\PowerState), opened.
    power: CallbackObject,
    /// 7. ObDereferenceObject(\Callback\ExCallbackSample), created by us or opened.
    sample: CallbackObject,
}

/// The state between DriverEntry and DriverUnload.
static STATE: StateSlot<State> = StateSlot::new();

/// The driver's entry point: opens the callback objects, registers on them and announces itself.
///
/// # Arguments
/// * `driver` - our driver object; DriverEntry sets its `DriverUnload`.
/// * `_registry_path` - the service key; unused.
///
/// # Return value
/// `STATUS_SUCCESS`, or the status of the first step that failed, after everything done before it
/// has been undone.
///
/// IRQL: PASSIVE_LEVEL.
///
/// # Safety
/// Called by the I/O manager with a valid driver object.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn DriverEntry(
    driver: *mut DRIVER_OBJECT,
    _registry_path: *const UNICODE_STRING,
) -> NTSTATUS {
    // The ETW provider first, so that it is dropped last: after DriverEntry's last line.
    let log = Provider::register(common::etw_provider!());
    klog!(Info, "DriverEntry");
    let state = match set_up() {
        Ok(state) => state,
        Err(status) => {
            // Whatever set_up built was dropped as it returned, in reverse order.
            klog!(
                Error,
                "DriverEntry failed with %08Ix; nothing is left registered",
                status.cast_unsigned()
            );
            return status;
        }
    };
    // Announce the driver on its own object. Our callback is registered, so it runs now, on this
    // thread, as does any other driver's listening on \Callback\ExCallbackSample.
    announce(&state, SAMPLE_EVENT_LOADED);

    // Keep the state for DriverUnload, then set DriverUnload (which makes the driver unloadable).
    // SAFETY: DriverEntry's driver object.
    let status = unsafe { STATE.install_and_enable_unload(state, driver, driver_unload) };
    klog!(Info, "loaded: 3 callbacks registered");
    if nt_success(status) {
        log.keep(); // registered until DriverUnload's last line
    }
    status
}

/// Opens the objects, allocates the context and registers the callbacks, in that order.
///
/// Every step is a guard held in a local. If a step fails, `?` returns and Rust drops the locals
/// that exist in reverse order of declaration: registrations first, then the context, then the
/// objects, which is exactly the unload order.
fn set_up() -> Result<State, NTSTATUS> {
    // 1. The objects. ExCreateCallback runs at PASSIVE_LEVEL (we are in DriverEntry).
    let sample = CallbackObject::create(unicode!("\\Callback\\ExCallbackSample"), true)
        .inspect_err(|s| {
            klog!(
                Error,
                "ExCreateCallback(\\Callback\\ExCallbackSample) failed: %08Ix",
                s.cast_unsigned()
            );
        })?;
    // The system objects exist on every system; Create = FALSE so we never create an impostor.
    let power = CallbackObject::open(unicode!("\\Callback\\PowerState")).inspect_err(|s| {
        klog!(
            Error,
            "ExCreateCallback(\\Callback\\PowerState) failed: %08Ix",
            s.cast_unsigned()
        );
    })?;
    let time = CallbackObject::open(unicode!("\\Callback\\SetSystemTime")).inspect_err(|s| {
        klog!(
            Error,
            "ExCreateCallback(\\Callback\\SetSystemTime) failed: %08Ix",
            s.cast_unsigned()
        );
    })?;

    // 2. The context, in non-paged pool, with its barrier opened at its final address before any
    //    callback can see it.
    let context = PoolBox::try_new(Context::new(), CONTEXT_TAG).map_err(|_| {
        klog!(Error, "context allocation failed");
        STATUS_INSUFFICIENT_RESOURCES
    })?;
    context.barrier.initialize();

    // 3. The registrations. Rule: the context must outlive every call of the callback. It does:
    //    `context` is declared before the registrations (and is a later field of State), so it is
    //    dropped after them, and dropping it first drains the barrier.
    // SAFETY: see the rule above; the objects, likewise declared earlier, outlive the registrations.
    let on_sample =
        unsafe { ExCallbackRegistration::register(&sample, on_sample_event, context.as_context()) }
            .inspect_err(|_| {
                klog!(
                    Error,
                    "ExRegisterCallback(\\Callback\\ExCallbackSample) returned NULL"
                );
            })?;
    // SAFETY: as above.
    let on_power =
        unsafe { ExCallbackRegistration::register(&power, on_power_state, context.as_context()) }
            .inspect_err(|_| {
            klog!(
                Error,
                "ExRegisterCallback(\\Callback\\PowerState) returned NULL"
            );
        })?;
    // SAFETY: as above.
    let on_time =
        unsafe { ExCallbackRegistration::register(&time, on_system_time, context.as_context()) }
            .inspect_err(|_| {
                klog!(
                    Error,
                    "ExRegisterCallback(\\Callback\\SetSystemTime) returned NULL"
                );
            })?;

    Ok(State {
        on_time,
        on_power,
        on_sample,
        context,
        time,
        power,
        sample,
    })
}

/// Sends `event` on our own callback object (`ExNotifyCallback`). IRQL <= DISPATCH_LEVEL.
fn announce(state: &State, event: usize) {
    let sent = state.context.notifications_sent.fetch_add(1, Relaxed) + 1;
    state.sample.notify(event, sent);
}

/// Unloads the driver: announces it, then drops the state, which undoes everything in reverse.
///
/// IRQL: PASSIVE_LEVEL (the I/O manager calls DriverUnload at PASSIVE_LEVEL; ExUnregisterCallback
/// needs <= APC_LEVEL and the barrier's wait blocks).
///
/// # Safety
/// Called by the I/O manager once, after a successful DriverEntry.
unsafe extern "system" fn driver_unload(_driver: *const DRIVER_OBJECT) {
    // The provider DriverEntry kept: the first local, so EtwUnregister comes after the last line.
    let _log = Provider::resume();
    let Some(state) = STATE.take() else {
        return;
    };
    announce(&state, SAMPLE_EVENT_UNLOADING);
    let context = &state.context;
    klog!(
        Info,
        "unloading after %Iu sample, %Iu power-state and %Iu system-time callbacks",
        context.sample_calls.load(Relaxed),
        context.power_calls.load(Relaxed),
        context.time_calls.load(Relaxed)
    );
    // Dropping the state, field by field in declaration order:
    //   1. ExUnregisterCallback x3 (SetSystemTime, PowerState, ExCallbackSample): no new calls;
    //   2. the context: its barrier closes and waits for calls inside it, then ExFreePoolWithTag;
    //   3. ObDereferenceObject x3 (SetSystemTime, PowerState, ExCallbackSample).
    drop(state);
    klog!(Info, "unloaded: every registration undone");
}

/// Resolves a callback's context. Touches nothing but the pointer.
///
/// # Safety
/// `context` must be the `PoolBox<Context>` address passed to `ExCallbackRegistration::register`.
unsafe fn context_of<'a>(context: *mut c_void) -> &'a Context {
    // SAFETY: per the contract, the pointer is our context, which outlives every call (the barrier
    // is drained before it is freed).
    unsafe { &*context.cast::<Context>() }
}

/// Callback on `\Callback\ExCallbackSample`: `Argument1` is an event code, `Argument2` its value.
///
/// IRQL: the notifier's, <= DISPATCH_LEVEL. Non-pageable (every section of this image is).
unsafe extern "system" fn on_sample_event(
    context: *mut c_void,
    argument1: *mut c_void,
    argument2: *mut c_void,
) {
    // SAFETY: registered with our context pointer.
    let context = unsafe { context_of(context) };
    let Some(_inside) = context.barrier.enter() else {
        return; // teardown has begun: touch nothing else
    };
    let n = context.sample_calls.fetch_add(1, Relaxed) + 1;
    match argument1 as usize {
        SAMPLE_EVENT_LOADED => klog!(
            Info,
            "ExCallbackSample #%Iu: driver loaded (notification %Iu)",
            n,
            argument2
        ),
        SAMPLE_EVENT_UNLOADING => klog!(
            Info,
            "ExCallbackSample #%Iu: driver unloading (notification %Iu)",
            n,
            argument2
        ),
        other => klog!(
            Info,
            "ExCallbackSample #%Iu: event %Iu, argument %p",
            n,
            other,
            argument2
        ),
    }
}

/// Callback on `\Callback\PowerState`: `Argument1` is a `PO_CB_*` code, `Argument2` its value.
///
/// IRQL: <= DISPATCH_LEVEL. A driver in the paging path would lock its code in memory on
/// `PO_CB_SYSTEM_STATE_LOCK`; this one is entirely non-pageable and only logs.
unsafe extern "system" fn on_power_state(
    context: *mut c_void,
    argument1: *mut c_void,
    argument2: *mut c_void,
) {
    // SAFETY: registered with our context pointer.
    let context = unsafe { context_of(context) };
    let Some(_inside) = context.barrier.enter() else {
        return;
    };
    let n = context.power_calls.fetch_add(1, Relaxed) + 1;
    let value = argument2 as usize;
    match argument1 as usize {
        PO_CB_AC_STATUS => klog!(
            Info,
            "PowerState #%Iu: power source changed, on AC = %Iu",
            n,
            value
        ),
        PO_CB_SYSTEM_STATE_LOCK => klog!(
            Info,
            "PowerState #%Iu: system state lock, value %Iu",
            n,
            value
        ),
        PO_CB_LID_SWITCH_STATE => klog!(Info, "PowerState #%Iu: lid switch, open = %Iu", n, value),
        PO_CB_SYSTEM_POWER_POLICY => klog!(Info, "PowerState #%Iu: system power policy changed", n),
        PO_CB_PROCESSOR_POWER_POLICY => {
            klog!(Info, "PowerState #%Iu: processor power policy changed", n);
        }
        other => klog!(
            Info,
            "PowerState #%Iu: code %Iu, value %Iu",
            n,
            other,
            value
        ),
    }
}

/// Callback on `\Callback\SetSystemTime`: both arguments are unused by the system.
///
/// IRQL: <= DISPATCH_LEVEL.
unsafe extern "system" fn on_system_time(
    context: *mut c_void,
    _argument1: *mut c_void,
    _argument2: *mut c_void,
) {
    // SAFETY: registered with our context pointer.
    let context = unsafe { context_of(context) };
    let Some(_inside) = context.barrier.enter() else {
        return;
    };
    let n = context.time_calls.fetch_add(1, Relaxed) + 1;
    klog!(Info, "SetSystemTime #%Iu: the system time was changed", n);
}
