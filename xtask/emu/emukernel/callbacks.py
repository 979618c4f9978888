"""Callback objects, modelled from the documentation (speakeasy has none of these routines).

ExCreateCallback(&Object, ObjectAttributes, Create, AllowMultipleCallbacks)   <= APC_LEVEL
  - opens the named object, or creates it when Create is TRUE; the caller gets a reference it must
    release with ObDereferenceObject. No name: STATUS_UNSUCCESSFUL. Not found and Create FALSE:
    STATUS_OBJECT_NAME_NOT_FOUND. AllowMultipleCallbacks is ignored when the object exists.
ExRegisterCallback(Object, Function, Context) -> registration handle, or NULL on failure, including
  when the object allows a single registration and already has one.
  - the registration holds a reference of its own on the object, which ExUnregisterCallback
    removes: "Using a Driver-Defined Callback Object" (learn.microsoft.com, kernel-mode driver
    architecture): a driver that no longer needs notification "should call ExUnregisterCallback
    to delete the routine from the list of registered callbacks and remove its reference to the
    callback object"; ReactOS's ntoskrnl/ex/callback.c (ExRegisterCallback: ObReferenceObject;
    ExUnregisterCallback: ObDereferenceObject) does the same. So a driver may release its own
    ExCreateCallback reference before unregistering: the object lives until the registration goes.
ExNotifyCallback(Object, Argument1, Argument2)   <= DISPATCH_LEVEL
  - calls every registered routine, in registration order, at the caller's IRQL, before returning.
  - drivers must not call it on the system-defined objects (\\Callback\\PowerState, \\Callback\\SetSystemTime).
ExUnregisterCallback(Registration)   <= APC_LEVEL
  - the handle must be one ExRegisterCallback returned; its page promises nothing about a call in
    progress (ReactOS waits for the registration's calls in flight; the model takes the stricter
    reading and lets a dispatched call complete while ExUnregisterCallback runs, see races).
ObfDereferenceObject(Object)   <= DISPATCH_LEVEL
  - a temporary object is deleted when its last reference goes; its registrations go with it.

What the model enforces beyond that (each a way a real kernel would corrupt memory or bugcheck):
unregistering an unknown or already-unregistered handle; dereferencing an object the driver holds
no reference to (released twice); a callback entered after its unregistration returned. An object
is deleted when its last reference goes — the driver's, the registrations', the kernel's for a
system or permanent object — so "dereferenced before unregistering" is not a defect.
"""

from . import events
from . import inflight, lockorder, racing
from .errors import KernelStop, bugcheck, violation
from .irql import APC_LEVEL, DISPATCH_LEVEL, PASSIVE_LEVEL, irql_name, require
from .scenario import REQUIRED

STATUS_SUCCESS = 0
STATUS_UNSUCCESSFUL = 0xC0000001
STATUS_INVALID_PARAMETER = 0xC000000D
STATUS_OBJECT_NAME_NOT_FOUND = 0xC0000034
STATUS_OBJECT_NAME_COLLISION = 0xC0000035
STATUS_INSUFFICIENT_RESOURCES = 0xC000009A

OBJ_CASE_INSENSITIVE = 0x40
OBJ_PERMANENT = 0x10
OBJECT_ATTRIBUTES_SIZE = 48

REFERENCE_BY_POINTER = 0x18
SYSTEM_OBJECTS = ('\\Callback\\PowerState', '\\Callback\\SetSystemTime')


class CallbackObject:
    def __init__(self, name, address, system, allow_multiple, permanent):
        self.name = name
        self.address = address
        self.system = system              # created by the kernel at boot; it keeps a reference
        self.allow_multiple = allow_multiple
        self.permanent = permanent
        self.driver_refs = 0
        self.registrations = []           # live Registration objects, in registration order
        self.deleted = False

    def total_refs(self):
        # Each live registration holds a reference of its own (see the module documentation).
        return (self.driver_refs + len(self.registrations)
                + (1 if self.system or self.permanent else 0))

    def list_lock(self):
        """The object's callback list, held while its callbacks run (lockorder.py)."""
        return (('kernel', 'callback list', self.address),
                'the callback list of %s (held while its callbacks run)' % self.name)


class Registration:
    def __init__(self, handle, obj, function, context):
        self.handle = handle
        self.obj = obj
        self.function = function
        self.context = context
        self.state = 'registered'         # registered -> unregistering -> unregistered


class ExCallbacks:
    CONFIG = {'system_callback_objects': ('names', list(SYSTEM_OBJECTS))}
    STEPS = {'notify': {'object': ('name', REQUIRED), 'argument1': ('u64', 0), 'argument2': ('u64', 0)}}
    RACES = {'notify-during-unregister': {'object': ('name', REQUIRED), 'argument1': ('u64', 0),
                                          'argument2': ('u64', 0)}}

    def __init__(self, machine, config=None):
        config = config or {}
        system_objects = config.get('system_callback_objects', SYSTEM_OBJECTS)
        self.m = machine
        self.objects = {}                 # upper-case name -> CallbackObject
        self.by_address = {}
        self.registrations = {}           # handle -> Registration (including unregistered ones)
        self.references_taken = 0
        self.references_released = 0
        self.deliveries = []              # stack of Registration currently being called
        self.late_entries = []            # (function, why)
        self.deleted_with_registrations = []
        self.armed_races = []             # (object name, argument1, argument2)
        self.callback_counts = []         # (event label, instructions)
        self._entry_hooks = set()
        for name in system_objects:
            self._new_object(name, system=True, allow_multiple=True, permanent=True)
        machine.attach('ntoskrnl', 'ExCreateCallback', 4, self.create, fallible=self._create_failure)
        machine.attach('ntoskrnl', 'ExRegisterCallback', 3, self.register,
                       fallible=lambda argv: (0, 'NULL'))
        machine.attach('ntoskrnl', 'ExNotifyCallback', 3, self.notify)
        machine.attach('ntoskrnl', 'ExUnregisterCallback', 1, self.unregister)
        machine.attach('ntoskrnl', 'ObfDereferenceObject', 1, self.dereference)

    # ---- objects ------------------------------------------------------------------------------

    def _new_object(self, name, system, allow_multiple, permanent):
        address = self.m.alloc(0x40, 'CallbackObject')
        obj = CallbackObject(name, address, system, allow_multiple, permanent)
        self.objects[name.upper()] = obj
        self.by_address[address] = obj
        return obj

    def _create_failure(self, argv):
        if argv[2] & 0xFF:
            return STATUS_INSUFFICIENT_RESOURCES, 'STATUS_INSUFFICIENT_RESOURCES'
        return STATUS_OBJECT_NAME_NOT_FOUND, 'STATUS_OBJECT_NAME_NOT_FOUND'

    def create(self, argv, orig):
        out, attributes, create, allow_multiple = argv[0], argv[1], argv[2] & 0xFF, argv[3] & 0xFF
        require(self.m, 'ExCreateCallback', APC_LEVEL)
        if attributes == 0 or self.m.read_u32(attributes) != OBJECT_ATTRIBUTES_SIZE:
            return STATUS_INVALID_PARAMETER
        name_ptr = self.m.read_u64(attributes + 16)
        flags = self.m.read_u32(attributes + 24)
        if name_ptr == 0:
            return STATUS_UNSUCCESSFUL  # "Unnamed callback objects are not permitted."
        name = self.m.read_unicode_string(name_ptr)
        if not name:
            return STATUS_UNSUCCESSFUL
        key = name.upper()
        obj = self.objects.get(key)
        if obj is not None and not (flags & OBJ_CASE_INSENSITIVE) and obj.name != name:
            obj = None  # a case-sensitive lookup does not match a differently-cased name
        if obj is None or obj.deleted:
            if not create:
                return STATUS_OBJECT_NAME_NOT_FOUND
            obj = self._new_object(name, system=False, allow_multiple=bool(allow_multiple),
                                   permanent=bool(flags & OBJ_PERMANENT))
        obj.driver_refs += 1
        self.references_taken += 1
        self.m.write_u64(out, obj.address)
        return STATUS_SUCCESS

    def _object(self, routine, address):
        obj = self.by_address.get(address)
        if obj is None or obj.deleted:
            raise bugcheck(REFERENCE_BY_POINTER, 'REFERENCE_BY_POINTER',
                           '%s(0x%x): not a live callback object' % (routine, address), address)
        return obj

    def dereference(self, argv, orig):
        address = argv[0]
        require(self.m, 'ObfDereferenceObject', DISPATCH_LEVEL)
        obj = self.by_address.get(address)
        if obj is None:
            # Not a callback object: speakeasy tracks its own objects.
            return orig(list(argv)) if orig else 0
        if obj.deleted or obj.driver_refs == 0:
            raise bugcheck(REFERENCE_BY_POINTER, 'REFERENCE_BY_POINTER',
                           'ObDereferenceObject(%s): the driver holds no reference to it (released '
                           'twice?)' % obj.name, address)
        obj.driver_refs -= 1
        self.references_released += 1
        if obj.total_refs() == 0:
            obj.deleted = True
            if obj.registrations:
                self.deleted_with_registrations.append(
                    '%s deleted by its last ObDereferenceObject while %d registration(s) remained: '
                    'unregister before dereferencing' % (obj.name, len(obj.registrations)))
        return 0

    # ---- registrations ------------------------------------------------------------------------

    def register(self, argv, orig):
        address, function, context = argv
        obj = self._object('ExRegisterCallback', address)
        lockorder.of(self.m).momentary(*obj.list_lock())
        if obj.registrations and not obj.allow_multiple:
            return 0
        handle = self.m.alloc(0x30, 'CallbackRegistration')
        reg = Registration(handle, obj, function, context)
        events.of(self.m).name(function, '%s callback' % obj.name.rsplit('\\', 1)[-1], 'callback objects')
        obj.registrations.append(reg)
        self.registrations[handle] = reg
        self._watch_entry(function)
        return handle

    def unregister(self, argv, orig):
        handle = argv[0]
        require(self.m, 'ExUnregisterCallback', APC_LEVEL)
        reg = self.registrations.get(handle)
        if reg is None or reg.state != 'registered':
            raise KernelStop('bugcheck', 'ExUnregisterCallback(0x%x): %s; the kernel would free the '
                             'registration twice or touch freed memory' % (
                                 handle, 'not a handle ExRegisterCallback returned' if reg is None
                                 else 'already unregistered'))
        if reg.obj.deleted:
            raise violation('ExUnregisterCallback on %s after the object was deleted by its last '
                            'ObDereferenceObject: the registration went with it' % reg.obj.name)
        lockorder.of(self.m).momentary(*reg.obj.list_lock())
        reg.obj.registrations.remove(reg)
        if reg.obj.total_refs() == 0:
            reg.obj.deleted = True  # the registration held the last reference
        reg.state = 'unregistering'
        races = [r for r in self.armed_races if r[0].upper() == reg.obj.name.upper()]
        # A notification the kernel had already dispatched to this routine completes while
        # ExUnregisterCallback runs (racing.py; the documentation promises nothing either way): the
        # scenario's armed races, or one with Argument1 = Argument2 = 0.
        for r in races:
            self.armed_races.remove(r)
        calls = [(reg.function, [reg.context, r[1], r[2]]) for r in races] or [(reg.function, [reg.context, 0, 0])]
        label = 'routine 0x%x racing ExUnregisterCallback on %s (another processor)' % (reg.function, reg.obj.name)
        order = lockorder.of(self.m)
        race = racing.of(self.m)
        token = race.begin(label)
        flights = inflight.of(self.m)
        if len(calls) == 1 and flights.available():
            # inflight.py: the call is suspended across the unregistration (at the barrier, or
            # before it touches driver pool) and resumes when the driver waits or unload returns.
            def start():
                self._enter(reg, label)

            def pause():
                if reg in self.deliveries:
                    self.deliveries.remove(reg)

            def resume():
                self.deliveries.append(reg)

            def end():
                self._leave(reg, label, last=True)
                race.end(token)

            flights.start(calls[0][0], calls[0][1], label, {
                'locks': [reg.obj.list_lock()], 'start': start, 'pause': pause, 'resume': resume,
                'end': end})
            return None
        saved = {}

        def before(i):
            order.switch_to([reg.obj.list_lock()])   # on another processor
            saved['phase'] = self.m.phase
            self.m.phase = label
            self._enter(reg, label)

        def after(i):
            self._leave(reg, label, last=(i == len(calls) - 1))
            self.m.phase = saved.get('phase', self.m.phase)
            order.switch_back()
            if i == len(calls) - 1:
                race.end(token)

        self.m.call_back_before_return(calls, before=before, after=after)
        return None

    # ---- notifications ------------------------------------------------------------------------

    def notify(self, argv, orig):
        address, argument1, argument2 = argv
        require(self.m, 'ExNotifyCallback', DISPATCH_LEVEL)
        obj = self._object('ExNotifyCallback', address)
        if obj.system:
            raise violation('ExNotifyCallback on %s: drivers must not notify the system-defined '
                            'callback objects' % obj.name)
        regs = list(obj.registrations)
        order = lockorder.of(self.m)
        if regs:
            label = 'ExNotifyCallback(%s, 0x%x, 0x%x) from the driver' % (obj.name, argument1, argument2)
            order.acquire(*obj.list_lock())

            def after(i):
                self._leave(regs[i], label)
                if i == len(regs) - 1:
                    order.release(obj.list_lock()[0])

            self.m.call_back_before_return(
                [(r.function, [r.context, argument1, argument2]) for r in regs],
                before=lambda i: self._enter(regs[i], label), after=after)
        else:
            order.momentary(*obj.list_lock())
        return None

    def deliver(self, name, argument1, argument2, irql):
        """A kernel event: the component that owns `name` notifies it (harness-side ExNotifyCallback)."""
        obj = self.objects.get(name.upper())
        if obj is None or obj.deleted:
            return 'no callback object %s exists' % name
        label = 'notify %s (0x%x, 0x%x) at %s' % (name, argument1, argument2, irql_name(irql))
        order = lockorder.of(self.m)
        order.acquire(*obj.list_lock())
        for reg in list(obj.registrations):
            self._enter(reg, label)
            self.m.call(reg.function, [reg.context, argument1, argument2], phase=label, irql=irql)
            self._leave(reg, label)
            if self.m.stop is not None:
                break
        order.release(obj.list_lock()[0])
        return '%d routine(s) called' % len(obj.registrations)

    def run_step(self, step):
        """`notify`: the component that owns the object notifies it."""
        detail = self.deliver(step['object'], step['argument1'], step['argument2'], step.irql)
        return not detail.startswith('no '), detail

    def arm_race(self, step):
        self.armed_races.append((step['object'], step['argument1'], step['argument2']))

    def unfired_races(self):
        return ['notify-during-unregister %s (no registration on it was unregistered)' % name
                for name, _a1, _a2 in self.armed_races]

    def _enter(self, reg, label):
        self.deliveries.append(reg)
        self.m.instructions = 0
        self.m.counting = True

    def _leave(self, reg, label, last=False):
        self.m.counting = False
        self.callback_counts.append((label, '0x%x on %s' % (reg.function, reg.obj.name), self.m.instructions))
        if self.deliveries and self.deliveries[-1] is reg:
            self.deliveries.pop()
        if last and reg.state == 'unregistering':
            reg.state = 'unregistered'

    def _watch_entry(self, function):
        if function in self._entry_hooks or not self.m.in_image(function):
            return
        self._entry_hooks.add(function)
        self.m.se.add_code_hook(lambda emu, addr, size, ctx: self._entered(addr), begin=function,
                                end=function)

    def _entered(self, function):
        if any(r.function == function for r in self.deliveries):
            return
        regs = [r for r in self.registrations.values() if r.function == function]
        if regs and all(r.state == 'unregistered' for r in regs):
            self.late_entries.append('callback 0x%x entered after its unregistration returned'
                                     % function)

    # ---- after the run (run.py's probe) -------------------------------------------------------

    def probe(self):
        """Whoever notifies an object still carrying a registration reaches its routine."""
        done = []
        for reg in [r for r in self.registrations.values() if r.state == 'registered' and not r.obj.deleted]:
            label = 'probe: %s notified after unload' % reg.obj.name
            order = lockorder.of(self.m)
            order.acquire(*reg.obj.list_lock())
            self._enter(reg, label)
            self.m.call(reg.function, [reg.context, 0, 0], phase=label, irql=PASSIVE_LEVEL)
            self._leave(reg, label)
            order.release(reg.obj.list_lock()[0])
            done.append('routine 0x%x on %s' % (reg.function, reg.obj.name))
            if self.m.stop is not None:
                break
        return done

    # ---- audit --------------------------------------------------------------------------------

    def audit(self):
        regs = list(self.registrations.values())
        left = ['%s (routine 0x%x)' % (r.obj.name, r.function) for r in regs if r.state != 'unregistered']
        held = ['%s (%d)' % (o.name, o.driver_refs) for o in self.by_address.values() if o.driver_refs]
        checks = []
        if regs or self.references_taken:
            checks.append(('every callback registration undone', not left,
                           '%d registered, %d unregistered' % (len(regs), len(regs) - len(left))
                           + ('; still registered: ' + ', '.join(left) if left else '')))
            checks.append(('every callback-object reference released', not held,
                           '%d taken, %d released' % (self.references_taken, self.references_released)
                           + ('; still held: ' + ', '.join(held) if held else '')))
            checks.append(('no object deleted while registered', not self.deleted_with_registrations,
                           '; '.join(self.deleted_with_registrations) or 'none (each registration holds a reference)'))
            checks.append(('no callback entered after its unregistration returned', not self.late_entries,
                           '; '.join(self.late_entries) or 'none'))
        return checks
