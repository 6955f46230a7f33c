"""Kernel choice per layer: binary input always popcount; real input by sparsity vs the op's break-even
(the fields of the x86 ``KernelPolicy``)."""

import dataclasses

import pytest

from mptc.targets import chooser
from mptc.targets.policy import default_policy

POLICY = default_policy("x86")
FP32_DENSE = dataclasses.replace(POLICY, dense_ternary=frozenset())  # the fp32 matmul as the dense form


def test_binary_input_always_takes_popcount():
    assert chooser.choose_kernel("BinaryConv", "binary", 0.0, POLICY).kernel == chooser.XNOR_POPCOUNT


@pytest.mark.parametrize(
    "op_type, sparse", [("BinaryConv", chooser.BLOCK_SPARSE), ("BinaryDense", chooser.SPARSE_SIGN_SPLIT)]
)
def test_real_input_switches_at_the_measured_break_even(op_type, sparse):
    threshold = POLICY.sparse_break_even[op_type]
    assert chooser.choose_kernel(op_type, "real", threshold, POLICY).kernel == sparse
    below = chooser.choose_kernel(op_type, "real", threshold - 0.01, POLICY)
    dense = chooser.DENSE_TERNARY if op_type in POLICY.dense_ternary else chooser.DENSE_FP32
    assert below.kernel == dense and f"{threshold:.2f}" in below.reason


def test_a_dense_layer_keeps_its_weight_as_bit_planes_below_the_break_even():
    """The dense-ternary form is the default for BinaryDense, at every size (no cache tiers) and
    batch; a policy without it takes the fp32 matmul with the fp32 break-even."""
    for weights in (64 * 512, 4096 * 4096):
        choice = chooser.choose_kernel("BinaryDense", "real", 0.5, POLICY, weights=weights)
        assert choice.kernel == chooser.DENSE_TERNARY and "2-bit weight planes" in choice.reason
    assert chooser.choose_kernel("BinaryDense", "real", 0.5, POLICY, batch=64).kernel == chooser.DENSE_TERNARY
    assert POLICY.sparse_break_even["BinaryDense"] == POLICY.dense_ternary_tier(None)
    assert FP32_DENSE.sparse_break_even["BinaryDense"] == FP32_DENSE.dense_break_even
    assert chooser.choose_kernel("BinaryDense", "real", 0.2, FP32_DENSE).kernel == chooser.DENSE_FP32
    assert chooser.choose_kernel("BinaryConv", "real", 0.2, FP32_DENSE).kernel == chooser.DENSE_FP32
    assert chooser.choose_kernel("BinaryConv", "real", 0.2, POLICY).kernel == chooser.DENSE_TERNARY


def test_an_override_replaces_the_default():
    assert chooser.choose_kernel("BinaryDense", "real", 0.3, POLICY, break_even=0.2).kernel == chooser.SPARSE_SIGN_SPLIT


def test_another_policy_moves_the_choice():
    """The chooser reads only the policy it is given: a later break-even keeps a layer dense, a
    block size reaches the choice."""
    policy = dataclasses.replace(POLICY, conv_break_even=0.9, conv_block=3)
    assert chooser.choose_kernel("BinaryConv", "real", 0.5, policy).kernel == chooser.DENSE_TERNARY
    assert chooser.choose_kernel("BinaryConv", "real", 0.9, policy, flat_outputs=POLICY.short_flat).block == 3


def test_short_maps_take_their_own_block_below_their_grouped_sparsity():
    """Maps of under ``short_flat`` flat outputs (4x4) take ``short_flat_block`` in one channel group below
    ``short_flat_grouped_from``; larger maps, and short ones from there, ``conv_block`` in channel groups."""
    below, above = POLICY.short_flat_grouped_from - 0.05, POLICY.short_flat_grouped_from
    short = chooser.choose_kernel("BinaryConv", "real", below, POLICY, flat_outputs=POLICY.short_flat - 1)
    assert (short.block, short.grouped) == (POLICY.short_flat_block, False) and "one channel group" in short.reason
    for sparsity, flat in ((below, POLICY.short_flat), (above, POLICY.short_flat - 1), (above, POLICY.short_flat)):
        choice = chooser.choose_kernel("BinaryConv", "real", sparsity, POLICY, flat_outputs=flat)
        assert (choice.block, choice.grouped) == (POLICY.conv_block, True) and "channel groups" in choice.reason


def test_long_maps_take_their_own_block_in_channel_groups():
    """From ``long_flat`` flat outputs (32x32 maps) ``long_flat_block``, grouped, at any sparsity; just below, ``conv_block``."""
    for sparsity in (0.3, 0.9):
        long = chooser.choose_kernel("BinaryConv", "real", sparsity, POLICY, flat_outputs=POLICY.long_flat)
        assert (long.block, long.grouped) == (POLICY.long_flat_block, True) and "channel groups" in long.reason
        below = chooser.choose_kernel("BinaryConv", "real", sparsity, POLICY, flat_outputs=POLICY.long_flat - 1)
        assert (below.block, below.grouped) == (POLICY.conv_block, True)


@pytest.mark.parametrize("tier", range(len(FP32_DENSE.cached_dense_break_even)))
def test_a_dense_layer_that_fits_in_cache_stays_dense_longer(tier):
    """A dense layer's fp32 weight that fits a cache tier is not memory-bound on the dense path:
    sparse only from that tier's break-even, which rises as the tiers shrink; past the last tier
    the memory-bound one (``sparse_break_even``) applies, and a conv never looks at the tiers."""
    size, even = FP32_DENSE.cached_dense_break_even[tier]
    larger = (
        FP32_DENSE.cached_dense_break_even[tier + 1][1]
        if tier + 1 < len(FP32_DENSE.cached_dense_break_even)
        else FP32_DENSE.sparse_break_even["BinaryDense"]
    )
    assert larger < even
    fits, past = size // 4, size // 4 + 1
    between = (larger + even) / 2
    assert chooser.choose_kernel("BinaryDense", "real", between, FP32_DENSE, weights=fits).kernel == chooser.DENSE_FP32
    assert (
        chooser.choose_kernel("BinaryDense", "real", between, FP32_DENSE, weights=past).kernel
        == chooser.SPARSE_SIGN_SPLIT
    )
    assert (
        chooser.choose_kernel("BinaryDense", "real", even, FP32_DENSE, weights=fits).kernel == chooser.SPARSE_SIGN_SPLIT
    )
    assert chooser.choose_kernel("BinaryConv", "real", between, FP32_DENSE, weights=fits).kernel == chooser.BLOCK_SPARSE
    assert chooser.choose_kernel("BinaryDense", "real", between, POLICY, weights=fits).kernel == chooser.DENSE_TERNARY


def test_the_digits_mlp_stays_dense_at_0_9_sparsity():
    """64x512 and 512x512 break even near 0.92 on the dense-ternary form: at 0.9 it is still
    faster, so the demo's latency does not rise from 0.7 to 0.9 sparsity."""
    for weights in (64 * 512, 512 * 512):
        assert (
            chooser.choose_kernel("BinaryDense", "real", 0.9, POLICY, weights=weights).kernel == chooser.DENSE_TERNARY
        )
        assert (
            chooser.choose_kernel("BinaryDense", "real", 0.95, POLICY, weights=weights).kernel
            == chooser.SPARSE_SIGN_SPLIT
        )


def test_a_batched_dense_layer_sums_along_the_batch_from_its_own_break_even():
    """From ``batch_lanes_from`` rows the dense form is a GEMM and the sign-split form sums along the
    batch: sparse from ``batched_dense_break_even``, where a batch-1 layer still takes the dense form."""
    rows, even = POLICY.batch_lanes_from, POLICY.batched_dense_break_even
    assert chooser.choose_kernel("BinaryDense", "real", even - 0.05, POLICY, batch=rows).kernel == chooser.DENSE_TERNARY
    assert chooser.choose_kernel("BinaryDense", "real", even, POLICY, batch=rows - 1).kernel == chooser.DENSE_TERNARY
    batched = chooser.choose_kernel("BinaryDense", "real", even, POLICY, batch=rows)
    assert (batched.kernel, batched.batch_lanes) == (chooser.SPARSE_SIGN_SPLIT, True)


def test_arm_takes_the_lookup_conv_below_its_measured_sparsity():
    """arm's policy: a real-input conv below ``lut_below`` takes the ternary-lut gather, dense
    weights and 1x1 convs included; a binary input, a dense layer and x86 (``lut_below`` None) do not."""
    arm = default_policy("arm")
    for sparsity in (0.0, 0.5, arm.lut_below - 0.01):
        choice = chooser.choose_kernel("BinaryConv", "real", sparsity, arm, taps=9)
        assert choice.kernel == chooser.TERNARY_LUT and "3-channel groups" in choice.reason
    assert chooser.choose_kernel("BinaryConv", "real", arm.lut_below, arm, taps=9).kernel == chooser.BLOCK_SPARSE
    assert chooser.choose_kernel("BinaryConv", "real", 0.5, arm, taps=1).kernel == chooser.TERNARY_LUT
    assert chooser.choose_kernel("BinaryConv", "binary", 0.5, arm, taps=9).kernel == chooser.XNOR_POPCOUNT
    assert chooser.choose_kernel("BinaryDense", "real", 0.5, arm).kernel != chooser.TERNARY_LUT
    assert POLICY.lut_below is None
    assert chooser.choose_kernel("BinaryConv", "real", 0.5, POLICY, taps=9).kernel == chooser.BLOCK_SPARSE


def test_arm_dense_layers_take_the_sparse_form_from_its_counted_break_even():
    """arm's dense layers leave the dense-ternary kernel at its own counted break-even (0.78),
    below x86's (0.92 for layers up to 2^19 weights): at 0.85 the digits MLP's 512 x 512 layer is
    sparse on a Pi and dense-ternary on x86."""
    arm = default_policy("arm")
    weights = 512 * 512
    even = arm.dense_ternary_tier(weights)
    assert even < POLICY.dense_ternary_tier(weights)
    below = chooser.choose_kernel("BinaryDense", "real", even - 0.01, arm, weights=weights)
    assert below.kernel == chooser.DENSE_TERNARY
    assert chooser.choose_kernel("BinaryDense", "real", 0.85, arm, weights=weights).kernel == chooser.SPARSE_SIGN_SPLIT
    assert chooser.choose_kernel("BinaryDense", "real", 0.85, POLICY, weights=weights).kernel == chooser.DENSE_TERNARY
