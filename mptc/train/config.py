"""The recipe defaults of a training run (:class:`~mptc.config.TrainConfig` holds the schema).

Defaults follow the recipes of ``shared/notes/algorithms.md`` and were tuned on digits for the
MLP (see the README's table).
"""

from __future__ import annotations

import dataclasses

from mptc.config import TrainConfig


def resolve(config: TrainConfig) -> TrainConfig:
    """Fill every ``None`` with the recipe default for this model, method and data."""
    small = config.model == "mlp" or config.dataset.startswith(("digits", "synthetic"))
    binary = config.binary_act
    if config.method == "magnitude":
        defaults = dict(optimizer="sgd", lr=0.1, weight_decay=0.0, epochs=0)
    elif config.method == "jackpot":
        # Lottery-jackpot recipe (Zhang et al.): SGD lr 0.1, wd 5e-4 at CIFAR scale; 5-10 search epochs suffice (10 on digits).
        defaults = dict(optimizer="sgd", lr=0.1, weight_decay=5e-4 if small else 1e-4, epochs=10 if small else 30)
    elif config.method == "dense":
        defaults = dict(optimizer="adam", lr=1e-3, weight_decay=0.0, epochs=30 if small else 100, init="kaiming-normal")
    elif binary:
        # MPT-1/1 recipe: Adam on scores, cosine schedule.
        defaults = dict(optimizer="adam", lr=0.01 if small else 0.1, weight_decay=0.0, epochs=40 if small else 100)
    elif config.model == "resnet18":
        defaults = dict(optimizer="sgd", lr=0.1, weight_decay=5e-4, epochs=100)
    elif small:
        defaults = dict(optimizer="adam", lr=0.01, weight_decay=0.0, epochs=40)
    else:
        defaults = dict(optimizer="sgd", lr=0.1, weight_decay=1e-4, epochs=100)
    # edge-popup's best random weights are signed constants (Ramanujan et al.); MPT uses kaiming.
    defaults.setdefault("init", "signed-constant" if config.method == "edge-popup" else "kaiming-normal")
    defaults["batch_size"] = 64 if small else (256 if config.model == "resnet18" else 128)
    filled = {key: value for key, value in defaults.items() if getattr(config, key) is None}
    return dataclasses.replace(config, **filled)
