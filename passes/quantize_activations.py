"""Quantize the float input of each real-input ``ai.mptc`` layer to uint8, calibrated on data.

Before every ``BinaryConv`` and ``BinaryDense`` in ``input_mode="real"`` (an MPT-1/32 layer) the pass inserts the
standard QDQ pair::

    X -> QuantizeLinear(X, s, zp) -> DequantizeLinear(., s, zp) -> BinaryConv / BinaryDense

with one scale ``s`` and uint8 zero point ``zp`` per tensor from the range the calibration data
gives that input (min/max, widened to hold 0 so that zero stays exact). The result is plain ONNX:
onnxruntime runs it as the reference of the quantized numerics, and the CPU targets fold the pair
into the int8 kernels (``targets.kernels.int8_dense``, ``int8_conv``), which quantize the input
themselves and sum uint8 activations against 2-bit weight codes in integers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import onnx
import onnx_ir as ir

from mptc.conventions import for_onnxruntime
from mptc.errors import InputError, UnsupportedError, first_line
from mptc.passes._graph import add_initializer, check_packed, is_mptc, is_op, label, read_ir
from mptc.verify import nonfinite, require_finite

QUANTIZED_OPS = ("BinaryConv", "BinaryDense")
UINT8_LEVELS = 255
CALIBRATION_BATCH = 256  # rows per onnxruntime call: the activations of a batch stay small


@dataclasses.dataclass(frozen=True)
class Quantization:
    """The uint8 quantization of one tensor: ``q = saturate(round(x / scale) + zero_point)``."""

    scale: float
    zero_point: int

    @classmethod
    def of_range(cls, low: float, high: float) -> Quantization:
        """Asymmetric uint8 over ``[min(low, 0), max(high, 0)]``: 0 maps to an integer level."""
        low, high = min(low, 0.0), max(high, 0.0)
        if high == low:
            return cls(1.0, 0)
        scale = float(np.float32((high - low) / UINT8_LEVELS))
        return cls(scale, int(np.clip(np.rint(-low / scale), 0, UINT8_LEVELS)))


def real_input_layers(model: ir.Model) -> list[ir.Node]:
    """The real-input ``ai.mptc`` layers: the nodes whose input the pass quantizes."""
    return [
        node
        for node in model.graph
        if is_mptc(node) and node.op_type in QUANTIZED_OPS and check_packed(node).input_mode == "real"
    ]


def _dequantized(node: ir.Node) -> bool:
    """Whether ``node`` already reads a ``DequantizeLinear`` output (quantized before)."""
    x = node.inputs[0]
    return x is not None and is_op(x.producer(), "DequantizeLinear")


def calibrate(
    model: onnx.ModelProto, input_name: str, calibration: np.ndarray, tensors: list[str]
) -> dict[str, Quantization]:
    """The :class:`Quantization` of each of ``tensors`` from its range over ``calibration`` (rows
    of the model's input), the model run by onnxruntime with those tensors as extra outputs."""
    import onnxruntime as ort

    runnable = for_onnxruntime(model)
    known = {output.name for output in runnable.graph.output}
    runnable.graph.output.extend(onnx.ValueInfoProto(name=name) for name in tensors if name not in known)
    try:
        session = ort.InferenceSession(runnable.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as error:  # noqa: BLE001 - onnxruntime's load errors have no common base class
        raise UnsupportedError(f"onnxruntime cannot run the model to calibrate it: {first_line(error)}") from error
    low = dict.fromkeys(tensors, np.inf)
    high = dict.fromkeys(tensors, -np.inf)
    for batch in _batches(calibration, _static_batch(model, input_name)):
        values = session.run(tensors, {input_name: batch})
        for name, value in zip(tensors, values):
            require_finite(value, f"the activations of {name!r} on the calibration data")
            low[name], high[name] = min(low[name], float(value.min())), max(high[name], float(value.max()))
    return {name: Quantization.of_range(low[name], high[name]) for name in tensors}


def _static_batch(model: onnx.ModelProto, input_name: str) -> int | None:
    """The input's batch dimension where the model fixes it."""
    graph_input = next(i for i in model.graph.input if i.name == input_name)
    dims = graph_input.type.tensor_type.shape.dim
    return dims[0].dim_value if dims and dims[0].HasField("dim_value") and dims[0].dim_value > 0 else None


def _batches(samples: np.ndarray, batch: int | None) -> Iterator[np.ndarray]:
    """``samples`` in batches of ``batch`` rows (the last one filled up with its own first rows,
    which leaves every range as it is), or of :data:`CALIBRATION_BATCH` where the batch is free."""
    size = batch or CALIBRATION_BATCH
    for start in range(0, len(samples), size):
        chunk = samples[start : start + size]
        yield chunk if batch is None else np.resize(chunk, (batch, *chunk.shape[1:]))


class QuantizeActivationsPass(ir.passes.InPlacePass):
    """Insert ``QuantizeLinear -> DequantizeLinear`` before the layers of ``quantizations`` (by the
    name of the tensor each reads)."""

    def __init__(self, quantizations: dict[str, Quantization]) -> None:
        super().__init__()
        self.quantizations = quantizations

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        modified = False
        for node in real_input_layers(model):
            x = node.inputs[0]
            assert x is not None  # check_packed: five inputs, none missing
            q = self.quantizations[x.name or ""]
            scale = add_initializer(model.graph, f"{node.name}.input_scale", np.array(q.scale, np.float32))
            zero_point = add_initializer(model.graph, f"{node.name}.input_zero_point", np.array(q.zero_point, np.uint8))
            quantize = ir.Node("", "QuantizeLinear", [x, scale, zero_point], name=f"{node.name}.quantize")
            dequantize = ir.Node(
                "", "DequantizeLinear", [quantize.outputs[0], scale, zero_point], name=f"{node.name}.dequantize"
            )
            quantize.outputs[0].name = f"{node.name}.input_q"
            dequantize.outputs[0].name = f"{node.name}.input_dq"
            model.graph.insert_before(node, [quantize, dequantize])
            node.replace_input_with(0, dequantize.outputs[0])
            modified = True
        return ir.passes.PassResult(model, modified)


def quantize_activations(model: onnx.ModelProto, input_name: str, calibration: np.ndarray) -> onnx.ModelProto:
    """``model`` (packed) with the inputs of its real-input layers quantized to uint8, each
    calibrated on ``calibration`` (rows of the model's input, float32).

    Raises:
        InputError: calibration data that is empty or not finite; UnsupportedError: a model with no
        real-input ``ai.mptc`` layer, or one onnxruntime cannot run.
    """
    if calibration.ndim < 1 or len(calibration) == 0:
        raise InputError("the calibration data holds no sample")
    found = nonfinite(calibration)
    if found is not None:
        raise InputError(f"the calibration data hold NaN or Inf ({found}): no range can be calibrated on them")
    graph = read_ir(model)
    layers = real_input_layers(graph)
    if not layers:
        raise UnsupportedError(
            "--activations int8: the model has no real-input BinaryConv or BinaryDense layer (int8"
            " activations are for MPT-1/32 layers; binary-input layers keep their XNOR-popcount kernels)"
        )
    quantized = next((layer for layer in layers if _dequantized(layer)), None)
    if quantized is not None:
        raise UnsupportedError(
            f"--activations int8: {label(quantized)} already reads a DequantizeLinear (the model was quantized"
            " before): compile it as it is, without --activations, or quantize the unquantized model"
        )
    tensors = sorted({layer.inputs[0].name or "" for layer in layers if layer.inputs[0] is not None})
    QuantizeActivationsPass(calibrate(model, input_name, calibration.astype(np.float32), tensors))(graph)
    return ir.to_proto(graph)
