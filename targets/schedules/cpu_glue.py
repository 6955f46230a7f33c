"""dlight-style CPU rules for the fp32 glue a compiled model needs around the binary kernels.

The default Relax CPU pipeline legalizes these ops and schedules nothing (naive single-thread
loops). ``s_tir.dlight.cpu`` has only GEMV and Reduction rules, so two rules are added, tried
first:

* :class:`TiledReduction` - one reduction block whose spatial axes lead (matmul / dense, conv2d,
  depthwise conv2d, max/avg pooling, reductions), with any injective epilogue fused by ``FuseOps``
  (bias, batch-norm folded into multiply-add, relu, clip, residual add). Register tile of
  ``rows x columns`` outputs: columns are the innermost spatial axis (vectorized); rows are the
  innermost other spatial axis that the vector-loaded operands do not depend on, so one loaded
  vector feeds every row (the batch rows of a matmul, the output channels of an NCHW conv). The
  reduction runs outside the tile, one parallel loop covers the tiles, the epilogue is applied
  while the tile is in registers. With no rows to reuse a vector (a batch-1 matmul), the tile
  becomes a panel of up to ``PANEL_COLUMNS`` outputs that streams each weight row contiguously
  instead. A zero-pad producer stays a separate parallel stage (inlined, its branch would sit in
  the inner loop).

  The tile shape is searched: 1 or ``TILE_VECTORS`` vectors per row, as many rows as the
  accumulator budget allows (24 of the 32 vector registers of AVX-512 and NEON, 8 of AVX2's
  16), every size dividing its extent (no predicate), so a 7x7 map takes a row of 7 pixels
  rather than one. A row is whole
  vectors or less than one (LLVM splits 28 lanes into 16 + 8 + 4 and spills the tile). Along
  output columns, the output rows of a conv add up to ``TILE_GROUPS`` vector groups, each fed by
  the same broadcast weight (the 3-channel stem, whose channels alone leave loads and FMAs even).

  The vector axis is the innermost spatial one (output columns), unless an outer one fills more
  lanes and only constant weights are read along it: a conv on a map narrower than a vector (or
  not a whole number of them: 4, 7, 8, 14 columns) takes its vectors along the output channels,
  the weight re-laid with them innermost, and its rows from a 2-D block of output pixels, each a
  broadcast input value: on 4x4-14x14 maps the columns fill a fraction of the lanes, the output
  channels all of them (measured: docs/performance.md). A pointwise (1x1, stride 1, unpadded)
  conv iterates over flat pixels ``h * W + w`` instead, contiguous in its input and output, so
  a 56-wide map still gives whole vectors (a GEMM over pixels).

  A strided window (stride-2 conv, depthwise conv or pool) reads its padded input with a stride
  along the vector axis; the pad stage stores it by stride phase (``[..., w % s, w // s]``) so
  those loads are contiguous, copying pairs that LLVM vectorizes as wide loads and shuffles. For
  a depthwise conv or pool (no input-channel sum) the padded window is produced inside each tile,
  where it stays in L1. A stride-1 one loads a new input vector for every tap of every row: its
  tile is a few rows of any width (``TILE_ACCUMULATORS`` vectors, 4 rows of 28 columns).

  Constant weights are re-laid in the order the tiles read them: TVM's ``RewriteLayout``
  postprocessor (the one MetaSchedule uses) turns the tiled loop nest into a layout-rewrite
  block, which ``build.relax_pipeline`` splits out and folds at compile time. A matmul's weight
  ``(K, N)`` becomes column panels ``(N / cols, K, cols)`` read contiguously; and when the
  vector-loaded operand is such a weight, the column panels are the outer parallel loop, so each
  panel is read from memory once for all row tiles instead of once per row tile, within each
  image of a batch (the images outermost: every panel re-reads one image's input from cache
  rather than the whole batch's from memory; measured: docs/performance.md). Otherwise the row
  tiles are the innermost parallel iterations, so consecutive tiles reuse one vector-loaded
  input block from L1.
  A kernel's weights decoded from their packed form (a producer named ``stages.DECODE``) are
  a parallel stage of their own, written per call in the layout the kernel chose (``(C, K)``,
  so a tile's row weights and a vector of output channels are contiguous), and read as weights.
* :class:`Injective` - elementwise / layout functions: everything inlined into the last block,
  whose loops are fused, split into vector chunks, and the chunks run in parallel.
"""

from __future__ import annotations

import numpy as np
from tvm import s_tir, sym, tirx
from tvm.s_tir import dlight as dl
from tvm.s_tir.dlight.analysis import normalize_prim_func
from tvm.s_tir.dlight.analysis.common_analysis import collect_vars_used_in_prim_expr
from tvm.s_tir.dlight.base import try_inline
from tvm.s_tir.meta_schedule.postproc import RewriteLayout
from tvm.target import Target

from mptc.targets.kernels import stages
from mptc.targets.schedules.loops import divisor_at_most, extent

TILE_VECTORS = 2  # vectors per register-tile row (innermost spatial axis)
TILE_ACCUMULATORS = 8  # rows x vectors kept in AVX2's 16 vector registers, and by stride-1 windows
TILE_ACCUMULATORS_WIDE = 24  # of 32 vector registers (AVX-512, NEON): operands (vectors + a broadcast) take the rest
TILE_GROUPS = 4  # vector groups of a tile along a second axis (output rows of a conv on wide maps)
PANEL_COLUMNS = 1024  # batch-1 matmul: outputs per thread panel (4 KiB of accumulators, stays in L1)
PANEL_TASKS = 4  # batch-1 matmul: panels narrow enough that a few cores share the columns


class _VectorRule(dl.cpu.base.CPUScheduleRule):
    """A CPU rule that vectorizes ``float_lanes`` fp32 values at a time."""

    def __init__(self, float_lanes: int):
        self.float_lanes = float_lanes

    def _applicable(self, func: tirx.PrimFunc, target: Target) -> bool:
        """Whether ``func`` is a PrimFunc for a target this rule schedules."""
        return isinstance(func, tirx.PrimFunc) and self.is_target_available(target)

    @staticmethod
    def _normalized(func: tirx.PrimFunc):
        """``(schedule, block infos)`` of ``func``, or None when its blocks cannot be normalized."""
        sch = s_tir.Schedule(func)
        infos = normalize_prim_func(sch)
        return None if infos is None else (sch, infos)

    def _parallel_vector_chunks(self, sch: s_tir.Schedule, block) -> None:
        """``block``'s loops fused and split into vectors of ``float_lanes``, the chunks in
        parallel; a block of one vector or less is left as it is."""
        loops = sch.get_loops(block)
        if not loops:
            return
        fused = sch.fuse(*loops)
        if extent(sch, fused) <= self.float_lanes:
            return
        outer, inner = sch.split(fused, [None, self.float_lanes])
        sch.parallel(outer)
        sch.vectorize(inner)


class TiledReduction(_VectorRule):
    """Register-tiled schedule of one leading-spatial reduction block plus its fused epilogue."""

    def __init__(self, float_lanes: int, registers: int, weight_vectors: bool = False):
        super().__init__(float_lanes)
        self.registers = registers
        self.weight_vectors = weight_vectors

    def apply(self, func: tirx.PrimFunc, target: Target, _: bool) -> s_tir.Schedule | None:
        return self.schedule(func) if self._applicable(func, target) else None

    def schedule(self, func: tirx.PrimFunc) -> s_tir.Schedule | None:
        """The schedule of ``func`` (see the class), or None when it has another shape. A
        producer named ``stages.DECODE`` (a kernel's packed weights decoded to fp32,
        ``kernels.dense_ternary.pointwise_ternary_func``) stays a parallel stage of its own, like
        a pad, and the tiles read its output as a weight."""
        normalized = self._normalized(func)
        if normalized is None:
            return None
        sch, infos = normalized
        reductions = [i for i, info in enumerate(infos) if info.is_reduction()]
        if len(reductions) != 1:
            return None
        main = infos[reductions[0]]
        kinds = main.dom_kind()
        spatial = len(kinds) - len(kinds.lstrip("S"))
        if spatial == 0 or set(kinds[spatial:]) != {"R"}:
            return None
        if not all(info.is_injective() for info in infos if info is not main):
            return None
        pads = [info.block_rv for info in infos[: reductions[0]] if info.is_data_pad(sch)]
        decoded = [
            info.block_rv for info in infos[: reductions[0]] if sch.get(info.block_rv).name_hint == stages.DECODE
        ]
        for info in infos[: reductions[0]]:
            if info.block_rv not in pads and info.block_rv not in decoded:
                sch.compute_inline(info.block_rv)
        writeback = sch.cache_write(main.block_rv, 0, "local")
        for info in infos[reductions[0] + 1 :]:
            sch.reverse_compute_inline(info.block_rv)
        weights = [func.params[i] for i in (func.attrs or {}).get("layout_free_buffers", [])]
        weights += [sch.get(block).writes[0].source for block in decoded]
        if not pads and _flatten_pixels(sch, main.block_rv, writeback, spatial):
            spatial -= 1
        axis = self._vector_axis(sch, main.block_rv, spatial, weights)
        phased = [pad for pad in pads if axis == spatial - 1 and _deinterleave(sch, pad, main.block_rv, axis)]
        column_reads = _column_reads(sch.get(main.block_rv), axis)
        weight_columns = any(_is_weight(read, weights) for read, _ in column_reads)
        windowed = [pad for pad in pads if _windowed(sch, pad, main.block_rv, spatial)]
        window = any(pad not in phased for pad in windowed)  # a stride-1 depthwise conv or pool
        # a window (depthwise conv, pool) has no row of outputs sharing an input: no row weights
        row_weights = weights if self.weight_vectors and not weight_columns and not windowed else ()
        tile = self._tile(
            sch, main.block_rv, writeback, spatial, axis, column_reads, weight_columns, window, row_weights
        )
        weighted = any(_is_weight(read, weights) for read in sch.get(main.block_rv).reads)
        wide = 2 * _tile_columns(sch, main.block_rv) >= self.float_lanes
        for pad in pads:
            if tile is not None and pad in phased and pad in windowed and weighted and wide:
                # a strided depthwise conv reads a small window of the padded input per tile:
                # re-laid there, it stays in L1 instead of taking a pass over memory. A pool
                # (no multiply per tap), a tile narrower than half a vector, or a stride-1
                # window does too little per window element to pay the per-tile copy.
                sch.compute_at(pad, tile)
                _phases_innermost(sch, pad)
            elif pad in phased:
                _phases_innermost(sch, pad)
                sch.parallel(sch.fuse(*sch.get_loops(pad)[:-2]))
            else:
                self._parallel_vectorized(sch, pad)
        for block in decoded:
            self._parallel_vector_chunks(sch, block)
        RewriteLayout().apply(sch)
        return sch

    @staticmethod
    def _row_weights_as_vectors(sch: s_tir.Schedule, block, step, weights) -> None:
        """The tile rows' weights of one reduction step copied to a local buffer by whole vectors
        (contiguous once ``RewriteLayout`` lays the weight out in the tiles' order): LLVM keeps
        the buffer in registers and NEON's FMLA takes each weight as a lane of it (by element),
        where it loaded them one or two scalars at a time."""
        for index, read in enumerate(sch.get(block).reads):
            if _is_weight(read, weights):
                cached = sch.cache_read(block, index, "local")
                sch.compute_at(cached, step)
                sch.vectorize(sch.get_loops(cached)[-1])
                return

    def _vector_axis(self, sch: s_tir.Schedule, block, spatial: int, weights) -> int:
        """The spatial axis whose outputs share vector lanes: the innermost, unless another one
        fills more lanes and only layout-free weights are read along it (re-laid contiguous)."""
        stmt = sch.get(block)
        loops = sch.get_loops(block)

        def lane_use(axis: int) -> float:
            cols = self._vector_cols(extent(sch, loops[axis]))
            return cols / (-(-cols // self.float_lanes) * self.float_lanes)

        def weights_only(axis: int) -> bool:
            reads = _column_reads(stmt, axis)
            return bool(reads) and all(_is_weight(read, weights) for read, _ in reads)

        candidates = [axis for axis in range(spatial - 1) if weights_only(axis)]
        return max(candidates + [spatial - 1], key=lambda axis: (lane_use(axis), axis))

    def _vector_cols(self, size: int) -> int:
        """Columns of a register tile along an axis of ``size``: up to ``TILE_VECTORS`` vectors."""
        return whole_columns(size, TILE_VECTORS * self.float_lanes, self.float_lanes)

    def _tile(
        self,
        sch: s_tir.Schedule,
        block,
        writeback,
        spatial: int,
        axis: int,
        column_reads,
        weight_columns: bool,
        window: bool = False,
        row_weights=(),
    ):
        """Register tiles of ``rows x columns``; the column panels outermost when ``weight_columns``.
        With the vectors along an outer axis, the rows tile the two innermost free axes (a 2-D
        block of output pixels) so a small map still fills the tile. ``row_weights``: the weights
        whose tile rows load as vectors (``_row_weights_as_vectors``)."""
        loops = sch.get_loops(block)
        outer, reduce, cols = (
            [loop for i, loop in enumerate(loops[:spatial]) if i != axis],
            loops[spatial:],
            loops[axis],
        )
        free = self._free_axes(sch, block, spatial, axis, column_reads)
        rows = free[-1] if free else (spatial - 2 if spatial > 1 else None)  # innermost free axis
        if rows is None or extent(sch, outer[rows]) == 1:
            self._panel(sch, block, writeback, outer, cols, reduce)
            return None
        row_axes = [rows]
        if axis != spatial - 1:
            # the next outer free axis joins the rows when its loop is adjacent (the vector axis not between)
            if rows > 0 and rows != axis and rows - 1 in free:
                row_axes.insert(0, rows - 1)
            # the register tile keeps the vector axis innermost, as its lanes
            lanes = _write_dim(sch.get(block), axis)
            sch.transform_layout(
                block, ("write", 0), lambda *index: [*index[:lanes], *index[lanes + 1 :], index[lanes]]
            )
        # along output columns, the next outer axis (output rows of a conv) can add vector groups:
        # each broadcast weight then feeds that many vectors
        group = spatial - 2 if axis == spatial - 1 and rows != spatial - 2 and spatial - 2 not in free else None
        groups = extent(sch, outer[group]) if group is not None else 1
        vector_cols, row_sizes, group_size = self._tile_shape(
            extent(sch, cols), [extent(sch, outer[i]) for i in row_axes], groups, window
        )
        co, ci = sch.split(cols, [None, vector_cols])
        inner = []
        if group is not None and group_size > 1:
            outer[group], part = sch.split(outer[group], [None, group_size])
            inner.append(part)
        for i, size in zip(row_axes, row_sizes, strict=True):
            outer[i], part = sch.split(outer[i], [None, size])
            inner.append(part)
        if weight_columns:
            # each column panel read once for all its row tiles, but within one image of a batch:
            # every panel then re-reads that image's input from cache, not the batch from memory
            images = 1 if axis != 0 and 0 not in row_axes and extent(sch, outer[0]) > 1 else 0
            order = [*outer[:images], co, *outer[images:]]
        else:
            # the row tiles innermost: consecutive tiles share their vector-loaded input block
            order = [*(loop for i, loop in enumerate(outer) if i not in row_axes), co, *(outer[i] for i in row_axes)]
        sch.reorder(*order, *reduce, *inner, ci)
        if row_weights:
            self._row_weights_as_vectors(sch, block, reduce[-1], row_weights)
        tile = sch.fuse(*order)
        sch.parallel(tile)
        sch.reverse_compute_at(writeback, tile)
        sch.vectorize(ci)
        for part in inner:
            sch.unroll(part)
        sch.decompose_reduction(block, reduce[0])
        self._vectorize_innermost(sch, writeback, tile)
        return tile

    def _tile_shape(
        self, columns: int, row_extents: list[int], groups: int = 1, window: bool = False
    ) -> tuple[int, list[int], int]:
        """``(columns, rows per row axis, vector groups)`` of the register tile with the most
        outputs whose accumulators fit the register budget, then the fewest loads per FMA; every
        size divides its extent (no predicate). Trying 1 to ``TILE_VECTORS`` vectors per row lets
        a prime row extent (a 7x7 map) take all its rows instead of one. ``groups``: the extent of
        an axis whose outputs need their own vector loads (up to ``TILE_GROUPS`` of them).
        ``window``: a stride-1 depthwise conv or pool, which loads a new input vector for every
        tap of every row: its rows take any width up to ``TILE_VECTORS`` vectors (28 = 16 + 8 +
        4 lanes), and only ``TILE_ACCUMULATORS`` vectors of them, or the tile spills."""
        best: tuple[int, int, int, list[int], int] | None = None
        for vectors in range(TILE_VECTORS, 0, -1):
            if window:
                cols = divisor_at_most(columns, TILE_VECTORS * self.float_lanes)
            else:
                cols = whole_columns(columns, vectors * self.float_lanes, self.float_lanes)
            width = -(-cols // self.float_lanes)
            for group in (g for g in range(1, min(groups, TILE_GROUPS) + 1) if groups % g == 0):
                left = (TILE_ACCUMULATORS if window else self.accumulators) // (width * group)
                if left < 1 and group > 1:
                    continue
                left = max(1, left)
                sizes: list[int] = []
                for size in reversed(row_extents):
                    sizes.insert(0, divisor_at_most(size, left))
                    left //= sizes[0]
                rows = int(np.prod(sizes))
                key = (cols * group * rows, -(width * group + rows))
                if best is None or key > best[:2]:
                    best = (key[0], key[1], cols, sizes, group)
        assert best is not None
        return best[2], best[3], best[4]

    @property
    def accumulators(self) -> int:
        """Register-tile accumulators: AVX-512 and NEON have 32 vector registers, AVX2 16."""
        return TILE_ACCUMULATORS_WIDE if self.registers >= 32 else TILE_ACCUMULATORS

    def _panel(self, sch: s_tir.Schedule, block, writeback, outer, cols, reduce) -> None:
        """Batch-1 matmul: each thread streams weight rows into a panel of accumulators."""
        panel = divisor_at_most(
            extent(sch, cols), min(PANEL_COLUMNS, max(self.float_lanes, extent(sch, cols) // PANEL_TASKS))
        )
        vector = divisor_at_most(panel, self.float_lanes)
        co, cm, cv = sch.split(cols, [None, panel // vector, vector])
        sch.reorder(*outer, co, *reduce, cm, cv)
        tile = sch.fuse(*outer, co)
        sch.parallel(tile)
        sch.reverse_compute_at(writeback, tile)
        sch.vectorize(cv)
        sch.decompose_reduction(block, reduce[0])
        self._vectorize_innermost(sch, writeback, tile)

    @staticmethod
    def _free_axes(sch: s_tir.Schedule, block, spatial: int, axis: int, column_reads) -> list[int]:
        """Positions among the non-vector spatial axes that no vector-loaded operand depends on."""
        iters = [iv.var for i, iv in enumerate(sch.get(block).iter_vars[:spatial]) if i != axis]
        used = set().union(*(found for _, found in column_reads))
        return [i for i, var in enumerate(iters) if var not in used]

    def _vectorize_innermost(self, sch: s_tir.Schedule, block, tile) -> None:
        last = sch.get_loops(block)[-1]
        if sch.get(last).same_as(sch.get(tile)):
            return
        if extent(sch, last) > self.float_lanes:
            last = sch.split(last, [None, divisor_at_most(extent(sch, last), self.float_lanes)])[1]
        sch.vectorize(last)

    def _parallel_vectorized(self, sch: s_tir.Schedule, block) -> None:
        loops = sch.get_loops(block)
        if len(loops) > 1:
            sch.parallel(sch.fuse(*loops[:-1]))
        if extent(sch, loops[-1]) > 1:
            sch.vectorize(loops[-1])


def _flatten_pixels(sch: s_tir.Schedule, block, writeback, spatial: int) -> bool:
    """Iterate a pointwise (1x1, stride 1) conv over flat pixels ``h * W + w``: every operand
    indexed by the two innermost spatial axes holds them as its two innermost dimensions, whole,
    so the flat pixels are contiguous and a tile row is whole vectors even when ``W`` is not (56).
    Returns whether it did."""
    if spatial < 3:
        return False
    stmt = sch.get(block)
    h, w = (iv.var for iv in stmt.iter_vars[spatial - 2 : spatial])
    sizes = [int(iv.dom.extent) for iv in stmt.iter_vars[spatial - 2 : spatial]]
    for access in [*stmt.reads, *stmt.writes]:
        dims = [collect_vars_used_in_prim_expr(r.min) for r in access.region]
        if not any(found & {h, w} for found in dims):
            continue
        tail = [r.min for r in access.region[-2:]]
        shape = [int(d) for d in access.source.shape[-2:]]
        if not (tail[0].same_as(h) and tail[1].same_as(w) and shape == sizes):
            return False
        if any(found & {h, w} for found in dims[:-2]):
            return False
    width = sizes[1]

    def flat(ndim: int, at: int) -> tirx.IndexMap:
        return tirx.IndexMap.from_func(lambda *i: [*i[:at], i[at] * width + i[at + 1], *i[at + 2 :]], ndim=ndim)

    local = stmt.writes[0].source
    sch.transform_layout(block, ("write", 0), flat(len(local.shape), len(local.shape) - 2))
    sch.transform_block_layout(block, flat(len(stmt.iter_vars), spatial - 2))
    sch.transform_block_layout(
        writeback, flat(len(sch.get(writeback).iter_vars), len(sch.get(writeback).iter_vars) - 2)
    )
    return True


def whole_columns(size: int, cap: int, lanes: int) -> int:
    """The widest tile row of up to ``cap`` outputs along an axis of ``size`` that divides it and
    is whole vectors of ``lanes`` or less than one: LLVM splits other widths (28 = 16 + 8 + 4)
    into pieces, and a tile of many such rows spills to the stack."""
    return max(c for c in range(1, min(size, cap) + 1) if size % c == 0 and (c % lanes == 0 or c < lanes))


def _windowed(sch: s_tir.Schedule, pad, block, spatial: int) -> bool:
    """Whether ``block`` reads the padded buffer of ``pad`` only through a window that slides with
    the outputs: every reduction axis of the read indexes some dimension together with a spatial
    axis (the taps of a depthwise conv or a pool; not the input channels a full conv sums)."""
    buffer = sch.get(pad).writes[0].source
    stmt = sch.get(block)
    spatial_vars = {iv.var for iv in stmt.iter_vars[:spatial]}
    reduce_vars = {iv.var for iv in stmt.iter_vars[spatial:]}
    for read in stmt.reads:
        if read.source.same_as(buffer):
            dims = [collect_vars_used_in_prim_expr(r.min) for r in read.region]
            sliding = set().union(*(found for found in dims if found & spatial_vars))
            if (set().union(*dims) & reduce_vars) - sliding:
                return False
    return True


def _deinterleave(sch: s_tir.Schedule, pad, block, axis: int) -> bool:
    """Store the padded input with each stride phase of its last dimension contiguous
    (``[..., w % s, w // s]``) when ``block`` reads it with stride ``s`` along the vector axis: the
    vector loads of a strided conv or pool are then contiguous instead of gathers. Returns
    whether it did."""
    buffer = sch.get(pad).writes[0].source
    stmt = sch.get(block)
    column = stmt.iter_vars[axis].var
    reads = [read for read in stmt.reads if read.source.same_as(buffer)]
    if len(reads) != 1:
        return False
    coefficients = sym.detect_linear_equation(reads[0].region[-1].min, [column])
    if len(coefficients) != 2 or not isinstance(coefficients[0], tirx.IntImm):
        return False
    stride, width = int(coefficients[0]), int(buffer.shape[-1])
    if stride < 2 or width % stride:
        return False

    def phases(ndim: int) -> tirx.IndexMap:
        return tirx.IndexMap.from_func(lambda *index: [*index[:-1], index[-1] % stride, index[-1] // stride], ndim=ndim)

    sch.transform_layout(pad, ("write", 0), phases(len(buffer.shape)))
    # the pad block iterates in the new order too, so its stores stay contiguous
    sch.transform_block_layout(pad, phases(len(sch.get(pad).iter_vars)))
    return True


def _tile_columns(sch: s_tir.Schedule, block) -> int:
    """Lanes of the block's vectorized loop (the columns of its register tile)."""
    vectorized = [loop for loop in sch.get_loops(block) if sch.get(loop).kind == tirx.ForKind.VECTORIZED]
    return extent(sch, vectorized[-1]) if vectorized else 1


def _phases_innermost(sch: s_tir.Schedule, pad) -> None:
    """The de-interleaving copy of ``pad`` stores the stride phases of each input position
    together (phase loop innermost, unrolled): its loads are then contiguous pairs, which LLVM's
    loop vectorizer turns into wide loads and shuffles (TVM's own vectorizer would gather)."""
    *_, phase, column = sch.get_loops(pad)
    sch.reorder(column, phase)
    sch.unroll(phase)


def _column_reads(stmt, axis: int) -> list:
    """``(read, vars its region uses)`` of the reads indexed by spatial axis ``axis``: the operands
    a tile loads as vectors."""
    column = stmt.iter_vars[axis].var
    reads = [(read, set().union(*(collect_vars_used_in_prim_expr(r.min) for r in read.region))) for read in stmt.reads]
    return [(read, found) for read, found in reads if column in found]


def _is_weight(read, weights) -> bool:
    """Whether ``read`` loads one of the ``weights``: layout-free (constant) or decoded ones."""
    return any(read.source.same_as(w) for w in weights)


def _write_dim(stmt, axis: int) -> int:
    """The dimension of the block's output that spatial axis ``axis`` indexes."""
    var = stmt.iter_vars[axis].var
    return next(dim for dim, r in enumerate(stmt.writes[0].region) if var in collect_vars_used_in_prim_expr(r.min))


class Injective(_VectorRule):
    """All blocks injective: inline into the last one, fuse, vectorize chunks, parallel over chunks."""

    def apply(self, func: tirx.PrimFunc, target: Target, _: bool) -> s_tir.Schedule | None:
        normalized = self._normalized(func) if self._applicable(func, target) else None
        if normalized is None or not all(info.is_injective() for info in normalized[1]):
            return None
        sch, infos = normalized
        for info in try_inline(sch, infos):
            self._parallel_vector_chunks(sch, info.block_rv)
        return sch


def glue_rules(float_lanes: int, registers: int, weight_vectors: bool = False) -> list[dl.ScheduleRule]:
    """Our rules first, then dlight's CPU rules for what they cover (softmax-like reductions);
    ``registers``: the target's vector registers, which bound a register tile; ``weight_vectors``:
    the FMA takes a lane of a vector as its broadcast operand (NEON's by-element FMLA), so a
    tile's row weights load as vectors."""
    return [
        TiledReduction(float_lanes, registers, weight_vectors),
        Injective(float_lanes),
        dl.cpu.GEMV(),
        dl.cpu.Reduction(),
    ]
