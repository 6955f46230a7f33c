"""XNOR-popcount and real-input (sparse and dense) BinaryDense kernels vs ``mptc.ops.reference`` on x86."""

import numpy as np
import pytest

from mptc.targets import chooser
from mptc.targets.policy import default_policy
from mptc.targets.schedules import lane_counts
from mptc.targets.schedules.arm import NEON_TILES
from mptc.targets.schedules.cpu import CpuKernelSchedules

from ..harness import compile_x86, reference, relative_error, run, sample
from ..packed_models import GraphBuilder, binary_dense_model, ternary

BATCH_LANES_FROM = default_policy("x86").batch_lanes_from
CASES = [(1, 100, 13), (5, 70, 37), (5, 200, 64), (1, 64, 3)]  # (batch, K, out): K off and on word boundaries


@pytest.mark.parametrize("batch, k, out", CASES)
def test_xnor_popcount_dense_matches_reference(batch, k, out):
    model = binary_dense_model(np.random.default_rng(3), batch, k, out, mode="binary")
    vm, lowering = compile_x86(model)
    x = sample(model)
    assert lowering.layers[0].kernel == chooser.XNOR_POPCOUNT
    np.testing.assert_allclose(run(vm, x), reference(model, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("break_even, kernel", [(0.0, chooser.SPARSE_SIGN_SPLIT), (1.1, chooser.DENSE_TERNARY)])
@pytest.mark.parametrize("batch, k, out", [(1, 100, 13), (5, 70, 37), (BATCH_LANES_FROM, 70, 37), (19, 100, 13)])
def test_real_input_dense_both_paths_match_reference(batch, k, out, break_even, kernel):
    """From ``batch_lanes_from`` rows the sparse form sums along the batch (19: a batch that is no
    whole number of vectors)."""
    model = binary_dense_model(np.random.default_rng(4), batch, k, out, mode="real", sparsity=0.8)
    vm, lowering = compile_x86(model, break_even)
    x = sample(model)
    assert lowering.layers[0].kernel == kernel
    assert ("along the batch" in lowering.layers[0].reason) == (
        kernel == chooser.SPARSE_SIGN_SPLIT and batch >= BATCH_LANES_FROM
    )
    assert relative_error(run(vm, x), reference(model, x)) < 1e-5


@pytest.mark.parametrize("break_even, kernel", [(0.0, chooser.SPARSE_SIGN_SPLIT), (1.1, chooser.DENSE_TERNARY)])
@pytest.mark.parametrize("batch", [1, 19])
def test_real_input_dense_absorbs_a_following_relu(batch, break_even, kernel):
    """Every real-input dense kernel (the sparse form over outputs and along the batch, the
    dense-ternary one) clamps in its own epilogue: no ReLU kernel follows it."""
    rng = np.random.default_rng(22)
    g = GraphBuilder(rng)
    y = g.node("Relu", [g.binary("BinaryDense", "x", ternary(rng, 37, 70, 0.8), "dense", "real")], "relu")
    model = g.model((batch, 70), y)
    vm, lowering = compile_x86(model, break_even)
    x = sample(model)
    expected = reference(model, x)
    assert (lowering.layers[0].kernel, lowering.layers[0].epilogue) == (kernel, "relu")
    assert (expected == 0).any() and relative_error(run(vm, x), expected) < 1e-5


# NEON tiles on this host: popcounts in 16-bit counters (``schedules.lane_counts``), portable TIR.
NEON = CpuKernelSchedules(NEON_TILES)


@pytest.mark.parametrize("batch, k, out", CASES + [(3, 1000, 70)])
def test_xnor_popcount_dense_in_16_bit_counters_matches_reference(batch, k, out):
    model = binary_dense_model(np.random.default_rng(13), batch, k, out, mode="binary")
    vm, lowering = compile_x86(model, kernels=NEON)
    x = sample(model)
    assert lowering.layers[0].kernel == chooser.XNOR_POPCOUNT
    np.testing.assert_allclose(run(vm, x), reference(model, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "k, out, sparsity", [(100, 13, 0.8), (70, 37, 0.5), (64, 3, 0.97), (513, 70, 0.9), (40, 1, 0.5)]
)
@pytest.mark.parametrize("clip", [None, "relu", "clip(0, 6)"])
def test_neon_sparse_rows_match_reference_with_a_fused_clamp(k, out, sparsity, clip):
    """NEON's sign-split dense at batch 1 sums each output's own list (odd lengths padded with the
    zero; at 0.97 some outputs keep no weight; one output: one task), a following ReLU or ReLU6
    (Clip 0..6) fused."""
    rng = np.random.default_rng(21)
    g = GraphBuilder(rng)
    y = g.binary("BinaryDense", "x", ternary(rng, out, k, sparsity), "dense", "real")
    if clip == "relu":
        y = g.node("Relu", [y], "relu")
    elif clip == "clip(0, 6)":
        y = g.node("Clip", [y, g.const("low", np.float32(0.0)), g.const("high", np.float32(6.0))], "relu6")
    model = g.model((1, k), y)
    vm, lowering = compile_x86(model, 0.0, kernels=NEON)
    x = sample(model) * 4
    layer = lowering.layers[0]
    assert (layer.kernel, layer.epilogue) == (chooser.SPARSE_SIGN_SPLIT, clip or "")
    expected = reference(model, x)
    assert clip is None or out == 1 or (expected == 0).any()  # the clamp is exercised
    assert relative_error(run(vm, x), expected) < 1e-5


@pytest.mark.parametrize("words", [lane_counts.MAX_WORDS, lane_counts.MAX_WORDS + 1])
def test_counters_hold_the_largest_count_they_are_used_for(words):
    """Every input +1 and every weight -1: each output counts all ``64 * words`` bits, 65472 at the
    counters' limit (kept in them) and 65536 past it (which 16 bits cannot hold: a plain popcount)."""
    k = 64 * words
    g = GraphBuilder(np.random.default_rng(14))
    model = g.model((1, k), g.binary("BinaryDense", "x", np.full((3, k), -1.0, np.float32), "dense", "binary"))
    vm, _ = compile_x86(model, kernels=NEON)
    x = np.abs(sample(model)) + 0.5
    np.testing.assert_allclose(run(vm, x), reference(model, x), rtol=1e-6)


@pytest.mark.parametrize("batch, k, out", CASES)
@pytest.mark.parametrize("tiles", [None, NEON_TILES], ids=["host", "neon"])
def test_onnx_sign_input_dense_matches_reference_with_exact_zeros(batch, k, out, tiles):
    model = binary_dense_model(np.random.default_rng(34), batch, k, out, mode="sign")
    vm, lowering = compile_x86(model, kernels=CpuKernelSchedules(tiles) if tiles else None)
    assert lowering.layers[0].kernel == chooser.XNOR_POPCOUNT
    x = sample(model)  # zeros in every row: the call counts exactly
    none = np.where(x == 0.0, np.float32(0.5), x)  # no zero: it counts as binary input
    one = none.copy()
    one[-1, k // 2] = 0.0  # one zero, in the last row: every row counts exactly
    for zeros, value in {"every-7th": x, "none": none, "one": one}.items():
        np.testing.assert_allclose(run(vm, value), reference(model, value), rtol=1e-5, atol=1e-5, err_msg=zeros)
