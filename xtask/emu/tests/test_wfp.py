"""The documented rules of the WFP, device-object and sync models, checked without a driver image."""
import os
import struct
import sys
import unittest
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
sys.path.insert(0, os.path.dirname(__file__))

from emukernel.errors import KernelStop  # noqa: E402
from emukernel.io import Devices  # noqa: E402
from emukernel.irql import DISPATCH_LEVEL, PASSIVE_LEVEL  # noqa: E402
from emukernel.sync import Sync  # noqa: E402
from emukernel.wfp import (ACTION_BLOCK, ACTION_CALLOUT_INSPECTION, ACTION_CALLOUT_TERMINATING,  # noqa: E402
                           ACTION_CONTINUE, ACTION_PERMIT, FWP_E_CALLOUT_NOT_FOUND,
                           LAYER_ALE_AUTH_CONNECT_V4, LAYER_ALE_FLOW_ESTABLISHED_V4,
                           STATUS_DEVICE_BUSY, STATUS_FWP_ALREADY_EXISTS, STATUS_FWP_CALLOUT_NOT_FOUND,
                           STATUS_FWP_NO_TXN_IN_PROGRESS, STATUS_FWP_SUBLAYER_NOT_FOUND,
                           STATUS_FWP_TXN_IN_PROGRESS, STATUS_INVALID_PARAMETER, STATUS_NOT_FOUND,
                           STATUS_OBJECT_NAME_EXISTS, STATUS_PENDING, STATUS_UNSUCCESSFUL, Flow, Wfp)
from test_models import FakeMachine  # noqa: E402

DRIVER = 0x7000
IMAGE = range(0x5000, 0x5800)
CLASSIFY, NOTIFY, DELETE = 0x5100, 0x5200, 0x5300
FLOW_LAYER = 52


class Emu:
    """The bits of speakeasy's emulator object the models touch."""

    def __init__(self):
        self.callbacks = []
        self.ret = 0x5555
        self.drivers = []

    def add_callback(self, module, name):
        self.callbacks.append((module, name))
        return 0xFEED0000 + len(self.callbacks)

    def get_ret_address(self):
        return self.ret

    def set_ret_address(self, address):
        self.ret = address


class WfpMachine(FakeMachine):
    def __init__(self):
        super().__init__(memory=0x40000)
        self.emu = Emu()
        self.module = None
        self.log = []
        self.pcs = {}

    def in_image(self, address):
        return address in IMAGE

    def driver_object(self):
        return DRIVER

    def read_u16(self, a):
        return struct.unpack('<H', self.read(a, 2))[0]

    def on_pc(self, address, callback):
        self.pcs[address] = callback

    def call_back_before_return(self, calls, before=None, after=None, result=None):
        self.callbacks.extend(calls)
        self.results.append(result)
        for i in range(len(calls)):
            if before:
                before(i)
            if after:
                after(i)

    def halt(self, stop):
        self.stop = stop

    def reg_read(self, register):
        return 0

    def add_mem_read_hook(self, *args, **kwargs):
        pass

    add_mem_write_hook = add_mem_read_hook

    def log_line(self, text):
        self.log.append(text)


def ok(args):
    return 0  # what speakeasy's own handlers answer for a known object


class ModelTest(unittest.TestCase):
    def setUp(self):
        self.m = WfpMachine()
        self.sync = Sync(self.m)
        self.devices = Devices(self.m)
        self.wfp = Wfp(self.m)
        # The reusable trampoline needs the emulator; here the call runs at once, as it would.
        self.wfp._call_now = lambda f, args, before, after: self.m.call_back_before_return(
            [(f, args)], before=lambda i: before(), after=lambda i: after())
        self.ids = iter(range(4, 400, 4))
        self.out = self.m.alloc(8, 'out')
        self.device = 0x9000
        self.devices.register(self.device, 'wdm', '', 0x100, 'IoCreateDevice')

    def call(self, name, *args, orig=ok):
        return self.m.routines[name](list(args), orig)

    def guid(self, text):
        address = self.m.alloc(16, 'guid')
        self.m.write(address, uuid.UUID(text).bytes_le)
        return address

    # ---- helpers that play the driver --------------------------------------------------------

    def register(self, key='11111111-0000-0000-0000-000000000001', delete=DELETE, classify=CLASSIFY):
        callout = self.m.alloc(48, 'FWPS_CALLOUT1')
        self.m.write(callout, uuid.UUID(key).bytes_le + struct.pack('<IIQQQ', 0, 0, classify, NOTIFY, delete))

        def speakeasy(args):
            self.m.write(args[2], struct.pack('<I', next(self.ids)))
            return 0

        status = self.call('FwpsCalloutRegister1', self.device, callout, self.out, orig=speakeasy)
        return status, self.m.read_u32(self.out)

    def engine(self, dynamic=True):
        session = self.m.alloc(72, 'session')
        self.m.write(session + 32, struct.pack('<I', 1 if dynamic else 0))

        def speakeasy(args):
            self.m.write_u64(args[4], 0xE0)
            return 0

        self.assertEqual(self.call('FwpmEngineOpen0', 0, 10, 0, session, self.out, orig=speakeasy), 0)
        return self.m.read_u64(self.out)

    def sublayer(self, engine, key='22222222-0000-0000-0000-000000000001'):
        block = self.m.alloc(72, 'sublayer')
        self.m.write(block, uuid.UUID(key).bytes_le)
        return self.call('FwpmSubLayerAdd0', engine, block, 0)

    def mcallout(self, engine, key='11111111-0000-0000-0000-000000000001', layer=LAYER_ALE_FLOW_ESTABLISHED_V4):
        block = self.m.alloc(88, 'callout')
        self.m.write(block, uuid.UUID(key).bytes_le)
        self.m.write(block + 64, uuid.UUID(layer).bytes_le)
        return self.call('FwpmCalloutAdd0', engine, block, 0, 0)

    def filter(self, engine, layer=LAYER_ALE_FLOW_ESTABLISHED_V4, callout='11111111-0000-0000-0000-000000000001',
               action=ACTION_CALLOUT_INSPECTION, sublayer='22222222-0000-0000-0000-000000000001', id_ptr=None):
        block = self.m.alloc(200, 'filter')
        self.m.write(block + 64, uuid.UUID(layer).bytes_le)
        self.m.write(block + 80, uuid.UUID(sublayer).bytes_le)
        self.m.write(block + 128, struct.pack('<I', action) + uuid.UUID(callout).bytes_le)
        self.m.write(block + 152, struct.pack('<Q', 0xC0C0))
        seen = {}

        def speakeasy(args):
            seen['id_ptr'] = args[3]
            self.m.write_u64(args[3], next(self.ids))
            return 0

        status = self.call('FwpmFilterAdd0', engine, block, 0, self.out if id_ptr is None else id_ptr,
                           orig=speakeasy)
        return status, seen.get('id_ptr')

    def added(self, key='11111111-0000-0000-0000-000000000001'):
        """The callout added (FwpmCalloutAdd0) at ALE_FLOW_ESTABLISHED_V4, where FLOW_LAYER's contexts
        are associated (FwpsFlowAssociateContext0 refuses a callout not added at the layer)."""
        if self.wfp._find('callout', key) is None:
            engine = self.engine(dynamic=False)  # the callout outlives the session
            self.assertEqual(self.mcallout(engine, key=key), 0)
            self.assertEqual(self.call('FwpmEngineClose0', engine), 0)

    def flow(self, flow_id):
        self.wfp.flows[flow_id] = Flow(flow_id)

    def failed(self):
        return {check: detail for check, good, detail in self.wfp.audit() if not good}


class CalloutRegistrationTest(ModelTest):
    def test_register_needs_a_live_device_and_image_functions(self):
        self.device = 0x9999
        with self.assertRaisesRegex(KernelStop, 'not a live device object'):
            self.register()
        self.device = 0x9000
        with self.assertRaisesRegex(KernelStop, 'classifyFn 0x1 is not in the driver image'):
            self.register(classify=1)
        self.assertEqual(self.register()[0], 0)
        self.assertEqual(self.register()[0], STATUS_FWP_ALREADY_EXISTS, 'the key is registered already')

    def test_register_is_passive_level_only(self):
        self.m.irql = DISPATCH_LEVEL
        with self.assertRaisesRegex(KernelStop, 'IRQL_NOT_LESS_OR_EQUAL'):
            self.register()

    def test_unregister_is_busy_while_a_context_lives_and_unknown_ids_are_not_found(self):
        _, callout = self.register()
        self.added()
        self.flow(0x10)
        self.flow(0x11)
        self.assertEqual(self.call('FwpsFlowAssociateContext0', 0x10, FLOW_LAYER, callout, 0xAB), 0)
        self.assertEqual(self.call('FwpsFlowAssociateContext0', 0x11, FLOW_LAYER, callout, 0xCD), 0)
        self.assertEqual(self.call('FwpsCalloutUnregisterById0', callout), STATUS_DEVICE_BUSY)
        self.assertEqual(self.m.callbacks, [(DELETE, [FLOW_LAYER, callout, 0xAB])],
                         'a flow carrying a context ends on another processor while it unregisters '
                         '(racing.py)')
        self.assertEqual(self.call('FwpsFlowRemoveContext0', 0x10, FLOW_LAYER, callout), STATUS_UNSUCCESSFUL,
                         'that context is gone')
        self.assertEqual(self.call('FwpsFlowRemoveContext0', 0x11, FLOW_LAYER, callout), 0)
        self.assertEqual(self.m.callbacks[1:], [(DELETE, [FLOW_LAYER, callout, 0xCD])],
                         'flowDeleteFn runs before FwpsFlowRemoveContext0 returns')
        self.assertEqual(self.call('FwpsCalloutUnregisterById0', callout), 0)
        # speakeasy answers a user-mode HRESULT for an unknown id and success for a repeated one.
        unknown = lambda args: FWP_E_CALLOUT_NOT_FOUND  # noqa: E731
        self.assertEqual(self.call('FwpsCalloutUnregisterById0', 999, orig=unknown), STATUS_FWP_CALLOUT_NOT_FOUND)
        self.assertEqual(self.call('FwpsCalloutUnregisterById0', callout), STATUS_FWP_CALLOUT_NOT_FOUND)
        self.assertEqual(self.failed(), {})

    def test_the_device_may_not_go_before_its_callouts(self):
        _, callout = self.register()
        with self.assertRaisesRegex(KernelStop, 'still registered with it'):
            self.call('IoDeleteDevice', self.device)

    def test_a_callout_left_registered_is_reported(self):
        self.register()
        self.assertIn('still registered', self.failed()['every callout unregistered (FwpsCalloutUnregisterById0 '
                                                        'succeeded)'])


class FlowContextTest(ModelTest):
    def setUp(self):
        super().setUp()
        _, self.callout = self.register()
        self.added()
        self.flow(0x10)

    def associate(self, flow=0x10, layer=FLOW_LAYER, callout=None, context=0xAB):
        return self.call('FwpsFlowAssociateContext0', flow, layer, self.callout if callout is None else callout,
                         context)

    def test_association_rules(self):
        self.assertEqual(self.associate(context=0), STATUS_INVALID_PARAMETER, 'a zero context')
        self.assertEqual(self.associate(flow=0x99), STATUS_NOT_FOUND, 'no such flow')
        self.assertEqual(self.associate(layer=48), STATUS_INVALID_PARAMETER, 'not a layer with flows')
        self.assertEqual(self.associate(callout=77), STATUS_FWP_CALLOUT_NOT_FOUND)
        self.assertEqual(self.associate(), 0)
        self.assertEqual(self.associate(context=0xCD), STATUS_OBJECT_NAME_EXISTS,
                         'informational: NT_SUCCESS, yet nothing was associated')
        _, without_delete = self.register(key='11111111-0000-0000-0000-000000000009', delete=0)
        self.assertEqual(self.associate(callout=without_delete), STATUS_INVALID_PARAMETER,
                         'a callout without flowDeleteFn cannot have flow contexts')

    def test_the_callout_must_be_added_at_the_layer_of_the_association(self):
        # FwpsFlowAssociateContext0's Remarks: a callout with a flowDeleteFn at layerId, else
        # STATUS_INVALID_PARAMETER.
        _, elsewhere = self.register(key='11111111-0000-0000-0000-000000000002')
        self.mcallout(self.engine(), key='11111111-0000-0000-0000-000000000002', layer=LAYER_ALE_AUTH_CONNECT_V4)
        self.assertEqual(self.associate(callout=elsewhere), STATUS_INVALID_PARAMETER,
                         'the callout is added at ALE_AUTH_CONNECT_V4, not at the flow layer')
        _, never_added = self.register(key='11111111-0000-0000-0000-000000000003')
        self.assertEqual(self.associate(callout=never_added), STATUS_INVALID_PARAMETER,
                         'registered, never added with FwpmCalloutAdd0')
        self.assertEqual(self.associate(layer=20), STATUS_INVALID_PARAMETER,
                         'added at ALE_FLOW_ESTABLISHED_V4, associated for STREAM_V4')
        self.assertEqual(self.associate(), 0)
        self.assertEqual(len(self.wfp.refused_layers), 3, self.wfp.refused_layers)
        self.assertIn('flow contexts associated with a callout added at that layer', self.failed())

    def test_association_is_allowed_at_dispatch_level_only_below(self):
        self.m.irql = DISPATCH_LEVEL
        self.assertEqual(self.associate(), 0)
        self.m.irql = 3
        with self.assertRaisesRegex(KernelStop, 'IRQL_NOT_LESS_OR_EQUAL'):
            self.associate(flow=0x10)

    def test_removal_without_a_context_is_unsuccessful(self):
        self.assertEqual(self.call('FwpsFlowRemoveContext0', 0x10, FLOW_LAYER, self.callout), STATUS_UNSUCCESSFUL)

    def test_a_pending_removal_runs_flowdeletefn_while_the_driver_waits(self):
        self.associate()
        self.wfp.arm_race({'count': 1})
        self.assertEqual(self.call('FwpsFlowRemoveContext0', 0x10, FLOW_LAYER, self.callout), STATUS_PENDING)
        self.assertEqual(self.m.callbacks, [], 'flowDeleteFn has not run yet')
        self.assertEqual(self.call('FwpsCalloutUnregisterById0', self.callout), STATUS_DEVICE_BUSY,
                         'a context whose removal pends is still associated')
        self.assertIn('still pending', self.failed()['every flow context deleted (flowDeleteFn called once '
                                                     'for each)'])
        event = self.m.alloc(24, 'event')
        self.call('KeInitializeEvent', event, 0, 0)
        self.call('KeWaitForSingleObject', event, 0, 0, 0, 0)   # the late flowDeleteFn runs here...
        self.assertEqual(self.m.callbacks, [(DELETE, [FLOW_LAYER, self.callout, 0xAB])])
        self.assertIsInstance(self.m.stop, KernelStop, '...but nothing set the event: a deadlock')
        self.assertEqual(self.call('FwpsCalloutUnregisterById0', self.callout), 0)
        self.assertEqual(self.wfp.unfired_races(), [])

    def test_a_flow_that_ends_calls_flowdeletefn(self):
        self.associate()
        calls = []
        self.m.call = lambda address, args, phase, irql: calls.append((address, args, irql))
        ok_, detail = self.wfp.run_step(Step('flow-end', flow=0x10))
        self.assertTrue(ok_, detail)
        self.assertEqual(calls, [(DELETE, [FLOW_LAYER, self.callout, 0xAB], DISPATCH_LEVEL)])
        self.assertEqual(self.call('FwpsCalloutUnregisterById0', self.callout), 0)


class Step(dict):
    def __init__(self, kind, irql=PASSIVE_LEVEL, **fields):
        super().__init__(fields)
        self.kind = kind
        self.irql = irql

    def label(self):
        return self.kind


class ManagementTest(ModelTest):
    def test_one_transaction_per_session(self):
        engine = self.engine()
        self.assertEqual(self.call('FwpmTransactionCommit0', engine), STATUS_FWP_NO_TXN_IN_PROGRESS)
        self.assertEqual(self.call('FwpmTransactionBegin0', engine, 0), 0)
        self.assertEqual(self.call('FwpmTransactionBegin0', engine, 0), STATUS_FWP_TXN_IN_PROGRESS)
        self.assertEqual(self.call('FwpmTransactionAbort0', engine), 0)
        self.assertEqual(self.call('FwpmTransactionAbort0', engine), STATUS_FWP_NO_TXN_IN_PROGRESS)

    def test_an_aborted_transaction_leaves_nothing(self):
        engine = self.engine()
        self.register()
        self.call('FwpmTransactionBegin0', engine, 0)
        self.sublayer(engine)
        self.mcallout(engine)
        self.assertEqual(self.filter(engine)[0], 0)
        self.assertEqual(self.m.callbacks[-1][0], NOTIFY, 'notifyFn(ADD_FILTER) before FwpmFilterAdd0 returns')
        self.call('FwpmTransactionAbort0', engine)
        self.assertEqual([o.state for o in self.wfp.objects], ['deleted'] * 3)

    def test_filters_need_their_sublayer_and_callout(self):
        engine = self.engine()
        self.assertEqual(self.filter(engine)[0], STATUS_FWP_SUBLAYER_NOT_FOUND)
        self.sublayer(engine)
        self.assertEqual(self.filter(engine)[0], STATUS_FWP_CALLOUT_NOT_FOUND)
        self.mcallout(engine, layer=LAYER_ALE_AUTH_CONNECT_V4)
        with self.assertRaisesRegex(KernelStop, 'applies to layer'):
            self.filter(engine)

    def test_a_null_filter_id_is_allowed(self):
        engine = self.engine()
        self.sublayer(engine)
        self.mcallout(engine)
        status, passed = self.filter(engine, id_ptr=0)
        self.assertEqual(status, 0)
        self.assertNotEqual(passed, 0, 'speakeasy writes the id unconditionally: the harness gives it one')

    def test_closing_a_dynamic_session_deletes_its_filters_and_notifies(self):
        engine = self.engine()
        _, callout = self.register()
        self.sublayer(engine)
        self.mcallout(engine)
        self.filter(engine)
        self.assertIn('left: ', self.failed()['no filter left in the engine'])
        self.call('FwpmEngineClose0', engine)
        self.assertEqual(self.m.callbacks[-1][0], NOTIFY)
        self.assertEqual(self.m.callbacks[-1][1][0], 1, 'DELETE_FILTER')
        self.call('FwpsCalloutUnregisterById0', callout)
        self.assertEqual(self.failed(), {})
        with self.assertRaisesRegex(KernelStop, 'closed already'):
            self.call('FwpmEngineClose0', engine)

    def test_engine_open_in_kernel_mode(self):
        with self.assertRaisesRegex(KernelStop, 'serverName must be NULL'):
            self.call('FwpmEngineOpen0', 0x1234, 10, 0, 0, self.out)
        with self.assertRaisesRegex(KernelStop, 'authnService'):
            self.call('FwpmEngineOpen0', 0, 9, 0, 0, self.out)


class RightsRuleTest(ModelTest):
    def verdict(self, action, preset, write_right, after, flags=0):
        class Filter:
            fields = {'action': action, 'flags': flags}
        reg = type('Reg', (), {'id': 4})()
        return self.wfp._check_verdict(reg, Filter, (preset, write_right), after, 'test')

    def test_without_the_write_right_nothing_may_change(self):
        self.assertEqual(self.verdict(ACTION_CALLOUT_TERMINATING, ACTION_BLOCK, False, (ACTION_BLOCK, 0)), [])
        self.assertIn('overrode', self.verdict(ACTION_CALLOUT_TERMINATING, ACTION_BLOCK, False,
                                               (ACTION_PERMIT, 0))[0])

    def test_block_is_final_and_terminating_callouts_decide(self):
        self.assertEqual(self.verdict(ACTION_CALLOUT_TERMINATING, ACTION_CONTINUE, True, (ACTION_BLOCK, 0)), [])
        self.assertIn('without clearing', self.verdict(ACTION_CALLOUT_TERMINATING, ACTION_CONTINUE, True,
                                                       (ACTION_BLOCK, 1))[0])
        self.assertIn('not BLOCK or PERMIT', self.verdict(ACTION_CALLOUT_TERMINATING, ACTION_CONTINUE, True,
                                                          (ACTION_CONTINUE, 1))[0])
        self.assertIn('CLEAR_ACTION_RIGHT', self.verdict(ACTION_CALLOUT_TERMINATING, ACTION_CONTINUE, True,
                                                         (ACTION_PERMIT, 1), flags=0x8)[0])

    def test_inspection_callouts_never_decide(self):
        self.assertEqual(self.verdict(ACTION_CALLOUT_INSPECTION, ACTION_CONTINUE, True, (ACTION_CONTINUE, 1)), [])
        self.assertIn('inspection', self.verdict(ACTION_CALLOUT_INSPECTION, ACTION_CONTINUE, True,
                                                 (ACTION_PERMIT, 1))[0])


class SyncTest(unittest.TestCase):
    def setUp(self):
        self.m = WfpMachine()
        self.sync = Sync(self.m)
        self.lock = self.m.alloc(8, 'lock')
        self.event = self.m.alloc(24, 'event')

    def call(self, name, *args):
        return self.m.routines[name](list(args), None)

    def test_spin_locks_raise_irql_and_are_not_recursive(self):
        old = self.call('KeAcquireSpinLockRaiseToDpc', self.lock)
        self.assertEqual((old, self.m.irql), (PASSIVE_LEVEL, DISPATCH_LEVEL))
        with self.assertRaisesRegex(KernelStop, 'spin forever'):
            self.call('KeAcquireSpinLockRaiseToDpc', self.lock)
        self.call('KeReleaseSpinLock', self.lock, old)
        self.assertEqual(self.m.irql, PASSIVE_LEVEL)
        with self.assertRaisesRegex(KernelStop, 'not held'):
            self.call('KeReleaseSpinLock', self.lock, old)

    def test_a_set_event_satisfies_the_wait_and_an_unset_one_with_nothing_to_run_deadlocks(self):
        self.call('KeInitializeEvent', self.event, 0, 0)
        self.assertEqual(struct.unpack('<BBBBi', self.m.read(self.event, 8))[4], 0)
        with self.assertRaisesRegex(KernelStop, 'nothing left to run will set'):
            self.call('KeWaitForSingleObject', self.event, 0, 0, 0, 0)
        self.assertEqual(self.call('KeSetEvent', self.event, 0, 0), 0)
        self.assertEqual(self.call('KeWaitForSingleObject', self.event, 0, 0, 0, 0), 0)
        self.assertEqual(self.call('KeReadStateEvent', self.event), 1, 'a notification event stays set')

    def test_a_zero_timeout_polls(self):
        self.call('KeInitializeEvent', self.event, 1, 0)
        zero = self.m.alloc(8, 'timeout')
        self.assertEqual(self.call('KeWaitForSingleObject', self.event, 0, 0, 0, zero), 0x102)

    def test_deferred_work_runs_during_a_wait(self):
        self.call('KeInitializeEvent', self.event, 1, 0)
        ran = []
        self.sync.defer(0x5300, [1, 2, 3], 'late',
                        after=lambda: (ran.append(1), self.call('KeSetEvent', self.event, 0, 0)))
        self.assertEqual(self.call('KeWaitForSingleObject', self.event, 0, 0, 0, 0), 0)
        self.assertEqual((ran, self.m.callbacks, self.m.stop), ([1], [(0x5300, [1, 2, 3])], None))
        self.assertEqual(self.call('KeReadStateEvent', self.event), 0, 'a synchronization event is reset')

    def test_waiting_with_a_spin_lock_held_is_refused(self):
        self.call('KeInitializeEvent', self.event, 0, 1)
        self.call('KeAcquireSpinLockRaiseToDpc', self.lock)
        with self.assertRaises(KernelStop):
            self.call('KeWaitForSingleObject', self.event, 0, 0, 0, 0)


if __name__ == '__main__':
    unittest.main()
