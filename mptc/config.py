"""The description of a training run that every stage reads back: the schema, no training code.

A :class:`TrainConfig` is written into each run directory (``config.json``) and into each ticket's
metadata (:mod:`mptc.ticket`); export, the jackpot and the reports read it back from there. Any
field left ``None`` is a recipe default that :func:`mptc.train.config.resolve` fills in.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mptc.errors import InputError, first_line

if TYPE_CHECKING:
    from mptc.models.factory import LayerRecipe

# The names every stage and the CLI's choices read, defined here because this module imports
# neither torch nor tvm: ``mptc --help`` lists them without loading a framework.
MODELS = ("mlp", "conv2", "conv4", "conv6", "conv8", "vgg-small", "resnet18")  # builders: mptc.models
METHODS = ("dense", "edge-popup", "biprop", "jackpot", "magnitude")
INITS = ("kaiming-normal", "scaled-kaiming", "signed-constant")  # maths: mptc.nn.init
DATASETS = ("digits", "synthetic[:CxHxW]", "cifar10:DIR", "imagefolder:DIR")  # loaders: mptc.data
ROUTES = ("distill", "construct")  # of `mptc approximate`: mptc.approximate.sweep
OPTIMIZERS = ("sgd", "adam")
PRETRAINED_METHODS = ("jackpot", "magnitude")
MAX_INPUT_VALUES = 2**26  # values of one input sample (3x4096x4096 fits)
MAX_WIDTH = 64.0  # a zoo model 64x as wide has 4096x the weights: far past any machine mptc targets
DEVICES = ("cpu", "cuda")
# A user's model: ``package.module:Factory`` (the factory may be an attribute path, ``mod:Outer.build``).
IMPORT_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
SHA256 = re.compile(r"[0-9a-f]{64}")


def is_import_path(model: str) -> bool:
    """Whether ``model`` names a user's model (``package.module:Factory``) rather than a zoo one."""
    return IMPORT_PATH.fullmatch(model) is not None


def _json_object(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return isinstance(value, dict) and all(isinstance(key, str) for key in value)


@dataclass(frozen=True)
class TrainConfig:
    """One training run. ``sparsity`` is the fraction of weights PRUNED.

    The lottery-jackpot methods (``jackpot``, and ``magnitude``: its one-shot baseline) search
    inside the ``pretrained`` model (a ``--method dense`` run directory or a safetensors state
    dict of the same architecture); there ``sparsity`` is a model-wide target split over layers
    by one global magnitude threshold. ``restriction`` turns the jackpot's short restriction on,
    ``restriction_rate`` is its swap rate at the first step (cosine-decayed to 0 over the run).

    A user's own model (:mod:`mptc.models.user`): ``model`` is an import path
    ``package.module:Factory`` called with the keyword arguments ``model_args`` (JSON values),
    converted by :func:`mptc.models.convert.convert`; binary activations (``binary_act``) go in
    front of the masked layers whose names match ``binary_act_before`` (glob patterns; empty:
    every masked layer but the first layer). Its ``pretrained`` weights (a safetensors or
    ``torch.save`` state dict) serve every method: searched in by a jackpot, the frozen weights of
    edge-popup/biprop instead of random ones from the seed, the start of dense training; a ticket
    then references them by ``pretrained_sha256`` (:func:`mptc.models.weights.state_sha256`, filled
    in when training starts). ``input_shape`` (one sample's shape) is checked against the data
    set, and gives plain ``synthetic`` data its shape.

    ``warmup_epochs`` of linearly rising learning rate precede the cosine schedule.
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
    momentum: float | None = None
    weight_decay: float | None = None
    label_smoothing: float | None = None
    warmup_epochs: int | None = None
    seed: int = 0
    device: str = "cpu"
    pretrained: str | None = None
    restriction: bool = True
    restriction_rate: float = 1.0
    model_args: dict[str, Any] = field(default_factory=dict)
    input_shape: tuple[int, ...] | None = None
    pretrained_sha256: str | None = None
    binary_act_before: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # JSON gives lists: store tuples, so a config read back equals the one written.
        if self.input_shape is not None and not isinstance(self.input_shape, tuple):
            object.__setattr__(self, "input_shape", tuple(self.input_shape))
        if not isinstance(self.binary_act_before, tuple):
            object.__setattr__(self, "binary_act_before", tuple(self.binary_act_before))
        min_epochs = 0 if self.method == "magnitude" else 1
        user = is_import_path(self.model)
        checks = [
            (
                self.model in MODELS or user,
                f"unknown model {self.model!r}; expected one of {', '.join(MODELS)} or an import path package.module:Factory",
            ),
            (_json_object(self.model_args), f"--model-args must be a JSON object, got {self.model_args!r}"),
            (user or not self.model_args, f"--model-args applies to import-path models, not {self.model}"),
            (not user or self.width == 1.0, f"--width applies to zoo models, not {self.model}"),
            (
                self.input_shape is None
                or (
                    len(self.input_shape) > 0
                    and all(isinstance(d, int) and d > 0 for d in self.input_shape)
                    and math.prod(self.input_shape) <= MAX_INPUT_VALUES
                ),
                f"--input-shape needs positive dimensions, at most {MAX_INPUT_VALUES:,} values, got {self.input_shape}",
            ),
            (
                not self.binary_act_before or (user and self.binary_act),
                "binary activation positions (--binary-act-before) apply to an import-path model with binary activations",
            ),
            (
                self.pretrained_sha256 is None
                or (self.pretrained is not None and SHA256.fullmatch(self.pretrained_sha256)),
                f"pretrained_sha256 must be the 64 hex digits of --pretrained weights, got {self.pretrained_sha256!r}",
            ),
            (
                self.warmup_epochs is None or self.warmup_epochs >= 0,
                f"--warmup-epochs must be at least 0, got {self.warmup_epochs}",
            ),
            (
                self.warmup_epochs is None or self.epochs is None or self.warmup_epochs < max(self.epochs, 1),
                f"--warmup-epochs ({self.warmup_epochs}) must be fewer than --epochs ({self.epochs})",
            ),
            (
                self.momentum is None or 0.0 <= self.momentum < 1.0,
                f"--momentum must be in [0, 1), got {self.momentum}",
            ),
            (
                self.label_smoothing is None or 0.0 <= self.label_smoothing < 1.0,
                f"--label-smoothing must be in [0, 1), got {self.label_smoothing}",
            ),
            (self.method in METHODS, f"unknown method {self.method!r}; expected one of {', '.join(METHODS)}"),
            (
                0.0 <= self.sparsity < 1.0,
                f"--sparsity is the fraction pruned and must be in [0, 1), got {self.sparsity}",
            ),
            (
                self.init is None or self.init in INITS,
                f"unknown init {self.init!r}; expected one of {', '.join(INITS)}",
            ),
            (
                0.0 < self.width <= MAX_WIDTH,
                f"--width must be a positive number of at most {MAX_WIDTH:g}, got {self.width}",
            ),
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
                self.pretrained is None or self.method in PRETRAINED_METHODS or user,
                f"--pretrained applies to --method {' or '.join(PRETRAINED_METHODS)} (or to an import-path model), not {self.method}",
            ),
            (
                0.0 < self.restriction_rate <= 1.0,
                f"--restriction-rate is the fraction of candidate swaps applied per step and must be in (0, 1], got {self.restriction_rate}",
            ),
            (
                self.batch_size is None or self.batch_size >= 1,
                f"--batch-size must be at least 1, got {self.batch_size}",
            ),
            (self.lr is None or 0.0 < self.lr < float("inf"), f"--lr must be a positive finite number, got {self.lr}"),
            (
                self.weight_decay is None or 0.0 <= self.weight_decay < float("inf"),
                f"--weight-decay must be a finite number, 0 or more, got {self.weight_decay}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def recipe(self) -> LayerRecipe:
        from mptc.models.factory import LayerRecipe  # torch: only once a model is built

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
