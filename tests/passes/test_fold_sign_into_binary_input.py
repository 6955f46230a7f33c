import numpy as np
import onnx_ir as ir
import pytest

from mptc.errors import InputError
from mptc.passes.fold_sign_into_binary_input import FoldSignIntoBinaryInputPass
from mptc.passes.pack_ternary_weights import PackTernaryWeightsPass
from tests.passes.mptc_graphs import apply, assert_equivalent, attribute, model_from_text, node, ops, ternary

OPSET = '<ir_version: 10, opset_import: ["" : 19]>'
SCALARS = "<float zero = {0.0}, float one = {1.0}, float minus_one = {-1.0}>"


def sign_conv_model(rng, sign_lines: str, scalars: str = SCALARS):
    text = f"""{OPSET}
    g (float[2,3,6,6] x) => (float[n,o,h,w] y) {scalars} {{
      {sign_lines}
      y = Conv <pads = [1, 1, 1, 1]> (s, w)
    }}"""
    return model_from_text(text, w=ternary(rng, (4, 3, 3, 3)))


def feeds(rng):
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    x[:, :, ::2, ::3] = 0.0  # sign(0) = +1 must survive the fold
    return {"x": x}


def fold(model):
    return apply(model, PackTernaryWeightsPass(), FoldSignIntoBinaryInputPass())


@pytest.mark.parametrize(
    "sign_lines",
    [
        "c = GreaterOrEqual (x, zero)\n s = Where (c, one, minus_one)",
        "c = LessOrEqual (zero, x)\n s = Where (c, one, minus_one)",
        "c = Less (x, zero)\n s = Where (c, minus_one, one)",
        "c = Greater (zero, x)\n s = Where (c, minus_one, one)",
    ],
    ids=["ge", "le_mirrored", "lt_negated", "gt_mirrored_negated"],
)
def test_sign_becomes_binary_input(rng, sign_lines):
    model = sign_conv_model(rng, sign_lines)
    folded, modified = fold(model)
    assert modified == [True, True]
    binary = node(folded, "BinaryConv")
    assert attribute(binary, "input_mode") == "binary" and binary.input[0] == "x"
    assert_equivalent(model, folded, feeds(rng))


def test_sign_with_constant_nodes_and_shaped_scalars(rng):
    lines = """zero = Constant <value = float[1] {0.0}> ()
      one = Constant <value_float = 1.0> ()
      minus_one = Constant <value = float[1,1] {-1.0}> ()
      c = GreaterOrEqual (x, zero)
      s = Where (c, one, minus_one)"""
    model = sign_conv_model(rng, lines, scalars="")
    folded, modified = fold(model)
    assert modified == [True, True]
    assert_equivalent(model, folded, feeds(rng))


def test_sign_into_binary_dense(rng):
    text = f"""{OPSET}
    g (float[3,10] x) => (float[n,o] y) {SCALARS} {{
      c = GreaterOrEqual (x, zero)
      s = Where (c, one, minus_one)
      y = Gemm <transB = 1> (s, w)
    }}"""
    model = model_from_text(text, w=ternary(rng, (5, 10)))
    folded, modified = fold(model)
    assert modified == [True, True] and attribute(node(folded, "BinaryDense"), "input_mode") == "binary"
    x = rng.standard_normal((3, 10)).astype(np.float32)
    x[0, :4] = 0.0
    assert_equivalent(model, folded, {"x": x})


@pytest.mark.parametrize(
    "sign_lines, scalars, reason",
    [
        ("s = Sign (x)", "", "s (Sign) maps 0 to 0; only a sign with sign(0) = +1 folds, Where(x >= 0, 1, -1)"),
        (
            "c = Greater (x, zero)\n s = Where (c, one, minus_one)",
            SCALARS,
            "c (Greater) is not one of x >= 0, 0 <= x, x < 0, 0 > x, the forms with sign(0) = +1",
        ),
        (
            "c = GreaterOrEqual (x, half)\n s = Where (c, one, minus_one)",
            "<float half = {0.5}, float one = {1.0}, float minus_one = {-1.0}>",
            "c (GreaterOrEqual) does not compare with a one-element constant 0",
        ),
        (
            "c = GreaterOrEqual (x, zero)\n s = Where (c, ones, minus_one)",
            "<float zero = {0.0}, float[3,1,1] ones = {1.0, 1.0, 1.0}, float minus_one = {-1.0}>",
            "s (Where) does not pick the one-element constants +1 for x >= 0 and -1 below",
        ),
        (
            "c = GreaterOrEqual (x, zero)\n s = Where (c, one, zero)",
            SCALARS,
            "s (Where) does not pick the one-element constants +1 for x >= 0 and -1 below",
        ),
        (
            "c = Equal (x, zero)\n s = Where (c, one, minus_one)",
            SCALARS,
            "s (Where) does not select on a comparison with 0 (>=, <=, < or >)",
        ),
    ],
    ids=[
        "onnx_sign_maps_0_to_0",
        "strict_greater_maps_0_to_minus_1",
        "threshold_not_zero",
        "broadcasting_branch",
        "not_minus_one",
        "equal_is_no_order",
    ],
)
def test_other_producers_are_left_alone(rng, sign_lines, scalars, reason):
    folds = FoldSignIntoBinaryInputPass()
    _, modified = apply(sign_conv_model(rng, sign_lines, scalars), PackTernaryWeightsPass(), folds)
    assert modified == [True, False]
    assert folds.skipped == [f"y (BinaryConv): {reason}"]


def test_malformed_packed_operator_fails_the_precondition(rng):
    packed, _ = fold(sign_conv_model(rng, "s = Sign (x)", ""))
    node(packed, "BinaryConv").input.pop()
    with pytest.raises(ir.passes.PreconditionError) as raised:
        FoldSignIntoBinaryInputPass()(ir.from_proto(packed))
    assert isinstance(raised.value.__cause__, InputError)
    assert str(raised.value.__cause__).startswith("y (BinaryConv) has 4 inputs and 1 outputs")


def test_binary_mode_is_not_folded_twice(rng):
    model = sign_conv_model(rng, "c = GreaterOrEqual (x, zero)\n s = Where (c, one, minus_one)")
    folded, _ = fold(model)
    _, modified = apply(folded, FoldSignIntoBinaryInputPass())
    assert modified == [False]


def test_sign_with_other_users_stays(rng):
    text = f"""{OPSET}
    g (float[2,3,6,6] x) => (float[n,o,h,w] y, float[n,c,h,w] s) {SCALARS} {{
      c = GreaterOrEqual (x, zero)
      s = Where (c, one, minus_one)
      y = Conv (s, w)
    }}"""
    model = model_from_text(text, w=ternary(rng, (4, 3, 3, 3)))
    folded, modified = fold(model)
    assert modified == [True, True] and "Where" in ops(folded)
    assert_equivalent(model, folded, feeds(rng))


@pytest.mark.parametrize(
    "reshape_line",
    [
        "f = Flatten (s)",
        "f = Reshape (s, shape)",
        "p = MaxPool <kernel_shape = [1, 1]> (s)\n f = Flatten (p)",
    ],
    ids=["flatten", "reshape", "max_pool_then_flatten"],
)
def test_sign_through_flatten_or_reshape(rng, reshape_line):
    text = f"""{OPSET}
    g (float[2,3,2,2] x) => (float[n,o] y) <float zero = {{0.0}}, float one = {{1.0}}, float minus_one = {{-1.0}}, int64[2] shape = {{2, 12}}> {{
      c = GreaterOrEqual (x, zero)
      s = Where (c, one, minus_one)
      {reshape_line}
      y = Gemm <transB = 1> (f, w)
    }}"""
    model = model_from_text(text, w=ternary(rng, (5, 12)))
    folded, modified = fold(model)
    assert modified == [True, True]
    assert attribute(node(folded, "BinaryDense"), "input_mode") == "binary"
    x = rng.standard_normal((2, 3, 2, 2)).astype(np.float32)
    x[0, 0] = 0.0
    assert_equivalent(model, folded, {"x": x})


def test_reshape_of_a_non_sign_is_left_alone(rng):
    text = f"""{OPSET}
    g (float[2,3,2,2] x) => (float[n,o] y) {{
      f = Flatten (x)
      y = Gemm <transB = 1> (f, w)
    }}"""
    _, modified = fold(model_from_text(text, w=ternary(rng, (5, 12))))
    assert modified == [True, False]


def test_sign_through_max_pool(rng):
    text = f"""{OPSET}
    g (float[2,3,7,7] x) => (float[n,o,h,w] y) {SCALARS} {{
      c = GreaterOrEqual (x, zero)
      s = Where (c, one, minus_one)
      p = MaxPool <kernel_shape = [2, 2], strides = [2, 2], pads = [0, 0, 1, 1]> (s)
      y = Conv <pads = [1, 1, 1, 1]> (p, w)
    }}"""
    model = model_from_text(text, w=ternary(rng, (4, 3, 3, 3)))
    folded, modified = fold(model)
    assert modified == [True, True] and attribute(node(folded, "BinaryConv"), "input_mode") == "binary"
    x = rng.standard_normal((2, 3, 7, 7)).astype(np.float32)
    x[:, :, ::2, ::2] = 0.0
    assert_equivalent(model, folded, {"x": x})


def test_ops_that_do_not_commute_with_sign_are_left_alone(rng):
    text = f"""{OPSET}
    g (float[2,3,6,6] x) => (float[n,o,h,w] y) {SCALARS} {{
      c = GreaterOrEqual (x, zero)
      s = Where (c, one, minus_one)
      p = AveragePool <kernel_shape = [2, 2]> (s)
      y = Conv (p, w)
    }}"""
    _, modified = fold(model_from_text(text, w=ternary(rng, (4, 3, 3, 3))))
    assert modified == [True, False]
