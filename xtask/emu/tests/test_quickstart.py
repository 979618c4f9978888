"""quickstart.py imports unicorn without pkg_resources and answers as pkg_resources would."""
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
print('pkg_resources' in sys.modules)
print(quickstart.resource_filename('unicorn.unicorn', 'lib'))
import pkg_resources
print(pkg_resources.resource_filename('unicorn.unicorn', 'lib'))
print(hasattr(pkg_resources, 'working_set'))
''' % HERE


class QuickStartTest(unittest.TestCase):
    def test_unicorn_loads_without_pkg_resources_and_the_answer_is_the_real_one(self):
        env = dict(os.environ, SETUPTOOLS_USE_DISTUTILS='stdlib')
        out = subprocess.run([sys.executable, '-c', PROBE], capture_output=True, text=True, env=env, check=True)
        left, ours, real, full = out.stdout.split('\n')[:4]
        self.assertEqual(left, 'False')        # the stand-in is gone once unicorn is imported
        self.assertEqual(ours, real)           # the same folder as pkg_resources gives
        self.assertTrue(os.path.isdir(real), real)
        self.assertEqual(full, 'True')         # and a later import gets the real pkg_resources


if __name__ == '__main__':
    unittest.main()
