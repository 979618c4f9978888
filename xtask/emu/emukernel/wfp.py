"""The Windows Filtering Platform as a callout driver sees it (fwpkclnt.sys), and the filter engine
that calls it.

speakeasy's own handlers run for FwpmEngineOpen0, FwpmEngineClose0, FwpmSubLayerAdd0,
FwpmCalloutAdd0, FwpmFilterAdd0, FwpsCalloutRegister1 and FwpsCalloutUnregisterById0; the harness
observes them and completes them from the documentation (docs/notes/wfp.md):

FwpmEngineOpen0(NULL, RPC_C_AUTHN_WINNT | DEFAULT, NULL, Session, &Engine)   PASSIVE_LEVEL
  - serverName must be NULL in kernel mode. FWPM_SESSION_FLAG_DYNAMIC: everything added through the
    session is deleted when it closes.
FwpmEngineClose0(Engine)                                                    PASSIVE_LEVEL
  - ends a transaction still in progress (rolled back); for a dynamic session deletes its filters
    (notifyFn DELETE_FILTER to each registered callout a filter names), callouts and sublayers.
FwpmSubLayerAdd0 / FwpmCalloutAdd0 / FwpmFilterAdd0                         PASSIVE_LEVEL
  - STATUS_FWP_ALREADY_EXISTS for a key in use; a filter's sublayer and callout must exist
    (STATUS_FWP_SUBLAYER_NOT_FOUND, STATUS_FWP_CALLOUT_NOT_FOUND) and the callout must apply to the
    filter's layer. Inside a transaction an object appears at commit and disappears at abort.
    FwpmFilterAdd0's id is optional (speakeasy writes it unconditionally: the harness passes its
    own when the driver passes NULL). Adding a filter calls the named callout's notifyFn
    (ADD_FILTER) before returning, if that callout is registered.
FwpsCalloutRegister1(DeviceObject, Callout, &Id)                            PASSIVE_LEVEL
  - DeviceObject must be one of the driver's live device objects; classifyFn and notifyFn are
    required and in the image; STATUS_FWP_ALREADY_EXISTS for a key already registered.
FwpsCalloutUnregisterById0(Id)                                              PASSIVE_LEVEL
  - STATUS_DEVICE_BUSY while any flow context of the callout is associated (speakeasy never says
    busy) — including one whose removal is pending; STATUS_FWP_CALLOUT_NOT_FOUND for an id that is
    not registered (speakeasy returns the user-mode HRESULT 0x80320001, or success again for an id
    already unregistered). It succeeds even if filters still name the callout: from then on those
    act as block (terminating) or are ignored (inspection).

Modelled (speakeasy has none of them):
FwpmTransactionBegin0 / Commit0 / Abort0                                    PASSIVE_LEVEL
  - one transaction per session (STATUS_FWP_TXN_IN_PROGRESS); commit and abort need one
    (STATUS_FWP_NO_TXN_IN_PROGRESS). A failed commit (fault runs) leaves the transaction for the
    caller to abort.
FwpsFlowAssociateContext0(FlowId, LayerId, CalloutId, Context)             <= DISPATCH_LEVEL
  - STATUS_INVALID_PARAMETER for a zero context or a callout without flowDeleteFn;
    STATUS_OBJECT_NAME_EXISTS (informational!) if the flow has a context for that layer and callout.
FwpsFlowRemoveContext0(FlowId, LayerId, CalloutId)                          <= DISPATCH_LEVEL
  - STATUS_UNSUCCESSFUL when no context is associated; otherwise flowDeleteFn runs **before it
    returns** (STATUS_SUCCESS) or, when a classify is in progress on the flow (the
    `flow-delete-pending` race), STATUS_PENDING and flowDeleteFn runs **later**: while the driver
    next waits (emukernel/sync.py). A driver that unloads without waiting leaves it pending.

The engine: scenario steps deliver classifies to the callout of the live filter at the layer, with
FWPS_INCOMING_VALUES0 / FWPS_INCOMING_METADATA_VALUES0 / FWPS_FILTER1 / FWPS_CLASSIFY_OUT0 laid out
as on x64. After each classify the harness checks the rights rule: without FWPS_RIGHT_ACTION_WRITE
nothing may change; a terminating callout sets BLOCK or PERMIT; BLOCK clears the write right, and
so does PERMIT when the filter has FWPS_FILTER_FLAG_CLEAR_ACTION_RIGHT; an inspection callout never
blocks or permits. The structures are the engine's: once classifyFn returns they are poisoned and
any access is reported. A flow that ends calls flowDeleteFn for each of its contexts.
"""

import functools
import ipaddress
import struct
import uuid

from . import events
from . import inflight, lockorder, racing
from .errors import KernelStop, violation
from .irql import DISPATCH_LEVEL, PASSIVE_LEVEL, require
from .irql_table import CALLBACKS
from .scenario import REQUIRED

STATUS_SUCCESS = 0
STATUS_PENDING = 0x103
STATUS_OBJECT_NAME_EXISTS = 0x40000000
STATUS_DEVICE_BUSY = 0x80000011
STATUS_UNSUCCESSFUL = 0xC0000001
STATUS_INVALID_PARAMETER = 0xC000000D
STATUS_INSUFFICIENT_RESOURCES = 0xC000009A
STATUS_NOT_FOUND = 0xC0000225
STATUS_FWP_CALLOUT_NOT_FOUND = 0xC0220001
STATUS_FWP_SUBLAYER_NOT_FOUND = 0xC0220007
STATUS_FWP_ALREADY_EXISTS = 0xC0220009
STATUS_FWP_IN_USE = 0xC022000A
STATUS_INTERNAL_ERROR = 0xC00000E5     # documented for none of these routines: the teardown sweep's
STATUS_FWP_TXN_IN_PROGRESS = 0xC022000B
STATUS_FWP_NO_TXN_IN_PROGRESS = 0xC022000D
FWP_E_CALLOUT_NOT_FOUND = 0x80320001   # speakeasy's user-mode HRESULT

FWPM_SESSION_FLAG_DYNAMIC = 0x1
FWPM_FILTER_FLAG_CLEAR_ACTION_RIGHT = 0x8
FWPM_FILTER_FLAG_PERMIT_IF_CALLOUT_UNREGISTERED = 0x10
FWPS_FILTER_FLAG_CLEAR_ACTION_RIGHT = 0x1
FWPS_FILTER_FLAG_PERMIT_IF_CALLOUT_UNREGISTERED = 0x2
FWPS_RIGHT_ACTION_WRITE = 0x1
FWPS_METADATA_FIELD_FLOW_HANDLE = 0x2
FWPS_METADATA_FIELD_PROCESS_ID = 0x20
FWPS_METADATA_FIELD_PACKET_DIRECTION = 0x40000
NOTIFY_ADD_FILTER = 0
NOTIFY_DELETE_FILTER = 1

ACTION_BLOCK = 0x1001
ACTION_PERMIT = 0x1002
ACTION_CONTINUE = 0x2006
ACTION_CALLOUT_TERMINATING = 0x5003
ACTION_CALLOUT_INSPECTION = 0x6004
ACTION_CALLOUT_UNKNOWN = 0x4005
ACTION_FLAG_CALLOUT = 0x4000
ACTIONS = {'block': ACTION_BLOCK, 'permit': ACTION_PERMIT, 'continue': ACTION_CONTINUE}
ACTION_NAMES = {v: k for k, v in ACTIONS.items()}
ACTION_NAMES.update({ACTION_CALLOUT_TERMINATING: 'callout-terminating',
                     ACTION_CALLOUT_INSPECTION: 'callout-inspection', ACTION_CALLOUT_UNKNOWN: 'callout-unknown'})

FWP_EMPTY, FWP_UINT8, FWP_UINT16, FWP_UINT32 = 0, 1, 2, 3

LAYER_ALE_AUTH_CONNECT_V4 = 'c38d57d1-05a7-4c33-904f-7fbceee60e82'
LAYER_ALE_FLOW_ESTABLISHED_V4 = 'af80470a-5596-4c13-9992-539e6fe57967'
LAYERS = {  # management key -> (run-time id, name, field count)
    LAYER_ALE_AUTH_CONNECT_V4: (48, 'ALE_AUTH_CONNECT_V4', 20),
    LAYER_ALE_FLOW_ESTABLISHED_V4: (52, 'ALE_FLOW_ESTABLISHED_V4', 18),
}
FLOW_ESTABLISHED_V4 = 52
# The run-time layers FwpsFlowAssociateContext0 accepts a context for. Sources: its page ("the
# filtering layer with which the context is being associated"; a callout with a flowDeleteFn must
# be registered, else STATUS_INVALID_PARAMETER) and "Associating Context with a Data Flow" ("a
# filtering layer that supports data flows") name no list; Microsoft's samples associate from the
# ALE_FLOW_ESTABLISHED classify *for a data layer*: STREAM_V4 with the stream callout's id
# (network/trans/msnmntr/sys/msnmntr.c, MonitorCoFlowEstablishedCalloutV4), STREAM (stmedit),
# DATAGRAM_DATA (ddproxy). ALE_FLOW_ESTABLISHED_V4/V6 themselves are kept because the flow handle
# is present there and no page excludes them, but no sample associates at them: not confirmed
# (wfp-callout's README says so). STREAM_V4/V6 = 20/22, DATAGRAM_DATA_V4/V6 = 24/26 (fwpsk.h).
FLOW_LAYERS = {20, 22, 24, 26, 52, 54}
ASSOCIATE_LAYER_CHECK = 'flow contexts associated with a callout added at that layer'
FIELD_LOCAL_ADDRESS, FIELD_LOCAL_PORT, FIELD_PROTOCOL = 2, 4, 5
FIELD_REMOTE_ADDRESS, FIELD_REMOTE_PORT = 6, 7
MAX_FIELDS = 32
METADATA_SIZE = 288
PROTOCOLS = {'tcp': 6, 'udp': 17, 'icmp': 1}
POISON = 0xDD
# The engine's flow lock (lockorder.py): held while FwpsFlowAssociateContext0 and
# FwpsFlowRemoveContext0 run and while the engine calls flowDeleteFn. Not documented either way:
# the model takes the stricter reading, that such a lock exists.
FLOW_LOCK = (('kernel', 'wfp flow lock'), "the filter engine's flow lock")


def _guid(data):
    return str(uuid.UUID(bytes_le=bytes(data)))


def _status(value):
    return '0x%08X' % (value & 0xFFFFFFFF)



@functools.lru_cache(maxsize=None)
def _ipv4(text):
    """An IPv4 address as the number WFP's FWP_UINT32 holds (host order); cached: a scenario's
    thousand flows name a handful of addresses."""
    return int(ipaddress.IPv4Address(text))

class _Params(dict):
    """Step fields made up by the harness (a `flows` step's flows), with the step's IRQL."""

    def __init__(self, irql, **fields):
        super().__init__(fields)
        self.irql = irql


class Session:
    def __init__(self, handle, dynamic):
        self.handle = handle
        self.dynamic = dynamic
        self.open = True
        self.transaction = None           # list of objects added in it, or None


class MObject:
    """A management object (sublayer, callout, filter) in the engine."""

    def __init__(self, kind, key, session, state):
        self.kind = kind
        self.key = key
        self.session = session
        self.state = state                # pending (in a transaction) | live | deleted
        self.fields = {}


class Registration:
    def __init__(self, callout_id, key, flags, classify, notify, delete, device):
        self.id = callout_id
        self.key = key
        self.flags = flags
        self.classify = classify
        self.notify = notify
        self.delete = delete
        self.device = device
        self.state = 'registered'         # registered -> unregistered
        self.busy = 0


class Flow:
    def __init__(self, flow_id):
        self.id = flow_id
        self.ended = False
        self.contexts = {}                # (layer id, callout id) -> context
        self.pending = {}                 # (layer id, callout id) -> context whose removal pends


class Wfp:
    STEPS = {
        'connect': {
            'remote_address': ('text', '203.0.113.10'), 'remote_port': ('u32', 443),
            'protocol': ('text', 'tcp'), 'local_port': ('u32', 50000),
            'write_right': ('bool', True), 'preset': ('text', 'continue'),
            'layer_id': ('u32', None), 'value_count': ('u32', None), 'expect': ('text', REQUIRED),
        },
        'flow-established': {
            'flow': ('u64', REQUIRED), 'remote_address': ('text', '198.51.100.20'),
            'remote_port': ('u32', 443), 'protocol': ('text', 'tcp'), 'local_port': ('u32', 50001),
            'flow_handle': ('bool', True), 'null_flow_handle': ('bool', False),
            'layer_id': ('u32', None), 'value_count': ('u32', None),
            'expect_context': ('bool', True),
        },
        'flows': {'count': ('u32', REQUIRED), 'first': ('u64', 0x10000)},
        'flow-end': {'flow': ('u64', REQUIRED)},
    }
    RACES = {'flow-delete-pending': {'count': ('u32', 1)}}

    def __init__(self, machine, config=None):
        self.m = machine
        self.sessions = {}
        self.objects = []                 # MObject, in order added
        self.registrations = {}           # id -> Registration
        self.flows = {}                   # id -> Flow
        self.pending_armed = 0            # removals that will find a classify in progress
        self.pending_fired = 0
        self.busy_returns = 0
        self.removals = {'success': 0, 'pending': 0, 'unsuccessful': 0}
        self.deleted_contexts = 0
        self.associated = 0
        self.rule_breaks = []             # classify rules broken
        self.callback_counts = []
        self.closed_late = []
        self._area = None
        self._area_active = False
        self.refused_layers = []          # FwpsFlowAssociateContext0 for a callout not added there
        self._slot = None
        self._slot_busy = False
        machine.wfp = self
        def fwp_exists(argv):
            return STATUS_FWP_ALREADY_EXISTS, 'STATUS_FWP_ALREADY_EXISTS'

        def no_memory(argv):
            return STATUS_INSUFFICIENT_RESOURCES, 'STATUS_INSUFFICIENT_RESOURCES'

        machine.attach('fwpkclnt', 'FwpmEngineOpen0', 5, self.engine_open, handled_by='speakeasy',
                       fallible=no_memory)
        machine.attach('fwpkclnt', 'FwpmEngineClose0', 1, self.engine_close, handled_by='speakeasy',
                       teardown=lambda argv: [(STATUS_INTERNAL_ERROR, 'STATUS_INTERNAL_ERROR (the '
                                               'session and its filters stay)')])
        machine.attach('fwpkclnt', 'FwpmTransactionBegin0', 2, self.txn_begin, fallible=no_memory)
        machine.attach('fwpkclnt', 'FwpmTransactionCommit0', 1, self.txn_commit, fallible=no_memory)
        machine.attach('fwpkclnt', 'FwpmTransactionAbort0', 1, self.txn_abort)
        machine.attach('fwpkclnt', 'FwpmSubLayerAdd0', 3, self.sublayer_add, handled_by='speakeasy',
                       fallible=fwp_exists)
        machine.attach('fwpkclnt', 'FwpmCalloutAdd0', 4, self.callout_add, handled_by='speakeasy',
                       fallible=fwp_exists)
        machine.attach('fwpkclnt', 'FwpmFilterAdd0', 4, self.filter_add, handled_by='speakeasy',
                       fallible=fwp_exists)
        machine.attach('fwpkclnt', 'FwpsCalloutRegister1', 3, self.register, handled_by='speakeasy',
                       fallible=fwp_exists)
        machine.attach('fwpkclnt', 'FwpsCalloutUnregisterById0', 1, self.unregister,
                       handled_by='speakeasy', teardown=self._unregister_faults)
        machine.attach('fwpkclnt', 'FwpsFlowAssociateContext0', 4, self.associate)
        machine.attach('fwpkclnt', 'FwpsFlowRemoveContext0', 3, self.remove, teardown=self._remove_faults)

    # ---- sessions and transactions ------------------------------------------------------------

    def engine_open(self, argv, orig):
        server, authn, identity, session_ptr, out = argv
        require(self.m, 'FwpmEngineOpen0', PASSIVE_LEVEL)
        if server:
            raise violation('FwpmEngineOpen0: serverName must be NULL in kernel mode')
        if authn & 0xFFFFFFFF not in (10, 0xFFFFFFFF):
            raise violation('FwpmEngineOpen0: authnService %d is neither RPC_C_AUTHN_WINNT nor '
                            'RPC_C_AUTHN_DEFAULT' % authn)
        if identity:
            raise violation('FwpmEngineOpen0: authIdentity must be NULL')
        dynamic = bool(session_ptr) and bool(self.m.read_u32(session_ptr + 32) & FWPM_SESSION_FLAG_DYNAMIC)
        status = orig(list(argv))
        if status & 0xFFFFFFFF < 0x80000000:
            handle = self.m.read_u64(out)
            self.sessions[handle] = Session(handle, dynamic)
        return status

    def _session(self, routine, handle):
        session = self.sessions.get(handle)
        if session is None or not session.open:
            raise violation('%s(0x%x): not an open engine handle%s' % (
                routine, handle, ' (closed already)' if session else ''))
        return session

    def engine_close(self, argv, orig):
        require(self.m, 'FwpmEngineClose0', PASSIVE_LEVEL)
        session = self._session('FwpmEngineClose0', argv[0])
        if session.transaction is not None:
            self._rollback(session)
        session.open = False
        deleted = []
        if session.dynamic:
            for obj in self.objects:
                if obj.session is session and obj.state == 'live':
                    obj.state = 'deleted'
                    if obj.kind == 'filter':
                        deleted.append(obj)
        status = orig(list(argv))
        self._notify(deleted, NOTIFY_DELETE_FILTER, status)
        return status

    def txn_begin(self, argv, orig):
        require(self.m, 'FwpmTransactionBegin0', PASSIVE_LEVEL)
        session = self._session('FwpmTransactionBegin0', argv[0])
        if session.transaction is not None:
            return STATUS_FWP_TXN_IN_PROGRESS
        session.transaction = []
        return STATUS_SUCCESS

    def txn_commit(self, argv, orig):
        require(self.m, 'FwpmTransactionCommit0', PASSIVE_LEVEL)
        session = self._session('FwpmTransactionCommit0', argv[0])
        if session.transaction is None:
            return STATUS_FWP_NO_TXN_IN_PROGRESS
        for obj in session.transaction:
            if obj.state == 'pending':
                obj.state = 'live'
        session.transaction = None
        return STATUS_SUCCESS

    def txn_abort(self, argv, orig):
        require(self.m, 'FwpmTransactionAbort0', PASSIVE_LEVEL)
        session = self._session('FwpmTransactionAbort0', argv[0])
        if session.transaction is None:
            return STATUS_FWP_NO_TXN_IN_PROGRESS
        self._rollback(session)
        return STATUS_SUCCESS

    def _rollback(self, session):
        for obj in session.transaction:
            obj.state = 'deleted'
        session.transaction = None

    def _add(self, kind, key, session):
        obj = MObject(kind, key, session, 'pending' if session.transaction is not None else 'live')
        if session.transaction is not None:
            session.transaction.append(obj)
        self.objects.append(obj)
        return obj

    def _find(self, kind, key, session=None):
        for obj in self.objects:
            if obj.kind == kind and obj.key == key and (obj.state == 'live' or obj.state == 'pending'
                                                         and obj.session is session):
                return obj
        return None

    # ---- management objects -------------------------------------------------------------------

    def sublayer_add(self, argv, orig):
        require(self.m, 'FwpmSubLayerAdd0', PASSIVE_LEVEL)
        session = self._session('FwpmSubLayerAdd0', argv[0])
        key = _guid(self.m.read(argv[1], 16))
        if self._find('sublayer', key, session):
            return STATUS_FWP_ALREADY_EXISTS
        status = orig(list(argv))
        obj = self._add('sublayer', key, session)
        obj.fields['weight'] = self.m.read_u16(argv[1] + 64)
        return status

    def callout_add(self, argv, orig):
        require(self.m, 'FwpmCalloutAdd0', PASSIVE_LEVEL)
        session = self._session('FwpmCalloutAdd0', argv[0])
        key = _guid(self.m.read(argv[1], 16))
        if self._find('callout', key, session):
            return STATUS_FWP_ALREADY_EXISTS
        layer = _guid(self.m.read(argv[1] + 64, 16))
        status = orig(list(argv))
        obj = self._add('callout', key, session)
        obj.fields['layer'] = layer
        return status

    def filter_add(self, argv, orig):
        require(self.m, 'FwpmFilterAdd0', PASSIVE_LEVEL)
        engine, pfilter, sd, id_ptr = argv
        session = self._session('FwpmFilterAdd0', engine)
        raw = self.m.read(pfilter, 200)
        key = _guid(raw[0:16])
        flags = struct.unpack_from('<I', raw, 32)[0]
        layer = _guid(raw[64:80])
        sublayer = _guid(raw[80:96])
        action = struct.unpack_from('<I', raw, 128)[0]
        callout_key = _guid(raw[132:148])
        raw_context = struct.unpack_from('<Q', raw, 152)[0]
        if layer not in LAYERS:
            raise violation('FwpmFilterAdd0: layer {%s} is not one the harness models' % layer)
        sub = self._find('sublayer', sublayer, session)
        if sub is None:
            return STATUS_FWP_SUBLAYER_NOT_FOUND
        callout = None
        if action & ACTION_FLAG_CALLOUT:
            callout = self._find('callout', callout_key, session)
            if callout is None:
                return STATUS_FWP_CALLOUT_NOT_FOUND
            if callout.fields['layer'] != layer:
                raise violation('FwpmFilterAdd0: callout {%s} applies to layer {%s}, the filter is at '
                                '{%s}' % (callout_key, callout.fields['layer'], layer))
        elif action not in (ACTION_BLOCK, ACTION_PERMIT):
            return STATUS_INVALID_PARAMETER
        call = list(argv)
        if not id_ptr:
            # Completing speakeasy's handler, which writes the id unconditionally: it is optional.
            call[3] = self.m.alloc(8, 'FilterId')
        status = orig(call)
        obj = self._add('filter', key, session)
        obj.fields.update({'id': self.m.read_u64(call[3]), 'flags': flags, 'layer': layer,
                           'sublayer': sub, 'action': action, 'callout': callout_key if callout else None,
                           'context': raw_context})
        self._notify([obj], NOTIFY_ADD_FILTER, status)
        return status

    def _fwps_filter(self, obj, reg):
        flags = 0
        if obj.fields['flags'] & FWPM_FILTER_FLAG_CLEAR_ACTION_RIGHT:
            flags |= FWPS_FILTER_FLAG_CLEAR_ACTION_RIGHT
        if obj.fields['flags'] & FWPM_FILTER_FLAG_PERMIT_IF_CALLOUT_UNREGISTERED:
            flags |= FWPS_FILTER_FLAG_PERMIT_IF_CALLOUT_UNREGISTERED
        return (struct.pack('<Q', obj.fields['id']) + struct.pack('<iiQ', FWP_EMPTY, 0, 0)
                + struct.pack('<HHI', obj.fields['sublayer'].fields.get('weight', 0), flags, 0)
                + struct.pack('<Q', 0) + struct.pack('<II', obj.fields['action'], reg.id if reg else 0)
                + struct.pack('<QQ', obj.fields['context'], 0))

    def _notify(self, filters, notify_type, status):
        """Calls notifyFn of the registered callout each filter names, before the routine returns."""
        if status is None or status & 0xFFFFFFFF >= 0x80000000 or self.m.stop is not None:
            return
        calls, regs = [], []
        for obj in filters:
            reg = self._registered_by_key(obj.fields.get('callout'))
            if reg is None:
                continue
            block = self.m.alloc(64 + 16, 'FWPS_FILTER1 (notify)')
            self.m.write(block, self._fwps_filter(obj, reg))
            key_ptr = 0
            if notify_type == NOTIFY_ADD_FILTER:
                key_ptr = block + 64
                self.m.write(key_ptr, uuid.UUID(obj.key).bytes_le)
            calls.append((reg.notify, [notify_type, key_ptr, block]))
            regs.append((reg, obj))
        if not calls:
            return
        label = 'notifyFn (%s)' % ('ADD_FILTER' if notify_type == NOTIFY_ADD_FILTER else 'DELETE_FILTER')
        previous = {}

        def before(i):
            previous['phase'] = self.m.phase
            previous['irql'] = self.m.irql
            self.m.phase = label
            self.m.irql = CALLBACKS['notifyFn'][0]
            self._enter()

        def after(i):
            self._leave(label, regs[i][0], 'notify')
            self.m.phase = previous.get('phase', self.m.phase)
            self.m.irql = previous.get('irql', self.m.irql)
            rv = self.m.se.reg_read('rax') & 0xFFFFFFFF
            if notify_type == NOTIFY_ADD_FILTER and rv >= 0x80000000:
                self.rule_breaks.append('notifyFn vetoed filter %d (%s): this harness expects the '
                                        'sample to accept its own filters' % (regs[i][1].fields['id'], _status(rv)))

        self.m.call_back_before_return(calls, before=before, after=after, result=status)

    # ---- callout registration -----------------------------------------------------------------

    def _registered_by_key(self, key):
        if key is None:
            return None
        return next((r for r in self.registrations.values() if r.key == key and r.state == 'registered'), None)

    def register(self, argv, orig):
        device, callout, id_ptr = argv
        require(self.m, 'FwpsCalloutRegister1', PASSIVE_LEVEL)
        devices = getattr(self.m, 'devices', None)
        dev = devices.live(device) if devices is not None else None
        if dev is None:
            raise violation('FwpsCalloutRegister1: 0x%x is not a live device object of the driver' % device)
        raw = self.m.read(callout, 48)
        key = _guid(raw[0:16])
        flags, = struct.unpack_from('<I', raw, 16)
        classify, notify, delete = struct.unpack_from('<QQQ', raw, 24)
        for name, fn in (('classifyFn', classify), ('notifyFn', notify)):
            if not fn or not self.m.in_image(fn):
                raise violation('FwpsCalloutRegister1: %s 0x%x is not in the driver image' % (name, fn))
        if delete and not self.m.in_image(delete):
            raise violation('FwpsCalloutRegister1: flowDeleteFn 0x%x is not in the driver image' % delete)
        if self._registered_by_key(key):
            return STATUS_FWP_ALREADY_EXISTS
        call = list(argv)
        if not id_ptr:
            call[2] = self.m.alloc(8, 'CalloutId')
        status = orig(call)
        if status & 0xFFFFFFFF >= 0x80000000:
            return status
        callout_id = self.m.read_u32(call[2])
        reg = Registration(callout_id, key, flags, classify, notify, delete, dev)
        for fn, what in ((classify, 'classifyFn'), (notify, 'notifyFn'), (delete, 'flowDeleteFn')):
            events.of(self.m).name(fn, what, 'filter engine')
        self.registrations[callout_id] = reg
        dev.on_delete.append(self._device_deleted)
        return status

    def _device_deleted(self, device):
        left = [r for r in self.registrations.values() if r.device is device and r.state == 'registered']
        if left:
            raise violation('%s deleted by %s while callout(s) %s are still registered with it: '
                            'unregister every callout before deleting the device object'
                            % (device.describe(), device.deleted_by, ', '.join(str(r.id) for r in left)))

    def _contexts_of(self, callout_id):
        n = 0
        for flow in self.flows.values():
            n += sum(1 for (_layer, c) in flow.contexts if c == callout_id)
            n += sum(1 for (_layer, c) in flow.pending if c == callout_id)
        return n

    def unregister(self, argv, orig):
        callout_id = argv[0] & 0xFFFFFFFF
        require(self.m, 'FwpsCalloutUnregisterById0', PASSIVE_LEVEL)
        speakeasy = orig(list(argv))
        reg = self.registrations.get(callout_id)
        if reg is None or reg.state != 'registered':
            # speakeasy: 0x80320001 (a user-mode HRESULT) for an unknown id, success for one it saw.
            return STATUS_FWP_CALLOUT_NOT_FOUND
        if speakeasy not in (STATUS_SUCCESS, FWP_E_CALLOUT_NOT_FOUND):
            return speakeasy
        live = self._contexts_of(callout_id)
        if live:
            reg.busy += 1
            self.busy_returns += 1
            status = STATUS_DEVICE_BUSY
        else:
            reg.state = 'unregistered'
            status = STATUS_SUCCESS
        self._race(reg, status)
        return status

    def _race(self, reg, status):
        """racing.py: while FwpsCalloutUnregisterById0 runs, another processor is in classifyFn
        for a filter that names the callout, and a flow carrying one of its contexts ends there
        (flowDeleteFn, under the engine's flow lock). Both at DISPATCH_LEVEL."""
        calls, befores, afters = [], [], []
        order = lockorder.of(self.m)
        saved = {}
        obj = next((o for o in reversed(self.objects) if o.kind == 'filter'
                    and o.fields.get('callout') == reg.key), None)
        if obj is not None:
            params = _Params(DISPATCH_LEVEL, remote_address='198.51.100.77', remote_port=443,
                             protocol='tcp', local_port=50077, layer_id=None, value_count=None)
            layer = obj.fields['layer'] if obj.fields['layer'] in LAYERS else LAYER_ALE_AUTH_CONNECT_V4
            label = 'classifyFn of callout %d racing FwpsCalloutUnregisterById0 (another processor)' % reg.id
            item = (obj, reg, self._fields(params, layer), FWPS_METADATA_FIELD_PROCESS_ID, 0, 0, True,
                    ACTION_CONTINUE, label)
            area = self._classify_area()
            self._batch_calls = self._batch_hooks([item], area, [])
            calls.append((self._looper(), [1, area + 0x3a0]))

            def before_classify():
                order.switch_to()
                saved['classify'] = (self.m.phase, self.m.irql)
                self.m.irql = CALLBACKS['classifyFn'][0]

            def after_classify():
                self.m.phase, self.m.irql = saved['classify']
                self._area_active = False
                order.switch_back()

            befores.append(before_classify)
            afters.append(after_classify)
        flow = next((f for f in self.flows.values() if any(c == reg.id for (_l, c) in f.contexts)), None)
        if flow is not None:
            key = next(k for k in flow.contexts if k[1] == reg.id)
            context = flow.contexts.pop(key)
            label = 'flowDeleteFn of callout %d racing FwpsCalloutUnregisterById0 (flow 0x%x ends on ' \
                    'another processor)' % (reg.id, flow.id)
            calls.append((reg.delete, [key[0], reg.id, context]))

            def before_delete():
                order.switch_to([FLOW_LOCK])
                self._before_delete(label)

            def after_delete():
                self._after_delete(label, reg, flow, None)
                order.switch_back()

            befores.append(before_delete)
            afters.append(after_delete)
        if not calls:
            return
        flights = inflight.of(self.m)
        if obj is not None and flights.available():
            return self._race_in_flight(reg, status, item, calls[1:], befores[1:], afters[1:])
        race = racing.of(self.m)
        token = race.begin('; '.join(c for c in (
            'classifyFn of callout %d' % reg.id if obj is not None else '',
            'flowDeleteFn of callout %d' % reg.id if flow is not None else '') if c)
            + ' racing FwpsCalloutUnregisterById0 (another processor)')

        def after(i):
            afters[i]()
            if i == len(calls) - 1:
                race.end(token)

        self.m.call_back_before_return(calls, before=lambda i: befores[i](), after=after, result=status)

    def _race_in_flight(self, reg, status, item, calls, befores, afters):
        """inflight.py: on another processor, the flow carrying a context of the callout ends
        (flowDeleteFn, `calls`, if any, start to finish) and then a classifyFn that was already
        dispatched for a filter naming the callout runs; that classifyFn is suspended once it has
        entered the driver's barrier (or before it touches driver pool), FwpsCalloutUnregisterById0
        returns, and it resumes when the driver waits or unload returns. Its classify structures
        are its own (the engine's, valid during the call)."""
        area = inflight.of(self.m).memory(0x600, 'wfp.classify (in flight)')
        pair = self._batch_hooks([item], area, [])
        label = item[-1]
        race = racing.of(self.m)
        token = race.begin('%sclassifyFn of callout %d racing FwpsCalloutUnregisterById0 (another '
                           'processor)' % ('flowDeleteFn and ' if calls else '', reg.id))
        holder = {}
        saved = {}
        order = lockorder.of(self.m)

        def before_classify():
            order.switch_to()
            saved['classify'] = (self.m.phase, self.m.irql)
            self.m.irql = CALLBACKS['classifyFn'][0]
            self._batch_calls = pair
            holder['flight'].pausable = True

        def after_classify():
            holder['flight'].pausable = False
            self.m.phase, self.m.irql = saved['classify']
            self._area_active = False
            order.switch_back()

        befores = list(befores) + [before_classify]
        afters = list(afters) + [after_classify]
        calls = list(calls) + [(self._looper(), [1, area + 0x3a0])]
        flights = inflight.of(self.m)
        function = flights.sequence(calls, lambda i: befores[i](), lambda i: afters[i]())

        def resume():
            self._batch_calls = pair

        holder['flight'] = flights.start(function, [], label, {
            'pausable': False, 'resume': resume, 'end': lambda: race.end(token)}, result=status)

    # ---- teardown faults (run.py: DriverUnload fault runs) -----------------------------------

    def _unregister_faults(self, argv):
        """FwpsCalloutUnregisterById0's documented failures, and one it does not document. The
        callout stays registered (STATUS_FWP_IN_USE: another thread is registering or unregistering;
        retry), or is no longer registered (STATUS_FWP_CALLOUT_NOT_FOUND) while the flows that carry
        its contexts still end, calling flowDeleteFn."""
        return [(STATUS_FWP_IN_USE, 'STATUS_FWP_IN_USE', self._in_use),
                (STATUS_FWP_CALLOUT_NOT_FOUND, 'STATUS_FWP_CALLOUT_NOT_FOUND', self._gone),
                (STATUS_INTERNAL_ERROR, 'STATUS_INTERNAL_ERROR (undocumented)')]

    def _in_use(self, argv, orig):
        """STATUS_FWP_IN_USE: the callout stays registered, and a classifyFn already dispatched
        for it on another processor is in flight across the failed call (inflight.py)."""
        reg = self.registrations.get(argv[0] & 0xFFFFFFFF)
        if reg is not None and reg.state == 'registered':
            self._race(reg, STATUS_FWP_IN_USE)
        return STATUS_FWP_IN_USE

    def _gone(self, argv, orig):
        reg = self.registrations.get(argv[0] & 0xFFFFFFFF)
        if reg is not None:
            reg.state = 'unregistered'
        return STATUS_FWP_CALLOUT_NOT_FOUND

    def _remove_faults(self, argv):
        """FwpsFlowRemoveContext0's documented statuses, forced: STATUS_PENDING (a classify is in
        progress: flowDeleteFn runs later), STATUS_UNSUCCESSFUL (the flow ended on another processor
        just before: its flowDeleteFn ran there), and an undocumented error (the context stays)."""
        return [(STATUS_PENDING, 'STATUS_PENDING (flowDeleteFn later)',
                 lambda a, orig: self.remove(a, orig, force='pending')),
                (STATUS_UNSUCCESSFUL, 'STATUS_UNSUCCESSFUL (the flow ended on another processor first)',
                 lambda a, orig: self.remove(a, orig, force='ended')),
                (STATUS_INTERNAL_ERROR, 'STATUS_INTERNAL_ERROR (undocumented; the context stays)')]

    # ---- flow contexts ------------------------------------------------------------------------

    def associate(self, argv, orig):
        flow_id, layer_id, callout_id, context = argv
        layer_id &= 0xFFFF
        callout_id &= 0xFFFFFFFF
        require(self.m, 'FwpsFlowAssociateContext0', DISPATCH_LEVEL)
        reg = self.registrations.get(callout_id)
        if reg is None or reg.state != 'registered':
            return STATUS_FWP_CALLOUT_NOT_FOUND
        if not context or not reg.delete:
            return STATUS_INVALID_PARAMETER
        if layer_id not in FLOW_LAYERS:
            return STATUS_INVALID_PARAMETER
        # Its Remarks: "There must be a callout in the filter engine at the layer identified by the
        # layerId parameter that has registered a flowDeleteFn ... Otherwise, the call ... will
        # return STATUS_INVALID_PARAMETER"; "associates a single context with a single added
        # callout" (learn.microsoft.com, fwpsk/nf-fwpsk-fwpsflowassociatecontext0). So the callout
        # id must be one added (FwpmCalloutAdd0) at that very layer.
        added = self._find('callout', reg.key)
        if added is None or LAYERS.get(added.fields['layer'], (None,))[0] != layer_id:
            self.refused_layers.append('callout %d%s, context for run-time layer %d' % (
                callout_id, ' (not added)' if added is None else ' (added at %s)' % LAYERS.get(
                    added.fields['layer'], (0, added.fields['layer']))[1], layer_id))
            return STATUS_INVALID_PARAMETER
        flow = self.flows.get(flow_id)
        if flow is None or flow.ended:
            return STATUS_NOT_FOUND
        lockorder.of(self.m).momentary(*FLOW_LOCK)
        if (layer_id, callout_id) in flow.contexts or (layer_id, callout_id) in flow.pending:
            return STATUS_OBJECT_NAME_EXISTS
        flow.contexts[(layer_id, callout_id)] = context
        self.associated += 1
        return STATUS_SUCCESS

    def remove(self, argv, orig, force=None):
        flow_id, layer_id, callout_id = argv
        layer_id &= 0xFFFF
        callout_id &= 0xFFFFFFFF
        require(self.m, 'FwpsFlowRemoveContext0', DISPATCH_LEVEL)
        flow = self.flows.get(flow_id)
        key = (layer_id, callout_id)
        order = lockorder.of(self.m)
        order.momentary(*FLOW_LOCK)
        if flow is None or key not in flow.contexts:
            self.removals['unsuccessful'] += 1
            return STATUS_UNSUCCESSFUL
        context = flow.contexts.pop(key)
        reg = self.registrations[callout_id]
        label = 'flowDeleteFn (flow 0x%x, removed by FwpsFlowRemoveContext0)' % flow_id
        if force == 'ended':
            # The flow ended on another processor just before: the engine called flowDeleteFn there
            # (holding its flow lock), and the removal finds no context.
            ended = 'flowDeleteFn (flow 0x%x ended on another processor)' % flow_id
            self.removals['unsuccessful'] += 1

            def before(i):
                order.switch_to([FLOW_LOCK])
                self._before_delete(ended)
                events.of(self.m).next_cpu = 'another'

            def after(i):
                self._after_delete(ended, reg, flow, None)
                order.switch_back()

            self.m.call_back_before_return([(reg.delete, [layer_id, callout_id, context])],
                                           before=before, after=after, result=STATUS_UNSUCCESSFUL)
            return STATUS_UNSUCCESSFUL
        if force == 'pending' or self.pending_armed > self.pending_fired:
            # A classify is in progress on the flow (another processor): flowDeleteFn runs later.
            if force != 'pending':
                self.pending_fired += 1
            self.removals['pending'] += 1
            flow.pending[key] = context
            late = 'flowDeleteFn (flow 0x%x, after STATUS_PENDING)' % flow_id
            sync = self.m.sync
            sync.defer(reg.delete, [layer_id, callout_id, context], late,
                       before=lambda: self._before_delete(late),
                       after=lambda: self._after_delete(late, reg, flow, key, pending=True),
                       locks=[FLOW_LOCK])
            return STATUS_PENDING
        self.removals['success'] += 1
        order.acquire(*FLOW_LOCK)

        def after():
            self._after_delete(label, reg, flow, None)
            order.release(FLOW_LOCK[0])

        self._call_now(reg.delete, [layer_id, callout_id, context],
                       before=lambda: self._before_delete(label), after=after)
        return STATUS_SUCCESS

    def _before_delete(self, label):
        self._saved_phase = self.m.phase
        self._saved_irql = self.m.irql
        self.m.phase = label
        # flowDeleteFn is called at IRQL <= DISPATCH_LEVEL (irql_table.CALLBACKS): the highest.
        self.m.irql = CALLBACKS['flowDeleteFn'][0]
        self._enter()

    def _after_delete(self, label, reg, flow, key, pending=False):
        self._leave(label, reg, 'flowDeleteFn')
        self.m.phase = getattr(self, '_saved_phase', self.m.phase)
        self.m.irql = getattr(self, '_saved_irql', self.m.irql)
        if pending:
            flow.pending.pop(key, None)
        self.deleted_contexts += 1

    def _call_now(self, function, args, before, after):
        """From inside a routine speakeasy does not implement: call `function(args)` (3 arguments)
        before returning to the driver, through one reusable trampoline (so a thousand calls add no
        code hooks)."""
        if self._slot is None:
            self._make_slot()
        if self._slot_busy:
            self.m.call_back_before_return([(function, args)], before=lambda i: before(),
                                           after=lambda i: after(), result=STATUS_SUCCESS)
            return
        slot, base = self._slot
        a = (list(args) + [0, 0, 0])[:3]
        self.m.write(slot, struct.pack('<QQQQQQ', a[0], a[1], a[2], function,
                                       self.m.se.emu.get_ret_address(), STATUS_SUCCESS))
        self._slot_busy = True

        def recorded_before():
            before()
            events.of(self.m).enter(function, self.m.irql)

        def recorded_after():
            events.of(self.m).leave()
            after()
        self._slot_calls = (recorded_before, recorded_after)
        self.m.se.emu.set_ret_address(base)

    def _make_slot(self):
        slot = self.m.alloc(0x40, 'wfp.slot')
        base = self.m.alloc(0x80, 'wfp.trampoline')
        code = bytearray()
        code += b'\x48\x83\xec\x28'                        # sub rsp, 0x28
        code += b'\x48\xb8' + struct.pack('<Q', slot)       # mov rax, slot
        code += b'\x48\x8b\x08'                            # mov rcx, [rax]
        code += b'\x48\x8b\x50\x08'                        # mov rdx, [rax+8]
        code += b'\x4c\x8b\x40\x10'                        # mov r8, [rax+16]
        code += b'\x48\x8b\x40\x18'                        # mov rax, [rax+24]
        call_at = base + len(code)
        code += b'\xff\xd0'                                # call rax
        back_at = base + len(code)
        code += b'\x48\x83\xc4\x28'                        # add rsp, 0x28
        code += b'\x48\xb8' + struct.pack('<Q', slot)       # mov rax, slot
        code += b'\x4c\x8b\x58\x20'                        # mov r11, [rax+32]
        code += b'\x48\x8b\x40\x28'                        # mov rax, [rax+40]
        code += b'\x41\xff\xe3'                            # jmp r11
        self.m.write(base, bytes(code))
        self._slot = (slot, base)

        def on_call():
            self._slot_calls[0]()

        def on_back():
            before, after = self._slot_calls
            self._slot_busy = False
            after()

        self.m.on_pc(call_at, on_call)
        self.m.on_pc(back_at, on_back)

    # ---- the engine calls the callouts --------------------------------------------------------

    def _enter(self):
        self.m.instructions = 0
        self.m.counting = True

    def _leave(self, label, reg, what):
        self.m.counting = False
        self.callback_counts.append((label, '0x%x (%s of callout %d)' % (
            {'classify': reg.classify, 'notify': reg.notify, 'flowDeleteFn': reg.delete}[what],
            what, reg.id), self.m.instructions))

    def _live_filter(self, layer):
        filters = [o for o in self.objects if o.kind == 'filter' and o.state == 'live'
                   and o.fields['layer'] == layer]
        return filters[0] if filters else None

    def _classify_area(self):
        if self._area is None:
            size = 0x600
            self._area = self.m.alloc(size, 'wfp.classify')
            start = self._area

            def touched(emu, access, where, length, value, ctx):
                if self._area_active or self.m.stop is not None:
                    return
                self.m.halt(KernelStop(
                    'bugcheck', 'PAGE_FAULT_IN_NONPAGED_AREA: the driver touched the classify '
                    'structures at 0x%x during %s, after the classifyFn that received them '
                    'returned: they belong to the filter engine and are valid only during the call'
                    % (where, self.m.phase), code=0x50, params=(where,)))

            self.m.se.add_mem_read_hook(touched, begin=start, end=start + size - 1)
            self.m.se.add_mem_write_hook(touched, begin=start, end=start + size - 1)
        return self._area

    def _classify(self, filter_obj, reg, values, meta_bits, flow_handle, flow_context, write_right,
                  preset, label, irql):
        """Builds the classify structures, calls classifyFn, returns (actionType, rights) after."""
        results = self._classify_batch([(filter_obj, reg, values, meta_bits, flow_handle, flow_context,
                                         write_right, preset, label)], irql)
        return results[0] if results else (preset, 0)

    def _classify_batch(self, items, irql):
        """Calls classifyFn once per item, in one emulator run (a loop in a harness trampoline; a
        thousand separate runs would cost seconds), each with freshly built structures that are
        poisoned again as soon as it returns. Returns [(actionType, rights)] of the calls made."""
        area = self._classify_area()
        results = []
        self._batch_calls = self._batch_hooks(items, area, results)
        # classifyFn is called at IRQL <= DISPATCH_LEVEL (irql_table.CALLBACKS): the highest, whatever
        # the step says.
        irql = max(irql, CALLBACKS['classifyFn'][0])
        self.m.call(self._looper(), [len(items), area + 0x3a0], phase=items[0][-1], irql=irql)
        self._area_active = False
        return results

    def _batch_hooks(self, items, area, results):
        """The looper's (before, after) for one batch of classify items."""
        state = {'i': 0}

        def before():
            i = state['i']
            filter_obj, reg, values, meta_bits, flow_handle, flow_context, write_right, preset, label = items[i]
            self._write_classify(area, filter_obj, reg, values, meta_bits, flow_handle, flow_context,
                                 write_right, preset)
            self.m.phase = label
            self._area_active = True
            events.of(self.m).enter(reg.classify, self.m.irql)
            self._enter()

        def after():
            i = state['i']
            reg, label = items[i][1], items[i][-1]
            self._leave(label, reg, 'classify')
            events.of(self.m).leave()
            self._area_active = False
            out = area + 0x370
            action, = struct.unpack('<I', self.m.read(out, 4))
            rights, = struct.unpack('<I', self.m.read(out + 24, 4))
            results.append((action, rights))
            self.m.write(area, bytes([POISON]) * 0x600)
            state['i'] = i + 1

        return before, after

    def _write_classify(self, area, filter_obj, reg, values, meta_bits, flow_handle, flow_context,
                        write_right, preset):
        values_hdr, values_arr = area, area + 0x10
        meta, filt, out, args = area + 0x210, area + 0x330, area + 0x370, area + 0x3a0
        layer_id, count, fields = values
        arr = bytearray(16 * MAX_FIELDS)
        for index, (kind, value) in fields.items():
            if index < MAX_FIELDS:
                struct.pack_into('<iiQ', arr, 16 * index, kind, 0, value)
        self.m.write(values_arr, bytes(arr))
        self.m.write(values_hdr, struct.pack('<HHIQ', layer_id, 0, count, values_arr))
        md = bytearray(METADATA_SIZE)
        struct.pack_into('<I', md, 0, meta_bits)
        struct.pack_into('<Q', md, 32, flow_handle)
        struct.pack_into('<Q', md, 64, 4242)             # processId
        self.m.write(meta, bytes(md))
        self.m.write(filt, self._fwps_filter(filter_obj, reg))
        rights = FWPS_RIGHT_ACTION_WRITE if write_right else 0
        self.m.write(out, struct.pack('<IIQQIII', preset, 0, 0, 0, rights, 0, 0) + b'\0' * 4)
        self.m.write(args, struct.pack('<8Q', values_hdr, meta, 0, 0, filt, flow_context, out, reg.classify))

    def _looper(self):
        """A trampoline that calls classifyFn `count` times with its seven arguments from an
        argument block the harness rewrites before each call (the emulator's own call passes only
        four arguments correctly on x64): loop(count, block)."""
        if getattr(self, '_looper_at', None) is None:
            head = bytes.fromhex(
                '53'              # push rbx
                '56'              # push rsi
                '4883ec48'        # sub rsp, 0x48
                '4889ce'          # mov rsi, rcx        (count)
                '4889d3')         # mov rbx, rdx        (argument block)
            body = bytes.fromhex(
                '488b4320'        # mov rax, [rbx+0x20]
                '4889442420'      # mov [rsp+0x20], rax
                '488b4328'        # mov rax, [rbx+0x28]
                '4889442428'      # mov [rsp+0x28], rax
                '488b4330'        # mov rax, [rbx+0x30]
                '4889442430'      # mov [rsp+0x30], rax
                '488b0b'          # mov rcx, [rbx]
                '488b5308'        # mov rdx, [rbx+8]
                '4c8b4310'        # mov r8, [rbx+0x10]
                '4c8b4b18'        # mov r9, [rbx+0x18]
                'ff5338')         # call [rbx+0x38]
            tail = bytes.fromhex('48ffce')           # dec rsi
            back = -(len(body) + len(tail) + 2)
            tail += bytes([0x75, back & 0xFF])       # jnz loop
            tail += bytes.fromhex(
                '4883c448'        # add rsp, 0x48
                '5e'              # pop rsi
                '5b'              # pop rbx
                'c3')             # ret
            at = self.m.alloc(0x100, 'wfp.looper')
            self.m.write(at, head + body + tail)
            self._looper_at = at
            loop, returned = at + len(head), at + len(head) + len(body)
            emu, module = self.m.se.emu, self.m.module
            # speakeasy resolves the driver's imports through the module the run started in; this
            # run starts here, outside the image, so make the driver that module.
            self.m.on_pc(at, lambda: setattr(emu, 'curr_mod', module))
            self.m.on_pc(loop, lambda: self._batch_calls[0]())
            self.m.on_pc(returned, lambda: self._batch_calls[1]())
        return self._looper_at

    def _check_verdict(self, reg, filter_obj, before, after, step_label):
        preset, write_right = before
        action, rights = after
        terminating = filter_obj.fields['action'] == ACTION_CALLOUT_TERMINATING
        inspection = filter_obj.fields['action'] == ACTION_CALLOUT_INSPECTION
        problems = []
        if not write_right:
            if action != preset or rights != 0:
                problems.append('changed the action (%s -> %s) without FWPS_RIGHT_ACTION_WRITE: it '
                                'overrode a decision it may not override' % (
                                    ACTION_NAMES.get(preset, hex(preset)), ACTION_NAMES.get(action, hex(action))))
        else:
            if terminating and action not in (ACTION_BLOCK, ACTION_PERMIT):
                problems.append('a terminating callout returned %s, not BLOCK or PERMIT'
                                % ACTION_NAMES.get(action, hex(action)))
            if inspection and action in (ACTION_BLOCK, ACTION_PERMIT):
                problems.append('an inspection callout returned %s' % ACTION_NAMES[action])
            if action == ACTION_BLOCK and rights & FWPS_RIGHT_ACTION_WRITE:
                problems.append('set BLOCK without clearing FWPS_RIGHT_ACTION_WRITE')
            if (action == ACTION_PERMIT and rights & FWPS_RIGHT_ACTION_WRITE
                    and filter_obj.fields['flags'] & FWPM_FILTER_FLAG_CLEAR_ACTION_RIGHT):
                problems.append('set PERMIT on a CLEAR_ACTION_RIGHT filter without clearing the write right')
        for p in problems:
            self.rule_breaks.append('%s: classifyFn of callout %d %s' % (step_label, reg.id, p))
        return problems

    def _fields(self, step, default_layer):
        layer_id, _name, count = LAYERS[default_layer]
        if step.get('layer_id') is not None:
            layer_id = step['layer_id'] & 0xFFFF
        if step.get('value_count') is not None:
            count = step['value_count']
        protocol = step['protocol'].lower()
        proto = PROTOCOLS.get(protocol)
        if proto is None:
            proto = int(protocol, 0)
        remote = _ipv4(step['remote_address'])
        fields = {FIELD_LOCAL_ADDRESS: (FWP_UINT32, _ipv4('192.0.2.5')),
                  FIELD_LOCAL_PORT: (FWP_UINT16, step['local_port'] & 0xFFFF),
                  FIELD_PROTOCOL: (FWP_UINT8, proto),
                  FIELD_REMOTE_ADDRESS: (FWP_UINT32, remote),     # host byte order
                  FIELD_REMOTE_PORT: (FWP_UINT16, step['remote_port'] & 0xFFFF)}
        fields = {i: v for i, v in fields.items() if i < count}
        return layer_id, count, fields

    def run_step(self, step):
        if step.kind == 'connect':
            return self._connect(step)
        if step.kind == 'flow-established':
            return self._flow_established(step, step['flow'], step.label())
        if step.kind == 'flows':
            return self._flows(step)
        return self._flow_end(step)

    def _target(self, layer):
        obj = self._live_filter(layer)
        if obj is None:
            return None, None, 'no live filter at layer %s' % LAYERS[layer][1]
        reg = self._registered_by_key(obj.fields['callout'])
        return obj, reg, None

    def _connect(self, step):
        if step['preset'] not in ACTIONS:
            return False, 'preset must be one of %s' % ', '.join(ACTIONS)
        obj, reg, problem = self._target(LAYER_ALE_AUTH_CONNECT_V4)
        if problem:
            return False, problem
        if reg is None:
            verdict = 'block' if obj.fields['action'] == ACTION_CALLOUT_TERMINATING else 'permit'
            return step['expect'] == verdict, 'callout not registered: the filter acts as %s' % verdict
        preset = ACTIONS[step['preset']]
        values = self._fields(step, LAYER_ALE_AUTH_CONNECT_V4)
        label = 'classify %s' % step.label()
        action, rights = self._classify(obj, reg, values, FWPS_METADATA_FIELD_PROCESS_ID, 0, 0,
                                        step['write_right'], preset, label, step.irql)
        if self.m.stop is not None:
            return False, 'the run stopped in classifyFn'
        problems = self._check_verdict(reg, obj, (preset, step['write_right']), (action, rights), label)
        unchanged = action == preset and rights == (FWPS_RIGHT_ACTION_WRITE if step['write_right'] else 0)
        got = 'unchanged' if unchanged else ACTION_NAMES.get(action, hex(action))
        detail = 'classifyFn returned %s (rights %d)' % (ACTION_NAMES.get(action, hex(action)), rights)
        if problems:
            return False, detail + '; ' + '; '.join(problems)
        return got == step['expect'], detail + ('' if got == step['expect'] else
                                                 '; expected %s' % step['expect'])

    def _flow_item(self, step, flow_id, label_text, obj, reg):
        """A new (or again classified) flow and the classify item that establishes it."""
        flow = self.flows.get(flow_id)
        if flow is None or flow.ended:
            flow = self.flows[flow_id] = Flow(flow_id)
        values = self._fields(step, LAYER_ALE_FLOW_ESTABLISHED_V4)
        bits = FWPS_METADATA_FIELD_PACKET_DIRECTION
        handle = 0
        if step['flow_handle']:
            bits |= FWPS_METADATA_FIELD_FLOW_HANDLE
            handle = 0 if step['null_flow_handle'] else flow_id
        context = flow.contexts.get((FLOW_ESTABLISHED_V4, reg.id), 0)
        item = (obj, reg, values, bits, handle, context, True, ACTION_CONTINUE, 'classify %s' % label_text)
        return item, flow, bool(context)

    def _flow_result(self, step, item, flow, had, result):
        obj, reg, label = item[0], item[1], item[-1]
        problems = self._check_verdict(reg, obj, (ACTION_CONTINUE, True), result, label)
        has = (FLOW_ESTABLISHED_V4, reg.id) in flow.contexts
        detail = 'flow 0x%x: %s' % (flow.id, 'has a context' if has else 'no context')
        if problems:
            return False, detail + '; ' + '; '.join(problems)
        want = step['expect_context'] or had
        return has == want, detail + ('' if has == want else '; expected %s' % (
            'a context' if want else 'none'))

    def _flow_established(self, step, flow_id, label_text):
        obj, reg, problem = self._target(LAYER_ALE_FLOW_ESTABLISHED_V4)
        if problem:
            return False, problem
        if reg is None:
            return not step['expect_context'], 'callout not registered: the inspection filter is ignored'
        item, flow, had = self._flow_item(step, flow_id, label_text, obj, reg)
        results = self._classify_batch([item], step.irql)
        if self.m.stop is not None or not results:
            return False, 'the run stopped in classifyFn'
        return self._flow_result(step, item, flow, had, results[0])

    def _flows(self, step):
        obj, reg, problem = self._target(LAYER_ALE_FLOW_ESTABLISHED_V4)
        if problem or reg is None:
            return False, problem or 'the flow callout is not registered'
        base = _Params(step.irql, remote_address='198.51.100.20', remote_port=443, protocol='tcp',
                       local_port=50001, flow_handle=True, null_flow_handle=False,
                       expect_context=True, layer_id=None, value_count=None)
        batch = []
        for i in range(step['count']):
            flow_id = step['first'] + i
            base['remote_port'] = 1024 + i % 60000
            batch.append(self._flow_item(base, flow_id, 'flows #%d (flow 0x%x)' % (i + 1, flow_id), obj, reg))
        results = self._classify_batch([b[0] for b in batch], step.irql)
        if self.m.stop is not None or len(results) != len(batch):
            return False, 'the run stopped at flow #%d' % (len(results) + 1)
        failures = sum(1 for (item, flow, had), result in zip(batch, results, strict=True)
                       if not self._flow_result(base, item, flow, had, result)[0])
        live = sum(1 for f in self.flows.values() if f.contexts and not f.ended)
        return failures == 0, '%d flow(s) established in one run, %d without the expected context; ' \
                              '%d flow(s) now carry a context' % (step['count'], failures, live)

    def _flow_end(self, step):
        flow = self.flows.get(step['flow'])
        if flow is None or flow.ended:
            return False, 'no live flow 0x%x' % step['flow']
        flow.ended = True
        calls = list(flow.contexts.items())
        flow.contexts.clear()
        for (layer, callout_id), context in calls:
            reg = self.registrations[callout_id]
            label = 'flowDeleteFn (flow 0x%x ended)' % flow.id
            self._enter()
            order = lockorder.of(self.m)
            self.m.phase = label
            order.acquire(*FLOW_LOCK)
            self.m.call(reg.delete, [layer, callout_id, context], phase=label, irql=DISPATCH_LEVEL)
            order.release(FLOW_LOCK[0])
            self._leave(label, reg, 'flowDeleteFn')
            self.deleted_contexts += 1
            if self.m.stop is not None:
                return False, 'the run stopped in flowDeleteFn'
        return True, 'flow 0x%x ended: %d flowDeleteFn call(s)' % (flow.id, len(calls))

    def arm_race(self, step):
        self.pending_armed += step['count']

    def unfired_races(self):
        left = self.pending_armed - self.pending_fired
        return ['flow-delete-pending: %d removal(s) never happened (no FwpsFlowRemoveContext0 found a '
                'context)' % left] if left > 0 else []

    # ---- after the run (run.py's probe) ---------------------------------------------------------

    def probe(self):
        """What the engine may still do once the driver is unloaded: classify for every callout
        still registered, run the flowDeleteFn whose removal pended, end every flow that still
        carries a context (flowDeleteFn), each at DISPATCH_LEVEL."""
        done = []
        for reg in [r for r in self.registrations.values() if r.state == 'registered']:
            obj = next((o for o in reversed(self.objects) if o.kind == 'filter'
                        and o.fields.get('callout') == reg.key), None)
            if obj is None:
                continue
            params = _Params(DISPATCH_LEVEL, remote_address='198.51.100.99', remote_port=443,
                             protocol='tcp', local_port=50099, layer_id=None, value_count=None)
            context = next((c for f in self.flows.values() for (_l, cid), c in f.contexts.items()
                            if cid == reg.id), 0)
            label = 'probe: classifyFn of callout %d, still registered after unload' % reg.id
            layer = obj.fields['layer'] if obj.fields['layer'] in LAYERS else LAYER_ALE_AUTH_CONNECT_V4
            self._classify_batch([(obj, reg, self._fields(params, layer), FWPS_METADATA_FIELD_PROCESS_ID,
                                   0, context, True, ACTION_CONTINUE, label)], DISPATCH_LEVEL)
            done.append('classifyFn of callout %d' % reg.id)
            if self.m.stop is not None:
                return done
        work, self.m.sync.deferred = list(self.m.sync.deferred), []
        order = lockorder.of(self.m)
        for w in work:
            if w.before:
                w.before()
            self.m.phase = 'probe: ' + w.label
            order.acquire(*FLOW_LOCK)
            self.m.call(w.function, w.args, phase='probe: ' + w.label, irql=DISPATCH_LEVEL)
            order.release(FLOW_LOCK[0])
            if w.after:
                w.after()
            done.append('pending ' + w.label)
            if self.m.stop is not None:
                return done
        for flow in list(self.flows.values()):
            for (layer, callout_id), context in list(flow.contexts.items()):
                reg = self.registrations[callout_id]
                del flow.contexts[(layer, callout_id)]
                label = 'probe: flowDeleteFn (flow 0x%x ends after unload)' % flow.id
                self.m.phase = label
                order.acquire(*FLOW_LOCK)
                self.m.call(reg.delete, [layer, callout_id, context], phase=label, irql=DISPATCH_LEVEL)
                order.release(FLOW_LOCK[0])
                done.append('flowDeleteFn of callout %d (flow 0x%x)' % (callout_id, flow.id))
                if self.m.stop is not None:
                    return done
        return done

    # ---- audit --------------------------------------------------------------------------------

    def audit(self):
        if not self.sessions and not self.registrations:
            return []
        regs = list(self.registrations.values())
        left = ['%d' % r.id for r in regs if r.state == 'registered']
        live = [(f.id, k) for f in self.flows.values() for k in f.contexts]
        pending = [(f.id, k) for f in self.flows.values() for k in f.pending]
        open_sessions = [s for s in self.sessions.values() if s.open]
        open_txn = [s for s in self.sessions.values() if s.transaction is not None]
        live_filters = [o for o in self.objects if o.kind == 'filter' and o.state == 'live']
        checks = [
            ('every callout unregistered (FwpsCalloutUnregisterById0 succeeded)', not left,
             '%d registered, %d unregistered; STATUS_DEVICE_BUSY returned %d time(s)'
             % (len(regs), len(regs) - len(left), self.busy_returns)
             + ('; still registered: ' + ', '.join(left) if left else '')),
            ('every flow context deleted (flowDeleteFn called once for each)', not live and not pending,
             '%d associated, %d deleted; FwpsFlowRemoveContext0: %d synchronous, %d pending, %d without '
             'a context' % (self.associated, self.deleted_contexts, self.removals['success'],
                            self.removals['pending'], self.removals['unsuccessful'])
             + ('; still associated: %d' % len(live) if live else '')
             + ('; flowDeleteFn still pending (it would run after the driver is gone): %d' % len(pending)
                if pending else '')),
            ('every engine session closed, no transaction left open', not open_sessions and not open_txn,
             '%d session(s), %d open, %d transaction(s) open' % (len(self.sessions), len(open_sessions),
                                                                 len(open_txn))),
            ('no filter left in the engine', not live_filters,
             'left: ' + ', '.join('%d' % o.fields['id'] for o in live_filters) if live_filters
             else '%d filter(s) added, all deleted' % sum(1 for o in self.objects if o.kind == 'filter')),
            ('classifyFn honoured the action rights (never overrode a veto)', not self.rule_breaks,
             '; '.join(self.rule_breaks) or 'every classify followed the rules'),
        ]
        if self.associated or self.refused_layers:
            checks.append((ASSOCIATE_LAYER_CHECK, not self.refused_layers,
                           'refused with STATUS_INVALID_PARAMETER: ' + '; '.join(self.refused_layers)
                           if self.refused_layers else '%d context(s), each for a callout added at its '
                           'layer' % self.associated))
        return checks
