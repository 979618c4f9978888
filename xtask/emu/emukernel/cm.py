"""The configuration manager's registry filtering, as a driver sees it.

speakeasy's own handlers run for CmRegisterCallbackEx, CmRegisterCallback and CmUnRegisterCallback
(they return STATUS_SUCCESS and appear in its API log) and for ZwOpenKey / ZwQueryValueKey / ZwClose.
The harness observes them and completes what they leave out, from the documentation:

CmRegisterCallbackEx(Function, Altitude, Driver, Context, &Cookie, Reserved)   <= APC_LEVEL
  - writes the cookie (speakeasy does not); STATUS_FLT_INSTANCE_ALTITUDE_COLLISION for an altitude
    already registered; a fault run fails it with STATUS_INSUFFICIENT_RESOURCES.
CmUnRegisterCallback(Cookie)   <= APC_LEVEL
  - STATUS_INVALID_PARAMETER for a cookie that matches no registration (speakeasy says success).
  - "must not be called from the RegistryCallback: that call will result in a deadlock" — and
    neither may CmRegisterCallback(Ex): the harness stops the run if the driver does either.
ZwOpenKey: STATUS_OBJECT_NAME_NOT_FOUND for a missing key (speakeasy's handler crashes on it);
  every handle opened is audited for its ZwClose.

Modelled (speakeasy has none, or a broken one): CmCallbackGetKeyObjectIDEx /
CmCallbackReleaseKeyObjectIDEx (the name of a key object in the notification being delivered;
every name must be released), RtlUpcaseUnicodeChar, and ZwQueryValueKey (speakeasy's fails on
string values).

The harness is the configuration manager: a `registry` step invokes the registered callback with
the REG_*_INFORMATION structure the class defines, laid out as wdm.h lays it out on x64, then (if
the callback allowed it) the post-notification with the operation's status and the CallContext
the pre-notification left.
"""

import struct

from . import events
from . import inflight, lockorder, racing
from .errors import violation
from .irql import APC_LEVEL, DISPATCH_LEVEL, PASSIVE_LEVEL, require
from .scenario import REQUIRED

STATUS_SUCCESS = 0
STATUS_ACCESS_DENIED = 0xC0000022
STATUS_INVALID_PARAMETER = 0xC000000D
STATUS_OBJECT_NAME_NOT_FOUND = 0xC0000034
STATUS_INSUFFICIENT_RESOURCES = 0xC000009A
STATUS_FLT_INSTANCE_ALTITUDE_COLLISION = 0xC01C0011
STATUS_INVALID_HANDLE = 0xC0000008
STATUS_BUFFER_TOO_SMALL = 0xC0000023
STATUS_BUFFER_OVERFLOW = 0x80000005
STATUS_INTERNAL_ERROR = 0xC00000E5
KEY_VALUE_PARTIAL_INFORMATION = 2

# REG_NOTIFY_CLASS (wdm.h)
PRE_DELETE_KEY = 0
PRE_SET_VALUE = 1
POST_SET_VALUE = 16
POST_DELETE_KEY = 15
PRE_CREATE_KEY_EX = 26
POST_CREATE_KEY_EX = 27
PRE_OPEN_KEY_EX = 28
POST_OPEN_KEY_EX = 29
MAX_REG_NT_NOTIFY_CLASS = 51

OPERATIONS = {
    # operation: (pre class, post class)
    'set-value': (PRE_SET_VALUE, POST_SET_VALUE),
    'delete-key': (PRE_DELETE_KEY, POST_DELETE_KEY),
    'create-key': (PRE_CREATE_KEY_EX, POST_CREATE_KEY_EX),
    'open-key': (PRE_OPEN_KEY_EX, POST_OPEN_KEY_EX),
}
REG_SZ = 1
REG_DWORD = 4
RACE_KEY = '\\REGISTRY\\MACHINE\\SOFTWARE\\RacingUnregistration'
LIST_LOCK = (('kernel', 'registry callback list'), 'the registry callback list (held while '
             'RegistryCallback routines run)')


def nt_success(status):
    return status is not None and (status & 0xFFFFFFFF) < 0x80000000


def simple_upper(text):
    """Per-character upper case, one code unit for one (as RtlUpcaseUnicodeChar maps)."""
    out = []
    for ch in text:
        up = ch.upper()
        out.append(up if len(up) == 1 else ch)
    return ''.join(out)


class Registration:
    def __init__(self, cookie, function, context, altitude):
        self.cookie = cookie
        self.function = function
        self.context = context
        self.altitude = altitude
        self.active = True
        self.unregistering = False


class Registry:
    CONFIG = {
        'service_parameters': ('table', None),
    }
    STEPS = {
        'registry': {
            'operation': ('text', REQUIRED),
            'key': ('name', REQUIRED),
            'relative_to': ('name', None),
            'value': ('text', None),
            'status': ('u32', 0),
            'expect': ('text', REQUIRED),
        },
        'notify-class': {
            'class': ('u32', REQUIRED),
            'key': ('name', '\\REGISTRY\\MACHINE\\SOFTWARE\\Unrelated'),
        },
        'class-sweep': {
            'through': ('u32', MAX_REG_NT_NOTIFY_CLASS + 8),
            'key': ('name', '\\REGISTRY\\MACHINE\\SOFTWARE\\Unrelated'),
        },
        'name-sweep': {
            'protected_key': ('name', REQUIRED),
            'blocked_value': ('text', REQUIRED),
        },
    }

    def __init__(self, machine, config=None):
        self.m = machine
        self.config = config or {}
        self.registrations = {}         # cookie -> Registration
        self.next_cookie = 0x0123_4560_0000_0010
        self.depth = 0                  # RegistryCallback calls in progress
        self.key_objects = {}           # address -> name
        self.current_objects = set()    # key objects of the notification being delivered
        self.names_out = {}             # UNICODE_STRING address -> object name
        self.odd_names = set()          # key objects whose name is reported with an odd Length
        self.names_released = 0
        self.handles = {}               # handle -> path
        self.handles_closed = 0
        self.unregistered = []
        self.callback_counts = []
        machine.attach('ntoskrnl', 'CmRegisterCallbackEx', 6, self.register_ex, handled_by='speakeasy',
                       fallible=lambda argv: (STATUS_INSUFFICIENT_RESOURCES, 'STATUS_INSUFFICIENT_RESOURCES'))
        machine.attach('ntoskrnl', 'CmRegisterCallback', 3, self.register_old, handled_by='speakeasy')
        # CmUnRegisterCallback "returns STATUS_SUCCESS or an error": the teardown sweep fails it, and
        # the registration stays (the driver must not free what its RegistryCallback reaches).
        machine.attach('ntoskrnl', 'CmUnRegisterCallback', 1, self.unregister, handled_by='speakeasy',
                       teardown=lambda argv: [
                           (STATUS_INSUFFICIENT_RESOURCES, 'STATUS_INSUFFICIENT_RESOURCES',
                            lambda a, o: self._failed_unregister(a, STATUS_INSUFFICIENT_RESOURCES)),
                           (STATUS_INTERNAL_ERROR, 'STATUS_INTERNAL_ERROR (undocumented)',
                            lambda a, o: self._failed_unregister(a, STATUS_INTERNAL_ERROR))])
        machine.attach('ntoskrnl', 'CmCallbackGetKeyObjectIDEx', 5, self.get_key_object_id)
        machine.attach('ntoskrnl', 'CmCallbackReleaseKeyObjectIDEx', 1, self.release_key_object_id)
        machine.attach('ntoskrnl', 'RtlUpcaseUnicodeChar', 1, self.upcase)
        machine.attach('ntoskrnl', 'ZwOpenKey', 3, self.open_key, handled_by='speakeasy',
                       fallible=lambda argv: (STATUS_INSUFFICIENT_RESOURCES, 'STATUS_INSUFFICIENT_RESOURCES'))
        machine.attach('ntoskrnl', 'ZwQueryValueKey', 6, self.query_value_key,
                       fallible=lambda argv: (STATUS_INSUFFICIENT_RESOURCES, 'STATUS_INSUFFICIENT_RESOURCES'))
        machine.attach('ntoskrnl', 'ZwClose', 1, self.close, handled_by='speakeasy')

    # ---- the service key -----------------------------------------------------------------------

    def before_driver_entry(self):
        params = self.config.get('service_parameters')
        if not params:
            return
        regman = self.m.se.emu.regman
        key = regman.create_key(self.m.service_key() + '\\Parameters')
        for name, value in params.items():
            # A TOML integer is a REG_DWORD, anything else a REG_SZ.
            if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 32:
                key.create_value(name, REG_DWORD, value)
            else:
                key.create_value(name, REG_SZ, str(value))

    def open_key(self, argv, orig):
        require(self.m, 'ZwOpenKey', PASSIVE_LEVEL)
        out, _access, attributes = argv
        name = self.m.read_unicode_string(self.m.read_u64(attributes + 16))
        if self.m.se.emu.regman.get_key_from_path(name) is None:
            return STATUS_OBJECT_NAME_NOT_FOUND
        status = orig(list(argv))
        if nt_success(status):
            self.handles[self.m.read_u64(out)] = name
        return status

    def query_value_key(self, argv, orig):
        """Modelled: speakeasy's handler concatenates bytes and str for string values and fails.
        KeyValuePartialInformation only: TitleIndex, Type, DataLength, then the data; the
        documented statuses for a short buffer."""
        require(self.m, 'ZwQueryValueKey', PASSIVE_LEVEL)
        handle, value_name, info_class, out, length, result_length = argv
        key = self.m.se.emu.regman.get_key_from_handle(handle)
        if key is None:
            return STATUS_INVALID_HANDLE
        name = self.m.read_unicode_string(value_name) if value_name else ''
        value = key.get_value(name)
        if value is None:
            return STATUS_OBJECT_NAME_NOT_FOUND
        if info_class != KEY_VALUE_PARTIAL_INFORMATION:
            return STATUS_INVALID_PARAMETER
        data = value.get_data()
        if isinstance(data, str):
            data = (data + '\0').encode('utf-16-le')
        elif isinstance(data, int):
            data = data.to_bytes(4, 'little')
        header = struct.pack('<III', 0, value.get_type(), len(data))
        if result_length:
            self.m.write(result_length, struct.pack('<I', len(header) + len(data)))
        if length < len(header):
            return STATUS_BUFFER_TOO_SMALL
        if length < len(header) + len(data):
            self.m.write(out, header)
            return STATUS_BUFFER_OVERFLOW
        self.m.write(out, header + data)
        return STATUS_SUCCESS

    def close(self, argv, orig):
        handle = argv[0]
        if handle in self.handles:
            del self.handles[handle]
            self.handles_closed += 1
        return orig(list(argv))

    # ---- registration --------------------------------------------------------------------------

    def register_ex(self, argv, orig):
        function, altitude_ptr, _driver, context, cookie_ptr, _reserved = argv
        require(self.m, 'CmRegisterCallbackEx', APC_LEVEL)
        if self.depth:
            raise violation('CmRegisterCallbackEx called from inside the RegistryCallback: the '
                            'documentation forbids it (deadlock)')
        altitude = self.m.read_unicode_string(altitude_ptr) if altitude_ptr else ''
        if not altitude:
            return STATUS_INVALID_PARAMETER
        if any(r.active and r.altitude == altitude for r in self.registrations.values()):
            return STATUS_FLT_INSTANCE_ALTITUDE_COLLISION
        lockorder.of(self.m).momentary(*LIST_LOCK)
        status = orig(list(argv))
        if not nt_success(status):
            return status
        return self._record(function, context, cookie_ptr, altitude)

    def register_old(self, argv, orig):
        function, context, cookie_ptr = argv
        require(self.m, 'CmRegisterCallback', APC_LEVEL)
        if self.depth:
            raise violation('CmRegisterCallback called from inside the RegistryCallback: the '
                            'documentation forbids it (deadlock)')
        status = orig(list(argv))
        if not nt_success(status):
            return status
        return self._record(function, context, cookie_ptr, '(CmRegisterCallback)')

    def _record(self, function, context, cookie_ptr, altitude):
        cookie = self.next_cookie
        self.next_cookie += 0x10
        self.m.write_u64(cookie_ptr, cookie)
        self.registrations[cookie] = Registration(cookie, function, context, altitude)
        events.of(self.m).name(function, 'RegistryCallback', 'configuration manager')
        return STATUS_SUCCESS

    def unregister(self, argv, orig):
        cookie = argv[0] & 0xFFFFFFFFFFFFFFFF
        require(self.m, 'CmUnRegisterCallback', APC_LEVEL)
        if self.depth:
            raise violation('CmUnRegisterCallback called from inside the RegistryCallback: the '
                            'documentation says this deadlocks')
        orig(list(argv))
        lockorder.of(self.m).momentary(*LIST_LOCK)
        reg = self.registrations.get(cookie)
        if reg is None or not reg.active or reg.unregistering:
            return STATUS_INVALID_PARAMETER
        reg.unregistering = True          # inactive once the racing callback returned (_race)
        self.unregistered.append(cookie)
        self._race(reg)
        return STATUS_SUCCESS

    def _failed_unregister(self, argv, status):
        """A teardown fault: CmUnRegisterCallback fails and the registration stays. A registry
        operation on another processor had already reached the RegistryCallback: that call is in
        flight across the failed unregistration (inflight.py) and the registration keeps going."""
        reg = self.registrations.get(argv[0] & 0xFFFFFFFFFFFFFFFF)
        if reg is not None and reg.active and not reg.unregistering and self.depth == 0:
            self._race(reg, status=status, ends=False)
        return status

    def _race(self, reg, status=STATUS_SUCCESS, ends=True):
        """racing.py: a registry operation on another processor reaches the RegistryCallback while
        CmUnRegisterCallback runs; the registration ends once it returned (`ends`; not when the
        unregistration failed with `status`)."""
        info, objects, _offset = self._pre_structure('set-value', RACE_KEY, None, 'Racing')
        label = 'RegistryCallback 0x%x racing %sCmUnRegisterCallback (another processor)' % (
            reg.function, '' if ends else 'a failed ')
        order = lockorder.of(self.m)
        race = racing.of(self.m)
        token = race.begin(label)
        flights = inflight.of(self.m)
        if flights.available():
            # inflight.py: suspended across the unregistration (inside the driver's barrier, or
            # before it touches driver pool); resumes when the driver waits or unload returns.
            def start():
                self.m.irql = PASSIVE_LEVEL
                self.current_objects = set(objects)

            def pause():
                self.current_objects = set()

            def end():
                self.current_objects = set()
                if ends:
                    reg.active = False
                race.end(token)

            flights.start(reg.function, [reg.context, PRE_SET_VALUE, info], label, {
                'locks': [LIST_LOCK], 'start': start, 'pause': pause, 'resume': start, 'end': end},
                result=status)
            return
        saved = {}

        def before(i):
            order.switch_to([LIST_LOCK])
            saved['phase'], saved['irql'] = self.m.phase, self.m.irql
            self.m.phase, self.m.irql = label, PASSIVE_LEVEL
            self.current_objects = set(objects)

        def after(i):
            self.current_objects = set()
            if ends:
                reg.active = False
            self.m.phase, self.m.irql = saved['phase'], saved['irql']
            order.switch_back()
            race.end(token)

        self.m.call_back_before_return([(reg.function, [reg.context, PRE_SET_VALUE, info])],
                                       before=before, after=after, result=status)

    # ---- key names -----------------------------------------------------------------------------

    def get_key_object_id(self, argv, orig):
        cookie_ptr, obj, id_ptr, name_ptr, _flags = argv
        require(self.m, 'CmCallbackGetKeyObjectIDEx', APC_LEVEL)
        cookie = self.m.read_u64(cookie_ptr) if cookie_ptr else 0
        reg = self.registrations.get(cookie)
        if reg is None or not reg.active:
            return STATUS_INVALID_PARAMETER
        if obj not in self.current_objects:
            raise violation('CmCallbackGetKeyObjectIDEx(0x%x): not a key object of the notification '
                            'being delivered (a stale Object pointer?)' % obj)
        if id_ptr:
            self.m.write_u64(id_ptr, obj)
        if name_ptr:
            name = self.key_objects[obj]
            data = name.encode('utf-16-le', errors='surrogatepass')
            if obj in self.odd_names:
                data = data[:-1]  # Length odd: the last unit is cut in half
            if len(data) > 0xFFFE:
                return STATUS_INSUFFICIENT_RESOURCES
            block = self.m.alloc(16 + max(len(data), 2), 'KeyObjectName')
            self.m.write(block, struct.pack('<HHIQ', len(data), len(data), 0, block + 16) + data)
            self.m.write_u64(name_ptr, block)
            self.names_out[block] = name
        return STATUS_SUCCESS

    def release_key_object_id(self, argv, orig):
        block = argv[0]
        if block not in self.names_out:
            raise violation('CmCallbackReleaseKeyObjectIDEx(0x%x): not a name CmCallbackGetKeyObjectIDEx '
                            'returned, or released twice' % block)
        del self.names_out[block]
        self.names_released += 1

    def upcase(self, argv, orig):
        require(self.m, 'RtlUpcaseUnicodeChar', DISPATCH_LEVEL)
        unit = argv[0] & 0xFFFF
        up = simple_upper(chr(unit)) if not 0xD800 <= unit < 0xE000 else chr(unit)
        return ord(up) if ord(up) < 0x10000 else unit

    # ---- the configuration manager -------------------------------------------------------------

    def _key_object(self, name):
        address = self.m.alloc(0x40, 'KeyObject')
        self.key_objects[address] = name
        return address

    def _unicode(self, text):
        data = text.encode('utf-16-le', errors='surrogatepass')
        block = self.m.alloc(16 + max(len(data), 2), 'UnicodeString')
        self.m.write(block, struct.pack('<HHIQ', len(data), len(data), 0, block + 16) + data)
        return block

    def _call(self, notify_class, info, label):
        """Calls every active RegistryCallback; returns the first failure status, or success. The
        callback list is held while they run (lockorder.py)."""
        order = lockorder.of(self.m)
        order.acquire(*LIST_LOCK)
        try:
            return self._call_each(notify_class, info, label)
        finally:
            order.release(LIST_LOCK[0])

    def _call_each(self, notify_class, info, label):
        for reg in list(self.registrations.values()):
            if not reg.active:
                continue
            self.depth += 1
            self.m.counting = True
            self.m.instructions = 0
            try:
                rv = self.m.call(reg.function, [reg.context, notify_class, info], phase=label,
                                 irql=PASSIVE_LEVEL)
            finally:
                self.m.counting = False
                self.depth -= 1
            self.callback_counts.append((label, '0x%x (RegistryCallback)' % reg.function, self.m.instructions))
            if rv is None:
                return None
            if not nt_success(rv & 0xFFFFFFFF):
                return rv & 0xFFFFFFFF
        return STATUS_SUCCESS

    def _pre_structure(self, operation, key, relative_to, value):
        """The pre-notification structure for `operation`, and the key objects it carries."""
        if operation == 'set-value':
            obj = self._key_object(key)
            info = self.m.alloc(64, 'REG_SET_VALUE_KEY_INFORMATION')
            value_name = self._unicode(value or '')
            data = self._unicode('demo')
            self.m.write(info, struct.pack('<QQIIQIIQQQ', obj, value_name, 0, REG_SZ, data + 16, 10, 0,
                                           0, 0, 0))
            return info, [obj], 40
        if operation == 'delete-key':
            obj = self._key_object(key)
            info = self.m.alloc(32, 'REG_DELETE_KEY_INFORMATION')
            self.m.write(info, struct.pack('<QQQQ', obj, 0, 0, 0))
            return info, [obj], 8
        # create-key / open-key: REG_CREATE_KEY_INFORMATION_V1 (136 bytes, Version = 1)
        objects = []
        if relative_to:
            root = self._key_object(relative_to)
            objects.append(root)
            complete = self._unicode(key[len(relative_to) + 1:] if key.upper().startswith(
                relative_to.upper() + '\\') else key)
        else:
            root = 0
            complete = self._unicode(key)
        info = self.m.alloc(136, 'REG_CREATE_KEY_INFORMATION_V1')
        self.m.write(info, struct.pack('<QQQI4xQQQIIQQQQQQQIIb7x', complete, root, 0, 0, 0, 0, 0,
                                       0x20019, 0, 0, 0, 0, 0, 0, 1, complete, 0, 0, 1))
        return info, objects, 80

    def run_step(self, step):
        kind = step.kind
        if kind == 'registry':
            return self._operation(step)
        if kind == 'notify-class':
            return self._raw_class(step['class'], step['key'])
        if kind == 'class-sweep':
            failures = []
            for cls in range(0, step['through'] + 1):
                ok, detail = self._raw_class(cls, step['key'])
                if not ok:
                    failures.append('class %d: %s' % (cls, detail))
                if self.m.stop is not None:
                    break
            return (not failures, '; '.join(failures) or 'classes 0..%d delivered, none refused or faulted'
                    % step['through'])
        if kind == 'name-sweep':
            return self._name_sweep(step['protected_key'], step['blocked_value'])
        raise AssertionError(kind)

    def _operation(self, step):
        operation = step['operation']
        if operation not in OPERATIONS:
            return False, 'unknown operation %r (known: %s)' % (operation, ', '.join(OPERATIONS))
        expect = step['expect']
        if expect not in ('allowed', 'denied'):
            return False, 'expect must be "allowed" or "denied"'
        status = self.deliver(operation, step['key'], step.get('relative_to'), step.get('value'),
                              step['status'])
        if status is None:
            return False, 'the callback did not return'
        verdict = 'allowed' if nt_success(status) else 'denied'
        detail = '%s: callback returned 0x%08X' % (verdict, status)
        return verdict == expect, detail + ('' if verdict == expect else ' (expected %s)' % expect)

    def deliver(self, operation, key, relative_to, value, final_status, odd_key_length=False):
        pre_class, post_class = OPERATIONS[operation]
        info, objects, call_context_offset = self._pre_structure(operation, key, relative_to, value)
        if odd_key_length:
            self.key_objects[objects[0]] = key + '\0'
            self.odd_names.add(objects[0])
        self.current_objects = set(objects)
        label = '%s %s%s' % (operation, key, ' value %r' % value if value is not None else '')
        try:
            status = self._call(pre_class, info, 'pre-' + label)
            if status is None or not nt_success(status):
                return status
            # The operation runs; the post-notification reports its status and hands back the
            # CallContext the pre-notification set.
            call_context = self.m.read_u64(info + call_context_offset)
            result_object = self._key_object(key) if nt_success(final_status) else 0
            if result_object:
                objects.append(result_object)
            self.current_objects = set(objects)
            post = self.m.alloc(56, 'REG_POST_OPERATION_INFORMATION')
            self.m.write(post, struct.pack('<QI4xQI4xQQQ', result_object, final_status, info,
                                           final_status, call_context, 0, 0))
            post_status = self._call(post_class, post, 'post-' + label)
            return status if post_status is None or nt_success(post_status) else post_status
        finally:
            self.current_objects = set()

    def _raw_class(self, notify_class, key):
        """A notification of any class with a structure large enough for every class, whose first
        pointer is a valid key object (most information structures start with Object)."""
        obj = self._key_object(key)
        info = self.m.alloc(0x100, 'REG_INFORMATION')
        self.m.write(info, struct.pack('<Q', obj) + b'\0' * 0xF8)
        if notify_class in (PRE_SET_VALUE,):
            self.m.write(info + 8, struct.pack('<Q', self._unicode('Unrelated')))
        if notify_class in (PRE_CREATE_KEY_EX, PRE_OPEN_KEY_EX):
            self.m.write(info, struct.pack('<Q', self._unicode(key)))
        self.current_objects = {obj}
        try:
            status = self._call(notify_class, info, 'class %d on %s' % (notify_class, key))
        finally:
            self.current_objects = set()
        if status is None:
            return False, 'the callback did not return'
        return nt_success(status), 'returned 0x%08X' % status

    def _name_sweep(self, protected, blocked):
        """Generated key and value names with the verdict the documentation implies, computed here
        independently of the driver."""
        p = protected
        odd = p + '\\Sub'
        keys = ['', '\\', p, simple_upper(p), p.lower(), p[:-1], p + 'X', p + '\\', odd,
                p + '\0', p[:-1] + '\u212a', '\\REGISTRY\\' + 'A' * 30000, p + '\\' + 'B' * 30000,
                swap_case(p) + '\\Deeper\\Still']
        values = ['', blocked, blocked.lower(), swap_case(blocked), blocked + '\0', blocked[:-1],
                  blocked + 'X', 'Other']
        wrong = []
        total = 0
        for key in keys:
            inside = simple_upper(key) == simple_upper(p) or simple_upper(key).startswith(simple_upper(p) + '\\')
            for value in values:
                expect = 'denied' if inside and simple_upper(value) == simple_upper(blocked) else 'allowed'
                status = self.deliver('set-value', key, None, value, STATUS_SUCCESS)
                total += 1
                if status is None:
                    return False, 'the callback faulted on key %r value %r' % (key[:60], value)
                got = 'allowed' if nt_success(status) else 'denied'
                if got != expect:
                    wrong.append('%r / %r: %s, expected %s' % (key[:60], value, got, expect))
        # An odd Length (a malformed name): the stray byte is not part of the name, so the protected
        # key with one extra byte is still the protected key.
        for value, expect in ((blocked, 'denied'), ('Other', 'allowed')):
            status = self.deliver('set-value', p, None, value, STATUS_SUCCESS, odd_key_length=True)
            total += 1
            got = 'allowed' if nt_success(status) else 'denied' if status is not None else 'faulted'
            if got != expect:
                wrong.append('odd-length %r / %r: %s, expected %s' % (p, value, got, expect))
        return not wrong, '; '.join(wrong) or '%d key/value names, every verdict right' % total

    # ---- after the run (run.py's probe) ----------------------------------------------------------

    def probe(self):
        """A registry operation after unload reaches every RegistryCallback still registered."""
        active = [r for r in self.registrations.values() if r.active]
        if not active:
            return []
        self.deliver('set-value', '\\REGISTRY\\MACHINE\\SOFTWARE\\AfterUnload', None, 'Probe',
                     STATUS_SUCCESS)
        return ['RegistryCallback 0x%x (cookie 0x%x)' % (r.function, r.cookie) for r in active]

    # ---- audit -----------------------------------------------------------------------------------

    def audit(self):
        checks = []
        if self.registrations:
            left = ['cookie 0x%x (altitude %s)' % (c, r.altitude) for c, r in self.registrations.items()
                    if r.active]
            checks.append(('every registry callback unregistered (CmUnRegisterCallback)', not left,
                           '%d registered, %d unregistered' % (len(self.registrations), len(self.unregistered))
                           + ('; still registered: ' + ', '.join(left) if left else '')))
        if self.names_out or self.names_released:
            checks.append(('every key name released (CmCallbackReleaseKeyObjectIDEx)', not self.names_out,
                           '%d released, %d outstanding' % (self.names_released, len(self.names_out))))
        if self.handles or self.handles_closed:
            checks.append(('every registry handle closed (ZwClose)', not self.handles,
                           '%d closed' % self.handles_closed + ('; open: ' + ', '.join(self.handles.values())
                                                               if self.handles else '')))
        return checks


def swap_case(text):
    return ''.join(c.lower() if c.isupper() else c.upper() for c in text)
