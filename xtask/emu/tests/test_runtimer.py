"""runtimer.py: a run's wall-clock limit is kept (the run is stopped once it passes), unicorn gets no
timeout of its own (so no polling thread), one watchdog thread per process serves every run, and a
run is never stopped by the limit of an earlier one."""
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
        start = time.monotonic()
        eng.start(BASE, timeout=0.3, count=0)
        took = time.monotonic() - start
        self.assertGreaterEqual(took, 0.3)
        self.assertLess(took, 10)                       # stopped, not left running
        self.assertEqual(eng.unicorn_calls, [(0, 0)])   # unicorn's own (polling) timer not armed

    def test_a_run_that_ends_first_is_unchanged(self):
        eng = engine(b'\x48\xc7\xc0\x2a\x00\x00\x00' b'\xeb\xfe')  # mov rax, 42; jmp $
        start = time.monotonic()
        eng.start(BASE, timeout=60, count=1)            # the instruction limit ends it
        self.assertLess(time.monotonic() - start, 10)
        self.assertEqual(eng.emu.reg_read(x86.UC_X86_REG_RAX), 42)
        self.assertEqual(eng.emu.reg_read(x86.UC_X86_REG_RIP), BASE + 7)
        self.assertEqual(eng.unicorn_calls, [(0, 1)])

    def test_runs_share_one_watchdog_thread_and_start_none(self):
        eng = engine(b'\x90\x90')
        dog = runtimer.watchdog()
        threads = threading.active_count()
        for _ in range(50):
            eng.start(BASE, timeout=60, count=2)
        self.assertIs(runtimer.watchdog(), dog)
        self.assertTrue(dog.thread.is_alive())
        self.assertEqual(threading.active_count(), threads)

    def test_a_run_is_not_stopped_by_the_limit_of_the_run_before(self):
        eng = engine(b'\xeb\xfe')
        quick = engine(b'\x90\x90')
        quick.start(BASE, timeout=0.2, count=2)         # armed for 0.2 s, ends at once
        start = time.monotonic()
        eng.start(BASE, timeout=1.0, count=0)           # must run its own full second
        took = time.monotonic() - start
        self.assertGreaterEqual(took, 1.0)
        self.assertLess(took, 10)

    def test_no_timeout_means_no_watchdog(self):
        eng = engine(b'\x90\x90')
        armed = []
        real = runtimer.Watchdog.arm

        def arm(self, uc, seconds):
            armed.append(seconds)
            return real(self, uc, seconds)

        runtimer.Watchdog.arm = arm
        try:
            eng.start(BASE, timeout=0, count=2)
        finally:
            runtimer.Watchdog.arm = real
        self.assertEqual(armed, [])
        self.assertEqual(eng.unicorn_calls, [(0, 2)])

    def test_a_forked_child_keeps_limits_with_a_watchdog_of_its_own(self):
        parents = runtimer.watchdog()
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: its own watchdog stops its run; reports through the pipe
            code = 1
            try:
                eng = engine(b'\xeb\xfe')
                start = time.monotonic()
                eng.start(BASE, timeout=0.3, count=0)
                own = runtimer.watchdog()
                if own is not parents and own.pid == os.getpid() and time.monotonic() - start < 10:
                    code = 0
            finally:
                os.write(write, bytes([code]))
                os._exit(0)
        os.close(write)
        got = os.read(read, 1)
        os.close(read)
        os.waitpid(pid, 0)
        self.assertEqual(got, b'\x00')

    def test_installing_twice_wraps_once(self):
        eng = engine(b'\x90')
        wrapped = eng.start
        runtimer.install(eng)
        self.assertIs(eng.start, wrapped)


if __name__ == '__main__':
    unittest.main()
