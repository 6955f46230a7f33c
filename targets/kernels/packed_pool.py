"""TE compute of max pooling on packed signs: ``sign(maxpool(y)) = OR of the window's sign bits``.

``sign`` is monotonic, so the max of a window is >= 0 exactly when one of its values is, and a
max-pool between two binary layers can run on the words the first one packed::

    out[n, oy, ox, w] = OR_{ky, kx inside} a[n, oy*sh + ky*dh - pt, ox*sw + kx*dw - pl, w]

Padded taps are skipped (ONNX pads max pooling with -inf, which never wins). 64 channels per OR.
"""

from __future__ import annotations

import functools

from tvm import te, tirx

from mptc.targets.kernels import stages
from mptc.targets.kernels.bits import WORD
from mptc.targets.layout import ConvGeometry


def or_pool(a: te.Tensor, geo: ConvGeometry) -> te.Tensor:
    """Max-pool of packed signs ``(N, H, W, Cw)`` -> ``(N, OH, OW, Cw)`` words (stage ``OUTPUT``)."""
    (sh, sw), (dh, dw) = geo.strides, geo.dilations

    def word(n, oy, ox, w):
        def tap(ky: int, kx: int) -> tirx.PrimExpr:
            y, x = oy * sh + ky * dh - geo.pads[0], ox * sw + kx * dw - geo.pads[1]
            inside = tirx.all(y >= 0, y < geo.height, x >= 0, x < geo.width)
            safe = a[n, tirx.max(tirx.min(y, geo.height - 1), 0), tirx.max(tirx.min(x, geo.width - 1), 0), w]
            return tirx.Select(inside, safe, tirx.const(0, WORD))

        taps = [tap(ky, kx) for ky in range(geo.kernel[0]) for kx in range(geo.kernel[1])]
        return functools.reduce(lambda acc, t: acc | t, taps[1:], taps[0])

    shape = (geo.batch, geo.out_height, geo.out_width, geo.channel_words)
    return te.compute(shape, word, name=stages.OUTPUT)


def or_pool_func(geo: ConvGeometry) -> tirx.PrimFunc:
    """Unscheduled PrimFunc ``(words) -> words``."""
    a = te.placeholder((geo.batch, geo.height, geo.width, geo.channel_words), WORD, name="x")
    return te.create_prim_func([a, or_pool(a, geo)])
