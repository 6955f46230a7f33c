"""Small graph helpers the mptc passes share (constants, fresh initializers, op matching)."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir

from mptc.conventions import node_label
from mptc.errors import InputError, first_line
from mptc.ops.reference import DOMAIN, REFERENCE_OPS
from mptc.ops.validate import PackedAttributes, check_attribute_types, check_tensors, packed_attributes


def read_ir(model: onnx.ModelProto) -> ir.Model:
    """``ir.from_proto``, with the file blamed: onnx parses bit rot (a name that is not UTF-8,
    a function that does not resolve) that onnx_ir then cannot read, and that is a bad input."""
    try:
        return ir.from_proto(model)
    except ir.serde.SerdeError as error:
        raise InputError(f"not a usable ONNX model: {root_message(error)}") from error


def root_message(error: BaseException) -> str:
    """The first line of the innermost cause (onnx_ir wraps the real problem in layers)."""
    while error.__cause__ is not None:
        error = error.__cause__
    return first_line(error)


def constant_array(value: ir.Value | None) -> np.ndarray | None:
    """The value's constant contents, or None when it is computed or can be fed at run time.

    An initializer that is also a graph input is not a constant: a caller may override it.
    """
    if value is None or value.is_graph_input():
        return None
    try:
        tensor = ir.convenience.get_const_tensor(value)
        return None if tensor is None else tensor.numpy()
    except ValueError as error:  # data that does not fill the declared shape
        raise InputError(
            f"initializer {value.name!r} does not match its declared shape: {root_message(error)}"
        ) from error


PACKED_INPUTS = ("X", "sign_bits", "mask_bits", "scale", "bias")
"""The inputs of every ``ai.mptc`` operator, in order (docs/operators.md)."""


def check_packed(node: ir.Node) -> PackedAttributes:
    """The attributes of ``node``, an ``ai.mptc`` operator, once :mod:`mptc.ops.validate` found
    it well-formed (else :class:`InputError`): its inputs, attributes, constant tensors and, where
    shape inference told it, its input's shape.

    The packing pass only makes well-formed ones; a model packed elsewhere or edited by hand is
    read by the folds and by ``inspect``, which index the inputs and compute with the attributes.
    """
    where = label(node)
    if node.op_type not in [op.__name__ for op in REFERENCE_OPS]:
        raise InputError(f"{where}: unknown operator {DOMAIN}::{node.op_type}, expected BinaryConv or BinaryDense")
    if len(node.inputs) != len(PACKED_INPUTS) or any(v is None for v in node.inputs) or len(node.outputs) != 1:
        raise InputError(
            f"{where} has {len(node.inputs)} inputs and {len(node.outputs)} outputs; "
            f"it takes {len(PACKED_INPUTS)} ({', '.join(PACKED_INPUTS)}) and gives one"
        )
    check_attribute_types(where, node.op_type, {name: attr.type.value for name, attr in node.attributes.items()})
    attributes = packed_attributes(where, node.op_type, {name: attr.value for name, attr in node.attributes.items()})
    x = node.inputs[0]
    x_shape = None if x is None or x.shape is None else tuple(x.shape)
    sign_bits, mask_bits, scale, bias = (constant_array(value) for value in node.inputs[1:])
    check_tensors(where, attributes, sign_bits, mask_bits, scale, bias, x_shape)
    return attributes


def check_packed_graph(model: ir.Model) -> None:
    """:func:`check_packed` for every ``ai.mptc`` operator of ``model``'s graph."""
    for node in model.graph:
        if is_mptc(node):
            check_packed(node)


class Skip(Exception):
    """A candidate node a pass leaves as it is; the message says why.

    Each pass keeps ``"<node label>: <reason>"`` per candidate in its ``skipped`` list, which
    ``mptc optimize -v`` prints and the "nothing to pack" error quotes.
    """


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
    """:func:`~mptc.conventions.node_label` of an onnx_ir node: ``name (op_type)``."""
    return node_label(node.name, node.op_type, (value.name for value in node.outputs))
