"""Ternary convs on uint8 activations (``mptc compile --activations int8``).

The input is quantized once per call, as ONNX ``QuantizeLinear`` does, into padded words of four
channels (stage ``QUANTIZE``; byte ``i`` of word ``q[n, c4, yp, xp]``)::

    q[n, 4 c4 + i, yp, xp] = saturate(round_half_even(x[n, 4 c4 + i, yp - pt, xp - pl] / s) + zp)

with ``zp`` (the level of 0.0) in the padding and past the last channel: the four products of one
dot-product lane read one word. The weight stays 2 bits per tap (``layout.int8_tables``):
byte ``4 * lane + i`` of the 64-byte vector ``[o // 16, c16, ky, kx]`` holds in bits ``2j, 2j + 1``
the code ``c = w + 1`` of output ``o`` at input channel ``16 c16 + 4 j + i``; pad codes are 1
(``w = 0``). The integer sums (stage ``INT8_DOT``, ``(N, OH, OW, O')``) are exact::

    acc[n, oy, ox, o] = sum_{c, ky, kx} q[n, c, oy*sh + ky*dh, ox*sw + kx*dw] * w[o, c, ky, kx]
    y[n, o, oy, ox] = float(acc - zp * sum w[o]) * (s * scale[o]) + bias[o]

since a padded position holds ``zp`` and ``sum (q - zp) * w = sum q * w - zp * sum w``. Where the
dot instruction's code operand is signed (``vpdpbusd``) a code vector decodes to ``w`` (shift,
AND, subtract 1); where it is not (``udot``), to ``c`` (shift, AND), and the sum of the levels in
each output's window (stage ``WINDOW_LEVELS``, every word and tap) takes the ``+ 1`` back out:
``sum q * w = sum q * c - window``. The sums are a loop nest of dot-product instructions
(:func:`dot_conv`, ``kernels.dot_instructions``): a register tile of ``columns x vectors``
outputs, each code vector decoded once for the tile's columns, each input word broadcast once
for its vectors (or, with ``udot``, four columns' words read from one load).
"""

from __future__ import annotations

from tvm import te, tirx
from tvm.script.ir_builder import IRBuilder
from tvm.script.ir_builder import tirx as T

from mptc.targets.kernels import stages
from mptc.targets.kernels.binary_conv import clamped
from mptc.targets.kernels.dot_instructions import DotInstruction
from mptc.targets.kernels.epilogue import finish, residual_input
from mptc.targets.layout import INT8_LANES, INT8_STEP, ConvGeometry, ceil_div

CHANNELS_PER_WORD = 4  # uint8 channels of one pixel in a 32-bit word: one dot-product lane's four products


def quantized_input(x: te.Tensor, geo: ConvGeometry, scale: float, zero_point: int) -> te.Tensor:
    """Stage ``QUANTIZE``: the uint8 levels of four channels in one uint32 word (channel ``4 c4 + i``
    in bits ``8i``), ``(N, 4 * ceil(C / 16), Hp, Wp)``, ``zp`` in the padding and past the last
    channel. A word is four loads from consecutive channel planes: vectorized along a row."""
    words = ceil_div(geo.channels, INT8_STEP) * CHANNELS_PER_WORD

    def level(n, c, yp, xp):
        # every index clamped and the padding chosen by a select, not a branch: the stage
        # vectorizes along a row with the loads as gathers where it could not otherwise
        y, xx = yp - geo.pads[0], xp - geo.pads[1]
        read = x[n, tirx.min(c, geo.channels - 1), clamped(y, geo.height), clamped(xx, geo.width)]
        q = tirx.max(tirx.min(tirx.nearbyint(read / tirx.const(scale, "float32")) + float(zero_point), 255.0), 0.0)
        inside = tirx.all(c < geo.channels, y >= 0, y < geo.height, xx >= 0, xx < geo.width)
        return tirx.Select(inside, q, tirx.const(float(zero_point), "float32")).astype("uint32")

    def word(n, c4, yp, xp):
        levels = [level(n, c4 * CHANNELS_PER_WORD + i, yp, xp) << tirx.const(8 * i, "uint32") for i in range(4)]
        return levels[0] | levels[1] | levels[2] | levels[3]

    return te.compute((geo.batch, words, geo.padded_height, geo.padded_width), word, name=stages.QUANTIZE)


def window_levels(q: te.Tensor, geo: ConvGeometry) -> te.Tensor:
    """Stage ``WINDOW_LEVELS``: the sum of every level in each output's window, ``(N, OH, OW)`` int32,
    over the pixels' sums of their words (stage ``PIXEL_LEVELS``, ``(N, Hp, Wp)``: one expression
    over the words, so a row vectorizes without a reduction loop)."""
    (sh, sw), (dh, dw), (kh, kw) = geo.strides, geo.dilations, geo.kernel
    pairs = tirx.const(0x00FF00FF, "uint32")

    def pixel_sum(n, yp, xp):
        # bytes 0 + 1 and 2 + 3 of each word add up in two 16-bit halves: at most 510 a word, so
        # up to 128 words (512 channels) per half-sum before it could carry
        total = None
        for first in range(0, int(q.shape[1]), 128):
            halves = None
            for c4 in range(first, min(first + 128, int(q.shape[1]))):
                word = q[n, c4, yp, xp]
                both = (word & pairs) + ((word >> tirx.const(8, "uint32")) & pairs)
                halves = both if halves is None else halves + both
            assert halves is not None
            chunk = ((halves & tirx.const(0xFFFF, "uint32")) + (halves >> tirx.const(16, "uint32"))).astype("int32")
            total = chunk if total is None else total + chunk
        return total

    pixel = te.compute((geo.batch, geo.padded_height, geo.padded_width), pixel_sum, name=stages.PIXEL_LEVELS)
    ky, kx = te.reduce_axis((0, kh), name="ky"), te.reduce_axis((0, kw), name="kx")
    return te.compute(
        (geo.batch, geo.out_height, geo.out_width),
        lambda n, oy, ox: te.sum(pixel[n, oy * sh + ky * dh, ox * sw + kx * dw], axis=[ky, kx]),
        name=stages.WINDOW_LEVELS,
    )


def dot_conv_func(
    geo: ConvGeometry,
    scale: float,
    zero_point: int,
    dot: DotInstruction,
    vectors: int,
    columns: int,
    unrolled_taps: int = 0,
    residual: bool = False,
    relu: bool = False,
    upper: float | None = None,
) -> tirx.PrimFunc:
    """PrimFunc ``(x, codes, offset, rescale, bias[, residual]) -> y`` (NCHW), the sums by
    :func:`dot_conv` on ``dot`` in tiles of at most ``vectors`` x ``columns``, the tap loops
    unrolled for kernels of up to ``unrolled_taps`` taps; ``residual`` /
    ``relu`` / ``upper`` fuse ``+ residual`` / ``max(., 0)`` / ``min(., upper)`` into ``OUTPUT``.
    ``QUANTIZE``, the level sums and ``OUTPUT`` are left to schedule."""
    (kh, kw) = geo.kernel
    blocks, groups = ceil_div(geo.out_channels, INT8_LANES), ceil_div(geo.channels, INT8_STEP)
    x = te.placeholder((geo.batch, geo.channels, geo.height, geo.width), "float32", name="x")
    codes = te.placeholder((blocks, groups, kh, kw, 4 * INT8_LANES), "uint8", name="codes")
    offset = te.placeholder((blocks * INT8_LANES,), "int32", name="offset")
    rescale = te.placeholder((geo.out_channels,), "float32", name="rescale")
    bias = te.placeholder((geo.out_channels,), "float32", name="bias")
    res = residual_input((geo.batch, geo.out_channels, geo.out_height, geo.out_width), residual)
    q = quantized_input(x, geo, scale, zero_point)
    window = None if dot.signed_codes else window_levels(q, geo)
    shape = (geo.batch, geo.out_height, geo.out_width, blocks * INT8_LANES)
    acc = te.extern(
        shape,
        [q, codes],
        lambda ins, outs: dot_conv(geo, dot, vectors, columns, unrolled_taps, *ins, outs[0]),
        name=stages.INT8_DOT,
        dtype="int32",
    )

    def output(n, o, oy, ox):
        total = acc[n, oy, ox, o] + offset[o] - (0 if window is None else window[n, oy, ox])
        value = total.astype("float32") * rescale[o] + bias[o]
        return finish(value, res, relu, n, o, oy, ox, upper)

    y = te.compute((geo.batch, geo.out_channels, geo.out_height, geo.out_width), output, name=stages.OUTPUT)
    return te.create_prim_func([x, codes, offset, rescale, bias, *([res] if res is not None else []), y])


def column_tiles(width: int, columns: int) -> list[tuple[int, int]]:
    """``(count, size)`` runs of register tiles covering ``width`` output columns: as few tiles as
    ``columns`` allows, their sizes differing by at most one (14 in tiles of 6: 5, 5, 4)."""
    tiles = ceil_div(width, columns)
    size, wider = divmod(width, tiles)
    return [(count, span) for count, span in ((wider, size + 1), (tiles - wider, size)) if count]


def dot_conv(
    geo: ConvGeometry,
    dot: DotInstruction,
    vectors: int,
    columns: int,
    unrolled_taps: int,
    q: tirx.Buffer,
    codes: tirx.Buffer,
    acc: tirx.Buffer,
) -> tirx.Stmt:
    """The ``INT8_DOT`` loop nest: parallel over ``(n, group of vectors, row)``; register tiles of
    up to ``columns`` x ``vectors`` vectors of 16 outputs (:func:`column_tiles`), each
    ``16 / dot.lanes`` dot registers; per input word group and tap, each code register decoded
    once per channel word, each pixel's channel word broadcast once for the tile's registers. The
    tap loops are unrolled up to ``unrolled_taps`` taps (their address offsets become immediates)."""
    (sh, sw), (dh, dw), (kh, kw) = geo.strides, geo.dilations, geo.kernel
    blocks, groups = ceil_div(geo.out_channels, INT8_LANES), ceil_div(geo.channels, INT8_STEP)
    vectors = max(v for v in range(1, vectors + 1) if blocks % v == 0)
    lanes, width = dot.lanes, 4 * dot.lanes
    parts = INT8_LANES // lanes  # dot registers per vector of 16 outputs
    tasks = geo.batch * (blocks // vectors) * geo.out_height
    three, one = (tirx.Broadcast(tirx.const(v, "uint8"), width) for v in (3, 1))

    def decoded(code: tirx.PrimExpr, shift: tirx.PrimExpr) -> tirx.PrimExpr:
        """The codes of one channel word: ``w`` where ``dot`` takes signed codes, else ``c = w + 1``."""
        c = (code >> shift) & three
        return tirx.reinterpret(f"int8x{width}", c - one if dot.signed_codes else c)

    def column_levels(row: list[tirx.PrimExpr], x: tirx.PrimExpr, span: int) -> list[tirx.PrimExpr]:
        """The channel word of each of ``span`` columns from ``x`` broadcast as ``dot``'s levels: with
        a by-element form, stride 1 and four columns or more, lanes of loads of four consecutive
        words (the last load ends at the tile's last column)."""
        if not (dot.by_element and sw == 1 and span >= 4):
            return [splat(q[(*row, x + t * sw)]) for t in range(span)]
        found = []
        for start in range(0, span, 4):
            first = min(start, span - 4)
            words = q.vload([*row, x + first], "uint32x4")
            found += [
                tirx.reinterpret(f"int8x{width}", tirx.Shuffle([words], [tirx.const(t - first, "int32")] * lanes))
                for t in range(start, min(start + 4, span))
            ]
        return found

    def splat(word: tirx.PrimExpr) -> tirx.PrimExpr:
        return tirx.reinterpret(f"int8x{width}", tirx.Broadcast(tirx.reinterpret("int32", word), lanes))

    def tile(n: tirx.PrimExpr, first: tirx.PrimExpr, oy: tirx.PrimExpr, x0: tirx.PrimExpr, span: int) -> None:
        regs = [[T.alloc_local((INT8_LANES,), "int32") for _ in range(vectors)] for _ in range(span)]
        everything = [tirx.Ramp(0, 1, INT8_LANES)]
        for t in range(span):
            for v in range(vectors):
                T.buffer_store(regs[t][v], tirx.Broadcast(tirx.const(0, "int32"), INT8_LANES), everything)
        unrolled = T.unroll if kh * kw <= unrolled_taps else T.serial
        with T.serial(0, groups) as group, unrolled(0, kh) as ky, unrolled(0, kw) as kx:
            packed = [
                [codes.vload([first + v, group, ky, kx, p * width], f"uint8x{width}") for p in range(parts)]
                for v in range(vectors)
            ]
            for j in range(4):
                shift = tirx.Broadcast(tirx.const(2 * j, "uint8"), width)
                weights = [[decoded(code, shift) for code in v] for v in packed]
                row = [n, group * 4 + j, oy * sh + ky * dh]
                for t, levels in enumerate(column_levels(row, x0 * sw + kx * dw, span)):
                    for v in range(vectors):
                        for p in range(parts):
                            total = dot(regs[t][v].vload([p * lanes], f"int32x{lanes}"), levels, weights[v][p])
                            T.buffer_store(regs[t][v], total, [tirx.Ramp(p * lanes, 1, lanes)])
        for t in range(span):
            for v in range(vectors):
                T.buffer_store(
                    acc,
                    regs[t][v].vload([0], f"int32x{INT8_LANES}"),
                    [n, oy, x0 + t, tirx.Ramp((first + v) * INT8_LANES, 1, INT8_LANES)],
                )

    with IRBuilder() as ib:
        with T.parallel(0, tasks) as task:
            n = task // (blocks // vectors * geo.out_height)
            first = task // geo.out_height % (blocks // vectors) * vectors
            oy = task % geo.out_height
            start = 0
            for count, span in column_tiles(geo.out_width, columns):
                with T.serial(0, count) as index:
                    tile(n, first, oy, start + index * span, span)
                start += count * span
    return ib.get()
