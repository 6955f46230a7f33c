"""dlight-style CPU rules for the fp32 glue a compiled model needs around the binary kernels.

The default Relax CPU pipeline legalizes these ops and schedules nothing (naive single-thread
loops). ``s_tir.dlight.cpu`` has only GEMV and Reduction rules, so two rules are added, tried
first:

* :class:`TiledReduction` - one reduction block whose spatial axes lead (matmul / dense, conv2d,
  max/avg pooling, reductions), with any injective epilogue fused by ``FuseOps`` (bias, batch-norm
  folded into multiply-add, relu, residual add). Register tile of ``rows x columns`` outputs:
  columns are the innermost spatial axis (vectorized); rows are the innermost other spatial axis
  that the vector-loaded operands do not depend on, so one loaded vector feeds every row (the
  batch rows of a matmul, the output channels of an NCHW conv). The reduction runs outside the
  tile, one parallel loop covers the tiles, the epilogue is applied while the tile is in
  registers. With no rows to reuse a vector (a batch-1 matmul), the tile becomes a panel of up to
  ``PANEL_COLUMNS`` outputs that streams each weight row contiguously instead. A zero-pad
  producer stays a separate parallel stage (inlined, its branch would sit in the inner loop).

  The vector axis is the innermost spatial one (output columns), unless an outer one fills more
  lanes and only constant weights are read along it: a conv on a map narrower than a vector (or
  not a whole number of them: 4, 7, 8, 14 columns) takes its vectors along the output channels,
  the weight re-laid with them innermost, and its rows from a 2-D block of output pixels, each a
  broadcast input value: on 4x4-14x14 maps the columns fill a fraction of the lanes, the output
  channels all of them (measured: docs/performance.md).

  Constant weights are re-laid in the order the tiles read them: TVM's ``RewriteLayout``
  postprocessor (the one MetaSchedule uses) turns the tiled loop nest into a layout-rewrite
  block, which ``build.relax_pipeline`` splits out and folds at compile time. A matmul's weight
  ``(K, N)`` becomes column panels ``(N / cols, K, cols)`` read contiguously; and when the
  vector-loaded operand is such a weight, the column panels are the outer parallel loop, so each
  panel is read from memory once for all row tiles instead of once per row tile (measured:
  docs/performance.md).
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

from mptc.targets.schedules.cpu import divisor_at_most, extent

TILE_VECTORS = 2  # vectors per register-tile row (innermost spatial axis)
TILE_ACCUMULATORS = 8  # rows x vectors kept in registers; leaves room for operands in 16 (AVX2/NEON: 32) registers
TILE_ACCUMULATORS_AVX512 = 24  # the same with 32 registers: operands (vectors + a broadcast) take the rest
PANEL_COLUMNS = 1024  # batch-1 matmul: outputs per thread panel (4 KiB of accumulators, stays in L1)
PANEL_TASKS = 4  # batch-1 matmul: panels narrow enough that a few cores share the columns


class _VectorRule(dl.cpu.base.CPUScheduleRule):
    """A CPU rule that vectorizes ``float_lanes`` fp32 values at a time."""

    def __init__(self, float_lanes: int):
        self.float_lanes = float_lanes

    def _normalized(self, func: tirx.PrimFunc, target: Target):
        """``(schedule, block infos)`` of ``func``, or None when the rule cannot apply."""
        if not isinstance(func, tirx.PrimFunc) or not self.is_target_available(target):
            return None
        sch = s_tir.Schedule(func)
        infos = normalize_prim_func(sch)
        return None if infos is None else (sch, infos)


class TiledReduction(_VectorRule):
    """Register-tiled schedule of one leading-spatial reduction block plus its fused epilogue."""

    def apply(self, func: tirx.PrimFunc, target: Target, _: bool) -> s_tir.Schedule | None:
        normalized = self._normalized(func, target)
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
        for info in infos[: reductions[0]]:
            if info.block_rv not in pads:
                sch.compute_inline(info.block_rv)
        writeback = sch.cache_write(main.block_rv, 0, "local")
        for info in infos[reductions[0] + 1 :]:
            sch.reverse_compute_inline(info.block_rv)
        weights = [func.params[i] for i in (func.attrs or {}).get("layout_free_buffers", [])]
        axis = self._vector_axis(sch, main.block_rv, spatial, weights)
        if axis == spatial - 1 and not __import__("os").environ.get("NODEINT"):
            for pad in pads:
                _deinterleave(sch, pad, main.block_rv, axis)
        column_reads = _column_reads(sch.get(main.block_rv), axis)
        weight_columns = any(_is_weight(read, weights) for read, _ in column_reads)
        tile = self._tile(sch, main.block_rv, writeback, spatial, axis, column_reads, weight_columns)
        for pad in pads:
            if tile is not None and _windowed(sch, pad, main.block_rv, spatial):
                # a depthwise conv or a pool reads a small window of the padded input per tile:
                # padded there, it stays in L1 instead of taking a pass over memory
                sch.compute_at(pad, tile)
                self._vectorize_innermost(sch, pad, tile)
            else:
                self._parallel_vectorized(sch, pad)
        RewriteLayout().apply(sch)
        return sch

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
        return self._columns(size, TILE_VECTORS * self.float_lanes)

    def _columns(self, size: int, cap: int) -> int:
        """The widest tile row up to ``cap`` lanes that divides ``size`` and is whole vectors or a
        power of two: LLVM breaks other widths (28, 14) into scalar pieces spilled to the stack."""
        return max(c for c in range(1, min(size, cap) + 1) if size % c == 0 and self._whole(c))

    def _whole(self, cols: int) -> bool:
        return cols % self.float_lanes == 0 or cols < self.float_lanes

    def _tile(self, sch: s_tir.Schedule, block, writeback, spatial: int, axis: int, column_reads, weight_columns: bool):
        """Register tiles of ``rows x columns``; the column panels outermost when ``weight_columns``.
        With the vectors along an outer axis, the rows tile the two innermost free axes (a 2-D
        block of output pixels) so a small map still fills the tile."""
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
        vector_cols, row_sizes = self._tile_shape(extent(sch, cols), [extent(sch, outer[i]) for i in row_axes])
        co, ci = sch.split(cols, [None, vector_cols])
        inner = []
        for i, size in zip(row_axes, row_sizes, strict=True):
            outer[i], part = sch.split(outer[i], [None, size])
            inner.append(part)
        order = [co, *outer] if weight_columns else [*outer, co]
        sch.reorder(*order, *reduce, *inner, ci)
        if len(reduce) > 1 and extent(sch, reduce[-1]) <= 8 and __import__("os").environ.get("UNR"):
            sch.unroll(reduce[-1])  # kernel taps: their offsets fold into the addresses
        tile = sch.fuse(*order)
        sch.parallel(tile)
        sch.reverse_compute_at(writeback, tile)
        sch.vectorize(ci)
        for part in inner:
            sch.unroll(part)
        sch.decompose_reduction(block, reduce[0])
        self._vectorize_innermost(sch, writeback, tile)
        return tile

    def _tile_shape(self, columns: int, row_extents: list[int]) -> tuple[int, list[int]]:
        """``(columns, rows per row axis)`` of the register tile with the most outputs whose
        accumulators fit the register budget; every size divides its extent (no predicate).
        Trying 1 to ``TILE_VECTORS`` vectors per row lets a prime row extent (a 7x7 map) take
        all its rows instead of one."""
        budget = self.accumulators
        best: tuple[int, int, list[int]] | None = None
        for vectors in range(TILE_VECTORS, 0, -1):  # ties: more vectors, fewer broadcasts per FMA
            cols = self._columns(columns, vectors * self.float_lanes)
            left = max(1, budget // -(-cols // self.float_lanes))
            sizes = []
            for size in reversed(row_extents):
                sizes.insert(0, divisor_at_most(size, left))
                left //= sizes[0]
            outputs = cols * int(np.prod(sizes))
            if best is None or outputs > best[0]:
                best = (outputs, cols, sizes)
        assert best is not None
        return best[1], best[2]

    @property
    def accumulators(self) -> int:
        """Register-tile accumulators: AVX-512 (16 lanes) has 32 vector registers, AVX2 16."""
        return TILE_ACCUMULATORS_AVX512 if self.float_lanes >= 16 else TILE_ACCUMULATORS

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


def _deinterleave(sch: s_tir.Schedule, pad, block, axis: int) -> None:
    """Store the padded input with each stride phase of its last dimension contiguous
    (``[..., w % s, w // s]``) when ``block`` reads it with stride ``s`` along the vector axis: the
    vector loads of a strided conv or pool are then contiguous instead of gathers."""
    buffer = sch.get(pad).writes[0].source
    stmt = sch.get(block)
    column = stmt.iter_vars[axis].var
    reads = [read for read in stmt.reads if read.source.same_as(buffer)]
    if len(reads) != 1:
        return
    coefficients = sym.detect_linear_equation(reads[0].region[-1].min, [column])
    if len(coefficients) != 2 or not isinstance(coefficients[0], tirx.IntImm):
        return
    stride, width = int(coefficients[0]), int(buffer.shape[-1])
    if stride < 2 or width % stride:
        return

    def phases(ndim: int) -> tirx.IndexMap:
        return tirx.IndexMap.from_func(lambda *index: [*index[:-1], index[-1] % stride, index[-1] // stride], ndim=ndim)

    sch.transform_layout(pad, ("write", 0), phases(len(buffer.shape)))
    # the pad block iterates in the new order too, so its stores stay contiguous
    sch.transform_block_layout(pad, phases(len(sch.get(pad).iter_vars)))


def _column_reads(stmt, axis: int) -> list:
    """``(read, vars its region uses)`` of the reads indexed by spatial axis ``axis``: the operands
    a tile loads as vectors."""
    column = stmt.iter_vars[axis].var
    reads = [(read, set().union(*(collect_vars_used_in_prim_expr(r.min) for r in read.region))) for read in stmt.reads]
    return [(read, found) for read, found in reads if column in found]


def _is_weight(read, weights) -> bool:
    """Whether ``read`` loads one of the layout-free (constant) ``weights``."""
    return any(read.source.same_as(w) for w in weights)


def _write_dim(stmt, axis: int) -> int:
    """The dimension of the block's output that spatial axis ``axis`` indexes."""
    var = stmt.iter_vars[axis].var
    return next(dim for dim, r in enumerate(stmt.writes[0].region) if var in collect_vars_used_in_prim_expr(r.min))


class Injective(_VectorRule):
    """All blocks injective: inline into the last one, fuse, vectorize chunks, parallel over chunks."""

    def apply(self, func: tirx.PrimFunc, target: Target, _: bool) -> s_tir.Schedule | None:
        normalized = self._normalized(func, target)
        if normalized is None or not all(info.is_injective() for info in normalized[1]):
            return None
        sch, infos = normalized
        infos = try_inline(sch, infos)
        for info in infos:
            loops = sch.get_loops(info.block_rv)
            if not loops:
                continue
            fused = sch.fuse(*loops)
            size = extent(sch, fused)
            if size <= self.float_lanes:
                continue
            outer, inner = sch.split(fused, [None, self.float_lanes])
            sch.parallel(outer)
            sch.vectorize(inner)
        return sch


def glue_rules(float_lanes: int) -> list[dl.ScheduleRule]:
    """Our rules first, then dlight's CPU rules for what they cover (softmax-like reductions)."""
    return [TiledReduction(float_lanes), Injective(float_lanes), dl.cpu.GEMV(), dl.cpu.Reduction()]
