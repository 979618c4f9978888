"""A callback in flight on another processor, paused across the unregistration.

racing.py delivers a racing callback *before* the unregister routine returns, start to finish, so
whatever the driver does after the unregistration (drain a barrier, free the context) happens after
that call has ended: a driver without its barrier passes as well as one with it. On a real
multiprocessor a call the kernel had already dispatched can still be running when the unregister
routine returns. This module makes that happen:

1. While the driver is in an unregister routine, the racing call starts "on another processor" (its
   own stack) and runs until it has *entered the driver's barrier* (ExAcquireRundownProtection
   returned TRUE) or, if it has none, until its next instruction would *touch driver pool* (the
   context): a memory operand inside a live pool block, other than the barrier itself (the
   EX_RUNDOWN_REF and the open/closed flag after it, common/src/barrier.rs). There it is suspended.
2. The unregister routine returns; the driver goes on with its teardown.
3. The suspended call resumes when the driver waits: ExWaitForRundownProtectionRelease while
   references are held, KeWaitForSingleObject, KeDelayExecutionThread (the other processor runs while
   this one waits; the wait routine is then called again, as its caller made it), or at the latest
   when DriverUnload (or DriverEntry's failure path) returns. It runs to its end.

Rule "no memory freed under a callback still in flight": if the resumed call touches pool the driver
freed while it was suspended (freed pool is poisoned and watched, pool.py), the run stops and the
rule fails naming the call, where it was suspended and when it resumed; the stop names the block and
the phase that freed it.

Where an unregistration waits for its calls in progress according to its documentation, its family
does not use this module (IoUnregisterPlugPlayNotificationEx: "the callback is not running and will
not be called again" once it returns). ExUnregisterCallback's page ("Using a Driver-Defined Callback
Object") says nothing about a call in progress: the model is strict and races it.
"""

import struct

import capstone
import capstone.x86 as _cx
import unicorn.x86_const as _x
from unicorn import UC_HOOK_CODE

from . import events
from . import lockorder
from .machine import STDCALL

CHECK = 'no memory freed under a callback still in flight'
STACK_SIZE = 0x10000
# The barrier's own memory, which a callback reads to enter it: the EX_RUNDOWN_REF and the
# open/closed flag that follows it (common/src/barrier.rs: CallbackBarrier { rundown, state }).
BARRIER_BYTES = 16

_RIP = _x.UC_X86_REG_RIP


class Flight:
    """One dispatched call: `function(args)` on another processor."""

    def __init__(self, function, args, label, irql, hooks):
        self.function = function
        self.args = args
        self.label = label
        self.irql = irql
        self.hooks = hooks          # {'start'|'pause'|'resume'|'end': callable()}
        self.state = 'starting'     # starting -> running -> paused -> resumed -> done
        self.regs = None            # its registers while suspended
        self.return_to = None       # the registers of the thread that continues when it stops
        self.held = []              # its locks while suspended (lockorder.py)
        self.paused_at = None
        self.resumed_at = None
        self.saved = None           # (phase, irql) of the machine around it
        self.inner = None           # (phase, irql, counting) of the call while suspended
        self.depth = 0              # lockorder.py: its place on the stack of processors
        self.pausable = hooks.get('pausable', True)  # a family may allow it only in one part

    def hook(self, name):
        h = self.hooks.get(name)
        if h is not None:
            h()


class InFlight:
    def __init__(self, machine, config=None):
        self.m = machine
        machine.in_flight = self
        self.flights = []
        self.current = None         # the Flight running now, if any
        self._hook = None           # the code hook looking for the first touch of pool
        self._cs = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
        self._cs.detail = True

    # ---- registers ----------------------------------------------------------------------------

    def _uc(self):
        return self.m.se.emu.emu_eng.emu

    def _save(self):
        """The processor's whole state (registers, flags, vector registers)."""
        return self._uc().context_save()

    def _load(self, regs, rip):
        """Continues the state `regs` at `rip`: writing the program counter from a hook makes
        unicorn leave the current block before the instruction there runs."""
        uc = self._uc()
        uc.context_restore(regs)
        uc.reg_write(_RIP, rip)

    def _return_into(self, address):
        """From a routine's hook: the routine returns to `address` instead of its caller."""
        if self.m._speakeasy_returns:
            self.m.se.emu.set_ret_address(address)
        else:
            self.m.se.emu.do_call_return(0, address, None, conv=STDCALL)

    # ---- start: from inside an unregister routine ---------------------------------------------

    def memory(self, size, tag):
        """Harness memory for a flight (its stack, its classify structures). The allocator may
        hand out a range the driver's freed pool occupied: it is no longer the driver's, so the
        watch on that freed block (pool.py) must not take its new owner's accesses for a use after
        free."""
        address = self.m.alloc(size, tag)
        pool = getattr(self.m, 'pool', None)
        if pool is not None:
            for old in [a for a, (s, *_r) in pool.freed_blocks.items() if a < address + size and address < a + s]:
                del pool.freed_blocks[old]
        return address

    def available(self):
        return self.current is None

    def start(self, function, args, label, hooks, result=None):
        """From the hook of an unregister routine: before the routine returns to the driver,
        `function(*args)` starts on another processor and runs until it is suspended (or ends).
        `result`: the value the routine returns (rax), for a routine speakeasy handles."""
        flight = Flight(function, list(args), label, self.m.irql, hooks)
        self.flights.append(flight)
        ret = self.m.se.emu.get_ret_address()
        stack = self.memory(STACK_SIZE, 'in-flight stack')
        extra = flight.args[4:]
        rsp = (stack + STACK_SIZE - 0x100 - 8 * len(extra)) & ~0xF
        for i, value in enumerate(extra):
            self.m.write_u64(rsp + 0x20 + 8 * i, value)
        regs = (flight.args + [0] * 4)[:4]
        code = bytearray()
        if result is not None:
            code += b'\x48\xb8' + struct.pack('<Q', result & 0xFFFFFFFFFFFFFFFF)  # mov rax, result
        begin = len(code)
        code += b'\x90'                                                  # nop: begin
        code += b'\x48\xbc' + struct.pack('<Q', rsp)                      # mov rsp, imm64
        code += _arguments(regs)
        code += b'\x48\xb8' + struct.pack('<Q', function)                 # mov rax, function
        code += b'\xff\xd0'                                               # call rax
        end_offset = len(code)
        code += b'\x90\xcc'                                               # nop: end; int3
        base = self.m._code_space(len(code))
        self.m.write(base, bytes(code))
        self.m.on_pc(base + begin, lambda: self._begin(flight, ret, base + begin + 1))
        self.m.on_pc(base + end_offset, lambda: self._end(flight))
        self._return_into(base)
        return flight

    def sequence(self, calls, before, after):
        """A routine (harness code) that calls each `(function, [up to 4 arguments])` in turn and
        returns; `before(i)` / `after(i)` run just before and after the i-th call."""
        before, after = self.m._recorded(calls, before, after)
        code = bytearray(b'\x48\x83\xec\x28')                            # sub rsp, 0x28
        marks = []
        for i, (function, args) in enumerate(calls):
            code += _arguments((list(args) + [0] * 4)[:4])
            code += b'\x48\xb8' + struct.pack('<Q', function)              # mov rax, function
            marks.append((i, len(code), len(code) + 2))
            code += b'\xff\xd0'                                            # call rax
        code += b'\x48\x83\xc4\x28\xc3'                                    # add rsp, 0x28; ret
        base = self.m._code_space(len(code))
        self.m.write(base, bytes(code))
        for i, call_at, back_at in marks:
            self.m.on_pc(base + call_at, lambda i=i: before(i))
            self.m.on_pc(base + back_at, lambda i=i: after(i))
        return base

    def _begin(self, flight, ret, next_pc):
        if flight.state != 'starting':
            return
        main = self._save()
        flight.return_to = (main, ret)
        flight.state = 'running'
        self.current = flight
        order = lockorder.of(self.m)
        flight.depth = len(getattr(order, 'saved', ()))
        order.switch_to(flight.hooks.get('locks', ()))
        flight.saved = (self.m.phase, self.m.irql)
        self.m.phase = flight.label
        events.of(self.m).flight('callback', flight)
        flight.hook('start')
        uc = self._uc()
        self._hook = uc.hook_add(UC_HOOK_CODE, self._step, None, self.m.image_base, self.m.image_end - 1)
        # Leave the block so the driver's code is translated again, with the hook.
        uc.reg_write(_RIP, next_pc)

    def _end(self, flight):
        if flight.state not in ('running', 'resumed'):
            return
        self._unhook()
        flight.state = 'done'
        self.current = None
        events.of(self.m).flight('end', flight)
        flight.hook('end')
        self.m.phase, self.m.irql = flight.saved
        lockorder.of(self.m).switch_back()
        regs, rip = flight.return_to
        self._load(regs, rip)

    # ---- suspension ---------------------------------------------------------------------------

    def _unhook(self):
        if self._hook is not None:
            self._uc().hook_del(self._hook)
            self._hook = None

    def _suspend(self, flight, rip, where):
        self._unhook()
        flight.regs = self._save()
        flight.paused_at = where
        flight.state = 'paused'
        events.of(self.m).flight('suspend', flight)
        self.current = None
        order = lockorder.of(self.m)
        if hasattr(order, 'saved'):
            # Its locks (and those of the calls it nests) leave with it.
            flight.held = order.saved[flight.depth + 1:] + [order.held]
            order.held = order.saved[flight.depth]
            del order.saved[flight.depth:]
        # Its instruction count too (bench budgets): another call may count while it is suspended.
        flight.inner = (self.m.phase, self.m.irql, self.m.counting, self.m.instructions)
        flight.hook('pause')
        self.m.phase, self.m.irql = flight.saved
        self.m.counting = False
        regs, ret = flight.return_to
        flight.resume_pc = rip
        self._load(regs, ret)

    def entered_barrier(self, routine):
        """From ExAcquireRundownProtection's hook, when it returns TRUE: a running flight is
        suspended as the routine returns to it."""
        flight = self.current
        if flight is None or flight.state != 'running' or not flight.pausable or self.m.stop is not None:
            return
        ret = self.m.se.emu.get_ret_address()
        code = b'\x90' + b'\x49\xbb' + struct.pack('<Q', ret) + b'\x41\xff\xe3'  # nop; mov r11; jmp r11
        base = self.m._code_space(len(code))
        self.m.write(base, code)
        self.m.on_pc(base, lambda: self._suspend(
            flight, base + 1, 'inside the driver\'s barrier (%s returned TRUE)' % routine)
            if flight.state == 'running' else None)
        self._return_into(base)

    def _step(self, uc, address, size, user_data):
        flight = self.current
        if flight is None or flight.state != 'running' or not flight.pausable or self.m.stop is not None:
            return
        touched = self._pool_operand(uc, address, size)
        if touched is not None:
            self._suspend(flight, address, 'before its first access to driver pool (block 0x%x, '
                          'instruction at image+0x%x)' % (touched, address - self.m.image_base))

    def _pool_operand(self, uc, address, size):
        pool = getattr(self.m, 'pool', None)
        if pool is None or not pool.live:
            return None
        try:
            insn = next(self._cs.disasm(bytes(uc.mem_read(address, size)), address), None)
        except Exception:  # noqa: BLE001 - unreadable code: the emulator reports it by itself
            return None
        if insn is None:
            return None
        barriers = getattr(self.m, 'rundown_refs', ())
        for op in insn.operands:
            if op.type != _cx.X86_OP_MEM or op.mem.segment != 0:
                continue
            ea = op.mem.disp
            if op.mem.base == _cx.X86_REG_RIP:
                ea += address + size
            elif op.mem.base != 0:
                ea += uc.reg_read(_capstone_to_unicorn(insn, op.mem.base))
            if op.mem.index != 0:
                ea += uc.reg_read(_capstone_to_unicorn(insn, op.mem.index)) * op.mem.scale
            ea &= 0xFFFFFFFFFFFFFFFF
            if any(r <= ea < r + BARRIER_BYTES for r in barriers):
                continue
            for block, (length, *_rest) in pool.live.items():
                if block <= ea < block + length:
                    return block
        return None

    # ---- resumption ---------------------------------------------------------------------------

    def paused(self):
        return [f for f in self.flights if f.state == 'paused']

    def wait_here(self, routine, argv):
        """From the hook of a routine that makes the driver's thread wait: if a suspended flight
        exists, it runs (the other processor goes on while this one waits) and then the routine is
        called again with the same arguments. True if so: the hook returns at once."""
        flights = self.paused()
        thunk = getattr(self.m.fastcalls, '_thunk', None)
        if not flights or thunk is None or self.m.stop is not None:
            return False
        flight = flights[0]
        ret = self.m.se.emu.get_ret_address()
        regs = (list(argv) + [0] * 4)[:4]
        code = bytearray(b'\x90')                                             # nop: resume
        code += b'\x49\xbb' + struct.pack('<Q', ret) + b'\x41\x53'            # mov r11, ret; push r11
        code += _arguments(regs)
        code += b'\x48\xb8' + struct.pack('<Q', thunk) + b'\xff\xe0'          # mov rax, thunk; jmp rax
        base = self.m._code_space(len(code))
        self.m.write(base, bytes(code))
        self.m.on_pc(base, lambda: self._resume(flight, base + 1, 'when the driver waited (%s)' % routine))
        self._return_into(base)
        return True

    def _resume(self, flight, back_pc, when):
        if flight.state != 'paused':
            return
        flight.return_to = (self._save(), back_pc)
        flight.resumed_at = when
        flight.state = 'resumed'
        events.of(self.m).flight('resume', flight)
        self.current = flight
        order = lockorder.of(self.m)
        if hasattr(order, 'saved'):
            flight.depth = len(order.saved)
            order.saved.append(order.held)
            order.saved.extend(flight.held[:-1])
            order.held = flight.held[-1]
        flight.saved = (self.m.phase, self.m.irql)
        phase, self.m.irql, self.m.counting, self.m.instructions = flight.inner
        self.m.phase = phase + ' (resumed)'
        flight.hook('resume')
        self._load(flight.regs, flight.resume_pc)

    def land(self, stage):
        """After DriverEntry or DriverUnload returned: every suspended flight runs to its end."""
        for flight in self.paused():
            if self.m.stop is not None:
                return
            code = b'\x90\xc3'                                                # nop: resume; ret
            base = self.m._code_space(len(code))
            self.m.write(base, code)
            self.m.on_pc(base, lambda flight=flight, base=base: self._land(flight, base + 1, stage))
            self.m.call(base, [], phase=flight.label + ' (resumed)', irql=flight.irql)

    def _land(self, flight, back_pc, stage):
        # speakeasy resolves the driver's imports through the module the run started in; this run
        # starts in harness code, so make the driver that module (as wfp.py's looper does).
        self.m.se.emu.curr_mod = self.m.module
        self._resume(flight, back_pc, 'when %s had returned' % stage)

    # ---- audit --------------------------------------------------------------------------------

    def audit(self):
        if not self.flights:
            return []
        stop = self.m.stop
        broken = [f for f in self.flights if f.state == 'resumed']
        if broken and stop is not None:
            f = broken[0]
            return [(CHECK, False, '%s, suspended %s, resumed %s: %s' % (
                f.label, f.paused_at, f.resumed_at, stop.message))]
        parts = []
        for f in self.flights:
            if f.paused_at is None:
                parts.append('%s: ended before the unregistration returned' % f.label)
            else:
                parts.append('%s: suspended %s, resumed %s' % (f.label, f.paused_at,
                                                               f.resumed_at or '(not yet)'))
        return [(CHECK, True, '%d call(s) in flight across an unregistration: %s'
                 % (len(self.flights), '; '.join(parts)))]


def _arguments(values):
    """mov rcx, rdx, r8, r9 <- the four values."""
    return b''.join(prefix + struct.pack('<Q', value & 0xFFFFFFFFFFFFFFFF)
                    for prefix, value in zip((b'\x48\xb9', b'\x48\xba', b'\x49\xb8', b'\x49\xb9'),
                                             values, strict=True))


def _capstone_to_unicorn(insn, reg):
    name = insn.reg_name(reg).upper()
    return getattr(_x, 'UC_X86_REG_' + name)


class _NoInFlight:
    def available(self):
        return False

    def entered_barrier(self, routine):
        pass

    def wait_here(self, routine, argv):
        return False

    def land(self, stage):
        pass


_NONE = _NoInFlight()


def of(machine):
    return getattr(machine, 'in_flight', None) or _NONE
