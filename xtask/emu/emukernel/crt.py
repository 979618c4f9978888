"""The C runtime routines the kernel exports that speakeasy lacks: memcmp, modelled from its definition.

memcmp(a, b, n)   any IRQL (on non-paged memory): compares n bytes; returns < 0, 0 or > 0 as the
                  first differing byte of a is smaller or greater, as unsigned char. Reads exactly
                  the bytes up to and including the first difference.
"""

from .machine import CDECL


class Runtime:
    def __init__(self, machine, config=None):
        self.m = machine
        machine.attach('ntoskrnl', 'memcmp', 3, self.memcmp, conv=CDECL)

    def memcmp(self, argv, orig):
        a, b, n = argv
        chunk = 256
        for offset in range(0, n, chunk):
            size = min(chunk, n - offset)
            x = self.m.read(a + offset, size)
            y = self.m.read(b + offset, size)
            if x != y:
                i = next(k for k in range(size) if x[k] != y[k])
                return 1 if x[i] > y[i] else 0xFFFFFFFF  # an int: -1 in the low 32 bits of rax
        return 0
