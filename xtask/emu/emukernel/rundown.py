"""Rundown protection (EX_RUNDOWN_REF), modelled from the documentation; speakeasy has none of it.

ExInitializeRundownProtection   <= APC_LEVEL: the reference is ready, no holders, not run down.
ExAcquireRundownProtection      <= DISPATCH_LEVEL: TRUE and one more holder, or FALSE once
                                ExWaitForRundownProtectionRelease has begun.
ExReleaseRundownProtection      <= DISPATCH_LEVEL: one holder fewer.
ExWaitForRundownProtectionRelease  <= APC_LEVEL: refuses new holders, returns when none remain.
ExReInitializeRundownProtection / ExRundownCompleted   <= APC_LEVEL: back to ready / mark completed.

The emulation is single-threaded: a wait that begins while a holder remains can only be waiting for
a holder on the *same* thread (for instance a driver unloading from inside its own callback), which
is a deadlock on a real machine too, so the model stops the run and says so. The state is also
written to the EX_RUNDOWN_REF itself (holders * 2, bit 0 = rundown active) so a driver that reads it
sees what the kernel would store.
"""

from . import inflight, lockorder
from .errors import deadlock, violation
from .irql import APC_LEVEL, DISPATCH_LEVEL, require


class Rundown:
    def __init__(self, machine, config=None):
        self.m = machine
        self.refs = {}  # address -> {'holders': n, 'active': bool, 'waited': bool}
        machine.rundown_refs = self.refs  # inflight.py: a barrier's own memory
        self.acquired = 0
        self.released = 0
        self.refused = 0
        for name, argc, impl in (
                ('ExInitializeRundownProtection', 1, self.initialize),
                ('ExReInitializeRundownProtection', 1, self.reinitialize),
                ('ExAcquireRundownProtection', 1, self.acquire),
                ('ExReleaseRundownProtection', 1, self.release),
                ('ExWaitForRundownProtectionRelease', 1, self.wait),
                ('ExRundownCompleted', 1, self.completed)):
            machine.attach('ntoskrnl', name, argc, impl)

    def _store(self, address):
        r = self.refs[address]
        self.m.write_u64(address, r['holders'] * 2 | int(r['active']))

    def _get(self, routine, address):
        r = self.refs.get(address)
        if r is None:
            raise violation('%s(0x%x): this EX_RUNDOWN_REF was never initialized with '
                            'ExInitializeRundownProtection' % (routine, address))
        return r

    def initialize(self, argv, orig):
        address = argv[0]
        self.refs[address] = {'holders': 0, 'active': False, 'waited': False}
        self._store(address)

    def reinitialize(self, argv, orig):
        r = self._get('ExReInitializeRundownProtection', argv[0])
        if r['holders']:
            raise violation('ExReInitializeRundownProtection(0x%x) with %d holders' % (argv[0], r['holders']))
        r['active'] = False
        self._store(argv[0])

    def acquire(self, argv, orig):
        require(self.m, 'ExAcquireRundownProtection', DISPATCH_LEVEL)
        r = self._get('ExAcquireRundownProtection', argv[0])
        if r['active']:
            self.refused += 1
            return 0
        r['holders'] += 1
        self.acquired += 1
        # Holding a rundown reference is a shared hold of the barrier; the wait takes it exclusively.
        lockorder.of(self.m).acquire(('rundown', argv[0]), 'rundown protection 0x%x' % argv[0])
        self._store(argv[0])
        inflight.of(self.m).entered_barrier('ExAcquireRundownProtection')
        return 1

    def release(self, argv, orig):
        require(self.m, 'ExReleaseRundownProtection', DISPATCH_LEVEL)
        r = self._get('ExReleaseRundownProtection', argv[0])
        if r['holders'] == 0:
            raise violation('ExReleaseRundownProtection(0x%x) without a matching successful acquire'
                            % argv[0])
        r['holders'] -= 1
        self.released += 1
        lockorder.of(self.m).release(('rundown', argv[0]))
        self._store(argv[0])

    def wait(self, argv, orig):
        require(self.m, 'ExWaitForRundownProtectionRelease', APC_LEVEL)
        r = self._get('ExWaitForRundownProtectionRelease', argv[0])
        r['active'] = True
        r['waited'] = True
        self._store(argv[0])
        if r['holders'] and inflight.of(self.m).wait_here('ExWaitForRundownProtectionRelease', argv):
            return None  # a holder in flight on another processor runs, then the wait again
        lockorder.of(self.m).momentary(('rundown', argv[0]), 'rundown protection 0x%x' % argv[0])
        if r['holders']:
            raise deadlock('ExWaitForRundownProtectionRelease(0x%x) waits for %d holder(s) that only '
                           'this thread could release: it would never return' % (argv[0], r['holders']))

    def completed(self, argv, orig):
        r = self._get('ExRundownCompleted', argv[0])
        r['active'] = True
        self._store(argv[0])

    def audit(self):
        held = ['0x%x (%d)' % (a, r['holders']) for a, r in self.refs.items() if r['holders']]
        unwaited = ['0x%x' % a for a, r in self.refs.items() if not r['waited'] and not r['active']]
        checks = [('rundown references all released', not held,
                   '%d acquired, %d released, %d refused after rundown began'
                   % (self.acquired, self.released, self.refused)
                   + ('; still held: ' + ', '.join(held) if held else ''))]
        if self.refs:
            checks.append(('every barrier drained before teardown ended', not unwaited,
                           'never waited for: ' + ', '.join(unwaited) if unwaited
                           else '%d rundown reference(s) waited for' % len(self.refs)))
        return checks
