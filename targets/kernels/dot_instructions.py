"""The dot-product instructions the int8 kernels sum with: four 8-bit products into each int32 lane.

The kernels call them as ``dot(accumulator, levels, codes)`` (:meth:`DotInstruction.__call__`,
an LLVM intrinsic: LLVM selects the instruction itself): ``levels`` the uint8 activations, one
32-bit word broadcast to every lane, ``codes`` the 2-bit weight codes ``w + 1`` decoded to bytes
in {0, 1, 2}, valid as signed and unsigned bytes alike (or, where the instruction's second
operand is signed, a conv's weights ``w = c - 1`` themselves). Armv8.2's ``udot`` also has a by-element
form that reads the broadcast word from a lane of a register (``udot v.4s, c.16b, w.4b[i]``):
LLVM selects it when the levels are a lane splat of a loaded vector and come last, so four
columns' words cost one load instead of four broadcast loads.
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm import tirx


@dataclass(frozen=True)
class DotInstruction:
    """An LLVM intrinsic that adds four uint8 x 8-bit products into each of ``lanes`` int32 lanes."""

    intrinsic: str
    lanes: int
    by_element: bool = False  # the levels may be a lane of a register (then passed last)
    signed_codes: bool = False  # the codes operand is signed: a conv decodes them to w = c - 1

    def __call__(self, accumulator: tirx.PrimExpr, levels: tirx.PrimExpr, codes: tirx.PrimExpr) -> tirx.PrimExpr:
        """``accumulator`` plus the four products of ``levels`` and ``codes`` in each lane."""
        first, second = (codes, levels) if self.by_element else (levels, codes)
        return tirx.call_llvm_pure_intrin(f"int32x{self.lanes}", self.intrinsic, accumulator, first, second)


VPDPBUSD = DotInstruction("llvm.x86.avx512.vpdpbusd.512", 16, signed_codes=True)  # AVX-512 VNNI: uint8 x int8
UDOT = DotInstruction("llvm.aarch64.neon.udot.v4i32.v16i8", 4, by_element=True)  # Armv8.2 dotprod: uint8 x uint8
