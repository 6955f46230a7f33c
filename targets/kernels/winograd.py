"""TE computes of the fp32 3x3 stride-1 conv by Winograd's minimal filtering, F(2x2, 3x3) and F(4x4, 3x3).

The direct conv does 9 multiply-adds per output and input channel, and the fp32 glue runs it at
the FMA units' peak: past that, only fewer multiply-adds go faster. F(m x m, 3x3) (Lavin & Gray,
"Fast Algorithms for Convolutional Neural Networks") computes each m x m tile of outputs from the
``a x a`` tile of inputs around it (``a = m + 2``) with ``a^2`` multiply-adds per input channel
instead of ``9 m^2``, as ``a^2`` independent matrix products over the channels::

    U[b, k, c] = (G g[k, c] G^T)[b]                 the weights, transformed at compile time
    V[b, c, p] = (B^T d[c, p] B)[b]                 ``WINOGRAD_INPUT``: each tile's input transformed
    M[b, k, p] = sum_c U[b, k, c] * V[b, c, p]      a^2 GEMMs (TVM's matmul, the fp32 glue schedules it)
    y[k, tile p] = A^T M[:, k, p] A + bias[k]       ``OUTPUT``, with the conv's epilogue

for the ``a x a`` positions ``b`` of a tile and the tiles ``p = (n, i, j)`` of the output.
F(2x2, 3x3) (:data:`F2`: 16 products per 4 outputs, 2.25x fewer than direct) uses the points 0,
+-1: B and A hold 0 and +-1, G 0 and +-1/2, the sums stay about as exact as the direct conv's.
F(4x4, 3x3) (:data:`F4`: 36 products per 16 outputs, 4x fewer) adds the points +-2: B and A
hold small integers up to 8 and G fractions down to 1/24, with rounding errors about ten times
F(2x2, 3x3)'s (1e-6-1e-5 relative, far inside mptc's 1e-4), and its tiles need an output that
4 divides.
Each transform is written out per position from the nonzero entries of its matrix (adds where
an entry is +-1): an expression per ``b`` chosen by ``b``, which the schedules unroll so that the
choice folds away.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from tvm import te, tirx

from mptc.targets.kernels import depthwise, stages
from mptc.targets.kernels.epilogue import finish, residual_input
from mptc.targets.layout import ConvGeometry


@dataclasses.dataclass(frozen=True)
class Scheme:
    """One F(m x m, 3x3): ``tile`` = m, and the transform matrices ``B^T`` (a x a), ``G`` (a x 3)
    and ``A^T`` (m x a)."""

    tile: int
    bt: np.ndarray
    g: np.ndarray
    at: np.ndarray

    @property
    def side(self) -> int:
        """``a``: inputs per side of a tile."""
        return self.tile + 2

    @property
    def positions(self) -> int:
        """Transformed values per tile, ``a^2``."""
        return self.side**2


F2 = Scheme(
    tile=2,
    bt=np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64),
    g=np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]]),
    at=np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64),
)
F4 = Scheme(
    tile=4,
    bt=np.array(
        [
            [4, 0, -5, 0, 1, 0],
            [0, -4, -4, 1, 1, 0],
            [0, 4, -4, -1, 1, 0],
            [0, -2, -1, 2, 1, 0],
            [0, 2, -1, -2, 1, 0],
            [0, 4, 0, -5, 0, 1],
        ],
        dtype=np.float64,
    ),
    g=np.array(
        [
            [1 / 4, 0, 0],
            [-1 / 6, -1 / 6, -1 / 6],
            [-1 / 6, 1 / 6, -1 / 6],
            [1 / 24, 1 / 12, 1 / 6],
            [1 / 24, -1 / 12, 1 / 6],
            [0, 0, 1],
        ]
    ),
    at=np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], dtype=np.float64),
)

SCHEMES = {scheme.tile: scheme for scheme in (F2, F4)}


def applies(geo: ConvGeometry, scheme: Scheme) -> bool:
    """Whether ``scheme`` computes a conv of this geometry: 3x3, stride 1, no dilation, an output
    of whole tiles and at least two tiles to a row (the transforms' vectors run along a row of
    tiles); the geometry has no groups, which the caller checks."""
    return (
        geo.kernel == (3, 3)
        and geo.strides == (1, 1)
        and geo.dilations == (1, 1)
        and geo.out_height % scheme.tile == 0
        and geo.out_width % scheme.tile == 0
        and geo.out_width >= 2 * scheme.tile
    )


def tiles(geo: ConvGeometry, scheme: Scheme) -> int:
    """Output tiles of the batch: ``p`` runs over ``(n, OH / m, OW / m)``."""
    return geo.batch * (geo.out_height // scheme.tile) * (geo.out_width // scheme.tile)


def choose(geo: ConvGeometry, tile_sizes: Sequence[int], max_bytes: int, max_weight_bytes: int) -> Scheme | None:
    """The first scheme of ``tile_sizes`` that computes ``geo`` with at most ``max_bytes`` of
    transformed input tiles (``a^2 x C x tiles`` floats) and ``max_weight_bytes`` of transformed
    weights (``a^2 x K x C`` floats, read once per call), or None."""
    for size in tile_sizes:
        scheme = SCHEMES[size]
        tile_bytes = 4 * scheme.positions * geo.channels * tiles(geo, scheme)
        weight_bytes = 4 * scheme.positions * geo.out_channels * geo.channels
        if applies(geo, scheme) and tile_bytes <= max_bytes and weight_bytes <= max_weight_bytes:
            return scheme
    return None


def transformed_weights(weight: np.ndarray, scheme: Scheme) -> np.ndarray:
    """``U``, shape ``(a^2, K, C)``: each 3x3 filter ``g`` of ``weight`` ``(K, C, 3, 3)`` as ``G g G^T``,
    computed in float64 and rounded once."""
    u = np.einsum("xr,kcrs,ys->xykc", scheme.g, weight.astype(np.float64), scheme.g)
    return np.ascontiguousarray(u.reshape(scheme.positions, *weight.shape[:2]).astype(np.float32))


def _combine(row: np.ndarray, values) -> tirx.PrimExpr:
    """``sum(row[i] * values[i])`` over the nonzero entries of ``row``: adds and subtracts where
    an entry is +-1."""
    total = None
    for coefficient, value in zip(row, values):
        if coefficient == 0:
            continue
        negative = coefficient < 0
        term = value if abs(coefficient) == 1 else value * tirx.const(float(abs(coefficient)), "float32")
        if total is None:
            total = -term if negative else term
        else:
            total = total - term if negative else total + term
    return total


def _choose(position: tirx.PrimExpr, choices: list[tirx.PrimExpr]) -> tirx.PrimExpr:
    """``choices[position]``, as a chain of selects a constant ``position`` folds to one choice."""
    chosen = choices[-1]
    for index in range(len(choices) - 2, -1, -1):
        chosen = tirx.Select(position == index, choices[index], chosen)
    return chosen


def input_func(geo: ConvGeometry, scheme: Scheme) -> tirx.PrimFunc:
    """Unscheduled PrimFunc ``(x) -> V`` (``WINOGRAD_INPUT``, shape ``(a^2, C, tiles)``): each
    tile's ``a x a`` input transformed as ``B^T d B``, read from the ``FLAT`` planes of each
    channel's zero-padded image split into its ``m x m`` stride-``m`` phases
    (``depthwise.phase_planes``), where the tiles of a row of tiles read every tap as one
    contiguous run."""
    m, a = scheme.tile, scheme.side
    th, tw = geo.out_height // m, geo.out_width // m
    x = te.placeholder((geo.batch, geo.channels, geo.height, geo.width), "float32", name="x")
    phases = dataclasses.replace(geo, strides=(m, m))
    rows, cols = phases.phase_height, phases.phase_width
    xs = depthwise.phase_planes(x, phases, rows, tirx.const(0.0, "float32"))

    def transformed(b, c, p):
        n, i, j = p // (th * tw), p // tw % th, p % tw

        def read(r, s):
            return xs[n, c, ((r % m) * m + s % m) * rows * cols + (i + r // m) * cols + j + s // m]

        d = [[read(r, s) for s in range(a)] for r in range(a)]
        bt_d = [[_combine(terms, [d[r][s] for r in range(a)]) for s in range(a)] for terms in scheme.bt]
        return _choose(b, [_combine(col, bt_d[row]) for row in range(a) for col in scheme.bt])

    v = te.compute(
        (scheme.positions, geo.channels, tiles(geo, scheme)),
        transformed,
        name=stages.WINOGRAD_INPUT,
        attrs={stages.TILE_SHAPE: [geo.batch, th, tw]},
    )
    return te.create_prim_func([x, v])


def output_func(
    geo: ConvGeometry, scheme: Scheme, residual: bool = False, relu: bool = False, upper: float | None = None
) -> tirx.PrimFunc:
    """Unscheduled PrimFunc ``(M, bias[, residual]) -> y`` (``OUTPUT``, NCHW, annotated with its
    ``TILE``): each tile's ``m x m`` outputs ``A^T M A`` of its ``a x a`` products ``M[:, k, p]``,
    plus ``bias``, through the epilogue (``residual`` / ``relu`` / ``upper`` as ``finish``)."""
    t, a = scheme.tile, scheme.side
    th, tw, k = geo.out_height // t, geo.out_width // t, geo.out_channels
    m = te.placeholder((scheme.positions, k, tiles(geo, scheme)), "float32", name="m")
    bias = te.placeholder((k,), "float32", name="bias")
    out_shape = (geo.batch, k, geo.out_height, geo.out_width)
    res = residual_input(out_shape, residual)

    def output(n, o, oy, ox):
        p = (n * th + oy // t) * tw + ox // t
        products = [[m[row * a + col, o, p] for col in range(a)] for row in range(a)]
        cols = [[_combine(terms, products[row]) for terms in scheme.at] for row in range(a)]
        outs = [_combine(terms, [cols[row][b] for row in range(a)]) for terms in scheme.at for b in range(t)]
        value = _choose(oy % t * t + ox % t, outs)
        return finish(value + bias[o], res, relu, n, o, oy, ox, upper)

    y = te.compute(out_shape, output, name=stages.OUTPUT, attrs={stages.TILE: t})
    return te.create_prim_func([m, bias, *([res] if res is not None else []), y])
