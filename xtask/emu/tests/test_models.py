"""The documented rules of the modelled routines, checked without a driver image."""
import os
import struct
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

from emukernel.callbacks import STATUS_OBJECT_NAME_NOT_FOUND, STATUS_UNSUCCESSFUL, ExCallbacks  # noqa: E402
from emukernel.errors import KernelStop  # noqa: E402
from emukernel.irql import DISPATCH_LEVEL, PASSIVE_LEVEL  # noqa: E402
from emukernel.rundown import Rundown  # noqa: E402


class FakeMachine:
    """Memory as a dict of bytes; routines attached by name."""

    def __init__(self, memory=0x10000):
        self.mem = bytearray(memory)
        self.next = 0x1000
        self.irql = PASSIVE_LEVEL
        self.routines = {}
        self.callbacks = []
        # What the models read of a Machine besides memory: phase, instruction counting, stop.
        self.phase = 'DriverEntry'
        self.instructions = 0
        self.counting = False
        self.stop = None
        self.results = []
        self.se = self

    def attach(self, module, name, argc, impl, handled_by='model', conv=None, fallible=None, teardown=None):
        self.routines[name] = impl

    def call_routine(self, name, *args):
        return self.routines[name](list(args), None)

    def alloc(self, size, tag):
        a = self.next
        self.next += (size + 15) & ~15
        return a

    def read(self, a, n):
        return bytes(self.mem[a:a + n])

    def write(self, a, data):
        self.mem[a:a + len(data)] = data

    def read_u32(self, a):
        return struct.unpack('<I', self.read(a, 4))[0]

    def read_u64(self, a):
        return struct.unpack('<Q', self.read(a, 8))[0]

    def write_u64(self, a, v):
        self.write(a, struct.pack('<Q', v))

    def read_unicode_string(self, a):
        length = struct.unpack('<H', self.read(a, 2))[0]
        return self.read(self.read_u64(a + 8), length).decode('utf-16-le')

    def in_image(self, a):
        return False

    def call_back_before_return(self, calls, before=None, after=None, result=None):
        self.callbacks.extend(calls)


def attributes(m, name, flags=0x40):
    text = name.encode('utf-16-le')
    buf = m.alloc(len(text), 'name')
    m.write(buf, text)
    us = m.alloc(16, 'us')
    m.write(us, struct.pack('<HHIQ', len(text), len(text), 0, buf))
    oa = m.alloc(48, 'oa')
    m.write(oa, struct.pack('<IIQQIIQQ', 48, 0, 0, us, flags, 0, 0, 0))
    return oa


class CallbackObjectTest(unittest.TestCase):
    def setUp(self):
        self.m = FakeMachine()
        self.ex = ExCallbacks(self.m)
        self.out = self.m.alloc(8, 'out')

    def create(self, name, create, multiple=1):
        status = self.m.call_routine('ExCreateCallback', self.out, attributes(self.m, name), create, multiple)
        return status, self.m.read_u64(self.out)

    def test_open_without_create_fails_for_unknown_names(self):
        self.assertEqual(self.create('\\Callback\\Nope', 0)[0], STATUS_OBJECT_NAME_NOT_FOUND)

    def test_system_objects_open_case_insensitively(self):
        status, obj = self.create('\\callback\\powerstate', 0)
        self.assertEqual(status, 0)
        self.assertNotEqual(obj, 0)

    def test_unnamed_objects_are_refused(self):
        oa = self.m.alloc(48, 'oa')
        self.m.write(oa, struct.pack('<IIQQIIQQ', 48, 0, 0, 0, 0x40, 0, 0, 0))
        self.assertEqual(self.m.call_routine('ExCreateCallback', self.out, oa, 1, 1), STATUS_UNSUCCESSFUL)

    def test_single_registration_objects_refuse_a_second(self):
        _, obj = self.create('\\Callback\\One', 1, multiple=0)
        self.assertNotEqual(self.m.call_routine('ExRegisterCallback', obj, 0x5000, 0), 0)
        self.assertEqual(self.m.call_routine('ExRegisterCallback', obj, 0x5100, 0), 0)

    def test_unregistering_twice_stops_the_kernel(self):
        _, obj = self.create('\\Callback\\Mine', 1)
        handle = self.m.call_routine('ExRegisterCallback', obj, 0x5000, 0)
        self.m.call_routine('ExUnregisterCallback', handle)
        with self.assertRaisesRegex(KernelStop, 'already unregistered'):
            self.m.call_routine('ExUnregisterCallback', handle)
        with self.assertRaisesRegex(KernelStop, 'not a handle'):
            self.m.call_routine('ExUnregisterCallback', 0xBAD0)

    def test_unregister_above_apc_level_is_an_irql_violation(self):
        _, obj = self.create('\\Callback\\Mine', 1)
        handle = self.m.call_routine('ExRegisterCallback', obj, 0x5000, 0)
        self.m.irql = DISPATCH_LEVEL
        with self.assertRaisesRegex(KernelStop, 'IRQL'):
            self.m.call_routine('ExUnregisterCallback', handle)

    def test_notifying_a_system_object_is_forbidden(self):
        _, obj = self.create('\\Callback\\PowerState', 0)
        with self.assertRaisesRegex(KernelStop, 'must not notify'):
            self.m.call_routine('ExNotifyCallback', obj, 1, 0)

    def test_notify_calls_registrations_in_order(self):
        _, obj = self.create('\\Callback\\Mine', 1)
        self.m.call_routine('ExRegisterCallback', obj, 0x5000, 0x11)
        self.m.call_routine('ExRegisterCallback', obj, 0x6000, 0x22)
        self.m.call_routine('ExNotifyCallback', obj, 7, 8)
        self.assertEqual(self.m.callbacks, [(0x5000, [0x11, 7, 8]), (0x6000, [0x22, 7, 8])])

    def test_dereferencing_twice_stops_the_kernel(self):
        _, obj = self.create('\\Callback\\Mine', 1)
        self.m.call_routine('ObfDereferenceObject', obj)
        with self.assertRaisesRegex(KernelStop, 'REFERENCE_BY_POINTER'):
            self.m.call_routine('ObfDereferenceObject', obj)

    def test_a_registration_holds_its_own_reference(self):
        # "Using a Driver-Defined Callback Object": ExUnregisterCallback removes the registration's
        # reference to the object; ReactOS ntoskrnl/ex/callback.c likewise. Dereferencing first
        # is therefore allowed: the object lives until the registration goes.
        _, obj = self.create('\\Callback\\Mine', 1)
        handle = self.m.call_routine('ExRegisterCallback', obj, 0x5000, 0x11)
        self.m.call_routine('ObfDereferenceObject', obj)
        self.m.call_routine('ExNotifyCallback', obj, 1, 2)
        self.assertEqual(self.m.callbacks, [(0x5000, [0x11, 1, 2])], 'still alive, still registered')
        self.m.call_routine('ExUnregisterCallback', handle)
        with self.assertRaisesRegex(KernelStop, 'REFERENCE_BY_POINTER'):
            self.m.call_routine('ExNotifyCallback', obj, 1, 2)
        audit = {c: ok for c, ok, _d in self.ex.audit()}
        self.assertTrue(audit['no object deleted while registered'])
        self.assertTrue(audit['every callback-object reference released'])

    def test_audit_reports_what_is_left(self):
        _, obj = self.create('\\Callback\\Mine', 1)
        self.m.call_routine('ExRegisterCallback', obj, 0x5000, 0)
        failed = [c for c, ok, _ in self.ex.audit() if not ok]
        self.assertIn('every callback registration undone', failed)
        self.assertIn('every callback-object reference released', failed)


class RundownTest(unittest.TestCase):
    def setUp(self):
        self.m = FakeMachine()
        self.r = Rundown(self.m)
        self.ref = self.m.alloc(8, 'ref')

    def test_acquire_fails_once_rundown_began(self):
        self.m.call_routine('ExInitializeRundownProtection', self.ref)
        self.assertEqual(self.m.call_routine('ExAcquireRundownProtection', self.ref), 1)
        self.assertEqual(self.m.read_u64(self.ref), 2, 'one holder is stored as 2')
        self.m.call_routine('ExReleaseRundownProtection', self.ref)
        self.m.call_routine('ExWaitForRundownProtectionRelease', self.ref)
        self.assertEqual(self.m.call_routine('ExAcquireRundownProtection', self.ref), 0)

    def test_waiting_with_a_holder_on_this_thread_is_a_deadlock(self):
        self.m.call_routine('ExInitializeRundownProtection', self.ref)
        self.m.call_routine('ExAcquireRundownProtection', self.ref)
        with self.assertRaisesRegex(KernelStop, 'never return'):
            self.m.call_routine('ExWaitForRundownProtectionRelease', self.ref)

    def test_uninitialized_and_unbalanced_use_is_caught(self):
        with self.assertRaisesRegex(KernelStop, 'never initialized'):
            self.m.call_routine('ExAcquireRundownProtection', self.ref)
        self.m.call_routine('ExInitializeRundownProtection', self.ref)
        with self.assertRaisesRegex(KernelStop, 'without a matching'):
            self.m.call_routine('ExReleaseRundownProtection', self.ref)


if __name__ == '__main__':
    unittest.main()
