"""The recipe defaults of a training run (:class:`~mptc.config.TrainConfig` holds the schema).

Defaults follow the recipes of ``shared/notes/algorithms.md`` and were tuned on digits for the
MLP (see the README's table):

* CIFAR Conv-x: SGD lr 0.1, momentum 0.9, wd 1e-4, batch 128, 100 epochs, cosine;
* CIFAR ResNet-18: SGD lr 0.1, wd 5e-4, batch 256, 100 epochs;
* MPT-1/1 (binary activations): Adam lr 0.1 (VGG-Small: 2e-4), 100 epochs;
* ImageNet-style data (``imagefolder:``): SGD lr 0.256, momentum 0.875, wd 3.05e-5, batch 256,
  5 warm-up epochs, label smoothing 0.1;
* lottery jackpot: SGD lr 0.1, wd 5e-4 (CIFAR and smaller) / 1e-4 (ImageNet), 30 epochs (10 on
  digits-sized data: 5-10 suffice per the paper).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mptc.config import TrainConfig
from mptc.errors import InputError

SYNTHETIC = "synthetic"


def resolve(config: TrainConfig) -> TrainConfig:
    """Fill every ``None`` with the recipe default for this model, method and data.

    Plain ``synthetic`` data takes the shape of ``input_shape`` when one is given.

    Raises:
        InputError: the filled-in recipe contradicts a setting (e.g. ``warmup_epochs`` not fewer
            than the default epochs).
    """
    small = config.model == "mlp" or config.dataset.startswith(("digits", SYNTHETIC))
    imagenet = config.dataset.startswith("imagefolder")
    defaults: dict[str, Any]
    if config.method == "magnitude":
        defaults = dict(optimizer="sgd", lr=0.1, weight_decay=0.0, epochs=0)
    elif config.method == "jackpot":
        defaults = dict(optimizer="sgd", lr=0.1, weight_decay=1e-4 if imagenet else 5e-4, epochs=10 if small else 30)
    elif config.method == "dense":
        defaults = dict(optimizer="adam", lr=1e-3, weight_decay=0.0, epochs=30 if small else 100, init="kaiming-normal")
    elif config.binary_act:
        # MPT-1/1 recipe: Adam on scores, cosine schedule; VGG-Small BinAct trains at 2e-4.
        lr = 0.01 if small else (2e-4 if config.model == "vgg-small" else 0.1)
        defaults = dict(optimizer="adam", lr=lr, weight_decay=0.0, epochs=40 if small else 100)
    elif imagenet:
        defaults = dict(optimizer="sgd", lr=0.256, momentum=0.875, weight_decay=3.05e-5, epochs=100, warmup_epochs=5)
        defaults["label_smoothing"] = 0.1
    elif config.model == "resnet18":
        defaults = dict(optimizer="sgd", lr=0.1, weight_decay=5e-4, epochs=100)
    elif small:
        defaults = dict(optimizer="adam", lr=0.01, weight_decay=0.0, epochs=40)
    else:
        defaults = dict(optimizer="sgd", lr=0.1, weight_decay=1e-4, epochs=100)
    # edge-popup's best random weights are signed constants (Ramanujan et al.); MPT uses kaiming.
    defaults.setdefault("init", "signed-constant" if config.method == "edge-popup" else "kaiming-normal")
    defaults["batch_size"] = 64 if small else (256 if config.model == "resnet18" or imagenet else 128)
    for key, value in (("momentum", 0.9), ("label_smoothing", 0.0), ("warmup_epochs", 0)):
        defaults.setdefault(key, value)
    filled = {key: value for key, value in defaults.items() if getattr(config, key) is None}
    if config.dataset == SYNTHETIC and config.input_shape is not None:
        filled["dataset"] = f"{SYNTHETIC}:{'x'.join(map(str, config.input_shape))}"
    try:
        return dataclasses.replace(config, **filled)
    except ValueError as error:
        raise InputError(f"{error} (after filling in the recipe's defaults)") from error
