"""ONNX ``Sign`` inputs (sign(0) = 0) in the XNOR-popcount kernels, exact and at binary speed.

A binary kernel reads sign(0) as +1; ONNX ``Sign`` maps 0 to 0, which takes a second bit-plane
(the input's nonzero bits ``z``) and a second popcount per word: ``dot = popcount(m & z) -
2 popcount((a ^ w) & m & z)``. Float activations are rarely exactly zero, so the kernels keep
that form for the rows that need it: a flag per row of outputs (a conv's output row: its window's
input rows; a dense layer's whole call) says whether any input it reads is zero, and

- a flagged row counts the exact dot product on top of its flag (``Counts.base``);
- every other row counts as a binary input does (``popcount((a ^ w) & m)``, ``dot = B - 2 D``).

The choice is fixed for a whole reduction, so a schedule unswitches the reduction loop on it
(``schedules.unswitch``): each row runs one loop with no select. The counts start at the flag
(``counts_from_flags``), and the epilogue tells the forms apart by the count (``dot``). Where the
counts are 16-bit counters (NEON, ``schedules.lane_counts``), each counter adds an offset per
word so that it never goes below 0, and the flag is smaller (``Counts``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import tvm_ffi
from tvm import s_tir, te, tirx
from tvm.ir import Range
from tvm.ir.expr import TensorRegion

from mptc.targets.kernels import stages
from mptc.targets.kernels.bits import BIT_OR, WORD, channel_bits, popcount_term


@dataclass(frozen=True)
class Counts:
    """How a kernel's counts hold an exact row: from its flag ``base``, far above any binary
    row's count so that the epilogue tells them apart, each word of the reduction adding its
    exact term and ``per_word``."""

    base: int
    per_word: int = 0

    @property
    def in_counters(self) -> bool:
        """Whether the counts are 16-bit counters (``schedules.lane_counts``)."""
        return self.per_word != 0


IN_WORDS = Counts(1 << 40)
"""int64 counts: the flag above any count (< 2^32), the exact terms as they are."""
COUNTER_OFFSET = 16
"""Added per 16-bit counter and word to an exact term (``popcount16(m & z) - 2 popcount16(x) >=
-16``), so that no counter goes below 0."""
IN_COUNTERS = Counts(1 << 15, 4 * COUNTER_OFFSET)
"""16-bit counters: an exact row's counts lie in ``[2^15, 2^15 + 128 W]`` for ``W`` words, a binary
row's below ``64 W``."""
MAX_COUNTER_WORDS = ((1 << 16) - IN_COUNTERS.base) // (2 * IN_COUNTERS.per_word) - 1
"""The most words an exact Sign conv reduces over in counters: its counts still fold below 2^16."""


ANNOTATED_WORDS = 1  # ``stages.EXACT_SIGN`` on a popcount that counts in int64 words
ANNOTATED_COUNTERS = 2  # ... and on one built for 16-bit counters (``IN_COUNTERS``)


@dataclass(frozen=True)
class ExactSign:
    """What a popcount over an ONNX ``Sign`` input reads beside the signs: its nonzero words
    (padded like the signs) and its rows' flags (``ZERO_FLAGS``)."""

    nonzero: te.Tensor
    flags: te.Tensor
    counts: Counts

    @property
    def annotation(self) -> int:
        """``stages.EXACT_SIGN``'s value on the popcount: how the schedule must count."""
        return ANNOTATED_COUNTERS if self.counts.in_counters else ANNOTATED_WORDS


COUNT = "int64"  # the counts: signed, for the exact terms are negative where most inputs disagree


def flag(hit: tirx.PrimExpr, counts: Counts) -> tirx.PrimExpr:
    """The flag of a row whose inputs' zero bits OR to ``hit``: ``counts.base`` where any is set."""
    return tirx.Select(hit != tirx.const(0, WORD), tirx.const(counts.base, COUNT), tirx.const(0, COUNT))


def zero_bits(nonzero: te.Tensor, rows: int, channels: int) -> te.Tensor:
    """``ZERO_ROWS``: uint64 over the first ``rows`` axes of the nonzero words ``(..., words)``
    (``(1,)`` for none), nonzero where a valid channel's bit is missing from the words under
    those indices: where the input holds a zero."""
    shape = [int(d) for d in nonzero.shape]
    axes = [te.reduce_axis((0, d), name=f"r{i}") for i, d in enumerate(shape[rows:])]

    def missing(*row):
        at = (*row[:rows], *axes)
        return BIT_OR(nonzero[at] ^ channel_bits(channels, axes[-1]), axis=axes)

    return te.compute(shape[:rows] or [1], missing, name=stages.ZERO_ROWS)


def term(
    flags: tirx.PrimExpr, act: tirx.PrimExpr, w: tirx.PrimExpr, m: tirx.PrimExpr, z: tirx.PrimExpr
) -> tirx.PrimExpr:
    """One word's term: in a flagged row the exact ``Sign`` term ``popcount(m & z) -
    2 popcount((a ^ w) & m & z)``, elsewhere the binary term ``popcount((a ^ w) & m)``."""
    valid = m & z
    exact = tirx.popcount(valid).astype(COUNT) - (tirx.popcount((act ^ w) & valid).astype(COUNT) << 1)
    flagged = flags != tirx.const(0, COUNT)
    return tirx.if_then_else(flagged, exact, popcount_term(act, w, m).astype(COUNT))


def dot(
    count: tirx.PrimExpr, binary_dot: Callable[[tirx.PrimExpr], tirx.PrimExpr], counts: Counts, words: int
) -> tirx.PrimExpr:
    """The int32 dot product of a count over ``words`` words: ``count - base - per_word * words``
    in a flagged row, else ``binary_dot(count)`` (a select, not ``if_then_else``: the condition
    varies along a vector)."""
    exact = count >= tirx.const(counts.base // 2, COUNT)
    offset = tirx.const(counts.base + counts.per_word * words, COUNT)
    return tirx.Select(exact, (count - offset).astype("int32"), binary_dot(count))


def counts_from_flags(
    func: tirx.PrimFunc, row: Callable[[Sequence[tirx.PrimExpr]], list[tirx.PrimExpr]]
) -> tirx.PrimFunc:
    """``func`` whose ``POPCOUNT`` counts start at their row's ``ZERO_FLAGS`` (at ``row(count
    indices)``) instead of 0: TE's ``create_prim_func`` keeps no reduction init but the identity."""
    flags = next(b for b in func.body.block.alloc_buffers if b.name == stages.ZERO_FLAGS)

    def start(block: s_tir.SBlock) -> s_tir.SBlock:
        if block.name_hint != stages.POPCOUNT:
            return block
        init = block.init
        at = row(init.indices)
        region = TensorRegion(flags, [Range.from_min_extent(i, 1) for i in at], block.reads[0].ty)
        return s_tir.SBlock(
            block.iter_vars,
            [*block.reads, region],
            block.writes,
            block.name_hint,
            block.body,
            tirx.BufferStore(init.buffer, tirx.BufferLoad(flags, at), init.indices),
            block.alloc_buffers,
            block.match_buffers,
            block.annotations,
        )

    return func.with_body(tvm_ffi.structural_map(func.body, [(s_tir.SBlock, start)], order="post"))
