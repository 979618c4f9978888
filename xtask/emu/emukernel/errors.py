"""How the emulated kernel stops a run: bugchecks, deadlocks and broken documented rules."""


class HarnessError(Exception):
    """The harness itself cannot run (bad scenario, unreadable image): exit status 2."""


class KernelStop(Exception):
    """The emulated kernel stops the machine, as the real one would (or as Driver Verifier would).

    kind: 'bugcheck' (the real kernel would bugcheck), 'deadlock' (a wait that can never be
    satisfied), 'model_violation' (a documented rule broken, e.g. an IRQL requirement).
    """

    def __init__(self, kind, message, code=None, params=()):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.code = code
        self.params = tuple(params)

    def to_json(self, last_calls):
        message = self.message
        if self.code is not None:
            message = 'bugcheck 0x%X (%s): %s' % (
                self.code, ', '.join('0x%X' % p for p in self.params), message)
        return {'kind': self.kind, 'message': message, 'pc': None, 'last_calls': last_calls}


def bugcheck(code, name, message, *params):
    """The real kernel would bugcheck with `code` (`name`)."""
    return KernelStop('bugcheck', '%s: %s' % (name, message), code=code, params=params)


def violation(message):
    """A documented rule was broken (what Driver Verifier would report)."""
    return KernelStop('model_violation', message)


def deadlock(message):
    return KernelStop('deadlock', message)
