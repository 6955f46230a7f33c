"""``unpack_model``: every ``ai.mptc`` node as standard fp32 ONNX that onnxruntime runs as the reference does."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper
from onnx.reference import ReferenceEvaluator

from mptc.errors import UnsupportedError
from mptc.ops.reference import DOMAIN, REFERENCE_OPS
from mptc.ops.unpack import unpack_model
from tests.targets.packed_models import binary_chain, binary_conv_model, residual_block, small_network


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    runnable = onnx.ModelProto()
    runnable.CopyFrom(model)
    runnable.ir_version = min(runnable.ir_version, 10)
    session = ort.InferenceSession(runnable.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {model.graph.input[0].name: x})[0]


def _padded_binary_conv(pad_value: float) -> onnx.ModelProto:
    model = binary_conv_model(np.random.default_rng(3), 1, 5, 6, 4, 3, 1, 1, mode="binary")
    model.graph.node[0].attribute.append(helper.make_attribute("pad_value", pad_value))
    return model


MODELS = {
    "small-network": lambda: small_network(np.random.default_rng(0)),
    "binary-chain": lambda: binary_chain(np.random.default_rng(1)),
    "residual-real": lambda: residual_block(np.random.default_rng(2), "real"),
    "pad-minus-one": lambda: _padded_binary_conv(-1.0),
    "pad-plus-one": lambda: _padded_binary_conv(1.0),
}


@pytest.mark.parametrize("name", MODELS)
def test_unpacked_model_runs_what_the_packed_one_encodes(name):
    model = MODELS[name]()
    unpacked = unpack_model(model)
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(4).standard_normal(shape).astype(np.float32)
    x.reshape(-1)[::5] = 0.0  # sign(0) = +1
    expected = ReferenceEvaluator(model, new_ops=REFERENCE_OPS).run(None, {"x": x})[0]
    np.testing.assert_allclose(_run(unpacked, x), expected, rtol=1e-4, atol=1e-4)
    assert not any(node.domain == DOMAIN for node in unpacked.graph.node)
    assert {node.op_type for node in unpacked.graph.node}.isdisjoint({"BitShift", "BitwiseAnd", "Slice", "Shape"})
    assert not unpacked.functions and all(o.domain != DOMAIN for o in unpacked.opset_import)
    packed_names = {node.name for node in model.graph.node if node.domain == DOMAIN}
    assert packed_names <= {node.name for node in unpacked.graph.node}  # per-layer tables match by name


def test_a_conv_whose_channels_are_unknown_is_refused():
    model = binary_conv_model(np.random.default_rng(5), 1, 5, 6, 4, 3, 1, 1, mode="real")
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "c"
    with pytest.raises(UnsupportedError, match="channels are not known"):
        unpack_model(model)


def test_sign_mode_unpacks_to_onnx_sign():
    model = binary_conv_model(np.random.default_rng(6), 1, 5, 6, 4, 3, 1, 1, mode="sign")
    unpacked = unpack_model(model)
    assert [node.op_type for node in unpacked.graph.node] == ["Sign", "Conv"]
    x = np.random.default_rng(7).standard_normal((1, 5, 6, 6)).astype(np.float32)
    x.reshape(-1)[::4] = 0.0
    expected = ReferenceEvaluator(model, new_ops=REFERENCE_OPS).run(None, {"x": x})[0]
    np.testing.assert_allclose(_run(unpacked, x), expected, rtol=1e-4, atol=1e-4)


def test_unpacking_leaves_onnx_defs_as_it_found_them():
    """The schemas are registered for the shape inference only: other commands in the process see
    the registry unchanged."""
    import onnx.defs

    before = onnx.defs.has("BinaryConv", DOMAIN)
    unpack_model(small_network(np.random.default_rng(8)))
    assert onnx.defs.has("BinaryConv", DOMAIN) == before
