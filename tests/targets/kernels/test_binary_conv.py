"""XNOR-popcount and real-input (sparse and dense) BinaryConv kernels vs ``mptc.ops.reference`` on x86."""

import dataclasses

import numpy as np
import onnx
import pytest
import tvm_ffi
from onnx import helper
from tvm import s_tir, tirx

from mptc.targets import chooser
from mptc.targets.kernels import binary_conv, exact_sign
from mptc.targets.layout import ConvGeometry
from mptc.targets.policy import default_policy
from mptc.targets.schedules import x86
from mptc.targets.schedules.arm import NEON_TILES
from mptc.targets.schedules.cpu import CpuKernelSchedules
from mptc.targets.schedules.x86 import AVX2_TILES
from mptc.targets.target import resolve_target

from ..harness import compile_x86, reference, relative_error, run, sample
from ..packed_models import GraphBuilder, binary_chain, binary_conv_model, residual_block, ternary

# (batch, channels, size, out, kernel, stride, pad): odd channel counts, 1x1 and 3x3, stride 1/2, pad 0/1
BINARY_CASES = [
    (1, 3, 7, 5, 3, 1, 1),
    (2, 3, 7, 5, 3, 2, 0),
    (1, 70, 9, 13, 3, 2, 1),
    (2, 70, 6, 13, 1, 1, 0),
    (1, 64, 5, 8, 3, 1, 0),
    (2, 130, 5, 17, 3, 1, 1),
    (1, 5, 8, 3, 1, 2, 1),
    (1, 64, 16, 20, 3, 1, 1),  # one channel word, stride 1, whole vectors of columns: vectors along rows
    (2, 9, 8, 13, 3, 1, 1),
]


@pytest.mark.parametrize("case", BINARY_CASES, ids=lambda c: "n{}c{}s{}o{}k{}st{}p{}".format(*c))
def test_xnor_popcount_conv_matches_reference(case):
    model = binary_conv_model(np.random.default_rng(1), *case, mode="binary")
    vm, lowering = compile_x86(model)
    x = sample(model)
    assert lowering.layers[0].kernel == chooser.XNOR_POPCOUNT
    np.testing.assert_allclose(run(vm, x), reference(model, x), rtol=1e-5, atol=1e-5)


# Flat output rows shorter than a vector, of whole vectors plus a tail, and long ones.
REAL_CASES = [
    (1, 3, 7, 5, 3, 1, 1),
    (2, 70, 9, 13, 3, 2, 1),
    (1, 5, 8, 3, 1, 2, 0),
    (1, 64, 4, 96, 3, 1, 1),
    (2, 5, 34, 7, 3, 1, 1),
    (1, 4, 67, 6, 3, 2, 1),
]


@pytest.mark.parametrize(
    "block, l1_floats",
    [(1, None), (2, None), (3, 1), (4, None), (4, 1), (None, None)],
    ids=["block1", "block2", "block3-channel-groups", "block4", "block4-channel-groups", "dense"],
)
@pytest.mark.parametrize("case", REAL_CASES, ids=["c3o5", "c70o13s2", "c5o3k1s2", "c64o96s4", "planes34", "planes67s2"])
def test_real_input_conv_every_path_matches_reference(case, block, l1_floats):
    """Block-sparse with 1-4 outputs per block (blocks that do not divide the outputs too), the
    input channels in one group or one group per channel (an L1 budget of one value), and dense."""
    policy, kernels = dataclasses.replace(default_policy("x86"), dense_ternary=frozenset()), None
    if block is not None:
        policy = dataclasses.replace(policy, conv_block=block, short_flat_block=block)
    if l1_floats:
        tiles = x86.kernel_schedules(resolve_target("x86").has_avx512_popcount).tiles
        kernels = CpuKernelSchedules(dataclasses.replace(tiles, l1_floats=l1_floats, pointwise_slice_floats=0))
        policy = dataclasses.replace(policy, short_flat=0)  # every map grouped
    model = binary_conv_model(np.random.default_rng(2), *case, mode="real", sparsity=0.8)
    vm, lowering = compile_x86(model, 1.1 if block is None else 0.0, kernels, policy)
    x = sample(model)
    assert lowering.layers[0].kernel == (chooser.DENSE_FP32 if block is None else chooser.BLOCK_SPARSE)
    assert relative_error(run(vm, x), reference(model, x)) < 1e-5


# Channel counts not a multiple of the group (a zero-padded last group), strides 1 and 2, 1x1 and
# 3x3, shifted and channel planes, a map of whole vectors, odd outputs.
LUT_CASES = REAL_CASES + [(1, 16, 14, 16, 3, 1, 1)]


@pytest.mark.parametrize("group", [2, 3, 4])
@pytest.mark.parametrize("tiles", ["host", "neon", "channel-groups"])
@pytest.mark.parametrize("case", LUT_CASES, ids=lambda c: "n{}c{}s{}o{}k{}st{}p{}".format(*c))
def test_ternary_lut_conv_matches_reference(case, tiles, group):
    """The gather over the signed sums of ``group``-channel groups, with this host's tiles,
    NEON's, and channel groups of one plane each (an L1 budget of one value)."""
    policy = dataclasses.replace(default_policy("x86"), lut_below=0.9, lut_group=group)
    kernels = {"host": None, "neon": NEON, "channel-groups": None}[tiles]
    if tiles == "channel-groups":
        host = x86.kernel_schedules(resolve_target("x86").has_avx512_popcount).tiles
        kernels = CpuKernelSchedules(dataclasses.replace(host, l1_floats=1, pointwise_slice_floats=0))
    model = binary_conv_model(np.random.default_rng(3), *case, mode="real", sparsity=0.5)
    vm, lowering = compile_x86(model, kernels=kernels, policy=policy)
    x = sample(model)
    assert lowering.layers[0].kernel == chooser.TERNARY_LUT
    assert relative_error(run(vm, x), reference(model, x)) < 1e-5


@pytest.mark.parametrize("sparsity", [0.0, 0.75])
def test_ternary_lut_conv_fuses_residual_add_and_relu(sparsity):
    """Dense and sparse weights alike, the epilogue fused as on the block-sparse path."""
    policy = dataclasses.replace(default_policy("x86"), lut_below=0.9)
    model = residual_block(np.random.default_rng(34), "real", sparsity=sparsity)
    vm, lowering = compile_x86(model, policy=policy)
    convs = [layer for layer in lowering.layers if layer.op_type == "BinaryConv"]
    assert {layer.kernel for layer in convs} == {chooser.TERNARY_LUT}
    assert [layer.epilogue for layer in lowering.layers][:2] == ["add+relu", "add"]
    x = sample(model)
    assert relative_error(run(vm, x), reference(model, x)) < 1e-5


@pytest.mark.parametrize("pad_value", [-1.0, 1.0])
def test_xnor_popcount_conv_pads_with_a_sign(pad_value):
    model = binary_conv_model(np.random.default_rng(5), 1, 70, 6, 13, 3, 2, 1, mode="binary")
    model.graph.node[0].attribute.append(helper.make_attribute("pad_value", pad_value))
    vm, _ = compile_x86(model)
    x = sample(model)
    np.testing.assert_allclose(run(vm, x), reference(model, x), rtol=1e-5, atol=1e-5)


# NEON tiles on this host: their popcounts add up in 16-bit counters (``schedules.lane_counts``),
# portable TIR, so the aarch64 form of the kernels runs here (and under qemu: tests/deploy/test_neon_popcount.py).
NEON = CpuKernelSchedules(NEON_TILES)


@pytest.mark.parametrize(
    "case",
    BINARY_CASES + [(1, 256, 14, 256, 3, 1, 1), (1, 200, 7, 40, 3, 2, 1)],
    ids=lambda c: "n{}c{}s{}o{}k{}st{}p{}".format(*c),
)
def test_xnor_popcount_conv_in_16_bit_counters_matches_reference(case):
    model = binary_conv_model(np.random.default_rng(11), *case, mode="binary")
    vm, lowering = compile_x86(model, kernels=NEON)
    x = sample(model)
    assert lowering.layers[0].kernel == chooser.XNOR_POPCOUNT
    np.testing.assert_allclose(run(vm, x), reference(model, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pad_value", [-1.0, 1.0])
def test_xnor_popcount_conv_in_16_bit_counters_pads_with_a_sign(pad_value):
    model = binary_conv_model(np.random.default_rng(5), 1, 70, 6, 13, 3, 2, 1, mode="binary")
    model.graph.node[0].attribute.append(helper.make_attribute("pad_value", pad_value))
    vm, _ = compile_x86(model, kernels=NEON)
    x = sample(model)
    np.testing.assert_allclose(run(vm, x), reference(model, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("signed_scales", [False, True])
def test_packed_chain_in_16_bit_counters_matches_reference(signed_scales):
    """Packed outputs: the thresholds compare the folded counts (conv, through a pool, stride 2, dense)."""
    model = binary_chain(np.random.default_rng(12), signed_scales=signed_scales)
    vm, lowering = compile_x86(model, kernels=NEON)
    x = sample(model)
    assert {layer.kernel for layer in lowering.layers} == {chooser.XNOR_POPCOUNT}
    np.testing.assert_allclose(run(vm, x), reference(model, x), rtol=1e-5, atol=1e-5)


def sign_inputs(model) -> dict[str, np.ndarray]:
    """Inputs of an ONNX ``Sign`` layer: zeros everywhere (every 7th value: every output row
    counts exactly), one zero in the last image's middle (only the rows whose window holds it),
    and none (every row counts as binary input)."""
    x = sample(model)
    none = np.where(x == 0.0, np.float32(0.5), x)
    one = none.copy()
    one[-1, -1, one.shape[2] // 2, one.shape[3] // 2] = 0.0
    return {"every-7th": x, "one": one, "none": none}


@pytest.mark.parametrize("case", BINARY_CASES, ids=lambda c: "n{}c{}s{}o{}k{}st{}p{}".format(*c))
def test_onnx_sign_input_conv_matches_reference_with_exact_zeros(case):
    """``input_mode="sign"``: zeros in the input and padding add nothing, in the rows that count
    exactly and beside rows that count as binary input."""
    model = binary_conv_model(np.random.default_rng(31), *case, mode="sign")
    vm, lowering = compile_x86(model)
    assert lowering.layers[0].kernel == chooser.XNOR_POPCOUNT and "ONNX Sign" in lowering.layers[0].reason
    for zeros, x in sign_inputs(model).items():
        np.testing.assert_allclose(run(vm, x), reference(model, x), rtol=1e-5, atol=1e-5, err_msg=zeros)


@pytest.mark.parametrize("tiles", [AVX2_TILES, NEON_TILES], ids=["avx2", "neon"])
def test_onnx_sign_input_conv_with_other_families_tiles(tiles):
    """NEON's 16-bit counters do not serve the exact form: it counts as on x86."""
    model = binary_conv_model(np.random.default_rng(32), 2, 70, 9, 13, 3, 2, 1, mode="sign")
    vm, _ = compile_x86(model, kernels=CpuKernelSchedules(tiles))
    for zeros, x in sign_inputs(model).items():
        np.testing.assert_allclose(run(vm, x), reference(model, x), rtol=1e-5, atol=1e-5, err_msg=zeros)


def test_onnx_sign_input_counts_in_counters_where_they_fold_exactly():
    """NEON's 16-bit counters hold an exact row's counts up to ``MAX_COUNTER_WORDS`` words
    (``exact_sign.Counts``); past them, and on x86, the counts are int64 words."""
    neon, avx512 = CpuKernelSchedules(NEON_TILES), CpuKernelSchedules(x86.AVX512_TILES)
    assert exact_sign.MAX_COUNTER_WORDS == 255  # 2^15 + 128 * 255 < 2^16
    assert neon.exact_sign_counts(255) == exact_sign.IN_COUNTERS
    assert neon.exact_sign_counts(256) == avx512.exact_sign_counts(9) == exact_sign.IN_WORDS


@pytest.mark.parametrize("tiles", [x86.AVX512_TILES, NEON_TILES], ids=["avx512", "neon-counters"])
def test_onnx_sign_input_conv_chooses_its_form_once_per_output_row(tiles):
    """The scheduled kernel tests the row's flag around the reduction over taps, not per word:
    each form's loop holds no select (in 16-bit counters too)."""
    geo = ConvGeometry(1, 128, 14, 14, out_channels=64, kernel=(3, 3), strides=(1, 1), pads=(1, 1, 1, 1))
    kernels = CpuKernelSchedules(tiles)
    counts = kernels.exact_sign_counts(9 * geo.channel_words)
    func = kernels.binary_conv(binary_conv.exact_sign_conv_func(geo, kernels.word_lanes, (3, 3), counts=counts))
    branches, selects = [], []

    def visit(node):
        if isinstance(node, tirx.IfThenElse):
            branches.append(node)
        elif isinstance(node, s_tir.SBlock) and node.name_hint.startswith("popcount_update"):
            selects.append("if_then_else" in str(node.body))
        return node

    tvm_ffi.structural_map(func.body, [((tirx.IfThenElse, s_tir.SBlock), visit)], order="post")
    assert len(branches) == 1 and "zero_flags" in str(branches[0].condition)
    assert selects and not any(selects)


def test_onnx_sign_input_conv_fuses_residual_add_and_relu():
    model = residual_block(np.random.default_rng(33), "sign")
    vm, lowering = compile_x86(model)
    assert [layer.epilogue for layer in lowering.layers] == ["add+relu", "add", "relu"]
    x = sample(model)
    assert relative_error(run(vm, x), reference(model, x)) < 1e-5


@pytest.mark.parametrize("target", ["arm", "cuda"])
def test_onnx_sign_input_builds_for_arm_and_cuda(tmp_path, target):
    from mptc.targets.compile import compile_model

    model = binary_conv_model(np.random.default_rng(35), 1, 70, 9, 13, 3, 1, 1, mode="sign")
    manifest = compile_model(model, target, tmp_path)
    assert [layer["input_mode"] for layer in manifest["layers"]] == ["sign"]
    assert (tmp_path / "module.so").is_file()


@pytest.mark.parametrize(
    "case, in_place",
    [((2, 70, 8, 13, 1, 1, 0), True), ((1, 16, 7, 24, 1, 1, 0), False), ((1, 16, 8, 24, 1, 1, 1), False)],
    ids=["whole-chunks", "49-pixels", "padded"],
)
def test_pointwise_conv_gathers_from_its_input_in_place(case, in_place):
    """A 1x1 stride-1 conv without padding whose chunks end with the plane reads its input
    itself (no flat copy); a map of 49 pixels (chunks past the plane) or a padded one still copies."""
    from mptc.targets.frontend import Lowering, from_onnx
    from mptc.targets.schedules import kernel_schedules

    model = binary_conv_model(np.random.default_rng(6), *case, mode="real", sparsity=0.9)
    target = resolve_target("x86")
    mod = from_onnx(
        model, Lowering(kernel_schedules(target), default_policy("x86")), {"x": list(case[:2]) + [case[2]] * 2}
    )
    [kernel] = [f for gv, f in mod.functions_items() if gv.name_hint.startswith("mptc_")]
    assert ('T.sblock("flat")' not in kernel.script()) == in_place
    vm, lowering = compile_x86(model)
    assert lowering.layers[0].kernel == chooser.BLOCK_SPARSE
    x = sample(model)
    assert relative_error(run(vm, x), reference(model, x)) < 1e-5


def _pointwise_block(channels: int, size: int, out: int) -> onnx.ModelProto:
    """``Clip(conv2(Relu(conv1(x) + x)), 0, 6)``: two real-input 1x1 convs, one with a residual
    add and ReLU, one with ReLU6, on a ``size x size`` map."""
    rng = np.random.default_rng(12)
    g = GraphBuilder(rng)
    h = g.binary("BinaryConv", "x", ternary(rng, channels, channels, 0.8), "c1", "real", kernel_shape=[1, 1])
    h = g.node("Relu", [g.node("Add", [h, "x"], "add1")], "relu1")
    y = g.binary("BinaryConv", h, ternary(rng, out, channels, 0.8), "c2", "real", kernel_shape=[1, 1])
    bounds = [g.const("zero", np.float32(0.0)), g.const("six", np.float32(6.0))]
    return g.model((1, channels, size, size), g.node("Clip", [y, *bounds], "relu6"))


@pytest.mark.parametrize("tiles", ["host", "neon", "channel-groups"])
@pytest.mark.parametrize("size", [7, 8], ids=["49-pixels", "64-pixels"])
def test_block_sparse_conv_applies_its_epilogue_in_the_gather(tiles, size):
    """Where the flat outputs are the output's pixels, the gather stores the outputs itself,
    epilogue applied (no output stage): with a partial last vector (49 pixels), a last block of
    fewer outputs (13 in blocks of 4), input channels in one group or one per channel, and the
    residual add, ReLU and ReLU6 fused."""
    from mptc.targets.frontend import Lowering, from_onnx

    host = x86.kernel_schedules(resolve_target("x86").has_avx512_popcount)
    kernels = {
        "host": host,
        "neon": NEON,
        "channel-groups": CpuKernelSchedules(dataclasses.replace(host.tiles, l1_floats=1, pointwise_slice_floats=0)),
    }[tiles]
    policy = dataclasses.replace(default_policy("x86"), conv_block=4, short_flat_block=4, short_flat=0)
    model = _pointwise_block(24, size, 13)
    mod = from_onnx(model, Lowering(kernels, policy, break_even=0.0), {"x": [1, 24, size, size]})
    scripts = [f.script() for gv, f in mod.functions_items() if gv.name_hint.startswith("mptc_")]
    assert len(scripts) == 2 and not any('T.sblock("output")' in s for s in scripts)
    vm, lowering = compile_x86(model, 0.0, kernels, policy)
    assert [layer.epilogue for layer in lowering.layers] == ["add+relu", "clip(0, 6)"]
    x = sample(model)
    assert relative_error(run(vm, x), reference(model, x)) < 1e-5


def test_block_sparse_conv_on_padded_rows_keeps_its_output_stage():
    """Flat rows wider than the output's (a padded 3x3 conv on channel planes): the gather's sums
    go to an accumulator, and the output stage drops the extra columns."""
    from mptc.targets.frontend import Lowering, from_onnx
    from mptc.targets.schedules import kernel_schedules

    model = binary_conv_model(np.random.default_rng(6), 1, 5, 34, 7, 3, 1, 1, mode="real", sparsity=0.8)
    lowering = Lowering(kernel_schedules(resolve_target("x86")), default_policy("x86"), break_even=0.0)
    mod = from_onnx(model, lowering, {"x": [1, 5, 34, 34]})
    [script] = [f.script() for gv, f in mod.functions_items() if gv.name_hint.startswith("mptc_")]
    assert 'T.sblock("flat")' in script and 'T.sblock("output")' in script
