"""The CPU glue rules: no naive loop nest left in a compiled network, and the numbers still right."""

import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tvm
from onnx import TensorProto, helper, numpy_helper
from tvm.relax.backend.cpu_generic import pipeline
from tvm.s_tir import dlight as dl

from mptc.targets.build import relax_pipeline, vector_registers
from mptc.targets.frontend import Lowering, from_onnx
from mptc.targets.policy import default_policy
from mptc.targets.schedules import kernel_schedules
from mptc.targets.schedules.cpu_glue import PANEL_TASKS, TILE_VECTORS, TiledReduction, glue_rules, whole_columns
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
    passes = pipeline.legalize_passes(tvm_target) + [
        dl.ApplyDefaultSchedule(*glue_rules(kernels.float_lanes, vector_registers(target, kernels.float_lanes)))
    ]
    with tvm_target:
        mod = tvm.transform.Sequential(passes)(mod)
    funcs = {gv.name_hint: f.script() for gv, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)}
    assert any("conv2d" in name for name in funcs) and any("pool" in name for name in funcs)
    for name, script in funcs.items():
        assert "T.parallel" in script and "T.vectorized" in script, name


@tvm.transform.module_pass(opt_level=0, name="PoolsAsLegalized")
def _pools_as_legalized(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
    """Marks the pooling functions scheduled as they are, as a tuning database marks its records'."""
    return tvm.IRModule(
        {
            gv: f.with_attr("tirx.is_scheduled", True) if "pool" in gv.name_hint else f
            for gv, f in mod.functions_items()
        },
        attrs=mod.attrs,
    )


def test_tuned_passes_schedule_before_the_glue_rules():
    """``relax_pipeline(..., tuned=)``: what those passes schedule (MetaSchedule's database in
    ``bench/bench_metaschedule.py``) is compiled as they left it, the glue rules take the rest."""
    target = resolve_target("x86")
    kernels = kernel_schedules(target)
    network = small_network(np.random.default_rng(0))
    mod = from_onnx(network, Lowering(kernels, default_policy("x86")), {"x": [1, 3, 12, 12]})
    with target.tvm_target():
        mod = relax_pipeline(target, kernels.float_lanes, tuned=[_pools_as_legalized])(mod)
    funcs = {gv.name_hint: f.script() for gv, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)}
    pools = [name for name in funcs if "pool" in name]
    assert pools and all("T.parallel" not in funcs[name] for name in pools), list(funcs)
    convs = [script for name, script in funcs.items() if "conv2d" in name]
    assert convs and all("T.parallel" in script for script in convs)


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


def _conv3x3(model, size: int) -> tvm.tirx.PrimFunc:
    """The padded 3x3 conv's PrimFunc after the CPU pipeline."""
    funcs = [f for f in _scheduled(model, [2, 24, size, size]) if "pad_temp" in f.script()]
    assert len(funcs) == 1
    return funcs[0]


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
    and 48 channels (tiles of 32 and 16) all of them; 40 channels (tiles of 10: whole vectors
    or less than one) fill less than 14 columns, and 32 columns fill every lane."""
    rng = np.random.default_rng(size)
    model = _conv_block(channels, size, stride, rng)
    lanes = kernel_schedules(resolve_target("x86")).float_lanes
    func = _conv3x3(model, size)
    accumulator = re.search(r'sblock_alloc_buffer\(\((.*?)\), scope="local"\)', func.script())
    assert accumulator, func.script()
    assert accumulator.group(1).endswith(f"T.int64({channels})") == along_channels, accumulator.group(1)
    weight = next(tuple(int(d) for d in p.shape) for p in func.params if len(p.shape) == 5)
    if along_channels:
        assert weight[-1] == whole_columns(channels, TILE_VECTORS * lanes, lanes), weight
    vm, _ = compile_x86(model)
    x = rng.standard_normal((2, 24, size, size)).astype(np.float32)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[
        0
    ]
    np.testing.assert_allclose(run(vm, x), expected, rtol=1e-4, atol=1e-4)


def _model(nodes: list, shape: list[int], inits: dict[str, np.ndarray]) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "glue",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


def _matches_onnxruntime(model: onnx.ModelProto, shape: list[int], seed: int = 0) -> None:
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    vm, _ = compile_x86(model)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[
        0
    ]
    np.testing.assert_allclose(run(vm, x), expected, rtol=1e-4, atol=1e-4)


def _scheduled(model: onnx.ModelProto, shape: list[int]) -> list[tvm.tirx.PrimFunc]:
    """The model's PrimFuncs after the CPU Relax pipeline (scheduled, weights folded)."""
    target = resolve_target("x86")
    kernels = kernel_schedules(target)
    mod = from_onnx(model, Lowering(kernels, default_policy("x86")), {"x": shape})
    with target.tvm_target():
        mod = relax_pipeline(target, kernels.float_lanes)(mod)
    return [f for f in mod.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]


def _depthwise(channels: int, size: int, stride: int, batch: int, act: str, rng) -> tuple[onnx.ModelProto, list[int]]:
    """Depthwise 3x3 (pad 1) + bias, then Clip(0, 6) / Relu, plus a residual add at stride 1."""
    inits = {"w": rng.standard_normal((channels, 1, 3, 3)), "b": rng.standard_normal(channels), "lo": 0.0, "hi": 6.0}
    nodes = [
        helper.make_node(
            "Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1] * 4, strides=[stride] * 2, group=channels
        ),
        helper.make_node("Clip", ["c", "lo", "hi"], ["a"]) if act == "clip" else helper.make_node("Relu", ["c"], ["a"]),
    ]
    nodes.append(
        helper.make_node("Add", ["a", "x"], ["y"]) if stride == 1 else helper.make_node("Identity", ["a"], ["y"])
    )
    return _model(nodes, [batch, channels, size, size], inits), [batch, channels, size, size]


@pytest.mark.parametrize(
    "channels, size, stride, batch, act",
    [
        (5, 9, 1, 1, "clip"),
        (24, 16, 2, 2, "clip"),
        (7, 15, 2, 1, "relu"),
        (33, 7, 1, 2, "relu"),
        (18, 28, 2, 1, "clip"),
    ],
)
def test_depthwise_conv_matches_onnxruntime(channels, size, stride, batch, act):
    """Odd channel counts, odd and even maps (an odd padded width is not split by stride phase),
    stride 2, batch 2, fused bias, Clip / Relu and a residual add."""
    model, shape = _depthwise(channels, size, stride, batch, act, np.random.default_rng(channels))
    _matches_onnxruntime(model, shape)


def _max_pool(size: int) -> tuple[onnx.ModelProto, list[int]]:
    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4)
    return _model([node], [1, 8, size, size], {}), [1, 8, size, size]


@pytest.mark.parametrize(
    "kind, size, split, inside_tile",
    [
        ("depthwise", 32, True, True),
        ("depthwise", 15, False, False),  # padded width 17: no whole phases
        ("depthwise", 12, True, False),  # 6 output columns: less than half a vector
        ("pool", 32, True, False),
    ],
)
def test_stride_2_windows_read_their_input_by_stride_phase(kind, size, split, inside_tile):
    """A stride-2 window re-lays its padded input as (..., 2, width / 2), each phase contiguous;
    a depthwise conv with tiles of at least half a vector pads inside the parallel tile loop,
    anything else in a separate stage."""
    model, shape = (
        _depthwise(8, size, 2, 1, "clip", np.random.default_rng(0)) if kind == "depthwise" else _max_pool(size)
    )
    (func,) = _scheduled(model, shape)
    script = func.script()
    assert "T.parallel" in script and "T.vectorized" in script
    padded = size + 2
    assert (f"T.int64(2), T.int64({padded // 2})" in script) == split, script
    assert (script.index('T.sblock("pad_temp")') > script.index('_init")')) == inside_tile, script


@pytest.mark.parametrize("size, kernel, pads", [(16, 3, 1), (15, 3, 1), (14, 2, 0)])
def test_max_pool_stride_2_matches_onnxruntime(size, kernel, pads):
    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[kernel] * 2, strides=[2, 2], pads=[pads] * 4)
    _matches_onnxruntime(_model([node], [2, 5, size, size], {}), [2, 5, size, size])


def test_strided_stem_conv_matches_onnxruntime():
    """A 7x7 stride-2 conv on 3 channels (the resnet stem): vectors along output columns, its
    padded input split by stride phase in a separate stage."""
    rng = np.random.default_rng(7)
    inits = {"w": rng.standard_normal((20, 3, 7, 7)), "b": rng.standard_normal(20)}
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[7, 7], pads=[3] * 4, strides=[2, 2]),
        helper.make_node("Relu", ["c"], ["y"]),
    ]
    _matches_onnxruntime(_model(nodes, [2, 3, 64, 64], inits), [2, 3, 64, 64])


def _pointwise(cin: int, cout: int, size: int, batch: int, rng) -> tuple[onnx.ModelProto, list[int]]:
    """1x1 conv + bias, Clip(0, 6), and a residual add of a second input-shaped branch."""
    inits = {
        "w": rng.standard_normal((cout, cin, 1, 1)),
        "b": rng.standard_normal(cout),
        "s": rng.standard_normal((cout, cin, 1, 1)),
        "lo": 0.0,
        "hi": 6.0,
    }
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[1, 1]),
        helper.make_node("Clip", ["c", "lo", "hi"], ["a"]),
        helper.make_node("Conv", ["x", "s"], ["short"], kernel_shape=[1, 1], strides=[2, 2]),
        helper.make_node("MaxPool", ["a"], ["p"], kernel_shape=[1, 1], strides=[2, 2]),
        helper.make_node("Add", ["p", "short"], ["y"]),
    ]
    return _model(nodes, [batch, cin, size, size], inits), [batch, cin, size, size]


@pytest.mark.parametrize("cin, cout, size, batch", [(24, 40, 12, 2), (7, 33, 14, 1), (16, 8, 8, 3)])
def test_pointwise_conv_over_flat_pixels_matches_onnxruntime(cin, cout, size, batch):
    model, shape = _pointwise(cin, cout, size, batch, np.random.default_rng(cin))
    _matches_onnxruntime(model, shape)


def test_pointwise_conv_iterates_flat_pixels():
    """A 1x1 stride-1 conv on a 12x12 map runs over 144 flat pixels (whole vectors: 12 columns
    are not), its accumulators indexed by them."""
    model, shape = _pointwise(24, 40, 12, 1, np.random.default_rng(0))
    funcs = [f for f in _scheduled(model, shape) if "conv2d" in f.script() and "pool" not in f.script()]
    flat = [f for f in funcs if 'T.int64(1), T.int64(40), T.int64(144)), scope="local"' in f.script()]
    assert flat, [f.script() for f in funcs]


def test_batched_weight_panels_iterate_images_outermost():
    """With its vectors along the output channels (196 flat pixels fill 14 of 16 lanes, 64
    channels all of them), a batched 1x1 conv runs each image's tiles for every weight panel
    before the next image: the image index is the parallel loop's outermost part, the panel
    next, so a panel re-reads one image's input from cache rather than the batch's from memory."""
    model, shape = _pointwise(64, 64, 14, 4, np.random.default_rng(0))
    func = next(f for f in _scheduled(model, shape) if "T.int64(196)" in f.script())
    script = func.script()
    loop = re.search(r"for (\w+) in T.parallel", script).group(1)
    image = re.search(rf"v0 = T.axis.spatial\(T.int64\(4\), {loop} // T.int64\((\d+)\)\)", script)
    panel = re.search(rf"v1 = T.axis.spatial\(T.int64\(64\), {loop} % T.int64\((\d+)\) // ", script)
    assert image and panel and image.group(1) == panel.group(1), script
    _matches_onnxruntime(model, shape)


def test_tile_takes_every_row_of_a_prime_map():
    """On a 7x7 map the register tile holds all 7 pixels of a row instead of one: 7 rows of 2
    vectors in AVX-512's 32 registers, 7 rows of 1 vector within AVX2's budget of 8; NEON's 32
    registers of 4 lanes take 7 rows of 2 vectors too."""
    assert TiledReduction(16, 32)._tile_shape(512, [7, 7]) == (32, [1, 7], 1)
    assert TiledReduction(8, 16)._tile_shape(64, [7, 7]) == (8, [1, 7], 1)
    assert TiledReduction(4, 32)._tile_shape(64, [7, 7]) == (8, [1, 7], 1)


def test_every_new_rule_path_schedules_its_function():
    """Depthwise, pooling, pointwise and strided convs all come out of TiledReduction (a
    parallel tile loop), none left to the naive fallback."""
    rng = np.random.default_rng(1)
    models = [_depthwise(8, 16, 2, 1, "clip", rng), _depthwise(8, 16, 1, 1, "relu", rng), _pointwise(8, 16, 8, 1, rng)]
    target = resolve_target("x86")
    kernels = kernel_schedules(target)
    for model, shape in models:
        mod = from_onnx(model, Lowering(kernels, default_policy("x86")), {"x": shape})
        with target.tvm_target():
            mod = tvm.transform.Sequential(pipeline.legalize_passes(target.tvm_target()))(mod)
        rule = TiledReduction(kernels.float_lanes, vector_registers(target, kernels.float_lanes))
        funcs = [f for f in mod.functions.values() if isinstance(f, tvm.tirx.PrimFunc) and "conv2d" in f.script()]
        assert funcs
        for func in funcs:
            sch = rule.apply(func, target.tvm_target(), False)
            assert sch is not None and "T.parallel" in sch.mod.script()
