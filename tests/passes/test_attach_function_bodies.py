import onnx_ir as ir
import pytest

from mptc.errors import UnsupportedError
from mptc.ops.reference import DOMAIN
from mptc.passes.attach_function_bodies import AttachFunctionBodiesPass
from mptc.passes.pack_ternary_weights import PackTernaryWeightsPass
from tests.passes.mptc_graphs import model_from_text, ternary


def packed_ir(rng, opset=19):
    text = f"""<ir_version: 10, opset_import: ["" : {opset}]>
    g (float[1,2,5,5] x) => (float[n,k] y) {{
      a = Conv <pads = [1, 1, 1, 1]> (x, w1)
      b = Conv (a, w2)
      f = Flatten (b)
      y = Gemm <transB = 1> (f, w3)
    }}"""
    model = ir.from_proto(
        model_from_text(text, w1=ternary(rng, (3, 2, 3, 3)), w2=ternary(rng, (4, 3, 3, 3)), w3=ternary(rng, (2, 36)))
    )
    PackTernaryWeightsPass()(model)
    return model


def test_one_body_per_op_type_in_use(rng):
    model = packed_ir(rng)
    assert AttachFunctionBodiesPass()(model).modified
    assert sorted(model.functions) == [(DOMAIN, "BinaryConv", ""), (DOMAIN, "BinaryDense", "")]
    assert model.functions[(DOMAIN, "BinaryConv", "")].opset_imports == {"": 19}
    assert model.opset_imports[DOMAIN] == 1


def test_second_run_changes_nothing(rng):
    model = packed_ir(rng)
    AttachFunctionBodiesPass()(model)
    assert not AttachFunctionBodiesPass()(model).modified


def test_model_without_mptc_ops_is_left_alone(rng):
    text = '<ir_version: 10, opset_import: ["" : 19]>\ng (float[2] x) => (float[2] y) { y = Relu (x) }'
    model = ir.from_proto(model_from_text(text))
    assert not AttachFunctionBodiesPass()(model).modified and not model.functions


def test_opset_below_19_is_a_precondition(rng):
    model = packed_ir(rng, opset=18)
    with pytest.raises(ir.passes.PreconditionError) as raised:
        AttachFunctionBodiesPass()(model)
    assert isinstance(raised.value.__cause__, UnsupportedError)
    assert "opset >= 19, the model imports 18" in str(raised.value.__cause__)


def test_unknown_mptc_op_is_named(rng):
    model = packed_ir(rng)
    next(iter(model.graph)).op_type = "BinaryPool"
    with pytest.raises(UnsupportedError, match="'BinaryPool' is not an ai.mptc operator"):
        AttachFunctionBodiesPass()(model)
