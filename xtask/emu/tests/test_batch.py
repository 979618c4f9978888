"""`harness.py --batch`: the plan is checked, each entry gets its block, in the plan's order."""
import io
import json
import os
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

from emukernel import batch  # noqa: E402
from emukernel.errors import HarnessError  # noqa: E402


def entry(name, **changes):
    e = {'name': name, 'image': '/x/%s.sys' % name, 'scenario': '/x/scenario.toml', 'report': '/x/r.json',
         'faults': False, 'fault_phase': None, 'count_instructions': False, 'variants': True}
    e.update(changes)
    return e


def plan_file(plan):
    fd, path = tempfile.mkstemp(suffix='.json')
    with os.fdopen(fd, 'w') as f:
        f.write(plan if isinstance(plan, str) else json.dumps(plan))
    return path


def fake_run_one(e, jobs, progress):
    if e['name'] == 'slow':
        time.sleep(0.2)
    if e['name'] == 'crashes':
        raise RuntimeError('boom')
    if e['name'] == 'unusable':
        return 2, 'no image at %s' % e['image']
    progress('%s: scenario run (jobs %d)' % (e['name'], jobs))
    return (0 if e['name'] != 'fails' else 1), None


class BatchTest(unittest.TestCase):
    def run_plan(self, entries, jobs=2):
        out = io.StringIO()
        code = batch.run(plan_file({'schema': 1, 'entries': entries}), jobs, fake_run_one, out)
        return code, out.getvalue().splitlines()

    def test_blocks_come_in_plan_order_with_each_exit_status(self):
        code, lines = self.run_plan([entry('slow'), entry('fails'), entry('unusable'), entry('crashes')])
        self.assertEqual(code, 0)
        self.assertEqual([x for x in lines if x.startswith('@')],
                         ['@entry slow', '@exit 0', '@entry fails', '@exit 1', '@entry unusable', '@exit 2',
                          '@entry crashes', '@exit 70'])
        self.assertIn('slow: scenario run (jobs 1)', lines)
        self.assertIn('harness: error: no image at /x/unusable.sys', lines)
        self.assertTrue(any('RuntimeError: boom' in x for x in lines))

    def test_one_entry_gets_every_job(self):
        _code, lines = self.run_plan([entry('alone')], jobs=2)
        self.assertIn('alone: scenario run (jobs 2)', lines)

    def test_a_bad_plan_is_refused_naming_the_entry(self):
        cases = [
            ('not json', 'not JSON'),
            ({'schema': 2, 'entries': []}, 'must be'),
            ({'schema': 1, 'entries': []}, 'no entries'),
            ({'schema': 1, 'entries': [entry('a', extra=1)]}, 'entry 1 must have exactly the keys'),
            ({'schema': 1, 'entries': [entry('a'), entry('b', faults='yes')]}, 'entry 2: faults has the wrong type'),
            ({'schema': 1, 'entries': [entry('a', fault_phase='Both')]}, 'fault_phase must be'),
        ]
        for plan, message in cases:
            with self.assertRaisesRegex(HarnessError, message):
                batch.read_plan(plan_file(plan))
        with self.assertRaisesRegex(HarnessError, 'cannot read the batch plan'):
            batch.read_plan('/nonexistent/plan.json')


if __name__ == '__main__':
    unittest.main()
