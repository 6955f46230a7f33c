"""Winograd's F(2x2, 3x3) and F(4x4, 3x3) (``kernels.winograd``) for float 3x3 stride-1 ONNX
``Conv``, through the real frontend and pipeline, vs onnxruntime; and the convs it leaves to the
direct glue."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mptc.targets.kernels import winograd
from mptc.targets.layout import ConvGeometry
from mptc.targets.policy import default_policy

from ..glue_models import conv_model
from ..harness import compile_and_run, onnxruntime_output, relative_error

WINOGRAD = ["mptc_0_c", "mptc_0_c1"]  # the input transform, the output transform


# (shape, out channels, pads, act, residual, bias): ResNet's 3x3 with its fused tails, a batch,
# asymmetric padding, no padding, non-square maps, channel counts off the vector width
CASES = [
    ((1, 16, 8, 8), 24, (1, 1, 1, 1), "relu", False, True),
    ((2, 32, 14, 14), 32, (1, 1, 1, 1), "relu", True, True),
    ((1, 20, 8, 12), 20, (0, 1, 2, 1), "clip", True, False),
    ((1, 17, 10, 6), 9, (0, 0, 0, 0), "", False, True),
    ((3, 40, 6, 10), 40, (1, 1, 1, 1), "", True, True),
]


# outputs 4 divides, two tiles to a row or more: 8x8, 8x12, 12x8 (a batch)
F4_CASES = [CASES[0], CASES[2], ((2, 24, 12, 8), 24, (1, 1, 1, 1), "relu", True, True)]


@pytest.mark.parametrize("shape, out, pads, act, residual, bias", CASES)
def test_winograd_matches_onnxruntime(shape, out, pads, act, residual, bias):
    model = conv_model(shape, out, pads=pads, act=act, residual=residual, bias=bias)
    y, ours, lowering = compile_and_run(model)
    assert ours == WINOGRAD
    assert sorted(lowering.absorbed) == sorted(["r"] * residual + ["a"] * bool(act))
    assert np.isfinite(y).all() and relative_error(y, onnxruntime_output(model)) < 1e-5


@pytest.mark.parametrize("shape, out, pads, act, residual, bias", F4_CASES)
def test_f4_matches_onnxruntime(shape, out, pads, act, residual, bias):
    """F(4x4, 3x3), its larger transform coefficients within 1e-5 of onnxruntime too."""
    model = conv_model(shape, out, pads=pads, act=act, residual=residual, bias=bias)
    f4 = dataclasses.replace(default_policy("x86"), winograd_tiles=(4,))
    y, ours, lowering = compile_and_run(model, policy=f4)
    assert ours == WINOGRAD
    assert sorted(lowering.absorbed) == sorted(["r"] * residual + ["a"] * bool(act))
    assert np.isfinite(y).all() and relative_error(y, onnxruntime_output(model)) < 1e-5


def _direct(d: np.ndarray, g: np.ndarray, tile: int) -> np.ndarray:
    return np.array([[(d[i : i + 3, j : j + 3] * g).sum() for j in range(tile)] for i in range(tile)])


def test_transformed_weights_give_the_direct_sums():
    """U = G g G^T against the transforms written out: for one 4x4 input tile, A^T (U * B^T d B) A
    is the tile's 2x2 correlation with g."""
    rng = np.random.default_rng(3)
    g, d = rng.standard_normal((1, 1, 3, 3)), rng.standard_normal((4, 4))
    b_t = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], float)
    a_t = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], float)
    u = winograd.transformed_weights(g.astype(np.float32), winograd.F2).reshape(4, 4)
    y = a_t @ (u * (b_t @ d @ b_t.T)) @ a_t.T
    np.testing.assert_allclose(y, _direct(d, g[0, 0], 2), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("scheme", [winograd.F2, winograd.F4], ids=["F2", "F4"])
def test_each_scheme_is_a_correlation(scheme):
    """Each scheme's three matrices compute the correlation of an a x a tile with a 3x3 filter
    (in float64: the algebra, not the rounding)."""
    rng = np.random.default_rng(4)
    g, d = rng.standard_normal((3, 3)), rng.standard_normal((scheme.side, scheme.side))
    u = scheme.g @ g @ scheme.g.T
    y = scheme.at @ (u * (scheme.bt @ d @ scheme.bt.T)) @ scheme.at.T
    np.testing.assert_allclose(y, _direct(d, g, scheme.tile), rtol=1e-12, atol=1e-12)


def test_choose_takes_the_first_tile_that_fits():
    """F(4x4) where 4 divides the output, F(2x2) where only 2 does, nothing on an odd output,
    and a scheme whose transformed tiles (F(2x2)'s: 16 values per 4 outputs, F(4x4)'s: 36 per
    16) exceed the bytes is passed over."""

    def geo(size: int, channels: int = 64) -> ConvGeometry:
        return ConvGeometry(1, channels, size, size, out_channels=64, kernel=(3, 3), pads=(1, 1, 1, 1))

    assert winograd.choose(geo(56), (4, 2), 16 << 20, 16 << 20) is winograd.F4
    assert winograd.choose(geo(14), (4, 2), 16 << 20, 16 << 20) is winograd.F2
    assert winograd.choose(geo(7), (4, 2), 16 << 20, 16 << 20) is None
    assert winograd.choose(geo(4), (4, 2), 16 << 20, 16 << 20) is winograd.F2  # one 4x4 tile to a row
    f4_bytes = 4 * winograd.F4.positions * 64 * winograd.tiles(geo(56), winograd.F4)
    assert winograd.choose(geo(56), (2, 4), f4_bytes, 16 << 20) is winograd.F4
    assert winograd.choose(geo(56), (4, 2), f4_bytes - 1, 16 << 20) is None
    assert winograd.choose(geo(56), (2,), 16 << 20, 16 << 20) is winograd.F2
    wide = geo(8, channels=512)  # 512 -> 64 channels: F(4x4)'s weights 4.7 MB, F(2x2)'s 2.1 MB
    assert winograd.choose(wide, (4, 2), 16 << 20, 4 << 20) is winograd.F2


@pytest.mark.parametrize(
    "model",
    [
        conv_model((1, 3, 16, 16), 16, act="relu"),  # too few input channels
        conv_model((1, 16, 9, 9), 16, act="relu"),  # odd output: no whole 2x2 tiles
        conv_model((1, 16, 6, 2), 16, act="relu"),  # one tile to a row
        conv_model((1, 16, 16, 16), 16, stride=2, act="relu"),
        conv_model((1, 16, 16, 16), 16, kernel=5, pads=(2, 2, 2, 2)),
        conv_model((1, 16, 16, 16), 16, dilation=2, pads=(2, 2, 2, 2)),
        conv_model((1, 16, 16, 16), 16, groups=2),
        conv_model((1, 16, 16, 16), 16, act="relu", named=False),  # its epilogue unknown by name
    ],
    ids=["3-channels", "odd-output", "one-tile-rows", "stride-2", "5x5", "dilated", "grouped", "unnamed"],
)
def test_other_convs_stay_glue(model):
    y, ours, lowering = compile_and_run(model)
    assert ours == [] and not lowering.absorbed
    assert relative_error(y, onnxruntime_output(model)) < 1e-5


def test_policy_sets_the_channels_and_the_transformed_bytes():
    """``winograd_min_channels`` None turns it off; a conv whose transformed tiles exceed
    ``winograd_max_bytes`` keeps the direct glue."""
    shape = (2, 16, 12, 12)
    model = conv_model(shape, 16, act="relu")
    assert compile_and_run(model)[1] == WINOGRAD
    never = dataclasses.replace(default_policy("x86"), winograd_min_channels=None)
    assert compile_and_run(model, policy=never)[1] == []
    geo = ConvGeometry(*shape, out_channels=16, kernel=(3, 3), pads=(1, 1, 1, 1))
    tile_bytes = min(4 * s.positions * shape[1] * winograd.tiles(geo, s) for s in (winograd.F2, winograd.F4))
    smaller = dataclasses.replace(default_policy("x86"), winograd_max_bytes=tile_bytes - 1)
    y, ours, _ = compile_and_run(model, policy=smaller)
    assert ours == [] and relative_error(y, onnxruntime_output(model)) < 1e-5
