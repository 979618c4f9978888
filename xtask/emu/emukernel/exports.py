"""speakeasy's export lists without a new class per export (a twentieth of a run's load).

speakeasy 1.5.11 (`PeFile._get_pe_exports`, windows/common.py) makes each export of a PE image a
record by creating a class: `namedtuple('export', [...])` once per export, then sets the values as
attributes of that class. Creating a namedtuple class compiles Python source (`eval`) each time; the
kernel modules and decoys speakeasy parses at every load have about 180 exports, 30 ms of the
1,000-flow run's 90 ms load. Its readers (the export lookup by name, the decoy symbol table, the
entry-point list) read only the four attributes. `install()` replaces the method with one that
makes the same list, in the same order, of small objects with those four attributes and the same
values. tests/test_exports.py compares both on PE images with exports.
"""

import speakeasy.windows.common as _common


class Export:
    """One export: what speakeasy's per-export class held."""

    __slots__ = ('name', 'address', 'forwarder', 'ordinal')

    def __init__(self, name, address, forwarder, ordinal):
        self.name = name
        self.address = address
        self.forwarder = forwarder
        self.ordinal = ordinal

    def __repr__(self):
        return 'Export(%r, 0x%x, %r, %r)' % (self.name, self.address, self.forwarder, self.ordinal)


def pe_exports(pe):
    """`PeFile._get_pe_exports`: each export of the directory, in order, its name decoded from
    UTF-8 when it has one, its address relocated to the image's base."""
    exports = []
    try:
        directory = pe.DIRECTORY_ENTRY_EXPORT
    except Exception:
        return exports
    base = pe.get_base()
    for exp in directory.symbols:
        name = exp.name
        exports.append(Export(name.decode('utf-8') if name else name, exp.address + base,
                              exp.forwarder, exp.ordinal))
    return exports


ORIGINAL = _common.PeFile._get_pe_exports


def install():
    """Makes every PeFile list its exports with `pe_exports`. Idempotent."""
    _common.PeFile._get_pe_exports = pe_exports


__all__ = ['Export', 'ORIGINAL', 'install', 'pe_exports']
