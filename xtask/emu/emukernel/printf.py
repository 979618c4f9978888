"""The kernel's printf, as DbgPrintEx applies it, for the conversions drivers use.

speakeasy's own DbgPrintEx formatter treats every integer as 32 bits and does not know the `I`
size prefix (`%Iu`, `%Ix`), so the harness formats DbgPrintEx output itself. Supported:
flags `-+ 0#`, width and precision (digits or `*`), size prefixes `I`, `I32`, `I64`, `ll`, `l`,
`h`, `hh`, `w`, and conversions `d i u x X o p c s S Z %`. An argument is one 64-bit slot.
"""

_SIZES = ('I64', 'I32', 'll', 'hh', 'I', 'l', 'h', 'w', 'z')


class Reader:
    """Supplies the variadic arguments and reads emulated memory for %s / %wZ."""

    def __init__(self, args, read_cstring, read_wstring, read_unicode_string):
        self.args = list(args)
        self.index = 0
        self.read_cstring = read_cstring
        self.read_wstring = read_wstring
        self.read_unicode_string = read_unicode_string

    def next(self):
        if self.index >= len(self.args):
            raise IndexError('format consumes more arguments than were passed')
        value = self.args[self.index]
        self.index += 1
        return value


def count_arguments(fmt):
    """How many variadic slots `fmt` consumes (each `*` counts as one)."""
    n = 0
    for spec in _specs(fmt):
        if spec is None:
            continue
        n += spec['stars']
        if spec['conv'] != '%':
            n += 1
    return n


def _specs(fmt):
    i = 0
    while i < len(fmt):
        if fmt[i] != '%':
            i += 1
            continue
        start = i
        i += 1
        flags = ''
        while i < len(fmt) and fmt[i] in '-+ 0#':
            flags += fmt[i]
            i += 1
        stars = 0
        width = ''
        if i < len(fmt) and fmt[i] == '*':
            stars += 1
            width = '*'
            i += 1
        else:
            while i < len(fmt) and fmt[i].isdigit():
                width += fmt[i]
                i += 1
        precision = None
        if i < len(fmt) and fmt[i] == '.':
            i += 1
            if i < len(fmt) and fmt[i] == '*':
                stars += 1
                precision = '*'
                i += 1
            else:
                precision = ''
                while i < len(fmt) and fmt[i].isdigit():
                    precision += fmt[i]
                    i += 1
        size = ''
        for s in _SIZES:
            if fmt.startswith(s, i):
                size = s
                i += len(s)
                break
        conv = fmt[i] if i < len(fmt) else ''
        i += 1
        yield {'start': start, 'end': i, 'flags': flags, 'width': width, 'precision': precision,
               'size': size, 'conv': conv, 'stars': stars}


def _bits(size):
    if size in ('I64', 'll', 'I', 'z'):
        return 64
    if size == 'h':
        return 16
    if size == 'hh':
        return 8
    return 32  # no prefix, l, I32: int / long are 32-bit on Windows


def _int32(value):
    """An `int` argument: only the low 32 bits of its 64-bit slot are defined."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def _pad(text, flags, width):
    if width and len(text) < width:
        if '-' in flags:
            return text + ' ' * (width - len(text))
        if '0' in flags and text[:1] in '-+' and text[1:].isalnum():
            return text[0] + '0' * (width - len(text)) + text[1:]
        fill = '0' if '0' in flags else ' '
        return fill * (width - len(text)) + text
    return text


def format_kernel(fmt, reader):
    """Formats `fmt` with arguments from `reader` the way the kernel's DbgPrintEx does."""
    out = []
    last = 0
    for spec in _specs(fmt):
        out.append(fmt[last:spec['start']])
        last = spec['end']
        conv = spec['conv']
        if conv == '%':
            out.append('%')
            continue
        width = _int32(reader.next()) if spec['width'] == '*' else int(spec['width'] or 0)
        precision = spec['precision']
        if precision == '*':
            precision = max(_int32(reader.next()), 0)
        elif precision is not None:
            precision = int(precision or 0)
        flags = spec['flags']
        if width < 0:  # a negative `*` width means left-justify
            width = -width
            flags += '-'
        value = reader.next()
        bits = _bits(spec['size'])
        mask = (1 << bits) - 1
        if conv in 'di':
            v = value & mask
            if v >> (bits - 1):
                v -= 1 << bits
            text = str(v)
            if '+' in flags and v >= 0:
                text = '+' + text
        elif conv == 'u':
            text = str(value & mask)
        elif conv in 'xX':
            text = format(value & mask, conv)
            if '#' in flags and value & mask:
                text = '0' + conv + text
        elif conv == 'o':
            text = format(value & mask, 'o')
        elif conv == 'p':
            text = '%016X' % (value & 0xFFFFFFFFFFFFFFFF)
        elif conv == 'c':
            text = chr(value & 0xFF) if spec['size'] != 'w' else chr(value & 0xFFFF)
        elif conv == 's':
            limit = precision if precision is not None else None
            if spec['size'] == 'w':
                text = reader.read_wstring(value, limit)
            else:
                text = reader.read_cstring(value, limit)
        elif conv == 'S':
            text = reader.read_wstring(value, precision)
        elif conv == 'Z':
            text = reader.read_unicode_string(value) if spec['size'] == 'w' else '<ANSI_STRING>'
        else:
            text = fmt[spec['start']:spec['end']]
            reader.index -= 1  # an unknown conversion consumes nothing we can tell
        if precision is not None and conv in 'diuxXo' and len(text) < precision:
            text = '0' * (precision - len(text)) + text
        out.append(_pad(text, flags, width))
    out.append(fmt[last:])
    return ''.join(out)
