"""Small packed ONNX models built with ``onnx.helper``: ``ai.mptc`` nodes with uint8 bit initializers.

Written here, per ``docs/operators.md``, so the target tests do not depend on the passes. Each
model carries the operators' ONNX function bodies (``mptc.ops.functions``), so onnxruntime runs it.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from mptc.conventions import pack_bits
from mptc.ops.functions import MIN_OPSET, function_proto
from mptc.ops.reference import DOMAIN, OPSET_VERSION

ONNX_OPSET = MIN_OPSET  # the lowest opset the function bodies accept


def ternary(rng: np.random.Generator, out: int, k: int, sparsity: float) -> np.ndarray:
    """A random ternary weight ``(out, k)`` in {-1, 0, +1} with about ``sparsity`` pruned."""
    w = rng.choice([-1.0, 1.0], size=(out, k)).astype(np.float32)
    w[rng.random((out, k)) < sparsity] = 0.0
    return w


class GraphBuilder:
    """Accumulates nodes and initializers of a single-input, single-output float graph."""

    def __init__(self, rng: np.random.Generator, signed_scales: bool = False):
        self.rng = rng
        self.signed_scales = signed_scales
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def const(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op_type: str, inputs: list[str], output: str, domain: str = "", **attrs) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=output, domain=domain, **attrs))
        return output

    def binary(self, op_type: str, x: str, weight: np.ndarray, name: str, sparsity_mode: str, **attrs) -> str:
        """An ``ai.mptc`` node over ternary ``weight`` (flattened rows), random scale and bias.

        ``signed_scales``: scales in {-2, -1, -0.5, 0, 0.5, 1, 2} (a batch norm with negative or
        zero gamma) and biases that are whole multiples of them, so many outputs land exactly on
        ``y = 0``, where sign(0) = +1 must hold whatever the scale's sign."""
        out = weight.shape[0]
        rows = weight.reshape(out, -1)
        if self.signed_scales:
            scale = self.rng.choice([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0], out).astype(np.float32)
            bias = (
                scale * self.rng.integers(-3, 4, out) + (scale == 0) * self.rng.choice([-1.0, 0.0, 1.0], out)
            ).astype(np.float32)
        else:
            scale = (self.rng.random(out) + 0.5).astype(np.float32)
            bias = self.rng.standard_normal(out).astype(np.float32) * 0.1
        inputs = [
            x,
            self.const(f"{name}.sign_bits", pack_bits(rows > 0)),
            self.const(f"{name}.mask_bits", pack_bits(rows != 0)),
            self.const(f"{name}.scale", scale),
            self.const(f"{name}.bias", bias),
        ]
        return self.node(op_type, inputs, name, domain=DOMAIN, input_mode=sparsity_mode, **attrs)

    def model(self, x_shape: tuple[int, ...], y: str) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes,
            "packed",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
            [helper.make_tensor_value_info(y, TensorProto.FLOAT, None)],
            self.initializers,
        )
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET), helper.make_opsetid(DOMAIN, OPSET_VERSION)]
        )
        used = sorted({n.op_type for n in self.nodes if n.domain == DOMAIN})
        model.functions.extend(function_proto(op_type, ONNX_OPSET) for op_type in used)
        model.ir_version = 10
        return model


def binary_conv_model(
    rng,
    batch: int,
    channels: int,
    size: int,
    out: int,
    kernel: int,
    stride: int,
    pad: int,
    mode: str,
    sparsity: float = 0.5,
) -> onnx.ModelProto:
    """One ``BinaryConv`` layer on an ``(batch, channels, size, size)`` input."""
    g = GraphBuilder(rng)
    w = ternary(rng, out, channels * kernel * kernel, sparsity)
    y = g.binary(
        "BinaryConv", "x", w, "conv", mode, kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[pad] * 4
    )
    return g.model((batch, channels, size, size), y)


def binary_dense_model(rng, batch: int, k: int, out: int, mode: str, sparsity: float = 0.5) -> onnx.ModelProto:
    """One ``BinaryDense`` layer on an ``(batch, k)`` input."""
    g = GraphBuilder(rng)
    y = g.binary("BinaryDense", "x", ternary(rng, out, k, sparsity), "dense", mode)
    return g.model((batch, k), y)


def small_network(rng, batch: int = 1) -> onnx.ModelProto:
    """fp32 conv 3->8 -> batch norm -> relu -> BinaryConv 8->16 (binary) -> maxpool -> flatten
    -> BinaryDense (real, sparse) -> relu -> BinaryDense (binary) 10 logits, on ``(batch, 3, 12, 12)``."""
    g = GraphBuilder(rng)
    w0 = g.const("conv0.w", rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3)
    b0 = g.const("conv0.b", rng.standard_normal(8).astype(np.float32) * 0.1)
    h = g.node("Conv", ["x", w0, b0], "conv0", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    stats = {
        "gamma": rng.random(8) + 0.5,
        "beta": rng.standard_normal(8) * 0.1,
        "mean": rng.standard_normal(8) * 0.1,
        "var": rng.random(8) + 0.5,
    }
    bn = [g.const(f"bn0.{k}", v.astype(np.float32)) for k, v in stats.items()]
    h = g.node("BatchNormalization", [h, *bn], "bn0")
    h = g.node("Relu", [h], "relu0")
    h = g.binary(
        "BinaryConv", h, ternary(rng, 16, 8 * 9, 0.5), "bconv1", "binary", kernel_shape=[3, 3], pads=[1, 1, 1, 1]
    )
    h = g.node("MaxPool", [h], "pool1", kernel_shape=[2, 2], strides=[2, 2])
    h = g.node("Flatten", [h], "flat", axis=1)
    h = g.binary("BinaryDense", h, ternary(rng, 32, 16 * 36, 0.96), "dense2", "real")
    h = g.node("Relu", [h], "relu2")  # an elementwise op after a kernel: FuseOps must leave the kernel alone
    h = g.binary("BinaryDense", h, ternary(rng, 10, 32, 0.3), "dense3", "binary")
    return g.model((batch, 3, 12, 12), h)


def binary_chain(rng, batch: int = 2, signed_scales: bool = False) -> onnx.ModelProto:
    """MPT-1/1 chain on ``(batch, 70, 8, 8)``, all binary input: BinaryConv 70->13 -> BinaryConv 13->66
    -> MaxPool 3x3 s2 p1 -> BinaryConv 66->5 (stride 2) -> flatten -> BinaryDense 20->70 -> BinaryDense
    70->9 -> BinaryDense 9->4. Conv -> conv (also through the pool) and dense -> dense qualify for
    packed activations; conv -> flatten -> dense does not. ``signed_scales``: see ``GraphBuilder.binary``."""
    g = GraphBuilder(rng, signed_scales)
    h = g.binary(
        "BinaryConv", "x", ternary(rng, 13, 70 * 9, 0.5), "c1", "binary", kernel_shape=[3, 3], pads=[1, 1, 1, 1]
    )
    h = g.binary("BinaryConv", h, ternary(rng, 66, 13 * 9, 0.5), "c2", "binary", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    h = g.node("MaxPool", [h], "pool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    h = g.binary(
        "BinaryConv",
        h,
        ternary(rng, 5, 66 * 9, 0.5),
        "c3",
        "binary",
        kernel_shape=[3, 3],
        pads=[1, 1, 1, 1],
        strides=[2, 2],
    )
    h = g.node("Flatten", [h], "flat", axis=1)
    h = g.binary("BinaryDense", h, ternary(rng, 70, 20, 0.4), "d1", "binary")
    h = g.binary("BinaryDense", h, ternary(rng, 9, 70, 0.4), "d2", "binary")
    h = g.binary("BinaryDense", h, ternary(rng, 4, 9, 0.2), "d3", "binary")
    return g.model((batch, 70, 8, 8), h)


def residual_block(rng, mode: str, sparsity: float = 0.5, size: int = 6) -> onnx.ModelProto:
    """Two ResNet blocks on ``(1, 8, size, size)``: ``Relu(conv(x) + x)`` then ``conv(h) + h`` whose sum
    feeds a third conv and the output (so that Add is absorbed but no Relu is), and a plain
    ``Relu(conv(.))`` (MPT-1/32)."""
    g = GraphBuilder(rng)
    conv = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    h = g.binary("BinaryConv", "x", ternary(rng, 8, 8 * 9, sparsity), "c1", mode, **conv)
    h = g.node("Relu", [g.node("Add", [h, "x"], "add1")], "relu1")
    y = g.binary("BinaryConv", h, ternary(rng, 8, 8 * 9, sparsity), "c2", mode, **conv)
    s = g.node("Add", [h, y], "add2")
    z = g.node("Relu", [g.binary("BinaryConv", s, ternary(rng, 8, 8 * 9, sparsity), "c3", mode, **conv)], "relu3")
    return g.model((1, 8, size, size), g.node("Add", [z, s], "out"))
