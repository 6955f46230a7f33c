"""The conventions every stage shares, defined once: training, export, passes and kernels.

* ``sparsity`` is the fraction of weights PRUNED, in [0, 1). ``kept_count(n, s) = round((1 - s) * n)``.
* ``sign(0) = +1``: a packed bit can only say +1 or -1, so zero must go somewhere; it goes to +1
  in PyTorch training (:class:`mptc.nn.estimators.BinaryActivation`), in exported ONNX
  (``Where(x >= 0, 1, -1)``) and in every kernel.
* Bit order: bits are packed along the last axis, LSB first, 8 per ``uint8`` byte
  (``numpy.packbits(..., bitorder="little")``); bit ``j`` of byte ``b`` is element ``8 * b + j``.
  Trailing pad bits are 0. A sign bit 1 means +1; a mask bit 1 means the weight is kept.
* Ternary weight: output row ``o`` holds only ``{-alpha[o], 0, +alpha[o]}`` (per-layer alpha is
  the case of equal rows); export writes it that way, packing recognises it (:func:`ternary_scale`).
* A graph node in a message is ``name (op_type)`` (:func:`node_label`), whichever stage speaks.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import numpy as np
import onnx

SIGN_OF_ZERO = 1.0
BIT_ORDER: Final = "little"
ORT_MAX_IR_VERSION = 10
"""IR version of models handed to onnxruntime: onnx 1.23 writes IR 14, onnxruntime 1.31 reads at most 13."""


def for_onnxruntime(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` that onnxruntime loads: its IR version capped at :data:`ORT_MAX_IR_VERSION`."""
    runnable = onnx.ModelProto()
    runnable.CopyFrom(model)
    runnable.ir_version = min(runnable.ir_version, ORT_MAX_IR_VERSION)
    return runnable


TERNARY_RTOL = 1e-5
"""Relative spread allowed between the magnitudes of one row's kept weights."""


def kept_count(numel: int, sparsity: float) -> int:
    """Number of weights a layer keeps at ``sparsity`` (fraction pruned); at least one."""
    return max(1, int(round((1.0 - sparsity) * numel)))


def sign(x: np.ndarray) -> np.ndarray:
    """Sign with the project's convention ``sign(0) = +1``, as float32."""
    return np.where(np.asarray(x) >= 0, np.float32(1.0), np.float32(-1.0))


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Pack a boolean array along its last axis into ``uint8`` bytes, LSB first.

    Args:
        bits: array of any shape ``(..., K)``; non-zero means 1.

    Returns:
        ``uint8`` array of shape ``(..., ceil(K / 8))`` with zero pad bits.
    """
    return np.packbits(np.asarray(bits) != 0, axis=-1, bitorder=BIT_ORDER)


def unpack_bits(packed: np.ndarray, count: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: the first ``count`` bits of each row as ``bool``."""
    return np.unpackbits(np.asarray(packed, np.uint8), axis=-1, count=count, bitorder=BIT_ORDER).astype(bool)


def ternary_scale(weight: np.ndarray, rtol: float = TERNARY_RTOL) -> np.ndarray | None:
    """Per-output-row magnitude ``alpha`` of a ternary weight, or None if it is not ternary.

    Args:
        weight: ``(O, ...)`` float array; row ``o`` is everything under ``weight[o]``.
        rtol: allowed relative spread of the kept magnitudes within a row.

    Returns:
        float32 ``(O,)``. A row with nothing kept has no magnitude of its own; it gets the layer's
        largest alpha (1.0 if the whole layer is pruned) so that ``scale`` stays meaningful.
    """
    rows = np.abs(weight.reshape(weight.shape[0], -1).astype(np.float64))
    if not np.all(np.isfinite(rows)):
        return None
    alpha = rows.max(axis=1)
    kept = rows > 0
    if not np.all(~kept | (np.abs(rows - alpha[:, None]) <= rtol * alpha[:, None])):
        return None
    fill = alpha.max() if alpha.max() > 0 else 1.0
    return np.where(alpha > 0, alpha, fill).astype(np.float32)


def node_label(name: str | None, op_type: str, outputs: Iterable[str | None] = ()) -> str:
    """``name (op_type)``: how every message names a graph node (ONNX or onnx_ir alike).

    ONNX lets nodes go unnamed; those are called by their first named output, else ``<unnamed>``.
    """
    shown = name or next((output for output in outputs if output), "") or "<unnamed>"
    return f"{shown} ({op_type})"
