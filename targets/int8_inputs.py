"""Which ``QuantizeLinear -> DequantizeLinear`` pairs become an int8 layer's own quantization.

``mptc compile --activations int8`` (``passes.quantize_activations``) writes a uint8 QDQ pair
before each real-input ``ai.mptc`` layer. On a CPU target the importer does not run the
pair: the layer's kernel (``kernels.int8_dense``) takes the float input and quantizes it in
registers with the same scale and zero point, so the pair's nodes pass their input through and
the quantized tensor never exists in memory. Any other QDQ pair stays TVM's to convert.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from mptc.ops.reference import DOMAIN

INT8_OPS = frozenset({"BinaryConv", "BinaryDense"})
QDQ_DOMAINS = ("", "ai.onnx")


@dataclass(frozen=True)
class Int8Input:
    """A layer's uint8 input quantization, folded from the QDQ pair ``nodes`` (by name)."""

    scale: float
    zero_point: int
    nodes: tuple[str, str]  # the QuantizeLinear and the DequantizeLinear


def int8_inputs(
    graph: onnx.GraphProto, ops: frozenset[str] = INT8_OPS, conv_below: float | None = None
) -> dict[str, Int8Input]:
    """The layers of ``ops`` (by name) whose input is a uint8 QDQ pair the int8 kernel folds; with
    ``conv_below``, only the convs of a lower sparsity (:func:`mask_sparsity`): a sparser conv's
    real-input kernel does less work than the dense integer sums (``KernelPolicy.int8_conv_below``).

    A pair qualifies when the ``DequantizeLinear`` feeds only a real-input ``ai.mptc`` layer
    as its ``X``, the ``QuantizeLinear`` only that ``DequantizeLinear``, neither output is a graph
    output, both read the same scalar constants (a positive finite float32 scale, a uint8 zero
    point, no attribute but ``axis``, which a scalar ignores) and every node on the way has a
    unique name (the converters know nodes by name)."""
    names = Counter(node.name for node in graph.node)
    producer = {output: node for node in graph.node for output in node.output}
    readers = Counter(name for node in graph.node for name in node.input)
    outputs = {output.name for output in graph.output}
    constants = {tensor.name: tensor for tensor in graph.initializer}

    def single_use(tensor: str) -> bool:
        return readers[tensor] == 1 and tensor not in outputs

    def scalar(name: str) -> np.ndarray | None:
        tensor = constants.get(name)
        return None if tensor is None or list(tensor.dims) else numpy_helper.to_array(tensor)

    found = {}
    for node in graph.node:
        if not (node.domain == DOMAIN and node.op_type in ops and _real_input(node)) or not node.input:
            continue
        if node.op_type == "BinaryConv" and conv_below is not None and mask_sparsity(node, constants) >= conv_below:
            continue
        dq = producer.get(node.input[0])
        q = producer.get(dq.input[0]) if dq is not None and dq.input else None
        if dq is None or q is None or dq.op_type != "DequantizeLinear" or q.op_type != "QuantizeLinear":
            continue
        if dq.domain not in QDQ_DOMAINS or q.domain not in QDQ_DOMAINS or len(q.input) != 3 or len(dq.input) != 3:
            continue
        if list(q.input[1:]) != list(dq.input[1:]) or not (single_use(dq.output[0]) and single_use(q.output[0])):
            continue
        if any(names[n.name] != 1 or not n.name for n in (node, q, dq)) or _attributes(q, dq) - {"axis"}:
            continue
        scale, zero_point = scalar(q.input[1]), scalar(q.input[2])
        if scale is None or zero_point is None or scale.dtype != np.float32 or zero_point.dtype != np.uint8:
            continue
        if not (np.isfinite(scale) and scale > 0):
            continue
        found[node.name] = Int8Input(float(scale), int(zero_point), (q.name, dq.name))
    return found


def without_int8_inputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with the QDQ pairs :func:`int8_inputs` finds taken out (and their constants, where
    nothing else reads them): the fp32 network the int8 one was quantized from, for the peers."""
    found = int8_inputs(model.graph)
    if not found:
        return model
    plain = onnx.ModelProto()
    plain.CopyFrom(model)
    dropped = {name for quantized in found.values() for name in quantized.nodes}
    sources = {node.output[0]: node.input[0] for node in plain.graph.node if node.name in dropped}
    kept = [node for node in plain.graph.node if node.name not in dropped]
    for node in kept:
        if node.name in found:
            node.input[0] = sources[sources[node.input[0]]]  # DequantizeLinear <- QuantizeLinear <- x
    del plain.graph.node[:]
    plain.graph.node.extend(kept)
    read = {name for node in kept for name in node.input} | {output.name for output in plain.graph.output}
    unread = [tensor for tensor in plain.graph.initializer if tensor.name not in read]
    for tensor in unread:
        plain.graph.initializer.remove(tensor)
    return plain


def _attributes(*nodes: onnx.NodeProto) -> set[str]:
    return {a.name for node in nodes for a in node.attribute}


def mask_sparsity(node: onnx.NodeProto, constants: dict[str, onnx.TensorProto]) -> float:
    """The fraction of a layer's weights its ``mask_bits`` prune, over the mask's whole bytes (exact
    where a row's weights fill whole bytes; the pad bits, never kept, count as pruned); 0 where
    the mask is not a constant."""
    mask = constants.get(node.input[2]) if len(node.input) > 2 else None
    if mask is None:
        return 0.0
    bits = numpy_helper.to_array(mask)
    return float(1.0 - np.unpackbits(bits.astype(np.uint8)).sum() / (8 * bits.size)) if bits.size else 0.0


def _real_input(node: onnx.NodeProto) -> bool:
    mode = next((a.s for a in node.attribute if a.name == "input_mode"), b"real")
    return mode == b"real"
