"""Winograd's F(2x2, 3x3) (``kernels.winograd``) for float 3x3 stride-1 ONNX ``Conv``, through the
real frontend and pipeline, vs onnxruntime; and the convs it leaves to the direct glue."""

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


@pytest.mark.parametrize("shape, out, pads, act, residual, bias", CASES)
def test_winograd_matches_onnxruntime(shape, out, pads, act, residual, bias):
    model = conv_model(shape, out, pads=pads, act=act, residual=residual, bias=bias)
    y, ours, lowering = compile_and_run(model)
    assert ours == WINOGRAD
    assert sorted(lowering.absorbed) == sorted(["r"] * residual + ["a"] * bool(act))
    assert np.isfinite(y).all() and relative_error(y, onnxruntime_output(model)) < 1e-5


def test_transformed_weights_give_the_direct_sums():
    """U = G g G^T against the transforms written out: for one 4x4 input tile, A^T (U * B^T d B) A
    is the tile's 2x2 correlation with g."""
    rng = np.random.default_rng(3)
    g, d = rng.standard_normal((1, 1, 3, 3)), rng.standard_normal((4, 4))
    b_t = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], float)
    a_t = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], float)
    u = winograd.transformed_weights(g.astype(np.float32)).reshape(4, 4)
    y = a_t @ (u * (b_t @ d @ b_t.T)) @ a_t.T
    direct = np.array([[(d[i : i + 3, j : j + 3] * g[0, 0]).sum() for j in range(2)] for i in range(2)])
    np.testing.assert_allclose(y, direct, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "model",
    [
        conv_model((1, 3, 16, 16), 16, act="relu"),  # too few input channels
        conv_model((1, 16, 9, 9), 16, act="relu"),  # odd output: no whole 2x2 tiles
        conv_model((1, 16, 16, 16), 16, stride=2, act="relu"),
        conv_model((1, 16, 16, 16), 16, kernel=5, pads=(2, 2, 2, 2)),
        conv_model((1, 16, 16, 16), 16, dilation=2, pads=(2, 2, 2, 2)),
        conv_model((1, 16, 16, 16), 16, groups=2),
        conv_model((1, 16, 16, 16), 16, act="relu", named=False),  # its epilogue unknown by name
    ],
    ids=["3-channels", "odd-output", "stride-2", "5x5", "dilated", "grouped", "unnamed"],
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
    tile_bytes = 4 * winograd.POSITIONS * shape[1] * winograd.tiles(geo)
    smaller = dataclasses.replace(default_policy("x86"), winograd_max_bytes=tile_bytes - 1)
    y, ours, _ = compile_and_run(model, policy=smaller)
    assert ours == [] and relative_error(y, onnxruntime_output(model)) < 1e-5
