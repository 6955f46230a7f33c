"""Numeric checks between stages that cannot pass on NaN or Inf: the one definition every stage uses.

A check written ``if diff > tolerance: fail`` passes when ``diff`` is NaN (every comparison with
NaN is False), so a model whose outputs are all NaN (a BatchNorm ``running_var`` below zero, an
overflowing weight) "agreed" with itself and was exported with exit 0. Here a check is written
the other way round, ``ok = diff <= tolerance``, which NaN fails, and outputs are first required
to be finite, so the message says what went wrong (NaN or Inf, and how much of it) instead of
quoting a meaningless ``max abs diff nan``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mptc.errors import VerificationError

REL_TOLERANCE = 1e-4
"""Largest ``max |output - expected| / max |expected|`` of a module's outputs that match."""
INT8_REL_TOLERANCE = 1e-2
"""The same for a module on int8 activations (``mptc compile --activations int8``): where another
engine's float rounding puts a value on the other side of a quantization step's boundary, a
level lands one step apart, and the output moves by that step times the weights it meets (a
deep network counted 2.3e-3 on an emulated ARM core); a wrong kernel moves it by far more."""


def rel_tolerance(activations: str) -> float:
    """The outputs' tolerance of a module whose activations are ``activations`` (``fp32`` or ``int8``)."""
    return INT8_REL_TOLERANCE if activations == "int8" else REL_TOLERANCE


def nonfinite(array: np.ndarray) -> str | None:
    """``"NaN in 3 and Inf in 1 of 40 values"``, or None when every value of ``array`` is finite."""
    values = np.asarray(array)
    if values.dtype.kind not in "fc" or np.isfinite(values).all():
        return None
    nan = int(np.count_nonzero(np.isnan(values)))
    inf = int(np.count_nonzero(np.isinf(values)))
    parts = [f"{kind} in {count}" for kind, count in (("NaN", nan), ("Inf", inf)) if count]
    return f"{' and '.join(parts)} of {values.size} values"


def require_finite(array: np.ndarray, what: str) -> None:
    """Raise :class:`VerificationError` (exit 5) naming ``what`` unless ``array`` is all finite."""
    found = nonfinite(array)
    if found is not None:
        raise VerificationError(f"{what} hold NaN or Inf ({found}): they cannot be verified")


def within(value: np.ndarray | float, limit: np.ndarray | float) -> np.ndarray:
    """``value <= limit`` elementwise: False where either is NaN (``not value > limit`` would be True)."""
    return np.asarray(value) <= np.asarray(limit)


def max_abs_diff(reference: np.ndarray, candidate: np.ndarray) -> float:
    """``max |reference - candidate|`` in float64 (0 for empty arrays); NaN if either holds NaN."""
    diff = np.abs(np.asarray(reference, np.float64) - np.asarray(candidate, np.float64))
    return float(diff.max()) if diff.size else 0.0


def compare_outputs(output: np.ndarray, expected: np.ndarray, tolerance: float = REL_TOLERANCE) -> dict[str, Any]:
    """Relative max error against the expected output (at most ``tolerance``), and argmax agreement
    along the last axis wherever the expected output decides it: its top two apart by more than
    the tolerance (a tie there is float noise's to break, either way)."""
    if output.shape != expected.shape:
        return {"outputs_match": False, "output_shape": list(output.shape), "expected_shape": list(expected.shape)}
    found = {name: nonfinite(values) for name, values in (("output", output), ("expected", expected))}
    if any(found.values()):  # no error to quote: every comparison with NaN is False
        return {"outputs_match": False, **{f"{name}_nonfinite": what for name, what in found.items() if what}}
    out, ref = output.astype(np.float64), expected.astype(np.float64)
    max_abs = max_abs_diff(ref, out)
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    max_rel = max_abs / scale if scale > 0 else max_abs
    argmax_match = True
    if out.ndim and out.shape[-1] > 1:
        top_two = np.sort(ref, axis=-1)[..., -2:]
        decided = top_two[..., 1] - top_two[..., 0] > tolerance * scale
        argmax_match = bool(np.array_equal(np.argmax(out, axis=-1)[decided], np.argmax(ref, axis=-1)[decided]))
    return {
        "outputs_match": bool(max_rel <= tolerance and argmax_match),
        "max_abs_error": max_abs,
        "max_rel_error": max_rel,
        "rel_tolerance": tolerance,
        "argmax_match": argmax_match,
    }
