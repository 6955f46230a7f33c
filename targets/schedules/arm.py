"""aarch64 NEON tiles: 32 128-bit registers of 2 uint64 / 4 fp32.

NEON has no 64-bit popcount: LLVM lowers ``popcount`` on uint64x2 to ``cnt.16b`` plus three
widening pairwise adds (``uaddlp``). The popcount kernels instead keep each accumulator as 16-bit
counters (``lane_counts``: ``cnt.16b`` + ``uadalp.8h`` per vector of words, the counters folded
once per tile, into the NCHW epilogue's runs of columns), so a step is eor, and, cnt, uadalp
plus its share of the operand loads; a float input's signs pack by ``sli``, a compare and an
insert per vector of floats (``targets.shift_insert``). A conv
tile of 16 accumulators takes the columns x vectors shape that loads the fewest operands per
step, its weights re-laid in tile order so each vector's sign and mask words are one ``ldp``,
the input words its columns' taps share loaded once (``CpuKernelSchedules._conv_tile``: 7 x 2
on 14-wide maps, 4 x 4 on 16- or 32-wide ones).
The block-sparse gather keeps 28 accumulators: its loads come in pairs (``ldp``) into two
registers, so a chunk of 28 vectors walks the index half as often as one of 14, two entries
per iteration of a segment's loop (on x86 that cost resnet50's ticket 4 %). A dense-ternary
dense layer reads its weights as code bytes decoded by one table load per vector
(``ternary_nibbles``), where testing a bit per lane takes six instructions. Its sign-split
sparse form at batch 1 sums each output's own list of inputs (``sparse_rows``): without a gather,
a lane of a gathered vector takes an address and a load, and ELL rows pad every output to the
longest one.
"""

from __future__ import annotations

import functools

from mptc.targets.kernels import int8_dense
from mptc.targets.kernels.dot_instructions import UDOT
from mptc.targets.schedules.cpu import CpuKernelSchedules, CpuTiles, Int8ConvSchedule

NEON_TILES = CpuTiles(
    word_lanes=2,
    float_lanes=4,
    conv_vectors=4,
    conv_cols=4,
    dense_vectors=4,
    dense_rows=2,
    conv_accumulators=16,
    gather_accumulators=28,
    gather_pairs=True,
    lane_counts=True,
    popcount_tile=16,
    ternary_nibbles=True,
    sparse_rows=True,
    weight_vectors=True,
)

INT8_CONV_COLUMNS = 5  # int8 conv tile: 5 columns x 4 udot registers = 20 accumulators, 4 codes, 4 decoded
INT8_CONV_UNROLLED_TAPS = 9  # a 3x3 int8 conv's tap loops unrolled: their address offsets become immediates


def kernel_schedules(dotprod: bool = False) -> CpuKernelSchedules:
    """The kernel schedules for an aarch64 NEON target (with ``udot`` for int8 layers where the
    core has Armv8.2's dotprod: Pi 5, Orin)."""
    if not dotprod:
        return CpuKernelSchedules(NEON_TILES)
    return CpuKernelSchedules(
        NEON_TILES,
        functools.partial(int8_dense.dot_dense_func, dot=UDOT),
        Int8ConvSchedule(
            UDOT, NEON_TILES.float_lanes, vectors=1, columns=INT8_CONV_COLUMNS, unrolled_taps=INT8_CONV_UNROLLED_TAPS
        ),
    )
