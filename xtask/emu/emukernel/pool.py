"""Pool: ExAllocatePoolWithTag / ExFreePoolWithTag, observed on top of speakeasy's allocator."""

from .errors import bugcheck
from .irql import APC_LEVEL, DISPATCH_LEVEL, require

BAD_POOL_CALLER = 0xC2
PAGED_POOL = 1
NON_PAGED_POOL_NX = 512


def _tag(value):
    return value.to_bytes(4, 'little').decode('latin-1')


class Pool:
    """speakeasy allocates and frees (its memory is unmapped on free, so a use after free faults);
    the harness records every block, checks the documented rules (a block is freed once, with the
    tag it was allocated with, at IRQL <= DISPATCH_LEVEL) and reports what was never freed.
    A fault run makes an allocation return NULL, as the routine does when pool is exhausted."""

    def __init__(self, machine):
        self.m = machine
        self.live = {}   # address -> (size, tag, pool type, phase)
        self.allocated = 0
        self.freed = 0
        machine.attach('ntoskrnl', 'ExAllocatePoolWithTag', 3, self.allocate, handled_by='speakeasy',
                       fallible=lambda argv: (0, 'NULL (pool exhausted)'))
        machine.attach('ntoskrnl', 'ExFreePoolWithTag', 2, self.free, handled_by='speakeasy')

    def allocate(self, argv, orig):
        pool_type, size, tag = argv[0], argv[1], argv[2]
        require(self.m, 'ExAllocatePoolWithTag', APC_LEVEL if pool_type & 1 == PAGED_POOL else DISPATCH_LEVEL)
        address = orig(list(argv))
        if address:
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
        return None

    def audit(self):
        leaks = ['0x%x (%d bytes, tag %r, allocated during %s)' % (a, s, _tag(t), p)
                 for a, (s, t, _pt, p) in self.live.items()]
        return [('every pool allocation freed', not leaks,
                 '%d allocated, %d freed' % (self.allocated, self.freed)
                 + ('; leaked: ' + ', '.join(leaks) if leaks else ''))]
