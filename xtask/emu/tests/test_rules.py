"""Driver Verifier's rules in the harness (lock order, IRQL of every call, the teardown sweep, no
silent hang, a callback racing each unregistration): each fails when its rule is broken."""
import os
import struct
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
sys.path.insert(0, os.path.dirname(__file__))

from emukernel import irql_table, run  # noqa: E402
from emukernel.cm import PRE_SET_VALUE, STATUS_INVALID_PARAMETER, Registry  # noqa: E402
from emukernel.debug import Debug  # noqa: E402
from emukernel.errors import KernelStop, deadlock  # noqa: E402
from emukernel.families import FAMILIES  # noqa: E402
from emukernel.irql import APC_LEVEL, DISPATCH_LEVEL, PASSIVE_LEVEL  # noqa: E402
from emukernel.irql_table import ROUTINES, IrqlChecks, unicode_conversions  # noqa: E402
from emukernel.lockorder import LockOrder  # noqa: E402
from emukernel.machine import Fault, fault_choices  # noqa: E402
from emukernel.racing import Racing  # noqa: E402
from emukernel.sync import IDLE_LIMIT, STATUS_TIMEOUT, Sync  # noqa: E402
from emukernel.wfp import STATUS_FWP_CALLOUT_NOT_FOUND, STATUS_PENDING, STATUS_UNSUCCESSFUL  # noqa: E402
from test_models import FakeMachine  # noqa: E402
from test_wfp import DELETE, FLOW_LAYER, ModelTest, WfpMachine  # noqa: E402


class LockOrderTest(unittest.TestCase):
    def setUp(self):
        self.m = FakeMachine()
        self.order = LockOrder(self.m)

    def failed(self):
        return {c: d for c, ok, d in self.order.audit() if not ok}

    def test_two_locks_taken_in_both_orders_are_a_cycle_naming_both_paths(self):
        a, b = ('spin lock', 1), ('kernel', 'engine')
        self.m.phase = 'classifyFn'
        self.order.acquire(a, 'lock A')
        self.order.acquire(b, 'lock B')
        self.order.release(b)
        self.order.release(a)
        self.assertEqual(self.failed(), {}, 'one order alone is fine')
        self.m.phase = 'flowDeleteFn'
        self.order.acquire(b, 'lock B')
        self.order.acquire(a, 'lock A')
        detail = self.failed()['lock order']
        self.assertIn('lock B and lock A are taken in both orders', detail)
        self.assertIn('during classifyFn', detail)
        self.assertIn('during flowDeleteFn', detail)

    def test_a_longer_cycle_is_found(self):
        a, b, c = ('m', 1), ('m', 2), ('m', 3)
        for first, second in ((a, b), (b, c), (c, a)):
            self.order.acquire(first, str(first))
            self.order.acquire(second, str(second))
            self.order.release(second)
            self.order.release(first)
        self.assertIn('lock order', self.failed())

    def test_another_processor_does_not_hold_the_interrupted_code_s_locks(self):
        a, b, k = ('m', 1), ('m', 2), ('kernel', 'list')
        self.order.acquire(a, 'A')
        self.order.switch_to([(k, 'K')])
        self.order.acquire(b, 'B')
        self.order.release(b)
        self.order.switch_back()
        self.assertIn((k, b), self.order.edges)
        self.assertNotIn((a, b), self.order.edges, 'A is held on the other processor only')
        self.assertTrue(self.order.holding(a))


class IrqlTableTest(unittest.TestCase):
    def setUp(self):
        self.m = FakeMachine()
        self.checks = IrqlChecks(self.m)
        self.m._imports = []

    def failed(self):
        return {c: d for c, ok, d in self.checks.audit() if not ok}

    def test_a_call_above_its_documented_maximum_stops_the_run_and_fails_the_check(self):
        self.checks.check_call('ntoskrnl.ZwClose', [0])
        self.assertEqual(self.failed(), {})
        self.m.irql = DISPATCH_LEVEL
        with self.assertRaisesRegex(KernelStop, 'IRQL_NOT_LESS_OR_EQUAL'):
            self.checks.check_call('ntoskrnl.ZwClose', [0])
        self.assertIn('ZwClose called at DISPATCH_LEVEL', self.failed()['IRQL of every call'])
        self.assertIn('nf-wdm-zwclose', self.failed()['IRQL of every call'], 'the row cites its page')

    def test_conditional_rows(self):
        self.m.irql = DISPATCH_LEVEL
        self.checks.check_call('ntoskrnl.ExAllocatePoolWithTag', [512, 16, 0])  # nonpaged: fine
        with self.assertRaises(KernelStop):
            self.checks.check_call('ntoskrnl.ExAllocatePoolWithTag', [1, 16, 0])  # PagedPool
        zero = self.m.alloc(8, 'timeout')
        self.checks.check_call('ntoskrnl.KeWaitForSingleObject', [0, 0, 0, 0, zero])
        with self.assertRaises(KernelStop):
            self.checks.check_call('ntoskrnl.KeWaitForSingleObject', [0, 0, 0, 0, 0])

    def test_rows_rechecked_against_their_pages(self):
        # Each pair: (routine, arguments, highest IRQL its page allows). One level above must stop.
        rows = [('ntoskrnl.ExCreateCallback', [0, 0, 0, 0], APC_LEVEL),
                ('ntoskrnl.IoCreateDevice', [0] * 7, APC_LEVEL),
                ('ntoskrnl.IoDeleteDevice', [0], APC_LEVEL),
                ('ntoskrnl.KeInitializeGuardedMutex', [0], APC_LEVEL),
                ('ntoskrnl.ExInitializeRundownProtection', [0], APC_LEVEL),
                ('ntoskrnl.ExRundownCompleted', [0], APC_LEVEL),
                ('ntoskrnl.CmCallbackGetKeyObjectIDEx', [0] * 5, APC_LEVEL),
                ('ntoskrnl.KeSetEvent', [0, 0, 0], DISPATCH_LEVEL),      # Wait = FALSE
                ('ntoskrnl.KeSetEvent', [0, 0, 1], APC_LEVEL),           # Wait = TRUE (Remarks)
                ('wdfldr.WdfDeviceInitSetDeviceType', [0, 0, 0], DISPATCH_LEVEL),
                ('fwpkclnt.FwpmFilterAdd0', [0] * 4, PASSIVE_LEVEL)]
        for routine, argv, top in rows:
            self.m.irql = top
            self.checks.check_call(routine, argv)
            self.m.irql = top + 1
            with self.assertRaises(KernelStop, msg=routine):
                self.checks.check_call(routine, argv)

    def test_an_import_missing_from_the_table_is_an_error(self):
        self.m._imports = [('ntoskrnl', 'ZwClose'), ('ntoskrnl', 'KeStallExecutionProcessor')]
        detail = self.failed()['IRQL of every call']
        self.assertIn('ntoskrnl.KeStallExecutionProcessor', detail)
        self.assertNotIn('ntoskrnl.ZwClose', detail)

    def test_every_routine_a_model_attaches_has_a_row(self):
        attached = []

        class Recording(FakeMachine):
            def attach(self, module, name, *args, **kwargs):
                attached.append('%s.%s' % (module.split('.')[0].lower(), name))

        m = Recording()
        m.alloc = lambda size, tag: 0x1000
        m.write = lambda *a: None
        for family in FAMILIES:
            family(m, {})
        missing = sorted(set(attached) - set(ROUTINES))
        self.assertEqual(missing, [], 'routines the harness handles without an IRQL row')

    def test_unicode_conversions_are_found(self):
        self.assertEqual(unicode_conversions('%ws %wZ %S %C %ls %lc %wc'),
                         ['%ws', '%wZ', '%S', '%C', '%ls', '%lc', '%wc'])
        self.assertEqual(unicode_conversions('%s %c %Iu %p %% %%ws %Z'), [])
        self.assertEqual(unicode_conversions('%-10ws|%.*S'), ['%ws', '%S'])

    def test_dbgprint_with_a_unicode_conversion_above_passive_fails_the_check(self):
        fmt = self.m.alloc(32, 'fmt')
        self.m.write(fmt, b'name %wZ\0')
        self.m.log_line = lambda text: None
        self.m.cdecl_args = lambda n: [0, 0, fmt, 0][:n]
        self.m.read_unicode_string = lambda a: '?'
        debug = Debug(self.m)
        debug.dbg_print_ex([0, 0, fmt], None)
        self.assertEqual(self.failed(), {}, 'at PASSIVE_LEVEL it is allowed')
        self.m.irql = DISPATCH_LEVEL
        debug.dbg_print_ex([0, 0, fmt], None)
        self.assertIn('%wZ may be used only at PASSIVE_LEVEL', self.failed()['IRQL of every call'])


class NoSilentHangTest(unittest.TestCase):
    def setUp(self):
        self.m = WfpMachine()
        self.sync = Sync(self.m)
        self.event = self.m.alloc(24, 'event')
        self.timeout = self.m.alloc(8, 'timeout')
        self.m.write(self.timeout, struct.pack('<q', -10_000_000))  # one second, relative
        self.call('KeInitializeEvent', self.event, 0, 0)

    def call(self, name, *args):
        return self.m.routines[name](list(args), None)

    def test_a_wait_with_a_timeout_times_out_and_endless_retries_are_a_deadlock(self):
        self.assertEqual(self.call('KeWaitForSingleObject', self.event, 0, 0, 0, self.timeout), STATUS_TIMEOUT)
        with self.assertRaisesRegex(KernelStop, 'would wait forever') as caught:
            for _ in range(IDLE_LIMIT // 10_000_000 + 1):
                self.call('KeWaitForSingleObject', self.event, 0, 0, 0, self.timeout)
        self.assertEqual(caught.exception.kind, 'deadlock')
        self.assertIn('event 0x%x' % self.event, caught.exception.message, 'it names the wait')

    def test_progress_resets_the_count_and_delays_run_deferred_work(self):
        for _ in range(IDLE_LIMIT // 20_000_000):
            self.call('KeDelayExecutionThread', 0, 0, self.timeout)
        self.call('KeSetEvent', self.event, 0, 0)
        self.assertEqual(self.sync.idle, 0)
        ran = []
        self.sync.defer(0x5300, [1, 2, 3], 'late', after=lambda: ran.append(1))
        self.assertEqual(self.call('KeDelayExecutionThread', 0, 0, self.timeout), 0)
        self.assertEqual(ran, [1], 'another processor ran it during the delay')

    def test_a_wait_without_timeout_that_nothing_will_end_is_a_deadlock_at_once(self):
        with self.assertRaises(KernelStop) as caught:
            self.call('KeWaitForSingleObject', self.event, 0, 0, 0, 0)
        self.assertEqual(caught.exception.kind, 'deadlock')


class TeardownFaultTest(ModelTest):
    def flow_context(self, callout, flow=0x10, context=0xAB):
        self.flow(flow)
        self.added()
        self.assertEqual(self.call('FwpsFlowAssociateContext0', flow, FLOW_LAYER, callout, context), 0)

    def test_remove_context_faults_do_what_each_status_documents(self):
        _, callout = self.register()
        choices = {label.split(' ')[0]: (value, effect) for value, label, effect
                   in fault_choices(self.wfp._remove_faults, [0x10, FLOW_LAYER, callout])}
        self.assertEqual(set(choices), {'STATUS_PENDING', 'STATUS_UNSUCCESSFUL', 'STATUS_INTERNAL_ERROR'})
        self.flow_context(callout)
        self.assertEqual(choices['STATUS_PENDING'][1]([0x10, FLOW_LAYER, callout], None), STATUS_PENDING)
        self.assertEqual(len(self.sync.pending()), 1, 'flowDeleteFn comes later')
        self.flow_context(callout, flow=0x11, context=0xCD)
        self.assertEqual(choices['STATUS_UNSUCCESSFUL'][1]([0x11, FLOW_LAYER, callout], None), STATUS_UNSUCCESSFUL)
        self.assertIn((DELETE, [FLOW_LAYER, callout, 0xCD]), self.m.callbacks,
                      'the flow ended on another processor: its flowDeleteFn ran')
        self.assertIsNone(choices['STATUS_INTERNAL_ERROR'][1], 'the undocumented error changes nothing')

    def test_callout_not_found_leaves_the_contexts_to_their_flows(self):
        _, callout = self.register()
        self.flow_context(callout)
        self.assertEqual(self.wfp._gone([callout], None), STATUS_FWP_CALLOUT_NOT_FOUND)
        self.assertEqual(self.wfp.registrations[callout].state, 'unregistered')
        self.m.call = lambda function, args, phase, irql: self.m.callbacks.append((function, args))
        done = self.wfp.probe()
        self.assertEqual(done, ['flowDeleteFn of callout %d (flow 0x10)' % callout],
                         'the probe ends the flow still carrying a context')

    def test_a_leftover_is_tolerated_only_when_logged(self):
        class Stub:
            pass

        stub = Stub()
        stub.fault = Fault('fwpkclnt.FwpsCalloutUnregisterById0', 1, 0xC022000A, 'STATUS_FWP_IN_USE',
                           'DriverUnload')
        stub.m = Stub()
        stub.m.fault_log_at = 1
        stub.m.log = ['FwpsCalloutUnregisterById0 = C022000A, before the fault', 'unloaded']
        audit = [('every pool allocation freed', False, 'leaked: 1'), ('lock order', False, 'cycle')]
        out, tolerated = run.Run._leftovers(stub, audit)
        checks = {c: ok for c, ok, _d in out}
        self.assertFalse(checks[run.LEAK_LOG_CHECK], 'a line before the failure does not count')
        self.assertFalse(checks['every pool allocation freed'])
        self.assertEqual(tolerated, set())
        stub.m.log.append('[x] Error: callout 8 could not be unregistered: c022000a; leaking its context')
        out, tolerated = run.Run._leftovers(stub, audit)
        checks = {c: ok for c, ok, _d in out}
        self.assertTrue(checks[run.LEAK_LOG_CHECK])
        self.assertTrue(checks['every pool allocation freed'])
        self.assertFalse(checks['lock order'], 'only what a failure forces to stay is tolerated')
        self.assertEqual(tolerated, {'every pool allocation freed'})


class RacingTest(ModelTest):
    def test_a_callout_unregistration_is_raced_by_its_flow_delete_fn(self):
        self.m.racing = Racing(self.m)
        _, callout = self.register()
        self.added()
        self.flow(0x10)
        self.assertEqual(self.call('FwpsFlowAssociateContext0', 0x10, FLOW_LAYER, callout, 0xAB), 0)
        self.call('FwpsCalloutUnregisterById0', callout)
        self.assertIn((DELETE, [FLOW_LAYER, callout, 0xAB]), self.m.callbacks)
        self.assertEqual(self.m.racing.audit()[0][1], True)

    def test_an_in_use_unregistration_is_raced_too_and_the_callout_stays(self):
        # Teardown sweep: STATUS_FWP_IN_USE leaves the callout registered; a call dispatched on
        # another processor still races the failed call.
        self.m.racing = Racing(self.m)
        _, callout = self.register()
        self.added()
        self.flow(0x10)
        self.assertEqual(self.call('FwpsFlowAssociateContext0', 0x10, FLOW_LAYER, callout, 0xAB), 0)
        [in_use] = [c for c in fault_choices(self.wfp._unregister_faults, [callout])
                    if c[1] == 'STATUS_FWP_IN_USE']
        self.assertEqual(in_use[2]([callout], None), in_use[0])
        self.assertIn((DELETE, [FLOW_LAYER, callout, 0xAB]), self.m.callbacks)
        self.assertEqual(self.wfp.registrations[callout].state, 'registered')

    def test_the_check_fails_when_the_run_stops_in_a_racing_callback(self):
        race = Racing(self.m)
        race.begin('callback racing X')
        self.m.stop = deadlock('the callback waits for a lock the unregistering thread holds')
        check, ok, detail = race.audit()[0]
        self.assertEqual((check, ok), ('callback racing unregistration', False))
        self.assertIn('callback racing X', detail)

    def test_cm_unregistration_is_raced_and_the_cookie_stays_valid_during_it(self):
        m = FakeMachine()
        m.racing = Racing(m)
        m.log_line = lambda text: None
        cm = Registry(m)
        cookie_out = m.alloc(8, 'cookie')
        altitude = m.alloc(32, 'altitude')
        text = m.alloc(12, 'text')
        m.write(text, '385201'.encode('utf-16-le'))
        m.write(altitude, struct.pack('<HHIQ', 12, 12, 0, text))
        self.assertEqual(cm.register_ex([0x5000, altitude, 0, 0x77, cookie_out, 0], lambda a: 0), 0)
        cookie = m.read_u64(cookie_out)
        self.assertEqual(cm.unregister([cookie], lambda a: 0), 0)
        self.assertEqual(m.callbacks[0][0], 0x5000)
        self.assertEqual(m.callbacks[0][1][:2], [0x77, PRE_SET_VALUE])
        self.assertTrue(cm.registrations[cookie].active, 'until the racing callback returned')
        self.assertEqual(cm.unregister([cookie], lambda a: 0), STATUS_INVALID_PARAMETER, 'not twice')


class CallbackIrqlTest(ModelTest):
    def test_flow_delete_fn_runs_at_dispatch_level_even_from_passive_code(self):
        _, callout = self.register()
        self.added()
        self.flow(0x10)
        self.assertEqual(self.call('FwpsFlowAssociateContext0', 0x10, FLOW_LAYER, callout, 0xAB), 0)
        seen = []
        original = self.wfp._before_delete

        def before(label):
            original(label)
            seen.append(self.m.irql)

        self.wfp._before_delete = before
        self.assertEqual(self.m.irql, PASSIVE_LEVEL)
        self.call('FwpsFlowRemoveContext0', 0x10, FLOW_LAYER, callout)
        self.assertEqual(seen, [DISPATCH_LEVEL])
        self.assertEqual(self.m.irql, PASSIVE_LEVEL, 'and the caller gets its IRQL back')
        self.assertEqual(irql_table.CALLBACKS['RegistryCallback'][0], PASSIVE_LEVEL)
        self.assertLess(APC_LEVEL, irql_table.CALLBACKS['classifyFn'][0])


if __name__ == '__main__':
    unittest.main()
