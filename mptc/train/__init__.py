"""Mask learning: the loop (:mod:`~mptc.train.loop`), recipes, checkpoints, the run folder, DDP.

Calling the package, ``mptc.train(...)``, calls the Python API's :func:`mptc.api.train`.
"""

import sys

from mptc.api import CallablePackage

sys.modules[__name__].__class__ = CallablePackage
