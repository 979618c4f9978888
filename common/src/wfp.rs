//! Windows Filtering Platform callouts: registration, flow contexts, and the unload drain.
//!
//! **The declarations.** windows-sys has no `Fwps*` routines or `FWPS_*` structures at all, and
//! links its kernel `Fwpm*` routines to the user-mode `fwpuclnt.dll` (`docs/notes/wfp.md` §1). So
//! the routines a callout driver uses are declared here against **`fwpkclnt.sys`** with
//! `raw-dylib`, with the run-time structures (`FWPS_CALLOUT1`, `FWPS_INCOMING_VALUES0`,
//! `FWPS_FILTER1`, `FWPS_CLASSIFY_OUT0`, ...) whose x64 layouts the host tests check. The
//! management structures (`FWPM_*`) and the layer and condition GUIDs are windows-sys' own, which
//! are right.
//!
//! **Registration version.** [`Callout`] registers with `FwpsCalloutRegister1` (Windows 7 and
//! later): its classifyFn receives the classify context, its `FWPS_CALLOUT1` has the same layout as
//! every later version, and it is the one version the emulated kernel's own handler implements.
//!
//! **The guards**, each undoing one thing when dropped:
//!
//! | guard | made by | undone by |
//! |---|---|---|
//! | [`Engine`] | `FwpmEngineOpen0` with a **dynamic** session | `FwpmEngineClose0`: deletes every filter, callout and sublayer added in the session |
//! | [`Transaction`] | `FwpmTransactionBegin0` | `FwpmTransactionAbort0` unless committed |
//! | [`Callout`] | `FwpsCalloutRegister1` | `FwpsCalloutUnregisterById0`, **draining flow contexts** |
//! | [`Admission`] | opening a [`FlowTable`] to new contexts | closing it: no new flow contexts |
//!
//! **The unload drain** ([`unregister_draining`]), which the documentation asks of every callout
//! driver and which is why WFP cannot be a plain "unregister in Drop": `FwpsCalloutUnregisterById0`
//! returns **`STATUS_DEVICE_BUSY`** while any flow still carries a context of the callout. The
//! driver must then remove each remaining context with `FwpsFlowRemoveContext0` — which calls
//! flowDeleteFn before it returns (`STATUS_SUCCESS`) or, when a classify is in progress on that
//! flow, later (`STATUS_PENDING`) — wait until every flowDeleteFn has run, and unregister again. It
//! must not return from its unload routine before every callout is unregistered.
//!
//! **Flow contexts** live in a [`FlowTable`]: each is a small pool block linked into a spin-locked
//! list, so unload can find every flow that still has one (WFP cannot enumerate them for the
//! driver). flowDeleteFn is the only place a context is freed.
//!
//! The logic (table, drain) is generic over [`FlowPlatform`] and unit-tested on the host against a
//! model of the filter engine; the layouts and constants compile on every target.

#![allow(non_camel_case_types, non_snake_case, clippy::upper_case_acronyms)]

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::mem::{align_of, size_of};
use core::ptr::null_mut;

pub use windows_sys::Win32::NetworkManagement::WindowsFilteringPlatform::{
    FWP_ACTION_BLOCK, FWP_ACTION_CALLOUT_INSPECTION, FWP_ACTION_CALLOUT_TERMINATING,
    FWP_ACTION_CONTINUE, FWP_ACTION_PERMIT, FWP_BYTE_BLOB, FWP_EMPTY, FWP_UINT8, FWP_UINT16,
    FWP_UINT32, FWP_VALUE0, FWPM_ACTION0, FWPM_CALLOUT0, FWPM_DISPLAY_DATA0, FWPM_FILTER0,
    FWPM_LAYER_ALE_AUTH_CONNECT_V4, FWPM_LAYER_ALE_FLOW_ESTABLISHED_V4, FWPM_SESSION_FLAG_DYNAMIC,
    FWPM_SESSION0, FWPM_SUBLAYER0, FWPS_FILTER_FLAG_CLEAR_ACTION_RIGHT,
    FWPS_METADATA_FIELD_FLOW_HANDLE, FWPS_RIGHT_ACTION_WRITE,
};
pub use windows_sys::core::GUID;

use crate::sync::{RawEvent, RawSpinLock};
use crate::sys::NTSTATUS;

// ---- status values (ntstatus.h; docs/notes/wfp.md §2) ----------------------------------------
/// `STATUS_DEVICE_BUSY` (a warning: neither success nor error): a flow still carries a context of
/// the callout being unregistered.
pub const STATUS_DEVICE_BUSY: NTSTATUS = 0x8000_0011_u32.cast_signed();
/// `STATUS_PENDING`: FwpsFlowRemoveContext0 will call flowDeleteFn later (a classify is in progress).
pub const STATUS_PENDING: NTSTATUS = 0x0000_0103;
/// `STATUS_OBJECT_NAME_EXISTS` (informational, so `NT_SUCCESS` is true): a context is already
/// associated with the flow. Compare associations with `STATUS_SUCCESS`, not `nt_success`.
pub const STATUS_OBJECT_NAME_EXISTS: NTSTATUS = 0x4000_0000;
/// `STATUS_FWP_CALLOUT_NOT_FOUND`: no callout with that id is registered.
pub const STATUS_FWP_CALLOUT_NOT_FOUND: NTSTATUS = 0xC022_0001_u32.cast_signed();
/// `STATUS_FWP_IN_USE`: FwpsCalloutUnregisterById0's page: "a register or unregister of the
/// callout is in progress on another thread" — a passing condition, retried with back-off.
pub const STATUS_FWP_IN_USE: NTSTATUS = 0xC022_000A_u32.cast_signed();
/// `STATUS_FWP_ALREADY_EXISTS`: an object with that key exists.
pub const STATUS_FWP_ALREADY_EXISTS: NTSTATUS = 0xC022_0009_u32.cast_signed();
/// `STATUS_FWP_NO_TXN_IN_PROGRESS`: commit or abort without a transaction.
pub const STATUS_FWP_NO_TXN_IN_PROGRESS: NTSTATUS = 0xC022_000D_u32.cast_signed();

// ---- run-time layer ids and field indices (fwpsk.h; docs/notes/wfp.md §3) ---------------------
/// `FWPS_LAYER_ALE_AUTH_CONNECT_V4`.
pub const FWPS_LAYER_ALE_AUTH_CONNECT_V4: u16 = 48;
/// `FWPS_LAYER_ALE_AUTH_CONNECT_V6`.
pub const FWPS_LAYER_ALE_AUTH_CONNECT_V6: u16 = 50;
/// `FWPS_LAYER_ALE_FLOW_ESTABLISHED_V4`.
pub const FWPS_LAYER_ALE_FLOW_ESTABLISHED_V4: u16 = 52;
/// `FWPS_LAYER_ALE_FLOW_ESTABLISHED_V6`.
pub const FWPS_LAYER_ALE_FLOW_ESTABLISHED_V6: u16 = 54;

/// Field indices shared by `ALE_AUTH_CONNECT_V4/V6` and `ALE_FLOW_ESTABLISHED_V4/V6` (0–7).
pub mod field {
    /// `..._IP_LOCAL_ADDRESS` (FWP_UINT32, host byte order, for V4).
    pub const IP_LOCAL_ADDRESS: usize = 2;
    /// `..._IP_LOCAL_PORT` (FWP_UINT16).
    pub const IP_LOCAL_PORT: usize = 4;
    /// `..._IP_PROTOCOL` (FWP_UINT8).
    pub const IP_PROTOCOL: usize = 5;
    /// `..._IP_REMOTE_ADDRESS` (FWP_UINT32, host byte order, for V4).
    pub const IP_REMOTE_ADDRESS: usize = 6;
    /// `..._IP_REMOTE_PORT` (FWP_UINT16).
    pub const IP_REMOTE_PORT: usize = 7;
}

/// `IPPROTO_TCP`.
pub const IPPROTO_TCP: u8 = 6;
/// `IPPROTO_UDP`.
pub const IPPROTO_UDP: u8 = 17;
/// `RPC_C_AUTHN_WINNT`: the authentication service the samples open the engine with.
pub const RPC_C_AUTHN_WINNT: u32 = 10;
/// `FWPS_CALLOUT_NOTIFY_ADD_FILTER`.
pub const FWPS_CALLOUT_NOTIFY_ADD_FILTER: i32 = 0;
/// `FWPS_CALLOUT_NOTIFY_DELETE_FILTER`.
pub const FWPS_CALLOUT_NOTIFY_DELETE_FILTER: i32 = 1;

// ---- run-time structures (fwpsk.h / fwpstypes.h; x64 layouts checked by the tests) ------------
/// `FWPS_INCOMING_VALUE0`: one field of the classify, indexed by `FWPS_FIELD_*`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FWPS_INCOMING_VALUE0 {
    /// The value; `value.r#type` says which union member is set.
    pub value: FWP_VALUE0,
}

/// `FWPS_INCOMING_VALUES0`: the layer and its fields.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FWPS_INCOMING_VALUES0 {
    /// The run-time layer id (`FWPS_LAYER_*`).
    pub layerId: u16,
    /// How many entries `incomingValue` has.
    pub valueCount: u32,
    /// The fields, indexed by `FWPS_FIELD_*`.
    pub incomingValue: *const FWPS_INCOMING_VALUE0,
}

/// `FWPS_DISCARD_METADATA0`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FWPS_DISCARD_METADATA0 {
    /// `FWPS_DISCARD_MODULE0`.
    pub discardModule: i32,
    /// The reason.
    pub discardReason: u32,
    /// The filter that discarded.
    pub filterId: u64,
}

/// The head of `FWPS_INCOMING_METADATA_VALUES0`, up to `processId`.
///
/// The structure is larger and its tail differs between Windows versions; a callout only reads it
/// through the pointer the engine passes, so declaring the stable head is enough (never build or
/// copy one). A field may be read only if its `FWPS_METADATA_FIELD_*` bit is set in
/// `currentMetadataValues`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FWPS_INCOMING_METADATA_VALUES0 {
    /// `FWPS_METADATA_FIELD_*` bits of the fields present.
    pub currentMetadataValues: u32,
    /// `FWPS_INCOMING_FLAG_*`.
    pub flags: u32,
    /// Reserved.
    pub reserved: u64,
    /// Present with `FWPS_METADATA_FIELD_DISCARD_REASON`.
    pub discardMetadata: FWPS_DISCARD_METADATA0,
    /// Present with `FWPS_METADATA_FIELD_FLOW_HANDLE`: the flow id for `FwpsFlow*Context0`.
    pub flowHandle: u64,
    /// Present with `FWPS_METADATA_FIELD_IP_HEADER_SIZE`.
    pub ipHeaderSize: u32,
    /// Present with `FWPS_METADATA_FIELD_TRANSPORT_HEADER_SIZE`.
    pub transportHeaderSize: u32,
    /// Present with `FWPS_METADATA_FIELD_PROCESS_PATH`.
    pub processPath: *const FWP_BYTE_BLOB,
    /// Present with `FWPS_METADATA_FIELD_TOKEN`.
    pub token: u64,
    /// Present with `FWPS_METADATA_FIELD_PROCESS_ID`.
    pub processId: u64,
}

/// `FWPS_ACTION0`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FWPS_ACTION0 {
    /// `FWP_ACTION_*`.
    pub r#type: u32,
    /// For a callout action: the run-time id of the callout being called.
    pub calloutId: u32,
}

/// `FWPS_FILTER1` (the same layout as versions 0, 2 and 3): the filter that matched.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FWPS_FILTER1 {
    /// The filter's run-time id.
    pub filterId: u64,
    /// Its weight.
    pub weight: FWP_VALUE0,
    /// Its sublayer's weight.
    pub subLayerWeight: u16,
    /// `FWPS_FILTER_FLAG_*`.
    pub flags: u16,
    /// Entries of `filterCondition`.
    pub numFilterConditions: u32,
    /// `FWPS_FILTER_CONDITION0*`.
    pub filterCondition: *const c_void,
    /// The action; `calloutId` is the id of the callout this classifyFn belongs to.
    pub action: FWPS_ACTION0,
    /// `FWPM_FILTER0.rawContext` (or what notifyFn stored): how a classifyFn finds its driver's
    /// context without a global.
    pub context: u64,
    /// `FWPM_PROVIDER_CONTEXT1*`.
    pub providerContext: *const c_void,
}

/// `FWPS_CLASSIFY_OUT0`: the verdict the callout writes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FWPS_CLASSIFY_OUT0 {
    /// `FWP_ACTION_*`; writable only with `FWPS_RIGHT_ACTION_WRITE`.
    pub actionType: u32,
    /// Reserved.
    pub outContext: u64,
    /// Reserved.
    pub filterId: u64,
    /// `FWPS_RIGHT_ACTION_WRITE`: the callout may set the action.
    pub rights: u32,
    /// `FWPS_CLASSIFY_OUT_FLAG_*`.
    pub flags: u32,
    /// Reserved.
    pub reserved: u32,
}

/// `classifyFn1`: `(inFixedValues, inMetaValues, layerData, classifyContext, filter, flowContext,
/// classifyOut)`, at IRQL <= DISPATCH_LEVEL.
pub type ClassifyFn1 = unsafe extern "system" fn(
    in_fixed_values: *const FWPS_INCOMING_VALUES0,
    in_meta_values: *const FWPS_INCOMING_METADATA_VALUES0,
    layer_data: *mut c_void,
    classify_context: *const c_void,
    filter: *const FWPS_FILTER1,
    flow_context: u64,
    classify_out: *mut FWPS_CLASSIFY_OUT0,
);
/// `notifyFn1`: `(notifyType, filterKey, filter) -> NTSTATUS`; an error on ADD_FILTER vetoes the add.
pub type NotifyFn1 = unsafe extern "system" fn(
    notify_type: i32,
    filter_key: *const GUID,
    filter: *mut FWPS_FILTER1,
) -> NTSTATUS;
/// `flowDeleteFn`: `(layerId, calloutId, flowContext)`, at IRQL <= DISPATCH_LEVEL, when a flow with
/// a context of the callout ends or the context is removed.
pub type FlowDeleteFn =
    unsafe extern "system" fn(layer_id: u16, callout_id: u32, flow_context: u64);

/// `FWPS_CALLOUT1` (48 bytes on x64).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FWPS_CALLOUT1 {
    /// The callout's key, the same GUID as its `FWPM_CALLOUT0.calloutKey`.
    pub calloutKey: GUID,
    /// `FWP_CALLOUT_FLAG_*`.
    pub flags: u32,
    /// Called for every classify that reaches a filter naming this callout.
    pub classifyFn: ClassifyFn1,
    /// Called when filters naming this callout are added and deleted.
    pub notifyFn: NotifyFn1,
    /// Needed to associate flow contexts; NULL otherwise.
    pub flowDeleteFn: Option<FlowDeleteFn>,
}

/// Whether two GUIDs are equal (windows-sys' `GUID` does not implement `PartialEq`).
#[must_use]
pub const fn guid_eq(a: &GUID, b: &GUID) -> bool {
    a.data1 == b.data1
        && a.data2 == b.data2
        && a.data3 == b.data3
        && u64::from_ne_bytes(a.data4) == u64::from_ne_bytes(b.data4)
}

// ---- the platform the flow table and the drain run on ---------------------------------------

/// What the flow table and the unload drain need from the kernel: a spin lock, an event, pool, a
/// delay, and the three filter-engine routines. The kernel implementation is [`Kernel`]; the host tests use a
/// model of the engine.
///
/// # Safety
/// The routines must behave as documented (`docs/notes/wfp.md` §1, §6): `remove_context` calls the
/// callout's flowDeleteFn before returning `STATUS_SUCCESS`, or later after `STATUS_PENDING`;
/// `unregister_callout` returns `STATUS_DEVICE_BUSY` while a context remains associated.
pub unsafe trait FlowPlatform: 'static {
    /// The lock of the table.
    type Lock: RawSpinLock + Default;
    /// The event unload waits on.
    type Event: RawEvent + Default;
    /// Non-paged memory for one entry; NULL on failure. IRQL <= DISPATCH_LEVEL.
    fn allocate(bytes: usize, tag: u32) -> *mut u8;
    /// Returns a block from `allocate`.
    ///
    /// # Safety
    /// `block` came from `allocate` with `tag` and is freed once.
    unsafe fn free(block: *mut u8, tag: u32);
    /// `FwpsFlowAssociateContext0`.
    fn associate_context(flow_id: u64, layer_id: u16, callout_id: u32, context: u64) -> NTSTATUS;
    /// `FwpsFlowRemoveContext0`.
    fn remove_context(flow_id: u64, layer_id: u16, callout_id: u32) -> NTSTATUS;
    /// `FwpsCalloutUnregisterById0`.
    fn unregister_callout(callout_id: u32) -> NTSTATUS;
    /// `KeDelayExecutionThread` for `milliseconds`: the back-off between unregistration rounds.
    /// PASSIVE_LEVEL.
    fn delay(milliseconds: u32);
}

// ---- flow contexts ---------------------------------------------------------------------------

/// One flow's context: the list links, the ids `FwpsFlowRemoveContext0` needs, and the driver's data.
/// Its address is the `flowContext` WFP hands back to classifyFn and flowDeleteFn.
#[repr(C)]
struct FlowEntry<T, P: FlowPlatform> {
    next: *mut FlowEntry<T, P>,
    prev: *mut FlowEntry<T, P>,
    /// In the table's list (linked before the association; flowDeleteFn unlinks it).
    linked: bool,
    /// `FwpsFlowAssociateContext0` returned `STATUS_SUCCESS` and [`FlowTable::associate`] has
    /// recorded it. Until then the entry belongs to `associate`.
    associated: bool,
    /// flowDeleteFn ran before `associate` recorded the association (the flow ended right after
    /// `FwpsFlowAssociateContext0` returned): `associate` finishes the deletion.
    deleted_early: bool,
    /// Unload asked `FwpsFlowRemoveContext0` for it and the answer was SUCCESS or PENDING: its
    /// flowDeleteFn has run or will; never ask again.
    removal_requested: bool,
    /// The drain round that last tried to remove it (each round tries an entry once).
    removal_round: u32,
    table: *const FlowTable<T, P>,
    flow_id: u64,
    layer_id: u16,
    callout_id: u32,
    data: T,
}

struct TableState<T, P: FlowPlatform> {
    head: *mut FlowEntry<T, P>,
    /// Entries being associated or associated whose flowDeleteFn has not run yet.
    live: usize,
    admitting: bool,
    associated: usize,
    deleted: usize,
}

/// Why [`FlowTable::associate`] did not associate a context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The table is closed: unload has begun (or DriverEntry has not finished).
    Closed,
    /// The pool allocation failed.
    NoMemory,
    /// `FwpsFlowAssociateContext0` did not return `STATUS_SUCCESS` (for instance
    /// `STATUS_OBJECT_NAME_EXISTS`: the flow has a context already).
    Failed(NTSTATUS),
}

/// What [`FlowTable`] counted, for logging.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowCounts {
    /// Contexts associated and not yet deleted.
    pub live: usize,
    /// Contexts ever associated.
    pub associated: usize,
    /// flowDeleteFn calls that freed a context.
    pub deleted: usize,
}

/// What one pass of [`FlowDrain::remove_all`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Removal {
    /// `FwpsFlowRemoveContext0` returned `STATUS_SUCCESS`: flowDeleteFn has run.
    pub removed: usize,
    /// It returned `STATUS_PENDING`: flowDeleteFn runs later.
    pub pending: usize,
    /// It returned anything else (`STATUS_UNSUCCESSFUL`: no context was associated — the flow
    /// ended meanwhile and its flowDeleteFn is running elsewhere — or a status the page does not
    /// list). An entry still in the table is tried again in the next round.
    pub other: usize,
}

/// The contexts a callout associated with flows, so that unload can remove them.
///
/// - classifyFn calls [`associate`](Self::associate) (IRQL <= DISPATCH_LEVEL): the entry is
///   allocated and linked under the lock, then associated **outside** it, as Microsoft's msnmntr
///   sample does (`MonitorCoInsertFlowContext`, then `FwpsFlowAssociateContext`). Whether the
///   engine holds a lock of its own while it calls flowDeleteFn — one that
///   `FwpsFlowAssociateContext0` also takes — is not documented either way; if it does, associating
///   under our lock (which flowDeleteFn takes) is an ABBA deadlock on a multiprocessor, so the
///   stricter reading is taken. A flowDeleteFn that arrives before `associate` has recorded the
///   association marks the entry and leaves the rest to `associate`;
/// - flowDeleteFn calls [`flow_deleted`](Self::flow_deleted): unlinks and frees the entry, the only
///   place one is freed;
/// - unload closes the table ([`Admission`] dropped), and the [`Callout`] guard drains it.
///
/// It must stay at one address from [`initialize`](Self::initialize) until it is empty and closed:
/// keep it in the driver's pool context, which is freed after the callouts are unregistered.
pub struct FlowTable<T, P: FlowPlatform> {
    lock: P::Lock,
    all_deleted: P::Event,
    state: UnsafeCell<TableState<T, P>>,
    tag: u32,
}

// SAFETY: `state` is only touched under `lock`; entries (and their T) may be created on one
// processor and freed on another.
unsafe impl<T: Send, P: FlowPlatform> Sync for FlowTable<T, P> {}
// SAFETY: as above.
unsafe impl<T: Send, P: FlowPlatform> Send for FlowTable<T, P> {}

impl<T, P: FlowPlatform> FlowTable<T, P> {
    /// A closed, empty table whose entries are pool blocks tagged `tag`. Initialise it at its
    /// final address before use.
    #[must_use]
    pub fn new(tag: u32) -> Self {
        const {
            assert!(
                align_of::<FlowEntry<T, P>>() <= 16,
                "pool is 16-byte aligned"
            );
        };
        Self {
            lock: P::Lock::default(),
            all_deleted: P::Event::default(),
            state: UnsafeCell::new(TableState {
                head: null_mut(),
                live: 0,
                admitting: false,
                associated: 0,
                deleted: 0,
            }),
            tag,
        }
    }

    /// Initialises the lock and the event where they will stay. Call once, before the callouts
    /// that use the table are registered.
    pub fn initialize(&self) {
        self.lock.initialize();
        self.all_deleted.initialize();
    }

    /// Runs `f` on the state with the lock held.
    fn locked<R>(&self, f: impl FnOnce(&mut TableState<T, P>) -> R) -> R {
        let token = self.lock.lock();
        // SAFETY: the lock is held, so this is the only reference to the state.
        let result = f(unsafe { &mut *self.state.get() });
        self.lock.unlock(token);
        result
    }

    /// Opens the table to new contexts and returns the guard that closes it again.
    ///
    /// # Safety
    /// The table must outlive the guard (push the guard above the context that holds the table).
    #[must_use = "dropping the guard closes the table"]
    pub unsafe fn admit(&self) -> Admission
    where
        T: 'static,
    {
        self.locked(|s| s.admitting = true);
        Admission(core::ptr::from_ref::<dyn FlowDrain>(self))
    }

    /// Allocates an entry holding `data` and associates it with the flow
    /// (`FwpsFlowAssociateContext0`). IRQL <= DISPATCH_LEVEL.
    ///
    /// # Arguments
    /// * `flow_id` - the flow handle from the classify metadata (`FWPS_METADATA_FIELD_FLOW_HANDLE`).
    /// * `layer_id`, `callout_id` - the layer and callout the context belongs to; unload removes it
    ///   with the same ids, and the callout must have a flowDeleteFn that calls
    ///   [`flow_deleted`](Self::flow_deleted).
    /// * `data` - the driver's per-flow data.
    ///
    /// # Return value
    /// `Ok` once associated; otherwise the reason, with `data` dropped and the entry freed.
    ///
    /// # Errors
    /// [`Refused`].
    pub fn associate(
        &self,
        flow_id: u64,
        layer_id: u16,
        callout_id: u32,
        data: T,
    ) -> Result<(), Refused> {
        let entry = P::allocate(size_of::<FlowEntry<T, P>>(), self.tag).cast::<FlowEntry<T, P>>();
        if entry.is_null() {
            return Err(Refused::NoMemory);
        }
        // SAFETY: a fresh block of the right size and alignment, owned here.
        unsafe {
            entry.write(FlowEntry {
                next: null_mut(),
                prev: null_mut(),
                linked: false,
                associated: false,
                deleted_early: false,
                removal_requested: false,
                removal_round: 0,
                table: self,
                flow_id,
                layer_id,
                callout_id,
                data,
            });
        }
        // 1. Linked and counted under the lock, only while the table admits: from here on unload
        //    waits for this entry (it is live), and a flowDeleteFn finds it.
        let admitted = self.locked(|s| {
            if !s.admitting {
                return false;
            }
            // SAFETY: our entry; the list is consistent under the lock.
            unsafe { link(s, entry) };
            s.live += 1;
            true
        });
        if !admitted {
            // SAFETY: never linked nor associated, so nobody else knows the entry.
            unsafe { Self::free_entry(entry, self.tag) };
            return Err(Refused::Closed);
        }
        // 2. Associated with no lock of ours held.
        let status = P::associate_context(flow_id, layer_id, callout_id, entry as u64);
        // 3. Recorded under the lock. The entry is still ours: flowDeleteFn never frees an entry
        //    that is not marked associated.
        let free = self.locked(|s| {
            // SAFETY: our entry, under the lock.
            let e = unsafe { &mut *entry };
            if status == crate::sys::STATUS_SUCCESS {
                s.associated += 1;
                if !e.deleted_early {
                    e.associated = true;
                    return false;
                }
                // The flow ended between the association and now: flowDeleteFn has run and left
                // the deletion to us.
                s.deleted += 1;
            }
            if e.linked {
                // SAFETY: linked, under the lock.
                unsafe { unlink(s, entry) };
            }
            s.live -= 1;
            if s.live == 0 && !s.admitting {
                self.all_deleted.set();
            }
            true
        });
        if free {
            // SAFETY: unlinked and uncounted; the engine holds no association with it (it failed,
            // or its flowDeleteFn has run).
            unsafe { Self::free_entry(entry, self.tag) };
        }
        if status == crate::sys::STATUS_SUCCESS {
            Ok(())
        } else {
            Err(Refused::Failed(status))
        }
    }

    /// The flowDeleteFn's work: unlinks the entry whose address is `flow_context` (unless unload
    /// already did), counts it, wakes unload when it was the last, and frees it. IRQL <=
    /// DISPATCH_LEVEL. Returns false for a zero context (nothing was associated).
    ///
    /// # Safety
    /// `flow_context` is 0 or the context [`associate`](Self::associate) associated, and WFP calls
    /// flowDeleteFn once per association.
    #[allow(clippy::must_use_candidate)] // flowDeleteFn ignores it
    pub unsafe fn flow_deleted(flow_context: u64) -> bool {
        let entry = flow_context as *mut FlowEntry<T, P>;
        if entry.is_null() {
            return false;
        }
        // SAFETY: a live entry (WFP calls flowDeleteFn once).
        let table = unsafe { (*entry).table };
        // SAFETY: the table outlives every entry until the lock below is released: it must not
        // be touched after that.
        let table = unsafe { &*table };
        let tag = table.tag;
        let ours = table.locked(|s| {
            // SAFETY: our entry, under the lock.
            let e = unsafe { &mut *entry };
            if !e.associated {
                // `associate` has not recorded the association yet (it is between
                // FwpsFlowAssociateContext0 and its lock): it owns the entry and finishes this
                // deletion when it gets the lock.
                e.deleted_early = true;
                return false;
            }
            if e.linked {
                // SAFETY: as above.
                unsafe { unlink(s, entry) };
            }
            s.live -= 1;
            s.deleted += 1;
            if s.live == 0 && !s.admitting {
                // Set under the lock: unload can only see `live == 0` after we release it, and
                // never touches the table's memory before that.
                table.all_deleted.set();
            }
            true
        });
        if ours {
            // SAFETY: unlinked and counted; WFP will not hand it out again. Only the entry and the
            // copied tag are used: unload may already be freeing the table.
            unsafe { Self::free_entry(entry, tag) };
        }
        true
    }

    /// The driver's data of a context, for a classifyFn called with `flow_context`.
    ///
    /// # Safety
    /// `flow_context` is a context this table associated whose flowDeleteFn has not run: WFP
    /// passes it to classifyFn only while it is associated.
    #[must_use]
    pub unsafe fn data<'a>(flow_context: u64) -> Option<&'a T> {
        let entry = flow_context as *const FlowEntry<T, P>;
        // SAFETY: per the contract, a live entry.
        (!entry.is_null()).then(|| unsafe { &(*entry).data })
    }

    /// The counters.
    #[must_use]
    pub fn counts(&self) -> FlowCounts {
        self.locked(|s| FlowCounts {
            live: s.live,
            associated: s.associated,
            deleted: s.deleted,
        })
    }

    unsafe fn free_entry(entry: *mut FlowEntry<T, P>, tag: u32) {
        // SAFETY: an initialised entry owned by the caller; its data is dropped once, then the
        // block returned.
        unsafe { entry.drop_in_place() };
        // SAFETY: the block came from P::allocate with this tag and is returned once.
        unsafe { P::free(entry.cast::<u8>(), tag) };
    }
}

/// Links `entry` at the head. Lock held.
unsafe fn link<T, P: FlowPlatform>(s: &mut TableState<T, P>, entry: *mut FlowEntry<T, P>) {
    // SAFETY: `entry` is a valid entry, not linked; the caller holds the lock.
    let e = unsafe { &mut *entry };
    e.next = s.head;
    e.prev = null_mut();
    e.linked = true;
    // SAFETY: the head, if any, is a valid linked entry.
    if let Some(head) = unsafe { s.head.as_mut() } {
        head.prev = entry;
    }
    s.head = entry;
}

/// Whether `entry` is in the list. Lock held.
fn is_linked<T, P: FlowPlatform>(s: &TableState<T, P>, entry: *mut FlowEntry<T, P>) -> bool {
    let mut at = s.head;
    while !at.is_null() {
        if at == entry {
            return true;
        }
        // SAFETY: a linked entry, under the lock.
        at = unsafe { (*at).next };
    }
    false
}

/// Unlinks `entry`. Lock held.
unsafe fn unlink<T, P: FlowPlatform>(s: &mut TableState<T, P>, entry: *mut FlowEntry<T, P>) {
    // SAFETY: a linked entry; the caller holds the lock.
    let e = unsafe { &mut *entry };
    let (next, prev) = (e.next, e.prev);
    e.linked = false;
    e.next = null_mut();
    e.prev = null_mut();
    // SAFETY: its neighbours are valid linked entries.
    match unsafe { prev.as_mut() } {
        None => s.head = next,
        Some(prev) => prev.next = next,
    }
    // SAFETY: as above.
    if let Some(next) = unsafe { next.as_mut() } {
        next.prev = prev;
    }
}

/// What the unload drain does to a flow table, independent of the context type.
pub trait FlowDrain {
    /// No new contexts from now on. Idempotent.
    fn stop_admitting(&self);
    /// Asks `FwpsFlowRemoveContext0` to remove every associated context still in the table that
    /// this `round` has not tried yet and whose removal is not already under way, one at a time,
    /// never holding the lock across the call (flowDeleteFn may run inside it and takes the lock).
    fn remove_all(&self, round: u32) -> Removal;
    /// Waits at most `milliseconds` until every flowDeleteFn has run (those pending included);
    /// returns whether the table is empty. PASSIVE_LEVEL.
    fn wait_until_empty(&self, milliseconds: u32) -> bool;
    /// Contexts associated (or being associated) and not yet deleted.
    fn live(&self) -> usize;
}

impl<T, P: FlowPlatform> FlowDrain for FlowTable<T, P> {
    fn stop_admitting(&self) {
        self.locked(|s| {
            s.admitting = false;
            if s.live == 0 {
                self.all_deleted.set();
            }
        });
    }

    fn remove_all(&self, round: u32) -> Removal {
        let mut removal = Removal::default();
        loop {
            // Pick one entry under the lock, mark it, copy its ids, release the lock. It stays
            // linked: its flowDeleteFn (inside the call, later after PENDING, or a flow ending on
            // another processor) unlinks and frees it, so it may be gone as soon as the lock is
            // released and is only touched again under the lock, after checking it is still
            // linked (no new entry can take its address: the table admits nothing now).
            let next = self.locked(|s| {
                let mut entry = s.head;
                // SAFETY: linked entries, under the lock.
                while let Some(e) = unsafe { entry.as_mut() } {
                    if e.associated && !e.removal_requested && e.removal_round != round {
                        e.removal_round = round;
                        e.removal_requested = true;
                        return Some((entry, e.flow_id, e.layer_id, e.callout_id));
                    }
                    entry = e.next;
                }
                None
            });
            let Some((entry, flow_id, layer_id, callout_id)) = next else {
                return removal;
            };
            match P::remove_context(flow_id, layer_id, callout_id) {
                crate::sys::STATUS_SUCCESS => removal.removed += 1,
                STATUS_PENDING => removal.pending += 1,
                status => {
                    removal.other += 1;
                    crate::klog!(
                        Warning,
                        "wfp: FwpsFlowRemoveContext0(flow %Ix) = %08Ix: tried again next round if the context is still associated",
                        flow_id,
                        status.cast_unsigned()
                    );
                    self.locked(|s| {
                        if is_linked(s, entry) {
                            // SAFETY: still linked, so its flowDeleteFn has not run: alive.
                            unsafe { (*entry).removal_requested = false };
                        }
                    });
                }
            }
        }
    }

    fn wait_until_empty(&self, milliseconds: u32) -> bool {
        // The event is set under the lock by whoever makes `live` 0 once the table is closed, so
        // the re-check under the lock can never miss it; `live` never grows once closed.
        self.live() == 0 || (self.all_deleted.wait_for(milliseconds) && self.live() == 0)
    }

    fn live(&self) -> usize {
        self.locked(|s| s.live)
    }
}

impl<T, P: FlowPlatform> Drop for FlowTable<T, P> {
    fn drop(&mut self) {
        // Every context is gone by now (the callouts were unregistered, which WFP refuses while one
        // remains). Should an entry remain, it is leaked rather than freed under a live flow.
        debug_assert!(
            self.state.get_mut().live == 0,
            "flow table dropped with live contexts"
        );
    }
}

/// A [`FlowTable`] open to new contexts; dropping it closes the table (the first step of unload).
pub struct Admission(*const dyn FlowDrain);

impl Drop for Admission {
    fn drop(&mut self) {
        // SAFETY: `admit`'s contract: the table outlives this guard.
        let table = unsafe { &*self.0 };
        table.stop_admitting();
        crate::klog!(
            Info,
            "wfp: flow table closed: no new flow contexts (%Iu live)",
            table.live()
        );
    }
}

// SAFETY: the table is Sync; the guard only calls stop_admitting through it.
unsafe impl Send for Admission {}
// SAFETY: as above.
unsafe impl Sync for Admission {}

/// How one callout's unregistration went, for the log and the tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unregistration {
    /// The last status of `FwpsCalloutUnregisterById0` (`STATUS_SUCCESS` when it worked).
    pub status: NTSTATUS,
    /// How many times it returned `STATUS_DEVICE_BUSY`.
    pub busy: usize,
    /// How many times it returned `STATUS_FWP_IN_USE`.
    pub in_use: usize,
    /// Rounds (calls of `FwpsCalloutUnregisterById0`).
    pub rounds: u32,
    /// Contexts removed, over every round.
    pub removal: Removal,
}

impl Unregistration {
    /// Whether the callout is unregistered. Anything else means it may still be called, and
    /// whatever it reaches must be leaked.
    #[must_use]
    pub fn unregistered(&self) -> bool {
        self.status == crate::sys::STATUS_SUCCESS
    }
}

/// The most `FwpsCalloutUnregisterById0` calls [`unregister_draining`] makes before it gives up.
pub const UNREGISTER_ROUNDS: u32 = 12;
/// How long one round waits for the flowDeleteFns it asked for, in milliseconds.
pub const FLOW_DELETE_WAIT_MS: u32 = 1_000;

/// The back-off before round `round + 1`: 10 ms, doubling, at most 1 s (about 6 s over every
/// round).
#[must_use]
pub const fn backoff_ms(round: u32) -> u32 {
    let ms = 10u32 << if round < 7 { round } else { 7 };
    if ms > 1_000 { 1_000 } else { ms }
}

/// Unregisters callout `callout_id`, in bounded rounds. PASSIVE_LEVEL.
///
/// Each round calls `FwpsCalloutUnregisterById0` and acts on its answer, as its page documents it:
/// - `STATUS_SUCCESS`: done.
/// - `STATUS_DEVICE_BUSY` (flows still carry contexts of the callout): close the table, ask
///   `FwpsFlowRemoveContext0` to remove every remaining context, wait (at most
///   [`FLOW_DELETE_WAIT_MS`]) for their flowDeleteFns, and go round again — at once if the table
///   is empty, after a back-off otherwise.
/// - `STATUS_FWP_IN_USE` (a register or unregister is in progress on another thread: passing):
///   back off ([`backoff_ms`], `KeDelayExecutionThread`) and go round again.
/// - anything else (`STATUS_FWP_CALLOUT_NOT_FOUND`, a status the page does not list): not
///   retried; the callout is not known to be unregistered.
///
/// After [`UNREGISTER_ROUNDS`] rounds it gives up. Every round is logged. Whenever the result is
/// not `STATUS_SUCCESS` ([`Unregistration::unregistered`] is false) the caller must leak whatever
/// the callout can reach (its context, the flow table, the device object and so the image): a
/// callout that may still be registered may still be called.
///
/// # Arguments
/// * `callout_id` - the run-time id FwpsCalloutRegister returned.
/// * `flows` - where the callout's contexts are; `None` for a callout that never associates any.
#[must_use]
pub fn unregister_draining<P: FlowPlatform>(
    callout_id: u32,
    flows: Option<&dyn FlowDrain>,
) -> Unregistration {
    let mut outcome = Unregistration::default();
    for round in 1..=UNREGISTER_ROUNDS {
        let status = P::unregister_callout(callout_id);
        outcome.status = status;
        outcome.rounds = round;
        let back_off = match status {
            crate::sys::STATUS_SUCCESS => {
                crate::klog!(
                    Info,
                    "wfp: FwpsCalloutUnregisterById0(%Iu) = STATUS_SUCCESS (round %Iu)",
                    callout_id,
                    round
                );
                return outcome;
            }
            STATUS_DEVICE_BUSY => {
                outcome.busy += 1;
                if let Some(flows) = flows {
                    !drain_round(callout_id, flows, round, &mut outcome)
                } else {
                    // Contexts this driver cannot name: nothing it can remove; the engine may
                    // still be finishing something of its own. Back off and ask again.
                    crate::klog!(
                        Error,
                        "wfp: FwpsCalloutUnregisterById0(%Iu) = STATUS_DEVICE_BUSY, but the callout has no flow table (round %Iu)",
                        callout_id,
                        round
                    );
                    true
                }
            }
            STATUS_FWP_IN_USE => {
                outcome.in_use += 1;
                crate::klog!(
                    Warning,
                    "wfp: FwpsCalloutUnregisterById0(%Iu) = STATUS_FWP_IN_USE (round %Iu): a register or unregister is in progress elsewhere; retrying after %Iu ms",
                    callout_id,
                    round,
                    backoff_ms(round)
                );
                true
            }
            other => {
                crate::klog!(
                    Error,
                    "wfp: FwpsCalloutUnregisterById0(%Iu) = %08Ix (round %Iu): not a status to retry; the callout may still be registered",
                    callout_id,
                    other.cast_unsigned(),
                    round
                );
                return outcome;
            }
        };
        if back_off && round < UNREGISTER_ROUNDS {
            P::delay(backoff_ms(round));
        }
    }
    crate::klog!(
        Error,
        "wfp: callout %Iu still not unregistered after %Iu rounds (last status %08Ix): giving up",
        callout_id,
        outcome.rounds,
        outcome.status.cast_unsigned()
    );
    outcome
}

/// One `STATUS_DEVICE_BUSY` round: close the table, remove what is left, wait (bounded). Returns
/// whether the table is empty (the next round may go at once).
fn drain_round(
    callout_id: u32,
    flows: &dyn FlowDrain,
    round: u32,
    outcome: &mut Unregistration,
) -> bool {
    flows.stop_admitting();
    let live = flows.live();
    let pass = flows.remove_all(round);
    crate::klog!(
        Info,
        "wfp: FwpsCalloutUnregisterById0(%Iu) = STATUS_DEVICE_BUSY (round %Iu): %Iu flow context(s) live; FwpsFlowRemoveContext0: %Iu removed, %Iu pending, %Iu other",
        callout_id,
        round,
        live,
        pass.removed,
        pass.pending,
        pass.other
    );
    outcome.removal.removed += pass.removed;
    outcome.removal.pending += pass.pending;
    outcome.removal.other += pass.other;
    let empty = flows.wait_until_empty(FLOW_DELETE_WAIT_MS);
    if empty {
        crate::klog!(
            Info,
            "wfp: every flowDeleteFn has run; unregistering callout %Iu again",
            callout_id
        );
    } else {
        crate::klog!(
            Warning,
            "wfp: %Iu flow context(s) of callout %Iu still live after %Iu ms; retrying after %Iu ms",
            flows.live(),
            callout_id,
            FLOW_DELETE_WAIT_MS,
            backoff_ms(round)
        );
    }
    empty
}

#[cfg(target_os = "windows")]
pub use kernel::*;

#[cfg(target_os = "windows")]
mod kernel {
    use super::{
        FWPM_CALLOUT0, FWPM_FILTER0, FWPM_SESSION0, FWPM_SUBLAYER0, FWPS_CALLOUT1, FlowDrain,
        FlowPlatform, FlowTable, RPC_C_AUTHN_WINNT, Unregistration, unregister_draining,
    };
    use crate::device::DEVICE_OBJECT;
    use crate::klog;
    use crate::sync::{KernelEvent, KernelSpinLock};
    use crate::sys::{
        ExAllocatePoolWithTag, ExFreePoolWithTag, HANDLE, NON_PAGED_POOL_NX, NTSTATUS, nt_success,
    };
    use crate::teardown::Tether;
    use core::ffi::c_void;
    use core::ptr::{NonNull, null, null_mut};

    // The routines themselves, for drivers (and the test fixtures) that need them raw; the guards
    // below are how the samples use them.
    #[link(name = "fwpkclnt.sys", kind = "raw-dylib", modifiers = "+verbatim")]
    unsafe extern "system" {
        /// `FwpmEngineOpen0` (fwpmk.h). PASSIVE_LEVEL; the BFE must be running.
        pub fn FwpmEngineOpen0(
            server_name: *const u16,
            authn_service: u32,
            auth_identity: *const c_void,
            session: *const FWPM_SESSION0,
            engine_handle: *mut HANDLE,
        ) -> NTSTATUS;
        /// `FwpmEngineClose0`. PASSIVE_LEVEL.
        pub fn FwpmEngineClose0(engine_handle: HANDLE) -> NTSTATUS;
        /// `FwpmTransactionBegin0`. PASSIVE_LEVEL.
        pub fn FwpmTransactionBegin0(engine_handle: HANDLE, flags: u32) -> NTSTATUS;
        /// `FwpmTransactionCommit0`. PASSIVE_LEVEL.
        pub fn FwpmTransactionCommit0(engine_handle: HANDLE) -> NTSTATUS;
        /// `FwpmTransactionAbort0`. PASSIVE_LEVEL.
        pub fn FwpmTransactionAbort0(engine_handle: HANDLE) -> NTSTATUS;
        /// `FwpmSubLayerAdd0`. PASSIVE_LEVEL.
        pub fn FwpmSubLayerAdd0(
            engine_handle: HANDLE,
            sub_layer: *const FWPM_SUBLAYER0,
            sd: *const c_void,
        ) -> NTSTATUS;
        /// `FwpmCalloutAdd0`. PASSIVE_LEVEL.
        pub fn FwpmCalloutAdd0(
            engine_handle: HANDLE,
            callout: *const FWPM_CALLOUT0,
            sd: *const c_void,
            id: *mut u32,
        ) -> NTSTATUS;
        /// `FwpmFilterAdd0`. PASSIVE_LEVEL.
        pub fn FwpmFilterAdd0(
            engine_handle: HANDLE,
            filter: *const FWPM_FILTER0,
            sd: *const c_void,
            id: *mut u64,
        ) -> NTSTATUS;
        /// `FwpsCalloutRegister1` (fwpsk.h; Windows 7 and later). PASSIVE_LEVEL.
        pub fn FwpsCalloutRegister1(
            device_object: *mut c_void,
            callout: *const FWPS_CALLOUT1,
            callout_id: *mut u32,
        ) -> NTSTATUS;
        /// `FwpsCalloutUnregisterById0`. PASSIVE_LEVEL.
        pub fn FwpsCalloutUnregisterById0(callout_id: u32) -> NTSTATUS;
        /// `FwpsFlowAssociateContext0`. IRQL <= DISPATCH_LEVEL.
        pub fn FwpsFlowAssociateContext0(
            flow_id: u64,
            layer_id: u16,
            callout_id: u32,
            flow_context: u64,
        ) -> NTSTATUS;
        /// `FwpsFlowRemoveContext0`. IRQL <= DISPATCH_LEVEL.
        pub fn FwpsFlowRemoveContext0(flow_id: u64, layer_id: u16, callout_id: u32) -> NTSTATUS;
    }

    /// The kernel: spin lock, event, non-paged pool, fwpkclnt.sys.
    pub struct Kernel;

    // SAFETY: the kernel's own routines, which behave as documented.
    unsafe impl FlowPlatform for Kernel {
        type Lock = KernelSpinLock;
        type Event = KernelEvent;
        fn allocate(bytes: usize, tag: u32) -> *mut u8 {
            // SAFETY: plain allocation; IRQL <= DISPATCH_LEVEL for non-paged pool.
            unsafe { ExAllocatePoolWithTag(NON_PAGED_POOL_NX, bytes, tag).cast::<u8>() }
        }
        unsafe fn free(block: *mut u8, tag: u32) {
            // SAFETY: the caller's contract: a block from `allocate` with this tag, freed once.
            unsafe { ExFreePoolWithTag(block.cast::<c_void>(), tag) }
        }
        fn associate_context(
            flow_id: u64,
            layer_id: u16,
            callout_id: u32,
            context: u64,
        ) -> NTSTATUS {
            // SAFETY: plain values; IRQL <= DISPATCH_LEVEL (the classifyFn's).
            unsafe { FwpsFlowAssociateContext0(flow_id, layer_id, callout_id, context) }
        }
        fn remove_context(flow_id: u64, layer_id: u16, callout_id: u32) -> NTSTATUS {
            // SAFETY: plain values; the table never holds its lock across this call.
            unsafe { FwpsFlowRemoveContext0(flow_id, layer_id, callout_id) }
        }
        fn unregister_callout(callout_id: u32) -> NTSTATUS {
            // SAFETY: a plain value; PASSIVE_LEVEL (unload, or DriverEntry failing).
            unsafe { FwpsCalloutUnregisterById0(callout_id) }
        }
        fn delay(milliseconds: u32) {
            crate::sync::delay(milliseconds);
        }
    }

    /// A flow table in the kernel.
    pub type KernelFlowTable<T> = FlowTable<T, Kernel>;

    /// A session with the filter engine (`FwpmEngineOpen0`), closed when dropped.
    ///
    /// Opened **dynamic** (`FWPM_SESSION_FLAG_DYNAMIC`): everything added through it (sublayer,
    /// callouts, filters) is deleted when it closes, so closing it *is* deleting the driver's
    /// filters. After that, no new classify reaches the callouts.
    pub struct Engine(HANDLE);

    impl Engine {
        /// Opens a dynamic session. PASSIVE_LEVEL.
        ///
        /// # Arguments
        /// * `session` - the session description; its `flags` should include
        ///   `FWPM_SESSION_FLAG_DYNAMIC`.
        ///
        /// # Return value
        /// The session, or the failure (the BFE not running, for instance).
        ///
        /// # Errors
        /// As above.
        pub fn open(session: &FWPM_SESSION0) -> Result<Self, NTSTATUS> {
            let mut handle: HANDLE = null_mut();
            // SAFETY: NULL server name (required in kernel mode), no identity, a valid session and
            // out pointer. PASSIVE_LEVEL.
            let status = unsafe {
                FwpmEngineOpen0(null(), RPC_C_AUTHN_WINNT, null(), session, &raw mut handle)
            };
            klog!(
                Info,
                "wfp: FwpmEngineOpen0(dynamic session) = %08Ix",
                status.cast_unsigned()
            );
            match (nt_success(status), handle.is_null()) {
                (true, false) => Ok(Self(handle)),
                (true, true) => Err(crate::sys::STATUS_UNSUCCESSFUL),
                (false, _) => Err(status),
            }
        }

        /// Begins a transaction (`FwpmTransactionBegin0`): what is added through it appears
        /// together at commit, or not at all. PASSIVE_LEVEL.
        ///
        /// # Errors
        /// The failure of `FwpmTransactionBegin0`.
        pub fn begin(&self) -> Result<Transaction<'_>, NTSTATUS> {
            // SAFETY: our open session. PASSIVE_LEVEL.
            let status = unsafe { FwpmTransactionBegin0(self.0, 0) };
            klog!(
                Info,
                "wfp: FwpmTransactionBegin0 = %08Ix",
                status.cast_unsigned()
            );
            if nt_success(status) {
                Ok(Transaction {
                    engine: self,
                    committed: false,
                })
            } else {
                Err(status)
            }
        }
    }

    impl Drop for Engine {
        /// `FwpmEngineClose0`: the dynamic session ends, and with it every filter, callout and
        /// sublayer it added. PASSIVE_LEVEL.
        fn drop(&mut self) {
            // SAFETY: our open session, closed once.
            let status = unsafe { FwpmEngineClose0(self.0) };
            klog!(
                Info,
                "wfp: FwpmEngineClose0 = %08Ix: the session's filters, callouts and sublayer are deleted",
                status.cast_unsigned()
            );
        }
    }

    // SAFETY: an engine handle may be used and closed from any thread at PASSIVE_LEVEL.
    unsafe impl Send for Engine {}
    // SAFETY: no method mutates through &self.
    unsafe impl Sync for Engine {}

    /// A transaction in progress; aborted when dropped unless [`commit`](Self::commit)ted.
    pub struct Transaction<'a> {
        engine: &'a Engine,
        committed: bool,
    }

    /// A management call's status as a `Result`.
    fn checked(status: NTSTATUS) -> Result<(), NTSTATUS> {
        if nt_success(status) {
            Ok(())
        } else {
            Err(status)
        }
    }

    impl Transaction<'_> {
        /// `FwpmSubLayerAdd0`. PASSIVE_LEVEL.
        ///
        /// # Errors
        /// Its failure.
        pub fn add_sublayer(&self, sublayer: &FWPM_SUBLAYER0) -> Result<(), NTSTATUS> {
            // SAFETY: our session; a valid structure; no security descriptor.
            let status = unsafe { FwpmSubLayerAdd0(self.engine.0, sublayer, null()) };
            klog!(
                Info,
                "wfp: FwpmSubLayerAdd0 = %08Ix",
                status.cast_unsigned()
            );
            checked(status)
        }

        /// `FwpmCalloutAdd0`: the management side of a callout registered with
        /// [`Callout::register`] (documented order: register, then add). PASSIVE_LEVEL.
        ///
        /// # Errors
        /// Its failure.
        pub fn add_callout(&self, callout: &FWPM_CALLOUT0) -> Result<u32, NTSTATUS> {
            let mut id = 0u32;
            // SAFETY: our session; a valid structure and out pointer.
            let status = unsafe { FwpmCalloutAdd0(self.engine.0, callout, null(), &raw mut id) };
            klog!(Info, "wfp: FwpmCalloutAdd0 = %08Ix", status.cast_unsigned());
            checked(status).map(|()| id)
        }

        /// `FwpmFilterAdd0`. PASSIVE_LEVEL.
        ///
        /// # Return value
        /// The filter's id.
        ///
        /// # Errors
        /// Its failure.
        pub fn add_filter(&self, filter: &FWPM_FILTER0) -> Result<u64, NTSTATUS> {
            let mut id = 0u64;
            // SAFETY: our session; a valid structure; a valid id pointer (optional by the
            // documentation, always passed here).
            let status = unsafe { FwpmFilterAdd0(self.engine.0, filter, null(), &raw mut id) };
            klog!(
                Info,
                "wfp: FwpmFilterAdd0 = %08Ix (filter id %Iu)",
                status.cast_unsigned(),
                id
            );
            checked(status).map(|()| id)
        }

        /// `FwpmTransactionCommit0`: everything added appears at once. PASSIVE_LEVEL.
        ///
        /// # Errors
        /// Its failure; the transaction is then aborted when `self` is dropped.
        pub fn commit(mut self) -> Result<(), NTSTATUS> {
            // SAFETY: our session with a transaction in progress.
            let status = unsafe { FwpmTransactionCommit0(self.engine.0) };
            klog!(
                Info,
                "wfp: FwpmTransactionCommit0 = %08Ix",
                status.cast_unsigned()
            );
            checked(status)?;
            self.committed = true;
            Ok(())
        }
    }

    impl Drop for Transaction<'_> {
        /// `FwpmTransactionAbort0` unless committed: nothing added in it remains. PASSIVE_LEVEL.
        fn drop(&mut self) {
            if !self.committed {
                // SAFETY: our session; aborting after a failed commit may find no transaction,
                // which is harmless.
                let status = unsafe { FwpmTransactionAbort0(self.engine.0) };
                klog!(
                    Info,
                    "wfp: FwpmTransactionAbort0 = %08Ix",
                    status.cast_unsigned()
                );
            }
        }
    }

    /// A callout registered with the filter engine (`FwpsCalloutRegister1`), unregistered with
    /// `FwpsCalloutUnregisterById0` when dropped — draining its flow contexts when the engine
    /// answers `STATUS_DEVICE_BUSY` ([`unregister_draining`]).
    ///
    /// **After the drop returns** the callout is unregistered: the engine calls none of its
    /// functions again, and every flow context it associated has been deleted. Filters that still
    /// name it would act as *block* (terminating callouts) or be ignored (inspection callouts):
    /// delete them first (close the [`Engine`]).
    ///
    /// **If it cannot be unregistered** (a status other than success after the bounded rounds of
    /// [`unregister_draining`]) the callout may still be called, so the drop snaps its
    /// [`Tether`]: every [`Tethered`](crate::teardown::Tethered) guard dropped after it (the
    /// context, the flow table in it, the device object) is leaked with a log line instead of
    /// being freed.
    pub struct Callout {
        id: u32,
        flows: Option<NonNull<dyn FlowDrain>>,
        tether: &'static Tether,
    }

    impl Callout {
        /// `FwpsCalloutRegister1` for a callout that never associates flow contexts. PASSIVE_LEVEL.
        ///
        /// # Arguments
        /// * `device` - the driver's device object (it must outlive the registration).
        /// * `callout` - the callout's key and functions.
        ///
        /// # Return value
        /// The registration, or the failure (`STATUS_FWP_ALREADY_EXISTS` for a key in use).
        ///
        /// # Errors
        /// As above.
        ///
        /// # Safety
        /// The callout's functions may be called as soon as a filter names it, until the guard is
        /// dropped: whatever they reach must live that long. `device` is a live device object,
        /// dropped after this guard.
        pub unsafe fn register(
            device: *mut DEVICE_OBJECT,
            callout: &FWPS_CALLOUT1,
            tether: &'static Tether,
        ) -> Result<Self, NTSTATUS> {
            // SAFETY: the caller's contract.
            unsafe { Self::register_inner(device, callout, None, tether) }
        }

        /// `FwpsCalloutRegister1` for a callout that associates flow contexts in `flows`: its
        /// flowDeleteFn must call [`FlowTable::flow_deleted`]. PASSIVE_LEVEL.
        ///
        /// # Errors
        /// As [`register`](Self::register).
        ///
        /// # Safety
        /// As [`register`](Self::register), and `flows` must outlive the guard.
        pub unsafe fn register_with_flows<T: 'static>(
            device: *mut DEVICE_OBJECT,
            callout: &FWPS_CALLOUT1,
            flows: &FlowTable<T, Kernel>,
            tether: &'static Tether,
        ) -> Result<Self, NTSTATUS> {
            let flows: &dyn FlowDrain = flows;
            // SAFETY: the caller's contract.
            unsafe { Self::register_inner(device, callout, Some(NonNull::from(flows)), tether) }
        }

        unsafe fn register_inner(
            device: *mut DEVICE_OBJECT,
            callout: &FWPS_CALLOUT1,
            flows: Option<NonNull<dyn FlowDrain>>,
            tether: &'static Tether,
        ) -> Result<Self, NTSTATUS> {
            let mut id = 0u32;
            // SAFETY: the caller's live device object; a valid structure and out pointer.
            let status =
                unsafe { FwpsCalloutRegister1(device.cast::<c_void>(), callout, &raw mut id) };
            klog!(
                Info,
                "wfp: FwpsCalloutRegister1 = %08Ix (callout id %Iu)",
                status.cast_unsigned(),
                id
            );
            if nt_success(status) {
                Ok(Self { id, flows, tether })
            } else {
                Err(status)
            }
        }

        /// The run-time id the engine gave the callout.
        #[must_use]
        pub fn id(&self) -> u32 {
            self.id
        }
    }

    impl Drop for Callout {
        /// Unregisters, draining flow contexts on `STATUS_DEVICE_BUSY`. PASSIVE_LEVEL.
        fn drop(&mut self) {
            // SAFETY: `register_with_flows`' contract: the table outlives this guard.
            let flows = self.flows.map(|f| unsafe { f.as_ref() });
            let outcome: Unregistration = unregister_draining::<Kernel>(self.id, flows);
            if !outcome.unregistered() {
                klog!(
                    Error,
                    "wfp: callout %Iu could not be unregistered (%08Ix): leaking its context, flow table and device object, which it may still reach",
                    self.id,
                    outcome.status.cast_unsigned()
                );
                self.tether.snap();
            }
        }
    }

    // SAFETY: the id is a plain value; the table is Sync.
    unsafe impl Send for Callout {}
    // SAFETY: as above.
    unsafe impl Sync for Callout {}

    /// The flowDeleteFn of a callout whose contexts live in a `KernelFlowTable<T>`: frees the
    /// context. Pass `flow_delete_fn::<T>` as the callout's `flowDeleteFn`. IRQL <= DISPATCH_LEVEL.
    ///
    /// # Safety
    /// Called by the filter engine, once per context associated by that table.
    pub unsafe extern "system" fn flow_delete_fn<T>(
        _layer_id: u16,
        _callout_id: u32,
        context: u64,
    ) {
        // SAFETY: the engine passes back the context the table associated, once.
        unsafe { FlowTable::<T, Kernel>::flow_deleted(context) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    // ---- layouts (docs/notes/wfp.md §4; x64) ----------------------------------------------------

    #[test]
    fn callout_layout() {
        assert_eq!(size_of::<FWPS_CALLOUT1>(), 48);
        assert_eq!(offset_of!(FWPS_CALLOUT1, calloutKey), 0);
        assert_eq!(offset_of!(FWPS_CALLOUT1, flags), 16);
        assert_eq!(offset_of!(FWPS_CALLOUT1, classifyFn), 24);
        assert_eq!(offset_of!(FWPS_CALLOUT1, notifyFn), 32);
        assert_eq!(offset_of!(FWPS_CALLOUT1, flowDeleteFn), 40);
    }

    #[test]
    fn classify_structures_layout() {
        assert_eq!(size_of::<FWPS_CLASSIFY_OUT0>(), 40);
        assert_eq!(offset_of!(FWPS_CLASSIFY_OUT0, actionType), 0);
        assert_eq!(offset_of!(FWPS_CLASSIFY_OUT0, outContext), 8);
        assert_eq!(offset_of!(FWPS_CLASSIFY_OUT0, filterId), 16);
        assert_eq!(offset_of!(FWPS_CLASSIFY_OUT0, rights), 24);
        assert_eq!(offset_of!(FWPS_CLASSIFY_OUT0, flags), 28);
        assert_eq!(offset_of!(FWPS_CLASSIFY_OUT0, reserved), 32);

        assert_eq!(size_of::<FWP_VALUE0>(), 16);
        assert_eq!(size_of::<FWPS_INCOMING_VALUE0>(), 16);
        assert_eq!(size_of::<FWPS_INCOMING_VALUES0>(), 16);
        assert_eq!(offset_of!(FWPS_INCOMING_VALUES0, layerId), 0);
        assert_eq!(offset_of!(FWPS_INCOMING_VALUES0, valueCount), 4);
        assert_eq!(offset_of!(FWPS_INCOMING_VALUES0, incomingValue), 8);

        assert_eq!(
            offset_of!(FWPS_INCOMING_METADATA_VALUES0, currentMetadataValues),
            0
        );
        assert_eq!(offset_of!(FWPS_INCOMING_METADATA_VALUES0, flags), 4);
        assert_eq!(
            offset_of!(FWPS_INCOMING_METADATA_VALUES0, discardMetadata),
            16
        );
        assert_eq!(offset_of!(FWPS_INCOMING_METADATA_VALUES0, flowHandle), 32);
        assert_eq!(offset_of!(FWPS_INCOMING_METADATA_VALUES0, ipHeaderSize), 40);
        assert_eq!(
            offset_of!(FWPS_INCOMING_METADATA_VALUES0, transportHeaderSize),
            44
        );
        assert_eq!(offset_of!(FWPS_INCOMING_METADATA_VALUES0, processPath), 48);
        assert_eq!(offset_of!(FWPS_INCOMING_METADATA_VALUES0, token), 56);
        assert_eq!(offset_of!(FWPS_INCOMING_METADATA_VALUES0, processId), 64);

        assert_eq!(size_of::<FWPS_FILTER1>(), 64);
        assert_eq!(offset_of!(FWPS_FILTER1, weight), 8);
        assert_eq!(offset_of!(FWPS_FILTER1, subLayerWeight), 24);
        assert_eq!(offset_of!(FWPS_FILTER1, flags), 26);
        assert_eq!(offset_of!(FWPS_FILTER1, numFilterConditions), 28);
        assert_eq!(offset_of!(FWPS_FILTER1, filterCondition), 32);
        assert_eq!(offset_of!(FWPS_FILTER1, action), 40);
        assert_eq!(offset_of!(FWPS_FILTER1, context), 48);
        assert_eq!(offset_of!(FWPS_FILTER1, providerContext), 56);
    }

    #[test]
    fn management_structures_layout() {
        // windows-sys' FWPM types, checked because the emulated kernel reads them at these offsets.
        assert_eq!(size_of::<FWPM_SESSION0>(), 72);
        assert_eq!(offset_of!(FWPM_SESSION0, flags), 32);
        assert_eq!(size_of::<FWPM_SUBLAYER0>(), 72);
        assert_eq!(offset_of!(FWPM_SUBLAYER0, weight), 64);
        assert_eq!(size_of::<FWPM_CALLOUT0>(), 88);
        assert_eq!(offset_of!(FWPM_CALLOUT0, applicableLayer), 64);
        assert_eq!(offset_of!(FWPM_CALLOUT0, calloutId), 80);
        assert_eq!(size_of::<FWPM_ACTION0>(), 20);
        assert_eq!(size_of::<FWPM_FILTER0>(), 200);
        assert_eq!(offset_of!(FWPM_FILTER0, layerKey), 64);
        assert_eq!(offset_of!(FWPM_FILTER0, subLayerKey), 80);
        assert_eq!(offset_of!(FWPM_FILTER0, weight), 96);
        assert_eq!(offset_of!(FWPM_FILTER0, numFilterConditions), 112);
        assert_eq!(offset_of!(FWPM_FILTER0, filterCondition), 120);
        assert_eq!(offset_of!(FWPM_FILTER0, action), 128);
        assert_eq!(offset_of!(FWPM_FILTER0, Anonymous), 152);
        assert_eq!(offset_of!(FWPM_FILTER0, filterId), 176);
    }

    #[test]
    fn constants_match_the_headers() {
        use windows_sys::Win32::Foundation as f;
        assert_eq!(STATUS_DEVICE_BUSY, f::STATUS_DEVICE_BUSY);
        assert!(
            !crate::sys::nt_success(STATUS_DEVICE_BUSY),
            "busy is not a success"
        );
        assert_eq!(STATUS_PENDING, f::STATUS_PENDING);
        assert_eq!(STATUS_OBJECT_NAME_EXISTS, f::STATUS_OBJECT_NAME_EXISTS);
        assert!(
            crate::sys::nt_success(STATUS_OBJECT_NAME_EXISTS),
            "informational: a success"
        );
        assert_eq!(
            STATUS_FWP_CALLOUT_NOT_FOUND,
            f::STATUS_FWP_CALLOUT_NOT_FOUND
        );
        assert_eq!(STATUS_FWP_ALREADY_EXISTS, f::STATUS_FWP_ALREADY_EXISTS);
        assert_eq!(
            STATUS_FWP_NO_TXN_IN_PROGRESS,
            f::STATUS_FWP_NO_TXN_IN_PROGRESS
        );
        assert_eq!(FWPS_METADATA_FIELD_FLOW_HANDLE, 0x2);
        assert_eq!(FWPS_RIGHT_ACTION_WRITE, 0x1);
        assert_eq!(
            (FWP_ACTION_BLOCK, FWP_ACTION_PERMIT, FWP_ACTION_CONTINUE),
            (0x1001, 0x1002, 0x2006)
        );
        assert_eq!(
            (
                FWP_ACTION_CALLOUT_TERMINATING,
                FWP_ACTION_CALLOUT_INSPECTION
            ),
            (0x5003, 0x6004)
        );
        assert_eq!(
            (
                FWPS_LAYER_ALE_AUTH_CONNECT_V4,
                FWPS_LAYER_ALE_FLOW_ESTABLISHED_V4
            ),
            (48, 52)
        );
        assert_eq!(
            (
                field::IP_PROTOCOL,
                field::IP_REMOTE_ADDRESS,
                field::IP_REMOTE_PORT
            ),
            (5, 6, 7)
        );
        assert!(guid_eq(
            &FWPM_LAYER_ALE_AUTH_CONNECT_V4,
            &GUID::from_u128(0xc38d57d1_05a7_4c33_904f_7fbceee60e82)
        ));
        assert!(!guid_eq(
            &FWPM_LAYER_ALE_AUTH_CONNECT_V4,
            &FWPM_LAYER_ALE_FLOW_ESTABLISHED_V4
        ));
    }

    // ---- the flow table and the drain, against a model of the filter engine ----------------

    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    /// A model of the engine, per test thread: associated contexts by (flow, layer, callout), the
    /// flows whose removal must pend, the registered callouts, and a log of calls.
    #[derive(Default)]
    struct Engine {
        contexts: BTreeMap<(u64, u16, u32), u64>,
        pending_flows: Vec<u64>,
        deferred: Vec<u64>,
        registered: Vec<u32>,
        calls: Vec<String>,
        blocks: usize,
        /// Statuses the next unregistrations answer instead of the model's.
        unregister_answers: Vec<NTSTATUS>,
        /// Statuses the next removals answer (without removing anything).
        remove_answers: Vec<NTSTATUS>,
        /// A flow whose flowDeleteFn the engine calls from inside FwpsFlowAssociateContext0's
        /// success, before the driver records it (the flow ended at once).
        end_on_associate: Option<u64>,
        delays: Vec<u32>,
    }

    thread_local! {
        static ENGINE: RefCell<Engine> = RefCell::new(Engine::default());
    }

    fn engine<R>(f: impl FnOnce(&mut Engine) -> R) -> R {
        ENGINE.with(|e| f(&mut e.borrow_mut()))
    }

    #[derive(Default)]
    struct HostLock(Mutex<bool>);
    // SAFETY: a mutex-protected flag gives mutual exclusion.
    unsafe impl RawSpinLock for HostLock {
        type Token = ();
        fn initialize(&self) {}
        fn lock(&self) {
            let mut held = self.0.lock().unwrap();
            assert!(
                !*held,
                "spin lock taken by its holder: it would spin forever"
            );
            *held = true;
        }
        fn unlock(&self, (): ()) {
            *self.0.lock().unwrap() = false;
        }
    }

    #[derive(Default)]
    struct HostEvent(Mutex<bool>);
    // SAFETY: single-threaded tests: a wait on an unset event is a deadlock, so it delivers the
    // flowDeleteFns the engine deferred (they run "on another processor" while we wait).
    unsafe impl RawEvent for HostEvent {
        fn initialize(&self) {}
        fn set(&self) {
            *self.0.lock().unwrap() = true;
        }
        fn wait_for(&self, milliseconds: u32) -> bool {
            if *self.0.lock().unwrap() {
                return true;
            }
            engine(|e| e.calls.push(format!("wait {milliseconds} ms")));
            let deferred = engine(|e| std::mem::take(&mut e.deferred));
            for context in deferred {
                engine(|e| e.calls.push(format!("late flowDeleteFn {context:#x}")));
                // SAFETY: the context the table associated, deleted once.
                unsafe { FlowTable::<u32, Host>::flow_deleted(context) };
            }
            // Nothing else can set it: the timeout expires.
            *self.0.lock().unwrap()
        }
    }

    struct Host;
    // SAFETY: a model of the documented engine behaviour.
    unsafe impl FlowPlatform for Host {
        type Lock = HostLock;
        type Event = HostEvent;
        fn allocate(bytes: usize, _tag: u32) -> *mut u8 {
            if engine(|e| e.blocks) >= 1000 {
                return null_mut();
            }
            engine(|e| e.blocks += 1);
            // SAFETY: a non-zero size with the pool's alignment.
            unsafe { std::alloc::alloc(std::alloc::Layout::from_size_align(bytes, 16).unwrap()) }
        }
        unsafe fn free(block: *mut u8, _tag: u32) {
            engine(|e| e.blocks -= 1);
            // SAFETY: allocated above with this layout (entries all have the same size).
            unsafe {
                std::alloc::dealloc(
                    block,
                    std::alloc::Layout::from_size_align(size_of::<FlowEntry<u32, Host>>(), 16)
                        .unwrap(),
                );
            }
        }
        fn associate_context(flow: u64, layer: u16, callout: u32, context: u64) -> NTSTATUS {
            let status = engine(|e| {
                e.calls.push(format!("associate {flow}"));
                match e.contexts.entry((flow, layer, callout)) {
                    std::collections::btree_map::Entry::Occupied(_) => STATUS_OBJECT_NAME_EXISTS,
                    std::collections::btree_map::Entry::Vacant(v) => {
                        v.insert(context);
                        0
                    }
                }
            });
            if status == 0 && engine(|e| e.end_on_associate) == Some(flow) {
                // The flow ends "on another processor" before the driver records the association.
                engine(|e| e.contexts.remove(&(flow, layer, callout)));
                // SAFETY: the associated context, deleted once.
                assert!(unsafe { FlowTable::<u32, Host>::flow_deleted(context) });
            }
            status
        }
        fn remove_context(flow: u64, layer: u16, callout: u32) -> NTSTATUS {
            if let Some(status) =
                engine(|e| (!e.remove_answers.is_empty()).then(|| e.remove_answers.remove(0)))
            {
                engine(|e| e.calls.push(format!("remove {flow} = {status:#x}")));
                return status;
            }
            let (context, pend) = engine(|e| {
                e.calls.push(format!("remove {flow}"));
                (
                    e.contexts.remove(&(flow, layer, callout)),
                    e.pending_flows.contains(&flow),
                )
            });
            match context {
                None => crate::sys::STATUS_UNSUCCESSFUL,
                Some(c) if pend => {
                    engine(|e| e.deferred.push(c));
                    STATUS_PENDING
                }
                Some(c) => {
                    // flowDeleteFn runs before the routine returns.
                    // SAFETY: the associated context, deleted once.
                    unsafe { FlowTable::<u32, Host>::flow_deleted(c) };
                    0
                }
            }
        }
        fn unregister_callout(callout: u32) -> NTSTATUS {
            engine(|e| {
                e.calls.push(format!("unregister {callout}"));
                if !e.unregister_answers.is_empty() {
                    return e.unregister_answers.remove(0);
                }
                let busy = e.contexts.keys().any(|k| k.2 == callout) || !e.deferred.is_empty();
                if !e.registered.contains(&callout) {
                    STATUS_FWP_CALLOUT_NOT_FOUND
                } else if busy {
                    STATUS_DEVICE_BUSY
                } else {
                    e.registered.retain(|&c| c != callout);
                    0
                }
            })
        }
        fn delay(milliseconds: u32) {
            engine(|e| {
                e.calls.push(format!("delay {milliseconds} ms"));
                e.delays.push(milliseconds);
            });
        }
    }

    const LAYER: u16 = FWPS_LAYER_ALE_FLOW_ESTABLISHED_V4;
    const CALLOUT: u32 = 8;

    /// A table in a box: it must not move once initialised (the admission guard points to it).
    #[allow(clippy::unnecessary_box_returns)]
    fn table() -> Box<FlowTable<u32, Host>> {
        engine(|e| *e = Engine::default());
        engine(|e| e.registered.push(CALLOUT));
        let t = Box::new(FlowTable::new(u32::from_le_bytes(*b"Test")));
        t.initialize();
        t
    }

    #[test]
    fn nothing_is_associated_while_the_table_is_closed() {
        let t = table();
        assert_eq!(t.associate(1, LAYER, CALLOUT, 10), Err(Refused::Closed));
        // SAFETY: the box outlives the guard.
        let open = unsafe { t.admit() };
        assert_eq!(t.associate(1, LAYER, CALLOUT, 10), Ok(()));
        drop(open);
        assert_eq!(t.associate(2, LAYER, CALLOUT, 20), Err(Refused::Closed));
        assert_eq!(t.counts().live, 1);
        assert_eq!(engine(|e| e.blocks), 1, "the refused entries were freed");
        assert_eq!(unregister_draining::<Host>(CALLOUT, Some(&*t)).busy, 1);
    }

    #[test]
    fn a_second_context_for_a_flow_is_refused_and_freed() {
        let t = table();
        // SAFETY: the box outlives the guard.
        let open = unsafe { t.admit() };
        assert_eq!(t.associate(7, LAYER, CALLOUT, 1), Ok(()));
        assert_eq!(
            t.associate(7, LAYER, CALLOUT, 2),
            Err(Refused::Failed(STATUS_OBJECT_NAME_EXISTS)),
            "STATUS_OBJECT_NAME_EXISTS is informational, yet not an association"
        );
        assert_eq!(engine(|e| e.blocks), 1);
        let context = engine(|e| e.contexts[&(7, LAYER, CALLOUT)]);
        // SAFETY: associated above and alive.
        assert_eq!(unsafe { FlowTable::<u32, Host>::data(context) }, Some(&1));
        drop(open);
        assert_eq!(unregister_draining::<Host>(CALLOUT, Some(&*t)).status, 0);
    }

    #[test]
    fn a_flow_that_ends_frees_its_context() {
        let t = table();
        // SAFETY: the box outlives the guard.
        let open = unsafe { t.admit() };
        for flow in 1..=3 {
            t.associate(flow, LAYER, CALLOUT, 0).unwrap();
        }
        // The engine ends flow 2: it calls flowDeleteFn with the context.
        let context = engine(|e| e.contexts.remove(&(2, LAYER, CALLOUT)).unwrap());
        // SAFETY: the associated context, deleted once.
        assert!(unsafe { FlowTable::<u32, Host>::flow_deleted(context) });
        // SAFETY: zero is never a context.
        assert!(!unsafe { FlowTable::<u32, Host>::flow_deleted(0) });
        assert_eq!(
            t.counts(),
            FlowCounts {
                live: 2,
                associated: 3,
                deleted: 1
            }
        );
        drop(open);
        let outcome = unregister_draining::<Host>(CALLOUT, Some(&*t));
        assert_eq!(
            (outcome.status, outcome.busy, outcome.removal.removed),
            (0, 1, 2)
        );
    }

    #[test]
    fn unload_without_flows_unregisters_at_once() {
        let t = table();
        drop(
            // SAFETY: the box outlives the guard.
            unsafe { t.admit() },
        );
        let outcome = unregister_draining::<Host>(CALLOUT, Some(&*t));
        assert_eq!(
            outcome,
            Unregistration {
                rounds: 1,
                ..Unregistration::default()
            }
        );
        assert_eq!(engine(|e| e.calls.clone()), ["unregister 8"]);
    }

    #[test]
    fn busy_unregistration_removes_every_context_then_retries() {
        let t = table();
        // SAFETY: the box outlives the guard.
        let open = unsafe { t.admit() };
        for flow in 0..1000 {
            t.associate(100 + flow, LAYER, CALLOUT, 0).unwrap();
        }
        drop(open);
        let outcome = unregister_draining::<Host>(CALLOUT, Some(&*t));
        assert_eq!(outcome.status, 0);
        assert_eq!(outcome.busy, 1);
        assert_eq!(outcome.removal.removed, 1000);
        assert_eq!(t.counts().live, 0);
        assert_eq!(engine(|e| e.blocks), 0, "every context freed");
        let calls = engine(|e| e.calls.clone());
        assert_eq!(calls.first().map(String::as_str), Some("associate 100"));
        assert_eq!(
            calls.iter().filter(|c| c.starts_with("unregister")).count(),
            2
        );
        assert_eq!(calls.last().map(String::as_str), Some("unregister 8"));
    }

    #[test]
    fn pending_removals_are_waited_for_before_retrying() {
        let t = table();
        // SAFETY: the box outlives the guard.
        let open = unsafe { t.admit() };
        for flow in 1..=3 {
            t.associate(flow, LAYER, CALLOUT, 0).unwrap();
        }
        drop(open);
        engine(|e| e.pending_flows = vec![2]);
        let outcome = unregister_draining::<Host>(CALLOUT, Some(&*t));
        assert_eq!(outcome.status, 0);
        assert_eq!(
            outcome.removal,
            Removal {
                removed: 2,
                pending: 1,
                other: 0
            }
        );
        let calls = engine(|e| e.calls.clone());
        let late = calls.iter().position(|c| c.starts_with("late")).unwrap();
        let retry = calls.iter().rposition(|c| c == "unregister 8").unwrap();
        assert!(
            late < retry,
            "the late flowDeleteFn ran before the retry: {calls:?}"
        );
        assert_eq!(engine(|e| e.blocks), 0);
    }

    #[test]
    fn unknown_callout_is_reported_not_retried() {
        let t = table();
        let outcome = unregister_draining::<Host>(99, Some(&*t));
        assert_eq!(
            (outcome.status, outcome.busy),
            (STATUS_FWP_CALLOUT_NOT_FOUND, 0)
        );
    }

    #[test]
    fn in_use_is_retried_after_a_back_off() {
        let t = table();
        engine(|e| e.unregister_answers = vec![STATUS_FWP_IN_USE, STATUS_FWP_IN_USE]);
        let outcome = unregister_draining::<Host>(CALLOUT, Some(&*t));
        assert!(outcome.unregistered());
        assert_eq!((outcome.in_use, outcome.rounds), (2, 3));
        assert_eq!(engine(|e| e.delays.clone()), [backoff_ms(1), backoff_ms(2)]);
    }

    #[test]
    fn in_use_forever_gives_up_after_the_bounded_rounds() {
        let t = table();
        engine(|e| e.unregister_answers = vec![STATUS_FWP_IN_USE; 100]);
        let outcome = unregister_draining::<Host>(CALLOUT, Some(&*t));
        assert!(!outcome.unregistered(), "the caller must leak");
        assert_eq!(outcome.rounds, UNREGISTER_ROUNDS);
        let delays = engine(|e| e.delays.clone());
        assert_eq!(delays.len(), UNREGISTER_ROUNDS as usize - 1);
        assert!(delays.iter().all(|&d| (10..=1_000).contains(&d)));
    }

    #[test]
    fn an_undocumented_status_is_not_retried_and_not_success() {
        let t = table();
        engine(|e| e.unregister_answers = vec![0xC000_0001_u32.cast_signed()]);
        let outcome = unregister_draining::<Host>(CALLOUT, Some(&*t));
        assert!(!outcome.unregistered());
        assert_eq!(outcome.rounds, 1);
    }

    #[test]
    fn a_failed_removal_is_tried_again_next_round() {
        let t = table();
        // SAFETY: the box outlives the guard.
        let open = unsafe { t.admit() };
        for flow in 1..=2 {
            t.associate(flow, LAYER, CALLOUT, 0).unwrap();
        }
        drop(open);
        engine(|e| e.remove_answers = vec![crate::sys::STATUS_UNSUCCESSFUL]);
        let outcome = unregister_draining::<Host>(CALLOUT, Some(&*t));
        assert!(outcome.unregistered());
        assert_eq!(outcome.removal.other, 1);
        assert_eq!(
            outcome.removal.removed, 2,
            "the failed one, in the next round"
        );
        assert_eq!(engine(|e| e.blocks), 0);
        assert_eq!(t.counts().live, 0);
    }

    #[test]
    fn a_flow_delete_before_the_association_is_recorded_is_finished_by_associate() {
        let t = table();
        // SAFETY: the box outlives the guard.
        let open = unsafe { t.admit() };
        engine(|e| e.end_on_associate = Some(5));
        assert_eq!(t.associate(5, LAYER, CALLOUT, 0), Ok(()));
        assert_eq!(
            t.counts(),
            FlowCounts {
                live: 0,
                associated: 1,
                deleted: 1
            }
        );
        assert_eq!(engine(|e| e.blocks), 0, "freed once, by associate");
        drop(open);
        assert!(unregister_draining::<Host>(CALLOUT, Some(&*t)).unregistered());
    }

    #[test]
    fn a_failed_association_unlinks_and_frees_the_entry() {
        let t = table();
        // SAFETY: the box outlives the guard.
        let open = unsafe { t.admit() };
        t.associate(9, LAYER, CALLOUT, 0).unwrap();
        assert!(t.associate(9, LAYER, CALLOUT, 1).is_err());
        assert_eq!(t.counts().live, 1);
        assert_eq!(engine(|e| e.blocks), 1);
        drop(open);
        assert!(unregister_draining::<Host>(CALLOUT, Some(&*t)).unregistered());
    }

    #[test]
    fn allocation_failure_is_refused_cleanly() {
        let t = table();
        // SAFETY: the box outlives the guard.
        let _open = unsafe { t.admit() };
        engine(|e| e.blocks = 1000);
        assert_eq!(t.associate(1, LAYER, CALLOUT, 0), Err(Refused::NoMemory));
        engine(|e| e.blocks = 0);
        assert!(engine(|e| e.contexts.is_empty()));
    }
}
