"""TE computes of the fp32 3x3 stride-1 conv by Winograd's minimal filtering, F(2x2, 3x3).

The direct conv does 9 multiply-adds per output and input channel, and the fp32 glue runs it at
the FMA units' peak: past that, only fewer multiply-adds go faster. F(2x2, 3x3) (Lavin & Gray,
"Fast Algorithms for Convolutional Neural Networks") computes each 2x2 tile of outputs from the
4x4 tile of inputs around it with 16 multiply-adds per input channel instead of 36, as 16
independent matrix products over the channels::

    U[b, k, c] = (G g[k, c] G^T)[b]                 the weights, transformed at compile time
    V[b, c, p] = (B^T d[c, p] B)[b]                 ``WINOGRAD_INPUT``: each tile's input transformed
    M[b, k, p] = sum_c U[b, k, c] * V[b, c, p]      16 GEMMs (TVM's matmul, the fp32 glue schedules it)
    y[k, tile p] = A^T M[:, k, p] A + bias[k]       ``OUTPUT``, with the conv's epilogue

for the 4x4 positions ``b`` of a tile and the tiles ``p = (n, i, j)`` of the output (2x2 each).
B, G and A use the points 0, 1, -1: every entry of B and A is 0 or +-1 and G's are 0, +-1/2, so
the transforms are adds and the sums stay about as exact as the direct conv's (within 1e-6 of
onnxruntime's, relative, in the tests).
Each transform is written out per position (no multiplies by constant matrices): an expression
per ``b`` chosen by ``b``, which the schedules unroll so that the choice folds away.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from tvm import te, tirx

from mptc.targets.kernels import depthwise, stages
from mptc.targets.kernels.epilogue import finish, residual_input
from mptc.targets.layout import ConvGeometry

TILE = 2  # outputs per tile side
POSITIONS = 16  # (TILE + 3 - 1) ** 2 transformed values per tile

# B^T's rows as (input row, sign) terms: V = B^T d B, d a 4x4 input tile
_INPUT_TERMS = (((0, 1), (2, -1)), ((1, 1), (2, 1)), ((2, 1), (1, -1)), ((1, 1), (3, -1)))
# A^T's rows: y = A^T m A, m a 4x4 tile of products
_OUTPUT_TERMS = (((0, 1), (1, 1), (2, 1)), ((1, 1), (2, -1), (3, -1)))
_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])


def applies(geo: ConvGeometry) -> bool:
    """Whether F(2x2, 3x3) computes a conv of this geometry: 3x3, stride 1, no dilation and an
    even output (whole 2x2 tiles); the geometry has no groups, which the caller checks."""
    return (
        geo.kernel == (3, 3)
        and geo.strides == (1, 1)
        and geo.dilations == (1, 1)
        and geo.out_height % TILE == 0
        and geo.out_width % TILE == 0
    )


def tiles(geo: ConvGeometry) -> int:
    """Output tiles of the batch: ``p`` runs over ``(n, OH / 2, OW / 2)``."""
    return geo.batch * (geo.out_height // TILE) * (geo.out_width // TILE)


def transformed_weights(weight: np.ndarray) -> np.ndarray:
    """``U``, shape ``(16, K, C)``: each 3x3 filter ``g`` of ``weight`` ``(K, C, 3, 3)`` as ``G g G^T``,
    computed in float64 and rounded once."""
    u = np.einsum("xr,kcrs,ys->xykc", _G, weight.astype(np.float64), _G)
    return np.ascontiguousarray(u.reshape(POSITIONS, *weight.shape[:2]).astype(np.float32))


def _combine(terms, values) -> tirx.PrimExpr:
    """``sum(sign * values[i])`` over ``terms`` of ``(i, sign)``: adds and subtracts."""
    (first, sign), *rest = terms
    total = values[first] if sign > 0 else -values[first]
    for index, sign in rest:
        total = total + values[index] if sign > 0 else total - values[index]
    return total


def _choose(position: tirx.PrimExpr, choices: list[tirx.PrimExpr]) -> tirx.PrimExpr:
    """``choices[position]``, as a chain of selects a constant ``position`` folds to one choice."""
    chosen = choices[-1]
    for index in range(len(choices) - 2, -1, -1):
        chosen = tirx.Select(position == index, choices[index], chosen)
    return chosen


def input_func(geo: ConvGeometry) -> tirx.PrimFunc:
    """Unscheduled PrimFunc ``(x) -> V`` (``WINOGRAD_INPUT``, shape ``(16, C, tiles)``): each
    tile's 4x4 input transformed as ``B^T d B``, read from the ``FLAT`` planes of each channel's
    zero-padded image split into its four stride-2 phases (``depthwise.phase_planes``), where the
    tiles of a row of tiles read every tap as one contiguous run."""
    th, tw = geo.out_height // TILE, geo.out_width // TILE
    x = te.placeholder((geo.batch, geo.channels, geo.height, geo.width), "float32", name="x")
    phases = dataclasses.replace(geo, strides=(TILE, TILE))
    rows, cols = phases.phase_height, phases.phase_width
    xs = depthwise.phase_planes(x, phases, rows, tirx.const(0.0, "float32"))

    def transformed(b, c, p):
        n, i, j = p // (th * tw), p // tw % th, p % tw

        def read(r, s):
            return xs[n, c, ((r % TILE) * TILE + s % TILE) * rows * cols + (i + r // TILE) * cols + j + s // TILE]

        d = [[read(r, s) for s in range(4)] for r in range(4)]
        bt_d = [[_combine(terms, [d[r][s] for r in range(4)]) for s in range(4)] for terms in _INPUT_TERMS]
        return _choose(b, [_combine(col, bt_d[row]) for row in range(4) for col in _INPUT_TERMS])

    v = te.compute(
        (POSITIONS, geo.channels, tiles(geo)),
        transformed,
        name=stages.WINOGRAD_INPUT,
        attrs={stages.TILE_SHAPE: [geo.batch, th, tw]},
    )
    return te.create_prim_func([x, v])


def output_func(
    geo: ConvGeometry, residual: bool = False, relu: bool = False, upper: float | None = None
) -> tirx.PrimFunc:
    """Unscheduled PrimFunc ``(M, bias[, residual]) -> y`` (``OUTPUT``, NCHW): each tile's 2x2
    outputs ``A^T m A`` of its 4x4 products ``M[:, k, p]``, plus ``bias``, through the epilogue
    (``residual`` / ``relu`` / ``upper`` as ``finish``)."""
    th, tw, k = geo.out_height // TILE, geo.out_width // TILE, geo.out_channels
    m = te.placeholder((POSITIONS, k, tiles(geo)), "float32", name="m")
    bias = te.placeholder((k,), "float32", name="bias")
    out_shape = (geo.batch, k, geo.out_height, geo.out_width)
    res = residual_input(out_shape, residual)

    def output(n, o, oy, ox):
        p = (n * th + oy // TILE) * tw + ox // TILE
        products = [[m[row * 4 + col, o, p] for col in range(4)] for row in range(4)]
        cols = [[_combine(terms, products[row]) for terms in _OUTPUT_TERMS] for row in range(4)]
        outs = [_combine(terms, [cols[row][b] for row in range(4)]) for terms in _OUTPUT_TERMS for b in range(TILE)]
        value = _choose(oy % TILE * TILE + ox % TILE, outs)
        return finish(value + bias[o], res, relu, n, o, oy, ox, upper)

    y = te.compute(out_shape, output, name=stages.OUTPUT)
    return te.create_prim_func([m, bias, *([res] if res is not None else []), y])
