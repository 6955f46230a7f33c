"""Which kernel lowers an ``ai.mptc`` layer, and why (recorded per layer in the manifest).

Binary input always takes the XNOR-popcount kernel. Real input (MPT-1/32) has exact forms whose
cost depends on sparsity: the dense form (ternary weight unpacked at compile time, an fp32
conv/matmul) costs the same at any sparsity; a dense layer's sign-split sparse form
(``sum x over +1 taps - sum x over -1 taps``) costs one gathered add per kept weight; a conv's
block-sparse form costs one add per kept weight and one input load per tap that any output of a
block of ``B`` keeps. The break-evens are measured by ``bench/bench_kernels.py`` on the x86 host.
"""

from __future__ import annotations

from dataclasses import dataclass

# Fraction pruned from which the sparse real-input kernel is chosen, per op. Measured with
# bench/bench_kernels.py on the x86 host (Zen 4, 1 and 2 threads, 0.1-0.5 sparsity): once the
# dense conv vectorized along output channels on narrow maps (schedules.cpu_glue: at par with
# onnxruntime on every shape), the block-sparse conv overtook it at <= 0.1-0.37 on the CIFAR ResNet
# shapes (64@32x32 .. 512@4x4; the spread is the host's noise) and at 0.28 on 256@14x14 (was 0.1
# for all while the dense path ran 1.5-2.5x slower on 4x4-14x14 maps); from 0.3 the sparse form is
# 0.83-1.38x the dense one, below it the dense path keeps a layer at par with onnxruntime.
# Dense 4096x4096 batch 1 is already faster sparse at 0.5, the lowest sparsity
# measured: a batch-1 dense layer is memory-bound in both forms and the sparse form reads 4 bytes
# per kept weight where the dense one reads 4 per weight.
SPARSE_BREAK_EVEN = {"BinaryConv": 0.3, "BinaryDense": 0.5}

# A dense layer whose fp32 weight fits in cache is not memory-bound on the dense path, so the
# sign-split form (a scalar gather, about 2.3 cycles per kept weight) overtakes it later: by fp32
# weight bytes, the break-even of each tier (the first whose bytes the weight fits). Measured
# (batch 1, Zen 4, in-process A/B of both forms, 5 pairs, 2 threads as compiled modules run): in
# the L2 of the cores (up to 1 MB each) 0.93 on 64x512 and 512x512 (0.87 at 1 thread); in L3
# 0.85 on 1024x1024 (4 MB) and 2048x2048 (16 MB); 0.43 on 4096x4096 (64 MB, memory-bound on both
# paths: SPARSE_BREAK_EVEN). With 0.8 for all cached sizes the digits MLP of `make demo` ran
# slower at 0.9 sparsity (23 us, sparse) than at 0.7 (15 us, dense).
CACHED_DENSE_BREAK_EVEN = ((2 * 2**20, 0.93), (16 * 2**20, 0.85))

# From this batch a dense layer's sign-split form runs along the batch (``batch_lanes``: the
# operand transposed, one vector load and add per kept weight and batch vector, no gather), and
# the dense fp32 form is a GEMM that reads its weight once for all rows, so the break-even moves
# up. Measured (bench/bench_kernels.py, 4096x4096, 1 thread, Zen 4): 0.76 at batch 2, 0.79 at 4,
# 0.64 at 8, 0.69 at 64 (GEMM 20-22 ms, batched sparse 20 ms at 0.7 and 9 ms at 0.9). The per-row
# gather form is kept for batch 1 only: at batch 4 it took 14 ms at 0.5 (batched 4.8 ms, GEMM
# 2.6-3.8 ms), at batch 64 52-256 ms.
BATCH_LANES_FROM = 2
BATCHED_DENSE_BREAK_EVEN = 0.75

# Output channels per block of the block-sparse conv. A block reads each kept tap of any of its
# outputs once and adds it to the accumulators of the outputs that keep it (its sign class), so a
# larger block shares more loads at no extra arithmetic but splits its taps into 3^B - 1 segments,
# each a loop. Measured with bench/bench_kernels.py --real-only (CIFAR ResNet shapes, 1 thread,
# Zen 4, 0.5-0.95 sparsity): B = 2 with input channels grouped to stay in L1 is fastest on 8x8 and
# larger maps. On 4x4 maps (16 flat outputs: one vector per entry) B = 4 in one group is 1.3-1.7x
# faster than B = 1 at 0.5 and 0.7 and than grouped B = 2 below 0.8 (530-730 vs 700-750 us at 0.5);
# from 0.8 grouped B = 2 is 10-15% faster (168-174 vs 191-196 us at 0.9, 512@4x4, three A/B runs).
# With register tiles kept in registers (targets.stack_buffers), grouped B = 4 overtook B = 2 on
# 32x32 maps (>= LONG_FLAT flat outputs): 17-25% faster at 0.3-0.5 and 4-7% at 0.9 (64@32x32 and
# 32@32x32, two A/B runs at 1 thread; 223 vs 298 us at 0.5 at 2 threads); on 16x16 it is within
# 5% either way and on 14x14 and 8x8 maps B = 2 stays ahead.
CONV_BLOCK = 2
SHORT_FLAT = 32
SHORT_FLAT_BLOCK = 4
SHORT_FLAT_GROUPED_FROM = 0.8
LONG_FLAT = 1024
LONG_FLAT_BLOCK = 4

XNOR_POPCOUNT = "xnor-popcount"
SPARSE_SIGN_SPLIT = "sparse-sign-split"
BLOCK_SPARSE = "block-sparse"
DENSE_FP32 = "dense-fp32"


@dataclass(frozen=True)
class KernelChoice:
    kernel: str
    reason: str
    block: int = 1  # output channels per block (block-sparse conv)
    grouped: bool = False  # input channels in L1-sized groups (block-sparse conv)
    batch_lanes: bool = False  # sums along the batch (sign-split dense)


def choose_kernel(
    op_type: str, input_mode: str, sparsity: float, break_even: float | None = None, flat_outputs: int | None = None,
    weights: int | None = None, batch: int = 1,
) -> KernelChoice:
    """The kernel for one layer from its input mode and ``sparsity`` (fraction of weights pruned).

    ``break_even`` overrides the measured default (``SPARSE_BREAK_EVEN``, for a dense layer whose
    fp32 ``weights`` fit a tier of ``CACHED_DENSE_BREAK_EVEN`` that tier's); ``flat_outputs``
    (a conv's outputs per channel, ``layout.FlatInput.flat_outputs``) below ``SHORT_FLAT`` takes
    ``SHORT_FLAT_BLOCK`` output channels per block in one channel group below
    ``SHORT_FLAT_GROUPED_FROM`` sparsity; from ``LONG_FLAT`` it takes ``LONG_FLAT_BLOCK``, grouped;
    every other sparse conv takes ``CONV_BLOCK``, grouped. A dense layer from ``BATCH_LANES_FROM``
    rows of ``batch`` takes ``BATCHED_DENSE_BREAK_EVEN`` and sums along the batch.
    """
    if input_mode == "binary":
        return KernelChoice(XNOR_POPCOUNT, "binary input: packed sign bits, masked XNOR-popcount")
    batched = op_type == "BinaryDense" and batch >= BATCH_LANES_FROM
    sized = op_type == "BinaryDense" and weights is not None
    cached = next((even for size, even in CACHED_DENSE_BREAK_EVEN if 4 * weights <= size), None) if sized else None
    measured = BATCHED_DENSE_BREAK_EVEN if batched else cached if cached is not None else SPARSE_BREAK_EVEN[op_type]
    threshold = break_even if break_even is not None else measured
    if sparsity >= threshold and op_type == "BinaryConv":
        short = flat_outputs is not None and flat_outputs < SHORT_FLAT and sparsity < SHORT_FLAT_GROUPED_FROM
        long = flat_outputs is not None and flat_outputs >= LONG_FLAT
        block = SHORT_FLAT_BLOCK if short else LONG_FLAT_BLOCK if long else CONV_BLOCK
        why = f"{block} output(s) per block" + (f", one channel group ({flat_outputs} flat outputs per channel)" if short else ", channel groups")
        return KernelChoice(BLOCK_SPARSE, f"real input, sparsity {sparsity:.3f} >= break-even {threshold:.2f}, {why}", block, not short)
    if sparsity >= threshold:
        along = f", sums along the batch of {batch}" if batched else ""
        return KernelChoice(SPARSE_SIGN_SPLIT, f"real input, sparsity {sparsity:.3f} >= break-even {threshold:.2f}{along}", batch_lanes=batched)
    return KernelChoice(DENSE_FP32, f"real input, sparsity {sparsity:.3f} < break-even {threshold:.2f}")
