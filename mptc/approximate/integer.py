"""Integer form of a ReLU MLP: every weight a small integer, one real scalar at the very end.

With precision ``P`` and ``S = 2^(P-1)``, layer ``i``'s augmented matrix
``Ã_i = [[W_i, b_i], [0, 1]]`` (the last row carries the constant 1 that stands in for the bias;
the output layer has no such row) is scaled by its largest entry ``m_i`` and rounded:
``N_i = round(S Ã_i / m_i)``, integers in ``[-S, S]``, each within ``1/2`` of ``S Ã_i / m_i``
(relative error ``<= 2^-P``). ReLU is positively homogeneous (``relu(c z) = c relu(z)`` for
``c > 0``), so the scales move to the output:
``f(x) ~= lambda * N_l relu(... relu(N_1 [x; 1]) ...)`` with ``lambda = prod_i m_i / S^l``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mptc.approximate.target import AffineMLP


@dataclass(frozen=True)
class IntegerForm:
    """Integer matrices ``N_i`` (over ``[h; 1]``) and the output scale ``lambda``."""

    matrices: tuple[np.ndarray, ...]
    scale: float
    precision: int

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The integer network ``N_l relu(... relu(N_1 [x; 1]) ...)`` (NOT scaled by lambda), float64."""
        h = np.asarray(x, np.float64)
        for index, matrix in enumerate(self.matrices):
            h = np.concatenate([h, np.ones((h.shape[0], 1))], axis=1) if index == 0 else h
            h = h @ matrix.T.astype(np.float64)
            if index < len(self.matrices) - 1:
                h = np.maximum(h, 0.0)
        return h


def integer_form(target: AffineMLP, precision: int) -> IntegerForm:
    """Quantise ``target`` to precision ``precision`` (see the module doc).

    Raises:
        ValueError: ``precision`` below 1.
    """
    if precision < 1:
        raise ValueError(f"precision must be at least 1 bit, got {precision}")
    s = 2 ** (precision - 1)
    matrices, scale = [], 1.0
    for index, (w, b) in enumerate(zip(target.weights, target.biases)):
        augmented = np.concatenate([w, b[:, None]], axis=1)
        if index < len(target.weights) - 1:
            constant = np.zeros((1, augmented.shape[1]))
            constant[0, -1] = 1.0
            augmented = np.concatenate([augmented, constant], axis=0)
        largest = float(np.abs(augmented).max()) or 1.0
        matrices.append(np.rint(s * augmented / largest).astype(np.int64))
        scale *= largest / s
    return IntegerForm(tuple(matrices), scale, precision)
