"""Fold the quantizers on constant weights (QONNX ``Quant``, ONNX QCDQ) into float32 weights.

A quantization-aware exporter (Brevitas, ``mptc export --format qonnx``) writes a layer's weight
as a constant followed by its quantizer, so the layer reads a computed tensor, which
PackTernaryWeightsPass does not pack. The quantizer's output is a constant too: it is computed here
with the operator's own definition and, when it is ternary per output row, replaces the quantizer
as an initializer::

    Conv(x, Quant(W, s, 0, b))                                 -> Conv(x, W')      QONNX
    Conv(x, BipolarQuant(W, s))                                -> Conv(x, W')      QONNX, binary
    Conv(x, DequantizeLinear(Clip(QuantizeLinear(W, s, 0)), s, 0)) -> Conv(x, W')  QCDQ (Clip optional)
    Conv(x, DequantizeLinear(Q, s, 0)), Q an integer constant  -> Conv(x, W')      QCDQ

(the same for Gemm's B and MatMul's second input). The maths, in float32 as the operators compute
it, with ``clip`` to the integer range of the bit width or type and ``s`` broadcast per tensor or
per channel:

- ``Quant``: ``W' = s * round(clip(W / s, min(b, signed, narrow), max(b, signed, narrow)))`` with
  ``round`` the node's ``rounding_mode`` (QONNX's table: ROUND = half to even, CEIL, FLOOR, UP,
  DOWN, HALF_UP, HALF_DOWN);
- ``BipolarQuant``: ``W' = s * (+1 if W >= 0 else -1)``;
- ``QuantizeLinear``: ``q = saturate(round_half_even(W / s))``; ``DequantizeLinear``: ``W' = q * s``.

A layer's ``W'`` then holds ``{-a_o, 0, +a_o}`` per output row exactly when its integer levels are
ternary (or a multiple of a ternary set) and ``s`` is per tensor or per output channel; ``a_o`` is
then ``s_o`` times the level, the ``alpha`` packing moves into the operator's ``scale``. A
quantizer read only as a Conv or Gemm bias is folded whatever its values (the pack pass takes any
constant bias).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import onnx_ir as ir

from mptc.conventions import TERNARY_RTOL, ternary_scale
from mptc.passes._graph import Skip, add_initializer, constant_array, is_op, label
from mptc.passes.fold_sign_into_binary_input import QONNX_DOMAINS

logger = logging.getLogger(__name__)

_Rounding = Callable[[np.ndarray], np.ndarray]

# QONNX's rounding modes, on float64 copies of float32 values (so ``|v| + 0.5`` is exact).
_ROUNDING: dict[str, _Rounding] = {
    "ROUND": np.round,  # half to even
    "CEIL": np.ceil,
    "FLOOR": np.floor,
    "UP": lambda v: np.sign(v) * np.ceil(np.abs(v)),  # away from zero
    "DOWN": np.trunc,  # toward zero
    "HALF_UP": lambda v: np.sign(v) * np.floor(np.abs(v) + 0.5),  # half away from zero
    "HALF_DOWN": lambda v: np.sign(v) * np.ceil(np.abs(v) - 0.5),  # half toward zero
}

# The integer types QuantizeLinear writes and DequantizeLinear reads here, with their ranges.
_INTEGER_RANGES = {
    ir.DataType.INT4: (-8, 7),
    ir.DataType.UINT4: (0, 15),
    ir.DataType.INT8: (-128, 127),
    ir.DataType.UINT8: (0, 255),
    ir.DataType.INT16: (-(2**15), 2**15 - 1),
    ir.DataType.UINT16: (0, 2**16 - 1),
    ir.DataType.INT32: (-(2**31), 2**31 - 1),
}


class FoldWeightQuantizersPass(ir.passes.InPlacePass):
    """Replace each quantizer of a constant weight by the float32 constant it computes.

    Cases (module docstring for the maths): QONNX ``Quant`` / ``IntQuant`` and ``BipolarQuant``
    (domain ``qonnx.custom_op.general`` or ``finn.custom_op.general``) on a constant, and ONNX
    ``DequantizeLinear`` of an integer constant or of ``QuantizeLinear`` of a constant (a ``Clip``
    with constant bounds between them is applied too), whose output is read only as the weight of
    Conv/Gemm/MatMul (input 1) or the bias of Conv/Gemm (input 2).

    Precondition: none beyond a valid model; it runs before version conversion and shape inference,
    so every opset's QuantizeLinear/DequantizeLinear is read. Postcondition (:meth:`ensures`): no
    such quantizer that folds is left. The folded constant takes the quantizer's output name; the
    quantizer's inputs stay for RemoveUnusedNodesPass.

    Left alone, with the reason logged and kept in :attr:`skipped` (and, for the quantizers of a
    layer's weight, in :attr:`unfolded_weights`): weights whose quantized values are not ternary per
    output row (levels beyond ``{-1, 0, 1}``, or a scale that varies within an output channel), a
    nonzero zero point, scale, zero point or bit width that are not constants, a bit width that is
    not an integer from 1 to 64, an unknown rounding mode, blocked quantization, quantized types other
    than 4-32 bit integers, non-float32 weights or scales, a weight that is an initializer and also a
    graph input (a caller may override it), a quantizer read by anything but a layer's weight or
    bias, and ``Quant`` on a computed tensor (an activation: the packed operators
    read real or sign inputs, and ``Quant`` with bit width 1 has the levels ``{-1, 0}`` or
    ``{0, 1}``, not a sign). ``BipolarQuant`` on a computed tensor is FoldSignIntoBinaryInputPass's,
    and QuantizeLinear/DequantizeLinear pairs on activations are standard ONNX that runs as it is:
    neither is a candidate here.
    """

    def __init__(self, rtol: float = TERNARY_RTOL) -> None:
        super().__init__()
        self.rtol = rtol
        self.skipped: list[str] = []
        self.unfolded_weights: list[str] = []

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        self.skipped, self.unfolded_weights = [], []
        modified = False
        for node in list(model.graph):
            try:
                weight = _folded(node, self.rtol)
            except Skip as reason:
                entry = f"{label(node)}: {reason}"
                self.skipped.append(entry)
                if _feeds_a_weight(node):
                    self.unfolded_weights.append(entry)
                logger.info("left %s as it is: %s", label(node), reason)
                continue
            if weight is not None:
                _replace(model.graph, node, weight)
                logger.info("folded %s into a float32 constant", label(node))
                modified = True
        return ir.passes.PassResult(model, modified=modified)

    def ensures(self, model: ir.Model) -> None:
        for node in model.graph:
            try:
                weight = _folded(node, self.rtol)
            except Skip:
                continue
            if weight is not None:
                raise ir.passes.PostconditionError(f"{label(node)} could still fold into a constant")


def _is_qonnx(node: ir.Node, *op_types: str) -> bool:
    return any(is_op(node, op_type, domain) for op_type in op_types for domain in QONNX_DOMAINS)


def _folded(node: ir.Node, rtol: float) -> np.ndarray | None:
    """The float32 constant ``node`` computes; None when ``node`` is no candidate.

    Raises:
        Skip: a candidate that does not fold; the message says why.
    """
    output = node.outputs[0] if len(node.outputs) == 1 else None
    if output is None or not (output.uses() or output.is_graph_output()):
        return None
    if _is_qonnx(node, "Quant", "IntQuant"):
        if len(node.inputs) != 4 or any(v is None for v in node.inputs):
            raise Skip(f"has {len(node.inputs)} inputs; Quant takes 4 (X, scale, zeropt, bitwidth)")
        source = _source(node.inputs[0])
        if source is None:
            raise Skip(_activation_reason(node))
        layers = _layers_reading(output)
        levels, scale = _quant_levels(node, source)
    elif _is_qonnx(node, "BipolarQuant"):
        source = _source(node.inputs[0]) if len(node.inputs) == 2 else None
        if source is None:
            return None
        layers = _layers_reading(output)
        levels = np.where(_float32(source, "weight") >= 0, 1.0, -1.0)
        scale = _broadcast_scale(_float32(_constant(node, 1, "its scale"), "scale"), source.shape)
    elif is_op(node, "DequantizeLinear"):
        integers = _integer_levels(node.inputs[0]) if node.inputs else None
        if integers is None:
            return None
        layers = _layers_reading(output)
        levels = integers
        scale = _linear_scale(node, integers.shape)
    else:
        return None
    weight = (levels.astype(np.float32) * scale).astype(np.float32)
    for layer, axis in layers:
        _check_ternary(weight, levels, layer, axis, rtol)
    return weight


def _source(value: ir.Value | None) -> np.ndarray | None:
    """The constant a quantizer reads; None when it is computed.

    Raises:
        Skip: it is an initializer that is also a graph input (which a caller may override, so it
            is no constant; Brevitas exports so unless told ``keep_initializers_as_inputs=False``).
    """
    if value is not None and value.is_graph_input() and value.const_value is not None:
        raise Skip(
            f"it reads {value.name!r}, an initializer that is also a graph input, which a caller may "
            "override, so it is not folded; export without initializers as inputs "
            "(Brevitas: keep_initializers_as_inputs=False)"
        )
    return constant_array(value)


def _layers_reading(value: ir.Value) -> list[tuple[ir.Node, int]]:
    """The layers that read ``value`` as their weight, each with its output-channel axis.

    Raises:
        Skip: ``value`` is a graph output or something reads it other than as a weight or bias.
    """
    if value.is_graph_output():
        raise Skip("its output is a graph output")
    layers = []
    for user, index in value.uses():
        if index == 1 and is_op(user, "Conv"):
            layers.append((user, 0))
        elif index == 1 and is_op(user, "Gemm"):
            layers.append((user, 0 if user.attributes.get_int("transB", 0) else 1))
        elif index == 1 and is_op(user, "MatMul"):
            layers.append((user, 1))
        elif not (index == 2 and (is_op(user, "Conv") or is_op(user, "Gemm"))):
            raise Skip(f"its output feeds {label(user)} (input {index}), not a Conv/Gemm/MatMul weight or bias")
    return layers


def _feeds_a_weight(node: ir.Node) -> bool:
    """Whether some Conv/Gemm/MatMul reads ``node``'s output as its weight."""
    return any(
        index == 1 and any(is_op(user, op) for op in ("Conv", "Gemm", "MatMul"))
        for output in node.outputs
        for user, index in output.uses()
    )


def _check_ternary(weight: np.ndarray, levels: np.ndarray, layer: ir.Node, axis: int, rtol: float) -> None:
    """:class:`Skip` unless ``weight`` holds ``{-a_o, 0, +a_o}`` in each output row of ``layer``."""
    if weight.ndim != (4 if layer.op_type == "Conv" else 2):
        raise Skip(f"{label(layer)} reads it as a weight of rank {weight.ndim}")
    if ternary_scale(np.moveaxis(weight, axis, 0), rtol) is not None:
        return
    low, high = int(levels.min()), int(levels.max())
    if low < -1 or high > 1:
        raise Skip(f"its integer levels run from {low} to {high}, not ternary {{-1, 0, 1}} per output row")
    raise Skip(f"its scale varies within an output channel of {label(layer)}, so the weight is not ternary per row")


def _quant_levels(node: ir.Node, source: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(levels, scale)`` of QONNX ``Quant`` on the constant ``source``: ``Y = levels * scale``."""
    weight = _float32(source, "weight")
    scale = _broadcast_scale(_float32(_constant(node, 1, "its scale"), "scale"), weight.shape)
    zero_point = _constant(node, 2, "its zero point")
    if np.any(zero_point != 0):
        raise Skip(f"zero point {_describe(zero_point)} is not 0; only symmetric quantizers fold")
    bits = _constant(node, 3, "its bit width")
    width = float(bits.reshape(())) if bits.size == 1 else 0.0
    if not (np.isfinite(width) and 1 <= width <= 64 and width == int(width)):
        raise Skip(f"bit width {_describe(bits)} is not an integer from 1 to 64")
    mode = node.attributes.get_string("rounding_mode", "ROUND").upper()
    if mode not in _ROUNDING:
        raise Skip(f"rounding_mode {mode!r} is not one of {', '.join(_ROUNDING)}")
    low, high = _quant_range(
        int(width), bool(node.attributes.get_int("signed", 1)), bool(node.attributes.get_int("narrow", 0))
    )
    scaled = (weight / scale).astype(np.float64)
    return _ROUNDING[mode](np.clip(scaled, low, high)), scale


def _quant_range(bits: int, signed: bool, narrow: bool) -> tuple[int, int]:
    """QONNX's ``(min_int, max_int)`` for a bit width (narrow drops the lowest signed level,
    or the highest unsigned one)."""
    if signed:
        return -(2 ** (bits - 1)) + int(narrow), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1 - int(narrow)


def _activation_reason(node: ir.Node) -> str:
    """Why a ``Quant`` on a computed tensor stays."""
    bits = constant_array(node.inputs[3])
    if bits is None or bits.size != 1:
        return "an activation Quant (its input is computed) stays: the packed operators read real or sign inputs"
    width = float(bits.reshape(()))
    if width == 1:
        low, high = _quant_range(
            1, bool(node.attributes.get_int("signed", 1)), bool(node.attributes.get_int("narrow", 0))
        )
        return (
            f"an activation Quant with bit width 1 has the levels {low}..{high} times its scale, not a sign "
            "(+1/-1); QONNX writes a sign as BipolarQuant, which folds into the next layer"
        )
    return (
        f"an activation Quant with bit width {width:g} stays: the packed operators read real or sign inputs, "
        "not a rounded grid"
    )


def _integer_levels(value: ir.Value | None) -> np.ndarray | None:
    """The integers a DequantizeLinear reads: a constant, ``QuantizeLinear`` of a constant, either
    through ``Clip`` with constant bounds; None when they are computed (an activation)."""
    array = _source(value)
    if array is not None:
        _integer_range(ir.DataType.from_numpy(array.dtype), "the dequantized constant")
        return array.astype(np.int64)
    producer = value.producer() if value is not None else None
    if producer is None:
        return None
    if is_op(producer, "Clip"):
        inner = _integer_levels(producer.inputs[0])
        if inner is None:
            return None
        bounds = [
            None
            if i >= len(producer.inputs) or producer.inputs[i] is None
            else _constant(producer, i, f"{label(producer)}'s bound")
            for i in (1, 2)
        ]
        low, high = (None if b is None else b.astype(np.int64) for b in bounds)
        return np.clip(inner, low, high) if low is not None or high is not None else inner
    if is_op(producer, "QuantizeLinear"):
        source = _source(producer.inputs[0])
        return None if source is None else _quantize_linear(producer, _float32(source, "weight"))
    return None


def _quantize_linear(node: ir.Node, weight: np.ndarray) -> np.ndarray:
    """``saturate(round_half_even(weight / scale))`` of a QuantizeLinear with zero point 0."""
    scale = _linear_scale(node, weight.shape)
    zero_point = constant_array(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] is not None else None
    if zero_point is not None:
        dtype = ir.DataType.from_numpy(zero_point.dtype)
    else:
        dtype = ir.DataType(node.attributes.get_int("output_dtype", 0) or ir.DataType.UINT8)
    low, high = _integer_range(dtype, f"{label(node)}'s output")
    return np.clip(np.rint((weight / scale).astype(np.float64)), low, high).astype(np.int64)


def _linear_scale(node: ir.Node, shape: tuple[int, ...]) -> np.ndarray:
    """The float32 scale of a QuantizeLinear/DequantizeLinear, shaped to broadcast over ``shape``.

    Raises:
        Skip: blocked quantization, a scale or zero point that is not a constant, a nonzero zero
            point, or a scale that is neither per tensor nor per axis.
    """
    where = "its " if node.op_type == "DequantizeLinear" else f"{label(node)}'s "
    if node.attributes.get_int("block_size", 0):
        raise Skip(
            f"{label(node)} uses blocked quantization (block_size={node.attributes.get_int('block_size', 0)}) is not folded"
        )
    scale = _float32(_constant(node, 1, f"{where}scale"), f"{where}scale")
    zero_point = constant_array(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] is not None else None
    if len(node.inputs) > 2 and node.inputs[2] is not None and zero_point is None:
        raise Skip(f"{where}zero point is not a constant")
    if zero_point is not None and np.any(zero_point.astype(np.int64) != 0):
        raise Skip(f"{where}zero point {_describe(zero_point)} is not 0; only symmetric quantizers fold")
    if not np.all(np.isfinite(scale)) or np.any(scale == 0):
        raise Skip(f"{where}scale has zero or non-finite elements")
    if scale.size == 1:
        return scale.reshape(())
    axis = node.attributes.get_int("axis", 1)
    axis = axis + len(shape) if axis < 0 else axis
    if scale.ndim != 1 or not 0 <= axis < len(shape) or scale.shape[0] != shape[axis]:
        raise Skip(f"{where}scale of shape {scale.shape} is neither per tensor nor per axis {axis} of {shape}")
    return scale.reshape([-1 if i == axis else 1 for i in range(len(shape))])


def _integer_range(dtype: ir.DataType, what: str) -> tuple[int, int]:
    if dtype not in _INTEGER_RANGES:
        raise Skip(f"{what} is {dtype.name}; only 4 to 32 bit integers are dequantized here")
    return _INTEGER_RANGES[dtype]


def _broadcast_scale(scale: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A QONNX scale (a scalar or of the weight's rank) checked to broadcast into ``shape``."""
    if not np.all(np.isfinite(scale)) or np.any(scale == 0):
        raise Skip("scale has zero or non-finite elements")
    if scale.size == 1:
        return scale.reshape(())
    try:
        fits = np.broadcast_shapes(scale.shape, shape) == tuple(shape)
    except ValueError:
        fits = False
    if not fits:
        raise Skip(f"scale of shape {scale.shape} does not broadcast to the weight's shape {tuple(shape)}")
    return scale


def _constant(node: ir.Node, index: int, what: str) -> np.ndarray:
    array = constant_array(node.inputs[index]) if index < len(node.inputs) else None
    if array is None:
        raise Skip(f"{what} is not a constant")
    return array


def _float32(array: np.ndarray, what: str) -> np.ndarray:
    if array.dtype != np.float32:
        raise Skip(f"{what} dtype is {array.dtype}, only float32 is folded")
    return array


def _describe(array: np.ndarray) -> str:
    """A constant for a reason: its value when it has one element, else its shape."""
    return f"{array.reshape(()).item()}" if array.size == 1 else f"of shape {array.shape}"


def _replace(graph: ir.Graph, node: ir.Node, weight: np.ndarray) -> None:
    """Feed ``weight``, as an initializer with the name of ``node``'s output, to its users; remove ``node``."""
    output = node.outputs[0]
    name = output.name or f"{node.name or node.op_type}.folded"
    output.name = f"{name}.quantized"  # the folded constant takes the name
    folded = add_initializer(graph, name, weight)
    ir.convenience.replace_all_uses_with(output, folded)
    graph.remove(node, safe=True)
