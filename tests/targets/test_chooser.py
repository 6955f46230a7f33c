"""Kernel choice per layer: binary input always popcount; real input by sparsity vs the op's break-even."""

import pytest

from mptc.targets import chooser


def test_binary_input_always_takes_popcount():
    assert chooser.choose_kernel("BinaryConv", "binary", 0.0).kernel == chooser.XNOR_POPCOUNT


@pytest.mark.parametrize("op_type, sparse", [("BinaryConv", chooser.BLOCK_SPARSE), ("BinaryDense", chooser.SPARSE_SIGN_SPLIT)])
def test_real_input_switches_at_the_measured_break_even(op_type, sparse):
    threshold = chooser.SPARSE_BREAK_EVEN[op_type]
    assert chooser.choose_kernel(op_type, "real", threshold).kernel == sparse
    below = chooser.choose_kernel(op_type, "real", threshold - 0.01)
    assert below.kernel == chooser.DENSE_FP32 and f"{threshold:.2f}" in below.reason


def test_an_override_replaces_the_default():
    assert chooser.choose_kernel("BinaryDense", "real", 0.3, break_even=0.2).kernel == chooser.SPARSE_SIGN_SPLIT


def test_short_maps_take_their_own_block_below_their_grouped_sparsity():
    """Maps of under SHORT_FLAT flat outputs (4x4) take SHORT_FLAT_BLOCK in one channel group below
    SHORT_FLAT_GROUPED_FROM; larger maps, and short ones from there, CONV_BLOCK in channel groups."""
    below, above = chooser.SHORT_FLAT_GROUPED_FROM - 0.05, chooser.SHORT_FLAT_GROUPED_FROM
    short = chooser.choose_kernel("BinaryConv", "real", below, flat_outputs=chooser.SHORT_FLAT - 1)
    assert (short.block, short.grouped) == (chooser.SHORT_FLAT_BLOCK, False) and "one channel group" in short.reason
    for sparsity, flat in ((below, chooser.SHORT_FLAT), (above, chooser.SHORT_FLAT - 1), (above, chooser.SHORT_FLAT)):
        choice = chooser.choose_kernel("BinaryConv", "real", sparsity, flat_outputs=flat)
        assert (choice.block, choice.grouped) == (chooser.CONV_BLOCK, True) and "channel groups" in choice.reason


def test_long_maps_take_their_own_block_in_channel_groups():
    """From LONG_FLAT flat outputs (32x32 maps) LONG_FLAT_BLOCK, grouped, at any sparsity; just below, CONV_BLOCK."""
    for sparsity in (0.3, 0.9):
        long = chooser.choose_kernel("BinaryConv", "real", sparsity, flat_outputs=chooser.LONG_FLAT)
        assert (long.block, long.grouped) == (chooser.LONG_FLAT_BLOCK, True) and "channel groups" in long.reason
        below = chooser.choose_kernel("BinaryConv", "real", sparsity, flat_outputs=chooser.LONG_FLAT - 1)
        assert (below.block, below.grouped) == (chooser.CONV_BLOCK, True)


@pytest.mark.parametrize("tier", range(len(chooser.CACHED_DENSE_BREAK_EVEN)))
def test_a_dense_layer_that_fits_in_cache_stays_dense_longer(tier):
    """A dense layer's fp32 weight that fits a cache tier is not memory-bound on the dense path:
    sparse only from that tier's break-even, which rises as the tiers shrink; past the last tier
    the memory-bound one (SPARSE_BREAK_EVEN) applies, and a conv never looks at the tiers."""
    size, even = chooser.CACHED_DENSE_BREAK_EVEN[tier]
    larger = chooser.CACHED_DENSE_BREAK_EVEN[tier + 1][1] if tier + 1 < len(chooser.CACHED_DENSE_BREAK_EVEN) else chooser.SPARSE_BREAK_EVEN["BinaryDense"]
    assert larger < even
    fits, past = size // 4, size // 4 + 1
    between = (larger + even) / 2
    assert chooser.choose_kernel("BinaryDense", "real", between, weights=fits).kernel == chooser.DENSE_FP32
    assert chooser.choose_kernel("BinaryDense", "real", between, weights=past).kernel == chooser.SPARSE_SIGN_SPLIT
    assert chooser.choose_kernel("BinaryDense", "real", even, weights=fits).kernel == chooser.SPARSE_SIGN_SPLIT
    assert chooser.choose_kernel("BinaryConv", "real", between, weights=fits).kernel == chooser.BLOCK_SPARSE


def test_the_digits_mlp_stays_dense_at_0_9_sparsity():
    """64x512 and 512x512 (128 KB and 1 MB of fp32) break even near 0.93: at 0.9 the dense path is
    still faster, so the demo's latency does not rise from 0.7 to 0.9 sparsity."""
    for weights in (64 * 512, 512 * 512):
        assert chooser.choose_kernel("BinaryDense", "real", 0.9, weights=weights).kernel == chooser.DENSE_FP32
        assert chooser.choose_kernel("BinaryDense", "real", 0.95, weights=weights).kernel == chooser.SPARSE_SIGN_SPLIT


def test_a_batched_dense_layer_sums_along_the_batch_and_stays_dense_longer():
    """From BATCH_LANES_FROM rows the dense form is a compute-bound GEMM: sparse only from BATCHED_DENSE_BREAK_EVEN."""
    below = (chooser.SPARSE_BREAK_EVEN["BinaryDense"] + chooser.BATCHED_DENSE_BREAK_EVEN) / 2
    rows = chooser.BATCH_LANES_FROM
    assert chooser.choose_kernel("BinaryDense", "real", below, batch=rows).kernel == chooser.DENSE_FP32
    assert not chooser.choose_kernel("BinaryDense", "real", below, batch=rows - 1).batch_lanes
    batched = chooser.choose_kernel("BinaryDense", "real", chooser.BATCHED_DENSE_BREAK_EVEN, batch=rows)
    assert (batched.kernel, batched.batch_lanes) == (chooser.SPARSE_SIGN_SPLIT, True)
    assert chooser.choose_kernel("BinaryDense", "real", below, batch=rows - 1).kernel == chooser.SPARSE_SIGN_SPLIT
