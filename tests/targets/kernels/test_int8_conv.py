"""The int8 conv kernel (uint8 activations, 2-bit weight codes) vs onnxruntime on the QDQ model it compiles."""

import numpy as np
import onnx
import pytest

from mptc.passes.quantize_activations import quantize_activations
from mptc.targets import chooser, layout
from mptc.targets.kernels.int8_conv import column_tiles

from ..harness import compile_x86, relative_error, run
from ..packed_models import binary_conv_model, residual_block
from .test_int8_dense import VNNI, WITHOUT_INT8, needs_vnni, onnxruntime_output

# (batch, C, size, O, k, stride, pad): channels off and on whole words (4) and groups (16), outputs
# off whole vectors (one vector: no pair) and in pairs, 3x3 / 1x1 / 5x5, stride 2, rows of 7, 14
# (7 columns a tile), 16 and 32 (8), batch 2
CASES = [
    (1, 5, 7, 13, 3, 1, 1),
    (2, 20, 8, 40, 3, 2, 1),
    (1, 64, 14, 32, 3, 1, 1),
    (1, 16, 16, 48, 1, 1, 0),
    (1, 32, 32, 32, 3, 1, 1),
    (1, 8, 9, 16, 5, 1, 2),
]


def quantized(model: onnx.ModelProto, rng: np.random.Generator) -> tuple[onnx.ModelProto, np.ndarray]:
    """``model`` with its real-input convs' inputs quantized on N(0.2, 1.3) samples, and an input
    past that range with exact zeros."""
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    calibration = (rng.standard_normal((8, *shape[1:])) * 1.3 + 0.2).astype(np.float32)
    x = (rng.standard_normal(shape) * 2).astype(np.float32)
    x.reshape(-1)[::5] = 0
    return quantize_activations(model, "x", calibration), x


@needs_vnni
@pytest.mark.parametrize("batch, channels, size, out, kernel, stride, pad", CASES)
def test_int8_conv_matches_onnxruntime(batch, channels, size, out, kernel, stride, pad):
    rng = np.random.default_rng(channels * 100 + size + out)
    model = binary_conv_model(rng, batch, channels, size, out, kernel, stride, pad, mode="real", sparsity=0.3)
    model, x = quantized(model, rng)
    vm, lowering = compile_x86(model, kernels=VNNI)
    [layer] = lowering.layers
    assert (layer.kernel, layer.input_mode) == (chooser.INT8_DOT, "int8")
    assert relative_error(run(vm, x), onnxruntime_output(model, x)) < 1e-5


@needs_vnni
def test_int8_convs_absorb_residual_adds_and_relu():
    rng = np.random.default_rng(3)
    model, x = quantized(residual_block(rng, "real", sparsity=0.4, size=8), rng)
    vm, lowering = compile_x86(model, kernels=VNNI)
    assert [(layer.kernel, layer.epilogue) for layer in lowering.layers] == [
        (chooser.INT8_DOT, "add+relu"),
        (chooser.INT8_DOT, "add"),
        (chooser.INT8_DOT, "relu"),
    ]
    assert relative_error(run(vm, x), onnxruntime_output(model, x)) < 1e-5


def test_without_int8_kernels_a_conv_reads_the_dequantized_input():
    rng = np.random.default_rng(5)
    model, x = quantized(residual_block(rng, "real", sparsity=0.4, size=8), rng)
    vm, lowering = compile_x86(model, kernels=WITHOUT_INT8["neon"])
    assert {layer.input_mode for layer in lowering.layers} == {"real"}
    assert relative_error(run(vm, x), onnxruntime_output(model, x)) < 1e-5


def test_int8_conv_codes_decode_to_the_weight():
    rng = np.random.default_rng(4)
    weight = rng.choice([-1, 0, 1], size=(21, 19, 3, 2))
    t = layout.int8_tables(weight, np.full(21, 2.0, np.float32), 0.25, 9)
    assert t.codes.shape == (2, 2, 3, 2, 64)
    o, c, ky, kx = np.meshgrid(np.arange(32), np.arange(32), np.arange(3), np.arange(2), indexing="ij")
    byte = t.codes[o // 16, c // 16, ky, kx, (o % 16) * 4 + c % 4]
    codes = (byte >> (2 * ((c % 16) // 4))) & 3
    np.testing.assert_array_equal(codes[:21, :19] - 1, weight)
    assert np.all(codes[21:] == 1) and np.all(codes[:, 19:] == 1)  # pads: w = 0
    np.testing.assert_array_equal(t.offset[:21], -9 * weight.reshape(21, -1).sum(1))
    assert not np.any(t.offset[21:]) and np.all(t.rescale == 0.5)


@pytest.mark.parametrize("width, columns", [(14, 5), (32, 5), (32, 8), (7, 5), (4, 5), (1, 8), (56, 6)])
def test_column_tiles_cover_a_row_in_tiles_of_at_most_the_columns_and_sizes_one_apart(width, columns):
    runs = column_tiles(width, columns)
    sizes = [span for count, span in runs for _ in range(count)]
    assert sum(sizes) == width and max(sizes) <= columns and max(sizes) - min(sizes) <= 1
    assert len(sizes) == -(-width // columns)  # as few tiles as the cap allows
