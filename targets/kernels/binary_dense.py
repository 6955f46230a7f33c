"""TE compute of ``ai.mptc.BinaryDense``: XNOR-popcount (binary input) and sign-split sparse (real input).

Binary input (``targets.layout.binary_dense_tables``)::

    D[n, o] = sum_kw popcount((a[n, kw] ^ w[o, kw]) & m[o, kw]),   y = scale * (count[o] - 2 * D) + bias

The input is float (signed and packed here) or words packed by the previous binary layer; the
output is float or the packed signs of ``y`` (``N, ceil(O / 64)`` words) for a next binary layer,
computed as ``D <= thr[o]`` (flipped where the scale is negative; ``layout.sign_thresholds``).

Real input, sparse form (``targets.layout.sparse_dense_index``)::

    xs = [x, -x, 0],   y[n, o] = scale[o] * sum_j xs[n, idx[o, j]] + bias[o]

At batch, ``xs`` is transposed so an index entry adds the whole batch's values with vector loads
(``batch_lanes``); at batch 1 the lanes run over outputs and each entry is a gather. A family
without a gather instruction (NEON) sums each output's own list instead
(``layout.sparse_dense_rows``, ``sparse_rows_func``): a lane of a gathered vector costs it an
address and a load, as much as a scalar add of its own, and the lists carry no ELL padding.

The dense real-input form is no kernel of ours: a Relax ``matmul`` on the unpacked, scaled
weight (``targets.frontend``), scheduled by the glue rules.

Stages are named for the schedules (``kernels.stages``): ``PACK``/``SPLIT``, ``POPCOUNT``/``GATHER``,
``LANE_BITS``/``OUTPUT``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tvm import te, tirx

from mptc.targets.kernels import exact_sign, stages
from mptc.targets.kernels.bits import WORD, nonzero_word, popcount_term, sign_word, threshold_words
from mptc.targets.kernels.epilogue import clamp
from mptc.targets.layout import WORD_BITS, ceil_div, table_outputs


def pack_input(x: te.Tensor, plane=sign_word, name: str = stages.PACK) -> te.Tensor:
    """``sign(x)`` float ``(N, K)`` -> words ``(N, ceil(K / 64))`` uint64 with zero pad bits;
    ``plane`` ``bits.nonzero_word``: the words of ``x != 0`` instead."""
    batch, k = (int(d) for d in x.shape)
    return te.compute(
        (batch, ceil_div(k, WORD_BITS)),
        lambda n, w: plane(lambda c: x[n, tirx.min(c, k - 1)], lambda c: c < k, w),
        name=name,
    )


def xnor_popcount(
    a: te.Tensor, sign: te.Tensor, mask: te.Tensor, exact: exact_sign.ExactSign | None = None
) -> te.Tensor:
    """``D[n, o]`` over all ``O/V * V`` (padded) outputs; ``sign``/``mask`` are ``(O/V, Kw, V)``.
    With ``exact`` (an ONNX ``Sign`` input; ``kernels.exact_sign``, one flag for the call), the
    dot product itself where the input holds a zero; annotated ``stages.EXACT_SIGN``."""
    tiles, words, lanes = sign.shape
    kw = te.reduce_axis((0, words), name="kw")

    def popcount(n, o):
        w, m = sign[o // lanes, kw, o % lanes], mask[o // lanes, kw, o % lanes]
        if exact is None:
            return te.sum(popcount_term(a[n, kw], w, m), axis=kw)
        return te.sum(exact_sign.term(exact.flags[0], a[n, kw], w, m, exact.nonzero[n, kw]), axis=kw)

    attrs = {stages.EXACT_SIGN: exact.annotation} if exact is not None else None
    return te.compute((a.shape[0], tiles * lanes), popcount, name=stages.POPCOUNT, attrs=attrs)


def float_output(
    d: te.Tensor,
    count: te.Tensor,
    scale: te.Tensor,
    bias: te.Tensor,
    exact: exact_sign.Counts | None = None,
    words: int = 0,
) -> te.Tensor:
    """``y = scale[o] * (count[o] - 2 D) + bias[o]``; ``exact``: how the counts of an ONNX ``Sign``
    input over ``words`` words hold its exact rows (``exact_sign.dot``)."""

    def value(n, o):
        def binary_dot(counted):
            return count[o] - 2 * counted.astype("int32")

        dot = binary_dot(d[n, o]) if exact is None else exact_sign.dot(d[n, o], binary_dot, exact, words)
        return scale[o] * dot.astype("float32") + bias[o]

    return te.compute((d.shape[0], scale.shape[0]), value, name=stages.OUTPUT)


def packed_output(d: te.Tensor, threshold: te.Tensor, flip: te.Tensor, lanes: int) -> te.Tensor:
    """The packed signs of ``y``: ``(N, ceil(O / 64))`` words, as the next binary layer reads them."""
    return threshold_words(lambda at, c: d[at[0], c], lambda _, c: threshold[c], flip, (int(d.shape[0]),), lanes)


def xnor_dense_func(
    batch: int, k: int, out: int, lanes: int, words_in: bool = False, words_out: bool = False
) -> tirx.PrimFunc:
    """Unscheduled PrimFunc ``(x, sign, mask, count, scale, bias) -> y``; ``x`` / ``y`` may be words,
    and with a words output the parameters are ``(x, sign, mask, threshold, flip)``
    (``layout.sign_thresholds`` of the count table, scale and bias)."""
    padded = table_outputs(out, lanes, words_out)
    words = ceil_div(k, WORD_BITS)
    x = te.placeholder((batch, words), WORD, name="x") if words_in else te.placeholder((batch, k), "float32", name="x")
    sign = te.placeholder((padded // lanes, words, lanes), WORD, name="sign")
    mask = te.placeholder((padded // lanes, words, lanes), WORD, name="mask")
    d = xnor_popcount(x if words_in else pack_input(x), sign, mask)
    if words_out:
        threshold = te.placeholder((padded,), "int32", name="threshold")
        flip = te.placeholder((padded,), WORD, name="flip")
        return te.create_prim_func([x, sign, mask, threshold, flip, packed_output(d, threshold, flip, lanes)])
    count = te.placeholder((padded,), "int32", name="count")
    scale = te.placeholder((out,), "float32", name="scale")
    bias = te.placeholder((out,), "float32", name="bias")
    return te.create_prim_func([x, sign, mask, count, scale, bias, float_output(d, count, scale, bias)])


def exact_sign_dense_func(
    batch: int, k: int, out: int, lanes: int, counts: exact_sign.Counts = exact_sign.IN_WORDS
) -> tirx.PrimFunc:
    """Unscheduled PrimFunc ``(x, sign, mask, count, scale, bias) -> y`` of a dense layer on ONNX
    ``Sign(x)`` (``input_mode="sign"``; ``kernels.exact_sign``): an input with a zero counts
    ``dot = popcount(m & z) - 2 popcount((a ^ w) & m & z)`` with ``z`` the nonzero plane of
    ``x``, any other as binary (``count - 2 D``); ``y = scale * dot + bias``; ``counts``: as the
    schedule will count (16-bit counters or not)."""
    padded = table_outputs(out, lanes)
    words = ceil_div(k, WORD_BITS)
    x = te.placeholder((batch, k), "float32", name="x")
    nonzero = pack_input(x, nonzero_word, stages.PACK_NONZERO)
    hits = exact_sign.zero_bits(nonzero, 0, k)
    flags = te.compute((1,), lambda i: exact_sign.flag(hits[i], counts), name=stages.ZERO_FLAGS)
    sign = te.placeholder((padded // lanes, words, lanes), WORD, name="sign")
    mask = te.placeholder((padded // lanes, words, lanes), WORD, name="mask")
    count = te.placeholder((padded,), "int32", name="count")
    scale = te.placeholder((out,), "float32", name="scale")
    bias = te.placeholder((out,), "float32", name="bias")
    d = xnor_popcount(pack_input(x), sign, mask, exact_sign.ExactSign(nonzero, flags, counts))
    func = te.create_prim_func([x, sign, mask, count, scale, bias, float_output(d, count, scale, bias, counts, words)])
    return exact_sign.counts_from_flags(func, lambda _: [tirx.const(0, "int32")])


def split_input(x: te.Tensor, batch_lanes: bool = False) -> te.Tensor:
    """Sign-split operand ``[x, -x, 0]``: ``(N, 2K + 1)``, or ``(2K + 1, N)`` with ``batch_lanes``
    (a batch of one input contiguous)."""
    batch, k = x.shape
    zero = tirx.const(0.0, "float32")

    def value(n, f):
        return tirx.if_then_else(
            f < k, x[n, tirx.min(f, k - 1)], tirx.if_then_else(f < 2 * k, -x[n, tirx.min(f - k, k - 1)], zero)
        )

    if batch_lanes:
        return te.compute((2 * k + 1, batch), lambda f, n: value(n, f), name=stages.SPLIT)
    return te.compute((batch, 2 * k + 1), value, name=stages.SPLIT)


def sparse_dense(
    xs: te.Tensor,
    index: te.Tensor,
    scale: te.Tensor,
    bias: te.Tensor,
    batch_lanes: bool = False,
    relu: bool = False,
    upper: float | None = None,
) -> te.Tensor:
    """Sign-split sparse dense: only additions of gathered inputs; ``index`` is ``(O/V, L, V)`` int32.

    With ``batch_lanes`` (``xs`` from ``split_input(x, batch_lanes=True)``) the sums run along the
    batch: one index entry adds a contiguous row of batch values, a vector load instead of a gather.
    """
    _, taps, lanes = index.shape
    out = scale.shape[0]
    j = te.reduce_axis((0, taps), name="j")

    def tap(o):
        return index[o // lanes, j, o % lanes]

    if batch_lanes:
        s = te.compute((out, xs.shape[1]), lambda o, n: te.sum(xs[tap(o), n], axis=j), name=stages.GATHER)
        return te.compute(
            (xs.shape[1], out), lambda n, o: clamp(scale[o] * s[o, n] + bias[o], relu, upper), name=stages.OUTPUT
        )
    s = te.compute((xs.shape[0], out), lambda n, o: te.sum(xs[n, tap(o)], axis=j), name=stages.GATHER)
    return te.compute(
        (xs.shape[0], out), lambda n, o: clamp(scale[o] * s[n, o] + bias[o], relu, upper), name=stages.OUTPUT
    )


def sparse_dense_func(
    batch: int,
    k: int,
    out: int,
    index_shape: tuple[int, int, int],
    batch_lanes: bool = False,
    relu: bool = False,
    upper: float | None = None,
) -> tirx.PrimFunc:
    """Unscheduled PrimFunc ``(x, index, scale, bias) -> y`` of the real-input sparse path, a ReLU
    (``upper``: ReLU6) fused if ``relu``."""
    x = te.placeholder((batch, k), "float32", name="x")
    index = te.placeholder(index_shape, "int32", name="index")
    scale = te.placeholder((out,), "float32", name="scale")
    bias = te.placeholder((out,), "float32", name="bias")
    y = sparse_dense(split_input(x, batch_lanes), index, scale, bias, batch_lanes, relu, upper)
    return te.create_prim_func([x, index, scale, bias, y])


@dataclass(frozen=True)
class SparseRowSums:
    """What a family's loop nest of ``sparse_rows_func`` (``KernelSchedules.sparse_row_sums``) walks."""

    batch: int
    outputs: int


RowSumsBody = Callable[[SparseRowSums, tirx.Buffer, tirx.Buffer, tirx.Buffer, tirx.Buffer], tirx.Stmt]


def sparse_rows_func(
    batch: int, k: int, out: int, entries: int, body: RowSumsBody, relu: bool = False, upper: float | None = None
) -> tirx.PrimFunc:
    """Unscheduled PrimFunc ``(x, ptr, index, scale, bias) -> y`` of the sign-split dense whose
    sums (stage ``GATHER``, a ``te.extern`` of ``body``) walk each output's own list of
    ``layout.sparse_dense_rows``; ``relu`` / ``upper`` as in ``sparse_dense_func``."""
    x = te.placeholder((batch, k), "float32", name="x")
    ptr = te.placeholder((out + 1,), "int32", name="ptr")
    index = te.placeholder((entries,), "int32", name="index")
    scale = te.placeholder((out,), "float32", name="scale")
    bias = te.placeholder((out,), "float32", name="bias")
    xs = split_input(x)
    rows = SparseRowSums(batch, out)
    s = te.extern(
        (batch, out), [xs, ptr, index], lambda ins, outs: body(rows, *ins, outs[0]), name=stages.GATHER, dtype="float32"
    )
    y = te.compute((batch, out), lambda n, o: clamp(scale[o] * s[n, o] + bias[o], relu, upper), name=stages.OUTPUT)
    return te.create_prim_func([x, ptr, index, scale, bias, y])
