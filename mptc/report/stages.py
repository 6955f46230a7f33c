"""Accuracy of one ticket at every stage, on the same evaluation set, so a drop can be located.

Stages: PyTorch (the ticket rebuilt from seed + mask bits), the exported ONNX in onnxruntime, the
packed ``ai.mptc`` ONNX in onnxruntime (through its function bodies), and the compiled TVM
module (run here when it was built for this host).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from mptc.export.onnx_export import run_onnx


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(1) == labels).mean())


def onnx_accuracy(path: str | Path, x: np.ndarray, labels: np.ndarray) -> float:
    """Test accuracy of an ONNX file in onnxruntime."""
    return accuracy(run_onnx(onnx.load(str(path)), x), labels)


def module_logits(module_path: str | Path, x: np.ndarray, batch: int) -> np.ndarray:
    """Outputs of a compiled Relax module run on this host, ``batch`` samples per call
    (the module's static batch)."""
    import tvm

    lib = tvm.runtime.load_module(str(module_path))
    device = tvm.cpu()
    vm = tvm.runtime.vm.VirtualMachine(lib, device)
    outputs = []
    for start in range(0, len(x) - len(x) % batch, batch):
        outputs.append(vm["main"](tvm.runtime.tensor(np.ascontiguousarray(x[start : start + batch]), device)).numpy())
    return np.concatenate(outputs)


def module_accuracy(module_path: str | Path, x: np.ndarray, labels: np.ndarray, batch: int) -> float:
    """Test accuracy of a compiled module run on this host (a trailing partial batch is left out)."""
    logits = module_logits(module_path, x, batch)
    return accuracy(logits, labels[: len(logits)])
