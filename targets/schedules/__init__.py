"""Schedules, one module per target family: ``x86``, ``arm``, ``cuda`` (``cpu`` is their shared CPU base).

:func:`kernel_schedules` picks the family's schedules for a resolved target; each exposes
``word_lanes`` / ``float_lanes`` (the weight-table interleave the kernels are built with) and one
method per kernel that schedules its PrimFunc.
"""

from __future__ import annotations

from mptc.targets.schedules import arm, cuda, x86
from mptc.targets.schedules.cpu import CpuKernelSchedules
from mptc.targets.target import CompileTarget


def kernel_schedules(target: CompileTarget) -> CpuKernelSchedules | cuda.CudaKernelSchedules:
    """The kernel schedules of ``target``'s family (x86 tiles depend on AVX-512 VPOPCNTDQ)."""
    if target.family == "cuda":
        return cuda.CudaKernelSchedules()
    if target.family == "arm":
        return arm.kernel_schedules()
    return x86.kernel_schedules(target.has_avx512_popcount)
