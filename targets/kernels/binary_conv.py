"""TE compute of ``ai.mptc.BinaryConv``: XNOR-popcount (binary input) and block-sparse multiply-add (real input).

Binary input, with ``a`` the packed, zero-padded input signs and ``w``, ``m`` the packed weight
signs and mask (``targets.layout.binary_conv_tables``)::

    D[n, oy, ox, o] = sum_{ky, kx, cw} popcount((a[n, oy*sh + ky*dh, ox*sw + kx*dw, cw] ^ w) & m)
    y[n, o, oy, ox] = scale[o] * (B[row_class[oy], col_class[ox], o] - 2 * D) + bias[o]

The input arrives either as float NCHW (signed and packed here) or as words already packed by
the previous layer; the output leaves either as float NCHW or as the packed signs of ``y``
(``N, OH, OW, ceil(O / 64)``) for a next binary layer, so activations between binary layers
travel as bits (the batch norm is already folded into ``scale`` / ``bias``). A packed output
needs no float maths: ``y >= 0`` is ``D <= thr[row_class, col_class, o]`` (flipped where the
scale is negative), thresholds computed at compile time (``layout.sign_thresholds``).

Real input, block-sparse form (``targets.layout.block_sparse_conv_tables``), for outputs in
blocks of ``B`` channels and flat output positions ``q = oy * R + ox``::

    xs = flat(x)  (``layout.FlatInput``: zero-padded planes in stride phases, R = Wq, or shifted per tap column, R = OW)
    acc[n, b, i, q] = sum over segments s = (g, k) of block b: w_s[i] * sum_{j in s} xs[n, g * G + index[j] + q]
    y[n, o, oy, ox] = scale[o] * acc[n, o // B, o % B, oy * R + ox] + bias[o]

where segment ``s = (g, k)`` of block ``b`` (``ptr[g, b * K + k]:ptr[g, b * K + k + 1]``, ``K``
classes, ``g`` the input-channel group of ``G`` flat values) holds the taps whose ``B`` weights are the sign
class ``w_s`` in {-1, 0, 1}^B, so each kept tap of the block is loaded once and only added to or
subtracted from the outputs that keep it: no multiplies, no zero-weight work. ``q`` runs over
whole rows of ``R`` (and up to a whole number of ``chunk`` values), so every tap reads one
contiguous run of the input. The segments' lengths vary per block, which TE cannot express: the
gather is a ``te.extern`` whose loop nest each target family writes (``SparseGather``), as TOPI's
sparse kernels were. Where ``R = OW`` the flat outputs are the output's own pixels, and a family
whose gather can (``KernelSchedules.fused_gather_epilogue``) applies the epilogue as it stores
each finished sum (``GatherStore``): no ``acc`` is written to memory and read back.

Stages are named for the schedules (``kernels.stages``): ``PACK``/``PAD``/``FLAT``,
``POPCOUNT``/``GATHER``, ``LANE_BITS``/``OUTPUT``. ``FLAT`` carries its plane shape ``(rows, Wq)``
as the annotation ``PLANE_SHAPE``, so a schedule can loop over (plane, row, column) with no
division left in the vector loop.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

from tvm import s_tir, te, tirx
from tvm.script.ir_builder import tirx as T

from mptc.targets.kernels import exact_sign, stages
from mptc.targets.kernels.bits import WORD, nonzero_word, popcount_term, sign_word, threshold_words
from mptc.targets.kernels.epilogue import clamp, finish, residual_input
from mptc.targets.layout import (
    MASK_PLANE,
    SIGN_PLANE,
    ConvGeometry,
    FlatInput,
    ceil_div,
    lut_patterns,
    lut_plane_count,
    sign_classes,
    table_outputs,
)


def pack_input(x: te.Tensor, geo: ConvGeometry, plane=sign_word, name: str = stages.PACK) -> te.Tensor:
    """``sign(x)`` NCHW float -> NHWC words ``(N, H, W, Cw)`` uint64 (no padding: every read is
    affine, so a schedule can vectorize over ``W``; ``pad_words`` pads the words); ``plane``
    ``bits.nonzero_word``: the words of ``x != 0`` instead."""

    def word(n, y, xx, cw):
        return plane(lambda c: x[n, tirx.min(c, geo.channels - 1), y, xx], lambda c: c < geo.channels, cw)

    return te.compute((geo.batch, geo.height, geo.width, geo.channel_words), word, name=name)


def pad_words(a: te.Tensor, geo: ConvGeometry, name: str = stages.PAD) -> te.Tensor:
    """Words ``(N, H, W, Cw)`` packed by the previous layer -> zero-padded ``(N, Hp, Wp, Cw)``."""

    def word(n, yp, xp, cw):
        return zero_padded(lambda y, xx: a[n, y, xx, cw], geo, yp, xp, tirx.const(0, WORD))

    return te.compute((geo.batch, geo.padded_height, geo.padded_width, geo.channel_words), word, name=name)


def xnor_popcount(
    a: te.Tensor,
    planes: te.Tensor,
    geo: ConvGeometry,
    exact: exact_sign.ExactSign | None = None,
) -> te.Tensor:
    """``D[n, oy, ox, o]`` over all ``O/V * V`` (padded) outputs; ``planes`` is ``(O/V, kh, kw, Cw, 2, V)``,
    the sign and mask words (``layout.BinaryConvTables.planes``).

    With ``exact`` (an ONNX ``Sign`` input; ``kernels.exact_sign``), an output row whose window
    holds an input zero counts the dot product itself over the nonzero plane (zeros and padding
    add nothing there), every other row as a binary input does; annotated ``stages.EXACT_SIGN``.

    The block carries ``stages.COLUMN_STRIDE``, the distance in words between the input words two
    neighbouring output columns read (``Cw * stride``): at 1 a schedule may vectorize along columns."""
    tiles, lanes = planes.shape[0], planes.shape[-1]
    (sh, sw), (dh, dw) = geo.strides, geo.dilations
    ky = te.reduce_axis((0, geo.kernel[0]), name="ky")
    kx = te.reduce_axis((0, geo.kernel[1]), name="kx")
    cw = te.reduce_axis((0, geo.channel_words), name="cw")

    def popcount(n, oy, ox, o):
        at = (n, oy * sh + ky * dh, ox * sw + kx * dw, cw)
        w, m = (planes[o // lanes, ky, kx, cw, plane, o % lanes] for plane in (SIGN_PLANE, MASK_PLANE))
        if exact is None:
            return te.sum(popcount_term(a[at], w, m), axis=[ky, kx, cw])
        return te.sum(exact_sign.term(exact.flags[n, oy], a[at], w, m, exact.nonzero[at]), axis=[ky, kx, cw])

    shape = (geo.batch, geo.out_height, geo.out_width, tiles * lanes)
    attrs = {stages.COLUMN_STRIDE: geo.channel_words * sw, **({stages.EXACT_SIGN: exact.annotation} if exact else {})}
    return te.compute(shape, popcount, name=stages.POPCOUNT, attrs=attrs)


def zero_flags(nonzero: te.Tensor, geo: ConvGeometry, counts: exact_sign.Counts) -> te.Tensor:
    """``ZERO_FLAGS`` ``(N, OH)``: ``exact_sign.flag`` of output row ``oy``, whose window's input
    rows hold a zero (``ZERO_ROWS`` of the unpadded nonzero words ``(N, H, W, Cw)``)."""
    rows = exact_sign.zero_bits(nonzero, 2, geo.channels)
    zero = tirx.const(0, WORD)

    def window_flag(n, oy):
        window = []
        for ky in range(geo.kernel[0]):
            y = oy * geo.strides[0] + ky * geo.dilations[0] - geo.pads[0]
            window.append(tirx.if_then_else(tirx.all(y >= 0, y < geo.height), rows[n, clamped(y, geo.height)], zero))
        return exact_sign.flag(functools.reduce(lambda acc, r: acc | r, window), counts)

    return te.compute((geo.batch, geo.out_height), window_flag, name=stages.ZERO_FLAGS)


def exact_sign_conv_func(
    geo: ConvGeometry,
    lanes: int,
    border_classes: tuple[int, int],
    residual: bool = False,
    relu: bool = False,
    upper: float | None = None,
    counts: exact_sign.Counts = exact_sign.IN_WORDS,
) -> tirx.PrimFunc:
    """Unscheduled PrimFunc ``(x, planes, border, row_class, scale, bias[, residual]) -> y`` of
    a conv on ONNX ``Sign(x)`` (``input_mode="sign"``, ``border`` for zero padding as in
    ``xnor_conv_func``): ``x`` float NCHW packed into a sign and a nonzero plane; rows whose
    window holds a zero take the exact count (``xnor_popcount``), ``y = scale[o] * dot + bias[o]``
    with the fused epilogue; ``counts``: as the schedule will count (16-bit counters or not)."""
    x = te.placeholder((geo.batch, geo.channels, geo.height, geo.width), "float32", name="x")
    a = pad_words(pack_input(x, geo), geo)
    nonzero = pack_input(x, geo, nonzero_word, stages.PACK_NONZERO)
    flags = zero_flags(nonzero, geo, counts)
    exact = exact_sign.ExactSign(pad_words(nonzero, geo, stages.PAD_NONZERO), flags, counts)
    padded = table_outputs(geo.out_channels, lanes)
    planes = weight_planes(geo, padded, lanes)
    row_class = te.placeholder((geo.out_height,), "int32", name="row_class")
    border = te.placeholder((border_classes[0], padded, geo.out_width), "int32", name="border")
    scale = te.placeholder((geo.out_channels,), "float32", name="scale")
    bias = te.placeholder((geo.out_channels,), "float32", name="bias")
    res = residual_input((geo.batch, geo.out_channels, geo.out_height, geo.out_width), residual)
    d = xnor_popcount(a, planes, geo, exact)
    y = float_output(d, border, row_class, scale, bias, geo, res, relu, upper, exact=counts)
    func = te.create_prim_func([x, planes, border, row_class, scale, bias] + ([res] if residual else []) + [y])
    return exact_sign.counts_from_flags(func, lambda at: list(at[:2]))


def float_output(
    d,
    border,
    row_class,
    scale,
    bias,
    geo: ConvGeometry,
    residual=None,
    relu=False,
    upper: float | None = None,
    exact: exact_sign.Counts | None = None,
) -> te.Tensor:
    """The float NCHW output ``y = scale[o] * (B - 2 D) + bias[o]`` (with the fused residual add and
    ReLU of ``targets.epilogue``); ``border`` is ``layout.BinaryConvTables.border_by_column``.
    ``exact``: how the counts of an ONNX ``Sign`` input hold its exact rows (``exact_sign.dot``)."""
    shape = (geo.batch, geo.out_channels, geo.out_height, geo.out_width)

    def value(n, o, oy, ox):
        def binary_dot(count):
            return border[row_class[oy], o, ox] - 2 * count.astype("int32")

        count = d[n, oy, ox, o]
        dot = binary_dot(count) if exact is None else exact_sign.dot(count, binary_dot, exact, geo.tap_words)
        return finish(scale[o] * dot.astype("float32") + bias[o], residual, relu, n, o, oy, ox, upper)

    return te.compute(shape, value, name=stages.OUTPUT)


def packed_output(d, threshold, row_class, col_class, flip, geo: ConvGeometry, lanes: int) -> te.Tensor:
    """The packed signs of ``y`` as the next binary layer reads them: ``(N, OH, OW, ceil(O / 64))``
    words, from the counts against per-border-class thresholds (``layout.sign_thresholds``)."""

    def count(at, c):
        n, oy, ox = at
        return d[n, oy, ox, c]

    def bound(at, c):
        _, oy, ox = at
        return threshold[row_class[oy], col_class[ox], c]

    return threshold_words(count, bound, flip, (geo.batch, geo.out_height, geo.out_width), lanes)


def xnor_conv_func(
    geo: ConvGeometry,
    lanes: int,
    border_classes: tuple[int, int],
    words_in: bool = False,
    words_out: bool = False,
    residual: bool = False,
    relu: bool = False,
    upper: float | None = None,
) -> tirx.PrimFunc:
    """Unscheduled PrimFunc ``(x, planes, border, row_class, scale, bias[, residual]) -> y``, ``planes``
    the sign and mask words (``layout.BinaryConvTables.planes``), ``border`` ``(row classes, O', OW)``
    (``layout.BinaryConvTables.border_by_column``).

    ``residual`` / ``relu`` / ``upper``: the float output fuses ``+ residual`` / ``max(., 0)`` /
    ``min(., upper)`` (ReLU6; ``targets.epilogue``).
    ``words_in``: ``x`` is ``(N, H, W, Cw)`` uint64 words; ``words_out``: ``y`` is words too, the
    weight tables cover ``table_outputs(geo.out_channels, lanes, words_out)`` outputs, and the
    parameters are ``(x, planes, threshold, row_class, col_class, flip)``: the border table,
    scale and bias folded into ``layout.sign_thresholds``.
    """
    padded = table_outputs(geo.out_channels, lanes, words_out)
    if words_in:
        x = te.placeholder((geo.batch, geo.height, geo.width, geo.channel_words), WORD, name="x")
        a = pad_words(x, geo)
    else:
        x = te.placeholder((geo.batch, geo.channels, geo.height, geo.width), "float32", name="x")
        a = pad_words(pack_input(x, geo), geo)
    planes = weight_planes(geo, padded, lanes)
    row_class = te.placeholder((geo.out_height,), "int32", name="row_class")
    d = xnor_popcount(a, planes, geo)
    if words_out:
        threshold = te.placeholder((*border_classes, padded), "int32", name="threshold")
        col_class = te.placeholder((geo.out_width,), "int32", name="col_class")
        flip = te.placeholder((padded,), WORD, name="flip")
        y = packed_output(d, threshold, row_class, col_class, flip, geo, lanes)
        return te.create_prim_func([x, planes, threshold, row_class, col_class, flip, y])
    border = te.placeholder((border_classes[0], padded, geo.out_width), "int32", name="border")
    scale = te.placeholder((geo.out_channels,), "float32", name="scale")
    bias = te.placeholder((geo.out_channels,), "float32", name="bias")
    res = residual_input((geo.batch, geo.out_channels, geo.out_height, geo.out_width), residual)
    y = float_output(d, border, row_class, scale, bias, geo, res, relu, upper)
    return te.create_prim_func([x, planes, border, row_class, scale, bias] + ([res] if residual else []) + [y])


def weight_planes(geo: ConvGeometry, outputs: int, lanes: int) -> te.Tensor:
    """The placeholder of ``layout.BinaryConvTables.planes`` for ``outputs`` (padded) channels."""
    return te.placeholder((outputs // lanes, *geo.kernel, geo.channel_words, 2, lanes), WORD, name="planes")


def zero_padded(
    read: Callable[[tirx.PrimExpr, tirx.PrimExpr], tirx.PrimExpr],
    geo: ConvGeometry,
    yp: tirx.PrimExpr,
    xp: tirx.PrimExpr,
    zero: tirx.PrimExpr,
) -> tirx.PrimExpr:
    """The value at padded position ``(yp, xp)``: ``read(y, x)`` inside the image (indices clamped,
    so both sides of the select are safe to compute), ``zero`` in the padding."""
    y, xx = yp - geo.pads[0], xp - geo.pads[1]
    inside = tirx.all(y >= 0, y < geo.height, xx >= 0, xx < geo.width)
    return tirx.if_then_else(inside, read(clamped(y, geo.height), clamped(xx, geo.width)), zero)


def clamped(i: tirx.PrimExpr, size: int) -> tirx.PrimExpr:
    """``i`` clamped into ``[0, size)``: an index that is safe to read whatever the padding."""
    return tirx.max(tirx.min(i, size - 1), 0)


def flat_input(x: te.Tensor, geo: ConvGeometry, flat: FlatInput, length: int) -> te.Tensor:
    """The flat input ``(N, length)`` of ``layout.FlatInput``, zeros past the last plane, so every
    tap of a strided conv reads consecutive outputs from consecutive addresses."""
    (sh, sw), c, hq, kw = geo.strides, geo.channels, geo.phase_height, geo.kernel[1]

    def value(n, f):
        plane, row, col = f // flat.plane_size, f % flat.plane_size // flat.row_stride, f % flat.row_stride
        if flat.shifted:  # plane = (c, kx), row = py * Hq + qy, col = ox
            ch = plane // kw
            y = row % hq * sh + row // hq - geo.pads[0]
            xx = col * sw + plane % kw * geo.dilations[1] - geo.pads[1]
        else:  # plane = c, row = (py * sw + px) * Hq + qy, col = qx
            ch = plane
            y = row % hq * sh + row // (sw * hq) - geo.pads[0]
            xx = col * sw + row // hq % sw - geo.pads[1]
        inside = tirx.all(ch < c, y >= 0, y < geo.height, xx >= 0, xx < geo.width)
        safe = x[n, tirx.min(ch, c - 1), clamped(y, geo.height), clamped(xx, geo.width)]
        return tirx.if_then_else(inside, safe, tirx.const(0.0, "float32"))

    return te.compute(
        (geo.batch, length), value, name=stages.FLAT, attrs={stages.PLANE_SHAPE: [flat.plane_rows, flat.row_stride]}
    )


def lut_input(xs: te.Tensor, group: int, channel_floats: int, groups: int, row_stride: int) -> te.Tensor:
    """The lookup planes ``(N, groups * P * channel_floats)`` of a flat input ``xs`` (channels of
    ``channel_floats`` values each, at least ``groups * group`` of them): virtual channel
    ``g * P + p`` is ``sum_i pattern[p][i] * channel(g * group + i)`` over the ``P`` patterns of
    ``layout.lut_patterns(group)``, a select over the patterns that folds to one signed sum once a
    schedule unrolls the pattern loop (annotation ``LUT_SHAPE``)."""
    patterns = lut_patterns(group)
    count = len(patterns)

    def value(n, f):
        plane, within = f // channel_floats, f % channel_floats
        g, p = plane // count, plane % count
        channel = [xs[n, (g * group + i) * channel_floats + within] for i in range(group)]

        def signed_sum(pattern) -> tirx.PrimExpr:
            terms = [x if weight > 0 else -x for x, weight in zip(channel, pattern, strict=True) if weight]
            return functools.reduce(lambda a, b: a + b, terms)

        total = signed_sum(patterns[-1])
        for index in reversed(range(count - 1)):
            total = tirx.Select(p == index, signed_sum(patterns[index]), total)
        return total

    shape = [count, channel_floats // row_stride, row_stride]
    return te.compute(
        (xs.shape[0], groups * count * channel_floats), value, name=stages.LUT, attrs={stages.LUT_SHAPE: shape}
    )


@dataclass(frozen=True)
class SparseGather:
    """Shape of the block-sparse gather ``acc[n, b, i, q]`` of ``block_sparse_conv``: what a
    target family's loop nest (``schedules.*.sparse_gather``) needs to walk the CSR tables."""

    batch: int
    blocks: int
    block: int  # output channels per block: one accumulator set each
    groups: int  # input-channel groups, the CSR segments ordered group-major
    outputs: int  # flat outputs per channel, whole chunks
    chunk: int  # flat outputs per register tile
    group_floats: int  # flat input values per group: an entry of group g reads xs[g * group_floats + index[j] + q]
    index_dtype: str  # "uint16" or "int32" (``layout.BlockSparseConvTables.index``)

    @property
    def classes(self) -> list[tuple[int, ...]]:
        return sign_classes(self.block)


@dataclass(frozen=True)
class GatherStore:
    """Where the gather puts each finished sum ``acc[n, b, i, q]``: ``put(n, b, i, q, value)``
    emits the store into the loop nest being built, into the accumulator an epilogue stage reads,
    or, fused, into the output itself with the epilogue applied. The gather puts each sum once,
    after its last input-channel group, and only for ``q < valid``."""

    put: Callable[[tirx.PrimExpr, tirx.PrimExpr, int, tirx.PrimExpr, tirx.PrimExpr], None]
    valid: int


GatherBody = Callable[[SparseGather, tirx.Buffer, tirx.Buffer, tirx.Buffer, GatherStore], tirx.Stmt]


def fuses_epilogue(geo: ConvGeometry, flat: FlatInput) -> bool:
    """Whether the flat outputs of a block-sparse conv are its output pixels (``R = OW``), so a
    gather can store its sums where the output has them."""
    return flat.row_stride == geo.out_width


def _flat_view(buffer: tirx.Buffer) -> tuple[tirx.Buffer, tirx.Stmt]:
    """``buffer`` as one dimension, and the statement that declares that view of its data."""
    view = tirx.decl_buffer((math.prod(buffer.shape),), buffer.dtype, name=buffer.name)
    return view, tirx.DeclBuffer(view, data=buffer.data)


def _fused_gather(
    xs, ptr, index, scale, bias, geo: ConvGeometry, gather: SparseGather, body: GatherBody, residual, relu, upper
) -> te.Tensor:
    """The gather whose store is the epilogue: ``y`` written straight from the sums."""
    pixels = geo.out_height * geo.out_width
    ins = [xs, ptr, index, scale, bias] + ([residual] if residual is not None else [])

    def build(buffers: list[tirx.Buffer], outs: list[tirx.Buffer]) -> tirx.Stmt:
        xs_b, ptr_b, index_b, scale_b, bias_b, *res_b = buffers
        views = [_flat_view(b) for b in (outs[0], *res_b)]
        y, res = views[0][0], (views[1][0] if res_b else None)

        def put(n, b, i, q, value):
            o = b * gather.block + i
            at = (n * geo.out_channels + o) * pixels + q
            total = scale_b[o] * value + bias_b[o]
            total = clamp(total if res is None else total + res[at], relu, upper)
            if gather.blocks * gather.block > geo.out_channels:  # the last block has outputs past the last channel
                with T.If(o < geo.out_channels), T.Then():
                    T.buffer_store(y, total, [at])
            else:
                T.buffer_store(y, total, [at])

        stmt = body(gather, xs_b, ptr_b, index_b, GatherStore(put, pixels))
        return tirx.SeqStmt([*(declared for _, declared in views), stmt])

    shape = (geo.batch, geo.out_channels, geo.out_height, geo.out_width)
    return te.extern(shape, ins, build, name=stages.GATHER, dtype="float32")


def block_sparse_conv(
    xs,
    ptr,
    index,
    scale,
    bias,
    geo: ConvGeometry,
    flat: FlatInput,
    gather: SparseGather,
    body: GatherBody,
    residual=None,
    relu=False,
    upper: float | None = None,
    fused: bool = False,
) -> te.Tensor:
    """``acc`` over the flat outputs of each output channel (``body`` walks the tables: the loop
    nest is the target's, as for TOPI's hand-written sparse kernels), then the affine epilogue
    (and the fused residual add and ReLU) on the real outputs; with ``fused`` (where
    ``fuses_epilogue``), the epilogue inside the gather's stores."""
    if fused:
        return _fused_gather(xs, ptr, index, scale, bias, geo, gather, body, residual, relu, upper)

    def build(buffers: list[tirx.Buffer], outs: list[tirx.Buffer]) -> tirx.Stmt:
        def put(n, b, i, q, value):
            T.buffer_store(outs[0], value, [n, b, i, q])

        return body(gather, *buffers, GatherStore(put, gather.outputs))

    shape = (gather.batch, gather.blocks, gather.block, gather.outputs)
    acc = te.extern(shape, [xs, ptr, index], build, name=stages.GATHER, dtype="float32")
    block = gather.block

    def value(n, o, oy, ox):
        y = scale[o] * acc[n, o // block, o % block, oy * flat.row_stride + ox] + bias[o]
        return finish(y, residual, relu, n, o, oy, ox, upper)

    return te.compute((geo.batch, geo.out_channels, geo.out_height, geo.out_width), value, name=stages.OUTPUT)


def block_sparse_conv_func(
    geo: ConvGeometry,
    flat: FlatInput,
    gather: SparseGather,
    entries: int,
    body: GatherBody,
    residual: bool = False,
    relu: bool = False,
    upper: float | None = None,
    lut_group: int = 0,
    in_place: bool = False,
    fused: bool = False,
) -> tirx.PrimFunc:
    """PrimFunc ``(x, ptr, index, scale, bias[, residual]) -> y`` of the real-input conv
    (``residual`` / ``relu`` / ``upper`` as in ``xnor_conv_func``); the ``flat``, ``lut`` and
    ``output`` stages are left to the schedule.

    With ``lut_group``, the gather reads the lookup planes of ``lut_group``-channel groups
    (``lut_input``; its tables are over ``layout.lut_conv_weight``) instead of the flat input.
    ``in_place`` (where the flat input is the input itself, ``layout.flat_is_input``; not with
    ``lut_group``): ``x`` is ``(N, C * H * W)`` and the gather reads it with no ``flat`` stage.
    The input the gather reads has a zero tail of whole planes past the furthest read (the last
    plane's largest tap offset + the flat outputs, padded to whole chunks). ``fused``: the
    epilogue in the gather's stores (``block_sparse_conv``), where ``fuses_epilogue``.
    """
    tail = ceil_div(gather.outputs, flat.plane_size)
    shape = (geo.channels * geo.height * geo.width,) if in_place else (geo.channels, geo.height, geo.width)
    x = te.placeholder((geo.batch, *shape), "float32", name="x")
    if in_place:
        xs = x  # the caller passes the input flattened
    elif lut_group:
        channel_floats = flat.planes // geo.channels * flat.plane_size
        planes_per_group = lut_plane_count(lut_group) * flat.planes // geo.channels
        groups = ceil_div(geo.channels, lut_group) + ceil_div(tail, planes_per_group)
        flat_x = flat_input(x, geo, flat, groups * lut_group * channel_floats)
        xs = lut_input(flat_x, lut_group, channel_floats, groups, flat.row_stride)
    else:
        xs = flat_input(x, geo, flat, (flat.planes + tail) * flat.plane_size)
    ptr = te.placeholder((gather.groups, gather.blocks * len(gather.classes) + 1), "int32", name="ptr")
    index = te.placeholder((entries,), gather.index_dtype, name="index")
    scale = te.placeholder((geo.out_channels,), "float32", name="scale")
    bias = te.placeholder((geo.out_channels,), "float32", name="bias")
    res = residual_input((geo.batch, geo.out_channels, geo.out_height, geo.out_width), residual)
    fused = fused and fuses_epilogue(geo, flat)
    y = block_sparse_conv(xs, ptr, index, scale, bias, geo, flat, gather, body, res, relu, upper, fused)
    return _with_root(te.create_prim_func([x, ptr, index, scale, bias] + ([res] if residual else []) + [y]))


def _with_root(func: tirx.PrimFunc) -> tirx.PrimFunc:
    """``func`` with a root block around its stages: TE gives a function of one stage (a fused
    gather reading its input in place) none, and schedules and TVM's passes look for it."""
    if func.body.block.name_hint == "root":
        return func
    root = s_tir.SBlock([], [], [], "root", func.body)
    return func.with_body(s_tir.SBlockRealize([], True, root))
