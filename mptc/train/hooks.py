"""The method-specific steps of a training run, as one small interface :func:`train` calls.

Random-weight methods (edge-popup, biprop) and dense training need nothing beyond the loop, so
the base class does nothing. The lottery-jackpot methods load a pre-trained model, initialise
magnitude scores, freeze BatchNorm and restrict mask changes (:mod:`mptc.jackpot.search`).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from mptc.data import Dataset
from mptc.train.config import PRETRAINED_METHODS, TrainConfig


class SearchHooks:
    """Called by :func:`mptc.train.loop.train` at fixed points; every method is deterministic."""

    def prepare(self, model: nn.Module, dataset: Dataset) -> None:
        """After the seeded initialisation, before the optimiser is built (and before a resumed
        run's checkpoint is loaded over it)."""

    def start_epoch(self, model: nn.Module) -> None:
        """Put ``model`` in training mode at the start of every epoch."""
        model.train()

    def after_step(self, model: nn.Module, progress: float) -> None:
        """After every optimiser step; ``progress`` is the fraction of the run's steps done
        before this one (0 at the first step)."""

    def report(self, model: nn.Module, dataset: Dataset) -> dict[str, Any]:
        """Extra entries for ``metrics.json`` about the finished ``model``."""
        return {}


def hooks_for(config: TrainConfig) -> SearchHooks:
    """The hooks ``config.method`` needs (the jackpot's for ``jackpot``/``magnitude``)."""
    if config.method in PRETRAINED_METHODS:
        from mptc.jackpot.search import JackpotSearch

        return JackpotSearch(config)
    return SearchHooks()
