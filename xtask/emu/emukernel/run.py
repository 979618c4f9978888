"""One driver, all its runs: the scenario run, then (with --faults) one run per fallible call."""

import logging
import os

from .errors import HarnessError
from .families import FAMILIES
from .machine import Fault, Machine

logging.getLogger('speakeasy').setLevel(logging.CRITICAL)


def _nt_success(status):
    return status is not None and status < 0x80000000


def _status(value):
    return 'none' if value is None else '0x%08X' % value


class Run:
    """One emulation of the driver: DriverEntry, the scenario's events, DriverUnload, the audit."""

    def __init__(self, image, scenario, fault=None, count_instructions=False):
        self.scenario = scenario
        self.fault = fault
        self.m = Machine(image, fault=fault, count_instructions=count_instructions)
        self.models = [family(self.m, scenario.config) for family in FAMILIES]
        self.by_family = {type(model): model for model in self.models}
        self.steps = []
        self.budgeted = {}     # (model, index of a callback count) -> counted against the budget
        self.unloaded = False
        self.status = None
        self.count_instructions = count_instructions
        self.unload_cost = None           # (instructions in the image, kernel calls) of DriverUnload

    def execute(self, run_steps):
        m = self.m
        for model in self.models:
            getattr(model, 'before_driver_entry', lambda: None)()
        self.status = m.run_driver_entry()
        if not _nt_success(self.status) or m.stop is not None:
            return
        if run_steps:
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
            self.unloaded = m.run_error() is None
            self.unload_cost = (m.executed - executed, len(m.calls) - calls)

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
        for model in self.models:
            if hasattr(model, 'audit'):
                audit.extend(model.audit())
        if self.fault is None and self.scenario.expect_log:
            audit.append(self._log_check())
        audit.append(('the kernel was never stopped (no bugcheck, fault, deadlock or rule broken)',
                      error is None, error['message'] if error else 'clean'))
        failures = ['%s: %s' % (check, detail) for check, ok, detail in audit if not ok]
        failures += ['step failed: %s (%s)' % (s['step'], s['detail']) for s in self.steps if not s['ok']]
        if self.unloaded:
            for model in self.models:
                failures += ['race never happened: %s' % r for r in getattr(model, 'unfired_races', list)()]
        return {
            'name': name,
            'kind': kind,
            'fault': self.fault.to_json() if self.fault else None,
            'passed': not failures,
            'driver_entry': {'status': self.status, 'expected': expected},
            'unloaded': self.unloaded,
            'log': list(m.log),
            'steps': self.steps,
            'audit': [{'check': c, 'ok': ok, 'detail': d} for c, ok, d in audit],
            'failures': failures,
            'error': error,
            'callbacks': self._callback_counts(),
            'measurements': self._measurements(),
        }

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


def run_all(image, scenario, faults, count_instructions, progress, jobs=1):
    """The scenario run, then each variant and (with `faults`) each fault run, each on a fresh
    machine. The runs after the first are independent: with `jobs` > 1 they run in that many
    processes; the report and the progress lines keep the same order either way."""
    # The image's name: two images built from one crate (variants) share a scenario folder.
    driver = os.path.splitext(os.path.basename(image))[0]
    routines = {}
    runs = []

    progress('%s: scenario run' % driver)
    first = Run(image, scenario, count_instructions=count_instructions)
    first.execute(run_steps=True)
    runs.append(first.report('scenario', 'scenario'))
    routines.update(first.routines())

    plans = [('scenario: %s' % variant.name, 'scenario', variant, None, True)
             for variant in scenario.variants]
    if faults:
        if not _nt_success(first.status):
            raise HarnessError('the scenario run failed in DriverEntry (%s); a fault sweep needs a '
                               'DriverEntry that succeeds' % _status(first.status))
        plan = list(first.m.fallible_calls)
        for index, (routine, occurrence) in enumerate(plan, 1):
            probe = first.m.fallible[routine]
            args = next(c.args for c in _nth_call(first.m.calls, routine, occurrence))
            value, label = probe(args)
            name = 'fault %d/%d: %s call #%d fails (%s)' % (index, len(plan), routine, occurrence, label)
            plans.append((name, 'fault', scenario, Fault(routine, occurrence, value, label), False))
    tasks = [(image, s, fault, count_instructions if kind == 'scenario' else False, steps, name, kind)
             for name, kind, s, fault, steps in plans]
    first = None  # its machine is no longer needed: free it before forking
    for report, used in _map(_one_run, tasks, jobs, driver, progress):
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


def versions():
    """What ran the driver: the emulator, its CPU engine and the interpreter."""
    import platform

    import speakeasy.version
    import unicorn
    return {'speakeasy': speakeasy.version.__version__, 'unicorn': unicorn.__version__,
            'python': platform.python_version()}


def _one_run(task):
    image, scenario, fault, count_instructions, run_steps, name, kind = task
    run = Run(image, scenario, fault=fault, count_instructions=count_instructions)
    run.execute(run_steps=run_steps)
    return run.report(name, kind), run.routines()


def _map(function, tasks, jobs, driver, progress):
    """`function` over `tasks`, in order; with jobs > 1 in forked worker processes. Each task's
    progress line is shown when its result is taken, so the lines keep the tasks' order."""
    if jobs <= 1 or len(tasks) < 2:
        for task in tasks:
            progress('%s: %s' % (driver, task[5]))
            yield function(task)
        return
    import multiprocessing
    with multiprocessing.get_context('fork').Pool(min(jobs, len(tasks))) as pool:
        for task, result in zip(tasks, pool.imap(function, tasks)):
            progress('%s: %s' % (driver, task[5]))
            yield result


def _nth_call(calls, routine, occurrence):
    seen = 0
    for call in calls:
        if call.routine == routine and call.phase == 'DriverEntry':
            seen += 1
            if seen == occurrence:
                yield call
                return
