"""Fold the sign that feeds an ``ai.mptc`` operator into its ``input_mode`` (``"binary"`` or ``"sign"``)."""

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


QONNX_DOMAINS = ("qonnx.custom_op.general", "finn.custom_op.general")
"""Domains of QONNX's ``BipolarQuant`` (``finn`` is its older name)."""

_ACCEPTED = "Where(x >= 0, 1, -1) or another spelling of docs/operators.md"


def sign_source(value: ir.Value | None) -> tuple[ir.Value, str] | None:
    """``(x, input_mode)`` when ``value`` is a sign of ``x``: ``"binary"`` for the project's sign
    (sign(0) = +1, docs/operators.md), ``"sign"`` for ONNX ``Sign(x)`` (sign(0) = 0); None when
    nothing that looks like a sign produces ``value``.

    Spellings of sign(0) = +1, each exactly ``+1 if x >= 0 else -1`` for every float x (0 and -0
    give +1):

    - ``Where(x >= 0, P, M)``, its mirror ``Where(0 <= x, P, M)`` and the negated
      ``Where(x < 0, M, P)`` / ``Where(0 > x, M, P)``, where P and M are provably all +1 and all -1
      (:func:`_fill`: constants of any shape, ``ConstantOfShape``, ``Expand``, ``Neg``, ``Mul``,
      what ``torch.where(x >= 0, ones_like(x), -ones_like(x))`` exports) and do not broadcast the
      result past ``x``'s shape;
    - Larq's ``Sign(Sign(x) + c)`` with a constant 0 < c < 1 (``Sign(x)`` in {-1, 0, 1} moves to
      {c - 1 < 0, c > 0, 1 + c > 0});
    - ``2 * Cast(x >= 0) - 1`` as ``Sub(Mul(2, Cast(c)), 1)`` or ``Add(Mul(Cast(c), 2), -1)``
      (either operand order of Mul and Add), Cast to float, c one of ``x >= 0`` / ``0 <= x``;
    - QONNX ``BipolarQuant(x, scale)`` with scale 1 (its output is ``scale * sign(x)``).

    Any other ONNX ``Sign(v)`` folds as ``"sign"`` of ``v``: exact, zeros stay zeros.

    Raises:
        Skip: a sign-like producer that is not a sign; the message says why.
    """
    producer = value.producer() if value is not None else None
    if producer is None:
        return None
    if any(is_op(producer, "BipolarQuant", domain) for domain in QONNX_DOMAINS):
        return _bipolar_quant_source(producer), "binary"
    if is_op(producer, "Sign"):
        larq = _larq_source(producer)
        if larq is not None:
            return larq, "binary"
        return (producer.inputs[0], "sign") if producer.inputs and producer.inputs[0] is not None else None
    if is_op(producer, "Where"):
        return _where_source(producer), "binary"
    if is_op(producer, "Sub") or is_op(producer, "Add"):
        x = _affine_source(producer)
        return None if x is None else (x, "binary")
    return None


def _where_source(where: ir.Node) -> ir.Value:
    """``x`` of ``Where(x >= 0, P, M)`` (or a mirrored/negated comparison), P all +1, M all -1."""
    compare = where.inputs[0].producer() if len(where.inputs) == 3 and where.inputs[0] is not None else None
    form = next((f for op_type, f in _COMPARISONS.items() if is_op(compare, op_type)), None)
    if compare is None or form is None:
        raise Skip(f"{label(where)} does not select on a comparison with 0 (>=, <=, < or >)")
    x = _compared_with_zero(compare, form)
    positive, negative = (1, 2) if form[2] else (2, 1)
    plus, minus = _fill(where.inputs[positive]), _fill(where.inputs[negative])
    if plus is None or minus is None or plus[0] != 1.0 or minus[0] != -1.0:
        raise Skip(f"{label(where)} does not pick all +1 for x >= 0 and all -1 below")
    if not all(_fits(part, x) for part in plus[1] + minus[1]):
        raise Skip(f"{label(where)} picks +1/-1 tensors that may broadcast past the shape of {x.name!r}")
    return x


def _compared_with_zero(compare: ir.Node, form: tuple[int, int, bool]) -> ir.Value:
    """The ``x`` of a comparison of ``x`` with a one-element constant 0."""
    x_index, zero_index, _ = form
    x = compare.inputs[x_index]
    if not _is_scalar(constant_array(compare.inputs[zero_index]), 0.0) or x is None:
        if _is_scalar(constant_array(compare.inputs[x_index]), 0.0):
            raise Skip(f"{label(compare)} is not one of x >= 0, 0 <= x, x < 0, 0 > x, the forms with sign(0) = +1")
        raise Skip(f"{label(compare)} does not compare with a one-element constant 0")
    return x


def _larq_source(outer: ir.Node) -> ir.Value | None:
    """``x`` of Larq's ``Sign(Sign(x) + c)``, 0 < c < 1; None for any other Sign (an exact ONNX
    ``Sign`` of its input)."""
    add = outer.inputs[0].producer() if outer.inputs and outer.inputs[0] is not None else None
    if not is_op(add, "Add") or len(add.inputs) != 2:
        return None
    for inner_index in (0, 1):
        inner, c = add.inputs[inner_index], add.inputs[1 - inner_index]
        sign = inner.producer() if inner is not None else None
        if not is_op(sign, "Sign") or sign.inputs[0] is None:
            continue
        constant = constant_array(c)
        if constant is None or constant.size != 1 or not 0.0 < float(constant.reshape(())) < 1.0:
            return None
        if not _fits(tuple(constant.shape), sign.inputs[0]):
            return None
        return sign.inputs[0]
    return None


def _affine_source(node: ir.Node) -> ir.Value | None:
    """``x`` of ``2 * Cast(x >= 0) - 1`` (as Sub or Add of -1); None when no Cast of a comparison is in it."""
    if len(node.inputs) != 2:
        return None
    orders = [(0, 1)] if node.op_type == "Sub" else [(0, 1), (1, 0)]
    offset_wanted = 1.0 if node.op_type == "Sub" else -1.0
    for mul_index, offset_index in orders:
        mul = node.inputs[mul_index].producer() if node.inputs[mul_index] is not None else None
        if not is_op(mul, "Mul") or len(mul.inputs) != 2:
            continue
        for cast_index in (0, 1):
            cast = mul.inputs[cast_index].producer() if mul.inputs[cast_index] is not None else None
            if not is_op(cast, "Cast") or cast.inputs[0] is None:
                continue
            compare = cast.inputs[0].producer()
            form = next((f for op_type, f in _COMPARISONS.items() if is_op(compare, op_type)), None)
            if compare is None or form is None:
                continue
            return _check_affine(
                node, mul, cast, compare, form, (mul.inputs[1 - cast_index], node.inputs[offset_index]), offset_wanted
            )
    return None


def _check_affine(
    node: ir.Node,
    mul: ir.Node,
    cast: ir.Node,
    compare: ir.Node,
    form: tuple[int, int, bool],
    constants: tuple[ir.Value | None, ir.Value | None],
    offset_wanted: float,
) -> ir.Value:
    """``x`` once ``node`` is checked to be ``2 * Cast(x >= 0, float) - 1``; :class:`Skip` otherwise."""
    x = _compared_with_zero(compare, form)
    if not form[2]:
        raise Skip(f"{label(node)} computes 2 * Cast(x < 0) - 1 = -sign(x); only 2 * Cast(x >= 0) - 1 folds")
    if cast.attributes.get_int("to", 0) != ir.DataType.FLOAT.value:
        raise Skip(f"{label(cast)} does not cast to float32")
    gain, offset = (constant_array(c) for c in constants)
    if not (_is_scalar(gain, 2.0) and _is_scalar(offset, offset_wanted)):
        raise Skip(f"{label(node)} is not 2 * Cast(x >= 0) - 1 (gain {_describe(gain)}, offset {_describe(offset)})")
    if not all(_fits(tuple(a.shape), x) for a in (gain, offset) if a is not None):
        raise Skip(f"{label(mul)} uses constants that may broadcast past the shape of {x.name!r}")
    return x


def _bipolar_quant_source(quant: ir.Node) -> ir.Value:
    """``x`` of QONNX ``BipolarQuant(x, scale)`` with every scale 1 (then it is sign(x), sign(0) = +1)."""
    x = quant.inputs[0] if quant.inputs else None
    scale = constant_array(quant.inputs[1]) if len(quant.inputs) > 1 else None
    if x is None or scale is None or scale.size == 0 or not np.all(scale == 1.0):
        raise Skip(f"{label(quant)} has scale {_describe(scale)}; only BipolarQuant with scale 1 folds")
    if not _fits(tuple(scale.shape), x):
        raise Skip(f"{label(quant)} has a scale that may broadcast past the shape of {x.name!r}")
    return x


# A tensor's shape as parts whose broadcast it is: a static shape, or a Value whose shape it is
# (``Shape(v)``). A part fits x when it broadcasts into x's shape without growing it.
_ShapePart = tuple[int, ...] | ir.Value


def _fill(value: ir.Value | None) -> tuple[float, list[_ShapePart]] | None:
    """``(c, parts)`` when ``value`` is provably filled with the one number ``c`` and shaped as the
    broadcast of ``parts``; None when that cannot be shown."""
    if value is None:
        return None
    array = constant_array(value)
    if array is not None:
        flat = array.reshape(-1)
        if array.size == 0 or array.dtype.kind != "f" or not np.all(flat == flat[0]):
            return None
        return float(flat[0]), [tuple(array.shape)]
    node = value.producer()
    if node is None:
        return None
    if is_op(node, "ConstantOfShape"):
        attribute = node.attributes.get("value")
        fill = attribute.value.numpy() if attribute is not None else np.zeros(1, np.float32)
        shape = _shape_part(node.inputs[0] if node.inputs else None)
        if fill.size != 1 or fill.dtype.kind != "f" or shape is None:
            return None
        return float(fill.reshape(())), [shape]
    if is_op(node, "Expand") and len(node.inputs) == 2:
        inner, shape = _fill(node.inputs[0]), _shape_part(node.inputs[1])
        return None if inner is None or shape is None else (inner[0], [*inner[1], shape])
    if is_op(node, "Neg") or is_op(node, "Identity"):
        inner = _fill(node.inputs[0])
        return None if inner is None else ((-inner[0] if node.op_type == "Neg" else inner[0]), inner[1])
    if is_op(node, "Mul") and len(node.inputs) == 2:
        left, right = _fill(node.inputs[0]), _fill(node.inputs[1])
        return None if left is None or right is None else (left[0] * right[0], left[1] + right[1])
    return None


def _shape_part(shape: ir.Value | None) -> _ShapePart | None:
    """The shape a ``shape`` input stands for: its constant contents, or ``v`` for ``Shape(v)``."""
    array = constant_array(shape)
    if array is not None:
        return tuple(int(d) for d in array.reshape(-1)) if array.dtype.kind in "iu" and array.ndim == 1 else None
    node = shape.producer() if shape is not None else None
    whole = node is not None and node.attributes.get_int("start", 0) == 0 and "end" not in node.attributes
    return node.inputs[0] if is_op(node, "Shape") and whole and node.inputs[0] is not None else None


def _fits(part: _ShapePart, x: ir.Value) -> bool:
    """Whether a tensor shaped ``part`` broadcasts into ``x``'s shape without growing it (so the
    sign keeps x's shape). Unknown shapes fit only when ``part`` holds one element."""
    if isinstance(part, ir.Value):
        if part is x:
            return True
        part_shape = part.shape
        if part_shape is None or x.shape is None or not all(isinstance(d, int) for d in part_shape):
            return False
        part = tuple(int(d) for d in part_shape)  # type: ignore[arg-type]
    if x.shape is None:
        return int(np.prod(part)) == 1
    dims = list(x.shape)
    if len(part) > len(dims):
        return False
    return all(d == 1 or dims[len(dims) - len(part) + i] == d for i, d in enumerate(part))


def _describe(array: np.ndarray | None) -> str:
    """A constant for a reason: its value when it has one element, else its shape."""
    if array is None:
        return "that is not a constant"
    return f"{float(array.reshape(()))}" if array.size == 1 else f"of shape {array.shape}"


# Ops f with f(sign(x)) == sign(f(x)) exactly: reshapes move elements, and sign is monotone, so the
# max of signs is the sign of the max (MaxPool pads with -inf, which never wins against a sign).
_COMMUTE_WITH_SIGN = ("Flatten", "Reshape", "MaxPool")


def _signed_input(node: ir.Node) -> tuple[list[ir.Node], ir.Value, str] | None:
    """``(chain, x, input_mode)`` when ``node`` reads ``f_1(...f_k(sign(x)))`` with every f in
    ``_COMMUTE_WITH_SIGN`` (``chain`` = f_1 .. f_k, possibly none; they commute with ONNX ``Sign``
    too, a monotone map); None when no sign feeds it.

    The chain lets a conv stack's classifier head (MaxPool, Flatten) and a conv after pooling
    take the binary input too.

    Raises:
        Skip: the chain ends at a sign-like producer that is not the project's sign.
    """
    chain: list[ir.Node] = []
    value = node.inputs[0]
    while value is not None:
        producer = value.producer()
        if not any(is_op(producer, op) for op in _COMMUTE_WITH_SIGN) or len(producer.outputs) != 1:
            break
        chain.append(producer)
        value = producer.inputs[0]
    found = sign_source(value)
    return None if found is None else (chain, *found)


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
    """Fold a sign producer into the input mode of the operator it feeds.

    ``ai.mptc.Binary*(Where(x >= 0, 1, -1), ...; input_mode="real") -> ai.mptc.Binary*(x, ...;
    input_mode="binary")`` (other spellings of sign(0) = +1: :func:`sign_source`), ONNX
    ``Binary*(Sign(x); "real") -> Binary*(x; input_mode="sign")`` (sign(0) = 0, exact), and
    through a chain of ops that commute with both signs, ``Binary*(f(sign(x))) -> Binary*(f(x))``
    for f made of Flatten, Reshape and MaxPool (a classifier head, a conv after pooling).

    Precondition (:meth:`requires`): every ``ai.mptc`` operator is well formed (five inputs, one
    output). Postcondition (:meth:`ensures`): no operator in ``"real"`` mode still reads a sign.
    Only ``"real"`` operators are candidates (their ``pad_value`` 0 pads the signs with zeros
    exactly as Conv padded the sign's output). The sign nodes stay for other users;
    RemoveUnusedNodesPass deletes them when the operator was their only one.

    Left alone: operators already in binary or sign mode and operators that read nothing
    sign-like; and, with the reason logged and kept in :attr:`skipped` under the operator's label,
    near misses: ``x > 0`` selections (sign(0) = -1), ``2 * Cast(x >= 0) - 1`` with other
    constants, ``BipolarQuant`` with a scale other than 1, branches not provably all +1 / all -1 or
    that could broadcast the shape.
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
            chain, x, mode = signed
            node.replace_input_with(0, _move_before(model.graph, node, chain, x))
            node.attributes["input_mode"] = ir.AttrString("input_mode", mode)
            logger.info("folded the sign feeding %s into input_mode=%s", label(node), mode)
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
