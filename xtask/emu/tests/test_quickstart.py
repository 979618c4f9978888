"""quickstart.py imports unicorn without pkg_resources or distutils, and answers as they would."""
import os
import subprocess
import sys
import unittest

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
PROBE = '''
import sys
sys.path.insert(0, %r)
from emukernel import quickstart
import unicorn.unicorn as u
print('pkg_resources' in sys.modules, 'distutils' in sys.modules, 'distutils.sysconfig' in sys.modules)
print(quickstart.resource_filename('unicorn.unicorn', 'lib'))
try:
    import pkg_resources
    print(pkg_resources.resource_filename('unicorn.unicorn', 'lib'))
    print(hasattr(pkg_resources, 'working_set'))
except ImportError:
    print('no pkg_resources')
    print('no pkg_resources')
print(quickstart.get_python_lib())
try:
    import distutils.sysconfig
    print(distutils.sysconfig.get_python_lib())
except ImportError:
    print('no distutils')
''' % HERE


class QuickStartTest(unittest.TestCase):
    def test_unicorn_loads_without_pkg_resources_or_distutils_and_the_answers_are_the_real_ones(self):
        out = subprocess.run([sys.executable, '-c', PROBE], capture_output=True, text=True, check=True)
        left, ours, real, full, our_lib, real_lib = out.stdout.split('\n')[:6]
        self.assertEqual(left, 'False False False')  # the stand-ins are gone once unicorn is imported
        self.assertTrue(os.path.isdir(ours), ours)
        if real != 'no pkg_resources':  # setuptools is there (a venv made by 3.11 has it)
            self.assertEqual(ours, real)             # the same folder as pkg_resources gives
            self.assertEqual(full, 'True')           # and a later import gets the real pkg_resources
        self.assertTrue(os.path.isdir(our_lib), our_lib)
        if sys.version_info < (3, 12):
            self.assertNotEqual(real_lib, 'no distutils')  # the standard library's, imported after
        if real_lib != 'no distutils':  # none from 3.12 (PEP 632), unless setuptools stands in
            self.assertEqual(real_lib, our_lib)      # the same folder

    def test_any_module_of_the_package_imports_unicorn_through_quickstart(self):
        # inflight.py imports unicorn at its top; the package's __init__ runs quickstart before it.
        probe = 'import sys\nsys.path.insert(0, %r)\nimport emukernel.inflight\n' \
                'print("unicorn" in sys.modules, "pkg_resources" in sys.modules, "distutils" in sys.modules)' % HERE
        out = subprocess.run([sys.executable, '-c', probe], capture_output=True, text=True, check=True)
        self.assertEqual(out.stdout.strip(), 'True False False')

    def test_a_distutils_already_imported_is_left_as_it_is(self):
        probe = '''
import sys, types
sys.path.insert(0, %r)
real = types.ModuleType('distutils'); real.__path__ = []
sub = types.ModuleType('distutils.sysconfig'); sub.get_python_lib = lambda: 'the real one'
real.sysconfig = sub
sys.modules['distutils'] = real; sys.modules['distutils.sysconfig'] = sub
from emukernel import quickstart
print(sys.modules['distutils'] is real, sys.modules['distutils.sysconfig'] is sub)
''' % HERE
        out = subprocess.run([sys.executable, '-c', probe], capture_output=True, text=True, check=True)
        self.assertEqual(out.stdout.strip(), 'True True')


if __name__ == '__main__':
    unittest.main()
