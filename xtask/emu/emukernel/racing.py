"""A callback racing each unregistration.

On a multiprocessor, the kernel may be running a driver's callback on another processor at the
moment the driver unregisters it. Every family therefore delivers its callback once more, "on
another processor", just before each unregister routine returns, whether or not the scenario armed
a race:

- callback objects: ExUnregisterCallback runs the routine (Argument1 = Argument2 = 0 unless the
  scenario armed a `notify-during-unregister` race with its own arguments); the documentation
  promises nothing about a call in progress ("Using a Driver-Defined Callback Object").
- registry filtering: CmUnRegisterCallback runs the RegistryCallback once (a pre-set-value
  notification on an unrelated key); the CmUnRegisterCallback page does not say whether it waits
  for a callback in progress.
- PnP notifications: IoUnregisterPlugPlayNotification(Ex) runs the callback once; after the
  obsolete IoUnregisterPlugPlayNotification, once more *after* it returned (its Remarks: the
  callback can be called after it returns).
- WFP: FwpsCalloutUnregisterById0 runs classifyFn (a classify in progress for a filter that names
  the callout) and, if a flow still carries one of its contexts, flowDeleteFn for it (the flow ends
  on another processor).

Where the unregister routine's page is silent on a call in progress (ExUnregisterCallback,
CmUnRegisterCallback, FwpsCalloutUnregisterById0's classifyFn), the racing call does not finish
before the routine returns: inflight.py suspends it inside the driver's barrier and resumes it when
the driver waits or unload returns (rule "no memory freed under a callback still in flight").

The racing callback honours the locks of the moment: it runs with the family's kernel lock held on
its own processor (lockorder.py `switch_to`), and a driver lock the unregistering thread holds is
held for it too: taking it there is a deadlock (the unregistering thread waits for the callback,
in the stricter reading where the routine waits for callbacks in progress). The audit check
"callback racing unregistration" fails if the run stopped (a deadlock, a use after free, a
bugcheck) while such a racing callback ran, naming it.
"""

RACE_CHECK = 'callback racing unregistration'


class Racing:
    def __init__(self, machine, config=None):
        self.m = machine
        machine.racing = self
        self.races = []           # [label, state]: 'running' | 'done'

    def begin(self, label):
        self.races.append([label, 'running'])
        return len(self.races) - 1

    def end(self, token):
        if token is not None and token < len(self.races):
            self.races[token][1] = 'done'

    def audit(self):
        if not self.races:
            return []
        stop = self.m.stop
        broken = [label for label, state in self.races if state == 'running']
        if broken and stop is not None:
            return [(RACE_CHECK, False, 'the run stopped while %s ran: %s' % (broken[0], stop.message))]
        return [(RACE_CHECK, True, '%d unregistration(s) raced by their callback: %s'
                 % (len(self.races), '; '.join(label for label, _s in self.races)))]


class _NoRacing:
    def begin(self, label):
        return None

    def end(self, token):
        pass


_NONE = _NoRacing()


def of(machine):
    return getattr(machine, 'racing', None) or _NONE
