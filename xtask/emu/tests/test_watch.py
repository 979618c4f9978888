"""Watched memory: one hook pair per page, and exactly the watchers whose range holds the address."""
import os
import random
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

from emukernel.watch import Watches  # noqa: E402


class Hooks:
    """The emulator's memory hooks as unicorn calls them: every hook whose bounds hold the address."""

    def __init__(self):
        self.read, self.write = [], []
        self.se = self

    def add_mem_read_hook(self, cb, begin, end):
        self.read.append((begin, end, cb))

    def add_mem_write_hook(self, cb, begin, end):
        self.write.append((begin, end, cb))

    def access(self, hooks, address, size=8):
        for begin, end, cb in hooks:
            if begin <= address <= end:
                cb(None, 'access', address, size, 0, None)


class WatchTest(unittest.TestCase):
    def setUp(self):
        self.hooks = Hooks()
        self.w = Watches(self.hooks)
        self.seen = []

    def watcher(self, name):
        return lambda emu, access, address, size, value, ctx: self.seen.append((name, address))

    def test_one_hook_pair_per_page_however_many_ranges(self):
        for i in range(50):
            self.w.watch(0x10000 + 0x40 * i, 0x30, self.watcher(i))
        self.assertEqual(len(self.hooks.read), 1)
        self.assertEqual(len(self.hooks.write), 1)
        # A range across a page boundary adds the next page.
        self.w.watch(0x10ff0, 0x20, self.watcher('across'))
        self.assertEqual([(b, e) for b, e, _ in self.hooks.read], [(0x10000, 0x10fff), (0x11000, 0x11fff)])

    def test_only_the_ranges_holding_the_address_are_called_in_order(self):
        self.w.watch(0x20010, 0x10, self.watcher('a'))
        self.w.watch(0x20040, 0x10, self.watcher('b'))
        self.w.watch(0x20010, 0x4, self.watcher('c'))       # the same bytes watched twice
        self.hooks.access(self.hooks.read, 0x20030)          # the gap between: nobody
        self.hooks.access(self.hooks.read, 0x2001f)          # last byte of a
        self.hooks.access(self.hooks.write, 0x20012)         # a, then c
        self.hooks.access(self.hooks.read, 0x20050)          # one past b: nobody
        self.assertEqual(self.seen, [('a', 0x2001f), ('a', 0x20012), ('c', 0x20012)])

    def test_an_access_that_starts_before_the_range_is_not_in_it(self):
        # As unicorn's bounds check: the access's address decides, not its size.
        self.w.watch(0x30008, 0x8, self.watcher('x'))
        self.hooks.access(self.hooks.read, 0x30004, size=8)
        self.assertEqual(self.seen, [])
        self.hooks.access(self.hooks.read, 0x30008, size=1)
        self.assertEqual(self.seen, [('x', 0x30008)])

    def test_random_ranges_and_accesses_as_every_range_checked_in_order(self):
        # The map of held bytes only skips accesses no range holds: the same calls as a walk of
        # every range, in the order watched (ranges across pages, repeated, empty, one byte).
        rng = random.Random(14)
        ranges = []
        for i in range(300):
            start = 0x40000 + rng.randrange(0x3000)
            length = rng.choice((0, 1, 8, 0x40, 0x300, 0x1800))
            ranges.append((start, start + length - 1, i))
            self.w.watch(start, length, self.watcher(i))
        expected = []
        for _ in range(3000):
            address = 0x3f000 + rng.randrange(0x6000)
            expected += [(i, address) for first, last, i in ranges if first <= address <= last]
            self.hooks.access(self.hooks.read if rng.random() < 0.5 else self.hooks.write, address)
        self.assertEqual(self.seen, expected)
        self.assertGreater(len(expected), 100)


if __name__ == '__main__':
    unittest.main()
