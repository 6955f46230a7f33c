"""Which kernel lowers an ``ai.mptc`` layer, and why (recorded per layer in the manifest).

Binary input always takes the XNOR-popcount kernel. Real input (MPT-1/32) has exact forms whose
cost depends on sparsity: the dense form (ternary weight unpacked at compile time, an fp32
conv/matmul) costs the same at any sparsity; a dense layer's sign-split sparse form
(``sum x over +1 taps - sum x over -1 taps``) costs one gathered add per kept weight; a conv's
block-sparse form costs one multiply-add per kept tap of a block of ``B`` output channels, and
one input load per tap shared by the block. At high sparsity ``B = 1`` does the least work; lower,
the union of a block's taps grows slower than the work it shares, so larger blocks win. The
break-evens are measured by ``bench/bench_kernels.py`` on the x86 host (1 and 2 threads).
"""

from __future__ import annotations

from dataclasses import dataclass

# Fraction pruned from which the sparse real-input kernel is chosen, per op. Measured with
# bench/bench_kernels.py on the x86 host (Zen 4): the block-sparse conv crosses the dense path at
# 0.34-0.39 on 32x32 and 16x16 maps and is already faster at 0.3 on 8x8 and 4x4 (where the dense
# schedule is weakest); dense 4096x4096 batch 1 is already faster sparse at 0.5, the lowest
# sparsity measured: a batch-1 dense layer is memory-bound in both forms and the sparse form reads
# 4 bytes per kept weight where the dense one reads 4 per weight.
SPARSE_BREAK_EVEN = {"BinaryConv": 0.35, "BinaryDense": 0.5}

# Output channels per block of the block-sparse conv, by the lowest sparsity each serves. Measured
# with bench/bench_kernels.py --real-only on the CIFAR ResNet conv shapes (64@32x32 .. 512@4x4,
# 1 thread, Zen 4): B = 2 is fastest or within noise of it from 0.5 to 0.95 (B = 1 saves no load
# there and pays the per-tap index and weight loads alone); B = 4 only wins below 0.4.
CONV_BLOCKS = ((0.4, 2), (0.0, 4))

# Convs with fewer flat outputs per channel than SHORT_FLAT (4x4 maps) use SHORT_FLAT_BLOCKS: each
# table entry serves few multiply-adds there. At high sparsity reading the table dominates: in a
# whole ResNet-18 at 90% (19 MB of tables, evicted between layers) its 512@4x4 layers ran 250 us
# with B = 4 and 192 us with B = 1 (signed planes, 4 bytes per kept weight), though the two tie on
# one layer timed alone. At 50% the per-tap index and load dominate: B = 1 took 1.4 ms, B = 4 0.7.
SHORT_FLAT = 32
SHORT_FLAT_BLOCKS = ((0.8, 1), (0.0, 4))

ROW_DOT_MAX_BATCH = 4  # dense real-input layers up to this batch stream (O, K) weight rows; above, a tiled GEMM

XNOR_POPCOUNT = "xnor-popcount"
SPARSE_SIGN_SPLIT = "sparse-sign-split"
BLOCK_SPARSE = "block-sparse"
DENSE_FP32 = "dense-fp32"


@dataclass(frozen=True)
class KernelChoice:
    kernel: str
    reason: str
    block: int = 1  # output channels per block (block-sparse conv)


def choose_kernel(
    op_type: str, input_mode: str, sparsity: float, break_even: float | None = None, flat_outputs: int | None = None
) -> KernelChoice:
    """The kernel for one layer from its input mode and ``sparsity`` (fraction of weights pruned).

    ``break_even`` overrides the op's measured default (``SPARSE_BREAK_EVEN``); ``flat_outputs``
    (a conv's outputs per channel, ``layout.FlatInput.flat_outputs``) below ``SHORT_FLAT`` takes
    its block from ``SHORT_FLAT_BLOCKS``.
    """
    if input_mode == "binary":
        return KernelChoice(XNOR_POPCOUNT, "binary input: packed sign bits, masked XNOR-popcount")
    threshold = SPARSE_BREAK_EVEN[op_type] if break_even is None else break_even
    if sparsity >= threshold and op_type == "BinaryConv":
        short = flat_outputs is not None and flat_outputs < SHORT_FLAT
        block = next(b for lowest, b in (SHORT_FLAT_BLOCKS if short else CONV_BLOCKS) if sparsity >= lowest)
        why = f"{block} output(s) per block" + (f" ({flat_outputs} flat outputs per channel)" if short else "")
        return KernelChoice(BLOCK_SPARSE, f"real input, sparsity {sparsity:.3f} >= break-even {threshold:.2f}, {why}", block)
    if sparsity >= threshold:
        return KernelChoice(SPARSE_SIGN_SPLIT, f"real input, sparsity {sparsity:.3f} >= break-even {threshold:.2f}")
    return KernelChoice(DENSE_FP32, f"real input, sparsity {sparsity:.3f} < break-even {threshold:.2f}")
