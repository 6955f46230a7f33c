"""aarch64 NEON tiles: 32 128-bit registers of 2 uint64 / 4 fp32.

NEON has no 64-bit popcount: LLVM lowers ``popcount`` on uint64x2 to ``cnt.16b`` plus widening
pairwise adds (``uaddlp``), so a word costs more than on AVX-512 and the tile keeps more
independent accumulators (4 vectors x 4 columns = 16 registers) to hide that latency.
"""

from __future__ import annotations

from mptc.targets.schedules.cpu import CpuKernelSchedules, CpuTiles

NEON_TILES = CpuTiles(
    word_lanes=2,
    float_lanes=4,
    conv_vectors=4,
    conv_cols=4,
    dense_vectors=4,
    dense_rows=2,
    conv_accumulators=16,
    lane_counts=True,
    popcount_tile=16,
)


def kernel_schedules() -> CpuKernelSchedules:
    """The kernel schedules for an aarch64 NEON target."""
    return CpuKernelSchedules(NEON_TILES)
