"""Fold the sign that feeds an ``ai.mptc`` operator into its ``input_mode="binary"``."""

from __future__ import annotations

import logging

import numpy as np
import onnx_ir as ir

from mptc.passes._graph import Skip, check_packed_graph, constant_array, is_mptc, is_op, label

logger = logging.getLogger(__name__)

# Comparisons with zero that select the +1 branch exactly when x >= 0 (so sign(0) = +1), as
# op_type -> (index of x, index of the zero constant, whether true means x >= 0).
_COMPARISONS = {
    "GreaterOrEqual": (0, 1, True),
    "LessOrEqual": (1, 0, True),
    "Less": (0, 1, False),
    "Greater": (1, 0, False),
}


def sign_source(value: ir.Value | None) -> ir.Value | None:
    """``x`` when ``value`` is the project's sign of ``x`` (sign(0) = +1); None when no Where or
    Sign produces ``value`` (nothing that looks like a sign).

    Accepted forms: ``Where(x >= 0, 1, -1)``, its mirror ``Where(0 <= x, 1, -1)`` and the
    negated ``Where(x < 0, -1, 1)`` / ``Where(0 > x, -1, 1)``, with the scalars as initializers or
    Constant nodes of any shape with one element (what PyTorch's exporters write).

    Raises:
        Skip: a Where or Sign that is not that sign; the message says why.
    """
    where = value.producer() if value is not None else None
    if is_op(where, "Sign"):
        raise Skip(f"{label(where)} maps 0 to 0; only a sign with sign(0) = +1 folds, Where(x >= 0, 1, -1)")
    if not is_op(where, "Where"):
        return None
    compare = where.inputs[0].producer() if len(where.inputs) == 3 and where.inputs[0] is not None else None
    form = next((f for op_type, f in _COMPARISONS.items() if is_op(compare, op_type)), None)
    if form is None:
        raise Skip(f"{label(where)} does not select on a comparison with 0 (>=, <=, < or >)")
    x_index, zero_index, true_is_non_negative = form
    if not _is_scalar(constant_array(compare.inputs[zero_index]), 0.0):
        if _is_scalar(constant_array(compare.inputs[x_index]), 0.0):
            raise Skip(f"{label(compare)} is not one of x >= 0, 0 <= x, x < 0, 0 > x, the forms with sign(0) = +1")
        raise Skip(f"{label(compare)} does not compare with a one-element constant 0")
    positive, negative = (1, 2) if true_is_non_negative else (2, 1)
    plus, minus = constant_array(where.inputs[positive]), constant_array(where.inputs[negative])
    if not (_is_scalar(plus, 1.0) and _is_scalar(minus, -1.0)):
        raise Skip(f"{label(where)} does not pick the one-element constants +1 for x >= 0 and -1 below")
    return compare.inputs[x_index]


# Ops f with f(sign(x)) == sign(f(x)) exactly: reshapes move elements, and sign is monotone, so the
# max of signs is the sign of the max (MaxPool pads with -inf, which never wins against a sign).
_COMMUTE_WITH_SIGN = ("Flatten", "Reshape", "MaxPool")


def _signed_input(node: ir.Node) -> tuple[list[ir.Node], ir.Value] | None:
    """``(chain, x)`` when ``node`` reads ``f_1(...f_k(sign(x)))`` with every f in
    ``_COMMUTE_WITH_SIGN`` (``chain`` = f_1 .. f_k, possibly none); None when no sign feeds it.

    The chain lets a conv stack's classifier head (MaxPool, Flatten) and a conv after pooling
    take the binary input too.

    Raises:
        Skip: the chain ends at a Where or Sign that is not the project's sign.
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
    return None if x is None else (chain, x)


def _move_before(graph: ir.Graph, node: ir.Node, chain: list[ir.Node], x: ir.Value) -> ir.Value:
    """Insert ``f_1(...f_k(x))`` before ``node`` and return its output; the original chain stays
    for its other users and for cleanup."""
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

    Precondition (:meth:`requires`): every ``ai.mptc`` operator is well formed (five inputs, one
    output). Postcondition (:meth:`ensures`): no operator in ``"real"`` mode still reads the sign.
    Only ``"real"`` operators are candidates (their ``pad_value`` 0 pads the signs with zeros
    exactly as Conv padded the Where output). The Where and comparison nodes stay for other users;
    RemoveUnusedNodesPass deletes them when the operator was their only one.

    Left alone: operators already in binary mode and operators that read no Where or Sign; and,
    with the reason logged and kept in :attr:`skipped` under the operator's label, signs with
    another tie rule (``Sign`` maps 0 to 0) or with non-scalar branch constants (they could
    broadcast the shape).
    """

    def __init__(self) -> None:
        super().__init__()
        self.skipped: list[str] = []

    def requires(self, model: ir.Model) -> None:
        check_packed_graph(model)

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        self.skipped = []
        modified = False
        for node in model.graph:
            if not _is_real(node):
                continue
            try:
                signed = _signed_input(node)
            except Skip as reason:
                self.skipped.append(f"{label(node)}: {reason}")
                logger.info("left %s as it is: %s", label(node), reason)
                continue
            if signed is None:
                continue
            node.replace_input_with(0, _move_before(model.graph, node, *signed))
            node.attributes["input_mode"] = ir.AttrString("input_mode", "binary")
            logger.info("folded the sign feeding %s into input_mode=binary", label(node))
            modified = True
        return ir.passes.PassResult(model, modified=modified)

    def ensures(self, model: ir.Model) -> None:
        for node in model.graph:
            try:
                signed = _signed_input(node) if _is_real(node) else None
            except Skip:
                continue
            if signed is not None:
                raise ir.passes.PostconditionError(f"{label(node)} still reads a sign in input_mode=real")


def _is_real(node: ir.Node) -> bool:
    """Whether ``node`` is an ``ai.mptc`` operator in ``input_mode="real"`` (a candidate)."""
    return is_mptc(node) and node.attributes.get_string("input_mode", "real") == "real"
