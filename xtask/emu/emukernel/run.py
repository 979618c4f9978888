"""One driver, all its runs: the scenario run, then (with --faults) one run per fallible call."""

import contextlib
import gc
import logging
import os

from . import inflight
from .errors import HarnessError
from .families import FAMILIES
from .forks import fork_map
from .machine import Fault, Loaded, Machine, fault_choices

logging.getLogger('speakeasy').setLevel(logging.CRITICAL)


def _nt_success(status):
    return status is not None and status < 0x80000000


def _status(value):
    return 'none' if value is None else '0x%08X' % value


PROBE_CHECK = 'no freed memory reachable from a registered callback'
LEAK_LOG_CHECK = 'what teardown left behind after the injected failure is logged'
# What a DriverUnload fault may leave behind, if the driver logs it: registrations whose
# unregistration failed, and what they can still reach (never freed under a live callback).
LEFTOVER_CHECKS = (
    'every callback registration undone', 'every callback-object reference released',
    'every registry callback unregistered (CmUnRegisterCallback)', 'every PnP notification registration undone',
    'no PnP registration still references the driver object', 'every pool allocation freed',
    'every device object deleted', 'every callout unregistered (FwpsCalloutUnregisterById0 succeeded)',
    'every flow context deleted (flowDeleteFn called once for each)',
    'every engine session closed, no transaction left open', 'no filter left in the engine',
    'control device deleted by the driver (WdfObjectDelete)', 'every barrier drained before teardown ended',
)
# Teardown faults per routine: its first calls only, in the quickest scenario that makes it (a
# thousand FwpsFlowRemoveContext0 calls of one drain take the same path).
MAX_UNLOAD_OCCURRENCES = 3


@contextlib.contextmanager
def cycle_collection_paused():
    """Python's cyclic garbage collector paused for the duration, as it was before after it.

    What a run creates (call records, events, the models' state) lives until its report is taken,
    and a run makes no reference cycles to speak of (the 1,000-flow run: none from its flows; the
    few thousand objects in cycles per run come from speakeasy's load, before this). The collector
    runs on allocation counts, so during a run it walks the growing set of live objects again and
    again and frees nothing: about 150 collections, a tenth of the 1,000-flow run's CPU time.
    Reference counting frees everything else as always; the paused collector resumes afterwards."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class Run:
    """One emulation of the driver: DriverEntry, the scenario's events, DriverUnload, the audit."""

    def __init__(self, image, scenario, fault=None, count_instructions=False, loaded=None):
        self.scenario = scenario
        self.fault = fault
        self.m = Machine(image, fault=fault, count_instructions=count_instructions, loaded=loaded)
        self.models = [family(self.m, scenario.config) for family in FAMILIES]
        self.by_family = {type(model): model for model in self.models}
        self.steps = []
        self.budgeted = {}     # (model, index of a callback count) -> counted against the budget
        self.unloaded = False
        self.status = None
        self.count_instructions = count_instructions
        self.probed = []                  # callbacks called after the run (see _probe)
        self.audited = None               # the models' audit, taken before the probe
        self.probe_stop = None
        self.unload_cost = None           # (instructions in the image, kernel calls) of DriverUnload

    def execute(self, run_steps):
        with cycle_collection_paused():
            self._execute(run_steps)

    def _execute(self, run_steps):
        m = self.m
        for model in self.models:
            getattr(model, 'before_driver_entry', lambda: None)()
        m.events.driver_entry()
        self.status = m.run_driver_entry()
        m.events.driver_entry_returned(self.status)
        inflight.of(m).land('DriverEntry')
        if not _nt_success(self.status) or m.stop is not None:
            return
        if run_steps:
            m.stage = 'steps'
            for step in self.scenario.steps:
                before = {id(model): len(getattr(model, 'callback_counts', [])) for model in self.models}
                ok, detail = self.by_family[step.family].run_step(step)
                for model in self.models:
                    for i in range(before[id(model)], len(getattr(model, 'callback_counts', []))):
                        self.budgeted[(id(model), i)] = step.hot_path
                self.steps.append({'step': step.label(), 'ok': ok and m.stop is None, 'detail': detail})
                if m.run_error():
                    return
            for race in self.scenario.races:
                self.by_family[race.family].arm_race(race)
        unload = m.unload_routine()
        if unload:
            executed, calls = m.executed, len(m.calls)
            m.call(unload, [m.driver_object()], phase='DriverUnload')
            inflight.of(m).land('DriverUnload')
            self.unloaded = m.run_error() is None
            self.unload_cost = (m.executed - executed, len(m.calls) - calls)
        self._probe()

    def _audit_models(self):
        out = []
        for model in self.models:
            if hasattr(model, 'audit'):
                out.extend(model.audit())
        return out

    def _probe(self):
        """After the run: every callback still registered is called once more, as the kernel may call
        it at any time (a flow ending, a notification). Freed pool is poisoned and watched, so a
        callback that reaches memory the driver freed is a use after free."""
        m = self.m
        self.probed = []
        # The verdicts on what the driver left are taken before the probe changes anything.
        self.audited = self._audit_models()
        if not _nt_success(self.status) or m.stop is not None or m.run_error() is not None:
            return
        m.stage = 'probe'
        for model in self.models:
            probe = getattr(model, 'probe', None)
            if probe is None:
                continue
            self.probed += probe()
            if m.stop is not None:
                self.probe_stop = m.stop
                return

    def report(self, name, kind):
        m = self.m
        error = m.run_error()
        audit = []
        expected = 'success' if self.fault is None else 'failure'
        entry_ok = _nt_success(self.status)
        if self.fault is None:
            audit.append(('DriverEntry succeeded', entry_ok, 'returned %s' % _status(self.status)))
        else:
            audit.append(self._fault_check())
        if entry_ok:
            has_unload = bool(m.unload_routine()) or self.unloaded
            audit.append(('DriverUnload set, so the driver can be unloaded', has_unload,
                          'DriverObject->DriverUnload = %s' % ('set' if has_unload else 'NULL')))
        audit.extend(self.audited if self.audited is not None else self._audit_models())
        if entry_ok:
            audit.append(self._probe_check())
        tolerated = set()
        if self.fault is not None and self.fault.phase == 'DriverUnload':
            audit, tolerated = self._leftovers(audit)
        if self.fault is None and self.scenario.expect_log:
            audit.append(self._log_check())
        audit.append(('the kernel was never stopped (no bugcheck, fault, deadlock or rule broken)',
                      error is None, error['message'] if error else 'clean'))
        failures = ['%s: %s' % (check, detail) for check, ok, detail in audit if not ok]
        failures += ['step failed: %s (%s)' % (s['step'], s['detail']) for s in self.steps if not s['ok']]
        # A scenario's armed race needs the unregistration it rides on; in a teardown-fault run the
        # injected failure may have prevented exactly that, so an unfired race is not a failure
        # there (the rules above still judge what the driver did about the failure).
        unload_fault = self.fault is not None and self.fault.phase == 'DriverUnload'
        if self.unloaded and not unload_fault:
            for model in self.models:
                failures += ['race never happened: %s' % r for r in getattr(model, 'unfired_races', list)()]
        audit = [dict({'check': c, 'ok': ok, 'detail': d}, **({'tolerated': True} if c in tolerated else {}))
                 for c, ok, d in audit]
        events, dropped = m.events.finish(audit, error)
        return {
            'name': name,
            'kind': kind,
            'fault': self.fault.to_json() if self.fault else None,
            'passed': not failures,
            'driver_entry': {'status': self.status, 'expected': expected},
            'unloaded': self.unloaded,
            'log': list(m.log),
            'etw': list(m.etw.events) if getattr(m, 'etw', None) else [],
            'steps': self.steps,
            'audit': audit,
            'failures': failures,
            'error': error,
            'callbacks': self._callback_counts(),
            'measurements': self._measurements(),
            'events': events,
            'events_dropped': dropped,
        }

    def _probe_check(self):
        if self.probe_stop is not None:
            return (PROBE_CHECK, False, 'calling the still-registered callbacks after the run: %s'
                    % self.probe_stop.message)
        if not self.probed:
            return (PROBE_CHECK, True, 'no callback left registered')
        return (PROBE_CHECK, True, 'called after the run, none touched freed memory: '
                + '; '.join(self.probed))

    def _leftovers(self, audit):
        """A DriverUnload fault run: what the failed call forced the driver to leave behind is
        tolerated if, and only if, the driver logged it (a line after the failure naming the
        routine or the status)."""
        left = [(c, d) for c, ok, d in audit if not ok and c in LEFTOVER_CHECKS]
        if not left:
            return audit + [(LEAK_LOG_CHECK, True, 'nothing was left behind')], set()
        f = self.fault
        after = self.m.log[self.m.fault_log_at or 0:]
        status = '%08x' % (f.value & 0xFFFFFFFF)
        name = f.routine.split('.', 1)[-1].lower()
        logged = [line for line in after if status in line.lower() or name in line.lower()]
        what = '; '.join('%s (%s)' % (c, d) for c, d in left)
        if not logged:
            return audit + [(LEAK_LOG_CHECK, False, 'left behind without a log line naming %s or %s '
                             'after the failure: %s' % (f.routine, status.upper(), what))], set()
        out = []
        for c, ok, d in audit:
            if not ok and c in LEFTOVER_CHECKS:
                out.append((c, True, 'left behind after the injected failure, and logged: ' + d))
            else:
                out.append((c, ok, d))
        return out + [(LEAK_LOG_CHECK, True, 'logged: %s' % logged[0][:200])], {c for c, _d in left}

    def _measurements(self):
        """With --count-instructions: what DriverUnload cost, nested callbacks included."""
        if not self.count_instructions or self.unload_cost is None:
            return []
        instructions, calls = self.unload_cost
        return [{'measure': 'DriverUnload', 'instructions': instructions, 'kernel_calls': calls}]

    def _callback_counts(self):
        """Instruction counts per callback invocation. `budgeted` marks those the driver's budget
        applies to: the hot_path steps' callbacks, or every callback if no step is marked."""
        marked = any(step.hot_path for step in self.scenario.steps)
        out = []
        for model in self.models:
            for i, entry in enumerate(getattr(model, 'callback_counts', [])):
                label, callback, n = entry[0], entry[1], entry[-1]
                budgeted = self.budgeted.get((id(model), i), False) if marked else True
                out.append({'callback': callback, 'event': label, 'instructions': n, 'budgeted': budgeted})
        return out

    def _fault_check(self):
        f = self.fault
        if not self.m.fault_hit:
            return ('the injected failure was reached', False,
                    '%s call #%d never happened in this run' % (f.routine, f.occurrence))
        if _nt_success(self.status):
            return ('DriverEntry tolerated the failure and still set up completely', True,
                    'returned %s; the unload audit below applies' % _status(self.status))
        if f.phase == 'DriverUnload':
            return ('DriverUnload met the injected failure', True, '%s call #%d during DriverUnload: %s'
                    % (f.routine, f.occurrence, f.label))
        if f.value >= 0x80000000 and self.status != f.value:
            return ('DriverEntry propagated the failure status', False,
                    'the routine failed with %s but DriverEntry returned %s' % (f.label, _status(self.status)))
        return ('DriverEntry failed and reported it', True, 'returned %s' % _status(self.status))

    def _log_check(self):
        position = 0
        missing = []
        for want in self.scenario.expect_log:
            for i in range(position, len(self.m.log)):
                if want in self.m.log[i]:
                    position = i + 1
                    break
            else:
                missing.append(want)
        return ('the expected log lines appeared, in order', not missing,
                'missing: ' + '; '.join(repr(x) for x in missing) if missing
                else '%d expected lines found' % len(self.scenario.expect_log))

    def routines(self):
        used = {}
        for call in self.m.calls:
            used[call.routine] = call.handled_by
        for run in self.m.se.emu.runs:
            for api in getattr(run, 'apis', []):
                name = api.get('api_name') if isinstance(api, dict) else None
                if name:
                    key = name.split('.')[0].lower() + '.' + name.split('.', 1)[-1]
                    used.setdefault(key, 'speakeasy')
        return used


def run_all(image, scenario, faults, count_instructions, progress, fault_phase=None, jobs=1,
            variants=True):
    """The scenario run, then each variant of the scenario (unless `variants` is false) and each
    fault run (with `faults`), each on a fresh machine: the image is loaded once and every run is
    a child process forked from that loaded, never-run state (forks.py), up to `jobs` at a time;
    the report and the progress lines keep the same order whatever `jobs` is.

    The fault sweep fails each fallible call DriverEntry made in the scenario run, and (unless
    `fault_phase` is 'DriverEntry') each fallible call DriverUnload makes, in the cheapest scenario
    or variant that makes it (cost: the kernel calls its run made, the same on every machine)."""
    # The image's name: two images built from one crate (variants) share a scenario folder.
    driver = os.path.splitext(os.path.basename(image))[0]
    loaded = Loaded(image)
    routines = {}
    runs = []

    def one(task):
        return _one_run(loaded, task)

    progress('%s: scenario run' % driver)
    first_task = (image, scenario, None, count_instructions, True, 'scenario', 'scenario')
    report, used, offered, first = next(fork_map(one, [first_task], 1))
    runs.append(report)
    routines.update(used)
    # (cost, order, scenario, teardown faults): what each scenario run offers the teardown sweep.
    swept = [(offered[0], 0, scenario, offered[1])]

    tasks = [(image, v, None, count_instructions, True, 'scenario: %s' % v.name, 'scenario')
             for v in (scenario.variants if variants else ())]
    for report, used, offered, _first in _map(one, tasks, jobs, driver, progress):
        runs.append(report)
        routines.update({k: v for k, v in used.items() if k not in routines})
        swept.append((offered[0], len(swept), scenario.variants[len(swept) - 1], offered[1]))

    if faults:
        status, entry_faults = first
        if not _nt_success(status):
            raise HarnessError('the scenario run failed in DriverEntry (%s); a fault sweep needs a '
                               'DriverEntry that succeeds' % _status(status))
        plan = []
        for routine, occurrence, value, label in entry_faults if fault_phase != 'DriverUnload' else ():
            plan.append((scenario, Fault(routine, occurrence, value, label, 'DriverEntry')))
        # Each routine DriverUnload calls is failed in the cheapest scenario (or variant) that calls
        # it, at each of its first MAX_UNLOAD_OCCURRENCES calls there: every fault run replays that
        # scenario's steps, and a costlier scenario makes the same calls on the same path.
        seen = set()
        cheapest_first = sorted(swept, key=lambda s: s[:2]) if fault_phase != 'DriverEntry' else ()
        for _cost, _order, source, offered in cheapest_first:
            routines_here = {routine for routine, _n, _v, _l in offered} - seen
            for routine, occurrence, value, label in offered:
                if routine in routines_here:
                    plan.append((source, Fault(routine, occurrence, value, label, 'DriverUnload')))
            seen |= routines_here
        tasks = []
        for index, (source, fault) in enumerate(plan, 1):
            where = '' if source is scenario else ' (scenario: %s)' % source.name
            name = 'fault %d/%d: %s call #%d %sfails (%s)%s' % (
                index, len(plan), fault.routine, fault.occurrence,
                'in DriverUnload ' if fault.phase == 'DriverUnload' else '', fault.label, where)
            tasks.append((image, source, fault, False, fault.phase == 'DriverUnload', name, 'fault'))
        for report, used, _offered, _first in _map(one, tasks, jobs, driver, progress):
            runs.append(report)
            routines.update({k: v for k, v in used.items() if k not in routines})

    split = {'speakeasy': sorted(k for k, v in routines.items() if v == 'speakeasy'),
             'modelled': sorted(k for k, v in routines.items() if v == 'model')}
    return {
        'schema': 1,
        'driver': driver,
        'image': image,
        'versions': versions(),
        'passed': all(r['passed'] for r in runs),
        'routines': split,
        'runs': runs,
    }


def _teardown_faults(run):
    """What a scenario run offers the teardown sweep: [(routine, occurrence, value, label)] for the
    first MAX_UNLOAD_OCCURRENCES calls of each fallible routine DriverUnload made (plain data, so it
    can come back from a worker process)."""
    offered = []
    for routine, occurrence in run.m.teardown_calls:
        if occurrence > MAX_UNLOAD_OCCURRENCES:
            continue
        args = next(c.args for c in _nth_call(run.m.calls, routine, occurrence, 'DriverUnload'))
        for value, label, _effect in fault_choices(run.m.teardown[routine], args):
            offered.append((routine, occurrence, value, label))
    return offered


def versions():
    """What ran the driver: the emulator, its CPU engine and the interpreter."""
    import platform

    import speakeasy.version
    import unicorn
    return {'speakeasy': speakeasy.version.__version__, 'unicorn': unicorn.__version__,
            'python': platform.python_version()}


def _one_run(loaded, task):
    """One run from the loaded image (in a forked child: its own copy): its report, the routines it
    used and, for a scenario run, its cost and what it offers the teardown sweep; for the first
    run also its DriverEntry status and the DriverEntry faults it offers, all as plain data."""
    image, scenario, fault, count_instructions, run_steps, name, kind = task
    run = Run(image, scenario, fault=fault, count_instructions=count_instructions, loaded=loaded)
    run.execute(run_steps=run_steps)
    offered = (len(run.m.calls), _teardown_faults(run)) if kind == 'scenario' else None
    first = None
    if fault is None and name == 'scenario':
        entry = []
        if _nt_success(run.status):
            for routine, occurrence in run.m.fallible_calls:
                args = next(c.args for c in _nth_call(run.m.calls, routine, occurrence, 'DriverEntry'))
                for value, label, _effect in fault_choices(run.m.fallible[routine], args):
                    entry.append((routine, occurrence, value, label))
        first = (run.status, entry)
    return run.report(name, kind), run.routines(), offered, first


def _map(function, tasks, jobs, driver, progress):
    """`function` over `tasks`, in order, each in a forked child (forks.py), `jobs` at a time.
    Each task's progress line is shown when its result is taken, so the lines keep the tasks'
    order."""
    for task, result in zip(tasks, fork_map(function, tasks, jobs), strict=True):
        progress('%s: %s' % (driver, task[5]))
        yield result


def _nth_call(calls, routine, occurrence, stage):
    seen = 0
    for call in calls:
        if call.routine == routine and call.stage == stage:
            seen += 1
            if seen == occurrence:
                yield call
                return
