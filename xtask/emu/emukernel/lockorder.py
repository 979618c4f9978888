"""The order locks are taken in, across the whole run: Driver Verifier's deadlock detection.

Driver Verifier's deadlock detection ("Deadlock Detection", Driver Verifier documentation,
https://learn.microsoft.com/windows-hardware/drivers/devtest/deadlock-detection) records, for every
lock a driver takes, which locks the same thread already held, and reports a *potential* deadlock
as soon as two locks have been taken in both orders (A then B on one path, B then A on another),
even if the two paths never ran at the same time. This module does the same for the emulated run:

- every acquisition of a lock while others are held adds an edge "held -> taken" to one graph for
  the whole run, remembering the first path that took it (the phase, the locks held, the caller);
- an acquisition that closes a cycle in the graph is a violation naming both acquisition paths;
- the audit check "lock order" fails if any cycle was found, with the paths.

The locks recorded: the driver's spin locks (sync.py), guarded mutexes (mutex.py), rundown
protection (rundown.py: holding a reference is a shared hold; ExWaitForRundownProtectionRelease
takes it exclusively, i.e. waits for every holder), and the locks the kernel holds while it runs a
driver routine or calls the driver back. Those are modelled explicitly by the families:

- WFP (wfp.py): the engine's flow lock, held while FwpsFlowAssociateContext0 and
  FwpsFlowRemoveContext0 run and while the engine calls flowDeleteFn. The documentation says
  nothing either way about such a lock; the model takes the stricter reading (it exists), so a
  driver that calls FwpsFlowAssociateContext0 holding a lock its flowDeleteFn takes has an ABBA
  deadlock on a multiprocessor (Microsoft's msnmntr sample associates outside its own lock).
- Callback objects (callbacks.py), PnP notifications (pnp.py), registry callbacks (cm.py): the
  family's callback list, held while its callbacks run and taken by the register and unregister
  routines.

Where the emulation delivers a callback "on another processor" (work deferred to a wait, a
callback racing an unregistration), the locks the interrupted code holds are *not* held by that
processor: `switch_to()` starts a new stack of held locks, `switch_back()` restores the previous.
"""

LOCK_ORDER_CHECK = 'lock order'


class Lock:
    def __init__(self, key, name):
        self.key = key
        self.name = name


class LockOrder:
    def __init__(self, machine, config=None):
        self.m = machine
        machine.lock_order = self
        self.held = []           # [(key, where)] held by the code running now, in order taken
        self.saved = []          # stacks of the code interrupted by `switch_to`
        self.names = {}          # key -> description
        self.edges = {}          # (a, b) -> path: b taken while a was held (the first such path)
        self.cycles = []         # descriptions of the cycles found
        self._cycle_keys = set()
        self.acquisitions = 0

    # ---- recording ----------------------------------------------------------------------------

    def _where(self):
        caller = ''
        try:
            ret = self.m.se.emu.get_ret_address()
            if self.m.in_image(ret):
                caller = ', called from image+0x%x' % (ret - self.m.image_base)
        except Exception:  # no emulator (model unit tests): the phase alone says where
            caller = ''
        return 'during %s%s' % (self.m.phase, caller)

    def acquire(self, key, name):
        """`key` (hashable, e.g. ('spin lock', address)) is taken by the code running now."""
        self.names.setdefault(key, name)
        where = self._where()
        self.acquisitions += 1
        for held, held_where in self.held:
            if held == key:
                continue
            edge = (held, key)
            if edge not in self.edges:
                self.edges[edge] = '%s held (taken %s) when %s was taken %s' % (
                    self.names[held], held_where, self.names[key], where)
                self._check_cycle(held, key)
        self.held.append((key, where))

    def release(self, key):
        for i in range(len(self.held) - 1, -1, -1):
            if self.held[i][0] == key:
                del self.held[i]
                return

    def momentary(self, key, name):
        """A lock taken and released inside one routine (a wait that takes it exclusively)."""
        self.acquire(key, name)
        self.release(key)

    def switch_to(self, held=()):
        """Code on another processor starts running (holding `held`, [(key, name)])."""
        self.saved.append(self.held)
        self.held = []
        for key, name in held:
            self.acquire(key, name)

    def switch_back(self):
        if self.saved:
            self.held = self.saved.pop()

    def holding(self, key):
        return any(k == key for k, _ in self.held)

    # ---- cycles -------------------------------------------------------------------------------

    def _path(self, start, goal):
        """A list of edges from `start` to `goal` in the graph, or None."""
        stack = [(start, [])]
        seen = {start}
        while stack:
            node, path = stack.pop()
            for (a, b) in list(self.edges):
                if a != node or b in seen:
                    continue
                if b == goal:
                    return path + [(a, b)]
                seen.add(b)
                stack.append((b, path + [(a, b)]))
        return None

    def _check_cycle(self, held, taken):
        back = self._path(taken, held)
        if back is None:
            return
        members = frozenset([held, taken] + [b for _a, b in back])
        if members in self._cycle_keys:
            return
        self._cycle_keys.add(members)
        first = self.edges[(held, taken)]
        other = '; then '.join(self.edges[e] for e in back)
        self.cycles.append('%s and %s are taken in both orders: (1) %s; (2) %s. On a multiprocessor '
                           'each path can hold its first lock while waiting for the other\'s: a '
                           'deadlock (Driver Verifier reports it even if this run did not hang)'
                           % (self.names[held], self.names[taken], first, other))

    # ---- audit --------------------------------------------------------------------------------

    def audit(self):
        locks = {k for e in self.edges for k in e}
        return [(LOCK_ORDER_CHECK, not self.cycles,
                 '; '.join(self.cycles) if self.cycles else
                 '%d acquisition(s), %d ordered pair(s) of %d lock(s), no cycle'
                 % (self.acquisitions, len(self.edges), len(locks)))]


class _NoLockOrder:
    """For machines without the family (model unit tests that do not test lock order)."""

    def acquire(self, key, name):
        pass

    def release(self, key):
        pass

    def momentary(self, key, name):
        pass

    def switch_to(self, held=()):
        pass

    def switch_back(self):
        pass

    def holding(self, key):
        return False


_NONE = _NoLockOrder()


def of(machine):
    """The machine's lock-order recorder, or one that records nothing."""
    return getattr(machine, 'lock_order', None) or _NONE
