"""The layout of a run directory (``--out runs/NAME``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunDir:
    """Files of one training run.

    * ``config.json``: the resolved :class:`~mptc.config.TrainConfig`.
    * ``checkpoint.pt``: the last finished epoch (scores, optimizer, schedule, history).
    * ``ticket.safetensors``: the result (seed + mask bits + alpha, see :mod:`mptc.ticket`).
    * ``metrics.json``: test accuracy, sparsity, method, sizes and per-epoch curves.
    """

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoint.pt"

    @property
    def ticket(self) -> Path:
        return self.root / "ticket.safetensors"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    def has_run(self) -> bool:
        return self.checkpoint.exists() or self.ticket.exists()
