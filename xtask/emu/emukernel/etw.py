"""ETW: the driver's log as TraceLogging events (modelled: speakeasy has no ETW).

EtwRegister(ProviderId, EnableCallback, CallbackContext, &RegHandle)            PASSIVE_LEVEL
  - STATUS_INVALID_PARAMETER for a NULL ProviderId or RegHandle; otherwise a new handle. The
    emulated machine has one trace session that already enables every provider at every level
    (what `cargo xtask deploy` does: its session starts before the driver loads), so the enable
    callback runs *before EtwRegister returns*, at PASSIVE_LEVEL, with EVENT_CONTROL_CODE_ENABLE_PROVIDER,
    level 0xFF (TRACE_LEVEL_VERBOSE and above), MatchAnyKeyword all ones, MatchAllKeyword 0.
  - A fault run fails it with STATUS_INSUFFICIENT_RESOURCES: logging is optional, the driver must
    load anyway and log through DbgPrintEx only.
  - With --count-instructions (`cargo xtask bench`) no session listens, as on a machine nobody
    traces: the budgets measure a line's cost when disabled (one load and a compare); the enable
    callback is then not called.
EtwSetInformation(RegHandle, InformationClass, Buffer, Length)                  PASSIVE_LEVEL
  - STATUS_INVALID_HANDLE for a handle not registered; EventProviderSetTraits (2) must be the
    TraceLogging provider metadata (UINT16 size == Length, the NUL-terminated name), else
    STATUS_INVALID_PARAMETER; another class: STATUS_INVALID_DEVICE_REQUEST (not modelled).
EtwWriteTransfer(RegHandle, EventDescriptor, ActivityId, RelatedActivityId, Count, UserData)  any IRQL
  - STATUS_INVALID_HANDLE for a handle not registered, STATUS_INVALID_PARAMETER above 128
    descriptors; the event is decoded from its TraceLogging metadata (the provider and event
    metadata descriptors, then the payload) into one line, kept when the session's level admits it.
EtwUnregister(RegHandle)                                                         PASSIVE_LEVEL
  - the enable callback is not called again (the documented "disable" on unregistration is the
    session's business); STATUS_INVALID_HANDLE for a handle not registered.

Audit: `ETW provider unregistered before unload` (a provider left registered when the driver is
gone leaves ETW an enable callback in freed code) and `ETW lines equal the debugger lines` (each
`Log` event's Message is the line DbgPrintEx printed just before it, a NUL shown as '?', a line
truncated at 255 bytes ending in '...':
common::log formats it itself, so this holds its formatter to the kernel's printf, printf.py). The facts and sources:
docs/notes/etw-log.md.
"""

import os
import struct

from . import events
from .irql import PASSIVE_LEVEL, require
from .irql_table import CALLBACKS

STATUS_SUCCESS = 0
STATUS_INVALID_HANDLE = 0xC0000008
STATUS_INVALID_PARAMETER = 0xC000000D
STATUS_INVALID_DEVICE_REQUEST = 0xC0000010
STATUS_INSUFFICIENT_RESOURCES = 0xC000009A

EVENT_CONTROL_CODE_ENABLE_PROVIDER = 1
EVENT_PROVIDER_SET_TRAITS = 2
MAX_EVENT_DATA_DESCRIPTORS = 128
TYPE_EVENT_METADATA = 1
TYPE_PROVIDER_METADATA = 2
SESSION_LEVEL = 0xFF
LINE_CAPACITY = 256  # common::log::LINE_CAPACITY, with the NUL
SESSION_ANY_KEYWORD = 0xFFFFFFFFFFFFFFFF
# The session's GUID as the enable callback's SourceId (any stable value: ours).
SESSION_GUID = bytes.fromhex('6c6f67206163742d6578747261736b31')

UNREGISTERED_CHECK = 'ETW provider unregistered before unload'
SAME_LINES_CHECK = 'ETW lines equal the debugger lines'
GUID_CHECK = 'ETW provider GUID derived from its name'
NAME_CHECK = 'ETW provider named after the driver'
PROVIDER_PREFIX = 'WindowsCallbackDrivers.'  # xtask/src/deploy/trace.rs, common::etw_provider!

# TraceLogging in-types (TraceLoggingProvider.h, TlgIn*): the ones decoded here.
_IN_UNICODESTRING, _IN_ANSISTRING = 1, 2
_FIXED = {3: '<b', 4: '<B', 5: '<h', 6: '<H', 7: '<i', 8: '<I', 9: '<q', 10: '<Q', 13: '<i', 20: '<I',
          21: '<I'}
_CHAIN = 0x80


def guid_text(raw):
    d1, d2, d3 = struct.unpack('<IHH', raw[:8])
    return '%08x-%04x-%04x-%s-%s' % (d1, d2, d3, raw[8:10].hex(), raw[10:16].hex())


def name_guid(name):
    """The GUID TraceLogging derives from a provider name (docs/notes/etw-log.md §2)."""
    import hashlib
    namespace = bytes.fromhex('482C2DB2C39047C887F81A15BFC130FB')
    h = bytearray(hashlib.sha1(namespace + name.upper().encode('utf-16-be')).digest()[:16])
    h[7] = (h[7] & 0x0F) | 0x50
    # The hash's first 16 bytes are the GUID as it lies in memory (Data1..Data3 little-endian).
    return bytes(h)


def _cstring(data, at):
    end = data.index(b'\0', at)
    return data[at:end].decode('utf-8', errors='replace'), end + 1


def decode_event(provider_meta, event_meta, payload):
    """(provider name, event name, [(field, value)]) from TraceLogging metadata and payload bytes."""
    provider = _cstring(provider_meta, 2)[0] if len(provider_meta) > 2 else ''
    at = 2
    while event_meta[at] & _CHAIN:  # tag bytes
        at += 1
    at += 1
    event, at = _cstring(event_meta, at)
    fields = []
    p = 0
    while at < len(event_meta):
        field, at = _cstring(event_meta, at)
        in_type = event_meta[at]
        at += 1
        if in_type & _CHAIN:
            out_type = event_meta[at]
            at += 1
            while out_type & _CHAIN:  # field tags
                out_type = event_meta[at]
                at += 1
        in_type &= 0x1F
        if in_type == _IN_ANSISTRING:
            end = payload.index(b'\0', p)
            value = payload[p:end].decode('utf-8', errors='replace')
            p = end + 1
        elif in_type == _IN_UNICODESTRING:
            end = p
            while payload[end:end + 2] != b'\0\0':
                end += 2
            value = payload[p:end].decode('utf-16-le', errors='replace')
            p = end + 2
        elif in_type in _FIXED:
            fmt = _FIXED[in_type]
            value = struct.unpack_from(fmt, payload, p)[0]
            p += struct.calcsize(fmt)
        else:
            value = '<in-type %d not decoded>' % in_type
            fields.append((field, value))
            break
        fields.append((field, value))
    return provider, event, fields


class Provider:
    def __init__(self, handle, guid, callback, context, phase):
        self.handle = handle
        self.guid = guid
        self.callback = callback
        self.context = context
        self.registered_in = phase
        self.name = None
        self.unregistered_in = None


class Etw:
    """EtwRegister / EtwSetInformation / EtwWriteTransfer / EtwUnregister, modelled."""

    def __init__(self, machine, config=None):
        self.m = machine
        self.providers = {}     # handle -> Provider
        self.next_handle = 0xFFFFE00000E70000
        self.events = []        # {'provider', 'level', 'event', 'message'} as the session records them
        self.mismatches = []    # ETW messages that differ from the DbgPrintEx line before them
        self.session_guid = None
        machine.etw = self
        machine.attach('ntoskrnl', 'EtwRegister', 4, self.register,
                       fallible=lambda argv: (STATUS_INSUFFICIENT_RESOURCES, 'STATUS_INSUFFICIENT_RESOURCES'))
        machine.attach('ntoskrnl', 'EtwSetInformation', 4, self.set_information)
        machine.attach('ntoskrnl', 'EtwWriteTransfer', 6, self.write_transfer)
        machine.attach('ntoskrnl', 'EtwUnregister', 1, self.unregister)

    def register(self, argv, orig):
        guid_ptr, callback, context, out = argv
        require(self.m, 'EtwRegister', PASSIVE_LEVEL)
        if not guid_ptr or not out:
            return STATUS_INVALID_PARAMETER
        handle = self.next_handle
        self.next_handle += 0x10
        provider = Provider(handle, self.m.read(guid_ptr, 16), callback, context, self.m.phase)
        self.providers[handle] = provider
        self.m.write_u64(out, handle)
        if callback and not getattr(self.m, 'count_instructions', False):
            if self.session_guid is None:
                self.session_guid = self.m.alloc(16, 'etw session guid')
                self.m.write(self.session_guid, SESSION_GUID)
            phase = self.m.phase

            def before(_i):
                self.m.phase = 'ETW enable callback'
                self.m.irql = CALLBACKS['ETW enable callback'][0]

            def after(_i):
                self.m.phase = phase

            # The session exists before the provider registers: ETW enables it during EtwRegister.
            events.of(self.m).name(callback, 'ETW enable callback', 'ETW')
            self.m.call_back_before_return(
                [(callback, [self.session_guid, EVENT_CONTROL_CODE_ENABLE_PROVIDER, SESSION_LEVEL,
                             SESSION_ANY_KEYWORD, 0, 0, context])],
                before=before, after=after, result=STATUS_SUCCESS)
        return STATUS_SUCCESS

    def set_information(self, argv, orig):
        handle, info_class, buffer, length = argv
        require(self.m, 'EtwSetInformation', PASSIVE_LEVEL)
        provider = self._live(handle)
        if provider is None:
            return STATUS_INVALID_HANDLE
        if info_class & 0xFFFFFFFF != EVENT_PROVIDER_SET_TRAITS:
            return STATUS_INVALID_DEVICE_REQUEST
        length &= 0xFFFFFFFF
        if not buffer or length < 3:
            return STATUS_INVALID_PARAMETER
        traits = self.m.read(buffer, length)
        if struct.unpack_from('<H', traits)[0] != length or b'\0' not in traits[2:]:
            return STATUS_INVALID_PARAMETER
        provider.name = _cstring(traits, 2)[0]
        return STATUS_SUCCESS

    def write_transfer(self, argv, orig):
        handle, descriptor, _activity, _related, count, data = argv
        provider = self._live(handle)
        if provider is None:
            return STATUS_INVALID_HANDLE
        count &= 0xFFFFFFFF
        if count > MAX_EVENT_DATA_DESCRIPTORS or not descriptor or (count and not data):
            return STATUS_INVALID_PARAMETER
        level = self.m.read(descriptor + 4, 1)[0]
        if level > SESSION_LEVEL:
            return STATUS_SUCCESS
        provider_meta = event_meta = b''
        payload = b''
        for i in range(count):
            ptr, size, kind = struct.unpack('<QIB', self.m.read(data + 16 * i, 13))
            chunk = self.m.read(ptr, size) if size else b''
            if kind == TYPE_PROVIDER_METADATA:
                provider_meta = chunk
            elif kind == TYPE_EVENT_METADATA:
                event_meta = chunk
            else:
                payload += chunk
        if not event_meta:
            message = '<event without TraceLogging metadata: %d bytes>' % len(payload)
            name, event = provider.name or guid_text(provider.guid), '?'
        else:
            try:
                name, event, fields = decode_event(provider_meta, event_meta, payload)
            except (ValueError, IndexError, struct.error) as e:
                name, event, fields = provider.name or guid_text(provider.guid), '?', [('error', str(e))]
            name = name or provider.name or guid_text(provider.guid)
            values = dict(fields)
            message = values['Message'] if event == 'Log' and 'Message' in values else (
                '%s %s' % (event, ' '.join('%s=%s' % f for f in fields)))
        self.events.append({'provider': name, 'level': level, 'event': event, 'message': message})
        last = self.m.log[-1] if getattr(self.m, 'log', None) else None
        # A NUL in the text (a counted string may hold one) would end the event's string: common::log
        # writes '?' for it.
        # A line longer than common::log's buffer (255 bytes) ends in "...": the debugger's line
        # (the kernel allows 512 bytes) begins with the rest.
        expected = (last or '').replace('\0', '?')
        if message.endswith('...') and len(message.encode()) >= LINE_CAPACITY - 2:
            same = expected.startswith(message[:-3])
        else:
            same = message == expected
        if event == 'Log' and not same:
            self.mismatches.append('%r (ETW) vs %r (DbgPrintEx)' % (message, last))
        return STATUS_SUCCESS

    def unregister(self, argv, orig):
        require(self.m, 'EtwUnregister', PASSIVE_LEVEL)
        provider = self._live(argv[0])
        if provider is None:
            return STATUS_INVALID_HANDLE
        provider.unregistered_in = self.m.phase
        return STATUS_SUCCESS

    def _live(self, handle):
        p = self.providers.get(handle)
        return p if p is not None and p.unregistered_in is None else None

    def lines(self):
        return ['%s' % e['message'] for e in self.events]

    def audit(self):
        if not self.providers:
            return []
        left = [p for p in self.providers.values() if p.unregistered_in is None]
        names = ', '.join('%s (%s)' % (p.name or '?', guid_text(p.guid)) for p in self.providers.values())
        wrong_guid = [p.name for p in self.providers.values() if p.name and name_guid(p.name) != p.guid]
        out = [
            (UNREGISTERED_CHECK, not left,
             ('still registered: %s (registered during %s): ETW keeps a registered provider\'s enable '
              'callback, which would run in the unloaded image' % (
                  ', '.join(p.name or guid_text(p.guid) for p in left), left[0].registered_in))
             if left else '%d registered, %d unregistered: %s' % (
                 len(self.providers), len(self.providers), names)),
            (SAME_LINES_CHECK, not self.mismatches,
             '; '.join(self.mismatches[:3]) if self.mismatches else
             '%d events, each the DbgPrintEx line it follows' % len(self.events)),
        ]
        # Deploy enables the GUID of `WindowsCallbackDrivers.<driver>` (the image's name): a provider
        # named otherwise would log into no session.
        image = getattr(getattr(self.m, 'module', None), 'path', None) or ''
        driver = os.path.splitext(os.path.basename(image))[0]
        expected = PROVIDER_PREFIX + driver
        misnamed = [p.name for p in self.providers.values() if driver and p.name and p.name != expected]
        out.append((NAME_CHECK, not misnamed,
                    'named %s, but deploy enables %s (the image is %s.sys)' % (
                        ', '.join(misnamed), expected, driver) if misnamed else
                    'each named %s' % expected if driver else 'no image name to compare with'))
        out.append((GUID_CHECK, not wrong_guid,
                    'not the TraceLogging name hash: ' + ', '.join(wrong_guid) if wrong_guid
                    else 'each GUID is the TraceLogging hash of the name (tools can say *Name)'))
        return out
