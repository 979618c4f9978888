"""exports.py: the same export list as speakeasy's own `_get_pe_exports`, without a class each."""
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from emukernel import exports  # noqa: E402
import speakeasy.windows.common as common  # noqa: E402
import speakeasy.winenv.arch as arch  # noqa: E402


def fields(entries):
    return [(e.name, e.address, e.forwarder, e.ordinal) for e in entries]


class ExportsTest(unittest.TestCase):
    def decoy(self, names):
        """A PE built as speakeasy builds its decoy modules, exporting `names`."""
        raw = common.JitPeFile(arch.ARCH_AMD64).get_decoy_pe_image('ntoskrnl', names)
        return common.PeFile(data=raw)

    def test_the_same_exports_in_the_same_order_as_speakeasy(self):
        pe = self.decoy(['KeBugCheckEx', 'ExAllocatePoolWithTag', 'IoCreateDevice', 'ZwClose'] +
                        ['Routine%d' % i for i in range(40)])
        ours, theirs = exports.pe_exports(pe), exports.ORIGINAL(pe)
        self.assertEqual(len(theirs), 44)
        self.assertEqual(fields(ours), fields(theirs))
        self.assertEqual(ours[1].name, 'ExAllocatePoolWithTag')          # decoded, as speakeasy's
        self.assertGreaterEqual(ours[0].address, pe.get_base())         # relocated to the base
        # Each export its own record (speakeasy's were each their own class).
        self.assertEqual(len({id(e) for e in ours}), len(ours))

    def test_installed_for_every_pe_file_and_a_pe_without_exports_has_none(self):
        exports.install()
        self.assertIs(common.PeFile._get_pe_exports, exports.pe_exports)
        pe = self.decoy(['Only'])
        self.assertEqual(fields(pe.exports), fields(exports.ORIGINAL(pe)))
        self.assertEqual(common.PeFile.get_export_by_name(pe, 'Only'), pe.exports[0].address)
        blank = common.PeFile(data=common.JitPeFile(arch.ARCH_AMD64).get_raw_pe())
        self.assertEqual(exports.pe_exports(blank), [])
        self.assertEqual(exports.ORIGINAL(blank), [])


if __name__ == '__main__':
    unittest.main()
