"""The ONNX function bodies compute what the NumPy references compute (docs/operators.md)."""

import numpy as np
import onnx
import onnx.reference
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from mptc.conventions import pack_bits
from mptc.errors import UnsupportedError
from mptc.ops import functions
from mptc.ops.reference import DOMAIN, REFERENCE_OPS

OPSET = 19


def packed_inputs(rng, out, k, prefix):
    ternary = rng.integers(-1, 2, size=(out, k))
    arrays = {
        f"{prefix}sign_bits": pack_bits(ternary > 0),
        f"{prefix}mask_bits": pack_bits(ternary != 0),
        f"{prefix}scale": rng.uniform(0.1, 2.0, out).astype(np.float32),
        f"{prefix}bias": rng.standard_normal(out).astype(np.float32),
    }
    return [numpy_helper.from_array(a, name) for name, a in arrays.items()], list(arrays)


_OUTPUT_DIMS = {"BinaryConv": ["n", "o", "h", "w"], "BinaryDense": ["n", "o"]}


def model_of(nodes, inputs, initializers, opset=OPSET):
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, shape) for name, shape in inputs.items()],
        [helper.make_tensor_value_info(n.output[0], onnx.TensorProto.FLOAT, _OUTPUT_DIMS[n.op_type]) for n in nodes],
        initializers,
    )
    used = sorted({n.op_type for n in nodes})
    return helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(DOMAIN, 1)],
        functions=[functions.function_proto(op, opset) for op in used],
        ir_version=10,
    )


def assert_function_matches_reference(model, feeds):
    onnx.checker.check_model(model, full_check=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    got = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(None, feeds)
    want = onnx.reference.ReferenceEvaluator(model, new_ops=REFERENCE_OPS).run(None, feeds)
    for w, g in zip(want, got):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-4)


CONV_CASES = {
    "real_3x3": dict(c=3, o=5, kernel=[3, 3], pads=[1, 1, 1, 1]),
    "binary_stride_asym_pads": dict(c=5, o=7, kernel=[3, 2], strides=[2, 1], pads=[1, 0, 2, 1], input_mode="binary"),
    "binary_pad_minus_one": dict(c=3, o=4, kernel=[3, 3], pads=[1, 1, 1, 1], input_mode="binary", pad_value=-1.0),
    "binary_pad_plus_one": dict(c=3, o=4, kernel=[3, 3], pads=[2, 1, 0, 1], input_mode="binary", pad_value=1.0),
    "dilated_grouped": dict(c=6, o=9, kernel=[3, 3], dilations=[2, 1], group=3, pads=[2, 1, 2, 1]),
    "depthwise_odd": dict(c=7, o=7, kernel=[3, 3], group=7, input_mode="binary", pads=[1, 1, 1, 1]),
    "sign_exact_zeros": dict(c=4, o=5, kernel=[3, 3], pads=[1, 1, 1, 1], input_mode="sign"),
    "k_multiple_of_8": dict(c=8, o=3, kernel=[1, 1]),
    "defaults_only": dict(c=2, o=3, kernel=[2, 2]),
}


@pytest.mark.parametrize("case", CONV_CASES.values(), ids=CONV_CASES.keys())
def test_binary_conv_body(case):
    rng = np.random.default_rng(1)
    case = dict(case)
    c, o, group = case.pop("c"), case.pop("o"), case.get("group", 1)
    kh, kw = case["kernel"]
    inits, names = packed_inputs(rng, o, c // group * kh * kw, "")
    attrs = {"kernel_shape": case.pop("kernel")} | case
    conv = helper.make_node("BinaryConv", ["x", *names], ["y"], domain=DOMAIN, **attrs)
    x = rng.standard_normal((2, c, 9, 8)).astype(np.float32)
    x[:, :, ::3, ::2] = 0.0
    assert_function_matches_reference(model_of([conv], {"x": [2, c, 9, 8]}, inits), {"x": x})


@pytest.mark.parametrize("k, mode", [(13, "real"), (16, "binary"), (1, "binary"), (11, "sign")])
def test_binary_dense_body(k, mode):
    rng = np.random.default_rng(2)
    inits, names = packed_inputs(rng, 6, k, "")
    dense = helper.make_node("BinaryDense", ["x", *names], ["y"], domain=DOMAIN, input_mode=mode)
    x = rng.standard_normal((3, k)).astype(np.float32)
    x[0] = 0.0
    assert_function_matches_reference(model_of([dense], {"x": [3, k]}, inits), {"x": x})


def test_one_body_serves_instances_of_different_shapes():
    rng = np.random.default_rng(3)
    first, first_names = packed_inputs(rng, 4, 3 * 9, "a.")
    second, second_names = packed_inputs(rng, 2, 4 * 1, "b.")
    nodes = [
        helper.make_node(
            "BinaryConv", ["x", *first_names], ["h"], domain=DOMAIN, kernel_shape=[3, 3], pads=[1, 1, 1, 1]
        ),
        helper.make_node(
            "BinaryConv",
            ["h", *second_names],
            ["y"],
            domain=DOMAIN,
            kernel_shape=[1, 1],
            strides=[2, 2],
            input_mode="binary",
        ),
    ]
    model = model_of(nodes, {"x": [1, 3, 6, 6]}, first + second)
    assert len(model.functions) == 1
    assert_function_matches_reference(model, {"x": rng.standard_normal((1, 3, 6, 6)).astype(np.float32)})


def test_unknown_op_is_rejected_by_name():
    with pytest.raises(UnsupportedError, match="'BinaryPool' is not an ai.mptc operator"):
        functions.function_proto("BinaryPool", OPSET)


def test_opset_below_19_is_rejected():
    with pytest.raises(UnsupportedError, match="opset >= 19, the model imports 18"):
        functions.function_proto("BinaryConv", 18)


def test_body_follows_the_model_opset():
    body = functions.function_proto("BinaryDense", 21)
    assert [(o.domain, o.version) for o in body.opset_import] == [("", 21)]
    assert functions.function("BinaryDense", 21).identifier() == (DOMAIN, "BinaryDense", "")
