"""The ai.mptc hook into TVM's ONNX importer: dispatch, recorded choices, typed errors with context."""

import dataclasses

import numpy as np
import onnx
import pytest
from onnx import helper

from mptc.errors import InputError, UnsupportedError
from mptc.targets import chooser
from mptc.targets.frontend import Lowering, from_onnx, packed_edges
from mptc.targets.policy import default_policy
from mptc.targets.schedules import kernel_schedules
from mptc.targets.target import resolve_target

from .glue_models import downsample_model
from .harness import compile_x86, reference, run, sample
from .packed_models import binary_chain, binary_conv_model, binary_dense_model

FP32_DENSE = dataclasses.replace(default_policy("x86"), dense_ternary=frozenset())


def _import(model, break_even=None, policy=None):
    lowering = Lowering(kernel_schedules(resolve_target("x86")), policy or default_policy("x86"), break_even=break_even)
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    return from_onnx(model, lowering, {"x": shape}), lowering


def test_layers_call_scheduled_kernels_and_record_why():
    mod, lowering = _import(binary_dense_model(np.random.default_rng(0), 1, 100, 13, mode="real", sparsity=0.96))
    (layer,) = lowering.layers
    assert (layer.name, layer.op_type, layer.kernel) == ("dense", "BinaryDense", chooser.SPARSE_SIGN_SPLIT)
    assert "break-even" in layer.reason and 0.94 < layer.sparsity < 0.98
    kernels = [f for gv, f in mod.functions_items() if gv.name_hint.startswith("mptc_")]
    assert len(kernels) == 1 and kernels[0].attrs["tirx.is_scheduled"]


@pytest.mark.parametrize(
    "model, policy",
    [
        (binary_conv_model(np.random.default_rng(0), 1, 4, 5, 4, 3, 1, 1, mode="real"), FP32_DENSE),  # Relax conv2d
        (binary_dense_model(np.random.default_rng(0), 5, 100, 13, mode="real"), FP32_DENSE),  # Relax matmul (GEMM)
        (binary_dense_model(np.random.default_rng(0), 1, 100, 13, mode="real"), FP32_DENSE),  # (column panels)
    ],
    ids=["conv", "dense-batch5", "dense-batch1"],
)
def test_below_break_even_the_fp32_form_is_plain_relax(model, policy):
    """The fp32 dense form is plain Relax on the unpacked weight, no kernel of ours."""
    mod, lowering = _import(model, break_even=0.9, policy=policy)
    assert lowering.layers[0].kernel == chooser.DENSE_FP32
    assert not any(gv.name_hint.startswith("mptc_") for gv, _ in mod.functions_items())


def test_below_break_even_a_dense_layer_keeps_bit_planes():
    """The default dense form of a BinaryDense is our dense-ternary kernel, reading two uint32 planes."""
    mod, lowering = _import(binary_dense_model(np.random.default_rng(0), 1, 100, 13, mode="real"), break_even=0.9)
    assert lowering.layers[0].kernel == chooser.DENSE_TERNARY
    [kernel] = [f for gv, f in mod.functions_items() if gv.name_hint.startswith("mptc_")]
    assert kernel.script().count('T.Buffer((100, 1), "uint32")') == 2  # plus and minus: (K, ceil(O / 32))


def test_unknown_mptc_op_is_named():
    model = binary_dense_model(np.random.default_rng(0), 1, 100, 13, mode="binary")
    model.graph.node[0].op_type = "BinaryAttention"
    with pytest.raises(UnsupportedError, match="ai.mptc.BinaryAttention"):
        _import(model)


def test_grouped_binary_conv_is_refused_with_layer_and_op():
    model = binary_conv_model(np.random.default_rng(0), 1, 4, 5, 4, 3, 1, 1, mode="binary")
    model.graph.node[0].attribute.append(helper.make_attribute("group", 2))
    with pytest.raises(UnsupportedError, match=r"conv \(BinaryConv\): group=2"):
        _import(model)


def test_real_mode_rejects_a_sign_pad_value():
    model = binary_conv_model(np.random.default_rng(0), 1, 4, 5, 4, 3, 1, 1, mode="real")
    model.graph.node[0].attribute.append(helper.make_attribute("pad_value", -1.0))
    with pytest.raises(InputError, match="pad_value must be 0 in real mode"):
        _import(model)


@pytest.mark.parametrize("signed_scales", [False, True], ids=["positive-scales", "signed-scales-on-zero"])
def test_binary_chains_pass_packed_signs_between_layers(signed_scales):
    model = binary_chain(np.random.default_rng(6), signed_scales=signed_scales)
    vm, lowering = compile_x86(model)
    flags = {layer.name: (layer.input_words, layer.output_words) for layer in lowering.layers}
    assert flags == {
        "c1": (False, True),
        "c2": (True, True),
        "c3": (True, False),
        "d1": (False, True),
        "d2": (True, True),
        "d3": (True, False),
    }
    for seed in range(3):
        x = sample(model, seed)
        np.testing.assert_allclose(run(vm, x), reference(model, x), rtol=1e-5, atol=1e-5)


def test_packed_edges_leave_shared_outputs_and_unsupported_pools_alone():
    chain = binary_chain(np.random.default_rng(6))
    assert packed_edges(chain.graph) == {"c1", "c2", "d1", "d2"}
    pool = next(n for n in chain.graph.node if n.op_type == "MaxPool")
    pool.attribute.append(helper.make_attribute("ceil_mode", 1))
    assert packed_edges(chain.graph) == {"c1", "d1", "d2"}
    chain.graph.output.append(helper.make_tensor_value_info("d1", onnx.TensorProto.FLOAT, None))
    assert packed_edges(chain.graph) == {"c1", "d2"}


def test_packed_activations_can_be_turned_off():
    lowering = Lowering(kernel_schedules(resolve_target("x86")), default_policy("x86"), pack_activations=False)
    from_onnx(binary_chain(np.random.default_rng(6)), lowering, {"x": [2, 70, 8, 8]})
    assert not any(layer.input_words or layer.output_words for layer in lowering.layers)


@pytest.mark.parametrize("size, stride", [(12, 2), (13, 2), (9, 3)])
def test_a_strided_pointwise_conv_runs_on_its_subsampled_input(size, stride):
    """arm's policy: the downsampling 1x1 conv reads a strided slice and convolves at stride 1,
    with the same result (odd maps: the last row and column kept)."""
    model = downsample_model(size=size, stride=stride)
    policy = dataclasses.replace(default_policy("x86"), subsample_strided_pointwise=True)
    mod, _ = _import(model, policy=policy)
    assert "strided_slice" in mod.script()
    vm, _ = compile_x86(model, policy=policy)
    x = np.random.default_rng(size).standard_normal((1, 16, size, size)).astype(np.float32)
    np.testing.assert_allclose(run(vm, x), reference(model, x), rtol=1e-4, atol=1e-4)
    plain, _ = _import(model)
    assert "strided_slice" not in plain.script()  # x86 keeps the strided conv
