"""Every CPU family's kernel tiles (AVX-512, AVX2, NEON) give the reference result; the schedule
is target-independent TIR, so each runs on this x86 host."""

import dataclasses

import numpy as np
import pytest
from tvm import s_tir

from mptc.targets import layout
from mptc.targets.kernels import binary_conv, stages
from mptc.targets.schedules import cpu
from mptc.targets.schedules.arm import NEON_TILES
from mptc.targets.schedules.cpu import CpuKernelSchedules
from mptc.targets.schedules.x86 import AVX2_TILES, AVX512_TILES

from ..harness import compile_x86, reference, run, sample
from ..packed_models import binary_chain, binary_conv_model

FAMILIES = {"avx512": AVX512_TILES, "avx2": AVX2_TILES, "neon": NEON_TILES}


@pytest.mark.parametrize("family", FAMILIES)
def test_tiles_of_every_family_match_reference(family):
    kernels = CpuKernelSchedules(FAMILIES[family])
    models = (
        binary_chain(np.random.default_rng(7)),
        binary_conv_model(np.random.default_rng(8), 2, 70, 9, 13, 3, 2, 1, mode="real"),
        binary_conv_model(np.random.default_rng(9), 1, 64, 16, 20, 3, 1, 1, mode="binary"),  # vectors along columns
        binary_conv_model(np.random.default_rng(10), 2, 64, 14, 6, 3, 1, 1, mode="binary"),  # NEON packs across rows
    )
    for model in models:
        vm, _ = compile_x86(model, break_even=0.0, kernels=kernels)
        x = sample(model)
        np.testing.assert_allclose(run(vm, x), reference(model, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("channels", "size", "stride", "along_columns"),
    [
        (64, 16, 1, True),  # one channel word, stride 1, 16 columns: vectors of 8 columns
        (64, 16, 2, False),  # stride 2: neighbouring columns read every other word
        (128, 16, 1, False),  # two channel words per pixel
        (64, 14, 1, False),  # 14 columns: no whole vectors
    ],
)
def test_float_output_convs_vectorize_along_columns_only_where_reads_are_contiguous(
    channels, size, stride, along_columns
):
    geo = layout.ConvGeometry(1, channels, size, size, 24, (3, 3), (stride, stride), (1, 1, 1, 1))
    func = CpuKernelSchedules(AVX512_TILES).binary_conv(
        binary_conv.xnor_conv_func(geo, AVX512_TILES.word_lanes, (3, 3))
    )
    sch = s_tir.Schedule(func)
    counts = sch.get(sch.get_sblock(f"{stages.POPCOUNT}_update")).writes[0].source  # the register tile's layout
    assert (int(counts.shape[-1]) == geo.out_width) is along_columns


@pytest.mark.parametrize(
    "flat, block, chunk",
    [
        (196, 2, 112),  # 14x14 maps: 2 tiles of 7 vectors, not 5 of 40 values or 13 of one vector
        (225, 2, 128),  # 15x15: 2 tiles of 8 vectors
        (16, 4, 16),  # 4x4: one vector
        (1088, 4, 64),  # 32x32 channel planes with B = 4: 4 vectors are the most
        (1088, 2, 128),  # ... with B = 2: 9 tiles of 8, not 17 of 4
    ],
)
def test_conv_chunk_counts_a_walk_of_the_index_per_tile(flat, block, chunk):
    """A chunk of a block-sparse conv costs its vectors plus one walk of the index per tile."""
    assert CpuKernelSchedules(AVX512_TILES).conv_chunk(flat, block) == chunk


@pytest.mark.parametrize(
    "blocks, tiles, parts",
    [
        (32, 1, 16),  # a 7x7 map in one chunk: 16 runs of 2 blocks
        (32, 3, 8),  # 3 chunks: 24 tasks, 6 per thread of 4, where 6 runs made 18
        (80, 13, 4),  # 52 tasks, where 2 runs made 26
        (64, 49, 1),  # a 56x56 map: each of its 49 chunks one task, its input read once
        (3, 3, 3),  # no more runs than blocks
    ],
)
def test_gather_tasks_split_chunks_before_blocks(blocks, tiles, parts):
    """The block-sparse gather's tasks are a chunk and a run of blocks each: chunks alone where
    they make ``SPARSE_TASKS``, else runs enough for it and a whole number of tasks per thread."""
    assert cpu._block_parts(blocks, tiles) == parts


@pytest.mark.parametrize(
    "channels, channel_floats, taps, group",
    [
        (256, 64, 1, 256),  # a 1x1 conv on 56x56: the chunk's 64 KB of every channel, one group
        (2048, 64, 1, 128),  # ... of 2048 channels (512 KB): groups of 32 KB
        (64, 180, 9, 45),  # a 3x3 conv re-reads its inputs per tap: groups however small the input
    ],
)
def test_pointwise_convs_group_their_channels_only_past_l2(channels, channel_floats, taps, group):
    """Channel groups keep a chunk's input in L1 for every block of a task; a 1x1 conv whose
    chunk of every channel fits ``pointwise_slice_floats`` reads it from L2 in one group."""
    assert CpuKernelSchedules(AVX512_TILES).conv_group(channels, channel_floats, True, taps) == group
    assert CpuKernelSchedules(AVX512_TILES).conv_group(channels, channel_floats, False, taps) == channels


@pytest.mark.parametrize("flat, chunk", [(224, 112), (64, 64), (16, 16)])
def test_neon_gather_chunks_take_its_28_accumulators(flat, chunk):
    """NEON's gather holds 28 vectors (two more registers take the paired loads): a 14x14 map's
    224 flat outputs in two chunks of 28 vectors, where 16 accumulators made four of 14."""
    neon = CpuKernelSchedules(NEON_TILES)
    assert neon.conv_chunk(flat, 1) == chunk
    assert CpuKernelSchedules(dataclasses.replace(NEON_TILES, gather_accumulators=0)).conv_chunk(224, 1) == 56
