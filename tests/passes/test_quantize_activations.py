"""``quantize_activations``: a calibrated uint8 QDQ pair before each real-input dense layer."""

import numpy as np
import onnx
import pytest

from mptc.errors import InputError, UnsupportedError
from mptc.passes.quantize_activations import Quantization, quantize_activations
from mptc.targets.int8_inputs import int8_inputs, without_int8_inputs
from tests.passes.mptc_graphs import ops, run_ort
from tests.targets.packed_models import GraphBuilder, binary_dense_model, ternary


def two_layers(rng: np.random.Generator, batch: int | None = None) -> onnx.ModelProto:
    """dense (real) -> Relu -> dense (real) -> dense (binary), on a (batch, 20) input."""
    g = GraphBuilder(rng)
    h = g.binary("BinaryDense", "x", ternary(rng, 24, 20, 0.5), "d1", "real")
    h = g.node("Relu", [h], "relu")
    h = g.binary("BinaryDense", h, ternary(rng, 16, 24, 0.5), "d2", "real")
    h = g.binary("BinaryDense", h, ternary(rng, 10, 16, 0.5), "d3", "binary")
    model = g.model((batch or 1, 20), h)
    if batch is None:
        model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    return model


@pytest.mark.parametrize("batch", [None, 3], ids=["symbolic-batch", "static-batch"])
def test_each_real_dense_input_gets_a_pair_calibrated_on_its_range(batch):
    rng = np.random.default_rng(0)
    model = two_layers(rng, batch)
    calibration = (rng.standard_normal((40, 20)) * 2 + 1).astype(np.float32)
    quantized = quantize_activations(model, "x", calibration)
    assert ops(quantized).count("QuantizeLinear") == ops(quantized).count("DequantizeLinear") == 2
    found = int8_inputs(quantized.graph)
    assert set(found) == {"d1", "d2"}  # the binary-input layer keeps its sign
    expected = Quantization.of_range(float(calibration.min()), float(calibration.max()))
    assert (found["d1"].scale, found["d1"].zero_point) == (expected.scale, expected.zero_point)
    hidden = run_ort(_with_output(model, "relu"), {"x": np.resize(calibration, (batch or 40, 20))})
    assert found["d2"].zero_point == 0  # after a ReLU: the range starts at 0
    if batch is None:
        assert found["d2"].scale == pytest.approx(float(hidden[1].max()) / 255, rel=1e-6)


def test_the_quantized_model_computes_the_dequantized_input():
    rng = np.random.default_rng(1)
    model = binary_dense_model(rng, 2, 30, 12, mode="real", sparsity=0.3)
    calibration = rng.uniform(-1, 3, (16, 30)).astype(np.float32)
    quantized = quantize_activations(model, "x", calibration)
    q = int8_inputs(quantized.graph)["dense"]
    x = rng.uniform(-2, 4, (2, 30)).astype(np.float32)  # past the range: saturates
    levels = np.clip(np.rint(x / np.float32(q.scale)) + q.zero_point, 0, 255)
    dequantized = ((levels - q.zero_point) * np.float32(q.scale)).astype(np.float32)
    np.testing.assert_allclose(run_ort(quantized, {"x": x})[0], run_ort(model, {"x": dequantized})[0], rtol=1e-5)


def test_without_int8_inputs_gives_back_the_fp32_network():
    rng = np.random.default_rng(2)
    model = two_layers(rng)
    quantized = quantize_activations(model, "x", rng.standard_normal((8, 20)).astype(np.float32))
    plain = without_int8_inputs(quantized)
    assert ops(plain) == ops(model)
    assert {t.name for t in plain.graph.initializer} == {t.name for t in model.graph.initializer}
    x = rng.standard_normal((1, 20)).astype(np.float32)
    np.testing.assert_array_equal(run_ort(plain, {"x": x})[0], run_ort(model, {"x": x})[0])


def test_zero_is_a_level_and_a_constant_range_is_kept():
    assert Quantization.of_range(0.5, 2.0).zero_point == 0  # widened to hold 0
    negative = Quantization.of_range(-3.0, -1.0)
    assert negative.zero_point == 255 and negative.scale == pytest.approx(3.0 / 255)
    assert Quantization.of_range(0.0, 0.0) == Quantization(1.0, 0)


def test_refusals():
    rng = np.random.default_rng(3)
    model = two_layers(rng)
    samples = rng.standard_normal((4, 20)).astype(np.float32)
    with pytest.raises(InputError, match="no sample"):
        quantize_activations(model, "x", samples[:0])
    nan = samples.copy()
    nan[1, 2] = np.nan
    with pytest.raises(InputError, match="calibration data"):
        quantize_activations(model, "x", nan)
    binary = binary_dense_model(rng, 1, 20, 8, mode="binary")
    with pytest.raises(UnsupportedError, match="no real-input BinaryConv or BinaryDense"):
        quantize_activations(binary, "x", samples)
    twice = quantize_activations(model, "x", samples)
    with pytest.raises(UnsupportedError, match="already reads a DequantizeLinear"):
        quantize_activations(twice, "x", samples)


def test_pairs_the_int8_kernel_cannot_fold_are_left_to_tvm():
    """A DequantizeLinear read twice, or an int8 zero point: not folded (TVM converts the pair)."""
    rng = np.random.default_rng(4)
    quantized = quantize_activations(two_layers(rng), "x", rng.standard_normal((8, 20)).astype(np.float32))
    shared = onnx.ModelProto()
    shared.CopyFrom(quantized)
    dq = next(n for n in shared.graph.node if n.name == "d1.dequantize")
    shared.graph.output.append(onnx.ValueInfoProto(name=dq.output[0]))
    assert set(int8_inputs(shared.graph)) == {"d2"}
    signed = onnx.ModelProto()
    signed.CopyFrom(quantized)
    zero = next(t for t in signed.graph.initializer if t.name == "d2.input_zero_point")
    zero.CopyFrom(onnx.numpy_helper.from_array(np.array(0, np.int8), zero.name))
    assert set(int8_inputs(signed.graph)) == {"d1"}


def _with_output(model: onnx.ModelProto, tensor: str) -> onnx.ModelProto:
    extended = onnx.ModelProto()
    extended.CopyFrom(model)
    extended.graph.output.append(onnx.ValueInfoProto(name=tensor))
    return extended
