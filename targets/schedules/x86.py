"""x86 tiles: AVX-512 (32 zmm registers of 8 uint64 / 16 fp32) or AVX2 (16 ymm of 4 / 8).

With AVX-512 VPOPCNTDQ the popcount inner step is vpternlogq + vpopcntq + vpaddq on 8 output
channels; a conv tile of 2 vectors x up to 8 columns (the largest divisor of the row: 7 on 14x14,
8 on 16x16 and 32x32 maps) keeps up to 16 accumulators plus the weight and mask words of 2
vectors in registers. AVX2 has no vector popcount (LLVM emulates it with vpshufb), and
half the registers, so its tile is half as wide. With AVX-512 VNNI an int8 layer sums uint8
activations against its 2-bit codes with ``vpdpbusd`` (``kernels.int8_dense``, ``kernels.int8_conv``).
"""

from __future__ import annotations

import functools

from mptc.targets.kernels import int8_dense
from mptc.targets.kernels.dot_instructions import VPDPBUSD
from mptc.targets.schedules.cpu import CpuKernelSchedules, CpuTiles, Int8ConvSchedule

AVX512_TILES = CpuTiles(
    word_lanes=8,
    float_lanes=16,
    conv_vectors=2,
    conv_cols=8,
    dense_vectors=2,
    dense_rows=4,
    conv_accumulators=16,
)
AVX2_TILES = CpuTiles(
    word_lanes=4,
    float_lanes=8,
    conv_vectors=2,
    conv_cols=4,
    dense_vectors=2,
    dense_rows=2,
    conv_accumulators=8,
    vector_registers=16,
)


def kernel_schedules(avx512: bool, vnni: bool = False) -> CpuKernelSchedules:
    """The kernel schedules for an x86 target with or without AVX-512 (and its VNNI)."""
    if not avx512:
        return CpuKernelSchedules(AVX2_TILES)
    if not vnni:
        return CpuKernelSchedules(AVX512_TILES)
    return CpuKernelSchedules(
        AVX512_TILES,
        functools.partial(int8_dense.dot_dense_func, dot=VPDPBUSD),
        Int8ConvSchedule(VPDPBUSD, AVX512_TILES.float_lanes, vectors=2, columns=8),
    )
