import numpy as np
import onnx
import pytest

from mptc.conventions import ternary_scale, unpack_bits
from mptc.passes.pack_ternary_weights import PackTernaryWeightsPass
from tests.passes.mptc_graphs import apply, assert_equivalent, attribute, model_from_text, node, ops, ternary

OPSET = '<ir_version: 10, opset_import: ["" : 19]>'


def conv_model(x_shape, weight, bias=None, attrs=""):
    n, c, h, w = x_shape
    inits = {"w": weight} | ({} if bias is None else {"b": bias})
    args = "x, w, b" if bias is not None else "x, w"
    text = f"""{OPSET}
    g (float[{n},{c},{h},{w}] x) => (float[n,o,h,w] y) {{ y = Conv <{attrs}> ({args}) }}"""
    return model_from_text(text.replace("Conv <>", "Conv"), **inits)


def pack(model):
    pass_ = PackTernaryWeightsPass()
    packed, (modified,) = apply(model, pass_)
    return packed, modified, pass_.skipped


def feeds_for(model, rng):
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    return {"x": rng.standard_normal(dims).astype(np.float32)}


@pytest.mark.parametrize("per_channel", [False, True], ids=["per_layer_alpha", "per_channel_alpha"])
def test_conv_becomes_binary_conv(rng, per_channel):
    weight = ternary(rng, (5, 3, 3, 3), per_channel=per_channel)
    model = conv_model((2, 3, 7, 7), weight, rng.standard_normal(5).astype(np.float32), "pads = [1, 1, 1, 1]")
    packed, modified, _ = pack(model)
    assert modified and ops(packed) == ["ai.mptc.BinaryConv"]
    binary = node(packed, "BinaryConv")
    assert attribute(binary, "input_mode") == "real" and attribute(binary, "kernel_shape") == [3, 3]
    inits = {t.name: t for t in packed.graph.initializer}
    scale = np.frombuffer(inits["y.scale"].raw_data, np.float32)
    np.testing.assert_allclose(scale, np.abs(weight).reshape(5, -1).max(axis=1), rtol=1e-6)
    assert [o.name for o in packed.graph.output] == ["y"]
    assert_equivalent(model, packed, feeds_for(model, rng))


def test_bits_follow_the_conventions(rng):
    weight = ternary(rng, (3, 2, 3, 3))
    packed, _, _ = pack(conv_model((1, 2, 5, 5), weight))
    inits = {
        t.name: np.frombuffer(t.raw_data, np.uint8).reshape(t.dims)
        for t in packed.graph.initializer
        if "bits" in t.name
    }
    rows = weight.reshape(3, -1)
    assert inits["y.sign_bits"].shape == (3, 3)  # ceil(18 / 8)
    np.testing.assert_array_equal(unpack_bits(inits["y.mask_bits"], 18), rows != 0)
    np.testing.assert_array_equal(unpack_bits(inits["y.sign_bits"], 18), rows > 0)


def test_conv_without_bias_gets_zero_bias(rng):
    model = conv_model((1, 2, 4, 4), ternary(rng, (3, 2, 1, 1)))
    packed, modified, _ = pack(model)
    assert modified and len(node(packed, "BinaryConv").input) == 5
    assert_equivalent(model, packed, feeds_for(model, rng))


@pytest.mark.parametrize(
    "channels, out, group, kernel, attrs",
    [
        (3, 5, 1, (3, 3), "strides = [2, 2], pads = [1, 0, 2, 1]"),
        (5, 7, 1, (3, 2), "dilations = [2, 1], pads = [2, 1, 2, 1]"),
        (9, 11, 1, (5, 5), "strides = [3, 2], dilations = [1, 2], pads = [0, 3, 1, 0]"),
        (4, 6, 1, (1, 1), 'auto_pad = "VALID", group = 1'),
    ],
    ids=["stride", "dilation", "odd_k", "valid_1x1"],
)
def test_conv_geometry(rng, channels, out, group, kernel, attrs):
    model = conv_model(
        (2, channels, 11, 9),
        ternary(rng, (out, channels // group, *kernel)),
        rng.standard_normal(out).astype(np.float32),
        attrs,
    )
    packed, modified, _ = pack(model)
    assert modified
    assert_equivalent(model, packed, feeds_for(model, rng))


def test_all_zero_weight_is_ternary(rng):
    model = conv_model((1, 3, 4, 4), np.zeros((2, 3, 3, 3), np.float32), np.ones(2, np.float32))
    packed, modified, _ = pack(model)
    assert modified and ops(packed) == ["ai.mptc.BinaryConv"]
    assert_equivalent(model, packed, feeds_for(model, rng))


def dense_model(op: str, weight, x_shape, extra="", c=None):
    inits = {"w": weight} | ({} if c is None else {"c": c})
    args = "x, w, c" if c is not None else "x, w"
    text = f"""{OPSET}
    g (float[{x_shape[0]},{x_shape[1]}] x) => (float[n,o] y) {{ y = {op} {extra} ({args}) }}"""
    return model_from_text(text, **inits)


@pytest.mark.parametrize(
    "extra, weight_shape, x_shape, c_shape",
    [
        ("<transB = 1>", (7, 13), (3, 13), (7,)),
        ("", (13, 7), (3, 13), None),
        ("<transA = 1, transB = 1>", (7, 13), (13, 3), (1, 7)),
        ("<alpha = 0.5, beta = 2.0, transB = 1>", (7, 13), (3, 13), ()),
    ],
    ids=["transB", "no_trans", "transA", "alpha_beta_scalar_c"],
)
def test_gemm_becomes_binary_dense(rng, extra, weight_shape, x_shape, c_shape):
    rows_first = "transB" in extra
    weight = ternary(rng, weight_shape if rows_first else weight_shape[::-1])
    weight = weight if rows_first else weight.T.copy()
    c = None if c_shape is None else rng.standard_normal(c_shape).astype(np.float32)
    model = dense_model("Gemm", weight, x_shape, extra, c)
    packed, modified, _ = pack(model)
    assert modified and ops(packed)[-1] == "ai.mptc.BinaryDense"
    assert ops(packed)[:-1] == (["Transpose"] if "transA" in extra else [])
    assert_equivalent(model, packed, feeds_for(model, rng))


def test_matmul_with_2d_input_becomes_binary_dense(rng):
    model = dense_model("MatMul", ternary(rng, (6, 10)).T.copy(), (4, 10))
    packed, modified, _ = pack(model)
    assert modified and ops(packed) == ["ai.mptc.BinaryDense"]
    assert_equivalent(model, packed, feeds_for(model, rng))


def test_non_ternary_weight_is_left_alone(rng):
    model = conv_model((1, 2, 4, 4), rng.standard_normal((3, 2, 3, 3)).astype(np.float32))
    packed, modified, skipped = pack(model)
    assert not modified and ops(packed) == ["Conv"]
    assert skipped == ["y (Conv): weight is not ternary ({-a, 0, +a} per output row)"]


def test_weight_fed_as_graph_input_is_left_alone(rng):
    model = conv_model((1, 2, 4, 4), ternary(rng, (3, 2, 3, 3)))
    model.graph.input.append(onnx.helper.make_tensor_value_info("w", onnx.TensorProto.FLOAT, [3, 2, 3, 3]))
    _, modified, skipped = pack(model)
    assert not modified and "not a constant" in skipped[0]


def test_non_float32_weight_is_left_alone(rng):
    text = f"""{OPSET}
    g (double[1,2,4,4] x) => (double[n,o,h,w] y) {{ y = Conv (x, w) }}"""
    _, modified, skipped = pack(model_from_text(text, w=ternary(rng, (3, 2, 3, 3)).astype(np.float64)))
    assert not modified and "float64" in skipped[0]


def test_conv1d_is_left_alone(rng):
    text = f"""{OPSET}
    g (float[1,2,8] x) => (float[n,o,w] y) {{ y = Conv (x, w) }}"""
    _, modified, skipped = pack(model_from_text(text, w=ternary(rng, (3, 2, 3))))
    assert not modified and "rank 3" in skipped[0]


def test_same_auto_pad_is_left_alone(rng):
    model = conv_model((1, 2, 5, 5), ternary(rng, (3, 2, 3, 3)), attrs='auto_pad = "SAME_UPPER"')
    _, modified, skipped = pack(model)
    assert not modified and "auto_pad=SAME_UPPER" in skipped[0]


@pytest.mark.parametrize(
    "channels, out, group, attrs",
    [(6, 9, 3, "group = 3, pads = [1, 1, 1, 1]"), (7, 7, 7, "group = 7, strides = [2, 1], pads = [1, 1, 1, 1]")],
    ids=["group3", "depthwise"],
)
def test_grouped_conv_is_left_alone(rng, channels, out, group, attrs):
    model = conv_model((2, channels, 11, 9), ternary(rng, (out, channels // group, 3, 3)), attrs=attrs)
    _, modified, skipped = pack(model)
    assert not modified
    assert skipped == [
        f"y (Conv): grouped convolution (group={group}): no packed kernel compiles it yet; it stays an fp32 Conv"
    ]


def test_gemm_with_per_sample_c_is_left_alone(rng):
    model = dense_model("Gemm", ternary(rng, (7, 13)), (3, 13), "<transB = 1>", np.ones((3, 7), np.float32))
    _, modified, skipped = pack(model)
    assert not modified and "not per output channel" in skipped[0]


def test_gemm_with_computed_c_is_left_alone(rng):
    text = f"""{OPSET}
    g (float[3,13] x, float[7] c) => (float[n,o] y) {{ y = Gemm <transB = 1> (x, w, c) }}"""
    _, modified, skipped = pack(model_from_text(text, w=ternary(rng, (7, 13))))
    assert not modified and "bias C is not a constant" in skipped[0]


def test_matmul_with_3d_input_is_left_alone(rng):
    text = f"""{OPSET}
    g (float[2,3,10] x) => (float[n,m,o] y) {{ y = MatMul (x, w) }}"""
    _, modified, skipped = pack(model_from_text(text, w=ternary(rng, (6, 10)).T.copy()))
    assert not modified and "2-D" in skipped[0]


def test_computed_weight_is_left_alone(rng):
    text = f"""{OPSET}
    g (float[1,2,4,4] x, float[3,2,3,3] w) => (float[n,o,h,w] y) {{ y = Conv (x, w) }}"""
    _, modified, skipped = pack(model_from_text(text))
    assert not modified and "not a constant" in skipped[0]


def test_ternary_scale_per_row_and_empty_rows():
    weight = np.array([[0.5, -0.5, 0.0], [0.0, 0.0, 0.0], [2.0, 0.0, -2.0]], np.float32)
    np.testing.assert_array_equal(ternary_scale(weight), [0.5, 2.0, 2.0])
    assert ternary_scale(np.zeros((2, 4), np.float32)).tolist() == [1.0, 1.0]
    assert ternary_scale(np.array([[0.5, -0.25]], np.float32)) is None
    assert ternary_scale(np.array([[np.inf, 0.0]], np.float32)) is None
