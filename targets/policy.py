"""The measured thresholds that pick each layer's kernel and shape its tables, as one value.

A compile takes one frozen :class:`KernelPolicy` (``compile_model(policy=...)``, kept in
``frontend.Lowering``): ``chooser.choose_kernel`` reads its break-evens and block sizes,
``layout.flat_input`` its flat-input thresholds. Every target family has a default
(:func:`default_policy`). The defaults were measured with ``bench/bench_kernels.py`` on the x86
host; the measurements behind each one are in ``docs/performance.md`` ("Kernel policy"). A bench
or a test varies a field by value, ``dataclasses.replace(default_policy("x86"), conv_block=4)``,
instead of patching a module.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KernelPolicy:
    """Break-evens (sparsity = fraction of weights pruned) and block sizes of the real-input
    kernels, and the thresholds of the block-sparse conv's flat input. Each default is measured:
    ``docs/performance.md``, section "Kernel policy"."""

    conv_break_even: float = 0.3
    """Sparsity from which a real-input conv takes the block-sparse kernel instead of the dense
    fp32 conv (docs/performance.md)."""

    dense_break_even: float = 0.5
    """Sparsity from which a dense layer whose fp32 weight fits no tier of
    ``cached_dense_break_even`` takes the sign-split kernel: memory-bound in both forms, the
    sparse one reads 4 bytes per kept weight, the dense one 4 per weight (docs/performance.md)."""

    cached_dense_break_even: tuple[tuple[int, float], ...] = ((2 * 2**20, 0.93), (16 * 2**20, 0.85))
    """``(fp32 weight bytes, break-even)`` tiers, smallest first: a dense layer takes the
    break-even of the first tier its weight fits, since from cache the dense path is not
    memory-bound and the sign-split form overtakes it later (docs/performance.md)."""

    batch_lanes_from: int = 2
    """Batch from which a dense layer's sign-split form sums along the batch (``batch_lanes``) and
    ``batched_dense_break_even`` applies (docs/performance.md)."""

    batched_dense_break_even: float = 0.75
    """Break-even of a dense layer from ``batch_lanes_from`` rows, where the dense form is a GEMM
    that reads its weight once for all rows (docs/performance.md)."""

    conv_block: int = 2
    """Output channels per block of the block-sparse conv, input channels grouped to stay in L1,
    on maps neither short nor long (docs/performance.md)."""

    short_flat: int = 32
    """Flat outputs per channel below which a conv's map is short (4x4 maps: one vector per
    entry) (docs/performance.md)."""

    short_flat_block: int = 4
    """Output channels per block on a short map below ``short_flat_grouped_from``, in one channel
    group (docs/performance.md)."""

    short_flat_grouped_from: float = 0.8
    """Sparsity from which a short map takes ``conv_block`` in channel groups again
    (docs/performance.md)."""

    long_flat: int = 1024
    """Flat outputs per channel from which a conv's map is long (32x32 maps) (docs/performance.md)."""

    long_flat_block: int = 4
    """Output channels per block on a long map, in channel groups (docs/performance.md)."""

    shifted_planes_waste: float = 0.1
    """Share of dropped flat outputs (``1 - OW / Wq``) from which a real-input conv's flat input is
    shifted planes (``layout.FlatInput``), worth their ``kw`` times larger input
    (docs/performance.md)."""

    align_waste: float = 0.15
    """Most extra outputs, as a share of ``OW``, a shifted-plane row may take to round its stride up
    to a whole or half cache line, so every tap's vector loads are aligned (docs/performance.md)."""

    dense_ternary: frozenset[str] = frozenset({"BinaryDense", "BinaryConv"})
    """op_types whose dense real-input form is the dense-ternary kernel (2-bit weight planes,
    decoded in the kernel) rather than an fp32 matmul/conv on the unpacked weight: 10-16x smaller
    modules; a dense layer runs faster at batch 1 (from cache, and 2-5x from memory), a conv within
    0.9-1.0x of the fp32 conv (docs/performance.md)."""

    decode_block_pixels: int = 64
    """Output pixels per channel from which a dense-ternary conv decodes each task's weights once
    into an fp32 block; on smaller maps it decodes them in registers, per register tile
    (docs/performance.md)."""

    dense_ternary_break_even: tuple[tuple[int, float], ...] = ((1 << 19, 0.92), (1 << 62, 0.87))
    """``(weights, break-even)`` tiers, smallest first: the sparsity from which a dense layer below
    ``batch_lanes_from`` rows whose weight count fits the tier takes the sign-split kernel instead
    of the dense-ternary one. The planes fit the caches where fp32 weights did not, so the dense
    form costs the same per weight at every size and the tiers only follow the sparse form's
    per-layer overhead; ``cached_dense_break_even`` and ``dense_break_even`` are the fp32
    form's (docs/performance.md)."""

    pointwise_ternary_min_outputs: int | None = None
    """Flat outputs per channel (``layout.FlatInput.flat_outputs``, about the map's pixels) from
    which a 1x1 conv's dense form keeps its 2-bit weight planes and decodes them once per call
    into the fp32 GEMM's weight (``kernels.dense_ternary.pointwise_ternary_func``), a 2-5x
    smaller module for a slower layer: the decode pass costs a share ``1 / pixels`` of the GEMM,
    0.86-0.99x the fp32 form's speed from 14x14 maps (196), 0.68-0.80x on 7x7 ones. None (the
    default: never slower than the fp32 form): every 1x1 conv below the break-even keeps fp32
    weights (docs/performance.md)."""

    pointwise_break_even: float = 0.75
    """Sparsity from which a 1x1 conv takes the block-sparse kernel: against the fp32 glue's pixel
    GEMM it breaks even at 0.6-0.85 on ImageNet shapes, measured inside whole networks, where the
    block-sparse form's flat input is one more pass over activations that are no longer in cache
    (docs/performance.md)."""

    short_flat_break_even: float = 0.66
    """Sparsity from which a conv on a short map (under ``short_flat`` flat outputs per channel:
    4x4) takes the block-sparse kernel: one vector per tap entry, its index walk costs more there
    than on larger maps (docs/performance.md)."""

    strided_break_even: float | None = None
    """Sparsity from which a conv with a stride above 1 takes the block-sparse kernel (its flat
    input is the stride phases, so a tap's run of outputs is a phase's row, shorter than a
    stride-1 conv's, and the index walk costs more per add); None: ``conv_break_even``
    (docs/performance.md)."""

    lut_below: float | None = None
    """Sparsity below which a real-input conv (1x1 included) takes the ternary-lut kernel (the
    block-sparse gather over the signed sums of ``lut_group``-channel groups: one add per nonzero
    group of weights) instead of the block-sparse or dense forms; None: never. arm counted 0.8;
    on x86 the lookup planes, 13/3 times the input, leave L1 and the AVX-512 gather runs slower
    than the block-sparse one (docs/performance.md)."""

    int8_conv_below: float | None = None
    """Sparsity below which a conv whose input is a uint8 QDQ pair (``--activations int8``) takes
    the family's int8 kernel (dense integer sums: the same work at every sparsity); from it, the
    pair runs as TVM's ops and the conv takes its real-input kernel, which skips the pruned
    weights. None: the int8 kernel at every sparsity (x86 timed it faster up to 0.9). arm counted
    0.8; its int8 dense layers stay faster up to 0.9 (docs/performance.md)."""

    lut_group: int = 3
    """Input channels per lookup group of the ternary-lut conv: ``(3^g - 1) / 2`` planes per group
    (13 for 3), ``(1 + s + ... + s^(g-1)) / g`` of the block-sparse form's adds at sparsity ``s``
    (docs/performance.md)."""

    subsample_strided_pointwise: bool = False
    """Whether a strided 1x1 conv without padding runs as its subsampled input and a stride-1 1x1
    conv (``frontend.subsampled_pointwise``): arm counted 2.5x fewer instructions on ResNet-50's
    downsampling shortcuts, where its glue gathered the strided input lane by lane; x86 timed
    it slower on 56x56 maps (docs/performance.md)."""

    depthwise_min_width: int | None = 56
    """Output width from which a depthwise conv (ONNX ``Conv``, ``group`` = channels) and a float
    ``MaxPool`` take the flat-plane kernel (``kernels.depthwise``), where the target family has
    one, instead of the fp32 glue, whose tiles run along the output channels on narrow maps and
    beat it there; None: never (docs/performance.md)."""

    winograd_min_channels: int | None = None
    """Input channels from which a float 3x3 stride-1 conv runs Winograd's minimal filtering
    (``kernels.winograd``: F(2x2, 3x3) does 16 multiply-adds per 2x2 outputs and input channel
    instead of 36, as 16 GEMMs) instead of the direct fp32 glue; below, the GEMMs' sums are too
    short to pay for the transforms; None: never (docs/performance.md)."""

    winograd_max_bytes: int = 16 << 20
    """The most bytes of transformed input tiles (``a^2 x C x tiles`` floats, the GEMMs' operand)
    a Winograd conv may write and read back: past the last-level cache's share, that extra pass
    costs what the saved multiply-adds win (docs/performance.md)."""

    winograd_max_weight_bytes: int = 24 << 20
    """The most bytes of transformed weights (``a^2 x K x C`` floats) a Winograd conv may read per
    call: F(4x4, 3x3)'s are 2.25x F(2x2, 3x3)'s, and on a small map, where each is used by few
    tiles, streaming them costs more than its fewer multiply-adds win (docs/performance.md)."""

    winograd_tiles: tuple[int, ...] = (2,)
    """The Winograd tiles a conv tries, in order (``kernels.winograd.SCHEMES``: 4 is F(4x4, 3x3),
    2 is F(2x2, 3x3)): the first whose tiles divide the output and whose transformed tiles and
    weights fit the two limits above (docs/performance.md)."""

    def dense_ternary_tier(self, weights: int | None) -> float:
        """The dense-ternary break-even of a dense layer of ``weights`` weights (None: the largest tier)."""
        if weights is None:
            return self.dense_ternary_break_even[-1][1]
        return next(
            (even for most, even in self.dense_ternary_break_even if weights <= most),
            self.dense_ternary_break_even[-1][1],
        )

    @property
    def sparse_break_even(self) -> dict[str, float]:
        """The break-even of each op_type without a cache tier or a batch (recorded in the manifest)."""
        dense = self.dense_ternary_tier(None) if "BinaryDense" in self.dense_ternary else self.dense_break_even
        return {"BinaryConv": self.conv_break_even, "BinaryDense": dense}


# arm counted its own block sizes (guest instructions per inference under qemu: with 4-lane vectors
# a block's sign-class segments cost more than its shared loads save), its lookup conv's
# sparsities, its strided 1x1 convs and its dense layers' break-even (its dense-ternary layer
# decodes a table vector per 4 weights, where AVX-512 decodes 16 from a mask register), and its
# Winograd convs (from 16 channels, as on x86); its other break-evens and cuda's whole policy take
# the x86 measurements (docs/performance.md).
POLICIES: dict[str, KernelPolicy] = {
    "x86": KernelPolicy(strided_break_even=0.7, winograd_min_channels=16, winograd_tiles=(4, 2)),
    "arm": KernelPolicy(
        conv_block=1,
        long_flat_block=1,
        lut_below=0.8,
        int8_conv_below=0.8,
        subsample_strided_pointwise=True,
        dense_ternary_break_even=((1 << 62, 0.78),),
        winograd_min_channels=16,
        winograd_tiles=(4, 2),
    ),
    "cuda": KernelPolicy(),
}


def default_policy(family: str) -> KernelPolicy:
    """The measured policy of a target family (``CompileTarget.family``: x86, arm or cuda)."""
    return POLICIES[family]
