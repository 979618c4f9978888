"""runtimer.py: a run's wall-clock limit is kept (the run is stopped once it passes), unicorn gets no
timeout of its own (so no polling thread), and no timer thread outlives the run."""
import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from emukernel import runtimer  # noqa: E402
from speakeasy.engines.unicorn_eng import EmuEngine  # noqa: E402
import speakeasy.winenv.arch as arch  # noqa: E402
import unicorn.x86_const as x86  # noqa: E402

BASE = 0x10000


def engine(code):
    """speakeasy's unicorn engine with `code` at BASE, its calls to unicorn's emu_start recorded."""
    eng = EmuEngine()
    eng.init_engine(arch.ARCH_AMD64, arch.BITS_64)
    eng.emu.mem_map(BASE, 0x1000)
    eng.emu.mem_write(BASE, code)
    eng.emu.reg_write(x86.UC_X86_REG_RSP, BASE + 0x800)
    eng.unicorn_calls = []
    real = eng.emu.emu_start

    def emu_start(begin, until, timeout=0, count=0):
        eng.unicorn_calls.append((timeout, count))
        return real(begin, until, timeout=timeout, count=count)

    eng.emu.emu_start = emu_start
    runtimer.install(eng)
    return eng


class RunTimerTest(unittest.TestCase):
    def test_a_run_past_its_limit_is_stopped_without_unicorns_timer(self):
        eng = engine(b'\xeb\xfe')  # jmp $: never ends by itself
        threads = threading.active_count()
        start = time.monotonic()
        eng.start(BASE, timeout=0.3, count=0)
        took = time.monotonic() - start
        self.assertGreaterEqual(took, 0.3)
        self.assertLess(took, 10)                       # stopped, not left running
        self.assertEqual(eng.unicorn_calls, [(0, 0)])   # unicorn's own (polling) timer not armed
        self.assertEqual(threading.active_count(), threads)  # the timer thread is gone

    def test_a_run_that_ends_first_is_unchanged(self):
        eng = engine(b'\x48\xc7\xc0\x2a\x00\x00\x00' b'\xeb\xfe')  # mov rax, 42; jmp $
        threads = threading.active_count()
        start = time.monotonic()
        eng.start(BASE, timeout=60, count=1)            # the instruction limit ends it
        self.assertLess(time.monotonic() - start, 10)
        self.assertEqual(eng.emu.reg_read(x86.UC_X86_REG_RAX), 42)
        self.assertEqual(eng.emu.reg_read(x86.UC_X86_REG_RIP), BASE + 7)
        self.assertEqual(eng.unicorn_calls, [(0, 1)])
        self.assertEqual(threading.active_count(), threads)

    def test_no_timeout_means_no_timer(self):
        eng = engine(b'\x90\x90')
        created = []
        real = threading.Timer

        def timer(*args, **kwargs):
            created.append(args)
            return real(*args, **kwargs)

        threading.Timer = timer
        try:
            eng.start(BASE, timeout=0, count=2)
        finally:
            threading.Timer = real
        self.assertEqual(created, [])
        self.assertEqual(eng.unicorn_calls, [(0, 2)])

    def test_installing_twice_wraps_once(self):
        eng = engine(b'\x90')
        wrapped = eng.start
        runtimer.install(eng)
        self.assertIs(eng.start, wrapped)


if __name__ == '__main__':
    unittest.main()
