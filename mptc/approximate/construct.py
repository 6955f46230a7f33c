"""Constructive route: prune a random +-1 network into an approximation of a given ReLU MLP.

Following the spec (``shared/notes/algorithms.md``, after Sreenivasan et al. 2022 and its
first author's binary gadget), on the integer form of the target (:mod:`.integer`):

* **Split layer** (layer 1). ``x = relu(x) - relu(-x)``: row ``(j, c)`` keeps only its random
  edge from input ``x_j``; a +1 edge makes it a copy of the unit ``relu(x_j)``, a -1 edge a copy
  of ``relu(-x_j)``. The constant input 1 keeps only its +1 rows.
* **Ladder** (``P - 1`` layers per target layer). Lane ``k`` of a unit ``a >= 0`` holds
  ``2^k a``. At ladder layer ``t`` a slot of lane ``k < t`` keeps one +1 edge from a copy of
  lane ``k`` (carry) and a slot of lane ``t`` keeps two +1 edges from two copies of lane
  ``t - 1`` (``2^(t-1) a + 2^(t-1) a``); a slot whose random edges do not allow it is pruned
  away. Values are non-negative, so the ReLUs pass them unchanged.
* **Combine layer**. For target neuron ``r`` and a candidate row, for each unit ``u`` with
  ``e = N[r, u]``, from the highest lane down: ``c_k = clip(round(e / 2^k), -neg_k, pos_k)``
  where ``pos_k``/``neg_k`` count lane-``k`` copies whose edge to the row is +1/-1; keep
  ``|c_k|`` of the edges with the sign of ``c_k``; ``e -= c_k 2^k``. The row is exact when every
  ``e`` ends at 0, and then computes ``relu(sum_u N[r, u] a_u)``: the next layer's units.
  Every exact candidate row is kept as a copy (the next ladder doubles from copies); a neuron
  without one keeps its closest row. The output layer keeps one row per output, no ReLU.

Randomness only decides which signs are available; ``R`` copies per lane make a usable pattern
likely. Depth ``1 + l P``. Entries are drawn by :func:`~mptc.approximate.rng.random_signs` and
never stored densely; the network is evaluated in float64 (values grow to ``S^i``), and its
output times ``lambda`` approximates the target with error ~``2^-P``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from mptc.approximate.integer import IntegerForm, integer_form
from mptc.approximate.rng import random_signs
from mptc.approximate.target import AffineMLP

NEURON_CHUNK = 16


@dataclass(frozen=True)
class SparseLayer:
    """The kept edges of one layer: ``out[r] = sum over kept (r, c) of sign * in[c]``, then ReLU if ``relu``."""

    shape: tuple[int, int]
    rows: np.ndarray
    cols: np.ndarray
    signs: np.ndarray
    relu: bool = True

    def forward(self, h: np.ndarray) -> np.ndarray:
        """``(shape[0], N)`` outputs for ``(shape[1], N)`` inputs, float64."""
        matrix = sp.csr_matrix((self.signs.astype(np.float64), (self.rows, self.cols)), shape=self.shape)
        out = matrix @ h
        return np.maximum(out, 0.0) if self.relu else out


@dataclass(frozen=True)
class Lanes:
    """Copies of one lane for every unit: physical rows ``(units, copies)`` of the latest layer
    and whether each copy holds the lane's value (``valid``)."""

    rows: np.ndarray
    valid: np.ndarray


@dataclass(frozen=True)
class CombineResult:
    """A combine layer with its bookkeeping: coefficients ``c_k`` ``(neurons, candidates, units,
    lanes)``, which candidate rows are exact and which are kept."""

    layer: SparseLayer
    coefficients: np.ndarray
    exact: np.ndarray
    chosen: np.ndarray

    @property
    def lanes(self) -> Lanes:
        """The kept rows as copies of the next layer's units (lane 0)."""
        neurons, candidates = self.chosen.shape
        return Lanes(np.arange(neurons * candidates).reshape(neurons, candidates), self.chosen)


def _edges(keep: np.ndarray, rows: np.ndarray, cols: np.ndarray, signs: np.ndarray) -> tuple[np.ndarray, ...]:
    index = np.nonzero(keep)
    return rows[index], cols[index], signs[index]


def split_layer(seed: int, inputs: int, copies: int) -> tuple[SparseLayer, Lanes]:
    """Layer 1 over ``[x; 1]`` (``inputs`` counts the constant): ``2 * copies`` rows per input.

    Returns the layer and the lane-0 copies of the units ``[relu(x_j)..., relu(-x_j)..., 1]``.
    """
    per_input = 2 * copies
    rows = np.arange(inputs * per_input).reshape(inputs, per_input)
    cols = np.broadcast_to(np.arange(inputs)[:, None], rows.shape)
    signs = random_signs(seed, 1, rows, cols)
    positive, negative = signs == 1, signs == -1
    negative[-1] = False  # relu(-1) = 0 carries nothing
    layer = SparseLayer((rows.size, inputs), *_edges(positive | negative, rows, cols, signs))
    lanes = Lanes(
        np.concatenate([rows[:-1], rows[:-1], rows[-1:]]), np.concatenate([positive[:-1], negative[:-1], positive[-1:]])
    )
    return layer, lanes


def ladder_layer(
    seed: int, index: int, previous: int, lanes: dict[int, Lanes], t: int, precision: int, copies: int
) -> tuple[SparseLayer, dict[int, Lanes]]:
    """Ladder layer ``t`` (1-based within its target layer), physical layer ``index`` over a
    layer of width ``previous``.

    Slot ``(u, k, c)`` is row ``(u * P + k) * R + c``; lanes ``k < t`` are carried from
    ``lanes[k]``, lane ``t`` doubled from ``lanes[t - 1]``.
    """
    units = lanes[0].rows.shape[0]
    width = units * precision * copies
    out_rows, out_cols, out_signs, new = [], [], [], {}
    for k in range(t + 1):
        source, need = (lanes[k], 1) if k < t else (lanes[t - 1], 2)
        slots = (np.arange(units)[:, None] * precision + k) * copies + np.arange(copies)[None, :]
        signs = random_signs(seed, index, slots[:, :, None], source.rows[:, None, :])
        usable = (signs == 1) & source.valid[:, None, :]
        rank = np.cumsum(usable, axis=2)
        valid = rank[..., -1] >= need
        keep = usable & (rank <= need) & valid[..., None]
        shape = keep.shape
        rows, cols, kept_signs = _edges(
            keep, np.broadcast_to(slots[:, :, None], shape), np.broadcast_to(source.rows[:, None, :], shape), signs
        )
        out_rows.append(rows)
        out_cols.append(cols)
        out_signs.append(kept_signs)
        new[k] = Lanes(slots, valid)
    layer = SparseLayer(
        (width, previous), np.concatenate(out_rows), np.concatenate(out_cols), np.concatenate(out_signs)
    )
    return layer, new


def combine_layer(
    seed: int, index: int, previous: int, lanes: dict[int, Lanes], weights: np.ndarray, candidates: int, output: bool
) -> CombineResult:
    """Combine layer at physical layer ``index`` over a layer of width ``previous``: row ``r * candidates + q`` is candidate ``q`` of
    neuron ``r`` of the integer matrix ``weights`` ``(neurons, units)``; ``output``: one row per
    neuron and no ReLU (see the module doc for the greedy)."""
    neurons, units = weights.shape
    precision = len(lanes)
    coefficients = np.zeros((neurons, candidates, units, precision), np.int64)
    residual = np.zeros((neurons, candidates), np.int64)
    kept_per_lane: list[list[tuple[np.ndarray, ...]]] = [[] for _ in range(precision)]
    for start in range(0, neurons, NEURON_CHUNK):
        stop = min(start + NEURON_CHUNK, neurons)
        rows = np.arange(start * candidates, stop * candidates).reshape(stop - start, candidates)
        e = np.broadcast_to(weights[start:stop, None, :], (stop - start, candidates, units)).copy()
        for k in reversed(range(precision)):
            lane = lanes[k]
            signs = random_signs(seed, index, rows[:, :, None, None], lane.rows[None, None, :, :])
            positive = (signs == 1) & lane.valid
            negative = (signs == -1) & lane.valid
            c = np.clip(np.rint(e / 2**k).astype(np.int64), -negative.sum(-1), positive.sum(-1))
            e -= c * 2**k
            coefficients[start:stop, :, :, k] = c
            chosen_sign = np.where((c > 0)[..., None], positive, negative)
            keep = chosen_sign & (np.cumsum(chosen_sign, axis=-1) <= np.abs(c)[..., None])
            shape = keep.shape
            kept_per_lane[k].append(
                _edges(
                    keep,
                    np.broadcast_to(rows[:, :, None, None], shape),
                    np.broadcast_to(lane.rows[None, None], shape),
                    signs,
                )
            )
        residual[start:stop] = np.abs(e).sum(-1)
    exact = residual == 0
    best = np.zeros_like(exact)
    best[np.arange(neurons), residual.argmin(1)] = True
    if output:
        chosen = best
    else:
        chosen = np.where(exact.any(1, keepdims=True), exact, best)
    keep_rows = chosen.reshape(-1)
    parts = [part for lane_parts in kept_per_lane for part in lane_parts]
    rows, cols, signs = (np.concatenate([p[i] for p in parts]) for i in range(3))
    selected = keep_rows[rows]
    layer = SparseLayer(
        (neurons * candidates, previous), rows[selected], cols[selected], signs[selected], relu=not output
    )
    return CombineResult(layer, coefficients, exact, chosen)


@dataclass(frozen=True)
class Construction:
    """A pruned random +-1 network: ``lambda * out[output_rows]`` approximates the target."""

    layers: tuple[SparseLayer, ...]
    output_rows: np.ndarray
    integer: IntegerForm
    seed: int
    copies: int
    inexact_neurons: int

    @property
    def scale(self) -> float:
        return self.integer.scale

    @property
    def depth(self) -> int:
        return len(self.layers)

    @property
    def widths(self) -> list[int]:
        return [self.layers[0].shape[1], *(layer.shape[0] for layer in self.layers)]

    @property
    def entries(self) -> int:
        """+-1 entries of the whole random network (all drawable, few ever drawn)."""
        return sum(layer.shape[0] * layer.shape[1] for layer in self.layers)

    @property
    def kept(self) -> int:
        return sum(layer.rows.size for layer in self.layers)

    def unscaled(self, x: np.ndarray) -> np.ndarray:
        """The pruned network's outputs before ``lambda`` ``(N, d_l)`` for inputs ``(N, d_0)``."""
        h = np.concatenate([np.asarray(x, np.float64), np.ones((len(x), 1))], axis=1).T
        for layer in self.layers:
            h = layer.forward(h)
        return h[self.output_rows].T

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.scale * self.unscaled(x)


def construct(target: AffineMLP, precision: int, copies: int, candidates: int, seed: int = 0) -> Construction:
    """Prune the random +-1 network drawn with ``seed`` into an approximation of ``target``.

    Args:
        precision: bits ``P`` of the integer form; error ~``2^-P``, depth ``1 + l P``.
        copies: ``R``, copies of each lane (width ~``max(2 d_0, d_i) P R``).
        candidates: candidate rows per target neuron in each combine layer.
    """
    if copies < 2 or candidates < 1:
        raise ValueError(f"need at least 2 copies per lane and 1 candidate row, got {copies} and {candidates}")
    integer = integer_form(target, precision)
    inputs = target.widths[0]
    split, sources = split_layer(seed, inputs + 1, copies)
    layers = [split]
    inexact = 0
    output_rows = np.zeros(0, np.int64)
    for index, matrix in enumerate(integer.matrices):
        weights = (
            np.concatenate([matrix[:, :inputs], -matrix[:, :inputs], matrix[:, inputs:]], axis=1)
            if index == 0
            else matrix
        )
        lanes = {0: sources}
        for t in range(1, precision):
            layer, lanes = ladder_layer(seed, len(layers) + 1, layers[-1].shape[0], lanes, t, precision, copies)
            layers.append(layer)
        output = index == len(integer.matrices) - 1
        result = combine_layer(seed, len(layers) + 1, layers[-1].shape[0], lanes, weights, candidates, output)
        layers.append(result.layer)
        inexact += int((~result.exact.any(1)).sum())
        sources = result.lanes
        if output:
            output_rows = result.chosen.argmax(1) + np.arange(weights.shape[0]) * candidates
    return Construction(tuple(layers), output_rows, integer, seed, copies, inexact)
