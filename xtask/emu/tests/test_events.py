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

    def in_image(self, address):
        return address >= 0x1000


class Record:
    def __init__(self, routine, ret, note=''):
        self.routine, self.ret, self.note = routine, ret, note


class Flight:
    function = 0x2000
    irql = 2
    paused_at = "inside the driver's barrier"
    resumed_at = 'when the driver waited (KeWaitForSingleObject)'


def every_kind():
    """An event list with every kind and every field events.py writes."""
    m = FakeMachine()
    ev = events.Events(m)
    ev.name(0x2000, 'classifyFn', 'filter engine')
    ev.driver_entry()
    ev.returned(ev.call(Record('ntoskrnl.CmRegisterCallbackEx', 0)), Record('x.CmRegisterCallbackEx', 0))
    ev.returned(None, Record('ntoskrnl.ExAllocatePoolWithTag', 0), injected='NULL')
    ev.returned(ev.call(Record('ntoskrnl.ZwClose', 0)), Record('ntoskrnl.ZwClose', 0, note='bugcheck'))
    ev.driver_entry_returned(0)
    m.stage = 'DriverUnload'
    ev.enter(0x2000, 2)
    ev.leave()
    flight = Flight()
    for kind in ('callback', 'suspend', 'resume', 'end'):
        ev.flight(kind, flight)
    ev._add({'kind': 'call', 'x': 1})
    ev._add({'kind': 'call', 'x': 1})
    out, _dropped = ev.finish([{'check': 'c', 'ok': True, 'detail': ''}], {'kind': 'deadlock'})
    return out


def documented():
    """REPORT.md's event table: {kind: {fields}}."""
    path = os.path.join(os.path.dirname(__file__), '..', 'REPORT.md')
    with open(path, encoding='utf-8') as f:
        text = f.read()
    table = text.split('## The event list', 1)[1].split('\n## ', 1)[0]
    out = {}
    for line in table.splitlines():
        cells = line.split(' | ')
        if line.startswith('| `') and len(cells) >= 3:
            kind = cells[0].strip('| `')
            out[kind] = {c.strip('`') for c in cells[1].split(', ')}
    return out


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

    def test_report_md_documents_every_kind_and_field(self):
        docs = documented()
        self.assertIn('repeat', docs)
        seen = {}

        def walk(items):
            for e in items:
                seen.setdefault(e['kind'], set()).update(k for k in e if k != 'kind')
                walk(e.get('events', []) if e['kind'] == 'repeat' else [])
        walk(every_kind())
        for kind, fields in seen.items():
            self.assertIn(kind, docs, 'event kind %r is not in REPORT.md' % kind)
            self.assertLessEqual(fields - {'x'}, docs[kind], 'fields of %r not in REPORT.md' % kind)
        self.assertLessEqual(set(docs), set(seen) | {'x'}, 'REPORT.md documents kinds never written')

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
