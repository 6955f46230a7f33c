"""Export: a ticket leaves PyTorch as standard (or QONNX) ONNX, checked against PyTorch.

Calling the package, ``mptc.export(...)``, calls the Python API's :func:`mptc.api.export`.
"""

import sys

from mptc.api import CallablePackage
from mptc.export.onnx_export import ExportReport, export_model, export_run

sys.modules[__name__].__class__ = CallablePackage

__all__ = ["ExportReport", "export_model", "export_run"]
