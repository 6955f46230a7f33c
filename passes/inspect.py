"""Per-layer summary of a model, unpacked (float Conv/Gemm/MatMul) or packed (``ai.mptc``).

Used by ``mptc inspect`` and by reports to show what packing bought: sparsity (fraction pruned,
:mod:`mptc.conventions`), the alpha/scale range, storage bits per weight and parameter bytes.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import onnx
import onnx_ir as ir

from mptc.conventions import ternary_scale, unpack_bits
from mptc.ops.reference import DOMAIN
from mptc.ops.validate import PackedAttributes, check_standard_node
from mptc.passes._graph import check_packed, constant_array, is_op, label, read_ir


@dataclasses.dataclass(frozen=True)
class LayerRow:
    """One weight layer.

    Attributes:
        op: op type (``Conv``, ``Gemm``, ``MatMul``, ``BinaryConv``, ``BinaryDense``).
        name: node name (else its output's name).
        weight_shape: ``(O, K)`` or ``(O, C/group, kh, kw)``; None where the input shape is unknown.
        sparsity: fraction of weights pruned (zero); None when unknown.
        scale_min, scale_max: range of the per-output alpha (packed: ``scale``, BN folded in);
            None for a float layer that is not ternary.
        bits_per_weight: storage bits per weight (32 for float32, ~2 packed); None when unknown.
        bytes: parameter bytes of the layer (weights, scale, bias).
        input_mode: a packed layer's ``input_mode``, ``"real"`` or ``"binary"`` (the sign before
            it folded in, docs/operators.md); None for a float layer.
    """

    op: str
    name: str
    weight_shape: tuple[int | None, ...]
    sparsity: float | None
    scale_min: float | None
    scale_max: float | None
    bits_per_weight: float | None
    bytes: int
    input_mode: str | None = None


def inspect_model(model: onnx.ModelProto) -> list[LayerRow]:
    """One :class:`LayerRow` per layer with a constant weight, in graph order."""
    try:
        model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError):
        pass  # Shapes of packed inputs then stay unknown; the rows say None.
    rows = []
    ir_model = read_ir(model)
    opset = ir_model.opset_imports.get("", 1)
    for node in ir_model.graph:
        if node.domain == DOMAIN:
            rows.append(_packed_row(node))
        elif any(is_op(node, op) for op in ("Conv", "Gemm", "MatMul")):
            types = {name: attr.type.value for name, attr in node.attributes.items()}
            check_standard_node(label(node), node.op_type, opset, types, len(node.inputs), len(node.outputs))
            row = _float_row(node)
            if row is not None:
                rows.append(row)
    return rows


def _float_row(node: ir.Node) -> LayerRow | None:
    weight = constant_array(node.inputs[1])
    if weight is None:
        return None
    if node.op_type == "MatMul" or (node.op_type == "Gemm" and not node.attributes.get_int("transB", 0)):
        weight = weight.T
    alpha = ternary_scale(weight) if weight.dtype.kind == "f" and weight.ndim >= 2 and weight.size else None
    bias = constant_array(node.inputs[2]) if len(node.inputs) > 2 else None
    return LayerRow(
        op=node.op_type,
        name=_name(node),
        weight_shape=tuple(weight.shape),
        sparsity=float(np.mean(weight == 0)) if weight.size else 0.0,
        scale_min=None if alpha is None else float(alpha.min()),
        scale_max=None if alpha is None else float(alpha.max()),
        bits_per_weight=float(weight.dtype.itemsize * 8),
        bytes=weight.nbytes + (0 if bias is None else bias.nbytes),
    )


def _packed_row(node: ir.Node) -> LayerRow:
    attributes = check_packed(node)
    sign_bits, mask_bits, scale, bias = (constant_array(v) for v in node.inputs[1:])
    out_channels = None if mask_bits is None else mask_bits.shape[0]
    shape, taps = _packed_weight_shape(node, attributes, out_channels)  # taps fit the rows: check_packed saw to it
    parameters = [a for a in (sign_bits, mask_bits, scale, bias) if a is not None]
    bits = sum(a.nbytes for a in (sign_bits, mask_bits) if a is not None) * 8
    known = taps is not None and mask_bits is not None and out_channels
    return LayerRow(
        op=node.op_type,
        name=_name(node),
        weight_shape=shape,
        sparsity=1.0 - float(unpack_bits(mask_bits, taps).sum()) / (out_channels * taps) if known else None,
        scale_min=None if scale is None else float(scale.min()),
        scale_max=None if scale is None else float(scale.max()),
        bits_per_weight=bits / (out_channels * taps) if known else None,
        bytes=sum(a.nbytes for a in parameters),
        input_mode=attributes.input_mode,
    )


def _packed_weight_shape(
    node: ir.Node, attributes: PackedAttributes, out_channels: int | None
) -> tuple[tuple[int | None, ...], int | None]:
    """``(weight shape, K)``; K comes from the input's channel count, None when shape inference could not tell."""
    x = node.inputs[0]
    channels = x.shape[1] if x is not None and x.shape is not None and len(x.shape) > 1 else None
    channels = channels if isinstance(channels, int) else None
    if node.op_type == "BinaryConv":
        per_group = None if channels is None else channels // attributes.group
        taps = None if per_group is None else per_group * attributes.taps
        return (out_channels, per_group, *attributes.kernel_shape), taps
    return (out_channels, channels), channels


def _name(node: ir.Node) -> str:
    return node.name or (node.outputs[0].name or "")


_HEADERS = ("layer", "op", "input", "weight shape", "sparsity", "alpha / scale", "bits/weight", "bytes")


def render_table(rows: list[LayerRow], markdown: bool = True) -> str:
    """The rows as a Markdown table (``markdown=True``) or aligned plain text, with a total line."""
    cells = [_cells(row) for row in rows]
    total = sum(row.bytes for row in rows)
    cells.append(("total", "", "", "", "", "", "", f"{total:,}"))
    if markdown:
        lines = ["| " + " | ".join(_HEADERS) + " |", "|" + "|".join("---" for _ in _HEADERS) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in cells]
        return "\n".join(lines)
    widths = [max(len(str(c)) for c in column) for column in zip(_HEADERS, *cells)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [_HEADERS, *cells])


def _cells(row: LayerRow) -> tuple[str, ...]:
    shape = "x".join("?" if d is None else str(d) for d in row.weight_shape)
    if row.scale_min is None:
        scale = "-"
    elif math.isclose(row.scale_min, row.scale_max, rel_tol=1e-6):
        scale = f"{row.scale_min:.4g}"
    else:
        scale = f"{row.scale_min:.4g}..{row.scale_max:.4g}"
    return (
        row.name,
        row.op,
        row.input_mode or "-",
        shape,
        "?" if row.sparsity is None else f"{row.sparsity:.1%}",
        scale,
        "?" if row.bits_per_weight is None else f"{row.bits_per_weight:.2f}",
        f"{row.bytes:,}",
    )
