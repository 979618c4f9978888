"""IRQL values and the checks routines make against them."""

from .errors import bugcheck

PASSIVE_LEVEL = 0
APC_LEVEL = 1
DISPATCH_LEVEL = 2

_NAMES = {PASSIVE_LEVEL: 'PASSIVE_LEVEL', APC_LEVEL: 'APC_LEVEL', DISPATCH_LEVEL: 'DISPATCH_LEVEL'}

# IRQL_NOT_LESS_OR_EQUAL is what a real kernel raises when pageable code or a blocking wait runs
# at too high an IRQL; Driver Verifier reports the same misuse as DRIVER_VERIFIER_DETECTED_VIOLATION.
IRQL_NOT_LESS_OR_EQUAL = 0xA


def irql_name(irql):
    return _NAMES.get(irql, 'IRQL %d' % irql)


def parse_irql(text):
    for value, name in _NAMES.items():
        if text.upper() in (name, name.replace('_LEVEL', '')):
            return value
    raise ValueError('unknown IRQL %r (use PASSIVE_LEVEL, APC_LEVEL or DISPATCH_LEVEL)' % text)


def require(machine, routine, maximum):
    """Stops the machine if `routine` is called above `maximum`, as its documentation forbids."""
    if machine.irql > maximum:
        raise bugcheck(IRQL_NOT_LESS_OR_EQUAL, 'IRQL_NOT_LESS_OR_EQUAL',
                       '%s called at %s; its documentation requires IRQL <= %s'
                       % (routine, irql_name(machine.irql), irql_name(maximum)),
                       machine.irql, maximum)
