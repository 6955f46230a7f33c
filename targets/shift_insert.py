"""``ShiftInsert``: the packed sign words of aarch64 kernels built with NEON's shift-left-and-insert.

``kernels.bits.bit_word`` writes each 32-bit half of a packed word as an OR of one select per
bit, ``Select(c_j, 1 << j, 0)``. On x86 that is a compare into a mask register and a masked OR
per bit. On aarch64 LLVM makes each bit a compare, an AND with the bit's constant (32 constants
do not all stay in registers, so many are rebuilt with ``movi``) and an ORR. NEON's ``sli`` shifts
a vector left and inserts the low bits of another: the half built from its top bit down is its
compares and one ``sli #1`` per bit, ``acc = (acc << 1) | (mask_j & 1)``. LLVM forms ``sli``
from neither form (it re-associates a written-out chain into independent terms), so this pass
rewrites each such OR of two- or four-lane vectors, after vectorization, into a chain of
``llvm.aarch64.neon.vsli`` calls, in functions built for aarch64 only: the NEON schedules also
compile for x86 hosts (the tests), which keep the OR of selects.
"""

from __future__ import annotations

import tvm
import tvm_ffi
from tvm import tirx

LANES = (2, 4)  # uint32 lanes of a NEON d or q register: the forms of ``sli``
BITS = 32
INTRINSIC = "llvm.aarch64.neon.vsli"


@tirx.transform.prim_func_pass(opt_level=0, name="mptc.ShiftInsert")
class ShiftInsert:
    """``Select(c_0, 1, 0) | ... | Select(c_k, 1 << k, 0)`` (uint32x2, x4) -> a chain of ``sli #1``, on aarch64."""

    def transform_function(
        self, func: tirx.PrimFunc, _mod: tvm.IRModule, _ctx: tvm.transform.PassContext
    ) -> tirx.PrimFunc:
        if not _is_aarch64(func):
            return func
        body = tvm_ffi.structural_map(func.body, [(tirx.BitwiseOr, _chain)], order="pre")
        return func if body.same_as(func.body) else func.with_body(body)


def _is_aarch64(func: tirx.PrimFunc) -> bool:
    target = func.attrs.get("target") if func.attrs else None
    return target is not None and str(target.attrs.get("mtriple", "")).startswith("aarch64")


def _chain(expr: tirx.BitwiseOr) -> tirx.PrimExpr:
    """The chain of ``sli`` that builds ``expr``, where it is an OR of single-bit selects; else ``expr``."""
    lanes = _lanes(expr)
    bits = _single_bits(expr, lanes) if lanes else None
    if bits is None or len(bits) < 2:
        return expr
    top = max(bits)
    ones, zero = _splat((1 << BITS) - 1, lanes), _splat(0, lanes)
    # the top bit's mask whole where its other bits shift out past bit 31; else its low bit only
    acc = tirx.Select(bits[top], ones if top == BITS - 1 else _splat(1, lanes), zero)
    for j in reversed(range(top)):
        mask = tirx.Select(bits[j], ones, zero) if j in bits else zero
        acc = tirx.call_llvm_pure_intrin(f"uint32x{lanes}", INTRINSIC, mask, acc, tirx.const(1, "int32"))
    return acc


def _lanes(expr: tirx.PrimExpr) -> int:
    """The lanes of a uint32 vector expression ``sli`` takes; 0 for any other."""
    return next((lanes for lanes in LANES if str(expr.ty) == f"uint32x{lanes}"), 0)


def _single_bits(expr: tirx.PrimExpr, lanes: int) -> dict[int, tirx.PrimExpr] | None:
    """``{j: c_j}`` of an OR tree whose every leaf is ``Select(c_j, 1 << j, 0)``, each bit once;
    None for any other expression."""
    leaves, pending = [], [expr]
    while pending:
        node = pending.pop()
        if isinstance(node, tirx.BitwiseOr):
            pending += [node.a, node.b]
        else:
            leaves.append(node)
    bits: dict[int, tirx.PrimExpr] = {}
    for leaf in leaves:
        if not isinstance(leaf, tirx.Select) or _splat_value(leaf.false_value) != 0:
            return None
        value = _splat_value(leaf.true_value)
        if value is None or value <= 0 or value & (value - 1) or value.bit_length() - 1 in bits:
            return None
        bits[value.bit_length() - 1] = leaf.condition
    return bits


def _splat(value: int, lanes: int) -> tirx.PrimExpr:
    return tirx.Broadcast(tirx.const(value, "uint32"), lanes)


def _splat_value(expr: tirx.PrimExpr) -> int | None:
    """The value of every lane of a broadcast constant; None for anything else."""
    if isinstance(expr, tirx.Broadcast) and isinstance(expr.value, tirx.IntImm):
        return int(expr.value.value)
    return None
