#!/usr/bin/env python3
"""Runs a driver image in the emulated kernel and audits its teardown. See REPORT.md."""

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# unicorn 1.0.2 imports distutils only to find its library; the standard library's distutils answers
# that as setuptools' copy (the venv's default) does, and imports a third as much.
os.environ.setdefault('SETUPTOOLS_USE_DISTUTILS', 'stdlib')

from emukernel import bench  # noqa: E402
from emukernel import run as runner  # noqa: E402
from emukernel.errors import HarnessError  # noqa: E402
from emukernel.families import load_scenario  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description='Run a driver in the emulated kernel and audit it.')
    parser.add_argument('--image', required=True, help='the x64 .sys to run')
    parser.add_argument('--scenario', required=True, help="the driver's scenario.toml")
    parser.add_argument('--report', required=True, help='where to write the JSON report')
    parser.add_argument('--faults', action='store_true',
                        help='also run once per fallible call DriverEntry and DriverUnload make, with '
                             'that call failing')
    parser.add_argument('--fault-phase', choices=('DriverEntry', 'DriverUnload'),
                        help='with --faults: only the fallible calls of this phase')
    parser.add_argument('--count-instructions', action='store_true',
                        help='count the instructions each callback executes inside the image')
    parser.add_argument('--jobs', type=int, default=1, metavar='N',
                        help='run the variants and fault runs in N processes (the report is the same)')
    parser.add_argument('--bench', action='store_true',
                        help='measure instead of audit: kernel-call dispatch rate and run times (bench.py)')
    parser.add_argument('--bench-run', action='append', default=[], metavar='NAME',
                        help='with --bench: also time this scenario run ("scenario" or a variant name)')
    args = parser.parse_args(argv)

    try:
        scenario = load_scenario(args.scenario)
        if not os.path.isfile(args.image):
            raise HarnessError('no image at %s (build it first: cargo xtask build)' % args.image)
        with open(args.image, 'rb') as f:
            head = f.read(2)
        if head != b'MZ':
            raise HarnessError('%s is not a PE image' % args.image)
        if args.bench:
            _write_atomically(args.report, json.dumps(bench.measure(
                os.path.abspath(args.image), scenario, args.bench_run), indent=2) + '\n')
            return 0
        report = runner.run_all(os.path.abspath(args.image), scenario, args.faults,
                                args.count_instructions, progress=_progress, fault_phase=args.fault_phase,
                                jobs=max(1, args.jobs))
    except (HarnessError, bench.BenchError) as e:
        print('harness: error: %s' % e, file=sys.stderr)
        return 2

    _write_atomically(args.report, json.dumps(report, indent=2) + '\n')
    return 0 if report['passed'] else 1


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
