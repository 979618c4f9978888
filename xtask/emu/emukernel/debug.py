"""DbgPrintEx / DbgPrint (the driver's log) and KeBugCheckEx (the driver's panic)."""

from .errors import KernelStop
from .irql import PASSIVE_LEVEL, irql_name
from .irql_table import unicode_conversions
from .machine import CDECL, STDCALL
from .printf import Reader, count_arguments, format_kernel

# common::panic::RUST_PANIC_BUGCHECK: ASCII "RUST".
RUST_PANIC_BUGCHECK = int.from_bytes(b'RUST', 'big')
MAX_STRING = 4096


class Debug:
    """Modelled: DbgPrintEx/DbgPrint formatting (speakeasy's formatter truncates 64-bit values and
    does not know `%I`), and KeBugCheckEx, which speakeasy lacks: it stops the machine and decodes a
    Rust panic's location."""

    def __init__(self, machine, config=None):
        self.m = machine
        machine.attach('ntoskrnl', 'DbgPrintEx', 3, self.dbg_print_ex, conv=CDECL)
        machine.attach('ntoskrnl', 'DbgPrint', 1, self.dbg_print, conv=CDECL)
        machine.attach('ntoskrnl', 'KeBugCheckEx', 5, self.ke_bug_check_ex)

    def _print(self, routine, fmt_address, first_variadic):
        fmt = self._cstring(fmt_address, None)
        unicode = unicode_conversions(fmt)
        checks = getattr(self.m, 'irql_checks', None)
        if unicode and self.m.irql > PASSIVE_LEVEL and checks is not None:
            # DbgPrintEx, Parameters (Format): "the Unicode format codes (%C, %S, %lc, %ls, %wc, %ws,
            # and %wZ) can only be used with IRQL = PASSIVE_LEVEL".
            checks.report('%s(%r) at %s during %s: the Unicode conversion(s) %s may be used only at '
                          'PASSIVE_LEVEL (DbgPrintEx, Format parameter)' % (
                              routine, fmt[:80], irql_name(self.m.irql), self.m.phase, ' '.join(unicode)))
        n = count_arguments(fmt)
        args = self.m.cdecl_args(first_variadic + n)[first_variadic:]
        reader = Reader(args, self._cstring, self._wstring, self._counted_string)
        try:
            text = format_kernel(fmt, reader)
        except (IndexError, ValueError) as e:
            text = '<unformattable DbgPrint format %r: %s>' % (fmt, e)
        for line in text.splitlines():
            self.m.log_line(line)
        return len(text)

    def dbg_print_ex(self, argv, orig):
        # ULONG DbgPrintEx(ULONG ComponentId, ULONG Level, PCSTR Format, ...)
        return self._print('DbgPrintEx', argv[2], 3)

    def dbg_print(self, argv, orig):
        # ULONG DbgPrint(PCSTR Format, ...)
        return self._print('DbgPrint', argv[0], 1)

    def ke_bug_check_ex(self, argv, orig):
        code, p1, p2, p3, p4 = argv
        message = 'the driver called KeBugCheckEx'
        if code == RUST_PANIC_BUGCHECK:
            try:
                file = self.m.read(p1, min(p2, MAX_STRING)).decode('utf-8', errors='replace')
            except Exception:  # an unreadable pointer is itself worth reporting, not fatal
                file = '<unreadable file name at 0x%x>' % p1
            message = 'Rust panic at %s:%d:%d' % (file, p3, p4)
        raise KernelStop('bugcheck', message, code=code, params=(p1, p2, p3, p4))

    def _counted_string(self, address):
        """%wZ: Length / 2 UTF-16 units (an odd last byte is not a character; a NULL string
        prints "(null)", as the kernel's printf does)."""
        if address == 0:
            return '(null)'
        length = self.m.read_u16(address) & ~1
        buffer = self.m.read_u64(address + 8)
        if length == 0 or buffer == 0:
            return ''
        return self.m.read(buffer, length).decode('utf-16-le', errors='replace')

    def _cstring(self, address, limit):
        if address == 0:
            return '(null)'
        out = bytearray()
        cap = MAX_STRING if limit is None else min(limit, MAX_STRING)
        while len(out) < cap:
            b = self.m.read(address + len(out), 1)
            if b == b'\0':
                break
            out += b
        return out.decode('latin-1')

    def _wstring(self, address, limit):
        if address == 0:
            return '(null)'
        out = []
        cap = MAX_STRING if limit is None else min(limit, MAX_STRING)
        while len(out) < cap:
            u = int.from_bytes(self.m.read(address + 2 * len(out), 2), 'little')
            if u == 0:
                break
            out.append(chr(u))
        return ''.join(out)


__all__ = ['Debug', 'STDCALL']
