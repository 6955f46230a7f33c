"""A counter-based random sign for every entry of a huge random +-1 network.

The constructive route reads only a sliver of a network that can hold hundreds of millions of
+-1 entries, so entries are never stored: entry ``(layer, row, col)`` of the network drawn with
``seed`` is the top bit of a SplitMix64 hash chain over the four keys (Steele et al. 2014's
finaliser, a bijection on 64 bits with full avalanche). Any entry can be re-derived alone, in
any order, on any machine, which is also how the tests check that every kept weight is an
untouched draw.
"""

from __future__ import annotations

import numpy as np

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64: ``z += gamma; z = (z ^ z>>30) * m1; z = (z ^ z>>27) * m2; z ^ z>>31`` (mod 2^64)."""
    z = z + _GAMMA
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def random_signs(seed: int, layer: int, rows: np.ndarray | int, cols: np.ndarray | int) -> np.ndarray:
    """The +-1 entries ``(layer, rows, cols)`` (broadcast together) of the network drawn with ``seed``, as int8."""
    with np.errstate(over="ignore"):
        z = _mix(np.asarray(seed, np.uint64) ^ _mix(np.asarray(layer, np.uint64)))
        z = _mix(z ^ np.asarray(rows, np.uint64))
        z = _mix(z ^ np.asarray(cols, np.uint64))
    return np.where(z >> np.uint64(63), np.int8(1), np.int8(-1))
