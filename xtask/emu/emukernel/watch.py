"""Watched memory: call a function on every emulated access to a range, with one hook per page.

Unicorn 1.x (speakeasy's engine) walks the list of every memory hook ever added, on every memory
access the emulated code makes. One read and one write hook per freed pool block (what `Pool` used
to add) makes each access of a run that frees a thousand blocks walk two thousand hooks. `Watches`
adds one read and one write hook per 4 KiB page that holds a watched range, and calls, on an access
whose address lies in the page, the functions of the ranges that hold the address, in the order
they were watched: what the per-range hooks did (unicorn calls a hook when the access's address
lies within its bounds), with a short hook list.

Most accesses to a watched page are not to a watched range (a freed pool block shares its page
with live ones, which the driver keeps using): each page also keeps a map of its bytes that some
range holds, so such an access is answered by one lookup instead of a walk of every range of the
page (with a thousand flow contexts freed, 20 ranges per access on average).
"""

PAGE = 0x1000


class Watches:
    def __init__(self, machine):
        self.m = machine
        self.pages = {}   # page base -> ([(first, last, function)] in the order watched, held bytes)

    def watch(self, start, length, function):
        """Calls `function(emu, access, address, size, value, ctx)` on every read or write whose
        address lies in `start .. start + length - 1`, from now on."""
        last = start + length - 1
        for page in range(start & ~(PAGE - 1), last + 1, PAGE):
            entry = self.pages.get(page)
            if entry is None:
                # held[i]: some range holds the byte at page + i (ranges are never unwatched).
                entry = self.pages[page] = ([], bytearray(PAGE))
                self.m.se.add_mem_read_hook(self._touched, begin=page, end=page + PAGE - 1)
                self.m.se.add_mem_write_hook(self._touched, begin=page, end=page + PAGE - 1)
            ranges, held = entry
            ranges.append((start, last, function))
            lo, hi = max(start, page) - page, min(last, page + PAGE - 1) - page
            held[lo:hi + 1] = b'\x01' * (hi - lo + 1)

    def _touched(self, emu, access, address, size, value, ctx):
        entry = self.pages.get(address & ~(PAGE - 1))
        if entry is None or not entry[1][address & (PAGE - 1)]:
            return
        for first, last, function in entry[0]:
            if first <= address <= last:
                function(emu, access, address, size, value, ctx)
