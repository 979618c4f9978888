"""The kernel's parts, one class per family of routines, in the order they attach to a machine.

A family class is built as `Family(machine, scenario_config)` and may declare:
- `CONFIG`: top-level scenario settings it reads, `{key: (type, default)}` (see scenario.py);
- `STEPS` / `RACES`: the scenario events it delivers, `{kind: {field: (type, default)}}`, with
  `run_step(step) -> (ok, detail)`, `arm_race(step)` and `unfired_races() -> [label]`;
- `audit() -> [(check, ok, detail)]`: what must hold at the end of a run.
"""

from .callbacks import ExCallbacks
from .cm import Registry
from .crt import Runtime
from .debug import Debug
from .etw import Etw
from .inflight import InFlight
from .io import Devices
from .irql_table import IrqlChecks
from .lockorder import LockOrder
from .mutex import GuardedMutexes
from .pnp import PnpNotifications
from .pool import Pool
from .racing import Racing
from .rundown import Rundown
from .scenario import load
from .sync import Sync
from .wdf import Wdf
from .wfp import Wfp

# LockOrder first (the others record into it); IrqlChecks last (it observes every routine of its
# table that no other family attached).
FAMILIES = [LockOrder, Racing, InFlight, Debug, Etw, Runtime, Pool, Rundown, ExCallbacks, Registry, GuardedMutexes,
            PnpNotifications, Sync, Devices, Wdf, Wfp, IrqlChecks]


def load_scenario(path):
    """The scenario at `path`, validated against every family's settings, steps and races."""
    return load(path, FAMILIES)
