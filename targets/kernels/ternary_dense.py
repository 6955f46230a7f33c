"""TE compute of the dense-ternary form of ``ai.mptc.BinaryDense`` with real input (MPT-1/32).

The weight stays two bit-planes in the module (``targets.layout.ternary_planes``): ``plus`` has
bit ``o % 32`` of word ``[k, o // 32]`` set where ``w[o, k] = +1``, ``minus`` where it is ``-1``.
The kernel decodes them in registers::

    w(k, o) = [plus bit] - [minus bit],   y[n, o] = scale[o] * sum_k x[n, k] * w(k, o) + bias[o]

With the output channels as vector lanes, a plane's 16 (AVX-512) bits of one vector are one mask
register loaded straight from memory: the decode is a masked move and a masked subtract per
vector of weights, shared by the batch rows of a register tile, and the weight traffic is 2 bits
per weight instead of 32. Zero pad bits past ``O`` decode to ``w = 0``.
"""

from __future__ import annotations

from tvm import te, tirx

from mptc.targets.kernels import stages
from mptc.targets.layout import PLANE, PLANE_BITS, ceil_div


def plane_weight(plus: te.Tensor, minus: te.Tensor, taps: tuple[tirx.PrimExpr, ...], o: tirx.PrimExpr) -> tirx.PrimExpr:
    """The decoded weight ``[plus bit] - [minus bit]`` (float32) of output ``o`` at tap index ``taps``."""
    word = (*taps, o // PLANE_BITS)
    bit = tirx.const(1, PLANE) << (o % PLANE_BITS).astype(PLANE)
    one, zero, none = tirx.const(1.0, "float32"), tirx.const(0.0, "float32"), tirx.const(0, PLANE)
    return tirx.Select(plus[word] & bit != none, one, zero) - tirx.Select(minus[word] & bit != none, one, zero)


def dense_ternary_func(batch: int, k: int, out: int, lanes: int) -> tirx.PrimFunc:
    """Unscheduled PrimFunc ``(x, plus, minus, scale, bias) -> y``; the reduction (stage ``TERNARY``)
    covers ``O`` rounded up to whole vectors of ``lanes`` outputs, which the planes' words hold."""
    words = ceil_div(out, PLANE_BITS)
    x = te.placeholder((batch, k), "float32", name="x")
    plus = te.placeholder((k, words), PLANE, name="plus")
    minus = te.placeholder((k, words), PLANE, name="minus")
    scale = te.placeholder((out,), "float32", name="scale")
    bias = te.placeholder((out,), "float32", name="bias")
    j = te.reduce_axis((0, k), name="k")
    acc = te.compute(
        (batch, ceil_div(out, lanes) * lanes),
        lambda n, o: te.sum(x[n, j] * plane_weight(plus, minus, (j,), o), axis=j),
        name=stages.TERNARY,
    )
    y = te.compute((batch, out), lambda n, o: scale[o] * acc[n, o] + bias[o], name=stages.OUTPUT)
    return te.create_prim_func([x, plus, minus, scale, bias, y])
