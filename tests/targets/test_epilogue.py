"""Which nodes after a BinaryConv its epilogue absorbs, and that the fused kernels compute them exactly."""

import dataclasses

import numpy as np
import onnx
import onnx.numpy_helper
import pytest
from onnx import helper

from mptc.targets import epilogue
from mptc.targets.policy import default_policy

from .harness import compile_x86, reference, relative_error, run, sample
from .packed_models import GraphBuilder, residual_block, ternary


def test_residual_add_and_relu_chains_are_found():
    chains = epilogue.epilogues(residual_block(np.random.default_rng(0), "binary").graph)
    assert chains == {
        "c1": epilogue.Epilogue("x", True, ("add1", "relu1")),
        "c2": epilogue.Epilogue("relu1", False, ("add2",)),  # add2 feeds c3 and the output: no Relu to take
        "c3": epilogue.Epilogue(None, True, ("relu3",)),  # out adds relu3 to s, which the chain reads: not absorbed
    }
    assert chains["c1"].label == "add+relu" and chains["c2"].label == "add" and chains["c3"].label == "relu"


def test_a_residual_produced_after_the_conv_or_a_shared_output_is_left_alone():
    model = residual_block(np.random.default_rng(0), "binary")
    graph = model.graph
    add1 = next(n for n in graph.node if n.name == "add1")
    add1.input[1] = "add2"  # the residual would only exist after the conv
    assert "c1" not in epilogue.epilogues(graph)
    graph.output.append(helper.make_tensor_value_info("c3", 1, None))  # c3's output is a graph output too
    assert "c3" not in epilogue.epilogues(graph)


@pytest.mark.parametrize(
    "mode, sparsity, block",
    [("binary", 0.5, None), ("real", 0.9, 2), ("real", 0.9, 3), ("real", 0.05, None)],
    ids=["xnor-popcount", "block-sparse", "block-sparse-3", "dense"],
)
def test_fused_epilogues_match_the_reference(mode, sparsity, block):
    policy = default_policy("x86")
    if block is not None:
        policy = dataclasses.replace(policy, conv_block=block, short_flat_block=block)
    model = residual_block(np.random.default_rng(1), mode, sparsity)
    vm, lowering = compile_x86(model, policy=policy)
    assert [layer.epilogue for layer in lowering.layers] == ["add+relu", "add", "relu"]
    x = sample(model)
    assert relative_error(run(vm, x), reference(model, x)) < 1e-5


def _relu6_conv(rng, mode: str, sparsity: float, kernel: int) -> onnx.ModelProto:
    """One conv 8 -> 24 on 9x9 followed by ReLU6 written as ``Clip(y, 0, 6)``."""

    g = GraphBuilder(rng)
    attrs = dict(kernel_shape=[kernel, kernel], pads=[kernel // 2] * 4)
    y = g.binary("BinaryConv", "x", ternary(rng, 24, 8 * kernel * kernel, sparsity), "c", mode, **attrs)
    lo, hi = g.const("lo", np.array(0.0, np.float32)), g.const("hi", np.array(0.6, np.float32))
    return g.model((1, 8, 9, 9), g.node("Clip", [y, lo, hi], "relu6"))


@pytest.mark.parametrize(
    "mode, sparsity, kernel, kernel_name",
    [
        ("binary", 0.5, 3, "xnor-popcount"),
        ("sign", 0.5, 3, "xnor-popcount"),
        ("real", 0.9, 3, "block-sparse"),
        ("real", 0.1, 3, "dense-ternary"),
        ("real", 0.1, 1, "dense-fp32"),
    ],
)
def test_relu6_as_clip_is_absorbed_by_every_conv_kernel(mode, sparsity, kernel, kernel_name):
    """``Clip(0, upper)`` after a conv is its epilogue's clamp (a bound low enough to bite here)."""
    model = _relu6_conv(np.random.default_rng(9), mode, sparsity, kernel)
    vm, lowering = compile_x86(model)
    [layer] = lowering.layers
    assert (layer.kernel, layer.epilogue) == (kernel_name, "clip(0, 0.6)")
    x = sample(model)
    expected = reference(model, x)
    assert 0.0 < expected.max() <= 0.6 and (expected == 0.6).any()
    assert relative_error(run(vm, x), expected) < 1e-5


def test_a_clip_with_other_bounds_stays_its_own_node():
    model = _relu6_conv(np.random.default_rng(10), "real", 0.1, 3)
    lo = next(t for t in model.graph.initializer if t.name == "lo")
    lo.CopyFrom(onnx.numpy_helper.from_array(np.array(-1.0, np.float32), "lo"))
    assert "c" not in epilogue.epilogues(model.graph)
