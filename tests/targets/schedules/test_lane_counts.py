"""Where the CPU schedules keep popcounts in 16-bit counters (``schedules.lane_counts``): NEON tiles
only, and only while every count fits; what the step compiles to on aarch64. The numbers are
checked in tests/targets/kernels (on this host) and tests/deploy/test_neon_popcount.py (emulated)."""

import re

import numpy as np
import pytest

from mptc.targets import layout
from mptc.targets.build import build
from mptc.targets.frontend import Lowering, from_onnx
from mptc.targets.kernels import binary_conv, binary_dense
from mptc.targets.policy import default_policy
from mptc.targets.schedules import kernel_schedules, lane_counts
from mptc.targets.schedules.arm import NEON_TILES
from mptc.targets.schedules.cpu import CpuKernelSchedules, TapRow
from mptc.targets.schedules.x86 import AVX2_TILES, AVX512_TILES
from mptc.targets.target import resolve_target

from ..harness import input_shape
from ..packed_models import binary_conv_model

COUNTERS = "uint16x8"  # a vector of 2 words as 16-bit counters, in the NEON step and fold


def _conv(tiles, channels: int = 256, words_out: bool = False) -> str:
    geo = layout.ConvGeometry(1, channels, 14, 14, 128, (3, 3), (1, 1), (1, 1, 1, 1))
    func = binary_conv.xnor_conv_func(geo, tiles.word_lanes, (3, 3), words_in=words_out, words_out=words_out)
    return CpuKernelSchedules(tiles).binary_conv(func).script()


def _dense(tiles, k: int, words_out: bool = False) -> str:
    func = binary_dense.xnor_dense_func(2, k, 70, tiles.word_lanes, words_in=True, words_out=words_out)
    return CpuKernelSchedules(tiles).binary_dense(func).script()


@pytest.mark.parametrize("words_out", [False, True])
def test_neon_popcounts_run_in_counters_and_x86_ones_do_not(words_out):
    assert COUNTERS in _conv(NEON_TILES, words_out=words_out)
    assert COUNTERS in _dense(NEON_TILES, 200, words_out)
    for tiles in (AVX512_TILES, AVX2_TILES):
        assert "uint16x" not in _conv(tiles, words_out=words_out)
        assert "uint16x" not in _dense(tiles, 200, words_out)


def test_reductions_past_the_counters_limit_take_a_plain_popcount():
    assert COUNTERS in _dense(NEON_TILES, 64 * lane_counts.MAX_WORDS)
    assert COUNTERS not in _dense(NEON_TILES, 64 * (lane_counts.MAX_WORDS + 1))
    words = -(-(lane_counts.MAX_WORDS + 1) // 9)  # 3x3 taps of this many channel words: past the limit
    assert COUNTERS not in _conv(NEON_TILES, channels=64 * words)


@pytest.mark.parametrize(
    "columns, outputs, tile",
    [
        (14, 256, (2, 8)),  # 14x14 maps: no 4 columns divide the row; 8 vectors share 2 columns' words
        (16, 256, (4, 4)),
        (7, 512, (1, 16)),
        (9, 64, (3, 4)),
    ],
)
def test_neon_conv_tile_loads_fewest_operands_per_step(columns, outputs, tile):
    assert CpuKernelSchedules(NEON_TILES)._conv_tile(columns, outputs) == tile


@pytest.mark.parametrize(
    "columns, outputs, row, tile",
    [
        # 14x14 maps, 3x3 taps of 4 words: 7 columns share their taps' 9 input words, where 2
        # columns read 6 words for 6 (column, tap) pairs
        (14, 256, TapRow(taps=3, words=4, stride=1), (7, 2)),
        (32, 64, TapRow(taps=3, words=1, stride=1), (4, 4)),  # 4 x 4 shares too, and loads less
        (4, 512, TapRow(taps=3, words=8, stride=1), (4, 4)),  # 384 steps unrolled: no sharing, as before
        (16, 128, TapRow(taps=3, words=1, stride=2), (4, 4)),  # stride 2: 9 words for 12 pairs
    ],
)
def test_neon_conv_tile_counts_the_input_words_a_tap_row_shares(columns, outputs, row, tile):
    assert CpuKernelSchedules(NEON_TILES)._conv_tile(columns, outputs, row) == tile


def test_x86_conv_tiles_keep_their_fixed_shape():
    kernels = CpuKernelSchedules(AVX512_TILES)
    assert kernels._conv_tile(14, 256) == (7, 2)
    assert kernels._conv_tile(16, 256) == (8, 2)


def _aarch64_asm(model) -> str:
    """The model lowered and compiled for a Raspberry Pi 4's Cortex-A72 (no link, no board needed)."""
    target = resolve_target("arm", board="rpi4")
    kernels = kernel_schedules(target)
    lowering = Lowering(kernels, default_policy("arm"))
    executable = build(from_onnx(model, lowering, {"x": input_shape(model)}), target, kernels.float_lanes)
    return "\n".join(module.inspect_source("asm") for module in executable.mod.imports)


def _popcount_loop(asm: str) -> str:
    """The basic block with the most cnt: the popcount loop."""
    blocks = re.split(r"^\.?LBB\w*:", asm, flags=re.MULTILINE)
    return max(blocks, key=lambda block: len(re.findall(r"\bcnt\s+v\d+\.16b", block)))


def test_neon_step_is_one_cnt_and_one_uadalp_per_vector():
    """The counters' step adds each cnt.16b with one uadalp.8h; no 64-bit widening chain
    (uaddlp .4s / .2d, uadalp .2d) is left in the kernel."""
    asm = _aarch64_asm(binary_conv_model(np.random.default_rng(17), 1, 256, 6, 32, 3, 1, 1, mode="binary"))
    cnt = len(re.findall(r"\bcnt\s+v\d+\.16b", asm))
    assert cnt > 0
    assert len(re.findall(r"\buadalp\s+v\d+\.8h, v\d+\.16b", asm)) == cnt
    assert not re.search(r"\buaddlp\s+v\d+\.(4s|2d)|\buadalp\s+v\d+\.2d", asm)


@pytest.mark.parametrize("channels, size, columns", [(64, 16, 4), (256, 14, 7)])
def test_neon_counters_fold_by_pairwise_adds_and_weights_load_in_pairs(channels, size, columns):
    """The counters fold with addp.8h, not shifted adds (usra); in the popcount loop (the basic
    block with the most cnt) each vector's sign and mask words come in one ldp, which serves the
    tile's columns: one pair per ``columns`` cnt. A 64-channel conv on 16-wide maps has tiles of 4
    columns x 4 vectors, a 256-channel one on 14-wide maps 7 x 2, whose vectors lie a channel's 9
    taps apart in the weight table (``layout.BinaryConvTables.planes``): re-laid in tile order,
    they stay in ldp's reach."""
    model = binary_conv_model(np.random.default_rng(18), 1, channels, size, channels, 3, 1, 1, mode="binary")
    asm = _aarch64_asm(model)
    assert re.search(r"\baddp\s+v\d+\.8h", asm) and not re.search(r"\busra\b", asm)
    loop = _popcount_loop(asm)
    cnt = len(re.findall(r"\bcnt\s+v\d+\.16b", loop))
    assert cnt > 0 and columns * len(re.findall(r"\bldp\s+q\d+, q\d+", loop)) >= cnt


def test_neon_conv_epilogue_reads_channel_constants_as_lanes():
    """The epilogue of a counter tile reads the tile's scale and bias by whole vectors, each
    channel's a lane (``fmla`` by element): a channel's own load built its address with a ``bfi``
    (the index ``8 t + k`` lowered to an OR), four instructions per channel."""
    asm = _aarch64_asm(binary_conv_model(np.random.default_rng(18), 1, 64, 16, 64, 3, 1, 1, mode="binary"))
    assert re.search(r"\bfmla\s+v\d+\.4s, v\d+\.4s, v\d+\.s\[\d\]", asm)
    assert not re.search(r"\bbfi\b", asm)


@pytest.mark.parametrize("channels, size", [(64, 16), (256, 14)])
def test_neon_conv_epilogue_reads_each_channel_as_a_run_of_columns(channels, size):
    """The counts of a counter tile fold straight into each channel's run of columns
    (``lane_counts.FOLD_BY_COLUMNS``), the NCHW epilogue's vectors: no lane is moved on its own
    (``mov v.s[i], v.s[j]``), as when the counts folded per column were gathered into column
    vectors a lane at a time (4 and 7 columns)."""
    asm = _aarch64_asm(
        binary_conv_model(np.random.default_rng(18), 1, channels, size, channels, 3, 1, 1, mode="binary")
    )
    assert re.search(r"\baddp\s+v\d+\.8h", asm)
    assert not re.search(r"\bmov\s+v\d+\.s\[\d\], v\d+\.s\[\d\]|\bins\s", asm)


@pytest.mark.parametrize("channels, size", [(64, 16), (256, 14)])
def test_neon_sign_pack_inserts_each_bit_with_one_sli(channels, size):
    """A float input's signs pack by shift-left-and-insert (``targets.shift_insert``): per 64
    channels, 64 compares and 62 ``sli`` (each 32-bit half's top bit needs none), no AND and ORR
    per bit; vectors of 4 pixels (16-wide rows) and of 2 (14-wide)."""
    asm = _aarch64_asm(
        binary_conv_model(np.random.default_rng(18), 1, channels, size, channels, 3, 1, 1, mode="binary")
    )
    compares = len(re.findall(r"\bfcmge\s+v\d+", asm))
    assert compares > 0 and len(re.findall(r"\bsli\s+v\d+", asm)) == compares // 64 * 62


def test_neon_tile_columns_load_the_input_words_their_taps_share_once():
    """A 4-column tile's taps along a row read 6 input words for its 12 (column, tap) pairs: with
    the tap columns unrolled, each is one broadcast load (ld1r) per channel word, 8 cnt per load
    in the popcount loop (a 128-channel conv on 16-wide maps: 2 channel words); a loop per tap
    column loaded each pair's word, 4 or 5 cnt per load."""
    asm = _aarch64_asm(binary_conv_model(np.random.default_rng(18), 1, 128, 16, 128, 3, 1, 1, mode="binary"))
    loop = _popcount_loop(asm)
    loads = len(re.findall(r"\bld1r\s", loop))
    assert loads > 0 and 8 * loads <= len(re.findall(r"\bcnt\s+v\d+\.16b", loop))


def test_a_module_holds_only_the_kernels_it_calls():
    """Splitting the weights' layout rewrite out of a kernel leaves the kernel before the split and
    the rewrite (folded into the constant at compile time) beside the one called: none of them
    goes into the module."""
    asm = _aarch64_asm(binary_conv_model(np.random.default_rng(18), 1, 64, 16, 64, 3, 1, 1, mode="binary"))
    assert re.findall(r"^__tvm_ffi_(mptc_\w+):", asm, flags=re.MULTILINE) == ["mptc_0_conv1_prepacked"]
