import numpy as np
import onnx
import onnx.reference
import onnx_ir as ir
import onnx_ir.passes.common as common_passes
import pytest

from mptc.errors import InputError
from mptc.export.qonnx import BipolarQuant
from mptc.passes.fold_sign_into_binary_input import FoldSignIntoBinaryInputPass
from mptc.passes.pack_ternary_weights import PackTernaryWeightsPass
from mptc.passes.pipeline import optimize
from tests.passes.mptc_graphs import (
    apply,
    assert_close,
    assert_equivalent,
    attribute,
    model_from_text,
    node,
    ops,
    run_ort,
    ternary,
)

OPSET = '<ir_version: 10, opset_import: ["" : 19]>'
SCALARS = "<float zero = {0.0}, float one = {1.0}, float minus_one = {-1.0}>"


def sign_conv_model(rng, sign_lines: str, scalars: str = SCALARS, opset: str = OPSET, **inits):
    text = f"""{opset}
    g (float[2,3,6,6] x) => (float[n,o,h,w] y) {scalars} {{
      {sign_lines}
      y = Conv <pads = [1, 1, 1, 1]> (s, w)
    }}"""
    return model_from_text(text, w=ternary(rng, (4, 3, 3, 3)), **inits)


def feeds(rng):
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    x[:, :, ::2, ::3] = 0.0  # sign(0) = +1 must survive the fold
    x[:, :, 1::2, ::3] = -0.0  # and so must sign(-0) = +1
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


ONES = np.ones((2, 3, 6, 6), np.float32)


@pytest.mark.parametrize(
    "sign_lines, scalars, inits",
    [
        (
            "c = GreaterOrEqual (x, zero)\n s = Where (c, ones, minus_ones)",
            "<float zero = {0.0}>",
            dict(ones=ONES, minus_ones=-ONES),
        ),
        (
            "c = GreaterOrEqual (x, zero)\n s = Where (c, ones, minus_one)",
            "<float zero = {0.0}, float[3,1,1] ones = {1.0, 1.0, 1.0}, float minus_one = {-1.0}>",
            {},
        ),
        (
            """shape = Shape (x)
      p = ConstantOfShape <value = float[1] {1.0}> (shape)
      m = Neg (p)
      c = GreaterOrEqual (x, zero)
      s = Where (c, p, m)""",
            SCALARS,
            {},
        ),
        (
            """shape = Shape (x)
      p = Expand (one, shape)
      m = Mul (minus_one, p)
      c = Less (x, zero)
      s = Where (c, m, p)""",
            SCALARS,
            {},
        ),
        (
            """p = ConstantOfShape <value = float[1] {1.0}> (dims)
      m = ConstantOfShape <value = float[1] {-1.0}> (dims)
      c = LessOrEqual (zero, x)
      s = Where (c, p, m)""",
            "<float zero = {0.0}, int64[4] dims = {2, 3, 6, 6}>",
            {},
        ),
        ("a = Sign (x)\n b = Add (a, c)\n s = Sign (b)", "<float c = {0.1}>", {}),
        ("a = Sign (x)\n b = Add (c, a)\n s = Sign (b)", "<float[1,1] c = {0.9}>", {}),
        (
            "c = GreaterOrEqual (x, zero)\n f = Cast <to = 1> (c)\n m = Mul (two, f)\n s = Sub (m, one)",
            "<float zero = {0.0}, float two = {2.0}, float one = {1.0}>",
            {},
        ),
        (
            "c = LessOrEqual (zero, x)\n f = Cast <to = 1> (c)\n m = Mul (f, two)\n s = Add (m, minus_one)",
            "<float zero = {0.0}, float two = {2.0}, float minus_one = {-1.0}>",
            {},
        ),
        (
            "c = GreaterOrEqual (x, zero)\n f = Cast <to = 1> (c)\n m = Mul (f, two)\n s = Add (minus_one, m)",
            "<float zero = {0.0}, float two = {2.0}, float minus_one = {-1.0}>",
            {},
        ),
    ],
    ids=[
        "full_shape_constants",
        "broadcast_constant",
        "constant_of_shape_and_neg",
        "expand_and_mul",
        "constant_of_static_shape",
        "larq",
        "larq_constant_first",
        "two_cast_minus_one",
        "cast_two_plus_minus_one",
        "minus_one_plus_cast_two",
    ],
)
def test_other_spellings_of_sign_fold(rng, sign_lines, scalars, inits):
    model = sign_conv_model(rng, sign_lines, scalars, **inits)
    folded, modified = fold(model)
    assert modified == [True, True]
    binary = node(folded, "BinaryConv")
    assert attribute(binary, "input_mode") == "binary" and binary.input[0] == "x"
    assert_equivalent(model, folded, feeds(rng))


QONNX = '<ir_version: 10, opset_import: ["" : 19, "qonnx.custom_op.general" : 1]>'


def bipolar_model(rng, scale: float):
    lines = "s = qonnx.custom_op.general.BipolarQuant (x, scale)"
    return sign_conv_model(rng, lines, f"<float scale = {{{scale}}}>", QONNX)


def test_qonnx_bipolar_quant_with_scale_one_folds(rng):
    model = bipolar_model(np.random.default_rng(1), 1.0)
    folded, modified = fold(model)
    assert modified == [True, True] and attribute(node(folded, "BinaryConv"), "input_mode") == "binary"
    folded, _ = apply(folded, common_passes.RemoveUnusedNodesPass(), common_passes.RemoveUnusedOpsetsPass())
    assert "BipolarQuant" not in [n.op_type for n in folded.graph.node]
    x = feeds(rng)
    # onnxruntime has no BipolarQuant: the original runs in the reference evaluator with the QONNX
    # op mptc's own QONNX export checks with, and as the standard Where form in onnxruntime.
    expected = onnx.reference.ReferenceEvaluator(model, new_ops=[BipolarQuant]).run(None, x)[0]
    assert_close(expected, run_ort(folded, x)[0])
    standard = sign_conv_model(np.random.default_rng(1), "c = GreaterOrEqual (x, zero)\n s = Where (c, one, minus_one)")
    assert_equivalent(standard, folded, x)


def test_qonnx_bipolar_quant_with_other_scale_is_left_alone(rng):
    folds = FoldSignIntoBinaryInputPass()
    _, modified = apply(bipolar_model(rng, 0.5), PackTernaryWeightsPass(), folds)
    assert modified == [True, False]
    assert folds.skipped == ["y (BinaryConv): s (BipolarQuant) has scale 0.5; only BipolarQuant with scale 1 folds"]


def test_branch_that_broadcasts_past_x_is_left_alone(rng):
    text = f"""{OPSET}
    g (float[1,3,6,6] x) => (float[n,o,h,w] y) <float zero = {{0.0}}, float minus_one = {{-1.0}}> {{
      c = GreaterOrEqual (x, zero)
      s = Where (c, ones, minus_one)
      y = Conv (s, w)
    }}"""
    folds = FoldSignIntoBinaryInputPass()
    model = model_from_text(text, w=ternary(rng, (4, 3, 3, 3)), ones=ONES)
    _, modified = apply(model, PackTernaryWeightsPass(), folds)
    assert modified == [True, False]
    assert folds.skipped == ["y (BinaryConv): s (Where) picks +1/-1 tensors that may broadcast past the shape of 'x'"]


@pytest.mark.parametrize("dynamic_batch", [False, True], ids=["static", "dynamic_batch"])
def test_torch_where_ones_like_export_folds(rng, tmp_path, dynamic_batch):
    """What ``torch.onnx.export`` (dynamo, the default) writes for
    ``torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))``: full-shape constant branches
    for static shapes, ``Expand(1, Shape(x))`` and its ``Neg`` for a dynamic batch."""
    torch = pytest.importorskip("torch")

    class SignConv(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1, bias=False)
            with torch.no_grad():
                self.conv.weight.copy_(torch.from_numpy(ternary(rng, (4, 3, 3, 3))))

        def forward(self, x):
            return self.conv(torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x)))

    path = tmp_path / "sign.onnx"
    dynamic = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
    torch.onnx.export(
        SignConv().eval(),
        (torch.zeros(2, 3, 6, 6),),
        path,
        input_names=["x"],
        output_names=["y"],
        dynamic_shapes=dynamic,
    )
    model = onnx.load(path)
    packed = optimize(model)
    assert [n.op_type for n in packed.graph.node] == ["BinaryConv"]
    assert attribute(node(packed, "BinaryConv"), "input_mode") == "binary"
    assert_equivalent(model, packed, feeds(rng))


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
        (
            "c = Less (x, zero)\n f = Cast <to = 1> (c)\n m = Mul (two, f)\n s = Sub (m, one)",
            "<float zero = {0.0}, float two = {2.0}, float one = {1.0}>",
            "s (Sub) computes 2 * Cast(x < 0) - 1 = -sign(x); only 2 * Cast(x >= 0) - 1 folds",
        ),
        (
            "c = GreaterOrEqual (x, zero)\n f = Cast <to = 1> (c)\n m = Mul (two, f)\n s = Sub (m, one)",
            "<float zero = {0.0}, float two = {3.0}, float one = {1.0}>",
            "s (Sub) is not 2 * Cast(x >= 0) - 1 (gain 3.0, offset 1.0)",
        ),
        (
            "c = Greater (x, zero)\n f = Cast <to = 1> (c)\n m = Mul (two, f)\n s = Sub (m, one)",
            "<float zero = {0.0}, float two = {2.0}, float one = {1.0}>",
            "c (Greater) is not one of x >= 0, 0 <= x, x < 0, 0 > x, the forms with sign(0) = +1",
        ),
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
            "<float zero = {0.0}, float[3,1,1] ones = {1.0, 0.5, 1.0}, float minus_one = {-1.0}>",
            "s (Where) does not pick all +1 for x >= 0 and all -1 below",
        ),
        (
            "c = GreaterOrEqual (x, zero)\n s = Where (c, one, zero)",
            SCALARS,
            "s (Where) does not pick all +1 for x >= 0 and all -1 below",
        ),
        (
            "c = Equal (x, zero)\n s = Where (c, one, minus_one)",
            SCALARS,
            "s (Where) does not select on a comparison with 0 (>=, <=, < or >)",
        ),
    ],
    ids=[
        "two_cast_less_is_minus_sign",
        "two_cast_gain_three",
        "two_cast_strict_greater",
        "strict_greater_maps_0_to_minus_1",
        "threshold_not_zero",
        "branch_not_all_one",
        "not_minus_one",
        "equal_is_no_order",
    ],
)
def test_other_producers_are_left_alone(rng, sign_lines, scalars, reason):
    folds = FoldSignIntoBinaryInputPass()
    _, modified = apply(sign_conv_model(rng, sign_lines, scalars), PackTernaryWeightsPass(), folds)
    assert modified == [True, False]
    assert len(folds.skipped) == 1 and folds.skipped[0].startswith(f"y (BinaryConv): {reason}")


@pytest.mark.parametrize(
    "sign_lines, scalars, folded_input",
    [
        ("s = Sign (x)", "", "x"),
        ("a = Sign (x)\n b = Add (a, c)\n s = Sign (b)", "<float c = {1.0}>", "b"),  # Larq's form needs 0 < c < 1
    ],
    ids=["onnx_sign", "larq_c_one_is_a_sign_of_the_sum"],
)
def test_onnx_sign_folds_exactly_into_sign_mode(rng, sign_lines, scalars, folded_input):
    """ONNX ``Sign`` maps 0 to 0: the operator takes ``input_mode="sign"`` (a nonzero plane beside
    the signs in the kernels), exact on zeros and -0."""
    model = sign_conv_model(rng, sign_lines, scalars)
    folded, modified = apply(model, PackTernaryWeightsPass(), FoldSignIntoBinaryInputPass())
    assert modified == [True, True]
    conv = node(folded, "BinaryConv")
    assert attribute(conv, "input_mode") == "sign" and conv.input[0] == folded_input
    assert_equivalent(model, folded, feeds(rng))


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
