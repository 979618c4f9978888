"""Scenario files: bad input is rejected with the file and the reason."""
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

from emukernel.errors import HarnessError  # noqa: E402
from emukernel.families import load_scenario as load  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..'))


def scenario(text):
    fd, path = tempfile.mkstemp(suffix='.toml')
    with os.fdopen(fd, 'w') as f:
        f.write(text)
    return path


class ScenarioTest(unittest.TestCase):
    # A standalone workspace made by `cargo xtask new --path` has no ex-callback.
    @unittest.skipUnless(os.path.isdir(os.path.join(ROOT, 'ex-callback')), 'no ex-callback sample')
    def test_the_ex_callback_scenario_loads(self):
        s = load(os.path.join(ROOT, 'ex-callback', 'scenario.toml'))
        self.assertGreater(len(s.steps), 3)
        self.assertEqual(s.steps[0]['object'], '\\Callback\\PowerState')
        self.assertEqual(s.steps[0].irql, 2)
        self.assertEqual(len(s.races), 1)

    def test_unknown_step_kind(self):
        with self.assertRaisesRegex(HarnessError, "unknown kind 'teleport'"):
            load(scenario('[[step]]\nkind = "teleport"\nobject = "\\\\X"\n'))

    def test_unknown_key(self):
        with self.assertRaisesRegex(HarnessError, 'unknown key'):
            load(scenario('colour = "blue"\n'))

    def test_bad_irql(self):
        with self.assertRaisesRegex(HarnessError, 'unknown IRQL'):
            load(scenario('[[step]]\nkind = "notify"\nobject = "\\\\X"\nirql = "HIGH"\n'))

    def test_not_toml(self):
        with self.assertRaisesRegex(HarnessError, 'not valid TOML'):
            load(scenario('[[step]\n'))

    def test_missing_file(self):
        with self.assertRaisesRegex(HarnessError, 'cannot read scenario'):
            load('/nonexistent/scenario.toml')


if __name__ == '__main__':
    unittest.main()
