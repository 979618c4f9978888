"""unicorn 1.0.2 imported without pkg_resources: a third of a second off every harness start.

unicorn 1.0.2's `unicorn/unicorn.py` imports `pkg_resources` (setuptools, about 0.2-0.4 s to import)
for one call, `pkg_resources.resource_filename('unicorn.unicorn', 'lib')`, the first place it looks
for its shared library. For a package installed as files, as pip installs it in the venv,
pkg_resources answers that with the folder of the module's file joined with the name; it is also
unicorn's next candidate, `os.path.join(os.path.split(__file__)[0], 'lib')`. While unicorn is
imported, `pkg_resources` is a module with that one function; it is removed right after, so anything
that imports pkg_resources later gets the real one. Import this module before speakeasy or unicorn
(machine.py and fastcall.py do). tests/test_quickstart.py checks the answer against the real one.
"""

import os
import sys
import types


def resource_filename(package, resource):
    """pkg_resources' answer for a module installed as files: its folder, joined with `resource`."""
    return os.path.join(os.path.dirname(sys.modules[package].__file__), resource)


def _import_unicorn():
    if 'unicorn' in sys.modules or 'pkg_resources' in sys.modules:
        import unicorn  # noqa: F401 - already there, or with the real pkg_resources
        return
    stub = types.ModuleType('pkg_resources', 'stand-in while unicorn is imported (emukernel/quickstart.py)')
    stub.resource_filename = resource_filename
    sys.modules['pkg_resources'] = stub
    try:
        import unicorn  # noqa: F401
    finally:
        if sys.modules.get('pkg_resources') is stub:
            del sys.modules['pkg_resources']


_import_unicorn()
