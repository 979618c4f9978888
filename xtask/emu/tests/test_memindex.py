"""memindex.py answers exactly as speakeasy's scan of its memory maps: differential tests on
speakeasy's own MemoryManager, with random allocation, free and lookup sequences."""
import os
import random
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

# emukernel first: it imports unicorn as speakeasy cannot on Python 3.12 (emukernel/quickstart.py).
from emukernel import memindex  # noqa: E402, I001
from speakeasy.memmgr import MemMap, MemoryManager  # noqa: E402

PAGE = 0x1000


class FakeEngine:
    """What MemoryManager asks of unicorn: map, unmap and the mapped regions (inclusive ends)."""

    def __init__(self):
        self.regions = {}
        self.log = []

    def mem_map(self, base, size, perms=None):
        self.log.append(('map', base, size))
        self.regions[base] = size

    def mem_unmap(self, base, size):
        self.log.append(('unmap', base, size))
        del self.regions[base]

    def mem_regions(self):
        return [(b, b + s - 1, 7) for b, s in sorted(self.regions.items())]


def manager(indexed):
    mm = MemoryManager()
    mm.emu_eng = FakeEngine()
    mm.hooks = {}
    mm.keep_memory_on_free = False
    if indexed:
        memindex.index(mm)
    return mm


def shape(mm):
    return [(m.base, m.size, m.block_base, m.free, m.tag) for m in mm.maps]


def found(m, maps):
    return None if m is None else (m.base, m.size, [i for i, x in enumerate(maps) if x is m])


def differential(seed, steps=600, broken=None):
    """Runs one random sequence on a plain and an indexed manager; returns the first difference
    (a description) or None. `broken(maps)` may sabotage the index (the negative test)."""
    rnd = random.Random(seed)
    plain, fast = manager(False), manager(True)
    if broken:
        broken(fast.maps)
    live = []
    for step in range(steps):
        op = rnd.random()
        if op < 0.45 or not live:
            size = rnd.choice([rnd.randint(1, 0x200), rnd.randint(1, 0xFFF), PAGE * rnd.randint(1, 3),
                               rnd.randint(0x1001, 0x3000)])
            base = None
            if rnd.random() < 0.1:
                base = rnd.randrange(0x10000, 0x40000, PAGE)
            got = [m.mem_map(size, base=base, tag='emu.test') for m in (plain, fast)]
            if got[0] != got[1]:
                return 'step %d: mem_map(0x%x) returned 0x%x and 0x%x' % (step, size, got[0], got[1])
            live.append(got[0])
        elif op < 0.8:
            address = live.pop(rnd.randrange(len(live)))
            if rnd.random() < 0.2:
                address += rnd.randint(0, 0x20)      # inside the block, or past a small one
            plain.mem_free(address)
            fast.mem_free(address)
        else:
            address = rnd.choice([rnd.randrange(0, 0x50000), rnd.choice(live) + rnd.randint(-2, 0x300)])
            a, b = found(plain.get_address_map(address), plain.maps), found(fast.get_address_map(address), fast.maps)
            if a != b:
                return 'step %d: get_address_map(0x%x) found %s and %s' % (step, address, a, b)
        if shape(plain) != shape(fast):
            return 'step %d: the maps differ' % step
        if plain.emu_eng.log != fast.emu_eng.log:
            return 'step %d: the engine saw different maps and unmaps' % step
    return None


class MemIndexTest(unittest.TestCase):
    def test_random_sequences_answer_as_speakeasy_does(self):
        for seed in range(40):
            self.assertIsNone(differential(seed), 'seed %d' % seed)

    def test_a_wrong_index_is_caught_by_the_differential(self):
        def off_by_one(maps):
            lookup = maps.lookup
            maps.lookup = lambda address: lookup(address - 1)
        self.assertIsNotNone(differential(0, broken=off_by_one))

    def test_overlapping_maps_fall_back_to_the_first_in_the_list(self):
        a = MemMap(0x1000, 0x2000, 'emu.a', 7, 0, 0x1000, 0x2000)
        b = MemMap(0x1800, 0x100, 'emu.b', 7, 0, 0x1000, 0x2000)
        maps = memindex.IndexedMaps([b, a])
        self.assertTrue(maps.overlap)
        self.assertIs(maps.lookup(0x1850), b)
        self.assertIs(maps.lookup(0x2000), a)
        self.assertIsNone(maps.lookup(0x3000))

    def test_remove_takes_the_first_map_with_an_equal_base_as_list_remove_does(self):
        first = MemMap(0x5000, 0, 'emu.x', 7, 0, 0x5000, 0x1000)
        second = MemMap(0x5000, 0x10, 'emu.y', 7, 0, 0x5000, 0x1000)
        other = MemMap(0x6000, 0x10, 'emu.z', 7, 0, 0x6000, 0x1000)
        indexed, plain = memindex.IndexedMaps([first, other, second]), [first, other, second]
        indexed.remove(second)
        plain.remove(second)
        self.assertEqual([id(m) for m in indexed], [id(m) for m in plain])
        self.assertIs(indexed.lookup(0x5008), second)
        self.assertEqual(indexed.of_block(0x5000), [second])
        with self.assertRaises(ValueError):
            indexed.remove(MemMap(0x9000, 1, 'emu.w', 7, 0, 0x9000, 0x1000))

    def test_an_unfollowed_list_change_is_refused(self):
        maps = memindex.IndexedMaps()
        with self.assertRaisesRegex(NotImplementedError, 'maps.insert'):
            maps.insert(0, MemMap(0x1000, 1, 'emu.a', 7, 0, 0x1000, 0x1000))

    def test_a_replaced_list_is_scanned_by_speakeasy_again(self):
        mm = manager(True)
        base = mm.mem_map(0x10, tag='emu.a')
        mm.maps = list(mm.maps)
        self.assertEqual(mm.get_address_map(base + 4).base, base)
        mm.mem_free(base)
        self.assertEqual(mm.maps, [])


if __name__ == '__main__':
    unittest.main()
