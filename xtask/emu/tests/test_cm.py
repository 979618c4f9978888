"""The configuration-manager model's documented rules, without a driver image."""
import os
import struct
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
sys.path.insert(0, os.path.dirname(__file__))

from emukernel.cm import (STATUS_FLT_INSTANCE_ALTITUDE_COLLISION, STATUS_INVALID_PARAMETER,  # noqa: E402
                          Registry, simple_upper)
from emukernel.errors import KernelStop  # noqa: E402
from test_models import FakeMachine  # noqa: E402


def speakeasy_success(args):
    return 0  # what speakeasy's own Cm* handlers answer


class RegistryModelTest(unittest.TestCase):
    def setUp(self):
        self.m = FakeMachine()
        self.cm = Registry(self.m)
        self.cookie = self.m.alloc(8, 'cookie')

    def string(self, text):
        data = text.encode('utf-16-le')
        buf = self.m.alloc(len(data) + 2, 's')
        self.m.write(buf, data)
        us = self.m.alloc(16, 'us')
        self.m.write(us, struct.pack('<HHIQ', len(data), len(data), 0, buf))
        return us

    def register(self, altitude='385201'):
        return self.m.routines['CmRegisterCallbackEx'](
            [0x5000, self.string(altitude), 0, 0x77, self.cookie, 0], speakeasy_success)

    def test_registration_writes_a_cookie_that_unregisters_once(self):
        self.assertEqual(self.register(), 0)
        cookie = self.m.read_u64(self.cookie)
        self.assertNotEqual(cookie, 0, 'speakeasy writes none; the model must')
        unregister = self.m.routines['CmUnRegisterCallback']
        self.assertEqual(unregister([cookie], speakeasy_success), 0)
        self.assertEqual(unregister([cookie], speakeasy_success), STATUS_INVALID_PARAMETER)
        self.assertEqual(unregister([cookie + 1], speakeasy_success), STATUS_INVALID_PARAMETER)

    def test_a_failed_unregistration_is_raced_by_a_call_in_flight_and_the_registration_stays(self):
        # The teardown sweep's CmUnRegisterCallback failure: a RegistryCallback already dispatched
        # on another processor is in flight across the failed call, and the registration lives on.
        self.register()
        cookie = self.m.read_u64(self.cookie)
        reg = self.cm.registrations[cookie]
        returned = []

        def trampoline(calls, before=None, after=None, result=None):
            self.m.callbacks.extend(calls)
            returned.append(result)
            before(0)
            after(0)

        self.m.call_back_before_return = trampoline
        self.assertEqual(self.cm._failed_unregister([cookie], 0xC000009A), 0xC000009A)
        self.assertEqual([c[0] for c in self.m.callbacks], [0x5000], 'the callback ran (in flight)')
        self.assertEqual(returned, [0xC000009A], 'the routine still returns the failure')
        self.assertTrue(reg.active and not reg.unregistering, 'still registered')
        self.assertEqual(self.m.routines['CmUnRegisterCallback']([cookie], speakeasy_success), 0)

    def test_same_altitude_collides(self):
        self.register()
        self.assertEqual(self.register(), STATUS_FLT_INSTANCE_ALTITUDE_COLLISION)

    def test_missing_altitude_is_invalid(self):
        self.assertEqual(self.register(altitude=''), STATUS_INVALID_PARAMETER)

    def test_registering_or_unregistering_inside_the_callback_is_stopped(self):
        self.register()
        cookie = self.m.read_u64(self.cookie)
        self.cm.depth = 1  # as if inside the RegistryCallback
        with self.assertRaisesRegex(KernelStop, 'deadlock'):
            self.m.routines['CmUnRegisterCallback']([cookie], speakeasy_success)
        with self.assertRaisesRegex(KernelStop, 'forbids'):
            self.register(altitude='385202')

    def test_key_names_only_for_objects_of_the_notification_and_released_once(self):
        self.register()
        obj = self.cm._key_object('\\REGISTRY\\MACHINE\\SOFTWARE\\X')
        name_out = self.m.alloc(8, 'name')
        get = self.m.routines['CmCallbackGetKeyObjectIDEx']
        with self.assertRaisesRegex(KernelStop, 'not a key object of the notification'):
            get([self.cookie, obj, 0, name_out, 0], None)
        self.cm.current_objects = {obj}
        self.assertEqual(get([self.cookie, obj, 0, name_out, 0], None), 0)
        name = self.m.read_u64(name_out)
        self.assertEqual(self.m.read_unicode_string(name), '\\REGISTRY\\MACHINE\\SOFTWARE\\X')
        self.assertIn('every key name released (CmCallbackReleaseKeyObjectIDEx)',
                      [c for c, ok, _ in self.cm.audit() if not ok])
        release = self.m.routines['CmCallbackReleaseKeyObjectIDEx']
        release([name], None)
        with self.assertRaisesRegex(KernelStop, 'released twice'):
            release([name], None)

    def test_upper_case_is_one_unit_for_one(self):
        self.assertEqual(simple_upper('stra\u00dfe'), 'STRA\u00dfE', 'no SS expansion')
        self.assertEqual(simple_upper('\u212a'), '\u212a')


if __name__ == '__main__':
    unittest.main()
