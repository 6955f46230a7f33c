"""The CPU glue rules: no naive loop nest left in a compiled network, and the numbers still right."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tvm
from onnx import TensorProto, helper, numpy_helper
from tvm.relax.backend.cpu_generic import pipeline
from tvm.s_tir import dlight as dl

from mptc.targets.build import relax_pipeline
from mptc.targets.frontend import Lowering, from_onnx
from mptc.targets.policy import default_policy
from mptc.targets.schedules import kernel_schedules
from mptc.targets.schedules.cpu_glue import PANEL_TASKS, TILE_VECTORS, glue_rules
from mptc.targets.target import resolve_target

from ..harness import compile_x86, run
from ..packed_models import small_network


def test_every_function_of_a_network_is_parallel_and_vectorized():
    target = resolve_target("x86")
    kernels = kernel_schedules(target)
    tvm_target = target.tvm_target()
    mod = from_onnx(
        small_network(np.random.default_rng(0)), Lowering(kernels, default_policy("x86")), {"x": [1, 3, 12, 12]}
    )
    passes = pipeline.legalize_passes(tvm_target) + [dl.ApplyDefaultSchedule(*glue_rules(kernels.float_lanes))]
    with tvm_target:
        mod = tvm.transform.Sequential(passes)(mod)
    funcs = {gv.name_hint: f.script() for gv, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)}
    assert any("conv2d" in name for name in funcs) and any("pool" in name for name in funcs)
    for name, script in funcs.items():
        assert "T.parallel" in script and "T.vectorized" in script, name


def test_odd_shaped_glue_matches_onnxruntime():
    """Odd sizes everywhere: vector tails, row tiles that do not divide, a batch-1 matmul panel."""
    rng = np.random.default_rng(0)
    inits = {
        "w": rng.standard_normal((5, 3, 3, 3)),
        "b": rng.standard_normal(5),
        "fw": rng.standard_normal((13, 45)),
        "fb": rng.standard_normal(13),
        "c": rng.standard_normal((3, 13)),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["g"], transB=1),
        helper.make_node("Add", ["g", "c"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "glue",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 3, 7, 7])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 13])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    vm, _ = compile_x86(model)
    x = rng.standard_normal((3, 3, 7, 7)).astype(np.float32)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[
        0
    ]
    np.testing.assert_allclose(run(vm, x), expected, rtol=1e-4, atol=1e-4)


def _gemm(batch: int, k: int, n: int, rng) -> "onnx.ModelProto":
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)],
        "gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, n])],
        [
            numpy_helper.from_array(rng.standard_normal((n, k)).astype(np.float32), "w"),
            numpy_helper.from_array(rng.standard_normal(n).astype(np.float32), "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


@pytest.mark.parametrize("batch", [1, 8])
def test_matmul_weights_are_relaid_as_column_panels_at_compile_time(batch):
    """The tiles read a constant weight (K, N) as contiguous column panels (N / panel, K, panel...):
    the layout rewrite is folded into the constant (no rewrite function left), and the result holds."""
    rng = np.random.default_rng(batch)
    model = _gemm(batch, 40, 96, rng)
    target = resolve_target("x86")
    kernels = kernel_schedules(target)
    panel = (
        96 // PANEL_TASKS if batch == 1 else TILE_VECTORS * kernels.float_lanes
    )  # a task's panel / a register tile's columns
    mod = from_onnx(model, Lowering(kernels, default_policy("x86")), {"x": [batch, 40]})
    with target.tvm_target():
        mod = relax_pipeline(target, kernels.float_lanes)(mod)
    funcs = [f for f in mod.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]
    assert len(funcs) == 1 and "layout_rewrite_preproc" not in funcs[0].script()
    weight = [tuple(int(d) for d in p.shape) for p in funcs[0].params[1:] if len(p.shape) > 2]
    assert weight and weight[0][:2] == (96 // panel, 40) and np.prod(weight[0][2:]) == panel
    vm, _ = compile_x86(model)
    x = rng.standard_normal((batch, 40)).astype(np.float32)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[
        0
    ]
    np.testing.assert_allclose(run(vm, x), expected, rtol=1e-4, atol=1e-4)


def _conv_block(channels: int, size: int, stride: int, rng) -> "onnx.ModelProto":
    """Conv + bias, relu, and a residual add of a 1x1 conv of the input: a resnet block's glue."""
    out = (size - 1) // stride + 1
    inits = {
        "w": rng.standard_normal((channels, 24, 3, 3)),
        "b": rng.standard_normal(channels),
        "s": rng.standard_normal((channels, 24, 1, 1)),
    }
    nodes = [
        helper.make_node(
            "Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[stride, stride]
        ),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Conv", ["x", "s"], ["short"], kernel_shape=[1, 1], strides=[stride, stride]),
        helper.make_node("Add", ["r", "short"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "block",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 24, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, channels, out, out])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


def _conv_weights(model, size: int) -> list[tuple[int, ...]]:
    """Shapes of the re-laid conv weights after the CPU pipeline."""
    target = resolve_target("x86")
    kernels = kernel_schedules(target)
    mod = from_onnx(model, Lowering(kernels, default_policy("x86")), {"x": [2, 24, size, size]})
    with target.tvm_target():
        mod = relax_pipeline(target, kernels.float_lanes)(mod)
    funcs = [f for f in mod.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]
    return [tuple(int(d) for d in p.shape) for f in funcs for p in f.params if len(p.shape) == 5]


@pytest.mark.parametrize(
    "channels, size, stride, along_channels",
    [
        (64, 4, 1, True),
        (48, 7, 1, True),
        (64, 14, 2, True),
        (64, 14, 1, True),
        (40, 14, 1, False),
        (64, 32, 1, False),
    ],
)
def test_conv_vectors_run_along_whichever_axis_fills_them(channels, size, stride, along_channels):
    """Vectors go along the output channels, the weight re-laid with them innermost, when they fill
    more lanes than the output columns: 4, 7 and 14 columns fill 4, 7 and 14 of 16 lanes, 64
    channels all of them and 48 (tiles of 24) three quarters; 40 channels (tiles of 20) fill
    less than 14 columns, and 32 columns fill every lane."""
    rng = np.random.default_rng(size)
    model = _conv_block(channels, size, stride, rng)
    lanes = kernel_schedules(resolve_target("x86")).float_lanes
    channel_tile = max(d for d in range(1, TILE_VECTORS * lanes + 1) if channels % d == 0)
    innermost = {shape[-1] for shape in _conv_weights(model, size)}
    assert (innermost == {channel_tile}) == along_channels, innermost
    vm, _ = compile_x86(model)
    x = rng.standard_normal((2, 24, size, size)).astype(np.float32)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[
        0
    ]
    np.testing.assert_allclose(run(vm, x), expected, rtol=1e-4, atol=1e-4)
