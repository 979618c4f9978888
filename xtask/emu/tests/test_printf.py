"""The kernel printf model: what DbgPrintEx output the harness reconstructs."""
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

from emukernel.printf import Reader, count_arguments, format_kernel  # noqa: E402


def fmt(text, *args, strings=None):
    strings = strings or {}
    reader = Reader(args, lambda a, n: strings[a][:n] if n is not None else strings[a],
                    lambda a, n: strings[a], lambda a: strings[a])
    return format_kernel(text, reader)


class PrintfTest(unittest.TestCase):
    def test_pointer_sized_conversions(self):
        self.assertEqual(fmt('%Iu %Ix %IX', 2**40, 255, 255), '1099511627776 ff FF')
        self.assertEqual(fmt('%Id', 2**64 - 1), '-1')
        self.assertEqual(fmt('%08Ix', 0xC000009A), 'c000009a')

    def test_int_sized_conversions_truncate_to_32_bits(self):
        self.assertEqual(fmt('%u %d %x', 2**32 + 5, 0xFFFFFFFF, 2**36 + 0x10), '5 -1 10')

    def test_pointer_prints_16_hex_digits(self):
        self.assertEqual(fmt('%p', 0x1234), '0000000000001234')

    def test_strings_and_precision_star(self):
        self.assertEqual(fmt('%.*s:%u', 3, 0x10, 7, strings={0x10: 'lib.rs'}), 'lib:7')
        # an int in a 64-bit slot: the upper half is garbage and must be ignored
        self.assertEqual(fmt('%.*s', 0xDEAD_0000_0000_0002, 0x10, strings={0x10: 'lib.rs'}), 'li')
        self.assertEqual(fmt('[%*u]', 0xFFFFFFFD, 7), '[7  ]')
        self.assertEqual(fmt('%s!', 0x10, strings={0x10: 'hi'}), 'hi!')
        self.assertEqual(fmt('%wZ', 0x20, strings={0x20: '\\Callback\\PowerState'}), '\\Callback\\PowerState')

    def test_percent_and_widths(self):
        self.assertEqual(fmt('100%% %5u|%-4u|', 42, 7), '100%    42|7   |')

    def test_argument_count(self):
        self.assertEqual(count_arguments('%Iu %% %.*s %p'), 4)
        self.assertEqual(count_arguments('plain'), 0)

    def test_too_few_arguments_is_an_error_not_garbage(self):
        with self.assertRaises(IndexError):
            fmt('%Iu %Iu', 1)


if __name__ == '__main__':
    unittest.main()
