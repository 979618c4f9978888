"""Plug and Play notifications, modelled from the documentation (speakeasy has none of these routines).

IoRegisterPlugPlayNotification(Category, Flags, CategoryData, DriverObject, Callback, Context,
                               &NotificationEntry)                              PASSIVE_LEVEL
  - Category: EventCategoryHardwareProfileChange (1, CategoryData NULL), DeviceInterfaceChange (2,
    CategoryData points to the interface class GUID), TargetDeviceChange (3, CategoryData is the
    file object); anything else: STATUS_INVALID_PARAMETER.
  - PNPNOTIFY_DEVICE_INTERFACE_INCLUDE_EXISTING_INTERFACES (1), valid only with DeviceInterfaceChange:
    the callback is called for every interface of the class already present, *before* the routine
    returns (here: synchronously, on the caller's thread).
  - the registration takes a reference on DriverObject (the caller's own), released when it is
    unregistered: a driver that forgets one can never unload.
  - can fail (STATUS_INSUFFICIENT_RESOURCES in a fault run).
IoUnregisterPlugPlayNotificationEx(NotificationEntry)                           PASSIVE_LEVEL
  - once it returns the registration is cancelled and no further callback can occur: a notification
    already dispatched to the callback completes before it returns. Unsafe (a deadlock) from the
    registration's own callback while an INCLUDE_EXISTING registration is still in progress.
IoUnregisterPlugPlayNotification(NotificationEntry)                             PASSIVE_LEVEL
  - obsolete since Windows 7: not synchronised with the callback, which may run after it returned.
Callbacks: `NTSTATUS Callback(PVOID NotificationStructure, PVOID Context)` at PASSIVE_LEVEL. They
must return success for every event they do not explicitly fail (a failure on a query event vetoes
it). The structure (Version 1, Size) belongs to the PnP manager and is valid only during the call.

What the model enforces beyond that (each a way a real kernel would corrupt memory, hang or refuse
to unload): unregistering an unknown or already-unregistered entry is a bugcheck (the kernel would
free the entry twice); a registration naming another driver object, a callback outside the image,
category data that does not match the category; a notification structure read after its callback
returned (it is poisoned and watched, like freed pool); IoUnregisterPlugPlayNotificationEx called
while holding a guarded mutex the registration's callback takes (the callback in flight would wait
for the mutex, the unregistration for the callback); a callback entered after
IoUnregisterPlugPlayNotificationEx returned; a failure status for an event that cannot be vetoed.

Races (armed before DriverUnload, for a device-interface registration of the class):
- `interface-change-during-unregister`: a notification in flight while the unregister routine runs;
  both routines let it finish before they return.
- `interface-change-after-unregister-returns`: a notification the PnP manager dispatched just before
  the unregistration. The Ex routine waits for it; after the old routine it arrives *after* the
  routine returned: at the driver's next kernel call (other than a debug print), once that call has
  done its work. A driver that freed its context there touches freed pool.
"""

import struct
import uuid

from . import events
from . import lockorder, racing
from .errors import KernelStop, deadlock, violation
from .irql import PASSIVE_LEVEL, irql_name, require
from .scenario import REQUIRED

STATUS_SUCCESS = 0
STATUS_INVALID_PARAMETER = 0xC000000D
STATUS_INSUFFICIENT_RESOURCES = 0xC000009A
STATUS_INTERNAL_ERROR = 0xC00000E5
LIST_LOCK = (('kernel', 'pnp notification list'), 'the PnP notification list (held while '
             'notification callbacks run)')

HARDWARE_PROFILE = 1
DEVICE_INTERFACE = 2
TARGET_DEVICE = 3
CATEGORY_NAMES = {HARDWARE_PROFILE: 'hardware-profile change', DEVICE_INTERFACE: 'device-interface change',
                  TARGET_DEVICE: 'target-device change'}
INCLUDE_EXISTING = 0x1
VERSION = 1

# Sizes on x64 (wdm.h): the structure each category receives.
DEVICE_INTERFACE_CHANGE_SIZE = 48
HWPROFILE_CHANGE_SIZE = 20
TARGET_DEVICE_REMOVAL_SIZE = 32

GUID_DEVINTERFACE_VOLUME = '53f5630d-b6bf-11d0-94f2-00a0c91efb8b'
EVENTS = {
    'query-change': ('cb3a4001-46f0-11d0-b08f-00609713053f', HARDWARE_PROFILE, True),
    'change-cancelled': ('cb3a4002-46f0-11d0-b08f-00609713053f', HARDWARE_PROFILE, False),
    'change-complete': ('cb3a4003-46f0-11d0-b08f-00609713053f', HARDWARE_PROFILE, False),
    'arrival': ('cb3a4004-46f0-11d0-b08f-00609713053f', DEVICE_INTERFACE, False),
    'removal': ('cb3a4005-46f0-11d0-b08f-00609713053f', DEVICE_INTERFACE, False),
    'query-remove': ('cb3a4006-46f0-11d0-b08f-00609713053f', TARGET_DEVICE, True),
    'remove-cancelled': ('cb3a4007-46f0-11d0-b08f-00609713053f', TARGET_DEVICE, False),
    'remove-complete': ('cb3a4008-46f0-11d0-b08f-00609713053f', TARGET_DEVICE, False),
}
POISON = 0xDD
MAX_LINK_UNITS = 0x7FFF  # a UNICODE_STRING holds at most 65534 bytes


def guid_bytes(text):
    """The in-memory (little-endian fields) form of a GUID written as text, braces optional."""
    return uuid.UUID(text.strip().strip('{}')).bytes_le


def guid_text(data):
    return str(uuid.UUID(bytes_le=bytes(data))).upper()


def _event(name, category):
    """(GUID bytes, is a query event) for an event name of `category`, or a GUID given as text."""
    known = EVENTS.get(name)
    if known is not None:
        if known[1] != category:
            raise ValueError('event %r belongs to the %s category' % (name, CATEGORY_NAMES[known[1]]))
        return guid_bytes(known[0]), known[2]
    return guid_bytes(name), False


class Registration:
    def __init__(self, entry, category, flags, class_guid, file_object, function, context):
        self.entry = entry
        self.category = category
        self.flags = flags
        self.class_guid = class_guid      # bytes, for DEVICE_INTERFACE
        self.file_object = file_object
        self.function = function
        self.context = context
        self.state = 'registered'         # registered -> unregistering -> unregistered
        self.registering = False          # INCLUDE_EXISTING deliveries before the routine returns
        self.routine = None               # the unregister routine used
        self.labels = set()               # phases of its deliveries

    def describe(self):
        what = CATEGORY_NAMES[self.category]
        if self.category == DEVICE_INTERFACE:
            what += ' {%s}' % guid_text(self.class_guid)
        return what


class Delivery:
    """One notification structure in emulated memory (poisoned and watched once delivered)."""

    def __init__(self, address, regions, kind, vetoable):
        self.address = address
        self.regions = regions
        self.kind = kind                  # the event, or 'ignored' for a malformed one, for the report
        self.vetoable = vetoable


def _link_fields():
    return {'link': ('text', REQUIRED), 'class': ('text', GUID_DEVINTERFACE_VOLUME),
            'link_length': ('u32', None), 'null_link': ('bool', False),
            'version': ('u32', VERSION), 'size': ('u32', None), 'event': ('text', None)}


class PnpNotifications:
    CONFIG = {'device_interfaces': ('table', {})}
    STEPS = {
        'interface-arrival': _link_fields(),
        'interface-removal': _link_fields(),
        'hardware-profile': {'event': ('text', 'change-complete'), 'version': ('u32', VERSION),
                             'size': ('u32', None)},
        'target-device': {'event': ('text', 'remove-complete'), 'version': ('u32', VERSION),
                          'size': ('u32', None)},
    }
    RACES = {
        'interface-change-during-unregister': {'event': ('text', 'arrival'), 'link': ('text', REQUIRED),
                                               'class': ('text', GUID_DEVINTERFACE_VOLUME)},
        'interface-change-after-unregister-returns': {'event': ('text', 'removal'),
                                                      'link': ('text', REQUIRED),
                                                      'class': ('text', GUID_DEVINTERFACE_VOLUME)},
    }

    def __init__(self, machine, config=None):
        config = config or {}
        self.m = machine
        self.present = {}                 # class GUID bytes -> [symbolic link], in arrival order
        for class_text, links in (config.get('device_interfaces') or {}).items():
            try:
                key = guid_bytes(class_text)
            except ValueError:
                from .errors import HarnessError
                raise HarnessError('device_interfaces: %r is not a GUID' % class_text) from None
            if not isinstance(links, list) or not all(isinstance(x, str) for x in links):
                from .errors import HarnessError
                raise HarnessError('device_interfaces.%s must be a list of symbolic link names' % class_text)
            self.present[key] = list(links)
        self.registrations = {}           # entry -> Registration (including unregistered ones)
        self.references_taken = 0
        self.references_released = 0
        self.obsolete_used = []           # entries unregistered with the old routine
        self.own_callback = []            # registrations cancelled from their own callback (Ex)
        self.late_entries = []
        self.bad_returns = []
        self.vetoes = []
        self.deliveries = []              # stack of (Registration, previous phase) being called
        self.armed = []                   # (kind, event, class bytes, link)
        self.fired = 0
        self.callback_counts = []         # (event label, callback, instructions)
        self._entry_hooks = set()
        machine.attach('ntoskrnl', 'IoRegisterPlugPlayNotification', 7, self.register,
                       fallible=lambda argv: (STATUS_INSUFFICIENT_RESOURCES, 'STATUS_INSUFFICIENT_RESOURCES'))
        # "returns STATUS_SUCCESS or an error": the teardown sweep fails it; the registration stays.
        machine.attach('ntoskrnl', 'IoUnregisterPlugPlayNotificationEx', 1, self.unregister_ex,
                       teardown=lambda argv: [(STATUS_INTERNAL_ERROR, 'STATUS_INTERNAL_ERROR')])
        machine.attach('ntoskrnl', 'IoUnregisterPlugPlayNotification', 1, self.unregister_old)

    # ---- registration -------------------------------------------------------------------------

    def _driver_object(self):
        address = self.m.driver_object()
        if address:
            return address
        module = self.m.module
        driver = next((d for d in getattr(self.m.se.emu, 'drivers', []) if d.pe == module), None)
        return driver.address if driver else 0

    def register(self, argv, orig):
        category, flags, data, driver, function, context, out = argv
        category &= 0xFFFFFFFF
        flags &= 0xFFFFFFFF
        require(self.m, 'IoRegisterPlugPlayNotification', PASSIVE_LEVEL)
        if category not in CATEGORY_NAMES:
            return STATUS_INVALID_PARAMETER
        if flags & INCLUDE_EXISTING and category != DEVICE_INTERFACE:
            raise violation('IoRegisterPlugPlayNotification(%s): PNPNOTIFY_DEVICE_INTERFACE_INCLUDE_'
                            'EXISTING_INTERFACES is only valid with EventCategoryDeviceInterfaceChange'
                            % CATEGORY_NAMES[category])
        if category == HARDWARE_PROFILE and data:
            raise violation('IoRegisterPlugPlayNotification(EventCategoryHardwareProfileChange): '
                            'EventCategoryData must be NULL')
        if category != HARDWARE_PROFILE and not data:
            raise violation('IoRegisterPlugPlayNotification(%s): EventCategoryData must point to %s'
                            % (CATEGORY_NAMES[category], 'the interface class GUID'
                               if category == DEVICE_INTERFACE else 'the file object'))
        own = self._driver_object()
        if own and driver != own:
            raise violation('IoRegisterPlugPlayNotification: DriverObject 0x%x is not the caller\'s '
                            'driver object (0x%x)' % (driver, own))
        if not function or not self.m.in_image(function):
            raise violation('IoRegisterPlugPlayNotification: CallbackRoutine 0x%x is not in the driver '
                            'image' % function)
        if not out:
            raise violation('IoRegisterPlugPlayNotification: NotificationEntry is NULL')
        class_guid = self.m.read(data, 16) if category == DEVICE_INTERFACE else None
        lockorder.of(self.m).momentary(*LIST_LOCK)
        entry = self.m.alloc(0x40, 'PnpNotificationEntry')
        reg = Registration(entry, category, flags, class_guid, data if category == TARGET_DEVICE else 0,
                           function, context)
        self.registrations[entry] = reg
        events.of(self.m).name(function, 'PnP callback', 'PnP manager')
        self.references_taken += 1
        self.m.write_u64(out, entry)
        self._watch_entry(function)
        if flags & INCLUDE_EXISTING:
            links = list(self.present.get(class_guid, []))
            if links:
                reg.registering = True
                deliveries = [self._interface_notification('arrival', class_guid, link) for link in links]
                label = 'existing interface reported by IoRegisterPlugPlayNotification (%s)' % reg.describe()
                self._call_back(reg, deliveries, label, finish=lambda: setattr(reg, 'registering', False),
                                result=STATUS_SUCCESS, other_processor=False)
        return STATUS_SUCCESS

    # ---- unregistration -----------------------------------------------------------------------

    def unregister_ex(self, argv, orig):
        return self._unregister('IoUnregisterPlugPlayNotificationEx', argv[0], waits=True)

    def unregister_old(self, argv, orig):
        return self._unregister('IoUnregisterPlugPlayNotification', argv[0], waits=False)

    def _unregister(self, routine, entry, waits):
        require(self.m, routine, PASSIVE_LEVEL)
        reg = self.registrations.get(entry)
        if reg is None or reg.state != 'registered':
            raise KernelStop('bugcheck', '%s(0x%x): %s; the kernel would free the notification entry '
                             'twice or touch freed memory' % (
                                 routine, entry, 'not an entry IoRegisterPlugPlayNotification returned'
                                 if reg is None else 'already unregistered'))
        if reg.registering and any(r is reg for r, _ in self.deliveries):
            raise deadlock('%s from the callback of %s while IoRegisterPlugPlayNotification is still '
                           'reporting the existing interfaces: documented as unsafe (it never returns)'
                           % (routine, reg.describe()))
        own = any(r is reg for r, _ in self.deliveries)
        if waits and own:
            # Its Remarks: "Frequently, a driver calls IoUnregisterPlugPlayNotificationEx from a
            # notification callback routine ... the driver can safely delete the registration" (the
            # case above excepted). The call in flight is the caller: the routine cannot wait for
            # it, and no other call of the registration starts. Cancelled at once.
            reg.state = 'unregistered'
            reg.routine = routine
            self.references_released += 1
            self.own_callback.append(reg.describe())
            return STATUS_SUCCESS
        if waits:
            self._check_held_mutexes(routine, reg)
        lockorder.of(self.m).momentary(*LIST_LOCK)
        reg.state = 'unregistering'
        reg.routine = routine
        if not waits:
            self.obsolete_used.append(reg.describe())
        races = [r for r in self.armed if reg.category == DEVICE_INTERFACE and r[2] == reg.class_guid]
        for r in races:
            self.armed.remove(r)
        in_flight = [r for r in races if waits or r[0] == 'interface-change-during-unregister']
        late = [r for r in races if r not in in_flight]

        def finish():
            reg.state = 'unregistered'
            self.references_released += 1

        race = racing.of(self.m)
        label = 'callback 0x%x racing %s (%s, another processor)' % (reg.function, routine, reg.describe())
        token = race.begin(label)
        self.fired += len(in_flight)
        # racing.py: the scenario's in-flight races, or one notification of the registration's kind.
        deliveries = [self._interface_notification(r[1], r[2], r[3]) for r in in_flight] or [self._racing(reg)]

        if not waits and not late:
            # IoUnregisterPlugPlayNotification's Remarks: the callback can still be called after it
            # returned. Once more, then.
            late = [('interface-change-after-unregister-returns', None, None, None)]

        def finish_race():
            finish()
            race.end(token)
            if late:
                # Armed once the racing callback returned: the driver's next kernel call is made
                # after the routine returned (not by the racing callback itself).
                self.m.after_next_call(lambda value: self._deliver_late(reg, late, routine, value),
                                       skip=('ntoskrnl.DbgPrintEx', 'ntoskrnl.DbgPrint'))

        self._call_back(reg, deliveries, label, finish=finish_race, result=STATUS_SUCCESS)
        return STATUS_SUCCESS

    def _check_held_mutexes(self, routine, reg):
        mutexes = getattr(self.m, 'guarded_mutexes', None)
        if mutexes is None:
            return
        taken_by_callback = {address for phase, address in mutexes.taken_during if phase in reg.labels}
        held = [a for a in mutexes.held() if a in taken_by_callback]
        if held:
            raise deadlock('%s(%s) called while holding guarded mutex 0x%x, which its callback takes: '
                           'the routine waits for a callback in flight, and that callback waits for '
                           'the mutex' % (routine, reg.describe(), held[0]))

    def _racing(self, reg):
        """A notification of the registration's kind, for a racing delivery."""
        if reg.category == DEVICE_INTERFACE:
            return self._interface_notification('arrival', reg.class_guid, '\\??\\RACING#UNREGISTRATION')
        if reg.category == HARDWARE_PROFILE:
            return self._simple_notification(HARDWARE_PROFILE, 'change-complete', VERSION, None)
        return self._simple_notification(TARGET_DEVICE, 'remove-complete', VERSION, None)

    def _deliver_late(self, reg, races, routine, value):
        self.fired += len([r for r in races if r[1] is not None])
        label = 'dispatched before %s and run after it returned (%s)' % (routine, reg.describe())
        deliveries = [self._interface_notification(r[1], r[2], r[3]) if r[1] is not None
                      else self._racing(reg) for r in races]
        self._call_back(reg, deliveries, label, finish=None, result=value)

    def arm_race(self, step):
        try:
            _event(step['event'], DEVICE_INTERFACE)
            class_guid = guid_bytes(step['class'])
        except ValueError as e:
            from .errors import HarnessError
            raise HarnessError('race %s: %s' % (step.kind, e)) from None
        self.armed.append((step.kind, step['event'], class_guid, step['link']))

    def unfired_races(self):
        return ['%s %s {%s} (no registration for that class was unregistered)' % (kind, event, guid_text(c))
                for kind, event, c, _link in self.armed]

    # ---- notification structures --------------------------------------------------------------

    def _alloc(self, data, tag):
        address = self.m.alloc(max(len(data), 16), tag)
        if data:
            self.m.write(address, bytes(data))
        return address

    def _interface_notification(self, event, class_guid, link, version=VERSION, size=None,
                                link_length=None, null_link=False):
        """A DEVICE_INTERFACE_CHANGE_NOTIFICATION for `event` (a name or a GUID as text)."""
        known = event in ('arrival', 'removal')
        event_guid, _ = _event(event, DEVICE_INTERFACE)
        if link_length is not None:
            link = (link + 'X' * link_length)[:link_length]
        text = link.encode('utf-16-le')[:2 * MAX_LINK_UNITS]
        buffer = self._alloc(text, 'PnpSymbolicLink')
        us = self._alloc(struct.pack('<HHIQ', len(text), len(text), 0, buffer), 'PnpUnicodeString')
        size = DEVICE_INTERFACE_CHANGE_SIZE if size is None else size
        body = struct.pack('<HH', version & 0xFFFF, size & 0xFFFF) + event_guid + class_guid
        body += b'\0' * 4 + struct.pack('<Q', 0 if null_link else us)
        address = self._alloc(body, 'PnpNotification')
        ok = version == VERSION and size >= DEVICE_INTERFACE_CHANGE_SIZE and known and text and not null_link
        kind = event if ok else 'ignored'
        return Delivery(address, [(address, len(body)), (us, 16), (buffer, len(text))], kind, False)

    def _simple_notification(self, category, event, version, size):
        event_guid, vetoable = _event(event, category)
        default = HWPROFILE_CHANGE_SIZE if category == HARDWARE_PROFILE else TARGET_DEVICE_REMOVAL_SIZE
        size = default if size is None else size
        body = struct.pack('<HH', version & 0xFFFF, size & 0xFFFF) + event_guid
        if category == TARGET_DEVICE:
            body += b'\0' * 4 + struct.pack('<Q', 0)
        address = self._alloc(body, 'PnpNotification')
        kind = event if event in EVENTS and version == VERSION and size >= default else 'ignored'
        return Delivery(address, [(address, len(body))], kind, vetoable)

    def _poison(self, delivery, reg):
        """The structure goes back to the PnP manager: any later access by the driver is a bug."""
        for start, length in delivery.regions:
            if length == 0:
                continue
            self.m.write(start, bytes([POISON]) * length)

            def touched(emu, access, where, size, value, ctx, start=start, length=length):
                if self.m.stop is not None:
                    return
                self.m.halt(KernelStop(
                    'bugcheck', 'PAGE_FAULT_IN_NONPAGED_AREA: the driver read the PnP notification at '
                    '0x%x (%d-byte access inside 0x%x..0x%x) during %s, after the callback of %s that '
                    'received it returned: the structure belongs to the PnP manager and is valid only '
                    'during the call (copy what you need)'
                    % (where, size, start, start + length, self.m.phase, reg.describe()),
                    code=0x50, params=(where,)))

            self.m.se.add_mem_read_hook(touched, begin=start, end=start + length - 1)
            self.m.se.add_mem_write_hook(touched, begin=start, end=start + length - 1)

    # ---- calling the driver -------------------------------------------------------------------

    def _call_back(self, reg, deliveries, label, finish, result=None, other_processor=True):
        """From inside a routine's hook: run the callback once per delivery before it returns, on
        another processor (a notification in flight) or on the caller's thread."""
        calls = [(reg.function, [d.address, reg.context]) for d in deliveries]
        order = lockorder.of(self.m)

        def before(i):
            if other_processor:
                order.switch_to([LIST_LOCK])
            else:
                order.acquire(*LIST_LOCK)
            self._enter(reg, label)

        def after(i):
            self._leave(reg, label, deliveries[i], self.m.se.reg_read('rax'))
            if other_processor:
                order.switch_back()
            else:
                order.release(LIST_LOCK[0])
            if i == len(deliveries) - 1 and finish is not None:
                finish()

        self.m.call_back_before_return(calls, before=before, after=after, result=result)

    def _deliver(self, category, deliveries, label, match=lambda reg: True):
        regs = [r for r in self.registrations.values()
                if r.category == category and r.state == 'registered' and match(r)]
        order = lockorder.of(self.m)
        order.acquire(*LIST_LOCK)
        try:
            return self._deliver_each(regs, deliveries, label)
        finally:
            order.release(LIST_LOCK[0])

    def _deliver_each(self, regs, deliveries, label):
        for reg in regs:
            for d in deliveries(reg):
                self._enter(reg, label)
                status = self.m.call(reg.function, [d.address, reg.context], phase=label,
                                     irql=PASSIVE_LEVEL)
                self._leave(reg, label, d, status)
                if self.m.stop is not None:
                    return len(regs)
        return len(regs)

    def _enter(self, reg, label):
        self.deliveries.append((reg, self.m.phase))
        reg.labels.add(label)
        self.m.phase = label
        self.m.instructions = 0
        self.m.counting = True

    def _leave(self, reg, label, delivery, status):
        self.m.counting = False
        self.callback_counts.append((label, '0x%x on %s (%s)' % (reg.function, reg.describe(), delivery.kind),
                                     self.m.instructions))
        if self.deliveries and self.deliveries[-1][0] is reg:
            _, phase = self.deliveries.pop()
            self.m.phase = phase
        if self.m.stop is None:
            self._poison(delivery, reg)
        if status is not None and (status & 0xFFFFFFFF) >= 0x80000000:
            if delivery.vetoable:
                self.vetoes.append(label)
            else:
                self.bad_returns.append('%s returned 0x%08X for %s: only a query event may be failed'
                                        % (reg.describe(), status & 0xFFFFFFFF, label))

    # ---- scenario steps -----------------------------------------------------------------------

    def run_step(self, step):
        if step.irql != PASSIVE_LEVEL:
            return False, 'the PnP manager calls notification callbacks at PASSIVE_LEVEL, not %s' % (
                irql_name(step.irql))
        try:
            if step.kind in ('interface-arrival', 'interface-removal'):
                return self._interface_step(step)
            category = HARDWARE_PROFILE if step.kind == 'hardware-profile' else TARGET_DEVICE
            _event(step['event'], category)  # a known event of the category, or a GUID
        except ValueError as e:
            return False, str(e)
        label = '%s %s' % (step.kind, step['event'])
        n = self._deliver(category, lambda reg: [self._simple_notification(
            category, step['event'], step['version'], step.get('size'))], label)
        return self._result(n, label, category)

    def _interface_step(self, step):
        event = step.get('event') or ('arrival' if step.kind == 'interface-arrival' else 'removal')
        class_guid = guid_bytes(step['class'])
        link = step['link']
        links = self.present.setdefault(class_guid, [])
        if event == 'arrival' and link not in links:
            links.append(link)
        elif event == 'removal' and link in links:
            links.remove(link)
        label = '%s %s' % (step.kind, link if step.get('link_length') is None
                           else '%s... (%d characters)' % (link, step['link_length']))
        n = self._deliver(DEVICE_INTERFACE, lambda reg: [self._interface_notification(
            event, class_guid, link, step['version'], step.get('size'), step.get('link_length'),
            step['null_link'])], label, match=lambda reg: reg.class_guid == class_guid)
        return self._result(n, label, DEVICE_INTERFACE)

    def _result(self, n, label, category):
        if n == 0:
            return False, 'no %s registration to deliver %s to' % (CATEGORY_NAMES[category], label)
        return True, '%d callback(s) called' % n

    # ---- late entries ---------------------------------------------------------------------------

    def _watch_entry(self, function):
        if function in self._entry_hooks:
            return
        self._entry_hooks.add(function)
        self.m.se.add_code_hook(lambda emu, addr, size, ctx: self._entered(addr), begin=function,
                                end=function)

    def _entered(self, function):
        if any(r.function == function for r, _ in self.deliveries):
            return
        regs = [r for r in self.registrations.values() if r.function == function]
        if regs and all(r.state == 'unregistered' and r.routine == 'IoUnregisterPlugPlayNotificationEx'
                        for r in regs):
            self.late_entries.append('callback 0x%x entered after IoUnregisterPlugPlayNotificationEx '
                                     'returned' % function)

    # ---- after the run (run.py's probe) -------------------------------------------------------

    def probe(self):
        """An event after unload reaches every callback still registered."""
        done = []
        for reg in [r for r in self.registrations.values() if r.state == 'registered']:
            if reg.category == DEVICE_INTERFACE:
                delivery = self._interface_notification('arrival', reg.class_guid, '\\??\\AFTER#UNLOAD')
            elif reg.category == HARDWARE_PROFILE:
                delivery = self._simple_notification(HARDWARE_PROFILE, 'change-complete', VERSION, None)
            else:
                delivery = self._simple_notification(TARGET_DEVICE, 'remove-complete', VERSION, None)
            label = 'probe: %s after unload' % reg.describe()
            order = lockorder.of(self.m)
            order.acquire(*LIST_LOCK)
            self._enter(reg, label)
            status = self.m.call(reg.function, [delivery.address, reg.context], phase=label, irql=PASSIVE_LEVEL)
            self._leave(reg, label, delivery, status)
            order.release(LIST_LOCK[0])
            done.append('callback 0x%x (%s)' % (reg.function, reg.describe()))
            if self.m.stop is not None:
                break
        return done

    # ---- audit --------------------------------------------------------------------------------

    def audit(self):
        regs = list(self.registrations.values())
        if not regs:
            return []
        left = [r.describe() for r in regs if r.state != 'unregistered']
        held = self.references_taken - self.references_released
        checks = [
            ('every PnP notification registration undone', not left,
             '%d registered, %d unregistered' % (len(regs), len(regs) - len(left))
             + ('; still registered: ' + ', '.join(left) if left else '')),
            ('no PnP registration still references the driver object', held == 0,
             'driver object still referenced %d time(s) by PnP registrations: the driver can never '
             'unload' % held if held else '%d reference(s) taken, all released' % self.references_taken),
            ('IoUnregisterPlugPlayNotificationEx used, not the obsolete routine', not self.obsolete_used,
             'IoUnregisterPlugPlayNotification (obsolete since Windows 7; it does not wait for a '
             'notification in progress) unregistered: ' + ', '.join(self.obsolete_used)
             if self.obsolete_used else 'every unregistration waited for its callback'
             + ('; cancelled from its own callback (allowed, Remarks): ' + ', '.join(self.own_callback)
                if self.own_callback else '')),
            ('no PnP callback entered after IoUnregisterPlugPlayNotificationEx returned',
             not self.late_entries, '; '.join(self.late_entries) or 'none'),
            ('PnP callbacks returned success for every event they may not veto', not self.bad_returns,
             '; '.join(self.bad_returns) or ('%d veto(es) of query events' % len(self.vetoes)
                                             if self.vetoes else 'all succeeded')),
        ]
        return checks
