"""Ternary convs on uint8 activations (``mptc compile --activations int8``).

The input is quantized once per call, as ONNX ``QuantizeLinear`` does, into padded words of four
channels (stage ``QUANTIZE``; byte ``i`` of word ``q[n, c4, yp, xp]``)::

    q[n, 4 c4 + i, yp, xp] = saturate(round_half_even(x[n, 4 c4 + i, yp - pt, xp - pl] / s) + zp)

with ``zp`` (the level of 0.0) in the padding and past the last channel: the four products of one
``vpdpbusd`` lane read one word. The weight stays 2 bits per tap (``layout.int8_conv_tables``):
byte ``4 * lane + i`` of the 64-byte vector ``[o // 16, c16, ky, kx]`` holds in bits ``2j, 2j + 1``
the code ``w + 1`` of output ``o`` at input channel ``16 c16 + 4 j + i``; pad codes are 1. The
integer sums (stage ``INT8_DOT``, ``(N, OH, OW, O')``) are exact::

    acc[n, oy, ox, o] = sum_{c, ky, kx} q[n, c, oy*sh + ky*dh, ox*sw + kx*dw] * w[o, c, ky, kx]
    y[n, o, oy, ox] = float(acc - zp * sum w[o]) * (s * scale[o]) + bias[o]  (+ residual, ReLU)

since a padded position holds ``zp`` and ``sum (q - zp) * w = sum q * w - zp * sum w``. The sums
are a loop nest of AVX-512 VNNI's ``vpdpbusd`` (:func:`vnni_conv_dot`): a register tile of
``columns x vectors`` outputs, each weight vector decoded once (shift, AND, subtract 1) for the
tile's columns, each input word broadcast once for its vectors.
"""

from __future__ import annotations

from tvm import te, tirx
from tvm.script.ir_builder import IRBuilder
from tvm.script.ir_builder import tirx as T

from mptc.targets.kernels import stages
from mptc.targets.kernels.binary_conv import zero_padded
from mptc.targets.kernels.epilogue import finish, residual_input
from mptc.targets.layout import INT8_LANES, INT8_STEP, ConvGeometry, ceil_div

CHANNELS_PER_WORD = 4  # uint8 channels of one pixel in a 32-bit word: one vpdpbusd lane's four products
VNNI_COLUMNS = 8  # output columns per register tile at most (the largest divisor of the row)
VNNI_ACCUMULATORS = 16  # zmm accumulators per tile: columns x vectors


def quantized_input(x: te.Tensor, geo: ConvGeometry, scale: float, zero_point: int) -> te.Tensor:
    """Stage ``QUANTIZE``: the uint8 levels of four channels in one uint32 word (channel ``4 c4 + i``
    in bits ``8i``), ``(N, 4 * ceil(C / 16), Hp, Wp)``, ``zp`` in the padding and past the last
    channel. A word is four loads from consecutive channel planes: vectorized along a row."""
    words = ceil_div(geo.channels, INT8_STEP) * CHANNELS_PER_WORD

    def level(n, c, yp, xp):
        read = zero_padded(lambda y, xx: x[n, tirx.min(c, geo.channels - 1), y, xx], geo, yp, xp, 0.0)
        q = tirx.max(tirx.min(tirx.nearbyint(read / tirx.const(scale, "float32")) + float(zero_point), 255.0), 0.0)
        return tirx.if_then_else(c < geo.channels, q, float(zero_point)).astype("uint32")

    def word(n, c4, yp, xp):
        levels = [level(n, c4 * CHANNELS_PER_WORD + i, yp, xp) << tirx.const(8 * i, "uint32") for i in range(4)]
        return levels[0] | levels[1] | levels[2] | levels[3]

    return te.compute((geo.batch, words, geo.padded_height, geo.padded_width), word, name=stages.QUANTIZE)


def vnni_conv_func(
    geo: ConvGeometry,
    scale: float,
    zero_point: int,
    residual: bool = False,
    relu: bool = False,
    upper: float | None = None,
) -> tirx.PrimFunc:
    """PrimFunc ``(x, codes, offset, rescale, bias[, residual]) -> y`` (NCHW), the sums by
    :func:`vnni_conv_dot`; ``residual`` / ``relu`` / ``upper`` fuse ``+ residual`` / ``max(., 0)``
    / ``min(., upper)`` into ``OUTPUT``. ``QUANTIZE`` and ``OUTPUT`` are left to schedule."""
    (kh, kw) = geo.kernel
    blocks, groups = ceil_div(geo.out_channels, INT8_LANES), ceil_div(geo.channels, INT8_STEP)
    x = te.placeholder((geo.batch, geo.channels, geo.height, geo.width), "float32", name="x")
    codes = te.placeholder((blocks, groups, kh, kw, 4 * INT8_LANES), "uint8", name="codes")
    offset = te.placeholder((blocks * INT8_LANES,), "int32", name="offset")
    rescale = te.placeholder((geo.out_channels,), "float32", name="rescale")
    bias = te.placeholder((geo.out_channels,), "float32", name="bias")
    res = residual_input((geo.batch, geo.out_channels, geo.out_height, geo.out_width), residual)
    q = quantized_input(x, geo, scale, zero_point)
    shape = (geo.batch, geo.out_height, geo.out_width, blocks * INT8_LANES)
    acc = te.extern(
        shape, [q, codes], lambda ins, outs: vnni_conv_dot(geo, *ins, outs[0]), name=stages.INT8_DOT, dtype="int32"
    )

    def output(n, o, oy, ox):
        value = (acc[n, oy, ox, o] + offset[o]).astype("float32") * rescale[o] + bias[o]
        return finish(value, res, relu, n, o, oy, ox, upper)

    y = te.compute((geo.batch, geo.out_channels, geo.out_height, geo.out_width), output, name=stages.OUTPUT)
    return te.create_prim_func([x, codes, offset, rescale, bias, *([res] if res is not None else []), y])


def vnni_conv_dot(geo: ConvGeometry, q: tirx.Buffer, codes: tirx.Buffer, acc: tirx.Buffer) -> tirx.Stmt:
    """The ``INT8_DOT`` loop nest on AVX-512 VNNI: parallel over ``(n, output-vector pair, row)``;
    a register tile of up to :data:`VNNI_COLUMNS` columns x 1-2 vectors of 16 outputs; per input
    word group and tap, each code vector is decoded once into four weight vectors (one per
    channel word), each pixel's channel word broadcast once for the tile's vectors."""
    (sh, sw), (dh, dw), (kh, kw) = geo.strides, geo.dilations, geo.kernel
    blocks, groups = ceil_div(geo.out_channels, INT8_LANES), ceil_div(geo.channels, INT8_STEP)
    vectors = 2 if blocks % 2 == 0 else 1
    columns = max(t for t in range(1, VNNI_COLUMNS + 1) if geo.out_width % t == 0)
    lanes, width = INT8_LANES, 4 * INT8_LANES
    tasks = geo.batch * (blocks // vectors) * geo.out_height
    three, one = tirx.Broadcast(tirx.const(3, "uint8"), width), tirx.Broadcast(tirx.const(1, "uint8"), width)
    with IRBuilder() as ib:
        with T.parallel(0, tasks) as task:
            n = task // (blocks // vectors * geo.out_height)
            pair = task // geo.out_height % (blocks // vectors)
            oy = task % geo.out_height
            with T.serial(0, geo.out_width // columns) as tile:
                regs = [[T.alloc_local((lanes,), "int32") for _ in range(vectors)] for _ in range(columns)]
                for t in range(columns):
                    for v in range(vectors):
                        T.buffer_store(
                            regs[t][v], tirx.Broadcast(tirx.const(0, "int32"), lanes), [tirx.Ramp(0, 1, lanes)]
                        )
                with T.serial(0, groups) as group, T.serial(0, kh) as ky, T.serial(0, kw) as kx:
                    packed = [
                        codes.vload([pair * vectors + v, group, ky, kx, 0], f"uint8x{width}") for v in range(vectors)
                    ]
                    for j in range(4):
                        shift = tirx.Broadcast(tirx.const(2 * j, "uint8"), width)
                        weights = [
                            tirx.reinterpret(f"int8x{width}", ((code >> shift) & three) - one) for code in packed
                        ]
                        for t in range(columns):
                            ox = tile * columns + t
                            word = q[n, group * 4 + j, oy * sh + ky * dh, ox * sw + kx * dw]
                            broadcast = tirx.reinterpret(
                                f"int8x{width}", tirx.Broadcast(tirx.reinterpret("int32", word), lanes)
                            )
                            for v in range(vectors):
                                total = tirx.call_llvm_pure_intrin(
                                    f"int32x{lanes}",
                                    "llvm.x86.avx512.vpdpbusd.512",
                                    regs[t][v].vload([0], f"int32x{lanes}"),
                                    broadcast,
                                    weights[v],
                                )
                                T.buffer_store(regs[t][v], total, [tirx.Ramp(0, 1, lanes)])
                for t in range(columns):
                    for v in range(vectors):
                        ox = tile * columns + t
                        T.buffer_store(
                            acc,
                            regs[t][v].vload([0], f"int32x{lanes}"),
                            [n, oy, ox, tirx.Ramp((pair * vectors + v) * lanes, 1, lanes)],
                        )
    return ib.get()
