"""Pack ternary Conv/Gemm/MatMul weights into ``ai.mptc`` BinaryConv/BinaryDense (docs/operators.md).

A strong-lottery-ticket layer exports as a float weight whose output row ``o`` holds only
``{-alpha[o], 0, +alpha[o]}`` (per-layer alpha is the case of equal rows). Such a weight is stored as
two bit planes, ``sign_bits = pack(W > 0)`` and ``mask_bits = pack(W != 0)`` (2 bits per weight
instead of 32), and ``alpha`` moves into the operator's ``scale``.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import onnx_ir as ir

from mptc.conventions import TERNARY_RTOL, pack_bits, ternary_scale
from mptc.ops.reference import DOMAIN, OPSET_VERSION
from mptc.passes._graph import Skip, add_initializer, constant_array, is_op, label

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class _Dense:
    """A Gemm or MatMul seen as ``Y = gain * (X @ W.T) + bias`` with ``W`` of shape ``(O, K)``."""

    x: ir.Value
    transpose_x: bool
    weight: np.ndarray
    gain: float
    bias: np.ndarray


class PackTernaryWeightsPass(ir.passes.InPlacePass):
    """Rewrite layers with ternary constant weights into bit-packed ``ai.mptc`` operators.

    Cases::

        Conv(x, W, b)                   -> ai.mptc.BinaryConv(x, sign(W), mask(W), alpha, b or 0)
        Gemm(A, B, C; alpha_g, beta,
             transA, transB)            -> ai.mptc.BinaryDense(A or Transpose(A), bits(B or B^T),
                                                               alpha_g * alpha, beta * C or 0)
        MatMul(x, W(K, O)), x 2-D       -> ai.mptc.BinaryDense(x, bits(W^T), alpha, 0)

    with ``input_mode="real"`` (FoldSignIntoBinaryInputPass turns it binary), every attribute
    written out, and a name (the old node's, else its output's) that names its initializers too.
    The outputs keep their names, so the graph's interface is unchanged.

    Preconditions: the weight is a float32 constant (initializer or Constant node) that is not a
    graph input; each output row holds values in ``{-a_o, 0, +a_o}`` (an all-zero layer counts).

    Left alone, with the reason logged and kept in :attr:`skipped`: non-ternary or non-constant
    weights, non-float32 weights, Conv that is not 2-D or uses ``auto_pad`` SAME_*, grouped or
    depthwise Conv (``group != 1``: no packed kernel compiles it yet, so it stays fp32), Gemm whose C
    is not a constant broadcastable to ``(O,)``, MatMul whose input is not known to be 2-D (run shape
    inference first) or whose weight is not 2-D.
    """

    def __init__(self, rtol: float = TERNARY_RTOL) -> None:
        super().__init__()
        self.rtol = rtol
        self.skipped: list[str] = []

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        self.skipped = []
        graph = model.graph
        modified = False
        rewrites = {"Conv": self._pack_conv, "Gemm": self._pack_gemm, "MatMul": self._pack_matmul}
        for node in list(graph):
            rewrite = rewrites.get(node.op_type)
            if rewrite is None or not is_op(node, node.op_type):
                continue
            try:
                new_nodes = rewrite(graph, node)
            except Skip as reason:
                self.skipped.append(f"{label(node)}: {reason}")
                logger.info("left %s as it is: %s", label(node), reason)
                continue
            ir.convenience.replace_nodes_and_values(graph, node, [node], new_nodes, node.outputs, new_nodes[-1].outputs)
            modified = True
        if modified:
            model.opset_imports[DOMAIN] = OPSET_VERSION
        return ir.passes.PassResult(model, modified=modified)

    def _ternary(self, weight: ir.Value | None, rank: int, transpose: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The weight with output rows first and its per-row alpha; :class:`Skip` if not packable.

        ``transpose`` turns a ``(K, O)`` matrix (Gemm ``transB=0``, MatMul) into ``(O, K)``.
        """
        array = constant_array(weight)
        if array is None:
            producer = weight.producer() if weight is not None else None
            if producer is not None:
                raise Skip(f"weight is computed by {label(producer)}, not a constant initializer")
            raise Skip("weight is not a constant initializer")
        if array.dtype != np.float32:
            raise Skip(f"weight dtype is {array.dtype}, only float32 is packed")
        if array.ndim != rank:
            raise Skip(f"weight has rank {array.ndim}, expected {rank}")
        if transpose:
            array = array.T
        alpha = ternary_scale(array, self.rtol)
        if alpha is None:
            raise Skip("weight is not ternary ({-a, 0, +a} per output row)")
        return array, alpha

    def _pack_conv(self, graph: ir.Graph, node: ir.Node) -> list[ir.Node]:
        weight, alpha = self._ternary(node.inputs[1], rank=4)
        auto_pad = node.attributes.get_string("auto_pad", "NOTSET")
        if auto_pad not in ("NOTSET", "VALID"):
            raise Skip(f"auto_pad={auto_pad} is not supported, export with explicit pads")
        group = node.attributes.get_int("group", 1)
        if group != 1:
            # Until a packed kernel compiles it (targets/frontend.py refuses it), packing would
            # only make a model that `mptc compile` refuses; left alone it takes the fp32 path.
            raise Skip(f"grouped convolution (group={group}): no packed kernel compiles it yet; it stays an fp32 Conv")
        out_channels = weight.shape[0]
        bias = node.inputs[2] if len(node.inputs) > 2 else None
        if bias is None:
            bias = add_initializer(graph, f"{_base(node)}.bias", np.zeros(out_channels, np.float32))
        sign_bits, mask_bits, scale = self._bit_planes(graph, node, weight, alpha)
        attributes = {
            "kernel_shape": list(weight.shape[2:]),
            "strides": list(node.attributes.get_ints("strides", [1, 1])),
            "pads": list(node.attributes.get_ints("pads", [0, 0, 0, 0])),
            "dilations": list(node.attributes.get_ints("dilations", [1, 1])),
            "group": 1,
            "input_mode": "real",
            "pad_value": 0.0,
        }
        packed = ir.node(
            "BinaryConv",
            [node.inputs[0], sign_bits, mask_bits, scale, bias],
            attributes,
            domain=DOMAIN,
            name=_base(node),
        )
        return [packed]

    def _pack_gemm(self, graph: ir.Graph, node: ir.Node) -> list[ir.Node]:
        weight, alpha = self._ternary(node.inputs[1], rank=2, transpose=not node.attributes.get_int("transB", 0))
        out_channels = weight.shape[0]
        beta = node.attributes.get_float("beta", 1.0)
        c = node.inputs[2] if len(node.inputs) > 2 else None
        bias = np.zeros(out_channels, np.float32)
        if c is not None:
            c_array = constant_array(c)
            if c_array is None:
                raise Skip("bias C is not a constant")
            per_row = c_array.ndim == 2 and c_array.shape[0] != 1
            if c_array.size not in (1, out_channels) or c_array.ndim > 2 or per_row:
                raise Skip(f"bias C of shape {c_array.shape} is not per output channel")
            bias = (beta * np.broadcast_to(c_array.reshape(-1), (out_channels,))).astype(np.float32)
        dense = _Dense(
            x=node.inputs[0],
            transpose_x=bool(node.attributes.get_int("transA", 0)),
            weight=weight,
            gain=node.attributes.get_float("alpha", 1.0),
            bias=bias,
        )
        return self._dense_nodes(graph, node, dense, alpha)

    def _pack_matmul(self, graph: ir.Graph, node: ir.Node) -> list[ir.Node]:
        weight, alpha = self._ternary(node.inputs[1], rank=2, transpose=True)
        x = node.inputs[0]
        if x is None or x.shape is None or len(x.shape) != 2:
            raise Skip("input is not known to be 2-D (N, K); BinaryDense takes 2-D input")
        dense = _Dense(x=x, transpose_x=False, weight=weight, gain=1.0, bias=np.zeros(weight.shape[0], np.float32))
        return self._dense_nodes(graph, node, dense, alpha)

    def _dense_nodes(self, graph: ir.Graph, node: ir.Node, dense: _Dense, alpha: np.ndarray) -> list[ir.Node]:
        nodes = []
        x = dense.x
        if dense.transpose_x:
            transposed = ir.Value(name=f"{_base(node)}.transposed_a")
            name = f"{_base(node)}.transpose_a"
            nodes.append(ir.node("Transpose", [x], {"perm": [1, 0]}, outputs=[transposed], name=name))
            x = nodes[-1].outputs[0]
        sign_bits, mask_bits, scale = self._bit_planes(graph, node, dense.weight, alpha * np.float32(dense.gain))
        bias = add_initializer(graph, f"{_base(node)}.bias", dense.bias)
        nodes.append(
            ir.node(
                "BinaryDense",
                [x, sign_bits, mask_bits, scale, bias],
                {"input_mode": "real"},
                domain=DOMAIN,
                name=_base(node),
            )
        )
        return nodes

    @staticmethod
    def _bit_planes(
        graph: ir.Graph, node: ir.Node, weight: np.ndarray, scale: np.ndarray
    ) -> tuple[ir.Value, ir.Value, ir.Value]:
        rows = weight.reshape(weight.shape[0], -1)
        base = _base(node)
        return (
            add_initializer(graph, f"{base}.sign_bits", pack_bits(rows > 0)),
            add_initializer(graph, f"{base}.mask_bits", pack_bits(rows != 0)),
            add_initializer(graph, f"{base}.scale", scale.astype(np.float32)),
        )


def _base(node: ir.Node) -> str:
    """Stem for the initializers a packed node owns: its name, else its output's name."""
    return node.name or node.outputs[0].name or node.op_type
