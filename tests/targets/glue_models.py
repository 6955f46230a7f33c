"""fp32 ONNX models of the layers the targets compile beside the ``ai.mptc`` ones, built with ``onnx.helper``."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def depthwise_model(shape: tuple[int, int, int, int], *args, **options) -> onnx.ModelProto:
    """:func:`conv_model` with one filter per channel (``group`` = C); ``args`` from its ``kernel`` on."""
    return conv_model(shape, shape[1], *args, groups=shape[1], **options)


def conv_model(
    shape: tuple[int, int, int, int],
    out_channels: int,
    kernel: int = 3,
    stride: int = 1,
    pads: tuple[int, int, int, int] = (1, 1, 1, 1),
    dilation: int = 1,
    act: str = "",
    residual: bool = False,
    bias: bool = True,
    named: bool = True,
    groups: int = 1,
) -> onnx.ModelProto:
    """``x -> Conv [-> Add(x)] [-> Relu | Clip(0, 6)]``, random weights (He-scaled, so a deep sum stays near 1)."""
    rng = np.random.default_rng(sum(shape) + kernel + stride + out_channels)
    fan_in = shape[1] // groups * kernel * kernel
    weight = rng.standard_normal((out_channels, shape[1] // groups, kernel, kernel)) * (2.0 / fan_in) ** 0.5
    inits = {"w": weight.astype(np.float32)}
    if bias:
        inits["b"] = rng.standard_normal(out_channels).astype(np.float32)
    conv = helper.make_node(
        "Conv",
        ["x", "w", "b"] if bias else ["x", "w"],
        ["c"],
        group=groups,
        kernel_shape=[kernel, kernel],
        strides=[stride, stride],
        pads=list(pads),
        dilations=[dilation, dilation],
    )
    nodes, last = [conv], "c"
    if residual:
        nodes.append(helper.make_node("Add", [last, "x"], ["r"]))
        last = "r"
    if act == "relu":
        nodes.append(helper.make_node("Relu", [last], ["a"]))
        last = "a"
    elif act == "clip":
        inits["lo"], inits["hi"] = np.array(0.0, np.float32), np.array(6.0, np.float32)
        nodes.append(helper.make_node("Clip", [last, "lo", "hi"], ["a"]))
        last = "a"
    nodes.append(helper.make_node("Identity", [last], ["y"]))
    for node in nodes:
        node.name = node.output[0] if named else ""
    graph = helper.make_graph(
        nodes,
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)


def downsample_model(channels: int = 16, size: int = 12, out: int = 24, stride: int = 2) -> onnx.ModelProto:
    """``x -> Conv 3x3 (channels -> 2 channels, pad 1) -> Relu -> Conv 1x1 stride (-> out, no pad)``:
    a ResNet's conv and its downsampling shortcut, random weights and biases."""
    rng = np.random.default_rng(channels + size + out + stride)
    wide = 2 * channels
    inits = {
        "w1": rng.standard_normal((wide, channels, 3, 3)).astype(np.float32) * 0.2,
        "b1": rng.standard_normal(wide).astype(np.float32),
        "w2": rng.standard_normal((out, wide, 1, 1)).astype(np.float32) * 0.2,
        "b2": rng.standard_normal(out).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="c1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="r1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["y"], kernel_shape=[1, 1], strides=[stride, stride], name="c2"),
    ]
    reduced = -(-size // stride)
    graph = helper.make_graph(
        nodes,
        "downsample",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, out, reduced, reduced])],
        [numpy_helper.from_array(value, name) for name, value in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)


def max_pool_model(
    shape: tuple[int, int, int, int],
    kernel: int = 3,
    stride: int = 2,
    pads: tuple[int, int, int, int] = (1, 1, 1, 1),
    dilation: int = 1,
    ceil_mode: int = 0,
    negative: bool = False,
) -> onnx.ModelProto:
    """``x -> MaxPool -> y``: a ResNet's pool after the stem by default; ``negative``: of
    ``-|x|``, every value below 0."""
    nodes = [helper.make_node("Abs", ["x"], ["abs"]), helper.make_node("Neg", ["abs"], ["neg"])] if negative else []
    pool = helper.make_node(
        "MaxPool",
        ["neg" if negative else "x"],
        ["y"],
        name="pool",
        kernel_shape=[kernel, kernel],
        strides=[stride, stride],
        pads=list(pads),
        dilations=[dilation, dilation],
        ceil_mode=ceil_mode,
    )
    graph = helper.make_graph(
        [*nodes, pool],
        "max_pool",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
