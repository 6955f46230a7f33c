"""QONNX and QCDQ weight quantizers fold into float32 weights that pack like mptc's own export."""

import numpy as np
import onnx
import onnx.parser
import onnx.reference
import onnx_ir as ir
import onnx_ir.passes.common as common_passes
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from mptc.cli import main
from mptc.conventions import unpack_bits
from mptc.errors import UnsupportedError
from mptc.export.qonnx import BipolarQuant, Quant
from mptc.passes.fold_sign_into_binary_input import FoldSignIntoBinaryInputPass
from mptc.passes.fold_weight_quantizers import FoldWeightQuantizersPass
from mptc.passes.pack_ternary_weights import PackTernaryWeightsPass
from mptc.passes.pipeline import optimize
from tests.passes.mptc_graphs import apply, assert_close, attribute, model_from_text, node, ops, run_ort

QONNX = '<ir_version: 10, opset_import: ["" : 19, "qonnx.custom_op.general" : 1]>'
OPSET = '<ir_version: 10, opset_import: ["" : 19]>'
Q = "qonnx.custom_op.general"


def levels(rng, shape, low=-1, high=1):
    """Integer levels in ``[low, high]``, each value present."""
    return rng.integers(low, high + 1, size=shape).astype(np.float32)


def fold(model):
    """The model after this pass alone, its ``modified`` and the pass (for ``skipped``)."""
    pass_ = FoldWeightQuantizersPass()
    folded, (modified,) = apply(model, pass_)
    return folded, modified, pass_


def fold_and_pack(model):
    folds, pack = FoldWeightQuantizersPass(), PackTernaryWeightsPass()
    packed, modified = apply(model, folds, pack, common_passes.RemoveUnusedNodesPass())
    packed, _ = apply(packed, common_passes.RemoveUnusedOpsetsPass())
    return packed, modified[:2], folds


def initializer(model, name):
    (found,) = [t for t in model.graph.initializer if t.name == name]
    return numpy_helper.to_array(found)


def qonnx_reference(model, feeds):
    """The QONNX model run with NumPy references of Quant and BipolarQuant (onnxruntime has neither)."""
    return onnx.reference.ReferenceEvaluator(model, new_ops=[Quant, BipolarQuant]).run(None, feeds)[0]


def assert_same_as_qdq(model, packed, feeds):
    """``packed`` computes what the QDQ ``model`` does in onnxruntime without graph optimizations
    (its QDQ fusions would quantize the activations of a DequantizeLinear -> MatMul on the fly)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    for want, got in zip(session.run(None, feeds), run_ort(packed, feeds)):
        assert_close(want, got)


def quant_conv(rng, scale, weight, *, attrs="signed = 1, narrow = 1", bits=2.0, zeropt=0.0, domain=Q, op="Quant"):
    text = f"""<ir_version: 10, opset_import: ["" : 19, "{domain}" : 1]>
    g (float[2,3,6,6] x) => (float[n,o,h,w] y) <float zeropt = {{{zeropt}}}, float bits = {{{bits}}}> {{
      wq = {domain}.{op} <{attrs}> (w, s, zeropt, bits)
      y = Conv <pads = [1, 1, 1, 1]> (x, wq)
    }}"""
    return model_from_text(text.replace(f"{op} <>", op), w=weight, s=scale)


def conv_feeds(rng):
    return {"x": rng.standard_normal((2, 3, 6, 6)).astype(np.float32)}


# --- QONNX Quant on a constant weight ---------------------------------------------------------


def test_quant_per_channel_conv_becomes_binary_conv_with_scale_as_alpha(rng):
    scale = rng.uniform(0.1, 2.0, (4, 1, 1, 1)).astype(np.float32)
    weight = (levels(rng, (4, 3, 3, 3)) * scale * rng.uniform(0.8, 1.2, (4, 3, 3, 3))).astype(np.float32)
    model = quant_conv(rng, scale, weight)
    packed, modified, folds = fold_and_pack(model)
    assert modified == [True, True] and folds.skipped == []
    assert ops(packed) == ["ai.mptc.BinaryConv"]
    np.testing.assert_array_equal(initializer(packed, "y.scale"), scale.reshape(-1))
    x = conv_feeds(rng)
    assert_close(qonnx_reference(model, x), run_ort(packed, x)[0])


def test_folded_weight_is_the_quantized_weight(rng):
    scale = np.float32(0.25)
    weight = (levels(rng, (4, 3, 3, 3)) * scale + rng.uniform(-0.1, 0.1, (4, 3, 3, 3))).astype(np.float32)
    folded, modified, _ = fold(quant_conv(rng, scale, weight))
    assert modified and ops(folded) == ["Conv"]
    assert node(folded, "Conv").input[1] == "wq"
    np.testing.assert_array_equal(initializer(folded, "wq"), np.clip(np.round(weight / scale), -1, 1) * scale)


@pytest.mark.parametrize("domain, op", [(Q, "IntQuant"), ("finn.custom_op.general", "Quant")])
def test_intquant_and_the_finn_domain_fold(rng, domain, op):
    weight = levels(rng, (4, 3, 3, 3)) * np.float32(0.5)
    folded, modified, _ = fold(quant_conv(rng, np.float32(0.5), weight, domain=domain, op=op))
    assert modified and ops(folded) == ["Conv"]
    np.testing.assert_array_equal(initializer(folded, "wq"), weight)


@pytest.mark.parametrize(
    "attrs, bits, low, high",
    [
        ("signed = 1, narrow = 0", 1.0, -1, 0),  # bit width 1 signed: {-1, 0}
        ("signed = 0, narrow = 0", 1.0, 0, 1),  # bit width 1 unsigned: {0, 1}
        ("signed = 1, narrow = 0", 2.0, -1, 1),  # {-2, -1, 0, 1} with no -2 in the weight
        ("", 8.0, -1, 1),  # the defaults (signed, not narrow) at 8 bits, values ternary
    ],
    ids=["bits1_signed", "bits1_unsigned", "bits2_wide", "bits8_ternary_values"],
)
def test_bit_widths_whose_values_are_ternary_fold(rng, attrs, bits, low, high):
    weight = levels(rng, (4, 3, 3, 3), low, high) * np.float32(0.5)
    model = quant_conv(rng, np.float32(0.5), weight, attrs=attrs, bits=bits)
    packed, modified, _ = fold_and_pack(model)
    assert modified == [True, True] and ops(packed) == ["ai.mptc.BinaryConv"]
    x = conv_feeds(rng)
    assert_close(qonnx_reference(model, x), run_ort(packed, x)[0])


# QONNX's rounding table: value -> result per mode.
ROUNDING_TABLE = {
    "ROUND": [6, 2, 2, 1, 1, -1, -1, -2, -2, -6],
    "CEIL": [6, 3, 2, 2, 1, -1, -1, -1, -2, -5],
    "FLOOR": [5, 2, 1, 1, 1, -1, -2, -2, -3, -6],
    "UP": [6, 3, 2, 2, 1, -1, -2, -2, -3, -6],
    "DOWN": [5, 2, 1, 1, 1, -1, -1, -1, -2, -5],
    "HALF_UP": [6, 3, 2, 1, 1, -1, -1, -2, -3, -6],
    "HALF_DOWN": [5, 2, 2, 1, 1, -1, -1, -2, -2, -5],
}
TABLE_VALUES = [5.5, 2.5, 1.6, 1.1, 1.0, -1.0, -1.1, -1.6, -2.5, -5.5]


@pytest.mark.parametrize("mode", list(ROUNDING_TABLE))
def test_rounding_modes_follow_the_qonnx_table(mode):
    """One weight element per output row, so every row is ternary whatever it rounds to."""
    text = f"""{QONNX}
    g (float[2,1] x) => (float[n,o] y) <float zeropt = {{0.0}}, float bits = {{8.0}}> {{
      wq = {Q}.Quant <rounding_mode = "{mode.lower()}"> (w, s, zeropt, bits)
      y = Gemm <transB = 1> (x, wq)
    }}"""
    scale = np.float32(0.5)
    weight = (np.array(TABLE_VALUES, np.float32) * scale).reshape(10, 1)
    folded, modified, _ = fold(model_from_text(text, w=weight, s=scale))
    assert modified
    np.testing.assert_array_equal(initializer(folded, "wq").reshape(-1), np.array(ROUNDING_TABLE[mode]) * scale)


def test_quant_per_channel_gemm_and_matmul_take_the_column_scale(rng):
    """A (K, O) weight (Gemm transB=0, MatMul) has its output channels in columns: scale (1, O)."""
    scale = rng.uniform(0.1, 2.0, (1, 5)).astype(np.float32)
    weight = levels(rng, (12, 5)) * scale
    text = f"""{QONNX}
    g (float[3,12] x) => (float[n,o] y, float[n,o] z) <float zeropt = {{0.0}}, float bits = {{2.0}}> {{
      wq = {Q}.Quant <signed = 1, narrow = 1> (w, s, zeropt, bits)
      y = Gemm (x, wq)
      z = MatMul (x, wq)
    }}"""
    model = model_from_text(text, w=weight, s=scale)
    packed, modified, _ = fold_and_pack(model)
    assert modified == [True, True] and ops(packed) == ["ai.mptc.BinaryDense", "ai.mptc.BinaryDense"]
    np.testing.assert_array_equal(initializer(packed, "y.scale"), scale.reshape(-1))
    x = {"x": rng.standard_normal((3, 12)).astype(np.float32)}
    expected = onnx.reference.ReferenceEvaluator(model, new_ops=[Quant]).run(None, x)
    for want, got in zip(expected, run_ort(packed, x)):
        assert_close(want, got)


def test_bipolar_quant_on_a_weight_becomes_binary_weight(rng):
    scale = rng.uniform(0.1, 2.0, (4, 1, 1, 1)).astype(np.float32)
    weight = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    weight[0, 0, 0, 0] = 0.0  # BipolarQuant maps 0 to +1
    text = f"""{QONNX}
    g (float[2,3,6,6] x) => (float[n,o,h,w] y) {{
      wq = {Q}.BipolarQuant (w, s)
      y = Conv (x, wq)
    }}"""
    model = model_from_text(text, w=weight, s=scale)
    packed, modified, _ = fold_and_pack(model)
    assert modified == [True, True] and ops(packed) == ["ai.mptc.BinaryConv"]
    rows = unpack_bits(initializer(packed, "y.mask_bits"), 27)
    assert rows.all()  # binary: nothing pruned
    x = conv_feeds(rng)
    assert_close(qonnx_reference(model, x), run_ort(packed, x)[0])


def test_bipolar_quant_on_an_activation_is_left_to_the_sign_fold(rng):
    weight = levels(rng, (4, 3, 3, 3)) * np.float32(0.5)
    text = f"""{QONNX}
    g (float[2,3,6,6] x) => (float[n,o,h,w] y) <float one = {{1.0}}> {{
      s = {Q}.BipolarQuant (x, one)
      y = Conv <pads = [1, 1, 1, 1]> (s, w)
    }}"""
    model = model_from_text(text, w=weight)
    folds, pack, sign = FoldWeightQuantizersPass(), PackTernaryWeightsPass(), FoldSignIntoBinaryInputPass()
    packed, modified = apply(model, folds, pack, sign)
    assert modified == [False, True, True] and folds.skipped == []
    assert attribute(node(packed, "BinaryConv"), "input_mode") == "binary"


def test_quantized_bias_folds_whatever_its_bit_width(rng):
    weight = levels(rng, (5, 12)) * np.float32(0.5)
    bias_levels = rng.integers(-1000, 1000, 5).astype(np.int32)
    text = f"""{OPSET}
    g (float[3,12] x) => (float[n,o] y) <float ws = {{0.5}}, float bs = {{0.001}}> {{
      wd = DequantizeLinear (wi, ws)
      bd = DequantizeLinear (bi, bs)
      y = Gemm <transB = 1> (x, wd, bd)
    }}"""
    model = model_from_text(text, wi=(weight / 0.5).astype(np.int8), bi=bias_levels)
    packed, modified, _ = fold_and_pack(model)
    assert modified == [True, True] and ops(packed) == ["ai.mptc.BinaryDense"]
    assert_same_as_qdq(model, packed, {"x": rng.standard_normal((3, 12)).astype(np.float32)})


# --- QCDQ: DequantizeLinear of integers ---------------------------------------------------------


def test_dequantized_int8_conv_weight_per_axis(rng):
    scale = rng.uniform(0.1, 2.0, 4).astype(np.float32)
    text = f"""{OPSET}
    g (float[2,3,6,6] x) => (float[n,o,h,w] y) <int8[4] zp = {{0, 0, 0, 0}}> {{
      wd = DequantizeLinear <axis = 0> (wi, s, zp)
      y = Conv <pads = [1, 1, 1, 1]> (x, wd)
    }}"""
    model = model_from_text(text, wi=levels(rng, (4, 3, 3, 3)).astype(np.int8), s=scale)
    packed, modified, _ = fold_and_pack(model)
    assert modified == [True, True] and ops(packed) == ["ai.mptc.BinaryConv"]
    np.testing.assert_array_equal(initializer(packed, "y.scale"), scale)
    assert_same_as_qdq(model, packed, conv_feeds(rng))


def test_quantize_clip_dequantize_of_a_float_weight(rng):
    """Brevitas's QCDQ form: QuantizeLinear -> Clip -> DequantizeLinear on a float constant."""
    scale = rng.uniform(0.1, 2.0, 4).astype(np.float32)
    weight = (levels(rng, (4, 3, 3, 3), -2, 2) * scale.reshape(4, 1, 1, 1)).astype(np.float32)
    weight += rng.uniform(-0.2, 0.2, weight.shape).astype(np.float32) * scale.reshape(4, 1, 1, 1)
    text = f"""{OPSET}
    g (float[2,3,6,6] x) => (float[n,o,h,w] y) <int8[4] zp = {{0, 0, 0, 0}}, int8 lo = {{-1}}, int8 hi = {{1}}> {{
      q = QuantizeLinear <axis = 0> (w, s, zp)
      c = Clip (q, lo, hi)
      wd = DequantizeLinear <axis = 0> (c, s, zp)
      y = Conv <pads = [1, 1, 1, 1]> (x, wd)
    }}"""
    model = model_from_text(text, w=weight, s=scale)
    packed, modified, _ = fold_and_pack(model)
    assert modified == [True, True] and ops(packed) == ["ai.mptc.BinaryConv"]
    assert_same_as_qdq(model, packed, conv_feeds(rng))


def test_quantize_dequantize_per_axis_of_a_kxo_weight(rng):
    scale = rng.uniform(0.1, 2.0, 5).astype(np.float32)
    weight = levels(rng, (12, 5)) * scale
    text = f"""{OPSET}
    g (float[3,12] x) => (float[n,o] y) <int8[5] zp = {{0, 0, 0, 0, 0}}> {{
      q = QuantizeLinear <axis = 1> (w, s, zp)
      wd = DequantizeLinear <axis = 1> (q, s, zp)
      y = MatMul (x, wd)
    }}"""
    model = model_from_text(text, w=weight, s=scale)
    packed, modified, _ = fold_and_pack(model)
    assert modified == [True, True] and ops(packed) == ["ai.mptc.BinaryDense"]
    assert_same_as_qdq(model, packed, {"x": rng.standard_normal((3, 12)).astype(np.float32)})


def test_activation_quantize_dequantize_is_no_candidate(rng):
    text = f"""{OPSET}
    g (float[2,3,6,6] x) => (float[n,o,h,w] y) <float s = {{0.1}}, int8 zp = {{0}}> {{
      q = QuantizeLinear (x, s, zp)
      d = DequantizeLinear (q, s, zp)
      y = Conv (d, w)
    }}"""
    model = model_from_text(text, w=levels(rng, (4, 3, 3, 3)) * np.float32(0.5))
    _, modified, folds = fold(model)
    assert not modified and folds.skipped == []


# --- left alone, with the reason ----------------------------------------------------------------


def only_reason(model):
    folded, modified, folds = fold(model)
    assert not modified
    (entry,) = folds.skipped
    return entry


def test_non_ternary_levels_are_left_alone(rng):
    weight = levels(rng, (4, 3, 3, 3), -8, 7) * np.float32(0.5)
    weight[0, 0, 0, :2] = [-4.0, 3.5]  # both ends of the 4-bit grid occur
    entry = only_reason(quant_conv(rng, np.float32(0.5), weight, attrs="signed = 1, narrow = 0", bits=4.0))
    assert entry == "wq (Quant): its integer levels run from -8 to 7, not ternary {-1, 0, 1} per output row"


def test_scale_across_input_channels_is_left_alone(rng):
    scale = rng.uniform(0.1, 2.0, (1, 3, 1, 1)).astype(np.float32)
    entry = only_reason(quant_conv(rng, scale, levels(rng, (4, 3, 3, 3)) * scale))
    assert (
        entry
        == "wq (Quant): its scale varies within an output channel of y (Conv), so the weight is not ternary per row"
    )


def test_dequantize_per_axis_on_the_input_axis_is_left_alone(rng):
    text = f"""{OPSET}
    g (float[2,3,6,6] x) => (float[n,o,h,w] y) {{
      wd = DequantizeLinear <axis = 1> (wi, s)
      y = Conv (x, wd)
    }}"""
    model = model_from_text(text, wi=levels(rng, (4, 3, 3, 3)).astype(np.int8), s=np.float32([0.5, 1.0, 2.0]))
    assert "its scale varies within an output channel of y (Conv)" in only_reason(model)


@pytest.mark.parametrize(
    "kwargs, reason",
    [
        (dict(zeropt=1.0), "wq (Quant): zero point 1.0 is not 0; only symmetric quantizers fold"),
        (dict(bits=2.5), "wq (Quant): bit width 2.5 is not an integer from 1 to 64"),
        (dict(bits=0.0), "wq (Quant): bit width 0.0 is not an integer from 1 to 64"),
        (
            dict(attrs='rounding_mode = "STOCHASTIC"'),
            "wq (Quant): rounding_mode 'STOCHASTIC' is not one of ROUND, CEIL, FLOOR, UP, DOWN, HALF_UP, HALF_DOWN",
        ),
    ],
    ids=["nonzero_zero_point", "fractional_bit_width", "zero_bit_width", "unknown_rounding_mode"],
)
def test_quant_settings_that_do_not_fold(rng, kwargs, reason):
    weight = levels(rng, (4, 3, 3, 3)) * np.float32(0.5)
    assert only_reason(quant_conv(rng, np.float32(0.5), weight, **kwargs)) == reason


def test_zero_scale_is_left_alone(rng):
    weight = levels(rng, (4, 3, 3, 3)) * np.float32(0.5)
    assert only_reason(quant_conv(rng, np.float32(0.0), weight)) == "wq (Quant): scale has zero or non-finite elements"


def test_computed_scale_is_left_alone(rng):
    text = f"""{QONNX}
    g (float[2,3,6,6] x, float s) => (float[n,o,h,w] y) <float zeropt = {{0.0}}, float bits = {{2.0}}> {{
      wq = {Q}.Quant (w, s, zeropt, bits)
      y = Conv (x, wq)
    }}"""
    model = model_from_text(text, w=levels(rng, (4, 3, 3, 3)))
    assert only_reason(model) == "wq (Quant): its scale is not a constant"


def test_non_float32_weight_is_left_alone(rng):
    weight = (levels(rng, (4, 3, 3, 3)) * 0.5).astype(np.float16)
    entry = only_reason(quant_conv(rng, np.float32(0.5), weight))
    assert entry == "wq (Quant): weight dtype is float16, only float32 is folded"


@pytest.mark.parametrize(
    "bits, reason",
    [
        (
            2.0,
            "an activation Quant with bit width 2 stays: the packed operators read real or sign inputs, "
            "not a rounded grid",
        ),
        (
            1.0,
            "an activation Quant with bit width 1 has the levels -1..0 times its scale, not a sign (+1/-1); "
            "QONNX writes a sign as BipolarQuant, which folds into the next layer",
        ),
    ],
    ids=["bits2", "bits1"],
)
def test_activation_quant_is_left_alone(rng, bits, reason):
    text = f"""{QONNX}
    g (float[2,3,6,6] x) => (float[n,o,h,w] y) <float s = {{1.0}}, float zeropt = {{0.0}}, float bits = {{{bits}}}> {{
      xq = {Q}.Quant (x, s, zeropt, bits)
      y = Conv (xq, w)
    }}"""
    model = model_from_text(text, w=levels(rng, (4, 3, 3, 3)) * np.float32(0.5))
    folds, pack = FoldWeightQuantizersPass(), PackTernaryWeightsPass()
    _, modified = apply(model, folds, pack)
    assert modified == [False, True]  # the layer packs; its quantized input stays as it is
    assert folds.skipped == [f"xq (Quant): {reason}"] and folds.unfolded_weights == []


@pytest.mark.parametrize("form", ["quant", "qdq"])
def test_initializer_that_is_a_graph_input_is_left_alone(rng, form):
    """How Brevitas exports by default: every initializer is also a graph input."""
    quantizer = (
        f"wq = {Q}.Quant (w, s, zeropt, bits)"
        if form == "quant"
        else "q = QuantizeLinear (w, s, zp)\n      wq = DequantizeLinear (q, s, zp)"
    )
    text = f"""{QONNX}
    g (float[2,3,6,6] x, float[4,3,3,3] w) => (float[n,o,h,w] y)
        <float s = {{0.5}}, float zeropt = {{0.0}}, float bits = {{2.0}}, int8 zp = {{0}}> {{
      {quantizer}
      y = Conv (x, wq)
    }}"""
    model = model_from_text(text, w=levels(rng, (4, 3, 3, 3)) * np.float32(0.5))
    folds = FoldWeightQuantizersPass()
    _, (modified,) = apply(model, folds)
    assert not modified
    (entry,) = folds.unfolded_weights
    assert entry.startswith(
        f"wq ({'Quant' if form == 'quant' else 'DequantizeLinear'}): it reads 'w', an initializer that"
    )
    assert entry.endswith("(Brevitas: keep_initializers_as_inputs=False)")


def test_quantized_constant_read_by_something_else_is_left_alone(rng):
    text = f"""{QONNX}
    g (float[4,3,3,3] x) => (float[4,3,3,3] y) <float s = {{0.5}}, float zeropt = {{0.0}}, float bits = {{2.0}}> {{
      wq = {Q}.Quant (w, s, zeropt, bits)
      y = Add (x, wq)
    }}"""
    model = model_from_text(text, w=levels(rng, (4, 3, 3, 3)) * np.float32(0.5))
    assert only_reason(model) == "wq (Quant): its output feeds y (Add) (input 1), not a Conv/Gemm/MatMul weight or bias"


def test_quantized_constant_that_is_a_graph_output_is_left_alone(rng):
    text = f"""{QONNX}
    g (float[2,3,6,6] x) => (float[n,o,h,w] y, float[4,3,3,3] wq) <float s = {{0.5}}, float zeropt = {{0.0}},
                                                                  float bits = {{2.0}}> {{
      wq = {Q}.Quant (w, s, zeropt, bits)
      y = Conv (x, wq)
    }}"""
    model = model_from_text(text, w=levels(rng, (4, 3, 3, 3)) * np.float32(0.5))
    assert only_reason(model) == "wq (Quant): its output is a graph output"


@pytest.mark.parametrize(
    "zero_point, attrs, reason",
    [
        ("<int8 zp = {1}>", "", "wd (DequantizeLinear): its zero point 1 is not 0; only symmetric quantizers fold"),
        (
            "<int8[4,1,1,1] zp = {0, 0, 0, 0}>",
            "<block_size = 1, axis = 1>",
            "wd (DequantizeLinear): wd (DequantizeLinear) uses blocked quantization (block_size=1) is not folded",
        ),
    ],
    ids=["nonzero_zero_point", "blocked"],
)
def test_dequantize_settings_that_do_not_fold(rng, zero_point, attrs, reason):
    scale = "1.0" if "block" not in attrs else "1.0, 1.0, 1.0, 1.0"
    shape = "" if "block" not in attrs else "[4,1,1,1]"
    text = f"""<ir_version: 10, opset_import: ["" : 21]>
    g (float[2,3,6,6] x) => (float[n,o,h,w] y) {zero_point[:-1]}, float{shape} s = {{{scale}}}> {{
      wd = DequantizeLinear {attrs} (wi, s, zp)
      y = Conv (x, wd)
    }}"""
    model = model_from_text(text, wi=levels(rng, (4, 3, 3, 3)).astype(np.int8))
    assert only_reason(model) == reason


def test_nonzero_quantize_zero_point_is_left_alone(rng):
    text = f"""{OPSET}
    g (float[2,3,6,6] x) => (float[n,o,h,w] y) <float s = {{0.5}}, uint8 zq = {{128}}, uint8 zd = {{0}}> {{
      q = QuantizeLinear (w, s, zq)
      wd = DequantizeLinear (q, s, zd)
      y = Conv (x, wd)
    }}"""
    model = model_from_text(text, w=levels(rng, (4, 3, 3, 3)) * np.float32(0.5))
    assert (
        only_reason(model)
        == "wd (DequantizeLinear): q (QuantizeLinear)'s zero point 128 is not 0; only symmetric quantizers fold"
    )


# --- through the whole pipeline -----------------------------------------------------------------


def test_qcdq_conv_is_packed_end_to_end(rng):
    scale = rng.uniform(0.1, 2.0, 4).astype(np.float32)
    text = """<ir_version: 10, opset_import: ["" : 13]>
    g (float[2,3,6,6] x) => (float[n,o] y) <float xs = {0.05}, int8 zp = {0}, float ys = {0.25}> {
      xq = QuantizeLinear (x, xs, zp)
      xd = DequantizeLinear (xq, xs, zp)
      wd = DequantizeLinear <axis = 0> (wi, s)
      c = Conv <pads = [1, 1, 1, 1]> (xd, wd)
      f = Flatten (c)
      fd = DequantizeLinear (fi, ys, zp)
      y = Gemm <transB = 1> (f, fd)
    }"""
    model = model_from_text(
        text, wi=levels(rng, (4, 3, 3, 3)).astype(np.int8), s=scale, fi=levels(rng, (5, 144)).astype(np.int8)
    )
    packed = optimize(model)
    assert [op for op in ops(packed) if op.startswith("ai.mptc")] == ["ai.mptc.BinaryConv", "ai.mptc.BinaryDense"]
    assert "QuantizeLinear" in ops(packed)  # the activation's QDQ stays
    assert_same_as_qdq(model, packed, conv_feeds(rng))


def test_qonnx_per_channel_gemm_is_packed_end_to_end(rng):
    scale = rng.uniform(0.1, 2.0, (5, 1)).astype(np.float32)
    text = f"""{QONNX}
    g (float[3,12] x) => (float[n,o] y) <float zeropt = {{0.0}}, float bits = {{2.0}}, float one = {{1.0}}> {{
      s1 = {Q}.BipolarQuant (x, one)
      wq = {Q}.Quant <signed = 1, narrow = 1, rounding_mode = "ROUND"> (w, s, zeropt, bits)
      y = Gemm <transB = 1> (s1, wq, b)
    }}"""
    model = model_from_text(text, w=levels(rng, (5, 12)) * scale, s=scale, b=rng.standard_normal(5).astype(np.float32))
    packed = optimize(model)
    assert ops(packed) == ["ai.mptc.BinaryDense"]
    assert {o.domain for o in packed.opset_import} == {"", "ai.mptc"}
    assert attribute(node(packed, "BinaryDense"), "input_mode") == "binary"
    np.testing.assert_array_equal(initializer(packed, "y.scale"), scale.reshape(-1))
    x = {"x": rng.standard_normal((3, 12)).astype(np.float32)}
    assert_close(qonnx_reference(model, x), run_ort(packed, x)[0])


def test_optimize_names_the_quantizer_it_left(rng):
    weight = levels(rng, (4, 3, 3, 3), -8, 7) * np.float32(0.5)
    weight[0, 0, 0, :2] = [-4.0, 3.5]
    model = quant_conv(rng, np.float32(0.5), weight, attrs="signed = 1, narrow = 0", bits=4.0)
    with pytest.raises(UnsupportedError) as raised:
        optimize(model)
    assert str(raised.value) == (
        "no ternary Conv/Gemm/MatMul layer to pack: wq (Quant): its integer levels run from -8 to 7, not ternary "
        "{-1, 0, 1} per output row; y (Conv): weight is computed by wq (Quant), not a constant initializer"
    )


def test_cli_refuses_a_non_ternary_qonnx_model_in_one_line(tmp_path, rng):
    weight = levels(rng, (4, 3, 3, 3), -8, 7) * np.float32(0.5)
    path = tmp_path / "q4.onnx"
    onnx.save(quant_conv(rng, np.float32(0.5), weight, attrs="signed = 1, narrow = 0", bits=4.0), path)
    result = CliRunner().invoke(main, ["optimize", "-v", str(path), "-o", str(tmp_path / "packed.onnx")])
    assert result.exit_code == 4, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("FoldWeightQuantizersPass left wq (Quant): its integer levels run from")
    assert "wq (Quant)" in lines[-1] and "not ternary" in lines[-1] and "Traceback" not in result.output


# --- mptc's own QONNX export round-trips --------------------------------------------------------


def packed_layers(model):
    """Per ``ai.mptc`` node, in graph order: op type, input mode, and its sign bits, mask bits, scale, bias."""
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return [
        (n.op_type, attribute(n, "input_mode"), *(inits[name] for name in n.input[1:]))
        for n in model.graph.node
        if n.domain == "ai.mptc"
    ]


@pytest.mark.slow
@pytest.mark.parametrize("family, method", [("mlp", "biprop"), ("conv4", "biprop-1-1")])
def test_own_qonnx_export_packs_like_the_standard_export(tmp_path, family, method):
    from mptc.export import export_model
    from tests.export.conftest import make_ticket

    model, config, dataset = make_ticket(family, method)
    export_model(model, config, dataset, tmp_path / "plain.onnx")
    export_model(model, config, dataset, tmp_path / "qonnx.onnx", fmt="qonnx")
    plain = optimize(onnx.load(tmp_path / "plain.onnx"))
    skipped: list[str] = []
    qonnx = optimize(onnx.load(tmp_path / "qonnx.onnx"), on_skip=skipped.append)
    assert not [entry for entry in skipped if entry.startswith("FoldWeightQuantizersPass")]
    assert ops(qonnx) == ops(plain)
    expected, actual = packed_layers(plain), packed_layers(qonnx)
    assert expected and len(actual) == len(expected)
    for (op, mode, sign, mask, scale, bias), (op2, mode2, sign2, mask2, scale2, bias2) in zip(expected, actual):
        assert (op2, mode2) == (op, mode)
        np.testing.assert_array_equal(sign2, sign)
        np.testing.assert_array_equal(mask2, mask)
        np.testing.assert_allclose(scale2, scale, rtol=1e-5)  # the export writes one scale for alphas allclose
        np.testing.assert_allclose(bias2, bias, rtol=1e-5, atol=1e-6)


# --- a real Brevitas export (pyproject's `outside` extra, which `make test` installs) -----------


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["qonnx", "qcdq"])
def test_brevitas_ternary_export_is_packed(tmp_path, fmt):
    pytest.importorskip("brevitas")
    pytest.importorskip("onnxoptimizer")  # Brevitas's ONNX export needs it
    import torch
    from brevitas import nn as qnn
    from brevitas.export import export_onnx_qcdq, export_qonnx
    from brevitas.quant import Int8WeightPerTensorFloat

    class Ternary(Int8WeightPerTensorFloat):
        bit_width = 2
        narrow_range = True

    class TernaryPerChannel(Ternary):
        scaling_per_output_channel = True

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        qnn.QuantConv2d(3, 4, 3, weight_quant=TernaryPerChannel, bias=False),
        torch.nn.Flatten(),
        qnn.QuantLinear(64, 5, weight_quant=Ternary, bias=True),
    ).eval()
    x = torch.randn(2, 3, 6, 6)
    path = tmp_path / f"{fmt}.onnx"
    export = export_qonnx if fmt == "qonnx" else export_onnx_qcdq
    export(net, x, export_path=str(path), keep_initializers_as_inputs=False)  # else weights are graph inputs
    packed = optimize(onnx.load(path))
    assert [op for op in ops(packed) if op.startswith("ai.mptc")] == ["ai.mptc.BinaryConv", "ai.mptc.BinaryDense"]
    with torch.no_grad():
        expected = net(x).numpy()
    assert_close(expected, run_ort(packed, {packed.graph.input[0].name: x.numpy()})[0])


CONSTANTS = "float s = {0.5}, float zeropt = {0.0}, float bits = {2.0}, int8 zp = {0}"


@pytest.mark.parametrize(
    "graph_inputs, lines, reason",
    [
        (
            "",
            f"wq = {Q}.Quant (w, s, zeropt)\n y = Conv (x, wq)",
            "wq (Quant): has 3 inputs; Quant takes 4 (X, scale, zeropt, bitwidth)",
        ),
        (
            ", float b",
            f"xq = {Q}.Quant (x, s, zeropt, b)\n y = Conv (xq, w)",
            "xq (Quant): an activation Quant (its input is computed) stays: the packed operators read real or sign "
            "inputs",
        ),
        (
            "",
            f"wq = {Q}.Quant (v, s, zeropt, bits)\n y = Conv (x, wq)",
            "wq (Quant): y (Conv) reads it as a weight of rank 3",
        ),
        (
            "",
            f"s4 = Constant <value = float[4] {{1.0, 1.0, 1.0, 1.0}}> ()\n wq = {Q}.Quant (w, s4, zeropt, bits)\n"
            " y = Conv (x, wq)",
            "wq (Quant): scale of shape (4,) does not broadcast to the weight's shape (4, 3, 3, 3)",
        ),
        (
            ", int8 hi",
            "q = QuantizeLinear (w, s, zp)\n c = Clip (q, zp, hi)\n wq = DequantizeLinear (c, s, zp)\n y = Conv (x, wq)",
            "wq (DequantizeLinear): c (Clip)'s bound is not a constant",
        ),
        (
            ", int8 z",
            "q = QuantizeLinear (w, s, z)\n wq = DequantizeLinear (q, s, zp)\n y = Conv (x, wq)",
            "wq (DequantizeLinear): q (QuantizeLinear)'s zero point is not a constant",
        ),
        (
            "",
            "wq = DequantizeLinear (wi, h)\n y = Conv (x, wq)",
            "wq (DequantizeLinear): its scale dtype is float16, only float32 is folded",
        ),
        (
            "",
            "z = Constant <value = float {0.0}> ()\n wq = DequantizeLinear (wi, z)\n y = Conv (x, wq)",
            "wq (DequantizeLinear): its scale has zero or non-finite elements",
        ),
        (
            "",
            "s3 = Constant <value = float[3] {1.0, 1.0, 1.0}> ()\n wq = DequantizeLinear <axis = 0> (wi, s3)\n"
            " y = Conv (x, wq)",
            "wq (DequantizeLinear): its scale of shape (3,) is neither per tensor nor per axis 0 of (4, 3, 3, 3)",
        ),
        (
            "",
            "q = QuantizeLinear <output_dtype = 17> (w, s)\n wq = DequantizeLinear (q, s)\n y = Conv (x, wq)",
            "wq (DequantizeLinear): q (QuantizeLinear)'s output is FLOAT8E4M3FN; only 4 to 32 bit integers are "
            "dequantized here",
        ),
    ],
    ids=[
        "quant_missing_input",
        "activation_quant_computed_bit_width",
        "conv1d_weight",
        "quant_scale_that_does_not_broadcast",
        "computed_clip_bound",
        "computed_zero_point",
        "float16_scale",
        "zero_scale",
        "scale_neither_per_tensor_nor_per_axis",
        "float8",
    ],
)
def test_other_quantizers_that_do_not_fold(rng, graph_inputs, lines, reason):
    """Parsed without the checker: some of these are ill-typed on purpose (a float16 scale)."""
    text = f"""<ir_version: 10, opset_import: ["" : 21, "{Q}" : 1]>
    g (float[2,3,6,6] x{graph_inputs}) => (float[n,o,h,w] y) <{CONSTANTS}> {{
      {lines}
    }}"""
    model = onnx.parser.parse_model(text)
    model.graph.initializer.extend(
        [
            numpy_helper.from_array(levels(rng, (4, 3, 3, 3)) * np.float32(0.5), "w"),
            numpy_helper.from_array(levels(rng, (4, 3, 3, 3)).astype(np.int8), "wi"),
            numpy_helper.from_array(levels(rng, (4, 3, 3)) * np.float32(0.5), "v"),
            numpy_helper.from_array(np.float16(0.5), "h"),
        ]
    )
    folds = FoldWeightQuantizersPass()
    assert not folds(ir.from_proto(model)).modified
    assert folds.skipped == [reason]
