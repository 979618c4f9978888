"""`harness.py --batch PLAN`: every driver of a plan in one harness process.

Starting the harness costs about half a second (Python, speakeasy, unicorn and their imports) before
anything runs; `cargo xtask emulate`, `deploy` and the test stages run several drivers, so they give
the harness one plan and it pays that once. Each entry runs in a child forked from this process
(forks.py), `jobs` entries at a time, each with `jobs / entries` processes of its own for its
variant and fault runs (at least one), exactly as `harness.py --image ... --report ...` would run it:
the same report, written to the entry's `report` path.

The plan, JSON: `{"schema": 1, "entries": [{"name": "ex-callback", "image": "...sys",
"scenario": "...toml", "report": "...json", "faults": false, "fault_phase": null,
"count_instructions": false, "variants": true}, ...]}` (`fault_phase`: null, "DriverEntry" or
"DriverUnload"; `variants`: false for the scenario run alone, as `--no-variants`).

What it prints on stderr, one block per entry in the plan's order, each as soon as it and every
earlier entry are done: `@entry NAME`, the entry's progress lines, `harness: error: ...` if it
could not run, then `@exit N` with the status `harness.py` would have exited with for it (0 passed,
1 a run failed, 2 could not run, 70 the harness itself failed: its traceback is in the block).
The batch exits 0 when every entry has its block, 2 when the plan is unusable.
"""

import json
import traceback

from .errors import HarnessError
from .forks import fork_map

PLAN_SCHEMA = 1
ENTRY_KEYS = {'name': str, 'image': str, 'scenario': str, 'report': str, 'faults': bool,
              'fault_phase': (str, type(None)), 'count_instructions': bool, 'variants': bool}
FAULT_PHASES = (None, 'DriverEntry', 'DriverUnload')
INTERNAL_ERROR = 70


def read_plan(path):
    """The plan's entries, checked: a bad plan is an error naming the file and the entry."""
    try:
        with open(path, encoding='utf-8') as f:
            plan = json.load(f)
    except OSError as e:
        raise HarnessError('cannot read the batch plan %s: %s' % (path, e.strerror)) from None
    except ValueError as e:
        raise HarnessError('the batch plan %s is not JSON: %s' % (path, e)) from None
    if not isinstance(plan, dict) or plan.get('schema') != PLAN_SCHEMA or not isinstance(plan.get('entries'), list):
        raise HarnessError('the batch plan %s must be {"schema": %d, "entries": [...]}' % (path, PLAN_SCHEMA))
    for i, entry in enumerate(plan['entries'], 1):
        where = 'the batch plan %s: entry %d' % (path, i)
        if not isinstance(entry, dict) or set(entry) != set(ENTRY_KEYS):
            raise HarnessError('%s must have exactly the keys %s' % (where, ', '.join(sorted(ENTRY_KEYS))))
        for key, kind in ENTRY_KEYS.items():
            if not isinstance(entry[key], kind):
                raise HarnessError('%s: %s has the wrong type' % (where, key))
        if entry['fault_phase'] not in FAULT_PHASES:
            raise HarnessError('%s: fault_phase must be null, "DriverEntry" or "DriverUnload"' % where)
    if not plan['entries']:
        raise HarnessError('the batch plan %s has no entries' % path)
    return plan['entries']


def run(plan_path, jobs, run_one, out):
    """Runs every entry with `run_one(entry, jobs, progress) -> (exit, error)`; prints the blocks."""
    entries = read_plan(plan_path)
    inner = max(1, jobs // min(jobs, len(entries)))

    def one(entry):
        lines = []
        try:
            code, error = run_one(entry, inner, lines.append)
        except Exception:
            code, error = INTERNAL_ERROR, 'internal error:\n' + traceback.format_exc().rstrip()
        return code, error, lines

    for entry, (ok, value) in zip(entries, fork_map(one, entries, jobs, settle=True), strict=True):
        code, error, lines = value if ok else (INTERNAL_ERROR, 'internal error: %s' % value, [])
        print('@entry %s' % entry['name'], file=out)
        for line in lines:
            print(line, file=out)
        if error:
            print('harness: error: %s' % error, file=out)
        print('@exit %d' % code, file=out, flush=True)
    return 0
