"""A callback in flight across an unregistration (inflight.py): where it is suspended, and the rule."""
import os
import sys
import unittest

from unicorn import UC_ARCH_X86, UC_MODE_64, Uc
from unicorn.x86_const import UC_X86_REG_RCX, UC_X86_REG_RDX

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

from emukernel.errors import KernelStop  # noqa: E402
from emukernel.inflight import CHECK, Flight, InFlight  # noqa: E402

CODE = 0x10000
POOL = 0x20000


class _Pool:
    def __init__(self, live):
        self.live = live


class _Machine:
    """What InFlight reads of a Machine to decide where a call is suspended."""

    def __init__(self, live, rundown_refs=()):
        self.pool = _Pool(live)
        self.rundown_refs = {r: {} for r in rundown_refs}
        self.stop = None
        self.image_base = CODE


def _uc(code, rcx=0, rdx=0):
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    uc.mem_map(CODE, 0x1000)
    uc.mem_write(CODE, code)
    uc.reg_write(UC_X86_REG_RCX, rcx)
    uc.reg_write(UC_X86_REG_RDX, rdx)
    return uc


class WhereSuspendedTest(unittest.TestCase):
    def operand(self, machine, code, **regs):
        return InFlight(machine)._pool_operand(_uc(code, **regs), CODE, len(code))

    def test_an_access_to_live_pool_suspends_the_call(self):
        m = _Machine({POOL: (0x30, 0, 0, 'DriverEntry')})
        # mov rax, [rcx+0x18] with rcx = the block: the context is about to be read.
        self.assertEqual(self.operand(m, b'\x48\x8b\x41\x18', rcx=POOL), POOL)
        # lock xadd [rcx+rdx*8], rax: base + index * scale.
        self.assertEqual(self.operand(m, b'\xf0\x48\x0f\xc1\x04\xd1', rcx=POOL, rdx=2), POOL)

    def test_the_barrier_and_memory_outside_pool_do_not(self):
        m = _Machine({POOL: (0x30, 0, 0, 'DriverEntry')}, rundown_refs=[POOL])
        # movzx eax, byte [rcx+8]: the barrier's open/closed flag next to its EX_RUNDOWN_REF.
        self.assertIsNone(self.operand(m, b'\x0f\xb6\x41\x08', rcx=POOL))
        # mov rax, [rcx+0x18]: past the barrier, the rest of the context.
        self.assertEqual(self.operand(m, b'\x48\x8b\x41\x18', rcx=POOL), POOL)
        # mov rax, [rcx]: a stack or image address is not the driver's pool.
        self.assertIsNone(self.operand(m, b'\x48\x8b\x01', rcx=POOL + 0x100))
        # lea rax, [rcx]: no memory is touched.
        self.assertIsNone(self.operand(m, b'\x48\x8d\x01', rcx=POOL))


class RuleTest(unittest.TestCase):
    def flight(self, state, paused_at='inside the barrier', resumed_at='when DriverUnload had returned'):
        f = Flight(0x1000, [0, 0, 0], 'routine 0x1000 racing ExUnregisterCallback', 0, {})
        f.state, f.paused_at, f.resumed_at = state, paused_at, resumed_at
        return f

    def test_a_resumed_call_that_stops_the_kernel_breaks_the_rule_naming_both(self):
        m = _Machine({})
        m.stop = KernelStop('bugcheck', 'use after free: access inside pool block 0x20000 freed during '
                            'DriverUnload')
        inflight = InFlight(m)
        inflight.flights.append(self.flight('resumed'))
        [(check, ok, detail)] = inflight.audit()
        self.assertEqual(check, CHECK)
        self.assertFalse(ok)
        self.assertIn('routine 0x1000 racing ExUnregisterCallback', detail)
        self.assertIn('inside the barrier', detail)
        self.assertIn('freed during DriverUnload', detail)

    def test_calls_that_ended_pass_and_no_flight_means_no_check(self):
        m = _Machine({})
        inflight = InFlight(m)
        self.assertEqual(inflight.audit(), [])
        inflight.flights.append(self.flight('done'))
        [(_check, ok, detail)] = inflight.audit()
        self.assertTrue(ok, detail)
        # A stop elsewhere (not in a resumed call) is another rule's business.
        m.stop = KernelStop('deadlock', 'something else')
        [(_check, ok, _detail)] = inflight.audit()
        self.assertTrue(ok)


if __name__ == '__main__':
    unittest.main()
