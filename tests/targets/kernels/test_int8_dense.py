"""The int8 dense kernel (uint8 activations, 2-bit weight codes) vs onnxruntime on the QDQ model it compiles."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from mptc.passes.quantize_activations import quantize_activations
from mptc.targets import chooser, layout
from mptc.targets.kernels import int8_dense
from mptc.targets.schedules.arm import NEON_TILES
from mptc.targets.schedules.cpu import CpuKernelSchedules
from mptc.targets.schedules.x86 import AVX2_TILES, AVX512_TILES, kernel_schedules
from mptc.targets.target import resolve_target

from ..harness import compile_x86, relative_error, run
from ..packed_models import GraphBuilder, ternary

HAS_VNNI = resolve_target("x86").has_avx512_vnni
needs_vnni = pytest.mark.skipif(not HAS_VNNI, reason="this host has no AVX-512 VNNI")
VNNI = kernel_schedules(avx512=True, vnni=True)
WITHOUT_INT8 = {
    "avx512": CpuKernelSchedules(AVX512_TILES),
    "avx2": CpuKernelSchedules(AVX2_TILES),
    "neon": CpuKernelSchedules(NEON_TILES),
}

# (batch, K, out): inputs and outputs off whole steps (16) and vectors, one output vector, tiles of
# 1-4 vectors, a layer past the parallel threshold (16,384 code vectors), batches of 1-19
CASES = [(1, 100, 13), (1, 64, 32), (3, 37, 45), (2, 512, 512), (19, 70, 33), (4, 1024, 1024)]


def int8_model(rng: np.random.Generator, batch: int, k: int, out: int, clamp: str = "") -> onnx.ModelProto:
    """A real-input ``BinaryDense`` (+ ``Relu`` / ``Clip(0, 6)``), its input quantized on N(0.3, 1.5) samples."""
    g = GraphBuilder(rng)
    y = g.binary("BinaryDense", "x", ternary(rng, out, k, 0.4), "dense", "real")
    if clamp == "relu":
        y = g.node("Relu", [y], "relu")
    elif clamp == "relu6":
        y = g.node("Clip", [y, g.const("low", np.float32(0)), g.const("high", np.float32(6))], "relu6")
    calibration = (rng.standard_normal((64, k)) * 1.5 + 0.3).astype(np.float32)
    return quantize_activations(g.model((batch, k), y), "x", calibration)


def onnxruntime_output(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def inputs(rng: np.random.Generator, model: onnx.ModelProto, batch: int, k: int) -> np.ndarray:
    """N(0.3, 2) (past the calibrated range: saturation), exact zeros, and values on half levels
    (``(m + 0.5) * scale``: round half to even)."""
    scale = next(
        float(onnx.numpy_helper.to_array(t)) for t in model.graph.initializer if t.name.endswith("input_scale")
    )
    x = (rng.standard_normal((batch, k)) * 2 + 0.3).astype(np.float32)
    x.reshape(-1)[::7] = 0
    x.reshape(-1)[3::11] = ((rng.integers(-40, 40, x.size)[3::11] + 0.5) * scale).astype(np.float32)
    return x


@needs_vnni
@pytest.mark.parametrize("batch, k, out", CASES)
def test_int8_dense_matches_onnxruntime(batch, k, out):
    rng = np.random.default_rng(batch * 1000 + k + out)
    model = int8_model(rng, batch, k, out)
    vm, lowering = compile_x86(model, kernels=VNNI)
    [layer] = lowering.layers
    assert (layer.kernel, layer.input_mode) == (chooser.INT8_DOT, "int8")
    x = inputs(rng, model, batch, k)
    assert relative_error(run(vm, x), onnxruntime_output(model, x)) < 1e-5


@pytest.mark.parametrize("family", list(WITHOUT_INT8))
def test_without_int8_kernels_the_pair_runs_before_the_real_input_kernel(family):
    """No VNNI (AVX2, NEON, AVX-512 without it): TVM converts the QDQ pair, the layer takes a
    real-input kernel on the dequantized input, and the numerics are the quantized model's."""
    rng = np.random.default_rng(6)
    model = int8_model(rng, 2, 70, 33)
    vm, lowering = compile_x86(model, kernels=WITHOUT_INT8[family])
    [layer] = lowering.layers
    assert layer.input_mode == "real" and layer.kernel != chooser.INT8_DOT
    x = inputs(rng, model, 2, 70)
    assert relative_error(run(vm, x), onnxruntime_output(model, x)) < 1e-5


@needs_vnni
@pytest.mark.parametrize("clamp", ["relu", "relu6"])
def test_int8_dense_absorbs_relu(clamp):
    rng = np.random.default_rng(7)
    model = int8_model(rng, 2, 90, 40, clamp)
    vm, lowering = compile_x86(model, kernels=VNNI)
    assert lowering.layers[0].epilogue == ("relu" if clamp == "relu" else "clip(0, 6)")
    x = inputs(rng, model, 2, 90) * 3
    y = run(vm, x)
    assert y.min() == 0 and (clamp == "relu" or y.max() == 6)
    assert relative_error(y, onnxruntime_output(model, x)) < 1e-5


@needs_vnni
def test_int8_dense_keeps_two_bits_per_weight():
    model = int8_model(np.random.default_rng(8), 1, 300, 70)
    _, lowering = compile_x86(model, kernels=VNNI)
    [layer] = lowering.layers
    blocks, steps = layout.ceil_div(70, 16), layout.ceil_div(300, 16)
    assert layer.lowered_bytes == blocks * steps * 64 + 4 * 16 * blocks + 2 * 4 * 70
    assert layer.lowered_bytes < 4 * 300 * 70 / 8


def test_vnni_kernel_runs_serially_below_the_parallel_threshold():
    small = int8_dense.dot_dense_func(1, 512, 512, 0.1, 3).script()
    large = int8_dense.dot_dense_func(4, 1024, 1024, 0.1, 3).script()
    assert "T.parallel" not in small and "T.parallel" in large


def test_int8_codes_decode_to_the_weight():
    rng = np.random.default_rng(9)
    weight = rng.choice([-1, 0, 1], size=(21, 37))
    t = layout.int8_tables(weight, np.ones(21, np.float32), 0.5, 7)
    assert t.codes.shape == (2, 3, 64)
    o, k = np.meshgrid(np.arange(32), np.arange(48), indexing="ij")
    byte = t.codes[o // 16, k // 16, (o % 16) * 4 + k % 4]
    codes = (byte >> (2 * ((k % 16) // 4))) & 3
    np.testing.assert_array_equal(codes[:21, :37] - 1, weight)
    assert np.all(codes[21:] == 1) and np.all(codes[:, 37:] == 1)  # pads: w = 0
    np.testing.assert_array_equal(t.offset[:21], -7 * weight.sum(1))
    np.testing.assert_array_equal(t.rescale, np.full(21, 0.5, np.float32))
