"""The description of a training run that every stage reads back: the schema, no training code.

A :class:`TrainConfig` is written into each run directory (``config.json``) and into each ticket's
metadata (:mod:`mptc.ticket`); export, the jackpot and the reports read it back from there. Any
field left ``None`` is a recipe default that :func:`mptc.train.config.resolve` fills in.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from mptc.errors import InputError, first_line
from mptc.models import METHODS, MODELS, LayerRecipe
from mptc.nn.init import INITS

OPTIMIZERS = ("sgd", "adam")
PRETRAINED_METHODS = ("jackpot", "magnitude")
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class TrainConfig:
    """One training run. ``sparsity`` is the fraction of weights PRUNED.

    The lottery-jackpot methods (``jackpot``, and ``magnitude``: its one-shot baseline) search
    inside the ``pretrained`` model (a ``--method dense`` run directory or a safetensors state
    dict of the same architecture); there ``sparsity`` is a model-wide target split over layers
    by one global magnitude threshold. ``restriction`` turns the jackpot's short restriction on,
    ``restriction_rate`` is its swap rate at the first step (cosine-decayed to 0 over the run).
    """

    model: str = "mlp"
    method: str = "biprop"
    sparsity: float = 0.5
    binary_act: bool = False
    binarize: bool = False
    init: str | None = None
    width: float = 1.0
    dense_first: bool = False
    dense_last: bool = False
    per_channel_alpha: bool = False
    learn_bn: bool = False
    dataset: str = "digits"
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    optimizer: str | None = None
    momentum: float = 0.9
    weight_decay: float | None = None
    label_smoothing: float = 0.0
    seed: int = 0
    device: str = "cpu"
    pretrained: str | None = None
    restriction: bool = True
    restriction_rate: float = 1.0

    def __post_init__(self) -> None:
        min_epochs = 0 if self.method == "magnitude" else 1
        checks = [
            (self.model in MODELS, f"unknown model {self.model!r}; expected one of {', '.join(MODELS)}"),
            (self.method in METHODS, f"unknown method {self.method!r}; expected one of {', '.join(METHODS)}"),
            (
                0.0 <= self.sparsity < 1.0,
                f"--sparsity is the fraction pruned and must be in [0, 1), got {self.sparsity}",
            ),
            (
                self.init is None or self.init in INITS,
                f"unknown init {self.init!r}; expected one of {', '.join(INITS)}",
            ),
            (self.width > 0, f"--width must be positive, got {self.width}"),
            (
                self.optimizer is None or self.optimizer in OPTIMIZERS,
                f"unknown optimizer {self.optimizer!r}; expected sgd or adam",
            ),
            (self.device in DEVICES, f"unknown device {self.device!r}; expected cpu or cuda"),
            (
                self.epochs is None or self.epochs >= min_epochs,
                f"--epochs must be at least {min_epochs}, got {self.epochs}",
            ),
            (
                self.method != "magnitude" or not self.epochs,
                "--method magnitude is one-shot pruning: it searches for 0 epochs, leave --epochs out",
            ),
            (
                self.pretrained is not None or self.method not in PRETRAINED_METHODS,
                f"--method {self.method} searches inside a pre-trained model: pass --pretrained RUN_DIR or weights.safetensors",
            ),
            (
                self.pretrained is None or self.method in PRETRAINED_METHODS,
                f"--pretrained applies to --method {' or '.join(PRETRAINED_METHODS)}, not {self.method}",
            ),
            (
                0.0 < self.restriction_rate <= 1.0,
                f"--restriction-rate is the fraction of candidate swaps applied per step and must be in (0, 1], got {self.restriction_rate}",
            ),
            (
                self.batch_size is None or self.batch_size >= 1,
                f"--batch-size must be at least 1, got {self.batch_size}",
            ),
            (self.lr is None or self.lr > 0, f"--lr must be positive, got {self.lr}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def recipe(self) -> LayerRecipe:
        return LayerRecipe(
            method=self.method,
            sparsity=self.sparsity if self.method != "dense" else 0.0,
            binarize=self.binarize,
            binary_act=self.binary_act,
            width=self.width,
            dense_first=self.dense_first,
            dense_last=self.dense_last,
            per_channel_alpha=self.per_channel_alpha,
            # A pre-trained model's BatchNorm affine transform is carried over (frozen unless learn_bn).
            learn_bn=self.learn_bn or self.method in PRETRAINED_METHODS,
        )

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"config has unknown fields {sorted(unknown)}")
        return cls(**data)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=True)


def parse_config(text: str | bytes, source: str) -> TrainConfig:
    """A stored config (``config.json``, a ticket's metadata) read back.

    Raises:
        InputError: not JSON, not an object, or fields a :class:`TrainConfig` cannot take;
            the message names ``source``.
    """
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise TypeError(f"expected a JSON object, got {type(data).__name__}")
        return TrainConfig.from_json(data)
    except (ValueError, TypeError) as error:  # JSON and UTF-8 decode errors are ValueErrors
        raise InputError(f"{source} is not a valid mptc config: {first_line(error)}") from error
