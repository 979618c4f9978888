"""The wall-clock limit of an emulator run, without unicorn 1.x's polling thread.

speakeasy starts every run with `uc_emu_start(..., timeout, count)`: `timeout` is the wall-clock
limit (the harness sets 60 s, machine.py `_config`), `count` the instruction limit. For a non-zero
timeout, unicorn 1.0.2 starts a thread (`_timeout_fn` in its uc.c) that loops on `usleep(2)` and
reads the clock until the run ends or the limit passes, then calls `uc_emu_stop`. With the kernel's
default timer slack (50 us) that thread wakes about 20,000 times a second for as long as the run
lasts: on the wfp-callout run "unload with 1,000 live flows" it took a fifth of the harness's CPU
time (0.2 s of 1.0 s), for a limit that is never near.

`install(engine)` keeps the limit and its effect and drops the polling: speakeasy's engine is made
to call unicorn with timeout 0 (no thread of unicorn's), and a `threading.Timer` armed for the same
number of seconds calls the same `uc_emu_stop` if the run is still going when it fires. The timer's
thread sleeps on an event until then (no CPU), is cancelled when `uc_emu_start` returns and is
joined before the start returns, as unicorn joins its own: no thread outlives a run (forks.py forks
between runs). A run that ends without reaching the limit is the same run; one that reaches it is
stopped at the same point as before (the next translated block), and speakeasy, which reads the
elapsed time itself (`winemu.start`), sees the same thing. tests/test_runtimer.py checks both.
"""

import threading

from . import quickstart  # noqa: F401 - before speakeasy and unicorn (quickstart.py)
from unicorn.unicorn import _uc


def install(engine):
    """Makes speakeasy's unicorn engine (`emu.emu_eng`) keep each run's timeout with a sleeping
    timer instead of unicorn's polling thread. Idempotent."""
    if getattr(engine, '_runtimer', False):
        return
    start = engine.start
    uc = engine.emu

    def start_with_timer(addr, timeout=0, count=0):
        if not timeout:
            return start(addr, timeout=0, count=count)
        timer = threading.Timer(timeout, _stop, args=(uc,))
        timer.daemon = True
        timer.start()
        try:
            return start(addr, timeout=0, count=count)
        finally:
            timer.cancel()
            timer.join()

    engine.start = start_with_timer
    engine._runtimer = True


def _stop(uc):
    """What unicorn's timer thread does when the limit passes: `uc_emu_stop`. Its status is not
    read, as unicorn does not read it either (the run may have ended in the meantime)."""
    _uc.uc_emu_stop(uc._uch)


__all__ = ['install']
