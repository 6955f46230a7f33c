"""The method-specific steps of a training run, as one small interface :func:`train` calls.

Random-weight methods (edge-popup, biprop) and dense training need nothing beyond the loop, so
the base class does nothing. A method that needs more registers its hooks with
:func:`register_hooks` when its module is imported (the lottery jackpot: :mod:`mptc.jackpot`
loads a pre-trained model, initialises magnitude scores, freezes BatchNorm and restricts mask
changes), so the training loop never imports the methods built on it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from mptc.config import TrainConfig
from mptc.data import Dataset


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


HooksFactory = Callable[[TrainConfig], SearchHooks]
_FACTORIES: dict[str, HooksFactory] = {}


def register_hooks(factory: HooksFactory, *methods: str) -> None:
    """Make :func:`hooks_for` answer ``factory(config)`` for a config of any of ``methods``."""
    for method in methods:
        _FACTORIES[method] = factory


def hooks_for(config: TrainConfig) -> SearchHooks:
    """The hooks registered for ``config.method``.

    Raises:
        LookupError: nothing registered them, because the method's module was never imported
            (training on without them would silently run another method).
    """
    factory = _FACTORIES.get(config.method)
    if factory is None:
        raise LookupError(
            f"no training hooks are registered for method {config.method!r}: import the module that "
            "provides them first (mptc.jackpot for jackpot and magnitude)"
        )
    return factory(config)


register_hooks(lambda _config: SearchHooks(), "dense", "edge-popup", "biprop")
