"""The flat-plane max-pool (``kernels.depthwise.max_pool_func``) for float ONNX ``MaxPool``,
through the real frontend and pipeline, vs onnxruntime."""

from __future__ import annotations

import dataclasses

import pytest

from mptc.targets.policy import default_policy
from mptc.targets.schedules.arm import NEON_TILES
from mptc.targets.schedules.cpu import CpuKernelSchedules

from ..glue_models import max_pool_model
from ..harness import relative_error
from .test_depthwise import compile_and_run, onnxruntime_output

# (shape, kernel, stride, pads, dilation): a ResNet's 3x3 stride-2 pool at 112 (56 wide: by rows
# of half vectors), 112 wide (whole vectors) and odd maps (flat), a batch, asymmetric pads, 2x2
# without padding, dilation, stride 3 and 1
CASES = [
    ((1, 64, 112, 112), 3, 2, (1, 1, 1, 1), 1),
    ((1, 4, 112, 112), 3, 1, (1, 1, 1, 1), 1),
    ((2, 5, 113, 121), 3, 2, (1, 1, 1, 1), 1),
    ((1, 3, 120, 130), 2, 2, (0, 0, 0, 0), 1),
    ((1, 4, 64, 130), 3, 2, (0, 1, 1, 0), 1),
    ((1, 4, 70, 66), 3, 1, (2, 2, 2, 2), 2),
    ((1, 4, 171, 180), 3, 3, (1, 1, 1, 1), 1),
]


@pytest.mark.parametrize("shape, kernel, stride, pads, dilation", CASES)
def test_max_pool_matches_onnxruntime(shape, kernel, stride, pads, dilation):
    model = max_pool_model(shape, kernel, stride, pads, dilation)
    y, ours, _ = compile_and_run(model)
    assert ours == ["mptc_0_pool"]
    assert relative_error(y, onnxruntime_output(model)) == 0.0  # a max is exact


def test_negative_inputs_never_read_the_padding():
    """Every value negative: a padded tap must not win the max (the planes pad with -inf, not 0)."""
    model = max_pool_model((1, 4, 112, 112), negative=True)
    y, ours, _ = compile_and_run(model)
    assert "mptc_0_pool" in ours and (y < 0).all() and relative_error(y, onnxruntime_output(model)) == 0.0


@pytest.mark.parametrize("shape", [(1, 6, 113, 121), (1, 6, 112, 112)], ids=["flat", "rows"])
def test_neon_tiles_on_this_host(shape):
    model = max_pool_model(shape)
    y, ours, _ = compile_and_run(model, kernels=CpuKernelSchedules(NEON_TILES))
    assert ours == ["mptc_0_pool"] and relative_error(y, onnxruntime_output(model)) == 0.0


@pytest.mark.parametrize(
    "model, policy",
    [
        (max_pool_model((1, 8, 56, 56)), None),  # output 28 wide: narrower than depthwise_min_width
        (max_pool_model((1, 8, 112, 112), ceil_mode=1), None),
        (max_pool_model((1, 8, 112, 112)), dataclasses.replace(default_policy("x86"), depthwise_min_width=None)),
    ],
    ids=["narrow-map", "ceil-mode", "policy-off"],
)
def test_other_pools_stay_glue(model, policy):
    y, ours, _ = compile_and_run(model, policy=policy)
    assert ours == [] and relative_error(y, onnxruntime_output(model)) == 0.0
