"""``onnx.defs`` schemas of the ``ai.mptc`` operators: inputs, types, attributes, shape inference.

Packed models pass ``onnx.checker.check_model(full_check=True)`` without these: the checker
accepts a custom-domain node that a model-local function defines, and shape inference goes through
the body (which cannot tell a conv's output size: its weight shape is computed at run time).
Registering the schemas makes the checker stricter (a missing ``kernel_shape``, a wrong input
count or a uint8 ``X`` become errors) and infers output shapes from the attributes. Registration
is process-wide, so it is explicit: call :func:`register_schemas`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import onnx
import onnx.defs
from onnx import helper
from onnx.defs import OpSchema
from onnx.shape_inference import InferenceContext

from mptc.ops.reference import DOMAIN, OPSET_VERSION

_IO = dict(
    inputs=[
        OpSchema.FormalParameter("X", "T", "float32 input: (N, C, H, W) for BinaryConv, (N, K) for BinaryDense"),
        OpSchema.FormalParameter("sign_bits", "B", "(O, ceil(K/8)) sign bits, LSB first, 1 = +1"),
        OpSchema.FormalParameter("mask_bits", "B", "(O, ceil(K/8)) mask bits, LSB first, 1 = kept"),
        OpSchema.FormalParameter("scale", "T", "(O,) per-output scale (alpha, BN folded in)"),
        OpSchema.FormalParameter("bias", "T", "(O,) per-output bias"),
    ],
    outputs=[OpSchema.FormalParameter("Y", "T", "float32 output")],
    type_constraints=[("T", ["tensor(float)"], "float32 tensors"), ("B", ["tensor(uint8)"], "packed bits")],
)


def _default(name: str, value: object, description: str) -> OpSchema.Attribute:
    return OpSchema.Attribute(name, helper.make_attribute(name, value), description)


_INPUT_MODE = _default(
    "input_mode", "real", '"real": T = X; "binary": T = sign(X) with sign(0) = +1; "sign": T = Sign(X), sign(0) = 0'
)


def _output_type(ctx: InferenceContext, dims: list[int | str | None]) -> None:
    """Set output 0 to float32 with ``dims`` (None = unknown dimension)."""
    ctx.set_output_type(0, helper.make_tensor_type_proto(onnx.TensorProto.FLOAT, dims))


def _known_dims(ctx: InferenceContext, index: int) -> list[int | str | None] | None:
    """Input ``index``'s dimensions (value, symbol or None), None when its rank is unknown."""
    if index >= ctx.get_num_inputs():  # a malformed node: the checker names it, inference leaves it
        return None
    value_type = ctx.get_input_type(index)
    if value_type is None:  # produced by an op whose output type nothing inferred (a custom domain's)
        return None
    tensor_type = value_type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor_type.shape.dim]


def _ints(ctx: InferenceContext, name: str, default: list[int]) -> list[int]:
    attr = ctx.get_attribute(name)
    return list(attr.ints) if attr is not None else default


def _infer_conv(ctx: InferenceContext) -> None:
    x, bits = _known_dims(ctx, 0), _known_dims(ctx, 1)
    out_channels = bits[0] if bits else None
    if x is None or len(x) != 4:
        _output_type(ctx, [None, out_channels, None, None])
        return
    kernel = _ints(ctx, "kernel_shape", [1, 1])
    strides, dilations = _ints(ctx, "strides", [1, 1]), _ints(ctx, "dilations", [1, 1])
    pads = _ints(ctx, "pads", [0, 0, 0, 0])
    spatial = []
    for axis in range(2):
        size = x[2 + axis]
        if not isinstance(size, int):
            spatial.append(None)
            continue
        span = (kernel[axis] - 1) * dilations[axis] + 1
        spatial.append((size + pads[axis] + pads[axis + 2] - span) // strides[axis] + 1)
    _output_type(ctx, [x[0], out_channels, *spatial])


def _infer_dense(ctx: InferenceContext) -> None:
    x, bits = _known_dims(ctx, 0), _known_dims(ctx, 1)
    _output_type(ctx, [x[0] if x else None, bits[0] if bits else None])


def _schemas() -> list[OpSchema]:
    conv = OpSchema(
        "BinaryConv",
        DOMAIN,
        OPSET_VERSION,
        "Y = scale[o] * Conv(Pad(T, pads, pad_value), Wt, strides, dilations, group) + bias[o] (docs/operators.md)",
        attributes=[
            OpSchema.Attribute("kernel_shape", OpSchema.AttrType.INTS, "[kh, kw]", required=True),
            _default("strides", [1, 1], "[sh, sw]"),
            _default("pads", [0, 0, 0, 0], "[top, left, bottom, right]"),
            _default("dilations", [1, 1], "[dh, dw]"),
            _default("group", 1, "number of groups"),
            _INPUT_MODE,
            _default("pad_value", 0.0, "value of a padded position after the sign"),
        ],
        **_IO,
    )
    conv.set_type_and_shape_inference_function(_infer_conv)
    dense = OpSchema(
        "BinaryDense",
        DOMAIN,
        OPSET_VERSION,
        "Y = scale[o] * (T @ Wt^T)[n, o] + bias[o] (docs/operators.md)",
        attributes=[_INPUT_MODE],
        **_IO,
    )
    dense.set_type_and_shape_inference_function(_infer_dense)
    return [conv, dense]


def schemas() -> dict[str, OpSchema]:
    """The ``ai.mptc`` schemas by op type, unregistered: what :mod:`mptc.ops.validate` checks nodes against."""
    return {schema.name: schema for schema in _schemas()}


def register_schemas() -> None:
    """Register the ``ai.mptc`` schemas with ``onnx.defs`` (once per process; later calls do nothing)."""
    for schema in _schemas():
        if not onnx.defs.has(schema.name, schema.domain):
            onnx.defs.register_schema(schema)


@contextlib.contextmanager
def registered_schemas() -> Iterator[None]:
    """The ``ai.mptc`` schemas registered for a ``with`` block (shape inference of packed models),
    and unregistered after it unless they were registered before: a library call leaves
    ``onnx.defs`` as it found it."""
    added = [schema for schema in _schemas() if not onnx.defs.has(schema.name, schema.domain)]
    for schema in added:
        onnx.defs.register_schema(schema)
    try:
        yield
    finally:
        for schema in added:
            onnx.defs.deregister_schema(schema.name, schema.since_version, schema.domain)


def deregister_schemas() -> None:
    """Undo :func:`register_schemas` (tests use it to leave the process as they found it)."""
    for schema in _schemas():
        if onnx.defs.has(schema.name, schema.domain):
            onnx.defs.deregister_schema(schema.name, schema.since_version, schema.domain)
