"""The documented rules of the PnP-notification and guarded-mutex models, checked without a driver."""
import os
import struct
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

from emukernel.errors import KernelStop  # noqa: E402
from emukernel.irql import DISPATCH_LEVEL  # noqa: E402
from emukernel.mutex import GuardedMutexes  # noqa: E402
from emukernel.pnp import (DEVICE_INTERFACE, GUID_DEVINTERFACE_VOLUME, HARDWARE_PROFILE,  # noqa: E402
                           INCLUDE_EXISTING, PnpNotifications, guid_bytes)
from emukernel.families import load_scenario as load  # noqa: E402
from test_models import FakeMachine  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..'))
DRIVER = 0x7000
CALLBACK = 0x5000
CONTEXT = 0x6000
VOLUME = guid_bytes(GUID_DEVINTERFACE_VOLUME)


class Step(dict):
    def __init__(self, kind, **fields):
        super().__init__(fields)
        self.kind = kind


class PnpMachine(FakeMachine):
    """FakeMachine plus what the PnP model uses: the driver object, the image, phases, later calls."""

    def __init__(self):
        super().__init__(memory=0x40000)
        self.after_next = []
        self.inspect = None     # reads a notification while its callback runs (it is poisoned after)
        self.seen = []

    # speakeasy-like surface used by the model
    def add_code_hook(self, *args, **kwargs):
        pass

    def add_mem_read_hook(self, *args, **kwargs):
        pass

    add_mem_write_hook = add_mem_read_hook

    def reg_read(self, register):
        return 0

    def in_image(self, address):
        return 0x5000 <= address < 0x5800

    def driver_object(self):
        return DRIVER

    def after_next_call(self, callback, skip=()):
        self.after_next.append(callback)

    def call_back_before_return(self, calls, before=None, after=None, result=None):
        self.callbacks.extend(calls)
        self.results.append(result)
        for i in range(len(calls)):  # the trampoline runs them: before and after each
            if before:
                before(i)
            if self.inspect:
                self.seen.append(self.inspect(calls[i][1][0]))
            if after:
                after(i)

    def halt(self, stop):
        self.stop = stop


class PnpModelTest(unittest.TestCase):
    def setUp(self):
        self.m = PnpMachine()
        links = ['\\??\\STORAGE#Volume#{a}', '\\??\\STORAGE#Volume#{b}']
        self.pnp = PnpNotifications(self.m, {'device_interfaces': {GUID_DEVINTERFACE_VOLUME: links}})
        self.out = self.m.alloc(8, 'out')
        self.guid = self.m.alloc(16, 'guid')
        self.m.write(self.guid, VOLUME)

    def register(self, category=DEVICE_INTERFACE, flags=INCLUDE_EXISTING, data=None, driver=DRIVER):
        if data is None:
            data = self.guid if category == DEVICE_INTERFACE else 0
        status = self.m.call_routine('IoRegisterPlugPlayNotification', category, flags, data, driver,
                                     CALLBACK, CONTEXT, self.out)
        return status, self.m.read_u64(self.out)

    def failed(self):
        return {check: detail for check, ok, detail in self.pnp.audit() if not ok}

    def link_of(self, notification):
        version, size = struct.unpack('<HH', self.m.read(notification, 4))
        us = self.m.read_u64(notification + 40)
        return version, size, self.m.read(notification + 4, 16), self.m.read_unicode_string(us)

    def test_existing_interfaces_are_reported_before_the_routine_returns(self):
        self.m.inspect = self.link_of
        status, entry = self.register()
        self.assertEqual(status, 0)
        self.assertEqual(self.m.results, [0], 'IoRegisterPlugPlayNotification still returns success')
        self.assertEqual([c[0] for c in self.m.callbacks], [CALLBACK, CALLBACK])
        version, size, event, link = self.m.seen[0]
        self.assertEqual((version, size, link), (1, 48, '\\??\\STORAGE#Volume#{a}'))
        self.assertEqual(event, guid_bytes('cb3a4004-46f0-11d0-b08f-00609713053f'))
        self.assertEqual(self.m.callbacks[0][1][1], CONTEXT)
        self.assertEqual(self.m.read(self.m.callbacks[0][1][0], 4), b'\xdd' * 4,
                         'the structure is poisoned once its callback returned')

    def test_a_registration_references_the_driver_object_until_unregistered(self):
        _, entry = self.register(flags=0)
        failed = self.failed()
        self.assertIn('the driver can never unload', failed['no PnP registration still references the '
                                                            'driver object'])
        self.m.call_routine('IoUnregisterPlugPlayNotificationEx', entry)
        self.assertEqual(self.failed(), {})

    def test_unknown_or_repeated_unregistration_is_a_bugcheck(self):
        _, entry = self.register(flags=0)
        with self.assertRaisesRegex(KernelStop, 'not an entry'):
            self.m.call_routine('IoUnregisterPlugPlayNotificationEx', 0xBAD0)
        self.m.call_routine('IoUnregisterPlugPlayNotificationEx', entry)
        with self.assertRaisesRegex(KernelStop, 'already unregistered'):
            self.m.call_routine('IoUnregisterPlugPlayNotificationEx', entry)

    def test_registration_rules(self):
        with self.assertRaisesRegex(KernelStop, 'only valid with EventCategoryDeviceInterfaceChange'):
            self.register(category=HARDWARE_PROFILE, flags=INCLUDE_EXISTING)
        with self.assertRaisesRegex(KernelStop, 'must be NULL'):
            self.register(category=HARDWARE_PROFILE, flags=0, data=self.guid)
        with self.assertRaisesRegex(KernelStop, "not the caller's driver object"):
            self.register(driver=0x9999)
        self.m.irql = DISPATCH_LEVEL
        with self.assertRaisesRegex(KernelStop, 'IRQL'):
            self.register()

    def test_the_ex_routine_waits_for_a_notification_dispatched_before_it(self):
        _, entry = self.register(flags=0)
        self.pnp.arm_race(Step('interface-change-after-unregister-returns', event='removal',
                               link='\\??\\x', **{'class': GUID_DEVINTERFACE_VOLUME}))
        self.m.call_routine('IoUnregisterPlugPlayNotificationEx', entry)
        self.assertEqual(len(self.m.callbacks), 1, 'delivered before the Ex routine returned')
        self.assertEqual(self.m.after_next, [])
        self.assertEqual(self.pnp.unfired_races(), [])
        self.assertEqual(self.failed(), {})

    def test_the_old_routine_lets_it_run_after_returning(self):
        _, entry = self.register(flags=0)
        self.pnp.arm_race(Step('interface-change-after-unregister-returns', event='removal',
                               link='\\??\\x', **{'class': GUID_DEVINTERFACE_VOLUME}))
        self.m.call_routine('IoUnregisterPlugPlayNotification', entry)
        self.assertEqual(len(self.m.callbacks), 1, 'only the racing callback ran before the old routine '
                                                   'returned (racing.py), not the armed one')
        self.assertEqual(len(self.m.after_next), 1, 'it runs at the next kernel call')
        self.m.after_next[0](None)
        self.assertEqual(len(self.m.callbacks), 2)
        self.assertIn('IoUnregisterPlugPlayNotificationEx used, not the obsolete routine', self.failed())

    def test_unregistering_from_its_own_callback_while_existing_interfaces_are_reported_deadlocks(self):
        # IoUnregisterPlugPlayNotificationEx, Remarks: unsafe from the registration's own callback
        # while its INCLUDE_EXISTING_INTERFACES IoRegisterPlugPlayNotification has not returned.
        self.m.inspect = lambda notification: self.m.call_routine('IoUnregisterPlugPlayNotificationEx',
                                                                  self.m.read_u64(self.out))
        with self.assertRaisesRegex(KernelStop, 'still reporting the existing interfaces'):
            self.register()

    def test_unregistering_from_its_own_callback_afterwards_is_allowed(self):
        # The same Remarks: "Frequently, a driver calls IoUnregisterPlugPlayNotificationEx from a
        # notification callback routine ... the driver can safely delete the registration".
        _, entry = self.register()
        delivered = []

        def callback(function, args, phase, irql=0):
            delivered.append(args[0])
            self.m.call_routine('IoUnregisterPlugPlayNotificationEx', entry)
            return 0

        self.m.call = callback
        ok, detail = self.pnp.run_step(_step('interface-arrival', link='\\??\\c', version=1,
                                             null_link=False, **{'class': GUID_DEVINTERFACE_VOLUME}))
        self.assertTrue(ok, detail)
        self.assertEqual(len(delivered), 1, 'no racing call of itself: the call in flight is the caller')
        self.assertEqual(self.failed(), {})
        self.assertIn('from its own callback', ' '.join(d for _c, _ok, d in self.pnp.audit()))
        ok, detail = self.pnp.run_step(_step('interface-arrival', link='\\??\\d', version=1,
                                             null_link=False, **{'class': GUID_DEVINTERFACE_VOLUME}))
        self.assertFalse(ok, 'cancelled: no further callbacks')
        self.assertEqual(len(delivered), 1)

    def test_a_failure_status_is_only_allowed_for_query_events(self):
        self.register(category=HARDWARE_PROFILE, flags=0)
        self.m.call = lambda *a, **k: 0xC0000001
        ok, _ = self.pnp.run_step(_step('hardware-profile', event='query-change', version=1))
        self.assertTrue(ok)
        self.pnp.run_step(_step('hardware-profile', event='change-complete', version=1))
        self.assertIn('only a query event may be failed',
                      self.failed()['PnP callbacks returned success for every event they may not veto'])

    def test_steps_reach_only_registrations_of_their_class(self):
        self.register(flags=0)
        self.m.call = lambda *a, **k: 0
        ok, detail = self.pnp.run_step(_step('interface-arrival', link='\\??\\c', version=1,
                                             null_link=False, **{'class': GUID_DEVINTERFACE_VOLUME}))
        self.assertTrue(ok, detail)
        ok, detail = self.pnp.run_step(_step('interface-arrival', link='\\??\\c', version=1, null_link=False,
                                             **{'class': '00000000-0000-0000-0000-000000000001'}))
        self.assertFalse(ok)
        self.assertIn('no device-interface change registration', detail)


def _step(kind, **fields):
    s = Step(kind, **fields)
    s.irql = 0
    return s


class GuardedMutexTest(unittest.TestCase):
    def setUp(self):
        self.m = PnpMachine()
        self.mutexes = GuardedMutexes(self.m)
        self.mutex = self.m.alloc(56, 'mutex')

    def test_acquire_release_and_the_count_field(self):
        self.m.call_routine('KeInitializeGuardedMutex', self.mutex)
        self.assertEqual(self.m.read_u32(self.mutex), 1, 'free')
        self.m.call_routine('KeAcquireGuardedMutex', self.mutex)
        self.assertEqual(self.m.read_u32(self.mutex), 0, 'held')
        self.assertEqual(self.m.call_routine('KeTryToAcquireGuardedMutex', self.mutex), 0)
        self.m.call_routine('KeReleaseGuardedMutex', self.mutex)
        self.assertEqual(self.mutexes.audit()[0][1], True)

    def test_recursion_is_a_deadlock_and_misuse_is_caught(self):
        with self.assertRaisesRegex(KernelStop, 'never initialized'):
            self.m.call_routine('KeAcquireGuardedMutex', self.mutex)
        self.m.call_routine('KeInitializeGuardedMutex', self.mutex)
        with self.assertRaisesRegex(KernelStop, 'not held'):
            self.m.call_routine('KeReleaseGuardedMutex', self.mutex)
        self.m.call_routine('KeAcquireGuardedMutex', self.mutex)
        with self.assertRaisesRegex(KernelStop, 'not recursive'):
            self.m.call_routine('KeAcquireGuardedMutex', self.mutex)
        self.assertFalse(self.mutexes.audit()[0][1], 'still held at the end')
        self.m.irql = DISPATCH_LEVEL
        with self.assertRaisesRegex(KernelStop, 'IRQL'):
            self.m.call_routine('KeReleaseGuardedMutex', self.mutex)

    def test_unregistering_while_holding_the_callbacks_mutex_is_a_deadlock(self):
        pnp = PnpNotifications(self.m, {})
        self.m.call_routine('KeInitializeGuardedMutex', self.mutex)
        out, guid = self.m.alloc(8, 'out'), self.m.alloc(16, 'guid')
        self.m.write(guid, VOLUME)
        self.m.call_routine('IoRegisterPlugPlayNotification', DEVICE_INTERFACE, 0, guid, DRIVER, CALLBACK,
                            CONTEXT, out)

        def callback(*args, **kwargs):  # the callback takes the mutex, as pnp-notify's does
            self.m.call_routine('KeAcquireGuardedMutex', self.mutex)
            self.m.call_routine('KeReleaseGuardedMutex', self.mutex)
            return 0
        self.m.call = lambda *a, **k: callback()
        self.m.phase = 'DriverEntry'
        pnp.run_step(_step('interface-arrival', link='\\??\\c', version=1, null_link=False,
                           **{'class': GUID_DEVINTERFACE_VOLUME}))
        self.m.call_routine('KeAcquireGuardedMutex', self.mutex)
        with self.assertRaisesRegex(KernelStop, 'while holding guarded mutex'):
            self.m.call_routine('IoUnregisterPlugPlayNotificationEx', self.m.read_u64(out))


class PnpScenarioTest(unittest.TestCase):
    # A standalone workspace made by `cargo xtask new --path` has no pnp-notify.
    @unittest.skipUnless(os.path.isdir(os.path.join(ROOT, 'pnp-notify')), 'no pnp-notify sample')
    def test_the_pnp_notify_scenario_loads(self):
        s = load(os.path.join(ROOT, 'pnp-notify', 'scenario.toml'))
        self.assertIn(GUID_DEVINTERFACE_VOLUME, s.config['device_interfaces'])
        self.assertEqual([r.kind for r in s.races], ['interface-change-during-unregister',
                                                     'interface-change-after-unregister-returns'])
        self.assertTrue(any(step.hot_path for step in s.steps))


if __name__ == '__main__':
    unittest.main()
