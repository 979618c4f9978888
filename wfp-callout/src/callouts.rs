//! The callouts, shared by the KMDF and the WDM builds: everything but how the device object is
//! made and how the unload routine is reached.
//!
//! | callout | layer | filter action | what it does |
//! |---|---|---|---|
//! | connect | `ALE_AUTH_CONNECT_V4` | `FWP_ACTION_CALLOUT_TERMINATING` | counts outbound connection attempts; **blocks TCP to `BlockedPort`** (a `REG_DWORD` under the service's `Parameters` key; unset or 0: nothing is blocked), permits the rest |
//! | flow | `ALE_FLOW_ESTABLISHED_V4` | `FWP_ACTION_CALLOUT_INSPECTION` | associates a small context with every established flow; flowDeleteFn frees it |
//!
//! [`set_up`] registers everything in the documented order and returns the teardown stack; dropping
//! it is the unload sequence.

use core::ffi::c_void;
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use common::barrier::{CallbackBarrier, KernelRundown};
use common::device::DEVICE_OBJECT;
use common::pool::{PoolBox, pool_tag};
use common::sys::{NTSTATUS, STATUS_INSUFFICIENT_RESOURCES, STATUS_SUCCESS, UNICODE_STRING};
use common::teardown::{Tether, Tethered};
use common::wfp::{
    Admission, Callout, Engine, FWP_ACTION_BLOCK, FWP_ACTION_CALLOUT_INSPECTION,
    FWP_ACTION_CALLOUT_TERMINATING, FWP_ACTION_CONTINUE, FWP_ACTION_PERMIT, FWP_EMPTY, FWP_UINT8,
    FWP_UINT16, FWP_UINT32, FWP_VALUE0, FWPM_ACTION0, FWPM_CALLOUT0, FWPM_DISPLAY_DATA0,
    FWPM_FILTER0, FWPM_LAYER_ALE_AUTH_CONNECT_V4, FWPM_LAYER_ALE_FLOW_ESTABLISHED_V4,
    FWPM_SESSION_FLAG_DYNAMIC, FWPM_SESSION0, FWPM_SUBLAYER0, FWPS_CALLOUT_NOTIFY_ADD_FILTER,
    FWPS_CALLOUT_NOTIFY_DELETE_FILTER, FWPS_CALLOUT1, FWPS_CLASSIFY_OUT0,
    FWPS_FILTER_FLAG_CLEAR_ACTION_RIGHT, FWPS_FILTER1, FWPS_INCOMING_METADATA_VALUES0,
    FWPS_INCOMING_VALUES0, FWPS_LAYER_ALE_AUTH_CONNECT_V4, FWPS_LAYER_ALE_FLOW_ESTABLISHED_V4,
    FWPS_METADATA_FIELD_FLOW_HANDLE, FWPS_RIGHT_ACTION_WRITE, GUID, IPPROTO_TCP, KernelFlowTable,
    Refused, field, flow_delete_fn,
};
use common::{klog, unicode};

// ---- keys (generated for this sample; a copy of it must generate its own) ----------------------
/// The sublayer both filters live in.
const SUBLAYER_KEY: GUID = GUID::from_u128(0xb6c2ff98_6f6f_4d87_be65_48990caa5f25);
/// The connect callout (`FWPS_CALLOUT1.calloutKey` and `FWPM_CALLOUT0.calloutKey`).
const CONNECT_CALLOUT_KEY: GUID = GUID::from_u128(0x4d432d1b_8b02_4ad1_9a98_e9d92ae97db7);
/// The flow callout.
const FLOW_CALLOUT_KEY: GUID = GUID::from_u128(0xff742269_efb6_41fe_8c97_e6eacbae502a);

/// Pool tag of the context, as `!poolused` shows it.
const CONTEXT_TAG: u32 = pool_tag(b"WfpC");
/// Pool tag of the flow contexts.
const FLOW_TAG: u32 = pool_tag(b"WfpF");

/// A NUL-terminated UTF-16 string in static storage, as the `FWPM_*` display data wants it.
macro_rules! wide {
    ($text:literal) => {{
        static UNITS: [u16; $text.len() + 1] =
            common::unicode::ascii_to_utf16::<{ $text.len() + 1 }>(concat!($text, "\0"));
        UNITS.as_ptr().cast_mut()
    }};
}

/// The driver's configuration, read once in DriverEntry.
#[derive(Clone, Copy, Debug, Default)]
pub struct Config {
    /// TCP connections to this remote port are blocked; 0: nothing is.
    pub blocked_port: u16,
}

/// Reads `BlockedPort` (REG_DWORD) under the service's `Parameters` key. Off when unset or out of
/// range. PASSIVE_LEVEL.
///
/// # Safety
/// `registry_path` is DriverEntry's registry path.
#[must_use]
pub unsafe fn read_config(registry_path: *const UNICODE_STRING) -> Config {
    // SAFETY: the caller's contract.
    let port =
        unsafe { common::registry::read_parameter_u32(registry_path, unicode!("BlockedPort")) };
    match port {
        Ok(port @ 1..=0xFFFF) => {
            klog!(
                Info,
                "configuration: BlockedPort = %Iu: TCP connections to it are blocked",
                port
            );
            Config {
                blocked_port: u16::try_from(port).unwrap_or(0),
            }
        }
        Ok(0) => {
            klog!(Info, "configuration: BlockedPort = 0: blocking nothing");
            Config::default()
        }
        Ok(other) => {
            klog!(
                Warning,
                "configuration: BlockedPort = %Iu is not a port: blocking nothing",
                other
            );
            Config::default()
        }
        Err(status) => {
            klog!(
                Info,
                "configuration: no BlockedPort (%08Ix): blocking nothing",
                status.cast_unsigned()
            );
            Config::default()
        }
    }
}

/// What one flow's context holds: where the flow goes.
pub struct FlowInfo {
    remote_address: u32,
    remote_port: u16,
    protocol: u8,
}

/// What the callouts share. In non-paged pool; its address is each filter's `rawContext`, which
/// the engine hands to classifyFn as `filter->context`.
pub struct Context {
    /// Every classifyFn runs inside it; it is drained before the context is freed, which is after
    /// both callouts are unregistered.
    barrier: CallbackBarrier<KernelRundown>,
    /// The flow contexts, so that unload can remove those still associated.
    flows: KernelFlowTable<FlowInfo>,
    config: Config,
    connections: AtomicUsize,
    blocked: AtomicUsize,
    without_write_right: AtomicUsize,
    ignored: AtomicUsize,
    flows_established: AtomicUsize,
    flows_refused: AtomicUsize,
}

impl Context {
    fn new(config: Config) -> Self {
        Self {
            barrier: CallbackBarrier::new(KernelRundown::new()),
            flows: KernelFlowTable::new(FLOW_TAG),
            config,
            connections: AtomicUsize::new(0),
            blocked: AtomicUsize::new(0),
            without_write_right: AtomicUsize::new(0),
            ignored: AtomicUsize::new(0),
            flows_established: AtomicUsize::new(0),
            flows_refused: AtomicUsize::new(0),
        }
    }

    /// Logs what the callouts saw (at unload).
    pub fn log_counters(&self) {
        let flows = self.flows.counts();
        klog!(
            Info,
            "unloading: %Iu connection(s) classified: %Iu blocked, %Iu without the write right, %Iu ignored",
            self.connections.load(Relaxed),
            self.blocked.load(Relaxed),
            self.without_write_right.load(Relaxed),
            self.ignored.load(Relaxed)
        );
        klog!(
            Info,
            "unloading: %Iu flow(s) established, %Iu context(s) associated, %Iu deleted, %Iu live, %Iu refused",
            self.flows_established.load(Relaxed),
            flows.associated,
            flows.deleted,
            flows.live,
            self.flows_refused.load(Relaxed)
        );
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        let live = self.flows.counts().live;
        klog!(
            Info,
            "freeing the context: barrier drained, %Iu flow context(s) live",
            live
        );
    }
}

/// Everything [`set_up`] registers, and the device object `D` it was registered with, **fields
/// in teardown order**: Rust drops a struct's fields in declaration order, so dropping the state
/// is the unload sequence ([`set_up`] declares the same guards in the reverse order):
#[allow(dead_code)] // guards, held for what their Drop undoes
pub struct State<D> {
    /// 1. No new flow contexts.
    admission: Admission,
    /// 2. The dynamic session closes, deleting both filters, both callouts' management objects
    ///    and the sublayer: no new classify starts.
    engine: Engine,
    /// 3. `FwpsCalloutUnregisterById0`, in bounded rounds: on `STATUS_DEVICE_BUSY` every remaining
    ///    flow context is removed (`FwpsFlowRemoveContext0`) and unload waits (bounded) for the
    ///    flowDeleteFns; `STATUS_FWP_IN_USE` is retried after a back-off. If it cannot be
    ///    unregistered, it snaps [`TETHER`].
    flow: Callout,
    /// 4. The connect callout, unregistered the same way.
    connect: Callout,
    /// 5. The context: its barrier drains (no classifyFn is inside), then it is freed — or, if a
    ///    callout could not be unregistered, leaked.
    pub context: Tethered<PoolBox<Context>>,
    /// 6. The device object, deleted last, as the documentation orders — or leaked with the
    ///    context (a callout registered with it keeps the image's code in use).
    device: Tethered<D>,
}

/// Snapped by a callout that could not be unregistered: the context and the device are then
/// leaked, never freed under a callout that may still be called.
pub static TETHER: Tether = Tether::new();

/// Registers the callouts with `device_object` and adds the filters that use them; returns the
/// teardown stack with `device` at its bottom. PASSIVE_LEVEL.
///
/// Order (each step a guard in a local; if one fails, `?` returns and the locals are dropped in
/// reverse, which undoes exactly what was done):
/// 1. the context (pool), its barrier and flow table initialised where they will stay;
/// 2. both callouts registered (`FwpsCalloutRegister1`): the documented order is register, then
///    add the management objects that name them;
/// 3. a dynamic session, and in **one transaction** the sublayer, both callouts and both filters:
///    committed together, or aborted and gone together;
/// 4. the flow table opened: only now may flows get contexts.
///
/// # Arguments
/// * `device` - the guard of the device object (deleted last).
/// * `device_object` - the WDM device object the callouts are registered with.
/// * `config` - what [`read_config`] read.
///
/// # Return value
/// The state, or the first failure.
///
/// # Errors
/// The failing step's status.
///
/// # Safety
/// `device_object` is the live device object `device` owns (and deletes when dropped).
pub unsafe fn set_up<D>(
    device: D,
    device_object: *mut DEVICE_OBJECT,
    config: Config,
) -> Result<State<D>, NTSTATUS> {
    // 0. The device: deleted last (a parameter is dropped after every local), or leaked with the
    //    context if a callout registered with it cannot be unregistered.
    let device = Tethered::new(device, &TETHER);
    // 1. The context.
    let context = PoolBox::try_new(Context::new(config), CONTEXT_TAG).map_err(|_| {
        klog!(Error, "context allocation failed");
        STATUS_INSUFFICIENT_RESOURCES
    })?;
    context.barrier.initialize();
    context.flows.initialize();
    let context = Tethered::new(context, &TETHER);

    // 2. The callouts. Rule: whatever their functions reach lives until they are unregistered:
    //    the context and the device are declared before them (later fields of State), and are
    //    leaked if an unregistration fails (TETHER).
    let connect_callout = FWPS_CALLOUT1 {
        calloutKey: CONNECT_CALLOUT_KEY,
        flags: 0,
        classifyFn: classify_connect,
        notifyFn: notify,
        flowDeleteFn: None,
    };
    // SAFETY: see the rule above; the device object is live (its guard is `device`).
    let connect = unsafe { Callout::register(device_object, &connect_callout, &TETHER) }?;
    let flow_callout = FWPS_CALLOUT1 {
        calloutKey: FLOW_CALLOUT_KEY,
        flags: 0,
        classifyFn: classify_flow_established,
        notifyFn: notify,
        flowDeleteFn: Some(flow_delete_fn::<FlowInfo>),
    };
    // SAFETY: as above; the flow table is in the context, which outlives the registration.
    let flow = unsafe {
        Callout::register_with_flows(device_object, &flow_callout, &context.flows, &TETHER)
    }?;

    // 3. The management objects, in one transaction of a dynamic session.
    let session = FWPM_SESSION0 {
        displayData: display(
            wide!("wfp-callout"),
            wide!("wfp-callout sample: dynamic session"),
        ),
        flags: FWPM_SESSION_FLAG_DYNAMIC,
        ..FWPM_SESSION0::default()
    };
    let engine = Engine::open(&session)?;
    let transaction = engine.begin()?;
    transaction.add_sublayer(&FWPM_SUBLAYER0 {
        subLayerKey: SUBLAYER_KEY,
        displayData: display(
            wide!("wfp-callout sublayer"),
            wide!("wfp-callout sample filters"),
        ),
        weight: 0x100,
        ..FWPM_SUBLAYER0::default()
    })?;
    transaction.add_callout(&FWPM_CALLOUT0 {
        calloutKey: CONNECT_CALLOUT_KEY,
        displayData: display(
            wide!("wfp-callout connect"),
            wide!("Counts IPv4 connections; blocks TCP to BlockedPort"),
        ),
        applicableLayer: FWPM_LAYER_ALE_AUTH_CONNECT_V4,
        ..FWPM_CALLOUT0::default()
    })?;
    transaction.add_callout(&FWPM_CALLOUT0 {
        calloutKey: FLOW_CALLOUT_KEY,
        displayData: display(
            wide!("wfp-callout flow"),
            wide!("Associates a context with each established IPv4 flow"),
        ),
        applicableLayer: FWPM_LAYER_ALE_FLOW_ESTABLISHED_V4,
        ..FWPM_CALLOUT0::default()
    })?;
    let raw_context = context.as_context() as u64;
    transaction.add_filter(&filter(
        display(
            wide!("wfp-callout connect"),
            wide!("Every IPv4 connect, to the connect callout"),
        ),
        FWPM_LAYER_ALE_AUTH_CONNECT_V4,
        FWP_ACTION_CALLOUT_TERMINATING,
        CONNECT_CALLOUT_KEY,
        raw_context,
    ))?;
    transaction.add_filter(&filter(
        display(
            wide!("wfp-callout flow"),
            wide!("Every established IPv4 flow, to the flow callout"),
        ),
        FWPM_LAYER_ALE_FLOW_ESTABLISHED_V4,
        FWP_ACTION_CALLOUT_INSPECTION,
        FLOW_CALLOUT_KEY,
        raw_context,
    ))?;
    transaction.commit()?;

    // 4. Flows may get contexts from now on.
    // SAFETY: the table is in the context, a later field of State than the admission.
    let admission = unsafe { context.flows.admit() };
    Ok(State {
        admission,
        engine,
        flow,
        connect,
        context,
        device,
    })
}

fn display(name: *mut u16, description: *mut u16) -> FWPM_DISPLAY_DATA0 {
    FWPM_DISPLAY_DATA0 { name, description }
}

/// A filter with no conditions (every classify of the layer) whose action calls `callout`.
fn filter(
    display_data: FWPM_DISPLAY_DATA0,
    layer: GUID,
    action: u32,
    callout: GUID,
    raw_context: u64,
) -> FWPM_FILTER0 {
    let mut filter = FWPM_FILTER0 {
        displayData: display_data,
        layerKey: layer,
        subLayerKey: SUBLAYER_KEY,
        weight: FWP_VALUE0 {
            r#type: FWP_EMPTY, // the engine picks the weight
            ..FWP_VALUE0::default()
        },
        action: FWPM_ACTION0 {
            r#type: action,
            ..FWPM_ACTION0::default()
        },
        ..FWPM_FILTER0::default()
    };
    filter.action.Anonymous.calloutKey = callout;
    filter.Anonymous.rawContext = raw_context;
    filter
}

// ---- the callout functions ------------------------------------------------------------------

/// The fields both callouts read (the first eight indices are the same at both layers).
struct Fields {
    protocol: u8,
    remote_address: u32,
    remote_port: u16,
}

/// Reads protocol, remote address and remote port if `values` is the expected layer with those
/// fields, of the expected types.
///
/// # Safety
/// `values` is NULL or the engine's `FWPS_INCOMING_VALUES0`, valid during the classify.
unsafe fn fields(values: *const FWPS_INCOMING_VALUES0, layer: u16) -> Result<Fields, (u16, u32)> {
    // SAFETY: the caller's contract.
    let Some(values) = (unsafe { values.as_ref() }) else {
        return Err((0, 0));
    };
    let shape = (values.layerId, values.valueCount);
    if values.layerId != layer
        || (values.valueCount as usize) <= field::IP_REMOTE_PORT
        || values.incomingValue.is_null()
    {
        return Err(shape);
    }
    let value = |index: usize| {
        // SAFETY: `valueCount` entries are valid, and the index is below it.
        let entry = unsafe { values.incomingValue.add(index) };
        // SAFETY: as above: a valid entry, valid during the classify.
        unsafe { &(*entry).value }
    };
    let (protocol, address, port) = (
        value(field::IP_PROTOCOL),
        value(field::IP_REMOTE_ADDRESS),
        value(field::IP_REMOTE_PORT),
    );
    if protocol.r#type != FWP_UINT8 || address.r#type != FWP_UINT32 || port.r#type != FWP_UINT16 {
        return Err(shape);
    }
    // SAFETY: the types say which union member each value holds.
    let protocol = unsafe { protocol.Anonymous.uint8 };
    // SAFETY: as above.
    let remote_address = unsafe { address.Anonymous.uint32 };
    // SAFETY: as above.
    let remote_port = unsafe { port.Anonymous.uint16 };
    Ok(Fields {
        protocol,
        remote_address,
        remote_port,
    })
}

/// What every classifyFn starts from: the engine's classify-out structure, our filter and the
/// driver's context (our filters' `rawContext`). `None` if any is missing: the call is not ours.
///
/// # Safety
/// `classify_out` is NULL or the engine's classify-out structure, and `filter` NULL or the engine's
/// filter, whose `context` is 0 or our context; both valid for the call.
unsafe fn classify_args<'a>(
    filter: *const FWPS_FILTER1,
    classify_out: *mut FWPS_CLASSIFY_OUT0,
) -> Option<(&'a mut FWPS_CLASSIFY_OUT0, &'a FWPS_FILTER1, &'a Context)> {
    // SAFETY: the caller's contract.
    let out = unsafe { classify_out.as_mut() }?;
    // SAFETY: the caller's contract.
    let filter = unsafe { filter.as_ref() }?;
    // SAFETY: our filters' rawContext is the context, which outlives every classify (barrier).
    let context = unsafe { (filter.context as *const Context).as_ref() }?;
    Some((out, filter, context))
}

/// Permits, and makes the permit final if the filter says so (FWPS_FILTER_FLAG_CLEAR_ACTION_RIGHT).
fn permit(out: &mut FWPS_CLASSIFY_OUT0, filter: &FWPS_FILTER1) {
    out.actionType = FWP_ACTION_PERMIT;
    if u32::from(filter.flags) & FWPS_FILTER_FLAG_CLEAR_ACTION_RIGHT != 0 {
        out.rights &= !FWPS_RIGHT_ACTION_WRITE;
    }
}

/// classifyFn of the connect callout (`ALE_AUTH_CONNECT_V4`). IRQL <= DISPATCH_LEVEL: nothing
/// pageable, nothing that waits.
///
/// # Arguments
/// * `in_fixed_values` - the layer and its fields (protocol, remote address and port).
/// * `filter` - our filter; its `context` is the driver's context.
/// * `classify_out` - the verdict: written only with `FWPS_RIGHT_ACTION_WRITE`.
///
/// The other arguments are unused.
unsafe extern "system" fn classify_connect(
    in_fixed_values: *const FWPS_INCOMING_VALUES0,
    _in_meta_values: *const FWPS_INCOMING_METADATA_VALUES0,
    _layer_data: *mut c_void,
    _classify_context: *const c_void,
    filter: *const FWPS_FILTER1,
    _flow_context: u64,
    classify_out: *mut FWPS_CLASSIFY_OUT0,
) {
    // SAFETY: the engine's classify-out structure and filter, valid during the call.
    let Some((out, filter, context)) = (unsafe { classify_args(filter, classify_out) }) else {
        return;
    };
    let Some(_inside) = context.barrier.enter() else {
        return; // unload has begun: touch nothing
    };
    context.connections.fetch_add(1, Relaxed);
    if out.rights & FWPS_RIGHT_ACTION_WRITE == 0 {
        // A filter of higher priority decided (a veto, or a final permit): not ours to change.
        context.without_write_right.fetch_add(1, Relaxed);
        return;
    }
    // SAFETY: the engine's incoming values, valid during the call.
    let fields = match unsafe { fields(in_fixed_values, FWPS_LAYER_ALE_AUTH_CONNECT_V4) } {
        Ok(fields) => fields,
        Err((layer, count)) => {
            context.ignored.fetch_add(1, Relaxed);
            klog!(
                Warning,
                "connect: classify for layer %Iu with %Iu field(s) is not what this callout reads: permitted",
                layer,
                count
            );
            return permit(out, filter);
        }
    };
    let blocked_port = context.config.blocked_port;
    if fields.protocol == IPPROTO_TCP && blocked_port != 0 && fields.remote_port == blocked_port {
        // A block is final: clear the write right so no lower-priority filter overrides it.
        out.actionType = FWP_ACTION_BLOCK;
        out.rights &= !FWPS_RIGHT_ACTION_WRITE;
        let n = context.blocked.fetch_add(1, Relaxed) + 1;
        let a = fields.remote_address;
        klog!(
            Info,
            "connect: blocked TCP to %Iu.%Iu.%Iu.%Iu:%Iu (%Iu blocked)",
            a >> 24,
            (a >> 16) & 0xFF,
            (a >> 8) & 0xFF,
            a & 0xFF,
            fields.remote_port,
            n
        );
        return;
    }
    permit(out, filter);
}

/// classifyFn of the flow callout (`ALE_FLOW_ESTABLISHED_V4`, an inspection callout: it decides
/// nothing). Associates a context with the flow. IRQL <= DISPATCH_LEVEL.
///
/// # Arguments
/// * `in_fixed_values` - the layer and its fields.
/// * `in_meta_values` - the metadata: the flow handle, if `FWPS_METADATA_FIELD_FLOW_HANDLE` is set.
/// * `flow_context` - our context, if this flow has one already (a repeated classify).
/// * `filter` - our filter: its `context` is the driver's context, its `action.calloutId` this
///   callout's run-time id.
/// * `classify_out` - left at `FWP_ACTION_CONTINUE` (when writable).
unsafe extern "system" fn classify_flow_established(
    in_fixed_values: *const FWPS_INCOMING_VALUES0,
    in_meta_values: *const FWPS_INCOMING_METADATA_VALUES0,
    _layer_data: *mut c_void,
    _classify_context: *const c_void,
    filter: *const FWPS_FILTER1,
    flow_context: u64,
    classify_out: *mut FWPS_CLASSIFY_OUT0,
) {
    // SAFETY: the engine's classify-out structure and filter, valid during the call.
    let Some((out, filter, context)) = (unsafe { classify_args(filter, classify_out) }) else {
        return;
    };
    let Some(_inside) = context.barrier.enter() else {
        return;
    };
    if out.rights & FWPS_RIGHT_ACTION_WRITE != 0 {
        out.actionType = FWP_ACTION_CONTINUE;
    }
    context.flows_established.fetch_add(1, Relaxed);
    // SAFETY: the engine's incoming values, valid during the call.
    let fields = match unsafe { fields(in_fixed_values, FWPS_LAYER_ALE_FLOW_ESTABLISHED_V4) } {
        Ok(fields) => fields,
        Err((layer, count)) => {
            context.flows_refused.fetch_add(1, Relaxed);
            klog!(
                Warning,
                "flow: classify for layer %Iu with %Iu field(s) is not what this callout reads: no context",
                layer,
                count
            );
            return;
        }
    };
    // SAFETY: the engine's metadata, valid during the call.
    let meta = unsafe { in_meta_values.as_ref() };
    let present = meta.map_or(0, |m| m.currentMetadataValues);
    let flow_id = match meta {
        Some(m) if present & FWPS_METADATA_FIELD_FLOW_HANDLE != 0 && m.flowHandle != 0 => {
            m.flowHandle
        }
        _ => {
            context.flows_refused.fetch_add(1, Relaxed);
            klog!(
                Warning,
                "flow: no flow handle (metadata fields %Ix): no context",
                present
            );
            return;
        }
    };
    // SAFETY: the engine passes a non-zero flowContext only while that context of ours is
    // associated with this flow at this layer.
    if let Some(known) = unsafe { KernelFlowTable::<FlowInfo>::data(flow_context) } {
        let a = known.remote_address;
        klog!(
            Info,
            "flow %Ix: classified again; it has its context (protocol %Iu to %Iu.%Iu.%Iu.%Iu:%Iu)",
            flow_id,
            known.protocol,
            a >> 24,
            (a >> 16) & 0xFF,
            (a >> 8) & 0xFF,
            a & 0xFF,
            known.remote_port
        );
        return;
    }
    let info = FlowInfo {
        remote_address: fields.remote_address,
        remote_port: fields.remote_port,
        protocol: fields.protocol,
    };
    let callout_id = filter.action.calloutId;
    match context.flows.associate(
        flow_id,
        FWPS_LAYER_ALE_FLOW_ESTABLISHED_V4,
        callout_id,
        info,
    ) {
        Ok(()) | Err(Refused::Closed) => {}
        Err(refused) => {
            context.flows_refused.fetch_add(1, Relaxed);
            let status = match refused {
                Refused::Failed(status) => status,
                _ => STATUS_INSUFFICIENT_RESOURCES,
            };
            klog!(
                Warning,
                "flow %Ix: no context (%08Ix)",
                flow_id,
                status.cast_unsigned()
            );
        }
    }
}

/// notifyFn of both callouts: logs filters being added and deleted; vetoes nothing.
/// IRQL <= DISPATCH_LEVEL.
///
/// # Return value
/// `STATUS_SUCCESS` (an error on ADD_FILTER would refuse the filter).
unsafe extern "system" fn notify(
    notify_type: i32,
    _filter_key: *const GUID,
    filter: *mut FWPS_FILTER1,
) -> NTSTATUS {
    // SAFETY: the engine's filter, valid during the call.
    let id = unsafe { filter.as_ref() }.map_or(0, |f| f.filterId);
    match notify_type {
        FWPS_CALLOUT_NOTIFY_ADD_FILTER => klog!(Info, "notify: filter %Iu added", id),
        FWPS_CALLOUT_NOTIFY_DELETE_FILTER => klog!(Info, "notify: filter %Iu deleted", id),
        _ => {}
    }
    STATUS_SUCCESS
}
