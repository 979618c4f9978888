"""`harness.py --bench`: how fast the emulated kernel runs, for `cargo xtask bench`.

- **Kernel-call dispatch**: after the driver's DriverEntry, a loop of emulated code calls a routine
  that does nothing through an import address of the image, as the driver's own `call [__imp_X]`
  does, `DISPATCH_CALLS` times: the whole way of a kernel call (the fetch at the import address,
  speakeasy's handler lookup and argument reading, `Machine._dispatch` with its record and checks,
  the return), without the cost of any one routine's model.
- **Runs**: the time of each named scenario run (a fresh machine: load, DriverEntry, the
  steps, DriverUnload, the audit) with its kernel calls, e.g. wfp-callout's
  "unload with 1,000 live flows": the best of three by CPU time, each run's time listed.
"""

import gc
import struct
import time

from .run import Run, cycle_collection_paused

DISPATCH_CALLS = 20_000


class BenchError(Exception):
    """A measurement could not be made."""
BENCH_MODULE, BENCH_ROUTINE = 'xtask', 'BenchNoOp'


def dispatch_rate(image, scenario, calls=DISPATCH_CALLS):
    """Calls per second of a no-op kernel routine reached through an import address."""
    run = Run(image, scenario)
    m = run.m
    status = m.run_driver_entry()
    if status is None or status >= 0x80000000 or m.stop is not None:
        raise BenchError('DriverEntry did not succeed (%s): no machine to measure' % status)
    reached = []
    m.attach(BENCH_MODULE, BENCH_ROUTINE, 0, lambda argv, orig: reached.append(1) or 0)
    # One more import address, after the image's own, resolved like theirs.
    table = m.module.import_table
    thunk = max(table) + 4
    table[thunk] = (BENCH_MODULE, BENCH_ROUTINE)
    loop = m.alloc(0x100, 'bench.loop')
    code = bytes.fromhex('53' '4883ec20')                      # push rbx; sub rsp, 0x20
    code += b'\x48\xbb' + struct.pack('<Q', calls)             # mov rbx, calls
    body = len(code)
    code += b'\x48\xb8' + struct.pack('<Q', thunk)             # mov rax, thunk
    code += b'\xff\xd0'                                        # call rax
    code += bytes.fromhex('48ffcb')                            # dec rbx
    code += bytes([0x75, (body - (len(code) + 2)) & 0xFF])     # jnz body
    code += bytes.fromhex('4883c420' '5b' 'c3')                # add rsp, 0x20; pop rbx; ret
    m.write(loop, code)
    emu, module = m.se.emu, m.module
    # speakeasy resolves imports through the module the run started in: this one starts here.
    m.on_pc(loop, lambda: setattr(emu, 'curr_mod', module))
    # As in a run (Run.execute): what exists is frozen and the cycle collector paused. Measured
    # with the collector running, the rate depended on how much the harness had imported before
    # (a full collection's frequency follows the count of older objects): 14% lower once unicorn
    # stopped importing pkg_resources, though the runs themselves did not slow down.
    gc.freeze()
    with cycle_collection_paused():
        start, cpu = time.perf_counter(), time.process_time()
        m.call(loop, [], phase='bench')
        took, cpu = time.perf_counter() - start, time.process_time() - cpu
    if len(reached) != calls or m.run_error():
        raise BenchError('the dispatch loop made %d of %d calls (%s)' % (len(reached), calls, m.run_error()))
    return {'calls': calls, 'seconds': took, 'cpu_seconds': cpu, 'calls_per_second': calls / took}


def run_times(image, scenario, names, repeats=3):
    """The wall time and kernel calls of each scenario run named in `names` ('scenario' or a
    variant's name): the best of `repeats` runs by CPU time (another process or the machine's
    neighbours only ever add time), with every run's CPU seconds beside it."""
    runs = [('scenario', scenario)] + [(v.name, v) for v in scenario.variants]
    out = []
    for name, s in runs:
        if name not in names:
            continue
        timed = []
        for _ in range(repeats):
            # As a run forked from the loaded harness starts (forks.py): what exists is frozen.
            gc.freeze()
            start, cpu = time.perf_counter(), time.process_time()
            run = Run(image, s)
            run.execute(run_steps=True)
            report = run.report(name, 'scenario')
            took, cpu = time.perf_counter() - start, time.process_time() - cpu
            timed.append({'run': name, 'seconds': took, 'cpu_seconds': cpu,
                          'kernel_calls': len(run.m.calls), 'passed': report['passed']})
            del run, report
        best = min(timed, key=lambda t: t['cpu_seconds'])
        best['passed'] = all(t['passed'] for t in timed)
        best['repeats'] = [round(t['cpu_seconds'], 3) for t in timed]
        out.append(best)
    missing = set(names) - {name for name, _ in runs}
    if missing:
        raise BenchError('no such run in the scenario: %s' % ', '.join(sorted(missing)))
    return out


def measure(image, scenario, run_names):
    """The `--bench` report: schema 1, the versions, the dispatch rate, the named runs' times."""
    import os

    from .run import versions
    return {'schema': 1, 'driver': os.path.splitext(os.path.basename(image))[0], 'image': image,
            'versions': versions(), 'dispatch': dispatch_rate(image, scenario),
            'runs': run_times(image, scenario, run_names)}


__all__ = ['BenchError', 'dispatch_rate', 'measure', 'run_times']
