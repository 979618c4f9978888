"""run.py: the cyclic collector is paused while a run executes and restored after, as it was."""
import gc
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from emukernel import run  # noqa: E402


class CollectionPausedTest(unittest.TestCase):
    def tearDown(self):
        gc.enable()

    def test_paused_inside_and_restored_after_even_on_an_exception(self):
        gc.enable()
        with run.cycle_collection_paused():
            self.assertFalse(gc.isenabled())
        self.assertTrue(gc.isenabled())
        with self.assertRaises(KeyError):
            with run.cycle_collection_paused():
                raise KeyError('x')
        self.assertTrue(gc.isenabled())

    def test_a_collector_disabled_before_stays_disabled(self):
        gc.disable()
        with run.cycle_collection_paused():
            self.assertFalse(gc.isenabled())
        self.assertFalse(gc.isenabled())

    def test_execute_runs_with_the_collector_paused(self):
        seen = []
        r = run.Run.__new__(run.Run)       # no machine: only execute's frame is under test
        r._execute = lambda run_steps: seen.append((run_steps, gc.isenabled()))
        gc.enable()
        r.execute(run_steps=True)
        self.assertEqual(seen, [(True, False)])
        self.assertTrue(gc.isenabled())


if __name__ == '__main__':
    unittest.main()
