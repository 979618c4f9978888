"""Pool: ExAllocatePoolWithTag / ExFreePoolWithTag, observed on top of speakeasy's allocator."""

from .errors import KernelStop, bugcheck
from .irql import APC_LEVEL, DISPATCH_LEVEL, require

BAD_POOL_CALLER = 0xC2
PAGE_FAULT_IN_NONPAGED_AREA = 0x50
POISON = 0xDD
PAGED_POOL = 1
NON_PAGED_POOL_NX = 512


def _tag(value):
    return value.to_bytes(4, 'little').decode('latin-1')


class Pool:
    """speakeasy allocates and frees (its memory is unmapped on free, so a use after free faults);
    the harness records every block, checks the documented rules (a block is freed once, with the
    tag it was allocated with, at IRQL <= DISPATCH_LEVEL) and reports what was never freed.
    A fault run makes an allocation return NULL, as the routine does when pool is exhausted."""

    def __init__(self, machine, config=None):
        self.m = machine
        machine.pool = self  # inflight.py: what a callback in flight may touch
        self.live = {}   # address -> (size, tag, pool type, phase)
        self.allocated = 0
        self.freed = 0
        self.freed_blocks = {}  # address -> (size, tag, phase freed): poisoned and watched
        machine.attach('ntoskrnl', 'ExAllocatePoolWithTag', 3, self.allocate, handled_by='speakeasy',
                       fallible=lambda argv: (0, 'NULL (pool exhausted)'))
        machine.attach('ntoskrnl', 'ExFreePoolWithTag', 2, self.free, handled_by='speakeasy')

    def allocate(self, argv, orig):
        pool_type, size, tag = argv[0], argv[1], argv[2]
        require(self.m, 'ExAllocatePoolWithTag', APC_LEVEL if pool_type & 1 == PAGED_POOL else DISPATCH_LEVEL)
        address = orig(list(argv))
        if address:
            for old in [a for a, (s, _t, _p) in self.freed_blocks.items() if a < address + size and address < a + s]:
                del self.freed_blocks[old]  # the allocator reused the range: it is live again
            self.live[address] = (size, tag, pool_type, self.m.phase)
            self.allocated += 1
        return address

    def free(self, argv, orig):
        address, tag = argv[0], argv[1]
        require(self.m, 'ExFreePoolWithTag', DISPATCH_LEVEL)
        block = self.live.get(address)
        if block is None:
            raise bugcheck(BAD_POOL_CALLER, 'BAD_POOL_CALLER',
                           'ExFreePoolWithTag(0x%x): not a live pool block (double free or bad pointer)' % address,
                           address)
        if block[1] != tag:
            raise bugcheck(BAD_POOL_CALLER, 'BAD_POOL_CALLER',
                           'ExFreePoolWithTag(0x%x, %r): the block was allocated with tag %r'
                           % (address, _tag(tag), _tag(block[1])), address)
        del self.live[address]
        self.freed += 1
        orig(list(argv))
        self._poison(address, block[0], tag)
        return None

    def _poison(self, address, size, tag):
        """Fills a freed block with 0xDD and stops the machine on any later access to it, as
        special pool (Driver Verifier) would: freed memory that is still mapped must not look valid."""
        try:
            self.m.write(address, bytes([POISON]) * size)
        except Exception:  # speakeasy unmapped the page: any access faults by itself
            return
        self.freed_blocks[address] = (size, tag, self.m.phase)

        def touched(emu, access, where, length, value, ctx):
            block = self.freed_blocks.get(address)
            if block is None or self.m.stop is not None:
                return
            self.m.halt(KernelStop(
                'bugcheck', 'PAGE_FAULT_IN_NONPAGED_AREA: use after free: %d-byte access at 0x%x inside '
                'pool block 0x%x (%d bytes, tag %r) freed during %s; the access came during %s'
                % (length, where, address, block[0], _tag(block[1]), block[2], self.m.phase),
                code=PAGE_FAULT_IN_NONPAGED_AREA, params=(where,)))

        self.m.watch(address, size, touched)

    def audit(self):
        leaks = ['0x%x (%d bytes, tag %r, allocated during %s)' % (a, s, _tag(t), p)
                 for a, (s, t, _pt, p) in self.live.items()]
        return [('every pool allocation freed', not leaks,
                 '%d allocated, %d freed' % (self.allocated, self.freed)
                 + ('; leaked: ' + ', '.join(leaks) if leaks else ''))]
