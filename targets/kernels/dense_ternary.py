"""TE compute of the dense-ternary form of ``ai.mptc`` layers with real input (MPT-1/32).

The weight stays two bit-planes in the module (``targets.layout.ternary_planes``): ``plus`` has
bit ``o % 32`` of word ``[*tap, o // 32]`` set where ``w[o, *tap] = +1``, ``minus`` where it is
``-1``; zero pad bits past ``O`` decode to ``w = 0``::

    w(tap, o) = [plus bit] - [minus bit]

BinaryDense decodes in registers::

    y[n, o] = scale[o] * sum_k x[n, k] * w(k, o) + bias[o]

With the output channels as vector lanes, a plane's 16 (AVX-512) bits of one vector are one mask
register loaded straight from memory: the decode is a masked move and a masked subtract per
vector of weights, shared by the batch rows of a register tile, and the weight traffic is 2 bits
per weight instead of 32.

BinaryConv decodes once per parallel task into an fp32 block of its output channels (stage
``DECODE``, ``(O / V, C, kh, kw, V)``), which the task's register tiles then read as vectors::

    acc[n, oy, ox, o] = sum_{c, ky, kx} xp[n, c, oy*sh + ky*dh, ox*sw + kx*dw] * wd[o // V, c, ky, kx, o % V]
    y[n, o, oy, ox] = scale[o] * acc[n, oy, ox, o] + bias[o]  (+ residual, ReLU: ``targets.epilogue``)

``xp`` is the zero-padded input (stage ``PAD``). A task decodes ``C * kh * kw * V`` weights for
``OH' * OW * V`` outputs of ``C * kh * kw`` taps each: the decode is a fraction ``1 / (OH' * OW)``
of the work, the module keeps 2 bits per weight, and the fp32 block stays in cache.

A 1x1 conv (stride 1, no padding) is a GEMM over its pixels, which the fp32 glue's register tiles
run at the FMA units' peak: its weight is decoded once per call into an fp32 stage ``DECODE``
``(C, O)`` that the glue's rule (``schedules.cpu_glue.TiledReduction``) keeps as a stage and
reads as the GEMM's weight::

    wd[c, o] = w(c, o)
    y[n, o, h, w] = scale[o] * sum_c x[n, c, h, w] * wd[c, o] + bias[o]  (+ residual, ReLU)

The decode is a fraction ``1 / (H * W)`` of the work; per call it writes ``4 * C * O`` bytes
(cached) where the fp32 form reads as many from the module's constants.
"""

from __future__ import annotations

from tvm import te, tirx

from mptc.targets.kernels import stages
from mptc.targets.kernels.binary_conv import zero_padded
from mptc.targets.kernels.epilogue import clamp, finish, residual_input
from mptc.targets.layout import NIBBLE_OUTPUTS, NIBBLE_TABLE, PLANE, PLANE_BITS, ConvGeometry, ceil_div


def plane_weight(plus: te.Tensor, minus: te.Tensor, taps: tuple[tirx.PrimExpr, ...], o: tirx.PrimExpr) -> tirx.PrimExpr:
    """The decoded weight ``[plus bit] - [minus bit]`` (float32) of output ``o`` at tap index ``taps``."""
    word = (*taps, o // PLANE_BITS)
    bit = tirx.const(1, PLANE) << (o % PLANE_BITS).astype(PLANE)
    none = tirx.const(0, PLANE)
    one, zero, minus_one = (tirx.const(v, "float32") for v in (1.0, 0.0, -1.0))
    return tirx.Select(minus[word] & bit != none, minus_one, tirx.Select(plus[word] & bit != none, one, zero))


def dense_ternary_func(
    batch: int, k: int, out: int, lanes: int, nibbles: bool = False, relu: bool = False, upper: float | None = None
) -> tirx.PrimFunc:
    """Unscheduled PrimFunc ``(x, plus, minus, scale, bias) -> y``; the reduction (stage ``TERNARY``)
    covers ``O`` rounded up to whole vectors of ``lanes`` outputs, which the planes' words hold;
    a ReLU (``upper``: ReLU6) fused if ``relu``.

    ``nibbles`` (4-lane vectors, NEON): ``(x, codes, table, scale, bias) -> y`` instead, the weight
    as one code byte per 4 outputs (``layout.ternary_nibbles``) decoded by one vector load from
    ``table`` (``layout.NIBBLE_TABLE``): a bit test per lane costs NEON six instructions per
    vector, the load one."""
    x = te.placeholder((batch, k), "float32", name="x")
    scale = te.placeholder((out,), "float32", name="scale")
    bias = te.placeholder((out,), "float32", name="bias")
    j = te.reduce_axis((0, k), name="k")
    if nibbles:
        codes = te.placeholder((k, ceil_div(out, NIBBLE_OUTPUTS)), "uint8", name="codes")
        table = te.placeholder(NIBBLE_TABLE.shape, "float32", name="table")
        weights = [codes, table]

        def weight(o: tirx.PrimExpr) -> tirx.PrimExpr:
            return table[codes[j, o // NIBBLE_OUTPUTS].astype("int32"), o % NIBBLE_OUTPUTS]
    else:
        words = ceil_div(out, PLANE_BITS)
        plus = te.placeholder((k, words), PLANE, name="plus")
        minus = te.placeholder((k, words), PLANE, name="minus")
        weights = [plus, minus]

        def weight(o: tirx.PrimExpr) -> tirx.PrimExpr:
            return plane_weight(plus, minus, (j,), o)

    acc = te.compute(
        (batch, ceil_div(out, lanes) * lanes), lambda n, o: te.sum(x[n, j] * weight(o), axis=j), name=stages.TERNARY
    )
    y = te.compute((batch, out), lambda n, o: clamp(scale[o] * acc[n, o] + bias[o], relu, upper), name=stages.OUTPUT)
    return te.create_prim_func([x, *weights, scale, bias, y])


def conv_ternary_func(
    geo: ConvGeometry,
    lanes: int,
    residual: bool = False,
    relu: bool = False,
    in_registers: bool = False,
    upper: float | None = None,
) -> tirx.PrimFunc:
    """Unscheduled PrimFunc ``(x, plus, minus, scale, bias[, residual]) -> y`` (NCHW), the decoded
    block ``DECODE`` and the reduction ``TERNARY`` over ``O`` rounded up to whole vectors of ``lanes``;
    ``residual`` / ``relu`` / ``upper`` fuse ``+ residual`` / ``max(., 0)`` / ``min(., upper)`` into ``OUTPUT``."""
    (sh, sw), (dh, dw), (kh, kw) = geo.strides, geo.dilations, geo.kernel
    x = te.placeholder((geo.batch, geo.channels, geo.height, geo.width), "float32", name="x")
    planes = (geo.channels, kh, kw, ceil_div(geo.out_channels, PLANE_BITS))
    plus, minus = te.placeholder(planes, PLANE, name="plus"), te.placeholder(planes, PLANE, name="minus")
    scale = te.placeholder((geo.out_channels,), "float32", name="scale")
    bias = te.placeholder((geo.out_channels,), "float32", name="bias")
    res = residual_input((geo.batch, geo.out_channels, geo.out_height, geo.out_width), residual)

    def padded(n, c, yp, xp):
        return zero_padded(lambda y, xx: x[n, c, y, xx], geo, yp, xp, tirx.const(0.0, "float32"))

    xp = te.compute((geo.batch, geo.channels, geo.padded_height, geo.padded_width), padded, name=stages.PAD)
    blocks = ceil_div(geo.out_channels, lanes)
    wd = te.compute(
        (blocks, geo.channels, kh, kw, lanes),
        lambda b, c, ky, kx, v: plane_weight(plus, minus, (c, ky, kx), b * lanes + v),
        name=stages.DECODE,
    )
    c, ky, kx = te.reduce_axis((0, geo.channels), "c"), te.reduce_axis((0, kh), "ky"), te.reduce_axis((0, kw), "kx")

    def weight(o):
        return plane_weight(plus, minus, (c, ky, kx), o) if in_registers else wd[o // lanes, c, ky, kx, o % lanes]

    acc = te.compute(
        (geo.batch, geo.out_height, geo.out_width, blocks * lanes),
        lambda n, oy, ox, o: te.sum(xp[n, c, oy * sh + ky * dh, ox * sw + kx * dw] * weight(o), axis=[c, ky, kx]),
        name=stages.TERNARY,
        attrs={stages.COLUMN_STRIDE: sw},
    )
    y = te.compute(
        (geo.batch, geo.out_channels, geo.out_height, geo.out_width),
        lambda n, o, oy, ox: finish(scale[o] * acc[n, oy, ox, o] + bias[o], res, relu, n, o, oy, ox, upper),
        name=stages.OUTPUT,
    )
    return te.create_prim_func([x, plus, minus, scale, bias, *([res] if res is not None else []), y])


def pointwise_ternary_func(
    geo: ConvGeometry, residual: bool = False, relu: bool = False, upper: float | None = None
) -> tirx.PrimFunc:
    """Unscheduled PrimFunc ``(x, plus, minus, scale, bias[, residual]) -> y`` (NCHW) of a 1x1
    stride-1 unpadded conv: ``DECODE`` ``(C, O)``, the reduction ``TERNARY`` and ``OUTPUT`` with
    ``residual`` / ``relu`` / ``upper`` as ``conv_ternary_func``. Shapes are int64, as the Relax
    legalizer writes the fp32 glue the same rule schedules."""

    def shape(*dims: int) -> tuple[tirx.IntImm, ...]:
        return tuple(tirx.IntImm("int64", d) for d in dims)

    n, c, o = geo.batch, geo.channels, geo.out_channels
    pixels = (geo.height, geo.width)
    x = te.placeholder(shape(n, c, *pixels), "float32", name="x")
    planes = shape(c, 1, 1, ceil_div(o, PLANE_BITS))
    plus, minus = te.placeholder(planes, PLANE, name="plus"), te.placeholder(planes, PLANE, name="minus")
    scale = te.placeholder(shape(o), "float32", name="scale")
    bias = te.placeholder(shape(o), "float32", name="bias")
    res = residual_input(shape(n, o, *pixels), residual)
    zero = tirx.IntImm("int64", 0)
    wd = te.compute(shape(c, o), lambda ci, oi: plane_weight(plus, minus, (ci, zero, zero), oi), name=stages.DECODE)
    k = te.reduce_axis(shape(0, c), "c")
    acc = te.compute(
        shape(n, o, *pixels),
        lambda b, oi, h, w: te.sum(x[b, k, h, w] * wd[k, oi], axis=k),
        name=stages.TERNARY,
    )
    y = te.compute(
        shape(n, o, *pixels),
        lambda b, oi, h, w: finish(scale[oi] * acc[b, oi, h, w] + bias[oi], res, relu, b, oi, h, w, upper),
        name=stages.OUTPUT,
    )
    return te.create_prim_func([x, plus, minus, scale, bias, *([res] if res is not None else []), y])
