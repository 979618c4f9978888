"""The emulated kernel's models and runner (see ../REPORT.md).

quickstart is imported first, before any module of the package can import unicorn or speakeasy: it
imports unicorn without pkg_resources or distutils (quickstart.py), which is faster everywhere and
the only way unicorn 1.0.2 imports on Python 3.12 and later.
"""

from . import quickstart  # noqa: F401
