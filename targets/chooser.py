"""Which kernel lowers an ``ai.mptc`` layer, and why (recorded per layer in the manifest).

Binary input (and ONNX ``Sign`` input, with a nonzero bit-plane beside the signs for the rows that
read a zero: ``kernels.exact_sign``) always takes the XNOR-popcount kernel; a layer whose real input is quantized to uint8
(``mptc compile --activations int8``: ``targets.int8_inputs``) the int8 kernel. Real input (MPT-1/32) has exact forms whose
cost depends on sparsity: a dense form costs the same at any sparsity: dense-ternary (the weight
kept as two bit-planes, decoded in registers) where the policy has that kernel for the op, else
dense fp32 (the weight unpacked at compile time, an fp32 conv/matmul); a dense layer's sign-split sparse form
(``sum x over +1 taps - sum x over -1 taps``) costs one gathered add per kept weight; a conv's
block-sparse form costs one add per kept weight and one input load per tap that any output of a
block of ``B`` keeps. The break-evens and block sizes are a :class:`~mptc.targets.policy.KernelPolicy`
(measured by ``bench/bench_kernels.py``; the measurements are in ``docs/performance.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

from mptc.targets.policy import KernelPolicy

XNOR_POPCOUNT = "xnor-popcount"
SPARSE_SIGN_SPLIT = "sparse-sign-split"
BLOCK_SPARSE = "block-sparse"
TERNARY_LUT = "ternary-lut"
DENSE_TERNARY = "dense-ternary"
DENSE_FP32 = "dense-fp32"
INT8_DOT = "int8-dot"


@dataclass(frozen=True)
class KernelChoice:
    kernel: str
    reason: str
    block: int = 1  # output channels per block (block-sparse conv)
    grouped: bool = False  # input channels in L1-sized groups (block-sparse conv)
    batch_lanes: bool = False  # sums along the batch (sign-split dense)


def choose_kernel(
    op_type: str,
    input_mode: str,
    sparsity: float,
    policy: KernelPolicy,
    break_even: float | None = None,
    flat_outputs: int | None = None,
    weights: int | None = None,
    batch: int = 1,
    taps: int | None = None,
    stride: int = 1,
) -> KernelChoice:
    """The kernel for one layer from its input mode and ``sparsity`` (fraction of weights pruned).

    ``break_even`` overrides the ``policy``'s (``sparse_break_even``; for a dense layer the tier of
    ``dense_ternary_break_even``, or on the fp32 form of ``cached_dense_break_even``, its
    ``weights`` fit; for a 1x1 conv (``taps`` 1) ``pointwise_break_even``, its dense form the fp32
    GEMM, on weights decoded per call from ``pointwise_ternary_min_outputs`` ``flat_outputs``;
    for a conv on a short map ``short_flat_break_even``,
    for a conv with a ``stride`` above 1 ``strided_break_even``, the highest that applies);
    ``flat_outputs`` (a conv's outputs per channel, ``layout.FlatInput.flat_outputs``) below ``short_flat`` takes
    ``short_flat_block`` output channels per block in one channel group below
    ``short_flat_grouped_from`` sparsity; from ``long_flat`` it takes ``long_flat_block``, grouped;
    every other sparse conv takes ``conv_block``, grouped. A dense layer from ``batch_lanes_from``
    rows of ``batch`` takes ``batched_dense_break_even`` and sums along the batch.
    """
    if input_mode == "binary":
        return KernelChoice(XNOR_POPCOUNT, "binary input: packed sign bits, masked XNOR-popcount")
    if input_mode == "int8":
        return KernelChoice(
            INT8_DOT,
            "uint8 input (its QuantizeLinear/DequantizeLinear pair, applied in the kernel): integer sums"
            " against 2-bit weight codes (vpdpbusd with AVX-512 VNNI)",
        )
    if input_mode == "sign":
        return KernelChoice(
            XNOR_POPCOUNT,
            "ONNX Sign input (sign(0) = 0): masked XNOR-popcount, output rows that read a zero"
            " also over the input's nonzero bit-plane",
        )
    if op_type == "BinaryConv" and policy.lut_below is not None and sparsity < policy.lut_below:
        return KernelChoice(
            TERNARY_LUT,
            f"real input, sparsity {sparsity:.3f} < {policy.lut_below:.2f}: signed sums of"
            f" {policy.lut_group}-channel groups, one add per nonzero group",
            grouped=True,
        )
    batched = op_type == "BinaryDense" and batch >= policy.batch_lanes_from
    cached = (
        next((even for size, even in policy.cached_dense_break_even if 4 * weights <= size), None)
        if op_type == "BinaryDense" and weights is not None and op_type not in policy.dense_ternary
        else None
    )
    if batched:
        measured = policy.batched_dense_break_even
    elif cached is not None:
        measured = cached
    elif op_type == "BinaryDense" and op_type in policy.dense_ternary:
        measured = policy.dense_ternary_tier(weights)
    elif op_type == "BinaryConv":
        applies = [
            (taps == 1, policy.pointwise_break_even),
            (flat_outputs is not None and flat_outputs < policy.short_flat, policy.short_flat_break_even),
            (stride > 1 and policy.strided_break_even is not None, policy.strided_break_even),
        ]
        measured = max([policy.conv_break_even, *(even for holds, even in applies if holds)])
    else:
        measured = policy.sparse_break_even[op_type]
    threshold = break_even if break_even is not None else measured
    if sparsity >= threshold and op_type == "BinaryConv":
        short = (
            flat_outputs is not None and flat_outputs < policy.short_flat and sparsity < policy.short_flat_grouped_from
        )
        long = flat_outputs is not None and flat_outputs >= policy.long_flat
        block = policy.short_flat_block if short else policy.long_flat_block if long else policy.conv_block
        why = f"{block} output(s) per block" + (
            f", one channel group ({flat_outputs} flat outputs per channel)" if short else ", channel groups"
        )
        return KernelChoice(
            BLOCK_SPARSE, f"real input, sparsity {sparsity:.3f} >= break-even {threshold:.2f}, {why}", block, not short
        )
    if sparsity >= threshold:
        along = f", sums along the batch of {batch}" if batched else ""
        return KernelChoice(
            SPARSE_SIGN_SPLIT,
            f"real input, sparsity {sparsity:.3f} >= break-even {threshold:.2f}{along}",
            batch_lanes=batched,
        )
    below = f"real input, sparsity {sparsity:.3f} < break-even {threshold:.2f}"
    if op_type == "BinaryConv" and taps == 1:
        least = policy.pointwise_ternary_min_outputs
        if op_type in policy.dense_ternary and least is not None and (flat_outputs or 0) >= least:
            return KernelChoice(
                DENSE_TERNARY, f"{below}, a 1x1 conv: 2-bit weight planes decoded per call for the fp32 GEMM"
            )
        return KernelChoice(DENSE_FP32, f"{below}, a 1x1 conv: the fp32 pixel GEMM")
    if op_type in policy.dense_ternary:
        return KernelChoice(DENSE_TERNARY, f"{below}, 2-bit weight planes decoded in registers")
    return KernelChoice(DENSE_FP32, below)
