"""Guarded mutexes (KGUARDED_MUTEX), modelled from the documentation; speakeasy has none of them.

KeInitializeGuardedMutex(Mutex)      <= APC_LEVEL: the mutex is free.
KeAcquireGuardedMutex(Mutex)         <= APC_LEVEL: takes the mutex, waiting while another thread
                                     holds it; the caller enters a guarded region (APCs disabled)
                                     until it releases. Not recursive: a thread that acquires a
                                     mutex it already holds deadlocks.
KeTryToAcquireGuardedMutex(Mutex)    <= APC_LEVEL: TRUE and the mutex, or FALSE without waiting.
KeReleaseGuardedMutex(Mutex)         <= APC_LEVEL: releases a mutex the caller holds.

The emulation is single-threaded: an acquire that finds the mutex held can only be waiting for
this thread (for instance a callback the kernel runs while the code it interrupted holds the
mutex, such as a notification in flight during an unregistration that waits for it), which is a
deadlock on a real machine too, so the model stops the run and says where the mutex was taken.
The state is also written to the structure's Count field (1 = free, 0 = held), as the kernel does.
"""

import struct

from . import lockorder
from .errors import deadlock, violation
from .irql import APC_LEVEL, require

FREE = 1
HELD = 0


class GuardedMutexes:
    def __init__(self, machine, config=None):
        self.m = machine
        self.mutexes = {}  # address -> {'held': bool, 'where': phase it was taken in, 'taken': n}
        self.taken_during = []  # (phase, address) of every acquisition, for other models' rules
        machine.guarded_mutexes = self  # so the PnP model can ask which mutexes are held
        for name, impl in (('KeInitializeGuardedMutex', self.initialize),
                           ('KeAcquireGuardedMutex', self.acquire),
                           ('KeTryToAcquireGuardedMutex', self.try_acquire),
                           ('KeReleaseGuardedMutex', self.release)):
            machine.attach('ntoskrnl', name, 1, impl)

    def _store(self, address):
        self.m.write(address, struct.pack('<i', HELD if self.mutexes[address]['held'] else FREE))

    def _get(self, routine, address):
        mutex = self.mutexes.get(address)
        if mutex is None:
            raise violation('%s(0x%x): this guarded mutex was never initialized with '
                            'KeInitializeGuardedMutex' % (routine, address))
        return mutex

    def initialize(self, argv, orig):
        address = argv[0]
        require(self.m, 'KeInitializeGuardedMutex', APC_LEVEL)
        old = self.mutexes.get(address)
        if old is not None and old['held']:
            raise violation('KeInitializeGuardedMutex(0x%x) while the mutex is held (taken during %s)'
                            % (address, old['where']))
        self.mutexes[address] = {'held': False, 'where': None, 'taken': 0}
        self._store(address)

    def acquire(self, argv, orig):
        address = argv[0]
        require(self.m, 'KeAcquireGuardedMutex', APC_LEVEL)
        mutex = self._get('KeAcquireGuardedMutex', address)
        if mutex['held']:
            raise deadlock('KeAcquireGuardedMutex(0x%x) during %s: the mutex is held, taken during %s '
                           'and not released. A guarded mutex is not recursive, and the only holder '
                           'here is this thread (or the code this callback interrupted, which waits '
                           'for the callback): it would never be released'
                           % (address, self.m.phase, mutex['where']))
        self._take(mutex, address)

    def _take(self, mutex, address):
        mutex.update(held=True, where=self.m.phase)
        mutex['taken'] += 1
        self.taken_during.append((self.m.phase, address))
        lockorder.of(self.m).acquire(('guarded mutex', address), 'guarded mutex 0x%x' % address)
        self._store(address)

    def try_acquire(self, argv, orig):
        address = argv[0]
        require(self.m, 'KeTryToAcquireGuardedMutex', APC_LEVEL)
        mutex = self._get('KeTryToAcquireGuardedMutex', address)
        if mutex['held']:
            return 0
        self._take(mutex, address)
        return 1

    def release(self, argv, orig):
        address = argv[0]
        require(self.m, 'KeReleaseGuardedMutex', APC_LEVEL)
        mutex = self._get('KeReleaseGuardedMutex', address)
        if not mutex['held']:
            raise violation('KeReleaseGuardedMutex(0x%x): the mutex is not held' % address)
        mutex.update(held=False, where=None)
        lockorder.of(self.m).release(('guarded mutex', address))
        self._store(address)

    def held(self):
        """Addresses of the mutexes held right now."""
        return [a for a, mutex in self.mutexes.items() if mutex['held']]

    def audit(self):
        if not self.mutexes:
            return []
        held = ['0x%x (taken during %s)' % (a, m['where']) for a, m in self.mutexes.items() if m['held']]
        taken = sum(m['taken'] for m in self.mutexes.values())
        return [('every guarded mutex released', not held,
                 '%d mutex(es), %d acquisition(s)' % (len(self.mutexes), taken)
                 + ('; still held: ' + ', '.join(held) if held else ''))]
