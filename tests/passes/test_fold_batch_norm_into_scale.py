import numpy as np
import onnx_ir as ir
import pytest

from mptc.errors import InputError
from mptc.passes.fold_batch_norm_into_scale import FoldBatchNormIntoScalePass, per_channel
from mptc.passes.pack_ternary_weights import PackTernaryWeightsPass
from tests.passes.mptc_graphs import apply, assert_equivalent, model_from_text, node, ops, ternary

OPSET = '<ir_version: 10, opset_import: ["" : 19]>'
OUT = 5


def bn_params(rng, prefix=""):
    return {
        f"{prefix}gamma": rng.uniform(0.5, 1.5, OUT).astype(np.float32),
        f"{prefix}beta": rng.standard_normal(OUT).astype(np.float32),
        f"{prefix}mean": rng.standard_normal(OUT).astype(np.float32),
        f"{prefix}var": rng.uniform(0.5, 1.5, OUT).astype(np.float32),
    }


def conv_then(rng, lines: str, outputs: str = "float[n,o,h,w] y", inputs: str = "", **extra):
    text = f"""{OPSET}
    g (float[2,3,6,6] x{inputs}) => ({outputs}) {{
      c = Conv <pads = [1, 1, 1, 1]> (x, w, b)
      {lines}
    }}"""
    inits = {"w": ternary(rng, (OUT, 3, 3, 3)), "b": rng.standard_normal(OUT).astype(np.float32)}
    return model_from_text(text, **inits, **extra)


def fold(model):
    return apply(model, PackTernaryWeightsPass(), FoldBatchNormIntoScalePass())


def feeds(rng):
    return {"x": rng.standard_normal((2, 3, 6, 6)).astype(np.float32)}


def test_batch_norm_after_binary_conv(rng):
    model = conv_then(rng, "y = BatchNormalization <epsilon = 0.001> (c, gamma, beta, mean, var)", **bn_params(rng))
    folded, modified = fold(model)
    assert modified == [True, True] and ops(folded) == ["ai.mptc.BinaryConv"]
    assert node(folded, "BinaryConv").output == ["y"]
    assert_equivalent(model, folded, feeds(rng))


def test_batch_norm_after_binary_dense(rng):
    text = f"""{OPSET}
    g (float[3,10] x) => (float[n,o] y) {{
      d = Gemm <transB = 1> (x, w)
      y = BatchNormalization (d, gamma, beta, mean, var)
    }}"""
    model = model_from_text(text, w=ternary(rng, (OUT, 10)), **bn_params(rng))
    folded, modified = fold(model)
    assert modified == [True, True] and ops(folded) == ["ai.mptc.BinaryDense"]
    assert_equivalent(model, folded, {"x": rng.standard_normal((3, 10)).astype(np.float32)})


@pytest.mark.parametrize(
    "lines, shape",
    [
        ("y = Mul (c, k)", (1, OUT, 1, 1)),
        ("y = Mul (k, c)", (OUT, 1, 1)),
        ("y = Add (c, k)", (OUT, 1, 1)),
        ("y = Add (k, c)", (1,)),
    ],
    ids=["mul", "mul_constant_first", "add", "add_scalar_first"],
)
def test_per_channel_mul_and_add(rng, lines, shape):
    model = conv_then(rng, lines, k=rng.uniform(0.5, 2.0, shape).astype(np.float32))
    folded, modified = fold(model)
    assert modified == [True, True] and ops(folded) == ["ai.mptc.BinaryConv"]
    assert_equivalent(model, folded, feeds(rng))


def test_chain_batch_norm_mul_add_folds_completely(rng):
    lines = """n = BatchNormalization (c, gamma, beta, mean, var)
      m = Mul (n, k)
      y = Add (m, k)"""
    model = conv_then(rng, lines, k=rng.uniform(0.5, 2.0, (OUT, 1, 1)).astype(np.float32), **bn_params(rng))
    folded, modified = fold(model)
    assert modified == [True, True] and ops(folded) == ["ai.mptc.BinaryConv"]
    assert_equivalent(model, folded, feeds(rng))


@pytest.mark.parametrize(
    "lines, outputs, inputs, params, reason",
    [
        (
            "y, running_mean, running_var = BatchNormalization <training_mode = 1> (c, gamma, beta, mean, var)",
            "float[n,o,h,w] y",
            "",
            "bn",
            "y (BatchNormalization) is in training mode; only an inference BatchNormalization folds",
        ),
        ("y = Add (c, c)", "float[n,o,h,w] y", "", "", "its output has 2 uses, so y (Add) cannot fold into it"),
        (
            "y = Mul (c, k)",
            "float[n,o,h,w] y",
            "",
            "spatial",
            "y (Mul)'s other operand is not a constant per output channel",
        ),
        (
            "y = Mul (c, z)",
            "float[n,o,h,w] y",
            f", float[2,{OUT},6,6] z",
            "",
            "y (Mul)'s other operand is not a constant per output channel",
        ),
        ("y = Relu (c)", "float[n,o,h,w] y", "", "", None),
        (
            "y = BatchNormalization (c, gamma, beta, mean, var)",
            "float[n,o,h,w] y, float[n,o,h,w] c",
            "",
            "bn",
            "its output is a graph output, so y (BatchNormalization) cannot fold into it",
        ),
        (
            "y = BatchNormalization (c, gamma, beta, fed, var)",
            "float[n,o,h,w] y",
            f", float[{OUT}] fed",
            "bn",
            "y (BatchNormalization)'s input_mean is not a constant per output channel",
        ),
        (
            "y = BatchNormalization (c, gamma, beta, mean, var)\n z = Relu (c)",
            "float[n,o,h,w] y, float[n,o,h,w] z",
            "",
            "bn",
            "its output has 2 uses, so y (BatchNormalization) cannot fold into it",
        ),
        (
            "y = BatchNormalization (c, gamma, beta, mean, var)",
            "float[n,o,h,w] y",
            "",
            "negative_var",
            "y (BatchNormalization)'s input_var + epsilon is not positive in 2 channel(s): it has no square root",
        ),
    ],
    ids=[
        "training_bn",
        "two_tensors",
        "spatial_constant",
        "computed_operand",
        "other_op",
        "output_also_graph_output",
        "computed_bn_mean",
        "two_users",
        "negative_variance",
    ],
)
def test_left_alone(rng, lines, outputs, inputs, params, reason):
    """Each rejected BatchNormalization/Mul/Add is named with why; other users are no candidates."""
    negative_var = {**bn_params(rng), "var": np.array([1, -1, 1, np.nan, 1], np.float32)}
    extra = {
        "bn": bn_params(rng),
        "negative_var": negative_var,
        "spatial": {"k": np.ones((1, 1, 6, 6), np.float32)},
        "": {},
    }[params]
    folds = FoldBatchNormIntoScalePass()
    _, modified = apply(conv_then(rng, lines, outputs, inputs, **extra), PackTernaryWeightsPass(), folds)
    assert modified == [True, False]
    assert folds.skipped == ([] if reason is None else [f"c (BinaryConv): {reason}"])


def test_batch_norm_folds_and_the_residual_add_after_it_says_why_it_stays(rng):
    lines = """n = BatchNormalization (c, gamma, beta, mean, var)
      y = Add (n, r)"""
    model = conv_then(rng, lines, inputs=f", float[2,{OUT},6,6] r", **bn_params(rng))
    folds = FoldBatchNormIntoScalePass()
    folded, modified = apply(model, PackTernaryWeightsPass(), folds)
    assert modified == [True, True] and ops(folded) == ["ai.mptc.BinaryConv", "Add"]
    assert folds.skipped == ["c (BinaryConv): y (Add)'s other operand is not a constant per output channel"]


def test_malformed_packed_operator_fails_the_precondition(rng):
    packed, _ = fold(conv_then(rng, "y = Relu (c)"))
    node(packed, "BinaryConv").input.pop()
    with pytest.raises(ir.passes.PreconditionError) as raised:
        FoldBatchNormIntoScalePass()(ir.from_proto(packed))
    assert isinstance(raised.value.__cause__, InputError)
    assert str(raised.value.__cause__).startswith("c (BinaryConv) has 4 inputs and 1 outputs")


def test_per_channel_accepts_only_axis_one():
    assert per_channel(np.ones((1, 4, 1, 1), np.float32), 4, 4).shape == (4,)
    assert per_channel(np.float32(2.0).reshape(()), 4, 4).tolist() == [2.0] * 4
    assert per_channel(np.ones((4, 1), np.float32), 4, 4) is None  # would be axis 2
    assert per_channel(np.ones((1, 3, 1, 1), np.float32), 4, 4) is None
    assert per_channel(np.ones((4,), np.int64), 2, 4) is None
