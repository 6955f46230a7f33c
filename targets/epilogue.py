"""Which elementwise nodes after a ``BinaryConv`` (or a float ``Conv`` that an mptc kernel computes:
depthwise, Winograd; or an int8 ``BinaryDense``) its kernel's epilogue absorbs.

ResNet blocks end in ``conv -> Add(residual) [-> Relu]``, MPT-1/32 convs in ``conv -> Relu`` and
MobileNet's in ``conv -> Clip(0, 6)`` (ReLU6).
Run as their own kernels, the add and the clamp are each one more pass over the activations
(about 10% of a binarized ResNet-18's time). The conv kernels' float epilogue already holds
``scale * acc + bias`` in registers; it adds the residual and clamps there instead, and the
absorbed nodes become the identity of that result.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from mptc.ops.reference import DOMAIN

ONNX_DOMAINS = ("", "ai.onnx")


@dataclass(frozen=True)
class Epilogue:
    """The chain a conv absorbs: ``y = conv(x) [+ residual] [then max(y, 0) [then min(y, upper)]]``."""

    residual: str | None  # the tensor added to the conv's output
    relu: bool
    nodes: tuple[str, ...]  # names of the absorbed nodes, in graph order
    upper: float | None = None  # a Clip(0, upper)'s bound (ReLU6: 6)

    @property
    def label(self) -> str:
        clamp = "relu" if self.upper is None else f"clip(0, {self.upper:g})"
        return "+".join(["add"] * (self.residual is not None) + [clamp] * self.relu)


def epilogues(graph: onnx.GraphProto) -> dict[str, Epilogue]:
    """The absorbable chain of every ``ai.mptc`` layer and float ``Conv`` with a constant weight
    (:func:`has_constant_weight`) that has one, by node name (of a dense layer, only the int8 kernel
    takes one, and only without a residual). A chain is absorbed only where the
    converter of its conv takes it (``frontend``); else its nodes are converted as they are.

    A node joins the chain when it is the only reader of the chain's tensor, which is no graph
    output: first an ``Add`` of that tensor and one produced before the conv (a graph input or an
    earlier node's output, so it exists when the conv runs), then a ``Relu`` or a ``Clip`` with
    constant bounds 0 and ``upper > 0`` (ReLU6); or just one of those.
    Nodes are known by name: unnamed or duplicate names are left alone. Shapes (no broadcasting)
    are checked where they are known, by the converter.
    """
    names = Counter(node.name for node in graph.node)
    readers: dict[str, list[onnx.NodeProto]] = {}
    produced_at: dict[str, int] = {}
    for position, node in enumerate(graph.node):
        for name in node.input:
            readers.setdefault(name, []).append(node)
        for name in node.output:
            produced_at[name] = position
    outputs = {o.name for o in graph.output}
    # the tensors as protos: a conv's weight is judged by its dims, only a Clip's bounds are read
    constants = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ONNX_DOMAINS and len(node.attribute) == 1:
            if node.attribute[0].name == "value":
                constants[node.output[0]] = node.attribute[0].t

    def only_reader(tensor: str) -> onnx.NodeProto | None:
        nodes = readers.get(tensor, [])
        if tensor in outputs or len(nodes) != 1 or not nodes[0].name or names[nodes[0].name] != 1:
            return None
        return nodes[0] if nodes[0].domain in ONNX_DOMAINS else None

    chains = {}
    for position, node in enumerate(graph.node):
        binary = node.domain == DOMAIN and node.op_type in ("BinaryConv", "BinaryDense")
        if not (binary or has_constant_weight(node, constants)) or not node.name or names[node.name] != 1:
            continue
        tensor, residual, absorbed = node.output[0], None, []
        reader = only_reader(tensor)
        if (
            reader is not None
            and reader.op_type == "Add"
            and len(reader.input) == 2
            and list(reader.input).count(tensor) == 1
        ):
            other = next(i for i in reader.input if i != tensor)
            if produced_at.get(other, -1) < position:
                residual, tensor = other, reader.output[0]
                absorbed.append(reader.name)
                reader = only_reader(tensor)
        upper = _relu_bound(reader, constants) if reader is not None and reader.op_type == "Clip" else None
        relu = reader is not None and (reader.op_type == "Relu" or upper is not None)
        if relu:
            absorbed.append(reader.name)
        if absorbed:
            chains[node.name] = Epilogue(residual, relu, tuple(absorbed), upper)
    return chains


def has_constant_weight(node: onnx.NodeProto, constants: dict[str, onnx.TensorProto]) -> bool:
    """An ONNX ``Conv`` whose weight is a 4-D constant: the frontend's depthwise and Winograd
    converters take the ones their kernels compute (TVM's converter, which absorbs nothing, the rest)."""
    if node.op_type != "Conv" or node.domain not in ONNX_DOMAINS or len(node.input) < 2:
        return False
    weight = constants.get(node.input[1])
    return weight is not None and len(weight.dims) == 4


def _relu_bound(clip: onnx.NodeProto, constants: dict[str, onnx.TensorProto]) -> float | None:
    """``upper`` of a ``Clip(x, 0, upper)`` with one-element constant bounds and ``upper > 0``, else None."""
    if len(clip.input) != 3 or not all(clip.input[1:]):
        return None
    low, high = (constants.get(name) for name in clip.input[1:])
    if low is None or high is None or np.prod(low.dims) != 1 or np.prod(high.dims) != 1:
        return None
    low_value, high_value = (float(numpy_helper.to_array(bound).reshape(())) for bound in (low, high))
    return high_value if low_value == 0.0 and np.isfinite(high_value) and high_value > 0 else None
