"""The event list (events.py): what is kept, how statuses read, how long runs fold, the cap."""
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

from emukernel import events  # noqa: E402
from emukernel.events import category, fold, status_text  # noqa: E402


class FakeMachine:
    stage = 'DriverEntry'
    phase = 'DriverEntry'
    irql = 0


class EventsTest(unittest.TestCase):
    def test_the_lesson_is_kept_and_the_noise_left_out(self):
        self.assertEqual(category('ntoskrnl.ExRegisterCallback'), 'register')
        self.assertEqual(category('ntoskrnl.CmUnRegisterCallback'), 'unregister')
        self.assertEqual(category('ntoskrnl.ExWaitForRundownProtectionRelease'), 'wait')
        self.assertEqual(category('ntoskrnl.ExFreePoolWithTag'), 'free')
        self.assertEqual(category('fwpkclnt.FwpsFlowAssociateContext0'), 'register')
        for noise in ('ntoskrnl.DbgPrintEx', 'ntoskrnl.ExAcquireRundownProtection',
                      'ntoskrnl.ExAllocatePoolWithTag', 'ntoskrnl.RtlInitUnicodeString'):
            self.assertIsNone(category(noise), noise)

    def test_statuses_read_as_names_and_no_addresses(self):
        self.assertEqual(status_text('fwpkclnt.FwpsCalloutUnregisterById0', 0x80000011), 'STATUS_DEVICE_BUSY')
        self.assertEqual(status_text('ntoskrnl.CmRegisterCallbackEx', 0xC0220001), '0xC0220001')
        self.assertEqual(status_text('ntoskrnl.ExRegisterCallback', 0xFFFF800012340000), 'handle')
        self.assertEqual(status_text('ntoskrnl.ExRegisterCallback', 0), 'NULL')
        self.assertIsNone(status_text('ntoskrnl.ExUnregisterCallback', 0x1234))

    def test_a_thousand_flows_fold_into_one_entry(self):
        a, b, c = {'kind': 'call', 'routine': 'A'}, {'kind': 'callback', 'callback': 'B'}, {'kind': 'x'}
        folded = fold([c] + [a, b] * 1000 + [c])
        self.assertEqual(folded, [c, {'kind': 'repeat', 'count': 1000, 'events': [a, b]}, c])
        self.assertEqual(fold([a, b, c]), [a, b, c], 'nothing repeats: nothing folds')
        folded = fold([a, a] + [a, b] * 1000)
        self.assertEqual(folded, [a, a, {'kind': 'repeat', 'count': 1000, 'events': [a, b]}],
                         'the longer fold wins over a short one just before it')

    def test_the_list_is_capped_with_the_verdict_kept(self):
        m = FakeMachine()
        ev = events.Events(m)
        for i in range(events.MAX_EVENTS * 2):
            ev._add({'kind': 'callback', 'callback': 'f%d' % i})
        out, dropped = ev.finish([{'check': 'c', 'ok': False, 'detail': ''}], None)
        self.assertEqual(len(out), events.MAX_EVENTS)
        self.assertGreater(dropped, 0)
        self.assertEqual(out[-1], {'kind': 'audit', 'checks': 1, 'failed': ['c'], 'tolerated': []})


if __name__ == '__main__':
    unittest.main()
