"""Sign + bit-pack into ``uint64`` words: of float values, and of popcounts against thresholds.

``sign_word``: ``word = OR_j [valid(c) and value(c) >= 0] << j`` with ``c = 64 * w + j``
(sign(0) = +1). The 64 terms are unrolled into the expression, so a packing stage is a plain
spatial block that can be computed anywhere, in particular in the epilogue of the layer that
produces the values. Invalid channels (past ``C``) and padded pixels give bit 0 (see
``targets.layout`` for why 0 is exact).

``threshold_words``: the packed output of an XNOR-popcount layer, whose sign needs no float
maths: ``bit = (D <= thr) ^ flip`` (``targets.layout.sign_thresholds``), in two stages a schedule
can vectorize over the lanes of a popcount vector.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from tvm import te, tirx

from mptc.targets.kernels import stages
from mptc.targets.layout import WORD_BITS

WORD = "uint64"
HALF = "uint32"  # a packed word is built as two halves of this width
HALF_BITS = 32
BIT_OR = te.comm_reducer(lambda a, b: a | b, lambda dtype: tirx.const(0, dtype), name="bit_or")

Count = Callable[[list["tirx.PrimExpr"], "tirx.PrimExpr"], "tirx.PrimExpr"]  # (leading indices, channel) -> value


def sign_word(
    value: Callable[[tirx.PrimExpr], tirx.PrimExpr],
    valid: Callable[[tirx.PrimExpr], tirx.PrimExpr],
    word: tirx.PrimExpr,
) -> tirx.PrimExpr:
    """The packed sign word ``word`` of a row whose element ``c`` is ``value(c)`` where ``valid(c)``.

    ``value`` must be safe to evaluate for every ``c`` of the word (clamp its indices): both
    sides of the select may be computed.
    """
    return bit_word(lambda c: tirx.all(valid(c), value(c) >= tirx.const(0.0, "float32")), word)


def nonzero_word(
    value: Callable[[tirx.PrimExpr], tirx.PrimExpr],
    valid: Callable[[tirx.PrimExpr], tirx.PrimExpr],
    word: tirx.PrimExpr,
) -> tirx.PrimExpr:
    """The packed word ``word`` whose bit ``j`` is set where element ``c = 64 word + j`` is valid
    and not 0: the bits where ONNX ``Sign`` is not 0 (``sign_word`` gives its sign there)."""
    return bit_word(lambda c: tirx.all(valid(c), value(c) != tirx.const(0.0, "float32")), word)


def channel_bits(channels: int, word: tirx.PrimExpr) -> tirx.PrimExpr:
    """The bits of word ``word`` that hold one of ``channels`` channels: all 64 but in the last word."""
    valid = tirx.min(tirx.const(channels, "int32") - word * WORD_BITS, WORD_BITS)
    full = tirx.const(0xFFFFFFFFFFFFFFFF, WORD)
    low = (tirx.const(1, WORD) << tirx.min(valid, WORD_BITS - 1).astype(WORD)) - tirx.const(1, WORD)
    return tirx.Select(valid >= WORD_BITS, full, low)


def bit_word(is_set: Callable[[tirx.PrimExpr], tirx.PrimExpr], word: tirx.PrimExpr) -> tirx.PrimExpr:
    """The uint64 word ``word`` whose bit ``j`` is ``is_set(64 * word + j)``, unrolled into one expression.

    Built as two 32-bit halves joined once: a float compare yields a 32-bit lane mask, so each bit
    is one AND and OR in the float's own lane width (a 64-bit select widens every mask first)."""

    def half(base: int) -> tirx.PrimExpr:
        zero = tirx.const(0, HALF)

        def bit(j: int) -> tirx.PrimExpr:
            return tirx.Select(is_set(word * WORD_BITS + base + j), tirx.const(1 << j, HALF), zero)

        return functools.reduce(lambda acc, j: acc | bit(j), range(1, HALF_BITS), bit(0)).astype(WORD)

    return half(0) | (half(HALF_BITS) << tirx.const(HALF_BITS, WORD))


def popcount_term(act: tirx.PrimExpr, w: tirx.PrimExpr, m: tirx.PrimExpr) -> tirx.PrimExpr:
    """One word's term of an XNOR-popcount reduction: ``popcount((a ^ w) & m)``."""
    return tirx.popcount((act ^ w) & m)


def threshold_words(count: Count, threshold: Count, flip: te.Tensor, shape: tuple[int, ...], lanes: int) -> te.Tensor:
    """Words ``(*shape, O' / 64)`` whose bit ``j`` of word ``w`` is ``(count(i, c) <= threshold(i, c))
    ^ f_c`` with ``c = 64 w + j``, ``i`` the leading indices and ``flip[c] = f_c << j`` (uint64 ``(O',)``).

    ``lane_bits[i, w, lane]`` (stage ``LANE_BITS``) ORs the bits of the ``64 / lanes`` channels ``c = 64 w + v * lanes +
    lane`` (a vector compare, select and XOR per popcount vector); ``OUTPUT`` ORs the lanes.
    """
    v = te.reduce_axis((0, WORD_BITS // lanes), name="v")

    def lane_bit(*index: tirx.PrimExpr) -> tirx.PrimExpr:
        *at, w, lane = index
        j = v * lanes + lane
        c = w * WORD_BITS + j
        below = count(at, c).astype("int64") <= threshold(at, c).astype("int64")
        return BIT_OR(tirx.Select(below, tirx.const(1, WORD) << j.astype(WORD), tirx.const(0, WORD)) ^ flip[c], axis=v)

    words = int(flip.shape[0]) // WORD_BITS
    bits = te.compute((*shape, words, lanes), lane_bit, name=stages.LANE_BITS)
    lane = te.reduce_axis((0, lanes), name="lane")
    return te.compute((*shape, words), lambda *index: BIT_OR(bits[(*index, lane)], axis=lane), name=stages.OUTPUT)
