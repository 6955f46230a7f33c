"""TE compute of ``ai.mptc.BinaryDense``: XNOR-popcount (binary input) and sign-split sparse (real input).

Binary input (``targets.layout.binary_dense_tables``)::

    D[n, o] = sum_kw popcount((a[n, kw] ^ w[o, kw]) & m[o, kw]),   y = scale * (count[o] - 2 * D) + bias

The input is float (signed and packed here) or words packed by the previous binary layer; the
output is float or the packed signs of ``y`` (``N, ceil(O / 64)`` words) for a next binary layer,
computed as ``D <= thr[o]`` (flipped where the scale is negative; ``layout.sign_thresholds``).

Real input, sparse form (``targets.layout.sparse_dense_index``)::

    xs = [x, -x, 0],   y[n, o] = scale[o] * sum_j xs[n, idx[o, j]] + bias[o]

Real input, dense form at small batch (the weight unpacked and scaled at compile time, kept as
``(O, K)`` rows so each output streams one contiguous row; ``L`` = vector lanes)::

    partial[n, o, l] = sum_c x[n, c*L + l] * w[o, c*L + l],   total = sum_l partial,   y = total + bias

Blocks are named for the schedules: ``pack``/``split``, ``popcount``/``gather``/``partial`` (+ ``total``), ``output``.
"""

from __future__ import annotations

from tvm import te, tirx

from mptc.targets.kernels.bits import WORD, sign_word, threshold_words
from mptc.targets.layout import WORD_BITS, ceil_div, table_outputs


def pack_input(x: te.Tensor) -> te.Tensor:
    """``sign(x)`` float ``(N, K)`` -> words ``(N, ceil(K / 64))`` uint64 with zero pad bits."""
    batch, k = (int(d) for d in x.shape)
    return te.compute(
        (batch, ceil_div(k, WORD_BITS)),
        lambda n, w: sign_word(lambda c: x[n, tirx.min(c, k - 1)], lambda c: c < k, w),
        name="pack",
    )


def xnor_popcount(a: te.Tensor, sign: te.Tensor, mask: te.Tensor) -> te.Tensor:
    """``D[n, o]`` over all ``O/V * V`` (padded) outputs; ``sign``/``mask`` are ``(O/V, Kw, V)``."""
    tiles, words, lanes = sign.shape
    kw = te.reduce_axis((0, words), name="kw")
    return te.compute(
        (a.shape[0], tiles * lanes),
        lambda n, o: te.sum(tirx.popcount((a[n, kw] ^ sign[o // lanes, kw, o % lanes]) & mask[o // lanes, kw, o % lanes]), axis=kw),
        name="popcount",
    )


def float_output(d: te.Tensor, count: te.Tensor, scale: te.Tensor, bias: te.Tensor) -> te.Tensor:
    """``y = scale[o] * (count[o] - 2 D) + bias[o]``."""
    return te.compute(
        (d.shape[0], scale.shape[0]),
        lambda n, o: scale[o] * (count[o] - 2 * d[n, o].astype("int32")).astype("float32") + bias[o],
        name="output",
    )


def packed_output(d: te.Tensor, threshold: te.Tensor, flip: te.Tensor, lanes: int) -> te.Tensor:
    """The packed signs of ``y``: ``(N, ceil(O / 64))`` words, as the next binary layer reads them."""
    return threshold_words(lambda at, c: d[at[0], c], lambda _, c: threshold[c], flip, (int(d.shape[0]),), lanes)


def xnor_dense_func(batch: int, k: int, out: int, lanes: int, words_in: bool = False, words_out: bool = False) -> tirx.PrimFunc:
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


def split_input(x: te.Tensor) -> te.Tensor:
    """Sign-split operand ``(N, 2K + 1)`` = ``[x, -x, 0]``."""
    batch, k = x.shape
    zero = tirx.const(0.0, "float32")
    return te.compute(
        (batch, 2 * k + 1),
        lambda n, f: tirx.if_then_else(f < k, x[n, tirx.min(f, k - 1)], tirx.if_then_else(f < 2 * k, -x[n, tirx.min(f - k, k - 1)], zero)),
        name="split",
    )


def sparse_dense(xs: te.Tensor, index: te.Tensor, scale: te.Tensor, bias: te.Tensor) -> te.Tensor:
    """Sign-split sparse dense: only additions of gathered inputs; ``index`` is ``(O/V, L, V)`` int32."""
    _, taps, lanes = index.shape
    batch, out = xs.shape[0], scale.shape[0]
    j = te.reduce_axis((0, taps), name="j")
    s = te.compute((batch, out), lambda n, o: te.sum(xs[n, index[o // lanes, j, o % lanes]], axis=j), name="gather")
    return te.compute((batch, out), lambda n, o: scale[o] * s[n, o] + bias[o], name="output")


def sparse_dense_func(batch: int, k: int, out: int, index_shape: tuple[int, int, int]) -> tirx.PrimFunc:
    """Unscheduled PrimFunc ``(x, index, scale, bias) -> y`` of the real-input sparse path."""
    x = te.placeholder((batch, k), "float32", name="x")
    index = te.placeholder(index_shape, "int32", name="index")
    scale = te.placeholder((out,), "float32", name="scale")
    bias = te.placeholder((out,), "float32", name="bias")
    y = sparse_dense(split_input(x), index, scale, bias)
    return te.create_prim_func([x, index, scale, bias, y])


def row_dot(x: te.Tensor, weight: te.Tensor, bias: te.Tensor, lanes: int) -> te.Tensor:
    """``y = x @ w^T + bias`` with ``w`` ``(O, K')``, ``K'`` = ``K`` zero-padded to whole chunks of ``lanes``."""
    batch, k = (int(d) for d in x.shape)
    out, padded = (int(d) for d in weight.shape)
    c = te.reduce_axis((0, padded // lanes), name="c")
    partial = te.compute(
        (batch, out, lanes),
        lambda n, o, l: te.sum(x[n, tirx.min(c * lanes + l, k - 1)] * weight[o, c * lanes + l], axis=c),
        name="partial",
    )

    lane = te.reduce_axis((0, lanes), name="lane")
    total = te.compute((batch, out), lambda n, o: te.sum(partial[n, o, lane], axis=lane), name="total")
    return te.compute((batch, out), lambda n, o: total[n, o] + bias[o], name="output")


def row_dot_func(batch: int, k: int, out: int, lanes: int) -> tirx.PrimFunc:
    """Unscheduled PrimFunc ``(x, weight, bias) -> y`` of the dense real-input form (see ``row_dot``)."""
    x = te.placeholder((batch, k), "float32", name="x")
    weight = te.placeholder((out, ceil_div(k, lanes) * lanes), "float32", name="weight")
    bias = te.placeholder((out,), "float32", name="bias")
    return te.create_prim_func([x, weight, bias, row_dot(x, weight, bias, lanes)])
