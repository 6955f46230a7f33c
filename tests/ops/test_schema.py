"""The optional ``onnx.defs`` schemas: stricter checking and attribute-based shape inference."""

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from mptc.conventions import pack_bits
from mptc.ops import functions
from mptc.ops.reference import DOMAIN
from mptc.ops.schema import deregister_schemas, register_schemas


@pytest.fixture
def schemas():
    register_schemas()
    register_schemas()  # a second call is harmless
    yield
    deregister_schemas()


def conv_model(x_dims=(2, 3, 9, 8), **attrs):
    w = np.random.default_rng(0).integers(-1, 2, size=(5, 27))
    inits = [
        numpy_helper.from_array(pack_bits(w > 0), "s"),
        numpy_helper.from_array(pack_bits(w != 0), "m"),
        numpy_helper.from_array(np.ones(5, np.float32), "scale"),
        numpy_helper.from_array(np.zeros(5, np.float32), "bias"),
    ]
    node = helper.make_node("BinaryConv", ["x", "s", "m", "scale", "bias"], ["y"], domain=DOMAIN, **attrs)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, list(x_dims))],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["n", "o", "h", "w"])],
        inits,
    )
    return helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 19), helper.make_opsetid(DOMAIN, 1)],
        functions=[functions.function_proto("BinaryConv", 19)],
        ir_version=10,
    )


def inferred_output_dims(model):
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    return [d.dim_value or d.dim_param for d in inferred.graph.output[0].type.tensor_type.shape.dim]


def test_shapes_come_from_attributes(schemas):
    model = conv_model(kernel_shape=[3, 3], strides=[2, 1], pads=[1, 0, 2, 1], dilations=[1, 2])
    onnx.checker.check_model(model, full_check=True)
    assert inferred_output_dims(model) == [2, 5, 5, 5]


def test_unknown_spatial_size_stays_unknown(schemas):
    dims = inferred_output_dims(conv_model(x_dims=(2, 3, "h", 8), kernel_shape=[3, 3]))
    assert dims[:2] == [2, 5] and dims[3] == 6


def test_missing_kernel_shape_is_an_error(schemas):
    with pytest.raises(onnx.checker.ValidationError, match="kernel_shape"):
        onnx.checker.check_model(conv_model(), full_check=True)


def test_full_check_passes_without_schemas():
    assert not onnx.defs.has("BinaryConv", DOMAIN)
    onnx.checker.check_model(conv_model(kernel_shape=[3, 3]), full_check=True)


def test_an_input_of_unknown_type_is_left_uninferred(schemas):
    """X made by an op of another domain, whose output type nothing infers: no crash, no shape."""
    model = conv_model(kernel_shape=[3, 3])
    graph = model.graph
    graph.node[0].input[0] = "q"
    graph.node.insert(0, helper.make_node("BipolarQuant", ["x", "scale"], ["q"], domain="qonnx.custom_op.general"))
    model.opset_import.append(helper.make_opsetid("qonnx.custom_op.general", 1))
    inferred = onnx.shape_inference.infer_shapes(model)
    assert not inferred.graph.output[0].type.tensor_type.shape.dim[0].dim_value


def test_a_node_without_inputs_is_left_uninferred(schemas):
    model = conv_model(kernel_shape=[3, 3])
    del model.graph.node[0].input[:]
    inferred = onnx.shape_inference.infer_shapes(model)  # the checker names the node; inference does not crash
    assert inferred.graph.node[0].op_type == "BinaryConv"
