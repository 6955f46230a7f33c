"""Small graph helpers the mptc passes share (constants, fresh initializers, op matching)."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from mptc.ops.reference import DOMAIN


def constant_array(value: ir.Value | None) -> np.ndarray | None:
    """The value's constant contents, or None when it is computed or can be fed at run time.

    An initializer that is also a graph input is not a constant: a caller may override it.
    """
    if value is None or value.is_graph_input():
        return None
    tensor = ir.convenience.get_const_tensor(value)
    return None if tensor is None else tensor.numpy()


def add_initializer(graph: ir.Graph, base_name: str, array: np.ndarray) -> ir.Value:
    """Register ``array`` as a new initializer named ``base_name`` (suffixed when taken)."""
    name, suffix = base_name, 1
    while name in graph.initializers:
        name, suffix = f"{base_name}_{suffix}", suffix + 1
    value = ir.Value(
        name=name,
        shape=ir.Shape(array.shape),
        type=ir.TensorType(ir.DataType.from_numpy(array.dtype)),
        const_value=ir.tensor(array, name=name),
    )
    graph.register_initializer(value)
    return value


def replace_constant_input(graph: ir.Graph, node: ir.Node, index: int, base_name: str, array: np.ndarray) -> None:
    """Feed ``array`` to input ``index`` of ``node`` as a new initializer.

    The old input's initializer is dropped first when ``node`` was its only user, so a folded
    parameter keeps its name (``conv1.scale``) instead of gaining a suffix.
    """
    old = node.inputs[index]
    node.replace_input_with(index, None)
    if old is not None and old.is_initializer() and not old.uses() and not old.is_graph_output():
        del graph.initializers[old.name]
    node.replace_input_with(index, add_initializer(graph, base_name, array))


def is_op(node: ir.Node | None, op_type: str, domain: str = "") -> bool:
    """Whether ``node`` exists and is ``domain::op_type`` (the ONNX domain by default)."""
    domains = {"", "ai.onnx"} if domain in ("", "ai.onnx") else {domain}
    return node is not None and node.op_type == op_type and node.domain in domains


def is_mptc(node: ir.Node) -> bool:
    """Whether ``node`` is one of the ``ai.mptc`` operators."""
    return node.domain == DOMAIN


def label(node: ir.Node) -> str:
    """``name (op_type)`` for messages; unnamed nodes are called by their first output."""
    name = node.name or (node.outputs[0].name if node.outputs else "") or "<unnamed>"
    return f"{name} ({node.op_type})"
