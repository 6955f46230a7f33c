"""TE compute of ``ai.mptc.BinaryConv``: XNOR-popcount (binary input) and sign-split sparse (real input).

Binary input, with ``a`` the packed, zero-padded input signs and ``w``, ``m`` the packed weight
signs and mask (``targets.layout.binary_conv_tables``)::

    D[n, oy, ox, o] = sum_{ky, kx, cw} popcount((a[n, oy*sh + ky*dh, ox*sw + kx*dw, cw] ^ w) & m)
    y[n, o, oy, ox] = scale[o] * (B[row_class[oy], col_class[ox], o] - 2 * D) + bias[o]

The input arrives either as float NCHW (signed and packed here) or as words already packed by
the previous layer; the output leaves either as float NCHW or as the packed signs of ``y``
(``N, OH, OW, ceil(O / 64)``) for a next binary layer, so activations between binary layers
travel as bits (the batch norm is already folded into ``scale`` / ``bias``).

Real input, sparse form (``targets.layout.sparse_conv_index``)::

    xs = [pad(x), 0, -pad(x), 0]  (flat per image, each plane split into stride phases)
    y[n, o, oy, ox] = scale[o] * sum_j xs[n, idx[o, j] + oy*Wq + ox] + bias[o]

Blocks are named for the schedules: ``pack``/``split``, ``popcount``/``gather``, ``output``. The
flat ``split`` block carries its plane shape ``(rows, Wq)`` as the annotation ``PLANE_SHAPE``, so
a schedule can loop over (plane, row, column) with no division left in the vector loop.
"""

from __future__ import annotations

from tvm import te, tirx

from mptc.targets.kernels.bits import WORD, sign_word
from mptc.targets.layout import WORD_BITS, ConvGeometry, ceil_div, table_outputs

PLANE_SHAPE = "mptc.plane_shape"  # annotation of the ``split`` block: (rows, columns) of each flat plane


def pack_input(x: te.Tensor, geo: ConvGeometry) -> te.Tensor:
    """``sign(x)`` NCHW float -> zero-padded NHWC words ``(N, Hp, Wp, Cw)`` uint64 (pad bits 0)."""

    def word(n, yp, xp, cw):
        y, xx = yp - geo.pads[0], xp - geo.pads[1]
        inside = tirx.all(y >= 0, y < geo.height, xx >= 0, xx < geo.width)
        safe_y, safe_x = _clamp(y, geo.height), _clamp(xx, geo.width)
        return sign_word(
            lambda c: x[n, tirx.min(c, geo.channels - 1), safe_y, safe_x], lambda c: tirx.all(inside, c < geo.channels), cw
        )

    return te.compute((geo.batch, geo.padded_height, geo.padded_width, geo.channel_words), word, name="pack")


def pad_words(a: te.Tensor, geo: ConvGeometry) -> te.Tensor:
    """Words ``(N, H, W, Cw)`` packed by the previous layer -> zero-padded ``(N, Hp, Wp, Cw)``."""

    def word(n, yp, xp, cw):
        y, xx = yp - geo.pads[0], xp - geo.pads[1]
        inside = tirx.all(y >= 0, y < geo.height, xx >= 0, xx < geo.width)
        return tirx.if_then_else(inside, a[n, _clamp(y, geo.height), _clamp(xx, geo.width), cw], tirx.const(0, WORD))

    return te.compute((geo.batch, geo.padded_height, geo.padded_width, geo.channel_words), word, name="pack")


def xnor_popcount(a: te.Tensor, sign: te.Tensor, mask: te.Tensor, geo: ConvGeometry) -> te.Tensor:
    """``D[n, oy, ox, o]`` over all ``O/V * V`` (padded) outputs; ``sign``/``mask`` are ``(O/V, kh, kw, Cw, V)``."""
    tiles, lanes = sign.shape[0], sign.shape[-1]
    (sh, sw), (dh, dw) = geo.strides, geo.dilations
    ky = te.reduce_axis((0, geo.kernel[0]), name="ky")
    kx = te.reduce_axis((0, geo.kernel[1]), name="kx")
    cw = te.reduce_axis((0, geo.channel_words), name="cw")

    def popcount(n, oy, ox, o):
        act = a[n, oy * sh + ky * dh, ox * sw + kx * dw, cw]
        w, m = sign[o // lanes, ky, kx, cw, o % lanes], mask[o // lanes, ky, kx, cw, o % lanes]
        return te.sum(tirx.popcount((act ^ w) & m), axis=[ky, kx, cw])

    return te.compute((geo.batch, geo.out_height, geo.out_width, tiles * lanes), popcount, name="popcount")


def _affine(d, border, row_class, col_class, scale, bias, n, o, oy, ox, param=None) -> tirx.PrimExpr:
    """``y = scale[o] * (B - 2 D) + bias[o]`` at one output (``scale``/``bias`` read at ``param``, default ``o``)."""
    param = o if param is None else param
    dot = border[row_class[oy], col_class[ox], o] - 2 * d[n, oy, ox, o].astype("int32")
    return scale[param] * dot.astype("float32") + bias[param]


def float_output(d, border, row_class, col_class, scale, bias, geo: ConvGeometry) -> te.Tensor:
    """The float NCHW output ``y``."""
    shape = (geo.batch, geo.out_channels, geo.out_height, geo.out_width)
    return te.compute(shape, lambda n, o, oy, ox: _affine(d, border, row_class, col_class, scale, bias, n, o, oy, ox), name="output")


def packed_output(d, border, row_class, col_class, scale, bias, geo: ConvGeometry) -> te.Tensor:
    """The packed signs of ``y`` as the next binary layer reads them: ``(N, OH, OW, ceil(O / 64))`` words.

    ``d`` and the border table cover whole words (``layout.table_outputs``); only ``scale`` and
    ``bias`` stop at ``O``, so only their index is clamped.
    """
    out = geo.out_channels

    def word(n, oy, ox, w):
        def value(c):
            return _affine(d, border, row_class, col_class, scale, bias, n, c, oy, ox, param=tirx.min(c, out - 1))

        return sign_word(value, lambda c: c < out, w)

    shape = (geo.batch, geo.out_height, geo.out_width, ceil_div(out, WORD_BITS))
    return te.compute(shape, word, name="output")


def xnor_conv_func(
    geo: ConvGeometry, lanes: int, border_classes: tuple[int, int], words_in: bool = False, words_out: bool = False
) -> tirx.PrimFunc:
    """Unscheduled PrimFunc ``(x, sign, mask, border, row_class, col_class, scale, bias) -> y``.

    ``words_in``: ``x`` is ``(N, H, W, Cw)`` uint64 words; ``words_out``: ``y`` is words too, and
    the weight tables must cover ``table_outputs(geo.out_channels, lanes, words_out)`` outputs.
    """
    padded = table_outputs(geo.out_channels, lanes, words_out)
    words = (padded // lanes, *geo.kernel, geo.channel_words, lanes)
    if words_in:
        x = te.placeholder((geo.batch, geo.height, geo.width, geo.channel_words), WORD, name="x")
        a = pad_words(x, geo)
    else:
        x = te.placeholder((geo.batch, geo.channels, geo.height, geo.width), "float32", name="x")
        a = pack_input(x, geo)
    sign = te.placeholder(words, WORD, name="sign")
    mask = te.placeholder(words, WORD, name="mask")
    border = te.placeholder((*border_classes, padded), "int32", name="border")
    row_class = te.placeholder((geo.out_height,), "int32", name="row_class")
    col_class = te.placeholder((geo.out_width,), "int32", name="col_class")
    scale = te.placeholder((geo.out_channels,), "float32", name="scale")
    bias = te.placeholder((geo.out_channels,), "float32", name="bias")
    d = xnor_popcount(a, sign, mask, geo)
    y = (packed_output if words_out else float_output)(d, border, row_class, col_class, scale, bias, geo)
    return te.create_prim_func([x, sign, mask, border, row_class, col_class, scale, bias, y])


def _clamp(i: tirx.PrimExpr, size: int) -> tirx.PrimExpr:
    return tirx.max(tirx.min(i, size - 1), 0)


def split_input(x: te.Tensor, geo: ConvGeometry) -> te.Tensor:
    """Flat sign-split operand ``(N, 2 * (C + 1) * P)``: planes ``x, 0, -x, 0``, zero-padded, each
    stored as ``sh * sw`` stride phases of ``(Hq, Wq)`` (``ConvGeometry.phase_*``), so every tap
    of a strided conv reads consecutive outputs from consecutive addresses."""
    (sh, sw), c = geo.strides, geo.channels
    hq, wq = geo.phase_height, geo.phase_width
    rows, plane = sh * sw * hq, sh * sw * hq * wq

    def value(n, f):
        half, ch = f // plane // (c + 1), f // plane % (c + 1)
        row, col = f % plane // wq, f % wq  # row = (py * sw + px) * Hq + qy, col = qx
        y = row % hq * sh + row // (sw * hq) - geo.pads[0]
        xx = col * sw + row // hq % sw - geo.pads[1]
        inside = tirx.all(ch < c, y >= 0, y < geo.height, xx >= 0, xx < geo.width)
        safe = x[n, tirx.min(ch, c - 1), _clamp(y, geo.height), _clamp(xx, geo.width)]
        v = tirx.if_then_else(inside, safe, tirx.const(0.0, "float32"))
        return tirx.Select(half == 0, v, -v)

    return te.compute((geo.batch, 2 * (c + 1) * plane), value, name="split", attrs={PLANE_SHAPE: [rows, wq]})


def sparse_conv(xs: te.Tensor, index: te.Tensor, scale: te.Tensor, bias: te.Tensor, geo: ConvGeometry) -> te.Tensor:
    """Sign-split sparse conv: only additions of gathered inputs, ``index`` is ``(O, L)`` int32."""
    j = te.reduce_axis((0, index.shape[1]), name="j")
    wq = geo.phase_width
    shape = (geo.batch, geo.out_channels, geo.out_height, geo.out_width)
    s = te.compute(shape, lambda n, o, oy, ox: te.sum(xs[n, index[o, j] + oy * wq + ox], axis=j), name="gather")
    return te.compute(shape, lambda n, o, oy, ox: scale[o] * s[n, o, oy, ox] + bias[o], name="output")


def sparse_conv_func(geo: ConvGeometry, taps: int) -> tirx.PrimFunc:
    """Unscheduled PrimFunc ``(x, index, scale, bias) -> y`` of the real-input sparse path."""
    x = te.placeholder((geo.batch, geo.channels, geo.height, geo.width), "float32", name="x")
    index = te.placeholder((geo.out_channels, taps), "int32", name="index")
    scale = te.placeholder((geo.out_channels,), "float32", name="scale")
    bias = te.placeholder((geo.out_channels,), "float32", name="bias")
    y = sparse_conv(split_input(x, geo), index, scale, bias, geo)
    return te.create_prim_func([x, index, scale, bias, y])
