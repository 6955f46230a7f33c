"""This machine's CPU as Linux's ``/proc/cpuinfo`` describes it, read in one place.

Used where LLVM cannot say (the x86 feature flags), to name the host in a profile report, and
for the clock the kernel benchmark's bound assumes. Without the file (not Linux) every field is
empty and callers fall back to their own defaults. Read afresh on each call: ``cpu MHz`` moves
with frequency scaling.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class CpuInfo:
    """The fields of ``/proc/cpuinfo`` mptc reads.

    Attributes:
        model: the first core's ``model name`` (x86 has one; aarch64 kernels usually do not).
        flags: the first core's ``flags`` (x86 feature names as Linux spells them).
        mhz: every core's current ``cpu MHz``, in file order.
    """

    model: str | None = None
    flags: frozenset[str] = frozenset()
    mhz: tuple[float, ...] = ()


def cpuinfo() -> CpuInfo:
    """This machine's :class:`CpuInfo`; an empty one when ``/proc/cpuinfo`` cannot be read."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        return CpuInfo()
    fields = [
        (key.strip(), value.strip()) for key, sep, value in (line.partition(":") for line in text.splitlines()) if sep
    ]
    first: dict[str, str] = {}
    for key, value in fields:
        first.setdefault(key, value)
    return CpuInfo(
        model=first.get("model name"),
        flags=frozenset(first.get("flags", "").split()),
        mhz=tuple(float(value) for key, value in fields if key == "cpu MHz"),
    )
