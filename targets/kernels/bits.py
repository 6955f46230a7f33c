"""Sign + bit-pack of float values into ``uint64`` words, as one TE expression per word.

``word = OR_j [valid(c) and value(c) >= 0] << j`` with ``c = 64 * w + j`` (sign(0) = +1). The 64
terms are unrolled into the expression, so a packing stage is a plain spatial block that can be
computed anywhere, in particular in the epilogue of the layer that produces the values. Invalid
channels (past ``C``) and padded pixels give bit 0 (see ``targets.layout`` for why 0 is exact).
"""

from __future__ import annotations

import functools
from typing import Callable

from tvm import tirx

from mptc.targets.layout import WORD_BITS

WORD = "uint64"


def sign_word(
    value: Callable[[tirx.PrimExpr], tirx.PrimExpr],
    valid: Callable[[tirx.PrimExpr], tirx.PrimExpr],
    word: tirx.PrimExpr,
) -> tirx.PrimExpr:
    """The packed sign word ``word`` of a row whose element ``c`` is ``value(c)`` where ``valid(c)``.

    ``value`` must be safe to evaluate for every ``c`` of the word (clamp its indices): both
    sides of the select may be computed.
    """
    zero, one = tirx.const(0, WORD), tirx.const(1, WORD)

    def bit(j: int) -> tirx.PrimExpr:
        c = word * WORD_BITS + j
        set_ = tirx.all(valid(c), value(c) >= tirx.const(0.0, "float32"))
        return tirx.Select(set_, one << tirx.const(j, WORD), zero)

    return functools.reduce(lambda acc, j: acc | bit(j), range(1, WORD_BITS), bit(0))
