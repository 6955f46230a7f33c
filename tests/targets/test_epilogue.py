"""Which nodes after a BinaryConv its epilogue absorbs, and that the fused kernels compute them exactly."""

import dataclasses

import numpy as np
import pytest
from onnx import helper

from mptc.targets import epilogue
from mptc.targets.policy import default_policy

from .harness import compile_x86, reference, relative_error, run, sample
from .packed_models import residual_block


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
