"""forks.fork_map: each task in its own child, from the parent's state, results in task order."""
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

from emukernel.errors import HarnessError  # noqa: E402
from emukernel.forks import ChildError, fork_map  # noqa: E402


class ForkMapTest(unittest.TestCase):
    def test_results_come_in_task_order_whatever_finishes_first(self):
        def slow_first(task):
            time.sleep(0.2 if task == 0 else 0.0)
            return task * 10, os.getpid()
        results = list(fork_map(slow_first, [0, 1, 2, 3], 2))
        self.assertEqual([r[0] for r in results], [0, 10, 20, 30])
        self.assertNotIn(os.getpid(), [r[1] for r in results])
        self.assertEqual(len({r[1] for r in results}), 4)   # one child per task

    def test_every_child_starts_from_the_parent_state_not_from_a_sibling(self):
        state = {'runs': 0}

        def run(task):
            state['runs'] += 1
            return state['runs']
        self.assertEqual(list(fork_map(run, range(5), 1)), [1] * 5)
        self.assertEqual(state['runs'], 0)

    def test_an_exception_in_a_child_is_raised_in_the_parent_at_its_turn(self):
        def fails_on_two(task):
            if task == 2:
                raise HarnessError('task two')
            return task
        seen = []
        with self.assertRaisesRegex(HarnessError, 'task two'):
            for r in fork_map(fails_on_two, [0, 1, 2, 3], 2):
                seen.append(r)
        self.assertEqual(seen, [0, 1])

    def test_a_child_that_dies_is_an_error_not_a_result(self):
        def dies(task):
            os._exit(3)
        with self.assertRaisesRegex(ChildError, 'without a result'):
            list(fork_map(dies, [0], 1))


if __name__ == '__main__':
    unittest.main()
