"""QONNX interchange form, for FINN / hls4ml / Brevitas users.

Ternary weights become ``Quant(W, scale=alpha, zeropt=0, bitwidth=2; signed=1, narrow=1)``
and our sign ``Where(x >= 0, 1, -1)`` becomes ``BipolarQuant(x, scale=1)`` (QONNX's sign also
maps 0 to +1), both in domain ``qonnx.custom_op.general``. The result is checked against the
standard ONNX model with NumPy references of the two QONNX operators.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun

from mptc.conventions import ternary_scale
from mptc.errors import VerificationError
from mptc.verify import require_finite

QONNX_DOMAIN = "qonnx.custom_op.general"
WEIGHT_INPUT = {"Conv": 1, "Gemm": 1, "MatMul": 1}


class Quant(OpRun):
    """QONNX ``Quant``: ``scale * clip(round(x / scale), min, max)`` (zero point 0 here)."""

    op_domain = QONNX_DOMAIN

    def _run(self, x, scale, zeropt, bitwidth, signed=1, narrow=0, rounding_mode="ROUND"):  # type: ignore[override]
        bits = int(np.asarray(bitwidth))
        low = -(2 ** (bits - 1)) + int(narrow) if signed else 0
        high = 2 ** (bits - 1) - 1 if signed else 2**bits - 1 - int(narrow)
        q = np.clip(np.round(x / scale + zeropt), low, high)
        return (((q - zeropt) * scale).astype(np.float32),)


class BipolarQuant(OpRun):
    """QONNX ``BipolarQuant``: ``scale * (+1 if x >= 0 else -1)``."""

    op_domain = QONNX_DOMAIN

    def _run(self, x, scale):  # type: ignore[override]
        return ((np.where(x >= 0, 1.0, -1.0) * scale).astype(np.float32),)


def _constant(graph: onnx.GraphProto, name: str) -> np.ndarray | None:
    for init in graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return (
                numpy_helper.to_array(node.attribute[0].t)
                if node.attribute[0].type == onnx.AttributeProto.TENSOR
                else np.asarray(helper.get_attribute_value(node.attribute[0]))
            )
    return None


def _is_sign(graph: onnx.GraphProto, node: onnx.NodeProto, producers: dict[str, onnx.NodeProto]) -> str | None:
    """The sign's input if ``node`` is ``Where(GreaterOrEqual(x, 0), 1, -1)``, else None."""
    if node.op_type != "Where":
        return None
    compare = producers.get(node.input[0])
    if compare is None or compare.op_type != "GreaterOrEqual":
        return None
    zero, plus, minus = (_constant(graph, name) for name in (compare.input[1], node.input[1], node.input[2]))
    if any(v is None or v.size != 1 for v in (zero, plus, minus)):
        return None
    return compare.input[0] if (float(zero) == 0 and float(plus) == 1 and float(minus) == -1) else None


def _without_dead_nodes(nodes: list[onnx.NodeProto], outputs: set[str]) -> list[onnx.NodeProto]:
    """Drop nodes none of whose outputs is read (the replaced sign's compare and constants)."""
    while True:
        read = {name for node in nodes for name in node.input} | outputs
        live = [node for node in nodes if any(out in read for out in node.output)]
        if len(live) == len(nodes):
            return live
        nodes = live


def to_qonnx(model: onnx.ModelProto, check_input: np.ndarray, expected: np.ndarray) -> onnx.ModelProto:
    """Rewrite a standard mptc export into QONNX and verify it computes ``expected``."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output}
    nodes: list[onnx.NodeProto] = []
    constants = [
        numpy_helper.from_array(np.zeros((), np.float32), "qonnx_zeropt"),
        numpy_helper.from_array(np.array(2.0, np.float32), "qonnx_bitwidth2"),
        numpy_helper.from_array(np.array(1.0, np.float32), "qonnx_unit_scale"),
    ]
    for node in graph.node:
        source = _is_sign(graph, node, producers)
        if source is not None:
            nodes.append(
                helper.make_node(
                    "BipolarQuant",
                    [source, "qonnx_unit_scale"],
                    list(node.output),
                    name=f"{node.name}_bipolar",
                    domain=QONNX_DOMAIN,
                )
            )
            continue
        index = WEIGHT_INPUT.get(node.op_type)
        weight = _constant(graph, node.input[index]) if index is not None and len(node.input) > index else None
        alpha = ternary_scale(weight) if weight is not None and weight.ndim >= 2 else None
        transposed = node.op_type == "MatMul" or (
            node.op_type == "Gemm" and not any(a.name == "transB" and a.i == 1 for a in node.attribute)
        )
        if alpha is not None:
            name = node.input[index]
            shape = (1, -1) if transposed else (-1,) + (1,) * (weight.ndim - 1)
            scale = alpha.reshape(shape) if not np.allclose(alpha, alpha[0]) else np.array(alpha[0], np.float32)
            constants.append(numpy_helper.from_array(scale.astype(np.float32), f"{name}_quant_scale"))
            nodes.append(
                helper.make_node(
                    "Quant",
                    [name, f"{name}_quant_scale", "qonnx_zeropt", "qonnx_bitwidth2"],
                    [f"{name}_quant"],
                    name=f"{name}_quant",
                    domain=QONNX_DOMAIN,
                    signed=1,
                    narrow=1,
                    rounding_mode="ROUND",
                )
            )
            node.input[index] = f"{name}_quant"
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(_without_dead_nodes(nodes, {o.name for o in graph.output}))
    graph.initializer.extend(constants)
    model.opset_import.append(helper.make_opsetid(QONNX_DOMAIN, 1))
    actual = ReferenceEvaluator(model, new_ops=[Quant, BipolarQuant]).run(None, {graph.input[0].name: check_input})[0]
    require_finite(actual, "the QONNX model's logits")
    if (
        not np.allclose(actual, expected, rtol=1e-3, atol=1e-4)
        or (actual.argmax(1) != expected.argmax(1)).mean() > 0.01
    ):
        raise VerificationError(
            f"QONNX model disagrees with the ONNX export (max abs diff {np.abs(actual - expected).max():.3g})"
        )
    return model
