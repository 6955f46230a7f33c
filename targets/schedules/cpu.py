"""CPU schedules of the ``ai.mptc`` kernels, shared by x86 and ARM (which differ only in tiles).

Every popcount kernel gets the same shape of schedule: output channels interleaved as vector
lanes (``CpuTiles.word_lanes`` uint64 words per register), a register tile of
``vectors x columns`` (or ``x batch rows``) accumulators, the reduction over taps and words
outside the tile, one parallel loop over tiles, and the float epilogue computed per tile while
the counts are still in registers (for a packed output, each group of vectors is compared with
its thresholds as soon as it is counted, so one group's counts are live at a time). Register
tiles are small ``local`` buffers, which the TIR pipeline keeps on the stack
(``targets.stack_buffers``) so LLVM promotes them to registers. Tiles with ``lane_counts``
(NEON) accumulate in 16-bit counters, folded into counts before the epilogue (``lane_counts``).
The sparse real-input kernels vectorize over output columns (conv) or output channels (dense, a
gather) and only add.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import tvm
from tvm import s_tir, tirx
from tvm.ir.expr import TensorLoad
from tvm.s_tir.schedule import _ffi_api as schedule_api
from tvm.script.ir_builder import IRBuilder
from tvm.script.ir_builder import tirx as T

from mptc.targets.kernels import binary_dense, exact_sign, int8_conv, stages
from mptc.targets.kernels.binary_conv import GatherStore, SparseGather
from mptc.targets.kernels.dot_instructions import DotInstruction
from mptc.targets.layout import WORD_BITS, ConvGeometry, ceil_div
from mptc.targets.schedules import lane_counts, unswitch
from mptc.targets.schedules.cpu_glue import TiledReduction
from mptc.targets.schedules.interface import Int8Conv, Int8Dense
from mptc.targets.schedules.loops import divisor_at_most, extent


@dataclass(frozen=True)
class CpuTiles:
    """Register tiling of one CPU family (named defaults live in ``x86.py`` / ``arm.py``)."""

    word_lanes: int  # uint64 words per vector register = output channels per popcount vector
    float_lanes: int  # fp32 elements per vector register
    conv_vectors: int  # popcount vectors (of word_lanes channels) per conv register tile
    conv_cols: int  # output columns per conv register tile (the largest divisor of OW not above it)
    dense_vectors: int  # popcount vectors per dense register tile
    dense_rows: int  # batch rows per dense register tile (largest divisor of N not above it)
    conv_accumulators: int  # float vectors a real-input register tile may hold (block x chunk; rows x vectors)
    gather_accumulators: int = 0  # the block-sparse gather's (block x chunk) where it differs (0: conv_accumulators)
    gather_pairs: bool = False  # the gather walks a segment two entries per iteration (one loop control for both)
    l1_floats: int = 8192  # fp32 values of L1 data cache a block-sparse conv's input group may fill (32 KB)
    pointwise_slice_floats: int = 32768  # a 1x1 conv's chunk of every input channel up to this: one group (128 KB)
    conv_row_outputs: int = 8  # output channels per register tile when a conv's vectors run along columns
    lane_counts: bool = False  # popcounts add up in 16-bit counters (``lane_counts``): NEON's cnt + uadalp
    popcount_tile: int = 0  # conv popcount tile's accumulators, shaped by ``_conv_tile`` (0: cols x vectors)
    ternary_nibbles: bool = False  # dense-ternary weights as code bytes decoded by a table load (NEON)
    sparse_rows: bool = False  # the sign-split dense at batch 1 sums each output's own list (NEON: no gather)
    vector_registers: int = 32  # vector registers, which bound the fp32 glue's register tiles (AVX2: 16)
    weight_vectors: bool = False  # the FMA takes a lane of a vector as its broadcast operand (NEON's by-element FMLA)


# Parallel tasks of a sparse layer (consecutive outputs each): enough to balance a few cores, few
# enough that each task's outputs share the input slice they read.
SPARSE_TASKS = 16
THREADS_BALANCED = 4  # a block-sparse gather's tasks split evenly over this many threads (and its divisors)

# Cost of walking a chunk's index once (the entry's load, its address, the segment loops), in
# vector operations: the chunk of a block-sparse conv minimizes tiles x (vectors + this). By
# padding alone, a chunk of many small vectors wins on paper and walks the index once per tile
# (docs/performance.md, changelog). Chunks are whole vectors: a half-width one costs an
# operation for half the lanes.
CHUNK_ENTRY_COST = 2

# Register tile of the batched sign-split dense kernel: outputs x vectors of batch values.
SPARSE_BATCH_ROWS = 4
SPARSE_BATCH_VECTORS = 4

# Counter tiles (NEON) unroll a tap row's columns too where the tile has this many output columns
# or more, so neighbouring columns load the input words their taps share once (4 columns x 3 taps
# read 6 words), and the unrolled body holds at most this many steps (a tile's vectors x columns x
# tap columns x channel words); past it, and with 2 columns, LLVM's code counted more
# (docs/performance.md).
SHARED_TAP_COLUMNS = 4
UNROLLED_TAP_STEPS = 320


@dataclass(frozen=True)
class TapRow:
    """A conv's row of taps as a counter tile reads it: ``taps`` kernel columns of ``words``
    channel words each, neighbouring output columns ``stride`` input columns apart."""

    taps: int
    words: int
    stride: int


# Batch rows of a dense-ternary register tile (of ``CpuTiles.conv_accumulators`` float vectors in
# all): each decoded weight vector feeds every row of the tile.
TERNARY_ROWS = 8

# Parallel tasks a dense-ternary conv aims for: whole output-channel blocks first, then chunks of
# rows (each chunk decodes its block's weights again).
TERNARY_CONV_TASKS = 8

# Vectors of output columns (one row's, or of as many rows) that share each decoded weight broadcast
# in a dense-ternary conv tile whose vectors run along the columns.
TERNARY_SHARED_VECTORS = 2

# Elements from which an elementwise stage (a dense layer's sign-split operand) runs in parallel.
PARALLEL_MIN_ELEMENTS = 1 << 16

# Register tile of the depthwise conv: vectors of consecutive flat outputs (docs/performance.md).
DEPTHWISE_VECTORS = 8
MIN_ROW_LANES = 4  # the narrowest vector a depthwise row tile takes (half of a NEON register is two lanes)


@dataclass(frozen=True)
class Int8ConvSchedule:
    """The int8 conv of a family with a dot-product instruction (``kernels.int8_conv``): register
    tiles of up to ``vectors`` x ``columns`` on ``dot``; the quantized input parallel over channel
    words and rows, the level sums (unsigned codes only) on one thread, the epilogue over output
    channels, each vectorized by ``lanes`` along its rows."""

    dot: DotInstruction
    lanes: int
    vectors: int
    columns: int
    unrolled_taps: int = 0  # kernels of up to this many taps get their tap loops unrolled

    def __call__(
        self, geo: ConvGeometry, scale: float, zero_point: int, residual: bool, relu: bool, upper: float | None
    ) -> tirx.PrimFunc:
        func = int8_conv.dot_conv_func(
            geo, scale, zero_point, self.dot, self.vectors, self.columns, self.unrolled_taps, residual, relu, upper
        )
        sch = s_tir.Schedule(func)
        n, c4, yp, xp = sch.get_loops(sch.get_sblock(stages.QUANTIZE))
        sch.parallel(sch.fuse(n, c4, yp))
        sch.vectorize(sch.split(xp, [None, self.lanes])[1])
        if stages.PIXEL_LEVELS in block_names(sch):  # a few adds per output: one thread, no wake-up of the pool
            sch.vectorize(sch.split(sch.get_loops(sch.get_sblock(stages.PIXEL_LEVELS))[-1], [None, self.lanes])[1])
        n, o, oy, ox = sch.get_loops(sch.get_sblock(stages.OUTPUT))
        sch.parallel(sch.fuse(n, o))
        sch.vectorize(sch.split(sch.fuse(oy, ox), [None, self.lanes])[1])
        return sch.mod["main"]


class CpuKernelSchedules:
    """Schedules of the PrimFuncs built by ``targets.kernels`` for one CPU family."""

    fused_gather_epilogue = True  # the sums of a chunk leave the registers once, as outputs

    def __init__(self, tiles: CpuTiles, int8_dense: Int8Dense | None = None, int8_conv: Int8Conv | None = None):
        self.tiles = tiles
        self.int8_dense = int8_dense
        self.int8_conv = int8_conv

    @property
    def word_lanes(self) -> int:
        return self.tiles.word_lanes

    @property
    def float_lanes(self) -> int:
        return self.tiles.float_lanes

    @property
    def ternary_nibbles(self) -> bool:
        return self.tiles.ternary_nibbles

    @property
    def sparse_row_sums(self) -> binary_dense.RowSumsBody | None:
        return self._sparse_row_sums if self.tiles.sparse_rows else None

    def _sparse_row_sums(
        self, r: binary_dense.SparseRowSums, xs: tirx.Buffer, ptr: tirx.Buffer, index: tirx.Buffer, acc: tirx.Buffer
    ) -> tirx.Stmt:
        """Loop nest of the per-output sums: parallel over tasks of consecutive outputs; an
        output's entries (an even number, ``layout.SparseRows``) in pairs into two scalar sums: a
        pair's indices are one load (``ldp``), each entry an input load at its index and an add.
        The operand is read as ``xs[n, i]``: through a pointer view (as the block-sparse gather
        reads its flat input) a layer of one task read other values in the compiled network."""
        parts, per = _tasks(r.outputs)
        zero = tirx.const(0.0, "float32")
        with IRBuilder() as ib:
            with T.parallel(0, r.batch * parts) as task:
                n = task // parts
                with T.serial(0, per) as step:
                    o = task % parts * per + step
                    with T.If(o < r.outputs), T.Then():
                        first, last = T.bind(ptr[o]), T.bind(ptr[o + 1])
                        entries = _view(index[first], last - first)
                        sums = T.alloc_local((2,), "float32")
                        for i in range(2):
                            T.buffer_store(sums, zero, [i])
                        with T.serial(0, (last - first) // 2) as pair:
                            for i in range(2):
                                T.buffer_store(sums, sums[i] + xs[n, entries[2 * pair + i]], [i])
                        T.buffer_store(acc, sums[0] + sums[1], [n, o])
        return ib.get()

    def binary_conv(self, func: tirx.PrimFunc) -> tirx.PrimFunc:
        """Tile ``(n, oy, ox/cols, o/(vectors*lanes))`` parallel; the taps (one fused loop) outside
        the register tile. With a packed output the tile is one 64-channel output word
        (``_threshold_words``)."""
        sch = s_tir.Schedule(func)
        count = sch.get_sblock(stages.POPCOUNT)
        columns = extent(sch, sch.get_loops(count)[2])
        exact = stages.EXACT_SIGN in sch.get(count).annotations
        row = self._tap_row(sch, count)
        if stages.LANE_BITS in block_names(sch):
            cols, vectors = self._conv_tile(columns, WORD_BITS, row)
            shared = self._counter_tile_loads(sch, count, row, cols, self._vectors(WORD_BITS, vectors))
            n, oy, ox, w, lane, v = sch.get_loops(sch.get_sblock(stages.LANE_BITS))
            xo, xi = sch.split(ox, [None, cols])
            self._threshold_words(sch, [n, oy, xo, w], xi, lane, v, vectors, shared_taps=shared)
        elif self._columns_as_lanes(sch, count):
            n, oy, ox, o, ky, kx, cw = sch.get_loops(count)
            xo, xl = sch.split(ox, [None, self.word_lanes])
            oo, on = sch.split(o, [None, divisor_at_most(extent(sch, o), self.tiles.conv_row_outputs)])
            sch.reorder(n, oy, xo, oo, ky, kx, cw, on, xl)
            tile = sch.fuse(n, oy, xo, oo)
            sch.transform_layout(count, ("write", 0), lambda n, y, x, o: (n, y, o, x))  # a vector = a run of columns
            taps = sch.fuse(ky, kx, cw)
            self._register_tile(
                sch, count, sch.get_sblock(stages.OUTPUT), tile, reduce_from=taps, unrolled=(on,), lanes=xl
            )
            if exact:
                unswitch.mark(sch, taps)
        else:
            n, oy, ox, o, ky, kx, cw = sch.get_loops(count)
            counters = row is not None
            cols, vectors = self._conv_tile(columns, extent(sch, o), row)
            xo, xi = sch.split(ox, [None, cols])
            oo, on, ov = sch.split(o, [None, vectors, self.word_lanes])
            # with counters: taps in separate loops (affine addresses, no division per word), the
            # channel words unrolled; per vector, its weight and mask words serve every column in turn
            sch.reorder(n, oy, xo, oo, ky, kx, cw, *((on, xi) if counters else (xi, on)), ov)
            shared = (kx,) if self._counter_tile_loads(sch, count, row, cols, vectors) else ()
            tile = sch.fuse(n, oy, xo, oo)
            taps = ky if counters else sch.fuse(ky, kx, cw)
            self._register_tile(
                sch,
                count,
                sch.get_sblock(stages.OUTPUT),
                tile,
                reduce_from=taps,
                unrolled=(on, xi, cw, *shared) if counters else (xi, on),
                lanes=ov,
                counters=counters,
                channel_constants=counters,
            )
            if exact:  # each output row counts in one form: the loop over taps holds no select
                unswitch.mark(sch, taps)
        for name in (stages.PACK, stages.PACK_NONZERO):
            if name in block_names(sch):
                self._pack_pixels(sch, sch.get_sblock(name))
        self._pack(sch, parallel_loops=2)
        return unswitch.apply(lane_counts.expand(sch.mod["main"]))

    def _pack_pixels(self, sch: s_tir.Schedule, block: s_tir.schedule.SBlockRV) -> None:
        """A float NCHW input's sign pack ``(n, y, x, cw)``: a word per pixel, from vectors of
        consecutive pixels (a full float vector per compare: 2.5x faster than word-wide on
        32-pixel rows), parallel over ``(n, y)``. Where a row's widest vector is half a register
        or less (14-wide rows on NEON: 2 lanes of 4) and the map holds whole vectors, the vectors
        run across rows."""
        n, y, x, cw = sch.get_loops(block)
        width, lanes = extent(sch, x), self.float_lanes
        if 2 * divisor_at_most(width, lanes) <= lanes and extent(sch, y) * width % lanes == 0:
            outer, pixels = sch.split(sch.fuse(y, x), [None, lanes])
            sch.reorder(n, outer, cw, pixels)
            sch.parallel(sch.fuse(n, outer))
        else:
            sch.reorder(n, y, cw, x)
            sch.parallel(sch.fuse(n, y))
            pixels = sch.split(x, [None, divisor_at_most(width, lanes)])[1]
        sch.vectorize(pixels)

    def binary_dense(self, func: tirx.PrimFunc) -> tirx.PrimFunc:
        """Tile ``(o/(vectors*lanes), n/rows)`` parallel; words outside the register tile (see ``binary_conv``)."""
        sch = s_tir.Schedule(func)
        count = sch.get_sblock(stages.POPCOUNT)
        rows = divisor_at_most(extent(sch, sch.get_loops(count)[0]), self.tiles.dense_rows)
        if stages.LANE_BITS in block_names(sch):
            n, w, lane, v = sch.get_loops(sch.get_sblock(stages.LANE_BITS))
            no, ni = sch.split(n, [None, rows])
            self._threshold_words(sch, [w, no], ni, lane, v, self.tiles.dense_vectors)
        else:
            n, o, kw = sch.get_loops(count)
            oo, on, ov = sch.split(o, [None, self._vectors(extent(sch, o), self.tiles.dense_vectors), self.word_lanes])
            no, ni = sch.split(n, [None, rows])
            sch.reorder(oo, no, kw, ni, on, ov)
            tile = sch.fuse(oo, no)
            counters = self._lane_counts(sch, count)
            self._register_tile(
                sch,
                count,
                sch.get_sblock(stages.OUTPUT),
                tile,
                reduce_from=kw,
                unrolled=(ni, on),
                lanes=ov,
                counters=counters,
            )
            if stages.EXACT_SIGN in sch.get(count).annotations:  # one form per call: no select per word
                unswitch.mark(sch, kw)
        self._pack(sch, parallel_loops=1)
        return unswitch.apply(lane_counts.expand(sch.mod["main"]))

    def _columns_as_lanes(self, sch, count) -> bool:
        """A float output whose neighbouring columns read neighbouring input words (one channel
        word, stride 1) and whose rows are whole vectors takes vectors of columns instead of
        vectors of channels: each tap is one vector load and a broadcast weight word per output,
        and the epilogue writes whole NCHW rows with no transpose (measured: docs/performance.md).
        Not with 16-bit counters (NEON): a vector there is 2 columns, and the channel-lane tile
        shares each output's weight words across its columns instead of broadcasting them per vector."""
        return not self._lane_counts(sch, count) and _rows_of_vectors(sch, count, self.word_lanes)

    def _lane_counts(self, sch, count) -> bool:
        """Whether ``count`` accumulates in 16-bit counters (``lane_counts``): where the tiles ask
        for it and every output's reduction fits the counters."""
        if not self.tiles.lane_counts:
            return False
        exact = sch.get(count).annotations.get(stages.EXACT_SIGN)
        if exact is not None:  # the kernel was built for the counts the frontend asked for
            return int(exact) == exact_sign.ANNOTATED_COUNTERS
        block = sch.get(count)
        words = 1
        for iv in block.iter_vars:
            if iv.iter_type == tirx.IterVar.CommReduce:
                words *= int(iv.dom.extent)
        return words <= lane_counts.MAX_WORDS

    def exact_sign_counts(self, words: int) -> exact_sign.Counts:
        """How an exact Sign conv or dense layer reducing over ``words`` words counts: in 16-bit
        counters where the tiles ask for them and its counts fold exactly
        (``exact_sign.MAX_COUNTER_WORDS``)."""
        fits = self.tiles.lane_counts and words <= exact_sign.MAX_COUNTER_WORDS
        return exact_sign.IN_COUNTERS if fits else exact_sign.IN_WORDS

    def _tap_row(self, sch: s_tir.Schedule, count: s_tir.schedule.SBlockRV) -> TapRow | None:
        """The row of taps a conv's popcount reads, where it counts in 16-bit counters (None elsewhere)."""
        if not self._lane_counts(sch, count):
            return None
        _, _, _, _, _, kx, cw = sch.get_loops(count)
        words = extent(sch, cw)
        return TapRow(extent(sch, kx), words, int(sch.get(count).annotations[stages.COLUMN_STRIDE]) // words)

    def _counter_tile_loads(self, sch, count, row: TapRow | None, cols: int, vectors: int) -> bool:
        """For a counter tile (``row`` given) of ``cols`` x ``vectors``: re-lay the weights in its
        order (``_weights_in_tile_order``); whether it unrolls its tap columns (``_shares_taps``)."""
        if row is None:
            return False
        _weights_in_tile_order(sch, count, "planes", vectors)
        return self._shares_taps(cols, vectors, row)

    def _conv_tile(self, columns: int, outputs: int, row: TapRow | None = None) -> tuple[int, int]:
        """Columns and popcount vectors of a conv register tile over ``columns`` output columns and
        ``outputs`` channels. Within ``popcount_tile`` accumulators the shape loads the fewest
        operands per accumulator step: each vector's weight and mask words (loaded in pairs of
        words) serve the tile's columns, each input word (a broadcast load and its address) the
        tile's vectors; with ``row``, the taps along a row whose words the columns share
        (``_shares_taps``) are loaded once. Ties: more columns."""
        budget = self.tiles.popcount_tile
        if not budget:
            return divisor_at_most(columns, self.tiles.conv_cols), self._vectors(outputs, self.tiles.conv_vectors)
        row = row or TapRow(taps=1, words=1, stride=1)
        shapes = [
            (c, self._vectors(outputs, budget // c)) for c in range(1, min(columns, budget) + 1) if columns % c == 0
        ]

        def loads_per_step(cols: int, vectors: int) -> Fraction:
            inputs = cols * row.taps
            if self._shares_taps(cols, vectors, row):
                inputs = min(inputs, (cols - 1) * row.stride + row.taps)
            return Fraction(vectors * row.taps + 2 * inputs, cols * vectors * row.taps)

        return min(shapes, key=lambda cv: (loads_per_step(*cv), -cv[0]))

    @staticmethod
    def _shares_taps(cols: int, vectors: int, row: TapRow) -> bool:
        """Whether a counter tile unrolls its tap row's columns (``SHARED_TAP_COLUMNS``,
        ``UNROLLED_TAP_STEPS``), so its columns load the input words they share once."""
        return cols >= SHARED_TAP_COLUMNS and row.taps * row.words * cols * vectors <= UNROLLED_TAP_STEPS

    def _vectors(self, outputs: int, max_vectors: int) -> int:
        """Popcount vectors (of ``word_lanes`` outputs) per register tile."""
        return divisor_at_most(outputs // self.word_lanes, max_vectors)

    def _threshold_words(self, sch, tile_loops, inner, lane, v, max_vectors: int, shared_taps: bool = False) -> None:
        """Packed output (``kernels.bits.threshold_words``): one parallel tile per output word and
        ``inner`` positions (columns or batch rows). Per group of ``vectors`` popcount vectors the
        counts are reduced in registers (taps outside), then compared with their thresholds a
        vector at a time and ORed into the lanes' bits; the word ORs the lanes. Only one group's
        counts are live, so the tile fits in registers however many vectors a word spans."""
        count, bits = sch.get_sblock(stages.POPCOUNT), sch.get_sblock(stages.LANE_BITS)
        counters = self._lane_counts(sch, count)
        group, vi = sch.split(v, [None, self._vectors(WORD_BITS, max_vectors)])
        sch.reorder(*tile_loops, group, inner, vi, lane)
        tile = sch.fuse(*tile_loops)
        sch.parallel(tile)
        sch.reverse_compute_at(sch.get_sblock(stages.OUTPUT), tile)
        fold = None
        if counters:  # the lane bits read the counts folded from the counters (``lane_counts``)
            source = sch.get(count).writes[0].source
            index = next(i for i, r in enumerate(sch.get(bits).reads) if r.source.same_as(source))
            fold = sch.cache_read(bits, index, "local")
            sch.compute_at(fold, group, preserve_unit_loops=True)
            sch.set_scope(fold, 0, "local")
        sch.compute_at(count, group, preserve_unit_loops=True)
        loops = sch.get_loops(count)
        reductions = sum(1 for iv in sch.get(count).iter_vars if iv.iter_type == tirx.IterVar.CommReduce)
        position, o = loops[-reductions - 2 : -reductions]
        on, ov = sch.split(o, [None, self.word_lanes])
        unrolled = [position, on, inner, vi]
        if counters:  # separate tap loops (affine addresses), each vector's weights serve every position
            taps = loops[-reductions:]
            sch.reorder(*taps, on, position, ov)
            unrolled += taps[-2:] if shared_taps else taps[-1:]  # with the tap columns (``_shares_taps``)
        else:
            taps = [sch.fuse(*loops[-reductions:]) if reductions > 1 else loops[-1]]
            sch.reorder(*taps, position, on, ov)
        sch.set_scope(count, 0, "local")
        sch.set_scope(bits, 0, "local")
        for loop in unrolled:
            sch.unroll(loop)
        sch.vectorize(ov)
        sch.vectorize(lane)
        sch.decompose_reduction(count, taps[0])
        sch.decompose_reduction(bits, group)
        if fold is not None:
            _mark_counters(sch, count, fold, group)

    def conv_chunk(self, flat: int, block: int) -> int:
        """Flat outputs per register tile of a real-input conv with ``block`` output channels: whole
        vectors, at most ``gather_accumulators`` in all, the fewest vector operations over ``flat``
        counting ``CHUNK_ENTRY_COST`` per tile (ties: more vectors)."""
        most = max(1, (self.tiles.gather_accumulators or self.tiles.conv_accumulators) // block)
        vectors = min(
            range(1, most + 1), key=lambda v: (ceil_div(flat, v * self.float_lanes) * (v + CHUNK_ENTRY_COST), -v)
        )
        return vectors * self.float_lanes

    def conv_group(self, channels: int, channel_floats: int, grouped: bool, taps: int) -> int:
        """Input channels per group of a block-sparse conv: all of them unless ``grouped``, else as
        many as keep the flat input one chunk reads (``channel_floats`` per channel) within
        ``l1_floats``, so the output blocks of a task re-read it from L1. A 1x1 conv (``taps``
        1) whose chunk of every channel fits ``pointwise_slice_floats`` takes one group: each
        block reads a kept channel once, from L2 as cheaply, and groups would only add the round
        trips of their partial sums (docs/performance.md)."""
        if not grouped or (taps == 1 and channels * channel_floats <= self.tiles.pointwise_slice_floats):
            return channels
        return max(1, min(channels, self.tiles.l1_floats // channel_floats))

    def sparse_gather(
        self, g: SparseGather, xs: tirx.Buffer, ptr: tirx.Buffer, index: tirx.Buffer, store: GatherStore
    ) -> tirx.Stmt:
        """Loop nest of the block-sparse gather: parallel over tasks of one chunk of flat outputs
        and a run of consecutive output blocks (``_block_parts``: all of them where the chunks
        alone make ``SPARSE_TASKS``, so a large input is read about once, not once per run of
        blocks); per input-channel group, each block of the task keeps ``block x chunk``
        accumulators in registers and walks its segments, one vector load per entry and vector,
        added to or subtracted from the accumulators its sign class names. A task's blocks share
        the group's slice of the input while it is in L1; the sums between groups stay in the
        task's own buffer, and go to ``store`` after the last group."""
        lanes = self.float_lanes
        vectors, tiles, classes = g.chunk // lanes, g.outputs // g.chunk, g.classes
        parts = _block_parts(g.blocks, tiles)
        per = ceil_div(g.blocks, parts)
        zero = tirx.const(0.0, "float32")
        with IRBuilder() as ib:
            with T.parallel(0, g.batch * parts * tiles) as task:
                n, part, qo = task // (parts * tiles), task // tiles % parts, task % tiles
                partial = T.alloc_local((per, g.block, g.chunk), "float32") if g.groups > 1 else None
                with T.serial(0, g.groups) as group, T.serial(0, per) as step:
                    b = part * per + step
                    with T.If(b < g.blocks), T.Then():
                        # one buffer per output: each stays within the stack limit
                        # (targets.stack_buffers), so LLVM keeps it in registers; one buffer for the
                        # whole tile could exceed it and go to the heap workspace
                        regs = [T.alloc_local((g.chunk,), "float32") for _ in range(g.block)]
                        for i in range(g.block):
                            with T.unroll(0, vectors) as v, T.vectorized(0, lanes) as lane:
                                at = v * lanes + lane
                                first = zero if partial is None else tirx.Select(group == 0, zero, partial[step, i, at])
                                T.buffer_store(regs[i], first, [at])

                        # the chunk of the group's input, and each segment's entries, from
                        # pointers: an entry's input is then one add away from its index (an
                        # int32 offset added to the index first is not)
                        window = _view(xs[n, group * g.group_floats + qo * g.chunk], g.group_floats + g.chunk)

                        def add_entry(entry, signs):
                            # a loop TVM unrolls after lowering, not one statement per vector:
                            # buffer flattening costs more than linear time in statements
                            with T.unroll(0, vectors) as v, T.vectorized(0, lanes) as lane:
                                at = v * lanes + lane
                                x = window[entry.astype("int32") + at]
                                for i, sign in enumerate(signs):
                                    if sign:
                                        T.buffer_store(regs[i], regs[i][at] + x if sign > 0 else regs[i][at] - x, [at])

                        for k, signs in enumerate(classes):
                            segment = b * len(classes) + k
                            first, last = T.bind(ptr[group, segment]), T.bind(ptr[group, segment + 1])
                            entries = _view(index[first], last - first)
                            if not self.tiles.gather_pairs:
                                with T.serial(0, last - first) as j:
                                    add_entry(entries[j], signs)
                                continue
                            with T.serial(0, (last - first) // 2) as pair:
                                add_entry(entries[2 * pair], signs)
                                add_entry(entries[2 * pair + 1], signs)
                            with T.If((last - first) % 2 == 1), T.Then():
                                add_entry(entries[last - first - 1], signs)

                        def put_sums():
                            for i in range(g.block):
                                with T.unroll(0, vectors) as v:
                                    _put_vector(store, g, lanes, n, b, i, qo * g.chunk + v * lanes, regs[i], v * lanes)

                        if partial is None:
                            put_sums()
                        else:
                            with T.If(group == g.groups - 1):
                                with T.Then():
                                    put_sums()
                                with T.Else():
                                    for i in range(g.block):
                                        with T.unroll(0, vectors) as v, T.vectorized(0, lanes) as lane:
                                            at = v * lanes + lane
                                            T.buffer_store(partial, regs[i][at], [step, i, at])
        return ib.get()

    def block_sparse_conv(self, func: tirx.PrimFunc) -> tirx.PrimFunc:
        """The flat input and the epilogue around the gather (``sparse_gather``): both parallel
        and vectorized along rows."""
        sch = s_tir.Schedule(func)
        if stages.OUTPUT in block_names(sch):  # none where the gather stores the output itself
            n, o, _, ox = sch.get_loops(sch.get_sblock(stages.OUTPUT))
            sch.parallel(sch.fuse(n, o))
            sch.vectorize(ox)
        if stages.FLAT in block_names(sch):  # none where the gather reads the input in place
            self._planes(sch, sch.get_sblock(stages.FLAT))
        if stages.LUT in block_names(sch):
            self._lookup_planes(sch, sch.get_sblock(stages.LUT))
        return sch.mod["main"]

    def sparse_dense(self, func: tirx.PrimFunc) -> tirx.PrimFunc:
        """Parallel over output-channel vectors; per index entry, one gather-add per batch row.
        The per-output sums (``sparse_row_sums``) bring their own loop nest: the operand and the
        epilogue around them are element-wise."""
        sch = s_tir.Schedule(func)
        gather, out = sch.get_sblock(stages.GATHER), sch.get_sblock(stages.OUTPUT)
        if not sch.get_loops(gather):
            self._elementwise(sch, sch.get_sblock(stages.SPLIT))
            self._elementwise(sch, out)
            return sch.mod["main"]
        n, o, j = sch.get_loops(gather)
        oo, ov = sch.split(o, [None, self.float_lanes])
        no, ni = sch.split(n, [None, divisor_at_most(extent(sch, n), self.tiles.dense_rows)])
        sch.reorder(oo, no, j, ni, ov)
        tile = sch.fuse(oo, no)
        self._register_tile(sch, gather, out, tile, reduce_from=j, unrolled=(ni,), lanes=ov)
        self._elementwise(sch, sch.get_sblock(stages.SPLIT))
        return sch.mod["main"]

    def dense_ternary(self, func: tirx.PrimFunc) -> tirx.PrimFunc:
        """Register tiles of ``rows x vectors`` outputs (``conv_accumulators`` vectors in all), parallel
        over tiles; per input, each vector of weights is decoded once for the tile's rows."""
        sch = s_tir.Schedule(func)
        acc, out = sch.get_sblock(stages.TERNARY), sch.get_sblock(stages.OUTPUT)
        n, o, k = sch.get_loops(acc)
        rows = divisor_at_most(extent(sch, n), TERNARY_ROWS)
        vectors = divisor_at_most(extent(sch, o) // self.float_lanes, self.tiles.conv_accumulators // rows)
        oo, on, ov = sch.split(o, [None, vectors, self.float_lanes])
        no, ni = sch.split(n, [None, rows])
        sch.reorder(oo, no, k, ni, on, ov)
        tile = sch.fuse(oo, no)
        self._register_tile(sch, acc, out, tile, reduce_from=k, unrolled=(ni, on), lanes=ov)
        return sch.mod["main"]

    def conv_ternary(self, func: tirx.PrimFunc) -> tirx.PrimFunc:
        """Parallel over ``(n, output-channel vectors, row chunk)`` tasks, each decoding its
        channels' weights once where the kernel has a ``DECODE`` block; register tiles of a 2-D
        block of output pixels (columns, then rows while the accumulators last) x the vectors that
        fill the rest: each weight vector feeds every pixel of the tile (broadcast inputs), the
        taps outside the tile. Rows of whole vectors take vectors of columns instead
        (``_conv_ternary_columns``)."""
        sch = s_tir.Schedule(func)
        acc, out = sch.get_sblock(stages.TERNARY), sch.get_sblock(stages.OUTPUT)
        if self._ternary_columns(sch, acc):
            self._conv_ternary_columns(sch, acc, out)
            return sch.mod["main"]
        n, oy, ox, o, c, ky, kx = sch.get_loops(acc)
        budget = self.tiles.conv_accumulators
        cols = divisor_at_most(extent(sch, ox), budget)
        rows = divisor_at_most(extent(sch, oy), budget // cols)
        vectors = divisor_at_most(extent(sch, o) // self.float_lanes, budget // (cols * rows))
        chunk = _row_chunk(extent(sch, oy), rows, extent(sch, n) * extent(sch, o) // (vectors * self.float_lanes))
        oo, on, ov = sch.split(o, [None, vectors, self.float_lanes])
        yo, ym, yi = sch.split(oy, [None, chunk // rows, rows])
        xo, xi = sch.split(ox, [None, cols])
        sch.reorder(n, oo, yo, ym, xo, c, ky, kx, yi, xi, on, ov)
        self._ternary_tile(sch, acc, out, (n, oo, yo), xo, (yi, xi, on), ov, c)
        return sch.mod["main"]

    def pointwise_ternary(self, func: tirx.PrimFunc) -> tirx.PrimFunc:
        """The fp32 glue's schedule of a 1x1 conv (``cpu_glue.TiledReduction``: a GEMM over flat
        pixels, or vectors of output channels on maps narrower than a vector's worth of pixels),
        the weights decoded per call as a parallel stage before it."""
        rule = TiledReduction(self.float_lanes, self.tiles.vector_registers, self.tiles.weight_vectors)
        sch = rule.schedule(func)
        assert sch is not None, "a pointwise conv is one leading-spatial reduction"
        return sch.mod["main"]

    def _ternary_columns(self, sch, acc) -> bool:
        """Whether a dense-ternary conv's vectors run along output columns: stride 1 (neighbouring
        outputs read neighbouring inputs) and rows of whole vectors. Its epilogue then writes NCHW
        rows from registers, where channel vectors are transposed through memory (gathers)."""
        return _rows_of_vectors(sch, acc, self.float_lanes)

    def _conv_ternary_columns(self, sch, acc, out) -> None:
        """Parallel over ``(n, output-channel block, row chunk)`` tasks, as ``conv_ternary``; a
        register tile is ``TERNARY_SHARED_VECTORS`` vectors of output columns (of one row, or of
        as many rows) x the channels that fill the accumulators: each decoded weight broadcast feeds
        that many vectors, each input vector (one unaligned load per tap) the tile's channels."""
        n, oy, ox, o, c, ky, kx = sch.get_loops(acc)
        lanes, budget = self.float_lanes, self.tiles.conv_accumulators
        row_vectors = divisor_at_most(extent(sch, ox) // lanes, TERNARY_SHARED_VECTORS)
        rows = divisor_at_most(extent(sch, oy), TERNARY_SHARED_VECTORS // row_vectors)
        channels = divisor_at_most(lanes, budget // (rows * row_vectors))  # within one decoded block
        chunk = _row_chunk(extent(sch, oy), rows, extent(sch, n) * extent(sch, o) // lanes)
        oo, om, on = sch.split(o, [None, lanes // channels, channels])
        yo, yi, yr = sch.split(oy, [None, chunk // rows, rows])
        xo, xv, xl = sch.split(ox, [None, row_vectors, lanes])
        sch.reorder(n, oo, yo, yi, xo, om, c, ky, kx, on, yr, xv, xl)
        sch.transform_layout(acc, ("write", 0), lambda n, y, x, o: (n, y, o, x))  # a vector = a run of columns
        self._ternary_tile(sch, acc, out, (n, oo, yo), om, (on, yr, xv), xl, c)
        *outer, columns = _under(sch, out, om)  # the epilogue: whole vectors of a row's columns
        for loop in outer:
            sch.unroll(loop)
        vectors, lane = sch.split(columns, [None, lanes])
        sch.unroll(vectors)
        sch.vectorize(lane)

    @staticmethod
    def _ternary_tile(sch, acc, out, task_loops, tile, unrolled, lane, reduce_from) -> None:
        """A dense-ternary conv's loops (ordered) into parallel tasks over ``task_loops``, its
        accumulators a register tile under ``tile`` with the epilogue there, the weights decoded once
        per task and the input padded in parallel."""
        task = sch.fuse(*task_loops)
        sch.parallel(task)
        sch.set_scope(acc, 0, "local")
        sch.reverse_compute_at(out, tile)
        for loop in unrolled:
            sch.unroll(loop)
        sch.vectorize(lane)
        sch.decompose_reduction(acc, reduce_from)
        if stages.DECODE in block_names(sch):
            decode = sch.get_sblock(stages.DECODE)
            sch.compute_at(decode, task)
            sch.vectorize(sch.get_loops(decode)[-1])
        pad = sch.get_sblock(stages.PAD)
        pn, pc, _, _ = sch.get_loops(pad)
        sch.parallel(sch.fuse(pn, pc))

    @property
    def depthwise_tile(self) -> int:
        return DEPTHWISE_VECTORS * self.float_lanes

    def depthwise_row_lanes(self, out_width: int) -> int | None:
        """A whole vector, or half of one, that divides the output rows: the row tiles end where
        the rows do, and write the epilogue from registers (1.1-1.35x the flat form on 56- and
        112-wide maps, docs/performance.md); None: the flat form, on the widths in between."""
        halves = (self.float_lanes, self.float_lanes // 2)
        return next((lanes for lanes in halves if lanes >= MIN_ROW_LANES and out_width % lanes == 0), None)

    def depthwise(self, func: tirx.PrimFunc) -> tirx.PrimFunc:
        """Parallel over channels; per channel, its flat plane built in cache (the stride phases
        of each input row copied together, so the loads are contiguous), then register tiles of
        ``DEPTHWISE_VECTORS`` vectors of flat outputs with the taps outside, then the epilogue
        over the output rows; in the by-rows form ``_depthwise_rows``."""
        sch = s_tir.Schedule(func)
        flat, acc, out = (sch.get_sblock(name) for name in (stages.FLAT, stages.DEPTHWISE, stages.OUTPUT))
        if len(sch.get_loops(acc)) == 6:  # (n, c, oy, ox, ky, kx): by rows
            return self._depthwise_rows(sch, flat, acc, out)
        # a channel's task computes all of its plane and flat outputs: TVM would infer the part
        # its outputs read, cut off mid-tile
        _read_whole(sch, out, stages.DEPTHWISE)
        _read_whole(sch, acc, stages.FLAT)
        n, c, _, ox = sch.get_loops(out)
        task = sch.fuse(n, c)
        sch.parallel(task)
        lanes = divisor_at_most(extent(sch, ox), self.float_lanes)
        if lanes > 1:
            sch.vectorize(sch.split(ox, [None, lanes])[1])
        sch.compute_at(acc, task)
        q, ky, kx = sch.get_loops(acc)[-3:]
        qo, qv, ql = sch.split(q, [None, DEPTHWISE_VECTORS, self.float_lanes])
        sch.reorder(qo, ky, kx, qv, ql)
        tile = sch.cache_write(acc, 0, "local")
        sch.reverse_compute_at(tile, qo)
        sch.unroll(qv)
        sch.vectorize(ql)
        sch.decompose_reduction(acc, ky)
        sch.vectorize(sch.split(sch.get_loops(tile)[-1], [None, self.float_lanes])[1])
        _phase_planes_at(sch, flat, task)
        return sch.mod["main"]

    def winograd_input(self, func: tirx.PrimFunc) -> tirx.PrimFunc:
        """Parallel over (image, channel); per channel, its phase planes built in cache (as the
        depthwise conv's), then per row of tiles each of the ``a^2`` positions (unrolled: one
        expression once the position is a constant) over the row's tiles as one vector."""
        sch = s_tir.Schedule(func)
        flat, block = sch.get_sblock(stages.FLAT), sch.get_sblock(stages.WINOGRAD_INPUT)
        images, rows, cols = (int(d) for d in sch.get(block).annotations[stages.TILE_SHAPE])
        b, c, p = sch.get_loops(block)
        n, i, j = sch.split(p, [images, rows, cols])
        sch.reorder(n, c, i, b, j)
        task = sch.fuse(n, c)
        sch.parallel(task)
        sch.unroll(b)
        sch.vectorize(j)
        _phase_planes_at(sch, flat, task, block)
        return sch.mod["main"]

    def winograd_output(self, func: tirx.PrimFunc) -> tirx.PrimFunc:
        """Parallel over (image, output channel); per tile row, the tiles' loop left to LLVM
        (its ``m x m`` outputs stored as interleaved runs of ``m`` rows), each tile's outputs
        unrolled in its body."""
        sch = s_tir.Schedule(func)
        block = sch.get_sblock(stages.OUTPUT)
        tile = int(sch.get(block).annotations[stages.TILE])
        n, o, oy, ox = sch.get_loops(block)
        i, a = sch.split(oy, [None, tile])
        j, b = sch.split(ox, [None, tile])
        sch.reorder(i, j, a, b)
        sch.parallel(sch.fuse(n, o))
        sch.unroll(a)
        sch.unroll(b)
        return sch.mod["main"]

    def _depthwise_rows(self, sch, flat, acc, out) -> tirx.PrimFunc:
        """The depthwise conv by rows: parallel over channels, the plane built per channel, then
        per output row tiles of at most ``DEPTHWISE_VECTORS`` vectors in registers, each written
        through the epilogue as it is done."""
        n, c, oy, ox, ky, kx = sch.get_loops(acc)
        task = sch.fuse(n, c)
        sch.parallel(task)
        lanes = self.depthwise_row_lanes(extent(sch, ox))
        xo, xv, xl = sch.split(ox, [None, divisor_at_most(extent(sch, ox) // lanes, DEPTHWISE_VECTORS), lanes])
        sch.reorder(oy, xo, ky, kx, xv, xl)
        sch.set_scope(acc, 0, "local")
        sch.reverse_compute_at(out, xo)
        sch.unroll(xv)
        sch.vectorize(xl)
        sch.decompose_reduction(acc, ky)
        inner = sch.get_loops(out)[-1]
        sch.vectorize(sch.split(inner, [None, lanes])[1])
        _phase_planes_at(sch, flat, task, acc)
        return sch.mod["main"]

    def sparse_dense_batched(self, func: tirx.PrimFunc) -> tirx.PrimFunc:
        """``batch_lanes`` form: parallel over tiles of ``SPARSE_BATCH_ROWS`` outputs x a batch
        chunk of up to ``SPARSE_BATCH_VECTORS`` vectors; per index entry, vector loads and adds."""
        sch = s_tir.Schedule(func)
        gather, out = sch.get_sblock(stages.GATHER), sch.get_sblock(stages.OUTPUT)
        o, n, j = sch.get_loops(gather)
        oo, oi = sch.split(o, [None, divisor_at_most(extent(sch, o), SPARSE_BATCH_ROWS)])
        no, ni = sch.split(n, [None, divisor_at_most(extent(sch, n), SPARSE_BATCH_VECTORS * self.float_lanes)])
        sch.reorder(oo, no, j, oi, ni)
        tile = sch.fuse(oo, no)
        self._register_tile(sch, gather, out, tile, reduce_from=j, unrolled=(oi,), lanes=ni)
        split = sch.get_sblock(stages.SPLIT)  # a transpose: vectors along the input's contiguous K
        f, n = sch.get_loops(split)
        fo, fi = sch.split(f, [None, self.float_lanes])
        sch.reorder(fo, n, fi)
        sch.parallel(fo)
        sch.vectorize(fi)
        return sch.mod["main"]

    def or_pool(self, func: tirx.PrimFunc) -> tirx.PrimFunc:
        """Max-pool on packed signs: parallel over ``(n, oy)``, the words of a row contiguous."""
        sch = s_tir.Schedule(func)
        n, oy, _, _ = sch.get_loops(sch.get_sblock(stages.OUTPUT))
        sch.parallel(sch.fuse(n, oy))
        return sch.mod["main"]

    @staticmethod
    def _register_tile(
        sch, reduce, epilogue, tile, reduce_from, unrolled, lanes, counters=False, channel_constants=False
    ) -> None:
        """Accumulate ``reduce`` in a register tile under ``tile`` and emit the epilogue there, vectorized.

        ``counters``: ``reduce`` is a popcount kept in 16-bit counters (``lane_counts``), folded
        into counts by a copy of the tile that the epilogue reads (with ``channel_constants``,
        folded into runs of columns, ``_mark_counters``). ``channel_constants``: the
        epilogue's vectors run along a conv's columns, one channel per vector, and the tile's
        ``scale`` and ``bias`` are copied first by whole vectors: each channel's then is a lane
        (NEON's multiply-add by element), where its own load took an address computed per
        channel."""
        sch.parallel(tile)
        sch.set_scope(reduce, 0, "local")
        fold = None
        if counters:
            source = sch.get(reduce).writes[0].source
            index = next(i for i, r in enumerate(sch.get(epilogue).reads) if r.source.same_as(source))
            fold = sch.cache_read(epilogue, index, "local")
            sch.reverse_compute_at(fold, tile)
        sch.reverse_compute_at(epilogue, tile)
        for loop in unrolled:
            sch.unroll(loop)
        sch.vectorize(lanes)
        sch.decompose_reduction(reduce, reduce_from)
        inner = sch.get_loops(epilogue)[-1]
        if not sch.get(inner).same_as(sch.get(tile)):
            sch.vectorize(inner)
        if channel_constants:
            for name in ("scale", "bias"):
                index = next(i for i, r in enumerate(sch.get(epilogue).reads) if r.source.name == name)
                local = sch.cache_read(epilogue, index, "local")
                sch.compute_at(local, tile)
                (loop,) = _under(sch, local, tile)
                sch.vectorize(loop)
        if fold is not None:
            _mark_counters(sch, reduce, fold, tile, by_columns=channel_constants)
            # the epilogue unrolled too: it reads the folded counts where they are, in registers
            for loop in _under(sch, epilogue, tile)[:-1]:
                sch.unroll(loop)

    @staticmethod
    def _pack(sch, parallel_loops: int) -> None:
        """Sign-pack and padding of the input words, where the kernel has those stages and no
        parallel loop yet: parallel over leading loops."""
        for name in (stages.PACK, stages.PAD, stages.PACK_NONZERO, stages.PAD_NONZERO):
            if name in block_names(sch) and not _is_parallel(sch, sch.get_sblock(name)):
                loops = sch.get_loops(sch.get_sblock(name))
                sch.parallel(sch.fuse(*loops[:parallel_loops]))

    @staticmethod
    def _planes(sch, block) -> None:
        """Flat input planes: parallel over ``(n, plane)``, each padded row vectorized. Split
        at the plane shape, the flat index needs no division (16-lane chunks of the flat loop
        divide and gather per lane: 20x slower)."""
        rows, cols = (int(d) for d in sch.get(block).annotations[stages.PLANE_SHAPE])
        n, flat = sch.get_loops(block)
        plane, _, col = sch.split(flat, [None, rows, cols])
        sch.parallel(sch.fuse(n, plane))
        sch.vectorize(col)

    @staticmethod
    def _lookup_planes(sch, block) -> None:
        """Lookup planes: parallel over ``(n, channel group)``, the patterns unrolled inside each
        padded row (each pattern's select folds to its signed sum of the group's rows, which share
        their loads) and the row vectorized."""
        patterns, rows, cols = (int(d) for d in sch.get(block).annotations[stages.LUT_SHAPE])
        n, flat = sch.get_loops(block)
        group, pattern, row, col = sch.split(flat, [None, patterns, rows, cols])
        sch.reorder(row, pattern)
        sch.parallel(sch.fuse(n, group))
        sch.unroll(pattern)
        sch.vectorize(col)

    def _elementwise(self, sch, block) -> None:
        """Vectorized; parallel only from ``PARALLEL_MIN_ELEMENTS``: below, waking the thread pool
        costs more than the copy (a few microseconds per region, per call)."""
        fused = sch.fuse(*sch.get_loops(block))
        elements = extent(sch, fused)
        outer, inner = sch.split(fused, [None, self.float_lanes])
        if elements >= PARALLEL_MIN_ELEMENTS:
            sch.parallel(outer)
        sch.vectorize(inner)


def _block_parts(blocks: int, tiles: int) -> int:
    """Runs of output blocks a block-sparse gather splits each chunk's work into: one where the
    ``tiles`` chunks alone make ``SPARSE_TASKS`` tasks (each chunk's input then read once), else
    enough for ``SPARSE_TASKS`` and, where the blocks allow, a whole number of tasks per thread
    on 2 and 4 cores (every chunk holds the same entries, so tasks of one chunk and equal runs
    weigh the same)."""
    if tiles >= SPARSE_TASKS:
        return 1
    parts = ceil_div(SPARSE_TASKS, tiles)
    whole = next(p for p in range(parts, parts + THREADS_BALANCED) if p * tiles % THREADS_BALANCED == 0)
    return min(blocks, whole)


def _tasks(items: int) -> tuple[int, int]:
    """Parallel tasks of consecutive items (at most ``SPARSE_TASKS``) and the items of each."""
    parts = min(items, SPARSE_TASKS)
    return parts, ceil_div(items, parts)


def _put_vector(store: GatherStore, g: SparseGather, lanes: int, n, b, i: int, start, regs: tirx.Buffer, at) -> None:
    """Put one vector of sums, the flat outputs ``start...`` of output ``i`` of block ``b`` (from
    ``regs[at...]``): as a vector where all its lanes are outputs ``store`` takes, lane by lane in
    the vector that ends past them."""

    def put(lane):
        store.put(n, b, i, start + lane, regs[at + lane])

    if store.valid == g.outputs:
        with T.vectorized(0, lanes) as lane:
            put(lane)
        return
    with T.If(start + lanes <= store.valid):
        with T.Then(), T.vectorized(0, lanes) as lane:
            put(lane)
        with T.Else(), T.serial(0, lanes) as lane, T.If(start + lane < store.valid), T.Then():
            put(lane)


def _view(first: TensorLoad, extent: tirx.PrimExpr) -> tirx.Buffer:
    """A buffer of ``extent`` elements that starts at the element ``first`` loads."""
    dtype = first.source.dtype
    start = T.bind(T.address_of(first), tvm.ir.PointerType(tvm.ir.PrimType(dtype)))
    return T.decl_buffer((extent,), dtype, data=start)


def _weights_in_tile_order(sch: s_tir.Schedule, block: s_tir.schedule.SBlockRV, name: str, vectors: int) -> None:
    """Re-lay the packed conv weight ``name`` (``(P, kh, kw, Cw, 2, V)`` sign and mask words) for
    register tiles of ``vectors`` vectors: ``(P / vectors, kh, kw, Cw, vectors, 2, V)``, so one
    reduction step's words of a tile's vectors are contiguous and load in pairs (``ldp``) at
    small offsets, where vectors a channel's taps apart took a load each. The copy is a layout
    rewrite block (as TVM's ``RewriteLayout`` writes it) that ``build.relax_pipeline`` splits out
    and folds at compile time."""
    index = next(i for i, region in enumerate(sch.get(block).reads) if region.source.name == name)
    copy = sch.cache_read(block, index, "global")
    sch.transform_layout(
        block, ("read", index), lambda p, y, x, c, s, v: (p // vectors, y, x, c, p % vectors, s, v), pad_value=None
    )
    sch.annotate(copy, "meta_schedule.layout_rewrite_preproc", True)


def _mark_counters(sch, update, fold, tile, by_columns: bool = False) -> None:
    """Mark the popcount update's vector and the fold copy's runs of counts (``lane_counts.fold_words``,
    the copy's loops under ``tile`` unrolled) for ``lane_counts.expand``. The fold holds int32
    counts (below 2^16), the epilogue's own type: a uint64 fold made LLVM widen every count to
    64 bits and narrow it again on its way to the epilogue's vectors.

    ``by_columns``: the fold of a conv tile ``(n, oy, ox, o)`` whose epilogue's vectors run along
    its columns is laid out ``(n, oy, o, ox)`` and folds each vector's two words across the
    tile's columns (``lane_counts.FOLD_BY_COLUMNS``), where the tile has more than one column
    (with one, the columns' loop is gone)."""
    lane_counts.mark(sch, sch.get_loops(update)[-1], lane_counts.STEP)
    sch.unsafe_set_dtype(fold, 0, "int32")
    loops = _under(sch, fold, tile)
    if by_columns and len(loops) == 2:
        sch.transform_layout(fold, ("write", 0), lambda n, y, x, o: (n, y, o, x))
        columns, outputs = loops
        vectors, words = sch.split(outputs, [None, lane_counts.VECTOR_WORDS])
        sch.reorder(vectors, words, columns)
        sch.unroll(vectors)
        lane_counts.mark(sch, words, lane_counts.FOLD_BY_COLUMNS)
        return
    *outer, last = loops
    runs, inner = sch.split(last, [None, lane_counts.fold_words(extent(sch, last))])
    for loop in [*outer, runs]:
        sch.unroll(loop)
    lane_counts.mark(sch, inner, lane_counts.FOLD)


def _is_parallel(sch: s_tir.Schedule, block: s_tir.schedule.SBlockRV) -> bool:
    return any(sch.get(loop).kind == tirx.ForKind.PARALLEL for loop in sch.get_loops(block))


def _rows_of_vectors(sch, block, lanes: int) -> bool:
    """Whether ``block``'s (conv ``(n, oy, ox, o)``) neighbouring output columns read neighbouring
    inputs (``stages.COLUMN_STRIDE`` 1) and its rows are whole vectors of ``lanes``: vectors may run
    along the columns."""
    columns = extent(sch, sch.get_loops(block)[2])
    return int(sch.get(block).annotations[stages.COLUMN_STRIDE]) == 1 and columns % lanes == 0


def _row_chunk(height: int, rows: int, blocks: int) -> int:
    """Output rows per parallel task of a dense-ternary conv: whole tiles of ``rows``, as many per
    task as leave ``blocks`` channel blocks about ``TERNARY_CONV_TASKS`` tasks."""
    tiles = height // rows
    return divisor_at_most(tiles, ceil_div(tiles, ceil_div(TERNARY_CONV_TASKS, blocks))) * rows


def _under(sch, block, loop) -> list:
    """The loops of ``block`` inside ``loop``."""
    loops = sch.get_loops(block)
    return loops[next(i for i, at in enumerate(loops) if sch.get(at).same_as(sch.get(loop))) + 1 :]


def _phase_planes_at(sch: s_tir.Schedule, flat, task, reader=None) -> None:
    """A channel's stride-phase planes (``kernels.depthwise.phase_planes``) built in ``task``,
    whole where ``reader`` (the stage that reads them) would have TVM infer a part: the stride
    phases of each input row copied together, so its loads are contiguous runs."""
    sch.compute_at(flat, task)
    if reader is not None:
        _read_whole(sch, reader, stages.FLAT)
    shape = [int(v) for v in sch.get(flat).annotations[stages.PHASE_SHAPE]]
    py, px, row, col = sch.split(sch.get_loops(flat)[-1], shape)
    sch.reorder(py, row, col, px)
    sch.unroll(px)


def _read_whole(sch: s_tir.Schedule, block: s_tir.schedule.SBlockRV, name: str) -> None:
    """Declare that ``block`` reads all of intermediate ``name`` along its last dimension.

    TVM 0.27's ``Schedule.annotate_buffer_access`` checks the region's length against the
    block's iterators rather than the buffer's dimensions, so the annotation is built here."""
    stmt = sch.get(block)
    index = next(i for i, read in enumerate(stmt.reads) if read.source.name == name)
    region = stmt.reads[index].region
    iters = [iv.var for iv in stmt.iter_vars]
    bounds = [b for r in region[:-1] for b in (r.min, r.min + r.extent)]
    final = [*bounds, 0, stmt.reads[index].source.shape[-1]]
    schedule_api.ScheduleAnnotateBufferAccess(sch, block, index, 0, tirx.IndexMap(iters, final, None))


def block_names(sch: s_tir.Schedule) -> set[str]:
    """Names of the stages a kernel has (``kernels.stages``: each kernel only the ones it needs)."""
    return {sch.get(b).name_hint for b in sch.get_child_blocks(sch.get_sblock("root"))}
