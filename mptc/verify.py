"""Numeric checks between stages that cannot pass on NaN or Inf: the one definition every stage uses.

A check written ``if diff > tolerance: fail`` passes when ``diff`` is NaN (every comparison with
NaN is False), so a model whose outputs are all NaN (a BatchNorm ``running_var`` below zero, an
overflowing weight) "agreed" with itself and was exported with exit 0. Here a check is written
the other way round, ``ok = diff <= tolerance``, which NaN fails, and outputs are first required
to be finite, so the message says what went wrong (NaN or Inf, and how much of it) instead of
quoting a meaningless ``max abs diff nan``.
"""

from __future__ import annotations

import numpy as np

from mptc.errors import VerificationError


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
