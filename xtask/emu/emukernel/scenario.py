"""A driver's emulation scenario: the kernel events that exercise it, read from `scenario.toml`.

The file has generic parts and parts owned by a callback family (families.py, which imports this
module, never the reverse: `families.load_scenario` reads a file against every family). Each family declares
the top-level settings it reads (`CONFIG`), the kernel events it can deliver (`STEPS`) and the races
it can arm for DriverUnload (`RACES`), each with its fields; this module validates the file against
those declarations, so a typo is an error that names the file, the entry and the key.

```toml
description = "what this scenario shows"
system_callback_objects = ["\\Callback\\PowerState"]   # a family setting (callback objects)

[[step]]                       # kernel events after a successful DriverEntry, in order
kind = "notify"                # one of the families' step kinds
hot_path = true                # optional: `cargo xtask bench` holds this step's callbacks to the
                               # driver's instruction budget (no step marked: all callbacks are)
object = "\\Callback\\PowerState"
argument1 = 1
irql = "DISPATCH_LEVEL"        # every step may say at which IRQL the kernel delivers it

[[race]]                       # armed before DriverUnload
kind = "notify-during-unregister"
object = "\\Callback\\PowerState"

[expect]
log = ["loaded", "unloaded"]   # substrings that must appear in the log, in this order
failures = []                  # fixture drivers only: failures xtask expects the audit to find
rules = []                     # fixture drivers only: audit checks (by name) that must fail
error = "deadlock"             # fixture drivers only: the error kind a run must end with
fault_sweep = false            # fixture drivers only: xtask runs this scenario with --faults
                               # (true), or with --faults --fault-phase DriverEntry|DriverUnload

[[variant]]                    # one more scenario run, on a fresh machine, after the main one
name = "unload with no flow"   # the run is reported as "scenario: <name>"
service_parameters = {}        # any family setting may be given again; the rest is inherited
step = [{ kind = "notify", object = "\\Callback\\PowerState" }]   # its own steps and races
expect = { log = ["unloaded"] }
```

Field types: `name` (a kernel path starting with a backslash), `text`, `u64`, `u32`, `bool`,
`irql`, `names` / `texts` (lists), `table` (a TOML table, checked by the family).
"""

import tomllib

from .errors import HarnessError
from .irql import PASSIVE_LEVEL, irql_name, parse_irql

REQUIRED = object()
GENERIC_KEYS = {'description', 'step', 'race', 'expect', 'variant'}
VARIANT_KEYS = {'name', 'description', 'step', 'race', 'expect'}


class Step:
    """One step or race: its kind, the family that handles it, and its validated fields."""

    def __init__(self, kind, family, fields, irql):
        self.kind = kind
        self.family = family
        self.fields = fields
        self.irql = irql
        self.hot_path = False

    def __getitem__(self, key):
        return self.fields[key]

    def get(self, key, default=None):
        return self.fields.get(key, default)

    def label(self):
        parts = []
        for key, value in self.fields.items():
            if isinstance(value, int) and not isinstance(value, bool):
                parts.append('%s=0x%x' % (key, value))
            else:
                parts.append('%s=%s' % (key, value))
        at = '' if self.irql == PASSIVE_LEVEL else ' at %s' % irql_name(self.irql)
        return '%s %s%s' % (self.kind, ', '.join(parts), at)


class Scenario:
    def __init__(self, path, description, config, steps, races, expect_log, expect_failures,
                 name=None, variants=()):
        self.path = path
        self.description = description
        self.config = config
        self.steps = steps
        self.races = races
        self.expect_log = expect_log
        self.expect_failures = expect_failures
        self.name = name                  # a variant's name; None for the main scenario
        self.variants = list(variants)    # Scenario objects, each run on its own machine


def _check(kind, value, where, key):
    def bad(what):
        return HarnessError('%s: %s must be %s' % (where, key, what))

    if kind == 'name':
        if not isinstance(value, str) or not value.startswith('\\'):
            raise bad('a kernel name starting with a backslash, such as "\\\\Callback\\\\PowerState"')
    elif kind == 'text':
        if not isinstance(value, str):
            raise bad('a string')
    elif kind in ('u64', 'u32'):
        bits = 64 if kind == 'u64' else 32
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << bits:
            raise bad('an unsigned %d-bit integer' % bits)
    elif kind == 'bool':
        if not isinstance(value, bool):
            raise bad('true or false')
    elif kind == 'names':
        if not isinstance(value, list):
            raise bad('a list of kernel names')
        for v in value:
            _check('name', v, where, key)
    elif kind == 'texts':
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad('a list of strings')
    elif kind == 'table':
        if not isinstance(value, (dict, list)):
            raise bad('a table')
    else:
        raise AssertionError('unknown field type %r' % kind)
    return value


def _fields(spec, table, where):
    fields = {}
    for key, (kind, default) in spec.items():
        if key in table:
            fields[key] = _check(kind, table[key], where, key)
        elif default is REQUIRED:
            raise HarnessError('%s: %s is required' % (where, key))
        elif default is not None:
            fields[key] = default
    return fields


def _entry(table, kinds, where):
    if not isinstance(table, dict):
        raise HarnessError('%s must be a table' % where)
    kind = table.get('kind')
    if kind not in kinds:
        raise HarnessError('%s: unknown kind %r (known: %s)' % (where, kind, ', '.join(sorted(kinds))))
    family, spec = kinds[kind]
    unknown = set(table) - set(spec) - {'kind', 'irql', 'hot_path'}
    if unknown:
        raise HarnessError('%s: unknown key(s) %s for kind %r (known: %s)' % (
            where, ', '.join(sorted(unknown)), kind, ', '.join(sorted(set(spec) | {'irql'}))))
    try:
        irql = parse_irql(table['irql']) if 'irql' in table else PASSIVE_LEVEL
    except (ValueError, AttributeError) as e:
        raise HarnessError('%s: %s' % (where, e)) from None
    step = Step(kind, family, _fields(spec, table, where), irql)
    step.hot_path = _check('bool', table.get('hot_path', False), where, 'hot_path')
    return step


def load(path, families):
    """Reads and validates the scenario at `path` against `families` (families.load_scenario passes
    the kernel's own; this module imports none of them, so the families may import it)."""
    try:
        with open(path, 'rb') as f:
            data = tomllib.load(f)
    except OSError as e:
        raise HarnessError('cannot read scenario %s: %s' % (path, e.strerror)) from None
    except tomllib.TOMLDecodeError as e:
        raise HarnessError('scenario %s is not valid TOML: %s' % (path, e)) from None
    config_spec, steps, races = {}, {}, {}
    for family in families:
        config_spec.update(getattr(family, 'CONFIG', {}))
        steps.update({k: (family, spec) for k, spec in getattr(family, 'STEPS', {}).items()})
        races.update({k: (family, spec) for k, spec in getattr(family, 'RACES', {}).items()})
    unknown = set(data) - GENERIC_KEYS - set(config_spec)
    if unknown:
        raise HarnessError('scenario %s: unknown key(s) %s' % (path, ', '.join(sorted(unknown))))
    config = _fields(config_spec, data, 'scenario %s' % path)
    step_list, race_list, log, failures = _runs(data, steps, races, str(path))
    variants = []
    for i, v in enumerate(data.get('variant', [])):
        where = '%s: variant %d' % (path, i + 1)
        if not isinstance(v, dict) or not isinstance(v.get('name'), str):
            raise HarnessError('%s: a variant is a table with a name' % where)
        unknown = set(v) - VARIANT_KEYS - set(config_spec)
        if unknown:
            raise HarnessError('%s: unknown key(s) %s' % (where, ', '.join(sorted(unknown))))
        v_config = dict(config)
        v_config.update(_fields({k: (kind, None) for k, (kind, _d) in config_spec.items() if k in v}, v, where))
        v_steps, v_races, v_log, _ = _runs(v, steps, races, '%s (%s)' % (where, v['name']))
        variants.append(Scenario(path, v.get('description', ''), v_config, v_steps, v_races, v_log, [],
                                 name=v['name']))
    return Scenario(path, data.get('description', ''), config, step_list, race_list, log, failures,
                    variants=variants)


def _runs(data, steps, races, where):
    step_list = [_entry(s, steps, '%s: step %d' % (where, i + 1)) for i, s in enumerate(data.get('step', []))]
    race_list = [_entry(r, races, '%s: race %d' % (where, i + 1)) for i, r in enumerate(data.get('race', []))]
    expect = data.get('expect', {})
    unknown = set(expect) - {'log', 'failures', 'fault_sweep', 'rules', 'error'}
    if unknown:
        raise HarnessError('scenario %s: unknown key(s) in [expect]: %s' % (where, ', '.join(sorted(unknown))))
    log = _check('texts', expect.get('log', []), 'scenario %s' % where, 'expect.log')
    failures = _check('texts', expect.get('failures', []), 'scenario %s' % where, 'expect.failures')
    return step_list, race_list, log, failures
