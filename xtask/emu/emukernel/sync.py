"""Spin locks and events, modelled from the documentation (speakeasy's handlers for these are
stubs that neither lock nor wait), and the work other processors finish while this thread waits.

KeAcquireSpinLockRaiseToDpc(SpinLock) -> OldIrql        <= DISPATCH_LEVEL
  - raises to DISPATCH_LEVEL and takes the lock. Not recursive: on this single emulated processor,
    acquiring a lock the thread already holds spins forever, so the model stops the run (deadlock).
KeReleaseSpinLock(SpinLock, NewIrql)                     DISPATCH_LEVEL
  - releases a lock the caller holds and returns to NewIrql.
KeInitializeEvent(Event, Type, State)                    any IRQL
  - Type: NotificationEvent (0) stays signalled until cleared; SynchronizationEvent (1) is cleared
    by the wait it satisfies. The state is also written to the DISPATCHER_HEADER (Type at +0,
    SignalState at +4) so a driver reading it sees what the kernel stores.
KeSetEvent(Event, Increment, Wait) -> previous state     <= DISPATCH_LEVEL; <= APC_LEVEL with Wait = TRUE
KeClearEvent / KeResetEvent / KeReadStateEvent
KeWaitForSingleObject(Object, Reason, Mode, Alertable, Timeout)
  - <= APC_LEVEL (<= DISPATCH_LEVEL only with a zero timeout). Returns at once if the event is
    signalled. Otherwise the thread would sleep while other processors run: the model then lets the
    **deferred work** run (call-backs a routine promised for "later", such as the flowDeleteFn after
    FwpsFlowRemoveContext0 returned STATUS_PENDING), as if another processor finished it during the
    wait, and the wait returns STATUS_SUCCESS once the event is set, or STATUS_TIMEOUT after a
    finite timeout. With nothing left that could set it and no timeout, the wait could never end:
    a deadlock, reported at once, naming the wait. A zero timeout returns STATUS_TIMEOUT.
KeDelayExecutionThread(WaitMode, Alertable, Interval)    <= APC_LEVEL
  - the deferred work runs during the delay (other processors progress); STATUS_SUCCESS.
No silent hang: timed waits and delays during which nothing could make progress (no deferred
work, no KeSetEvent) add up; past ten minutes of emulated time in one stage the driver is retrying
for something nothing will deliver, and the run ends with a deadlock naming the last wait, instead
of running into the instruction limit (a `timeout`).

Other models queue deferred work with `machine.sync.defer(function, args, label, before, after)`.
`pending()` lists what never ran (an audit failure for its owner: the work would run after the
driver was gone).
"""

import struct

from . import inflight, lockorder
from .errors import deadlock, violation
from .irql import APC_LEVEL, DISPATCH_LEVEL, irql_name, require

STATUS_SUCCESS = 0
STATUS_TIMEOUT = 0x102
IDLE_LIMIT = 10 * 60 * 10_000_000   # ten minutes, in 100 ns units
NOTIFICATION_EVENT = 0
SYNCHRONIZATION_EVENT = 1


class Deferred:
    """Work a routine promised to do later, on another processor."""

    def __init__(self, function, args, label, before=None, after=None, locks=()):
        self.function = function
        self.args = list(args)
        self.label = label
        self.before = before
        self.after = after
        self.locks = list(locks)      # [(key, name)] the kernel holds while it runs (lockorder.py)


class Sync:
    def __init__(self, machine, config=None):
        self.m = machine
        machine.sync = self
        self.locks = {}          # address -> previous IRQL while held
        self.acquisitions = 0
        self.events = {}         # address -> {'type': 0/1, 'signalled': bool}
        self.deferred = []       # Deferred, in the order promised
        self.waits = 0
        self.idle = 0            # 100 ns units waited with nothing able to make progress (_idle)
        for name, argc, impl in (
                ('KeAcquireSpinLockRaiseToDpc', 1, self.acquire),
                ('KeReleaseSpinLock', 2, self.release),
                ('KeInitializeEvent', 3, self.initialize_event),
                ('KeSetEvent', 3, self.set_event),
                ('KeClearEvent', 1, self.clear_event),
                ('KeResetEvent', 1, self.reset_event),
                ('KeReadStateEvent', 1, self.read_state_event),
                ('KeWaitForSingleObject', 5, self.wait),
                ('KeDelayExecutionThread', 3, self.delay)):
            machine.attach('ntoskrnl', name, argc, impl)

    # ---- spin locks ---------------------------------------------------------------------------

    def acquire(self, argv, orig):
        lock = argv[0]
        require(self.m, 'KeAcquireSpinLockRaiseToDpc', DISPATCH_LEVEL)
        if lock in self.locks:
            raise deadlock('KeAcquireSpinLockRaiseToDpc(0x%x): the lock is already held by this '
                           'processor (during %s); spin locks are not recursive, it would spin '
                           'forever' % (lock, self.m.phase))
        self.locks[lock] = self.m.irql
        self.acquisitions += 1
        lockorder.of(self.m).acquire(('spin lock', lock), 'spin lock 0x%x' % lock)
        previous = self.m.irql
        self.m.irql = DISPATCH_LEVEL
        return previous

    def release(self, argv, orig):
        lock, new_irql = argv[0], argv[1] & 0xFF
        if lock not in self.locks:
            raise violation('KeReleaseSpinLock(0x%x): the lock is not held' % lock)
        if new_irql > DISPATCH_LEVEL:
            raise violation('KeReleaseSpinLock(0x%x, %s): not the IRQL KeAcquireSpinLock returned'
                            % (lock, irql_name(new_irql)))
        del self.locks[lock]
        lockorder.of(self.m).release(('spin lock', lock))
        self.m.irql = new_irql
        return None

    def held(self):
        return list(self.locks)

    # ---- events -------------------------------------------------------------------------------

    def _store(self, address):
        e = self.events[address]
        self.m.write(address, struct.pack('<BBBBi', e['type'], 0, 6, 0, int(e['signalled'])))

    def _event(self, routine, address):
        e = self.events.get(address)
        if e is None:
            raise violation('%s(0x%x): not an event initialised with KeInitializeEvent' % (routine, address))
        return e

    def initialize_event(self, argv, orig):
        address, kind, state = argv[0], argv[1] & 0xFFFFFFFF, argv[2] & 0xFF
        if kind not in (NOTIFICATION_EVENT, SYNCHRONIZATION_EVENT):
            raise violation('KeInitializeEvent(0x%x, %d): not an EVENT_TYPE' % (address, kind))
        self.events[address] = {'type': kind, 'signalled': bool(state)}
        self._store(address)
        return None

    def set_event(self, argv, orig):
        # Remarks: Wait = FALSE at <= DISPATCH_LEVEL, Wait = TRUE at <= APC_LEVEL.
        require(self.m, 'KeSetEvent', APC_LEVEL if argv[2] & 0xFF else DISPATCH_LEVEL)
        e = self._event('KeSetEvent', argv[0])
        previous = int(e['signalled'])
        e['signalled'] = True
        self.idle = 0
        self._store(argv[0])
        return previous

    def clear_event(self, argv, orig):
        self._event('KeClearEvent', argv[0])['signalled'] = False
        self._store(argv[0])
        return None

    def reset_event(self, argv, orig):
        e = self._event('KeResetEvent', argv[0])
        previous = int(e['signalled'])
        e['signalled'] = False
        self._store(argv[0])
        return previous

    def read_state_event(self, argv, orig):
        return int(self._event('KeReadStateEvent', argv[0])['signalled'])

    def _timeout(self, pointer):
        """The wait's timeout in 100 ns units (None: none, wait forever; 0: just test)."""
        if not pointer:
            return None
        value = struct.unpack('<q', self.m.read(pointer, 8))[0]
        # Negative: relative. Positive: an absolute system time; the machine's clock starts at 0,
        # so it is that far in the future.
        return abs(value)

    def _idle(self, routine, address, interval):
        """Time passes with nothing in the machine able to make progress (no deferred work): the
        waits of one stage add up; past IDLE_LIMIT the driver is waiting for what nothing will
        deliver (a retry loop that never ends), reported as a deadlock instead of a timeout."""
        self.idle += interval
        if self.idle > IDLE_LIMIT:
            what = 'event 0x%x' % address if address else 'a delay'
            raise deadlock('%s (%s) during %s: the driver has waited %d s in all, with no deferred '
                           'call, DPC, timer or other processor left that could end the wait; it '
                           'would wait forever' % (routine, what, self.m.phase, self.idle // 10_000_000))

    def wait(self, argv, orig):
        address, timeout_ptr = argv[0], argv[4]
        timeout = self._timeout(timeout_ptr)
        zero_timeout = timeout == 0
        require(self.m, 'KeWaitForSingleObject', DISPATCH_LEVEL if zero_timeout else APC_LEVEL)
        if self.locks:
            raise deadlock('KeWaitForSingleObject while holding spin lock(s) %s'
                           % ', '.join('0x%x' % a for a in self.locks))
        e = self._event('KeWaitForSingleObject', address)
        self.waits += 1
        if e['signalled']:
            self._satisfy(address)
            return STATUS_SUCCESS
        if zero_timeout:
            return STATUS_TIMEOUT
        if inflight.of(self.m).wait_here('KeWaitForSingleObject', argv):
            return STATUS_SUCCESS  # a callback in flight runs while this thread waits; then again
        if not self.deferred:
            if timeout is None:
                raise deadlock('KeWaitForSingleObject(0x%x) during %s waits, with no timeout, for an '
                               'event that nothing left to run will set (no deferred call, DPC, timer '
                               'or other processor): it would never return' % (address, self.m.phase))
            self._idle('KeWaitForSingleObject', address, timeout)
            return STATUS_TIMEOUT
        state = {'signalled': False}

        def when_done():
            if self.m.stop is not None:
                return
            if self.events[address]['signalled']:
                state['signalled'] = True
                self._satisfy(address)
            elif timeout is None and not self.deferred:
                self.m.halt(deadlock(
                    'KeWaitForSingleObject(0x%x) during %s: every deferred call has run and the '
                    'event is still not set: the wait (no timeout) would never return'
                    % (address, self.m.phase)))

        def result():
            return STATUS_SUCCESS if state['signalled'] or timeout is None else STATUS_TIMEOUT

        self._run_deferred(result, when_done)
        return STATUS_SUCCESS

    def delay(self, argv, orig):
        """KeDelayExecutionThread(WaitMode, Alertable, Interval) <= APC_LEVEL: the thread sleeps;
        meanwhile the other processors run what was deferred. STATUS_SUCCESS."""
        require(self.m, 'KeDelayExecutionThread', APC_LEVEL)
        if self.locks:
            raise deadlock('KeDelayExecutionThread while holding spin lock(s) %s'
                           % ', '.join('0x%x' % a for a in self.locks))
        interval = self._timeout(argv[2]) or 0
        if inflight.of(self.m).wait_here('KeDelayExecutionThread', argv):
            return STATUS_SUCCESS  # a callback in flight runs while this thread sleeps; then again
        if not self.deferred:
            self._idle('KeDelayExecutionThread', 0, interval)
            return STATUS_SUCCESS
        self._run_deferred(STATUS_SUCCESS)
        return STATUS_SUCCESS

    def _run_deferred(self, result, when_done=None):
        """Runs the deferred calls "on another processor" while this thread waits or sleeps (each
        without the waiting thread's locks), then resumes the thread with `result`; `when_done()`
        runs after the last one."""
        work, self.deferred = self.deferred, []
        self.idle = 0
        order = lockorder.of(self.m)

        def before(i):
            order.switch_to(work[i].locks)
            if work[i].before:
                work[i].before()

        def after(i):
            if work[i].after:
                work[i].after()
            order.switch_back()
            if when_done is not None and i == len(work) - 1:
                when_done()

        self.m.call_back_before_return([(w.function, w.args) for w in work], before=before,
                                       after=after, result=result)

    def _satisfy(self, address):
        e = self.events[address]
        if e['type'] == SYNCHRONIZATION_EVENT:
            e['signalled'] = False
            self._store(address)

    # ---- deferred work --------------------------------------------------------------------------

    def defer(self, function, args, label, before=None, after=None, locks=()):
        self.deferred.append(Deferred(function, args, label, before, after, locks))

    def pending(self):
        return list(self.deferred)

    def audit(self):
        if not self.acquisitions and not self.events:
            return []
        return [('no spin lock left held', not self.locks,
                 'still held: ' + ', '.join('0x%x' % a for a in self.locks) if self.locks
                 else '%d acquisition(s), all released' % self.acquisitions)]
