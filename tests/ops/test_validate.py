"""``mptc.ops.validate``: one test per rule a well-formed ``ai.mptc`` node follows (docs/operators.md),
and the node that follows them all."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import helper

from mptc.conventions import pack_bits
from mptc.errors import InputError, UnsupportedError
from mptc.ops.reference import DOMAIN
from mptc.ops.validate import (
    MAX_NODE_VALUES,
    check_node_sizes,
    check_packed_proto,
    check_standard_node,
    check_tensors,
    packed_attributes,
    pool_geometry,
)

OUT, C, KH, KW = 4, 3, 3, 3
K = C * KH * KW  # 27: the last byte of a row has 5 pad bits


def conv_node(**attributes) -> onnx.NodeProto:
    attributes = {"kernel_shape": [KH, KW], "pads": [1, 1, 1, 1], "input_mode": "binary", **attributes}
    attributes = {name: value for name, value in attributes.items() if value is not None}
    return helper.make_node(
        "BinaryConv", ["x", "s", "m", "scale", "bias"], ["y"], name="conv", domain=DOMAIN, **attributes
    )


def constants(**changes) -> dict[str, np.ndarray]:
    rows = np.random.default_rng(0).choice([-1, 0, 1], size=(OUT, K))
    arrays = {
        "s": pack_bits(rows > 0),
        "m": pack_bits(rows != 0),
        "scale": np.ones(OUT, np.float32),
        "bias": np.zeros(OUT, np.float32),
    }
    arrays.update(changes)
    return arrays


def test_a_well_formed_node_passes_with_its_defaults_filled_in():
    attributes = check_packed_proto(conv_node(), constants())
    assert attributes.strides == (1, 1) and attributes.group == 1 and attributes.pad_value == 0.0
    check_tensors("conv", attributes, *constants().values(), (1, C, 8, 8))


@pytest.mark.parametrize(
    "attributes, message",
    [
        (dict(kernel_shape=None), "required attribute kernel_shape is missing"),
        (dict(dilation=[1, 1]), "unknown attribute 'dilation'"),
        (dict(group=1.0), "attribute group must be INT, got FLOAT"),
        (dict(input_mode=3), "attribute input_mode must be STRING, got INT"),
        (dict(input_mode="bipolar"), "input_mode must be one of real, binary, sign"),
        (dict(kernel_shape=[3]), "kernel_shape must be 2 integers"),
        (dict(kernel_shape=[0, 3]), "kernel_shape must be 2 integers from 1"),
        (dict(strides=[0, 1]), "strides must be 2 integers from 1"),
        (dict(dilations=[1, -1]), "dilations must be 2 integers from 1"),
        (dict(pads=[-1, 0, 0, 0]), "pads must be 4 integers from 0"),
        (dict(pads=[1, 1]), "pads must be 4 integers"),
        (dict(group=0), "group must be an integer from 1"),
        (dict(group=2**40), "group must be an integer from 1"),
        (dict(kernel_shape=[2**20, 1]), "kernel_shape must be 2 integers from 1 to 65536"),
    ],
)
def test_attribute_rules(attributes, message):
    with pytest.raises(InputError, match=message):
        check_packed_proto(conv_node(**attributes), constants())


@pytest.mark.parametrize("mode, legal", [("real", [0.0]), ("binary", [-1.0, 0.0, 1.0])])
@pytest.mark.parametrize("pad_value", [-1.0, 0.0, 1.0, 0.5, -2.0, 1e30, math.nan, math.inf, -math.inf])
def test_pad_value_is_0_in_real_mode_and_a_sign_or_0_in_binary_mode(mode, legal, pad_value):
    if pad_value in legal:
        assert (
            packed_attributes(
                "conv", "BinaryConv", {"kernel_shape": (3, 3), "input_mode": mode, "pad_value": pad_value}
            ).pad_value
            == pad_value
        )
        return
    with pytest.raises(InputError, match=f"pad_value must be .* in {mode} mode"):
        check_packed_proto(conv_node(input_mode=mode, pad_value=pad_value), constants())


@pytest.mark.parametrize(
    "changes, x_shape, message",
    [
        (dict(s=np.zeros((0, 4), np.uint8), m=np.zeros((0, 4), np.uint8)), None, "holds no weights"),
        (dict(s=np.zeros((OUT, 4), np.int8)), None, "sign_bits must be uint8"),
        (dict(m=np.zeros((OUT, 3), np.uint8)), None, "differ in shape"),
        (dict(scale=np.ones(OUT + 1, np.float32)), None, r"scale must be float32 of shape \(4,\)"),
        (dict(bias=np.zeros(0, np.float32)), None, "bias must be float32"),
        (dict(scale=np.ones(OUT, np.float64)), None, "scale must be float32"),
        (dict(scale=np.array([1, np.nan, 1, 1], np.float32)), None, "scale holds NaN or Inf"),
        (dict(bias=np.array([0, 0, np.inf, 0], np.float32)), None, "bias holds NaN or Inf"),
        (
            dict(s=np.zeros((OUT, 1), np.uint8), m=np.zeros((OUT, 1), np.uint8)),
            None,
            "kernel_shape 3x3 needs at least 9",
        ),
        (
            dict(s=np.zeros((OUT, 5), np.uint8), m=np.zeros((OUT, 5), np.uint8)),
            (1, C, 8, 8),
            "K=27 .* 4 bytes, its rows hold 5",
        ),
        (dict(m=np.full((OUT, 4), 0xFF, np.uint8)), (1, C, 8, 8), "mask_bits has pad bits set past K=27"),
        (dict(), (1, C, 8), r"input X must be \(N, C, H, W\)"),
        (dict(), (1, C, 1, 0), "padded to 2 is smaller than the dilated kernel"),
    ],
)
def test_tensor_rules(changes, x_shape, message):
    attributes = check_packed_proto(conv_node(), constants())
    with pytest.raises(InputError, match=message):
        check_tensors("conv", attributes, *constants(**changes).values(), x_shape)


def test_group_must_divide_outputs_and_channels():
    attributes = packed_attributes("conv", "BinaryConv", {"kernel_shape": (3, 3), "group": 3})
    with pytest.raises(InputError, match="does not divide its 4 outputs"):
        check_tensors("conv", attributes, None, None, np.ones(4, np.float32), None)
    attributes = packed_attributes("conv", "BinaryConv", {"kernel_shape": (3, 3), "group": 2})
    with pytest.raises(InputError, match="does not divide its 3 input channels"):
        check_tensors("conv", attributes, None, None, None, None, (1, 3, 8, 8))


def test_unknown_tensors_and_dimensions_are_left_to_later_readers():
    attributes = check_packed_proto(conv_node(), constants())
    check_tensors("conv", attributes, None, None, None, None, ("batch", "c", None, 8))


def test_input_count_and_unknown_operator():
    node = conv_node()
    del node.input[4]
    with pytest.raises(InputError, match="has 4 inputs"):
        check_packed_proto(node, constants())
    node = conv_node()
    node.op_type = "BinaryPool"
    with pytest.raises(InputError, match="unknown operator ai.mptc::BinaryPool"):
        check_packed_proto(node, constants())


def test_standard_nodes_against_their_schema():
    check_standard_node("pool (MaxPool)", "MaxPool", 19, {"kernel_shape": onnx.AttributeProto.INTS}, 1, 1)
    with pytest.raises(InputError, match="strides must be INTS, got FLOATS"):
        check_standard_node("conv (Conv)", "Conv", 19, {"strides": onnx.AttributeProto.FLOATS}, 2, 1)
    with pytest.raises(InputError, match="unknown attribute 'bogus'"):
        check_standard_node("relu (Relu)", "Relu", 19, {"bogus": onnx.AttributeProto.INT}, 1, 1)
    with pytest.raises(InputError, match="has 2 inputs; Relu takes 1"):
        check_standard_node("relu (Relu)", "Relu", 19, {}, 2, 1)
    check_standard_node("x (NoSuchOp)", "NoSuchOp", 19, {"anything": 1}, 9, 9)  # its converter refuses it


def test_pool_geometry():
    assert pool_geometry("pool", {"kernel_shape": (2, 2), "strides": (2, 2)}, (8, 8)) == (
        (2, 2),
        (2, 2),
        (0, 0, 0, 0),
        (1, 1),
    )
    with pytest.raises(InputError, match="strides must be 2 integers from 1"):
        pool_geometry("pool", {"kernel_shape": (2, 2), "strides": (0, 0)}, (8, 8))
    with pytest.raises(InputError, match="smaller than the dilated kernel"):
        pool_geometry("pool", {"kernel_shape": (9, 9)}, (8, 8))


def test_node_sizes_are_bounded():
    many = helper.make_node("Sum", ["x"] * (MAX_NODE_VALUES + 1), ["y"], name="many")
    graph = helper.make_graph([many], "g", [], [])
    with pytest.raises(UnsupportedError, match="many \\(Sum\\) has 1,025 inputs"):
        check_node_sizes(graph)
    check_node_sizes(helper.make_graph([helper.make_node("Sum", ["x"] * MAX_NODE_VALUES, ["y"])], "g", [], []))
