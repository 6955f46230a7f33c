"""NumPy references of the ``ai.mptc`` operators (the semantics in ``docs/operators.md``).

Each class is named exactly as its ``op_type`` so that
``onnx.reference.ReferenceEvaluator(model, new_ops=[BinaryConv, BinaryDense])`` runs packed
models, and the TVM kernels and ONNX function bodies are tested against these.
"""

from __future__ import annotations

import numpy as np
from onnx.reference.op_run import OpRun

from mptc.conventions import sign, unpack_bits

DOMAIN = "ai.mptc"
OPSET_VERSION = 1
INPUT_MODES = ("real", "binary", "sign")
"""``T(X)`` per ``input_mode``: X; sign(X) with sign(0) = +1; ONNX ``Sign(X)`` (sign(0) = 0)."""


def unpack_ternary(sign_bits: np.ndarray, mask_bits: np.ndarray, weight_shape: tuple[int, ...]) -> np.ndarray:
    """Rebuild the ternary weight ``(2 * s - 1) * m`` in {-1, 0, +1} from its packed bits.

    Args:
        sign_bits: ``uint8 (O, ceil(K / 8))``, bit 1 means +1.
        mask_bits: ``uint8 (O, ceil(K / 8))``, bit 1 means kept.
        weight_shape: ``(O, ...)`` whose trailing dimensions multiply to ``K``.
    """
    count = int(np.prod(weight_shape[1:]))
    signs = np.where(unpack_bits(sign_bits, count), np.float32(1), np.float32(-1))
    return (signs * unpack_bits(mask_bits, count)).reshape(weight_shape).astype(np.float32)


def conv2d_nchw(
    x: np.ndarray,
    w: np.ndarray,
    strides: tuple[int, int],
    dilations: tuple[int, int],
    group: int,
) -> np.ndarray:
    """Plain grouped 2-D convolution of an already padded NCHW input (float64 accumulation)."""
    n, c, _, _ = x.shape
    o, cg, kh, kw = w.shape
    sh, sw = strides
    dh, dw = dilations
    eff_h, eff_w = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    windows = np.lib.stride_tricks.sliding_window_view(x, (eff_h, eff_w), axis=(2, 3))
    windows = windows[:, :, ::sh, ::sw, ::dh, ::dw]  # N, C, OH, OW, kh, kw
    oh, ow = windows.shape[2:4]
    out = np.empty((n, o, oh, ow), np.float64)
    og = o // group
    for g in range(group):
        patch = windows[:, g * cg : (g + 1) * cg].astype(np.float64)
        out[:, g * og : (g + 1) * og] = np.einsum("nchwyx,ocyx->nohw", patch, w[g * og : (g + 1) * og])
    return out


class BinaryConv(OpRun):
    """``Y = scale[o] * Conv(Pad(T(X), pads, pad_value), W_ternary) + bias[o]``, T by ``input_mode``."""

    op_domain = DOMAIN

    def _run(  # type: ignore[override]
        self,
        x,
        sign_bits,
        mask_bits,
        scale,
        bias,
        kernel_shape=None,
        strides=None,
        pads=None,
        dilations=None,
        group=None,
        input_mode=None,
        pad_value=None,
    ):
        kh, kw = kernel_shape
        group = group or 1
        strides = tuple(strides or (1, 1))
        dilations = tuple(dilations or (1, 1))
        pads = tuple(pads or (0, 0, 0, 0))
        mode = _mode(input_mode)
        pad_value = float(pad_value or 0.0)
        o = sign_bits.shape[0]
        weight = unpack_ternary(sign_bits, mask_bits, (o, x.shape[1] // group, kh, kw))
        t = _input(x, mode)
        t = np.pad(t, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])), constant_values=pad_value)
        raw = conv2d_nchw(t, weight, strides, dilations, group)
        y = raw * scale.reshape(1, -1, 1, 1) + bias.reshape(1, -1, 1, 1)
        return (y.astype(np.float32),)


class BinaryDense(OpRun):
    """``Y = scale[o] * (T(X) @ W_ternary^T) + bias[o]`` for 2-D ``X``, T by ``input_mode``."""

    op_domain = DOMAIN

    def _run(self, x, sign_bits, mask_bits, scale, bias, input_mode=None):  # type: ignore[override]
        weight = unpack_ternary(sign_bits, mask_bits, (sign_bits.shape[0], x.shape[1]))
        t = _input(x, _mode(input_mode))
        y = (t.astype(np.float64) @ weight.T.astype(np.float64)) * scale + bias
        return (y.astype(np.float32),)


def _input(x: np.ndarray, mode: str) -> np.ndarray:
    """``T(X)`` of ``input_mode`` ``mode`` (:data:`INPUT_MODES`)."""
    if mode == "binary":
        return sign(x)
    return np.sign(x).astype(x.dtype) if mode == "sign" else x


def _mode(input_mode: str | bytes | None) -> str:
    mode = input_mode.decode() if isinstance(input_mode, bytes) else (input_mode or "real")
    if mode not in INPUT_MODES:
        raise ValueError(f"ai.mptc input_mode must be one of {INPUT_MODES}, got {mode!r}")
    return mode


REFERENCE_OPS = [BinaryConv, BinaryDense]
