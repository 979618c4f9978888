#!/usr/bin/env python3
"""Runs a driver image in the emulated kernel and audits its teardown. See REPORT.md."""

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from emukernel import batch, bench  # noqa: E402
from emukernel import run as runner  # noqa: E402
from emukernel.errors import HarnessError  # noqa: E402
from emukernel.families import load_scenario  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description='Run a driver in the emulated kernel and audit it.')
    parser.add_argument('--image', help='the x64 .sys to run')
    parser.add_argument('--scenario', help="the driver's scenario.toml")
    parser.add_argument('--report', help='where to write the JSON report')
    parser.add_argument('--faults', action='store_true',
                        help='also run once per fallible call DriverEntry and DriverUnload make, with '
                             'that call failing')
    parser.add_argument('--fault-phase', choices=('DriverEntry', 'DriverUnload'),
                        help='with --faults: only the fallible calls of this phase')
    parser.add_argument('--no-variants', action='store_true',
                        help="only the scenario run: not the scenario's variants (with --faults, "
                             'the teardown sweep takes its calls from the scenario run alone)')
    parser.add_argument('--count-instructions', action='store_true',
                        help='count the instructions each callback executes inside the image')
    parser.add_argument('--jobs', type=int, default=1, metavar='N',
                        help='run the variant and fault runs (with --batch: the drivers too) in N '
                             'processes at a time (the reports are the same)')
    parser.add_argument('--batch', metavar='PLAN',
                        help='run every entry of this JSON plan (batch.py) in this one process: '
                             'instead of --image, --scenario, --report and their options')
    parser.add_argument('--bench', action='store_true',
                        help='measure instead of audit: kernel-call dispatch rate and run times (bench.py)')
    parser.add_argument('--bench-run', action='append', default=[], metavar='NAME',
                        help='with --bench: also time this scenario run ("scenario" or a variant name)')
    args = parser.parse_args(argv)
    if args.batch:
        if args.image or args.scenario or args.report or args.bench:
            parser.error('--batch takes the runs from its plan: no --image, --scenario, --report or --bench')
        try:
            return batch.run(args.batch, max(1, args.jobs), run_one, sys.stderr)
        except HarnessError as e:
            print('harness: error: %s' % e, file=sys.stderr)
            return 2
    missing = [name for name in ('image', 'scenario', 'report') if getattr(args, name) is None]
    if missing:
        parser.error('the following arguments are required: %s' % ', '.join('--' + m for m in missing))
    if args.bench:
        try:
            scenario = _inputs(args.image, args.scenario)
            _write_atomically(args.report, json.dumps(bench.measure(
                os.path.abspath(args.image), scenario, args.bench_run), indent=2) + '\n')
            return 0
        except (HarnessError, bench.BenchError) as e:
            print('harness: error: %s' % e, file=sys.stderr)
            return 2
    entry = {'image': args.image, 'scenario': args.scenario, 'report': args.report, 'faults': args.faults,
             'fault_phase': args.fault_phase, 'count_instructions': args.count_instructions,
             'variants': not args.no_variants}
    code, error = run_one(entry, max(1, args.jobs), _progress)
    if error:
        print('harness: error: %s' % error, file=sys.stderr)
    return code


def run_one(entry, jobs, progress):
    """One driver's runs as `entry` (batch.py's plan entry) says, its report written: (exit status,
    error message or None). 0: every run passed; 1: a run failed; 2: nothing could be run."""
    try:
        scenario = _inputs(entry['image'], entry['scenario'])
        report = runner.run_all(os.path.abspath(entry['image']), scenario, entry['faults'],
                                entry['count_instructions'], progress=progress,
                                fault_phase=entry['fault_phase'], jobs=jobs,
                                variants=entry['variants'])
    except HarnessError as e:
        return 2, str(e)
    _write_atomically(entry['report'], json.dumps(report, indent=2) + '\n')
    return (0 if report['passed'] else 1), None


def _inputs(image, scenario_path):
    scenario = load_scenario(scenario_path)
    if not os.path.isfile(image):
        raise HarnessError('no image at %s (build it first: cargo xtask build)' % image)
    with open(image, 'rb') as f:
        head = f.read(2)
    if head != b'MZ':
        raise HarnessError('%s is not a PE image' % image)
    return scenario


def _progress(text):
    print(text, file=sys.stderr, flush=True)


def _write_atomically(path, text):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.report-', dir=directory)
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


if __name__ == '__main__':
    sys.exit(main())
