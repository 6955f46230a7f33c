"""Loop arithmetic the CPU schedules share: tile sizes that divide their loops, loop extents."""

from __future__ import annotations

from tvm import s_tir


def divisor_at_most(n: int, cap: int) -> int:
    """Largest divisor of ``n`` not above ``cap``: tiles that divide exactly need no predicate."""
    return max(d for d in range(1, min(n, cap) + 1) if n % d == 0)


def extent(sch: s_tir.Schedule, loop: s_tir.schedule.LoopRV) -> int:
    return int(sch.get(loop).extent)
