"""The wall-clock limit of an emulator run, without unicorn 1.x's polling thread.

speakeasy starts every run with `uc_emu_start(..., timeout, count)`: `timeout` is the wall-clock
limit (the harness sets 60 s, machine.py `_config`), `count` the instruction limit. For a non-zero
timeout, unicorn 1.0.2 starts a thread (`_timeout_fn` in its uc.c) that loops on `usleep(2)` and
reads the clock until the run ends or the limit passes, then calls `uc_emu_stop`. With the kernel's
default timer slack (50 us) that thread wakes about 20,000 times a second for as long as the run
lasts: on the wfp-callout run "unload with 1,000 live flows" it took a fifth of the harness's CPU
time (0.2 s of 1.0 s), for a limit that is never near.

`install(engine)` keeps the limit and its effect and drops the polling: speakeasy's engine is made
to call unicorn with timeout 0 (no thread of unicorn's), and a watchdog calls the same
`uc_emu_stop` if the run is still going when its limit passes. The watchdog is one thread per
process, started by the first run that has a limit and kept for the next ones: a scenario calls
into the driver once per kernel event, each call a `uc_emu_start` of its own (cm-filter's scenario:
283), and a thread started and joined for each one cost more than a millisecond apiece (a fifth of
cm-filter's fault sweep, measured). Between runs it sleeps on a condition (no CPU). Arming and
disarming take its lock, and it stops a run only while holding that lock and only if the run it
was armed for is still armed, so once `start` has returned, nothing stops a later run in its
place. A process forked from one whose watchdog exists makes its own (forks.py forks between runs;
a fork copies no thread and the lock's state is not to be trusted).

A run that ends without reaching the limit is the same run; one that reaches it is stopped at the
same point as before (the next translated block), and speakeasy, which reads the elapsed time
itself (`winemu.start`), sees the same thing. tests/test_runtimer.py checks both.
"""

import os
import threading
import time

from unicorn.unicorn import _uc


def install(engine):
    """Makes speakeasy's unicorn engine (`emu.emu_eng`) keep each run's timeout with the process's
    watchdog instead of unicorn's polling thread. Idempotent."""
    if getattr(engine, '_runtimer', False):
        return
    start = engine.start
    uc = engine.emu

    def start_with_watchdog(addr, timeout=0, count=0):
        if not timeout:
            return start(addr, timeout=0, count=count)
        dog = watchdog()
        armed = dog.arm(uc, timeout)
        try:
            return start(addr, timeout=0, count=count)
        finally:
            dog.disarm(armed)

    engine.start = start_with_watchdog
    engine._runtimer = True


class Watchdog:
    """Stops the armed run (`uc_emu_stop`) when its limit passes; one sleeping thread."""

    def __init__(self):
        self.pid = os.getpid()
        self._cond = threading.Condition()
        self._armed = None          # (deadline, uc, number) of the run in progress
        self._number = 0            # runs armed so far
        self._idle = False          # the thread waits with no deadline: arming must wake it
        self.thread = threading.Thread(target=self._watch, name='emukernel-runtimer', daemon=True)
        self.thread.start()

    def arm(self, uc, seconds):
        """Arms the limit of the run about to start on `uc`; returns what `disarm` takes."""
        with self._cond:
            self._number += 1
            self._armed = (time.monotonic() + seconds, uc, self._number)
            if self._idle:
                self._cond.notify()
            return self._number

    def disarm(self, number):
        """The run `arm` numbered has ended: it is not stopped after this returns. The thread is
        not woken: it finds nothing armed when its deadline comes."""
        with self._cond:
            if self._armed is not None and self._armed[2] == number:
                self._armed = None

    def _watch(self):
        with self._cond:
            while True:
                if self._armed is None:
                    self._idle = True
                    self._cond.wait()
                    self._idle = False
                    continue
                deadline, uc, _number = self._armed
                left = deadline - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                _stop(uc)
                self._armed = None


_WATCHDOG = None


def watchdog():
    """This process's watchdog, started on first use (again in a forked child)."""
    global _WATCHDOG
    if _WATCHDOG is None or _WATCHDOG.pid != os.getpid():
        _WATCHDOG = Watchdog()
    return _WATCHDOG


def _stop(uc):
    """What unicorn's timer thread does when the limit passes: `uc_emu_stop`. Its status is not
    read, as unicorn does not read it either (the run may have ended in the meantime)."""
    _uc.uc_emu_stop(uc._uch)


__all__ = ['install', 'watchdog']
