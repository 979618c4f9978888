"""The ETW model (emukernel/etw.py): registration, the enable callback before EtwRegister returns,
TraceLogging decoding, and its three audit checks, each failing when broken."""
import os
import struct
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
sys.path.insert(0, os.path.dirname(__file__))

from emukernel.etw import (GUID_CHECK, NAME_CHECK, SAME_LINES_CHECK, STATUS_INVALID_HANDLE, STATUS_INVALID_PARAMETER,  # noqa: E402
                           UNREGISTERED_CHECK, Etw, guid_text, name_guid)
from test_models import FakeMachine  # noqa: E402

NAME = 'WindowsCallbackDrivers.test'
# What common::log::tlg builds: event "Log", field "Message", ANSI string in-type with UTF-8 out-type.
EVENT_META = bytes([17, 0, 0]) + b'Log\0Message\0' + bytes([0x82, 35])


class EtwTest(unittest.TestCase):
    def setUp(self):
        self.m = FakeMachine()
        self.m.log = []
        self.etw = Etw(self.m)

    def put(self, data):
        a = self.m.alloc(len(data), 'data')
        self.m.write(a, data)
        return a

    def register(self, name=NAME, guid=None, callback=0x5000):
        out = self.m.alloc(8, 'handle')
        guid_ptr = self.put(guid if guid is not None else name_guid(name))
        self.assertEqual(self.m.call_routine('EtwRegister', guid_ptr, callback, 0x77, out), 0)
        handle = self.m.read_u64(out)
        traits = struct.pack('<H', len(name) + 3) + name.encode() + b'\0'
        self.assertEqual(self.m.call_routine('EtwSetInformation', handle, 2, self.put(traits), len(traits)), 0)
        return handle

    def write(self, handle, message, level=4):
        descriptor = self.put(struct.pack('<HBBBBHQ', 0, 0, 11, level, 0, 0, 0))
        provider_meta = struct.pack('<H', len(NAME) + 3) + NAME.encode() + b'\0'
        chunks = [(provider_meta, 2), (EVENT_META, 1), (message.encode() + b'\0', 0)]
        data = b''.join(struct.pack('<QIBBH', self.put(c), len(c), kind, 0, 0) for c, kind in chunks)
        return self.m.call_routine('EtwWriteTransfer', handle, descriptor, 0, 0, 3, self.put(data))

    def failed(self):
        return {c: d for c, ok, d in self.etw.audit() if not ok}

    def test_name_hash_matches_published_pairs(self):
        self.assertEqual(guid_text(name_guid('MyCompany.MyComponent')), 'ce5fa4ea-ab00-5402-8b76-9f76ac858fb5')
        self.assertEqual(guid_text(name_guid('billti-example')), 'c212d3ce-dfb9-5469-08f5-f477b0d92305')

    def test_the_enable_callback_runs_before_register_returns_with_every_level(self):
        self.register()
        (function, args), = self.m.callbacks
        self.assertEqual(function, 0x5000)
        self.assertEqual(args[1:7], [1, 0xFF, 0xFFFFFFFFFFFFFFFF, 0, 0, 0x77])

    def test_a_log_event_is_decoded_and_must_equal_the_debugger_line(self):
        h = self.register()
        self.m.log.append('[test] Info: hello 42')
        self.assertEqual(self.write(h, '[test] Info: hello 42'), 0)
        self.assertEqual(self.etw.events, [{'provider': NAME, 'level': 4, 'event': 'Log',
                                            'message': '[test] Info: hello 42'}])
        self.m.call_routine('EtwUnregister', h)
        self.assertEqual(self.failed(), {})
        self.m.log.append('[test] Info: hello 0000000000000042')
        self.write(h, '[test] Info: hello 42')  # not registered any more: refused, not recorded
        self.assertEqual(len(self.etw.events), 1)

    def test_a_line_formatted_differently_fails_the_rule(self):
        h = self.register()
        self.m.log.append('[test] Info: pointer 000000000000002A')
        self.write(h, '[test] Info: pointer 2a')
        self.m.call_routine('EtwUnregister', h)
        self.assertIn(SAME_LINES_CHECK, self.failed())

    def test_a_provider_left_registered_fails_the_rule(self):
        self.register()
        self.assertIn(UNREGISTERED_CHECK, self.failed())
        self.assertIn(NAME, self.failed()[UNREGISTERED_CHECK])

    def test_a_guid_that_is_not_the_name_hash_fails_the_rule(self):
        h = self.register(guid=bytes(range(16)))
        self.m.call_routine('EtwUnregister', h)
        self.assertEqual(set(self.failed()), {GUID_CHECK})

    def test_a_provider_not_named_after_the_image_fails_the_rule(self):
        class Module:
            path = '/x/target/drivers/x64/debug/other-driver/other-driver.sys'
        self.m.module = Module()
        h = self.register()
        self.m.call_routine('EtwUnregister', h)
        self.assertIn('deploy enables WindowsCallbackDrivers.other-driver', self.failed()[NAME_CHECK])
        Module.path = '/x/test.sys'
        self.assertNotIn(NAME_CHECK, self.failed())

    def test_statuses(self):
        out = self.m.alloc(8, 'handle')
        self.assertEqual(self.m.call_routine('EtwRegister', 0, 0, 0, out), STATUS_INVALID_PARAMETER)
        self.assertEqual(self.m.call_routine('EtwUnregister', 0x1234), STATUS_INVALID_HANDLE)
        self.assertEqual(self.write(0x1234, 'x'), STATUS_INVALID_HANDLE)
        h = self.register()
        bad = self.put(struct.pack('<H', 99) + b'x\0')
        self.assertEqual(self.m.call_routine('EtwSetInformation', h, 2, bad, 4), STATUS_INVALID_PARAMETER)
        self.assertEqual(self.m.call_routine('EtwWriteTransfer', h, self.put(bytes(16)), 0, 0, 129, 0x100),
                         STATUS_INVALID_PARAMETER)
        self.m.call_routine('EtwUnregister', h)
        self.assertEqual(self.m.call_routine('EtwUnregister', h), STATUS_INVALID_HANDLE)


if __name__ == '__main__':
    unittest.main()
