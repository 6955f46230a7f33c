"""Schedules, one module per target family: ``x86``, ``arm``, ``cuda`` (``cpu`` is their shared CPU base).

:func:`kernel_schedules` picks the family's schedules for a resolved target. Every family
provides :class:`~mptc.targets.schedules.interface.KernelSchedules`: ``word_lanes`` /
``float_lanes`` (the weight-table interleave the kernels are built with) and one method per
kernel that schedules its PrimFunc.
"""

from __future__ import annotations

from mptc.targets.schedules import arm, cuda, x86
from mptc.targets.schedules.interface import KernelSchedules
from mptc.targets.target import CompileTarget


def kernel_schedules(target: CompileTarget) -> KernelSchedules:
    """The kernel schedules of ``target``'s family (x86 tiles depend on AVX-512 VPOPCNTDQ, its int8 kernel on VNNI)."""
    if target.family == "cuda":
        return cuda.CudaKernelSchedules()
    if target.family == "arm":
        return arm.kernel_schedules("+dotprod" in target.spec.get("mattr", ()))
    return x86.kernel_schedules(target.has_avx512_popcount, target.has_avx512_vnni)
