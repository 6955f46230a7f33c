"""The flat-plane depthwise conv (``kernels.depthwise``) for ONNX ``Conv`` with ``group`` = channels,
through the real frontend and pipeline, vs onnxruntime."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tvm
from onnx import numpy_helper

from mptc.targets.policy import default_policy
from mptc.targets.schedules.arm import NEON_TILES
from mptc.targets.schedules.cpu import CpuKernelSchedules
from mptc.targets.schedules.cuda import CudaKernelSchedules
from mptc.targets.schedules.x86 import AVX512_TILES

from ..glue_models import depthwise_model
from ..harness import compile_and_run, onnxruntime_output, relative_error

# (shape, kernel, stride, pads, dilation, act): MobileNet's 3x3 at stride 1 and 2, odd and
# non-square maps and a batch, asymmetric (TF "same") padding, 5x5, dilation, stride 3
CASES = [
    ((1, 8, 56, 56), 3, 1, (1, 1, 1, 1), 1, "clip"),
    ((2, 5, 113, 120), 3, 2, (1, 1, 1, 1), 1, "relu"),
    ((1, 3, 64, 130), 5, 2, (2, 1, 2, 3), 1, ""),
    ((1, 4, 60, 62), 3, 1, (2, 2, 2, 2), 2, "clip"),
    ((1, 6, 112, 112), 3, 2, (0, 0, 1, 1), 1, ""),
    ((1, 4, 171, 180), 3, 3, (1, 1, 1, 1), 1, "relu"),
]


@pytest.mark.parametrize("shape, kernel, stride, pads, dilation, act", CASES)
def test_depthwise_matches_onnxruntime(shape, kernel, stride, pads, dilation, act):
    model = depthwise_model(shape, kernel, stride, pads, dilation, act)
    y, ours, lowering = compile_and_run(model)
    assert ours == ["mptc_0_c"]
    assert sorted(lowering.absorbed) == (["a"] if act else [])
    assert relative_error(y, onnxruntime_output(model)) < 1e-5


@pytest.mark.parametrize(
    "tiles, shape, stride, lanes",
    [
        (AVX512_TILES, (2, 8, 112, 112), 1, 16),  # rows of whole vectors
        (AVX512_TILES, (1, 5, 112, 112), 2, 8),  # 56 wide: half vectors
        (AVX512_TILES, (1, 5, 113, 113), 2, None),  # 57 wide: the flat form
        (NEON_TILES, (1, 6, 60, 60), 1, 4),
        (NEON_TILES, (1, 6, 58, 58), 1, None),  # 58 wide: two-lane halves are too narrow
    ],
    ids=["avx512-rows", "avx512-half-rows", "flat", "neon-rows", "neon-flat"],
)
def test_rows_form_where_vectors_divide_the_rows(tiles, shape, stride, lanes):
    """The by-rows form (``depthwise_row_lanes``) on rows of whole or half vectors, the flat form
    on any other width; both match onnxruntime, with the fused residual add and ReLU6."""
    kernels = CpuKernelSchedules(tiles)
    model = depthwise_model(shape, stride=stride, act="clip", residual=stride == 1)
    assert kernels.depthwise_row_lanes((shape[3] - 1) // stride + 1) == lanes
    y, ours, lowering = compile_and_run(model, kernels=kernels)
    assert ours == ["mptc_0_c"] and relative_error(y, onnxruntime_output(model)) < 1e-5


def test_residual_add_and_relu6_are_absorbed():
    model = depthwise_model((1, 16, 56, 56), act="clip", residual=True)
    y, ours, lowering = compile_and_run(model)
    assert ours == ["mptc_0_c"] and sorted(lowering.absorbed) == ["a", "r"]
    assert relative_error(y, onnxruntime_output(model)) < 1e-5


def test_without_bias():
    model = depthwise_model((1, 4, 58, 116), stride=2, bias=False)
    y, ours, _ = compile_and_run(model)
    assert ours == ["mptc_0_c"] and relative_error(y, onnxruntime_output(model)) < 1e-5


def test_neon_tiles_on_this_host():
    """NEON's 4 lanes: tiles of 32 flat outputs, 4-lane epilogue stores."""
    model = depthwise_model((1, 6, 57, 121), stride=2, act="clip")
    y, ours, _ = compile_and_run(model, kernels=CpuKernelSchedules(NEON_TILES))
    assert ours == ["mptc_0_c"] and relative_error(y, onnxruntime_output(model)) < 1e-5


@pytest.mark.parametrize(
    "model",
    [
        depthwise_model((1, 8, 28, 28), act="clip"),  # narrower than policy.depthwise_min_width
        depthwise_model((1, 8, 56, 56), act="clip", named=False),  # its epilogue unknown by name
    ],
    ids=["narrow-map", "unnamed"],
)
def test_other_depthwise_convs_stay_glue(model):
    y, ours, lowering = compile_and_run(model)
    assert ours == [] and not lowering.absorbed
    assert relative_error(y, onnxruntime_output(model)) < 1e-5


def test_policy_moves_the_width_from_which_the_kernel_runs():
    model = depthwise_model((1, 8, 28, 28), act="clip")
    policy = dataclasses.replace(default_policy("x86"), depthwise_min_width=28)
    y, ours, _ = compile_and_run(model, policy=policy)
    assert ours == ["mptc_0_c"] and relative_error(y, onnxruntime_output(model)) < 1e-5
    never = dataclasses.replace(default_policy("x86"), depthwise_min_width=None)
    assert compile_and_run(depthwise_model((1, 8, 56, 56)), policy=never)[1] == []


def test_a_grouped_conv_is_no_depthwise_conv():
    model = depthwise_model((1, 8, 56, 56))
    weight = numpy_helper.to_array(model.graph.initializer[0])
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.concatenate([weight, weight], axis=1)[:4], "w"))
    next(a for a in model.graph.node[0].attribute if a.name == "group").i = 4  # 2 channels per group
    model.graph.initializer[1].CopyFrom(numpy_helper.from_array(np.zeros(4, np.float32), "b"))
    y, ours, _ = compile_and_run(model)
    assert ours == [] and relative_error(y, onnxruntime_output(model)) < 1e-5


def test_cuda_leaves_depthwise_convs_to_tvm():
    assert CudaKernelSchedules().depthwise(tvm.tirx.PrimFunc([], tvm.tirx.Evaluate(0))) is None
