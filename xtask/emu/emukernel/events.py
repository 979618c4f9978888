"""The ordered event list of a run (REPORT.md, "events"): what `cargo xtask emulate --diagram` draws.

The machine records, in the order they happened:
- `stage`: the run moved on (DriverEntry, steps, DriverUnload, probe);
- `call`: a kernel routine the driver called that belongs to the lesson (registration and
  unregistration, notification, waits, frees; see `category`), with its status, IRQL and where the
  driver was (`in`: DriverEntry, DriverUnload or the callback; `cpu`: `this` or `another` for code
  running on another processor, a callback racing an unregistration);
- `callback`: the kernel called driver code (DriverUnload, a registered callback), with its IRQL;
- `suspend` / `resume`: a callback in flight on another processor was paused inside the driver's
  barrier (or before it touched driver pool) and resumed (emukernel/inflight.py);
- `stop`: the kernel stopped the run (bugcheck, deadlock, rule broken);
- `audit`: the verdicts, once, at the end.
Every field is deterministic (names, statuses, IRQLs; no addresses), so a diagram drawn from them
can be embedded and compared. Repeated stretches are folded into `repeat` entries (a thousand flows
are one entry with a count) and the list is capped at MAX_EVENTS entries.
"""

import functools
import re

from .irql import irql_name

# Entries kept per run after folding; the rest is counted in the run's `events_dropped`.
MAX_EVENTS = 300
# The longest stretch of events folded as one repeated unit.
MAX_UNIT = 6

_SKIP = re.compile(r'Rundown(?!ProtectionRelease)|^Dbg|^Rtl|Allocate|Initialize|Print|Acquire|Release|'
                   r'GetCurrent|Query|Get|^Ke(Enter|Leave)|SpinLock|Mutex|Bind$')
_CATEGORIES = [
    ('wait', re.compile(r'Wait|DelayExecution|Flush')),
    ('free', re.compile(r'Free')),
    ('notify', re.compile(r'Notify')),
    ('unregister', re.compile(r'Unregister|UnRegister|Delete|Close|Remove|Dereference|Abort|Unbind')),
    ('register', re.compile(r'Register|Create|Open|Add\d*$|Associate|Transaction|Insert|Finish')),
]
# Routines that return nothing, or a pointer (shown as `handle` / `NULL`): no NTSTATUS to show.
_VOID = {'ExUnregisterCallback', 'ObfDereferenceObject', 'ObDereferenceObject', 'ExFreePool',
         'ExFreePoolWithTag', 'IoDeleteDevice', 'ExWaitForRundownProtectionRelease', 'WdfObjectDelete',
         'WdfDeviceInitFree', 'ExNotifyCallback', 'KeFlushQueuedDpcs', 'IoFreeWorkItem',
         'WdfControlFinishInitializing', 'IoDeleteSymbolicLink'}
_POINTER = {'ExRegisterCallback', 'WdfControlDeviceInitAllocate', 'IoAllocateWorkItem'}
STATUS_NAMES = {
    0x00000000: 'STATUS_SUCCESS', 0x00000102: 'STATUS_TIMEOUT', 0x00000103: 'STATUS_PENDING',
    0x80000011: 'STATUS_DEVICE_BUSY', 0xC0000001: 'STATUS_UNSUCCESSFUL',
    0xC0000008: 'STATUS_INVALID_HANDLE', 0xC000000D: 'STATUS_INVALID_PARAMETER',
    0xC0000022: 'STATUS_ACCESS_DENIED', 0xC0000034: 'STATUS_OBJECT_NAME_NOT_FOUND',
    0xC0000035: 'STATUS_OBJECT_NAME_COLLISION', 0xC000009A: 'STATUS_INSUFFICIENT_RESOURCES',
    0xC00000BB: 'STATUS_NOT_SUPPORTED', 0xC0000010: 'STATUS_INVALID_DEVICE_REQUEST',
    0xC0000225: 'STATUS_NOT_FOUND',
}
# The kernel component each routine family belongs to (the diagram's participants).
_FAMILIES = [
    (re.compile(r'^Ex\w*Callback$'), 'callback objects'),
    (re.compile(r'^Cm'), 'configuration manager'),
    (re.compile(r'^Io\w*PlugPlay'), 'PnP manager'),
    (re.compile(r'^Io'), 'I/O manager'),
    (re.compile(r'^Fwp'), 'filter engine'),
    (re.compile(r'^Wdf'), 'KMDF'),
    (re.compile(r'^Ob'), 'object manager'),
    (re.compile(r'^Etw'), 'ETW'),
]


def short(routine):
    return routine.split('.', 1)[-1]


@functools.lru_cache(maxsize=None)
def category(routine):
    """What a routine is in the lesson's order, or None for a call the diagram leaves out."""
    name = short(routine)
    if _SKIP.search(name) and not re.search(r'Wait|Free|Notify', name):
        return None
    return next((c for c, pattern in _CATEGORIES if pattern.search(name)), None)


@functools.lru_cache(maxsize=None)
def family(routine):
    name = short(routine)
    return next((f for pattern, f in _FAMILIES if pattern.search(name)), 'kernel')


def status_text(routine, value):
    name = short(routine)
    if name in _VOID or value is None:
        return None
    if name in _POINTER:
        return 'handle' if value else 'NULL'
    value &= 0xFFFFFFFF
    return STATUS_NAMES.get(value, '0x%08X' % value)


class Events:
    """The event list of one machine's run."""

    def __init__(self, machine):
        self.m = machine
        self.items = []
        self.names = {}     # address of driver code -> (name, kernel component that calls it)
        self.stack = []     # the driver routines the kernel called, innermost last: (name, cpu)
        self.stage = None
        self.next_cpu = None  # a model's word on where the next callback runs (see enter)
        self.parked = 0     # races whose call is suspended in flight (it races nothing meanwhile)

    def name(self, address, name, component):
        """A model names driver code it will call (a registered callback), by what it is."""
        if address:
            self.names[address] = (name, component)

    def _add(self, event):
        if self.m.stage != self.stage:
            self.stage = self.m.stage
            self.items.append({'kind': 'stage', 'stage': self.stage})
        self.items.append(event)
        return event

    def _where(self):
        flights = getattr(self.m, 'in_flight', None)
        current = getattr(flights, 'current', None)
        if current is not None and len(self.stack) <= getattr(current, 'event_depth', 0):
            return getattr(current, 'name', 'a driver routine'), 'another'
        if self.stack:
            return self.stack[-1]
        return ('DriverEntry' if self.m.phase == 'DriverEntry' else 'DriverUnload'
                if self.m.stage == 'DriverUnload' else 'the driver'), 'this'

    def call(self, record):
        """A kernel call starts: its event (status filled in by `returned`), or None."""
        kind = category(record.routine)
        if kind is None:
            return None
        where, cpu = self._where()
        return self._add({'kind': 'call', 'category': kind, 'routine': short(record.routine),
                          'component': family(record.routine), 'in': where, 'cpu': cpu,
                          'irql': irql_name(self.m.irql), 'status': None})

    def returned(self, event, record, injected=None):
        if event is None and injected:
            # A call the diagram leaves out (an allocation) is shown when its failure was injected.
            where, cpu = self._where()
            event = self._add({'kind': 'call', 'category': 'other', 'routine': short(record.routine),
                               'component': family(record.routine), 'in': where, 'cpu': cpu,
                               'irql': irql_name(self.m.irql), 'status': None})
        if event is None:
            return
        event['status'] = injected or status_text(record.routine, record.ret)
        if injected:
            event['injected'] = True
        if record.note and not injected:
            event['stopped'] = record.note

    def driver_entry(self):
        self._add({'kind': 'callback', 'callback': 'DriverEntry', 'component': 'I/O manager',
                   'cpu': 'this', 'irql': irql_name(self.m.irql)})

    def driver_entry_returned(self, status):
        self._add({'kind': 'returned', 'callback': 'DriverEntry',
                   'status': 'none' if status is None else status_text('DriverEntry', status)})

    def _racing(self):
        racing = getattr(self.m, 'racing', None)
        running = sum(state == 'running' for _label, state in getattr(racing, 'races', ()))
        return running > self.parked

    def enter(self, address, irql, cpu=None, name=None):
        """The kernel calls driver code at `address`; `leave` when it returns."""
        known = self.names.get(address)
        if name is None:
            name = known[0] if known else 'a driver routine'
        component = known[1] if known else ('I/O manager' if name == 'DriverUnload' else 'kernel')
        # Another processor when a race is on, or when the model says so (`next_cpu`: a flow that
        # ended on another processor).
        cpu = cpu or self.next_cpu or ('another' if self._racing() else 'this')
        self.next_cpu = None
        self.stack.append((name, cpu))
        self._add({'kind': 'callback', 'callback': name, 'component': component, 'cpu': cpu,
                   'irql': irql_name(irql)})

    def leave(self):
        if self.stack:
            self.stack.pop()

    def flight(self, kind, flight):
        """inflight.py: a call on another processor started, was suspended, resumed, ended. The
        driver routines it is inside travel with it: off the stack while it is suspended."""
        if kind == 'callback':
            flight.event_depth = len(self.stack)
            flight.event_stack = []
            known = self.names.get(flight.function)
            flight.name = known[0] if known else 'a driver routine'
            if not self.m.in_image(flight.function):
                return  # a harness sequence: the driver routines it calls are recorded as entered
            self.stack.append((flight.name, 'another'))
        elif kind == 'suspend':
            flight.event_stack = self.stack[flight.event_depth:]
            del self.stack[flight.event_depth:]
            self.parked += 1
            if flight.event_stack:
                flight.name = flight.event_stack[-1][0]
        elif kind == 'resume':
            flight.event_depth = len(self.stack)
            self.stack.extend(flight.event_stack)
            self.parked -= 1
        elif kind == 'end':
            del self.stack[flight.event_depth:]
            return
        event = {'kind': kind, 'callback': flight.name, 'cpu': 'another'}
        if kind == 'suspend':
            event['where'] = ('in the driver\'s barrier' if 'barrier' in (flight.paused_at or '')
                              else 'before touching driver pool')
        elif kind == 'resume':
            event['when'] = flight.resumed_at or ''
        elif kind == 'callback':
            event['component'] = known[1] if known else 'kernel'
            event['irql'] = irql_name(flight.irql)
        self._add(event)

    def finish(self, audit, error):
        """The run's verdicts, then the list folded and capped: (events, dropped)."""
        if error is not None:
            self._add({'kind': 'stop', 'error': error['kind']})
        failed = [a['check'] for a in audit if not a['ok']]
        tolerated = [a['check'] for a in audit if a.get('tolerated')]
        self.items.append({'kind': 'audit', 'checks': len(audit), 'failed': failed,
                           'tolerated': tolerated})
        folded = fold(self.items)
        dropped = max(0, len(folded) - MAX_EVENTS)
        if dropped:
            folded = folded[:MAX_EVENTS - 1] + [folded[-1]]
        return folded, dropped


def fold(items):
    """Consecutive repeats of a stretch of up to MAX_UNIT events become one `repeat` entry
    {"kind": "repeat", "count": N, "events": [...]}, the longest saving first."""
    out = []
    i = 0
    n = len(items)

    known = {}

    def best(i):
        if i in known:
            return known[i]
        found = (1, 1)  # (count, unit)
        for unit in range(1, MAX_UNIT + 1):
            if i + 2 * unit > n:
                break
            count = 1
            while items[i + count * unit:i + (count + 1) * unit] == items[i:i + unit]:
                count += 1
            if count > 1 and (count - 1) * unit > (found[0] - 1) * found[1]:
                found = (count, unit)
        known[i] = found
        return found

    def saving(found):
        return (found[0] - 1) * found[1]

    while i < n:
        count, unit = best(i)
        # A longer fold starting a little later wins: `a a (a b)x1000` is not `(a)x3 b (a b)x999`.
        if any(saving(best(j)) > saving((count, unit)) for j in range(i + 1, min(n, i + MAX_UNIT + 1))):
            count = 1
        if count > 1:
            out.append({'kind': 'repeat', 'count': count, 'events': fold(items[i:i + unit])})
            i += count * unit
        else:
            out.append(items[i])
            i += 1
    return out


class _NoEvents:
    """For a machine without an event list (the models' unit tests use stand-in machines)."""

    next_cpu = None

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


_NONE = _NoEvents()


def of(machine):
    return getattr(machine, 'events', None) or _NONE
