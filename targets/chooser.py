"""Which kernel lowers an ``ai.mptc`` layer, and why (recorded per layer in the manifest).

Binary input always takes the XNOR-popcount kernel. Real input (MPT-1/32) has two exact forms:
the dense form (ternary weight unpacked at compile time, an fp32 conv/matmul) costs the same at
any sparsity; the sign-split sparse form (``sum x over +1 taps - sum x over -1 taps``) costs one
gathered add per kept weight, so it wins only above a break-even sparsity, measured by
``bench/bench_kernels.py`` on the x86 host (both layer kinds, 1 and 2 threads).
"""

from __future__ import annotations

from dataclasses import dataclass

# Fraction pruned from which the sparse real-input kernel is chosen, per op. Measured with
# bench/bench_kernels.py on the x86 host (Zen 4, 1 and 2 threads, three runs): conv 3x3 256->256
# @14x14 crosses at 0.65-0.74; dense 4096x4096 batch 1 is already faster sparse at 0.5, the lowest
# sparsity measured. A batch-1 dense layer is memory-bound in both forms and the sparse form reads
# 4 bytes per kept weight where the dense one reads 4 per weight, so it wins early; a conv reuses
# each dense weight over every output pixel, so the gathers must save more.
SPARSE_BREAK_EVEN = {"BinaryConv": 0.7, "BinaryDense": 0.5}

ROW_DOT_MAX_BATCH = 4  # dense real-input layers up to this batch stream (O, K) weight rows; above, a tiled GEMM

XNOR_POPCOUNT = "xnor-popcount"
SPARSE_SIGN_SPLIT = "sparse-sign-split"
DENSE_FP32 = "dense-fp32"


@dataclass(frozen=True)
class KernelChoice:
    kernel: str
    reason: str


def choose_kernel(op_type: str, input_mode: str, sparsity: float, break_even: float | None = None) -> KernelChoice:
    """The kernel for one layer from its input mode and ``sparsity`` (fraction of weights pruned).

    ``break_even`` overrides the op's measured default (``SPARSE_BREAK_EVEN``).
    """
    if input_mode == "binary":
        return KernelChoice(XNOR_POPCOUNT, "binary input: packed sign bits, masked XNOR-popcount")
    threshold = SPARSE_BREAK_EVEN[op_type] if break_even is None else break_even
    if sparsity >= threshold:
        return KernelChoice(SPARSE_SIGN_SPLIT, f"real input, sparsity {sparsity:.3f} >= break-even {threshold:.2f}")
    return KernelChoice(DENSE_FP32, f"real input, sparsity {sparsity:.3f} < break-even {threshold:.2f}")
