"""Export: a ticket leaves PyTorch as standard (or QONNX) ONNX, checked against PyTorch."""

from mptc.export.onnx_export import ExportReport, export_model, export_run

__all__ = ["ExportReport", "export_model", "export_run"]
