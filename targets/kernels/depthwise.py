"""TE compute of the fp32 depthwise conv: an ONNX ``Conv`` whose ``group`` is its channel count
(one filter per channel, MobileNet's 3x3 convs), and of the max-pool, the same window per
channel with a max for the weighted sum (``max_pool_func``).

A depthwise conv does ``kh * kw`` multiply-adds per output and reads each input about once per
tap: no input-channel sum to reuse a load over, so its cost is the loads. Every tap reads the
outputs of a row as one contiguous run when the channel's zero-padded image is laid out as
``layout.FlatInput`` channel planes (the stride phases apart, ``q = oy * Wq + ox``)::

    xs[n, c, f]  the flat plane of channel c (stage ``FLAT``), zeros past it
    acc[n, c, q] = sum_{ky, kx} w[c, ky, kx] * xs[n, c, offset(ky, kx) + q]
    y[n, c, oy, ox] = acc[n, c, oy * Wq + ox] + bias[c]  (+ residual, ReLU / ReLU6: ``targets.epilogue``)

so a register tile is whole vectors of consecutive flat outputs whatever the map's width (a 56-
or 7-wide row is no vector multiple), each tap one broadcast weight and one unaligned vector load
per vector, and the ``Wq - OW`` columns computed past each row are dropped by ``OUTPUT``. The plane
is built per channel (a parallel task) where it stays in cache: a strided conv's phase split is
a copy of stride-``sw`` loads into contiguous stores, which LLVM vectorizes once the padding's
bounds are peeled off the loop (``likely``).
"""

from __future__ import annotations

from collections.abc import Callable

from tvm import te, tirx

from mptc.targets.kernels import stages
from mptc.targets.kernels.epilogue import finish, residual_input
from mptc.targets.layout import ConvGeometry, ceil_div


def phase_rows(geo: ConvGeometry, flat_outputs: int) -> int:
    """Rows of each stride phase in a channel's flat plane: the ``Hq`` rows of the padded image,
    and zero rows below them as far as the taps' reads of ``flat_outputs`` outputs reach, so every
    read stays inside its phase."""
    (sh, sw), wq = geo.strides, geo.phase_width
    below = (geo.kernel[0] - 1) * geo.dilations[0] // sh * wq + (geo.kernel[1] - 1) * geo.dilations[1] // sw
    return max(geo.phase_height, ceil_div(below + flat_outputs, wq))


def depthwise_func(
    geo: ConvGeometry,
    flat_outputs: int | None,
    residual: bool = False,
    relu: bool = False,
    upper: float | None = None,
) -> tirx.PrimFunc:
    """Unscheduled PrimFunc ``(x, w, bias[, residual]) -> y`` (NCHW, ``w`` of shape ``(C, kh, kw)``),
    the reduction ``DEPTHWISE`` over ``flat_outputs`` flat outputs per channel (``OH * Wq`` or more,
    a whole number of the schedule's tiles), or with ``flat_outputs`` None over ``(OH, OW)``, the
    outputs of a row (``oy * Wq + ox``) without the columns past it, so that a schedule can write
    the epilogue from a row's registers; ``residual`` / ``relu`` / ``upper`` as ``finish``."""
    wq, channels, (kh, kw) = geo.phase_width, geo.channels, geo.kernel
    x = te.placeholder((geo.batch, channels, geo.height, geo.width), "float32", name="x")
    w = te.placeholder((channels, kh, kw), "float32", name="w")
    bias = te.placeholder((channels,), "float32", name="bias")
    res = residual_input((geo.batch, channels, geo.out_height, geo.out_width), residual)
    rows = phase_rows(geo, flat_outputs or geo.out_height * wq)
    xs = phase_planes(x, geo, rows, tirx.const(0.0, "float32"))
    ky, kx = te.reduce_axis((0, kh), "ky"), te.reduce_axis((0, kw), "kx")

    def weighted(n, c, q):
        return te.sum(w[c, ky, kx] * xs[n, c, _tap_offset(geo, rows, ky, kx) + q], axis=[ky, kx])

    read = _outputs(geo, flat_outputs, weighted)
    y = te.compute(
        (geo.batch, channels, geo.out_height, geo.out_width),
        lambda n, c, oy, ox: finish(read(n, c, oy, ox) + bias[c], res, relu, n, c, oy, ox, upper),
        name=stages.OUTPUT,
    )
    return te.create_prim_func([x, w, bias, *([res] if res is not None else []), y])


def max_pool_func(geo: ConvGeometry, flat_outputs: int | None) -> tirx.PrimFunc:
    """Unscheduled PrimFunc ``(x) -> y`` of an ONNX ``MaxPool`` (NCHW, floor mode), the stages of
    ``depthwise_func`` (flat or by rows as there): the planes padded with -inf, ``DEPTHWISE`` the
    max over the window."""
    x = te.placeholder((geo.batch, geo.channels, geo.height, geo.width), "float32", name="x")
    wq = geo.phase_width
    rows = phase_rows(geo, flat_outputs or geo.out_height * wq)
    xs = phase_planes(x, geo, rows, tirx.min_value("float32"))
    ky, kx = te.reduce_axis((0, geo.kernel[0]), "ky"), te.reduce_axis((0, geo.kernel[1]), "kx")

    def window(n, c, q):
        return te.max(xs[n, c, _tap_offset(geo, rows, ky, kx) + q], axis=[ky, kx])

    read = _outputs(geo, flat_outputs, window)
    y = te.compute((geo.batch, geo.channels, geo.out_height, geo.out_width), read, name=stages.OUTPUT)
    return te.create_prim_func([x, y])


def _outputs(geo: ConvGeometry, flat_outputs: int | None, reduce) -> Callable:
    """The read of output ``(n, c, oy, ox)`` from ``DEPTHWISE``: ``reduce(n, c, q)`` over
    ``flat_outputs`` flat outputs, or by rows (``flat_outputs`` None) over ``(OH, OW)`` at
    ``q = oy * Wq + ox``."""
    wq = geo.phase_width
    if flat_outputs is None:
        shape = (geo.batch, geo.channels, geo.out_height, geo.out_width)
        acc = te.compute(shape, lambda n, c, oy, ox: reduce(n, c, oy * wq + ox), name=stages.DEPTHWISE)
        return lambda n, c, oy, ox: acc[n, c, oy, ox]
    acc = te.compute((geo.batch, geo.channels, flat_outputs), reduce, name=stages.DEPTHWISE)
    return lambda n, c, oy, ox: acc[n, c, oy * wq + ox]


def phase_planes(x: te.Tensor, geo: ConvGeometry, rows: int, pad: tirx.PrimExpr) -> te.Tensor:
    """``FLAT``: each channel's image padded with ``pad`` as ``layout.FlatInput`` planes of
    stride phases of ``rows`` rows (``phase_rows``)."""
    (sh, sw), wq = geo.strides, geo.phase_width

    def plane(n, c, f):
        phase, row, col = f // (rows * wq), f // wq % rows, f % wq
        y = row * sh + phase // sw - geo.pads[0]
        xx = col * sw + phase % sw - geo.pads[1]
        # the bounds marked likely: LoopPartition peels the padding off the copy's loops
        inside = tirx.all(*(tirx.likely(cond) for cond in (y >= 0, y < geo.height, xx >= 0, xx < geo.width)))
        return tirx.if_then_else(inside, x[n, c, y, xx], pad)

    return te.compute(
        (geo.batch, geo.channels, sh * sw * rows * wq),
        plane,
        name=stages.FLAT,
        attrs={stages.PHASE_SHAPE: [sh, sw, rows, wq]},
    )


def _tap_offset(geo: ConvGeometry, rows: int, ky, kx):
    """Offset of tap ``(ky, kx)`` in a channel's flat plane of phases of ``rows`` rows."""
    (sh, sw), (dh, dw), wq = geo.strides, geo.dilations, geo.phase_width
    dy, dx = ky * dh, kx * dw
    return ((dy % sh) * sw + dx % sw) * rows * wq + (dy // sh) * wq + dx // sw
