"""The fp32 network a packed model encodes: every ``ai.mptc`` node as standard ONNX on its unpacked weight.

Why: a peer that should run "the same network in fp32" (``mptc profile --compare``, the ARM
instruction counts, the per-layer table) must not pay for unpacking bits at run time. The
function bodies attached to ``ai.mptc`` nodes unpack on every call wherever onnxruntime cannot
fold them (a symbolic batch keeps ``Shape -> Slice`` alive), which would flatter mptc. Here the
weights are unpacked once, into initializers::

    BinaryConv(x)  -> Conv(T(x), scale[o] * W, bias)            (with pad_value != 0: Pad(T(x), pad_value) first)
    BinaryDense(x) -> Gemm(T(x), scale[o] * W, bias, transB=1)
    T = Where(x >= 0, 1, -1) for input_mode "binary" (sign(0) = +1), Sign(x) for "sign", identity for "real"

The main node keeps the ``ai.mptc`` node's name, so per-layer tables match it; the sign and pad
nodes are named ``<name>|sign`` / ``<name>|pad`` (:func:`part_name`). The semantics are
``mptc.ops.reference``'s.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

from mptc.errors import UnsupportedError
from mptc.ops.reference import DOMAIN, unpack_ternary
from mptc.ops.schema import registered_schemas
from mptc.ops.validate import PackedAttributes, check_packed_proto

PART_SEPARATOR = "|"
"""Between a layer's name and the part a helper node computes (not a character layer names use)."""


def part_name(layer: str, part: str) -> str:
    """The name of the node computing ``part`` (sign, pad) of ``layer`` in the unpacked model."""
    return f"{layer}{PART_SEPARATOR}{part}"


def unpack_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose ``ai.mptc`` nodes are standard fp32 ONNX (see the module doc).

    Raises:
        UnsupportedError: a conv's input channels are not known statically (its weight's shape
            depends on them), or a node's constants are not initializers.
    """
    with registered_schemas():
        inferred = shape_inference.infer_shapes(model)
    channels = _channels(inferred.graph)
    constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    out = onnx.ModelProto()
    out.CopyFrom(model)
    nodes: list[onnx.NodeProto] = []
    added: list[onnx.TensorProto] = []
    for node in model.graph.node:
        if node.domain != DOMAIN:
            nodes.append(node)
            continue
        attributes = check_packed_proto(node, constants)
        new_nodes, new_constants = _standard(node, attributes, constants, channels.get(node.input[0]))
        nodes += new_nodes
        added += new_constants
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    used = {name for node in nodes for name in node.input}
    kept = [t for t in out.graph.initializer if t.name in used]
    del out.graph.initializer[:]
    out.graph.initializer.extend(kept + added)
    kept_functions = [f for f in out.functions if f.domain != DOMAIN]
    del out.functions[:]
    out.functions.extend(kept_functions)
    opsets = [o for o in out.opset_import if o.domain != DOMAIN]
    del out.opset_import[:]
    out.opset_import.extend(opsets)
    return out


def _standard(
    node: onnx.NodeProto, attributes: PackedAttributes, constants: dict[str, np.ndarray], channels: int | None
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """The standard nodes and new initializers of one ``ai.mptc`` node."""
    x, sign_bits, mask_bits, scale, bias = node.input
    name = node.name or node.output[0]
    prefix = f"{name}.unpacked"
    nodes, tensors = [], [numpy_helper.from_array(constants[bias].astype(np.float32), f"{prefix}.bias")]
    if attributes.input_mode == "binary":
        tensors += [
            numpy_helper.from_array(np.array(0.0, np.float32), f"{prefix}.zero"),
            numpy_helper.from_array(np.array(1.0, np.float32), f"{prefix}.one"),
            numpy_helper.from_array(np.array(-1.0, np.float32), f"{prefix}.minus_one"),
        ]
        nodes += [
            helper.make_node(
                "GreaterOrEqual", [x, f"{prefix}.zero"], [f"{prefix}.nonnegative"], name=part_name(name, "sign_test")
            ),
            helper.make_node(
                "Where",
                [f"{prefix}.nonnegative", f"{prefix}.one", f"{prefix}.minus_one"],
                [f"{prefix}.signs"],
                name=part_name(name, "sign"),
            ),
        ]
        x = f"{prefix}.signs"
    elif attributes.input_mode == "sign":
        nodes.append(helper.make_node("Sign", [x], [f"{prefix}.signs"], name=part_name(name, "sign")))
        x = f"{prefix}.signs"
    rows = constants[scale].astype(np.float32)
    if node.op_type == "BinaryDense":
        k = channels
        if k is None:
            raise UnsupportedError(f"{name} (BinaryDense): its input's width is not known statically")
        weight = unpack_ternary(constants[sign_bits], constants[mask_bits], (rows.size, k)) * rows[:, None]
        tensors.append(numpy_helper.from_array(weight.astype(np.float32), f"{prefix}.weight"))
        nodes.append(
            helper.make_node("Gemm", [x, f"{prefix}.weight", f"{prefix}.bias"], node.output, name=name, transB=1)
        )
        return nodes, tensors
    if channels is None:
        raise UnsupportedError(f"{name} (BinaryConv): its input's channels are not known statically")
    shape = (rows.size, channels // attributes.group, *attributes.kernel_shape)
    weight = unpack_ternary(constants[sign_bits], constants[mask_bits], shape) * rows[:, None, None, None]
    tensors.append(numpy_helper.from_array(weight.astype(np.float32), f"{prefix}.weight"))
    pads = list(attributes.pads)
    if attributes.pad_value != 0.0 and any(pads):
        top, left, bottom, right = pads
        tensors += [
            numpy_helper.from_array(np.array([0, 0, top, left, 0, 0, bottom, right], np.int64), f"{prefix}.pads"),
            numpy_helper.from_array(np.array(attributes.pad_value, np.float32), f"{prefix}.pad_value"),
        ]
        nodes.append(
            helper.make_node(
                "Pad", [x, f"{prefix}.pads", f"{prefix}.pad_value"], [f"{prefix}.padded"], name=part_name(name, "pad")
            )
        )
        x, pads = f"{prefix}.padded", [0, 0, 0, 0]
    conv = helper.make_node(
        "Conv",
        [x, f"{prefix}.weight", f"{prefix}.bias"],
        node.output,
        name=name,
        kernel_shape=list(attributes.kernel_shape),
        strides=list(attributes.strides),
        pads=pads,
        dilations=list(attributes.dilations),
        group=attributes.group,
    )
    return nodes + [conv], tensors


def _channels(graph: onnx.GraphProto) -> dict[str, int]:
    """Dimension 1 (channels, or a dense input's width) of every tensor whose shape inference knows it."""
    found = {}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        if len(dims) >= 2 and dims[1].HasField("dim_value"):
            found[value.name] = dims[1].dim_value
    return found
