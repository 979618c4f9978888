"""speakeasy's memory maps, indexed: the same answers without a scan of every live block.

speakeasy 1.5.11 keeps its memory maps (`MemoryManager.maps`: the image, the kernel's structures and
every pool block) in one list and answers each question by walking it: `get_address_map(address)`
returns the first map in the list that holds the address, and `mem_free(base)` looks the block up,
then collects every map of the same page (`block_base`) to unmap the page once all are free, then
removes those maps with `list.remove` (first map with an equal base, `MemMap.__eq__`). With a
thousand live flow contexts each free walks the list three times, about 2 ms per free.

`index(emu)` replaces the list by `IndexedMaps`, a list that keeps, as it is appended to and removed
from: its maps sorted by base (for the lookup by address), its maps by page, and by base. The list
itself, its order and every method speakeasy calls on it stay as they were; `get_address_map` and
`mem_free` are replaced on this instance by versions that read the index and otherwise do what
speakeasy's do, in its order. Where the index cannot answer exactly as the scan would (two maps
whose ranges overlap, so "the first in the list" matters) the lookup falls back to the scan.
tests/test_memindex.py runs random allocation and free sequences on speakeasy's own MemoryManager
and on an indexed one side by side and requires the same answers, maps and unmaps.
"""

from bisect import bisect_left, bisect_right
from itertools import count
from types import MethodType

_MUTATORS = ('insert', 'extend', 'pop', 'clear', 'sort', 'reverse', '__setitem__', '__delitem__',
             '__iadd__', '__imul__')


class IndexedMaps(list):
    """A list of speakeasy `MemMap`s, appended to and removed from as speakeasy does, indexed."""

    def __init__(self, maps=()):
        super().__init__()
        self._seq = {}          # id(map) -> its position in append order (the list is in that order)
        self._next = count()
        self._by_base = {}      # base -> [maps with that base, in list order]
        self._by_block = {}     # block_base -> [maps of that page, in list order]
        self._starts = []       # bases of the non-empty maps, sorted (no two overlap, see _overlap)
        self._spans = {}        # base -> the non-empty map starting there
        self.overlap = False    # two non-empty maps ever overlapped: lookups scan, as speakeasy's do
        for m in maps:
            self.append(m)

    def append(self, m):
        super().append(m)
        self._seq[id(m)] = next(self._next)
        self._by_base.setdefault(m.base, []).append(m)
        self._by_block.setdefault(m.block_base, []).append(m)
        if m.size <= 0 or self.overlap:
            return
        i = bisect_left(self._starts, m.base)
        before = self._spans[self._starts[i - 1]] if i else None
        after = self._spans[self._starts[i]] if i < len(self._starts) else None
        if (before is not None and before.base + before.size > m.base) or \
                (after is not None and m.base + m.size > after.base):
            self.overlap = True
            return
        self._starts.insert(i, m.base)
        self._spans[m.base] = m

    def remove(self, value):
        """`list.remove`: the first map equal to `value` (speakeasy's MemMap compares bases)."""
        same = self._by_base.get(value.base)
        if not same:
            raise ValueError('IndexedMaps.remove(x): x not in list')
        target = same[0]
        seq = self._seq.pop(id(target))
        i = bisect_left(self, seq, key=lambda m: self._seq.get(id(m), -1) if m is not target else seq)
        super().__delitem__(i)
        same.pop(0)
        if not same:
            del self._by_base[value.base]
        block = self._by_block[target.block_base]
        block[:] = [m for m in block if m is not target]
        if not block:
            del self._by_block[target.block_base]
        if self._spans.get(target.base) is target:
            del self._spans[target.base]
            del self._starts[bisect_left(self._starts, target.base)]

    def lookup(self, address):
        """speakeasy's `get_address_map`: the first map holding `address`, or None."""
        if self.overlap:
            for m in self:
                if m.base <= address <= (m.base + m.size) - 1:
                    return m
            return None
        i = bisect_right(self._starts, address) - 1
        if i < 0:
            return None
        m = self._spans[self._starts[i]]
        return m if address <= m.base + m.size - 1 else None

    def of_block(self, block_base):
        """The maps of one page, in list order (speakeasy's `[m for m in maps if m.block_base == b]`)."""
        return list(self._by_block.get(block_base, ()))


def _refuse(name):
    def refused(self, *args, **kwargs):
        raise NotImplementedError('emukernel.memindex: speakeasy called maps.%s, which the index does not '
                                  'follow; teach IndexedMaps.%s or drop the index' % (name, name))
    return refused


for _name in _MUTATORS:
    setattr(IndexedMaps, _name, _refuse(_name))


def index(emu):
    """Indexes `emu`'s memory maps (a speakeasy MemoryManager) from now on."""
    maps = IndexedMaps(emu.maps)
    emu.maps = maps
    original_lookup = emu.get_address_map
    original_free = emu.mem_free

    def get_address_map(self, address):
        if self.maps is not maps:   # speakeasy replaced the list: its own scan
            return original_lookup(address)
        return maps.lookup(address)

    def mem_free(self, base):
        if self.maps is not maps:
            return original_free(base)
        # speakeasy's MemoryManager.mem_free, with the page's maps from the index.
        mm = self.get_address_map(base)
        if mm:
            mm.set_free()
            if self.keep_memory_on_free:
                return
            ml = maps.of_block(mm.block_base)
            if all([m.free for m in ml]):
                self.block_base = 0
                self.mem_unmap(mm.block_base, mm.block_size)
                [self.maps.remove(m) for m in ml]

    emu.get_address_map = MethodType(get_address_map, emu)
    emu.mem_free = MethodType(mem_free, emu)
    return maps
