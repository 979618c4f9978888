"""unicorn 1.0.2 imported without pkg_resources or distutils: it starts faster, and on every Python.

unicorn 1.0.2's `unicorn/unicorn.py` imports two modules only to list the folders where it looks for
its shared library:
- `pkg_resources` (setuptools, about 0.2-0.4 s to import), for
  `pkg_resources.resource_filename('unicorn.unicorn', 'lib')`. For a package installed as files, as
  pip installs it in the venv, pkg_resources answers with the folder of the module's file joined
  with the name (also unicorn's next candidate, `os.path.join(os.path.split(__file__)[0], 'lib')`).
- `distutils.sysconfig`, for `get_python_lib()`: the interpreter's folder of pure-Python packages,
  which the standard library's `sysconfig` names too (`sysconfig.get_paths()['purelib']`).
  distutils left the standard library in Python 3.12 (PEP 632), and a venv made by 3.12 or later
  has no setuptools to stand in for it, so there `import unicorn` failed with "No module named
  'distutils'".

While unicorn is imported, each of those that is not already imported is a module with that one
function; each is removed right after, so anything that imports pkg_resources or distutils later
gets the real one (or the ImportError it would get). Import this module before speakeasy or unicorn
(machine.py and fastcall.py do). tests/test_quickstart.py checks both answers against the real ones
where the interpreter has them.
"""

import os
import sys
import sysconfig
import types


def resource_filename(package, resource):
    """pkg_resources' answer for a module installed as files: its folder, joined with `resource`."""
    return os.path.join(os.path.dirname(sys.modules[package].__file__), resource)


def get_python_lib():
    """distutils.sysconfig.get_python_lib()'s answer (no arguments): the folder of pure-Python
    packages of this interpreter's prefix (the venv's site-packages)."""
    return sysconfig.get_paths()['purelib']


def _stand_ins():
    """The stand-in modules, by name: `pkg_resources`, `distutils` and `distutils.sysconfig`."""
    pkg_resources = types.ModuleType('pkg_resources', 'stand-in while unicorn is imported (quickstart.py)')
    pkg_resources.resource_filename = resource_filename
    distutils = types.ModuleType('distutils', 'stand-in while unicorn is imported (quickstart.py)')
    distutils.__path__ = []
    distutils_sysconfig = types.ModuleType('distutils.sysconfig',
                                           'stand-in while unicorn is imported (quickstart.py)')
    distutils_sysconfig.get_python_lib = get_python_lib
    distutils.sysconfig = distutils_sysconfig
    return {'pkg_resources': pkg_resources, 'distutils': distutils, 'distutils.sysconfig': distutils_sysconfig}


def _import_unicorn():
    if 'unicorn' in sys.modules:
        return
    stand_ins = _stand_ins()
    # A module already imported stays the real one (distutils with its submodule, or neither).
    if 'distutils' in sys.modules:
        del stand_ins['distutils'], stand_ins['distutils.sysconfig']
    if 'pkg_resources' in sys.modules:
        del stand_ins['pkg_resources']
    sys.modules.update(stand_ins)
    try:
        import unicorn  # noqa: F401
    finally:
        for name, module in stand_ins.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]


_import_unicorn()
