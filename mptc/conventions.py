"""The conventions every stage shares, defined once: training, export, passes and kernels.

* ``sparsity`` is the fraction of weights PRUNED, in [0, 1). ``kept_count(n, s) = round((1 - s) * n)``.
* ``sign(0) = +1``: a packed bit can only say +1 or -1, so zero must go somewhere; it goes to +1
  in PyTorch training (:class:`mptc.nn.estimators.BinaryActivation`), in exported ONNX
  (``Where(x >= 0, 1, -1)``) and in every kernel.
* Bit order: bits are packed along the last axis, LSB first, 8 per ``uint8`` byte
  (``numpy.packbits(..., bitorder="little")``); bit ``j`` of byte ``b`` is element ``8 * b + j``.
  Trailing pad bits are 0. A sign bit 1 means +1; a mask bit 1 means the weight is kept.
"""

from __future__ import annotations

import numpy as np

SIGN_OF_ZERO = 1.0
BIT_ORDER = "little"


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
