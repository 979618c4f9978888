"""The emulated machine: one driver image loaded in speakeasy, with the harness's routines attached.

A `Machine` owns one speakeasy instance and one run of a driver: DriverEntry, the scenario's kernel
events, DriverUnload. Kernel routines reach the harness through speakeasy API hooks; each is
either *observed* (speakeasy's own handler does the work, the harness records and checks it) or
*modelled* (the harness implements it from the documentation, including its failures).

Nested calls. Some routines call back into the driver synchronously (ExNotifyCallback runs every
registered callback before it returns). speakeasy cannot re-enter emulation from inside a hook, so
the harness writes a small x64 trampoline into emulated memory that calls each routine in turn and
then jumps back to the instruction after the original call, and points the routine's return
address at it. To the driver this is indistinguishable from the kernel calling its callbacks on the
same thread.
"""

import struct
from collections import Counter, deque

import speakeasy
import speakeasy.winenv.arch as _arch

from .errors import HarnessError, KernelStop
from .events import Events
from . import exports, memindex, runtimer
from .fastcall import FastCalls
from .irql import PASSIVE_LEVEL, irql_name
from .watch import Watches

# How many instructions one run (DriverEntry, a callback, DriverUnload) may take before it is
# declared hung. The drivers here execute a few thousand at most.
MAX_INSTRUCTIONS_PER_RUN = 5_000_000

STDCALL = _arch.CALL_CONV_STDCALL
CDECL = _arch.CALL_CONV_CDECL


def _config():
    import json
    import os
    path = os.path.join(os.path.dirname(speakeasy.__file__), 'configs', 'default.json')
    with open(path, 'r', encoding='utf-8') as f:
        cfg = json.load(f)
    cfg['timeout'] = 60
    cfg['max_api_count'] = 100000
    cfg['max_instructions'] = MAX_INSTRUCTIONS_PER_RUN
    cfg['keep_memory_on_free'] = False  # freed pool is unmapped: a later access faults
    cfg.setdefault('analysis', {})['strings'] = False
    return cfg


class CallRecord:
    """One kernel routine call made by the driver."""

    def __init__(self, routine, args, handled_by, phase, irql, stage=None):
        self.routine = routine
        self.args = args
        self.ret = None
        self.handled_by = handled_by
        self.phase = phase
        self.stage = stage
        self.irql = irql
        self.note = ''

    def format(self):
        args = ', '.join(_fmt_arg(a) for a in self.args)
        ret = '' if self.ret is None else ' -> ' + _fmt_arg(self.ret)
        note = ' (%s)' % self.note if self.note else ''
        return '%s(%s)%s%s' % (self.routine, args, ret, note)


def _fmt_arg(value):
    if isinstance(value, int):
        return hex(value) if value > 9 else str(value)
    return repr(value)


class Fault:
    """One injected failure: the `occurrence`-th call of `routine` made in `phase` (DriverEntry or
    DriverUnload) returns `value`. A choice with an effect (`fallible` / `teardown` of `attach`)
    does what the routine documents for that status (for instance STATUS_PENDING queues
    flowDeleteFn for later) and returns the value; it is found again by its label."""

    def __init__(self, routine, occurrence, value, label, phase='DriverEntry'):
        self.routine = routine
        self.occurrence = occurrence
        self.value = value
        self.label = label
        self.phase = phase

    def to_json(self):
        return {'routine': self.routine, 'occurrence': self.occurrence, 'injected': self.label,
                'phase': self.phase}


def fault_choices(probe, argv):
    """The failures a `fallible` / `teardown` function offers: [(value, label, effect or None)]."""
    choices = probe(argv)
    if isinstance(choices, tuple):
        choices = [choices]
    return [(c[0], c[1], c[2] if len(c) > 2 else None) for c in choices]


class Loaded:
    """The image loaded into a fresh speakeasy, nothing run yet: what every run of it starts from."""

    def __init__(self, image_path):
        exports.install()  # export lists without a class per export (exports.py)
        self.image = image_path
        self.se = speakeasy.Speakeasy(config=_config())
        self.module = self.se.load_module(image_path)


class Machine:
    """A driver image in an emulated kernel, with call recording, fault injection and IRQL."""

    def __init__(self, image_path, fault=None, count_instructions=False, loaded=None):
        # `loaded`: the image already in a speakeasy nobody ran (a forked child's copy, forks.py).
        if loaded is None:
            loaded = Loaded(image_path)
        elif loaded.image != image_path:
            raise HarnessError('internal: a machine for %s from the loaded %s' % (image_path, loaded.image))
        self.se = loaded.se
        self.module = loaded.module
        loaded.se = loaded.module = None   # one machine per loaded copy: it is run from here on
        self.fastcalls = FastCalls(self.se.emu, self.module)  # kernel calls without a fault each (fastcall.py)
        memindex.index(self.se.emu)  # memory maps looked up and freed without a scan (memindex.py)
        runtimer.install(self.se.emu.emu_eng)  # the run's time limit without a polling thread (runtimer.py)
        self.watches = Watches(self)
        self.image_base = self.module.base
        self.image_end = self.module.base + self.module.image_size
        self.calls = []
        self.log = []
        self.fault = fault
        self.fault_hit = False
        self.occurrences = Counter()
        self.phase = 'DriverEntry'
        self.irql = PASSIVE_LEVEL
        self.stop = None          # KernelStop raised by a model, if any
        self.routines = {}        # routine -> 'speakeasy' | 'model'
        self.fallible = {}        # routine -> callable(argv) -> (value, label) for fault runs
        self.fallible_calls = []  # (routine, occurrence) made during DriverEntry, in order
        self.teardown = {}        # routine -> callable(argv) -> [(value, label, effect)]: unload faults
        self.teardown_calls = []  # (routine, occurrence) made during DriverUnload, in order
        self.unload_occurrences = Counter()
        self.stage = 'DriverEntry'  # DriverEntry | steps | DriverUnload | probe (phase is finer)
        self.fault_log_at = None  # len(log) when the fault was injected
        self.instructions = 0
        self.counting = False
        self.executed = 0         # every instruction executed in the image (with count_instructions)
        self.recent_calls = deque(maxlen=8)
        self._trampoline_area = None
        self._trampoline_next = 0
        self._pc_hooks = {}
        self._after_next = []     # (callback, routines to skip): see after_next_call
        self._speakeasy_returns = True  # see call_back_before_return
        self.driver = None
        self.count_instructions = count_instructions
        self.events = Events(self)  # the ordered event list of the run (events.py)
        if count_instructions:
            self.se.add_code_hook(self._count, begin=self.image_base, end=self.image_end)

    # ---- routine registration ---------------------------------------------------------------

    def attach(self, module, name, argc, impl, handled_by='model', conv=STDCALL, fallible=None,
               teardown=None):
        """Routes `module!name` to `impl(argv, orig)`.

        `handled_by` is 'model' when `impl` does the work itself, 'speakeasy' when it only observes
        and delegates to speakeasy's handler (`orig`). `fallible(argv)` returns the failure
        (value, label), or a list of (value, label[, effect]), a fault run injects for this routine
        when DriverEntry calls it; `teardown(argv)` the same for calls DriverUnload makes.
        """
        routine = '%s.%s' % (module.split('.')[0].lower(), name)

        def hook(emu, api_name, orig, argv):
            return self._dispatch(routine, impl, orig, argv)

        self.se.add_api_hook(hook, module.split('.')[0], name, argc=argc, call_conv=conv)
        self.routines[routine] = handled_by
        if fallible:
            self.fallible[routine] = fallible
        if teardown:
            self.teardown[routine] = teardown

    def _dispatch(self, routine, impl, orig, argv):
        record = CallRecord(routine, list(argv), self.routines[routine], self.phase, self.irql,
                            'DriverEntry' if self.phase == 'DriverEntry' else self.stage)
        self.calls.append(record)
        self.recent_calls.append(record)
        event = self.events.call(record)
        try:
            return self._dispatch_recorded(routine, impl, orig, argv, record, event)
        finally:
            injected = record.note[len('injected failure: '):] if record.note.startswith('injected') else None
            self.events.returned(event, record, injected)

    def _dispatch_recorded(self, routine, impl, orig, argv, record, event):
        if self.stop is not None:
            # A model already stopped the machine; speakeasy may still finish the current call.
            return 0
        try:
            checks = getattr(self, 'irql_checks', None)
            if checks is not None:
                checks.check_call(routine, argv)  # irql_table.py: every call, whoever handles it
            if routine in self.fallible and self.phase == 'DriverEntry':
                self.occurrences[routine] += 1
                n = self.occurrences[routine]
                self.fallible_calls.append((routine, n))
                f = self.fault
                if f is not None and f.phase == 'DriverEntry' and f.routine == routine and f.occurrence == n:
                    return self._inject(f, record, argv, orig)
            elif routine in self.teardown and self.stage == 'DriverUnload':
                self.unload_occurrences[routine] += 1
                n = self.unload_occurrences[routine]
                self.teardown_calls.append((routine, n))
                f = self.fault
                if f is not None and f.phase == 'DriverUnload' and f.routine == routine and f.occurrence == n:
                    return self._inject(f, record, argv, orig)
            pending = [p for p in self._after_next if routine not in p[1]]
            self._speakeasy_returns = orig is None
            rv = impl(argv, orig)
            record.ret = rv
            for p in pending:
                self._after_next.remove(p)
                p[0](rv)
            return rv
        except KernelStop as stop:
            self.stop = stop
            record.note = stop.kind
            self.se.emu.stop()
            raise

    def _inject(self, f, record, argv, orig):
        self.fault_hit = True
        self.fault_log_at = len(self.log)
        record.note = 'injected failure: %s' % f.label
        self._speakeasy_returns = orig is None
        # The effect of this machine's model (the plan was made on another machine).
        probes = self.fallible if f.phase == 'DriverEntry' else self.teardown
        effect = next((e for v, label, e in fault_choices(probes[f.routine], list(argv))
                       if label == f.label), None)
        value = effect(list(argv), orig) if effect else f.value
        record.ret = value
        return value

    def after_next_call(self, callback, skip=()):
        """Runs `callback(value)` inside the hook of the next kernel routine the driver calls (other
        than those in `skip`), once that routine has done its own work and is about to return
        `value`, so the callback can still make the routine call the driver back
        (call_back_before_return with result=value) before it returns."""
        self._after_next.append((callback, set(skip)))

    def halt(self, stop):
        """Stops the machine from inside an emulator hook (where exceptions cannot propagate)."""
        if self.stop is None:
            self.stop = stop
        self.se.emu.stop()

    # ---- helpers for models -----------------------------------------------------------------

    def read(self, address, size):
        return bytes(self.se.mem_read(address, size))

    def write(self, address, data):
        self.se.mem_write(address, data)

    def read_u16(self, address):
        return struct.unpack('<H', self.read(address, 2))[0]

    def read_u32(self, address):
        return struct.unpack('<I', self.read(address, 4))[0]

    def read_u64(self, address):
        return struct.unpack('<Q', self.read(address, 8))[0]

    def write_u64(self, address, value):
        self.write(address, struct.pack('<Q', value & 0xFFFFFFFFFFFFFFFF))

    def read_unicode_string(self, address):
        """Reads a UNICODE_STRING (Length, MaximumLength, Buffer) at `address`."""
        length = self.read_u16(address)
        buffer = self.read_u64(address + 8)
        if length == 0:
            return ''
        return self.read(buffer, length).decode('utf-16-le', errors='replace')

    def alloc(self, size, tag):
        """Emulated memory owned by the harness (kernel objects, trampolines)."""
        return self.se.mem_alloc(size, tag='harness.' + tag)

    def cdecl_args(self, count):
        """The first `count` arguments of a variadic (cdecl) call, read from registers and stack."""
        return self.se.emu.get_func_argv(CDECL, count)

    def watch(self, start, length, function):
        """Calls `function(emu, access, address, size, value, ctx)` on every emulated read or write
        whose address lies in the range (one hook per page: watch.py)."""
        self.watches.watch(start, length, function)

    def log_line(self, text):
        self.log.append(text)

    # ---- running driver code ----------------------------------------------------------------

    def run_driver_entry(self):
        """Runs DriverEntry; returns its NTSTATUS (unsigned), or None if it never returned."""
        self.phase = 'DriverEntry'
        self.irql = PASSIVE_LEVEL
        self.se.run_module(self.module)
        self.driver = next((d for d in self.se.emu.drivers if d.pe == self.module), None)
        run = self._last_run()
        if run is None or run.error or self.stop:
            return None
        return None if run.ret_val is None else run.ret_val & 0xFFFFFFFF

    def call(self, address, args, phase, irql=PASSIVE_LEVEL):
        """Calls driver code at `address` with `args`, as the kernel would; returns rax or None."""
        if self.stop is not None:
            return None
        self.phase = phase
        if phase == 'DriverUnload':
            self.stage = 'DriverUnload'
        self.irql = irql
        self.se.emu.emu_complete = False
        driver_code = self.in_image(address) and phase != 'bench'
        if driver_code:
            self.events.enter(address, irql, name='DriverUnload' if phase == 'DriverUnload' else None)
        self.se.call(address, list(args))
        if driver_code:
            self.events.leave()
        run = self._last_run()
        self.irql = PASSIVE_LEVEL
        if run is None or run.error or self.stop:
            return None
        return run.ret_val

    def unload_routine(self):
        """DriverObject->DriverUnload as DriverEntry left it (0 if not set)."""
        if self.driver is None:
            return 0
        self.driver.read_back()
        return self.driver.on_unload or 0

    def service_key(self):
        """The driver's service key, as speakeasy names it (the image's base name)."""
        import os
        name = os.path.splitext(os.path.basename(self.module.path))[0]
        return '\\Registry\\Machine\\System\\CurrentControlSet\\Services\\' + name

    def driver_object(self):
        return self.driver.address if self.driver else 0

    def run_error(self):
        """The first abnormal end of any run: a model's stop, or speakeasy's error."""
        if self.stop is not None:
            return self.stop.to_json(self._last_calls())
        for run in self.se.emu.runs:
            err = getattr(run, 'error', None)
            if err:
                return self._speakeasy_error(err)
            if run.instr_cnt and run.instr_cnt >= MAX_INSTRUCTIONS_PER_RUN:
                return {'kind': 'timeout', 'message': '%s did not return within %d instructions'
                        % (run.type, MAX_INSTRUCTIONS_PER_RUN), 'pc': None,
                        'last_calls': self._last_calls()}
        return None

    def _speakeasy_error(self, err):
        desc = err.get('type', 'error')
        kind = 'invalid_memory' if 'invalid' in desc or 'unmapped' in desc else 'emulator'
        if desc == 'unsupported_api':
            kind = 'unsupported_api'
            desc = 'the driver called %s, which neither speakeasy nor the harness implements' % (
                err.get('api_name', '?'))
        else:
            desc = '%s at %s (instruction: %s, address %s)' % (
                desc, err.get('pc'), err.get('instr', '?'), err.get('address', '?'))
        return {'kind': kind, 'message': desc, 'pc': err.get('pc'), 'last_calls': self._last_calls()}

    def _last_calls(self):
        return [c.format() for c in self.recent_calls]

    def _last_run(self):
        runs = self.se.emu.runs
        return runs[-1] if runs else None

    def _count(self, emu, addr, size, ctx):
        self.executed += 1
        if self.counting:
            self.instructions += 1

    def in_image(self, address):
        return self.image_base <= address < self.image_end

    # ---- synchronous callbacks from inside a routine ----------------------------------------

    def on_pc(self, address, callback):
        """Calls `callback()` whenever execution reaches `address` (harness-owned code only)."""
        self._pc_hooks[address] = callback
        self.se.add_code_hook(lambda emu, addr, size, ctx: self._pc_hook(addr), begin=address,
                              end=address)

    def _pc_hook(self, address):
        cb = self._pc_hooks.get(address)
        if cb is not None:
            cb()

    def call_back_before_return(self, calls, before=None, after=None, result=None):
        """From inside a routine's hook: make the routine, before returning to the driver, call
        each `(function, [arg0, arg1, arg2])` in `calls` in order. `before(i)` / `after(i)` run
        (in the harness) just before and after the i-th call. `result`: the value the routine
        returns (rax) once the calls are done, for routines that return one, or a function that
        gives it once the calls are done."""
        ret = self.se.emu.get_ret_address()
        before, after = self._recorded(calls, before, after)
        code = bytearray()
        marks = []
        base = self._code_space(32 + sum(96 + 16 * len(args) for _, args in calls))
        for i, (function, args) in enumerate(calls):
            a = list(args) + [0] * (3 - len(args))
            # Up to three arguments: the frame is the 0x20 shadow space (+8 to keep the alignment);
            # more (an ETW enable callback has seven): r9, then the stack slots after the shadow
            # space, in 16-byte steps so the alignment stays the same.
            frame = 0x28 + ((max(len(a) - 4, 0) * 8 + 15) // 16) * 16
            code += b'\x48\x83\xec' + bytes([frame])           # sub rsp, frame
            for slot, value in enumerate(a[4:]):
                code += b'\x48\xb8' + struct.pack('<Q', value & 0xFFFFFFFFFFFFFFFF)  # mov rax, imm64
                code += b'\x48\x89\x44\x24' + bytes([0x20 + 8 * slot])  # mov [rsp+0x20+8*slot], rax
            code += b'\x48\xb9' + struct.pack('<Q', a[0])      # mov rcx, imm64
            code += b'\x48\xba' + struct.pack('<Q', a[1])      # mov rdx, imm64
            code += b'\x49\xb8' + struct.pack('<Q', a[2])      # mov r8, imm64
            if len(a) > 3:
                code += b'\x49\xb9' + struct.pack('<Q', a[3] & 0xFFFFFFFFFFFFFFFF)  # mov r9, imm64
            code += b'\x48\xb8' + struct.pack('<Q', function)  # mov rax, imm64
            call_at = base + len(code)
            code += b'\xff\xd0'                                # call rax
            back_at = base + len(code)
            code += b'\x48\x83\xc4' + bytes([frame])           # add rsp, frame
            marks.append((i, call_at, back_at))
        cell = None
        if result is None:
            code += b'\x48\xb8' + struct.pack('<Q', ret)       # mov rax, original return
            code += b'\xff\xe0'                                # jmp rax
        elif callable(result):
            # The value is decided once the calls are done: result() is written to a cell here.
            cell = self._code_space(8)
            done_at = base + len(code)
            code += b'\x49\xbb' + struct.pack('<Q', ret)       # mov r11, original return
            code += b'\x48\xb8' + struct.pack('<Q', cell)      # mov rax, cell
            code += b'\x48\x8b\x00'                            # mov rax, [rax]
            code += b'\x41\xff\xe3'                            # jmp r11
        else:
            code += b'\x49\xbb' + struct.pack('<Q', ret)       # mov r11, original return
            code += b'\x48\xb8' + struct.pack('<Q', result & 0xFFFFFFFFFFFFFFFF)  # mov rax, result
            code += b'\x41\xff\xe3'                            # jmp r11
        self.write(base, bytes(code))
        if cell is not None:
            self.on_pc(done_at, lambda: self.write_u64(cell, result()))
        for i, call_at, back_at in marks:
            if before:
                self.on_pc(call_at, lambda i=i: before(i))
            if after:
                self.on_pc(back_at, lambda i=i: after(i))
        if self._speakeasy_returns:
            # A routine speakeasy does not implement: once the hook is done, speakeasy returns to
            # whatever the stack's return address is.
            self.se.emu.set_ret_address(base)
        else:
            # A routine speakeasy implements: it returns only if the return address is unchanged,
            # so make the return here (pop it, continue at the trampoline).
            self.se.emu.do_call_return(0, base, None, conv=STDCALL)

    def _recorded(self, calls, before, after):
        """`before` / `after` of call_back_before_return, also recording each call of driver code
        in the event list (events.py): entered once `before` has set the phase, left before `after`."""
        def recorded_before(i):
            if before:
                before(i)
            if self.in_image(calls[i][0]):
                self.events.enter(calls[i][0], self.irql)

        def recorded_after(i):
            if self.in_image(calls[i][0]):
                self.events.leave()
            if after:
                after(i)
        return recorded_before, recorded_after

    def _code_space(self, size):
        if self._trampoline_area is None or self._trampoline_next + size > 0x10000:
            self._trampoline_area = self.alloc(0x10000, 'trampolines')
            self._trampoline_next = 0
        address = self._trampoline_area + self._trampoline_next
        self._trampoline_next += (size + 15) & ~15
        return address


def describe_irql(irql):
    return irql_name(irql)


__all__ = ['Machine', 'Fault', 'fault_choices', 'CallRecord', 'HarnessError', 'KernelStop', 'STDCALL', 'CDECL']
