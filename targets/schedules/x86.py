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

from tvm import s_tir, tirx

from mptc.targets.kernels import int8_conv, int8_dense, stages
from mptc.targets.layout import ConvGeometry
from mptc.targets.schedules.cpu import CpuKernelSchedules, CpuTiles

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
)


def vnni_conv(
    geo: ConvGeometry, scale: float, zero_point: int, residual: bool, relu: bool, upper: float | None
) -> tirx.PrimFunc:
    """The int8 conv on AVX-512 VNNI (``kernels.int8_conv``): ``vpdpbusd`` register tiles, the
    quantized input parallel over channel words and rows, the epilogue over output channels, rows
    vectorized."""
    lanes = AVX512_TILES.float_lanes
    sch = s_tir.Schedule(int8_conv.vnni_conv_func(geo, scale, zero_point, residual, relu, upper))
    n, c4, yp, xp = sch.get_loops(sch.get_sblock(stages.QUANTIZE))
    sch.parallel(sch.fuse(n, c4, yp))
    sch.vectorize(sch.split(xp, [None, lanes])[1])
    n, o, oy, ox = sch.get_loops(sch.get_sblock(stages.OUTPUT))
    sch.parallel(sch.fuse(n, o))
    sch.vectorize(sch.split(sch.fuse(oy, ox), [None, lanes])[1])
    return sch.mod["main"]


def kernel_schedules(avx512: bool, vnni: bool = False) -> CpuKernelSchedules:
    """The kernel schedules for an x86 target with or without AVX-512 (and its VNNI)."""
    if not avx512:
        return CpuKernelSchedules(AVX2_TILES)
    if not vnni:
        return CpuKernelSchedules(AVX512_TILES)
    return CpuKernelSchedules(
        AVX512_TILES, functools.partial(int8_dense.dot_dense_func, dot=int8_dense.VPDPBUSD), vnni_conv
    )
