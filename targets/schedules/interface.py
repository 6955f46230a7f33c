"""What the frontend needs of a target family's schedules: :class:`KernelSchedules`, once.

``cpu.CpuKernelSchedules`` (x86, arm) and ``cuda.CudaKernelSchedules`` match it structurally;
``frontend.Lowering.kernels`` is typed by it, so a member one family lacks or types differently
is found by a type checker, not by the first model that reaches it.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from tvm import tirx

from mptc.targets.kernels import exact_sign
from mptc.targets.kernels.binary_conv import GatherStore, SparseGather
from mptc.targets.kernels.binary_dense import RowSumsBody
from mptc.targets.layout import ConvGeometry


class Int8Dense(Protocol):
    """Builds the scheduled dense layer on uint8 activations (``kernels.int8_dense``)."""

    def __call__(
        self, batch: int, k: int, out: int, scale: float, zero_point: int, relu: bool, upper: float | None
    ) -> tirx.PrimFunc:
        """On activations of ``scale`` and ``zero_point``, a ReLU (``upper``: ReLU6) fused if ``relu``."""
        ...


class Int8Conv(Protocol):
    """Builds the scheduled conv on uint8 activations (``kernels.int8_conv``)."""

    def __call__(
        self, geo: ConvGeometry, scale: float, zero_point: int, residual: bool, relu: bool, upper: float | None
    ) -> tirx.PrimFunc:
        """On activations of ``scale`` and ``zero_point``, the residual add and ReLU (``upper``:
        ReLU6) fused as flagged."""
        ...


@runtime_checkable
class KernelSchedules(Protocol):
    """Schedules of the PrimFuncs built by ``targets.kernels``, and the table shapes they read."""

    @property
    def word_lanes(self) -> int:
        """uint64 words per vector: the output channels interleaved in the popcount weight tables."""
        ...

    @property
    def float_lanes(self) -> int:
        """fp32 values per vector: the lanes of the sign-split dense index and of the fp32 glue."""
        ...

    @property
    def int8_dense(self) -> Int8Dense | None:
        """The int8 dense layer, where the family has a dot-product instruction that makes it
        faster than the real-input kernels (AVX-512 VNNI, Armv8.2 dotprod); None: a QDQ pair before
        a dense layer runs as TVM's own ops, and the layer as any real-input one (``targets.int8_inputs``)."""
        ...

    @property
    def int8_conv(self) -> Int8Conv | None:
        """The int8 conv, where the family has one (AVX-512 VNNI, Armv8.2 dotprod); None as for ``int8_dense``."""
        ...

    @property
    def ternary_nibbles(self) -> bool:
        """Whether a dense-ternary dense layer reads code bytes and a decode table
        (``layout.ternary_nibbles``) instead of bit-planes."""
        ...

    @property
    def sparse_row_sums(self) -> RowSumsBody | None:
        """The loop nest of a sign-split dense layer at batch 1 that sums each output's own list of
        inputs (``kernels.binary_dense.sparse_rows_func``), where the family has one; None: ELL
        rows of lanes (``kernels.binary_dense.sparse_dense_func``)."""
        ...

    def binary_conv(self, func: tirx.PrimFunc) -> tirx.PrimFunc:
        """The scheduled XNOR-popcount conv (``kernels.binary_conv.xnor_conv_func``)."""
        ...

    def binary_dense(self, func: tirx.PrimFunc) -> tirx.PrimFunc:
        """The scheduled XNOR-popcount dense (``kernels.binary_dense.xnor_dense_func``)."""
        ...

    def conv_chunk(self, flat: int, block: int) -> int:
        """Flat outputs per tile of a block-sparse conv with ``flat`` outputs per channel and
        ``block`` output channels per block."""
        ...

    def conv_group(self, channels: int, channel_floats: int, grouped: bool, taps: int) -> int:
        """Input channels per group of a block-sparse conv of ``taps`` taps per channel,
        ``channel_floats`` flat values each per chunk."""
        ...

    @property
    def fused_gather_epilogue(self) -> bool:
        """Whether the block-sparse gather applies the conv's epilogue as it stores its sums, where
        the flat outputs are the output's pixels (``kernels.binary_conv.fuses_epilogue``)."""
        ...

    def sparse_gather(
        self, g: SparseGather, xs: tirx.Buffer, ptr: tirx.Buffer, index: tirx.Buffer, store: GatherStore
    ) -> tirx.Stmt:
        """The family's loop nest of the block-sparse gather (the ``te.extern`` body of
        ``kernels.binary_conv.block_sparse_conv``)."""
        ...

    def block_sparse_conv(self, func: tirx.PrimFunc) -> tirx.PrimFunc:
        """The scheduled stages around the gather (``kernels.binary_conv.block_sparse_conv_func``)."""
        ...

    def sparse_dense(self, func: tirx.PrimFunc) -> tirx.PrimFunc:
        """The scheduled sign-split dense, lanes over outputs (``kernels.binary_dense.sparse_dense_func``),
        or the stages around the family's per-output sums (``sparse_rows_func``)."""
        ...

    def sparse_dense_batched(self, func: tirx.PrimFunc) -> tirx.PrimFunc:
        """The scheduled sign-split dense that sums along the batch (``batch_lanes``)."""
        ...

    def dense_ternary(self, func: tirx.PrimFunc) -> tirx.PrimFunc:
        """The scheduled dense-ternary dense, 2-bit weight planes (``kernels.dense_ternary.dense_ternary_func``)."""
        ...

    def conv_ternary(self, func: tirx.PrimFunc) -> tirx.PrimFunc:
        """The scheduled dense-ternary conv (``kernels.dense_ternary.conv_ternary_func``)."""
        ...

    def pointwise_ternary(self, func: tirx.PrimFunc) -> tirx.PrimFunc:
        """The scheduled dense-ternary 1x1 conv (``kernels.dense_ternary.pointwise_ternary_func``)."""
        ...

    @property
    def depthwise_tile(self) -> int:
        """Flat outputs per register tile of the depthwise conv: a channel's flat outputs are a
        whole number of them (``kernels.depthwise.depthwise_func``)."""
        ...

    def exact_sign_counts(self, words: int) -> exact_sign.Counts:
        """How the popcount of an exact Sign conv over ``words`` words counts (``kernels.exact_sign``)."""
        ...

    def depthwise_row_lanes(self, out_width: int) -> int | None:
        """Vector lanes of the depthwise conv's row tiles on ``out_width``-wide outputs, or None
        for the flat form (``kernels.depthwise.depthwise_func``)."""
        ...

    def depthwise(self, func: tirx.PrimFunc) -> tirx.PrimFunc | None:
        """The scheduled depthwise conv (``kernels.depthwise.depthwise_func``), or None where the
        family leaves depthwise convs to TVM's own pipeline."""
        ...

    def winograd_input(self, func: tirx.PrimFunc) -> tirx.PrimFunc | None:
        """The scheduled input transform of a Winograd conv (``kernels.winograd.input_func``), or
        None where the family leaves 3x3 convs to TVM's own pipeline."""
        ...

    def winograd_output(self, func: tirx.PrimFunc) -> tirx.PrimFunc | None:
        """The scheduled output transform and epilogue of a Winograd conv
        (``kernels.winograd.output_func``); None as ``winograd_input``."""
        ...

    def or_pool(self, func: tirx.PrimFunc) -> tirx.PrimFunc:
        """The scheduled max-pool on packed signs (``kernels.packed_pool.or_pool_func``)."""
        ...
