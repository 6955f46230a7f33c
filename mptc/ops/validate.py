"""Validation of ``ai.mptc`` nodes, in one place, before any reader does arithmetic with them.

Every reader of a packed model calls these before it indexes an input, divides by ``group`` or
unpacks a bit: the passes (:func:`mptc.passes._graph.check_packed`, their preconditions),
``mptc inspect`` and the TVM frontend (``targets/frontend.py``, at import and again per layer
with the input's static shape). What a node may hold comes from two places:

* its attributes' names, types, defaults and which are required: the ``onnx.defs`` schemas of
  :mod:`mptc.ops.schema` (:func:`check_attribute_types`, :func:`packed_attributes`);
* their legal values and the shapes of the packed tensors: ``docs/operators.md``
  (:func:`packed_attributes`, :func:`check_tensors`). In particular ``pad_value`` is 0 in
  ``"real"`` mode and one of -1, 0, +1 in ``"binary"`` mode (the kernels' border table is exact
  for those and only those), ``scale`` and ``bias`` are finite, a row holds ``ceil(K / 8)``
  bytes and its pad bits past ``K`` are 0.

A node that breaks any of these is an :class:`~mptc.errors.InputError` (exit 3) naming the node.
:func:`check_node_sizes` bounds every node's input and output count (a node of 100,000 inputs
made onnx_ir's rewrites quadratic): past :data:`MAX_NODE_VALUES` it is an
:class:`~mptc.errors.UnsupportedError` (exit 4).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper

from mptc.conventions import node_label
from mptc.errors import InputError, UnsupportedError
from mptc.ops.reference import DOMAIN, INPUT_MODES
from mptc.ops.schema import schemas

LEGAL_PAD_VALUES: dict[str, tuple[float, ...]] = {"real": (0.0,), "binary": (-1.0, 0.0, 1.0), "sign": (0.0,)}
"""``pad_value`` by ``input_mode`` (``docs/operators.md``): what a padded position holds after the sign."""

MAX_GEOMETRY = 1 << 16
"""Largest kernel side, stride, dilation, pad or group: a limit of mptc, far past any real layer,
that keeps every size computed from them well inside int64."""

MAX_NODE_VALUES = 1024
"""Most inputs (and most outputs) one node may have."""

_TYPE_NAMES = {value: name for name, value in onnx.AttributeProto.AttributeType.items()}


@dataclass(frozen=True)
class PackedAttributes:
    """The validated attributes of one ``ai.mptc`` node, defaults filled in (dense: no geometry)."""

    op_type: str
    input_mode: str
    kernel_shape: tuple[int, ...] = ()
    strides: tuple[int, ...] = (1, 1)
    pads: tuple[int, ...] = (0, 0, 0, 0)
    dilations: tuple[int, ...] = (1, 1)
    group: int = 1
    pad_value: float = 0.0

    @property
    def taps(self) -> int:
        """Kernel positions per input channel: ``kh * kw`` for a conv, 1 for a dense layer."""
        return math.prod(self.kernel_shape) if self.kernel_shape else 1


def proto_attribute_types(node: onnx.NodeProto) -> dict[str, int]:
    """``{name: AttributeProto type}`` of a node; a name given twice is refused."""
    types: dict[str, int] = {}
    for attribute in node.attribute:
        if attribute.name in types:
            raise InputError(f"{_label(node)}: attribute {attribute.name!r} is given twice")
        types[attribute.name] = attribute.type
    return types


def proto_attribute_values(node: onnx.NodeProto) -> dict[str, Any]:
    """``{name: value}`` of a node whose attribute types :func:`check_attribute_types` accepted."""
    return {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}


def check_attribute_types(where: str, op_type: str, types: Mapping[str, int]) -> None:
    """Refuse an attribute the ``ai.mptc`` schema of ``op_type`` does not have, one of another
    type than it declares, and a required one that is missing.

    Args:
        where: the node as messages name it (:func:`~mptc.conventions.node_label`).
        types: the node's attributes as ``{name: AttributeProto type}`` (onnx_ir's
            ``AttributeType`` values are the same numbers).
    """
    schema = _schema(where, op_type)
    _check_types(where, schema, types)
    missing = [name for name, declared in schema.attributes.items() if declared.required and name not in types]
    if missing:
        raise InputError(f"{where}: required attribute {missing[0]} is missing")


def packed_attributes(where: str, op_type: str, values: Mapping[str, Any]) -> PackedAttributes:
    """The node's attributes, defaults from the schema, each checked against ``docs/operators.md``.

    ``values`` are the attribute values as a reader holds them (``bytes`` or ``str`` for a string,
    any sequence for ints): their types were checked by :func:`check_attribute_types`.
    """
    schema = _schema(where, op_type)
    given = {name: values[name] for name in schema.attributes if name in values}
    for name, declared in schema.attributes.items():
        if name not in given and not declared.required:
            given[name] = helper.get_attribute_value(declared.default_value)
    mode = given["input_mode"]
    if isinstance(mode, bytes):
        mode = mode.decode("utf-8", errors="replace")
    if mode not in INPUT_MODES:
        raise InputError(f"{where}: input_mode must be one of {', '.join(INPUT_MODES)}, got {mode!r}")
    if op_type != "BinaryConv":
        return PackedAttributes(op_type, mode)
    if "kernel_shape" not in given:
        raise InputError(f"{where}: required attribute kernel_shape is missing")
    group = _int(where, "group", given["group"], 1)
    pad_value = float(given["pad_value"])
    legal = LEGAL_PAD_VALUES[mode]
    if pad_value not in legal:
        shown = [f"{value:+g}" if value else "0" for value in legal]
        allowed = shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"
        raise InputError(f"{where}: pad_value must be {allowed} in {mode} mode, got {pad_value!r}")
    return PackedAttributes(
        op_type,
        mode,
        kernel_shape=_ints(where, "kernel_shape", given["kernel_shape"], 2, 1),
        strides=_ints(where, "strides", given["strides"], 2, 1),
        pads=_ints(where, "pads", given["pads"], 4, 0),
        dilations=_ints(where, "dilations", given["dilations"], 2, 1),
        group=group,
        pad_value=pad_value,
    )


def check_tensors(
    where: str,
    attributes: PackedAttributes,
    sign_bits: np.ndarray | None,
    mask_bits: np.ndarray | None,
    scale: np.ndarray | None,
    bias: np.ndarray | None,
    x_shape: Sequence[Any] | None = None,
) -> None:
    """Check the packed tensors against each other, the attributes and the input's shape.

    Any of them may be unknown (None: computed at run time, or a shape inference could not
    tell); an input dimension that is not an ``int`` is unknown too. With ``X``'s channel count
    known, a row must hold exactly ``ceil(K / 8)`` bytes and its pad bits past ``K`` must be 0;
    without it, the kernel must at least fit in a row.
    """
    bits = {role: array for role, array in (("sign_bits", sign_bits), ("mask_bits", mask_bits)) if array is not None}
    rows = _check_bits(where, bits)
    outputs = _check_vectors(where, {"scale": scale, "bias": bias}, rows[0] if rows else None)
    if outputs is not None and outputs % attributes.group:
        raise InputError(f"{where}: group={attributes.group} does not divide its {outputs} outputs")
    channels = None if x_shape is None else _check_input(where, attributes, x_shape)
    if channels is not None and channels % attributes.group:
        raise InputError(f"{where}: group={attributes.group} does not divide its {channels} input channels")
    if rows is None:
        return
    row_bytes = rows[1]
    if channels is None:
        if attributes.taps > 8 * row_bytes:
            kernel = "x".join(map(str, attributes.kernel_shape))
            raise InputError(
                f"{where}: kernel_shape {kernel} needs at least {attributes.taps} weights per output, "
                f"its rows of {row_bytes} bytes hold {8 * row_bytes}"
            )
        return
    k = channels // attributes.group * attributes.taps
    if row_bytes != -(-k // 8):
        raise InputError(f"{where}: K={k} weights per output pack into {-(-k // 8)} bytes, its rows hold {row_bytes}")
    if k % 8:
        pad_bits = np.uint8((0xFF << (k % 8)) & 0xFF)
        for role, array in bits.items():
            count = int(np.count_nonzero(array[:, -1] & pad_bits))
            if count:
                raise InputError(
                    f"{where}: {role} has pad bits set past K={k} in the last byte of {count} row(s) (they must be 0)"
                )


def _check_bits(where: str, bits: Mapping[str, np.ndarray]) -> tuple[int, int] | None:
    """``(outputs, bytes per row)`` of the bit tensors given, which must agree."""
    for role, array in bits.items():
        if array.dtype != np.uint8 or array.ndim != 2:
            raise InputError(f"{where}: {role} must be uint8 of shape (outputs, bytes per output), got {_show(array)}")
        if 0 in array.shape:
            raise InputError(f"{where}: {role} of shape {array.shape} holds no weights (zero outputs or empty rows)")
    shapes = {array.shape for array in bits.values()}
    if len(shapes) > 1:
        raise InputError(f"{where}: sign_bits and mask_bits differ in shape ({' and '.join(map(str, sorted(shapes)))})")
    return next(iter(shapes)) if shapes else None


def _check_vectors(where: str, vectors: Mapping[str, np.ndarray | None], outputs: int | None) -> int | None:
    """``scale`` and ``bias``: finite float32 ``(outputs,)``; returns the output count they give."""
    for role, vector in vectors.items():
        if vector is None:
            continue
        expected = f"({outputs},)" if outputs is not None else "(outputs,)"
        if (
            vector.dtype != np.float32
            or vector.ndim != 1
            or vector.size == 0
            or (outputs is not None and vector.shape[0] != outputs)
        ):
            raise InputError(f"{where}: {role} must be float32 of shape {expected}, got {_show(vector)}")
        bad = int(np.count_nonzero(~np.isfinite(vector)))
        if bad:
            raise InputError(f"{where}: {role} holds NaN or Inf ({bad} of {vector.size} values)")
        outputs = vector.shape[0]
    return outputs


def _check_input(where: str, attributes: PackedAttributes, x_shape: Sequence[Any]) -> int | None:
    """``X``'s rank, and a conv's output size; returns its channel count where known."""
    conv = attributes.op_type == "BinaryConv"
    if len(x_shape) != (4 if conv else 2):
        layout = "(N, C, H, W)" if conv else "(N, K)"
        raise InputError(f"{where}: input X must be {layout}, got rank {len(x_shape)} {tuple(x_shape)}")
    if conv:
        _check_output_size(where, attributes, x_shape)
    return _dim(x_shape[1])


def check_standard_node(
    where: str, op_type: str, opset: int, types: Mapping[str, int], inputs: int, outputs: int
) -> None:
    """An ONNX-domain node against its ``onnx.defs`` schema at ``opset``: its attribute names and
    types, and its input and output counts (what ``onnx.checker`` checks, for readers that cannot run it: it
    also refuses models TVM compiles, such as one whose output has no declared shape). An op
    without a schema passes: whoever converts it refuses it by name.
    """
    try:
        schema = onnx.defs.get_schema(op_type, opset, "")
    except onnx.defs.SchemaError:
        return
    _check_types(where, schema, types)
    for what, count, low, high in (
        ("inputs", inputs, schema.min_input, schema.max_input),
        ("outputs", outputs, schema.min_output, schema.max_output),
    ):
        if not low <= count <= high:
            expected = f"{low}" if low == high else f"{low} to {high}"
            raise InputError(f"{where} has {count} {what}; {op_type} takes {expected}")


def pool_geometry(
    where: str, values: Mapping[str, Any], size: tuple[int, int]
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """``(kernel_shape, strides, pads, dilations)`` of a 2-D pooling node (defaults filled in),
    checked as a BinaryConv's are and against its input's ``(height, width)``."""
    attributes = PackedAttributes(
        "MaxPool",
        "real",
        kernel_shape=_ints(where, "kernel_shape", values.get("kernel_shape", ()), 2, 1),
        strides=_ints(where, "strides", values.get("strides", (1, 1)), 2, 1),
        pads=_ints(where, "pads", values.get("pads", (0, 0, 0, 0)), 4, 0),
        dilations=_ints(where, "dilations", values.get("dilations", (1, 1)), 2, 1),
    )
    _check_output_size(where, attributes, (None, None, *size))
    return attributes.kernel_shape, attributes.strides, attributes.pads, attributes.dilations


def check_node_sizes(graph: onnx.GraphProto) -> None:
    """Refuse a node (here or in a subgraph) with more than :data:`MAX_NODE_VALUES` inputs or outputs."""
    for node in graph.node:
        for what, count in (("inputs", len(node.input)), ("outputs", len(node.output))):
            if count > MAX_NODE_VALUES:
                raise UnsupportedError(
                    f"{_label(node)} has {count:,} {what}; mptc reads nodes of at most {MAX_NODE_VALUES:,}"
                )
        for attribute in node.attribute:
            for subgraph in [attribute.g] if attribute.HasField("g") else list(attribute.graphs):
                check_node_sizes(subgraph)


def check_packed_proto(node: onnx.NodeProto, constants: Mapping[str, np.ndarray]) -> PackedAttributes:
    """Everything about one ``ai.mptc`` node that its proto and the graph's initializers tell
    (``constants`` by name; the input's shape is checked later, where it is known)."""
    where = _label(node)
    check_attribute_types(where, node.op_type, proto_attribute_types(node))
    attributes = packed_attributes(where, node.op_type, proto_attribute_values(node))
    if len(node.input) != 5 or not all(node.input) or len(node.output) != 1:
        raise InputError(
            f"{where} has {len(node.input)} inputs and {len(node.output)} outputs; "
            "it takes 5 (X, sign_bits, mask_bits, scale, bias) and gives one"
        )
    sign_bits, mask_bits, scale, bias = (constants.get(name) for name in node.input[1:])
    check_tensors(where, attributes, sign_bits, mask_bits, scale, bias)
    return attributes


def _check_types(where: str, schema: onnx.defs.OpSchema, types: Mapping[str, int]) -> None:
    for name, kind in types.items():
        declared = schema.attributes.get(name)
        if declared is None:
            known = ", ".join(sorted(schema.attributes)) or "none"
            raise InputError(f"{where}: unknown attribute {name!r} ({schema.name} takes {known})")
        if kind != _type_code(declared):
            expected = _TYPE_NAMES.get(_type_code(declared), str(declared.type))
            raise InputError(f"{where}: attribute {name} must be {expected}, got {_TYPE_NAMES.get(kind, kind)}")


def _type_code(attribute: onnx.defs.OpSchema.Attribute) -> int:
    """The ``AttributeProto`` type number a schema declares (``OpSchema.AttrType`` has the same values)."""
    return int(attribute.type.value)  # type: ignore[attr-defined]  # onnx's stubs omit the enum's value


def _schema(where: str, op_type: str) -> onnx.defs.OpSchema:
    known = schemas()
    if op_type not in known:
        raise InputError(f"{where}: unknown operator {DOMAIN}::{op_type}, expected {' or '.join(known)}")
    return known[op_type]


def _int(where: str, name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= MAX_GEOMETRY:
        raise InputError(f"{where}: {name} must be an integer from {low} to {MAX_GEOMETRY}, got {value!r}")
    return int(value)


def _ints(where: str, name: str, value: Any, length: int, low: int) -> tuple[int, ...]:
    values = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    if len(values) != length or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and low <= v <= MAX_GEOMETRY for v in values
    ):
        shown = list(values) if len(values) <= 8 else f"{len(values)} values"
        raise InputError(f"{where}: {name} must be {length} integers from {low} to {MAX_GEOMETRY}, got {shown}")
    return tuple(int(v) for v in values)


def _check_output_size(where: str, attributes: PackedAttributes, x_shape: Sequence[Any]) -> None:
    for axis in range(2):
        size = _dim(x_shape[2 + axis])
        if size is None:
            continue
        padded = size + attributes.pads[axis] + attributes.pads[axis + 2]
        span = (attributes.kernel_shape[axis] - 1) * attributes.dilations[axis] + 1
        if padded < span:
            raise InputError(
                f"{where}: its {'height' if axis == 0 else 'width'} {size} padded to {padded} is smaller than "
                f"the dilated kernel ({span})"
            )


def _dim(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else None


def _show(array: np.ndarray) -> str:
    return f"{array.dtype}{tuple(array.shape)}"


def _label(node: onnx.NodeProto) -> str:
    return node_label(node.name, node.op_type, node.output)
