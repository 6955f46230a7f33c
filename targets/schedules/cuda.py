"""CUDA schedules of the ``ai.mptc`` kernels: one thread per output element.

Each thread computes one output, running the reduction over taps and words serially in a
register (``__popcll`` on 64-bit words; a real-input conv's thread runs its block's CSR segments);
packing/splitting stages get one thread per word or element. Consecutive threads take
consecutive output columns. This is a correct, simple mapping
(no shared-memory tiling yet); the fp32 glue is scheduled by dlight's GPU rules in the default
CUDA pipeline.
"""

from __future__ import annotations

import itertools

from tvm import s_tir, tirx
from tvm.ir import Range
from tvm.script.ir_builder import IRBuilder
from tvm.script.ir_builder import tirx as T

from mptc.targets.kernels import exact_sign, stages
from mptc.targets.kernels.binary_conv import GatherStore, SparseGather
from mptc.targets.layout import ceil_div
from mptc.targets.schedules.cpu import block_names

THREADS_PER_BLOCK = 128  # a multiple of the warp size that leaves room for several blocks per SM
WORD_LANES = 8  # output channels interleaved per weight row: 8 x 64-bit = one 64-byte segment
FLOAT_LANES = 8  # output channels interleaved per sparse index row
_WORD_PROLOGUES = (  # the input's word stages (and an exact Sign's zero rows)
    stages.PACK,
    stages.PAD,
    stages.PACK_NONZERO,
    stages.PAD_NONZERO,
    stages.ZERO_ROWS,
    stages.ZERO_FLAGS,
)


class CudaKernelSchedules:
    """Schedules of the PrimFuncs built by ``targets.kernels`` for CUDA."""

    word_lanes = WORD_LANES
    float_lanes = FLOAT_LANES
    ternary_nibbles = False
    sparse_row_sums = None  # one thread per output already sums its own ELL row
    fused_gather_epilogue = False  # the epilogue is a stage of its own, one thread per output
    int8_dense = int8_conv = None  # no int8 kernels: a QDQ pair runs as TVM's own ops before the layer
    depthwise_tile = FLOAT_LANES

    def depthwise_row_lanes(self, out_width: int) -> None:
        """None: depthwise convs are TVM's conv2d here (``depthwise``)."""
        return None

    def depthwise(self, func: tirx.PrimFunc) -> None:
        """None: depthwise convs stay TVM's conv2d, scheduled by dlight's GPU rules with the rest of the glue."""
        return None

    def winograd_input(self, func: tirx.PrimFunc) -> None:
        """None: 3x3 convs stay TVM's conv2d, scheduled by dlight's GPU rules with the rest of the glue."""
        return None

    def winograd_output(self, func: tirx.PrimFunc) -> None:
        """None, as ``winograd_input``."""
        return None

    def exact_sign_counts(self, words: int) -> exact_sign.Counts:
        """int64 counts: a thread counts in one register."""
        return exact_sign.IN_WORDS

    def binary_conv(self, func: tirx.PrimFunc) -> tirx.PrimFunc:
        return self._per_output(func, _WORD_PROLOGUES, stages.POPCOUNT)

    def binary_dense(self, func: tirx.PrimFunc) -> tirx.PrimFunc:
        return self._per_output(func, _WORD_PROLOGUES, stages.POPCOUNT)

    def conv_chunk(self, flat: int, block: int) -> int:
        """One thread per output needs no register tile: pad the flat outputs to whole warps."""
        return 32

    def conv_group(self, channels: int, channel_floats: int, grouped: bool, taps: int) -> int:
        """A thread walks all of its block's segments: the input is read through the cache, not tiled."""
        return channels

    def sparse_gather(
        self, g: SparseGather, xs: tirx.Buffer, ptr: tirx.Buffer, index: tirx.Buffer, store: GatherStore
    ) -> tirx.Stmt:
        """One thread per ``(n, block, flat output)``, its ``block`` accumulators in registers;
        consecutive threads read consecutive flat outputs of each tap (coalesced)."""
        total, classes = g.batch * g.blocks * g.outputs, g.classes
        with IRBuilder() as ib:
            bx, tx = (
                _thread("blockIdx.x", ceil_div(total, THREADS_PER_BLOCK)),
                _thread("threadIdx.x", THREADS_PER_BLOCK),
            )
            with T.attr(bx, "thread_extent", bx.dom.extent), T.attr(tx, "thread_extent", tx.dom.extent):
                t = bx.var * THREADS_PER_BLOCK + tx.var
                with T.If(t < total), T.Then():
                    n, b, q = t // (g.blocks * g.outputs), t // g.outputs % g.blocks, t % g.outputs
                    regs = T.alloc_local((g.block,), "float32")
                    for i in range(g.block):
                        T.buffer_store(regs, tirx.const(0.0, "float32"), [i])
                    for group, (k, signs) in itertools.product(
                        range(g.groups), enumerate(classes)
                    ):  # every group's segments
                        with T.serial(ptr[group, b * len(classes) + k], ptr[group, b * len(classes) + k + 1]) as j:
                            x = xs[n, group * g.group_floats + index[j].astype("int32") + q]
                            for i, sign in enumerate(signs):
                                if sign:
                                    T.buffer_store(regs, regs[i] + x if sign > 0 else regs[i] - x, [i])
                    for i in range(g.block):
                        store.put(n, b, i, q, regs[i])
        return ib.get()

    def block_sparse_conv(self, func: tirx.PrimFunc) -> tirx.PrimFunc:
        sch = s_tir.Schedule(func)
        for name in (stages.FLAT, stages.OUTPUT):
            if name in block_names(sch):  # no flat stage where the gather reads the input in place
                _bind(sch, sch.get_sblock(name))
        return sch.mod["main"]

    def sparse_dense(self, func: tirx.PrimFunc) -> tirx.PrimFunc:
        return self._per_output(func, (stages.SPLIT,), stages.GATHER)

    sparse_dense_batched = sparse_dense  # the sums along the batch: the same one thread per output

    def dense_ternary(self, func: tirx.PrimFunc) -> tirx.PrimFunc:
        return self._per_output(func, (), stages.TERNARY)

    def conv_ternary(self, func: tirx.PrimFunc) -> tirx.PrimFunc:
        """One thread per output; the padded input and the decoded weights are stages of their own."""
        return self._per_output(func, (stages.PAD, stages.DECODE), stages.TERNARY)

    def pointwise_ternary(self, func: tirx.PrimFunc) -> tirx.PrimFunc:
        """One thread per output; the decoded weights a stage of their own."""
        return self._per_output(func, (stages.DECODE,), stages.TERNARY)

    def or_pool(self, func: tirx.PrimFunc) -> tirx.PrimFunc:
        sch = s_tir.Schedule(func)
        _bind(sch, sch.get_sblock(stages.OUTPUT))
        return sch.mod["main"]

    @staticmethod
    def _per_output(func: tirx.PrimFunc, prologues: tuple[str, ...], reduction: str) -> tirx.PrimFunc:
        """One thread per output (a packed output's word: its lanes' bits, then their counts, in the thread)."""
        sch = s_tir.Schedule(func)
        present = {sch.get(b).name_hint for b in sch.get_child_blocks(sch.get_sblock("root"))}
        thread = _bind(sch, sch.get_sblock(stages.OUTPUT))
        for name in (stages.LANE_BITS, reduction):  # consumer before producer
            if name in present:
                block = sch.get_sblock(name)
                sch.set_scope(block, 0, "local")
                sch.compute_at(block, thread)
        for name in prologues:
            if name in present:  # a packed input has no sign-pack stage
                _bind(sch, sch.get_sblock(name))
        return sch.mod["main"]


def _bind(sch: s_tir.Schedule, block) -> s_tir.schedule.LoopRV:
    """Fuse the block's spatial loops (the outer ones) and bind them to blocks x threads; returns the thread loop."""
    spatial = sum(1 for iv in sch.get(block).iter_vars if iv.iter_type == tirx.IterVar.DataPar)
    fused = sch.fuse(*sch.get_loops(block)[:spatial])
    bx, tx = sch.split(fused, [None, THREADS_PER_BLOCK])
    sch.bind(bx, "blockIdx.x")
    sch.bind(tx, "threadIdx.x")
    return tx


def _thread(tag: str, extent: int) -> tirx.IterVar:
    """A launch-thread axis for a loop nest built outside a PrimFunc (``T.env_thread`` needs one)."""
    return tirx.IterVar(Range(0, extent), tirx.Var(tag, "int32"), tirx.IterVar.ThreadIndex, tag)
