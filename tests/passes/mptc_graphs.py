"""Test helpers for the passes: ternary weights, models from ONNX text, numeric comparison."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.parser
import onnx.reference
import onnx_ir as ir
import onnxruntime as ort
from onnx import numpy_helper

from mptc.ops.reference import REFERENCE_OPS
from mptc.passes.attach_function_bodies import AttachFunctionBodiesPass
from mptc.passes.pipeline import IR_VERSION


def ternary(
    rng: np.random.Generator, shape: tuple[int, ...], sparsity: float = 0.5, per_channel: bool = True
) -> np.ndarray:
    """A float32 weight with rows in {-a_o, 0, +a_o} (one alpha for all rows if not per_channel)."""
    signs = np.where(rng.random(shape) < 0.5, -1.0, 1.0)
    kept = rng.random(shape) >= sparsity
    alpha = rng.uniform(0.1, 2.0, size=shape[0] if per_channel else 1)
    return (signs * kept * alpha.reshape((-1,) + (1,) * (len(shape) - 1))).astype(np.float32)


def model_from_text(text: str, **initializers: np.ndarray) -> onnx.ModelProto:
    """Parse an ONNX text model and add ``initializers`` (arrays are kept in their dtype)."""
    model = onnx.parser.parse_model(text)
    model.graph.initializer.extend(numpy_helper.from_array(np.asarray(a), name) for name, a in initializers.items())
    onnx.checker.check_model(model, full_check=True)
    return model


def apply(model: onnx.ModelProto, *passes: ir.passes.PassBase) -> tuple[onnx.ModelProto, list[bool]]:
    """Run ``passes`` in order on a copy, attach function bodies; the model and each pass's ``modified``."""
    ir_model = ir.from_proto(model)
    modified = [p(ir_model).modified for p in passes]
    AttachFunctionBodiesPass()(ir_model)
    ir_model.ir_version = IR_VERSION
    proto = ir.to_proto(ir_model)
    onnx.checker.check_model(proto, full_check=True)
    return proto, modified


def ops(model: onnx.ModelProto) -> list[str]:
    """The graph's op types, domain-qualified for non-ONNX domains."""
    return [f"{n.domain}.{n.op_type}" if n.domain else n.op_type for n in model.graph.node]


def node(model: onnx.ModelProto, op_type: str) -> onnx.NodeProto:
    """The single node of ``op_type``."""
    (found,) = [n for n in model.graph.node if n.op_type == op_type]
    return found


def attribute(node_proto: onnx.NodeProto, name: str):
    """An attribute's Python value (strings decoded)."""
    (attr,) = [a for a in node_proto.attribute if a.name == name]
    value = onnx.helper.get_attribute_value(attr)
    return value.decode() if isinstance(value, bytes) else value


def run_ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def assert_close(expected: np.ndarray, actual: np.ndarray, rtol: float = 1e-4) -> None:
    """Equal within ``rtol`` relative to the output's magnitude (sums of many taps cancel)."""
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


def assert_equivalent(before: onnx.ModelProto, after: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> None:
    """``after`` computes what ``before`` does, run by onnxruntime and by the NumPy references."""
    expected = run_ort(before, feeds)
    for want, got in zip(expected, run_ort(after, feeds)):
        assert_close(want, got)
    evaluator = onnx.reference.ReferenceEvaluator(after, new_ops=REFERENCE_OPS)
    for want, got in zip(expected, evaluator.run(None, feeds)):
        assert_close(want, got)
