"""A driver's emulation scenario: the kernel events that exercise it, read from `scenario.toml`.

```toml
description = "what this scenario shows"
system_callback_objects = ["\\Callback\\PowerState"]   # objects the kernel created at boot

[[step]]                       # kernel events after a successful DriverEntry, in order
kind = "notify"                # a component notifies a callback object (ExNotifyCallback)
object = "\\Callback\\PowerState"
argument1 = 1
argument2 = 0
irql = "DISPATCH_LEVEL"        # the notifier's IRQL (default PASSIVE_LEVEL)

[[race]]                       # armed before DriverUnload
kind = "notify-during-unregister"
object = "\\Callback\\PowerState"
argument1 = 3
argument2 = 0

[expect]
log = ["loaded", "unloaded"]   # substrings that must appear in the log, in this order
failures = []                  # fixture drivers only: failures xtask expects the audit to find
fault_sweep = false            # fixture drivers only: xtask runs this scenario with --faults
```
"""

import tomllib

from .errors import HarnessError
from .irql import PASSIVE_LEVEL, parse_irql

STEP_KINDS = {'notify'}
RACE_KINDS = {'notify-during-unregister'}
TOP_KEYS = {'description', 'system_callback_objects', 'step', 'race', 'expect'}


class Step:
    def __init__(self, kind, obj, argument1, argument2, irql):
        self.kind = kind
        self.object = obj
        self.argument1 = argument1
        self.argument2 = argument2
        self.irql = irql

    def label(self):
        return '%s %s (0x%x, 0x%x)' % (self.kind, self.object, self.argument1, self.argument2)


class Scenario:
    def __init__(self, path, description, system_objects, steps, races, expect_log, expect_failures):
        self.path = path
        self.description = description
        self.system_objects = system_objects
        self.steps = steps
        self.races = races
        self.expect_log = expect_log
        self.expect_failures = expect_failures


def _int(table, key, where):
    value = table.get(key, 0)
    if not isinstance(value, int) or value < 0 or value >= 1 << 64:
        raise HarnessError('%s: %s must be an unsigned 64-bit integer' % (where, key))
    return value


def _entry(table, kinds, where):
    if not isinstance(table, dict):
        raise HarnessError('%s must be a table' % where)
    kind = table.get('kind')
    if kind not in kinds:
        raise HarnessError('%s: unknown kind %r (known: %s)' % (where, kind, ', '.join(sorted(kinds))))
    unknown = set(table) - {'kind', 'object', 'argument1', 'argument2', 'irql'}
    if unknown:
        raise HarnessError('%s: unknown key(s) %s' % (where, ', '.join(sorted(unknown))))
    obj = table.get('object')
    if not isinstance(obj, str) or not obj.startswith('\\'):
        raise HarnessError('%s: object must be a kernel object name such as "\\\\Callback\\\\PowerState"'
                           % where)
    try:
        irql = parse_irql(table['irql']) if 'irql' in table else PASSIVE_LEVEL
    except ValueError as e:
        raise HarnessError('%s: %s' % (where, e)) from None
    return Step(kind, obj, _int(table, 'argument1', where), _int(table, 'argument2', where), irql)


def load(path):
    try:
        with open(path, 'rb') as f:
            data = tomllib.load(f)
    except OSError as e:
        raise HarnessError('cannot read scenario %s: %s' % (path, e.strerror)) from None
    except tomllib.TOMLDecodeError as e:
        raise HarnessError('scenario %s is not valid TOML: %s' % (path, e)) from None
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise HarnessError('scenario %s: unknown key(s) %s' % (path, ', '.join(sorted(unknown))))
    steps = [_entry(s, STEP_KINDS, '%s: step %d' % (path, i + 1)) for i, s in enumerate(data.get('step', []))]
    races = [_entry(r, RACE_KINDS, '%s: race %d' % (path, i + 1)) for i, r in enumerate(data.get('race', []))]
    expect = data.get('expect', {})
    log = expect.get('log', [])
    failures = expect.get('failures', [])
    if not all(isinstance(x, str) for x in log) or not all(isinstance(x, str) for x in failures):
        raise HarnessError('scenario %s: expect.log and expect.failures are lists of strings' % path)
    unknown = set(expect) - {'log', 'failures', 'fault_sweep'}
    if unknown:
        raise HarnessError('scenario %s: unknown key(s) in [expect]: %s' % (path, ', '.join(sorted(unknown))))
    system = data.get('system_callback_objects', ['\\Callback\\PowerState', '\\Callback\\SetSystemTime'])
    return Scenario(path, data.get('description', ''), system, steps, races, log, failures)
