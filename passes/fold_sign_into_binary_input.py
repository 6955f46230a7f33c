"""Fold the sign that feeds an ``ai.mptc`` operator into its ``input_mode="binary"``."""

from __future__ import annotations

import logging

import numpy as np
import onnx_ir as ir

from mptc.passes._graph import constant_array, is_mptc, is_op, label

logger = logging.getLogger(__name__)

# Comparisons with zero that select the +1 branch exactly when x >= 0 (so sign(0) = +1), as
# (op_type, index of x, index of the zero constant, whether true means x >= 0).
_COMPARISONS = (
    ("GreaterOrEqual", 0, 1, True),
    ("LessOrEqual", 1, 0, True),
    ("Less", 0, 1, False),
    ("Greater", 1, 0, False),
)


def sign_source(value: ir.Value | None) -> ir.Value | None:
    """``x`` when ``value`` is the project's sign of ``x`` (sign(0) = +1), else None.

    Accepted forms: ``Where(x >= 0, 1, -1)``, its mirror ``Where(0 <= x, 1, -1)`` and the
    negated ``Where(x < 0, -1, 1)`` / ``Where(0 > x, -1, 1)``, with the scalars as initializers or
    Constant nodes of any shape with one element (what PyTorch's exporters write).
    """
    where = value.producer() if value is not None else None
    if not is_op(where, "Where") or len(where.inputs) != 3:
        return None
    compare = where.inputs[0].producer() if where.inputs[0] is not None else None
    for op_type, x_index, zero_index, true_is_non_negative in _COMPARISONS:
        if is_op(compare, op_type):
            break
    else:
        return None
    if not _is_scalar(constant_array(compare.inputs[zero_index]), 0.0):
        return None
    positive, negative = (1, 2) if true_is_non_negative else (2, 1)
    plus, minus = constant_array(where.inputs[positive]), constant_array(where.inputs[negative])
    return compare.inputs[x_index] if _is_scalar(plus, 1.0) and _is_scalar(minus, -1.0) else None


# Ops f with f(sign(x)) == sign(f(x)) exactly: reshapes move elements, and sign is monotone, so the
# max of signs is the sign of the max (MaxPool pads with -inf, which never wins against a sign).
_COMMUTE_WITH_SIGN = ("Flatten", "Reshape", "MaxPool")


def _sign_through(graph: ir.Graph, node: ir.Node) -> ir.Value | None:
    """For ``node(f_1(...f_k(sign(x))))`` with every f in ``_COMMUTE_WITH_SIGN``: insert the chain
    ``f_1(...f_k(x))`` before ``node`` and return its output.

    This lets a conv stack's classifier head (MaxPool, Flatten) and a conv after pooling take the
    binary input too. The original chain stays for its other users and for cleanup.
    """
    chain: list[ir.Node] = []
    value = node.inputs[0]
    while value is not None:
        producer = value.producer()
        if not any(is_op(producer, op) for op in _COMMUTE_WITH_SIGN) or len(producer.outputs) != 1:
            break
        chain.append(producer)
        value = producer.inputs[0]
    x = sign_source(value)
    if not chain or x is None:
        return None
    for between in reversed(chain):
        moved = ir.node(
            between.op_type,
            [x, *between.inputs[1:]],
            {name: attr.value for name, attr in between.attributes.items()},
            outputs=[ir.Value(name=f"{between.outputs[0].name}.unsigned")],
            name=f"{between.name or between.outputs[0].name}.unsigned",
        )
        graph.insert_before(node, moved)
        x = moved.outputs[0]
    return x


def _is_scalar(array: np.ndarray | None, expected: float) -> bool:
    """Whether ``array`` is a one-element constant equal to ``expected`` (so it cannot broadcast)."""
    return array is not None and array.size == 1 and float(array.reshape(())) == expected


class FoldSignIntoBinaryInputPass(ir.passes.InPlacePass):
    """Fold a sign producer into the binary input mode of the operator it feeds.

    ``ai.mptc.Binary*(Where(x >= 0, 1, -1), ...; input_mode="real") -> ai.mptc.Binary*(x, ...;
    input_mode="binary")`` (other accepted spellings of the sign: :func:`sign_source`), and through
    a chain of ops that commute with sign, ``Binary*(f(sign(x))) -> Binary*(f(x); input_mode="binary")``
    for f made of Flatten, Reshape and MaxPool (a classifier head, a conv after pooling).

    Precondition: the operator is in ``"real"`` mode (so ``pad_value`` is 0, which pads the signs
    with zeros exactly as Conv padded the Where output). The Where and comparison nodes stay for
    other users; RemoveUnusedNodesPass deletes them when the operator was their only one.

    Left alone: operators already in binary mode, signs with another tie rule (``Sign`` maps 0 to
    0) or with non-scalar branch constants (they could broadcast the shape).
    """

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        modified = False
        for node in model.graph:
            if not is_mptc(node) or node.attributes.get_string("input_mode", "real") != "real":
                continue
            source = sign_source(node.inputs[0]) or _sign_through(model.graph, node)
            if source is None:
                continue
            node.replace_input_with(0, source)
            node.attributes["input_mode"] = ir.AttrString("input_mode", "binary")
            logger.info("folded the sign feeding %s into input_mode=binary", label(node))
            modified = True
        return ir.passes.PassResult(model, modified=modified)
